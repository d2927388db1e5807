//! Patches (JSON merge, JSON, strategic merge) and server-side apply with
//! field-manager tracking.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::store::now_rfc3339;

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    json_patch::merge(target, patch);
}

/// Applies an RFC 6902 JSON patch; a failing `test` or a bad path is 422.
pub fn json_patch(target: &mut Value, patch: &Value) -> Result<(), ApiError> {
    let ops: json_patch::Patch = serde_json::from_value(patch.clone())
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON patch: {e}")))?;
    json_patch::patch(target, &ops).map_err(|e| {
        let message = format!("the server rejected our request due to an error in our request: {e}");
        ApiError::Invalid {
            status: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": message, "reason": "Invalid", "code": 422}),
            message,
        }
    })
}

/// Merge key of lists that strategic merge patches merge item by item.
fn merge_key(field: &str) -> Option<&'static str> {
    match field {
        "containers" | "initContainers" | "env" | "volumes" | "volumeMounts"
        | "imagePullSecrets" => Some("name"),
        "conditions" => Some("type"),
        "ownerReferences" => Some("uid"),
        "ports" => Some("port"),
        _ => None,
    }
}

/// Applies a strategic merge patch for built-in kinds: maps merge, lists with
/// a known merge key merge by key (`$patch: delete` removes an item), other
/// lists are replaced, `$`-directives are dropped.
pub fn strategic_merge(target: &mut Value, patch: &Value) {
    let (Value::Object(t), Value::Object(p)) = (&mut *target, patch) else {
        *target = strip_directives(patch);
        return;
    };
    for (k, v) in p {
        if k.starts_with('$') {
            continue;
        }
        if v.is_null() {
            t.remove(k);
            continue;
        }
        match (t.get_mut(k), v) {
            (Some(existing @ Value::Object(_)), Value::Object(_)) => strategic_merge(existing, v),
            (Some(Value::Array(items)), Value::Array(patch_items)) if merge_key(k).is_some() => {
                let key = merge_key(k).unwrap_or("name");
                // `ports` of containers are keyed by containerPort, of services by port.
                let key = if k == "ports"
                    && patch_items.iter().any(|i| i.get("containerPort").is_some())
                {
                    "containerPort"
                } else {
                    key
                };
                for item in patch_items {
                    let id = item.get(key);
                    let pos = id.and_then(|id| items.iter().position(|i| i.get(key) == Some(id)));
                    let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
                    match (pos, delete) {
                        (Some(i), true) => {
                            items.remove(i);
                        }
                        (Some(i), false) => strategic_merge(&mut items[i], item),
                        (None, true) => {}
                        (None, false) => items.push(strip_directives(item)),
                    }
                }
            }
            _ => {
                t.insert(k.clone(), strip_directives(v));
            }
        }
    }
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| !k.starts_with('$'))
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

/// A field path, one segment per map key.
pub type FieldPath = Vec<String>;

/// Metadata fields that are never managed (server-owned or identity).
const UNMANAGED_META: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "selfLink",
    "generateName",
];

/// Leaf field paths set in an object (maps are walked; lists and scalars are leaves).
/// `status` is left out when it is a separate subresource, and only status is
/// collected when `subresource_status` is set.
pub fn leaf_paths(
    obj: &Value,
    status_separate: bool,
    subresource_status: bool,
) -> BTreeSet<FieldPath> {
    let mut out = BTreeSet::new();
    let Value::Object(m) = obj else { return out };
    for (k, v) in m {
        if k == "apiVersion" || k == "kind" {
            continue;
        }
        if subresource_status != (k == "status") && (status_separate || subresource_status) {
            continue;
        }
        let mut path = vec![k.clone()];
        if k == "metadata" {
            if let Value::Object(meta) = v {
                for (mk, mv) in meta {
                    if UNMANAGED_META.contains(&mk.as_str()) {
                        continue;
                    }
                    path.push(mk.clone());
                    walk(mv, &mut path, &mut out);
                    path.pop();
                }
            }
            continue;
        }
        walk(v, &mut path, &mut out);
    }
    out
}

fn walk(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            for (k, child) in m {
                path.push(k.clone());
                walk(child, path, out);
                path.pop();
            }
        }
        _ => {
            out.insert(path.clone());
        }
    }
}

/// The value at a field path.
pub fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |cur, seg| cur.get(seg))
}

fn remove_at(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = obj;
    for seg in parents {
        match cur.get_mut(seg) {
            Some(next) => cur = next,
            None => return,
        }
    }
    if let Value::Object(m) = cur {
        m.remove(last);
    }
}

/// Renders a set of paths as `fieldsV1`.
pub fn to_fields_v1(paths: &BTreeSet<FieldPath>) -> Value {
    let mut root = Map::new();
    for path in paths {
        let mut cur = &mut root;
        for seg in path {
            let entry = cur.entry(format!("f:{seg}")).or_insert_with(|| json!({}));
            match entry {
                Value::Object(m) => cur = m,
                _ => break,
            }
        }
    }
    Value::Object(root)
}

/// Reads a `fieldsV1` set back into paths (map keys only; other keys are leaves).
pub fn from_fields_v1(fields: &Value) -> BTreeSet<FieldPath> {
    fn go(v: &Value, path: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    if k == "." {
                        out.insert(path.clone());
                        continue;
                    }
                    let seg = k.strip_prefix("f:").unwrap_or(k);
                    path.push(seg.to_string());
                    go(child, path, out);
                    path.pop();
                }
            }
            _ => {
                if !path.is_empty() {
                    out.insert(path.clone());
                }
            }
        }
    }
    let mut out = BTreeSet::new();
    go(fields, &mut Vec::new(), &mut out);
    out
}

/// One `metadata.managedFields` entry.
#[derive(Debug, Clone)]
pub struct ManagedEntry {
    /// Field manager name.
    pub manager: String,
    /// `Apply` or `Update`.
    pub operation: String,
    /// `status` for the status subresource, else empty.
    pub subresource: String,
    /// apiVersion the fields were written with.
    pub api_version: String,
    /// Last change time.
    pub time: String,
    /// Owned leaf paths.
    pub fields: BTreeSet<FieldPath>,
}

/// Reads `metadata.managedFields`.
pub fn managed_entries(obj: &Value) -> Vec<ManagedEntry> {
    let Some(Value::Array(list)) = obj.pointer("/metadata/managedFields") else {
        return vec![];
    };
    list.iter()
        .map(|e| {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
            ManagedEntry {
                manager: s("manager"),
                operation: s("operation"),
                subresource: s("subresource"),
                api_version: s("apiVersion"),
                time: s("time"),
                fields: e.get("fieldsV1").map(from_fields_v1).unwrap_or_default(),
            }
        })
        .collect()
}

/// Writes `metadata.managedFields` (dropping entries that own nothing).
pub fn set_managed_entries(obj: &mut Value, entries: &[ManagedEntry]) {
    let list: Vec<Value> = entries
        .iter()
        .filter(|e| !e.fields.is_empty())
        .map(|e| {
            let mut v = json!({"manager": e.manager, "operation": e.operation, "apiVersion": e.api_version,
                               "time": e.time, "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(&e.fields)});
            if !e.subresource.is_empty() {
                v["subresource"] = json!(e.subresource);
            }
            v
        })
        .collect();
    if list.is_empty() {
        if let Some(Value::Object(m)) = obj.get_mut("metadata") {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = Value::Array(list);
    }
}

fn upsert(
    entries: &mut Vec<ManagedEntry>,
    manager: &str,
    operation: &str,
    subresource: &str,
) -> usize {
    if let Some(i) = entries.iter().position(|e| {
        e.manager == manager && e.operation == operation && e.subresource == subresource
    }) {
        return i;
    }
    entries.push(ManagedEntry {
        manager: manager.into(),
        operation: operation.into(),
        subresource: subresource.into(),
        api_version: String::new(),
        time: String::new(),
        fields: BTreeSet::new(),
    });
    entries.len() - 1
}

/// Which part of an object a write touches.
#[derive(Debug, Clone, Copy)]
pub struct Scope {
    /// The type has a status subresource.
    pub status_separate: bool,
    /// The write goes to `/status`.
    pub status_write: bool,
}

impl Scope {
    fn subresource(&self) -> &'static str {
        if self.status_write { "status" } else { "" }
    }
}

/// Records an Update by `manager`: it takes every field whose value changed.
pub fn track_update(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    api_version: &str,
    scope: Scope,
) {
    let mut entries = old.map(managed_entries).unwrap_or_default();
    let new_paths = leaf_paths(new, scope.status_separate, scope.status_write);
    let changed: BTreeSet<FieldPath> = new_paths
        .iter()
        .filter(|p| old.and_then(|o| value_at(o, p)) != value_at(new, p))
        .cloned()
        .collect();
    // Fields that no longer exist are owned by nobody.
    for e in &mut entries {
        e.fields.retain(|p| value_at(new, p).is_some());
    }
    if !changed.is_empty() {
        for e in &mut entries {
            if e.subresource == scope.subresource() {
                e.fields.retain(|p| !changed.contains(p));
            }
        }
        let i = upsert(&mut entries, manager, "Update", scope.subresource());
        entries[i].fields.extend(changed);
        entries[i].api_version = api_version.into();
        entries[i].time = now_rfc3339();
    }
    set_managed_entries(new, &entries);
}

/// Deep-merges an apply configuration: maps merge, everything else replaces.
fn apply_merge(target: &mut Value, config: &Value) {
    match (target, config) {
        (Value::Object(t), Value::Object(c)) => {
            for (k, v) in c {
                match t.get_mut(k) {
                    Some(existing @ Value::Object(_)) if v.is_object() => apply_merge(existing, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, c) => *t = c.clone(),
    }
}

/// Server-side apply of `config` by `manager` onto `live` (None creates).
/// Conflicts with other managers' fields are 409 unless `force`.
#[allow(clippy::too_many_arguments)]
pub fn server_side_apply(
    live: Option<&Value>,
    config: &Value,
    manager: &str,
    force: bool,
    api_version: &str,
    scope: Scope,
    resource: (&str, &str),
    name: &str,
) -> Result<Value, ApiError> {
    let mut entries = live.map(managed_entries).unwrap_or_default();
    let applied = leaf_paths(config, scope.status_separate, scope.status_write);
    let sub = scope.subresource();
    let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
    if let Some(live) = live {
        for e in entries
            .iter()
            .filter(|e| e.manager != manager && e.subresource == sub)
        {
            for p in e.fields.intersection(&applied) {
                if value_at(live, p) != value_at(config, p) {
                    conflicts.push((e.manager.clone(), p.clone()));
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(m, p)| json!({"type": "FieldManagerConflict", "message": format!("conflict with \"{m}\""), "field": format!(".{}", p.join("."))}))
            .collect();
        let lines: Vec<String> = conflicts
            .iter()
            .map(|(m, p)| format!("conflict with \"{m}\": .{}", p.join(".")))
            .collect();
        let message = format!(
            "Apply failed with {} conflict{}: {}",
            conflicts.len(),
            if conflicts.len() == 1 { "" } else { "s" },
            lines.join("; ")
        );
        return Err(ApiError::ApplyConflict {
            group: resource.0.into(),
            resource: resource.1.into(),
            name: name.into(),
            message,
            causes,
        });
    }
    let mut merged = live.cloned().unwrap_or_else(|| json!({}));
    // Fields this manager applied before but dropped now are removed, unless someone else owns them.
    let previous = entries
        .iter()
        .find(|e| e.manager == manager && e.operation == "Apply" && e.subresource == sub)
        .map(|e| e.fields.clone())
        .unwrap_or_default();
    for p in previous.difference(&applied) {
        let shared = entries
            .iter()
            .any(|e| e.manager != manager && e.subresource == sub && e.fields.contains(p));
        if !shared {
            remove_at(&mut merged, p);
        }
    }
    let mut body = config.clone();
    if let Some(Value::Object(meta)) = body.get_mut("metadata") {
        meta.remove("managedFields");
        meta.remove("resourceVersion");
    }
    apply_merge(&mut merged, &body);
    // Forced fields (changed values) leave their old owners; equal values are shared.
    for e in entries
        .iter_mut()
        .filter(|e| e.manager != manager && e.subresource == sub)
    {
        e.fields.retain(|p| !conflicts.iter().any(|(_, c)| c == p));
    }
    for e in &mut entries {
        e.fields.retain(|p| value_at(&merged, p).is_some());
    }
    let i = upsert(&mut entries, manager, "Apply", sub);
    if entries[i].fields != applied || entries[i].api_version != api_version {
        entries[i].time = now_rfc3339();
    }
    entries[i].fields = applied;
    entries[i].api_version = api_version.into();
    set_managed_entries(&mut merged, &entries);
    Ok(merged)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: Scope = Scope {
        status_separate: false,
        status_write: false,
    };

    #[test]
    fn strategic_merge_merges_containers_by_name_and_replaces_plain_lists() {
        let mut pod = json!({"spec": {"containers": [{"name": "a", "image": "x", "args": ["1"]}, {"name": "b", "image": "y"}]}});
        let patch = json!({"$setElementOrder/containers": [{"name": "a"}],
                           "spec": {"containers": [{"name": "a", "image": "z", "args": ["2", "3"]}, {"name": "b", "$patch": "delete"}, {"name": "c", "image": "w"}]}});
        strategic_merge(&mut pod, &patch);
        assert_eq!(pod["spec"]["containers"].as_array().unwrap().len(), 2);
        assert_eq!(
            pod["spec"]["containers"][0],
            json!({"name": "a", "image": "z", "args": ["2", "3"]})
        );
        assert_eq!(pod["spec"]["containers"][1]["name"], "c");
        assert!(pod.get("$setElementOrder/containers").is_none());
    }

    #[test]
    fn json_patch_failing_test_is_invalid() {
        let mut obj = json!({"metadata": {"finalizers": ["a"]}});
        let err = json_patch(
            &mut obj,
            &json!([{"op": "test", "path": "/metadata/finalizers", "value": ["b"]}]),
        )
        .unwrap_err();
        assert_eq!(err.code(), 422);
        json_patch(&mut obj, &json!([{"op": "test", "path": "/metadata/finalizers", "value": ["a"]}, {"op": "remove", "path": "/metadata/finalizers/0"}])).unwrap();
        assert_eq!(obj["metadata"]["finalizers"], json!([]));
    }

    #[test]
    fn apply_conflicts_between_managers_unless_forced_and_removes_dropped_fields() {
        let cfg_a = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1", "y": "1"}});
        let a = server_side_apply(
            None,
            &cfg_a,
            "a",
            false,
            "v1",
            MAIN,
            ("", "configmaps"),
            "c",
        )
        .unwrap();
        let cfg_b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "2"}});
        let err = server_side_apply(
            Some(&a),
            &cfg_b,
            "b",
            false,
            "v1",
            MAIN,
            ("", "configmaps"),
            "c",
        )
        .unwrap_err();
        assert_eq!(err.code(), 409);
        assert!(err.to_string().contains(".data.x"), "{err}");
        // Same value: shared ownership, no conflict.
        let same = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"x": "1"}});
        assert!(
            server_side_apply(
                Some(&a),
                &same,
                "b",
                false,
                "v1",
                MAIN,
                ("", "configmaps"),
                "c"
            )
            .is_ok()
        );
        let forced = server_side_apply(
            Some(&a),
            &cfg_b,
            "b",
            true,
            "v1",
            MAIN,
            ("", "configmaps"),
            "c",
        )
        .unwrap();
        assert_eq!(forced["data"]["x"], "2");
        let owners = managed_entries(&forced);
        let a_fields = &owners.iter().find(|e| e.manager == "a").unwrap().fields;
        assert!(!a_fields.contains(&vec!["data".to_string(), "x".to_string()]));
        // Manager a drops y: it disappears.
        let cfg_a2 =
            json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}});
        let after = server_side_apply(
            Some(&forced),
            &cfg_a2,
            "a",
            false,
            "v1",
            MAIN,
            ("", "configmaps"),
            "c",
        )
        .unwrap();
        assert!(after["data"].get("y").is_none());
        assert_eq!(after["data"]["x"], "2");
    }

    #[test]
    fn fields_v1_round_trips() {
        let obj = json!({"metadata": {"labels": {"a": "1"}, "name": "n"}, "spec": {"x": {"y": 1}, "list": [1]}});
        let paths = leaf_paths(&obj, true, false);
        let fields = to_fields_v1(&paths);
        assert_eq!(
            fields,
            json!({"f:metadata": {"f:labels": {"f:a": {}}}, "f:spec": {"f:x": {"f:y": {}}, "f:list": {}}})
        );
        assert_eq!(from_fields_v1(&fields), paths);
    }
}
