//! The resource types the server knows: the built-in kinds driftline uses
//! and the kinds of CustomResourceDefinitions created at run time.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::{
    CustomResourceColumnDefinition, CustomResourceDefinition, JSONSchemaProps,
};
use std::sync::Arc;

use serde_json::{Value, json};

use super::scale::ScalePaths;
use crate::cluster::schema::CrdSchema;

/// One served resource type at one group/version.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// API group; empty for the core group.
    pub group: String,
    /// Served version, e.g. `v1`.
    pub version: String,
    /// Kind, e.g. `ConfigMap`.
    pub kind: String,
    /// Plural resource name used in URLs, e.g. `configmaps`.
    pub plural: String,
    /// Singular name, e.g. `configmap`.
    pub singular: String,
    /// Whether objects live in namespaces.
    pub namespaced: bool,
    /// `kubectl get` short names.
    pub short_names: Vec<String>,
    /// `kubectl get all` style categories.
    pub categories: Vec<String>,
    /// Whether `/status` is a subresource (writes to the object ignore status).
    pub status_subresource: bool,
    /// Whether `metadata.generation` is tracked (bumped on spec changes).
    pub generation: bool,
    /// Structural schema of a CRD version, if any.
    pub schema: Option<JSONSchemaProps>,
    /// Table columns after Name: a CRD version's printer columns (Age when it
    /// declares none) or the columns kubectl shows for a built-in kind.
    pub columns: Vec<CustomResourceColumnDefinition>,
    /// The CRD version's schema with its CEL rules compiled once.
    pub admission: Option<Arc<CrdSchema>>,
    /// The CRD serving this type.
    pub crd: Option<Arc<CustomResourceDefinition>>,
    /// Where objects are stored: the group of the storage type (events of
    /// `events.k8s.io` share storage with core events).
    pub storage_group: String,
    /// Whether this type comes from a CRD.
    pub custom: bool,
    /// Where the replica counts live, when `/scale` is a subresource.
    pub scale: Option<ScalePaths>,
    /// A review kind (`SelfSubjectAccessReview`): create only, answered
    /// and never stored.
    pub review: bool,
}

impl ResourceType {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        ResourceType {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            singular: kind.to_lowercase(),
            namespaced,
            short_names: vec![],
            categories: vec![],
            status_subresource: false,
            generation: false,
            schema: None,
            columns: super::printers::builtin_columns(group, plural),
            admission: None,
            crd: None,
            storage_group: group.into(),
            custom: false,
            scale: None,
            review: false,
        }
    }

    fn review(mut self) -> Self {
        self.review = true;
        self
    }

    fn with_status(mut self) -> Self {
        self.status_subresource = true;
        self.generation = true;
        self
    }

    fn with_scale(mut self) -> Self {
        self.scale = Some(ScalePaths::workload());
        self
    }

    fn short(mut self, names: &[&str]) -> Self {
        self.short_names = names.iter().map(|s| s.to_string()).collect();
        self
    }

    fn all(mut self) -> Self {
        self.categories = vec!["all".into()];
        self
    }

    /// `apiVersion` of objects of this type.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// Storage key of the type: events of both groups share one store.
    pub fn storage_key(&self) -> (String, String) {
        (self.storage_group.clone(), self.plural.clone())
    }

    /// The discovery entries (`APIResource`) of the type and its subresources.
    pub fn discovery(&self) -> Vec<Value> {
        let verbs = if self.review {
            json!(["create"])
        } else {
            json!([
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch"
            ])
        };
        let mut out = vec![json!({
            "name": self.plural,
            "singularName": self.singular,
            "namespaced": self.namespaced,
            "kind": self.kind,
            "verbs": verbs,
            "shortNames": self.short_names,
            "categories": self.categories,
        })];
        if self.status_subresource {
            out.push(json!({
                "name": format!("{}/status", self.plural), "singularName": "", "namespaced": self.namespaced,
                "kind": self.kind, "verbs": ["get", "patch", "update"],
            }));
        }
        if self.scale.is_some() {
            out.push(json!({
                "name": format!("{}/scale", self.plural), "singularName": "", "namespaced": self.namespaced,
                "group": "autoscaling", "version": "v1", "kind": "Scale", "verbs": ["get", "patch", "update"],
            }));
        }
        if self.plural == "pods" && self.group.is_empty() {
            out.push(json!({"name": "pods/log", "singularName": "", "namespaced": true, "kind": "Pod", "verbs": ["get"]}));
        }
        out
    }
}

/// The built-in kinds served from start.
pub fn builtin_types() -> Vec<ResourceType> {
    let mut events_k8s =
        ResourceType::builtin("events.k8s.io", "v1", "Event", "events", true).short(&["ev"]);
    events_k8s.storage_group = String::new();
    vec![
        ResourceType::builtin("", "v1", "Namespace", "namespaces", false)
            .with_status()
            .short(&["ns"]),
        ResourceType::builtin("", "v1", "Pod", "pods", true)
            .with_status()
            .short(&["po"])
            .all(),
        ResourceType::builtin("", "v1", "Service", "services", true)
            .with_status()
            .short(&["svc"])
            .all(),
        ResourceType::builtin("", "v1", "ConfigMap", "configmaps", true).short(&["cm"]),
        ResourceType::builtin("", "v1", "Secret", "secrets", true),
        ResourceType::builtin("", "v1", "Event", "events", true).short(&["ev"]),
        ResourceType::builtin("", "v1", "Node", "nodes", false)
            .with_status()
            .short(&["no"]),
        ResourceType::builtin(
            "",
            "v1",
            "PersistentVolumeClaim",
            "persistentvolumeclaims",
            true,
        )
        .with_status()
        .short(&["pvc"]),
        ResourceType::builtin("", "v1", "ServiceAccount", "serviceaccounts", true).short(&["sa"]),
        ResourceType::builtin("", "v1", "Endpoints", "endpoints", true).short(&["ep"]),
        events_k8s,
        ResourceType::builtin("batch", "v1", "Job", "jobs", true)
            .with_status()
            .all(),
        ResourceType::builtin("apps", "v1", "Deployment", "deployments", true)
            .with_status()
            .with_scale()
            .short(&["deploy"])
            .all(),
        ResourceType::builtin("apps", "v1", "ReplicaSet", "replicasets", true)
            .with_status()
            .with_scale()
            .short(&["rs"])
            .all(),
        ResourceType::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        ResourceType::builtin(
            "authorization.k8s.io",
            "v1",
            "SelfSubjectAccessReview",
            "selfsubjectaccessreviews",
            false,
        )
        .review(),
        ResourceType::builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        )
        .with_status()
        .short(&["crd", "crds"]),
    ]
}

/// The resource types a CRD serves (one per served version).
pub fn crd_types(crd: &CustomResourceDefinition) -> Vec<ResourceType> {
    let spec = &crd.spec;
    let names = &spec.names;
    let shared = Arc::new(crd.clone());
    spec.versions
        .iter()
        .filter(|v| v.served)
        .map(|v| ResourceType {
            group: spec.group.clone(),
            version: v.name.clone(),
            kind: names.kind.clone(),
            plural: names.plural.clone(),
            singular: names
                .singular
                .clone()
                .unwrap_or_else(|| names.kind.to_lowercase()),
            namespaced: spec.scope == "Namespaced",
            short_names: names.short_names.clone().unwrap_or_default(),
            categories: names.categories.clone().unwrap_or_default(),
            status_subresource: v
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            generation: true,
            schema: v.schema.as_ref().and_then(|s| s.open_api_v3_schema.clone()),
            columns: super::printers::crd_columns(crd, &v.name).unwrap_or_default(),
            admission: v
                .schema
                .as_ref()
                .and_then(|s| s.open_api_v3_schema.clone())
                .map(|s| Arc::new(CrdSchema::new(s))),
            crd: Some(shared.clone()),
            storage_group: spec.group.clone(),
            custom: true,
            review: false,
            scale: v
                .subresources
                .as_ref()
                .and_then(|s| s.scale.as_ref())
                .map(|s| {
                    ScalePaths::from_crd(
                        &s.spec_replicas_path,
                        &s.status_replicas_path,
                        s.label_selector_path.as_deref(),
                    )
                }),
        })
        .collect()
}

/// All served types, looked up by group/version/plural.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    types: Vec<ResourceType>,
}

impl Registry {
    /// A registry with the built-in kinds.
    pub fn with_builtins() -> Self {
        Registry {
            types: builtin_types(),
        }
    }

    /// Finds a served type.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&ResourceType> {
        self.types
            .iter()
            .find(|t| t.group == group && t.version == version && t.plural == plural)
    }

    /// Serves (or re-serves) the types of a CRD, replacing earlier ones.
    pub fn install_crd(&mut self, crd: &CustomResourceDefinition) {
        self.remove_crd(&crd.spec.group, &crd.spec.names.plural);
        self.types.extend(crd_types(crd));
    }

    /// Stops serving the types of a CRD.
    pub fn remove_crd(&mut self, group: &str, plural: &str) {
        self.types
            .retain(|t| !(t.custom && t.group == group && t.plural == plural));
    }

    /// All served types.
    pub fn types(&self) -> &[ResourceType] {
        &self.types
    }

    /// `/api` or `/apis/{g}` groups: (group, versions) in a stable order.
    pub fn groups(&self) -> Vec<(String, Vec<String>)> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        for t in &self.types {
            match out.iter_mut().find(|(g, _)| *g == t.group) {
                Some((_, versions)) => {
                    if !versions.contains(&t.version) {
                        versions.push(t.version.clone());
                    }
                }
                None => out.push((t.group.clone(), vec![t.version.clone()])),
            }
        }
        out
    }

    /// `APIResourceList` of one group/version, or `None` if it is not served.
    pub fn resource_list(&self, group: &str, version: &str) -> Option<Value> {
        let resources: Vec<Value> = self
            .types
            .iter()
            .filter(|t| t.group == group && t.version == version)
            .flat_map(|t| t.discovery())
            .collect();
        if resources.is_empty() {
            return None;
        }
        let gv = if group.is_empty() {
            version.to_string()
        } else {
            format!("{group}/{version}")
        };
        Some(
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    }

    /// `APIGroupList` of all named groups.
    pub fn group_list(&self) -> Value {
        let groups: Vec<Value> = self
            .groups()
            .into_iter()
            .filter(|(g, _)| !g.is_empty())
            .map(|(g, versions)| {
                let vs: Vec<Value> = versions
                    .iter()
                    .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
                    .collect();
                json!({"name": g, "versions": vs, "preferredVersion": vs[0]})
            })
            .collect();
        json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
    }
}
