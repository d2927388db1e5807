//! Notifications, the operator's side: which sinks a Model has (the
//! operator-wide ones and its `spec.notify`), their signing keys from
//! Secrets, the `NotificationsDegraded` condition when a key is missing,
//! and handing each decided step ([`crate::policy::notifications`]) to the
//! delivery queue ([`deliver`]). The bodies themselves are built purely in
//! `policy::notify`.

mod deliver;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::Secret;
use kube::{Api, Resource, ResourceExt};

use crate::api::{ConditionStatus, Model, ModelStatus, NotifySink};
use crate::policy::conditions::{self, set_condition};
use crate::policy::{
    Decision, EventKind, Notification, Observations, Subject, notification_body, notifications,
};
use crate::registry::ModelRef;

use super::apply;
use super::context::Context;
use super::error::OperatorError;

pub use deliver::{
    Delivery, DeliveryOptions, Notifier, Outcomes, QueueFull, SIGNATURE_HEADER, redacted,
    signature, sink_client,
};

/// Operator-wide notification settings (`driftline operator --notify`,
/// `driftline up --notify`, the chart's `notify` values).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotifyConfig {
    /// Sinks every Model's steps go to, beside its own `spec.notify`.
    pub sinks: Vec<NotifySink>,
    /// The namespace whose Secrets the operator-wide sinks' `secretRef`s name.
    pub namespace: String,
    pub delivery: DeliveryOptions,
}

/// A sink of one Model, with its signing key once read.
struct Sink {
    sink: NotifySink,
    /// `Some(Ok(key))`: sign with it; `Some(Err(why))`: a key was asked
    /// for and is missing; `None`: unsigned.
    key: Option<Result<Vec<u8>, String>>,
}

/// What a reconcile sends, decided before its status is written (the
/// condition goes into that status) and queued after.
pub struct Pending {
    sinks: Vec<Sink>,
    notifications: Vec<Notification>,
}

/// The Model's sinks: the operator-wide ones first, then its own.
fn sinks_of<'a>(model: &'a Model, config: &'a NotifyConfig) -> Vec<(&'a NotifySink, String)> {
    let own = model.namespace().unwrap_or_default();
    config
        .sinks
        .iter()
        .map(|s| (s, config.namespace.clone()))
        .chain(model.spec.notify.iter().map(|s| (s, own.clone())))
        .collect()
}

/// The signing key a sink names, or why there is none.
async fn read_key(
    ctx: &Context,
    namespace: &str,
    sink: &NotifySink,
) -> Option<Result<Vec<u8>, String>> {
    let r = sink.secret_ref.as_ref()?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    Some(match api.get_opt(&r.name).await {
        Ok(Some(secret)) => secret
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .map(|b| b.0.clone())
            .filter(|k| !k.is_empty())
            .ok_or_else(|| format!("Secret {namespace}/{} has no key `{}`", r.name, r.key)),
        Ok(None) => Err(format!("Secret {namespace}/{} not found", r.name)),
        Err(e) => Err(format!(
            "Secret {namespace}/{} unreadable ({}); the operator reads it only with the chart's notify.readSecrets",
            r.name,
            crate::error_chain(&e)
        )),
    })
}

/// Reads the sinks' keys and sets `NotificationsDegraded` in `status`
/// (a flip to True is also a Warning Event). Secrets are read only when
/// there is something to send or the condition is not yet known to be
/// False, so an idle Model costs no Secret reads.
pub async fn prepare(
    model: &Model,
    ctx: &Context,
    decision: &Decision,
    status: &mut ModelStatus,
    obs: &Observations,
) -> Result<Pending, OperatorError> {
    let configured = sinks_of(model, &ctx.notify);
    if configured.is_empty() {
        status
            .conditions
            .retain(|c| c.type_ != conditions::NOTIFICATIONS_DEGRADED);
        return Ok(Pending {
            sinks: Vec::new(),
            notifications: Vec::new(),
        });
    }
    let found = notifications(model.status.as_ref(), decision);
    let known_good = model
        .status
        .as_ref()
        .and_then(|s| s.condition(conditions::NOTIFICATIONS_DEGRADED))
        .is_some_and(|c| c.status == ConditionStatus::False);
    // An idle Model whose keys were found last time reads no Secret.
    let read = !(found.is_empty() && known_good);
    let mut sinks = Vec::with_capacity(configured.len());
    for (sink, namespace) in configured {
        let key = if read {
            read_key(ctx, &namespace, sink).await
        } else {
            None
        };
        sinks.push(Sink {
            sink: sink.clone(),
            key,
        });
    }
    if read {
        let missing: Vec<String> = sinks
            .iter()
            .filter_map(|s| match &s.key {
                Some(Err(why)) => Some(format!("{}: {why}", redacted(&s.sink.url))),
                _ => None,
            })
            .collect();
        let (value, reason, message) = if missing.is_empty() {
            (
                ConditionStatus::False,
                "SinksReady",
                format!(
                    "{} notification sink(s); every signing key found",
                    sinks.len()
                ),
            )
        } else {
            (
                ConditionStatus::True,
                "SecretMissing",
                format!(
                    "notifications to these sinks are dead-lettered until their signing key exists: {}",
                    missing.join("; ")
                ),
            )
        };
        let flipped = set_condition(
            status,
            obs,
            conditions::NOTIFICATIONS_DEGRADED,
            value,
            reason,
            &message,
        );
        if flipped && value == ConditionStatus::True {
            apply::event(
                &ctx.recorder,
                model,
                EventKind::Warning,
                reason,
                "Notify",
                &message,
            )
            .await?;
        }
    }
    Ok(Pending {
        sinks,
        notifications: found,
    })
}

/// Queues each notification for each sink that wants it; never waits. A
/// sink whose key is missing gets a dead letter instead (nothing is sent
/// unsigned that was meant to be signed, nothing is lost silently).
pub fn send(model: &Model, ctx: &Context, pending: Pending, now: DateTime<Utc>) {
    let Some(notifier) = &ctx.notifier else {
        return;
    };
    let uid = model.uid().unwrap_or_default();
    let namespace = model.namespace().unwrap_or_default();
    let name = model.name_any();
    let subject = Subject {
        uid: &uid,
        namespace: &namespace,
        name: &name,
        dashboard: ctx.dashboard_url.as_deref(),
    };
    let object = model.object_ref(&());
    for n in &pending.notifications {
        for s in pending.sinks.iter().filter(|s| s.sink.wants(n.event)) {
            let (body, content_type) = notification_body(s.sink.format, &subject, n, now);
            let mut delivery = Delivery {
                model: ModelRef::new(namespace.clone(), name.clone()),
                object: Some(object.clone()),
                url: s.sink.url.clone(),
                event_id: crate::policy::event_id(&uid, n),
                event_type: n.event.cloud_event_type(),
                version: n.version,
                body,
                content_type,
                key: None,
            };
            match &s.key {
                Some(Err(why)) => notifier.dead_letter(&delivery, why),
                Some(Ok(key)) => {
                    delivery.key = Some(key.clone());
                    // A full queue is counted and dead-lettered inside.
                    let _ = notifier.enqueue(delivery);
                }
                None => {
                    let _ = notifier.enqueue(delivery);
                }
            }
        }
    }
}
