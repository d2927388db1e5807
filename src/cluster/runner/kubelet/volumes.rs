//! What a pod needs before its containers start: volume directories,
//! the ConfigMaps and Secrets it refers to, projected volumes and their
//! ServiceAccount tokens (renewed as kubelet does).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{BoundObjectReference, TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Pod, Secret, ServiceAccount, ServiceAccountTokenProjection, Volume,
};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

use super::super::container::{
    PodEnvironment, projected_files, volume_dirs, write_projected_files,
};
use super::super::events::EventNote;
use super::super::service_account::{
    api_access_volume, pod_kubeconfig_yaml, projected_volume_files, token_sources,
};
use super::{PodWorker, waiting};

impl PodWorker {
    /// Volumes, ConfigMaps and Secrets; on failure the containers wait with
    /// CreateContainerConfigError and preparation is retried.
    pub(super) async fn prepare(&mut self) {
        match self.try_prepare().await {
            Ok(env) => {
                self.env = Some(env);
                self.config_error = None;
            }
            Err(message) => {
                if self.config_error.as_ref() != Some(&message) {
                    self.event(EventNote::warning("Failed", &message)).await;
                }
                for c in &mut self.containers {
                    c.state = waiting("CreateContainerConfigError", Some(message.clone()));
                }
                self.config_error = Some(message);
            }
        }
    }

    pub(super) async fn try_prepare(&mut self) -> Result<PodEnvironment, String> {
        let spec = self.pod.spec.clone().unwrap_or_default();
        let namespace = self.namespace();
        let volumes = spec.volumes.clone().unwrap_or_default();
        let dirs = volume_dirs(&volumes, &self.ctx.state_dir, &namespace, &self.pod_dir);
        let mut config_maps = BTreeMap::new();
        let mut secrets = BTreeMap::new();
        let (cm_names, secret_names) = referenced_objects(&self.pod);
        let cm_api: Api<ConfigMap> = Api::namespaced(self.ctx.client.clone(), &namespace);
        for name in cm_names {
            if let Some(cm) = cm_api.get_opt(&name).await.map_err(|e| {
                format!("cannot read configmap `{name}` in namespace `{namespace}`: {e}")
            })? {
                config_maps.insert(name, cm.data.unwrap_or_default());
            }
        }
        let secret_api: Api<Secret> = Api::namespaced(self.ctx.client.clone(), &namespace);
        for name in secret_names {
            if let Some(secret) = secret_api.get_opt(&name).await.map_err(|e| {
                format!("cannot read secret `{name}` in namespace `{namespace}`: {e}")
            })? {
                let mut data: BTreeMap<String, String> = secret
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                    .collect();
                data.extend(secret.string_data.unwrap_or_default());
                secrets.insert(name, data);
            }
        }
        for v in &volumes {
            let missing = if let Some(cm) = &v.config_map {
                (!config_maps.contains_key(&cm.name) && cm.optional != Some(true))
                    .then(|| format!("configmap \"{}\" not found", cm.name))
            } else if let Some(s) = &v.secret {
                let name = s.secret_name.clone().unwrap_or_default();
                (!secrets.contains_key(&name) && s.optional != Some(true))
                    .then(|| format!("secret \"{name}\" not found"))
            } else {
                None
            };
            if let Some(m) = missing {
                return Err(format!("volume `{}`: {m}", v.name));
            }
        }
        let io = |what: &str, path: &Path, e: std::io::Error| {
            format!("cannot create {what} {}: {e}", path.display())
        };
        std::fs::create_dir_all(&self.pod_dir)
            .map_err(|e| io("pod directory", &self.pod_dir, e))?;
        for (volume, dir) in &dirs {
            let is_host_path = volumes
                .iter()
                .any(|v| &v.name == volume && v.host_path.is_some());
            let must_exist = volumes.iter().any(|v| {
                &v.name == volume
                    && v.host_path
                        .as_ref()
                        .is_some_and(|h| h.type_.as_deref() == Some("Directory"))
            });
            if must_exist && !dir.is_dir() {
                return Err(format!(
                    "hostPath volume `{volume}`: {} is not a directory",
                    dir.display()
                ));
            }
            if !is_host_path || !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| io("volume directory", dir, e))?;
            }
        }
        let files = projected_files(&volumes, &config_maps, &secrets);
        write_projected_files(&files, &dirs)
            .map_err(|e| format!("cannot write volume files: {e}"))?;
        let mut extra_env = self.extra_env.clone();
        extra_env.extend(
            self.project_volumes(&volumes, &dirs, &config_maps, &secrets)
                .await?,
        );
        Ok(PodEnvironment {
            pod_ip: self.ip,
            host_ip: Ipv4Addr::LOCALHOST,
            node_name: self.ctx.node_name.clone(),
            driftline_exe: self.ctx.driftline_exe.clone(),
            pod_dir: self.pod_dir.clone(),
            volumes: dirs,
            config_maps,
            secrets,
            extra_env,
        })
    }

    /// Fills the pod's projected volumes. Where the node gives pods API
    /// access, it asks the TokenRequest API for their ServiceAccount tokens
    /// (bound to the pod, renewed at 80% of their lifetime, as kubelet does)
    /// and returns `KUBECONFIG` for a pod that mounts one at the well-known
    /// path (see [`super::service_account`]).
    pub(super) async fn project_volumes(
        &mut self,
        volumes: &[Volume],
        dirs: &BTreeMap<String, PathBuf>,
        config_maps: &BTreeMap<String, BTreeMap<String, String>>,
        secrets: &BTreeMap<String, BTreeMap<String, String>>,
    ) -> Result<Vec<(String, String)>, String> {
        let mut files = BTreeMap::new();
        let mut shortest: Option<Duration> = None;
        for v in volumes {
            let Some(source) = &v.projected else { continue };
            let mut tokens = BTreeMap::new();
            if self.ctx.api_server_url.is_some() {
                for projection in token_sources(source) {
                    let (token, lifetime) = self.request_token(projection).await?;
                    tokens.insert(projection.path.clone(), token);
                    shortest = Some(shortest.map_or(lifetime, |s| s.min(lifetime)));
                }
            }
            let content = projected_volume_files(source, &self.pod, config_maps, secrets, &tokens)
                .map_err(|m| format!("volume `{}`: {m}", v.name))?;
            files.insert(v.name.clone(), content);
        }
        write_projected_files(&files, dirs)
            .map_err(|e| format!("cannot write volume files: {e}"))?;
        self.token_refresh_at = shortest.map(|l| Instant::now() + l.mul_f64(0.8));
        let (Some(server), Some((volume, token_path))) =
            (&self.ctx.api_server_url, api_access_volume(&self.pod))
        else {
            return Ok(Vec::new());
        };
        let (Some(dir), Some(content)) = (dirs.get(&volume), files.get(&volume)) else {
            return Ok(Vec::new());
        };
        // `ca.crt` is where the admission plugin projects kube-root-ca.crt.
        let ca = content.get("ca.crt").cloned().unwrap_or_default();
        let text = pod_kubeconfig_yaml(server, &ca, &dir.join(token_path), &self.namespace());
        let path = self.pod_dir.join("kubeconfig");
        let tmp = self.pod_dir.join("kubeconfig.tmp");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(vec![(
            "KUBECONFIG".into(),
            path.to_string_lossy().into_owned(),
        )])
    }

    /// A token for the pod's ServiceAccount, bound to the pod, and how long it lives.
    pub(super) async fn request_token(
        &self,
        projection: &ServiceAccountTokenProjection,
    ) -> Result<(String, Duration), String> {
        let namespace = self.namespace();
        let account = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.service_account_name.clone())
            .unwrap_or_else(|| "default".into());
        let request = TokenRequest {
            spec: TokenRequestSpec {
                audiences: projection.audience.clone().into_iter().collect(),
                expiration_seconds: projection.expiration_seconds,
                bound_object_ref: Some(BoundObjectReference {
                    api_version: Some("v1".into()),
                    kind: Some("Pod".into()),
                    name: self.pod.metadata.name.clone(),
                    uid: self.pod.metadata.uid.clone(),
                }),
            },
            ..Default::default()
        };
        let api: Api<ServiceAccount> = Api::namespaced(self.ctx.client.clone(), &namespace);
        let answer = api
            .create_token_request(&account, &PostParams::default(), &request)
            .await
            .map_err(|e| {
                format!(
                    "cannot request a token for serviceaccount `{account}` in namespace `{namespace}`: {e}"
                )
            })?;
        let status = answer.status.ok_or_else(|| {
            format!("the token request for serviceaccount `{account}` returned no token")
        })?;
        let lifetime = Duration::try_from(
            status
                .expiration_timestamp
                .0
                .duration_since(Timestamp::now()),
        )
        .unwrap_or(Duration::from_secs(60));
        Ok((status.token, lifetime))
    }

    /// Renews the projected tokens when due; a failure is retried in 10 s.
    pub(super) async fn refresh_tokens(&mut self) {
        if self.token_refresh_at.is_none_or(|t| t > Instant::now()) {
            return;
        }
        let Some(env) = self.env.clone() else { return };
        let volumes = self
            .pod
            .spec
            .as_ref()
            .and_then(|s| s.volumes.clone())
            .unwrap_or_default();
        if let Err(message) = self
            .project_volumes(&volumes, &env.volumes, &env.config_maps, &env.secrets)
            .await
        {
            tracing::warn!(pod = %self.name(), %message, "cannot renew the pod's token");
            self.token_refresh_at = Some(Instant::now() + Duration::from_secs(10));
        }
    }
}

/// ConfigMaps and Secrets the pod refers to (env, envFrom, volumes).
fn referenced_objects(pod: &Pod) -> (Vec<String>, Vec<String>) {
    let mut cms = Vec::new();
    let mut secrets = Vec::new();
    let spec = pod.spec.clone().unwrap_or_default();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        for e in c.env.iter().flatten().filter_map(|e| e.value_from.as_ref()) {
            if let Some(r) = &e.config_map_key_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &e.secret_key_ref {
                secrets.push(r.name.clone());
            }
        }
        for f in c.env_from.iter().flatten() {
            if let Some(r) = &f.config_map_ref {
                cms.push(r.name.clone());
            }
            if let Some(r) = &f.secret_ref {
                secrets.push(r.name.clone());
            }
        }
    }
    for v in spec.volumes.iter().flatten() {
        if let Some(cm) = &v.config_map {
            cms.push(cm.name.clone());
        }
        if let Some(s) = v.secret.as_ref().and_then(|s| s.secret_name.clone()) {
            secrets.push(s);
        }
        for source in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
            if let Some(cm) = &source.config_map {
                cms.push(cm.name.clone());
            }
            if let Some(s) = &source.secret {
                secrets.push(s.name.clone());
            }
        }
    }
    cms.sort();
    cms.dedup();
    secrets.sort();
    secrets.dedup();
    (cms, secrets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pod_refers_to_config_maps_and_secrets_through_env_env_from_and_volumes() {
        let pod: Pod = serde_json::from_value(serde_json::json!({"spec": {
            "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "fetch-creds"}}]}],
            "containers": [{"name": "c",
                "env": [
                    {"name": "A", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "a"}}},
                    {"name": "B", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "b"}}},
                    {"name": "C", "value": "plain"},
                ],
                "envFrom": [{"configMapRef": {"name": "more"}}]}],
            "volumes": [
                {"name": "v1", "configMap": {"name": "settings"}},
                {"name": "v2", "secret": {"secretName": "tls"}},
                {"name": "v3", "projected": {"sources": [
                    {"configMap": {"name": "ca"}}, {"secret": {"name": "token"}}]}},
                {"name": "v4", "emptyDir": {}},
            ],
        }}))
        .unwrap();
        let (config_maps, secrets) = referenced_objects(&pod);
        assert_eq!(config_maps, vec!["ca", "more", "settings"]);
        assert_eq!(secrets, vec!["creds", "fetch-creds", "tls", "token"]);
    }
}
