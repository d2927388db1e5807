//! CustomResourceDefinitions on the embedded API server, through kube-rs:
//! served at run time, objects pruned, defaulted and validated (schema and
//! CEL) with 422 field paths, printer columns rendered as a Table, events
//! recorded through events.k8s.io shown as core events.

use driftline::cluster::{ClusterConfig, EmbeddedCluster};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::Discovery;
use serde_json::json;

fn crd() -> CustomResourceDefinition {
    serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "trainings.example.dev"},
        "spec": {
            "group": "example.dev", "scope": "Namespaced",
            "names": {"plural": "trainings", "singular": "training", "kind": "Training"},
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [{"name": "Epochs", "type": "integer", "jsonPath": ".spec.epochs"}],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {"spec": {
                        "type": "object", "required": ["dataset"],
                        "x-kubernetes-validations": [{"rule": "self.epochs <= 100 || self.dataset.startsWith('s3://')", "message": "more than 100 epochs needs an s3 dataset"}],
                        "properties": {
                            "dataset": {"type": "string", "pattern": "^(s3|file)://"},
                            "epochs": {"type": "integer", "minimum": 1, "default": 10},
                            "device": {"type": "string", "enum": ["cpu", "cuda"]}
                        }
                    },
                    "status": {"type": "object", "properties": {"phase": {"type": "string"}}}}
                }}
            }]
        }
    }))
    .unwrap()
}

async fn start() -> (EmbeddedCluster, kube::Client, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = EmbeddedCluster::start(ClusterConfig::new(dir.path()))
        .await
        .unwrap();
    let client = cluster.client().await;
    (cluster, client, dir)
}

fn training(spec: serde_json::Value) -> DynamicObject {
    serde_json::from_value(json!({"apiVersion": "example.dev/v1", "kind": "Training", "metadata": {"name": "t"}, "spec": spec}))
        .unwrap()
}

fn invalid_causes(err: kube::Error) -> (u16, String) {
    match err {
        kube::Error::Api(s) => (s.code, s.message),
        other => panic!("expected a Status error, got {other:?}"),
    }
}

#[tokio::test]
async fn custom_objects_are_pruned_defaulted_and_validated_with_field_paths() {
    let (cluster, client, _dir) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd()).await.unwrap();
    // Discovery now lists the new kind.
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let (resource, _) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.dev", "v1", "Training"))
        .expect("Training is served");
    assert_eq!(resource.plural, "trainings");
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);

    let created = api
        .create(
            &PostParams::default(),
            &training(json!({"dataset": "file:///data.csv", "colour": "red"})),
        )
        .await
        .unwrap();
    assert_eq!(
        created.data["spec"],
        json!({"dataset": "file:///data.csv", "epochs": 10}),
        "unknown field pruned, default applied"
    );

    let cases = [
        (json!({"epochs": 3}), "spec.dataset"),
        (json!({"dataset": "http://x"}), "spec.dataset"),
        (json!({"dataset": "file:///x", "epochs": 0}), "spec.epochs"),
        (
            json!({"dataset": "file:///x", "device": "tpu"}),
            "spec.device",
        ),
        (
            json!({"dataset": "file:///x", "epochs": 500}),
            "more than 100 epochs needs an s3 dataset",
        ),
    ];
    for (spec, expected) in cases {
        let mut obj = training(spec.clone());
        obj.metadata.name = Some("bad".into());
        let (code, message) =
            invalid_causes(api.create(&PostParams::default(), &obj).await.unwrap_err());
        assert_eq!(code, 422, "{spec}");
        assert!(message.contains(expected), "{spec}: {message}");
        assert!(
            message.contains("Training.example.dev \"bad\" is invalid"),
            "{message}"
        );
    }
    // Updates are validated too.
    let err = api
        .patch(
            "t",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"epochs": -1}})),
        )
        .await
        .unwrap_err();
    assert_eq!(invalid_causes(err).0, 422);

    // A CRD whose schema is malformed is rejected.
    let mut broken = crd();
    broken.metadata.name = Some("brokens.example.dev".into());
    broken.spec.names.plural = "brokens".into();
    broken.spec.names.kind = "Broken".into();
    broken.spec.versions[0].schema = None;
    assert_eq!(
        invalid_causes(
            crds.create(&PostParams::default(), &broken)
                .await
                .unwrap_err()
        )
        .0,
        422
    );

    // Deleting the CRD stops serving its kind and removes its objects.
    crds.delete("trainings.example.dev", &Default::default())
        .await
        .unwrap();
    assert_eq!(
        invalid_causes(api.list(&ListParams::default()).await.unwrap_err()).0,
        404
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn printer_columns_render_as_a_server_side_table() {
    let (cluster, client, _dir) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd()).await.unwrap();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.dev", "v1", "Training"),
        "trainings",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    api.create(
        &PostParams::default(),
        &training(json!({"dataset": "s3://d", "epochs": 7})),
    )
    .await
    .unwrap();

    let req = http::Request::get("/apis/example.dev/v1/namespaces/default/trainings")
        .header(
            "accept",
            "application/json;as=Table;v=v1;g=meta.k8s.io,application/json",
        )
        .body(Vec::new())
        .unwrap();
    let table: serde_json::Value = client.request(req).await.unwrap();
    assert_eq!(table["kind"], "Table");
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Name", "Epochs"]);
    assert_eq!(table["rows"][0]["cells"], json!(["t", 7]));
    cluster.shutdown().await;
}

#[tokio::test]
async fn events_recorded_through_events_k8s_io_are_listed_as_core_events() {
    use k8s_openapi::api::core::v1::{ConfigMap, Event as CoreEvent};
    use kube::runtime::events::{Event, EventType, Recorder, Reporter};
    let (cluster, client, _dir) = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let cm = cms
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "model"}})).unwrap(),
        )
        .await
        .unwrap();
    let recorder = Recorder::new(
        client.clone(),
        Reporter {
            controller: "driftline".into(),
            instance: None,
        },
    );
    let reference = kube::Resource::object_ref(&cm, &());
    recorder
        .publish(
            &Event {
                type_: EventType::Warning,
                reason: "GateFailed".into(),
                note: Some("accuracy 0.80 < 0.85".into()),
                action: "Evaluate".into(),
                secondary: None,
            },
            &reference,
        )
        .await
        .unwrap();
    // kubectl describe lists core/v1 events by involvedObject.
    let events: Api<CoreEvent> = Api::namespaced(client.clone(), "default");
    let found = events
        .list(
            &ListParams::default()
                .fields("involvedObject.name=model,involvedObject.kind=ConfigMap"),
        )
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].reason.as_deref(), Some("GateFailed"));
    assert_eq!(
        found.items[0].message.as_deref(),
        Some("accuracy 0.80 < 0.85")
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn strict_field_validation_rejects_unknown_fields_and_dry_runs_keep_nothing() {
    use kube::api::ValidationDirective;
    let (cluster, client, _dir) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd()).await.unwrap();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.dev", "v1", "Training"),
        "trainings",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let with_typo = json!({"apiVersion": "example.dev/v1", "kind": "Training", "metadata": {"name": "t"},
                           "spec": {"dataset": "s3://d", "epoch": 3}});
    let strict = PatchParams::apply("tester").validation(ValidationDirective::Strict);
    let (code, message) = invalid_causes(
        api.patch("t", &strict, &Patch::Apply(&with_typo))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 400);
    assert!(
        message.contains("unknown field \"spec.epoch\""),
        "{message}"
    );
    // Without Strict the typo is pruned (and reported in a Warning header).
    let kept = api
        .patch(
            "t",
            &PatchParams::apply("tester"),
            &Patch::Apply(&with_typo),
        )
        .await
        .unwrap();
    assert_eq!(
        kept.data["spec"],
        json!({"dataset": "s3://d", "epochs": 10})
    );

    // A dry run is admitted (and rejected) like a real write but changes nothing.
    let dry = PatchParams::apply("tester").dry_run();
    let preview = api
        .patch("t", &dry, &Patch::Apply(json!({"apiVersion": "example.dev/v1", "kind": "Training", "metadata": {"name": "t"}, "spec": {"dataset": "s3://d", "epochs": 50}})))
        .await
        .unwrap();
    assert_eq!(preview.data["spec"]["epochs"], 50);
    assert_eq!(api.get("t").await.unwrap().data["spec"]["epochs"], 10);
    let bad_dry = api
        .patch("t", &dry, &Patch::Apply(json!({"apiVersion": "example.dev/v1", "kind": "Training", "metadata": {"name": "t"}, "spec": {"dataset": "s3://d", "epochs": 0}})))
        .await
        .unwrap_err();
    assert_eq!(invalid_causes(bad_dry).0, 422);
    cluster.shutdown().await;
}

#[tokio::test]
async fn status_of_a_custom_object_is_written_only_through_the_status_subresource() {
    let (cluster, client, _dir) = start().await;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    crds.create(&PostParams::default(), &crd()).await.unwrap();
    let resource = ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("example.dev", "v1", "Training"),
        "trainings",
    );
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), "default", &resource);
    let cfg = json!({"apiVersion": "example.dev/v1", "kind": "Training", "metadata": {"name": "t"},
                     "spec": {"dataset": "s3://d"}, "status": {"phase": "Done"}});
    let created = api
        .patch("t", &PatchParams::apply("tester"), &Patch::Apply(&cfg))
        .await
        .unwrap();
    assert!(
        created.data.get("status").is_none(),
        "status in an apply to the object is ignored"
    );
    let st = api
        .patch_status("t", &PatchParams::apply("tester"), &Patch::Apply(json!({"apiVersion": "example.dev/v1", "kind": "Training", "metadata": {"name": "t"}, "status": {"phase": "Done"}})))
        .await
        .unwrap();
    assert_eq!(st.data["status"]["phase"], "Done");
    assert_eq!(
        st.metadata.generation,
        Some(1),
        "status writes keep generation"
    );
    cluster.shutdown().await;
}
