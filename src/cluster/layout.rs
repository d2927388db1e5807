//! Where the embedded cluster keeps files under its state directory; shared
//! by the API server (serving `kubectl logs`) and the runner (writing them).

use std::path::{Path, PathBuf};

/// The lock a running cluster holds on its state directory (its snapshot
/// and kubeconfig are its own while it runs).
pub fn cluster_lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join(".cluster.lock")
}

/// Takes an exclusive lock on `path` (created if missing), held as long as
/// the returned file is open. `Ok(None)`: another open file holds it.
pub fn try_lock(path: &Path) -> std::io::Result<Option<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)?;
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// Log file of one container of one pod.
pub fn pod_log_path(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    state_dir
        .join("logs")
        .join(namespace)
        .join(pod)
        .join(format!("{container}.log"))
}
