//! Apply: write children by server-side apply and statuses by one JSON patch
//! (see [`write_status`] for why), all under the one field manager
//! ([`MANAGER`]); skip a child that still is what driftline last applied,
//! create what is made once, delete, and publish Events.
//!
//! A child is unchanged when its `driftline.dev/applied-hash` annotation is
//! the desired one's and its live content (spec and labels, as a digest the
//! cache keeps) is what the server made of driftline's last apply of it.
//! An edit by anyone else (`kubectl set image`, `kubectl edit`) changes the
//! digest, and the next reconcile applies the desired object again. The
//! digest is compared with the server's answer rather than with the desired
//! object because the server adds defaults and normalises values (`0.5` CPU
//! reads back as `500m`): a field-by-field compare would need a copy of every
//! default, and the caches keep a digest rather than each child's spec.
//! After an operator restart, a child's first sighting is its baseline: an
//! edit made while no operator ran is put back at the child's next change
//! or the next change of what it should be.

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

/// Where the cache's copy of a child keeps [`live_digest`] of the object it
/// was made from (set by the cache's transform; never on the server).
pub const LIVE_DIGEST: &str = "driftline.dev/live-digest";

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

fn applied_hash<K: Resource>(obj: &K) -> Option<&str> {
    obj.meta()
        .annotations
        .as_ref()?
        .get(APPLIED_HASH)
        .map(String::as_str)
}

/// The digest of a child's live content as driftline compares it: its spec
/// and labels, as the server returned them.
pub fn live_digest<K: Serialize>(obj: &K) -> String {
    let value = serde_json::to_value(obj).unwrap_or_default();
    let content = serde_json::json!({
        "spec": value.get("spec"),
        "labels": value.pointer("/metadata/labels"),
    });
    hex::encode(&Sha256::digest(content.to_string().as_bytes())[..12])
}

/// Which child: kind, namespace and name.
type ChildKey = (String, String, String);

/// What each child looked like right after driftline last applied it (the
/// digest of the server's answer), with the hash it applied; shared by every
/// reconcile of one controller.
#[derive(Default)]
pub struct Applied {
    children: Mutex<HashMap<ChildKey, (String, String)>>,
}

impl Applied {
    fn key<K: Resource<DynamicType = ()>>(obj: &K) -> ChildKey {
        (
            K::kind(&()).into_owned(),
            obj.namespace().unwrap_or_default(),
            obj.name_any(),
        )
    }

    /// Whether `live` (a cached copy) still is what `desired` (stamped)
    /// would apply: the same applied hash, and the same digest as the
    /// server's answer to the last apply of that hash. A child seen for the
    /// first time with the desired hash is taken as it is (see the module).
    pub fn unchanged<K: Resource<DynamicType = ()>>(&self, desired: &K, live: Option<&K>) -> bool {
        let Some(live) = live else { return false };
        let Some(hash) = applied_hash(desired) else {
            return false;
        };
        if applied_hash(live) != Some(hash) {
            return false;
        }
        let Some(digest) = live
            .meta()
            .annotations
            .as_ref()
            .and_then(|a| a.get(LIVE_DIGEST))
        else {
            // A kind whose cache keeps no digest is compared by its hash.
            return true;
        };
        let mut children = self.children.lock().unwrap_or_else(|p| p.into_inner());
        match children.get(&Self::key(desired)) {
            Some((applied, answer)) if applied == hash => answer == digest,
            _ => {
                children.insert(Self::key(desired), (hash.to_owned(), digest.clone()));
                true
            }
        }
    }

    /// Records the server's answer to applying `answer`'s applied hash.
    pub fn record<K: Resource<DynamicType = ()> + Serialize>(&self, answer: &K) {
        let Some(hash) = applied_hash(answer) else {
            return;
        };
        let entry = (hash.to_owned(), live_digest(answer));
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(Self::key(answer), entry);
    }

    /// Forgets a child that is gone.
    pub fn forget<K: Resource<DynamicType = ()>>(&self, gone: &K) {
        self.children
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&Self::key(gone));
    }

    /// The step of a watch stream that forgets deleted children:
    /// `.map_ok(applied.forget_deleted())`.
    pub fn forget_deleted<K: Resource<DynamicType = ()>>(
        self: &std::sync::Arc<Self>,
    ) -> impl FnMut(kube::runtime::watcher::Event<K>) -> kube::runtime::watcher::Event<K> + use<K>
    {
        let applied = self.clone();
        move |event| {
            if let kube::runtime::watcher::Event::Delete(gone) = &event {
                applied.forget(gone);
            }
            event
        }
    }
}

/// Server-side applies a stamped child unless the live copy still is what
/// driftline last applied (see [`Applied::unchanged`]); returns whether it wrote.
pub async fn apply_child<K>(
    client: &Client,
    applied: &Applied,
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
    if applied.unchanged(&desired, live) {
        return Ok(false);
    }
    let (api, ns, name) = api_of(client, &desired);
    let answer = api
        .patch(&name, &ssa(), &Patch::Apply(&desired))
        .await
        .map_err(kube(format!("apply {} {ns}/{name}", K::kind(&()))))?;
    applied.record(&answer);
    Ok(true)
}

/// Server-side apply under the operator's field manager, taking over fields
/// another manager set (driftline's children are driftline's).
fn ssa() -> PatchParams {
    PatchParams::apply(MANAGER).force()
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
        .ok_or_else(|| {
            OperatorError::rule(desired.name_any(), "an object without apiVersion and kind")
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
    api.patch(&name, &ssa(), &Patch::Apply(&desired))
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
    let params = PostParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    };
    match api.create(&params, obj).await {
        Ok(_) => Ok(true),
        // Only `AlreadyExists` means it is there: any other 409 (a Conflict
        // from a busy or flaky server) created nothing and is retried.
        Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => Ok(false),
        Err(e) => Err(kube(format!("create {} {ns}/{name}", K::kind(&())))(e)),
    }
}

/// Replaces the whole status through the status subresource, in one
/// request under the operator's field manager (a JSON patch `add /status`,
/// recorded as an Update by [`MANAGER`]).
///
/// Not a server-side apply: a status drops whole objects whose fields are
/// required (`status.training` when a run ends, `status.canary` when a
/// rollout ends), and an apply that leaves such an object out only removes
/// the fields driftline owned in it, keeping the object itself as `{}`
/// (structured-merge-diff keeps emptied maps), which the schema then refuses
/// (`status.training.version: Required value`). A JSON patch `add` replaces
/// the member, so what the new status no longer has is gone, atomically.
pub async fn write_status<K, S>(client: &Client, obj: &K, status: &S) -> Result<(), OperatorError>
where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + Debug
        + DeserializeOwned,
    S: Serialize,
{
    let (api, ns, name) = api_of(client, obj);
    let what = || format!("status of {} {ns}/{name}", K::kind(&()));
    let value = serde_json::to_value(status).map_err(|e| OperatorError::build(what())(e.into()))?;
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "add", "path": "/status", "value": value}
    ]))
    .map_err(|e| OperatorError::build(what())(e.into()))?;
    api.patch_status(&name, &by_manager(), &Patch::<()>::Json(patch))
        .await
        .map_err(kube(format!("write {}", what())))?;
    Ok(())
}

/// A write that is not an apply, recorded under the operator's field manager.
fn by_manager() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..Default::default()
    }
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
    api.patch(&name, &by_manager(), &Patch::Merge(&patch))
        .await
        .map_err(kube(format!("remove annotation {key} from {ns}/{name}")))?;
    Ok(())
}

/// Longest Event note the Events API keeps.
const NOTE_LIMIT: usize = 1000;

/// `message`, then a link to the page that shows it; the message is cut,
/// never the link, to fit an Event's note.
pub fn with_link(message: &str, link: &str) -> String {
    let room = NOTE_LIMIT.saturating_sub(link.chars().count() + 3);
    let message: String = message.chars().take(room).collect();
    format!("{message} · {link}")
}

/// Publishes an Event on `obj`. The recorder aggregates Events with the
/// same reason and action into one object with a count, keeping the first
/// note; the action carries a digest of the message so that only true
/// repeats aggregate and every decision keeps its own numbers.
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
    use k8s_openapi::api::core::v1::Service;

    /// A Service as driftline builds it, port `port`.
    fn desired(port: i32) -> Service {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "wine-quality-v1", "namespace": "ml"},
            "spec": {"ports": [{"port": port}]},
        }))
        .expect("service")
    }

    /// `obj` as the server keeps it (a default added) and the cache holds it.
    fn served(obj: &Service) -> Service {
        let mut live = obj.clone();
        if let Some(spec) = live.spec.as_mut() {
            spec.session_affinity = Some("None".into());
        }
        live
    }

    fn cached(live: &Service) -> Service {
        let mut copy = live.clone();
        copy.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(LIVE_DIGEST.into(), live_digest(live));
        copy.spec = None;
        copy
    }

    #[test]
    fn a_child_is_unchanged_while_it_is_what_the_server_made_of_the_last_apply() {
        let applied = Applied::default();
        let want = stamp(desired(8080));
        assert!(
            !applied.unchanged(&want, None),
            "a missing child is applied"
        );
        let answer = served(&want);
        applied.record(&answer);
        assert!(
            applied.unchanged(&want, Some(&cached(&answer))),
            "server defaults are not an edit"
        );
        let mut edited = answer.clone();
        if let Some(spec) = edited.spec.as_mut() {
            spec.ports = Some(vec![k8s_openapi::api::core::v1::ServicePort {
                port: 9999,
                ..Default::default()
            }]);
        }
        assert!(
            !applied.unchanged(&want, Some(&cached(&edited))),
            "an edit that kept the applied hash is put back"
        );
        let other = stamp(desired(8081));
        assert!(
            !applied.unchanged(&other, Some(&cached(&answer))),
            "a new desired object is applied"
        );
        applied.forget(&answer);
        assert!(
            applied.unchanged(&want, Some(&cached(&edited))),
            "first seen (an operator restart) with the desired hash, a child is taken as it is"
        );
        assert!(
            !applied.unchanged(&want, Some(&cached(&answer))),
            "and from then on compared with that sighting"
        );
    }

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
