//! Kubernetes Events for what the node and controllers do, aggregated so a
//! repeated event bumps `count` instead of piling up.

use std::collections::HashMap;

use k8s_openapi::api::core::v1::{Event, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Client};

/// One event to record: type, reason and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventNote {
    /// "Normal" or "Warning".
    pub type_: String,
    /// CamelCase reason, e.g. "FailedScheduling".
    pub reason: String,
    /// Human-readable message.
    pub message: String,
}

impl EventNote {
    /// A Normal event.
    pub fn normal(reason: &str, message: &str) -> EventNote {
        EventNote {
            type_: "Normal".into(),
            reason: reason.into(),
            message: message.into(),
        }
    }

    /// A Warning event.
    pub fn warning(reason: &str, message: &str) -> EventNote {
        EventNote {
            type_: "Warning".into(),
            reason: reason.into(),
            message: message.into(),
        }
    }
}

/// Records Events for one component (e.g. "default-scheduler", "kubelet", "job-controller").
pub struct EventRecorder {
    client: Client,
    host: String,
    seen: HashMap<(String, String, String), (String, String, i32)>,
}

impl EventRecorder {
    /// A recorder writing through `client`; `host` is the node name.
    pub fn new(client: Client, host: &str) -> EventRecorder {
        EventRecorder {
            client,
            host: host.into(),
            seen: HashMap::new(),
        }
    }

    /// Records `note` about `object` on behalf of `component`; failures are logged, not fatal.
    pub async fn record(&mut self, component: &str, object: &ObjectReference, note: &EventNote) {
        let namespace = object.namespace.clone().unwrap_or_else(|| "default".into());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        let now = Time(Timestamp::now());
        let key = (
            object.uid.clone().unwrap_or_default(),
            note.reason.clone(),
            note.message.clone(),
        );
        if let Some((ns, name, count)) = self.seen.get_mut(&key)
            && *ns == namespace
        {
            *count += 1;
            let patch = serde_json::json!({"count": *count, "lastTimestamp": now});
            match api
                .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => return,
                Err(err) => tracing::debug!(%err, "event vanished; recording it anew"),
            }
        }
        let name = format!(
            "{}.{:x}",
            object.name.clone().unwrap_or_default(),
            Timestamp::now().as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object.clone(),
            reason: Some(note.reason.clone()),
            message: Some(note.message.clone()),
            type_: Some(note.type_.clone()),
            count: Some(1),
            first_timestamp: Some(now.clone()),
            last_timestamp: Some(now),
            source: Some(EventSource {
                component: Some(component.into()),
                host: Some(self.host.clone()),
            }),
            reporting_component: Some(component.into()),
            reporting_instance: Some(self.host.clone()),
            ..Default::default()
        };
        match api.create(&PostParams::default(), &event).await {
            Ok(_) => {
                // Aggregation is best effort: forget old events rather than grow without bound.
                if self.seen.len() >= 10_000 {
                    self.seen.clear();
                }
                self.seen.insert(key, (namespace, name, 1));
            }
            Err(err) => tracing::warn!(%err, reason = %note.reason, "could not record an event"),
        }
    }
}

/// An ObjectReference to a namespaced object.
pub fn object_ref(api_version: &str, kind: &str, meta: &ObjectMeta) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version.into()),
        kind: Some(kind.into()),
        name: meta.name.clone(),
        namespace: meta.namespace.clone(),
        uid: meta.uid.clone(),
        resource_version: meta.resource_version.clone(),
        ..Default::default()
    }
}
