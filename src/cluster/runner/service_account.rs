//! Projected volumes and API access for pods, as a kubelet gives them.
//!
//! On a real control plane the ServiceAccount admission plugin adds to every
//! pod (unless `automountServiceAccountToken: false`) a projected volume
//! `kube-api-access-…` — a `serviceAccountToken` source (`token`), the
//! `kube-root-ca.crt` ConfigMap (`ca.crt`) and the pod's namespace
//! (`namespace`) — mounted at [`SERVICE_ACCOUNT_MOUNT`]. A kubelet fills it
//! with a token it asks the TokenRequest API for, bound to the pod, and
//! refreshes it before it expires. The node does the same; since a local
//! process cannot see a mount at that fixed path, a pod that mounts it also
//! gets `KUBECONFIG` naming a kubeconfig ([`pod_kubeconfig_yaml`]) with the
//! token file, the CA and the API server's URL, which in-pod clients
//! (`kube::Client::try_default`) read first.

use std::collections::BTreeMap;
use std::path::Path;

use k8s_openapi::api::core::v1::{Pod, ProjectedVolumeSource, ServiceAccountTokenProjection};

/// Where a pod's containers find their ServiceAccount credentials.
pub const SERVICE_ACCOUNT_MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The `serviceAccountToken` sources of a projected volume.
pub fn token_sources(source: &ProjectedVolumeSource) -> Vec<&ServiceAccountTokenProjection> {
    source
        .sources
        .iter()
        .flatten()
        .filter_map(|s| s.service_account_token.as_ref())
        .collect()
}

/// The files of a projected volume (path in the volume → content), from the
/// ConfigMaps and Secrets the pod refers to, the pod itself (downward API)
/// and `tokens` (projection path → token). Token sources without a token are
/// left out. A missing ConfigMap or Secret that is not optional is an error
/// (the pod waits with `CreateContainerConfigError`).
pub fn projected_volume_files(
    source: &ProjectedVolumeSource,
    pod: &Pod,
    config_maps: &BTreeMap<String, BTreeMap<String, String>>,
    secrets: &BTreeMap<String, BTreeMap<String, String>>,
    tokens: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut files = BTreeMap::new();
    for s in source.sources.iter().flatten() {
        let keyed = if let Some(cm) = &s.config_map {
            Some((
                "configmap",
                &cm.name,
                config_maps.get(&cm.name),
                cm.items.as_ref(),
                cm.optional,
            ))
        } else {
            s.secret.as_ref().map(|secret| {
                (
                    "secret",
                    &secret.name,
                    secrets.get(&secret.name),
                    secret.items.as_ref(),
                    secret.optional,
                )
            })
        };
        if let Some((kind, name, data, items, optional)) = keyed {
            let Some(data) = data else {
                if optional == Some(true) {
                    continue;
                }
                return Err(format!("{kind} \"{name}\" not found"));
            };
            match items {
                Some(items) => {
                    for item in items {
                        match data.get(&item.key) {
                            Some(value) => {
                                files.insert(item.path.clone(), value.clone());
                            }
                            None if optional == Some(true) => {}
                            None => {
                                return Err(format!(
                                    "{kind} \"{name}\" has no key \"{}\"",
                                    item.key
                                ));
                            }
                        }
                    }
                }
                None => files.extend(data.clone()),
            }
        }
        if let Some(downward) = &s.downward_api {
            for item in downward.items.iter().flatten() {
                let Some(field) = &item.field_ref else {
                    continue;
                };
                if let Some(value) = pod_field(pod, &field.field_path) {
                    files.insert(item.path.clone(), value);
                }
            }
        }
        if let Some(token) = &s.service_account_token
            && let Some(value) = tokens.get(&token.path)
        {
            files.insert(token.path.clone(), value.clone());
        }
    }
    Ok(files)
}

/// A downward-API field of the pod (`metadata.name`, `metadata.namespace`,
/// `metadata.uid`, `spec.serviceAccountName`, `spec.nodeName`).
fn pod_field(pod: &Pod, path: &str) -> Option<String> {
    let spec = pod.spec.as_ref();
    match path {
        "metadata.name" => pod.metadata.name.clone(),
        "metadata.namespace" => pod.metadata.namespace.clone(),
        "metadata.uid" => pod.metadata.uid.clone(),
        "spec.serviceAccountName" => spec.and_then(|s| s.service_account_name.clone()),
        "spec.nodeName" => spec.and_then(|s| s.node_name.clone()),
        _ => None,
    }
}

/// The volume a container of `pod` mounts at [`SERVICE_ACCOUNT_MOUNT`] when
/// it is a projected volume with a token, and the token's path in it.
pub fn api_access_volume(pod: &Pod) -> Option<(String, String)> {
    let spec = pod.spec.as_ref()?;
    let mounted = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.mount_path.trim_end_matches('/') == SERVICE_ACCOUNT_MOUNT)?;
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mounted.name)?;
    let token = token_sources(volume.projected.as_ref()?)
        .first()?
        .path
        .clone();
    Some((volume.name.clone(), token))
}

/// A kubeconfig for a pod: the API server at `server`, trusting `ca_pem`,
/// authenticating with the token in `token_file` (re-read as it is refreshed).
pub fn pod_kubeconfig_yaml(
    server: &str,
    ca_pem: &str,
    token_file: &Path,
    namespace: &str,
) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let config = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {"server": server, "certificate-authority-data": ca}}],
        "users": [{"name": "service-account", "user": {"tokenFile": token_file.display().to_string()}}],
        "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "service-account", "namespace": namespace}}],
        "current-context": "in-cluster",
    });
    // JSON is YAML; kubeconfig readers take either.
    serde_json::to_string_pretty(&config).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ConfigMapProjection, Container, DownwardAPIProjection, DownwardAPIVolumeFile, KeyToPath,
        ObjectFieldSelector, PodSpec, Volume, VolumeMount, VolumeProjection,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    /// The volume the ServiceAccount admission plugin adds to a pod.
    fn kube_api_access() -> ProjectedVolumeSource {
        ProjectedVolumeSource {
            sources: Some(vec![
                VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        expiration_seconds: Some(3607),
                        path: "token".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    config_map: Some(ConfigMapProjection {
                        name: "kube-root-ca.crt".into(),
                        items: Some(vec![KeyToPath {
                            key: "ca.crt".into(),
                            path: "ca.crt".into(),
                            mode: None,
                        }]),
                        optional: None,
                    }),
                    ..Default::default()
                },
                VolumeProjection {
                    downward_api: Some(DownwardAPIProjection {
                        items: Some(vec![DownwardAPIVolumeFile {
                            path: "namespace".into(),
                            field_ref: Some(ObjectFieldSelector {
                                field_path: "metadata.namespace".into(),
                                api_version: Some("v1".into()),
                            }),
                            ..Default::default()
                        }]),
                    }),
                    ..Default::default()
                },
            ]),
            default_mode: Some(420),
        }
    }

    fn pod(mount: &str) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some("gw".into()),
                namespace: Some("ml".into()),
                ..Default::default()
            },
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "gateway".into(),
                    volume_mounts: Some(vec![VolumeMount {
                        name: "kube-api-access-x1".into(),
                        mount_path: mount.into(),
                        read_only: Some(true),
                        ..Default::default()
                    }]),
                    ..Default::default()
                }],
                volumes: Some(vec![Volume {
                    name: "kube-api-access-x1".into(),
                    projected: Some(kube_api_access()),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn root_ca() -> BTreeMap<String, BTreeMap<String, String>> {
        [(
            "kube-root-ca.crt".to_string(),
            [("ca.crt".to_string(), "PEM".to_string())].into(),
        )]
        .into()
    }

    #[test]
    fn the_admission_plugins_volume_holds_token_ca_and_namespace() {
        let tokens = [("token".to_string(), "jwt".to_string())].into();
        let files = projected_volume_files(
            &kube_api_access(),
            &pod(SERVICE_ACCOUNT_MOUNT),
            &root_ca(),
            &BTreeMap::new(),
            &tokens,
        )
        .unwrap();
        let want: BTreeMap<String, String> = [
            ("ca.crt".to_string(), "PEM".to_string()),
            ("namespace".to_string(), "ml".to_string()),
            ("token".to_string(), "jwt".to_string()),
        ]
        .into();
        assert_eq!(files, want);
    }

    #[test]
    fn a_missing_root_ca_configmap_keeps_the_pod_waiting() {
        let err = projected_volume_files(
            &kube_api_access(),
            &pod(SERVICE_ACCOUNT_MOUNT),
            &BTreeMap::new(),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .unwrap_err();
        assert_eq!(err, "configmap \"kube-root-ca.crt\" not found");
    }

    #[test]
    fn a_token_not_yet_requested_is_left_out() {
        let files = projected_volume_files(
            &kube_api_access(),
            &pod(SERVICE_ACCOUNT_MOUNT),
            &root_ca(),
            &BTreeMap::new(),
            &BTreeMap::new(),
        )
        .unwrap();
        assert!(!files.contains_key("token"), "{files:?}");
    }

    #[test]
    fn only_a_mount_at_the_well_known_path_gives_api_access() {
        assert_eq!(
            api_access_volume(&pod(&format!("{SERVICE_ACCOUNT_MOUNT}/"))),
            Some(("kube-api-access-x1".into(), "token".into()))
        );
        assert_eq!(api_access_volume(&pod("/elsewhere")), None);
    }

    #[test]
    fn the_pods_kubeconfig_reads_its_token_from_the_projected_file() {
        let text = pod_kubeconfig_yaml(
            "https://127.0.0.1:6443",
            "PEM",
            Path::new("/state/pods/ml/gw/volumes/kube-api-access-x1/token"),
            "ml",
        );
        let config: kube::config::Kubeconfig = serde_yaml::from_str(&text).unwrap();
        let user = config.auth_infos[0].auth_info.as_ref().unwrap();
        assert_eq!(
            user.token_file.as_deref(),
            Some("/state/pods/ml/gw/volumes/kube-api-access-x1/token")
        );
        let cluster = config.clusters[0].cluster.as_ref().unwrap();
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
        assert_eq!(
            config.contexts[0]
                .context
                .as_ref()
                .unwrap()
                .namespace
                .as_deref(),
            Some("ml")
        );
    }
}
