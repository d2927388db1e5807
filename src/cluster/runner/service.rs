//! Services: how a Service name reaches ready pods on the embedded node.
//!
//! Each Service gets a loopback `spec.clusterIP` (upper half of the node's
//! /16). The runner keeps an `Endpoints` object per Service from the ready
//! pods matching its selector, and listens on `clusterIP:port` with a TCP
//! proxy that spreads connections round-robin over those endpoints (like
//! kube-proxy). Names resolve through `<state_dir>/hosts`, which maps
//! `<svc>.<ns>.svc.cluster.local`, `<svc>.<ns>.svc` and `<svc>.<ns>` to the
//! cluster IP (the `/etc/hosts` format); pods get its path in the variable
//! [`super::NodeConfig::hosts_file_env`] names, plus the standard
//! `<SVC>_SERVICE_HOST` / `<SVC>_SERVICE_PORT` variables.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::core::v1::{Pod, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The hosts-file text for these Services (those with a loopback cluster IP).
pub fn hosts_file_text(services: &[Service]) -> String {
    let mut lines: Vec<String> = services
        .iter()
        .filter_map(|svc| {
            let ip = cluster_ip(svc)?;
            let name = svc.metadata.name.as_deref()?;
            let ns = svc.metadata.namespace.as_deref().unwrap_or("default");
            Some(format!(
                "{ip} {name}.{ns}.svc.cluster.local {name}.{ns}.svc {name}.{ns}"
            ))
        })
        .collect();
    lines.sort();
    let mut text =
        String::from("# Service names of the embedded driftline cluster (written by its runner)\n");
    for line in lines {
        text.push_str(&line);
        text.push('\n');
    }
    text
}

/// The Service's cluster IP when it is a usable loopback address.
pub fn cluster_ip(svc: &Service) -> Option<IpAddr> {
    let ip: IpAddr = svc.spec.as_ref()?.cluster_ip.as_deref()?.parse().ok()?;
    ip.is_loopback().then_some(ip)
}

/// Whether a pod receives traffic: running, Ready, not terminating, with an IP.
pub fn pod_is_ready(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    pod.metadata.deletion_timestamp.is_none()
        && status.and_then(|s| s.pod_ip.as_ref()).is_some()
        && status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status
            .and_then(|s| s.conditions.as_ref())
            .into_iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether the Service's selector picks this pod (same namespace, all labels equal).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    let Some(selector) = svc.spec.as_ref().and_then(|s| s.selector.as_ref()) else {
        return false;
    };
    if selector.is_empty() || svc.metadata.namespace != pod.metadata.namespace {
        return false;
    }
    let labels = pod.metadata.labels.as_ref();
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pod port a Service port sends to (named ports are looked up in the pod's containers).
pub fn target_port(port: &ServicePort, pod: &Pod) -> Option<u16> {
    match &port.target_port {
        None => u16::try_from(port.port).ok(),
        Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
        Some(IntOrString::String(name)) => match name.parse::<u16>() {
            Ok(n) => Some(n),
            Err(_) => pod
                .spec
                .as_ref()?
                .containers
                .iter()
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok()),
        },
    }
}

/// For each Service port (by its port number): the ready backends, ordered by pod name.
pub fn backends(svc: &Service, pods: &[Pod]) -> BTreeMap<u16, Vec<SocketAddr>> {
    let mut ready: Vec<&Pod> = pods
        .iter()
        .filter(|p| selects(svc, p) && pod_is_ready(p))
        .collect();
    ready.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut out = BTreeMap::new();
    for port in svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
    {
        let Ok(number) = u16::try_from(port.port) else {
            continue;
        };
        let addrs = ready
            .iter()
            .filter_map(|pod| {
                let ip: IpAddr = pod.status.as_ref()?.pod_ip.as_deref()?.parse().ok()?;
                Some(SocketAddr::new(ip, target_port(port, pod)?))
            })
            .collect();
        out.insert(number, addrs);
    }
    out
}

/// The `core/v1` Endpoints object for a Service, as JSON.
pub fn endpoints_object(svc: &Service, pods: &[Pod]) -> serde_json::Value {
    let name = svc.metadata.name.clone().unwrap_or_default();
    let namespace = svc.metadata.namespace.clone().unwrap_or_default();
    let mut matching: Vec<&Pod> = pods.iter().filter(|p| selects(svc, p)).collect();
    matching.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let address = |pod: &Pod| {
        serde_json::json!({
            "ip": pod.status.as_ref().and_then(|s| s.pod_ip.clone()),
            "nodeName": pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            "targetRef": {"kind": "Pod", "name": pod.metadata.name, "namespace": pod.metadata.namespace, "uid": pod.metadata.uid},
        })
    };
    let with_ip: Vec<&&Pod> = matching
        .iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.pod_ip.as_ref()).is_some())
        .collect();
    let ready: Vec<_> = with_ip
        .iter()
        .filter(|p| pod_is_ready(p))
        .map(|p| address(p))
        .collect();
    let not_ready: Vec<_> = with_ip
        .iter()
        .filter(|p| !pod_is_ready(p))
        .map(|p| address(p))
        .collect();
    let ports: Vec<_> = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .map(|p| {
            let target = with_ip.first().and_then(|pod| target_port(p, pod)).map(i32::from);
            serde_json::json!({"name": p.name, "port": target.unwrap_or(p.port), "protocol": p.protocol.clone().unwrap_or_else(|| "TCP".into())})
        })
        .collect();
    let mut subset = serde_json::Map::new();
    if !ready.is_empty() {
        subset.insert("addresses".into(), ready.into());
    }
    if !not_ready.is_empty() {
        subset.insert("notReadyAddresses".into(), not_ready.into());
    }
    let subsets = if subset.is_empty() {
        Vec::new()
    } else {
        subset.insert("ports".into(), ports.into());
        vec![serde_json::Value::Object(subset)]
    };
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": svc.metadata.labels.clone().unwrap_or_default(),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Service", "name": svc.metadata.name, "uid": svc.metadata.uid, "controller": true, "blockOwnerDeletion": true}],
        },
        "subsets": subsets,
    })
}

/// The `<SVC>_SERVICE_HOST` / `_PORT` variables for the Services of one namespace.
pub fn service_env(services: &[Service], namespace: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for svc in services
        .iter()
        .filter(|s| s.metadata.namespace.as_deref() == Some(namespace))
    {
        let (Some(name), Some(ip)) = (svc.metadata.name.as_deref(), cluster_ip(svc)) else {
            continue;
        };
        let prefix = name.to_ascii_uppercase().replace('-', "_");
        let ports = svc
            .spec
            .as_ref()
            .and_then(|s| s.ports.clone())
            .unwrap_or_default();
        out.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        if let Some(first) = ports.first() {
            out.push((format!("{prefix}_SERVICE_PORT"), first.port.to_string()));
        }
        for p in &ports {
            if let Some(port_name) = &p.name {
                let suffix = port_name.to_ascii_uppercase().replace('-', "_");
                out.push((
                    format!("{prefix}_SERVICE_PORT_{suffix}"),
                    p.port.to_string(),
                ));
            }
        }
    }
    out
}

/// Where one proxy listens and where it sends connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyTarget {
    /// clusterIP:port.
    pub listen: SocketAddr,
    /// Ready pod addresses.
    pub backends: Vec<SocketAddr>,
}

struct RunningProxy {
    backends: Arc<RwLock<Vec<SocketAddr>>>,
    task: JoinHandle<()>,
}

/// The TCP proxies of all Services, keyed by listen address.
#[derive(Default)]
pub struct ServiceProxies {
    running: HashMap<SocketAddr, RunningProxy>,
}

impl ServiceProxies {
    /// Starts, updates and stops proxies so that exactly `targets` run.
    pub async fn sync(&mut self, targets: &[ProxyTarget]) {
        let wanted: HashMap<SocketAddr, &ProxyTarget> =
            targets.iter().map(|t| (t.listen, t)).collect();
        self.running.retain(|addr, proxy| {
            let keep = wanted.contains_key(addr) && !proxy.task.is_finished();
            if !keep {
                proxy.task.abort();
            }
            keep
        });
        for (addr, target) in wanted {
            if let Some(proxy) = self.running.get(&addr) {
                if let Ok(mut backends) = proxy.backends.write()
                    && *backends != target.backends
                {
                    *backends = target.backends.clone();
                }
                continue;
            }
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let backends = Arc::new(RwLock::new(target.backends.clone()));
                    let task = tokio::spawn(serve_proxy(listener, backends.clone()));
                    self.running.insert(addr, RunningProxy { backends, task });
                }
                Err(err) => {
                    tracing::warn!(%addr, %err, "cannot listen for a Service; retrying on the next sync");
                }
            }
        }
    }

    /// Stops every proxy.
    pub fn stop(&mut self) {
        for (_, proxy) in self.running.drain() {
            proxy.task.abort();
        }
    }
}

async fn serve_proxy(listener: TcpListener, backends: Arc<RwLock<Vec<SocketAddr>>>) {
    let next = Arc::new(AtomicUsize::new(0));
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            continue;
        };
        let current = backends.read().map(|b| b.clone()).unwrap_or_default();
        let start = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            // Try each backend once, starting from the round-robin position.
            for i in 0..current.len() {
                let backend = current[(start + i) % current.len()];
                if let Ok(mut outbound) = TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
            // No ready endpoint: close, as a client of kube-proxy sees it.
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn svc(name: &str, ip: &str) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ml".into()),
                ..Default::default()
            },
            spec: Some(ServiceSpec {
                cluster_ip: Some(ip.into()),
                selector: Some([("app".to_string(), "web".to_string())].into()),
                ports: Some(vec![ServicePort {
                    name: Some("http".into()),
                    port: 80,
                    target_port: Some(IntOrString::Int(8080)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn pod(name: &str, ip: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ml".into()),
                labels: Some([("app".to_string(), "web".to_string())].into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                phase: Some("Running".into()),
                pod_ip: Some(ip.into()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn only_ready_selected_pods_are_backends() {
        let s = svc("web", "127.1.128.1");
        let mut other = pod("c", "127.1.0.3", true);
        other.metadata.labels = Some([("app".to_string(), "db".to_string())].into());
        let pods = vec![
            pod("b", "127.1.0.2", false),
            pod("a", "127.1.0.1", true),
            other,
        ];
        let b = backends(&s, &pods);
        assert_eq!(
            b[&80],
            vec!["127.1.0.1:8080".parse::<SocketAddr>().unwrap()]
        );
        let ep = endpoints_object(&s, &pods);
        assert_eq!(ep["subsets"][0]["addresses"][0]["ip"], "127.1.0.1");
        assert_eq!(ep["subsets"][0]["notReadyAddresses"][0]["ip"], "127.1.0.2");
        assert_eq!(ep["subsets"][0]["ports"][0]["port"], 8080);
    }

    #[test]
    fn the_hosts_file_names_each_loopback_service_in_every_form() {
        let text = hosts_file_text(&[svc("web", "127.1.128.1"), svc("db", "10.0.0.1")]);
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            vec!["127.1.128.1 web.ml.svc.cluster.local web.ml.svc web.ml"],
            "non-loopback cluster IPs are not served: {text}"
        );
    }

    #[test]
    fn service_env_vars_follow_the_kubernetes_convention() {
        let env = service_env(&[svc("model-server", "127.1.128.4")], "ml");
        assert!(env.contains(&("MODEL_SERVER_SERVICE_HOST".into(), "127.1.128.4".into())));
        assert!(env.contains(&("MODEL_SERVER_SERVICE_PORT".into(), "80".into())));
        assert!(env.contains(&("MODEL_SERVER_SERVICE_PORT_HTTP".into(), "80".into())));
        assert!(service_env(&[svc("web", "127.1.128.4")], "other").is_empty());
    }

    #[tokio::test]
    async fn proxy_spreads_connections_and_follows_backend_changes() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        async fn backend(tag: u8) -> SocketAddr {
            let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = l.local_addr().unwrap();
            tokio::spawn(async move {
                while let Ok((mut s, _)) = l.accept().await {
                    let _ = s.write_all(&[tag]).await;
                }
            });
            addr
        }
        let (a, b) = (backend(b'a').await, backend(b'b').await);
        let probe = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listen = probe.local_addr().unwrap();
        drop(probe);
        let mut proxies = ServiceProxies::default();
        proxies
            .sync(&[ProxyTarget {
                listen,
                backends: vec![a, b],
            }])
            .await;
        let mut seen = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(listen).await.unwrap();
            let mut buf = [0u8; 1];
            s.read_exact(&mut buf).await.unwrap();
            seen.push(buf[0]);
        }
        seen.sort();
        assert_eq!(seen, b"ab");
        proxies
            .sync(&[ProxyTarget {
                listen,
                backends: vec![b],
            }])
            .await;
        let mut s = TcpStream::connect(listen).await.unwrap();
        let mut buf = [0u8; 1];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"b");
        proxies.stop();
    }
}
