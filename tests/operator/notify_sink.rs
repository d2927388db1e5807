//! A webhook receiver for the operator scenarios: a real HTTP server on
//! loopback that records every CloudEvent it is sent, checks its
//! signature, and deduplicates on the CloudEvent id as a receiver should.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;

use crate::operator_support::{Harness, NS, quick_wine};
use driftline::policy::conditions;
use driftline::registry::{ModelRef, Registry, RegistryWriter, WriterOptions};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    pub event: Value,
    pub ce_id: String,
    pub idempotency_key: String,
    pub signature: Option<String>,
    pub content_type: String,
    /// The raw body (JSON is UTF-8), exactly as signed.
    pub body: String,
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub url: String,
    seen: Arc<Mutex<Vec<Received>>>,
}

async fn receive(
    State(seen): State<Arc<Mutex<Vec<Received>>>>,
    h: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |n: &str| {
        h.get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let Ok(event) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    seen.lock().unwrap().push(Received {
        event,
        ce_id: header("ce-id"),
        idempotency_key: header("idempotency-key"),
        signature: h
            .get("x-driftline-signature")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        content_type: header("content-type"),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    StatusCode::ACCEPTED
}

impl Receiver {
    pub async fn start() -> Receiver {
        let seen: Arc<Mutex<Vec<Received>>> = Arc::default();
        let app = Router::new()
            .route("/events", post(receive))
            .with_state(seen.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            url: format!("http://{addr}/events"),
            seen,
        }
    }

    /// Every event once, in arrival order (a re-sent id is dropped).
    pub fn events(&self) -> Vec<Received> {
        let mut ids = std::collections::HashSet::new();
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| ids.insert(r.ce_id.clone()))
            .cloned()
            .collect()
    }

    /// Waits (bounded) until a body `matches` (a Slack message has no `type`).
    pub async fn wait_for_body(
        &self,
        matches: impl Fn(&Value) -> bool,
        timeout: Duration,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.events();
            if got.iter().any(|r| matches(&r.event)) {
                return got;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching body; got {got:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (bounded) until an event of CloudEvents `type` has arrived.
    pub async fn wait_for(&self, event_type: &str, timeout: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let got = self.events();
            if got.iter().any(|r| r.event["type"] == event_type) {
                return got;
            }
            let types: Vec<String> = got.iter().map(|r| r.event["type"].to_string()).collect();
            assert!(
                tokio::time::Instant::now() < deadline,
                "no {event_type} event arrived; got {types:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// Creates Secret `name` with `key` in the harness's namespace.
pub async fn create_secret(h: &Harness, name: &str, key: &str, value: &[u8]) {
    let mut secret = Secret::default();
    secret.metadata.name = Some(name.into());
    secret.metadata.namespace = Some(h.ns.clone());
    secret.data = Some([(key.to_string(), ByteString(value.to_vec()))].into());
    Api::<Secret>::namespaced(h.client.clone(), &h.ns)
        .create(&PostParams::default(), &secret)
        .await
        .expect("Secret created");
}

/// A sink whose signing key is missing: the Model says so in a condition and
/// an Event, nothing is sent unsigned, each step becomes a dead letter in the
/// registry, and once the Secret exists the next steps arrive signed.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_missing_signing_key_is_a_condition_an_event_and_dead_letters_until_it_exists() {
    let receiver = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let registry_url = format!("sqlite://{}", dir.path().join("registry.db").display());
    let writer =
        Arc::new(RegistryWriter::start(&registry_url, WriterOptions::default()).expect("registry"));
    let mut h = Harness::start_idle(203, 1.0).await;
    h.registry = Some(writer.clone());
    h.notify = driftline::operator::NotifyConfig {
        sinks: driftline::api::parse_sinks(
            &format!(
                "- url: {}\n  secretRef: {{name: hooks, key: hmac}}\n",
                receiver.url
            ),
            "--notify",
        )
        .expect("sinks"),
        namespace: NS.into(),
        delivery: Default::default(),
    };
    h.start_operator();
    h.apply("wine-quality", quick_wine()).await;
    let degraded = h
        .wait_model(
            "wine-quality",
            Duration::from_secs(120),
            "NotificationsDegraded=True",
            |m| {
                m.status
                    .as_ref()?
                    .condition(conditions::NOTIFICATIONS_DEGRADED)
                    .filter(|c| c.status == driftline::api::ConditionStatus::True)
                    .cloned()
            },
        )
        .await;
    assert_eq!(degraded.reason, "SecretMissing");
    assert!(
        degraded.message.contains("Secret ml/hooks not found"),
        "{}",
        degraded.message
    );
    let events = h.events("wine-quality").await;
    assert!(
        events
            .iter()
            .any(|e| e.starts_with("SecretMissing:") && e.contains("ml/hooks")),
        "{events:?}"
    );
    // The training that started meanwhile is a dead letter, not lost.
    let model = ModelRef::new(NS, "wine-quality");
    let registry = Registry::connect(&registry_url).await.expect("registry");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let letters = loop {
        writer.flush().await;
        let letters = registry.dead_letters(&model).await.expect("dead letters");
        if letters
            .iter()
            .any(|l| l.event_type == "io.driftline.model.trainingstarted")
        {
            break letters;
        }
        assert!(tokio::time::Instant::now() < deadline, "{letters:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let started = letters
        .iter()
        .find(|l| l.event_type == "io.driftline.model.trainingstarted")
        .expect("trainingstarted");
    assert_eq!(started.version, Some(1));
    assert_eq!(started.attempts, 0);
    assert!(started.last_error.contains("not found"), "{started:?}");
    assert!(receiver.events().is_empty(), "nothing was sent unsigned");
    // What a user reads: `driftline history` lists it as undelivered.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
        .args(["history", "wine-quality", "-n", NS, "--registry"])
        .arg(&registry_url)
        .output()
        .expect("driftline history");
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let undelivered = shown
        .split("Undelivered notifications (dead letters)")
        .nth(1)
        .unwrap_or_else(|| panic!("no dead letters shown:\n{shown}"));
    assert!(
        undelivered
            .lines()
            .any(|l| l.contains("trainingstarted") && l.contains(" v1 ")),
        "{shown}"
    );

    create_secret(&h, "hooks", "hmac", b"k").await;
    let got = receiver
        .wait_for("io.driftline.model.promoted", Duration::from_secs(240))
        .await;
    for r in &got {
        assert_eq!(
            r.signature.as_deref(),
            Some(driftline::operator::signature(b"k", r.body.as_bytes()).as_str())
        );
    }
    h.wait_model(
        "wine-quality",
        Duration::from_secs(60),
        "NotificationsDegraded=False",
        |m| {
            m.status
                .as_ref()?
                .condition(conditions::NOTIFICATIONS_DEGRADED)
                .filter(|c| c.status == driftline::api::ConditionStatus::False)
                .cloned()
        },
    )
    .await;
    h.shutdown().await;
}
