//! Two operator replicas electing a leader on the embedded cluster, proven
//! from the API server's request log: each replica's client sends its own
//! `User-Agent`, and the log records when each request was received and
//! answered. A replica's term runs from its taking the Lease to another's.

use crate::operator_support;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use driftline::api::names;
use driftline::cluster::{FaultRule, LoggedRequest};
use driftline::operator::leader::{LeaseConfig, LeaseTiming, StoppedLeading};
use driftline::operator::{OperatorError, Telemetry};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use kube::{Api, Client};
use operator_support::*;

const LEASE: &str = "driftline-operator";
const LEASE_DURATION: Duration = Duration::from_secs(3);

/// Short enough for a test, in client-go's proportions.
fn lease() -> LeaseConfig {
    LeaseConfig {
        name: LEASE.into(),
        namespace: NS.into(),
        timing: LeaseTiming::new(
            LEASE_DURATION,
            Duration::from_secs(2),
            Duration::from_millis(250),
        )
        .expect("valid timing"),
    }
}

/// One operator replica in this process, with a client of its own whose
/// requests the log tells apart by `User-Agent` (its instance name).
struct Replica {
    name: String,
    telemetry: Arc<Telemetry>,
    _stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), OperatorError>>,
}

async fn replica(h: &Harness, name: &str) -> Replica {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(h.cluster().kubeconfig_path()).expect("kubeconfig");
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .expect("client config");
    config.headers.push((
        http::header::USER_AGENT,
        http::HeaderValue::from_str(name).expect("a header value"),
    ));
    let client = Client::try_from(config).expect("client");
    let telemetry = Arc::new(Telemetry::new());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = h.operator_config(name);
    let t = telemetry.clone();
    let task = tokio::spawn(async move {
        driftline::operator::run(client, config, t, async {
            let _ = stopped.await;
        })
        .await
    });
    Replica {
        name: name.into(),
        telemetry,
        _stop: stop,
        task,
    }
}

async fn lease_record(h: &Harness) -> Option<LeaseSpec> {
    let leases: Api<Lease> = Api::namespaced(h.client.clone(), NS);
    leases.get_opt(LEASE).await.ok().flatten()?.spec
}

async fn holder(h: &Harness) -> Option<String> {
    lease_record(h).await?.holder_identity
}

async fn wait_holder(h: &Harness, who: &str) {
    for _ in 0..300 {
        if holder(h).await.as_deref() == Some(who) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{who} never held the Lease (holder: {:?})", holder(h).await);
}

fn by<'a>(log: &'a [LoggedRequest], who: &'a str) -> impl Iterator<Item = &'a LoggedRequest> {
    log.iter().filter(move |r| r.request.user_agent == who)
}

fn is_write(r: &LoggedRequest) -> bool {
    !matches!(r.request.verb.as_str(), "get" | "list" | "watch")
}

fn is_lease(r: &LoggedRequest) -> bool {
    r.request.resource == "leases" && r.request.name == LEASE
}

fn succeeded(r: &LoggedRequest) -> bool {
    (200..300).contains(&r.status)
}

/// Writes that act on Models: the Models, their versions and children.
fn acts(r: &LoggedRequest) -> bool {
    let resource = r.request.resource.split('/').next().unwrap_or_default();
    is_write(r)
        && matches!(
            resource,
            "models" | "modelversions" | "jobs" | "deployments" | "services"
        )
}

fn describe(r: &LoggedRequest) -> String {
    format!(
        "{} {} {}/{} → {} (by {:?}, received {:?})",
        r.request.verb,
        r.request.resource,
        r.request.namespace,
        r.request.name,
        r.status,
        r.request.user_agent,
        r.received
    )
}

/// Who held the Lease at `t`: the author of the last successful Lease write
/// answered by then.
fn holder_at(log: &[LoggedRequest], t: SystemTime) -> Option<&str> {
    log.iter()
        .filter(|r| is_lease(r) && is_write(r) && succeeded(r) && r.answered <= t)
        .max_by_key(|r| r.answered)
        .map(|r| r.request.user_agent.as_str())
}

/// Every acting write of a replica lies inside its own term: it held the
/// Lease when the write arrived, and no other replica took the Lease before
/// the write was answered.
fn assert_one_actor_per_term(log: &[LoggedRequest], replicas: &[&str]) {
    let takes: Vec<&LoggedRequest> = log
        .iter()
        .filter(|r| is_lease(r) && is_write(r) && succeeded(r))
        .collect();
    for who in replicas {
        for w in by(log, who).filter(|r| acts(r)) {
            assert_eq!(
                holder_at(log, w.received),
                Some(*who),
                "{who} acted outside its term: {}",
                describe(w)
            );
            if let Some(other) = takes.iter().find(|t| {
                t.request.user_agent != *who && t.received <= w.answered && t.answered >= w.received
            }) {
                panic!("{who}'s write {} overlaps {}", describe(w), describe(other));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_leader_that_cannot_renew_stops_before_its_lease_expires_and_only_then_the_other_acts() {
    let mut h = Harness::start_idle(181, 1.0).await;
    h.lease = Some(lease());
    let faults = h.cluster().faults();
    let a = replica(&h, "replica-a").await;
    wait_holder(&h, "replica-a").await;
    let b = replica(&h, "replica-b").await;

    h.apply("wine-quality", quick_wine()).await;
    h.wait_model(
        "wine-quality",
        Duration::from_secs(60),
        "replica-a starts training v1",
        |m| m.status.as_ref()?.training.as_ref().map(|_| ()),
    )
    .await;
    // Only replica-a's renewals fail from now on; its other calls, and every
    // call of replica-b, go through.
    faults.fail_next(
        FaultRule::new("update", "leases")
            .named(LEASE)
            .from_client("replica-a"),
        usize::MAX,
        500,
    );
    // The Lease as replica-a last renewed it: when it expires by its own record.
    let mut a_record = None;
    let mut a_task = a.task;
    let ended = loop {
        if let Some(spec) = lease_record(&h).await
            && spec.holder_identity.as_deref() == Some("replica-a")
        {
            a_record = Some(spec);
        }
        tokio::select! {
            ended = &mut a_task => break ended.expect("replica-a's task"),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    };
    let a_record = a_record.expect("replica-a held the Lease");
    let a_expiry = SystemTime::from(a_record.renew_time.expect("renewed").0)
        + Duration::from_secs(a_record.lease_duration_seconds.expect("a duration") as u64);
    assert_eq!(a_record.lease_duration_seconds, Some(3));
    match ended {
        Err(OperatorError::LeaseLost {
            cause: StoppedLeading::NotRenewed { last, .. },
            ..
        }) => assert!(
            last.is_some_and(|e| e
                .to_string()
                .starts_with("renew Lease ml/driftline-operator")),
            "the last renewal's failure is the cause"
        ),
        other => panic!("replica-a ended with {other:?}"),
    }
    wait_holder(&h, "replica-b").await;
    h.wait_champion("wine-quality", 1).await;
    assert!(b.telemetry.render().contains("driftline_operator_leader 1"));
    // A settled Model is never written when idle, so give replica-b work of
    // its own: a retrain it must start (and write into the status).
    h.retrain("wine-quality", "after-takeover").await;
    h.wait_model(
        "wine-quality",
        Duration::from_secs(60),
        "replica-b acts on the retrain request",
        |m| {
            let handled = m.status.as_ref()?.handled_request.as_deref()?;
            (handled == "driftline.dev/retrain=after-takeover").then_some(())
        },
    )
    .await;

    let log = faults.requests();
    let a_last = by(&log, "replica-a")
        .max_by_key(|r| r.answered)
        .expect("replica-a's requests");
    assert!(
        by(&log, "replica-a").any(|r| acts(r) && succeeded(r)),
        "replica-a acted while it led"
    );
    // It had stopped calling the API altogether before its Lease expired by
    // its own record (renew time + duration, on this machine's one clock).
    assert!(
        a_last.received < a_expiry,
        "replica-a still called the API after its Lease expired at {a_expiry:?}: {}",
        describe(a_last)
    );
    let b_first = by(&log, "replica-b")
        .filter(|r| is_write(r))
        .min_by_key(|r| r.received)
        .expect("replica-b wrote");
    assert!(
        is_lease(b_first) && succeeded(b_first),
        "replica-b's first write takes the Lease: {}",
        describe(b_first)
    );
    assert!(
        a_last.answered < b_first.received,
        "replica-a's last request {} was not answered before replica-b's first write {}",
        describe(a_last),
        describe(b_first)
    );
    assert!(
        by(&log, "replica-b").any(|r| r.request.resource == "models/status" && succeeded(r)),
        "replica-b acted after it took over"
    );
    assert_one_actor_per_term(&log, &["replica-a", "replica-b"]);

    // Surfaced: not ready, the metrics, an Event on the Lease.
    assert!(
        !a.telemetry.is_ready(),
        "a replica that lost its Lease is not ready"
    );
    let metrics = a.telemetry.render();
    assert!(metrics.contains("driftline_operator_leader 0"), "{metrics}");
    assert!(
        metrics.contains("driftline_operator_leases_lost_total 1"),
        "{metrics}"
    );
    let lease_events = h.events(LEASE).await;
    assert!(
        lease_events.iter().any(|e| e.starts_with(
            "LeaseLost: replica-a: lost the leader Lease ml/driftline-operator; this replica \
             stops reconciling: no renewal succeeded within the renew deadline (2s): renew Lease"
        )),
        "{lease_events:?}"
    );

    b.task.abort();
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_replicas_never_act_in_one_term_across_a_crash_handover() {
    let mut h = Harness::start_idle(182, 1.0).await;
    h.lease = Some(lease());
    let faults = h.cluster().faults();
    let a = replica(&h, "replica-a").await;
    wait_holder(&h, "replica-a").await;
    let b = replica(&h, "replica-b").await;

    h.apply("wine-quality", quick_wine()).await;
    h.wait_model(
        "wine-quality",
        Duration::from_secs(60),
        "replica-a starts training v1",
        |m| m.status.as_ref()?.training.as_ref().map(|_| ()),
    )
    .await;
    // The leader crashes mid-training without giving the Lease up.
    a.task.abort();
    let _ = a.task.await;
    wait_holder(&h, "replica-b").await;
    h.wait_champion("wine-quality", 1).await;

    // Back as a candidate, it stands by while replica-b handles a retraining.
    let a = replica(&h, "replica-a").await;
    h.retrain("wine-quality", "after-failover").await;
    let handled = h
        .wait_model(
            "wine-quality",
            Duration::from_secs(240),
            "the leader handles the request",
            |m| {
                let s = m.status.as_ref()?;
                let t = s.last_training.as_ref().or(s.training.as_ref())?;
                (t.version == "v2").then(|| s.handled_request.clone())
            },
        )
        .await;
    assert_eq!(
        handled.as_deref(),
        Some("driftline.dev/retrain=after-failover")
    );
    let annotations = h
        .models()
        .get("wine-quality")
        .await
        .expect("Model")
        .metadata
        .annotations;
    assert!(
        annotations.is_none_or(|a| !a.contains_key(names::RETRAIN_ANNOTATION)),
        "the request annotation is removed once acted on"
    );
    assert_eq!(holder(&h).await.as_deref(), Some("replica-b"));
    assert!(!a.task.is_finished(), "the candidate stands by");

    let log = faults.requests();
    for who in [&a.name, &b.name] {
        assert!(
            by(&log, who).any(|r| r.request.resource == "models/status" && succeeded(r)),
            "{who} wrote the Model's status in its term"
        );
    }
    assert_one_actor_per_term(&log, &["replica-a", "replica-b"]);
    a.task.abort();
    b.task.abort();
    h.shutdown().await;
}
