//! End to end: Jobs, Deployments and Services run as local processes on the
//! embedded cluster's node, driven through the real API server with kube-rs.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use driftline::cluster::NodeConfig;
use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use driftline::net::{HOSTS_FILE_ENV, resolve_service_host};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Event, Pod, Service};
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::wait::{Condition, await_condition};
use kube::{Api, Client};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[path = "../support/procs.rs"]
mod procs;

/// A cluster on its own loopback /16 (tests run in parallel), with quick backoffs.
async fn cluster(dir: &Path, subnet: u8, gpus: u64) -> EmbeddedCluster {
    let node = NodeConfig {
        gpus,
        state_dir: dir.to_path_buf(),
        driftline_exe: env!("CARGO_BIN_EXE_driftline").into(),
        pod_ip_base: Ipv4Addr::new(127, subnet, 0, 0),
        restart_backoff: Duration::from_millis(100),
        job_backoff: Duration::from_millis(100),
        hosts_file_env: Some(HOSTS_FILE_ENV.into()),
        ..NodeConfig::default()
    };
    let cfg = ClusterConfig::new(dir).with_node(node);
    EmbeddedCluster::start(cfg)
        .await
        .expect("embedded cluster starts")
}

async fn wait_for<K, C>(api: &Api<K>, name: &str, what: &str, cond: C) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    C: Condition<K>,
{
    match tokio::time::timeout(
        Duration::from_secs(60),
        await_condition(api.clone(), name, cond),
    )
    .await
    {
        Ok(Ok(Some(obj))) => obj,
        Ok(Ok(None)) => panic!("{name} was deleted while waiting for {what}"),
        Ok(Err(err)) => panic!("watching {name} for {what}: {err}"),
        Err(_) => panic!(
            "timed out waiting for {name}: {what}; last: {:?}",
            api.get_opt(name).await
        ),
    }
}

fn job_condition(type_: &'static str) -> impl Condition<Job> {
    move |job: Option<&Job>| {
        job.and_then(|j| j.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == type_ && c.status == "True"))
    }
}

fn job(
    name: &str,
    command: &[&str],
    backoff_limit: i32,
    extra_container: serde_json::Value,
) -> Job {
    let mut container =
        json!({"name": "main", "image": "ghcr.io/driftline/driftline", "command": command});
    if let (Some(c), Some(extra)) = (container.as_object_mut(), extra_container.as_object()) {
        c.extend(extra.clone());
    }
    serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"backoffLimit": backoff_limit, "template": {"spec": {
            "restartPolicy": "Never", "containers": [container]}}},
    }))
    .expect("valid job")
}

async fn job_pods(client: &Client, job: &str) -> Vec<Pod> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(&format!("job-name={job}")))
        .await
        .expect("list pods")
        .items
}

#[tokio::test]
async fn a_job_running_the_driftline_binary_completes() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 41, 0).await;
    let client = cluster.client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("version", &["driftline", "--version"], 2, json!({})),
    )
    .await
    .unwrap();
    let done = wait_for(&jobs, "version", "Complete", job_condition("Complete")).await;
    let status = done.status.unwrap();
    assert_eq!(status.succeeded, Some(1));
    assert_eq!(status.failed, Some(0));
    assert!(status.completion_time.is_some() && status.start_time.is_some());
    let selector = done.spec.as_ref().unwrap().selector.clone().unwrap();
    let uid = done.metadata.uid.clone().unwrap();
    assert_eq!(
        selector.match_labels.unwrap()["batch.kubernetes.io/controller-uid"],
        uid,
        "the selector kubectl uses to find the Job's pods is defaulted"
    );
    let types: Vec<String> = status
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| c.type_)
        .collect();
    assert!(
        types.contains(&"SuccessCriteriaMet".to_string()),
        "{types:?}"
    );

    let pods = job_pods(&client, "version").await;
    assert_eq!(pods.len(), 1);
    let pod = &pods[0];
    let pod_status = pod.status.as_ref().unwrap();
    assert_eq!(pod_status.phase.as_deref(), Some("Succeeded"));
    let ip: Ipv4Addr = pod_status.pod_ip.as_deref().unwrap().parse().unwrap();
    assert_eq!(ip.octets()[..2], [127, 41]);
    let terminated = pod_status.container_statuses.as_ref().unwrap()[0]
        .state
        .as_ref()
        .unwrap()
        .terminated
        .clone()
        .unwrap();
    assert_eq!(
        (terminated.exit_code, terminated.reason.as_deref()),
        (0, Some("Completed"))
    );
    let log = std::fs::read_to_string(driftline::cluster::pod_log_path(
        dir.path(),
        "default",
        pod.metadata.name.as_deref().unwrap(),
        "main",
    ))
    .unwrap();
    assert!(log.contains("driftline"), "log: {log}");
    // The same output through the API, as `kubectl logs` reads it.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let served = pods
        .logs(pod.metadata.name.as_deref().unwrap(), &Default::default())
        .await
        .unwrap();
    assert_eq!(served, log);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_failing_job_retries_up_to_its_backoff_limit_then_fails() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 42, 0).await;
    let client = cluster.client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job(
            "broken",
            &["sh", "-c", "echo oops >&2; exit 3"],
            2,
            json!({}),
        ),
    )
    .await
    .unwrap();
    let failed = wait_for(&jobs, "broken", "Failed", job_condition("Failed")).await;
    let status = failed.status.unwrap();
    let condition = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(condition.reason.as_deref(), Some("BackoffLimitExceeded"));
    assert_eq!(
        status.failed,
        Some(3),
        "backoffLimit 2 allows three attempts"
    );
    let pods = job_pods(&client, "broken").await;
    assert_eq!(pods.len(), 3);
    for pod in &pods {
        let s = pod.status.as_ref().unwrap();
        assert_eq!(s.phase.as_deref(), Some("Failed"));
        let t = s.container_statuses.as_ref().unwrap()[0]
            .state
            .as_ref()
            .unwrap()
            .terminated
            .clone()
            .unwrap();
        assert_eq!((t.exit_code, t.reason.as_deref()), (3, Some("Error")));
    }
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let reasons: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("broken"))
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.contains(&"BackoffLimitExceeded".to_string()),
        "{reasons:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_job_past_its_deadline_fails_and_its_process_is_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 43, 0).await;
    let client = cluster.client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let mut slow = job("slow", &["sleep", "300"], 6, json!({}));
    if let Some(spec) = slow.spec.as_mut() {
        spec.active_deadline_seconds = Some(1);
    }
    jobs.create(&PostParams::default(), &slow).await.unwrap();
    let failed = wait_for(&jobs, "slow", "Failed", job_condition("Failed")).await;
    let condition = failed
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Failed")
        .unwrap();
    assert_eq!(condition.reason.as_deref(), Some("DeadlineExceeded"));
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let live = job_pods(&client, "slow")
            .await
            .into_iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        if live == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the pod of a failed Job keeps running"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    drop(pods);
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_job_asking_for_a_gpu_stays_pending_unschedulable() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 44, 0).await;
    let client = cluster.client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    let gpu = json!({"resources": {"limits": {"nvidia.com/gpu": "1"}}});
    jobs.create(
        &PostParams::default(),
        &job("train-gpu", &["driftline", "--version"], 6, gpu),
    )
    .await
    .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let pod = loop {
        if let Some(pod) = job_pods(&client, "train-gpu").await.into_iter().next() {
            break pod;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Job created no pod"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let name = pod.metadata.name.clone().unwrap();
    let unschedulable = wait_for(&pods, &name, "Unschedulable", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.conditions.clone())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.type_ == "PodScheduled" && c.reason.as_deref() == Some("Unschedulable")
                })
            })
    })
    .await;
    let status = unschedulable.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let condition = status
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "PodScheduled")
        .unwrap();
    assert_eq!(condition.status, "False");
    assert_eq!(
        condition.message.as_deref(),
        Some("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    );
    assert!(unschedulable.spec.unwrap().node_name.is_none());
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let failed_scheduling = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .any(|e| {
            e.reason.as_deref() == Some("FailedScheduling")
                && e.involved_object.name.as_deref() == Some(&name)
        });
    assert!(failed_scheduling, "a FailedScheduling event is recorded");
    let job = jobs.get("train-gpu").await.unwrap();
    assert!(
        !job.status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .iter()
            .any(|c| c.status == "True")
    );
    cluster.shutdown().await;
}

async fn http_get(addr: std::net::SocketAddr) -> std::io::Result<String> {
    let mut stream = tokio::net::TcpStream::connect(addr).await?;
    stream
        .write_all(format!("GET / HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut out = String::new();
    stream.read_to_string(&mut out).await?;
    Ok(out)
}

fn web_deployment(version: &str) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                    "name": "web", "image": "python:3",
                    "command": ["python3", "-m", "http.server", "--bind", "$(POD_IP)", "8080"],
                    "env": [{"name": "VERSION", "value": version}],
                    "ports": [{"name": "http", "containerPort": 8080}],
                    "readinessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 1},
                }]},
            },
        },
    }))
    .expect("valid deployment")
}

fn rolled_out(generation: i64) -> impl Condition<Deployment> {
    move |d: Option<&Deployment>| {
        d.and_then(|d| d.status.as_ref()).is_some_and(|s| {
            s.observed_generation >= Some(generation)
                && s.replicas == Some(2)
                && s.updated_replicas == Some(2)
                && s.ready_replicas == Some(2)
                && s.available_replicas == Some(2)
        })
    }
}

#[tokio::test]
async fn a_deployment_becomes_ready_serves_through_its_service_rolls_and_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 45, 0).await;
    let client = cluster.client().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &web_deployment("v1"))
        .await
        .unwrap();
    let svc: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let ready = wait_for(&deployments, "web", "2 ready replicas", rolled_out(1)).await;
    let available = ready
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .find(|c| c.type_ == "Available")
        .unwrap();
    assert_eq!(available.status, "True");

    // The Service name resolves to its cluster IP, and the proxy reaches a ready pod.
    let hosts = dir.path().join("hosts");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let ip = loop {
        if let Some(ip) = resolve_service_host(&hosts, "web.default.svc.cluster.local") {
            break ip;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the Service name never resolved"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(resolve_service_host(&hosts, "web.default"), Some(ip));
    let assigned = services
        .get("web")
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip
        .unwrap();
    assert_eq!(assigned, ip.to_string());
    let reply = loop {
        match http_get((ip, 80).into()).await {
            Ok(reply) if reply.starts_with("HTTP/1.0 200") => break reply,
            other => {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no answer through the Service: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    assert!(reply.contains("Directory listing"), "{reply}");

    // A template change replaces both pods.
    let before: Vec<String> = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|p| p.metadata.name)
        .collect();
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "web", "env": [{"name": "VERSION", "value": "v2"}]}]}}}});
    let patched = deployments
        .patch("web", &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
    let generation = patched.metadata.generation.unwrap();
    wait_for(&deployments, "web", "rolled to v2", rolled_out(generation)).await;
    let after = pods
        .list(&ListParams::default().labels("app=web"))
        .await
        .unwrap()
        .items;
    let live: Vec<&Pod> = after
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    assert_eq!(
        live.len(),
        2,
        "{:?}",
        after.iter().map(|p| &p.metadata.name).collect::<Vec<_>>()
    );
    for pod in &live {
        assert!(
            !before.contains(pod.metadata.name.as_ref().unwrap()),
            "old pod survived the rollout"
        );
        let env = &pod.spec.as_ref().unwrap().containers[0]
            .env
            .as_ref()
            .unwrap()[0];
        assert_eq!(env.value.as_deref(), Some("v2"));
    }
    let pod_ips: Vec<Ipv4Addr> = live
        .iter()
        .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
        .collect();
    assert_eq!(pod_ips.len(), 2);

    // Deleting the Deployment removes its pods and stops their processes.
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let left = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items
            .len();
        let serving =
            futures::future::join_all(pod_ips.iter().map(|ip| http_get((*ip, 8080).into()))).await;
        if left == 0 && serving.iter().all(|r| r.is_err()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{left} pods left; serving: {serving:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.shutdown().await;
}

fn sleeper(name: &str, restart_policy: &str) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"restartPolicy": restart_policy, "containers": [{
            "name": "main", "image": "busybox", "command": ["sleep", "300"]}]},
    }))
    .expect("valid pod")
}

fn running_with_restarts(restarts: i32) -> impl Condition<Pod> {
    move |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
            s.phase.as_deref() == Some("Running")
                && s.container_statuses.as_ref().is_some_and(|cs| {
                    cs.iter().all(|c| {
                        c.restart_count == restarts
                            && c.state.as_ref().is_some_and(|st| st.running.is_some())
                    })
                })
        })
    }
}

#[tokio::test]
async fn killing_a_pods_process_restarts_it_or_fails_the_pod() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 46, 0).await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.create(&PostParams::default(), &sleeper("always", "Always"))
        .await
        .unwrap();
    pods.create(&PostParams::default(), &sleeper("never", "Never"))
        .await
        .unwrap();
    wait_for(&pods, "always", "running", running_with_restarts(0)).await;
    wait_for(&pods, "never", "running", running_with_restarts(0)).await;

    let runner = cluster.runner().expect("the cluster has a node");
    runner.kill_pod_process("default", "always").await.unwrap();
    let restarted = wait_for(&pods, "always", "restarted", running_with_restarts(1)).await;
    let last = restarted.status.unwrap().container_statuses.unwrap()[0]
        .last_state
        .clone()
        .unwrap();
    assert_eq!(
        last.terminated.unwrap().exit_code,
        137,
        "SIGKILL shows as 128 + 9"
    );

    runner.kill_pod_process("default", "never").await.unwrap();
    let failed = wait_for(&pods, "never", "Failed", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.phase.clone()).as_deref() == Some("Failed")
    })
    .await;
    let state = failed.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap();
    assert_eq!(state.terminated.unwrap().exit_code, 137);

    let err = runner
        .kill_pod_process("default", "no-such-pod")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("default/no-such-pod"), "{err}");
    cluster.shutdown().await;
}

#[tokio::test]
async fn pods_see_their_volumes_env_config_and_hosts_file_and_init_containers_run_first() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 47, 0).await;
    let client = cluster.client().await;
    let config_maps: Api<k8s_openapi::api::core::v1::ConfigMap> =
        Api::namespaced(client.clone(), "default");
    let cm = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "default"},
        "data": {"mode": "fast", "threshold": "0.1"},
    }))
    .unwrap();
    config_maps
        .create(&PostParams::default(), &cm)
        .await
        .unwrap();
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "io", "namespace": "default"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never",
            "volumes": [
                {"name": "models", "persistentVolumeClaim": {"claimName": "models"}},
                {"name": "scratch", "emptyDir": {}},
                {"name": "conf", "configMap": {"name": "settings"}},
            ],
            "initContainers": [{
                "name": "fetch", "image": "busybox",
                "command": ["sh", "-c", "echo fetched > /scratch/input"],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }],
            "containers": [{
                "name": "main", "image": "busybox",
                "command": ["sh", "-c", format!("echo \"$ME $MY_IP $MODE $(cat /scratch/input) $(cat /etc/conf/threshold) ${HOSTS_FILE_ENV}\" > /models/out.txt")],
                "env": [
                    {"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                    {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                    {"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
                ],
                "volumeMounts": [
                    {"name": "models", "mountPath": "/models"},
                    {"name": "scratch", "mountPath": "/scratch"},
                    {"name": "conf", "mountPath": "/etc/conf"},
                ],
            }],
        }}},
    }))
    .unwrap();
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(&PostParams::default(), &job).await.unwrap();
    wait_for(&jobs, "io", "Complete", job_condition("Complete")).await;
    let pod = job_pods(&client, "io").await.remove(0);
    let name = pod.metadata.name.clone().unwrap();
    let ip = pod.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let init = &pod
        .status
        .as_ref()
        .unwrap()
        .init_container_statuses
        .as_ref()
        .unwrap()[0];
    assert_eq!(
        init.state
            .as_ref()
            .unwrap()
            .terminated
            .as_ref()
            .unwrap()
            .exit_code,
        0
    );
    // A PersistentVolumeClaim is a directory per claim that outlives the pod.
    let out = std::fs::read_to_string(dir.path().join("volumes/default/models/out.txt")).unwrap();
    // The node tells every pod where its hosts file of Service names is.
    let hosts = dir.path().join("hosts");
    assert_eq!(
        out.trim(),
        format!("{name} {ip} fast fetched 0.1 {}", hosts.display())
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_missing_config_map_keeps_the_pod_waiting_with_a_clear_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 48, 0).await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "needs-config", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["true"],
            "env": [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "absent", "key": "mode"}}}]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let waiting = wait_for(&pods, "needs-config", "config error", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.container_statuses.clone())
            .is_some_and(|cs| {
                cs.iter().any(|c| {
                    c.state
                        .as_ref()
                        .and_then(|s| s.waiting.as_ref())
                        .and_then(|w| w.reason.as_deref())
                        == Some("CreateContainerConfigError")
                })
            })
    })
    .await;
    let status = waiting.status.unwrap();
    assert_eq!(status.phase.as_deref(), Some("Pending"));
    let message = status.container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap()
        .waiting
        .unwrap()
        .message
        .unwrap();
    assert!(
        message.contains("configmap `absent` has no key `mode`"),
        "{message}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn deleting_a_pod_stops_its_process_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 49, 0).await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pid_file = dir.path().join("pid");
    // Ignores SIGTERM, so only the SIGKILL after the grace period stops it. The shell's
    // own pid is watched in /proc: a marker file re-touched in a loop read a slow fork on a
    // loaded machine as a dead process. `$$$$` is the shell's `$$` after Kubernetes'
    // `$$` escape in a command.
    let script = format!(
        "echo $$$$ > {}.tmp && mv {}.tmp {}; trap '' TERM; while true; do sleep 0.1; done",
        pid_file.display(),
        pid_file.display(),
        pid_file.display()
    );
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "stubborn", "namespace": "default"},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [{
            "name": "main", "image": "busybox", "command": ["sh", "-c", script]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(&pods, "stubborn", "running", running_with_restarts(0)).await;
    let pid: u32 = loop {
        if let Ok(text) = std::fs::read_to_string(&pid_file) {
            break text.trim().parse().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    // Alive means present in /proc and not a zombie waiting to be reaped.
    let alive = |pid: u32| match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            stat.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
                == Some(false)
        }
        Err(_) => false,
    };
    assert!(alive(pid), "the container's shell runs before the delete");
    let started = tokio::time::Instant::now();
    pods.delete("stubborn", &DeleteParams::default())
        .await
        .unwrap();
    let stopped_after = loop {
        if !alive(pid) {
            break started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "the container process survived its pod"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        stopped_after >= Duration::from_millis(900),
        "the process stopped {stopped_after:?} after the delete: SIGTERM is ignored, so only \
         the SIGKILL after the 1 s grace period may stop it"
    );
    loop {
        if pods.get_opt("stubborn").await.unwrap().is_none() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the pod was never removed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_failing_liveness_probe_restarts_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 50, 0).await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "wedged", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["sleep", "300"],
            "livenessProbe": {"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2}}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(&pods, "wedged", "restarted", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.container_statuses.clone())
            .is_some_and(|cs| cs.iter().any(|c| c.restart_count >= 1))
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let messages: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some("wedged"))
        .filter_map(|e| e.message)
        .collect();
    assert!(
        messages
            .iter()
            .any(|m| m.starts_with("Liveness probe failed")),
        "{messages:?}"
    );
    assert!(
        messages
            .iter()
            .any(|m| m == "Container main failed liveness probe, will be restarted"),
        "{messages:?}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn a_command_that_cannot_start_fails_the_job_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 51, 0).await;
    let client = cluster.client().await;
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("typo", &["driftlien", "train"], 0, json!({})),
    )
    .await
    .unwrap();
    wait_for(&jobs, "typo", "Failed", job_condition("Failed")).await;
    let pod = job_pods(&client, "typo").await.remove(0);
    let state = pod.status.unwrap().container_statuses.unwrap()[0]
        .state
        .clone()
        .unwrap();
    let terminated = state.terminated.unwrap();
    assert_eq!(terminated.reason.as_deref(), Some("StartError"));
    assert_eq!(terminated.exit_code, 128);
    assert!(
        terminated.message.unwrap_or_default().contains("driftlien"),
        "the message names the program"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn each_gpu_pod_sees_only_the_devices_it_was_given() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = cluster(dir.path(), 52, 2).await;
    let client = cluster.client().await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    for (name, gpus) in [("gpu-a", 1), ("gpu-b", 1), ("cpu-only", 0)] {
        let pod: Pod = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"containers": [{"name": "main", "image": "busybox",
                "command": ["sh", "-c", "echo \"gpus=[$CUDA_VISIBLE_DEVICES]\"; sleep 300"],
                "resources": {"limits": {"nvidia.com/gpu": gpus.to_string()}}}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let mut seen = Vec::new();
    for name in ["gpu-a", "gpu-b", "cpu-only"] {
        wait_for(&pods, name, "running", running_with_restarts(0)).await;
        let log = driftline::cluster::pod_log_path(dir.path(), "default", name, "main");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let line = loop {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if let Some(line) = text.lines().next() {
                break line.to_string();
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name} printed nothing"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        seen.push(line);
    }
    let mut gpu_pods = seen[..2].to_vec();
    gpu_pods.sort();
    assert_eq!(gpu_pods, ["gpus=[0]", "gpus=[1]"]);
    assert_eq!(seen[2], "gpus=[]");
    // Both devices are taken: a third GPU pod is Unschedulable.
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gpu-c", "namespace": "default"},
        "spec": {"containers": [{"name": "main", "image": "busybox", "command": ["true"],
            "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    wait_for(&pods, "gpu-c", "Unschedulable", |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref()?.conditions.clone())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.reason.as_deref() == Some("Unschedulable"))
            })
    })
    .await;
    cluster.shutdown().await;
}

/// `simulate_processes` (benchmarks of what runs above the node): Jobs
/// succeed and Deployments roll out with no process behind their pods, and
/// such pods still go away when deleted.
#[tokio::test]
async fn a_simulating_node_marks_pods_as_run_without_starting_processes() {
    let dir = tempfile::tempdir().unwrap();
    let node = NodeConfig {
        state_dir: dir.path().to_path_buf(),
        pod_ip_base: Ipv4Addr::new(127, 58, 0, 0),
        simulate_processes: true,
        ..NodeConfig::default()
    };
    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path()).with_node(node))
        .await
        .expect("embedded cluster starts");
    let client = cluster.client().await;
    // A program that does not exist: started for real, the Job would fail.
    let jobs: Api<Job> = Api::namespaced(client.clone(), "default");
    jobs.create(
        &PostParams::default(),
        &job("sim", &["/nonexistent/program"], 0, json!({})),
    )
    .await
    .unwrap();
    wait_for(&jobs, "sim", "Complete", job_condition("Complete")).await;
    let pods = job_pods(&client, "sim").await;
    assert_eq!(pods.len(), 1);
    let state = pods[0]
        .status
        .as_ref()
        .unwrap()
        .container_statuses
        .as_ref()
        .unwrap()[0]
        .state
        .clone()
        .unwrap();
    assert_eq!(state.terminated.map(|t| t.exit_code), Some(0));
    // A readiness probe no server answers: simulated pods are Ready anyway.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    deployments
        .create(&PostParams::default(), &web_deployment("1"))
        .await
        .unwrap();
    wait_for(&deployments, "web", "2 ready replicas", rolled_out(1)).await;
    assert!(
        std::fs::read_dir(dir.path().join("logs"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "no container wrote a log: none was started"
    );
    deployments
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let web = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .unwrap()
            .items;
        if web.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "simulated pods were not removed: {}",
            web.len()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    cluster.shutdown().await;
}

/// `driftline cluster` in the foreground, as a user runs it, on `state`.
/// Dropped (a failed assertion), it is killed with its pods.
struct ClusterCommand {
    child: tokio::process::Child,
}

impl ClusterCommand {
    /// Starts it and waits until it says it listens (its node is up by then:
    /// whatever an earlier run left behind has been dealt with).
    async fn start(state: &Path) -> ClusterCommand {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_driftline"))
            .args(["cluster", "--port", "0", "--state-dir"])
            .arg(state)
            .stdout(std::process::Stdio::piped())
            .stderr(
                std::fs::File::create(state.with_extension("log"))
                    .map_or_else(|_| std::process::Stdio::null(), Into::into),
            )
            .kill_on_drop(true)
            .spawn()
            .expect("driftline cluster starts");
        let mut lines = tokio::io::BufReader::new(child.stdout.take().expect("stdout")).lines();
        let (tx, rx) = tokio::sync::oneshot::channel();
        // Read every line (a closed pipe would fail its later prints), and
        // say when it listens.
        tokio::spawn(async move {
            let mut tx = Some(tx);
            while let Ok(Some(line)) = lines.next_line().await {
                if line.contains("listening on")
                    && let Some(tx) = tx.take()
                {
                    let _ = tx.send(());
                }
            }
        });
        let cluster = ClusterCommand { child };
        // Err: it exited without listening, or still had not after a minute.
        let listening = tokio::time::timeout(Duration::from_secs(60), rx).await;
        assert!(
            matches!(listening, Ok(Ok(()))),
            "driftline cluster never listened: {}",
            std::fs::read_to_string(state.with_extension("log")).unwrap_or_default()
        );
        cluster
    }

    async fn client(state: &Path) -> Client {
        let kc = kube::config::Kubeconfig::read_from(state.join("kubeconfig")).expect("kubeconfig");
        let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .expect("config");
        Client::try_from(config).expect("client")
    }

    fn pid(&self) -> u32 {
        self.child.id().expect("driftline cluster runs")
    }

    fn signal(&self, signal: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid() as i32), signal)
            .expect("signal driftline cluster");
    }

    /// Its exit status, once it exits; panics if it is still running after a minute.
    async fn wait(mut self) -> std::process::ExitStatus {
        tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .expect("driftline cluster exits within a minute")
            .expect("driftline cluster's status")
    }
}

/// Starts a pod whose container (a shell) leaves a child of its own (a
/// sleep) in its process group, and returns both once they run: the shell
/// is the runner's child, the sleep is not.
async fn pod_with_a_child_of_its_own(
    client: &Client,
    cluster_pid: u32,
) -> (procs::Proc, procs::Proc) {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let pod: Pod = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "parent", "namespace": "default"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "main", "image": "busybox", "command": ["sh", "-c", "sleep 600 & wait"]}]},
    }))
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let shell = procs::wait_for("the pod's shell runs", Duration::from_secs(60), || {
        procs::children_of(cluster_pid)
            .into_iter()
            .find(|p| p.cmdline.contains("sleep 600 & wait"))
    })
    .await;
    let sleep = procs::wait_for("the shell's sleep runs", Duration::from_secs(30), || {
        procs::group(shell.pgrp)
            .into_iter()
            .find(|p| p.pid != shell.pid && p.cmdline.starts_with("sleep 600"))
    })
    .await;
    assert_eq!(
        shell.pgrp, shell.pid,
        "a container leads its own process group"
    );
    (shell, sleep)
}

/// `driftline cluster` stopped with SIGTERM (as a service manager or
/// `kill` stops it) shuts down like Ctrl-C: it stops its pods, including
/// what their containers started, and exits cleanly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driftline_cluster_stopped_with_sigterm_leaves_no_pod_process() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cluster = ClusterCommand::start(&state).await;
    let client = ClusterCommand::client(&state).await;
    let (shell, sleep) = pod_with_a_child_of_its_own(&client, cluster.pid()).await;

    cluster.signal(nix::sys::signal::Signal::SIGTERM);
    let status = cluster.wait().await;
    assert!(
        status.success(),
        "SIGTERM ends driftline cluster through its shutdown, not by the signal: {status:?}"
    );
    let left = procs::still_running_after(&[shell, sleep], Duration::from_secs(10)).await;
    assert!(
        left.is_empty(),
        "pod processes outlived the cluster: {left:?}"
    );
}

/// `driftline cluster` killed with SIGKILL cannot stop anything: its
/// container processes die with it (parent-death signal), and what they
/// started themselves is stopped by the next run on the same state
/// directory, before it serves.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_clusters_pod_processes_die_with_it_or_at_the_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let cluster = ClusterCommand::start(&state).await;
    let client = ClusterCommand::client(&state).await;
    let (shell, sleep) = pod_with_a_child_of_its_own(&client, cluster.pid()).await;

    cluster.signal(nix::sys::signal::Signal::SIGKILL);
    cluster.wait().await;
    let left =
        procs::still_running_after(std::slice::from_ref(&shell), Duration::from_secs(10)).await;
    assert!(
        left.is_empty(),
        "the container process outlived its node: {left:?}"
    );
    // The shell's own child escapes the signal: only the next run can stop it.
    assert!(
        sleep.running(),
        "the container's own child should have outlived the killed node, or this test proves nothing"
    );

    let rerun = ClusterCommand::start(&state).await;
    let left =
        procs::still_running_after(std::slice::from_ref(&sleep), Duration::from_secs(10)).await;
    assert!(
        left.is_empty(),
        "the rerun left the first run's processes running: {left:?}"
    );
    rerun.signal(nix::sys::signal::Signal::SIGTERM);
    assert!(rerun.wait().await.success());
}
