//! Which cached children belong to which Model. A reconcile reads one
//! Model's children; snapshotting a whole cache (thousands of objects with a
//! thousand Models) and filtering it by label on every reconcile made each
//! one cost O(all children). The index keeps, per Model, the names of its
//! children, fed by the same watch events as the cache, and reads the
//! objects from the cache by name.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

use kube::Resource;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;

use crate::api::names::MODEL_LABEL;

/// (namespace, Model name) → the names of its children.
type Names = HashMap<(String, String), BTreeSet<String>>;

#[derive(Default)]
struct Index {
    live: Names,
    /// While a watch (re)lists: the names seen so far, swapped in when the
    /// list is complete, as the cache itself does.
    relisting: Option<Names>,
}

fn key<K: Resource>(obj: &K) -> Option<((String, String), String)> {
    let meta = obj.meta();
    let model = meta.labels.as_ref()?.get(MODEL_LABEL)?.clone();
    Some(((meta.namespace.clone()?, model), meta.name.clone()?))
}

impl Index {
    fn apply<K: Resource>(&mut self, event: &watcher::Event<K>) {
        match event {
            watcher::Event::Apply(obj) => {
                // A child keeps its Model label for life; a relabelled one
                // is found under its new Model and skipped under the old
                // (see `Children::of`).
                if let Some((model, name)) = key(obj) {
                    self.live.entry(model).or_default().insert(name);
                }
            }
            watcher::Event::Delete(obj) => {
                if let Some((model, name)) = key(obj)
                    && let Some(names) = self.live.get_mut(&model)
                {
                    names.remove(&name);
                    if names.is_empty() {
                        self.live.remove(&model);
                    }
                }
            }
            watcher::Event::Init => self.relisting = Some(Names::new()),
            watcher::Event::InitApply(obj) => {
                if let (Some((model, name)), Some(names)) = (key(obj), self.relisting.as_mut()) {
                    names.entry(model).or_default().insert(name);
                }
            }
            watcher::Event::InitDone => {
                if let Some(names) = self.relisting.take() {
                    self.live = names;
                }
            }
        }
    }
}

/// A cache of one kind of child, with its index by Model.
#[derive(Clone)]
pub struct Children<K: Resource<DynamicType = ()> + Clone + 'static> {
    store: Store<K>,
    index: Arc<RwLock<Index>>,
}

/// Feeds a [`Children`]' index: call it on every watch event before the
/// cache's writer sees it.
#[derive(Clone)]
pub struct IndexWriter {
    index: Arc<RwLock<Index>>,
}

impl IndexWriter {
    pub fn apply<K: Resource>(&self, event: &watcher::Event<K>) {
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .apply(event);
    }

    /// The step of a watch stream that feeds the index and passes each
    /// event on: `.map_ok(writer.feed())` before `.reflect(cache_writer)`.
    pub fn feed<K: Resource>(self) -> impl FnMut(watcher::Event<K>) -> watcher::Event<K> {
        move |event| {
            self.apply(&event);
            event
        }
    }
}

impl<K: Resource<DynamicType = ()> + Clone + 'static> Children<K> {
    /// The cache `store` with an index to be fed by the returned writer.
    pub fn new(store: Store<K>) -> (Self, IndexWriter) {
        let index = Arc::new(RwLock::new(Index::default()));
        (
            Self {
                store,
                index: index.clone(),
            },
            IndexWriter { index },
        )
    }

    /// The cache itself.
    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// Model `model`'s children in namespace `ns`, by name.
    pub fn of(&self, ns: &str, model: &str) -> Vec<Arc<K>> {
        let names: Vec<String> = self
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .live
            .get(&(ns.to_string(), model.to_string()))
            .map(|n| n.iter().cloned().collect())
            .unwrap_or_default();
        names
            .iter()
            .filter_map(|name| self.store.get(&ObjectRef::new(name).within(ns)))
            // The cache may already hold a newer copy than the index saw.
            .filter(|o| key(o.as_ref()).is_some_and(|((_, m), _)| m == model))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    fn child(name: &str, model: &str) -> ConfigMap {
        let mut c = ConfigMap::default();
        c.metadata.name = Some(name.into());
        c.metadata.namespace = Some("ml".into());
        c.metadata.labels = Some([(MODEL_LABEL.to_string(), model.to_string())].into());
        c
    }

    fn names(children: &Children<ConfigMap>, model: &str) -> Vec<String> {
        children
            .of("ml", model)
            .iter()
            .map(|c| c.metadata.name.clone().unwrap_or_default())
            .collect()
    }

    #[test]
    fn each_model_sees_its_own_children_through_adds_deletes_and_a_relist() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let (children, index) = Children::new(store);
        let mut feed = |event: watcher::Event<ConfigMap>| {
            index.apply(&event);
            writer.apply_watcher_event(&event);
        };
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(child("wine-v1", "wine")));
        feed(watcher::Event::InitApply(child("iris-v1", "iris")));
        feed(watcher::Event::InitDone);
        feed(watcher::Event::Apply(child("wine-v2", "wine")));
        assert_eq!(names(&children, "wine"), ["wine-v1", "wine-v2"]);
        assert_eq!(names(&children, "iris"), ["iris-v1"]);

        feed(watcher::Event::Delete(child("wine-v1", "wine")));
        assert_eq!(names(&children, "wine"), ["wine-v2"]);

        // A relist that no longer has iris-v1 (deleted while the watch was
        // down) forgets it; one in another namespace is not this Model's.
        feed(watcher::Event::Init);
        feed(watcher::Event::InitApply(child("wine-v2", "wine")));
        feed(watcher::Event::InitApply(child("wine-v3", "wine")));
        let mut elsewhere = child("wine-v9", "wine");
        elsewhere.metadata.namespace = Some("other".into());
        feed(watcher::Event::InitApply(elsewhere));
        feed(watcher::Event::InitDone);
        assert_eq!(names(&children, "wine"), ["wine-v2", "wine-v3"]);
        assert!(names(&children, "iris").is_empty());
        assert_eq!(children.of("other", "wine").len(), 1);
        assert!(children.of("ml", "nobody").is_empty());
    }
}
