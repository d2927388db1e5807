//! `driftline gateway` in file mode: weighted splits, live weight changes
//! under load, stickiness, version paths and per-backend metrics.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use axum::Router;
use driftline::serve::{
    GatewayConfig, Mirror, VERSION_HEADER, WeightTable, WeightsHandle, gateway_router,
    read_weights_file, watch_weights_file,
};
use serde_json::{Value, json};

/// A stand-in model server that answers every path with its version and the path it saw.
async fn backend(version: &'static str) -> SocketAddr {
    let app = Router::new().fallback(move |uri: axum::http::Uri, body: String| async move {
        axum::Json(json!({"version": version, "path": uri.path(), "body_len": body.len()}))
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn write_weights(path: &Path, backends: &[(&str, SocketAddr, u32)]) {
    let table = json!({"backends": backends.iter().map(|(v, a, w)| json!({"version": v, "url": format!("http://{a}"), "weight": w})).collect::<Vec<_>>()});
    // Write then rename, as a config-map update would, so the reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, table.to_string()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Gateway {
    addr: SocketAddr,
    client: reqwest::Client,
    weights_path: std::path::PathBuf,
    /// What the operator's status watch drives: the weights and the shadow mirror.
    handle: WeightsHandle,
}

async fn gateway(weights: &Path, config: GatewayConfig) -> Gateway {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let initial = read_weights_file(weights).await.unwrap();
    let (router, handle) = gateway_router(initial, config);
    tokio::spawn(watch_weights_file(
        weights.to_path_buf(),
        Duration::from_millis(20),
        handle.clone(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    Gateway {
        addr,
        handle,
        weights_path: weights.to_path_buf(),
        client: reqwest::Client::builder()
            .pool_max_idle_per_host(64)
            .build()
            .unwrap(),
    }
}

impl Gateway {
    async fn infer(&self, body: Value) -> (u16, String) {
        let r = self
            .client
            .post(format!("http://{}/v2/models/wine/infer", self.addr))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let version = r
            .headers()
            .get(VERSION_HEADER)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        (status, version)
    }

    /// Sends `n` requests, `concurrency` at a time; returns answers per version and the non-200 count.
    async fn split(&self, n: usize, concurrency: usize) -> (HashMap<String, usize>, usize) {
        use futures::StreamExt;
        let answers: Vec<(u16, String)> = futures::stream::iter(0..n)
            .map(|i| self.infer(json!({"id": format!("r{i}"), "inputs": []})))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        let mut by_version = HashMap::new();
        let mut failed = 0;
        for (status, version) in answers {
            if status == 200 {
                *by_version.entry(version).or_default() += 1;
            } else {
                failed += 1;
            }
        }
        (by_version, failed)
    }

    async fn weights(&self) -> WeightTable {
        self.client
            .get(format!("http://{}/gateway/weights", self.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn metrics(&self) -> String {
        crate::serve_protocol::get_text(&format!("http://{}/metrics", self.addr)).await
    }

    async fn wait_for_weight(&self, version: &str, weight: u32) {
        for _ in 0..500 {
            if self
                .weights()
                .await
                .backends
                .iter()
                .any(|b| b.version == version && b.weight == weight)
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let metrics = self.metrics().await;
        let reloads: Vec<&str> = metrics.lines().filter(|l| l.contains("reload")).collect();
        panic!(
            "gateway never loaded weight {weight} for {version}; it has {:?}; the file holds {:?}; {reloads:?}",
            self.weights().await,
            std::fs::read_to_string(&self.weights_path).unwrap_or_default(),
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_90_10_split_over_10000_requests_is_within_2_points() {
    let (v3, v4) = (backend("v3").await, backend("v4").await);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.json");
    write_weights(&weights, &[("v3", v3, 90), ("v4", v4, 10)]);
    let g = gateway(&weights, GatewayConfig::default()).await;
    let (by_version, failed) = g.split(10_000, 32).await;
    assert_eq!(failed, 0);
    let share = by_version.get("v4").copied().unwrap_or(0) as f64 / 10_000.0;
    assert!(
        (share - 0.10).abs() <= 0.02,
        "v4 got {:.2} % of traffic: {by_version:?}",
        share * 100.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changing_weights_under_load_drops_no_request() {
    let (v3, v4) = (backend("v3").await, backend("v4").await);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.yaml");
    write_weights(&weights, &[("v3", v3, 100), ("v4", v4, 0)]);
    let g = std::sync::Arc::new(gateway(&weights, GatewayConfig::default()).await);
    let load = {
        let g = g.clone();
        tokio::spawn(async move { g.split(4_000, 16).await })
    };
    for (a, b) in [(75, 25), (50, 50), (0, 100), (90, 10)] {
        write_weights(&weights, &[("v3", v3, a), ("v4", v4, b)]);
        g.wait_for_weight("v4", b).await;
    }
    let (by_version, failed) = load.await.unwrap();
    assert_eq!(
        failed, 0,
        "requests failed while weights changed: {by_version:?}"
    );
    assert_eq!(by_version.values().sum::<usize>(), 4_000);
    // After the last change (90/10) everything still answers, and both versions did serve.
    let (after, failed) = g.split(1_000, 16).await;
    assert_eq!(failed, 0);
    assert!(after.contains_key("v3"));
}

/// A change made after the caller read the file but before the watcher's
/// first tick must still be loaded (CI once lost the first change this way).
#[tokio::test]
async fn a_change_before_the_watcher_starts_is_loaded() {
    let (v3, v4) = (backend("v3").await, backend("v4").await);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.json");
    write_weights(&weights, &[("v3", v3, 100), ("v4", v4, 0)]);
    let initial = read_weights_file(&weights).await.unwrap();
    let (_router, handle) = gateway_router(initial, GatewayConfig::default());
    write_weights(&weights, &[("v3", v3, 75), ("v4", v4, 25)]);
    tokio::spawn(watch_weights_file(
        weights.clone(),
        Duration::from_millis(20),
        handle.clone(),
    ));
    let loaded = async {
        while handle.current().backends[1].weight != 25 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), loaded)
        .await
        .expect("the change made before the watcher started was never loaded");
    assert_eq!(handle.refusals(), 0);
}

/// Two writes in one mtime tick with equal lengths (0/100 then 90/10) must
/// both be seen; CI once lost the second because the watcher compared
/// only mtime and size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_with_the_same_size_and_mtime_is_still_loaded() {
    let (v3, v4) = (backend("v3").await, backend("v4").await);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.json");
    write_weights(&weights, &[("v3", v3, 0), ("v4", v4, 100)]);
    let g = gateway(&weights, GatewayConfig::default()).await;
    g.wait_for_weight("v4", 100).await;
    let before = std::fs::metadata(&weights).unwrap();
    write_weights(&weights, &[("v3", v3, 90), ("v4", v4, 10)]);
    let file = std::fs::File::options().write(true).open(&weights).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    let after = std::fs::metadata(&weights).unwrap();
    assert_eq!(
        (after.len(), after.modified().unwrap()),
        (before.len(), before.modified().unwrap()),
        "the test needs two files that look alike to a stat()"
    );
    g.wait_for_weight("v4", 10).await;
    let (by_version, failed) = g.split(500, 8).await;
    assert_eq!(failed, 0);
    assert!(
        by_version.get("v3").copied().unwrap_or(0) > 400,
        "{by_version:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_weights_file_keeps_the_previous_weights() {
    let (v3, v4) = (backend("v3").await, backend("v4").await);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.json");
    write_weights(&weights, &[("v3", v3, 100), ("v4", v4, 0)]);
    let g = gateway(&weights, GatewayConfig::default()).await;
    std::fs::write(&weights, "{\"backends\": [ {\"version\": \"v3\"").unwrap();
    let mut refused = false;
    for _ in 0..500 {
        let metrics = g.metrics().await;
        if metrics.contains("driftline_gateway_weight_reload_errors_total 1") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the broken file was never noticed");
    assert_eq!(g.weights().await.backends[0].weight, 100);
    let (by_version, failed) = g.split(100, 8).await;
    assert_eq!((by_version.get("v3"), failed), (Some(&100), 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sticky_ids_always_reach_the_same_version_and_version_paths_are_pinned() {
    let (v3, v4) = (backend("v3").await, backend("v4").await);
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.json");
    write_weights(&weights, &[("v3", v3, 50), ("v4", v4, 50)]);
    let g = gateway(
        &weights,
        GatewayConfig {
            sticky: true,
            ..GatewayConfig::default()
        },
    )
    .await;
    for i in 0..20 {
        let id = format!("customer-{i}");
        let (_, first) = g.infer(json!({"id": id, "inputs": []})).await;
        for _ in 0..5 {
            assert_eq!(g.infer(json!({"id": id, "inputs": []})).await.1, first);
        }
        // Feedback for the id goes where its request went.
        let r = g
            .client
            .post(format!("http://{}/v2/models/wine/feedback", g.addr))
            .json(&json!({"id": id, "label": 1}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()[VERSION_HEADER], first.as_str());
    }
    let r = g
        .client
        .post(format!(
            "http://{}/v2/models/wine/versions/v4/infer",
            g.addr
        ))
        .json(&json!({"inputs": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()[VERSION_HEADER], "v4");
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["path"], "/v2/models/wine/versions/v4/infer",
        "the path reaches the backend unchanged"
    );
    // One version grammar: a bare number names no version.
    let bare = g
        .client
        .post(format!("http://{}/v2/models/wine/versions/4/infer", g.addr))
        .json(&json!({"inputs": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 404);
    let r = g
        .client
        .get(format!("http://{}/v2/models/wine/versions/9/ready", g.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("no version `9`"),
        "{body}"
    );
}

/// Done-when 7 (#20): a candidate in shadow whose server is down. Every
/// user request is still answered by the champion, none reaches the
/// candidate, and each mirror is counted as a shadow error (or, past the
/// bounded queue, as dropped), never as a pair: the shadow's verdict waits
/// for evidence (`policy_shadow`'s
/// `a_candidate_that_never_answers_keeps_the_shadow_waiting_and_users_untouched`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_shadow_candidate_that_is_down_leaves_every_user_request_to_the_champion() {
    use driftline::api::scrape::{GatewayCounters, parse_shadow_tallies};
    let v1 = backend("v1").await;
    // v2's port: nobody listens, connections are refused.
    let down = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.json");
    write_weights(&weights, &[("v1", v1, 100)]);
    let g = gateway(&weights, GatewayConfig::default()).await;
    g.handle.set_mirror(Some(Mirror {
        version: "v2".into(),
        url: format!("http://{down}"),
        sample: 1.0,
        tolerance: 0.0,
        slices: Default::default(),
    }));
    let (by_version, failed) = g.split(400, 16).await;
    assert_eq!(failed, 0, "{by_version:?}");
    assert_eq!(by_version, HashMap::from([("v1".to_string(), 400)]));
    // Every mirror is accounted for once tried: an error, or dropped.
    let mut text = String::new();
    let mut tally = driftline::api::ShadowTally::default();
    for _ in 0..500 {
        text = g.metrics().await;
        tally = parse_shadow_tallies(&text).remove("v2").unwrap_or_default();
        if tally.shadow_errors + tally.dropped == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(tally.shadow_errors + tally.dropped, 400, "{text}");
    assert!(tally.shadow_errors > 0, "{tally:?}");
    assert_eq!((tally.paired, tally.rows), (0, 0), "{tally:?}");
    let users = GatewayCounters::from_metrics(&text);
    assert_eq!(users.backend("v1").answered, 400, "{text}");
    let v2 = users.backend("v2");
    assert_eq!((v2.answered, v2.unreachable), (0, 0), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_backend_metrics_and_unreachable_backends() {
    let v3 = backend("v3").await;
    // A port nobody listens on.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let weights = dir.path().join("weights.json");
    write_weights(&weights, &[("v3", v3, 100), ("v5", dead, 0)]);
    let g = gateway(&weights, GatewayConfig::default()).await;
    for _ in 0..3 {
        assert_eq!(
            g.infer(json!({"inputs": []})).await,
            (200, "v3".to_string())
        );
    }
    let r = g
        .client
        .post(format!(
            "http://{}/v2/models/wine/versions/v5/infer",
            g.addr
        ))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("backend `v5`"),
        "{body}"
    );
    let metrics = g.metrics().await;
    for needle in [
        r#"driftline_gateway_requests_total{version="v3",code="200"} 3"#,
        r#"driftline_gateway_backend_errors_total{version="v5"} 1"#,
        r#"driftline_gateway_weight{version="v3"} 100"#,
        r#"driftline_gateway_backend_latency_seconds_count{version="v3"} 3"#,
    ] {
        assert!(
            metrics.contains(needle),
            "metrics lack `{needle}`:\n{metrics}"
        );
    }
}
