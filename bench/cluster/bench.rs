//! Embedded API server benchmark: create rate, list time, watch fan-out and
//! memory per object for N ConfigMaps, driven through kube-rs over HTTP.
//!
//! `cargo run --example cluster_bench -- [objects] [watchers] [concurrency]`

use std::time::{Duration, Instant};

use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};

#[path = "../common/rss.rs"]
mod rss;
use rss::rss_kib;

fn config_map(i: usize) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(format!("bench-{i:06}")),
            labels: Some(
                [
                    ("app".to_string(), "bench".to_string()),
                    ("shard".to_string(), (i % 10).to_string()),
                ]
                .into(),
            ),
            ..Default::default()
        },
        data: Some(
            [(
                "payload".to_string(),
                format!("value-{i}-{}", "x".repeat(64)),
            )]
            .into(),
        ),
        ..Default::default()
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let objects = args.first().copied().unwrap_or(10_000);
    let watchers = args.get(1).copied().unwrap_or(10);
    let concurrency = args.get(2).copied().unwrap_or(32);
    let dir = tempfile::tempdir()?;
    let boot = Instant::now();
    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path())).await?;
    let startup_time = boot.elapsed();
    let client = cluster.client().await;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let start_rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();

    // Watchers start before the creates and count ADDED events until they saw all objects.
    let mut watch_tasks = Vec::new();
    for _ in 0..watchers {
        let api = api.clone();
        let rv = start_rv.clone();
        let stream = api.watch(&WatchParams::default().timeout(290), &rv).await?;
        watch_tasks.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            let mut seen = 0usize;
            while let Ok(Some(ev)) = stream.try_next().await {
                if let WatchEvent::Added(_) = ev {
                    seen += 1;
                    if seen == objects {
                        return Some(Instant::now());
                    }
                }
            }
            None
        }));
    }

    let rss_before = rss_kib(std::process::id());
    let started = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &config_map(i)).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let create_time = started.elapsed();

    let mut last_seen = started;
    for t in watch_tasks {
        match tokio::time::timeout(Duration::from_secs(120), t).await {
            Ok(Ok(Some(at))) => last_seen = last_seen.max(at),
            _ => anyhow::bail!("a watcher did not receive all {objects} events"),
        }
    }
    let fanout_time = last_seen - started;
    // Measured before any list: lists make client-side copies the allocator keeps.
    let rss_after = rss_kib(std::process::id());

    let t = Instant::now();
    let all = api.list(&ListParams::default()).await?;
    let list_time = t.elapsed();
    anyhow::ensure!(
        all.items.len() == objects,
        "list returned {} objects",
        all.items.len()
    );
    let t = Instant::now();
    let shard = api.list(&ListParams::default().labels("shard=3")).await?;
    let selector_time = t.elapsed();
    let t = Instant::now();
    let mut pages = 0;
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        pages += 1;
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    let paged_time = t.elapsed();
    drop(all);
    drop(shard);

    println!("objects={objects} watchers={watchers} concurrency={concurrency}");
    println!("startup_ms={:.1}", startup_time.as_secs_f64() * 1e3);
    println!(
        "create_rate_per_s={:.0}",
        objects as f64 / create_time.as_secs_f64()
    );
    println!("create_total_s={:.2}", create_time.as_secs_f64());
    println!(
        "watch_fanout_all_delivered_s={:.2}",
        fanout_time.as_secs_f64()
    );
    println!("list_all_ms={:.1}", list_time.as_secs_f64() * 1e3);
    println!(
        "list_label_selector_ms={:.1}",
        selector_time.as_secs_f64() * 1e3
    );
    println!(
        "list_paged_500_ms={:.1} pages={pages}",
        paged_time.as_secs_f64() * 1e3
    );
    println!(
        "rss_delta_per_object_bytes={:.0}",
        (rss_after.saturating_sub(rss_before) * 1024) as f64 / objects as f64
    );
    cluster.shutdown().await;
    Ok(())
}
