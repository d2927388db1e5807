//! An embedded Kubernetes API server and local workload runner, for tests
//! and `driftline up`. Imports nothing from the rest of driftline.
//!
//! - `apiserver`: the HTTP API (store, watch, patches, discovery, auth).
//! - `schema`: CRD structural-schema validation, defaulting, pruning, CEL
//!   rules and server-side Table rendering — pure functions.
//! - `runner`: one node that schedules pods and runs their containers as
//!   local processes, plus the Job, Deployment and Service controllers.

mod apiserver;
mod layout;
mod runner;
pub mod schema;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use apiserver::printers::{crd_columns, table_at};
use apiserver::{ApiServer, ApiServerConfig};
pub use apiserver::{FaultInjector, FaultRule, LoggedRequest};
pub use layout::pod_log_path;
use rand::Rng;
pub use runner::quantity::parse_quantity;
pub use runner::{NodeConfig, Runner, detect_gpus};

/// Why the embedded cluster could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The state directory or kubeconfig could not be written.
    #[error("cannot write {path}")]
    Io {
        /// The path being written.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The listening port is taken or not allowed.
    #[error("cannot listen on 127.0.0.1:{port} (choose another --port, or 0 for any free port)")]
    Bind {
        /// The requested port.
        port: u16,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// Another cluster runs on the same state directory.
    #[error(
        "another driftline cluster is running on {state_dir} (it holds {lock}); stop it, or give this one another --state-dir"
    )]
    InUse {
        /// The state directory.
        state_dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The snapshot file could not be loaded.
    #[error(transparent)]
    Snapshot(#[from] apiserver::SnapshotError),
    /// The node could not start.
    #[error(transparent)]
    Runner(#[from] runner::RunnerError),
    /// The serving certificate could not be made.
    #[error(transparent)]
    Tls(#[from] apiserver::tls::TlsError),
    /// A client could not be built from the written kubeconfig.
    #[error("the kubeconfig {path} does not give a working client: {message}")]
    Client {
        /// The kubeconfig.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// How to run the embedded cluster.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Port on 127.0.0.1; 0 picks any free port.
    pub port: u16,
    /// Directory for the kubeconfig (by default), pod logs and volumes.
    pub state_dir: PathBuf,
    /// Where to write the kubeconfig; default `<state_dir>/kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// Snapshot file to load at start and keep up to date; none keeps state in memory only.
    pub snapshot: Option<PathBuf>,
    /// Changes a watch can replay before it gets 410 Gone.
    pub watch_history: usize,
    /// How often idle watches that asked for bookmarks get one.
    pub bookmark_interval: Duration,
    /// The node that runs pods as local processes; `None` serves the API
    /// only (pods stay Pending). Its `state_dir` is replaced by the cluster's.
    pub node: Option<runner::NodeConfig>,
}

impl ClusterConfig {
    /// In-memory cluster on any free port, keeping files under `state_dir`.
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        ClusterConfig {
            port: 0,
            state_dir: state_dir.into(),
            kubeconfig: None,
            snapshot: None,
            watch_history: 100_000,
            bookmark_interval: Duration::from_secs(10),
            node: None,
        }
    }

    /// The same cluster with a node that runs pods.
    pub fn with_node(mut self, node: runner::NodeConfig) -> Self {
        self.node = Some(node);
        self
    }
}

/// A running embedded cluster.
pub struct EmbeddedCluster {
    server: ApiServer,
    addr: SocketAddr,
    kubeconfig: PathBuf,
    ca_pem: String,
    client: kube::Client,
    serving: tokio::task::JoinHandle<()>,
    snapshots: Option<tokio::task::JoinHandle<()>>,
    runner: Option<runner::RunnerHandle>,
    // Held until the cluster is dropped, after its final snapshot.
    _lock: std::fs::File,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The kubeconfig text pointing at `url` with `token`, trusting `ca_pem`.
pub fn kubeconfig_yaml(url: &str, token: &str, ca_pem: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: driftline\n  cluster:\n    server: {url}\n    certificate-authority-data: {ca}\nusers:\n- name: driftline\n  user:\n    token: {token}\ncontexts:\n- name: driftline\n  context:\n    cluster: driftline\n    user: driftline\n    namespace: default\ncurrent-context: driftline\npreferences: {{}}\n"
    )
}

/// Writes a file atomically with owner-only permissions (it holds the token).
fn write_private(path: &Path, text: &str) -> Result<(), ClusterError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(text.as_bytes()).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Accepts TLS connections and serves the API on each (HTTP/1.1 or HTTP/2) until closed.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    tls: std::sync::Arc<rustls::ServerConfig>,
    server: ApiServer,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let router = server.router();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = server.closed() => return,
        };
        let (tcp, _) = match accepted {
            Ok(conn) => conn,
            Err(e) => {
                // Out of file descriptors and similar: back off instead of spinning.
                tracing::warn!(error = %e, "embedded API server could not accept a connection");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let service = hyper_util::service::TowerToHyperService::new(router.clone());
        let server = server.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(io, service);
            tokio::pin!(conn);
            // The connection ends on its own, or when the server closes.
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = server.closed() => {}
            }
        });
    }
}

impl EmbeddedCluster {
    /// Starts the API server on 127.0.0.1 and writes its kubeconfig.
    pub async fn start(cfg: ClusterConfig) -> Result<EmbeddedCluster, ClusterError> {
        std::fs::create_dir_all(&cfg.state_dir).map_err(io_err(&cfg.state_dir))?;
        // Before anything is read or written: a second cluster on the same
        // directory would overwrite the first one's kubeconfig and snapshot.
        let lock_path = layout::cluster_lock_path(&cfg.state_dir);
        let Some(lock) = layout::try_lock(&lock_path).map_err(io_err(&lock_path))? else {
            return Err(ClusterError::InUse {
                state_dir: cfg.state_dir.clone(),
                lock: lock_path,
            });
        };
        let token: String = {
            let mut rng = rand::rng();
            (0..32)
                .map(|_| format!("{:x}", rng.random_range(0..16u8)))
                .collect()
        };
        let mut api_cfg = ApiServerConfig::new(token.clone(), cfg.state_dir.clone());
        api_cfg.snapshot = cfg.snapshot.clone();
        api_cfg.history_capacity = cfg.watch_history;
        api_cfg.bookmark_interval = cfg.bookmark_interval;
        let server = ApiServer::new(api_cfg)?;
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", cfg.port))
            .await
            .map_err(|source| ClusterError::Bind {
                port: cfg.port,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ClusterError::Bind {
            port: cfg.port,
            source,
        })?;
        let url = format!("https://{addr}");
        let cert = apiserver::tls::serving_cert()?;
        let kubeconfig = cfg
            .kubeconfig
            .clone()
            .unwrap_or_else(|| cfg.state_dir.join("kubeconfig"));
        let text = kubeconfig_yaml(&url, &token, &cert.ca_pem);
        write_private(&kubeconfig, &text)?;
        let client_err = |message: String| ClusterError::Client {
            path: kubeconfig.clone(),
            message,
        };
        let kc =
            kube::config::Kubeconfig::from_yaml(&text).map_err(|e| client_err(e.to_string()))?;
        let config =
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| client_err(e.to_string()))?;
        let client = kube::Client::try_from(config).map_err(|e| client_err(e.to_string()))?;
        let serving = tokio::spawn(serve_tls(listener, cert.config.clone(), server.clone()));
        let snapshots = server.spawn_snapshot_writer();
        tracing::info!(%url, kubeconfig = %kubeconfig.display(), "embedded cluster listening");
        let runner = match cfg.node.clone() {
            Some(mut node) => {
                node.state_dir = cfg.state_dir.clone();
                node.kubeconfig.get_or_insert_with(|| kubeconfig.clone());
                match runner::Runner::start(client.clone(), node).await {
                    Ok(handle) => Some(handle),
                    Err(err) => {
                        server.close();
                        return Err(err.into());
                    }
                }
            }
            None => None,
        };
        Ok(EmbeddedCluster {
            server,
            addr,
            kubeconfig,
            ca_pem: cert.ca_pem,
            client,
            serving,
            snapshots,
            runner,
            _lock: lock,
        })
    }

    /// The kubeconfig file kubectl and kube-rs can use.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// A client built from the written kubeconfig.
    pub async fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// Base URL of the API server (HTTPS on 127.0.0.1).
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// PEM of the CA that signed the server certificate (also in the kubeconfig).
    pub fn ca_certificate_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Fault injection and request log.
    pub fn faults(&self) -> FaultInjector {
        self.server.faults()
    }

    /// Drops the watch history (like etcd compaction): watches from older
    /// resourceVersions get 410 Gone and clients must relist.
    pub fn compact(&self) {
        self.server.compact();
    }

    /// The API server (object counts, snapshots).
    pub fn api_server(&self) -> &ApiServer {
        &self.server
    }

    /// The node running pods, when the cluster has one (fault injection: `kill_pod_process`).
    pub fn runner(&self) -> Option<&runner::RunnerHandle> {
        self.runner.as_ref()
    }

    /// Stops serving, ends open watches and writes the final snapshot.
    pub async fn shutdown(self) {
        if let Some(runner) = self.runner {
            runner.shutdown().await;
        }
        self.server.close();
        let mut serving = self.serving;
        if tokio::time::timeout(Duration::from_secs(5), &mut serving)
            .await
            .is_err()
        {
            serving.abort();
        }
        if let Some(t) = self.snapshots {
            t.abort();
        }
        if let Err(e) = self.server.save_snapshot() {
            tracing::warn!(error = ?e, "could not write the final cluster snapshot");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `{err:#}` of `err`: every message in its chain, each once.
    fn chain(err: impl std::error::Error + Send + Sync + 'static) -> String {
        format!("{:#}", anyhow::Error::from(err))
    }

    #[test]
    fn each_cause_is_printed_once_in_an_error_chain() {
        let io = || std::io::Error::other("disk full");
        let path = PathBuf::from("/state/x");
        let chains = [
            chain(ClusterError::Io {
                path: path.clone(),
                source: io(),
            }),
            chain(ClusterError::Bind {
                port: 6443,
                source: io(),
            }),
            chain(ClusterError::Runner(runner::RunnerError::StateDir {
                path: path.clone(),
                source: io(),
            })),
            chain(ClusterError::Snapshot(apiserver::SnapshotError::Io {
                path,
                source: io(),
            })),
            chain(ClusterError::Tls(apiserver::tls::TlsError::Config(
                rustls::Error::General("disk full".into()),
            ))),
            chain(schema::SchemaError::SchemaJson {
                path: "spec".into(),
                source: <serde_json::Error as serde::de::Error>::custom("disk full"),
            }),
        ];
        for chain in chains {
            assert_eq!(chain.matches("disk full").count(), 1, "{chain}");
        }
    }
}
