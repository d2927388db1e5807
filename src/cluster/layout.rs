//! Where the embedded cluster keeps files under its state directory; shared
//! by the API server (serving `kubectl logs`) and the runner (writing them).

use std::path::{Path, PathBuf};

/// Log file of one container of one pod.
pub fn pod_log_path(state_dir: &Path, namespace: &str, pod: &str, container: &str) -> PathBuf {
    state_dir
        .join("logs")
        .join(namespace)
        .join(pod)
        .join(format!("{container}.log"))
}
