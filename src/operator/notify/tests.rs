//! Delivery against a real HTTP receiver on loopback, dead letters in a real
//! SQLite registry, and the signature against RFC 4231's test vector.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;

use super::deliver::backoff;
use super::*;
use crate::registry::{Registry, RegistryWriter, WriterOptions};

/// What the receiver saw of one request.
#[derive(Clone, Debug)]
struct Seen {
    id: String,
    idempotency_key: String,
    signature: Option<String>,
    content_type: String,
    body: Vec<u8>,
    answered: u16,
}

#[derive(Clone, Default)]
struct Receiver {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answer 500 to this many requests first.
    fail_first: Arc<Mutex<u32>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let status = {
        let mut left = r.fail_first.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::OK
        }
    };
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    r.seen.lock().unwrap().push(Seen {
        id: header("ce-id").unwrap_or_default(),
        idempotency_key: header("idempotency-key").unwrap_or_default(),
        signature: header("x-driftline-signature"),
        content_type: header("content-type").unwrap_or_default(),
        body: body.to_vec(),
        answered: status.as_u16(),
    });
    status
}

async fn receiver(fail_first: u32) -> (String, Receiver) {
    let r = Receiver::default();
    *r.fail_first.lock().unwrap() = fail_first;
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), r)
}

/// A loopback URL nothing listens on.
async fn down_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://user:pass@{addr}/hook?token=secret")
}

fn quick() -> DeliveryOptions {
    DeliveryOptions {
        queue: 16,
        attempts: 4,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
    }
}

fn delivery(url: &str, id: &str, key: Option<&[u8]>) -> Delivery {
    Delivery {
        model: ModelRef::new("ml", "wine-quality"),
        object: None,
        url: url.into(),
        event_id: id.into(),
        event_type: "io.driftline.model.rolledback".into(),
        version: Some(2),
        body: format!(r#"{{"specversion":"1.0","id":"{id}"}}"#).into_bytes(),
        content_type: "application/cloudevents+json",
        key: key.map(<[u8]>::to_vec),
    }
}

/// Waits (bounded, so a hang fails instead of blocking) until nothing is pending.
async fn drained(n: &Notifier) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while n.pending() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("deliveries finish");
}

fn seen(r: &Receiver) -> Vec<Seen> {
    r.seen.lock().unwrap().clone()
}

#[test]
fn the_signature_is_hmac_sha256_as_rfc_4231_computes_it() {
    // RFC 4231, test case 2.
    assert_eq!(
        signature(b"Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn backoff_doubles_within_its_bound_and_keeps_half_as_floor() {
    let o = DeliveryOptions {
        base_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(1000),
        ..DeliveryOptions::default()
    };
    for _ in 0..50 {
        let first = backoff(&o, 1);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let third = backoff(&o, 3);
        assert!(third >= Duration::from_millis(200) && third <= Duration::from_millis(400));
        let late = backoff(&o, 30);
        assert!(late >= Duration::from_millis(500) && late <= Duration::from_millis(1000));
    }
}

#[test]
fn a_sink_url_is_stored_without_credentials() {
    assert_eq!(
        redacted("https://user:pw@hooks.example.com/x?token=abc#f"),
        "https://hooks.example.com/x"
    );
}

#[tokio::test]
async fn a_delivered_event_is_signed_and_carries_its_id_twice() {
    let (url, r) = receiver(0).await;
    let n = Notifier::start(sink_client(), quick(), Outcomes::default());
    n.enqueue(delivery(&url, "id-1", Some(b"k3y"))).unwrap();
    n.enqueue(delivery(&url, "id-2", None)).unwrap();
    drained(&n).await;
    let got = seen(&r);
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(
        (got[0].id.as_str(), got[1].id.as_str()),
        ("id-1", "id-2"),
        "in order"
    );
    assert_eq!(got[0].idempotency_key, "id-1");
    assert_eq!(got[0].content_type, "application/cloudevents+json");
    // Checked with the hmac crate directly, not through `signature`.
    let mut mac = <hmac::Hmac<sha2::Sha256> as hmac::Mac>::new_from_slice(b"k3y").unwrap();
    hmac::Mac::update(&mut mac, &got[0].body);
    let expected = hex::encode(hmac::Mac::finalize(mac).into_bytes());
    assert_eq!(got[0].signature, Some(format!("sha256={expected}")));
    assert_eq!(got[1].signature, None, "no secretRef, no signature");
}

#[tokio::test]
async fn a_receiver_that_fails_three_times_gets_the_event_once_with_one_id() {
    let (url, r) = receiver(3).await;
    let (_dir, registry_url, writer, outcomes) = with_registry();
    let n = Notifier::start(sink_client(), quick(), outcomes);
    n.enqueue(delivery(&url, "id-retry", Some(b"k"))).unwrap();
    drained(&n).await;
    let got = seen(&r);
    let answers: Vec<u16> = got.iter().map(|s| s.answered).collect();
    assert_eq!(answers, [500, 500, 500, 200]);
    assert!(got.iter().all(|s| s.id == "id-retry"), "{got:?}");
    let accepted = got.iter().filter(|s| s.answered == 200).count();
    assert_eq!(accepted, 1);
    writer.flush().await;
    let letters = dead_letters(&registry_url).await;
    assert!(letters.is_empty(), "{letters:?}");
}

#[tokio::test]
async fn a_sink_that_is_down_gets_a_dead_letter_and_the_others_go_on() {
    let down = down_url().await;
    let (up, r) = receiver(0).await;
    let (_dir, registry_url, writer, outcomes) = with_registry();
    let telemetry = Arc::new(crate::operator::Telemetry::new());
    let outcomes = Outcomes {
        telemetry: Some(telemetry.clone()),
        ..outcomes
    };
    let n = Notifier::start(sink_client(), quick(), outcomes);
    n.enqueue(delivery(&down, "id-lost", None)).unwrap();
    n.enqueue(delivery(&up, "id-kept", None)).unwrap();
    drained(&n).await;
    n.enqueue(delivery(&up, "id-after", None)).unwrap();
    drained(&n).await;
    let ids: Vec<String> = seen(&r).into_iter().map(|s| s.id).collect();
    assert_eq!(ids, ["id-kept", "id-after"]);
    writer.flush().await;
    let letters = dead_letters(&registry_url).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    let l = &letters[0];
    assert_eq!(l.event_id, "id-lost");
    assert_eq!(l.attempts, 4);
    assert_eq!(l.event_type, "io.driftline.model.rolledback");
    assert_eq!(l.version, Some(2));
    assert!(
        !l.sink_url.contains("pass") && !l.sink_url.contains("token"),
        "{}",
        l.sink_url
    );
    assert!(!l.last_error.is_empty());
    let metrics = telemetry.render();
    assert!(
        metrics.contains(r#"driftline_operator_notifications_total{outcome="deadLettered"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"driftline_operator_notifications_total{outcome="retried"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"driftline_operator_notifications_total{outcome="delivered"} 2"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_full_queue_refuses_without_waiting_and_records_the_drop() {
    let down = down_url().await;
    let (_dir, registry_url, writer, outcomes) = with_registry();
    let options = DeliveryOptions {
        queue: 1,
        // The first delivery stays in its backoff while the second is refused.
        base_delay: Duration::from_secs(30),
        max_delay: Duration::from_secs(30),
        ..quick()
    };
    let n = Notifier::start(sink_client(), options, outcomes);
    n.enqueue(delivery(&down, "id-first", None)).unwrap();
    let refused = n.enqueue(delivery(&down, "id-second", None));
    assert_eq!(refused, Err(QueueFull(1)));
    writer.flush().await;
    let letters = dead_letters(&registry_url).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert_eq!(letters[0].event_id, "id-second");
    assert_eq!(letters[0].attempts, 0);
    assert!(
        letters[0].last_error.contains("queue is full"),
        "{}",
        letters[0].last_error
    );
}

/// The dead letters of `ml/wine-quality` in the registry at `url`.
async fn dead_letters(url: &str) -> Vec<crate::registry::DeadLetter> {
    Registry::connect(url)
        .await
        .unwrap()
        .dead_letters(&ModelRef::new("ml", "wine-quality"))
        .await
        .unwrap()
}

/// A fresh SQLite registry, its buffered writer, and outcomes that record
/// dead letters there (the directory holds the file).
fn with_registry() -> (tempfile::TempDir, String, Arc<RegistryWriter>, Outcomes) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("registry.db").display());
    let writer = Arc::new(RegistryWriter::start(&url, WriterOptions::default()).unwrap());
    let outcomes = Outcomes {
        registry: Some(writer.clone()),
        ..Outcomes::default()
    };
    (dir, url, writer, outcomes)
}
