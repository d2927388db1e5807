//! HTTP front of the API server: authentication, routing, fault injection,
//! and the verbs (get, list, watch, create, update, patch, delete, logs).

use std::borrow::Cow;
use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc, watch};

use super::convert;
use super::error::ApiError;
use super::faults::{FaultInjector, RequestInfo, Verdict};
use super::objects::{self, Deletion, Ownership, Propagation};
use super::patch::{self, Scope};
use super::request::{Endpoint, ResourcePath, parse_path, parse_query};
use super::resources::ResourceType;
use super::scale::{self, ScalePaths};
use super::selector::{FieldSelector, LabelSelector};
use super::store::{EventType, Store, object_key};
use super::{discovery, protobuf, schema_hook, table};

/// Largest request body accepted.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// State shared by all requests.
pub struct Shared {
    store: Mutex<Store>,
    changed: watch::Sender<u64>,
    /// Signalled after every change, for the snapshot writer.
    pub dirty: Notify,
    /// Faults and request log.
    pub faults: FaultInjector,
    token: String,
    /// Where pod logs are read from.
    pub state_dir: PathBuf,
    bookmark_interval: Duration,
    /// Set to true when the server shuts down; open watches end.
    pub closing: watch::Sender<bool>,
}

impl Shared {
    /// New shared state around a store.
    pub fn new(
        store: Store,
        token: String,
        state_dir: PathBuf,
        bookmark_interval: Duration,
    ) -> Self {
        let rv = store.resource_version();
        Shared {
            store: Mutex::new(store),
            changed: watch::channel(rv).0,
            dirty: Notify::new(),
            faults: FaultInjector::default(),
            token,
            state_dir,
            bookmark_interval,
            closing: watch::channel(false).0,
        }
    }

    /// Locks the store.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        // Store operations keep it consistent even if a panic unwound mid-request.
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Tells watchers and the snapshot writer that something changed.
    fn notify(&self, rv: u64) {
        if *self.changed.borrow() != rv {
            self.changed.send_replace(rv);
            self.dirty.notify_one();
        }
    }

    /// Runs a write under the lock and wakes watchers afterwards.
    fn write<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let (out, rv) = {
            let mut store = self.store();
            let out = f(&mut store);
            (out, store.resource_version())
        };
        self.notify(rv);
        out
    }

    /// Runs a write against a throwaway copy (`dryRun=All`): full validation, nothing kept.
    fn dry_run<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, ApiError>) -> Result<T, ApiError> {
        let mut copy = self.store().clone();
        f(&mut copy)
    }

    /// Writes for real, or to a copy when the request is a dry run.
    fn write_or_dry<T>(
        &self,
        dry: bool,
        f: impl FnOnce(&mut Store) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        if dry { self.dry_run(f) } else { self.write(f) }
    }

    /// Drops the watch history (etcd-style compaction); older watches get 410.
    pub fn compact(&self) {
        self.store().compact();
    }
}

/// The single entry point: every path goes through here.
pub async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let received = std::time::SystemTime::now();
    let (parts, body) = req.into_parts();
    let endpoint = parse_path(parts.uri.path());
    if endpoint == Endpoint::Health {
        return (StatusCode::OK, "ok").into_response();
    }
    let query = parse_query(parts.uri.query());
    let mut info = request_info(&parts.method, &parts.uri, &endpoint, &query);
    info.content_type = content_type(&parts.headers);
    info.user_agent = (parts.headers.get(header::USER_AGENT))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .into();
    tracing::trace!(method = %info.method, uri = %info.uri, "request");
    let authorized = parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| t.trim() == shared.token);
    let response = if !authorized {
        ApiError::Unauthorized.into_response()
    } else {
        match axum::body::to_bytes(body, MAX_BODY).await {
            Err(e) => ApiError::BadRequest(format!("could not read the request body: {e}"))
                .into_response(),
            Ok(bytes) => {
                // A create names its object in the body; fault rules and the log see that name.
                if info.verb == "create"
                    && info.name.is_empty()
                    && let Ok(v) = parse_body(&parts.headers, &bytes)
                    && let Some(n) = v.pointer("/metadata/name").and_then(Value::as_str)
                {
                    info.name = n.to_string();
                }
                match shared.faults.check(&info) {
                    Verdict::Fail(code) => ApiError::Injected { code }.into_response(),
                    verdict => {
                        if let Verdict::Delay(d) = verdict {
                            tokio::time::sleep(d).await;
                        }
                        dispatch(
                            &shared,
                            &parts.method,
                            &parts.headers,
                            endpoint,
                            &query,
                            bytes,
                        )
                        .await
                        .unwrap_or_else(IntoResponse::into_response)
                    }
                }
            }
        }
    };
    tracing::trace!(method = %info.method, uri = %info.uri, status = response.status().as_u16(), "served");
    shared
        .faults
        .log(info, received, response.status().as_u16());
    response
}

fn request_info(
    method: &Method,
    uri: &axum::http::Uri,
    endpoint: &Endpoint,
    query: &HashMap<String, String>,
) -> RequestInfo {
    let mut info = RequestInfo {
        method: method.to_string(),
        uri: uri.to_string(),
        ..Default::default()
    };
    if let Endpoint::Resource(p) = endpoint {
        info.resource = match &p.subresource {
            Some(s) => format!("{}/{s}", p.plural),
            None => p.plural.clone(),
        };
        info.namespace = p.namespace.clone().unwrap_or_default();
        info.name = p.name.clone().unwrap_or_default();
        let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
        info.verb = match (method.as_str(), p.name.is_some()) {
            ("GET", true) => "get",
            ("GET", false) if watching => "watch",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => "unknown",
        }
        .into();
    } else {
        info.verb = "get".into();
    }
    info
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn dispatch(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    endpoint: Endpoint,
    query: &HashMap<String, String>,
    body: Bytes,
) -> Result<Response, ApiError> {
    let p = match endpoint {
        Endpoint::Resource(p) => p,
        Endpoint::Unknown | Endpoint::Health => return Err(ApiError::UnknownPath),
        other => {
            if method != Method::GET {
                return Err(ApiError::MethodNotAllowed);
            }
            let store = shared.store();
            return discovery::serve(&store.registry, &other)
                .map(|v| json_response(StatusCode::OK, &v));
        }
    };
    // Only resource answers: kubectl asks for OpenAPI v2 as protobuf only and
    // must see the 404 that sends it to v3.
    check_accept(headers)?;
    let ty = {
        let store = shared.store();
        store
            .registry
            .find(&p.group, &p.version, &p.plural)
            .cloned()
            .ok_or(ApiError::UnknownPath)?
    };
    if p.namespace.is_some() && !ty.namespaced {
        return Err(ApiError::UnknownPath);
    }
    if ty.namespaced && p.namespace.is_none() && (p.name.is_some() || *method != Method::GET) {
        return Err(ApiError::UnknownPath);
    }
    let sub = p.subresource.as_deref();
    match sub {
        None | Some("status") => {}
        Some("log") if ty.plural == "pods" && ty.group.is_empty() && *method == Method::GET => {
            return super::logs::serve(shared.clone(), &p, query).await;
        }
        Some("scale") => {
            let paths = ty.scale.clone().ok_or(ApiError::UnknownPath)?;
            return scale_subresource(shared, method, headers, query, &ty, &paths, &p, &body);
        }
        Some(_) => return Err(ApiError::UnknownPath),
    }
    if sub == Some("status") && !ty.status_subresource {
        return Err(ApiError::UnknownPath);
    }
    let status_write = sub == Some("status");
    let sty = storage_type(shared, &ty);
    let dry = is_dry_run(query)?;
    let watching = matches!(query.get("watch").map(String::as_str), Some("true" | "1"));
    let want_table = table::wants_table(headers);
    match (method.as_str(), &p.name) {
        ("GET", None) if watching => watch(shared.clone(), &ty, &p, query, want_table),
        ("GET", None) => list(shared, &ty, &p, query, want_table),
        ("GET", Some(name)) => {
            let obj = shared
                .store()
                .get(
                    &ty.storage_key(),
                    p.namespace.as_deref().unwrap_or(""),
                    name,
                )
                .ok_or_else(|| ApiError::not_found(&ty.group, &ty.plural, name))?;
            let out = present(&ty, &obj).into_owned();
            if want_table {
                return Ok(json_response(
                    StatusCode::OK,
                    &table::render(
                        &ty,
                        &[out],
                        json!({}),
                        query
                            .get("includeObject")
                            .map(String::as_str)
                            .unwrap_or("Metadata"),
                    ),
                ));
            }
            Ok(json_response(StatusCode::OK, &out))
        }
        ("POST", None) => {
            let obj = storage_form(&ty, parse_body(headers, &body)?);
            let warnings = field_validation(&ty, query, &obj)?;
            let manager = field_manager(headers, query);
            let created = shared.write_or_dry(dry, |s| {
                objects::create(
                    s,
                    &sty,
                    p.namespace.as_deref(),
                    obj,
                    Ownership::Update(&manager),
                    schema_hook,
                )
            })?;
            Ok(with_warnings(
                json_response(StatusCode::CREATED, &present(&ty, &created)),
                &warnings,
            ))
        }
        ("PUT", Some(name)) => {
            let obj = storage_form(&ty, parse_body(headers, &body)?);
            let warnings = field_validation(&ty, query, &obj)?;
            let manager = field_manager(headers, query);
            let ns = p.namespace.clone().unwrap_or_default();
            let updated = shared.write_or_dry(dry, |s| {
                let old = s.get(&ty.storage_key(), &ns, name).ok_or_else(|| ApiError::not_found(&ty.group, &ty.plural, name))?;
                match obj.pointer("/metadata/resourceVersion").and_then(Value::as_str) {
                    None | Some("") => {
                        return Err(ApiError::Invalid {
                            message: format!("{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update", ty.kind),
                            status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "reason": "Invalid", "code": 422,
                                "message": format!("{} \"{name}\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update", ty.kind),
                                "details": {"name": name, "group": ty.group, "kind": ty.kind,
                                            "causes": [{"reason": "FieldValueInvalid", "message": "Invalid value: 0x0: must be specified for an update", "field": "metadata.resourceVersion"}]}}),
                        });
                    }
                    Some(rv) if Some(rv) != old.pointer("/metadata/resourceVersion").and_then(Value::as_str) => {
                        return Err(ApiError::stale(&ty.group, &ty.plural, name));
                    }
                    Some(_) => {}
                }
                objects::update(s, &sty, &old, obj, status_write, Ownership::Update(&manager), schema_hook)
            })?;
            Ok(with_warnings(
                json_response(StatusCode::OK, &present(&ty, &updated)),
                &warnings,
            ))
        }
        ("PATCH", Some(name)) => {
            patch_object(shared, headers, query, &ty, &p, name, &body, status_write)
        }
        ("DELETE", Some(name)) => {
            let opts = if body.is_empty() {
                json!({})
            } else {
                parse_json(&body)?
            };
            let propagation = Propagation::parse(
                opts.get("propagationPolicy")
                    .and_then(Value::as_str)
                    .or(query.get("propagationPolicy").map(String::as_str)),
            )?;
            let precondition = opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from);
            let ns = p.namespace.clone().unwrap_or_default();
            match shared.write_or_dry(dry, |s| {
                objects::delete(s, &sty, &ns, name, propagation, precondition.as_deref())
            })? {
                Deletion::Pending(obj) => Ok(json_response(StatusCode::OK, &present(&ty, &obj))),
                Deletion::Removed(obj) => {
                    if ty.custom {
                        Ok(json_response(
                            StatusCode::OK,
                            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                            "details": {"name": name, "group": ty.group, "kind": ty.plural, "uid": obj["metadata"]["uid"]}}),
                        ))
                    } else {
                        Ok(json_response(StatusCode::OK, &present(&ty, &obj)))
                    }
                }
            }
        }
        ("DELETE", None) => {
            let label =
                LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
            let field = field_selector(&ty, query)?;
            let ns = p.namespace.clone();
            let items = shared.write_or_dry(dry, |s| {
                let names: Vec<_> = s
                    .list(&ty.storage_key(), ns.as_deref(), None)
                    .filter(|(_, o)| label.matches(o) && field.matches(o))
                    .map(|(k, _)| k.clone())
                    .collect();
                let mut out = Vec::new();
                for (ons, oname) in names {
                    match objects::delete(s, &sty, &ons, &oname, Propagation::Background, None) {
                        Ok(Deletion::Pending(o) | Deletion::Removed(o)) => {
                            out.push(present(&ty, &o).into_owned())
                        }
                        Err(ApiError::NotFound { .. }) => {}
                        Err(e) => return Err(e),
                    }
                }
                Ok(out)
            })?;
            let rv = shared.store().resource_version();
            Ok(json_response(
                StatusCode::OK,
                &json!({"kind": format!("{}List", ty.kind), "apiVersion": ty.api_version(),
                "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            ))
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}

/// The request's `fieldSelector`, refused when the real API server would
/// refuse it (a field it cannot select on).
fn field_selector(
    ty: &ResourceType,
    query: &HashMap<String, String>,
) -> Result<FieldSelector, ApiError> {
    let field = FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
    field.check(&ty.group, &ty.kind)?;
    Ok(field)
}

/// Unknown fields of an object body under `fieldValidation`: Strict is a
/// 400, Warn (the default) and Ignore prune them; Warn reports each in a
/// header. Custom objects are checked against their CRD's schema, built-in
/// ones against their Kubernetes type ([`builtin_unknown_fields`]).
fn field_validation(
    ty: &ResourceType,
    query: &HashMap<String, String>,
    body: &Value,
) -> Result<Vec<String>, ApiError> {
    let mode = query
        .get("fieldValidation")
        .map(String::as_str)
        .unwrap_or("Warn");
    if mode == "Ignore" {
        return Ok(vec![]);
    }
    let unknown = match &ty.admission {
        Some(admission) => crate::cluster::schema::unknown_fields(admission.schema(), body),
        None => builtin_unknown_fields(&ty.group, &ty.kind, body).unwrap_or_default(),
    };
    if unknown.is_empty() {
        return Ok(vec![]);
    }
    let listed: Vec<String> = unknown
        .iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if mode == "Strict" {
        // Word for word what kube-apiserver answers (tests/cluster/cluster_differential.rs).
        return Err(ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
            ty.kind,
            ty.version,
            ty.kind,
            listed.join(", ")
        )));
    }
    Ok(listed)
}

/// The fields of a built-in object that its Kubernetes type does not have,
/// as `spec.template.spec.containers[0].foo`: what survives a round trip
/// through the k8s-openapi type is known, anything else is not. A null is
/// an unset field, never unknown. `None` for kinds not listed here (and for
/// bodies that do not decode, which later validation refuses).
fn builtin_unknown_fields(group: &str, kind: &str, body: &Value) -> Option<Vec<String>> {
    use k8s_openapi::api::{apps, batch, coordination, core, events, rbac};
    fn round_trip<T: serde::de::DeserializeOwned + serde::Serialize>(
        body: &Value,
    ) -> Option<Value> {
        serde_json::to_value(serde_json::from_value::<T>(body.clone()).ok()?).ok()
    }
    let typed = match (group, kind) {
        ("", "ConfigMap") => round_trip::<core::v1::ConfigMap>(body),
        ("", "Secret") => round_trip::<core::v1::Secret>(body),
        ("", "Service") => round_trip::<core::v1::Service>(body),
        ("", "Pod") => round_trip::<core::v1::Pod>(body),
        ("", "Namespace") => round_trip::<core::v1::Namespace>(body),
        ("", "ServiceAccount") => round_trip::<core::v1::ServiceAccount>(body),
        ("", "Event") => round_trip::<core::v1::Event>(body),
        ("apps", "Deployment") => round_trip::<apps::v1::Deployment>(body),
        ("batch", "Job") => round_trip::<batch::v1::Job>(body),
        ("coordination.k8s.io", "Lease") => round_trip::<coordination::v1::Lease>(body),
        ("events.k8s.io", "Event") => round_trip::<events::v1::Event>(body),
        ("rbac.authorization.k8s.io", "Role") => round_trip::<rbac::v1::Role>(body),
        ("rbac.authorization.k8s.io", "RoleBinding") => round_trip::<rbac::v1::RoleBinding>(body),
        _ => None,
    }?;
    fn missing(given: &Value, kept: &Value, path: &str, out: &mut Vec<String>) {
        match (given, kept) {
            (Value::Object(g), Value::Object(k)) => {
                for (key, value) in g.iter().filter(|(_, v)| !v.is_null()) {
                    let p = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    match k.get(key) {
                        Some(kv) => missing(value, kv, &p, out),
                        None => out.push(p),
                    }
                }
            }
            (Value::Array(g), Value::Array(k)) => {
                for (i, (gv, kv)) in g.iter().zip(k).enumerate() {
                    missing(gv, kv, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    missing(body, &typed, "", &mut out);
    Some(out)
}

/// Adds one `Warning` header per message, as the API server does.
fn with_warnings(mut resp: Response, warnings: &[String]) -> Response {
    for w in warnings {
        let text = format!("299 - {}", Value::String(w.clone()));
        if let Ok(v) = axum::http::HeaderValue::from_str(&text) {
            resp.headers_mut().append("warning", v);
        }
    }
    resp
}

/// `dryRun=All` validates a write without keeping it; other values are 400.
fn is_dry_run(query: &HashMap<String, String>) -> Result<bool, ApiError> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "dryRun `{other}` is not supported; the only value is `All`"
        ))),
    }
}

/// The manager a write is recorded under.
fn field_manager(headers: &HeaderMap, query: &HashMap<String, String>) -> String {
    if let Some(m) = query.get("fieldManager").filter(|m| !m.is_empty()) {
        return m.clone();
    }
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .filter(|s| !s.is_empty())
        .unwrap_or("unknown")
        .to_string()
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default()
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid JSON: {e}")))
}

fn parse_yaml(body: &[u8]) -> Result<Value, ApiError> {
    serde_yaml::from_slice(body)
        .map_err(|e| ApiError::BadRequest(format!("the request body is not valid YAML: {e}")))
}

/// Parses a create/update body by its content type.
fn parse_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    match content_type(headers).as_str() {
        "application/json" | "" => parse_json(body),
        "application/yaml" => parse_yaml(body),
        ct if protobuf::is_protobuf(ct) => protobuf::decode_object(body),
        _ => Err(ApiError::UnsupportedMediaType {
            accepted: format!(
                "application/json, application/yaml, {} (built-in kinds)",
                protobuf::MEDIA_TYPE
            ),
        }),
    }
}

/// Answers are JSON only. A client that offers only binary encodings
/// (protobuf, CBOR) gets 406; kubectl and client-go offer protobuf first with
/// JSON as a fallback, and get JSON. Other offers (YAML, text) keep getting
/// JSON as before, which YAML readers parse too.
fn check_accept(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(accept) = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .filter(|a| !a.trim().is_empty())
    else {
        return Ok(());
    };
    let binary_only = accept.split(',').all(|r| {
        let media = r
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        media.contains("protobuf") || media == "application/cbor"
    });
    if binary_only {
        Err(ApiError::NotAcceptable {
            requested: accept.to_string(),
        })
    } else {
        Ok(())
    }
}

/// Events of events.k8s.io are stored in core form.
fn storage_form(ty: &ResourceType, obj: Value) -> Value {
    if ty.group == "events.k8s.io" {
        convert::event_to_core(&obj)
    } else {
        obj
    }
}

/// An object as this type's clients see it.
fn present<'a>(ty: &ResourceType, obj: &'a Value) -> Cow<'a, Value> {
    if ty.group == "events.k8s.io" {
        Cow::Owned(convert::event_from_core(obj))
    } else {
        Cow::Borrowed(obj)
    }
}

/// The type used for storage semantics (core events for events.k8s.io).
fn storage_type(shared: &Shared, ty: &ResourceType) -> ResourceType {
    if ty.group == "events.k8s.io"
        && let Some(core) = shared.store().registry.find("", "v1", "events")
    {
        return core.clone();
    }
    ty.clone()
}

#[allow(clippy::too_many_arguments)]
fn patch_object(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    ty: &ResourceType,
    p: &ResourcePath,
    name: &str,
    body: &[u8],
    status_write: bool,
) -> Result<Response, ApiError> {
    let ct = content_type(headers);
    let manager = field_manager(headers, query);
    let force = query.get("force").is_some_and(|f| f == "true");
    let ns = p.namespace.clone().unwrap_or_default();
    let sty = storage_type(shared, ty);
    let conv = |v: Value| storage_form(ty, v);
    let mut warnings = Vec::new();
    let dry = is_dry_run(query)?;
    let (result, created) = match ct.as_str() {
        "application/apply-patch+yaml" => {
            if !query.contains_key("fieldManager") {
                return Err(ApiError::BadRequest(
                    "PATCH, application/apply-patch+yaml requires fieldManager to be set".into(),
                ));
            }
            let mut config = conv(parse_yaml(body)?);
            warnings = field_validation(ty, query, &config)?;
            if config.get("apiVersion").is_none() || config.get("kind").is_none() {
                return Err(ApiError::BadRequest(
                    "apply configuration must set apiVersion and kind (server-side apply needs the full type)".into(),
                ));
            }
            objects::check_identity(&sty, p.namespace.as_deref(), &mut config)?;
            if config
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .is_none()
            {
                config["metadata"]["name"] = json!(name);
            }
            let scope = Scope {
                status_separate: sty.status_subresource,
                status_write,
            };
            shared.write_or_dry(dry, |s| {
                let live = s.get(&sty.storage_key(), &ns, name);
                check_patch_rv(&sty, name, &config, live.as_deref())?;
                let merged = patch::server_side_apply(
                    live.as_deref(),
                    &config,
                    &manager,
                    force,
                    &sty.api_version(),
                    scope,
                    (&sty.group, &sty.plural),
                    name,
                )?;
                match live {
                    Some(old) => objects::update(
                        s,
                        &sty,
                        &old,
                        merged,
                        status_write,
                        Ownership::Computed,
                        schema_hook,
                    )
                    .map(|o| (o, false)),
                    None => {
                        if status_write {
                            return Err(ApiError::not_found(&ty.group, &ty.plural, name));
                        }
                        objects::create(
                            s,
                            &sty,
                            p.namespace.as_deref(),
                            merged,
                            Ownership::Computed,
                            schema_hook,
                        )
                        .map(|o| (o, true))
                    }
                }
            })?
        }
        "application/merge-patch+json"
        | "application/json-patch+json"
        | "application/strategic-merge-patch+json" => {
            if ct == "application/strategic-merge-patch+json" && ty.custom {
                return Err(ApiError::UnsupportedMediaType {
                    accepted: "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml".into(),
                });
            }
            let patch_body = parse_json(body)?;
            if ct != "application/json-patch+json" {
                warnings = field_validation(ty, query, &patch_body)?;
            }
            shared.write_or_dry(dry, |s| {
                let old = s
                    .get(&sty.storage_key(), &ns, name)
                    .ok_or_else(|| ApiError::not_found(&ty.group, &ty.plural, name))?;
                let mut target = present(ty, &old).into_owned();
                match ct.as_str() {
                    "application/merge-patch+json" => {
                        check_patch_rv(&sty, name, &patch_body, Some(&old))?;
                        patch::merge_patch(&mut target, &patch_body);
                    }
                    "application/json-patch+json" => patch::json_patch(&mut target, &patch_body)?,
                    _ => {
                        check_patch_rv(&sty, name, &patch_body, Some(&old))?;
                        patch::strategic_merge(&mut target, &patch_body);
                    }
                }
                let target = conv(target);
                objects::update(
                    s,
                    &sty,
                    &old,
                    target,
                    status_write,
                    Ownership::Update(&manager),
                    schema_hook,
                )
                .map(|o| (o, false))
            })?
        }
        _ => {
            return Err(ApiError::UnsupportedMediaType {
                accepted: "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json".into(),
            });
        }
    };
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_warnings(
        json_response(code, &present(ty, &result)),
        &warnings,
    ))
}

/// `{plural}/{name}/scale`: the replica count read and written as an
/// `autoscaling/v1 Scale` (GET, PUT, and merge, JSON or strategic PATCH).
#[allow(clippy::too_many_arguments)]
fn scale_subresource(
    shared: &Arc<Shared>,
    method: &Method,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    ty: &ResourceType,
    paths: &ScalePaths,
    p: &ResourcePath,
    body: &[u8],
) -> Result<Response, ApiError> {
    let name = p.name.as_deref().ok_or(ApiError::UnknownPath)?;
    let ns = p.namespace.clone().unwrap_or_default();
    let current = |s: &Store| {
        s.get(&ty.storage_key(), &ns, name)
            .ok_or_else(|| ApiError::not_found(&ty.group, &ty.plural, name))
    };
    // What the write asks for: a whole Scale (PUT) or a patch of the current one.
    enum ScaleWrite {
        Replace(Value),
        Patch(String, Value),
    }
    let request = match method.as_str() {
        "GET" => {
            let obj = current(&shared.store())?;
            return Ok(json_response(StatusCode::OK, &scale::to_scale(paths, &obj)));
        }
        "PUT" => ScaleWrite::Replace(parse_body(headers, body)?),
        "PATCH" => {
            let ct = content_type(headers);
            match ct.as_str() {
                "application/merge-patch+json"
                | "application/json-patch+json"
                | "application/strategic-merge-patch+json" => {
                    ScaleWrite::Patch(ct, parse_json(body)?)
                }
                _ => {
                    return Err(ApiError::UnsupportedMediaType {
                        accepted: "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (the scale subresource takes no server-side apply)".into(),
                    });
                }
            }
        }
        _ => return Err(ApiError::MethodNotAllowed),
    };
    let dry = is_dry_run(query)?;
    let manager = field_manager(headers, query);
    let updated = shared.write_or_dry(dry, |s| {
        let old = current(s)?;
        let wanted = match request {
            ScaleWrite::Replace(v) => v,
            ScaleWrite::Patch(ct, patch_body) => {
                let mut target = scale::to_scale(paths, &old);
                match ct.as_str() {
                    "application/merge-patch+json" => patch::merge_patch(&mut target, &patch_body),
                    "application/json-patch+json" => patch::json_patch(&mut target, &patch_body)?,
                    _ => patch::strategic_merge(&mut target, &patch_body),
                }
                target
            }
        };
        let candidate = scale::apply_scale(ty, paths, &old, &wanted)?;
        objects::update(
            s,
            ty,
            &old,
            candidate,
            false,
            Ownership::Update(&manager),
            schema_hook,
        )
    })?;
    Ok(json_response(
        StatusCode::OK,
        &scale::to_scale(paths, &updated),
    ))
}

/// A patch carrying metadata.resourceVersion is a precondition.
fn check_patch_rv(
    ty: &ResourceType,
    name: &str,
    patch: &Value,
    live: Option<&Value>,
) -> Result<(), ApiError> {
    if let Some(rv) = patch
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
    {
        let current = live
            .and_then(|l| l.pointer("/metadata/resourceVersion"))
            .and_then(Value::as_str);
        if current != Some(rv) {
            return Err(ApiError::stale(&ty.group, &ty.plural, name));
        }
    }
    Ok(())
}

fn list(
    shared: &Arc<Shared>,
    ty: &ResourceType,
    p: &ResourcePath,
    query: &HashMap<String, String>,
    want_table: bool,
) -> Result<Response, ApiError> {
    let label = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let field = field_selector(ty, query)?;
    let limit: usize = match query.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l.parse().map_err(|_| {
            ApiError::BadRequest(format!("limit `{l}` is not a non-negative integer"))
        })?,
        None => 0,
    };
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (ns, name) = token.split_once('/').ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "continue token `{token}` is not one this server issued"
                ))
            })?;
            Some((ns.to_string(), name.to_string()))
        }
        None => None,
    };
    let store = shared.store();
    let rv = store.resource_version();
    let key = ty.storage_key();
    let mut items: Vec<Arc<Value>> = Vec::new();
    let mut next: Option<String> = None;
    let mut remaining = 0usize;
    let matches = |o: &Value| label.matches(o) && field.matches(o);
    if let (Some(name), None) = (field.name(), &after) {
        // A name-pinned list (kubectl wait/delete) needs no scan.
        let ns = p.namespace.as_deref().unwrap_or("");
        if p.namespace.is_some() || !ty.namespaced {
            if let Some(o) = store.get(&key, ns, name).filter(|o| matches(o)) {
                items.push(o);
            }
        } else {
            items.extend(
                store
                    .list(&key, None, None)
                    .filter(|(k, o)| k.1 == name && matches(o))
                    .map(|(_, o)| o.clone()),
            );
        }
    } else {
        for (_, o) in store.list(&key, p.namespace.as_deref(), after) {
            if !matches(o) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                if next.is_none() {
                    let last = object_key(items.last().map(|a| a.as_ref()).unwrap_or(&Value::Null));
                    next = Some(format!("{}/{}", last.0, last.1));
                }
                remaining += 1;
                continue;
            }
            items.push(o.clone());
        }
    }
    drop(store);
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = next {
        meta["continue"] = json!(token);
        meta["remainingItemCount"] = json!(remaining);
    }
    if want_table {
        let objs: Vec<Value> = items.iter().map(|o| present(ty, o).into_owned()).collect();
        let include = query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        return Ok(json_response(
            StatusCode::OK,
            &table::render(ty, &objs, meta, include),
        ));
    }
    // Serialise item by item: large lists avoid one big intermediate Value.
    let mut out = Vec::with_capacity(items.len() * 512 + 256);
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
            ty.kind,
            ty.api_version(),
            meta
        )
        .as_bytes(),
    );
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, present(ty, o).as_ref())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    out.extend_from_slice(b"]}");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

struct WatchFilter {
    key: (String, String),
    namespace: Option<String>,
    label: LabelSelector,
    field: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, key: &(String, String), ns: &str, obj: &Value) -> bool {
        *key == self.key
            && self.namespace.as_deref().is_none_or(|n| n == ns)
            && self.label.matches(obj)
            && self.field.matches(obj)
    }
}

fn watch(
    shared: Arc<Shared>,
    ty: &ResourceType,
    p: &ResourcePath,
    query: &HashMap<String, String>,
    want_table: bool,
) -> Result<Response, ApiError> {
    let filter = WatchFilter {
        key: ty.storage_key(),
        namespace: p.namespace.clone(),
        label: LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        field: field_selector(ty, query)?,
    };
    let timeout = match query.get("timeoutSeconds").filter(|t| !t.is_empty()) {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "timeoutSeconds `{t}` is not a whole number of seconds"
            ))
        })?),
        None => Duration::from_secs(1800),
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let send_initial = query.get("sendInitialEvents").is_some_and(|b| b == "true");
    let from: Option<u64> = match query.get("resourceVersion").filter(|r| !r.is_empty()) {
        Some(r) => Some(r.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "resourceVersion `{r}` is not a version this server issued"
            ))
        })?),
        None => None,
    };
    let ty = ty.clone();
    let include = query
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    let (initial, start) = {
        let store = shared.store();
        match from {
            Some(rv) if rv > 0 && !send_initial => (Vec::new(), rv),
            _ => {
                let objs: Vec<Arc<Value>> = store
                    .list(&filter.key, filter.namespace.as_deref(), None)
                    .filter(|(_, o)| filter.label.matches(o) && filter.field.matches(o))
                    .map(|(_, o)| o.clone())
                    .collect();
                (objs, store.resource_version())
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut changes = shared.changed.subscribe();
    let mut closing = shared.closing.subscribe();
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first_table = true;
        let plain = !want_table && ty.group != "events.k8s.io";
        let mut line = |event: &str, obj: &Value| -> Bytes {
            let object = if want_table && event != "BOOKMARK" && event != "ERROR" {
                let t = table::render(&ty, &[present(&ty, obj).into_owned()], json!({}), &include);
                let t = if first_table {
                    t
                } else {
                    table::without_columns(t)
                };
                first_table = false;
                t
            } else if event == "ERROR" {
                obj.clone()
            } else {
                present(&ty, obj).into_owned()
            };
            let mut s = json!({"type": event, "object": object}).to_string();
            s.push('\n');
            Bytes::from(s)
        };
        let bookmark = |rv: u64, initial_end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"kind": ty.kind, "apiVersion": ty.api_version(), "metadata": meta})
        };
        for obj in &initial {
            if tx.send(Ok(line("ADDED", obj))).await.is_err() {
                return;
            }
        }
        let mut last = start;
        if send_initial
            && tx
                .send(Ok(line("BOOKMARK", &bookmark(last, true))))
                .await
                .is_err()
        {
            return;
        }
        loop {
            let batch = shared.store().changes_since(last);
            match batch {
                Err(gone) => {
                    let _ = tx.send(Ok(line("ERROR", &gone.status()))).await;
                    return;
                }
                Ok(batch) => {
                    for change in batch {
                        last = change.rv;
                        if change.type_key != filter.key {
                            continue;
                        }
                        let now_in =
                            filter.matches(&change.type_key, &change.namespace, &change.object);
                        let was_in = change.previous.as_ref().is_some_and(|p| {
                            filter.matches(&change.type_key, &change.namespace, p)
                        });
                        // A modification moving an object into or out of a selector is an
                        // ADDED or DELETED for that watch, as on a real API server.
                        let event = match (change.event, was_in, now_in) {
                            (EventType::Modified, false, true) => "ADDED",
                            (EventType::Modified, true, false) => "DELETED",
                            (_, _, false) => continue,
                            (EventType::Added, _, true) => "ADDED",
                            (EventType::Modified, _, true) => "MODIFIED",
                            (EventType::Deleted, _, true) => "DELETED",
                        };
                        let bytes = if plain {
                            // The common case: encode the object once for all watchers.
                            let encoded = change.encoded.get_or_init(|| {
                                Bytes::from(
                                    serde_json::to_vec(change.object.as_ref()).unwrap_or_default(),
                                )
                            });
                            let mut buf = Vec::with_capacity(encoded.len() + 32);
                            buf.extend_from_slice(
                                format!("{{\"type\":\"{event}\",\"object\":").as_bytes(),
                            );
                            buf.extend_from_slice(encoded);
                            buf.extend_from_slice(b"}\n");
                            Bytes::from(buf)
                        } else {
                            line(event, &change.object)
                        };
                        if tx.send(Ok(bytes)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                res = changes.changed() => if res.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => {
                    if bookmarks {
                        let rv = shared.store().resource_version().max(last);
                        let _ = tx.send(Ok(line("BOOKMARK", &bookmark(rv, false)))).await;
                    }
                    return;
                }
                _ = tokio::time::sleep(interval), if bookmarks => {
                    // Nothing in this watch changed for a while: tell the client how far it has read.
                    let rv = { let s = shared.store(); let rv = s.resource_version(); if s.changes_since(last).map(|c| c.is_empty()).unwrap_or(false) { rv } else { last } };
                    if tx.send(Ok(line("BOOKMARK", &bookmark(rv, false)))).await.is_err() { return; }
                    last = last.max(rv);
                }
                _ = tx.closed() => return,
                _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}
