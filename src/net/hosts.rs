//! Service names through a hosts file: the embedded cluster's node writes
//! `<state_dir>/hosts` (`IP name…` lines, as `/etc/hosts`) mapping
//! `<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>.svc` and `<svc>.<ns>` to each
//! Service's cluster IP, and tells its pods where the file is in
//! [`HOSTS_FILE_ENV`]. Clients outside and inside pods resolve through it
//! first, then DNS, so one client reaches Services on the embedded cluster
//! and on a real one.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Environment variable naming the hosts file for Service names: the node
/// sets it in every pod (`driftline up` and `driftline cluster` pass this
/// name to it), and the commands read it as their `--hosts-file` default.
pub const HOSTS_FILE_ENV: &str = "DRIFTLINE_HOSTS_FILE";

/// Looks `host` up in a hosts file (`IP name…` lines, `#` comments).
/// Returns `None` when the file or the name is missing.
pub fn resolve_service_host(hosts_file: &Path, host: &str) -> Option<IpAddr> {
    let text = std::fs::read_to_string(hosts_file).ok()?;
    let wanted = host.trim_end_matches('.').to_ascii_lowercase();
    text.lines()
        .map(|line| line.split('#').next().unwrap_or(""))
        .find_map(|line| {
            let mut fields = line.split_whitespace();
            let ip: IpAddr = fields.next()?.parse().ok()?;
            fields
                .any(|name| name.eq_ignore_ascii_case(&wanted))
                .then_some(ip)
        })
}

/// [`resolve_service_host`] with the hosts file named by [`HOSTS_FILE_ENV`].
pub fn resolve_service_host_from_env(host: &str) -> Option<IpAddr> {
    let path = std::env::var_os(HOSTS_FILE_ENV)?;
    resolve_service_host(Path::new(&path), host)
}

/// Resolves names through the embedded cluster's hosts file first (`path`,
/// or the one named by [`HOSTS_FILE_ENV`] when `None`), then the system
/// resolver: clients outside and inside pods reach `<svc>.<ns>.svc` as in a
/// real cluster.
#[derive(Clone, Debug, Default)]
pub struct HostsFileResolver {
    /// The hosts file; `None` reads [`HOSTS_FILE_ENV`].
    pub path: Option<PathBuf>,
}

impl HostsFileResolver {
    /// The addresses of `host` (port 0): the hosts file's, else DNS's.
    pub async fn lookup(&self, host: &str) -> std::io::Result<Vec<SocketAddr>> {
        let found = match &self.path {
            Some(p) => resolve_service_host(p, host),
            None => resolve_service_host_from_env(host),
        };
        if let Some(ip) = found {
            return Ok(vec![SocketAddr::new(ip, 0)]);
        }
        Ok(tokio::net::lookup_host((host, 0)).await?.collect())
    }
}

impl reqwest::dns::Resolve for HostsFileResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let resolver = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: reqwest::dns::Addrs = Box::new(resolver.lookup(&host).await?.into_iter());
            Ok(addrs)
        })
    }
}

/// For hyper's `HttpConnector::new_with_resolver` (the gateway's client).
impl tower::Service<hyper_util::client::legacy::connect::dns::Name> for HostsFileResolver {
    type Response = std::vec::IntoIter<SocketAddr>;
    type Error = std::io::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, name: hyper_util::client::legacy::connect::dns::Name) -> Self::Future {
        let resolver = self.clone();
        let host = name.as_str().to_string();
        Box::pin(async move { Ok(resolver.lookup(&host).await?.into_iter()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the embedded node writes for a Service `web` in `ml` (cluster IP
    /// 127.1.128.1) and one `db` in `ml` on another line.
    const HOSTS: &str = "# Service names of the embedded driftline cluster (written by its runner)\n\
        127.1.128.1 web.ml.svc.cluster.local web.ml.svc web.ml\n\
        127.1.128.2 db.ml.svc.cluster.local db.ml.svc db.ml # a comment\n";

    #[test]
    fn hosts_file_resolves_every_service_name_form_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, HOSTS).unwrap();
        let web: IpAddr = "127.1.128.1".parse().unwrap();
        for host in [
            "web.ml.svc.cluster.local",
            "web.ml.svc",
            "web.ml",
            "WEB.ml.svc.",
        ] {
            assert_eq!(resolve_service_host(&path, host), Some(web), "{host}");
        }
        assert_eq!(
            resolve_service_host(&path, "db.ml"),
            Some("127.1.128.2".parse().unwrap())
        );
        assert_eq!(resolve_service_host(&path, "web.other"), None);
        assert_eq!(resolve_service_host(&path, "comment"), None);
        assert_eq!(
            resolve_service_host(&dir.path().join("missing"), "web.ml"),
            None
        );
    }

    #[tokio::test]
    async fn the_resolver_prefers_the_hosts_file_and_falls_back_to_dns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, HOSTS).unwrap();
        let resolver = HostsFileResolver {
            path: Some(path.clone()),
        };
        assert_eq!(
            resolver.lookup("web.ml.svc").await.unwrap(),
            vec!["127.1.128.1:0".parse::<SocketAddr>().unwrap()]
        );
        // Not in the file: the system resolver answers (numeric hosts need no DNS server).
        assert_eq!(
            resolver.lookup("127.0.0.9").await.unwrap(),
            vec!["127.0.0.9:0".parse::<SocketAddr>().unwrap()]
        );
    }

    #[tokio::test]
    async fn the_http_client_reaches_a_service_by_its_cluster_name() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        std::fs::write(&path, "127.0.0.1 web.ml.svc\n").unwrap();
        let client =
            super::super::service_http_client(std::time::Duration::from_secs(5), Some(path));
        let body = client
            .get(format!("http://web.ml.svc:{port}/"))
            .send()
            .await
            .expect("the hosts file names the Service")
            .text()
            .await
            .unwrap();
        assert_eq!(body, "ok");
    }
}
