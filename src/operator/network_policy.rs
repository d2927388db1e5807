//! NetworkPolicies of a Model's pods, when the operator is asked for them
//! (`--network-policies`; the chart's `networkPolicy.enabled`):
//!
//! - `<model>-servers`: the Model's model servers (every version) accept
//!   only the Model's own gateway and the operator's pods (its scrapes), on
//!   the serving port; with a Gateway API parent, also the Gateway's
//!   namespace (its HTTPRoute sends traffic straight to the versions);
//! - `<model>-gateway`: the gateway accepts any pod of its namespace, and
//!   the operator's pods.
//!
//! Ingress only: egress (object stores, the API server) stays open. A static
//! chart template cannot say "the Model's own gateway" for Models it does
//! not know, so the operator writes these beside the Model's other
//! children, owned by the Model. Kubelet probes are not subject to them.

use std::collections::BTreeMap;

use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicyPort,
    NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::DynamicObject;

use crate::api::Model;
use crate::api::names::{self, SERVE_PORT};

use super::children::{self, ChildSettings};
use super::error::OperatorError;

/// The label every namespace carries with its own name (set by the API server).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Who, besides a Model's own pods, reaches them: the operator.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NetworkPolicySettings {
    /// The operator's namespace.
    pub operator_namespace: String,
    /// Labels that select the operator's pods (the chart's selector labels).
    pub operator_pod_labels: BTreeMap<String, String>,
}

/// The NetworkPolicy admitting traffic to a Model's model servers.
pub fn servers_policy_name(model: &str) -> String {
    format!("{model}-servers")
}

/// The NetworkPolicy admitting traffic to a Model's gateway.
pub fn gateway_policy_name(model: &str) -> String {
    names::gateway_deployment(model)
}

/// Pods of `model` in `role`, as the Model's children label them.
fn pods_of(model: &str, role: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([
            (names::MODEL_LABEL.to_string(), model.to_string()),
            (names::ROLE_LABEL.to_string(), role.to_string()),
        ])),
        ..Default::default()
    }
}

fn namespace_named(namespace: &str) -> LabelSelector {
    LabelSelector {
        match_labels: Some(BTreeMap::from([(
            NAMESPACE_NAME_LABEL.to_string(),
            namespace.to_string(),
        )])),
        ..Default::default()
    }
}

fn operator_peer(s: &NetworkPolicySettings) -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        namespace_selector: Some(namespace_named(&s.operator_namespace)),
        pod_selector: Some(LabelSelector {
            match_labels: Some(s.operator_pod_labels.clone()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn serving_port() -> Option<Vec<NetworkPolicyPort>> {
    Some(vec![NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(SERVE_PORT))),
        protocol: Some("TCP".into()),
        ..Default::default()
    }])
}

fn policy(
    model: &Model,
    name: String,
    role: &str,
    from: Vec<NetworkPolicyPeer>,
) -> Result<NetworkPolicy, OperatorError> {
    let metadata = children::child_meta(model, name, role)?;
    let model_name = model.metadata.name.as_deref().unwrap_or_default();
    Ok(NetworkPolicy {
        metadata,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(pods_of(model_name, role)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![NetworkPolicyIngressRule {
                from: Some(from),
                ports: serving_port(),
            }]),
            ..Default::default()
        }),
    })
}

/// The Model's NetworkPolicies (none unless the operator is asked for them).
pub fn network_policies(
    model: &Model,
    settings: &ChildSettings,
) -> Result<Vec<NetworkPolicy>, OperatorError> {
    let Some(s) = &settings.network_policies else {
        return Ok(Vec::new());
    };
    let name = model
        .metadata
        .name
        .as_deref()
        .ok_or(OperatorError::Unnamed)?;
    let mut to_servers = vec![
        NetworkPolicyPeer {
            pod_selector: Some(pods_of(name, names::ROLE_GATEWAY)),
            ..Default::default()
        },
        operator_peer(s),
    ];
    if let Some((gateway_namespace, _)) = &settings.http_route_parent {
        to_servers.push(NetworkPolicyPeer {
            namespace_selector: Some(namespace_named(gateway_namespace)),
            ..Default::default()
        });
    }
    let to_gateway = vec![
        // Any pod of the Model's namespace.
        NetworkPolicyPeer {
            pod_selector: Some(LabelSelector::default()),
            ..Default::default()
        },
        operator_peer(s),
    ];
    Ok(vec![
        policy(
            model,
            servers_policy_name(name),
            names::ROLE_SERVING,
            to_servers,
        )?,
        policy(
            model,
            gateway_policy_name(name),
            names::ROLE_GATEWAY,
            to_gateway,
        )?,
    ])
}

/// [`network_policies`] as the untyped objects `apply::apply_dynamic` writes
/// (no watch cache of NetworkPolicies: it records what it applied).
pub fn network_policy_objects(
    model: &Model,
    settings: &ChildSettings,
) -> Result<Vec<DynamicObject>, OperatorError> {
    network_policies(model, settings)?
        .into_iter()
        .map(|p| {
            serde_json::to_value(&p)
                .and_then(serde_json::from_value)
                .map_err(|e| {
                    let name = p.metadata.name.as_deref().unwrap_or_default();
                    OperatorError::build(format!("NetworkPolicy {name}"))(e.into())
                })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::load_model_config;
    use k8s_openapi::api::apps::v1::Deployment;

    fn model() -> Model {
        let spec = load_model_config(include_str!("../../tests/fixtures/wine-quality.yaml"))
            .expect("north-star fixture");
        let mut m = Model::new("wine-quality", spec);
        m.metadata.namespace = Some("ml".into());
        m.metadata.uid = Some("uid-1".into());
        m
    }

    fn settings() -> ChildSettings {
        ChildSettings {
            network_policies: Some(NetworkPolicySettings {
                operator_namespace: "driftline-system".into(),
                operator_pod_labels: BTreeMap::from([
                    ("app.kubernetes.io/name".into(), "driftline".into()),
                    ("app.kubernetes.io/instance".into(), "ops".into()),
                ]),
            }),
            ..ChildSettings::default()
        }
    }

    /// Whether `selector`'s matchLabels select a pod labelled `labels`.
    fn selects(selector: &LabelSelector, labels: &BTreeMap<String, String>) -> bool {
        assert!(selector.match_expressions.is_none());
        selector
            .match_labels
            .iter()
            .flatten()
            .all(|(k, v)| labels.get(k) == Some(v))
    }

    fn pod_labels(d: &Deployment) -> BTreeMap<String, String> {
        d.spec
            .as_ref()
            .and_then(|s| s.template.metadata.as_ref())
            .and_then(|m| m.labels.clone())
            .expect("pod template labels")
    }

    fn container_port(d: &Deployment) -> i32 {
        d.spec
            .as_ref()
            .expect("spec")
            .template
            .spec
            .as_ref()
            .expect("pod")
            .containers[0]
            .ports
            .as_ref()
            .expect("ports")[0]
            .container_port
    }

    fn rule(p: &NetworkPolicy) -> &NetworkPolicyIngressRule {
        let spec = p.spec.as_ref().expect("spec");
        assert_eq!(
            spec.policy_types.as_deref(),
            Some(&["Ingress".to_string()][..])
        );
        let rules = spec.ingress.as_ref().expect("ingress");
        assert_eq!(rules.len(), 1);
        &rules[0]
    }

    #[test]
    fn model_servers_admit_only_their_gateway_and_the_operator_on_the_serving_port() {
        let m = model();
        let s = settings();
        let (v1, _) = children::serving(&m, 1, "s3://a/v1", &s).expect("v1");
        let (v7, _) = children::serving(&m, 7, "s3://a/v7", &s).expect("v7");
        let (gateway, _) = children::gateway(&m, &s).expect("gateway");
        let mut other = m.clone();
        other.metadata.name = Some("churn".into());
        let (other_gateway, _) = children::gateway(&other, &s).expect("another gateway");
        let (other_server, _) = children::serving(&other, 1, "s3://b/v1", &s).expect("server");

        let policies = network_policies(&m, &s).expect("policies");
        let names: Vec<_> = policies
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["wine-quality-servers", "wine-quality-gateway"]);
        let servers = &policies[0];
        let selector = servers
            .spec
            .as_ref()
            .unwrap()
            .pod_selector
            .as_ref()
            .unwrap();
        // Every version's servers, nothing else.
        assert!(selects(selector, &pod_labels(&v1)) && selects(selector, &pod_labels(&v7)));
        assert!(!selects(selector, &pod_labels(&gateway)));
        assert!(!selects(selector, &pod_labels(&other_server)));
        let rule = rule(servers);
        let port = &rule.ports.as_ref().unwrap()[0];
        assert_eq!(port.port, Some(IntOrString::Int(container_port(&v1))));
        assert_eq!(port.protocol.as_deref(), Some("TCP"));
        let from = rule.from.as_ref().unwrap();
        assert_eq!(from.len(), 2, "{from:?}");
        // The Model's own gateway, in the Model's namespace; not another Model's.
        let gateway_peer = &from[0];
        assert!(gateway_peer.namespace_selector.is_none());
        let peer = gateway_peer.pod_selector.as_ref().unwrap();
        assert!(selects(peer, &pod_labels(&gateway)));
        assert!(!selects(peer, &pod_labels(&other_gateway)));
        assert!(!selects(peer, &pod_labels(&v1)));
        // The operator's pods in the operator's namespace.
        let operator = &from[1];
        assert_eq!(
            operator.namespace_selector.as_ref().unwrap().match_labels,
            Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                "driftline-system".to_string()
            )]))
        );
        let operator_pod = BTreeMap::from([
            (
                "app.kubernetes.io/name".to_string(),
                "driftline".to_string(),
            ),
            ("app.kubernetes.io/instance".to_string(), "ops".to_string()),
            ("pod-template-hash".to_string(), "5d8f".to_string()),
        ]);
        assert!(selects(
            operator.pod_selector.as_ref().unwrap(),
            &operator_pod
        ));
    }

    #[test]
    fn the_gateway_admits_its_namespace_and_the_operator() {
        let m = model();
        let s = settings();
        let (gateway, _) = children::gateway(&m, &s).expect("gateway");
        let (v1, _) = children::serving(&m, 1, "s3://a/v1", &s).expect("v1");
        let policies = network_policies(&m, &s).expect("policies");
        let policy = &policies[1];
        let selector = policy.spec.as_ref().unwrap().pod_selector.as_ref().unwrap();
        assert!(selects(selector, &pod_labels(&gateway)));
        assert!(!selects(selector, &pod_labels(&v1)));
        let rule = rule(policy);
        assert_eq!(
            rule.ports.as_ref().unwrap()[0].port,
            Some(IntOrString::Int(container_port(&gateway)))
        );
        let from = rule.from.as_ref().unwrap();
        // An empty pod selector without a namespace selector: every pod of
        // the policy's own namespace.
        assert_eq!(from[0].pod_selector, Some(LabelSelector::default()));
        assert!(from[0].namespace_selector.is_none());
        assert_eq!(from[1], operator_peer(s.network_policies.as_ref().unwrap()));
    }

    #[test]
    fn policies_are_the_models_children_and_exist_only_when_asked_for() {
        let m = model();
        let policies = network_policies(&m, &settings()).expect("policies");
        for p in &policies {
            let owner = &p.metadata.owner_references.as_ref().expect("owner")[0];
            assert_eq!(
                (owner.kind.as_str(), owner.name.as_str()),
                ("Model", "wine-quality")
            );
            let labels = p.metadata.labels.as_ref().expect("labels");
            assert_eq!(
                labels.get(names::MODEL_LABEL).map(String::as_str),
                Some("wine-quality")
            );
            assert_eq!(
                labels.get(names::MANAGED_BY_LABEL).map(String::as_str),
                Some(names::MANAGER)
            );
            assert_eq!(p.metadata.namespace.as_deref(), Some("ml"));
        }
        let objects = network_policy_objects(&m, &settings()).expect("objects");
        let types = objects[0].types.as_ref().expect("apiVersion and kind");
        assert_eq!(
            (types.api_version.as_str(), types.kind.as_str()),
            ("networking.k8s.io/v1", "NetworkPolicy")
        );
        assert!(
            network_policies(&m, &ChildSettings::default())
                .expect("none")
                .is_empty()
        );
    }

    #[test]
    fn with_a_gateway_api_parent_its_namespace_reaches_the_servers() {
        let s = ChildSettings {
            http_route_parent: Some(("gateways".into(), "public".into())),
            ..settings()
        };
        let policies = network_policies(&model(), &s).expect("policies");
        let from = rule(&policies[0]).from.clone().unwrap();
        assert_eq!(from.len(), 3);
        assert_eq!(
            from[2].namespace_selector.as_ref().unwrap().match_labels,
            Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_string(),
                "gateways".to_string()
            )]))
        );
        assert!(
            from[2].pod_selector.is_none(),
            "any pod of the Gateway's namespace"
        );
        assert_eq!(rule(&policies[1]).from.as_ref().unwrap().len(), 2);
    }
}
