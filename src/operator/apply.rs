//! Apply: write children (server-side apply under one field manager, skipped
//! when unchanged), statuses (through the status subresource) and Events.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Debug;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams,
};
use kube::core::NamespaceResourceScope;
use kube::runtime::events::{Event, EventType, Recorder};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::api::names::MANAGER;
use crate::policy::EventKind;

use super::error::{OperatorError, kube};

/// Annotation holding the hash of what the operator last applied to a child.
pub const APPLIED_HASH: &str = "driftline.dev/applied-hash";

/// Installs (or updates) driftline's CustomResourceDefinitions by
/// server-side apply under the operator's field manager: `driftline up`, the
/// tests and the benchmarks install them the same way.
pub async fn install_crds(client: &Client) -> Result<(), OperatorError> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let ssa = PatchParams::apply(MANAGER).force();
    for crd in crate::api::crd::all_crds() {
        let name = crd.metadata.name.clone().unwrap_or_default();
        crds.patch(&name, &ssa, &Patch::Apply(&crd))
            .await
            .map_err(kube(format!("install CRD {name}")))?;
    }
    Ok(())
}

/// Stamps `obj` with the hash of its desired content.
pub fn stamp<K: Resource + Serialize>(mut obj: K) -> K {
    let digest = Sha256::digest(serde_json::to_vec(&obj).unwrap_or_default());
    obj.meta_mut()
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(APPLIED_HASH.into(), hex::encode(&digest[..12]));
    obj
}

/// Whether `live` already carries what `desired` (stamped) would apply.
pub fn unchanged<K: Resource>(desired: &K, live: Option<&K>) -> bool {
    let hash = |k: &K| k.meta().annotations.as_ref()?.get(APPLIED_HASH).cloned();
    live.is_some_and(|l| hash(l).is_some() && hash(l) == hash(desired))
}

/// Server-side applies a stamped child unless the live copy already has it.
pub async fn apply_child<K>(
    client: &Client,
    desired: K,
    live: Option<&K>,
) -> Result<bool, OperatorError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let desired = stamp(desired);
    if unchanged(&desired, live) {
        return Ok(false);
    }
    let (api, ns, name) = api_of(client, &desired);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(kube(format!("apply {} {ns}/{name}", K::kind(&()))))?;
    Ok(true)
}

/// How long an applied object without a watch cache is trusted unchanged.
pub const REAPPLY_AFTER: Duration = Duration::from_secs(600);

/// Server-side applies a stamped object of a kind known only at run time
/// (the Gateway API's `HTTPRoute`), unless `applied` records that this exact
/// content was applied already (there is no watch cache to compare with)
/// less than [`REAPPLY_AFTER`] ago; applying again after that restores an
/// object someone deleted or edited.
pub async fn apply_dynamic(
    client: &Client,
    desired: DynamicObject,
    applied: &Mutex<HashMap<String, (String, Instant)>>,
) -> Result<bool, OperatorError> {
    let desired = stamp(desired);
    let resource = desired
        .types
        .as_ref()
        .map(|t| {
            let (group, version) = match t.api_version.split_once('/') {
                Some((g, v)) => (g, v),
                None => ("", t.api_version.as_str()),
            };
            ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, &t.kind))
        })
        .ok_or_else(|| OperatorError::Build {
            what: desired.name_any(),
            reason: "an object without apiVersion and kind".into(),
        })?;
    let ns = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let key = format!("{}/{ns}/{name}", resource.kind);
    let hash = desired
        .annotations()
        .get(APPLIED_HASH)
        .cloned()
        .unwrap_or_default();
    if applied
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&key)
        .is_some_and(|(h, at)| *h == hash && at.elapsed() < REAPPLY_AFTER)
    {
        return Ok(false);
    }
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &ns, &resource);
    api.patch(
        &name,
        &PatchParams::apply(MANAGER).force(),
        &Patch::Apply(&desired),
    )
    .await
    .map_err(kube(format!("apply {} {key}", resource.kind)))?;
    applied
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(key, (hash, Instant::now()));
    Ok(true)
}

/// The API of `obj`'s kind in its namespace, with its namespace and name.
fn api_of<K>(client: &Client, obj: &K) -> (Api<K>, String, String)
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    (Api::namespaced(client.clone(), &ns), ns, name)
}

/// Creates an object unless it exists (training Jobs and ModelVersions are
/// never changed once made; a restarted operator finds them and goes on).
pub async fn create_once<K>(client: &Client, obj: &K) -> Result<bool, OperatorError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + Serialize
        + DeserializeOwned,
{
    let (api, ns, name) = api_of(client, obj);
    match api.create(&PostParams::default(), obj).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(kube(format!("create {} {ns}/{name}", K::kind(&())))(e)),
    }
}

/// Replaces the whole status through the status subresource. A JSON patch
/// `add` replaces the member when present, so fields the new status no
/// longer has are removed (a merge patch would keep them).
pub async fn write_status<K, S>(client: &Client, obj: &K, status: &S) -> Result<(), OperatorError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
    S: Serialize,
{
    let (api, ns, name) = api_of(client, obj);
    let value = serde_json::to_value(status).map_err(|e| OperatorError::Build {
        what: format!("status of {ns}/{name}"),
        reason: e.to_string(),
    })?;
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "add", "path": "/status", "value": value}
    ]))
    .map_err(|e| OperatorError::Build {
        what: format!("status patch of {ns}/{name}"),
        reason: e.to_string(),
    })?;
    api.patch_status(&name, &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .map_err(kube(format!(
            "write status of {} {ns}/{name}",
            K::kind(&())
        )))?;
    Ok(())
}

/// Deletes an object; one already gone is fine.
pub async fn delete<K>(client: &Client, namespace: &str, name: &str) -> Result<(), OperatorError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(kube(format!("delete {} {namespace}/{name}", K::kind(&())))(
            e,
        )),
    }
}

/// Removes one annotation (a manual request the operator has acted on).
pub async fn remove_annotation<K>(client: &Client, obj: &K, key: &str) -> Result<(), OperatorError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
{
    let (api, ns, name) = api_of(client, obj);
    let patch = serde_json::json!({"metadata": {"annotations": {key: null}}});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(kube(format!("remove annotation {key} from {ns}/{name}")))?;
    Ok(())
}

/// Publishes an Event on `obj`. The recorder aggregates Events with the
/// same reason and action into one object with a count, keeping the first
/// note; the action carries a digest of the message so that only true
/// repeats aggregate and every decision keeps its own numbers.
/// Longest Event note the Events API keeps.
const NOTE_LIMIT: usize = 1000;

/// `message`, then a link to the page that shows it; the message is cut,
/// never the link, to fit an Event's note.
pub fn with_link(message: &str, link: &str) -> String {
    let room = NOTE_LIMIT.saturating_sub(link.chars().count() + 3);
    let message: String = message.chars().take(room).collect();
    format!("{message} · {link}")
}

pub async fn event<K: Resource<DynamicType = ()>>(
    recorder: &Recorder,
    obj: &K,
    kind: EventKind,
    reason: &str,
    action: &str,
    message: &str,
) -> Result<(), OperatorError> {
    let ev = Event {
        type_: match kind {
            EventKind::Normal => EventType::Normal,
            EventKind::Warning => EventType::Warning,
        },
        reason: reason.chars().take(128).collect(),
        // The Events API caps a note at 1 kB.
        note: Some(message.chars().take(NOTE_LIMIT).collect()),
        action: format!(
            "{}-{}",
            action.chars().take(100).collect::<String>(),
            hex::encode(&Sha256::digest(message.as_bytes())[..4])
        ),
        secondary: None,
    };
    recorder
        .publish(&ev, &obj.object_ref(&()))
        .await
        .map_err(kube(format!("record Event {reason}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_survives_a_message_cut_to_fit_the_note() {
        let link = "http://127.0.0.1:9091/models/ml/wine-quality";
        assert_eq!(
            with_link("v2 promoted", link),
            format!("v2 promoted · {link}")
        );
        let long = "x".repeat(5000);
        let note = with_link(&long, link);
        assert_eq!(note.chars().count(), NOTE_LIMIT);
        assert!(note.ends_with(link), "{note}");
    }
}
