//! Routing: which handler answers a request, decided from its method, path
//! and the type the path names ([`route`], a pure table tested below), then
//! the call ([`dispatch`]).

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;

use super::error::ApiError;
use super::request::{Endpoint, ResourcePath};
use super::resources::{Registry, ResourceType};
use super::scale::ScalePaths;
use super::server::{Shared, json_response};
use super::{discovery, listwatch, logs, negotiation, writes};

/// What a resource request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verb {
    /// GET of one object (or of its status).
    Get,
    /// GET of a collection.
    List,
    /// GET of a collection with `watch=true`.
    Watch,
    /// POST to a collection.
    Create,
    /// PUT of an object; `status`: through its status subresource.
    Update {
        /// Written through the status subresource.
        status: bool,
    },
    /// PATCH of an object; `status`: through its status subresource.
    Patch {
        /// Written through the status subresource.
        status: bool,
    },
    /// DELETE of one object.
    Delete,
    /// DELETE of a collection.
    DeleteCollection,
    /// GET `pods/{name}/log`.
    Logs,
    /// `{plural}/{name}/scale`, any method (the handler checks which).
    Scale(ScalePaths),
    /// POST of a review (`kubectl auth can-i`).
    Review,
}

/// Where a request goes.
#[derive(Debug)]
pub(super) enum Route {
    /// Version, discovery and OpenAPI documents.
    Discovery(Endpoint),
    /// A verb on a resource type at a path.
    Resource {
        /// What to do.
        verb: Verb,
        /// The type the path names.
        ty: Box<ResourceType>,
        /// The parsed path.
        path: ResourcePath,
    },
}

/// The routing table. Paths the real API server does not serve (an unknown
/// type, a namespace on a cluster-scoped type, a subresource the type lacks)
/// are 404; a method a path does not take is 405.
pub(super) fn route(
    method: &Method,
    endpoint: Endpoint,
    registry: &Registry,
    watching: bool,
) -> Result<Route, ApiError> {
    let path = match endpoint {
        Endpoint::Resource(path) => path,
        Endpoint::Unknown | Endpoint::Health => return Err(ApiError::UnknownPath),
        other if *method == Method::GET => return Ok(Route::Discovery(other)),
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let ty = Box::new(
        registry
            .find(&path.group, &path.version, &path.plural)
            .cloned()
            .ok_or(ApiError::UnknownPath)?,
    );
    if path.namespace.is_some() && !ty.namespaced {
        return Err(ApiError::UnknownPath);
    }
    if ty.namespaced && path.namespace.is_none() && (path.name.is_some() || *method != Method::GET)
    {
        return Err(ApiError::UnknownPath);
    }
    if ty.review {
        return match (method.as_str(), &path.name, &path.subresource) {
            ("POST", None, None) => Ok(Route::Resource {
                verb: Verb::Review,
                ty,
                path,
            }),
            _ => Err(ApiError::MethodNotAllowed),
        };
    }
    let status = match path.subresource.as_deref() {
        None => false,
        Some("status") if ty.status_subresource => true,
        Some("log") if ty.plural == "pods" && ty.group.is_empty() && *method == Method::GET => {
            return Ok(Route::Resource {
                verb: Verb::Logs,
                ty,
                path,
            });
        }
        Some("scale") if path.name.is_some() => {
            let paths = ty.scale.clone().ok_or(ApiError::UnknownPath)?;
            return Ok(Route::Resource {
                verb: Verb::Scale(paths),
                ty,
                path,
            });
        }
        Some(_) => return Err(ApiError::UnknownPath),
    };
    let verb = match (method.as_str(), path.name.is_some()) {
        ("GET", false) if watching => Verb::Watch,
        ("GET", false) => Verb::List,
        ("GET", true) => Verb::Get,
        ("POST", false) => Verb::Create,
        ("PUT", true) => Verb::Update { status },
        ("PATCH", true) => Verb::Patch { status },
        ("DELETE", true) => Verb::Delete,
        ("DELETE", false) => Verb::DeleteCollection,
        _ => return Err(ApiError::MethodNotAllowed),
    };
    Ok(Route::Resource { verb, ty, path })
}

/// Routes a request and calls its handler.
pub(super) async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    endpoint: Endpoint,
    query: &HashMap<String, String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    if matches!(endpoint, Endpoint::Resource(_)) {
        // Only resource answers: kubectl asks for OpenAPI v2 as protobuf only and
        // must see the 404 that sends it to v3.
        negotiation::check_accept(headers)?;
    }
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let routed = route(method, endpoint, &shared.store().registry, watching)?;
    let (verb, ty, p) = match routed {
        Route::Discovery(endpoint) => {
            let store = shared.store();
            return discovery::serve(&store.registry, &endpoint)
                .map(|v| json_response(StatusCode::OK, &v));
        }
        Route::Resource { verb, ty, path } => (verb, *ty, path),
    };
    let want_table = negotiation::wants_table(headers);
    let request = writes::Request {
        shared,
        headers,
        query,
        ty: &ty,
        path: &p,
    };
    match verb {
        Verb::Logs => logs::serve(shared.clone(), &p, query).await,
        Verb::Review => review(negotiation::parse_body(headers, &body)?),
        Verb::Scale(paths) => writes::scale_subresource(&request, method, &paths, &body),
        Verb::Watch => listwatch::watch(shared.clone(), &ty, &p, query, want_table),
        Verb::List => listwatch::list(shared, &ty, &p, query, want_table),
        Verb::Get => writes::get(&request, want_table),
        Verb::Create => writes::create(&request, &body),
        Verb::Update { status } => writes::update(&request, &body, status),
        Verb::Patch { status } => writes::patch_object(&request, &body, status),
        Verb::Delete => writes::delete(&request, &body),
        Verb::DeleteCollection => writes::delete_collection(&request),
    }
}

/// Answers a `SelfSubjectAccessReview`: the embedded cluster has no RBAC,
/// every authenticated client may do everything, so every request is
/// allowed, and the reason says why (kube-apiserver's shape: the review
/// echoed with its `status`, 201).
/// kubectl sends it as protobuf, decoded like any built-in kind.
fn review(mut review: serde_json::Value) -> Result<Response, ApiError> {
    if !review.get("spec").is_some_and(serde_json::Value::is_object) {
        return Err(ApiError::BadRequest(
            "SelfSubjectAccessReview.spec is required".into(),
        ));
    }
    review["status"] = serde_json::json!({
        "allowed": true,
        "reason": "the embedded cluster has no RBAC: every authenticated user may do everything",
    });
    Ok(json_response(StatusCode::CREATED, &review))
}

#[cfg(test)]
mod tests {
    use super::super::request::parse_path;
    use super::*;

    fn verb(method: Method, path: &str, watching: bool) -> Result<Verb, String> {
        match route(
            &method,
            parse_path(path),
            &Registry::with_builtins(),
            watching,
        ) {
            Ok(Route::Resource { verb, .. }) => Ok(verb),
            Ok(Route::Discovery(e)) => Err(format!("discovery {e:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    fn not_found(method: Method, path: &str) {
        let got = route(&method, parse_path(path), &Registry::with_builtins(), false);
        assert!(
            matches!(got, Err(ApiError::UnknownPath)),
            "{method} {path}: {got:?}"
        );
    }

    fn not_allowed(method: Method, path: &str) {
        let got = route(&method, parse_path(path), &Registry::with_builtins(), false);
        assert!(
            matches!(got, Err(ApiError::MethodNotAllowed)),
            "{method} {path}: {got:?}"
        );
    }

    const PODS: &str = "/api/v1/namespaces/ml/pods";
    const POD: &str = "/api/v1/namespaces/ml/pods/p";

    #[test]
    fn collections_and_objects_take_the_kubernetes_verbs() {
        assert_eq!(verb(Method::GET, PODS, false), Ok(Verb::List));
        assert_eq!(verb(Method::GET, PODS, true), Ok(Verb::Watch));
        assert_eq!(verb(Method::GET, "/api/v1/pods", false), Ok(Verb::List));
        assert_eq!(verb(Method::GET, POD, false), Ok(Verb::Get));
        assert_eq!(verb(Method::POST, PODS, false), Ok(Verb::Create));
        assert_eq!(
            verb(Method::PUT, POD, false),
            Ok(Verb::Update { status: false })
        );
        assert_eq!(
            verb(Method::PATCH, POD, false),
            Ok(Verb::Patch { status: false })
        );
        assert_eq!(verb(Method::DELETE, POD, false), Ok(Verb::Delete));
        assert_eq!(
            verb(Method::DELETE, PODS, false),
            Ok(Verb::DeleteCollection)
        );
        not_allowed(Method::POST, POD);
        not_allowed(Method::PUT, PODS);
        not_allowed(Method::PATCH, PODS);
    }

    #[test]
    fn subresources_route_where_the_type_has_them() {
        let status = format!("{POD}/status");
        assert_eq!(verb(Method::GET, &status, false), Ok(Verb::Get));
        assert_eq!(
            verb(Method::PUT, &status, false),
            Ok(Verb::Update { status: true })
        );
        assert_eq!(
            verb(Method::PATCH, &status, false),
            Ok(Verb::Patch { status: true })
        );
        assert_eq!(
            verb(Method::GET, &format!("{POD}/log"), false),
            Ok(Verb::Logs)
        );
        not_found(Method::POST, &format!("{POD}/log"));
        // ConfigMaps have no status, Pods no scale, Deployments do.
        not_found(Method::PUT, "/api/v1/namespaces/ml/configmaps/c/status");
        not_found(Method::GET, &format!("{POD}/scale"));
        assert!(matches!(
            verb(
                Method::PATCH,
                "/apis/apps/v1/namespaces/ml/deployments/d/scale",
                false
            ),
            Ok(Verb::Scale(_))
        ));
        not_found(Method::GET, &format!("{POD}/exec"));
    }

    #[test]
    fn paths_the_real_server_does_not_serve_are_404() {
        not_found(Method::GET, "/apis/example.com/v1/namespaces/ml/widgets");
        // A cluster-scoped type under a namespace; a namespaced object without one.
        not_found(Method::GET, "/api/v1/namespaces/ml/nodes/n");
        not_found(Method::GET, "/api/v1/pods/p");
        not_found(Method::POST, "/api/v1/pods");
        not_found(Method::GET, "/no/such/path");
        assert_eq!(
            verb(Method::GET, "/api/v1/nodes/n", false),
            Ok(Verb::Get),
            "cluster-scoped objects need no namespace"
        );
    }

    #[test]
    fn discovery_is_read_only() {
        assert!(matches!(
            route(
                &Method::GET,
                parse_path("/apis"),
                &Registry::with_builtins(),
                false
            ),
            Ok(Route::Discovery(Endpoint::Groups))
        ));
        not_allowed(Method::POST, "/apis");
    }
}
