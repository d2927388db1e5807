//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's
//! `leaderelection` does it: one replica reconciles, the others stand by.
//!
//! - A candidate takes the Lease only once it has seen the same record,
//!   unrenewed, for the holder's whole lease duration on its own clock
//!   (replicas share no clock: Lease times are only compared with the
//!   candidate's own observations).
//! - A leader renews every retry period. One that has not renewed within the
//!   renew deadline, shorter than the lease duration, stops acting at once:
//!   its controller is dropped, it is no longer ready, and `run` returns
//!   [`OperatorError::LeaseLost`] (`driftline operator` exits; Kubernetes
//!   restarts it and it stands by again). So it has stopped before any
//!   candidate may take over.

use std::future::Future;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tokio::time::Instant;
use tracing::{error, info, warn};

use super::error::{OperatorError, kube};
use super::telemetry::Telemetry;
use crate::api::names::MANAGER;

/// How long a Lease lasts, how long its leader may go without renewing, and
/// how often it tries; client-go's defaults are 15 s, 10 s and 2 s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseTiming {
    lease_duration: Duration,
    renew_deadline: Duration,
    retry_period: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        Self {
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

impl LeaseTiming {
    /// Checks that a leader stops before a candidate may take over
    /// (`renew_deadline < lease_duration`) and gets at least one retry
    /// within its deadline (`0 < retry_period < renew_deadline`).
    pub fn new(
        lease_duration: Duration,
        renew_deadline: Duration,
        retry_period: Duration,
    ) -> Result<Self, OperatorError> {
        let invalid = |reason: String| OperatorError::rule("the leader election", reason);
        if renew_deadline >= lease_duration {
            return Err(invalid(format!(
                "the renew deadline ({renew_deadline:?}) must be shorter than the lease duration \
                 ({lease_duration:?}), so that a leader stops acting before another replica may \
                 take the Lease"
            )));
        }
        if retry_period.is_zero() || retry_period >= renew_deadline {
            return Err(invalid(format!(
                "the retry period ({retry_period:?}) must be more than zero and shorter than the \
                 renew deadline ({renew_deadline:?}), so that a failed renewal is retried in time"
            )));
        }
        Ok(Self {
            lease_duration,
            renew_deadline,
            retry_period,
        })
    }

    /// A holder not renewed for this long (on a candidate's own clock) may be replaced.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    /// A leader that has not renewed for this long stops acting.
    pub fn renew_deadline(&self) -> Duration {
        self.renew_deadline
    }

    /// How often the leader renews and candidates try.
    pub fn retry_period(&self) -> Duration {
        self.retry_period
    }

    /// The lease duration as the Lease records it: whole seconds, rounded up
    /// (candidates then wait at least as long as this replica's deadline allows).
    fn lease_seconds(&self) -> i32 {
        let secs = self.lease_duration.as_secs_f64().ceil() as i32;
        secs.max(1)
    }
}

/// Which Lease to hold, and its timing.
#[derive(Clone, Debug)]
pub struct LeaseConfig {
    /// The Lease's name.
    pub name: String,
    /// The Lease's namespace (the operator's own).
    pub namespace: String,
    /// Lease duration, renew deadline and retry period.
    pub timing: LeaseTiming,
}

/// Why a leader stopped leading.
#[derive(Debug, thiserror::Error)]
pub enum StoppedLeading {
    /// The Lease names another holder (this replica's record was replaced).
    #[error("replica `{holder}` holds it")]
    Taken {
        /// The holder the Lease names now.
        holder: String,
    },
    /// No renewal succeeded within the renew deadline.
    #[error("no renewal succeeded within the renew deadline ({deadline:?})")]
    NotRenewed {
        /// The renew deadline.
        deadline: Duration,
        /// The last renewal's failure, if one answered before the deadline.
        #[source]
        last: Option<Box<OperatorError>>,
    },
}

/// Aborts the task when dropped: the renewals end with the leadership,
/// however `lead` ends (a crashed or cancelled leader renews nothing).
struct Renewals(tokio::task::JoinHandle<StoppedLeading>);

impl Drop for Renewals {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn micro_now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// Whether a candidate `me` may take a Lease whose record it has seen
/// unchanged since `observed_at`: when it is free or its own, or when the
/// holder's lease duration (the record's, else `own`) has passed since.
fn may_take(
    record: &LeaseSpec,
    me: &str,
    observed_at: Instant,
    now: Instant,
    own: Duration,
) -> bool {
    match record.holder_identity.as_deref() {
        None | Some("") => true,
        Some(holder) if holder == me => true,
        Some(_) => {
            let duration = record
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(own, Duration::from_secs);
            now >= observed_at + duration
        }
    }
}

/// What a replica has seen of the Lease: the last record and when it first
/// saw it (its own clock), and the object (for Events on it).
#[derive(Default)]
struct Observed {
    record: Option<(LeaseSpec, Instant)>,
    lease: Option<Lease>,
}

impl Observed {
    /// Notes `lease` seen at `now`; returns since when its record is unchanged.
    fn see(&mut self, lease: &Lease, now: Instant) -> Instant {
        let spec = lease.spec.clone().unwrap_or_default();
        let since = match &self.record {
            Some((seen, at)) if *seen == spec => *at,
            _ => now,
        };
        self.record = Some((spec, since));
        self.lease = Some(lease.clone());
        since
    }
}

/// What one try found.
enum Outcome {
    /// This replica holds the Lease (taken or renewed).
    Holding,
    /// Another replica holds it.
    HeldBy(String),
}

/// Takes the Lease if it is free, expired (by this replica's observation)
/// or ours, and renews it when ours.
async fn try_take(
    api: &Api<Lease>,
    cfg: &LeaseConfig,
    me: &str,
    seen: &mut Observed,
) -> Result<Outcome, OperatorError> {
    let now = Instant::now();
    let mut next = LeaseSpec {
        holder_identity: Some(me.to_string()),
        lease_duration_seconds: Some(cfg.timing.lease_seconds()),
        acquire_time: Some(micro_now()),
        renew_time: Some(micro_now()),
        ..Default::default()
    };
    let conflict = |seen: &Observed| {
        let holder = seen
            .record
            .as_ref()
            .and_then(|(r, _)| r.holder_identity.clone())
            .unwrap_or_default();
        Ok(Outcome::HeldBy(holder))
    };
    let Some(mut lease) = api
        .get_opt(&cfg.name)
        .await
        .map_err(kube(format!("read Lease {}/{}", cfg.namespace, cfg.name)))?
    else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(cfg.name.clone()),
                namespace: Some(cfg.namespace.clone()),
                ..Default::default()
            },
            spec: Some(next),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(created) => {
                seen.see(&created, now);
                Ok(Outcome::Holding)
            }
            Err(kube::Error::Api(s)) if s.code == 409 => conflict(seen),
            Err(e) => Err(kube(format!("create Lease {}/{}", cfg.namespace, cfg.name))(e)),
        };
    };
    let observed_at = seen.see(&lease, now);
    let current = lease.spec.clone().unwrap_or_default();
    if !may_take(&current, me, observed_at, now, cfg.timing.lease_duration) {
        return conflict(seen);
    }
    let ours = current.holder_identity.as_deref() == Some(me);
    if ours {
        next.acquire_time = current.acquire_time.clone();
    }
    next.lease_transitions = Some(current.lease_transitions.unwrap_or(0) + i32::from(!ours));
    lease.spec = Some(next);
    // The resourceVersion makes the replace fail if another replica wrote first.
    match api.replace(&cfg.name, &PostParams::default(), &lease).await {
        Ok(written) => {
            seen.see(&written, now);
            Ok(Outcome::Holding)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => conflict(seen),
        Err(e) => Err(kube(format!("renew Lease {}/{}", cfg.namespace, cfg.name))(
            e,
        )),
    }
}

/// This replica holds the Lease since its last successful try began.
pub struct Leading {
    renewed_at: Instant,
    seen: Observed,
}

/// Waits until this replica holds the Lease (`Some`) or `shutdown` comes (`None`).
pub async fn acquire(
    client: &Client,
    cfg: &LeaseConfig,
    me: &str,
    shutdown: impl Future<Output = ()>,
) -> Result<Option<Leading>, OperatorError> {
    let api: Api<Lease> = Api::namespaced(client.clone(), &cfg.namespace);
    let mut seen = Observed::default();
    tokio::pin!(shutdown);
    loop {
        let started = Instant::now();
        match try_take(&api, cfg, me, &mut seen).await {
            Ok(Outcome::Holding) => {
                info!(lease = %cfg.name, holder = me, "leading");
                return Ok(Some(Leading {
                    renewed_at: started,
                    seen,
                }));
            }
            Ok(Outcome::HeldBy(_)) => {}
            Err(e) => warn!(error = %crate::error_chain(&e), "leader election"),
        }
        tokio::select! {
            _ = &mut shutdown => return Ok(None),
            _ = tokio::time::sleep(cfg.timing.retry_period) => {}
        }
    }
}

impl Leading {
    /// Renews the Lease every retry period until a renewal is refused
    /// because another replica holds it, or none succeeds within the renew
    /// deadline; returns why. A renewal still unanswered at the deadline is
    /// abandoned: the deadline is measured from when the last successful
    /// one was sent, which is no later than the renew time it recorded.
    pub async fn keep(mut self, client: Client, cfg: LeaseConfig, me: String) -> StoppedLeading {
        let api: Api<Lease> = Api::namespaced(client, &cfg.namespace);
        let deadline = cfg.timing.renew_deadline;
        let mut last = None;
        loop {
            let cutoff = self.renewed_at + deadline;
            tokio::time::sleep_until((Instant::now() + cfg.timing.retry_period).min(cutoff)).await;
            let started = Instant::now();
            if started >= cutoff {
                return StoppedLeading::NotRenewed { deadline, last };
            }
            match tokio::time::timeout_at(cutoff, try_take(&api, &cfg, &me, &mut self.seen)).await {
                Ok(Ok(Outcome::Holding)) => {
                    self.renewed_at = started;
                    last = None;
                }
                Ok(Ok(Outcome::HeldBy(holder))) => return StoppedLeading::Taken { holder },
                Ok(Err(e)) => {
                    warn!(error = %crate::error_chain(&e), "lease renewal failed; retrying");
                    last = Some(Box::new(e));
                }
                Err(_) => return StoppedLeading::NotRenewed { deadline, last },
            }
        }
    }
}

/// An Event on the Lease (best effort: the Lease's story is also in the
/// log and the metrics, and a leader that lost it must not wait on the API).
async fn lease_event(
    client: &Client,
    me: &str,
    lease: Option<&Lease>,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let Some(lease) = lease else { return };
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: MANAGER.into(),
            instance: Some(me.into()),
        },
    );
    let event = Event {
        type_,
        reason: reason.into(),
        note: Some(note),
        action: reason.into(),
        secondary: None,
    };
    let reference = lease.object_ref(&());
    let publish = recorder.publish(&event, &reference);
    match tokio::time::timeout(Duration::from_secs(2), publish).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => warn!(error = %e, reason, "could not record the Lease's Event"),
        Err(_) => warn!(reason, "recording the Lease's Event timed out"),
    }
}

/// Runs `work` (the controller) only while this replica leads: stands by
/// (ready) until it holds the Lease or `shutdown` comes, then runs `work`
/// beside the renewals, and drops it the moment leadership ends.
pub async fn lead(
    client: &Client,
    cfg: &LeaseConfig,
    me: &str,
    telemetry: &Telemetry,
    shutdown: impl Future<Output = ()>,
    work: impl Future<Output = Result<(), OperatorError>>,
) -> Result<(), OperatorError> {
    // Standing by is ready: a rollout of the Deployment must not wait on the election.
    telemetry.set_ready(true);
    let Some(leading) = acquire(client, cfg, me, shutdown).await? else {
        return Ok(());
    };
    telemetry.set_leading(true);
    lease_event(
        client,
        me,
        leading.seen.lease.as_ref(),
        EventType::Normal,
        "Leading",
        format!("{me} holds the Lease and reconciles"),
    )
    .await;
    let lease = leading.seen.lease.clone();
    // On a task of its own: a busy controller must not delay a renewal.
    let mut renewals = Renewals(tokio::spawn(leading.keep(
        client.clone(),
        cfg.clone(),
        me.to_string(),
    )));
    let stopped = tokio::select! {
        result = work => {
            telemetry.set_leading(false);
            return result;
        }
        stopped = &mut renewals.0 => stopped,
    };
    telemetry.set_leading(false);
    telemetry.set_ready(false);
    telemetry.lease_lost();
    let cause = match stopped {
        Ok(why) => why,
        // The renewal task cannot panic short of a bug; stop leading all the same.
        Err(e) => StoppedLeading::NotRenewed {
            deadline: cfg.timing.renew_deadline,
            last: Some(Box::new(OperatorError::rule(
                "the Lease renewals",
                e.to_string(),
            ))),
        },
    };
    let lost = OperatorError::LeaseLost {
        lease: format!("{}/{}", cfg.namespace, cfg.name),
        cause,
    };
    error!(error = %crate::error_chain(&lost), "stopped leading");
    lease_event(
        client,
        me,
        lease.as_ref(),
        EventType::Warning,
        "LeaseLost",
        format!("{me}: {}", crate::error_chain(&lost)),
    )
    .await;
    Err(lost)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held_by(holder: &str, seconds: i32) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(seconds),
            ..Default::default()
        }
    }

    #[test]
    fn the_renew_deadline_must_be_shorter_than_the_lease_and_longer_than_a_retry() {
        let s = Duration::from_secs;
        let default = LeaseTiming::default();
        assert_eq!(
            (
                default.lease_duration(),
                default.renew_deadline(),
                default.retry_period()
            ),
            (s(15), s(10), s(2)),
            "client-go's defaults"
        );
        assert!(LeaseTiming::new(s(15), s(10), s(2)).is_ok());
        let err = crate::error_chain(&LeaseTiming::new(s(15), s(15), s(2)).unwrap_err());
        assert!(
            err.contains("renew deadline (15s) must be shorter than the lease duration (15s)"),
            "{err}"
        );
        let err = crate::error_chain(&LeaseTiming::new(s(15), s(10), s(10)).unwrap_err());
        assert!(
            err.contains("retry period (10s) must be more than zero and shorter than the renew deadline (10s)"),
            "{err}"
        );
        assert!(LeaseTiming::new(s(15), s(10), Duration::ZERO).is_err());
    }

    #[test]
    fn a_lease_records_whole_seconds_rounded_up() {
        let ms = Duration::from_millis;
        let timing = LeaseTiming::new(ms(2500), ms(2000), ms(500)).unwrap();
        assert_eq!(timing.lease_seconds(), 3);
        let timing = LeaseTiming::new(ms(300), ms(200), ms(100)).unwrap();
        assert_eq!(timing.lease_seconds(), 1);
    }

    #[test]
    fn a_candidate_waits_a_whole_lease_duration_from_when_it_saw_the_record() {
        let seen = Instant::now();
        let own = Duration::from_secs(15);
        let record = held_by("a", 3);
        // The holder's duration counts (3 s), on the candidate's clock.
        assert!(!may_take(&record, "b", seen, seen, own));
        assert!(!may_take(
            &record,
            "b",
            seen,
            seen + Duration::from_millis(2999),
            own
        ));
        assert!(may_take(
            &record,
            "b",
            seen,
            seen + Duration::from_secs(3),
            own
        ));
        // Its own record, or none, it may always take.
        assert!(may_take(&record, "a", seen, seen, own));
        assert!(may_take(&LeaseSpec::default(), "b", seen, seen, own));
        // Without a recorded duration, its own.
        let bare = LeaseSpec {
            holder_identity: Some("a".into()),
            ..Default::default()
        };
        assert!(!may_take(
            &bare,
            "b",
            seen,
            seen + Duration::from_secs(14),
            own
        ));
        assert!(may_take(&bare, "b", seen, seen + own, own));
    }

    #[test]
    fn a_renewed_record_restarts_the_candidates_wait() {
        let lease = |renewed: &str| Lease {
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(renewed.parse().unwrap())),
                ..held_by("a", 3)
            }),
            ..Default::default()
        };
        let mut seen = Observed::default();
        let t0 = Instant::now();
        let t1 = t0 + Duration::from_secs(2);
        let t2 = t0 + Duration::from_secs(4);
        assert_eq!(seen.see(&lease("2026-01-01T00:00:00Z"), t0), t0);
        assert_eq!(
            seen.see(&lease("2026-01-01T00:00:00Z"), t1),
            t0,
            "unchanged: still waiting since t0"
        );
        assert_eq!(
            seen.see(&lease("2026-01-01T00:00:02Z"), t2),
            t2,
            "renewed: the wait starts again"
        );
    }
}
