//! The pod status a worker writes: phase, conditions, container statuses
//! and QoS class, computed from its containers; the writes themselves.

use std::net::Ipv4Addr;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, HostIP, Pod, PodCondition, PodIP, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::{ContainerRun, PodWorker};

impl PodWorker {
    pub(super) fn phase(&self) -> &'static str {
        pod_phase(&self.containers)
    }

    pub(super) fn set_condition(&mut self, type_: &str, value: bool, reason: Option<&str>) {
        let status = if value { "True" } else { "False" };
        let current = self.conditions.get(type_);
        if current.is_some_and(|c| c.status == status) {
            return;
        }
        self.conditions.insert(
            type_.into(),
            PodCondition {
                type_: type_.into(),
                status: status.into(),
                reason: reason.map(Into::into),
                last_transition_time: Some(Time(Timestamp::now())),
                ..Default::default()
            },
        );
    }

    pub(super) fn status(&mut self) -> PodStatus {
        let phase = self.phase();
        let initialized = self
            .containers
            .iter()
            .filter(|c| c.init)
            .all(|c| c.succeeded());
        let ready =
            phase == "Running" && self.containers.iter().filter(|c| !c.init).all(|c| c.ready);
        let terminal = matches!(phase, "Succeeded" | "Failed");
        let reason = if terminal { Some("PodCompleted") } else { None };
        let not_ready = if terminal {
            reason
        } else {
            Some("ContainersNotReady")
        };
        self.set_condition("PodScheduled", true, None);
        self.set_condition("PodReadyToStartContainers", !terminal, None);
        let init_reason = if initialized {
            reason
        } else {
            Some("ContainersNotInitialized")
        };
        self.set_condition("Initialized", initialized, init_reason);
        self.set_condition(
            "ContainersReady",
            ready,
            if ready { None } else { not_ready },
        );
        self.set_condition("Ready", ready, if ready { None } else { not_ready });
        let order = [
            "PodReadyToStartContainers",
            "Initialized",
            "Ready",
            "ContainersReady",
            "PodScheduled",
        ];
        let conditions = order
            .iter()
            .filter_map(|t| self.conditions.get(*t).cloned())
            .collect();
        let statuses = |init: bool| -> Vec<ContainerStatus> {
            self.containers
                .iter()
                .filter(|c| c.init == init)
                .map(ContainerRun::status)
                .collect()
        };
        let init_statuses = statuses(true);
        PodStatus {
            phase: Some(phase.into()),
            conditions: Some(conditions),
            host_ip: Some(Ipv4Addr::LOCALHOST.to_string()),
            host_ips: Some(vec![HostIP {
                ip: Ipv4Addr::LOCALHOST.to_string(),
            }]),
            pod_ip: Some(self.ip.to_string()),
            pod_ips: Some(vec![PodIP {
                ip: self.ip.to_string(),
            }]),
            start_time: Some(Time(self.start_time)),
            container_statuses: Some(statuses(false)),
            init_container_statuses: (!init_statuses.is_empty()).then_some(init_statuses),
            qos_class: Some(qos_class(&self.pod)),
            ..Default::default()
        }
    }

    /// The last status must land: Jobs count finished pods from it.
    pub(super) async fn write_final_status(&mut self) {
        for attempt in 0..20u32 {
            if self.write_status().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100) * (attempt + 1)).await;
        }
        tracing::warn!(pod = %self.name(), "gave up writing the final pod status");
    }

    /// Writes the pod status when it changed since the last write; false when
    /// the write failed and is worth retrying.
    pub(super) async fn write_status(&mut self) -> bool {
        let status = self.status();
        let Ok(value) = serde_json::to_value(&status) else {
            return true;
        };
        if self.last_written.as_ref() == Some(&value) {
            return true;
        }
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
        let patch = serde_json::json!({"status": value});
        match api
            .patch_status(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => {
                self.last_written = Some(value);
                true
            }
            // The pod is gone: nothing left to report.
            Err(kube::Error::Api(e)) if e.code == 404 => true,
            Err(err) => {
                tracing::debug!(%err, pod = %self.name(), "pod status write failed; retrying on the next change");
                false
            }
        }
    }
}

/// The pod's phase from its containers: Failed once an init container
/// failed for good; Succeeded or Failed once every main container is done;
/// Running once one has started; Pending before.
fn pod_phase(containers: &[ContainerRun]) -> &'static str {
    let init_failed = containers
        .iter()
        .any(|c| c.init && c.done && !c.succeeded());
    let main: Vec<&ContainerRun> = containers.iter().filter(|c| !c.init).collect();
    if init_failed {
        return "Failed";
    }
    if main.iter().all(|c| c.done && !c.running()) && !main.is_empty() {
        return if main.iter().all(|c| c.succeeded()) {
            "Succeeded"
        } else {
            "Failed"
        };
    }
    if main.iter().any(|c| c.started_once) {
        "Running"
    } else {
        "Pending"
    }
}

/// BestEffort, Burstable or Guaranteed, from the containers' requests and limits.
fn qos_class(pod: &Pod) -> String {
    let containers = pod
        .spec
        .as_ref()
        .map(|s| s.containers.clone())
        .unwrap_or_default();
    let resources: Vec<_> = containers
        .iter()
        .filter_map(|c| c.resources.clone())
        .collect();
    let any = resources.iter().any(|r| {
        r.requests.as_ref().is_some_and(|m| !m.is_empty())
            || r.limits.as_ref().is_some_and(|m| !m.is_empty())
    });
    if !any {
        return "BestEffort".into();
    }
    let guaranteed = containers.len() == resources.len()
        && resources.iter().all(|r| {
            let limits = r.limits.clone().unwrap_or_default();
            ["cpu", "memory"].iter().all(|k| limits.contains_key(*k))
                && r.requests
                    .as_ref()
                    .is_none_or(|req| req.iter().all(|(k, v)| limits.get(k) == Some(v)))
        });
    if guaranteed {
        "Guaranteed"
    } else {
        "Burstable"
    }
    .into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{Container, ContainerState, ContainerStateTerminated};

    fn container(init: bool) -> ContainerRun {
        ContainerRun::new(
            Container {
                name: "c".into(),
                ..Default::default()
            },
            init,
        )
    }

    fn exited(mut c: ContainerRun, code: i32) -> ContainerRun {
        c.started_once = true;
        c.done = true;
        c.state = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                ..Default::default()
            }),
            ..Default::default()
        };
        c
    }

    fn running(mut c: ContainerRun) -> ContainerRun {
        c.started_once = true;
        c.pid = Some(42);
        c
    }

    #[test]
    fn the_phase_follows_the_containers() {
        assert_eq!(pod_phase(&[container(true), container(false)]), "Pending");
        assert_eq!(
            pod_phase(&[exited(container(true), 0), running(container(false))]),
            "Running"
        );
        assert_eq!(
            pod_phase(&[exited(container(false), 0), exited(container(false), 0)]),
            "Succeeded"
        );
        assert_eq!(
            pod_phase(&[exited(container(false), 0), exited(container(false), 2)]),
            "Failed"
        );
        // One main container still runs: not finished, whatever the other did.
        assert_eq!(
            pod_phase(&[exited(container(false), 2), running(container(false))]),
            "Running"
        );
        // An init container that failed for good fails the pod before any main one starts.
        assert_eq!(
            pod_phase(&[exited(container(true), 1), container(false)]),
            "Failed"
        );
    }

    #[test]
    fn the_qos_class_follows_requests_and_limits() {
        let pod = |resources: serde_json::Value| -> Pod {
            serde_json::from_value(serde_json::json!({"spec": {"containers": [
                {"name": "a", "resources": resources},
            ]}}))
            .unwrap()
        };
        assert_eq!(qos_class(&pod(serde_json::json!({}))), "BestEffort");
        let same = serde_json::json!({"cpu": "1", "memory": "1Gi"});
        assert_eq!(
            qos_class(&pod(serde_json::json!({"requests": same, "limits": same}))),
            "Guaranteed"
        );
        assert_eq!(
            qos_class(&pod(serde_json::json!({"limits": same}))),
            "Guaranteed",
            "requests default to the limits"
        );
        assert_eq!(
            qos_class(&pod(serde_json::json!({"requests": {"cpu": "500m"}}))),
            "Burstable"
        );
        assert_eq!(
            qos_class(&pod(serde_json::json!({"limits": {"cpu": "1"}}))),
            "Burstable",
            "Guaranteed needs both cpu and memory limits"
        );
        assert_eq!(
            qos_class(&pod(
                serde_json::json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": same})
            )),
            "Burstable"
        );
    }
}
