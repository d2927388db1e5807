//! The HTTP paths of driftline's model server and gateway: one home for the
//! routes the server registers (axum templates with `{name}` and
//! `{version}`) and the URLs the operator, the dashboard, the gateway, the
//! load generator and the CLI call. The Open Inference Protocol v2 paths are
//! KServe's and Triton's; the rest are driftline's.

/// `GET`: the process is alive.
pub const HEALTHZ: &str = "/healthz";
/// `GET`: the process can take traffic.
pub const READYZ: &str = "/readyz";
/// `GET`: Prometheus metrics (`api::scrape` names the families).
pub const METRICS: &str = "/metrics";
/// `GET`: OIP server metadata.
pub const SERVER_METADATA: &str = "/v2";
/// `GET`: OIP liveness.
pub const LIVE: &str = "/v2/health/live";
/// `GET`: OIP readiness, the model servers' readiness probe.
pub const READY: &str = "/v2/health/ready";
/// `GET`: OIP model metadata.
pub const MODEL: &str = "/v2/models/{name}";
/// `GET`: OIP metadata of one version.
pub const MODEL_VERSION: &str = "/v2/models/{name}/versions/{version}";
/// `GET`: OIP model readiness.
pub const MODEL_READY: &str = "/v2/models/{name}/ready";
/// `GET`: OIP readiness of one version.
pub const MODEL_VERSION_READY: &str = "/v2/models/{name}/versions/{version}/ready";
/// `POST`: OIP inference.
pub const INFER: &str = "/v2/models/{name}/infer";
/// `POST`: OIP inference on one version.
pub const VERSION_INFER: &str = "/v2/models/{name}/versions/{version}/infer";
/// `POST`: labels for earlier requests; `GET`: the online accuracy.
pub const FEEDBACK: &str = "/v2/models/{name}/feedback";
/// `GET`: the drift monitor's windows and running totals.
pub const DRIFT: &str = "/v2/models/{name}/drift";

/// Response header carrying the inference id (the OIP `id`: the client's,
/// or one the server made up), so a label can be sent for it later without
/// parsing the body.
pub const INFERENCE_ID_HEADER: &str = "inference-id";

/// A route with its `{name}` (and `{version}`) filled in.
pub fn path(route: &str, model: &str) -> String {
    route.replace("{name}", model)
}

/// A per-version route with `{name}` and `{version}` filled in.
pub fn version_path(route: &str, model: &str, version: &str) -> String {
    path(route, model).replace("{version}", version)
}

/// `base` (a server or gateway URL) joined with a filled-in route.
pub fn url(base: &str, route: &str, model: &str) -> String {
    format!("{}{}", base.trim_end_matches('/'), path(route, model))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_fill_in_to_the_urls_clients_call() {
        assert_eq!(path(INFER, "wine"), "/v2/models/wine/infer");
        assert_eq!(
            version_path(VERSION_INFER, "wine", "v3"),
            "/v2/models/wine/versions/v3/infer"
        );
        assert_eq!(
            url("http://wine-v2.ml.svc:8080/", DRIFT, "wine"),
            "http://wine-v2.ml.svc:8080/v2/models/wine/drift"
        );
    }
}
