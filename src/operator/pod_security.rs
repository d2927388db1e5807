//! Pod Security `restricted` for every pod the operator creates (training
//! Jobs with their init containers, model servers, gateways): they start in
//! a namespace labelled `pod-security.kubernetes.io/enforce=restricted`.
//!
//! - The pod runs as the image's non-root user (`USER 65532:65532` in
//!   `docker/Dockerfile`), numerically, so the kubelet can check it.
//! - Every container: no privilege escalation, all capabilities dropped,
//!   the RuntimeDefault seccomp profile (pod-wide), a read-only root filesystem.
//! - Scratch space: an emptyDir at [`SCRATCH_DIR`], which `HOME` and
//!   `TMPDIR` name. driftline itself writes only to the artifact root (or its
//!   object store); libraries write below `HOME` (the CUDA driver's kernel
//!   cache in `$HOME/.nv`) or `TMPDIR`. On the embedded runner, whose pods
//!   are local processes without a mount namespace, the runner rewrites
//!   these values to the volume's directory.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, PodSecurityContext, PodSpec,
    SeccompProfile, SecurityContext, Volume, VolumeMount,
};

/// The user and group pods run as: `docker/Dockerfile`'s `USER 65532:65532`.
pub const RUN_AS_USER: i64 = 65532;
/// The pods' scratch emptyDir volume.
pub const SCRATCH_VOLUME: &str = "scratch";
/// Where the scratch volume is mounted; `HOME` and `TMPDIR` point here (a
/// path of driftline's own, so that no artifact path falls under it).
pub const SCRATCH_DIR: &str = "/var/lib/driftline/scratch";

/// The pod-wide part: non-root as [`RUN_AS_USER`], RuntimeDefault seccomp.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(RUN_AS_USER),
        run_as_group: Some(RUN_AS_USER),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The per-container part: no privilege escalation, no capabilities, a
/// read-only root filesystem.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        read_only_root_filesystem: Some(true),
        ..Default::default()
    }
}

fn scratch(container: &mut Container) {
    container.security_context = Some(restricted_container());
    container
        .volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: SCRATCH_VOLUME.into(),
            mount_path: SCRATCH_DIR.into(),
            ..Default::default()
        });
    let env = container.env.get_or_insert_with(Vec::new);
    for name in ["HOME", "TMPDIR"] {
        env.retain(|e| e.name != name);
        env.push(EnvVar {
            name: name.into(),
            value: Some(SCRATCH_DIR.into()),
            ..Default::default()
        });
    }
}

/// `pod` made `restricted`: the pod and every container (init containers
/// too) get their security contexts, the scratch volume, and `HOME` and
/// `TMPDIR` on it.
pub fn restricted(mut pod: PodSpec) -> PodSpec {
    pod.security_context = Some(restricted_pod());
    for c in pod
        .init_containers
        .iter_mut()
        .flatten()
        .chain(pod.containers.iter_mut())
    {
        scratch(c);
    }
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: SCRATCH_VOLUME.into(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Default::default()
    });
    pod
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Model, load_model_config};
    use crate::operator::children::{self, ChildSettings};

    /// What the PodSecurity admission plugin's `restricted` level (v1.33)
    /// refuses in a pod, in its words; empty when the pod is admitted.
    fn restricted_violations(pod: &PodSpec) -> Vec<String> {
        let mut out = Vec::new();
        let psc = pod.security_context.clone().unwrap_or_default();
        let containers: Vec<&Container> = pod
            .init_containers
            .iter()
            .flatten()
            .chain(pod.containers.iter())
            .collect();
        for c in &containers {
            let sc = c.security_context.clone().unwrap_or_default();
            if sc.allow_privilege_escalation != Some(false) {
                out.push(format!("allowPrivilegeEscalation != false ({})", c.name));
            }
            let caps = sc.capabilities.clone().unwrap_or_default();
            if !caps.drop.iter().flatten().any(|d| d == "ALL") {
                out.push(format!("unrestricted capabilities ({})", c.name));
            }
            if caps.add.iter().flatten().any(|a| a != "NET_BIND_SERVICE") {
                out.push(format!("added capabilities ({})", c.name));
            }
            if sc.run_as_non_root.or(psc.run_as_non_root) != Some(true) {
                out.push(format!("runAsNonRoot != true ({})", c.name));
            }
            if sc.run_as_user.or(psc.run_as_user) == Some(0) {
                out.push(format!("runAsUser=0 ({})", c.name));
            }
            let seccomp = sc
                .seccomp_profile
                .as_ref()
                .or(psc.seccomp_profile.as_ref())
                .map(|p| p.type_.as_str());
            if !matches!(seccomp, Some("RuntimeDefault" | "Localhost")) {
                out.push(format!("seccompProfile ({})", c.name));
            }
            if sc.privileged == Some(true) {
                out.push(format!("privileged ({})", c.name));
            }
            if c.ports
                .iter()
                .flatten()
                .any(|p| p.host_port.is_some_and(|h| h != 0))
            {
                out.push(format!("hostPort ({})", c.name));
            }
        }
        for v in pod.volumes.iter().flatten() {
            let allowed = v.config_map.is_some()
                || v.csi.is_some()
                || v.downward_api.is_some()
                || v.empty_dir.is_some()
                || v.ephemeral.is_some()
                || v.persistent_volume_claim.is_some()
                || v.projected.is_some()
                || v.secret.is_some();
            if !allowed {
                out.push(format!("restricted volume type ({})", v.name));
            }
        }
        if pod.host_network == Some(true)
            || pod.host_pid == Some(true)
            || pod.host_ipc == Some(true)
        {
            out.push("host namespaces".into());
        }
        out
    }

    /// Beyond `restricted`: a read-only root, with scratch space for
    /// `HOME` and `TMPDIR` on the emptyDir.
    fn read_only_with_scratch(pod: &PodSpec) -> Vec<String> {
        let mut out = Vec::new();
        let scratch = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == SCRATCH_VOLUME);
        if scratch.and_then(|v| v.empty_dir.as_ref()).is_none() {
            out.push("no scratch emptyDir".to_string());
        }
        for c in pod
            .init_containers
            .iter()
            .flatten()
            .chain(pod.containers.iter())
        {
            let sc = c.security_context.clone().unwrap_or_default();
            if sc.read_only_root_filesystem != Some(true) {
                out.push(format!("writable root ({})", c.name));
            }
            let mounted = c
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == SCRATCH_VOLUME && m.mount_path == SCRATCH_DIR);
            if !mounted {
                out.push(format!("scratch not mounted ({})", c.name));
            }
            for var in ["HOME", "TMPDIR"] {
                let values: Vec<_> = c
                    .env
                    .iter()
                    .flatten()
                    .filter(|e| e.name == var)
                    .map(|e| e.value.as_deref())
                    .collect();
                if values != [Some(SCRATCH_DIR)] {
                    out.push(format!("{var} is {values:?} ({})", c.name));
                }
            }
        }
        out
    }

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
            credentials_secret: Some("s3-creds".into()),
            gateway_service_account: Some("driftline-gateway".into()),
            ..ChildSettings::default()
        }
    }

    /// Every pod template the operator builds, by what it is.
    fn pod_templates() -> Vec<(&'static str, PodSpec)> {
        let m = model();
        let s = settings();
        let job = |m: &Model| {
            children::training_job(
                m,
                2,
                "2026-06-01T08:00:00Z",
                Some("s3://models/ml/wine-quality/v1"),
                &s,
            )
            .expect("job")
            .spec
            .expect("job spec")
            .template
            .spec
            .expect("pod")
        };
        let mut ungated = m.clone();
        ungated.spec.gate = None;
        let deployment_pod = |d: k8s_openapi::api::apps::v1::Deployment| {
            d.spec.expect("spec").template.spec.expect("pod")
        };
        let (serving, _) =
            children::serving(&m, 2, "s3://models/ml/wine-quality/v2", &s).expect("serving");
        let (gateway, _) = children::gateway(&m, &s).expect("gateway");
        vec![
            (
                "gated training Job (train init container, evaluate)",
                job(&m),
            ),
            ("training Job without a gate", job(&ungated)),
            ("model server", deployment_pod(serving)),
            ("gateway", deployment_pod(gateway)),
        ]
    }

    #[test]
    fn every_pod_the_operator_creates_meets_the_restricted_profile() {
        for (what, pod) in pod_templates() {
            assert_eq!(restricted_violations(&pod), Vec::<String>::new(), "{what}");
            assert_eq!(read_only_with_scratch(&pod), Vec::<String>::new(), "{what}");
            let psc = pod.security_context.as_ref().expect("pod securityContext");
            assert_eq!(
                psc.run_as_user,
                Some(65532),
                "the Dockerfile's user: {what}"
            );
        }
        let gated = &pod_templates()[0].1;
        assert_eq!(
            gated.init_containers.as_ref().map(Vec::len),
            Some(1),
            "the fixture's Job has its train init container"
        );
    }

    #[test]
    fn the_checks_refuse_a_pod_without_the_profile() {
        let bare = PodSpec {
            containers: vec![Container {
                name: "serve".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(
            restricted_violations(&bare),
            [
                "allowPrivilegeEscalation != false (serve)",
                "unrestricted capabilities (serve)",
                "runAsNonRoot != true (serve)",
                "seccompProfile (serve)",
            ]
        );
        assert_eq!(read_only_with_scratch(&bare).len(), 5, "{bare:?}");
        let mut init_left_out = restricted(bare);
        init_left_out.init_containers = Some(vec![Container {
            name: "train".into(),
            ..Default::default()
        }]);
        assert_eq!(
            restricted_violations(&init_left_out),
            [
                "allowPrivilegeEscalation != false (train)",
                "unrestricted capabilities (train)"
            ]
        );
    }

    #[test]
    fn the_scratch_space_replaces_a_home_or_tmpdir_of_the_pod_and_keeps_the_rest() {
        let pod = restricted(PodSpec {
            containers: vec![Container {
                name: "train".into(),
                env: Some(vec![
                    EnvVar {
                        name: "HOME".into(),
                        value: Some("/root".into()),
                        ..Default::default()
                    },
                    EnvVar {
                        name: "DRIFTLINE_MODEL".into(),
                        value: Some("spec".into()),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            }],
            ..Default::default()
        });
        let env: Vec<(String, Option<String>)> = pod.containers[0]
            .env
            .iter()
            .flatten()
            .map(|e| (e.name.clone(), e.value.clone()))
            .collect();
        assert_eq!(
            env,
            [
                ("DRIFTLINE_MODEL".to_string(), Some("spec".to_string())),
                ("HOME".to_string(), Some(SCRATCH_DIR.to_string())),
                ("TMPDIR".to_string(), Some(SCRATCH_DIR.to_string())),
            ]
        );
        assert_eq!(pod.volumes.as_ref().map(Vec::len), Some(1));
    }
}
