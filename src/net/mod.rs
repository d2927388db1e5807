//! What several rooms need to reach pods and Services: the HTTP client the
//! operator, dashboard and commands use, and the resolver that finds the
//! embedded cluster's Services by the hosts file its node writes (then DNS,
//! so the same code works in a real cluster). Imports nothing from driftline.

mod hosts;
mod http;

pub use hosts::{
    HOSTS_FILE_ENV, HostsFileResolver, resolve_service_host, resolve_service_host_from_env,
};
pub use http::service_http_client;
