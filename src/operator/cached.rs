//! Pods and Jobs as the operator's caches hold them: only the fields it
//! reads are decoded from the watch, and the rest is never allocated. A
//! `k8s_openapi` `Pod` is 2 KiB before any of its contents (it embeds a
//! whole `PodSpec` even when it is `None`), and at 1,000 Models the cache
//! holds 5,000 pods. Both types name the API kind they stand for
//! (`#[resource(inherit)]`), so `Api`, watches and deletes address the real
//! objects.

use k8s_openapi::api::batch::v1::{Job, JobStatus};
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};

/// A pod as the operator reads it: its metadata (labels, deletion), its IP
/// and its conditions (`Ready` for scraping, `PodScheduled` for why a
/// training pod waits).
#[derive(kube::Resource, Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[resource(inherit = "Pod")]
pub struct CachedPod {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<CachedPodStatus>,
}

/// The part of a pod's status the operator reads.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CachedPodStatus {
    #[serde(rename = "podIP", default, skip_serializing_if = "Option::is_none")]
    pub pod_ip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<PodCondition>>,
}

/// A Job as the operator reads it: its metadata and its status (whether
/// it succeeded or failed, and why); never its spec (a training Job's pod
/// template carries the whole Model).
#[derive(kube::Resource, Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[resource(inherit = "Job")]
pub struct CachedJob {
    pub metadata: ObjectMeta,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<JobStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::Resource;

    #[test]
    fn the_cached_kinds_address_the_kinds_they_stand_for() {
        assert_eq!(CachedPod::kind(&()), Pod::kind(&()));
        assert_eq!(CachedPod::api_version(&()), Pod::api_version(&()));
        assert_eq!(CachedPod::plural(&()), Pod::plural(&()));
        assert_eq!(CachedJob::kind(&()), Job::kind(&()));
        assert_eq!(CachedJob::group(&()), Job::group(&()));
        assert_eq!(CachedJob::plural(&()), Job::plural(&()));
        assert!(size_of::<CachedPod>() * 3 < size_of::<Pod>());
        assert!(size_of::<CachedJob>() * 2 < size_of::<Job>());
    }

    #[test]
    fn a_watched_pod_keeps_its_address_and_conditions() {
        let pod: CachedPod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "wine-v3-abc"},
            "spec": {"containers": [{"name": "serve"}]},
            "status": {"podIP": "10.0.0.7", "hostIP": "10.0.0.1",
                "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .expect("a pod");
        let status = pod.status.as_ref().expect("status");
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.7"));
        assert_eq!(
            status.conditions.as_ref().expect("conditions")[0].type_,
            "Ready"
        );
        // And it writes back under the API's own names.
        assert_eq!(
            serde_json::to_value(&pod).expect("serializes")["status"]["podIP"],
            "10.0.0.7"
        );
    }

    #[test]
    fn a_watched_job_keeps_its_status() {
        let job: CachedJob = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "wine-train-1", "namespace": "ml"},
            "spec": {"template": {"spec": {"containers": [{"name": "train"}]}}},
            "status": {"failed": 2, "conditions": [{"type": "Failed", "status": "True",
                "reason": "BackoffLimitExceeded"}]},
        }))
        .expect("a job");
        let status = job.status.expect("status");
        assert_eq!(status.failed, Some(2));
        assert_eq!(status.conditions.expect("conditions")[0].type_, "Failed");
    }
}
