//! Whether a pod fits the node: requests against free allocatable resources
//! and the pod's nodeSelector, with the messages a real scheduler gives.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodSpec;

use super::quantity::{BadQuantity, GPU_RESOURCE, Resources, pod_requests};

/// What the scheduler knows about the node.
#[derive(Debug, Clone)]
pub struct NodeView {
    /// Node name.
    pub name: String,
    /// Node labels, matched against nodeSelector.
    pub labels: BTreeMap<String, String>,
    /// Allocatable resources.
    pub allocatable: Resources,
}

/// The scheduling decision for one pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// Bind the pod to the node; it takes these resources.
    Fits(Resources),
    /// Leave it Pending with condition PodScheduled=False reason Unschedulable.
    Unschedulable {
        /// The message a real scheduler writes, e.g. "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".
        message: String,
    },
}

/// Decides whether a pod with `spec` fits `node`, given what bound pods already use.
pub fn place(spec: &PodSpec, node: &NodeView, used: Resources) -> Result<Placement, BadQuantity> {
    let mut reasons = Vec::new();
    let selector_matches = spec
        .node_selector
        .iter()
        .flatten()
        .all(|(k, v)| node.labels.get(k) == Some(v));
    if !selector_matches {
        reasons.push("node(s) didn't match Pod's node affinity/selector".to_string());
    }
    let wanted = pod_requests(spec)?;
    let free = |total: u64, taken: u64| total.saturating_sub(taken);
    if wanted.cpu_millis > free(node.allocatable.cpu_millis, used.cpu_millis) {
        reasons.push("Insufficient cpu".to_string());
    }
    if wanted.memory_bytes > free(node.allocatable.memory_bytes, used.memory_bytes) {
        reasons.push("Insufficient memory".to_string());
    }
    if wanted.gpus > free(node.allocatable.gpus, used.gpus) {
        reasons.push(format!("Insufficient {GPU_RESOURCE}"));
    }
    if reasons.is_empty() {
        return Ok(Placement::Fits(wanted));
    }
    reasons.sort();
    let listed: Vec<String> = reasons.iter().map(|r| format!("1 {r}")).collect();
    Ok(Placement::Unschedulable {
        message: format!("0/1 nodes are available: {}.", listed.join(", ")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ResourceRequirements};
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

    fn node(gpus: u64) -> NodeView {
        NodeView {
            name: "driftline-node".into(),
            labels: [("accelerator".to_string(), "none".to_string())].into(),
            allocatable: Resources {
                cpu_millis: 2000,
                memory_bytes: 4 << 30,
                gpus,
            },
        }
    }

    fn spec(requests: &[(&str, &str)]) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "main".into(),
                resources: Some(ResourceRequirements {
                    requests: Some(
                        requests
                            .iter()
                            .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                            .collect(),
                    ),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn a_gpu_pod_on_a_cpu_node_is_unschedulable_with_the_real_message() {
        let placement = place(
            &spec(&[(GPU_RESOURCE, "1")]),
            &node(0),
            Resources::default(),
        );
        assert_eq!(
            placement.unwrap(),
            Placement::Unschedulable {
                message: "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.".into()
            }
        );
    }

    #[test]
    fn a_pod_fits_until_the_node_is_full() {
        let s = spec(&[("cpu", "1500m"), ("memory", "1Gi")]);
        assert_eq!(
            place(&s, &node(0), Resources::default()).unwrap(),
            Placement::Fits(Resources {
                cpu_millis: 1500,
                memory_bytes: 1 << 30,
                gpus: 0
            })
        );
        let used = Resources {
            cpu_millis: 1000,
            memory_bytes: 3584 << 20,
            gpus: 0,
        };
        let Placement::Unschedulable { message } = place(&s, &node(0), used).unwrap() else {
            panic!("must not fit");
        };
        assert_eq!(
            message,
            "0/1 nodes are available: 1 Insufficient cpu, 1 Insufficient memory."
        );
    }

    #[test]
    fn node_selector_must_match_the_node_labels() {
        let mut s = spec(&[]);
        s.node_selector = Some([("accelerator".to_string(), "nvidia".to_string())].into());
        let Placement::Unschedulable { message } =
            place(&s, &node(1), Resources::default()).unwrap()
        else {
            panic!("selector must not match");
        };
        assert!(
            message.contains("didn't match Pod's node affinity/selector"),
            "{message}"
        );
        s.node_selector = Some([("accelerator".to_string(), "none".to_string())].into());
        assert!(matches!(
            place(&s, &node(1), Resources::default()).unwrap(),
            Placement::Fits(_)
        ));
    }
}
