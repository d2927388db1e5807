//! The kubelet sync: a worker for every pod bound to the node (with its
//! loopback address, GPUs and environment), stopped when the pod goes.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::DeleteParams;
use tokio::sync::mpsc;

use super::super::kubelet::{PodCommand, PodStart, run_pod};
use super::super::pods::is_terminal;
use super::super::quantity::pod_requests;
use super::super::service::service_env;
use super::{NodeLoop, WorkerHandle};

impl NodeLoop {
    pub(super) fn free_ip(&self, pods: &[Pod]) -> Option<Ipv4Addr> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let mut used: HashSet<Ipv4Addr> = workers.values().map(|w| w.ip).collect();
        used.extend(pods.iter().filter(|p| !is_terminal(p)).filter_map(|p| {
            p.status
                .as_ref()?
                .pod_ip
                .as_deref()?
                .parse::<Ipv4Addr>()
                .ok()
        }));
        let base = u32::from(self.cfg.pod_ip_base);
        (1..0x7fff_u32)
            .map(|n| Ipv4Addr::from(base + n))
            .find(|ip| !used.contains(ip))
    }

    /// Starts workers for bound pods and stops those of deleted pods.
    pub(super) async fn sync_pods(&mut self, pods: &[Pod]) {
        let services: Vec<Service> = self
            .caches
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect();
        let mine: Vec<&Pod> = pods
            .iter()
            .filter(|p| {
                p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(self.cfg.name.as_str())
            })
            .collect();
        let present: HashMap<(String, String), String> = mine
            .iter()
            .filter_map(|p| {
                Some((
                    (p.metadata.namespace.clone()?, p.metadata.name.clone()?),
                    p.metadata.uid.clone()?,
                ))
            })
            .collect();
        {
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            for (key, handle) in workers.iter_mut() {
                let gone = present.get(key) != Some(&handle.uid);
                if gone && !handle.terminating {
                    handle.terminating = true;
                    let _ = handle.commands.send(PodCommand::Terminate {
                        grace: handle.grace,
                        remove_pod: false,
                    });
                }
            }
        }
        for pod in mine {
            let (Some(name), Some(namespace), Some(uid)) = (
                pod.metadata.name.clone(),
                pod.metadata.namespace.clone(),
                pod.metadata.uid.clone(),
            ) else {
                continue;
            };
            let key = (namespace.clone(), name.clone());
            let grace = Duration::from_secs(
                pod.metadata
                    .deletion_grace_period_seconds
                    .or_else(|| pod.spec.as_ref()?.termination_grace_period_seconds)
                    .unwrap_or(30)
                    .max(0) as u64,
            );
            let has_worker = {
                let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
                match workers.get_mut(&key) {
                    Some(handle) => {
                        if pod.metadata.deletion_timestamp.is_some()
                            && !handle.terminating
                            && handle.uid == uid
                        {
                            handle.terminating = true;
                            let _ = handle.commands.send(PodCommand::Terminate {
                                grace,
                                remove_pod: true,
                            });
                        }
                        true
                    }
                    None => false,
                }
            };
            if has_worker {
                continue;
            }
            if pod.metadata.deletion_timestamp.is_some() {
                // Nothing runs for it any more: finish the deletion.
                if self.force_deleted.insert(uid) {
                    let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                    let params = DeleteParams {
                        grace_period_seconds: Some(0),
                        ..Default::default()
                    };
                    if let Err(err) = api.delete(&name, &params).await {
                        tracing::debug!(%err, pod = %name, "pod already removed");
                    }
                }
                continue;
            }
            if self.finished.contains(&uid) || is_terminal(pod) {
                continue;
            }
            let Some(ip) = self.free_ip(pods) else {
                tracing::warn!(pod = %name, "no free pod address left in the node's range");
                continue;
            };
            let wanted_gpus = pod
                .spec
                .as_ref()
                .and_then(|s| pod_requests(s).ok())
                .map_or(0, |r| r.gpus);
            let Some(gpus) = self.free_gpus(wanted_gpus) else {
                // The scheduler counted them free; a terminating pod still holds them.
                continue;
            };
            let mut extra_env = service_env(&services, &namespace);
            if self.cfg.gpus > 0 {
                // Like the NVIDIA device plugin: a pod sees only the devices it was given.
                let devices: Vec<String> = gpus.iter().map(u64::to_string).collect();
                extra_env.push(("CUDA_VISIBLE_DEVICES".into(), devices.join(",")));
                let nvidia = if devices.is_empty() {
                    "void".to_string()
                } else {
                    devices.join(",")
                };
                extra_env.push(("NVIDIA_VISIBLE_DEVICES".into(), nvidia));
            }
            if let Some(var) = &self.cfg.hosts_file_env {
                let hosts = self.cfg.state_dir.join("hosts");
                extra_env.push((var.clone(), hosts.to_string_lossy().into_owned()));
            }
            if let Some(kubeconfig) = &self.cfg.kubeconfig {
                extra_env.push((
                    "KUBECONFIG".into(),
                    kubeconfig.to_string_lossy().into_owned(),
                ));
            }
            let (tx, rx) = mpsc::unbounded_channel();
            let start = PodStart {
                pod: pod.clone(),
                ip,
                extra_env,
            };
            let task = tokio::spawn(run_pod(self.worker_ctx.clone(), start, rx));
            let mut workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
            workers.insert(
                key,
                WorkerHandle {
                    uid,
                    commands: tx,
                    task,
                    terminating: false,
                    grace,
                    ip,
                    gpus,
                },
            );
        }
    }

    /// Device indices for a pod asking for `count` GPUs, if that many are not held by other pods.
    pub(super) fn free_gpus(&self, count: u64) -> Option<Vec<u64>> {
        let workers = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        let held: HashSet<u64> = workers
            .values()
            .flat_map(|w| w.gpus.iter().copied())
            .collect();
        let free: Vec<u64> = (0..self.cfg.gpus)
            .filter(|i| !held.contains(i))
            .take(count as usize)
            .collect();
        (free.len() as u64 == count).then_some(free)
    }
}
