//! The operator end to end on the embedded cluster, the real driftline
//! binary in every pod: apply a Model and it trains, gates, serves and
//! explains itself.

use crate::notify_sink;
use crate::operator_support;

use std::time::Duration;

use driftline::api::{ConditionStatus, ModelPhase, VersionPhase, names};
use driftline::policy::conditions;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::api::{ListParams, Patch};
use operator_support::*;

/// Runs `scenario` on the embedded cluster (its own, on loopback /16
/// `subnet`) or on the shared real control plane (in namespace `ns`).
macro_rules! on_both_control_planes {
    ($scenario:ident, $subnet:expr, $ns:expr, $time_scale:expr) => {
        mod $scenario {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_the_embedded_cluster() {
                $scenario(Harness::start($subnet, $time_scale).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn on_a_real_control_plane() {
                let test = concat!(stringify!($scenario), "::on_a_real_control_plane");
                if let Some(h) = Harness::start_real(test, $ns, $time_scale).await {
                    $scenario(h).await;
                }
            }
        }
    };
}

on_both_control_planes!(
    a_new_model_trains_passes_its_gate_and_serves_through_its_gateway,
    151,
    "bootstrap",
    1.0
);

/// Bootstrap (v1 trained, gated, serving through the gateway Service), then
/// a bad candidate: rejected at the gate, the champion untouched.
async fn a_new_model_trains_passes_its_gate_and_serves_through_its_gateway(h: Harness) {
    let mut spec = quick_wine();
    // Every step to a signed CloudEvents receiver, rejections to a Slack one.
    let receiver = notify_sink::Receiver::start().await;
    let slack = notify_sink::Receiver::start().await;
    notify_sink::create_secret(&h, "hooks", "hmac", HOOK_KEY).await;
    spec.notify = driftline::api::parse_sinks(
        &format!(
            "- url: {}\n  secretRef: {{name: hooks, key: hmac}}\n\
             - url: {}\n  events: [gateRejected]\n  format: slack\n",
            receiver.url, slack.url
        ),
        "spec.notify",
    )
    .expect("sinks");
    h.apply("wine-quality", spec).await;

    // What `kubectl wait --for=condition=Ready` waits for.
    let status = h
        .wait_model("wine-quality", MINUTES, "Ready=True", |m| {
            let s = m.status.as_ref()?;
            let ready = s.condition(conditions::READY)?;
            (ready.status == ConditionStatus::True).then(|| s.clone())
        })
        .await;
    assert_eq!(status.champion.as_deref(), Some("v1"));
    assert_eq!(status.phase, ModelPhase::Serving);
    assert_eq!(status.traffic_summary.as_deref(), Some("v1:100"));

    let v1 = h
        .versions()
        .get("wine-quality-v1")
        .await
        .expect("ModelVersion v1");
    let v1s = v1.status.expect("v1 status");
    assert_eq!(v1s.phase, VersionPhase::Champion);
    let gate = v1s.gate.expect("gate summary recorded");
    assert!(gate.passed, "{gate:?}");
    assert!(gate.summary.starts_with("passed "), "{}", gate.summary);
    let artifact = v1s.artifact.expect("artifact").uri;
    assert!(
        std::path::Path::new(&artifact)
            .join("manifest.json")
            .exists(),
        "artifact at {artifact}"
    );
    assert!(std::path::Path::new(&names::gate_report_uri(&artifact)).exists());

    // One data check Job and one training Job, named by the contract.
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), &h.ns);
    let mut names_: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .expect("jobs")
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    names_.sort();
    assert_eq!(names_, ["wine-quality-datacheck-1", "wine-quality-train-1"]);

    // A request through the gateway Service is answered by v1.
    let gateway = h.service_url("wine-quality").await;
    let url = format!("{gateway}/v2/models/wine-quality/infer");
    let body = serde_json::json!({
        "inputs": [
            {"name": "fixed_acidity", "shape": [1], "datatype": "FP64", "data": [7.4]},
            {"name": "volatile_acidity", "shape": [1], "datatype": "FP64", "data": [0.7]},
            {"name": "citric_acid", "shape": [1], "datatype": "FP64", "data": [0.0]},
            {"name": "residual_sugar", "shape": [1], "datatype": "FP64", "data": [1.9]},
            {"name": "chlorides", "shape": [1], "datatype": "FP64", "data": [0.076]},
            {"name": "free_sulfur_dioxide", "shape": [1], "datatype": "FP64", "data": [11.0]},
            {"name": "total_sulfur_dioxide", "shape": [1], "datatype": "FP64", "data": [34.0]},
            {"name": "density", "shape": [1], "datatype": "FP64", "data": [0.9978]},
            {"name": "ph", "shape": [1], "datatype": "FP64", "data": [3.51]},
            {"name": "sulphates", "shape": [1], "datatype": "FP64", "data": [0.56]},
            {"name": "alcohol", "shape": [1], "datatype": "FP64", "data": [9.4]}
        ]
    });
    // Ready means servable: the first request after it is answered.
    let http = reqwest::Client::new();
    let first = http
        .post(&url)
        .json(&body)
        .send()
        .await
        .expect("the gateway's Service accepts the first request after Ready");
    assert!(first.status().is_success(), "{first:?}");
    let answer: serde_json::Value = first.json().await.expect("JSON answer");
    assert_eq!(answer["model_version"], "v1", "{answer}");
    assert!(
        answer["outputs"][0]["data"]
            .as_array()
            .is_some_and(|d| d.len() == 1),
        "{answer}"
    );

    let events = h.events("wine-quality").await;
    assert!(
        events.iter().any(|e| e.starts_with("TrainingStarted: v1")),
        "{events:?}"
    );

    // A change that trains a poor model: retrained, rejected, champion untouched.
    let mut model = h.models().get("wine-quality").await.expect("Model");
    model.spec.architecture.hidden_layers = vec![1];
    model.spec.training.epochs = 1;
    model.spec.training.learning_rate = 0.000_01;
    model.metadata.managed_fields = None;
    h.models()
        .replace("wine-quality", &Default::default(), &model)
        .await
        .expect("spec change accepted");
    h.wait_model("wine-quality", MINUTES, "v2 rejected", |m| {
        let s = m.status.as_ref()?;
        let t = s.last_training.as_ref()?;
        (t.version == "v2" && s.candidate.is_none() && s.training.is_none()).then_some(())
    })
    .await;
    let v2 = h
        .versions()
        .get("wine-quality-v2")
        .await
        .expect("ModelVersion v2");
    let v2s = v2.status.expect("v2 status");
    assert_eq!(v2s.phase, VersionPhase::Rejected, "{:?}", v2s.message);
    assert_eq!(
        v2.spec.lineage.trigger,
        driftline::api::TrainingTrigger::ConfigChanged
    );
    let gate = v2s.gate.expect("gate recorded on the rejected version");
    assert!(!gate.passed);
    assert!(!gate.failed_checks.is_empty());
    for check in &gate.failed_checks {
        assert!(!check.passed);
        assert!(check.value.is_some() && check.bound.is_some(), "{check:?}");
        assert!(!check.message.is_empty());
    }
    assert!(
        gate.failed_checks.iter().any(|c| c.name == "accuracy"),
        "{:?}",
        gate.failed_checks
    );
    let status = h.model_status("wine-quality").await;
    assert_eq!(status.champion.as_deref(), Some("v1"));
    assert_eq!(status.traffic_summary.as_deref(), Some("v1:100"));
    let events = h.events("wine-quality").await;
    assert!(
        events.iter().any(|e| e.starts_with("GateFailed:")),
        "{events:?}"
    );
    // The receivers: the bootstrap then the rejected candidate, in order,
    // signed, with the failed checks' numbers; Slack got the rejection.
    let got = receiver
        .wait_for("io.driftline.model.gaterejected", MINUTES)
        .await;
    let steps: Vec<String> = got
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.event["type"].as_str().unwrap_or_default(),
                r.event["data"]["version"].as_str().unwrap_or_default()
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            "io.driftline.model.trainingstarted v1",
            "io.driftline.model.gatepassed v1",
            "io.driftline.model.promoted v1",
            "io.driftline.model.trainingstarted v2",
            "io.driftline.model.gaterejected v2",
        ],
        "{got:#?}"
    );
    for r in &got {
        assert_eq!(
            r.signature.as_deref(),
            Some(driftline::operator::signature(HOOK_KEY, r.body.as_bytes()).as_str())
        );
    }
    let failed = got[4].event["data"]["numbers"]["gate"]["failedChecks"]
        .as_array()
        .expect("failed checks");
    assert!(
        failed
            .iter()
            .any(|c| c["name"] == "accuracy" && c["value"].is_number() && c["bound"].is_number()),
        "{failed:?}"
    );
    let slack_got = slack
        .wait_for_body(|b| b["text"].is_string(), MINUTES)
        .await;
    assert_eq!(slack_got.len(), 1, "only gateRejected: {slack_got:?}");
    let text = slack_got[0].event["text"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(text.contains("wine-quality v2: gateRejected"), "{text}");
    let blocks = slack_got[0].event["blocks"].to_string();
    assert!(blocks.contains("✗ accuracy"), "{blocks}");
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_model_that_passes_the_schema_but_fails_validation_gets_a_condition_an_event_and_no_job()
{
    let h = Harness::start(152, 1.0).await;
    let mut spec = pipeline("wine-quality.yaml");
    // The CRD's shape rule accepts a reversed range; the schedule parser does not.
    spec.retrain.as_mut().expect("retrain").schedule = Some("30-10 * * * *".into());
    h.apply("bad", spec).await;
    let cond = h
        .wait_model("bad", Duration::from_secs(60), "SpecValid=False", |m| {
            m.status
                .as_ref()?
                .condition(conditions::SPEC_VALID)
                .filter(|c| c.status == ConditionStatus::False)
                .cloned()
        })
        .await;
    assert_eq!(cond.reason, "InvalidSpec");
    assert!(
        cond.message.contains("spec.retrain.schedule"),
        "{}",
        cond.message
    );
    let events = h.events("bad").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("InvalidSpec:") && e.contains("spec.retrain.schedule")),
        "{events:?}"
    );
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), NS);
    assert!(
        jobs.list(&ListParams::default())
            .await
            .expect("jobs")
            .items
            .is_empty()
    );
    h.shutdown().await;
}

/// `--namespace team-a,team-b`: the operator reconciles Models in each
/// namespace it watches, and leaves the others alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_watching_two_namespaces_reconciles_both_and_ignores_a_third() {
    let mut h = Harness::start_idle(173, 1.0).await;
    h.watch_namespaces = Some(vec!["team-a".into(), "team-b".into()]);
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(h.client.clone());
    let mut models = Vec::new();
    for ns in ["team-a", "team-b", "team-c"] {
        let namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}}))
            .expect("namespace");
        namespaces
            .create(&kube::api::PostParams::default(), &namespace)
            .await
            .expect("namespace created");
        // Invalid for `validate()` (a reversed cron range), so the operator
        // answers at once with a condition and starts no training.
        let mut spec = pipeline("wine-quality.yaml");
        spec.retrain.as_mut().expect("retrain").schedule = Some("30-10 * * * *".into());
        let mut m = driftline::api::Model::new("wine", spec);
        m.metadata.namespace = Some(ns.into());
        let api: Api<driftline::api::Model> = Api::namespaced(h.client.clone(), ns);
        api.create(&kube::api::PostParams::default(), &m)
            .await
            .expect("Model created");
        models.push((ns, api));
    }
    h.start_operator();
    let spec_valid = |m: &driftline::api::Model| {
        m.status
            .as_ref()
            .and_then(|s| s.condition(conditions::SPEC_VALID))
            .map(|c| c.status)
    };
    for (ns, api) in &models[..2] {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let m = api.get("wine").await.expect("Model");
            if spec_valid(&m) == Some(ConditionStatus::False) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{ns}/wine never got SpecValid=False: {:?}",
                m.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    // Both watched Models were answered; the third, created before either,
    // still has no status a few seconds later.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ignored = models[2].1.get("wine").await.expect("Model");
    assert!(
        ignored.status.is_none(),
        "team-c is not watched: {:?}",
        ignored.status
    );
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(h.client.clone(), "team-c");
    assert!(
        events
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .is_empty(),
        "no Event in an unwatched namespace"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_nightly_retrain_is_canaried_step_by_step_and_promoted_on_live_evidence() {
    // 20x: a 10-minute canary pause passes in 30 s.
    let h = Harness::start(153, 20.0).await;
    let mut spec = pipeline("wine-quality.yaml");
    spec.training.epochs = 20;
    // Two replicas per version: each step's analysis sums the replicas'
    // counters (one scrape through the Service would reach one at random).
    spec.serving.replicas = 2;
    let retrain = spec.retrain.as_mut().expect("retrain");
    retrain.schedule = Some("0 2 * * *".into());
    retrain.time_zone = None;
    retrain.on_drift = false;
    spec.rollout.steps = vec![
        driftline::api::CanaryStep {
            weight: 10,
            pause: "10m".parse().unwrap(),
        },
        driftline::api::CanaryStep {
            weight: 25,
            pause: "10m".parse().unwrap(),
        },
        driftline::api::CanaryStep {
            weight: 50,
            pause: "10m".parse().unwrap(),
        },
    ];
    // Rollout mechanics at test-sized traffic: fixed bounds decide after a
    // few dozen requests; sequential analysis has its own tests.
    spec.rollout.analysis.method = driftline::api::AnalysisMethod::Threshold;
    spec.rollout.analysis.min_requests = 30;
    spec.rollout.analysis.max_p99_latency_ms = Some(500.0);
    // Two independently seeded models of the same data disagree on a few rows.
    spec.rollout.analysis.max_prediction_divergence = Some(0.3);
    h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;

    // The schedule comes due a few (test-clock) minutes ahead.
    let now = h.clock.now();
    let slot = (now + chrono::Duration::days(1))
        .date_naive()
        .and_hms_opt(2, 0, 0)
        .expect("02:00")
        .and_utc();
    h.clock.advance(slot - now - chrono::Duration::minutes(3));
    h.poke("wine-quality").await;

    let gateway = h.service_url("wine-quality").await;
    let background = h.load_in_background(&gateway, "wine-quality", &spec, 60.0);

    let started = h
        .wait_model("wine-quality", MINUTES, "the scheduled v2", |m| {
            let t = m.status.as_ref()?.last_training.as_ref()?;
            (t.version == "v2").then(|| t.clone())
        })
        .await;
    assert_eq!(started.trigger, driftline::api::TrainingTrigger::Schedule);
    assert!(started.reason.contains("0 2 * * *"), "{}", started.reason);

    // At the 25 % step, 2,000 requests through the gateway split 75/25 (±3).
    h.wait_model("wine-quality", MINUTES, "canary at step 2", |m| {
        let c = m.status.as_ref()?.canary.as_ref()?;
        (c.step == 1 && c.step_started_at.is_some()).then_some(())
    })
    .await;
    let split = load(
        h.http(),
        gateway.clone(),
        "wine-quality",
        &spec,
        1000.0,
        25,
        Some(2000),
    )
    .await;
    let total: u64 = split.by_version.values().sum();
    assert!(total >= 2000, "{split:?}");
    // 100 * n / total, not n / total * 100: 560 of 2 000 must read 28, not 28.000000000000004.
    let canary = 100.0 * *split.by_version.get("v2").unwrap_or(&0) as f64 / total as f64;
    assert!(
        (22.0..=28.0).contains(&canary),
        "v2 took {canary:.1} % of {total}: {split:?}"
    );

    let status = h
        .wait_model("wine-quality", MINUTES, "v2 promoted", |m| {
            let s = m.status.as_ref()?;
            (s.champion.as_deref() == Some("v2")).then(|| s.clone())
        })
        .await;
    background.abort();
    assert_eq!(status.traffic_summary.as_deref(), Some("v2:100"));
    let v2 = h.version_status("wine-quality", 2).await;
    assert_eq!(v2.phase, VersionPhase::Champion);
    let rollout = v2.rollout.expect("rollout recorded");
    assert_eq!(rollout.result, "Promoted");
    assert_eq!(rollout.steps_passed, 3);
    let passed: Vec<u32> = rollout
        .analyses
        .iter()
        .filter(|a| a.outcome == driftline::api::AnalysisOutcome::Passed)
        .map(|a| a.weight)
        .collect();
    assert_eq!(passed, vec![10, 25, 50], "{:?}", rollout.analyses);
    for a in rollout
        .analyses
        .iter()
        .filter(|a| a.outcome == driftline::api::AnalysisOutcome::Passed)
    {
        // Both sides measured over the same window, split by the step's weight.
        let share =
            a.canary_requests as f64 * 100.0 / (a.canary_requests + a.stable_requests) as f64;
        assert!(
            a.canary_requests >= 30 && (share - f64::from(a.weight)).abs() < 10.0,
            "{a:?}"
        );
    }
    let v1 = h.version_status("wine-quality", 1).await;
    assert_eq!(v1.phase, VersionPhase::Superseded);
    assert!(v1.champion_until.is_some());
    let events = h.events("wine-quality").await;
    assert!(
        events
            .iter()
            .filter(|e| e.starts_with("CanaryStepPassed:"))
            .count()
            >= 2,
        "{events:?}"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn in_distribution_traffic_starts_nothing_and_a_shift_in_the_key_feature_retrains() {
    let h = Harness::start(155, 1.0).await;
    let mut spec = live_evidence_wine();
    spec.retrain.as_mut().expect("retrain").on_drift = true;
    spec.drift.window = 100;
    spec.drift.consecutive_windows = 2;
    h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;
    let gateway = h.service_url("wine-quality").await;

    // Ten in-distribution windows of 100 rows: no retraining.
    let quiet = load(
        h.http(),
        gateway.clone(),
        "wine-quality",
        &spec,
        200.0,
        30,
        Some(1000),
    )
    .await;
    assert_eq!(quiet.ok, 1000, "{quiet:?}");
    let seen = h
        .wait_model("wine-quality", MINUTES, "the windows read", |m| {
            m.status.as_ref()?.drift.clone()
        })
        .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = h.model_status("wine-quality").await;
    assert_eq!(
        status.last_training.as_ref().map(|t| t.version.as_str()),
        Some("v1"),
        "{:?}",
        status.drift
    );
    assert!(
        status.training.is_none(),
        "in-distribution traffic started {:?}",
        status.training
    );
    assert!(seen.last_window_end.is_some(), "{seen:?}");
    // The traffic was the gate's own test set: it covers traffic.
    let freshness = status
        .test_set_freshness
        .clone()
        .expect("each window is compared with the test set too");
    assert!(!freshness.features.is_empty(), "{freshness:?}");
    assert_eq!(
        status
            .condition("TestSetStale")
            .map(|c| (c.status, c.reason.as_str())),
        Some((ConditionStatus::False, "TestSetCoversTraffic")),
        "{freshness:?}"
    );

    // The same rows with alcohol (the feature the model leans on most) shifted up.
    let shifted_spec = shifted_test_set(&h, &spec, "alcohol", 3.0, "shifted.csv");
    let drifted = load(
        h.http(),
        gateway,
        "wine-quality",
        &shifted_spec,
        200.0,
        30,
        Some(500),
    )
    .await;
    assert_eq!(drifted.ok, 500, "{drifted:?}");

    let run = h
        .wait_run("wine-quality", "v2", "a drift-triggered v2")
        .await;
    assert_eq!(
        run.trigger,
        driftline::api::TrainingTrigger::Drift,
        "{}",
        run.reason
    );
    assert!(run.reason.contains("alcohol"), "{}", run.reason);
    // Traffic has left the test set too, on the feature that moved.
    let stale = h
        .wait_model("wine-quality", MINUTES, "TestSetStale", |m| {
            let c = m.status.as_ref()?.condition("TestSetStale")?;
            (c.status == ConditionStatus::True).then(|| c.message.clone())
        })
        .await;
    assert!(stale.contains("on alcohol"), "{stale}");
    let events = h.events("wine-quality").await;
    assert!(
        events.iter().any(|e| e.starts_with("TestSetStale:")),
        "{events:?}"
    );
    h.shutdown().await;
}

on_both_control_planes!(
    an_operator_killed_mid_training_and_mid_canary_resumes_without_duplicates,
    156,
    "crash-resume",
    30.0
);

async fn an_operator_killed_mid_training_and_mid_canary_resumes_without_duplicates(mut h: Harness) {
    let mut spec = quick_wine();
    spec.rollout.steps = vec![
        driftline::api::CanaryStep {
            weight: 20,
            pause: "10m".parse().unwrap(),
        },
        driftline::api::CanaryStep {
            weight: 50,
            pause: "10m".parse().unwrap(),
        },
    ];
    // Rollout mechanics at test-sized traffic: fixed bounds decide after a
    // few dozen requests; sequential analysis has its own tests.
    spec.rollout.analysis.method = driftline::api::AnalysisMethod::Threshold;
    spec.rollout.analysis.min_requests = 20;
    spec.rollout.analysis.max_p99_latency_ms = Some(500.0);
    spec.rollout.analysis.max_prediction_divergence = Some(0.3);
    h.apply("wine-quality", spec.clone()).await;

    // Killed as soon as v1's training is recorded.
    h.wait_model("wine-quality", MINUTES, "v1 training", |m| {
        m.status.as_ref()?.training.as_ref().map(|_| ())
    })
    .await;
    h.kill_operator().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.start_operator();
    h.wait_champion("wine-quality", 1).await;

    // A retrain; killed again once v2's canary has its first step.
    h.retrain("wine-quality", "crash-test").await;
    let gateway = h.service_url("wine-quality").await;
    let background = h.load_in_background(&gateway, "wine-quality", &spec, 40.0);
    h.wait_model("wine-quality", MINUTES, "v2 canary step 1", |m| {
        m.status
            .as_ref()?
            .canary
            .as_ref()?
            .step_started_at
            .map(|_| ())
    })
    .await;
    h.kill_operator().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    h.start_operator();
    let status = h
        .wait_model(
            "wine-quality",
            MINUTES,
            "v2 promoted after the restart",
            |m| {
                let s = m.status.as_ref()?;
                (s.champion.as_deref() == Some("v2")).then(|| s.clone())
            },
        )
        .await;
    background.abort();
    assert_eq!(status.traffic_summary.as_deref(), Some("v2:100"));

    // Exactly what an uninterrupted run leaves: two Jobs, two versions.
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), &h.ns);
    let mut job_names: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .expect("jobs")
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    job_names.sort();
    assert_eq!(
        job_names,
        vec![
            "wine-quality-datacheck-1",
            "wine-quality-datacheck-2",
            "wine-quality-train-1",
            "wine-quality-train-2"
        ]
    );
    let versions = h
        .versions()
        .list(&ListParams::default())
        .await
        .expect("versions")
        .items;
    let phases: Vec<(u32, VersionPhase)> = versions
        .iter()
        .map(|v| {
            (
                v.spec.version,
                v.status.as_ref().map(|s| s.phase).unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        phases,
        vec![(1, VersionPhase::Superseded), (2, VersionPhase::Champion)]
    );
    let rollout = versions[1]
        .status
        .as_ref()
        .and_then(|s| s.rollout.clone())
        .expect("rollout");
    assert_eq!(
        (rollout.result.as_str(), rollout.steps_passed),
        ("Promoted", 2)
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_without_enough_traffic_is_never_promoted_and_rolls_back_at_its_deadline() {
    // 60x: the 5-minute pause passes in 5 s, the 20-minute deadline in 20 s.
    let h = Harness::start(157, 60.0).await;
    let mut spec = quick_wine();
    spec.rollout.steps = vec![driftline::api::CanaryStep {
        weight: 50,
        pause: "5m".parse().unwrap(),
    }];
    // Rollout mechanics at test-sized traffic: fixed bounds decide after a
    // few dozen requests; sequential analysis has its own tests.
    spec.rollout.analysis.method = driftline::api::AnalysisMethod::Threshold;
    spec.rollout.analysis.min_requests = 100;
    spec.rollout.progress_deadline = Some("20m".parse().unwrap());
    h.apply("wine-quality", spec).await;
    h.wait_champion("wine-quality", 1).await;
    h.retrain("wine-quality", "quiet-canary").await;

    // No traffic at all: inconclusive while it waits, never promoted.
    let inconclusive = h
        .wait_model("wine-quality", MINUTES, "an inconclusive analysis", |m| {
            let c = m.status.as_ref()?.canary.as_ref()?;
            c.analyses
                .iter()
                .find(|a| a.outcome == driftline::api::AnalysisOutcome::Inconclusive)
                .cloned()
        })
        .await;
    assert_eq!(inconclusive.canary_requests, 0);
    assert!(
        inconclusive.message.contains("minRequests 100"),
        "{}",
        inconclusive.message
    );

    let status = h
        .wait_model("wine-quality", MINUTES, "v2 rolled back", |m| {
            let s = m.status.as_ref()?;
            (s.canary.is_none()
                && s.candidate.is_none()
                && s.last_training.as_ref()?.version == "v2")
                .then(|| s.clone())
        })
        .await;
    assert_eq!(status.champion.as_deref(), Some("v1"));
    assert_eq!(status.traffic_summary.as_deref(), Some("v1:100"));
    let v2 = h.version_status("wine-quality", 2).await;
    assert_eq!(v2.phase, VersionPhase::RolledBack, "{:?}", v2.message);
    let rollout = v2.rollout.expect("rollout");
    assert_eq!(
        (rollout.result.as_str(), rollout.steps_passed),
        ("RolledBack", 0)
    );
    assert!(
        rollout.message.contains("progressDeadline"),
        "{}",
        rollout.message
    );
    let events = h.events("wine-quality").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("RolledBack:") && e.contains("progressDeadline")),
        "{events:?}"
    );
    h.shutdown().await;
}

on_both_control_planes!(
    a_canary_that_fails_live_analysis_is_rolled_back_after_its_failure_limit,
    158,
    "bad-canary",
    60.0
);

async fn a_canary_that_fails_live_analysis_is_rolled_back_after_its_failure_limit(h: Harness) {
    let mut spec = quick_wine();
    spec.rollout.steps = vec![
        driftline::api::CanaryStep {
            weight: 30,
            pause: "5m".parse().unwrap(),
        },
        driftline::api::CanaryStep {
            weight: 60,
            pause: "5m".parse().unwrap(),
        },
    ];
    // Rollout mechanics at test-sized traffic: fixed bounds decide after a
    // few dozen requests; sequential analysis has its own tests.
    spec.rollout.analysis.method = driftline::api::AnalysisMethod::Threshold;
    spec.rollout.analysis.min_requests = 20;
    // Slower than any real answer: every analysis of this canary fails on latency.
    spec.rollout.analysis.max_p99_latency_ms = Some(0.001);
    spec.rollout.analysis.failure_limit = 1;
    // Every lifecycle step goes to a signed webhook (checked at the end).
    let receiver = notify_sink::Receiver::start().await;
    notify_sink::create_secret(&h, "hooks", "hmac", HOOK_KEY).await;
    spec.notify = vec![driftline::api::NotifySink {
        url: receiver.url.clone(),
        events: vec!["*".into()],
        format: driftline::api::NotifyFormat::CloudEvents,
        secret_ref: Some(driftline::api::NotifySecretRef {
            name: "hooks".into(),
            key: "hmac".into(),
        }),
    }];
    let model = h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;
    // First a change that trains a poor model: v2 is rejected at its gate.
    let training = |hidden: &[u32], epochs: u32, rate: f64| {
        let patch = serde_json::json!({"spec": {
            "architecture": {"hiddenLayers": hidden},
            "training": {"epochs": epochs, "learningRate": rate},
        }});
        let models = h.models();
        async move {
            models
                .patch("wine-quality", &Default::default(), &Patch::Merge(&patch))
                .await
                .expect("spec change accepted");
        }
    };
    training(&[1], 1, 0.000_01).await;
    h.wait_model("wine-quality", MINUTES, "v2 rejected", |m| {
        let s = m.status.as_ref()?;
        let t = s.last_training.as_ref()?;
        (t.version == "v2" && s.candidate.is_none() && s.training.is_none()).then_some(())
    })
    .await;
    assert_eq!(
        h.version_status("wine-quality", 2).await.phase,
        VersionPhase::Rejected
    );
    // Then the settings back: v3 passes its gate and fails its canary.
    let gateway = h.service_url("wine-quality").await;
    let background = h.load_in_background(&gateway, "wine-quality", &spec, 60.0);
    let a = &spec.architecture;
    training(
        &a.hidden_layers,
        spec.training.epochs,
        spec.training.learning_rate,
    )
    .await;

    let status = h
        .wait_model("wine-quality", MINUTES, "v3 rolled back", |m| {
            let s = m.status.as_ref()?;
            (s.canary.is_none()
                && s.candidate.is_none()
                && s.last_training.as_ref()?.version == "v3")
                .then(|| s.clone())
        })
        .await;
    background.abort();
    assert_eq!(status.champion.as_deref(), Some("v1"));
    assert_eq!(status.traffic_summary.as_deref(), Some("v1:100"));
    let v3 = h.version_status("wine-quality", 3).await;
    assert_eq!(v3.phase, VersionPhase::RolledBack, "{:?}", v3.message);
    let rollout = v3.rollout.expect("rollout");
    assert_eq!(
        (rollout.result.as_str(), rollout.steps_passed),
        ("RolledBack", 0)
    );
    let failed: Vec<_> = rollout
        .analyses
        .iter()
        .filter(|a| a.outcome == driftline::api::AnalysisOutcome::Failed)
        .collect();
    assert_eq!(
        failed.len(),
        2,
        "failureLimit 1: the second failure rolls back: {:?}",
        rollout.analyses
    );
    for a in &failed {
        let check = a
            .checks
            .iter()
            .find(|c| c.name == "maxP99LatencyMs")
            .expect("latency check");
        assert!(!check.passed && check.value > 0.001, "{check:?}");
        assert!(a.canary_requests >= 20, "{a:?}");
    }
    let events = h.events("wine-quality").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("CanaryAnalysisFailed:") && e.contains("p99")),
        "{events:?}"
    );
    let uid = model.metadata.uid.clone().expect("uid");
    notifications_tell_the_whole_story(&receiver, &uid).await;
    h.shutdown().await;
}

const HOOK_KEY: &[u8] = b"webhook signing key";

/// The receiver got, in order and signed, the CloudEvents of the bootstrap,
/// the candidate rejected at its gate and the rolled-back canary (#23,
/// Done-when 1), with ids from the Model's uid, version and step, and the
/// numbers.
async fn notifications_tell_the_whole_story(receiver: &notify_sink::Receiver, uid: &str) {
    let got = receiver
        .wait_for("io.driftline.model.rolledback", MINUTES)
        .await;
    let steps: Vec<(String, String)> = got
        .iter()
        .map(|r| {
            (
                r.event["type"].as_str().unwrap_or_default().to_string(),
                r.event["data"]["version"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let expected = [
        ("trainingstarted", "v1"),
        ("gatepassed", "v1"),
        ("promoted", "v1"),
        ("trainingstarted", "v2"),
        ("gaterejected", "v2"),
        ("trainingstarted", "v3"),
        ("gatepassed", "v3"),
        ("canarystepfailed", "v3"),
        ("rolledback", "v3"),
    ]
    .map(|(t, v)| (format!("io.driftline.model.{t}"), v.to_string()));
    assert_eq!(steps, expected, "{got:#?}");
    for r in &got {
        assert_eq!(
            r.signature.as_deref(),
            Some(driftline::operator::signature(HOOK_KEY, r.body.as_bytes()).as_str()),
            "{r:?}"
        );
        assert_eq!(r.content_type, "application/cloudevents+json");
        assert_eq!(r.event["specversion"], "1.0");
        assert_eq!(
            (&r.ce_id, &r.idempotency_key),
            (
                &r.event["id"].as_str().unwrap_or_default().to_string(),
                &r.ce_id
            )
        );
        assert_eq!(r.event["data"]["model"], "wine-quality");
    }
    let id = |event, version, occurrence: &str| {
        driftline::policy::event_id(
            uid,
            &driftline::policy::Notification {
                event,
                version: Some(version),
                reason: String::new(),
                message: String::new(),
                numbers: serde_json::Value::Null,
                occurrence: occurrence.into(),
            },
        )
    };
    use driftline::api::NotifyEvent;
    assert_eq!(got[0].ce_id, id(NotifyEvent::TrainingStarted, 1, ""));
    assert_eq!(got[2].ce_id, id(NotifyEvent::Promoted, 1, ""));
    assert_eq!(got[4].ce_id, id(NotifyEvent::GateRejected, 2, ""));
    assert_eq!(
        got[7].ce_id,
        id(NotifyEvent::CanaryStepFailed, 3, "failure-1")
    );
    assert_eq!(got[8].ce_id, id(NotifyEvent::RolledBack, 3, ""));
    let gate = &got[1].event["data"]["numbers"]["gate"];
    assert_eq!(gate["passed"], true, "{gate}");
    let rejected = &got[4].event["data"]["numbers"]["gate"];
    assert_eq!(rejected["passed"], false, "{rejected}");
    let rolled_back = &got[8].event["data"];
    assert_eq!(rolled_back["reason"], "RolledBack");
    assert_eq!(rolled_back["numbers"]["stepsPassed"], 0);
    let checks = rolled_back["numbers"]["analysis"]["checks"]
        .as_array()
        .expect("the analysis' checks");
    let latency = checks
        .iter()
        .find(|c| c["name"] == "maxP99LatencyMs")
        .expect("latency check");
    assert_eq!(latency["passed"], false, "{latency}");
    assert!(latency["value"].as_f64() > Some(0.001), "{latency}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bootstrap_converges_with_about_one_api_request_in_ten_failing() {
    let h = Harness::start_idle(159, 1.0).await;
    let faults = h.cluster().faults();
    // Every tenth request (any client: operator, runner, gateway) gets a 500
    // or a 409, as a flaky API server would answer.
    let injector = {
        let faults = faults.clone();
        tokio::spawn(async move {
            let mut injected = 0usize;
            loop {
                let seen = faults.requests().len();
                if seen / 10 > injected {
                    let code = if injected.is_multiple_of(2) { 500 } else { 409 };
                    faults.fail_next(driftline::cluster::FaultRule::new("*", "*"), 1, code);
                    injected += 1;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let mut h = h;
    h.start_operator();
    let spec = quick_wine();
    // The Model itself may meet a fault: a user would apply again.
    let mut m = driftline::api::Model::new("wine-quality", spec);
    m.metadata.namespace = Some(NS.into());
    for _ in 0..20 {
        match h.models().create(&Default::default(), &m).await {
            Ok(_) => break,
            Err(kube::Error::Api(s)) if s.code == 409 && s.reason == "AlreadyExists" => break,
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
    let status = h
        .wait_model("wine-quality", MINUTES, "v1 champion despite faults", |m| {
            let s = m.status.as_ref()?;
            (s.champion.as_deref() == Some("v1") && s.traffic_summary.as_deref() == Some("v1:100"))
                .then(|| s.clone())
        })
        .await;
    injector.abort();
    let _ = injector.await;
    // A fault injected but not yet met would fail the checks below.
    let used = faults.faults_used();
    faults.clear();
    let total = faults.requests().len();
    assert!(
        used >= 5 && used * 100 >= total * 5,
        "{used} faults over {total} requests"
    );
    assert_eq!(status.phase, ModelPhase::Serving);
    // No duplicates: one data check Job, one training Job, one version.
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), NS);
    let mut job_names: Vec<String> = jobs
        .list(&ListParams::default())
        .await
        .expect("jobs")
        .items
        .into_iter()
        .filter_map(|j| j.metadata.name)
        .collect();
    job_names.sort();
    let v1 = h
        .versions()
        .get("wine-quality-v1")
        .await
        .expect("v1")
        .status;
    assert_eq!(
        job_names,
        ["wine-quality-datacheck-1", "wine-quality-train-1"],
        "v1: {v1:#?}"
    );
    assert!(
        v1.as_ref()
            .and_then(|s| s.data_check.as_ref())
            .is_some_and(|c| c.passed),
        "v1 trained only after its data check passed: {v1:#?}"
    );
    assert_eq!(
        h.versions()
            .list(&ListParams::default())
            .await
            .expect("versions")
            .items
            .len(),
        1
    );
    h.shutdown().await;
}

/// The registry's side of the loop on real PostgreSQL: the operator records
/// versions, evaluations, curves and champion changes; while the database is
/// down the Model says so (condition + Event) and the loop goes on; when it is
/// back the buffered rows arrive, and a restarted operator adds no duplicate.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_registry_outage_never_blocks_the_loop_and_its_rows_arrive_once_afterwards() {
    use driftline::registry::{
        ChampionAction, ConnectOptions, ModelRef, Registry, RegistryWriter, WriterOptions,
    };
    use std::sync::Arc;
    let Some(pg) = crate::postgres::Postgres::start("operator_registry_outage") else {
        return;
    };
    let options = WriterOptions {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_millis(200),
        ping_interval: Duration::from_millis(200),
        connect: ConnectOptions {
            connect_timeout: Duration::from_secs(2),
            ..ConnectOptions::default()
        },
        ..WriterOptions::default()
    };
    let writer = Arc::new(RegistryWriter::start(&pg.url(), options).expect("registry URL"));
    let mut h = Harness::start_idle(160, 1.0).await;
    h.registry = Some(writer.clone());
    h.start_operator();
    h.apply("wine-quality", quick_wine()).await;
    h.wait_champion("wine-quality", 1).await;
    let condition = |m: &driftline::api::Model| {
        m.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == conditions::REGISTRY_AVAILABLE)
            .map(|c| c.status)
    };
    h.wait_model("wine-quality", MINUTES, "RegistryAvailable=True", |m| {
        (condition(m) == Some(ConditionStatus::True)).then_some(())
    })
    .await;
    // Connecting at start is not an outage: no Warning before the real one.
    let events = h.events("wine-quality").await;
    assert!(
        !events.iter().any(|e| e.starts_with("RegistryUnreachable:")),
        "{events:?}"
    );

    pg.stop();
    h.wait_model("wine-quality", MINUTES, "RegistryAvailable=False", |m| {
        (condition(m) == Some(ConditionStatus::False)).then_some(())
    })
    .await;
    let events = h.events("wine-quality").await;
    assert!(
        events.iter().any(|e| e.starts_with("RegistryUnreachable:")),
        "{events:?}"
    );
    // The loop goes on without the database: retrain, canary, promotion.
    h.retrain("wine-quality", "during-the-outage").await;
    h.wait_model("wine-quality", MINUTES, "v2 in its canary", |m| {
        (m.status.as_ref()?.canary.as_ref()?.version == "v2").then_some(())
    })
    .await;
    let promote = format!("{} by bob", names::PROMOTE_CANARY);
    h.annotate(
        "wine-quality",
        &[
            (names::PROMOTE_ANNOTATION, &promote),
            (names::REQUESTED_BY_ANNOTATION, "bob"),
        ],
    )
    .await;
    h.wait_champion("wine-quality", 2).await;

    pg.start_again();
    h.wait_model(
        "wine-quality",
        MINUTES,
        "RegistryAvailable=True again",
        |m| (condition(m) == Some(ConditionStatus::True)).then_some(()),
    )
    .await;
    // A restarted operator decides nothing new and writes no duplicate.
    h.kill_operator().await;
    h.start_operator();
    h.poke("wine-quality").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    // A manual rollback with the database back: v1 serves again.
    h.annotate(
        "wine-quality",
        &[
            (names::ROLLBACK_ANNOTATION, "by carol"),
            (names::REQUESTED_BY_ANNOTATION, "carol"),
        ],
    )
    .await;
    h.wait_champion("wine-quality", 1).await;
    tokio::time::timeout(MINUTES, writer.flush())
        .await
        .expect("the buffered rows reach PostgreSQL");

    // What a user reads: `driftline history` on PostgreSQL.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args([
            "history",
            "wine-quality",
            "-n",
            NS,
            "-o",
            "json",
            "--registry",
        ])
        .arg(pg.url())
        .output()
        .expect("driftline history");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let changes = shown["championChanges"].as_array().expect("changes");
    assert_eq!(changes.len(), 3, "{shown}");
    assert_eq!(changes[2]["action"], "Rollback");
    assert_eq!(changes[2]["from"], "v2");
    assert_eq!(changes[2]["to"], "v1");
    assert_eq!(changes[2]["actor"], "carol");
    assert_eq!(
        shown["versions"].as_array().map(Vec::len),
        Some(2),
        "{shown}"
    );

    let registry = Registry::connect(&pg.url()).await.expect("registry");
    let model = ModelRef::new(NS, "wine-quality");
    let trail = registry.audit_trail(&model).await.expect("audit trail");
    let rows: Vec<_> = trail
        .iter()
        .map(|c| {
            (
                c.action,
                c.from,
                c.to,
                c.trigger.as_str(),
                c.actor.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            (ChampionAction::Promote, None, Some(1), "FirstVersion", None),
            (
                ChampionAction::Promote,
                Some(1),
                Some(2),
                "Manual",
                Some("bob")
            ),
            (
                ChampionAction::Rollback,
                Some(2),
                Some(1),
                "Manual",
                Some("carol")
            ),
        ]
    );
    let history = registry.history(&model, None).await.expect("history");
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].version.trigger, "Manual");
    assert!(
        history[1].version.reason.contains("during-the-outage"),
        "{:?}",
        history[1].version
    );
    for v in &history {
        let gate = v.gate.as_ref().expect("gate recorded");
        assert!(
            gate.passed && gate.metrics.contains_key("accuracy"),
            "{gate:?}"
        );
        assert!(v.version.artifact_uri.is_some() && v.version.dataset_digest.is_some());
    }
    let curve = registry.training_curve(&model, 2).await.expect("curve");
    assert!(!curve.is_empty() && curve.len() <= 20, "{curve:?}");
    assert!(
        curve
            .iter()
            .enumerate()
            .all(|(i, e)| e.epoch == i as u32 + 1)
    );
    assert!(writer.stats().rejected == 0, "{:?}", writer.stats());
    h.shutdown().await;
}

/// The first status write of a new ModelVersion (where its artifact and gate
/// report will be) fails once: the next reconcile writes it, so the version
/// is gated and served instead of waiting forever. (Found by the
/// fault-injection test above, about one run in ten.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_first_status_write_of_a_version_is_repaired() {
    let mut h = Harness::start_idle(161, 1.0).await;
    h.cluster().faults().fail_next(
        driftline::cluster::FaultRule::new("patch", "modelversions/status")
            .named("wine-quality-v1"),
        1,
        500,
    );
    h.start_operator();
    h.apply("wine-quality", quick_wine()).await;
    h.wait_champion("wine-quality", 1).await;
    assert_eq!(h.cluster().faults().faults_used(), 1, "the fault was met");
    let v1 = h.version_status("wine-quality", 1).await;
    assert!(v1.gate.is_some_and(|g| g.passed));
    assert!(
        v1.artifact
            .is_some_and(|a| a.uri.ends_with("/ml/wine-quality/v1"))
    );
    h.shutdown().await;
}

/// `retrain.onNewData`: rows added to the data source start a `NewData`
/// retrain (the operator notices the file's new version without reading
/// it); an unchanged source starts nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_rows_in_the_data_source_start_a_new_data_retrain() {
    let h = Harness::start(162, 1.0).await;
    let mut spec = quick_wine();
    let source = h.dir.path().join("train.csv");
    let rows = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("pipelines/data/wine-quality/train.csv"),
    )
    .expect("bundled rows");
    std::fs::write(&source, &rows).expect("copy rows");
    spec.data.source = source.display().to_string();
    spec.retrain = Some(driftline::api::RetrainSpec {
        on_new_data: true,
        ..Default::default()
    });
    h.apply("wine-quality", spec).await;
    h.wait_champion("wine-quality", 1).await;
    // Nothing changed: a few polls start nothing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let status = h.model_status("wine-quality").await;
    assert!(
        status.training.is_none() && status.next_version == 2,
        "{status:?}"
    );

    // New labelled rows arrive.
    let more: String = rows
        .lines()
        .skip(1)
        .take(200)
        .map(|l| format!("{l}\n"))
        .collect();
    let mut all = rows.clone();
    all.push_str(&more);
    std::fs::write(&source, all).expect("append rows");
    let run = h
        .wait_model("wine-quality", MINUTES, "a NewData retrain", |m| {
            let s = m.status.as_ref()?;
            s.training
                .clone()
                .or(s.last_training.clone())
                .filter(|t| t.version == "v2")
        })
        .await;
    assert_eq!(
        run.trigger,
        driftline::api::TrainingTrigger::NewData,
        "{run:?}"
    );
    h.shutdown().await;
}

/// Scenario 7: a GPU training on a cluster without GPUs stays Pending, and
/// the Model says why in the scheduler's words; once the node offers a GPU
/// (a device plugin registering one), training proceeds to a champion.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gpu_training_without_a_gpu_node_waits_unschedulable_then_proceeds() {
    let h = Harness::start(163, 1.0).await;
    let mut spec = quick_wine();
    spec.training.resources = Some(driftline::api::ComputeResources {
        gpu: Some(1),
        ..Default::default()
    });
    h.apply("wine-quality", spec).await;
    let cond = h
        .wait_model(
            "wine-quality",
            Duration::from_secs(60),
            "TrainingUnschedulable=True",
            |m| {
                m.status
                    .as_ref()?
                    .condition(conditions::TRAINING_UNSCHEDULABLE)
                    .filter(|c| c.status == ConditionStatus::True)
                    .cloned()
            },
        )
        .await;
    assert_eq!(cond.reason, "Unschedulable");
    assert_eq!(
        cond.message,
        "v1's training pod cannot be scheduled: 0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    );
    let model = h.models().get("wine-quality").await.expect("model");
    let status = model.status.expect("status");
    assert_eq!(status.phase, ModelPhase::Training);
    assert!(status.champion.is_none());
    let events = h.events("wine-quality").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("TrainingUnschedulable:")
                && e.contains("Insufficient nvidia.com/gpu")),
        "{events:?}"
    );
    let jobs: Api<Job> = Api::namespaced(h.client.clone(), NS);
    let job = jobs
        .get("wine-quality-train-1")
        .await
        .expect("the Job exists");
    let active = job.status.and_then(|s| s.ready).unwrap_or(0);
    assert_eq!(active, 0, "no training pod runs");

    h.cluster().runner().expect("the node").set_gpus(1);
    h.wait_champion("wine-quality", 1).await;
    let model = h.models().get("wine-quality").await.expect("model");
    let cond = model
        .status
        .as_ref()
        .and_then(|s| s.condition(conditions::TRAINING_UNSCHEDULABLE))
        .cloned()
        .expect("condition kept");
    assert_eq!(
        (cond.status, cond.reason.as_str()),
        (ConditionStatus::False, "Scheduled")
    );
    let events = h.events("wine-quality").await;
    assert!(
        events.iter().any(|e| e.starts_with("TrainingScheduled:")),
        "{events:?}"
    );
    h.shutdown().await;
}

/// The Gateway API's HTTPRoute, as a cluster that serves it has it: the
/// upstream CRD's group, names and the schema of the fields driftline writes.
fn http_route_crd()
-> k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition {
    serde_yaml::from_str(
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: httproutes.gateway.networking.k8s.io}
spec:
  group: gateway.networking.k8s.io
  scope: Namespaced
  names: {plural: httproutes, singular: httproute, kind: HTTPRoute, listKind: HTTPRouteList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              parentRefs:
                type: array
                items:
                  type: object
                  required: [name]
                  properties: {name: {type: string}, namespace: {type: string}}
              rules:
                type: array
                items:
                  type: object
                  properties:
                    backendRefs:
                      type: array
                      items:
                        type: object
                        required: [name]
                        properties:
                          kind: {type: string}
                          name: {type: string}
                          port: {type: integer}
                          weight: {type: integer, minimum: 0, maximum: 1000000}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
"#,
    )
    .expect("HTTPRoute CRD")
}

/// Where the cluster serves the Gateway API, each Model also gets an
/// HTTPRoute whose weighted backendRefs follow `status.traffic`: the
/// champion alone, then the canary split.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn where_the_gateway_api_is_served_an_http_route_follows_the_traffic_split() {
    use kube::api::{ApiResource, DynamicObject, GroupVersionKind, PostParams};
    let mut h = Harness::start_idle(164, 1.0).await;
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(h.client.clone());
    crds.create(&PostParams::default(), &http_route_crd())
        .await
        .expect("the HTTPRoute CRD installs");
    h.http_route_parent = Some(("gateways".into(), "public".into()));
    h.dashboard_url = Some("http://127.0.0.1:9091".into());
    h.start_operator();
    let mut spec = quick_wine();
    // One long step: the canary holds at 30 % while the test looks.
    spec.rollout.steps = steps(&[(30, "1h")]);
    h.apply("wine-quality", spec).await;
    h.wait_champion("wine-quality", 1).await;

    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "gateway.networking.k8s.io",
        "v1",
        "HTTPRoute",
    ));
    let routes: Api<DynamicObject> = Api::namespaced_with(h.client.clone(), NS, &resource);
    let backends = |route: &DynamicObject| route.data["spec"]["rules"][0]["backendRefs"].clone();
    let wait_route = |want: serde_json::Value| {
        let routes = routes.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(60);
            loop {
                let got = routes
                    .get_opt("wine-quality")
                    .await
                    .expect("read the route");
                if let Some(route) = got {
                    if backends(&route) == want {
                        return route;
                    }
                    assert!(
                        std::time::Instant::now() < deadline,
                        "route backends {} never became {want}",
                        backends(&route)
                    );
                } else {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "no HTTPRoute wine-quality"
                    );
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let route = wait_route(serde_json::json!([
        {"kind": "Service", "name": "wine-quality-v1", "port": 8080, "weight": 100}
    ]))
    .await;
    assert_eq!(
        route.data["spec"]["parentRefs"],
        serde_json::json!([{"namespace": "gateways", "name": "public"}])
    );
    let owner = &route.metadata.owner_references.as_ref().expect("owned")[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Model", "wine-quality")
    );

    h.retrain("wine-quality", "route-canary").await;
    let traffic = h
        .wait_model("wine-quality", MINUTES, "v2 canary at 30 %", |m| {
            let s = m.status.as_ref()?;
            (s.traffic.len() == 2).then(|| s.traffic.clone())
        })
        .await;
    let weight = |v: &str| traffic.iter().find(|t| t.version == v).map(|t| t.weight);
    assert_eq!((weight("v1"), weight("v2")), (Some(70), Some(30)));
    wait_route(serde_json::json!([
        {"kind": "Service", "name": "wine-quality-v1", "port": 8080, "weight": 70},
        {"kind": "Service", "name": "wine-quality-v2", "port": 8080, "weight": 30}
    ]))
    .await;
    h.shutdown().await;
}

/// Whether a logged request is a write the operator could have made: not a
/// read, in the scenario's namespace, to a kind the operator writes
/// (the node writes pods, their bindings, the children's `/status`,
/// Endpoints and core Events; the operator's Events are `events.k8s.io`).
fn operator_write(r: &driftline::cluster::LoggedRequest) -> bool {
    const WRITTEN: [&str; 9] = [
        "models",
        "models/status",
        "modelversions",
        "modelversions/status",
        "jobs",
        "deployments",
        "services",
        "httproutes",
        "leases",
    ];
    r.request.method != "GET"
        && r.request.namespace == NS
        && (WRITTEN.contains(&r.request.resource.as_str())
            || r.request.uri.starts_with("/apis/events.k8s.io/"))
}

/// Whether a logged request is a server-side apply under driftline's field manager.
fn applied_by_driftline(r: &driftline::cluster::LoggedRequest) -> bool {
    r.request.method == "PATCH"
        && r.request.content_type == "application/apply-patch+yaml"
        && r.request
            .uri
            .contains(&format!("fieldManager={}", names::MANAGER))
}

/// A Model that has settled makes no write while the operator keeps
/// looking at it; and what it wrote to get there it wrote under its one
/// field manager: children by server-side apply, statuses replaced whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_settled_model_is_reconciled_without_writes_and_written_under_one_field_manager() {
    let h = Harness::start(176, 1.0).await;
    let mut spec = quick_wine();
    // Watching for drift brings the Model back every drift poll (500 ms in
    // the harness): idle reconciles come by themselves, the test writes nothing.
    spec.retrain = Some(driftline::api::RetrainSpec {
        on_drift: true,
        ..Default::default()
    });
    h.apply("wine-quality", spec).await;
    h.wait_model("wine-quality", MINUTES, "v1 champion serving", |m| {
        let s = m.status.as_ref()?;
        (s.champion.as_deref() == Some("v1") && s.phase == ModelPhase::Serving).then_some(())
    })
    .await;
    // Settled: the gateway answers, so every child is there and ready.
    let gateway = h.service_url("wine-quality").await;
    wait_serving(&h.http(), &gateway, "wine-quality").await;

    let log = h.cluster().faults();
    let writes: Vec<_> = log.requests().into_iter().filter(operator_write).collect();
    let of = |resource: &str| -> Vec<&driftline::cluster::LoggedRequest> {
        writes
            .iter()
            .filter(|r| r.request.resource == resource && r.request.method == "PATCH")
            .collect()
    };
    // The node's Deployment controller records each Deployment's revision
    // (a merge patch of its own, as kube-controller-manager's); every
    // Deployment write of the operator's is a forced apply.
    let manager = format!("fieldManager={}", names::MANAGER);
    let deployments = of("deployments");
    assert!(
        deployments
            .iter()
            .any(|r| applied_by_driftline(r) && r.request.uri.contains("force=true")),
        "no Deployment applied: {deployments:#?}"
    );
    for r in deployments {
        assert!(
            (applied_by_driftline(r) && r.request.uri.contains("force=true"))
                || !r.request.uri.contains(&manager),
            "a Deployment written otherwise than by driftline's server-side apply: {r:?}"
        );
    }
    // The node gives each Service its cluster IP (a merge patch of its
    // own); every Service write of the operator's is an apply.
    let services = of("services");
    assert!(
        services.iter().any(|r| applied_by_driftline(r)),
        "{services:#?}"
    );
    assert!(
        services
            .iter()
            .all(|r| applied_by_driftline(r) || !r.request.uri.contains(&manager)),
        "{services:#?}"
    );
    // Statuses are replaced whole, under the same field manager.
    for resource in ["models/status", "modelversions/status"] {
        let patches = of(resource);
        assert!(!patches.is_empty(), "no write of {resource} seen");
        for r in patches {
            assert!(
                r.request.content_type == "application/json-patch+json"
                    && r.request.uri.contains(&manager),
                "{resource} written otherwise than by driftline's replacing patch: {r:?}"
            );
        }
    }
    // The API server records the status as driftline's alone.
    let model = h.models().get("wine-quality").await.expect("Model");
    let managers = model.metadata.managed_fields.unwrap_or_default();
    let status_manager = managers
        .iter()
        .find(|m| m.subresource.as_deref() == Some("status"))
        .expect("the status has a manager");
    assert_eq!(
        (
            status_manager.manager.as_deref(),
            status_manager.operation.as_deref()
        ),
        (Some(names::MANAGER), Some("Update")),
        "{managers:#?}"
    );
    assert!(
        status_manager
            .fields_v1
            .as_ref()
            .is_some_and(|f| f.0.pointer("/f:status/f:champion").is_some()),
        "{status_manager:?}"
    );
    assert_eq!(
        managers
            .iter()
            .filter(|m| m.subresource.as_deref() == Some("status"))
            .count(),
        1,
        "one writer of the status: {managers:#?}"
    );

    // Idle: a few reconciles to let the last watch events land, then ten
    // more with the request log cleared.
    let settled = h.reconciles();
    h.wait_reconciles(settled + 3, Duration::from_secs(60))
        .await;
    log.clear_requests();
    let start = h.reconciles();
    h.wait_reconciles(start + 10, Duration::from_secs(60)).await;
    let idle_writes: Vec<_> = log.requests().into_iter().filter(operator_write).collect();
    assert!(
        idle_writes.is_empty(),
        "{} idle reconciles wrote: {idle_writes:#?}",
        h.reconciles() - start
    );
    // The log still records: a read of the test's own shows up in it.
    h.models().get("wine-quality").await.expect("Model");
    assert!(
        log.requests()
            .iter()
            .any(|r| r.request.method == "GET" && r.request.resource == "models"),
        "the request log was not recording"
    );
    h.shutdown().await;
}

/// `kubectl set image` on a serving Deployment (keeping driftline's
/// annotations) is put back; a Deployment carrying the Model's labels that
/// no status calls for (left by an older operator) is deleted.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_edited_serving_deployment_is_put_back_and_an_orphaned_one_deleted() {
    use k8s_openapi::api::apps::v1::Deployment;
    use kube::api::{Patch, PatchParams, PostParams};

    let h = Harness::start(177, 1.0).await;
    h.apply("wine-quality", quick_wine()).await;
    h.wait_champion("wine-quality", 1).await;
    let deployments: Api<Deployment> = Api::namespaced(h.client.clone(), &h.ns);
    let image = |d: &Deployment| {
        d.spec
            .as_ref()
            .and_then(|s| s.template.spec.as_ref())
            .and_then(|p| p.containers[0].image.clone())
    };
    let hash = |d: &Deployment| {
        d.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("driftline.dev/applied-hash").cloned())
    };
    let applied = deployments.get("wine-quality-v1").await.expect("v1 serves");
    assert_eq!(image(&applied).as_deref(), Some("driftline:test"));

    let set_image: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "replace", "path": "/spec/template/spec/containers/0/image", "value": "someone/else:latest"}
    ]))
    .expect("a JSON patch");
    let by_hand = PatchParams {
        field_manager: Some("kubectl-set".into()),
        ..Default::default()
    };
    let edited = deployments
        .patch("wine-quality-v1", &by_hand, &Patch::Json::<()>(set_image))
        .await
        .expect("the edit is accepted");
    assert_eq!(image(&edited).as_deref(), Some("someone/else:latest"));
    assert_eq!(
        hash(&edited),
        hash(&applied),
        "the edit keeps the annotation"
    );

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let restored = loop {
        let d = deployments.get("wine-quality-v1").await.expect("v1");
        if image(&d).as_deref() == Some("driftline:test") {
            break d;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the edited image was never put back: {:?}",
            image(&d)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(hash(&restored), hash(&applied));

    // A leftover child: the Model's labels and owner, a version nothing serves.
    let model = h.models().get("wine-quality").await.expect("Model");
    let owner = kube::Resource::controller_owner_ref(&model, &()).expect("owner reference");
    let labels = serde_json::json!({
        names::MODEL_LABEL: "wine-quality", names::ROLE_LABEL: names::ROLE_SERVING,
        names::VERSION_LABEL: "9", names::MANAGED_BY_LABEL: names::MANAGER,
    });
    let leftover: Deployment = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "wine-quality-v9", "namespace": h.ns, "labels": labels,
            "ownerReferences": [owner]},
        "spec": {"replicas": 0, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "serve", "image": "driftline:old"}]}}},
    }))
    .expect("a Deployment");
    deployments
        .create(&PostParams::default(), &leftover)
        .await
        .expect("created");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while deployments
        .get_opt("wine-quality-v9")
        .await
        .expect("get")
        .is_some()
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the orphaned Deployment was never deleted"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        deployments
            .get_opt("wine-quality-v1")
            .await
            .expect("get")
            .is_some(),
        "the champion's server stays"
    );
    h.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_canary_that_agrees_is_promoted_by_the_sequential_analysis_with_its_evidence_recorded() {
    // 20x: the 2-minute pause passes in 6 s; the evidence needs real requests.
    let h = Harness::start(178, 20.0).await;
    let mut spec = quick_wine();
    spec.rollout.steps = vec![driftline::api::CanaryStep {
        weight: 50,
        pause: "2m".parse().unwrap(),
    }];
    let a = &mut spec.rollout.analysis;
    a.method = driftline::api::AnalysisMethod::Sequential;
    a.alpha = 0.05;
    a.min_requests = 100;
    a.max_error_rate = None;
    // A generous margin, so that a few hundred clean canary requests rule
    // out harm beyond it (the simulation tests cover tight margins).
    a.max_error_rate_increase = Some(0.05);
    a.max_p99_latency_ms = None;
    a.max_prediction_divergence = Some(0.3);
    h.apply("wine-quality", spec.clone()).await;
    h.wait_champion("wine-quality", 1).await;
    let gateway = h.service_url("wine-quality").await;
    let background = h.load_in_background(&gateway, "wine-quality", &spec, 80.0);
    h.retrain("wine-quality", "sequential").await;
    let status = h
        .wait_model("wine-quality", MINUTES, "v2 promoted", |m| {
            let s = m.status.as_ref()?;
            (s.champion.as_deref() == Some("v2")).then(|| s.clone())
        })
        .await;
    background.abort();
    assert_eq!(status.traffic_summary.as_deref(), Some("v2:100"));
    let v2 = h.version_status("wine-quality", 2).await;
    let rollout = v2.rollout.expect("rollout recorded");
    assert_eq!(rollout.result, "Promoted");
    let passed = rollout
        .analyses
        .iter()
        .find(|a| a.outcome == driftline::api::AnalysisOutcome::Passed)
        .unwrap_or_else(|| panic!("a passed analysis: {:?}", rollout.analyses));
    let check = passed
        .checks
        .iter()
        .find(|c| c.name == "maxErrorRateIncrease")
        .unwrap_or_else(|| panic!("the sequential check: {passed:?}"));
    assert_eq!(check.evidence, Some(driftline::api::Evidence::NoHarm));
    let (lower, upper) = (check.lower.expect("lower"), check.upper.expect("upper"));
    // Ruled out: the whole interval is below the margin, and it holds the estimate.
    assert!(
        lower <= check.value && check.value <= upper && upper < 0.05,
        "{check:?}"
    );
    assert!(passed.canary_requests >= 100, "{passed:?}");
    h.shutdown().await;
}
