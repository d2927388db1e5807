//! A whole CRD through the schema pipeline the embedded apiserver runs on a
//! create or update: prune → default → validate (schema + CEL) → 422 Status,
//! then Table rendering of its printer columns and its OpenAPI v3 document.

use chrono::{DateTime, Utc};
use driftline::cluster::schema::{
    self, FieldErrorKind, invalid_status, openapi_v3_for_crd, validate, validate_crd,
    validate_schema_definition,
};
use driftline::cluster::{crd_columns, table_at};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceDefinition, JSONSchemaProps,
};
use serde_json::{Value, json};

/// The CRD as a user would `kubectl apply -f` it.
const MODEL_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: models.driftline.dev}
spec:
  group: driftline.dev
  scope: Namespaced
  names: {plural: models, singular: model, kind: Model, listKind: ModelList}
  versions:
    - name: v1alpha1
      served: true
      storage: true
      subresources: {status: {}}
      additionalPrinterColumns:
        - {name: Phase, type: string, jsonPath: .status.phase}
        - {name: Champion, type: string, jsonPath: .status.champion}
        - {name: Epochs, type: integer, jsonPath: .spec.training.epochs, priority: 1}
        - {name: Ready, type: string, jsonPath: '.status.conditions[?(@.type=="Ready")].status'}
        - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
      schema:
        openAPIV3Schema:
          type: object
          required: [spec]
          properties:
            spec:
              type: object
              required: [task, data]
              x-kubernetes-validations:
                - rule: "self.task != 'regression' || !has(self.gate) || self.gate.metrics.all(m, m.name != 'accuracy')"
                  message: accuracy is not a regression metric
                  fieldPath: .gate.metrics
              properties:
                task:
                  type: string
                  enum: [classification, regression]
                  x-kubernetes-validations:
                    - {rule: self == oldSelf, message: task is immutable}
                data:
                  type: object
                  required: [source]
                  properties:
                    source: {type: string, pattern: '^(file|s3|https)://'}
                    target: {type: string, default: label}
                training:
                  type: object
                  default: {}
                  properties:
                    epochs: {type: integer, minimum: 1, maximum: 10000, default: 20}
                    learningRate: {type: number, minimum: 0, exclusiveMinimum: true, default: 0.001}
                    resources: {type: object, x-kubernetes-preserve-unknown-fields: true}
                gate:
                  type: object
                  properties:
                    metrics:
                      type: array
                      x-kubernetes-list-type: map
                      x-kubernetes-list-map-keys: [name]
                      items:
                        type: object
                        required: [name]
                        properties:
                          name: {type: string}
                          min: {type: number, minimum: 0, maximum: 1}
                rollout:
                  type: object
                  properties:
                    steps:
                      type: array
                      maxItems: 10
                      items:
                        type: object
                        x-kubernetes-validations:
                          - rule: self.weight <= 100
                            messageExpression: "'weight ' + string(self.weight) + ' is over 100'"
                        properties:
                          weight: {type: integer, minimum: 1}
                          pause: {type: string, default: 5m}
            status:
              type: object
              x-kubernetes-preserve-unknown-fields: true
"#;

fn model_crd() -> CustomResourceDefinition {
    serde_yaml::from_str(MODEL_CRD).expect("the test CRD deserializes")
}

fn schema_of(crd: &CustomResourceDefinition) -> JSONSchemaProps {
    crd.spec.versions[0]
        .schema
        .as_ref()
        .and_then(|s| s.open_api_v3_schema.clone())
        .expect("the test CRD has a schema")
}

/// What the apiserver does with a written object: prune, default, validate.
fn admit(schema: &JSONSchemaProps, mut obj: Value, old: Option<&Value>) -> (Value, Vec<String>) {
    let errors = schema::admit(schema, &mut obj, old)
        .iter()
        .map(ToString::to_string)
        .collect();
    (obj, errors)
}

fn wine() -> Value {
    json!({
        "apiVersion": "driftline.dev/v1alpha1", "kind": "Model",
        "metadata": {"name": "wine", "namespace": "ml", "creationTimestamp": "2026-11-26T10:00:00Z"},
        "spec": {
            "task": "classification",
            "data": {"source": "s3://datasets/wine.csv", "colour": "red"},
            "training": {"resources": {"gpu": 1, "memory": "8Gi"}},
            "gate": {"metrics": [{"name": "accuracy", "min": 0.85}]},
            "rollout": {"steps": [{"weight": 5}, {"weight": 50, "pause": "20m"}]},
            "unknownTopLevel": true
        }
    })
}

#[test]
fn a_valid_model_is_pruned_and_defaulted_and_admitted() {
    let crd = model_crd();
    let schema = schema_of(&crd);
    assert!(
        validate_schema_definition(&schema, "spec.versions[0].schema.openAPIV3Schema").is_empty()
    );
    let (obj, errors) = admit(&schema, wine(), None);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(
        obj["spec"].get("unknownTopLevel").is_none(),
        "unknown fields are pruned"
    );
    assert!(obj["spec"]["data"].get("colour").is_none());
    assert_eq!(obj["spec"]["data"]["target"], "label");
    assert_eq!(obj["spec"]["training"]["epochs"], 20);
    assert_eq!(obj["spec"]["training"]["learningRate"], 0.001);
    assert_eq!(
        obj["spec"]["training"]["resources"]["memory"], "8Gi",
        "preserved subtree kept"
    );
    assert_eq!(obj["spec"]["rollout"]["steps"][0]["pause"], "5m");
    assert_eq!(obj["spec"]["rollout"]["steps"][1]["pause"], "20m");
    assert_eq!(obj["metadata"]["name"], "wine");
}

/// The real API server's last line when a blocking schema error (required,
/// unsupported value, wrong type, too long or too many) kept the CRD's CEL
/// rules from running.
const NOT_CHECKED: &str = "<nil>: Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

#[test]
fn schema_violations_are_rejected_with_422_and_field_paths() {
    let schema = schema_of(&model_crd());
    let mut bad = wine();
    bad["spec"]["task"] = json!("ranking");
    bad["spec"]["training"]["epochs"] = json!(0);
    bad["spec"]["data"]["source"] = json!("ftp://x");
    bad["spec"]["rollout"]["steps"][1]["weight"] = json!(-3);
    bad["spec"]["gate"]["metrics"] = json!([{"name": "f1", "min": 2}, {"min": 0.5}]);
    let (obj, errors) = admit(&schema, bad, None);
    assert_eq!(
        errors,
        vec![
            r#"spec.data.source: Invalid value: "ftp://x": spec.data.source in body should match '^(file|s3|https)://'"#,
            "spec.gate.metrics[0].min: Invalid value: 2: spec.gate.metrics[0].min in body should be less than or equal to 1",
            "spec.gate.metrics[1].name: Required value",
            "spec.rollout.steps[1].weight: Invalid value: -3: spec.rollout.steps[1].weight in body should be greater than or equal to 1",
            r#"spec.task: Unsupported value: "ranking": supported values: "classification", "regression""#,
            "spec.training.epochs: Invalid value: 0: spec.training.epochs in body should be greater than or equal to 1",
            NOT_CHECKED,
        ]
    );
    let found = validate(&schema, &obj, None);
    let status = invalid_status("driftline.dev", "Model", "wine", &found);
    assert_eq!(status["code"], 422);
    assert_eq!(status["reason"], "Invalid");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("Model.driftline.dev \"wine\" is invalid: [spec.data.source: "),
        "{message}"
    );
    assert_eq!(
        status["details"]["causes"][2]["reason"],
        "FieldValueRequired"
    );
    assert_eq!(
        status["details"]["causes"][2]["field"],
        "spec.gate.metrics[1].name"
    );
}

#[test]
fn cel_rules_reject_with_messages_paths_and_transition_checks() {
    let schema = schema_of(&model_crd());
    let mut bad = wine();
    bad["spec"]["task"] = json!("regression");
    bad["spec"]["rollout"]["steps"][0]["weight"] = json!(150);
    let (_, errors) = admit(&schema, bad, None);
    assert_eq!(
        errors,
        vec![
            r#"spec.gate.metrics: Invalid value: "object": accuracy is not a regression metric"#,
            r#"spec.rollout.steps[0]: Invalid value: "object": weight 150 is over 100"#,
        ]
    );

    let (stored, errors) = admit(&schema, wine(), None);
    assert!(errors.is_empty());
    let mut update = stored.clone();
    update["spec"]["task"] = json!("regression");
    update["spec"]["gate"] = json!({"metrics": [{"name": "rmse"}]});
    let found = validate(&schema, &update, Some(&stored));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].path, "spec.task");
    assert_eq!(found[0].kind, FieldErrorKind::Invalid);
    assert_eq!(found[0].message, "task is immutable");
}

#[test]
fn missing_spec_and_wrong_types_are_reported() {
    let schema = schema_of(&model_crd());
    let (_, errors) = admit(
        &schema,
        json!({"apiVersion": "driftline.dev/v1alpha1", "kind": "Model", "metadata": {"name": "x"}}),
        None,
    );
    assert_eq!(errors, vec!["spec: Required value", NOT_CHECKED]);
    let mut bad = wine();
    bad["spec"]["training"]["epochs"] = json!("many");
    let (_, errors) = admit(&schema, bad, None);
    assert_eq!(
        errors,
        vec![
            r#"spec.training.epochs: Invalid value: "string": spec.training.epochs in body must be of type integer: "string""#,
            NOT_CHECKED,
        ]
    );
}

#[test]
fn printer_columns_render_as_a_table() {
    let crd = model_crd();
    let schema = schema_of(&crd);
    let (mut obj, _) = admit(&schema, wine(), None);
    obj["status"] = json!({"phase": "Serving", "champion": "v3",
        "conditions": [{"type": "Ready", "status": "True"}]});
    let columns = crd_columns(&crd, "v1alpha1").expect("served version");
    let now: DateTime<Utc> = DateTime::parse_from_rfc3339("2026-11-26T13:00:00Z")
        .map(|t| t.with_timezone(&Utc))
        .expect("valid time");
    let table = table_at(&columns, &[obj], json!({"resourceVersion": "42"}), now);
    let names: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(
        names,
        vec!["Name", "Phase", "Champion", "Epochs", "Ready", "Age"]
    );
    assert_eq!(table["columnDefinitions"][3]["priority"], 1);
    assert_eq!(
        table["rows"][0]["cells"],
        json!(["wine", "Serving", "v3", 20, "True", "3h"])
    );
    assert_eq!(table["rows"][0]["object"]["metadata"]["name"], "wine");
    assert!(crd_columns(&crd, "v9").is_err());
}

#[test]
fn openapi_document_names_the_kind_for_kubectl() {
    let crd = model_crd();
    let doc = openapi_v3_for_crd(&crd, "v1alpha1").expect("served version");
    let model = &doc["components"]["schemas"]["dev.driftline.v1alpha1.Model"];
    assert_eq!(
        model["x-kubernetes-group-version-kind"],
        json!([{"group": "driftline.dev", "kind": "Model", "version": "v1alpha1"}])
    );
    assert_eq!(
        model["properties"]["spec"]["properties"]["training"]["properties"]["epochs"]["minimum"],
        1.0
    );
    assert!(model["properties"]["metadata"].is_object());
    assert!(doc["components"]["schemas"]["dev.driftline.v1alpha1.ModelList"].is_object());
    assert!(
        doc["paths"]["/apis/driftline.dev/v1alpha1/namespaces/{namespace}/models/{name}/status"]
            .is_object()
    );
    let post = &doc["paths"]["/apis/driftline.dev/v1alpha1/namespaces/{namespace}/models"]["post"];
    let params: Vec<&str> = post["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .collect();
    assert!(params.contains(&"fieldValidation"), "{params:?}");
    let err = openapi_v3_for_crd(&crd, "v2").expect_err("unknown version");
    assert!(err.to_string().contains("has no version `v2`"), "{err}");
}

#[test]
fn a_crd_with_a_broken_rule_or_column_is_rejected_with_paths() {
    assert!(validate_crd(&model_crd()).is_empty());
    let broken = MODEL_CRD
        .replace("rule: self.weight <= 100", "rule: self.weight <= (")
        .replace("jsonPath: .status.champion", "jsonPath: status.champion");
    let crd: CustomResourceDefinition = serde_yaml::from_str(&broken).expect("still YAML");
    let errors = validate_crd(&crd);
    let fields: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "spec.versions[0].schema.openAPIV3Schema.properties[spec].properties[rollout].properties[steps].items.x-kubernetes-validations[0].rule",
            "spec.versions[0].additionalPrinterColumns[1].jsonPath",
        ]
    );
    let status = invalid_status(
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        "models.driftline.dev",
        &errors,
    );
    assert_eq!(status["code"], 422);
    assert!(status["message"].as_str().unwrap_or_default().starts_with(
        "CustomResourceDefinition.apiextensions.k8s.io \"models.driftline.dev\" is invalid: ["
    ));
}

#[test]
fn a_compiled_crd_schema_gives_the_same_answers() {
    let crd = model_crd();
    let compiled = schema::CrdSchema::for_version(&crd, "v1alpha1").expect("served version");
    let mut good = wine();
    assert!(compiled.admit(&mut good, None).is_empty());
    assert_eq!(good["spec"]["training"]["epochs"], 20);
    let mut bad = wine();
    bad["spec"]["rollout"]["steps"][0]["weight"] = json!(150);
    let errors: Vec<String> = compiled
        .admit(&mut bad, None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        vec![r#"spec.rollout.steps[0]: Invalid value: "object": weight 150 is over 100"#]
    );
    let err = schema::CrdSchema::for_version(&crd, "v1").expect_err("not served");
    assert_eq!(
        err.to_string(),
        "CustomResourceDefinition `models.driftline.dev` has no version `v1`; it serves: v1alpha1"
    );
}

/// Arbitrary JSON, biased toward the Model's own field names so that the
/// generated objects reach deep into the schema.
fn arbitrary_json() -> impl proptest::strategy::Strategy<Value = Value> {
    use proptest::prelude::*;
    let key = prop::sample::select(vec![
        "spec", "task", "data", "source", "training", "epochs", "gate", "metrics", "name", "min",
        "rollout", "steps", "weight", "pause", "status", "metadata", "x",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        "[a-z0-9:/.]{0,12}".prop_map(Value::from),
        Just(json!("classification")),
        Just(json!("s3://d.csv")),
    ];
    leaf.prop_recursive(5, 64, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::from),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| {
                Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// Whatever a client sends, admission answers (no panic), and pruning and
    /// defaulting are idempotent, so a re-applied object does not change.
    #[test]
    fn any_json_is_answered_and_admission_is_idempotent(obj in arbitrary_json(), old in arbitrary_json()) {
        let compiled = schema::CrdSchema::for_version(&model_crd(), "v1alpha1").expect("served version");
        let mut once = obj.clone();
        let errors = compiled.admit(&mut once, Some(&old));
        let status = invalid_status("driftline.dev", "Model", "m", &errors);
        proptest::prop_assert_eq!(&status["code"], &json!(422));
        let mut twice = once.clone();
        schema::prune(compiled.schema(), &mut twice);
        schema::apply_defaults(compiled.schema(), &mut twice);
        proptest::prop_assert_eq!(&once, &twice);
        proptest::prop_assert!(schema::unknown_fields(compiled.schema(), &once).is_empty());
    }
}
