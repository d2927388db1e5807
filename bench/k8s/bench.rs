//! Embedded against real control plane, side by side in one run: start-up,
//! N ConfigMap creates with W watchers (create rate, watch fan-out), list
//! latency (all, label selector, paged) and memory, through kube-rs.
//!
//! `cargo run --example k8s_bench -- [objects] [watchers] [concurrency]`
//! with `DRIFTLINE_K8S_TOOLS` pointing at tools/k8s's binaries (bench/k8s/run.sh).
//!
//! The real control plane is the one the tests start
//! (tests/cluster/real_control_plane.rs, included below): etcd,
//! kube-apiserver, kube-controller-manager and kube-scheduler.

use std::time::{Duration, Instant};

use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, ObjectMeta, PostParams, WatchEvent, WatchParams};

#[path = "../common/rss.rs"]
mod rss;
use rss::rss_kib;

#[path = "../../tests/cluster/k8s_tools.rs"]
#[allow(dead_code)]
mod k8s_tools;
#[path = "../../tests/cluster/real_control_plane.rs"]
#[allow(dead_code)]
mod real_control_plane;
#[path = "../../tests/support/require_tool.rs"]
mod require_tool;

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

struct Figures {
    startup: Duration,
    create: Duration,
    fanout: Duration,
    list_all: Duration,
    list_selector: Duration,
    list_paged: Duration,
    rss_before_kib: u64,
    rss_after_kib: u64,
}

/// The same workload on either server. `rss` reads the server's memory.
async fn workload(
    client: kube::Client,
    objects: usize,
    watchers: usize,
    concurrency: usize,
    rss: &dyn Fn() -> u64,
) -> anyhow::Result<Figures> {
    let api: Api<ConfigMap> = Api::namespaced(client, "default");
    let start_rv = api
        .list(&ListParams::default().limit(1))
        .await?
        .metadata
        .resource_version
        .unwrap_or_default();
    let mut watch_tasks = Vec::new();
    for _ in 0..watchers {
        let stream = api
            .watch(&WatchParams::default().timeout(290), &start_rv)
            .await?;
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
    let rss_before_kib = rss();
    let started = Instant::now();
    futures::stream::iter(0..objects)
        .map(|i| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &config_map(i)).await }
        })
        .buffer_unordered(concurrency)
        .try_collect::<Vec<_>>()
        .await?;
    let create = started.elapsed();
    let mut last_seen = started;
    for t in watch_tasks {
        match tokio::time::timeout(Duration::from_secs(300), t).await {
            Ok(Ok(Some(at))) => last_seen = last_seen.max(at),
            _ => anyhow::bail!("a watcher did not receive all {objects} events"),
        }
    }
    let fanout = last_seen - started;
    let rss_after_kib = rss();
    let t = Instant::now();
    let all = api.list(&ListParams::default()).await?;
    let list_all = t.elapsed();
    // The real controller-manager adds `kube-root-ca.crt` to every namespace.
    let ours = all
        .items
        .iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("bench-"))
        })
        .count();
    anyhow::ensure!(ours == objects, "list returned {ours} of {objects} objects");
    let t = Instant::now();
    api.list(&ListParams::default().labels("shard=3")).await?;
    let list_selector = t.elapsed();
    let t = Instant::now();
    let mut params = ListParams::default().limit(500);
    loop {
        let page = api.list(&params).await?;
        match page.metadata.continue_ {
            Some(c) if !c.is_empty() => params = params.continue_token(&c),
            _ => break,
        }
    }
    let list_paged = t.elapsed();
    Ok(Figures {
        startup: Duration::ZERO,
        create,
        fanout,
        list_all,
        list_selector,
        list_paged,
        rss_before_kib,
        rss_after_kib,
    })
}

fn print(name: &str, f: &Figures, objects: usize) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!("{name}.startup_ms={:.1}", ms(f.startup));
    println!(
        "{name}.create_rate_per_s={:.0}",
        objects as f64 / f.create.as_secs_f64()
    );
    println!(
        "{name}.watch_fanout_all_delivered_s={:.2}",
        f.fanout.as_secs_f64()
    );
    println!("{name}.list_all_ms={:.1}", ms(f.list_all));
    println!("{name}.list_label_selector_ms={:.1}", ms(f.list_selector));
    println!("{name}.list_paged_500_ms={:.1}", ms(f.list_paged));
    println!(
        "{name}.rss_before_mib={:.1}",
        f.rss_before_kib as f64 / 1024.0
    );
    println!(
        "{name}.rss_after_mib={:.1}",
        f.rss_after_kib as f64 / 1024.0
    );
    println!(
        "{name}.rss_delta_per_object_bytes={:.0}",
        (f.rss_after_kib.saturating_sub(f.rss_before_kib) * 1024) as f64 / objects as f64
    );
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
    println!("objects={objects} watchers={watchers} concurrency={concurrency}");

    // Embedded: the API server runs in this process, so its memory is this
    // process's (the client's share included).
    let dir = tempfile::tempdir()?;
    let boot = Instant::now();
    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path())).await?;
    let startup = boot.elapsed();
    let me = std::process::id();
    let mut f = workload(
        cluster.client().await,
        objects,
        watchers,
        concurrency,
        &|| rss_kib(me),
    )
    .await?;
    f.startup = startup;
    print("embedded", &f, objects);
    cluster.shutdown().await;

    // Real: etcd + kube-apiserver (+ controller-manager and scheduler, which
    // watch too); memory is the sum of etcd's and kube-apiserver's.
    let tools = k8s_tools::tools_or_skip("k8s_bench", real_control_plane::TOOLS)
        .ok_or_else(|| anyhow::anyhow!("set DRIFTLINE_K8S_TOOLS (tools/k8s/build.sh DIR)"))?;
    let plane =
        tokio::task::spawn_blocking(move || real_control_plane::RealControlPlane::start(&tools))
            .await?;
    let kubeconfig = kube::config::Kubeconfig::read_from(&plane.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    let client = kube::Client::try_from(config)?;
    let pids: Vec<u32> = plane
        .pids()
        .into_iter()
        .filter(|(n, _)| *n == "etcd" || *n == "kube-apiserver")
        .map(|(_, p)| p)
        .collect();
    let mut f = workload(client, objects, watchers, concurrency, &|| {
        pids.iter().map(|p| rss_kib(*p)).sum()
    })
    .await?;
    f.startup = plane.startup;
    print("real", &f, objects);
    Ok(())
}
