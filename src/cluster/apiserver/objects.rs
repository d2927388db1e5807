//! Object semantics on top of the store: create, update (with generation,
//! status subresource and managed fields), deletion with finalizers,
//! owner-reference garbage collection, namespaces and CRDs.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use rand::Rng;
use serde_json::{Value, json};

use super::error::ApiError;
use super::patch::{self, Scope};
use super::resources::ResourceType;
use super::store::{EventType, Store, now_rfc3339};

/// How a write records field ownership.
#[derive(Debug, Clone, Copy)]
pub enum Ownership<'a> {
    /// An Update by this manager: it owns what it changed.
    Update(&'a str),
    /// Managed fields were already computed (server-side apply).
    Computed,
}

/// How dependents of a deleted object are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    /// Dependents are deleted by the garbage collector (the default).
    Background,
    /// Dependents are deleted first: the owner stays, with the
    /// `foregroundDeletion` finalizer, until its blocking dependents are gone.
    Foreground,
    /// Dependents keep running; their owner references are removed.
    Orphan,
}

impl Propagation {
    /// Parses `propagationPolicy`.
    pub fn parse(s: Option<&str>) -> Result<Self, ApiError> {
        match s {
            None | Some("Background") => Ok(Propagation::Background),
            Some("Foreground") => Ok(Propagation::Foreground),
            Some("Orphan") => Ok(Propagation::Orphan),
            Some(other) => Err(ApiError::BadRequest(format!(
                "propagationPolicy `{other}` is not one of Background, Foreground, Orphan"
            ))),
        }
    }
}

/// Outcome of a DELETE.
#[derive(Debug)]
pub enum Deletion {
    /// Finalizers remain: the object now carries a deletionTimestamp.
    Pending(Arc<Value>),
    /// The object is gone.
    Removed(Arc<Value>),
}

/// Hook validating (and defaulting/pruning) custom objects against their CRD schema.
pub type SchemaHook = fn(&ResourceType, &mut Value, Option<&Value>) -> Result<(), ApiError>;

fn meta_str<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(key)?.as_str()
}

fn invalid(ty: &ResourceType, name: &str, field: &str, message: &str) -> ApiError {
    let text = format!("{} \"{name}\" is invalid: {field}: {message}", ty.kind);
    ApiError::Invalid {
        status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": text,
                       "reason": "Invalid", "code": 422,
                       "details": {"name": name, "group": ty.group, "kind": ty.kind,
                                   "causes": [{"reason": "FieldValueInvalid", "message": message, "field": field}]}}),
        message: text,
    }
}

/// Checks that the body is this type and sits in the URL's namespace; fills apiVersion/kind.
pub fn check_identity(
    ty: &ResourceType,
    ns: Option<&str>,
    obj: &mut Value,
) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(ApiError::BadRequest(
            "the request body must be a JSON object (a Kubernetes resource)".into(),
        ));
    }
    let api_version = ty.api_version();
    match obj.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v != api_version => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )));
        }
        _ => obj["apiVersion"] = json!(api_version),
    }
    match obj.get("kind").and_then(Value::as_str) {
        Some(k) if k != ty.kind => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({}) for {}",
                ty.kind, ty.plural
            )));
        }
        _ => obj["kind"] = json!(ty.kind),
    }
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    if ty.namespaced {
        let want = ns.unwrap_or("default");
        match meta_str(obj, "namespace") {
            Some(given) if !given.is_empty() && given != want => {
                return Err(ApiError::BadRequest(format!(
                    "the namespace of the provided object ({given}) does not match the namespace sent on the request ({want})"
                )));
            }
            _ => obj["metadata"]["namespace"] = json!(want),
        }
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("namespace");
    }
    Ok(())
}

fn random_suffix() -> String {
    const CHARS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::rng();
    (0..5)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

/// Spec-like content: everything except metadata and status.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Value::Object(m) = &mut v {
        m.remove("metadata");
        m.remove("status");
    }
    v
}

fn ensure_namespace(store: &Store, ty: &ResourceType, obj: &Value) -> Result<(), ApiError> {
    if !ty.namespaced {
        return Ok(());
    }
    let ns = meta_str(obj, "namespace").unwrap_or_default();
    let nss = (String::new(), "namespaces".to_string());
    match store.get(&nss, "", ns) {
        None => Err(ApiError::not_found("", "namespaces", ns)),
        Some(n) if n.pointer("/metadata/deletionTimestamp").is_some() => Err(ApiError::Conflict {
            group: String::new(),
            resource: "namespaces".into(),
            name: ns.into(),
            message: format!("namespace {ns} is being terminated; objects cannot be created in it"),
        }),
        Some(_) => Ok(()),
    }
}

/// Server-filled parts of a CRD: names accepted, Established.
fn crd_status(obj: &mut Value) {
    let now = now_rfc3339();
    let names = obj.pointer("/spec/names").cloned().unwrap_or(json!({}));
    obj["status"] = json!({
        "acceptedNames": names,
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "storedVersions": obj.pointer("/spec/versions").and_then(Value::as_array).map(|vs| vs.iter()
            .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
            .filter_map(|v| v.get("name").cloned()).collect::<Vec<_>>()).unwrap_or_default(),
    });
}

fn parse_crd(ty: &ResourceType, obj: &Value) -> Result<CustomResourceDefinition, ApiError> {
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let crd: CustomResourceDefinition = serde_json::from_value(obj.clone()).map_err(|e| {
        invalid(
            ty,
            &name,
            "spec",
            &format!("not a valid CustomResourceDefinition: {e}"),
        )
    })?;
    let errors = crate::cluster::schema::validate_crd(&crd);
    if !errors.is_empty() {
        let status = crate::cluster::schema::invalid_status(&ty.group, &ty.kind, &name, &errors);
        let message = status
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("invalid CustomResourceDefinition")
            .to_string();
        return Err(ApiError::Invalid { message, status });
    }
    let want = format!("{}.{}", crd.spec.names.plural, crd.spec.group);
    if name != want {
        return Err(invalid(
            ty,
            &name,
            "metadata.name",
            &format!("must be spec.names.plural+\".\"+spec.group: `{want}`"),
        ));
    }
    if crd.spec.versions.iter().filter(|v| v.storage).count() != 1 {
        return Err(invalid(
            ty,
            &name,
            "spec.versions",
            "must have exactly one version marked as storage version",
        ));
    }
    Ok(crd)
}

fn is_crd_type(ty: &ResourceType) -> bool {
    ty.group == "apiextensions.k8s.io" && ty.plural == "customresourcedefinitions"
}

/// Creates an object (POST, or server-side apply of a missing object when `ownership` is Computed).
pub fn create(
    store: &mut Store,
    ty: &ResourceType,
    ns: Option<&str>,
    mut obj: Value,
    ownership: Ownership<'_>,
    schema: SchemaHook,
) -> Result<Arc<Value>, ApiError> {
    check_identity(ty, ns, &mut obj)?;
    let meta = &mut obj["metadata"];
    let has_name = meta
        .get("name")
        .and_then(Value::as_str)
        .is_some_and(|n| !n.is_empty());
    if !has_name {
        match meta.get("generateName").and_then(Value::as_str) {
            Some(prefix) if !prefix.is_empty() => {
                meta["name"] = json!(format!("{prefix}{}", random_suffix()))
            }
            _ => {
                return Err(invalid(
                    ty,
                    "",
                    "metadata.name",
                    "Required value: name or generateName is required",
                ));
            }
        }
    }
    let name = meta_str(&obj, "name").unwrap_or_default().to_string();
    let key = ty.storage_key();
    let ns_key = meta_str(&obj, "namespace").unwrap_or_default().to_string();
    if store.get(&key, &ns_key, &name).is_some() {
        return Err(ApiError::AlreadyExists {
            group: ty.group.clone(),
            resource: ty.plural.clone(),
            name,
        });
    }
    ensure_namespace(store, ty, &obj)?;
    if let Some(m) = obj["metadata"].as_object_mut() {
        for k in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            m.remove(k);
        }
    }
    obj["metadata"]["uid"] = json!(uuid::Uuid::new_v4().to_string());
    obj["metadata"]["creationTimestamp"] = json!(now_rfc3339());
    if ty.generation {
        obj["metadata"]["generation"] = json!(1);
    } else if let Some(m) = obj["metadata"].as_object_mut() {
        m.remove("generation");
    }
    if ty.custom && ty.status_subresource {
        // A CRD's status subresource ignores status on create.
        if let Some(m) = obj.as_object_mut() {
            m.remove("status");
        }
    }
    match (ty.group.as_str(), ty.plural.as_str()) {
        ("", "namespaces") => obj["status"] = json!({"phase": "Active"}),
        ("", "pods") if obj.pointer("/status/phase").is_none() => {
            obj["status"]["phase"] = json!("Pending")
        }
        _ => {}
    }
    schema(ty, &mut obj, None)?;
    let crd = if is_crd_type(ty) {
        let crd = parse_crd(ty, &obj)?;
        crd_status(&mut obj);
        Some(crd)
    } else {
        None
    };
    if let Ownership::Update(manager) = ownership {
        let scope = Scope {
            status_separate: ty.status_subresource,
            status_write: false,
        };
        patch::track_update(None, &mut obj, manager, &ty.api_version(), scope);
    }
    let stored = store.insert_raw(&key, obj, EventType::Added);
    if let Some(crd) = crd {
        store.registry.install_crd(&crd);
    }
    Ok(stored)
}

/// Writes a changed object: keeps identity, routes status, tracks managers,
/// bumps generation on spec change, and skips no-op writes entirely.
pub fn update(
    store: &mut Store,
    ty: &ResourceType,
    old: &Arc<Value>,
    mut candidate: Value,
    status_write: bool,
    ownership: Ownership<'_>,
    schema: SchemaHook,
) -> Result<Arc<Value>, ApiError> {
    let name = meta_str(old, "name").unwrap_or_default().to_string();
    let ns = meta_str(old, "namespace").map(String::from);
    check_identity(ty, ns.as_deref(), &mut candidate)?;
    if let Some(given) = meta_str(&candidate, "name")
        && given != name
    {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    let mut new = if ty.status_subresource && status_write {
        let mut n = (**old).clone();
        match candidate.get("status") {
            Some(s) => n["status"] = s.clone(),
            None => {
                if let Some(m) = n.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        // Managed fields come with the candidate when server-side apply computed them.
        if let Some(mf) = candidate.pointer("/metadata/managedFields") {
            n["metadata"]["managedFields"] = mf.clone();
        }
        n
    } else {
        if ty.status_subresource {
            match old.get("status") {
                Some(s) => candidate["status"] = s.clone(),
                None => {
                    if let Some(m) = candidate.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        candidate
    };
    // Identity and server-owned metadata never change through a write.
    for k in [
        "name",
        "namespace",
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "resourceVersion",
    ] {
        match old["metadata"].get(k) {
            Some(v) => new["metadata"][k] = v.clone(),
            None => {
                if let Some(m) = new["metadata"].as_object_mut() {
                    m.remove(k);
                }
            }
        }
    }
    if ty.generation && spec_part(&new) != spec_part(old) {
        let g = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        new["metadata"]["generation"] = json!(g + 1);
    }
    schema(ty, &mut new, Some(old))?;
    let crd = if is_crd_type(ty) && !status_write {
        Some(parse_crd(ty, &new)?)
    } else {
        None
    };
    if let Ownership::Update(manager) = ownership {
        let scope = Scope {
            status_separate: ty.status_subresource,
            status_write,
        };
        patch::track_update(Some(old), &mut new, manager, &ty.api_version(), scope);
    }
    if new == **old {
        return Ok(old.clone());
    }
    let key = ty.storage_key();
    let finalizers_empty = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_none_or(|f| f.is_empty());
    if new.pointer("/metadata/deletionTimestamp").is_some() && finalizers_empty {
        // The last finalizer is gone: the pending deletion completes.
        store.insert_raw(&key, new, EventType::Modified);
        let removed = remove_now(
            store,
            ty,
            ns.as_deref().unwrap_or(""),
            &name,
            Propagation::Background,
        )?;
        return Ok(removed);
    }
    let stored = store.insert_raw(&key, new, EventType::Modified);
    if let Some(crd) = crd {
        store.registry.install_crd(&crd);
    }
    Ok(stored)
}

/// DELETE of one object: with finalizers it only gains a deletionTimestamp.
pub fn delete(
    store: &mut Store,
    ty: &ResourceType,
    ns: &str,
    name: &str,
    propagation: Propagation,
    precondition_rv: Option<&str>,
) -> Result<Deletion, ApiError> {
    let key = ty.storage_key();
    let Some(old) = store.get(&key, ns, name) else {
        return Err(ApiError::not_found(&ty.group, &ty.plural, name));
    };
    if let Some(rv) = precondition_rv
        && meta_str(&old, "resourceVersion") != Some(rv)
    {
        return Err(ApiError::stale(&ty.group, &ty.plural, name));
    }
    if propagation == Propagation::Foreground
        && old.pointer("/metadata/deletionTimestamp").is_none()
        && let Some(uid) = meta_str(&old, "uid").map(String::from)
        && !dependents_of(store, &uid, false).is_empty()
    {
        return delete_in_foreground(store, ty, ns, name, &old, &uid);
    }
    let has_finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        if old.pointer("/metadata/deletionTimestamp").is_some() {
            return Ok(Deletion::Pending(old));
        }
        let mut new = (*old).clone();
        new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
        new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        return Ok(Deletion::Pending(store.insert_raw(
            &key,
            new,
            EventType::Modified,
        )));
    }
    Ok(Deletion::Removed(remove_now(
        store,
        ty,
        ns,
        name,
        propagation,
    )?))
}

/// The finalizer that holds an owner deleted in the foreground.
const FOREGROUND_DELETION: &str = "foregroundDeletion";

/// Objects whose owner references name `uid` (only those with
/// `blockOwnerDeletion` when `blocking`).
fn dependents_of(
    store: &Store,
    uid: &str,
    blocking: bool,
) -> Vec<(super::store::TypeKey, Arc<Value>)> {
    store
        .all()
        .filter(|(_, o)| {
            o.pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .is_some_and(|refs| {
                    refs.iter().any(|r| {
                        r.get("uid").and_then(Value::as_str) == Some(uid)
                            && (!blocking
                                || r.get("blockOwnerDeletion").and_then(Value::as_bool)
                                    == Some(true))
                    })
                })
        })
        .map(|(t, o)| (t.clone(), o.clone()))
        .collect()
}

/// Foreground deletion, as the apiserver and garbage collector do it: the
/// owner gains a deletionTimestamp and the `foregroundDeletion` finalizer,
/// its dependents are deleted (those with finalizers keep their owner
/// reference until they go), and the owner goes once no dependent that
/// blocks its deletion is left (see [`finish_foreground_deletions`]).
fn delete_in_foreground(
    store: &mut Store,
    ty: &ResourceType,
    ns: &str,
    name: &str,
    old: &Value,
    uid: &str,
) -> Result<Deletion, ApiError> {
    let key = ty.storage_key();
    let mut new = old.clone();
    let mut finalizers = new
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    finalizers.push(json!(FOREGROUND_DELETION));
    new["metadata"]["finalizers"] = Value::Array(finalizers);
    new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
    new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
    store.insert_raw(&key, new, EventType::Modified);
    for (tk, dependent) in dependents_of(store, uid, false) {
        let Some(dty) = store.type_for_key(&tk).cloned() else {
            continue;
        };
        let dns = meta_str(&dependent, "namespace")
            .unwrap_or_default()
            .to_string();
        let dname = meta_str(&dependent, "name").unwrap_or_default().to_string();
        delete_dependent(store, &dty, &dns, &dname, true)?;
    }
    collect_garbage(store, Propagation::Background);
    Ok(match store.get(&key, ns, name) {
        Some(owner) => Deletion::Pending(owner),
        None => Deletion::Removed(Arc::new(old.clone())),
    })
}

/// Owners deleted in the foreground whose blocking dependents are all gone
/// lose the `foregroundDeletion` finalizer, and go when it was the last.
/// Returns whether anything changed.
fn finish_foreground_deletions(store: &mut Store) -> bool {
    let waiting: Vec<(super::store::TypeKey, Arc<Value>)> = store
        .all()
        .filter(|(_, o)| {
            o.pointer("/metadata/deletionTimestamp").is_some()
                && o.pointer("/metadata/finalizers")
                    .and_then(Value::as_array)
                    .is_some_and(|f| f.iter().any(|f| f == FOREGROUND_DELETION))
        })
        .map(|(t, o)| (t.clone(), o.clone()))
        .collect();
    let mut changed = false;
    for (tk, owner) in waiting {
        let uid = meta_str(&owner, "uid").unwrap_or_default();
        if !dependents_of(store, uid, true).is_empty() {
            continue;
        }
        changed = true;
        let mut new = (*owner).clone();
        if let Some(f) = new["metadata"]["finalizers"].as_array_mut() {
            f.retain(|f| f != FOREGROUND_DELETION);
        }
        let last = new["metadata"]["finalizers"]
            .as_array()
            .is_none_or(Vec::is_empty);
        if last {
            let ns = meta_str(&owner, "namespace")
                .unwrap_or_default()
                .to_string();
            let name = meta_str(&owner, "name").unwrap_or_default().to_string();
            store.remove_raw(&tk, &ns, &name);
        } else {
            store.insert_raw(&tk, new, EventType::Modified);
        }
    }
    changed
}

/// Removes an object and everything that depended on it.
fn remove_now(
    store: &mut Store,
    ty: &ResourceType,
    ns: &str,
    name: &str,
    propagation: Propagation,
) -> Result<Arc<Value>, ApiError> {
    let key = ty.storage_key();
    let removed = store
        .remove_raw(&key, ns, name)
        .ok_or_else(|| ApiError::not_found(&ty.group, &ty.plural, name))?;
    if is_crd_type(ty) {
        let group = removed
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let plural = removed
            .pointer("/spec/names/plural")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let tk = (group.clone(), plural.clone());
        let names: Vec<(String, String)> = store
            .list(&tk, None, None)
            .map(|(k, _)| k.clone())
            .collect();
        for (ons, oname) in names {
            store.remove_raw(&tk, &ons, &oname);
        }
        store.registry.remove_crd(&group, &plural);
    }
    if ty.group.is_empty() && ty.plural == "namespaces" {
        // Everything in a deleted namespace goes with it.
        let victims: Vec<_> = store
            .all()
            .filter(|(_, o)| meta_str(o, "namespace") == Some(name))
            .map(|(t, o)| {
                (
                    t.clone(),
                    meta_str(o, "name").unwrap_or_default().to_string(),
                )
            })
            .collect();
        for (tk, oname) in victims {
            store.remove_raw(&tk, name, &oname);
        }
    }
    collect_garbage(store, propagation);
    Ok(removed)
}

/// Deletes (or orphans) objects whose owners are all gone, until nothing changes.
pub fn collect_garbage(store: &mut Store, propagation: Propagation) {
    loop {
        let uids: HashSet<String> = store
            .all()
            .filter_map(|(_, o)| meta_str(o, "uid").map(String::from))
            .collect();
        let mut work: Vec<(super::store::TypeKey, Arc<Value>)> = Vec::new();
        for (tk, obj) in store.all() {
            let Some(refs) = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
            else {
                continue;
            };
            let dead = refs.iter().any(|r| {
                r.get("uid")
                    .and_then(Value::as_str)
                    .is_none_or(|u| !uids.contains(u))
            });
            if dead {
                work.push((tk.clone(), obj.clone()));
            }
        }
        if work.is_empty() {
            if finish_foreground_deletions(store) {
                continue;
            }
            return;
        }
        for (tk, obj) in work {
            let ns = meta_str(&obj, "namespace").unwrap_or_default().to_string();
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            let refs = obj
                .pointer("/metadata/ownerReferences")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let live: Vec<Value> = refs
                .into_iter()
                .filter(|r| {
                    r.get("uid")
                        .and_then(Value::as_str)
                        .is_some_and(|u| uids.contains(u))
                })
                .collect();
            let Some(ty) = store.type_for_key(&tk).cloned() else {
                continue;
            };
            if live.is_empty() && propagation != Propagation::Orphan {
                let _ = delete_dependent(store, &ty, &ns, &name, false);
            } else {
                let mut new = (*obj).clone();
                if live.is_empty() {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove("ownerReferences");
                    }
                } else {
                    new["metadata"]["ownerReferences"] = Value::Array(live);
                }
                store.insert_raw(&tk, new, EventType::Modified);
            }
        }
    }
}

/// Deletes a dependent for the garbage collector. One with finalizers only
/// gains a deletionTimestamp; `keep_owner` keeps its owner reference (the
/// owner, deleted in the foreground, waits for it).
fn delete_dependent(
    store: &mut Store,
    ty: &ResourceType,
    ns: &str,
    name: &str,
    keep_owner: bool,
) -> Result<(), ApiError> {
    let key = ty.storage_key();
    let Some(old) = store.get(&key, ns, name) else {
        return Ok(());
    };
    let has_finalizers = old
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty());
    if has_finalizers {
        let mut new = (*old).clone();
        if old.pointer("/metadata/deletionTimestamp").is_none() {
            new["metadata"]["deletionTimestamp"] = json!(now_rfc3339());
            new["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        }
        // Keep a dead owner reference out of the way so the collector does not revisit it.
        if !keep_owner && let Some(m) = new["metadata"].as_object_mut() {
            m.remove("ownerReferences");
        }
        if new != *old {
            store.insert_raw(&key, new, EventType::Modified);
        }
        return Ok(());
    }
    store.remove_raw(&key, ns, name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::apiserver::resources::builtin_types;

    fn no_schema(_: &ResourceType, _: &mut Value, _: Option<&Value>) -> Result<(), ApiError> {
        Ok(())
    }

    fn ty(plural: &str) -> ResourceType {
        builtin_types()
            .into_iter()
            .find(|t| t.plural == plural)
            .unwrap()
    }

    #[test]
    fn owner_deletion_cascades_to_dependents_unless_orphaned() {
        let mut store = Store::new(1000);
        let jobs = ty("jobs");
        let pods = ty("pods");
        let job = create(
            &mut store,
            &jobs,
            Some("default"),
            json!({"metadata": {"name": "j"}, "spec": {}}),
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        let uid = job["metadata"]["uid"].clone();
        for n in ["p1", "p2"] {
            let pod = json!({"metadata": {"name": n, "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "j", "uid": uid}]}});
            create(
                &mut store,
                &pods,
                Some("default"),
                pod,
                Ownership::Update("t"),
                no_schema,
            )
            .unwrap();
        }
        delete(
            &mut store,
            &jobs,
            "default",
            "j",
            Propagation::Background,
            None,
        )
        .unwrap();
        assert!(store.get(&pods.storage_key(), "default", "p1").is_none());
        assert!(store.get(&pods.storage_key(), "default", "p2").is_none());

        let job = create(
            &mut store,
            &jobs,
            Some("default"),
            json!({"metadata": {"name": "k"}}),
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        let pod = json!({"metadata": {"name": "p3", "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "k", "uid": job["metadata"]["uid"]}]}});
        create(
            &mut store,
            &pods,
            Some("default"),
            pod,
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        delete(&mut store, &jobs, "default", "k", Propagation::Orphan, None).unwrap();
        let orphan = store.get(&pods.storage_key(), "default", "p3").unwrap();
        assert!(orphan.pointer("/metadata/ownerReferences").is_none());
    }

    #[test]
    fn foreground_deletion_waits_for_blocking_dependents() {
        let mut store = Store::new(1000);
        let cms = ty("configmaps");
        let key = cms.storage_key();
        let put = |store: &mut Store, obj: Value| {
            create(
                store,
                &cms,
                Some("default"),
                obj,
                Ownership::Update("t"),
                no_schema,
            )
            .unwrap()
        };
        let owner = put(&mut store, json!({"metadata": {"name": "owner"}}));
        let owner_ref = |block: bool| {
            json!([{"apiVersion": "v1", "kind": "ConfigMap", "name": "owner",
                    "uid": owner["metadata"]["uid"], "blockOwnerDeletion": block}])
        };
        put(
            &mut store,
            json!({"metadata": {"name": "plain", "ownerReferences": owner_ref(false)}}),
        );
        put(
            &mut store,
            json!({"metadata": {"name": "held", "finalizers": ["x/hold"], "ownerReferences": owner_ref(true)}}),
        );
        let deletion = delete(
            &mut store,
            &cms,
            "default",
            "owner",
            Propagation::Foreground,
            None,
        );
        assert!(matches!(deletion, Ok(Deletion::Pending(_))));
        let waiting = store
            .get(&key, "default", "owner")
            .expect("the owner waits");
        assert_eq!(
            waiting["metadata"]["finalizers"],
            json!([FOREGROUND_DELETION])
        );
        assert!(store.get(&key, "default", "plain").is_none());
        let held = store.get(&key, "default", "held").unwrap();
        assert!(held.pointer("/metadata/deletionTimestamp").is_some());
        assert_eq!(held["metadata"]["deletionGracePeriodSeconds"], 0);
        assert!(held.pointer("/metadata/ownerReferences").is_some());

        // The dependent's finalizer goes: it goes, and so does its owner.
        let mut released = (*held).clone();
        released["metadata"]["finalizers"] = json!([]);
        update(
            &mut store,
            &cms,
            &held,
            released,
            false,
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        assert!(store.get(&key, "default", "held").is_none());
        assert!(store.get(&key, "default", "owner").is_none());
    }

    #[test]
    fn finalizers_hold_deletion_until_removed() {
        let mut store = Store::new(1000);
        let cms = ty("configmaps");
        create(
            &mut store,
            &cms,
            Some("default"),
            json!({"metadata": {"name": "c", "finalizers": ["x/y"]}}),
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        let Deletion::Pending(pending) = delete(
            &mut store,
            &cms,
            "default",
            "c",
            Propagation::Background,
            None,
        )
        .unwrap() else {
            panic!("deleted despite finalizer")
        };
        assert!(pending.pointer("/metadata/deletionTimestamp").is_some());
        let mut cleared = (*pending).clone();
        cleared["metadata"]["finalizers"] = json!([]);
        update(
            &mut store,
            &cms,
            &pending,
            cleared,
            false,
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        assert!(store.get(&cms.storage_key(), "default", "c").is_none());
    }

    #[test]
    fn generation_bumps_on_spec_change_only_and_no_op_keeps_version() {
        let mut store = Store::new(1000);
        let jobs = ty("jobs");
        let j = create(
            &mut store,
            &jobs,
            Some("default"),
            json!({"metadata": {"name": "j"}, "spec": {"parallelism": 1}}),
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        let same = update(
            &mut store,
            &jobs,
            &j,
            (*j).clone(),
            false,
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        assert_eq!(
            same["metadata"]["resourceVersion"],
            j["metadata"]["resourceVersion"]
        );
        let mut labelled = (*j).clone();
        labelled["metadata"]["labels"] = json!({"a": "b"});
        let l = update(
            &mut store,
            &jobs,
            &j,
            labelled,
            false,
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        assert_eq!(l["metadata"]["generation"], 1);
        let mut status = (*l).clone();
        status["status"] = json!({"active": 1});
        let s = update(
            &mut store,
            &jobs,
            &l,
            status,
            true,
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        assert_eq!(s["metadata"]["generation"], 1);
        assert_eq!(s["status"]["active"], 1);
        let mut spec = (*s).clone();
        spec["spec"]["parallelism"] = json!(2);
        spec["status"] = json!({"active": 99});
        let g = update(
            &mut store,
            &jobs,
            &s,
            spec,
            false,
            Ownership::Update("t"),
            no_schema,
        )
        .unwrap();
        assert_eq!(g["metadata"]["generation"], 2);
        assert_eq!(
            g["status"]["active"], 1,
            "writes to the object ignore status"
        );
    }
}
