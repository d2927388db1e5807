//! The one home of the dashboard's URL format: pages, their links, and the
//! links Events and `driftline status` print when a dashboard URL is known.

use crate::api::version_name;

/// Environment variable (and flag value) naming a dashboard's base URL,
/// for the user commands: `driftline status` links each Model to it.
pub const DASHBOARD_ENV: &str = "DRIFTLINE_DASHBOARD";

/// Path of a Model's page.
pub fn model_path(namespace: &str, name: &str) -> String {
    format!("/models/{}/{}", segment(namespace), segment(name))
}

/// Path of a version's page (`version`: its number).
pub fn version_path(namespace: &str, model: &str, version: u32) -> String {
    version_path_named(namespace, model, &version_name(version))
}

/// Path of a version's page (`version`: `v<n>`).
pub fn version_path_named(namespace: &str, model: &str, version: &str) -> String {
    format!(
        "{}/versions/{}",
        model_path(namespace, model),
        segment(version)
    )
}

/// A page's absolute URL under a dashboard's base URL.
pub fn absolute(base: &str, path: &str) -> String {
    format!("{}{path}", base.trim_end_matches('/'))
}

/// One path segment, percent-encoded (Kubernetes names need none; a
/// stray character must not change the path).
fn segment(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_one_url_format() {
        assert_eq!(model_path("ml", "wine-quality"), "/models/ml/wine-quality");
        assert_eq!(
            version_path("ml", "wine-quality", 3),
            "/models/ml/wine-quality/versions/v3"
        );
        assert_eq!(
            absolute("http://127.0.0.1:9091/", &model_path("ml", "w")),
            "http://127.0.0.1:9091/models/ml/w"
        );
        assert_eq!(model_path("ml", "a/b<c>"), "/models/ml/a%2Fb%3Cc%3E");
    }
}
