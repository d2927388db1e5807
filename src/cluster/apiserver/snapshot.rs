//! Snapshot persistence: the whole store as one JSON file, written
//! atomically (temporary file, then rename) so a crash never leaves half a file.

use std::path::{Path, PathBuf};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use serde_json::{Value, json};

use super::store::Store;

/// Why a snapshot could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing the file failed.
    #[error(
        "cannot read or write the snapshot {path} (check the state directory's permissions and free space)"
    )]
    Io {
        /// The snapshot file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a snapshot this server wrote.
    #[error("snapshot {path} is not a valid driftline cluster snapshot: {message}")]
    Format {
        /// The snapshot file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// Serialises the store.
pub fn to_json(store: &Store) -> Value {
    let objects: Vec<Value> = store
        .all()
        .map(|((group, resource), obj)| json!({"group": group, "resource": resource, "object": obj.as_ref()}))
        .collect();
    json!({"format": "driftline-cluster-snapshot/v1", "resourceVersion": store.resource_version(), "objects": objects})
}

/// Writes the snapshot atomically.
pub fn write(path: &Path, snapshot: &Value) -> Result<(), SnapshotError> {
    let io = |source| SnapshotError::Io {
        path: path.to_path_buf(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(snapshot).map_err(|e| SnapshotError::Format {
        path: path.into(),
        message: e.to_string(),
    })?;
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Loads a snapshot into the store (CRDs are served again); a missing file is no error.
pub fn load(path: &Path, store: &mut Store) -> Result<bool, SnapshotError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => {
            return Err(SnapshotError::Io {
                path: path.into(),
                source,
            });
        }
    };
    let bad = |message: String| SnapshotError::Format {
        path: path.into(),
        message,
    };
    let doc: Value = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    let rv = doc
        .get("resourceVersion")
        .and_then(Value::as_u64)
        .ok_or_else(|| bad("missing resourceVersion".into()))?;
    let list = doc
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("missing objects".into()))?;
    let mut objects = Vec::with_capacity(list.len());
    for (i, entry) in list.iter().enumerate() {
        let field = |k: &str| entry.get(k).and_then(Value::as_str).map(String::from);
        let (Some(group), Some(resource), Some(obj)) =
            (field("group"), field("resource"), entry.get("object"))
        else {
            return Err(bad(format!("object #{i} lacks group, resource or object")));
        };
        if group == "apiextensions.k8s.io" && resource == "customresourcedefinitions" {
            let crd: CustomResourceDefinition = serde_json::from_value(obj.clone())
                .map_err(|e| bad(format!("object #{i} is not a valid CRD: {e}")))?;
            store.registry.install_crd(&crd);
        }
        objects.push(((group, resource), obj.clone()));
    }
    store.restore(rv, objects);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::apiserver::store::EventType;

    #[test]
    fn snapshot_round_trips_objects_and_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snap.json");
        let mut store = Store::new(10);
        let ty = (String::new(), "configmaps".to_string());
        store.insert_raw(
            &ty,
            json!({"metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}}),
            EventType::Added,
        );
        write(&path, &to_json(&store)).unwrap();
        let mut restored = Store::new(10);
        assert!(load(&path, &mut restored).unwrap());
        assert_eq!(restored.resource_version(), store.resource_version());
        assert_eq!(restored.get(&ty, "default", "c").unwrap()["data"]["a"], "1");
        std::fs::write(&path, "{").unwrap();
        assert!(load(&path, &mut Store::new(10)).is_err());
    }
}
