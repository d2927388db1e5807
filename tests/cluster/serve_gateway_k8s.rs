//! The gateway's Kubernetes mode: weights follow `Model.status.traffic`
//! through a real API server (the embedded cluster), with no restart.

use std::time::Duration;

use driftline::api::{Model, load_model_config};
use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use driftline::serve::{GatewayConfig, WeightTable, gateway_router, watch_model_status};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

async fn wait_for(
    handle: &driftline::serve::WeightsHandle,
    want: &[(&str, &str, u32)],
) -> WeightTable {
    for _ in 0..100 {
        let table = (*handle.current()).clone();
        let got: Vec<(&str, &str, u32)> = table
            .backends
            .iter()
            .map(|b| (b.version.as_str(), b.url.as_str(), b.weight))
            .collect();
        if got == want {
            return table;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "weights never became {want:?}; last: {:?}",
        handle.current()
    );
}

#[tokio::test]
async fn gateway_weights_follow_the_model_status_through_the_kubernetes_api() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path()))
        .await
        .unwrap();
    let client = cluster.client().await;

    driftline::operator::install_crds(&client).await.unwrap();
    let spec = load_model_config(include_str!("../../pipelines/wine-good.yaml")).unwrap();
    let models: Api<Model> = Api::namespaced(client.clone(), "default");
    models
        .create(&PostParams::default(), &Model::new("wine", spec))
        .await
        .unwrap();

    let (_router, handle) =
        gateway_router(WeightTable { backends: vec![] }, GatewayConfig::default());
    let watcher = tokio::spawn(watch_model_status(
        client.clone(),
        "default".into(),
        "wine".into(),
        None,
        handle.clone(),
    ));

    let set_traffic = |weights: serde_json::Value| {
        let models = models.clone();
        async move {
            models
                .patch_status(
                    "wine",
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": {"traffic": weights}})),
                )
                .await
                .unwrap();
        }
    };
    set_traffic(json!([{"version": "v1", "weight": 90}, {"version": "v2", "weight": 10}])).await;
    wait_for(
        &handle,
        &[
            ("v1", "http://wine-v1.default.svc:8080", 90),
            ("v2", "http://wine-v2.default.svc:8080", 10),
        ],
    )
    .await;

    // A canary step: new weights arrive through the watch, no restart.
    set_traffic(json!([{"version": "v1", "weight": 50}, {"version": "v2", "weight": 50}])).await;
    wait_for(
        &handle,
        &[
            ("v1", "http://wine-v1.default.svc:8080", 50),
            ("v2", "http://wine-v2.default.svc:8080", 50),
        ],
    )
    .await;

    // A status the gateway cannot route (one version listed twice) is refused;
    // the gateway keeps the last good table.
    set_traffic(json!([{"version": "v1", "weight": 50}, {"version": "v1", "weight": 50}])).await;
    let refused = async {
        while handle.refusals() == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), refused)
        .await
        .expect("the unroutable status was never refused");
    let kept: Vec<u32> = handle.current().backends.iter().map(|b| b.weight).collect();
    assert_eq!(kept, vec![50, 50]);

    watcher.abort();
    cluster.shutdown().await;
}
