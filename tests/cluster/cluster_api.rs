//! The embedded API server as kube-rs sees it: CRUD, selectors, paging,
//! watches (timeouts, 410, initial events), patches, server-side apply,
//! status, finalizers, garbage collection, faults and snapshots.

use std::collections::BTreeMap;
use std::time::Duration;

use driftline::cluster::{ClusterConfig, EmbeddedCluster, FaultRule};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{
    Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams, WatchEvent,
    WatchParams,
};
use kube::runtime::watcher;
use serde_json::json;

struct TestCluster {
    cluster: EmbeddedCluster,
    client: kube::Client,
    _dir: tempfile::TempDir,
}

async fn start_with(edit: impl FnOnce(&mut ClusterConfig)) -> TestCluster {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = ClusterConfig::new(dir.path());
    edit(&mut cfg);
    let cluster = EmbeddedCluster::start(cfg).await.unwrap();
    // Prove the written kubeconfig works, as a user's program would load it.
    let kubeconfig = kube::config::Kubeconfig::read_from(cluster.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let client = kube::Client::try_from(config).unwrap();
    TestCluster {
        cluster,
        client,
        _dir: dir,
    }
}

async fn start() -> TestCluster {
    start_with(|_| {}).await
}

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

fn status_code(err: &kube::Error) -> u16 {
    match err {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_with_the_kubeconfig_client_and_stale_put_conflicts() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let created = cms
        .create(
            &PostParams::default(),
            &config_map("settings", &[("mode", "fast")]),
        )
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(
        meta.uid.is_some() && meta.creation_timestamp.is_some() && meta.resource_version.is_some()
    );
    let err = cms
        .create(&PostParams::default(), &config_map("settings", &[]))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 409, "second create is AlreadyExists");

    let mut changed = created.clone();
    changed.data = Some(BTreeMap::from([("mode".to_string(), "slow".to_string())]));
    let replaced = cms
        .replace("settings", &PostParams::default(), &changed)
        .await
        .unwrap();
    assert_ne!(
        replaced.metadata.resource_version,
        created.metadata.resource_version
    );
    // `changed` still carries the old resourceVersion.
    let err = cms
        .replace("settings", &PostParams::default(), &changed)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 409, "stale PUT is a Conflict");

    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "slow"
    );
    cms.delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(status_code(&cms.get("settings").await.unwrap_err()), 404);

    let nss: Api<Namespace> = Api::all(t.client.clone());
    let missing: Api<ConfigMap> = Api::namespaced(t.client.clone(), "nowhere");
    assert_eq!(
        status_code(
            &missing
                .create(&PostParams::default(), &config_map("x", &[]))
                .await
                .unwrap_err()
        ),
        404
    );
    assert!(nss.get("default").await.is_ok());
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn lists_filter_by_labels_and_fields_and_page() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    for i in 0..7 {
        let mut cm = config_map(&format!("cm-{i}"), &[]);
        cm.metadata.labels = Some(BTreeMap::from([(
            "parity".to_string(),
            if i % 2 == 0 { "even" } else { "odd" }.to_string(),
        )]));
        cms.create(&PostParams::default(), &cm).await.unwrap();
    }
    let even = cms
        .list(&ListParams::default().labels("parity=even"))
        .await
        .unwrap();
    assert_eq!(even.items.len(), 4);
    assert!(
        !even
            .metadata
            .resource_version
            .clone()
            .unwrap_or_default()
            .is_empty()
    );
    let one = cms
        .list(&ListParams::default().fields("metadata.name=cm-3"))
        .await
        .unwrap();
    assert_eq!(one.items.len(), 1);

    let mut names = Vec::new();
    let mut params = ListParams::default().limit(3);
    loop {
        let page = cms.list(&params).await.unwrap();
        names.extend(page.items.iter().map(|c| c.metadata.name.clone().unwrap()));
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => break,
        }
    }
    assert_eq!(
        names.len(),
        7,
        "paging returns every object once: {names:?}"
    );
    let err = cms
        .list(&ListParams::default().labels("parity in even"))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 400);
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn no_op_write_bumps_nothing_and_emits_no_event() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let cm = cms
        .create(&PostParams::default(), &config_map("quiet", &[("a", "1")]))
        .await
        .unwrap();
    let rv = cm.metadata.resource_version.clone().unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(2), &rv)
        .await
        .unwrap()
        .boxed();
    let same = cms
        .replace("quiet", &PostParams::default(), &cm)
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version.as_deref(), Some(rv.as_str()));
    let patched = cms
        .patch(
            "quiet",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"a": "1"}})),
        )
        .await
        .unwrap();
    assert_eq!(
        patched.metadata.resource_version.as_deref(),
        Some(rv.as_str())
    );
    // A real change afterwards is the first event the watch sees.
    cms.patch(
        "quiet",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"a": "2"}})),
    )
    .await
    .unwrap();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Modified(cm)) => assert_eq!(cm.data.unwrap()["a"], "2"),
        other => panic!("expected the real change first, got {other:?}"),
    }
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn server_side_apply_conflicts_between_managers_unless_forced() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let mut cm = config_map("shared", &[("owner", "alice")]);
    cm.metadata.namespace = None;
    let cfg = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "shared"}, "data": {"owner": v}});
    let created = cms
        .patch(
            "shared",
            &PatchParams::apply("alice"),
            &Patch::Apply(cfg("alice")),
        )
        .await
        .unwrap();
    let managers: Vec<_> = created
        .metadata
        .managed_fields
        .unwrap()
        .iter()
        .map(|m| m.manager.clone().unwrap())
        .collect();
    assert_eq!(managers, ["alice"]);
    let err = cms
        .patch(
            "shared",
            &PatchParams::apply("bob"),
            &Patch::Apply(cfg("bob")),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 409);
    assert!(
        err.to_string().contains("alice") && err.to_string().contains(".data.owner"),
        "{err}"
    );
    let forced = cms
        .patch(
            "shared",
            &PatchParams::apply("bob").force(),
            &Patch::Apply(cfg("bob")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["owner"], "bob");
    // Alice applying her old value now conflicts with bob.
    let err = cms
        .patch(
            "shared",
            &PatchParams::apply("alice"),
            &Patch::Apply(cfg("alice")),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 409);
    // Re-applying the same config is a no-op.
    let again = cms
        .patch(
            "shared",
            &PatchParams::apply("bob"),
            &Patch::Apply(cfg("bob")),
        )
        .await
        .unwrap();
    let before = cms.get("shared").await.unwrap();
    assert_eq!(
        again.metadata.resource_version,
        before.metadata.resource_version
    );
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn status_subresource_generation_and_json_patch_test() {
    let t = start().await;
    let jobs: Api<Job> = Api::namespaced(t.client.clone(), "default");
    let job: Job = serde_json::from_value(json!({
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "train"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [{"name": "c", "image": "x"}]}}},
        "status": {"succeeded": 5}
    }))
    .unwrap();
    let created = jobs.create(&PostParams::default(), &job).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    let st = jobs
        .patch_status(
            "train",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"active": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().active, Some(1));
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    let spec = jobs
        .patch(
            "train",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"backoffLimit": 3}, "status": {"active": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(spec.metadata.generation, Some(2));
    assert_eq!(
        spec.status.unwrap().active,
        Some(1),
        "writes to the object ignore status"
    );

    let failing: json_patch::Patch =
        serde_json::from_value(json!([{"op": "test", "path": "/spec/backoffLimit", "value": 9}]))
            .unwrap();
    let err = jobs
        .patch(
            "train",
            &PatchParams::default(),
            &Patch::<()>::Json(failing),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 422);
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn finalizers_delay_deletion_and_owners_cascade() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let mut held = config_map("held", &[]);
    held.metadata.finalizers = Some(vec!["driftline.dev/cleanup".into()]);
    cms.create(&PostParams::default(), &held).await.unwrap();
    let res = cms.delete("held", &DeleteParams::default()).await.unwrap();
    let pending = res
        .left()
        .expect("object with a finalizer is returned, not removed");
    assert!(pending.metadata.deletion_timestamp.is_some());
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(status_code(&cms.get("held").await.unwrap_err()), 404);

    let owner = cms
        .create(&PostParams::default(), &config_map("owner", &[]))
        .await
        .unwrap();
    let mut child = config_map("child", &[]);
    child.metadata.owner_references = Some(vec![
        k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: "owner".into(),
            uid: owner.metadata.uid.unwrap(),
            ..Default::default()
        },
    ]);
    cms.create(&PostParams::default(), &child).await.unwrap();
    cms.delete("owner", &DeleteParams::background())
        .await
        .unwrap();
    assert_eq!(
        status_code(&cms.get("child").await.unwrap_err()),
        404,
        "dependents are garbage collected"
    );
    t.cluster.shutdown().await;
}

/// Drives a watcher in the background (it only makes requests while polled).
fn spawn_watcher(
    api: Api<ConfigMap>,
    cfg: watcher::Config,
) -> tokio::sync::mpsc::UnboundedReceiver<watcher::Event<ConfigMap>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut events = watcher(api, cfg).boxed();
        // Errors (such as 410 Gone) are retried by the watcher itself; pass on the events.
        while let Some(ev) = events.next().await {
            if let Ok(ev) = ev
                && tx.send(ev).is_err()
            {
                return;
            }
        }
    });
    rx
}

async fn next_init_apply_names(
    rx: &mut tokio::sync::mpsc::UnboundedReceiver<watcher::Event<ConfigMap>>,
) -> Vec<String> {
    let mut names = Vec::new();
    loop {
        match rx.recv().await.unwrap() {
            watcher::Event::InitApply(cm) => names.push(cm.metadata.name.unwrap()),
            watcher::Event::InitDone => return names,
            _ => {}
        }
    }
}

#[tokio::test]
async fn watcher_rewatches_after_timeout_and_relists_after_410() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    cms.create(&PostParams::default(), &config_map("before", &[]))
        .await
        .unwrap();
    let faults = t.cluster.faults();
    let mut rx = spawn_watcher(cms.clone(), watcher::Config::default().timeout(1));
    assert_eq!(next_init_apply_names(&mut rx).await, ["before"]);
    // Let the 1 s watch time out and the watcher re-watch; the change after it still arrives.
    let watches = || {
        faults
            .requests()
            .iter()
            .filter(|r| r.request.verb == "watch")
            .count()
    };
    tokio::time::timeout(Duration::from_secs(10), async {
        while watches() < 2 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("watcher re-watched after the server-side timeout");
    cms.create(&PostParams::default(), &config_map("after-timeout", &[]))
        .await
        .unwrap();
    loop {
        match rx.recv().await.unwrap() {
            watcher::Event::Apply(cm) => {
                assert_eq!(cm.metadata.name.as_deref(), Some("after-timeout"));
                break;
            }
            watcher::Event::Init => panic!("a timeout must not force a relist"),
            _ => {}
        }
    }
    // Hold the next watch back; change and compact meanwhile: it resumes from an expired version.
    let used = faults.faults_used();
    faults.delay_next(
        FaultRule::new("watch", "configmaps"),
        1,
        Duration::from_millis(1500),
    );
    tokio::time::timeout(Duration::from_secs(10), async {
        while faults.faults_used() == used {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the watcher made its next watch request");
    cms.create(&PostParams::default(), &config_map("during-outage", &[]))
        .await
        .unwrap();
    t.cluster.compact();
    let relisted = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match rx.recv().await.unwrap() {
                watcher::Event::Init => return next_init_apply_names(&mut rx).await,
                watcher::Event::Apply(cm) => panic!(
                    "watch from an expired version delivered {:?}",
                    cm.metadata.name
                ),
                _ => {}
            }
        }
    })
    .await
    .expect("watcher relisted after 410");
    assert!(
        relisted.contains(&"during-outage".to_string()),
        "relist sees the change made during the outage: {relisted:?}"
    );
    assert!(
        faults
            .requests()
            .iter()
            .filter(|r| r.request.verb == "list")
            .count()
            >= 2
    );
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn watch_from_expired_version_is_410_and_streaming_lists_work() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let first = cms
        .create(&PostParams::default(), &config_map("a", &[]))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &config_map("b", &[]))
        .await
        .unwrap();
    t.cluster.compact();
    let rv = first.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    match stream.try_next().await.unwrap() {
        Some(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410 Gone, got {other:?}"),
    }
    // sendInitialEvents: ADDED for each object, then the initial-events-end bookmark.
    let mut events = watcher(cms.clone(), watcher::Config::default().streaming_lists()).boxed();
    let mut names = Vec::new();
    loop {
        match events.try_next().await.unwrap().unwrap() {
            watcher::Event::InitApply(cm) => names.push(cm.metadata.name.unwrap()),
            watcher::Event::InitDone => break,
            _ => {}
        }
    }
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert!(
        t.cluster
            .faults()
            .requests()
            .iter()
            .any(|r| r.request.uri.contains("sendInitialEvents=true"))
    );
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn controller_reconciles_created_and_changed_objects() {
    use kube::runtime::controller::{Action, Controller};
    use std::sync::Arc;

    #[derive(Debug, thiserror::Error)]
    #[error(transparent)]
    struct ReconcileError(#[from] kube::Error);

    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let ctx = Arc::new(cms.clone());
    // Reconcile: mirror data.input into data.output with server-side apply.
    async fn reconcile(
        cm: Arc<ConfigMap>,
        api: Arc<Api<ConfigMap>>,
    ) -> Result<Action, ReconcileError> {
        let input = cm
            .data
            .as_ref()
            .and_then(|d| d.get("input"))
            .cloned()
            .unwrap_or_default();
        let name = cm.metadata.name.clone().unwrap_or_default();
        let cfg = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"output": input}});
        api.patch(
            &name,
            &PatchParams::apply("mirror").force(),
            &Patch::Apply(cfg),
        )
        .await?;
        Ok(Action::await_change())
    }
    fn error_policy(_: Arc<ConfigMap>, _: &ReconcileError, _: Arc<Api<ConfigMap>>) -> Action {
        Action::requeue(Duration::from_millis(100))
    }
    let controller = tokio::spawn(
        Controller::new(cms.clone(), watcher::Config::default().timeout(2))
            .run(reconcile, error_policy, ctx)
            .for_each(|_| async {}),
    );
    let wait_for_output = |want: &'static str| {
        let cms = cms.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(15), async {
                loop {
                    if let Ok(cm) = cms.get("mirror-me").await
                        && cm
                            .data
                            .as_ref()
                            .and_then(|d| d.get("output"))
                            .map(String::as_str)
                            == Some(want)
                    {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
            .await
            .unwrap_or_else(|_| panic!("controller never wrote output={want}"));
        }
    };
    cms.create(
        &PostParams::default(),
        &config_map("mirror-me", &[("input", "one")]),
    )
    .await
    .unwrap();
    wait_for_output("one").await;
    cms.patch(
        "mirror-me",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"input": "two"}})),
    )
    .await
    .unwrap();
    wait_for_output("two").await;
    controller.abort();
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn injected_faults_fail_matching_requests_and_are_logged() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    t.cluster.faults().fail_next(
        FaultRule::new("create", "configmaps").named("flaky"),
        1,
        500,
    );
    let err = cms
        .create(&PostParams::default(), &config_map("flaky", &[]))
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 500);
    cms.create(&PostParams::default(), &config_map("flaky", &[]))
        .await
        .unwrap();
    let creates: Vec<u16> = t
        .cluster
        .faults()
        .requests()
        .iter()
        .filter(|r| {
            r.request.verb == "create"
                && r.request.name == "flaky"
                && r.request.resource == "configmaps"
        })
        .map(|r| r.status)
        .collect();
    assert_eq!(creates, [500, 201]);
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn bad_requests_get_status_errors_and_the_server_stays_up() {
    let t = start().await;
    let url = t.cluster.url();
    let kubeconfig = std::fs::read_to_string(t.cluster.kubeconfig_path()).unwrap();
    let token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(t.cluster.ca_certificate_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let send = |method: reqwest::Method, path: &str, ct: &str, body: &str| {
        http.request(method, format!("{url}{path}"))
            .bearer_auth(&token)
            .header("content-type", ct)
            .body(body.to_string())
            .send()
    };
    let cases = [
        (
            reqwest::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            "{not json",
            400,
            "BadRequest",
        ),
        (
            reqwest::Method::GET,
            "/apis/nothing.example/v1/widgets",
            "application/json",
            "",
            404,
            "NotFound",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "text/plain",
            "x",
            415,
            "UnsupportedMediaType",
        ),
        (
            reqwest::Method::PATCH,
            "/api/v1/namespaces/default/configmaps/x",
            "application/xml",
            "<x/>",
            415,
            "UnsupportedMediaType",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"s"}}"#,
            400,
            "BadRequest",
        ),
        (
            reqwest::Method::POST,
            "/api/v1/namespaces/default/configmaps",
            "application/json",
            r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{}}"#,
            422,
            "Invalid",
        ),
    ];
    for (method, path, ct, body, code, reason) in cases {
        let resp = send(method.clone(), path, ct, body).await.unwrap();
        assert_eq!(resp.status().as_u16(), code, "{method} {path}");
        let status: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], reason, "{status}");
        assert_eq!(status["code"], code);
    }
    let anonymous = http
        .get(format!("{url}/api/v1/namespaces"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    // Still serving.
    let nss: Api<Namespace> = Api::all(t.client.clone());
    assert!(
        !nss.list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn snapshot_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("state.json");
    let mut cfg = ClusterConfig::new(dir.path().join("one"));
    cfg.snapshot = Some(snap.clone());
    let cluster = EmbeddedCluster::start(cfg.clone()).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client().await, "default");
    cms.create(&PostParams::default(), &config_map("kept", &[("k", "v")]))
        .await
        .unwrap();
    cluster.shutdown().await;
    let again = EmbeddedCluster::start(cfg).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(again.client().await, "default");
    assert_eq!(cms.get("kept").await.unwrap().data.unwrap()["k"], "v");
    let created = cms
        .create(&PostParams::default(), &config_map("new", &[]))
        .await
        .unwrap();
    let kept = cms.get("kept").await.unwrap();
    let rv = |m: &ObjectMeta| m.resource_version.clone().unwrap().parse::<u64>().unwrap();
    assert!(
        rv(&created.metadata) > rv(&kept.metadata),
        "resourceVersion continues after a restart"
    );
    again.shutdown().await;
}

#[tokio::test]
async fn pod_logs_are_served_from_the_runner_log_files() {
    let t = start().await;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let pod: Pod = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"initContainers": [{"name": "train", "image": "driftline"}],
                 "containers": [{"name": "main", "image": "driftline"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let state_dir = t.cluster.kubeconfig_path().parent().unwrap().to_path_buf();
    let path = driftline::cluster::pod_log_path(&state_dir, "default", "p", "main");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "one\ntwo\nthree\n").unwrap();
    let init = driftline::cluster::pod_log_path(&state_dir, "default", "p", "train");
    std::fs::write(&init, "epoch 1\n").unwrap();
    // `kubectl logs job/x -c train`: an init container's log is served too.
    let train = kube::api::LogParams {
        container: Some("train".into()),
        ..Default::default()
    };
    assert_eq!(pods.logs("p", &train).await.unwrap(), "epoch 1\n");
    assert_eq!(
        pods.logs("p", &Default::default()).await.unwrap(),
        "one\ntwo\nthree\n"
    );
    let tail = kube::api::LogParams {
        tail_lines: Some(1),
        ..Default::default()
    };
    assert_eq!(pods.logs("p", &tail).await.unwrap(), "three\n");
    let wrong = kube::api::LogParams {
        container: Some("nope".into()),
        ..Default::default()
    };
    match pods.logs("p", &wrong).await.unwrap_err() {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert_eq!(
                s.message,
                "container nope is not valid for pod p; choose one of: [main] or one of the init containers: [train]"
            );
        }
        other => panic!("{other:?}"),
    }
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn objects_leaving_a_watched_selector_are_deleted_for_that_watch() {
    let t = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let mut cm = config_map("tagged", &[]);
    cm.metadata.labels = Some(BTreeMap::from([("tier".to_string(), "gold".to_string())]));
    let created = cms.create(&PostParams::default(), &cm).await.unwrap();
    let rv = created.metadata.resource_version.unwrap();
    let mut stream = cms
        .watch(&WatchParams::default().labels("tier=gold").timeout(5), &rv)
        .await
        .unwrap()
        .boxed();
    cms.patch(
        "tagged",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "silver"}}})),
    )
    .await
    .unwrap();
    cms.patch(
        "tagged",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"tier": "gold"}}})),
    )
    .await
    .unwrap();
    let first = stream.try_next().await.unwrap();
    assert!(
        matches!(first, Some(WatchEvent::Deleted(_))),
        "leaving the selector: {first:?}"
    );
    let second = stream.try_next().await.unwrap();
    assert!(
        matches!(second, Some(WatchEvent::Added(_))),
        "entering it again: {second:?}"
    );
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn followed_pod_logs_stream_new_output_until_the_pod_finishes() {
    use futures::AsyncBufReadExt;
    let t = start().await;
    let pods: Api<Pod> = Api::namespaced(t.client.clone(), "default");
    let pod: Pod = serde_json::from_value(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "f"},
        "spec": {"containers": [{"name": "main", "image": "driftline"}]}}),
    )
    .unwrap();
    pods.create(&PostParams::default(), &pod).await.unwrap();
    let state_dir = t.cluster.kubeconfig_path().parent().unwrap().to_path_buf();
    let path = driftline::cluster::pod_log_path(&state_dir, "default", "f", "main");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "epoch 1\n").unwrap();
    let params = kube::api::LogParams {
        follow: true,
        ..Default::default()
    };
    let mut lines = pods.log_stream("f", &params).await.unwrap().lines();
    assert_eq!(lines.try_next().await.unwrap().as_deref(), Some("epoch 1"));
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut file, b"epoch 2\n").unwrap();
    assert_eq!(lines.try_next().await.unwrap().as_deref(), Some("epoch 2"));
    pods.patch_status(
        "f",
        &PatchParams::default(),
        &Patch::Merge(json!({"status": {"phase": "Succeeded"}})),
    )
    .await
    .unwrap();
    let rest = tokio::time::timeout(Duration::from_secs(10), lines.try_next())
        .await
        .expect("stream ends once the pod finished");
    assert_eq!(rest.unwrap(), None);
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn snapshot_is_written_shortly_after_a_change_without_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("state.json");
    let mut cfg = ClusterConfig::new(dir.path().join("state"));
    cfg.snapshot = Some(snap.clone());
    let cluster = EmbeddedCluster::start(cfg).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(cluster.client().await, "default");
    cms.create(&PostParams::default(), &config_map("early", &[]))
        .await
        .unwrap();
    // The debounced writer persists it even if the process is killed later.
    tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if std::fs::read_to_string(&snap).is_ok_and(|s| s.contains("\"early\"")) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("snapshot written after the change");
    assert!(
        !snap.with_extension("tmp").exists(),
        "no temporary file left behind"
    );
    cluster.shutdown().await;
}

/// A protobuf length-delimited field: tag, length, bytes.
fn pb_field(number: u8, bytes: &[u8]) -> Vec<u8> {
    let mut out = vec![(number << 3) | 2];
    let mut len = bytes.len();
    while len >= 0x80 {
        out.push((len as u8) | 0x80);
        len >>= 7;
    }
    out.push(len as u8);
    out.extend_from_slice(bytes);
    out
}

/// `k8s\0` + runtime.Unknown{typeMeta, raw}, written by hand from the proto
/// field numbers so the test does not share the server's decoder.
fn pb_envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
    let type_meta = [
        pb_field(1, api_version.as_bytes()),
        pb_field(2, kind.as_bytes()),
    ]
    .concat();
    let mut body = b"k8s\0".to_vec();
    body.extend(pb_field(1, &type_meta));
    body.extend(pb_field(2, raw));
    body
}

#[tokio::test]
async fn protobuf_bodies_create_builtin_objects_and_bad_ones_get_a_status_that_says_why() {
    let t = start().await;
    let url = t.cluster.url();
    let kubeconfig = std::fs::read_to_string(t.cluster.kubeconfig_path()).unwrap();
    let token = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("token: "))
        .unwrap()
        .to_string();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = reqwest::Certificate::from_pem(t.cluster.ca_certificate_pem().as_bytes()).unwrap();
    let http = reqwest::Client::builder()
        .add_root_certificate(ca)
        .build()
        .unwrap();
    let post = |body: Vec<u8>, accept: &'static str| {
        http.post(format!("{url}/api/v1/namespaces/default/configmaps"))
            .bearer_auth(&token)
            .header("content-type", "application/vnd.kubernetes.protobuf")
            .header("accept", accept)
            .body(body)
            .send()
    };
    const CLIENT_GO_ACCEPT: &str = "application/vnd.kubernetes.protobuf,application/json";

    // ConfigMap{metadata{name: "pb"}, data{"k": "v"}}; client-go also writes empty strings.
    let meta = [pb_field(1, b"pb"), pb_field(3, b"")].concat();
    let entry = [pb_field(1, b"k"), pb_field(2, b"v")].concat();
    let config_map = [pb_field(1, &meta), pb_field(2, &entry)].concat();
    let resp = post(
        pb_envelope("v1", "ConfigMap", &config_map),
        CLIENT_GO_ACCEPT,
    )
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    assert_eq!(
        resp.headers()["content-type"],
        "application/json",
        "answers stay JSON when JSON is acceptable"
    );
    let created: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(created["data"], json!({"k": "v"}));
    assert_eq!(created["metadata"]["namespace"], "default");
    let cms: Api<ConfigMap> = Api::namespaced(t.client.clone(), "default");
    let read = cms.get("pb").await.unwrap();
    assert_eq!(read.data.unwrap()["k"], "v");

    let garbage_raw = pb_envelope("v1", "ConfigMap", &[0x0a, 0xff, 0xff, 0xff]);
    let cases: [(Vec<u8>, &str, u16, &str, &str); 5] = [
        (
            br#"{"kind":"ConfigMap"}"#.to_vec(),
            CLIENT_GO_ACCEPT,
            400,
            "BadRequest",
            "k8s\\0",
        ),
        (
            b"k8s\0\x0a\xff".to_vec(),
            CLIENT_GO_ACCEPT,
            400,
            "BadRequest",
            "not a runtime.Unknown envelope",
        ),
        (
            garbage_raw,
            CLIENT_GO_ACCEPT,
            400,
            "BadRequest",
            "does not decode as a ConfigMap of v1",
        ),
        (
            pb_envelope("example.dev/v1", "Widget", &config_map),
            CLIENT_GO_ACCEPT,
            415,
            "UnsupportedMediaType",
            "Widget of example.dev/v1 is not one",
        ),
        (
            pb_envelope("v1", "ConfigMap", &config_map),
            "application/vnd.kubernetes.protobuf",
            406,
            "NotAcceptable",
            "only application/json responses are served",
        ),
    ];
    for (body, accept, code, reason, says) in cases {
        let resp = post(body, accept).await.unwrap();
        assert_eq!(resp.status().as_u16(), code, "{says}");
        let status: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], reason, "{status}");
        let message = status["message"].as_str().unwrap_or_default();
        assert!(message.contains(says), "`{says}` in {message}");
    }
    // Still serving.
    assert!(cms.get("pb").await.is_ok());
    t.cluster.shutdown().await;
}

#[tokio::test]
async fn deployment_scale_subresource_reads_and_writes_replicas_with_versions() {
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::autoscaling::v1::{Scale, ScaleSpec};
    let t = start().await;
    let deployments: Api<Deployment> = Api::namespaced(t.client.clone(), "default");
    let web: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "web", "image": "x"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &web)
        .await
        .unwrap();

    let scale = deployments.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.as_ref().and_then(|s| s.replicas), Some(2));
    let status = scale.status.clone().unwrap();
    assert_eq!(status.selector.as_deref(), Some("app=web"));
    let first_rv = scale.metadata.resource_version.clone().unwrap();

    let patched = deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(patched.spec.unwrap().replicas, Some(4));
    let live = deployments.get("web").await.unwrap();
    assert_eq!(live.spec.unwrap().replicas, Some(4));
    assert_ne!(
        live.metadata.resource_version.as_deref(),
        Some(first_rv.as_str())
    );

    let json_patched = deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Json::<()>(
                serde_json::from_value(
                    json!([{"op": "replace", "path": "/spec/replicas", "value": 0}]),
                )
                .unwrap(),
            ),
        )
        .await
        .unwrap();
    assert_eq!(json_patched.spec.unwrap().replicas, Some(0));
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(0),
        "scale to zero is kept as 0, not dropped"
    );

    // A Scale read before those writes is stale: 409, nothing changes.
    let stale = Scale {
        metadata: ObjectMeta {
            name: Some("web".into()),
            resource_version: Some(first_rv),
            ..Default::default()
        },
        spec: Some(ScaleSpec { replicas: Some(7) }),
        status: None,
    };
    let err = deployments
        .replace_scale("web", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert_eq!(status_code(&err), 409);
    let mut fresh = deployments.get_scale("web").await.unwrap();
    fresh.spec = Some(ScaleSpec { replicas: Some(7) });
    let replaced = deployments
        .replace_scale("web", &PostParams::default(), &fresh)
        .await
        .unwrap();
    assert_eq!(replaced.spec.unwrap().replicas, Some(7));
    assert_eq!(
        deployments.get("web").await.unwrap().spec.unwrap().replicas,
        Some(7)
    );

    let negative = deployments
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await
        .unwrap_err();
    assert_eq!(status_code(&negative), 422);
    let missing = deployments.get_scale("nope").await.unwrap_err();
    assert_eq!(status_code(&missing), 404);

    // Discovery lists the subresource with its own kind, as kubectl expects.
    let resources = t.client.list_api_group_resources("apps/v1").await.unwrap();
    let scale_resource = resources
        .resources
        .iter()
        .find(|r| r.name == "deployments/scale")
        .expect("deployments/scale in discovery");
    assert_eq!(scale_resource.kind, "Scale");
    assert_eq!(scale_resource.group.as_deref(), Some("autoscaling"));
    t.cluster.shutdown().await;
}

/// A second cluster on a state directory in use is refused before it
/// touches anything: the first one's kubeconfig (and so its clients) keep
/// working, and the directory is free again once the first stops.
#[tokio::test]
async fn a_second_cluster_on_a_state_directory_in_use_is_refused_and_changes_nothing() {
    let first = start().await;
    let state_dir = first
        .cluster
        .kubeconfig_path()
        .parent()
        .unwrap()
        .to_path_buf();
    let kubeconfig = std::fs::read_to_string(first.cluster.kubeconfig_path()).unwrap();
    let second = EmbeddedCluster::start(ClusterConfig::new(&state_dir)).await;
    let err = second.err().expect("the second cluster is refused");
    assert!(
        matches!(err, driftline::cluster::ClusterError::InUse { .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("another driftline cluster is running on")
    );
    assert_eq!(
        std::fs::read_to_string(first.cluster.kubeconfig_path()).unwrap(),
        kubeconfig,
        "the refused cluster rewrote the running one's kubeconfig"
    );
    let namespaces: Api<Namespace> = Api::all(first.client.clone());
    namespaces.list(&ListParams::default()).await.unwrap();
    first.cluster.shutdown().await;
    let third = EmbeddedCluster::start(ClusterConfig::new(&state_dir))
        .await
        .expect("a stopped cluster frees its state directory");
    third.shutdown().await;
}
