//! Where the real-Kubernetes test tools are: `etcd`, `kube-apiserver`,
//! `kube-controller-manager`, `kube-scheduler` and `helm`, built from the
//! pinned Go modules in `tools/k8s/` (`tools/k8s/build.sh DIR`; `.ci/run`
//! builds them into a cache and sets `DRIFTLINE_K8S_TOOLS`). A tool is looked
//! up in `DRIFTLINE_K8S_TOOLS`, then on `PATH`. A missing one skips the test,
//! or fails it under CI (`tests/support/require_tool.rs`).

use std::path::PathBuf;

use crate::require_tool::require_tool;

fn find(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("DRIFTLINE_K8S_TOOLS")
        .into_iter()
        .chain(std::env::var_os("PATH"));
    dirs.flat_map(|d| std::env::split_paths(&d).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tools `test` needs, or `None` (after saying which are missing) where
/// a developer has not built them; under CI a missing tool fails the test.
pub fn tools_or_skip<const N: usize>(test: &str, names: [&str; N]) -> Option<[PathBuf; N]> {
    let found = names.map(find);
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(n, _)| *n)
        .collect();
    let tools = if missing.is_empty() {
        Ok(found.map(|p| p.expect("checked above")))
    } else {
        Err(format!(
            "{missing:?} not in DRIFTLINE_K8S_TOOLS nor on PATH (build them: \
             tools/k8s/build.sh DIR, then DRIFTLINE_K8S_TOOLS=DIR; .ci/run does)"
        ))
    };
    require_tool(test, tools)
}
