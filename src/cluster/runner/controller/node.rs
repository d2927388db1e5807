//! The node itself: its Node object and Lease, and the scheduler that binds
//! pending pods to it.

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use kube::{Api, Client};

use super::super::events::{EventNote, object_ref};
use super::super::pods::is_terminal;
use super::super::quantity::{GPU_RESOURCE, Resources, format_bytes, format_cpu, pod_requests};
use super::super::scheduler::{NodeView, Placement, place};
use super::super::{NodeConfig, RunnerError};
use super::{FIELD_MANAGER, NodeLoop};

/// Creates or updates the Node object with capacity, allocatable and a Ready condition.
pub async fn register_node(client: &Client, cfg: &NodeConfig) -> Result<(), RunnerError> {
    let err = |source| RunnerError::RegisterNode {
        node: cfg.name.clone(),
        source,
    };
    let api: Api<Node> = Api::all(client.clone());
    let mut labels = cfg.labels.clone();
    labels.insert("kubernetes.io/hostname".into(), cfg.name.clone());
    labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
    labels.insert("kubernetes.io/arch".into(), go_arch().into());
    let resources = serde_json::json!({
        "cpu": format_cpu(cfg.cpu_millis),
        "memory": format_bytes(cfg.memory_bytes),
        GPU_RESOURCE: cfg.gpus.to_string(),
        "pods": "110",
    });
    let node = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": cfg.name, "labels": labels},
        "spec": {"podCIDR": format!("{}/17", cfg.pod_ip_base)},
    });
    let now = Time(Timestamp::now());
    let status = serde_json::json!({"status": {
        "capacity": resources,
        "allocatable": resources,
        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}, {"type": "Hostname", "address": cfg.name}],
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "kubelet is posting ready status", "lastHeartbeatTime": now, "lastTransitionTime": now}],
        "nodeInfo": {"kubeletVersion": "v1.33.0-driftline", "operatingSystem": std::env::consts::OS,
            "architecture": go_arch(), "containerRuntimeVersion": "driftline-process://1",
            "kernelVersion": "", "osImage": "", "kubeProxyVersion": "", "machineID": "", "systemUUID": "", "bootID": ""},
    }});
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(&cfg.name, &params, &Patch::Apply(&node))
        .await
        .map_err(err)?;
    api.patch_status(&cfg.name, &PatchParams::default(), &Patch::Merge(&status))
        .await
        .map_err(err)?;
    Ok(())
}

/// Renews `kube-node-lease/<node>` every 10 s (40 s duration), as kubelet
/// does; nothing when `enabled` is false (the embedded cluster has no node
/// lifecycle controller).
pub(super) async fn renew_node_lease(client: Client, node: String, enabled: bool) {
    use k8s_openapi::api::coordination::v1::Lease;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
    if !enabled {
        return;
    }
    let api: Api<Lease> = Api::namespaced(client, "kube-node-lease");
    loop {
        let lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": node},
            "spec": {"holderIdentity": node, "leaseDurationSeconds": 40,
                "renewTime": MicroTime(Timestamp::now())},
        });
        let params = PatchParams::apply(FIELD_MANAGER).force();
        if let Err(err) = api.patch(&node, &params, &Patch::Apply(&lease)).await {
            tracing::warn!(%err, node, "cannot renew the node Lease");
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}

pub(super) fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

impl NodeLoop {
    pub(super) fn node_view(&self) -> NodeView {
        let mut labels = self.cfg.labels.clone();
        labels.insert("kubernetes.io/hostname".into(), self.cfg.name.clone());
        labels.insert("kubernetes.io/os".into(), std::env::consts::OS.into());
        labels.insert("kubernetes.io/arch".into(), go_arch().into());
        NodeView {
            name: self.cfg.name.clone(),
            labels,
            allocatable: Resources {
                cpu_millis: self.cfg.cpu_millis,
                memory_bytes: self.cfg.memory_bytes,
                gpus: self.cfg.gpus,
            },
        }
    }

    /// Binds pending pods that fit, oldest first; marks the rest Unschedulable.
    pub(super) async fn schedule(&mut self, pods: &[Pod]) {
        let node = self.node_view();
        let mut used = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.name.as_str())
                    && !is_terminal(p)
            })
            .filter_map(|p| pod_requests(p.spec.as_ref()?).ok())
            .fold(Resources::default(), Resources::plus);
        let mut pending: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && !is_terminal(p)
                    && p.spec.as_ref().is_some_and(|s| s.node_name.is_none())
            })
            .collect();
        pending.sort_by_key(|p| p.metadata.creation_timestamp.clone());
        for pod in pending {
            let (Some(name), Some(namespace), Some(spec)) = (
                pod.metadata.name.clone(),
                pod.metadata.namespace.clone(),
                pod.spec.as_ref(),
            ) else {
                continue;
            };
            let uid = pod.metadata.uid.clone().unwrap_or_default();
            // Bound already; the cache has not caught up yet.
            if self.bound.contains(&uid) {
                continue;
            }
            let reference = object_ref("v1", "Pod", &pod.metadata);
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
            let placement =
                place(spec, &node, used).unwrap_or_else(|err| Placement::Unschedulable {
                    message: format!(
                        "0/1 nodes are available: pod has an invalid resource request: {err}."
                    ),
                });
            match placement {
                Placement::Fits(taken) => {
                    let bind = serde_json::json!({"spec": {"nodeName": node.name}});
                    match api
                        .patch(&name, &PatchParams::default(), &Patch::Merge(&bind))
                        .await
                    {
                        Ok(_) => {
                            used = used.plus(taken);
                            self.unschedulable.remove(&uid);
                            self.bound.insert(uid.clone());
                            let message = format!(
                                "Successfully assigned {namespace}/{name} to {}",
                                node.name
                            );
                            self.record(
                                "default-scheduler",
                                &reference,
                                &EventNote::normal("Scheduled", &message),
                            )
                            .await;
                        }
                        Err(err) => tracing::warn!(%err, pod = %name, "cannot bind pod"),
                    }
                }
                Placement::Unschedulable { message } => {
                    if self.unschedulable.get(&uid) == Some(&message) {
                        continue;
                    }
                    let status = serde_json::json!({"status": {
                        "phase": "Pending",
                        "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                            "message": message, "lastTransitionTime": Time(Timestamp::now()), "lastProbeTime": null}],
                    }});
                    match api
                        .patch_status(&name, &PatchParams::default(), &Patch::Merge(&status))
                        .await
                    {
                        Ok(_) => {
                            self.record(
                                "default-scheduler",
                                &reference,
                                &EventNote::warning("FailedScheduling", &message),
                            )
                            .await;
                            self.unschedulable.insert(uid, message);
                        }
                        Err(err) => {
                            tracing::warn!(%err, pod = %name, "cannot mark pod unschedulable")
                        }
                    }
                }
            }
        }
    }
}
