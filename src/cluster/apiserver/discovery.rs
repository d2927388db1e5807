//! Discovery documents: `/version`, `/api`, `/apis`, group versions and the
//! OpenAPI index kubectl consults.

use serde_json::{Value, json};

use super::error::ApiError;
use super::request::Endpoint;
use super::resources::Registry;

/// Kubernetes version this server imitates.
pub const KUBE_MINOR: &str = "33";

/// Answers a discovery endpoint.
pub fn serve(registry: &Registry, endpoint: &Endpoint) -> Result<Value, ApiError> {
    match endpoint {
        Endpoint::Version => Ok(json!({
            "major": "1", "minor": KUBE_MINOR, "gitVersion": format!("v1.{KUBE_MINOR}.0+driftline"),
            "gitCommit": "", "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z",
            "goVersion": "n/a", "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, std::env::consts::ARCH),
        })),
        Endpoint::CoreVersions => Ok(json!({
            "kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}],
        })),
        Endpoint::Groups => Ok(registry.group_list()),
        Endpoint::Group(g) => registry
            .group_list()
            .get("groups")
            .and_then(Value::as_array)
            .and_then(|gs| gs.iter().find(|x| x["name"] == json!(g)).cloned())
            .map(|mut group| {
                group["kind"] = json!("APIGroup");
                group["apiVersion"] = json!("v1");
                group
            })
            .ok_or(ApiError::UnknownPath),
        Endpoint::GroupVersion(g, v) => registry.resource_list(g, v).ok_or(ApiError::UnknownPath),
        Endpoint::OpenApiV3 => Ok(super::openapi::index(registry)),
        Endpoint::OpenApiV3Doc(path) => {
            super::openapi::document(registry, path).ok_or(ApiError::UnknownPath)
        }
        // kubectl asks for v2 as protobuf only; a 404 sends it to v3.
        _ => Err(ApiError::UnknownPath),
    }
}
