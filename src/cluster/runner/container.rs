//! How a container becomes a local process: program, arguments, environment,
//! working directory and volumes mapped to directories under the state dir.
//!
//! A local process cannot see a mount at `mountPath`, so every occurrence of
//! a mount path in the command, arguments and environment values (at a path
//! boundary, also inside `file://` URLs) is rewritten to the directory that
//! backs the volume: `--out=/data/model` becomes `--out=<state>/pods/…/data/model`.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{Container, Pod, Volume};

/// Why a container could not be turned into a process (the pod shows
/// `CreateContainerConfigError` with this message).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContainerConfigError {
    /// Neither `command` nor a known image entrypoint.
    #[error(
        "container `{container}` has no command and image `{image}` has no known entrypoint; set `command` (use `driftline` for the driftline binary)"
    )]
    NoCommand {
        /// Container name.
        container: String,
        /// Image as written.
        image: String,
    },
    /// A volumeMount names a volume the pod does not declare.
    #[error("container `{container}` mounts volume `{volume}`, which is not in the pod's volumes")]
    UnknownVolume {
        /// Container name.
        container: String,
        /// Volume name.
        volume: String,
    },
    /// An env var refers to a ConfigMap or Secret key that does not exist.
    #[error("env var `{var}` of container `{container}`: {what}")]
    MissingReference {
        /// Container name.
        container: String,
        /// Variable name.
        var: String,
        /// What is missing, e.g. "configmap `cfg` has no key `mode`".
        what: String,
    },
    /// An env var uses a fieldRef path the runner does not know.
    #[error("env var `{var}` of container `{container}`: unsupported fieldRef `{path}`")]
    UnsupportedFieldRef {
        /// Container name.
        container: String,
        /// Variable name.
        var: String,
        /// The fieldPath.
        path: String,
    },
}

/// Everything about the pod's surroundings a container process needs.
#[derive(Debug, Clone)]
pub struct PodEnvironment {
    /// The pod's loopback address.
    pub pod_ip: Ipv4Addr,
    /// The node's address.
    pub host_ip: Ipv4Addr,
    /// The node's name.
    pub node_name: String,
    /// The driftline executable (`command[0] == "driftline"`).
    pub driftline_exe: PathBuf,
    /// The pod's own directory (default working directory).
    pub pod_dir: PathBuf,
    /// Volume name → local directory.
    pub volumes: BTreeMap<String, PathBuf>,
    /// Data of ConfigMaps in the pod's namespace that the pod refers to.
    pub config_maps: BTreeMap<String, BTreeMap<String, String>>,
    /// Data (decoded) of Secrets in the pod's namespace that the pod refers to.
    pub secrets: BTreeMap<String, BTreeMap<String, String>>,
    /// Variables every container gets (Service discovery, hosts file, kubeconfig).
    pub extra_env: Vec<(String, String)>,
}

/// A container ready to spawn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// Program to execute (looked up on PATH when relative).
    pub program: PathBuf,
    /// Arguments after the program.
    pub args: Vec<String>,
    /// Environment set on top of the runner's own.
    pub env: Vec<(String, String)>,
    /// Working directory.
    pub working_dir: PathBuf,
}

/// Where each volume of a pod lives on this machine. ConfigMap and Secret
/// volumes are directories that [`write_projected_files`] fills.
pub fn volume_dirs(
    volumes: &[Volume],
    state_dir: &Path,
    namespace: &str,
    pod_dir: &Path,
) -> BTreeMap<String, PathBuf> {
    volumes
        .iter()
        .map(|v| {
            let dir = if let Some(host) = &v.host_path {
                PathBuf::from(&host.path)
            } else if let Some(claim) = &v.persistent_volume_claim {
                state_dir
                    .join("volumes")
                    .join(namespace)
                    .join(&claim.claim_name)
            } else {
                // emptyDir, configMap, secret, downwardAPI: per pod.
                pod_dir.join("volumes").join(&v.name)
            };
            (v.name.clone(), dir)
        })
        .collect()
}

/// ConfigMap / Secret volumes: file name → content, per volume name.
pub fn projected_files(
    volumes: &[Volume],
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for v in volumes {
        let (data, items) = if let Some(cm) = &v.config_map {
            (config_maps.get(&cm.name), cm.items.as_ref())
        } else if let Some(secret) = &v.secret {
            let name = secret.secret_name.clone().unwrap_or_default();
            (secrets.get(&name), secret.items.as_ref())
        } else {
            continue;
        };
        let Some(data) = data else { continue };
        let files = match items {
            Some(items) => items
                .iter()
                .filter_map(|i| data.get(&i.key).map(|d| (i.path.clone(), d.clone())))
                .collect(),
            None => data.clone(),
        };
        out.insert(v.name.clone(), files);
    }
    out
}

/// Writes ConfigMap / Secret volume files (each via a temporary name, then rename).
pub fn write_projected_files(
    files: &BTreeMap<String, BTreeMap<String, String>>,
    volumes: &BTreeMap<String, PathBuf>,
) -> std::io::Result<()> {
    for (volume, entries) in files {
        let Some(dir) = volumes.get(volume) else {
            continue;
        };
        for (name, content) in entries {
            let path = dir.join(name);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let tmp = path.with_extension("driftline-tmp");
            std::fs::write(&tmp, content)?;
            std::fs::rename(&tmp, &path)?;
        }
    }
    Ok(())
}

/// Builds the process for one container of `pod`.
pub fn build_process(
    pod: &Pod,
    container: &Container,
    env: &PodEnvironment,
) -> Result<ProcessSpec, ContainerConfigError> {
    let mounts = mounts(container, env)?;
    let vars = container_env(pod, container, env)?;
    let lookup: BTreeMap<&str, &str> = vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let expand = |s: &String| map_paths(&expand_vars(s, &lookup), &mounts);

    let command: Vec<String> = container.command.iter().flatten().map(expand).collect();
    let args: Vec<String> = container.args.iter().flatten().map(expand).collect();
    let image = container.image.clone().unwrap_or_default();
    let (program, mut all_args) = match command.split_first() {
        Some((first, rest)) => (resolve_program(first, env), rest.to_vec()),
        None if image.contains("driftline") => (env.driftline_exe.clone(), Vec::new()),
        None => {
            return Err(ContainerConfigError::NoCommand {
                container: container.name.clone(),
                image,
            });
        }
    };
    all_args.extend(args);
    let working_dir = match &container.working_dir {
        Some(dir) => PathBuf::from(map_paths(dir, &mounts)),
        None => env.pod_dir.clone(),
    };
    let env_out = vars
        .into_iter()
        .map(|(k, v)| {
            let mapped = map_paths(&v, &mounts);
            (k, mapped)
        })
        .collect();
    Ok(ProcessSpec {
        program,
        args: all_args,
        env: env_out,
        working_dir,
    })
}

fn resolve_program(first: &str, env: &PodEnvironment) -> PathBuf {
    if first == "driftline" {
        env.driftline_exe.clone()
    } else {
        PathBuf::from(first)
    }
}

/// (mountPath, local directory), longest mount path first.
fn mounts(
    container: &Container,
    env: &PodEnvironment,
) -> Result<Vec<(String, String)>, ContainerConfigError> {
    let mut out = Vec::new();
    for m in container.volume_mounts.iter().flatten() {
        let dir = env
            .volumes
            .get(&m.name)
            .ok_or_else(|| ContainerConfigError::UnknownVolume {
                container: container.name.clone(),
                volume: m.name.clone(),
            })?;
        let dir = match m.sub_path.as_deref() {
            Some(sub) if !sub.is_empty() => dir.join(sub),
            _ => dir.clone(),
        };
        let path = m.mount_path.trim_end_matches('/').to_string();
        if !path.is_empty() {
            out.push((path, dir.to_string_lossy().into_owned()));
        }
    }
    out.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    Ok(out)
}

/// The container's environment in order: pod identity, extras, then its own
/// `envFrom` and `env` (later entries win, as in Kubernetes).
fn container_env(
    pod: &Pod,
    container: &Container,
    env: &PodEnvironment,
) -> Result<Vec<(String, String)>, ContainerConfigError> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let namespace = pod.metadata.namespace.clone().unwrap_or_default();
    let mut vars: Vec<(String, String)> = vec![
        ("HOSTNAME".into(), name.clone()),
        ("POD_IP".into(), env.pod_ip.to_string()),
        ("DRIFTLINE_HOST".into(), env.pod_ip.to_string()),
        ("POD_NAME".into(), name.clone()),
        ("POD_NAMESPACE".into(), namespace.clone()),
    ];
    vars.extend(env.extra_env.iter().cloned());
    let missing = |var: &str, what: String| ContainerConfigError::MissingReference {
        container: container.name.clone(),
        var: var.to_string(),
        what,
    };
    for from in container.env_from.iter().flatten() {
        let prefix = from.prefix.clone().unwrap_or_default();
        let (data, optional, label) = if let Some(cm) = &from.config_map_ref {
            (
                env.config_maps.get(&cm.name),
                cm.optional,
                format!("configmap `{}`", cm.name),
            )
        } else if let Some(s) = &from.secret_ref {
            (
                env.secrets.get(&s.name),
                s.optional,
                format!("secret `{}`", s.name),
            )
        } else {
            continue;
        };
        match data {
            Some(data) => vars.extend(
                data.iter()
                    .map(|(k, v)| (format!("{prefix}{k}"), v.clone())),
            ),
            None if optional == Some(true) => {}
            None => return Err(missing("(envFrom)", format!("{label} not found"))),
        }
    }
    for var in container.env.iter().flatten() {
        let value = if let Some(source) = &var.value_from {
            if let Some(field) = &source.field_ref {
                match field_value(pod, &field.field_path, env) {
                    Some(v) => v,
                    None => {
                        return Err(ContainerConfigError::UnsupportedFieldRef {
                            container: container.name.clone(),
                            var: var.name.clone(),
                            path: field.field_path.clone(),
                        });
                    }
                }
            } else if let Some(key) = &source.config_map_key_ref {
                match env.config_maps.get(&key.name).and_then(|d| d.get(&key.key)) {
                    Some(v) => v.clone(),
                    None if key.optional == Some(true) => continue,
                    None => {
                        return Err(missing(
                            &var.name,
                            format!("configmap `{}` has no key `{}`", key.name, key.key),
                        ));
                    }
                }
            } else if let Some(key) = &source.secret_key_ref {
                match env.secrets.get(&key.name).and_then(|d| d.get(&key.key)) {
                    Some(v) => v.clone(),
                    None if key.optional == Some(true) => continue,
                    None => {
                        return Err(missing(
                            &var.name,
                            format!("secret `{}` has no key `{}`", key.name, key.key),
                        ));
                    }
                }
            } else {
                continue;
            }
        } else {
            let lookup: BTreeMap<&str, &str> =
                vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            expand_vars(var.value.as_deref().unwrap_or(""), &lookup)
        };
        vars.retain(|(k, _)| k != &var.name);
        vars.push((var.name.clone(), value));
    }
    Ok(vars)
}

/// The downward-API value of a fieldRef path.
fn field_value(pod: &Pod, path: &str, env: &PodEnvironment) -> Option<String> {
    let meta = &pod.metadata;
    let label = |map: &Option<BTreeMap<String, String>>, prefix: &str| -> Option<String> {
        let key = path.strip_prefix(prefix)?.strip_suffix("']")?;
        Some(
            map.as_ref()
                .and_then(|m| m.get(key))
                .cloned()
                .unwrap_or_default(),
        )
    };
    match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace.clone(),
        "metadata.uid" => meta.uid.clone(),
        "status.podIP" => Some(env.pod_ip.to_string()),
        "status.podIPs" => Some(env.pod_ip.to_string()),
        "status.hostIP" => Some(env.host_ip.to_string()),
        "spec.nodeName" => Some(env.node_name.clone()),
        "spec.serviceAccountName" => Some(
            pod.spec
                .as_ref()
                .and_then(|s| s.service_account_name.clone())
                .unwrap_or_else(|| "default".into()),
        ),
        _ if path.starts_with("metadata.labels['") => label(&meta.labels, "metadata.labels['"),
        _ if path.starts_with("metadata.annotations['") => {
            label(&meta.annotations, "metadata.annotations['")
        }
        _ => None,
    }
}

/// Kubernetes `$(VAR)` expansion: defined variables are replaced, `$$` escapes.
pub fn expand_vars(text: &str, vars: &BTreeMap<&str, &str>) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(inner) = after.strip_prefix('(')
            && let Some(end) = inner.find(')')
            && let Some(value) = vars.get(&inner[..end])
        {
            out.push_str(value);
            rest = &inner[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// Rewrites mount paths in `text` to their local directories (see the module docs).
pub fn map_paths(text: &str, mounts: &[(String, String)]) -> String {
    if mounts.is_empty() {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    'scan: while i < text.len() {
        let before_ok = i == 0
            || text[..i].ends_with(['=', ' ', ':', '"', '\'', ',', '(', '\n'])
            || text[..i].ends_with("file://");
        if before_ok {
            for (mount, local) in mounts {
                if text[i..].starts_with(mount.as_str()) {
                    let end = i + mount.len();
                    let after_ok = end == text.len()
                        || text[end..].starts_with(['/', ' ', '"', '\'', ',', ':', ')', ';', '\n']);
                    if after_ok {
                        out.push_str(local);
                        i = end;
                        continue 'scan;
                    }
                }
            }
        }
        let Some(c) = text[i..].chars().next() else {
            break;
        };
        out.push(c);
        i += c.len_utf8();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector, PodSpec, VolumeMount,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn env_for(volumes: BTreeMap<String, PathBuf>) -> PodEnvironment {
        PodEnvironment {
            pod_ip: Ipv4Addr::new(127, 1, 0, 7),
            host_ip: Ipv4Addr::LOCALHOST,
            node_name: "driftline-node".into(),
            driftline_exe: PathBuf::from("/opt/bin/driftline"),
            pod_dir: PathBuf::from("/state/pods/ml/p"),
            volumes,
            config_maps: [(
                "cfg".to_string(),
                [("mode".to_string(), "fast".to_string())].into(),
            )]
            .into(),
            secrets: BTreeMap::new(),
            extra_env: vec![("NODE_HOSTS_FILE".into(), "/state/hosts".into())],
        }
    }

    fn pod() -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("train-abc".into()),
                namespace: Some("ml".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                volumes: Some(vec![Volume {
                    name: "data".into(),
                    empty_dir: Some(EmptyDirVolumeSource::default()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn field_env(name: &str, path: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                field_ref: Some(ObjectFieldSelector {
                    field_path: path.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn driftline_command_runs_the_configured_binary_with_mapped_paths_and_env() {
        let pod = pod();
        let dirs = volume_dirs(
            pod.spec.as_ref().unwrap().volumes.as_deref().unwrap(),
            Path::new("/state"),
            "ml",
            Path::new("/state/pods/ml/p"),
        );
        let container = Container {
            name: "train".into(),
            command: Some(vec!["driftline".into(), "train".into()]),
            args: Some(vec![
                "--out=/data/model".into(),
                "--source".into(),
                "file:///data/train.csv".into(),
                "/database".into(),
                "$(MY_IP)".into(),
            ]),
            env: Some(vec![
                field_env("MY_IP", "status.podIP"),
                field_env("MY_NS", "metadata.namespace"),
                EnvVar {
                    name: "OUT".into(),
                    value: Some("/data/out-$(MY_NS)".into()),
                    ..Default::default()
                },
            ]),
            volume_mounts: Some(vec![VolumeMount {
                name: "data".into(),
                mount_path: "/data".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let spec = build_process(&pod, &container, &env_for(dirs)).unwrap();
        assert_eq!(spec.program, PathBuf::from("/opt/bin/driftline"));
        assert_eq!(
            spec.args,
            vec![
                "train",
                "--out=/state/pods/ml/p/volumes/data/model",
                "--source",
                "file:///state/pods/ml/p/volumes/data/train.csv",
                "/database",
                "127.1.0.7",
            ]
        );
        let get = |k: &str| {
            spec.env
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("POD_IP").as_deref(), Some("127.1.0.7"));
        assert_eq!(get("DRIFTLINE_HOST").as_deref(), Some("127.1.0.7"));
        assert_eq!(get("MY_NS").as_deref(), Some("ml"));
        assert_eq!(
            get("OUT").as_deref(),
            Some("/state/pods/ml/p/volumes/data/out-ml")
        );
        assert_eq!(get("NODE_HOSTS_FILE").as_deref(), Some("/state/hosts"));
        assert_eq!(spec.working_dir, PathBuf::from("/state/pods/ml/p"));
    }

    #[test]
    fn configuration_mistakes_name_the_container_and_what_is_missing() {
        let pod = pod();
        let no_command = Container {
            name: "web".into(),
            image: Some("nginx".into()),
            ..Default::default()
        };
        let err = build_process(&pod, &no_command, &env_for(BTreeMap::new())).unwrap_err();
        assert!(err.to_string().contains("`web`") && err.to_string().contains("nginx"));

        let bad_mount = Container {
            name: "web".into(),
            command: Some(vec!["true".into()]),
            volume_mounts: Some(vec![VolumeMount {
                name: "nope".into(),
                mount_path: "/x".into(),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let err = build_process(&pod, &bad_mount, &env_for(BTreeMap::new())).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container `web` mounts volume `nope`, which is not in the pod's volumes"
        );

        let missing_key = Container {
            name: "web".into(),
            command: Some(vec!["true".into()]),
            env: Some(vec![EnvVar {
                name: "MODE".into(),
                value_from: Some(EnvVarSource {
                    config_map_key_ref: Some(k8s_openapi::api::core::v1::ConfigMapKeySelector {
                        name: "cfg".into(),
                        key: "speed".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let err = build_process(&pod, &missing_key, &env_for(BTreeMap::new())).unwrap_err();
        assert!(
            err.to_string()
                .contains("configmap `cfg` has no key `speed`"),
            "{err}"
        );
    }

    #[test]
    fn var_expansion_follows_kubernetes_rules() {
        let vars: BTreeMap<&str, &str> = [("A", "1")].into();
        assert_eq!(expand_vars("x$(A)y", &vars), "x1y");
        assert_eq!(expand_vars("$$(A) $(B) $", &vars), "$(A) $(B) $");
    }

    #[test]
    fn projected_config_map_files_are_written() {
        let dir = tempfile::tempdir().unwrap();
        let volumes = vec![Volume {
            name: "conf".into(),
            config_map: Some(k8s_openapi::api::core::v1::ConfigMapVolumeSource {
                name: "cfg".into(),
                ..Default::default()
            }),
            ..Default::default()
        }];
        let dirs = volume_dirs(&volumes, dir.path(), "ml", dir.path());
        let env = env_for(dirs.clone());
        let files = projected_files(&volumes, &env.config_maps, &env.secrets);
        write_projected_files(&files, &dirs).unwrap();
        let content = std::fs::read_to_string(dirs["conf"].join("mode")).unwrap();
        assert_eq!(content, "fast");
    }
}
