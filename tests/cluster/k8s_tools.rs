//! Where the real-Kubernetes test tools are: `etcd`, `kube-apiserver`,
//! `kube-controller-manager`, `kube-scheduler` and `helm`, built from the
//! pinned Go modules in `tools/k8s/` (`tools/k8s/build.sh DIR`; `.ci/run`
//! builds them into a cache and sets `DRIFTLINE_K8S_TOOLS`). A tool is looked
//! up in `DRIFTLINE_K8S_TOOLS`, then on `PATH`. Missing under CI (`CI` set),
//! the test fails; elsewhere it is skipped with a `SKIPPED:` line naming it.

use std::path::PathBuf;

fn find(name: &str) -> Option<PathBuf> {
    let dirs = std::env::var_os("DRIFTLINE_K8S_TOOLS")
        .into_iter()
        .chain(std::env::var_os("PATH"));
    dirs.flat_map(|d| std::env::split_paths(&d).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// The tools `test` needs, or `None` (after saying which are missing) where
/// a developer has not built them. Under CI a missing tool fails the test.
pub fn tools_or_skip<const N: usize>(test: &str, names: [&str; N]) -> Option<[PathBuf; N]> {
    let found = names.map(find);
    let missing: Vec<&str> = names
        .iter()
        .zip(&found)
        .filter(|(_, p)| p.is_none())
        .map(|(n, _)| *n)
        .collect();
    if missing.is_empty() {
        return Some(found.map(|p| p.expect("checked above")));
    }
    let ci = std::env::var("CI").unwrap_or_default();
    assert!(
        ci.is_empty(),
        "{test}: {missing:?} not in DRIFTLINE_K8S_TOOLS nor on PATH and CI={ci}: \
         .ci/run builds them (tools/k8s/build.sh); see its real-Kubernetes block"
    );
    eprintln!(
        "SKIPPED: {test}: {missing:?} not found (build them: tools/k8s/build.sh DIR, \
         then DRIFTLINE_K8S_TOOLS=DIR)"
    );
    None
}
