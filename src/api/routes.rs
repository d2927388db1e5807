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

/// The `{name}` and `{version}` a request path fills into `route`, read
/// without the router: the model server's inference paths are matched here
/// first (axum's routing was ~3 % of a one-row request's CPU).
/// `None` where the path is not the route, or where a filled-in segment is
/// empty or percent-encoded: those are left to the router, which decodes
/// them (model names and versions never need it: both are DNS labels).
pub fn match_route<'p>(route: &str, path: &'p str) -> Option<RouteParams<'p>> {
    let mut params = RouteParams::default();
    let mut segments = Segments(Some(path.strip_prefix('/')?));
    for template in Segments(Some(route.strip_prefix('/')?)) {
        let segment = segments.next()?;
        match template {
            "{name}" | "{version}" => {
                if segment.is_empty() || segment.contains('%') {
                    return None;
                }
                if template == "{name}" {
                    params.name = segment;
                } else {
                    params.version = Some(segment);
                }
            }
            literal if literal == segment => {}
            _ => return None,
        }
    }
    segments.next().is_none().then_some(params)
}

/// The `/`-separated segments of a path, found by a byte scan: `str::split`'s
/// generic searcher was most of matching a one-row request's path.
struct Segments<'s>(Option<&'s str>);

impl<'s> Iterator for Segments<'s> {
    type Item = &'s str;

    fn next(&mut self) -> Option<&'s str> {
        let rest = self.0?;
        match rest.bytes().position(|b| b == b'/') {
            // `/` is ASCII: both slices end on character boundaries.
            Some(at) => {
                self.0 = Some(&rest[at + 1..]);
                Some(&rest[..at])
            }
            None => {
                self.0 = None;
                Some(rest)
            }
        }
    }
}

/// What [`match_route`] read from a path.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct RouteParams<'p> {
    pub name: &'p str,
    pub version: Option<&'p str>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_paths_match_the_routes_that_fill_them_in() {
        let p = path(INFER, "wine");
        assert_eq!(
            match_route(INFER, &p),
            Some(RouteParams {
                name: "wine",
                version: None
            })
        );
        let v = version_path(VERSION_INFER, "wine", "v3");
        assert_eq!(
            match_route(VERSION_INFER, &v),
            Some(RouteParams {
                name: "wine",
                version: Some("v3")
            })
        );
        // Not the route: other routes, a trailing slash, an extra or a
        // missing segment, an empty name.
        assert_eq!(match_route(INFER, &v), None);
        assert_eq!(match_route(VERSION_INFER, &p), None);
        for other in [
            "/v2/models/wine/infer/",
            "/v2/models/wine/infer/x",
            "/v2/models/wine",
            "/v2/models//infer",
            "/v2/model/wine/infer",
            "v2/models/wine/infer",
            "/v2/models/wine/feedback",
        ] {
            assert_eq!(match_route(INFER, other), None, "{other}");
        }
        // A percent-encoded name is the router's to decode.
        assert_eq!(match_route(INFER, "/v2/models/w%69ne/infer"), None);
    }

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
