//! The verbs that read one object or write: get, create, update, patch
//! (server-side apply included), delete, deletecollection, and the scale
//! subresource. Every write can be a dry run (`dryRun=All`).

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::Response;
use serde_json::{Value, json};

use super::convert::{present, storage_form};
use super::error::ApiError;
use super::field_validation::field_validation;
use super::listwatch::field_selector;
use super::negotiation::{content_type, parse_body, parse_json, parse_yaml};
use super::objects::{self, Deletion, Ownership, Propagation};
use super::patch::{self, Scope};
use super::printers;
use super::request::ResourcePath;
use super::resources::ResourceType;
use super::scale::{self, ScalePaths};
use super::schema_hook;
use super::selector::LabelSelector;
use super::server::{Shared, json_response, with_warnings};
use super::store::Store;

/// One routed request on a resource type, as the verbs read it.
#[derive(Clone, Copy)]
pub(super) struct Request<'a> {
    /// The server's state.
    pub shared: &'a Arc<Shared>,
    /// Request headers.
    pub headers: &'a HeaderMap,
    /// Query parameters.
    pub query: &'a HashMap<String, String>,
    /// The type the path names.
    pub ty: &'a ResourceType,
    /// The parsed path.
    pub path: &'a ResourcePath,
}

impl Request<'_> {
    /// The object's name (routing gives every object verb one).
    fn name(&self) -> Result<&str, ApiError> {
        self.path.name.as_deref().ok_or(ApiError::UnknownPath)
    }

    fn namespace(&self) -> String {
        self.path.namespace.clone().unwrap_or_default()
    }
}

/// GET of one object, as JSON or a Table.
pub(super) fn get(request: &Request<'_>, want_table: bool) -> Result<Response, ApiError> {
    let (ty, name) = (request.ty, request.name()?);
    let obj = request
        .shared
        .store()
        .get(&ty.storage_key(), &request.namespace(), name)
        .ok_or_else(|| ApiError::not_found(&ty.group, &ty.plural, name))?;
    let out = present(ty, &obj).into_owned();
    if want_table {
        let include = request
            .query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        return Ok(json_response(
            StatusCode::OK,
            &printers::render(ty, &[out], json!({}), include),
        ));
    }
    Ok(json_response(StatusCode::OK, &out))
}

/// POST of a new object.
pub(super) fn create(request: &Request<'_>, body: &[u8]) -> Result<Response, ApiError> {
    let Request {
        shared,
        headers,
        query,
        ty,
        path: p,
    } = *request;
    let sty = shared.storage_type(ty);
    let obj = storage_form(ty, parse_body(headers, body)?);
    let warnings = field_validation(ty, query, &obj)?;
    let manager = field_manager(headers, query);
    let created = shared.write_or_dry(is_dry_run(query)?, |s| {
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
        json_response(StatusCode::CREATED, &present(ty, &created)),
        &warnings,
    ))
}

/// PUT of a whole object, whose resourceVersion must be the stored one.
pub(super) fn update(
    request: &Request<'_>,
    body: &[u8],
    status_write: bool,
) -> Result<Response, ApiError> {
    let Request {
        shared,
        headers,
        query,
        ty,
        ..
    } = *request;
    let name = request.name()?;
    let sty = shared.storage_type(ty);
    let obj = storage_form(ty, parse_body(headers, body)?);
    let warnings = field_validation(ty, query, &obj)?;
    let manager = field_manager(headers, query);
    let ns = request.namespace();
    let updated = shared.write_or_dry(is_dry_run(query)?, |s| {
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
        json_response(StatusCode::OK, &present(ty, &updated)),
        &warnings,
    ))
}

/// DELETE of one object: removed, or marked while finalizers remain.
pub(super) fn delete(request: &Request<'_>, body: &[u8]) -> Result<Response, ApiError> {
    let Request {
        shared, query, ty, ..
    } = *request;
    let name = request.name()?;
    let sty = shared.storage_type(ty);
    let opts = if body.is_empty() {
        json!({})
    } else {
        parse_json(body)?
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
    let ns = request.namespace();
    match shared.write_or_dry(is_dry_run(query)?, |s| {
        objects::delete(s, &sty, &ns, name, propagation, precondition.as_deref())
    })? {
        Deletion::Pending(obj) => Ok(json_response(StatusCode::OK, &present(ty, &obj))),
        Deletion::Removed(obj) => {
            if ty.custom {
                Ok(json_response(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                    "details": {"name": name, "group": ty.group, "kind": ty.plural, "uid": obj["metadata"]["uid"]}}),
                ))
            } else {
                Ok(json_response(StatusCode::OK, &present(ty, &obj)))
            }
        }
    }
}

/// DELETE of every object of a collection the selectors pick.
pub(super) fn delete_collection(request: &Request<'_>) -> Result<Response, ApiError> {
    let Request {
        shared,
        query,
        ty,
        path: p,
        ..
    } = *request;
    let sty = shared.storage_type(ty);
    let label = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let field = field_selector(ty, query)?;
    let ns = p.namespace.clone();
    let items = shared.write_or_dry(is_dry_run(query)?, |s| {
        let names: Vec<_> = s
            .list(&ty.storage_key(), ns.as_deref(), None)
            .filter(|(_, o)| label.matches(o) && field.matches(o))
            .map(|(k, _)| k.clone())
            .collect();
        let mut out = Vec::new();
        for (ons, oname) in names {
            match objects::delete(s, &sty, &ons, &oname, Propagation::Background, None) {
                Ok(Deletion::Pending(o) | Deletion::Removed(o)) => {
                    out.push(present(ty, &o).into_owned())
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

/// `dryRun=All` validates a write without keeping it; other values are 400.
pub(super) fn is_dry_run(query: &HashMap<String, String>) -> Result<bool, ApiError> {
    match query.get("dryRun").map(String::as_str) {
        None | Some("") => Ok(false),
        Some("All") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "dryRun `{other}` is not supported; the only value is `All`"
        ))),
    }
}

/// The manager a write is recorded under.
pub(super) fn field_manager(headers: &HeaderMap, query: &HashMap<String, String>) -> String {
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

/// PATCH of an object: server-side apply (which may create it), merge, JSON
/// or strategic merge patch.
pub(super) fn patch_object(
    request: &Request<'_>,
    body: &[u8],
    status_write: bool,
) -> Result<Response, ApiError> {
    let Request {
        shared,
        headers,
        query,
        ty,
        path: p,
    } = *request;
    let name = request.name()?;
    let ct = content_type(headers);
    let manager = field_manager(headers, query);
    let force = query.get("force").is_some_and(|f| f == "true");
    let ns = p.namespace.clone().unwrap_or_default();
    let sty = shared.storage_type(ty);
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
pub(super) fn scale_subresource(
    request: &Request<'_>,
    method: &Method,
    paths: &ScalePaths,
    body: &[u8],
) -> Result<Response, ApiError> {
    let Request {
        shared,
        headers,
        query,
        ty,
        path: p,
    } = *request;
    let name = request.name()?;
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
