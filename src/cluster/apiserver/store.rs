//! The object store: every object as JSON, one global resourceVersion, and
//! the event history that watches replay from.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use serde_json::{Value, json};

use super::error::ApiError;
use super::resources::{Registry, ResourceType};

/// `(storage group, plural)`: which collection an object lives in.
pub type TypeKey = (String, String);
/// `(namespace, name)` of an object; namespace is empty for cluster-scoped ones.
pub type ObjectKey = (String, String);

/// What happened to an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Created.
    Added,
    /// Changed.
    Modified,
    /// Removed.
    Deleted,
}

/// One change, as replayed to watchers.
#[derive(Debug)]
pub struct Change {
    /// resourceVersion the change produced.
    pub rv: u64,
    /// Kind of change.
    pub event: EventType,
    /// Collection of the object.
    pub type_key: TypeKey,
    /// Namespace of the object ("" for cluster-scoped).
    pub namespace: String,
    /// The object after the change (before removal for deletions).
    pub object: Arc<Value>,
    /// The object before a modification, so filtered watches can tell an
    /// object entering or leaving their selection.
    pub previous: Option<Arc<Value>>,
    /// The object's JSON, encoded once and shared by every watcher.
    pub encoded: std::sync::OnceLock<bytes::Bytes>,
}

/// All objects, the global resourceVersion and the watch history.
/// Cloning shares the objects (they are `Arc`s); dry runs write to a clone.
#[derive(Debug, Clone)]
pub struct Store {
    rv: u64,
    objects: HashMap<TypeKey, BTreeMap<ObjectKey, Arc<Value>>>,
    history: VecDeque<Arc<Change>>,
    history_capacity: usize,
    /// Every change with rv > floor is still in `history`.
    floor: u64,
    /// The served resource types, including those of installed CRDs.
    pub registry: Registry,
}

/// Current time as Kubernetes writes timestamps.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Namespace and name of an object.
pub fn object_key(obj: &Value) -> ObjectKey {
    let meta = |k: &str| {
        obj.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    (meta("namespace"), meta("name"))
}

impl Store {
    /// An empty store serving the built-in kinds, with the default namespaces.
    pub fn new(history_capacity: usize) -> Self {
        let mut store = Store {
            rv: 0,
            objects: HashMap::new(),
            history: VecDeque::new(),
            history_capacity: history_capacity.max(1),
            floor: 0,
            registry: Registry::with_builtins(),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let obj = json!({
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": {"name": ns, "uid": uuid::Uuid::new_v4().to_string(), "creationTimestamp": now_rfc3339(),
                             "labels": {"kubernetes.io/metadata.name": ns}},
                "spec": {"finalizers": ["kubernetes"]},
                "status": {"phase": "Active"},
            });
            store.insert_raw(&(String::new(), "namespaces".into()), obj, EventType::Added);
        }
        store
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    /// Drops the whole watch history, as etcd compaction does; watches from
    /// older versions then get 410 Gone.
    pub fn compact(&mut self) {
        self.history.clear();
        self.floor = self.rv;
    }

    /// Number of stored objects.
    pub fn len(&self) -> usize {
        self.objects.values().map(BTreeMap::len).sum()
    }

    /// Looks up one object.
    pub fn get(&self, ty: &TypeKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(ty)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a type, optionally in one namespace, ordered by namespace/name,
    /// starting after `after`.
    pub fn list<'a>(
        &'a self,
        ty: &TypeKey,
        ns: Option<&'a str>,
        after: Option<ObjectKey>,
    ) -> Box<dyn Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + 'a> {
        let Some(map) = self.objects.get(ty) else {
            return Box::new(std::iter::empty());
        };
        use std::ops::Bound;
        let start = match after {
            Some(k) => Bound::Excluded(k),
            None => match ns {
                Some(ns) => Bound::Included((ns.to_string(), String::new())),
                None => Bound::Unbounded,
            },
        };
        Box::new(
            map.range((start, Bound::Unbounded))
                .take_while(move |((n, _), _)| ns.is_none_or(|want| n == want)),
        )
    }

    /// All objects of every type (for snapshots and garbage collection).
    pub fn all(&self) -> impl Iterator<Item = (&TypeKey, &Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(ty, m)| m.values().map(move |v| (ty, v)))
    }

    /// Changes after `rv` that are still in the history, or 410 if older ones were dropped.
    pub fn changes_since(&self, rv: u64) -> Result<Vec<Arc<Change>>, ApiError> {
        if rv < self.floor {
            return Err(ApiError::Gone {
                requested: rv,
                oldest: self.floor,
            });
        }
        // History is ordered by rv; skip what the watcher has seen.
        let start = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history.range(start..).cloned().collect())
    }

    fn record(&mut self, change: Change) {
        if self.history.len() >= self.history_capacity
            && let Some(old) = self.history.pop_front()
        {
            self.floor = old.rv;
        }
        self.history.push_back(Arc::new(change));
    }

    /// Stores an object with a fresh resourceVersion and records the change.
    /// Returns the stored object.
    pub fn insert_raw(&mut self, ty: &TypeKey, mut obj: Value, event: EventType) -> Arc<Value> {
        self.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let (ns, name) = object_key(&obj);
        let obj = Arc::new(obj);
        let previous = self
            .objects
            .entry(ty.clone())
            .or_default()
            .insert((ns.clone(), name), obj.clone());
        self.record(Change {
            rv: self.rv,
            event,
            type_key: ty.clone(),
            namespace: ns,
            object: obj.clone(),
            previous,
            encoded: Default::default(),
        });
        obj
    }

    /// Removes an object, recording a DELETED change carrying a new resourceVersion.
    pub fn remove_raw(&mut self, ty: &TypeKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        let old = self
            .objects
            .get_mut(ty)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.rv += 1;
        let mut obj = (*old).clone();
        obj["metadata"]["resourceVersion"] = json!(self.rv.to_string());
        let obj = Arc::new(obj);
        self.record(Change {
            rv: self.rv,
            event: EventType::Deleted,
            type_key: ty.clone(),
            namespace: ns.to_string(),
            object: obj.clone(),
            previous: None,
            encoded: Default::default(),
        });
        Some(obj)
    }

    /// Restores objects from a snapshot without recording history.
    pub fn restore(&mut self, rv: u64, objects: Vec<(TypeKey, Value)>) {
        self.objects.clear();
        self.history.clear();
        for (ty, obj) in objects {
            let key = object_key(&obj);
            self.objects
                .entry(ty)
                .or_default()
                .insert(key, Arc::new(obj));
        }
        self.rv = rv;
        self.floor = rv;
    }

    /// Resource type serving a storage collection (its first served version).
    pub fn type_for_key(&self, key: &TypeKey) -> Option<&ResourceType> {
        self.registry
            .types()
            .iter()
            .find(|t| t.group == key.0 && t.plural == key.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cm(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[test]
    fn history_replays_changes_after_a_version_and_expires_old_ones() {
        let ty: TypeKey = (String::new(), "configmaps".into());
        let mut store = Store::new(3);
        let start = store.resource_version();
        for n in ["a", "b", "c", "d"] {
            store.insert_raw(&ty, cm(n), EventType::Added);
        }
        // Capacity 3: the change that created "a" is gone.
        assert!(matches!(
            store.changes_since(start),
            Err(ApiError::Gone { .. })
        ));
        let recent = store.changes_since(start + 2).unwrap();
        assert_eq!(recent.len(), 2);
        assert_eq!(recent[0].object["metadata"]["name"], "c");
        store.compact();
        assert!(store.changes_since(start + 3).is_err());
        assert!(
            store
                .changes_since(store.resource_version())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn list_stays_within_a_namespace_and_resumes_after_a_key() {
        let ty: TypeKey = (String::new(), "configmaps".into());
        let mut store = Store::new(100);
        for (ns, n) in [("a", "x"), ("b", "x"), ("b", "y"), ("c", "x")] {
            let mut o = cm(n);
            o["metadata"]["namespace"] = json!(ns);
            store.insert_raw(&ty, o, EventType::Added);
        }
        let in_b: Vec<_> = store
            .list(&ty, Some("b"), None)
            .map(|(k, _)| k.1.clone())
            .collect();
        assert_eq!(in_b, ["x", "y"]);
        let after: Vec<_> = store
            .list(&ty, None, Some(("b".into(), "x".into())))
            .map(|(k, _)| k.clone())
            .collect();
        assert_eq!(
            after,
            [
                ("b".to_string(), "y".to_string()),
                ("c".to_string(), "x".to_string())
            ]
        );
    }
}
