//! Container processes: started in their own process group with output
//! appended to the container's log, restarted per restartPolicy with
//! CrashLoopBackOff, and stopped with SIGTERM then SIGKILL.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateRunning, ContainerStateTerminated, Pod, Probe,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::DeleteParams;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::super::container::{PodEnvironment, ProcessSpec, build_process};
use super::super::events::EventNote;
use super::{PodWorker, waiting};
use crate::cluster::layout::pod_log_path;

/// Sends `signal` to a container's process group; a group that is gone is fine.
pub(super) fn signal_group(pid: u32, signal: Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = killpg(Pid::from_raw(raw), signal);
    }
}

impl PodWorker {
    pub(super) async fn start_container(&mut self, index: usize, env: &PodEnvironment) {
        let name = self.name();
        let namespace = self.namespace();
        let container_name = self.containers[index].spec.name.clone();
        let log = pod_log_path(&self.ctx.state_dir, &namespace, &name, &container_name);
        let first_start = !self.containers[index].started_once;
        let spec = match build_process(&self.pod, &self.containers[index].spec, env) {
            Ok(spec) => spec,
            Err(err) => {
                let message = err.to_string();
                let c = &mut self.containers[index];
                if c.state.waiting.as_ref().and_then(|w| w.message.as_ref()) != Some(&message) {
                    c.state = waiting("CreateContainerConfigError", Some(message.clone()));
                    self.event(EventNote::warning("Failed", &format!("Error: {message}")))
                        .await;
                }
                // Not retried: the pod spec is immutable.
                self.containers[index].restart_at =
                    Some(Instant::now() + Duration::from_secs(3600));
                return;
            }
        };
        if self.ctx.simulate_processes {
            self.simulate_start(index).await;
            return;
        }
        let now = Timestamp::now();
        match spawn(&spec, &log, first_start) {
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                let exits = self.exits.clone();
                tokio::spawn(async move {
                    let result = child.wait().await;
                    let _ = exits.send((index, pid, result));
                });
                let c = &mut self.containers[index];
                if c.started_once {
                    c.restart_count += 1;
                }
                c.started_once = true;
                c.pid = Some(pid);
                c.restart_at = None;
                c.state = ContainerState {
                    running: Some(ContainerStateRunning {
                        started_at: Some(Time(now)),
                    }),
                    ..Default::default()
                };
                c.ready = c.spec.readiness_probe.is_none();
                c.probe_successes = 0;
                c.readiness_failures = 0;
                c.liveness_failures = 0;
                let delay = |p: &Option<Probe>| {
                    p.as_ref().map(|p| {
                        Instant::now()
                            + Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64)
                    })
                };
                c.readiness_next = delay(&c.spec.readiness_probe);
                c.liveness_next = delay(&c.spec.liveness_probe);
                if first_start {
                    self.event(EventNote::normal(
                        "Created",
                        &format!("Created container: {container_name}"),
                    ))
                    .await;
                }
                self.event(EventNote::normal(
                    "Started",
                    &format!("Started container {container_name}"),
                ))
                .await;
            }
            Err(err) => {
                let message = format!("failed to start `{}`: {err}", spec.program.display());
                self.event(EventNote::warning("Failed", &format!("Error: {message}")))
                    .await;
                let c = &mut self.containers[index];
                if c.started_once {
                    c.restart_count += 1;
                }
                c.started_once = true;
                c.state = ContainerState {
                    terminated: Some(ContainerStateTerminated {
                        exit_code: 128,
                        reason: Some("StartError".into()),
                        message: Some(message),
                        started_at: Some(Time(now)),
                        finished_at: Some(Time(now)),
                        ..Default::default()
                    }),
                    ..Default::default()
                };
                self.after_termination(index, 128).await;
            }
        }
    }

    /// `simulate_processes`: a container that runs to completion succeeds
    /// at once; any other runs, ready, with no process behind it.
    pub(super) async fn simulate_start(&mut self, index: usize) {
        let now = Some(Time(Timestamp::now()));
        let to_completion = self.containers[index].init || self.restart_policy != "Always";
        let c = &mut self.containers[index];
        c.started_once = true;
        c.restart_at = None;
        if to_completion {
            c.state = ContainerState {
                terminated: Some(ContainerStateTerminated {
                    exit_code: 0,
                    reason: Some("Completed".into()),
                    started_at: now.clone(),
                    finished_at: now,
                    ..Default::default()
                }),
                ..Default::default()
            };
            self.after_termination(index, 0).await;
        } else {
            c.simulated = true;
            c.ready = true;
            c.readiness_next = None;
            c.liveness_next = None;
            c.state = ContainerState {
                running: Some(ContainerStateRunning { started_at: now }),
                ..Default::default()
            };
        }
    }

    pub(super) async fn on_exit(
        &mut self,
        index: usize,
        pid: u32,
        result: std::io::Result<ExitStatus>,
    ) {
        let Some(c) = self.containers.get_mut(index) else {
            return;
        };
        if c.pid != Some(pid) {
            return;
        }
        c.pid = None;
        c.ready = false;
        // Reap anything the container left behind in its process group.
        signal_group(pid, Signal::SIGKILL);
        let (code, signal) = match result {
            Ok(status) => exit_code(status),
            Err(_) => (128, None),
        };
        let started_at = c.state.running.as_ref().and_then(|r| r.started_at.clone());
        c.state = ContainerState {
            terminated: Some(ContainerStateTerminated {
                exit_code: code,
                signal,
                reason: Some(if code == 0 { "Completed" } else { "Error" }.into()),
                started_at,
                finished_at: Some(Time(Timestamp::now())),
                ..Default::default()
            }),
            ..Default::default()
        };
        self.after_termination(index, code).await;
    }

    /// Decides whether a terminated container runs again, and when.
    pub(super) async fn after_termination(&mut self, index: usize, code: i32) {
        let restart = match self.restart_policy.as_str() {
            "Never" => false,
            "OnFailure" => code != 0,
            _ => !self.containers[index].init || code != 0,
        };
        let name = self.name();
        let namespace = self.namespace();
        let uid = self.pod.metadata.uid.clone().unwrap_or_default();
        let base = self.ctx.restart_backoff;
        let c = &mut self.containers[index];
        if !restart {
            c.done = true;
            return;
        }
        let delay = base
            .saturating_mul(1u32 << c.restart_count.clamp(0, 10))
            .min(Duration::from_secs(300));
        c.restart_at = Some(Instant::now() + delay);
        c.last_state = Some(c.state.clone());
        let container = c.spec.name.clone();
        c.state = waiting(
            "CrashLoopBackOff",
            Some(format!(
                "back-off {}s restarting failed container={container} pod={name}_{namespace}({uid})",
                delay.as_secs()
            )),
        );
        self.event(EventNote::warning(
            "BackOff",
            &format!(
                "Back-off restarting failed container {container} in pod {name}_{namespace}({uid})"
            ),
        ))
        .await;
    }

    pub(super) fn kill_all(&self, signal: Signal) {
        for c in &self.containers {
            if let Some(pid) = c.pid {
                signal_group(pid, signal);
            }
        }
    }

    /// SIGTERM, then SIGKILL after `grace`; finally removes a pod marked for deletion.
    pub(super) async fn terminate(
        &mut self,
        grace: Duration,
        remove_pod: bool,
        exits: &mut mpsc::UnboundedReceiver<(usize, u32, std::io::Result<ExitStatus>)>,
    ) {
        for c in &mut self.containers {
            c.restart_at = None;
            c.done = true;
        }
        for c in self.containers.iter().filter(|c| c.running()) {
            self.event(EventNote::normal(
                "Killing",
                &format!("Stopping container {}", c.spec.name),
            ))
            .await;
        }
        // Simulated containers have no process to wait for.
        for c in &mut self.containers {
            if c.simulated {
                c.simulated = false;
                c.ready = false;
            }
        }
        self.kill_all(Signal::SIGTERM);
        let deadline = Instant::now() + grace;
        let mut killed = false;
        while self.containers.iter().any(|c| c.running()) {
            let wait_until = if killed {
                Instant::now() + Duration::from_secs(5)
            } else {
                deadline
            };
            match tokio::time::timeout_at(wait_until, exits.recv()).await {
                Ok(Some((index, pid, result))) => self.on_exit(index, pid, result).await,
                Ok(None) => break,
                Err(_) if !killed => {
                    self.kill_all(Signal::SIGKILL);
                    killed = true;
                }
                Err(_) => break,
            }
        }
        for c in &mut self.containers {
            c.done = true;
            c.restart_at = None;
        }
        self.write_status().await;
        if remove_pod {
            let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), &self.namespace());
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            if let Err(err) = api.delete(&self.name(), &params).await {
                tracing::debug!(%err, pod = %self.name(), "pod already removed");
            }
        }
    }
}

/// Exit code and signal as Kubernetes reports them (128 + signal when killed).
fn exit_code(status: ExitStatus) -> (i32, Option<i32>) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (code, None),
        (None, Some(signal)) => (128 + signal, Some(signal)),
        (None, None) => (128, None),
    }
}

/// Spawns a container process in its own process group, output appended to `log`.
fn spawn(spec: &ProcessSpec, log: &Path, truncate: bool) -> std::io::Result<tokio::process::Child> {
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(!truncate)
        .write(true)
        .truncate(truncate)
        .open(log)?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .current_dir(&spec.working_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::from(file.try_clone()?))
        .stderr(Stdio::from(file))
        .process_group(0)
        .kill_on_drop(true);
    command.spawn()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn killed_processes_report_128_plus_signal() {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(exit_code(ExitStatus::from_raw(9)), (137, Some(9)));
        assert_eq!(exit_code(ExitStatus::from_raw(3 << 8)), (3, None));
    }
}
