//! Services on the node, as kube-proxy and cluster DNS give them: cluster
//! IPs, Endpoints objects, a TCP proxy per port, and the hosts file.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::super::service::{ProxyTarget, backends, cluster_ip, endpoints_object, hosts_file_text};

use super::NodeLoop;

impl NodeLoop {
    pub(super) fn free_service_ip(&self, services: &[Service]) -> Ipv4Addr {
        let used: HashSet<IpAddr> = services.iter().filter_map(cluster_ip).collect();
        let base = u32::from(self.cfg.pod_ip_base) + 0x8000;
        (1..0x7fff_u32)
            .map(|n| Ipv4Addr::from(base + n))
            .find(|ip| !used.contains(&IpAddr::V4(*ip)))
            .unwrap_or(Ipv4Addr::from(base + 0x7fff))
    }

    pub(super) fn services(&self) -> Vec<Service> {
        self.caches
            .services
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect()
    }

    /// Cluster IPs, Endpoints, proxies and the hosts file.
    pub(super) async fn sync_services(&mut self, pods: &[Pod]) {
        let mut services = self.services();
        for index in 0..services.len() {
            let svc = &services[index];
            let spec = svc.spec.clone().unwrap_or_default();
            let wants_ip = spec.type_.as_deref() != Some("ExternalName")
                && spec.cluster_ip.as_deref().is_none_or(|ip| ip.is_empty());
            if !wants_ip || svc.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let (Some(name), Some(namespace)) =
                (svc.metadata.name.clone(), svc.metadata.namespace.clone())
            else {
                continue;
            };
            let ip = self.free_service_ip(&services).to_string();
            let api: Api<Service> = Api::namespaced(self.client.clone(), &namespace);
            let patch = serde_json::json!({"spec": {"clusterIP": ip, "clusterIPs": [ip]}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(updated) => services[index] = updated,
                Err(err) => tracing::warn!(%err, service = %name, "cannot assign a cluster IP"),
            }
        }
        self.serve_services(&services, pods).await;
        self.write_endpoints(&services, pods).await;
    }

    /// A proxy on each Service port's cluster IP to the ready pods, and the
    /// hosts file naming the Services (what kube-proxy and DNS give pods).
    pub(super) async fn serve_services(&mut self, services: &[Service], pods: &[Pod]) {
        let mut targets = Vec::new();
        for svc in services {
            let Some(ip) = cluster_ip(svc) else { continue };
            for (port, addrs) in backends(svc, pods) {
                targets.push(ProxyTarget {
                    listen: SocketAddr::new(ip, port),
                    backends: addrs,
                });
            }
        }
        self.proxies.sync(&targets).await;
        let text = hosts_file_text(services);
        if self.hosts_written.as_ref() != Some(&text) {
            let path = self.cfg.state_dir.join("hosts");
            let tmp = self.cfg.state_dir.join("hosts.tmp");
            match std::fs::write(&tmp, &text).and_then(|_| std::fs::rename(&tmp, &path)) {
                Ok(()) => self.hosts_written = Some(text),
                Err(err) => {
                    tracing::warn!(%err, path = %path.display(), "cannot write the hosts file")
                }
            }
        }
    }

    /// One Endpoints object per Service with a selector, from the pods it selects.
    pub(super) async fn write_endpoints(&mut self, services: &[Service], pods: &[Pod]) {
        let mut live = HashSet::new();
        for svc in services
            .iter()
            .filter(|s| s.spec.as_ref().is_some_and(|s| s.selector.is_some()))
        {
            let (Some(name), Some(namespace)) =
                (svc.metadata.name.clone(), svc.metadata.namespace.clone())
            else {
                continue;
            };
            let key = (namespace.clone(), name.clone());
            live.insert(key.clone());
            let object = endpoints_object(svc, pods);
            if self.endpoints_written.get(&key) == Some(&object) {
                continue;
            }
            let api: Api<k8s_openapi::api::core::v1::Endpoints> =
                Api::namespaced(self.client.clone(), &namespace);
            let params = PatchParams::apply("endpoints-controller").force();
            match api.patch(&name, &params, &Patch::Apply(&object)).await {
                Ok(_) => {
                    self.endpoints_written.insert(key, object);
                }
                Err(err) => tracing::debug!(%err, service = %name, "cannot write Endpoints"),
            }
        }
        self.endpoints_written.retain(|k, _| live.contains(k));
    }
}
