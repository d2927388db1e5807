//! The Job controller (batch/v1), as a pure plan: given a Job, its pods and
//! the time, which pods to create or delete and what the status becomes.

use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};
use k8s_openapi::jiff::Timestamp;

use super::events::EventNote;
use super::pods::{Expect, is_ready, is_terminal, name_suffix, phase};

/// Label with the Job's name on its pods.
pub const JOB_NAME_LABEL: &str = "job-name";
/// Label with the Job's uid on its pods.
pub const CONTROLLER_UID_LABEL: &str = "controller-uid";

/// What the Job controller should do for one Job.
#[derive(Debug, Default)]
pub struct JobPlan {
    /// Pods to create.
    pub create: Vec<Pod>,
    /// Names of pods to delete.
    pub delete: Vec<String>,
    /// The status the Job should have.
    pub status: JobStatus,
    /// Events to record on the Job.
    pub events: Vec<EventNote>,
    /// When to look again even if nothing changes (backoff, deadline).
    pub requeue_after: Option<Duration>,
}

/// Whether a Job has finished (a Complete or Failed condition is True).
pub fn is_finished(job: &Job) -> bool {
    job.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

/// Plans one reconcile of `job`, owning `pods`, at `now`; failed pods are
/// retried after `backoff_base`·2^(failures−1) (Kubernetes uses 10 s, capped at 6 min).
pub fn plan_job(job: &Job, pods: &[Pod], now: Timestamp, backoff_base: Duration) -> JobPlan {
    let spec = job.spec.clone().unwrap_or_default();
    let old = job.status.clone().unwrap_or_default();
    let mut plan = JobPlan::default();
    let live: Vec<&Pod> = pods.iter().filter(|p| !is_terminal(p)).collect();
    let active: Vec<&Pod> = live
        .iter()
        .copied()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect();
    let succeeded = pods.iter().filter(|p| phase(p) == "Succeeded").count() as i32;
    let on_failure = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        == Some("OnFailure");
    let restarts: i32 = if on_failure {
        active
            .iter()
            .flat_map(|p| {
                p.status
                    .iter()
                    .flat_map(|s| s.container_statuses.iter().flatten())
            })
            .map(|c| c.restart_count)
            .sum()
    } else {
        0
    };
    let failed = pods.iter().filter(|p| phase(p) == "Failed").count() as i32 + restarts;

    let mut status = JobStatus {
        start_time: old.start_time.clone().or(Some(Time(now))),
        completion_time: old.completion_time.clone(),
        conditions: old.conditions.clone(),
        succeeded: Some(succeeded),
        failed: Some(failed),
        ready: Some(active.iter().filter(|p| is_ready(p)).count() as i32),
        terminating: Some((live.len() - active.len()) as i32),
        active: Some(active.len() as i32),
        ..Default::default()
    };

    if is_finished(job) {
        if has_condition(&old, "Failed") {
            plan.delete = active
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            status.active = Some(0);
        }
        plan.status = status;
        return plan;
    }

    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    let started = status.start_time.as_ref().map(|t| t.0).unwrap_or(now);
    let elapsed_ms = (now.as_millisecond() - started.as_millisecond()).max(0);
    let deadline_ms = spec.active_deadline_seconds.map(|s| s.saturating_mul(1000));
    let failure = if failed > backoff_limit {
        Some((
            "BackoffLimitExceeded",
            "Job has reached the specified backoff limit",
        ))
    } else if deadline_ms.is_some_and(|d| elapsed_ms >= d) {
        Some((
            "DeadlineExceeded",
            "Job was active longer than specified deadline",
        ))
    } else {
        None
    };
    if let Some((reason, message)) = failure {
        plan.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        status.active = Some(0);
        set_condition(&mut status, "FailureTarget", reason, message, now);
        set_condition(&mut status, "Failed", reason, message, now);
        plan.events.push(EventNote::warning(reason, message));
        plan.status = status;
        return plan;
    }

    let complete = match spec.completions {
        Some(n) => succeeded >= n,
        None => succeeded >= 1 && active.is_empty(),
    };
    if complete {
        let message = "Reached expected number of succeeded pods";
        set_condition(
            &mut status,
            "SuccessCriteriaMet",
            "CompletionsReached",
            message,
            now,
        );
        set_condition(&mut status, "Complete", "CompletionsReached", message, now);
        status.completion_time = Some(Time(now));
        plan.events
            .push(EventNote::normal("Completed", "Job completed"));
        plan.status = status;
        return plan;
    }

    if spec.suspend == Some(true) {
        plan.delete = active
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        plan.status = status;
        return plan;
    }

    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let wanted = match spec.completions {
        Some(n) => parallelism.min(n - succeeded),
        None if succeeded > 0 => 0,
        None => parallelism,
    };
    let missing = (wanted - active.len() as i32).max(0);
    if missing > 0 {
        if let Some(wait) = failure_backoff(pods, failed, now, backoff_base) {
            plan.requeue_after = Some(wait);
        } else {
            let names: Vec<String> = pods
                .iter()
                .filter_map(|p| p.metadata.name.clone())
                .collect();
            let job_name = job.metadata.name.clone().unwrap_or_default();
            let uid = job.metadata.uid.clone().unwrap_or_default();
            let mut index = pods.len();
            for _ in 0..missing {
                let name = loop {
                    let candidate =
                        format!("{job_name}-{}", name_suffix(&format!("{uid}/{index}")));
                    index += 1;
                    if !names.contains(&candidate) {
                        break candidate;
                    }
                };
                plan.events.push(EventNote::normal(
                    "SuccessfulCreate",
                    &format!("Created pod: {name}"),
                ));
                plan.create.push(job_pod(job, name));
            }
        }
    }
    if let Some(d) = deadline_ms {
        let left = Duration::from_millis((d - elapsed_ms).max(0) as u64);
        plan.requeue_after = Some(plan.requeue_after.map_or(left, |r| r.min(left)));
    }
    plan.status = status;
    plan
}

/// How long to wait before replacing a failed pod, if still backing off.
fn failure_backoff(pods: &[Pod], failed: i32, now: Timestamp, base: Duration) -> Option<Duration> {
    if failed <= 0 {
        return None;
    }
    let last_failure = pods
        .iter()
        .filter(|p| phase(p) == "Failed")
        .filter_map(|p| {
            p.status
                .as_ref()?
                .container_statuses
                .iter()
                .flatten()
                .filter_map(|c| c.state.as_ref()?.terminated.as_ref()?.finished_at.as_ref())
                .map(|t| t.0)
                .max()
        })
        .max()?;
    let factor = 1u32 << (failed - 1).clamp(0, 16);
    let delay = base.saturating_mul(factor).min(Duration::from_secs(360));
    let since =
        Duration::from_millis((now.as_millisecond() - last_failure.as_millisecond()).max(0) as u64);
    (since < delay).then(|| delay - since)
}

fn has_condition(status: &JobStatus, type_: &str) -> bool {
    status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == type_ && c.status == "True")
}

fn set_condition(status: &mut JobStatus, type_: &str, reason: &str, message: &str, now: Timestamp) {
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    if conditions
        .iter()
        .any(|c| c.type_ == type_ && c.status == "True")
    {
        return;
    }
    conditions.retain(|c| c.type_ != type_);
    conditions.push(JobCondition {
        type_: type_.into(),
        status: "True".into(),
        reason: Some(reason.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    });
}

/// A pod for `job` built from its template, with the labels and owner reference Kubernetes sets.
fn job_pod(job: &Job, name: String) -> Pod {
    let template = job
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    let job_name = job.metadata.name.clone().unwrap_or_default();
    let uid = job.metadata.uid.clone().unwrap_or_default();
    let meta = template.metadata.unwrap_or_default();
    let mut labels = meta.labels.unwrap_or_default();
    for (k, v) in [
        (JOB_NAME_LABEL, &job_name),
        ("batch.kubernetes.io/job-name", &job_name),
        (CONTROLLER_UID_LABEL, &uid),
        ("batch.kubernetes.io/controller-uid", &uid),
    ] {
        labels.insert(k.to_string(), v.clone());
    }
    Pod {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: meta.annotations,
            owner_references: Some(vec![OwnerReference {
                api_version: "batch/v1".into(),
                kind: "Job".into(),
                name: job_name,
                uid,
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]),
            ..Default::default()
        },
        spec: template.spec,
        status: None,
    }
}

/// What the controller expects to see after acting on a Job.
pub fn expectation(plan: &JobPlan) -> Expect {
    Expect::new(
        plan.create
            .iter()
            .filter_map(|p| p.metadata.name.clone())
            .collect(),
        plan.delete.clone(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::JobSpec;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStatus, PodSpec, PodStatus,
        PodTemplateSpec,
    };

    fn job(backoff_limit: i32, deadline: Option<i64>) -> Job {
        Job {
            metadata: ObjectMeta {
                name: Some("train".into()),
                namespace: Some("ml".into()),
                uid: Some("uid-1".into()),
                ..Default::default()
            },
            spec: Some(JobSpec {
                backoff_limit: Some(backoff_limit),
                active_deadline_seconds: deadline,
                template: PodTemplateSpec {
                    spec: Some(PodSpec {
                        restart_policy: Some("Never".into()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                ..Default::default()
            }),
            status: None,
        }
    }

    fn ts(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    fn finished(pod: &Pod, phase: &str, exit: i32, at: Timestamp) -> Pod {
        let mut pod = pod.clone();
        pod.status = Some(PodStatus {
            phase: Some(phase.into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                state: Some(ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: exit,
                        finished_at: Some(Time(at)),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        });
        pod
    }

    fn with_status(mut job: Job, plan: &JobPlan) -> Job {
        job.status = Some(plan.status.clone());
        job
    }

    #[test]
    fn a_job_creates_one_labelled_owned_pod_then_completes() {
        let j = job(6, None);
        let plan = plan_job(&j, &[], ts(0), Duration::from_secs(10));
        assert_eq!(plan.create.len(), 1);
        let pod = &plan.create[0];
        let labels = pod.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[JOB_NAME_LABEL], "train");
        assert_eq!(labels[CONTROLLER_UID_LABEL], "uid-1");
        assert_eq!(
            pod.metadata.owner_references.as_ref().unwrap()[0].kind,
            "Job"
        );
        assert!(pod.metadata.name.as_ref().unwrap().starts_with("train-"));
        // Same inputs, same name: a repeated reconcile cannot duplicate the pod.
        let again = plan_job(&j, &[], ts(1), Duration::from_secs(10));
        assert_eq!(again.create[0].metadata.name, pod.metadata.name);

        let j = with_status(j, &plan);
        let done = finished(pod, "Succeeded", 0, ts(5));
        let plan = plan_job(&j, &[done], ts(6), Duration::from_secs(10));
        assert!(plan.create.is_empty());
        let types: Vec<_> = plan
            .status
            .conditions
            .iter()
            .flatten()
            .map(|c| c.type_.as_str())
            .collect();
        assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
        assert_eq!(plan.status.succeeded, Some(1));
        assert_eq!(plan.status.completion_time, Some(Time(ts(6))));
        assert_eq!(plan.status.start_time, Some(Time(ts(0))));
    }

    #[test]
    fn failures_back_off_then_exceed_the_backoff_limit() {
        let j = job(1, None);
        let first = plan_job(&j, &[], ts(0), Duration::from_secs(10));
        let j = with_status(j, &first);
        let failed1 = finished(&first.create[0], "Failed", 3, ts(2));
        // 10 s backoff after the first failure.
        let plan = plan_job(
            &j,
            std::slice::from_ref(&failed1),
            ts(5),
            Duration::from_secs(10),
        );
        assert!(plan.create.is_empty());
        assert_eq!(plan.requeue_after, Some(Duration::from_secs(7)));
        assert_eq!(plan.status.failed, Some(1));
        let plan = plan_job(
            &j,
            std::slice::from_ref(&failed1),
            ts(12),
            Duration::from_secs(10),
        );
        assert_eq!(plan.create.len(), 1);
        assert_ne!(plan.create[0].metadata.name, failed1.metadata.name);
        let failed2 = finished(&plan.create[0], "Failed", 3, ts(14));
        let plan = plan_job(&j, &[failed1, failed2], ts(15), Duration::from_secs(10));
        assert!(plan.create.is_empty());
        let failed = plan
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("BackoffLimitExceeded"));
        assert_eq!(
            failed.message.as_deref(),
            Some("Job has reached the specified backoff limit")
        );
        assert_eq!(plan.events[0].reason, "BackoffLimitExceeded");
    }

    #[test]
    fn the_deadline_fails_the_job_and_stops_its_pods() {
        let j = job(6, Some(30));
        let first = plan_job(&j, &[], ts(0), Duration::from_secs(10));
        assert_eq!(first.requeue_after, Some(Duration::from_secs(30)));
        let j = with_status(j, &first);
        let mut running = first.create[0].clone();
        running.status = Some(PodStatus {
            phase: Some("Running".into()),
            ..Default::default()
        });
        let plan = plan_job(
            &j,
            std::slice::from_ref(&running),
            ts(31),
            Duration::from_secs(10),
        );
        assert_eq!(plan.delete, vec![running.metadata.name.clone().unwrap()]);
        let failed = plan
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Failed")
            .unwrap();
        assert_eq!(failed.reason.as_deref(), Some("DeadlineExceeded"));
    }

    #[test]
    fn parallel_completions_run_several_pods_at_once() {
        let mut j = job(6, None);
        if let Some(spec) = j.spec.as_mut() {
            spec.parallelism = Some(2);
            spec.completions = Some(3);
        }
        let plan = plan_job(&j, &[], ts(0), Duration::from_secs(10));
        assert_eq!(plan.create.len(), 2);
        let done = finished(&plan.create[0], "Succeeded", 0, ts(1));
        let done2 = finished(&plan.create[1], "Succeeded", 0, ts(1));
        let plan = plan_job(&j, &[done, done2], ts(2), Duration::from_secs(10));
        assert_eq!(plan.create.len(), 1, "only one completion is left");
    }

    #[test]
    fn on_failure_restarts_count_against_the_backoff_limit() {
        let mut j = job(2, None);
        if let Some(spec) = j.spec.as_mut()
            && let Some(pod_spec) = spec.template.spec.as_mut()
        {
            pod_spec.restart_policy = Some("OnFailure".into());
        }
        let first = plan_job(&j, &[], ts(0), Duration::from_secs(10));
        let j = with_status(j, &first);
        let mut restarting = first.create[0].clone();
        restarting.status = Some(PodStatus {
            phase: Some("Running".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: "main".into(),
                restart_count: 3,
                ..Default::default()
            }]),
            ..Default::default()
        });
        let plan = plan_job(&j, &[restarting], ts(5), Duration::from_secs(10));
        assert_eq!(plan.status.failed, Some(3));
        assert_eq!(plan.delete.len(), 1, "the restarting pod is stopped");
        let failed = plan
            .status
            .conditions
            .iter()
            .flatten()
            .find(|c| c.type_ == "Failed");
        assert_eq!(
            failed.and_then(|c| c.reason.as_deref()),
            Some("BackoffLimitExceeded")
        );
    }
}
