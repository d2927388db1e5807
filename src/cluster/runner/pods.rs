//! Small facts about pods shared by the controllers, deterministic names,
//! and the expectations that keep a controller from acting twice on a stale view.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use sha2::{Digest, Sha256};

/// The pod's phase ("Pending" when unset).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Succeeded or Failed: its containers will not run again.
pub fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

/// The Ready condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Whether `pod` is controlled by the object with `uid`.
pub fn is_owned_by(pod: &Pod, uid: &str) -> bool {
    pod.metadata
        .owner_references
        .iter()
        .flatten()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

// The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A deterministic name suffix of `len` characters derived from `seed`.
pub fn encoded_hash(seed: &str, len: usize) -> String {
    let digest = Sha256::digest(seed.as_bytes());
    digest
        .iter()
        .take(len)
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A five-character pod name suffix derived from `seed`.
pub fn name_suffix(seed: &str) -> String {
    encoded_hash(seed, 5)
}

/// Writes a controller made and waits to see in its cache before acting on
/// the same owner again (as kube-controller-manager's expectations do).
#[derive(Debug, Clone)]
pub struct Expect {
    creates: HashSet<String>,
    deletes: HashSet<String>,
    since: Instant,
}

impl Expect {
    /// Expect these pod names to appear and those to disappear or start terminating.
    pub fn new(creates: Vec<String>, deletes: Vec<String>) -> Expect {
        Expect {
            creates: creates.into_iter().collect(),
            deletes: deletes.into_iter().collect(),
            since: Instant::now(),
        }
    }

    /// Nothing to wait for.
    pub fn is_empty(&self) -> bool {
        self.creates.is_empty() && self.deletes.is_empty()
    }

    /// Whether the cache shows every expected change, or the wait has lasted too long.
    pub fn satisfied(&self, pods: &[Pod]) -> bool {
        if self.since.elapsed() > Duration::from_secs(10) {
            return true;
        }
        let find = |name: &String| pods.iter().find(|p| p.metadata.name.as_ref() == Some(name));
        self.creates.iter().all(|n| find(n).is_some())
            && self.deletes.iter().all(|n| {
                find(n).is_none_or(|p| p.metadata.deletion_timestamp.is_some() || is_terminal(p))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    #[test]
    fn suffixes_are_deterministic_and_use_the_kubernetes_alphabet() {
        let a = name_suffix("uid/0");
        assert_eq!(a, name_suffix("uid/0"));
        assert_ne!(a, name_suffix("uid/1"));
        assert_eq!(a.len(), 5);
        assert!(a.bytes().all(|b| ALPHABET.contains(&b)));
    }

    #[test]
    fn expectations_wait_for_the_cache() {
        let pod = Pod {
            metadata: ObjectMeta {
                name: Some("a".into()),
                ..Default::default()
            },
            ..Default::default()
        };
        let expect = Expect::new(vec!["a".into()], vec!["b".into()]);
        assert!(!expect.satisfied(&[]));
        assert!(expect.satisfied(std::slice::from_ref(&pod)));
        let expect = Expect::new(vec![], vec!["a".into()]);
        assert!(!expect.satisfied(std::slice::from_ref(&pod)));
    }
}
