//! What a request addresses: parsed from the URL path and query.

use std::collections::HashMap;

/// The endpoint a path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/version`
    Version,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/{group}`
    Group(String),
    /// `/api/v1` or `/apis/{group}/{version}`
    GroupVersion(String, String),
    /// `/openapi/v2`
    OpenApiV2,
    /// `/openapi/v3`
    OpenApiV3,
    /// `/openapi/v3/{api/v1 | apis/g/v}`
    OpenApiV3Doc(String),
    /// `/healthz`, `/readyz`, `/livez`
    Health,
    /// A resource collection, object or subresource.
    Resource(ResourcePath),
    /// Anything else.
    Unknown,
}

/// A path under `/api/v1` or `/apis/{g}/{v}`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResourcePath {
    /// Group ("" for core).
    pub group: String,
    /// Version.
    pub version: String,
    /// Namespace from `namespaces/{ns}/...`.
    pub namespace: Option<String>,
    /// Plural resource.
    pub plural: String,
    /// Object name.
    pub name: Option<String>,
    /// Subresource, e.g. `status` or `log`.
    pub subresource: Option<String>,
}

/// Parses a request path.
pub fn parse_path(path: &str) -> Endpoint {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    match segs.as_slice() {
        ["version"] => Endpoint::Version,
        ["healthz" | "readyz" | "livez", ..] => Endpoint::Health,
        ["openapi", "v2"] => Endpoint::OpenApiV2,
        ["openapi", "v3"] => Endpoint::OpenApiV3,
        ["openapi", "v3", rest @ ..] => Endpoint::OpenApiV3Doc(rest.join("/")),
        ["api"] => Endpoint::CoreVersions,
        ["apis"] => Endpoint::Groups,
        ["apis", g] => Endpoint::Group(g.to_string()),
        ["api", v] => Endpoint::GroupVersion(String::new(), v.to_string()),
        ["apis", g, v] => Endpoint::GroupVersion(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => resource(String::new(), v, rest),
        ["apis", g, v, rest @ ..] => resource(g.to_string(), v, rest),
        _ => Endpoint::Unknown,
    }
}

fn resource(group: String, version: &str, rest: &[&str]) -> Endpoint {
    let mut p = ResourcePath {
        group,
        version: version.to_string(),
        ..Default::default()
    };
    let rest = match rest {
        // `namespaces/{ns}/{plural}...` addresses namespaced objects; `namespaces/{ns}[/status]` the namespace itself.
        ["namespaces", ns, plural, tail @ ..]
            if !(tail.is_empty() && matches!(*plural, "status" | "finalize")) =>
        {
            p.namespace = Some(ns.to_string());
            let mut v = vec![*plural];
            v.extend_from_slice(tail);
            v
        }
        other => other.to_vec(),
    };
    match rest.as_slice() {
        [plural] => p.plural = plural.to_string(),
        [plural, name] => {
            p.plural = plural.to_string();
            p.name = Some(name.to_string());
        }
        [plural, name, sub] => {
            p.plural = plural.to_string();
            p.name = Some(name.to_string());
            p.subresource = Some(sub.to_string());
        }
        _ => return Endpoint::Unknown,
    }
    Endpoint::Resource(p)
}

/// Query parameters (the last value wins).
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_namespaced_and_cluster_objects() {
        let Endpoint::Resource(p) = parse_path("/apis/batch/v1/namespaces/ml/jobs/train-1/status")
        else {
            panic!()
        };
        assert_eq!(
            (p.group.as_str(), p.namespace.as_deref(), p.plural.as_str()),
            ("batch", Some("ml"), "jobs")
        );
        assert_eq!(
            (p.name.as_deref(), p.subresource.as_deref()),
            (Some("train-1"), Some("status"))
        );
        let Endpoint::Resource(ns) = parse_path("/api/v1/namespaces/ml") else {
            panic!()
        };
        assert_eq!(
            (ns.plural.as_str(), ns.name.as_deref(), ns.namespace),
            ("namespaces", Some("ml"), None)
        );
        let Endpoint::Resource(st) = parse_path("/api/v1/namespaces/ml/status") else {
            panic!()
        };
        assert_eq!(st.subresource.as_deref(), Some("status"));
        let Endpoint::Resource(all) = parse_path("/api/v1/pods") else {
            panic!()
        };
        assert_eq!((all.plural.as_str(), all.namespace), ("pods", None));
        assert_eq!(
            parse_path("/apis/apps/v1"),
            Endpoint::GroupVersion("apps".into(), "v1".into())
        );
        assert_eq!(parse_path("/nonsense"), Endpoint::Unknown);
    }
}
