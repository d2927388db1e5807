//! Bytes at a URI: plain paths and `file://` on the local disk, `s3://`,
//! `gs://` and `az://` through `object_store`, `https://` through reqwest.
//!
//! Cloud credentials come from the usual environment variables
//! (`AWS_*`, `GOOGLE_*`, `AZURE_*`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};

/// A cause of another library's kind (object_store, io, reqwest), kept whole.
pub type Cause = Box<dyn std::error::Error + Send + Sync>;

/// Why a URI could not be read, listed or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{uri}` is not a location driftline can use")]
    InvalidUri {
        uri: String,
        #[source]
        source: Cause,
    },
    #[error("`{uri}` does not exist")]
    NotFound { uri: String },
    #[error("cannot read `{uri}`")]
    Read {
        uri: String,
        #[source]
        source: Cause,
    },
    #[error("cannot list `{uri}`")]
    List {
        uri: String,
        #[source]
        source: Cause,
    },
    #[error("cannot write `{uri}`")]
    Write {
        uri: String,
        #[source]
        source: Cause,
    },
    #[error(
        "`{uri}` already holds an artifact; versions are immutable, write the new one to a new location"
    )]
    Exists { uri: String },
}

/// A parsed location.
pub(super) enum Location {
    Local(PathBuf),
    Remote {
        store: Arc<dyn ObjectStore>,
        path: StorePath,
    },
    Http(url::Url),
}

fn local_path(uri: &str) -> Option<PathBuf> {
    if let Some(rest) = uri.strip_prefix("file://") {
        // `file://pipelines/x.csv` is relative to the working directory; `file:///x` is absolute.
        return Some(PathBuf::from(rest));
    }
    if !uri.contains("://") {
        return Some(PathBuf::from(uri));
    }
    None
}

/// `uri` with a relative local path made absolute against `base` (a
/// process started elsewhere, such as a pod, would not find it); object-store
/// URIs and absolute paths are returned as they are.
pub fn absolute(uri: &str, base: &Path) -> String {
    match local_path(uri) {
        Some(p) if p.is_relative() => format!("file://{}", base.join(p).display()),
        _ => uri.to_string(),
    }
}

pub(super) fn parse(uri: &str) -> Result<Location, StoreError> {
    if uri.trim().is_empty() {
        return Err(StoreError::InvalidUri {
            uri: uri.into(),
            source: "it is empty".into(),
        });
    }
    if let Some(path) = local_path(uri) {
        return Ok(Location::Local(path));
    }
    let url = url::Url::parse(uri).map_err(|e| StoreError::InvalidUri {
        uri: uri.into(),
        source: e.into(),
    })?;
    match url.scheme() {
        "http" | "https" => Ok(Location::Http(url)),
        "s3" | "s3a" | "gs" | "az" | "azure" | "abfs" | "abfss" => {
            // Only the cloud variables: other environment names could collide with option aliases.
            let options = std::env::vars().filter(|(k, _)| {
                k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
            });
            let (store, path) = object_store::parse_url_opts(&url, options).map_err(|e| {
                StoreError::InvalidUri {
                    uri: uri.into(),
                    source: e.into(),
                }
            })?;
            Ok(Location::Remote {
                store: Arc::from(store),
                path,
            })
        }
        other => Err(StoreError::InvalidUri {
            uri: uri.into(),
            source: format!(
                "unsupported scheme `{other}`; use a path, file://, s3://, gs://, az:// or https://"
            )
            .into(),
        }),
    }
}

/// `prefix/name`, without doubling the slash.
pub fn join(prefix: &str, name: &str) -> String {
    format!("{}/{}", prefix.trim_end_matches('/'), name)
}

fn http_client(uri: &str) -> Result<reqwest::Client, StoreError> {
    // reqwest is built without a default TLS provider; ring is the project's choice.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .build()
        .map_err(|e| StoreError::Read {
            uri: uri.into(),
            source: e.into(),
        })
}

/// Reads all bytes of one object.
pub async fn read_bytes(uri: &str) -> Result<Bytes, StoreError> {
    match parse(uri)? {
        Location::Local(path) => match tokio::fs::read(&path).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(StoreError::NotFound { uri: uri.into() })
            }
            Err(e) => Err(StoreError::Read {
                uri: uri.into(),
                source: e.into(),
            }),
        },
        Location::Remote { store, path } => {
            let got = store.get(&path).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => StoreError::NotFound { uri: uri.into() },
                other => StoreError::Read {
                    uri: uri.into(),
                    source: other.into(),
                },
            })?;
            got.bytes().await.map_err(|e| StoreError::Read {
                uri: uri.into(),
                source: e.into(),
            })
        }
        Location::Http(url) => {
            let response =
                http_client(uri)?
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| StoreError::Read {
                        uri: uri.into(),
                        source: e.into(),
                    })?;
            if response.status() == reqwest::StatusCode::NOT_FOUND {
                return Err(StoreError::NotFound { uri: uri.into() });
            }
            if !response.status().is_success() {
                return Err(StoreError::Read {
                    uri: uri.into(),
                    source: format!("HTTP status {}", response.status()).into(),
                });
            }
            response.bytes().await.map_err(|e| StoreError::Read {
                uri: uri.into(),
                source: e.into(),
            })
        }
    }
}

/// Size in bytes of one object.
pub async fn size_of(uri: &str) -> Result<u64, StoreError> {
    match parse(uri)? {
        Location::Local(path) => tokio::fs::metadata(&path)
            .await
            .map(|m| m.len())
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => StoreError::NotFound { uri: uri.into() },
                _ => StoreError::Read {
                    uri: uri.into(),
                    source: e.into(),
                },
            }),
        Location::Remote { store, path } => {
            store
                .head(&path)
                .await
                .map(|m| m.size)
                .map_err(|e| StoreError::Read {
                    uri: uri.into(),
                    source: e.into(),
                })
        }
        Location::Http(_) => read_bytes(uri).await.map(|b| b.len() as u64),
    }
}

/// A cheap tag of the object's current version, which changes when its bytes
/// do: the store's ETag, else size and modification time (a local file:
/// size and mtime in nanoseconds; https: the whole body's sha256). Used to
/// notice new training data without reading it.
pub async fn version_tag(uri: &str) -> Result<String, StoreError> {
    let read_err = |source: Cause| StoreError::Read {
        uri: uri.into(),
        source,
    };
    match parse(uri)? {
        Location::Local(path) => {
            let meta = tokio::fs::metadata(&path)
                .await
                .map_err(|e| match e.kind() {
                    std::io::ErrorKind::NotFound => StoreError::NotFound { uri: uri.into() },
                    _ => read_err(e.into()),
                })?;
            Ok(local_tag(&meta))
        }
        Location::Remote { store, path } => {
            let meta = store.head(&path).await.map_err(|e| match e {
                object_store::Error::NotFound { .. } => StoreError::NotFound { uri: uri.into() },
                other => read_err(other.into()),
            })?;
            Ok(remote_tag(&meta))
        }
        Location::Http(_) => read_bytes(uri)
            .await
            .map(|b| format!("sha256:{}", super::table::sha256_hex(&b))),
    }
}

/// One object found under a prefix: its URI, size and version tag (the
/// store's ETag, else size and modification time), from the listing alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ObjectInfo {
    pub uri: String,
    pub size: u64,
    pub tag: String,
}

/// URIs of every object under `prefix` whose name ends with `suffix`, sorted.
/// A prefix that does not exist lists as empty.
pub async fn list(prefix: &str, suffix: &str) -> Result<Vec<String>, StoreError> {
    Ok(list_objects(prefix)
        .await?
        .into_iter()
        .map(|o| o.uri)
        .filter(|uri| uri.ends_with(suffix))
        .collect())
}

/// Every object under `prefix` with its size and version tag, sorted by
/// URI, from one listing (no object is opened). A prefix that does not
/// exist lists as empty.
pub async fn list_objects(prefix: &str) -> Result<Vec<ObjectInfo>, StoreError> {
    let list_err = |source: Cause| StoreError::List {
        uri: prefix.into(),
        source,
    };
    let base = prefix.trim_end_matches('/');
    let mut found = match parse(prefix)? {
        Location::Local(root) => {
            // A walk that meets a directory or file removed under it (a
            // folder renamed, a partition rewritten) saw only part of the
            // prefix: taken as the listing, it would look like data that
            // vanished, then arrived. Walked again; refused if it keeps moving.
            let mut listed = None;
            for _ in 0..3 {
                if let Some(found) = walk_local(&root, base)
                    .await
                    .map_err(|e| list_err(e.into()))?
                {
                    listed = Some(found);
                    break;
                }
            }
            listed.ok_or_else(|| {
                list_err(
                    "files under it were removed while it was listed, three times in a row".into(),
                )
            })?
        }
        Location::Remote { store, path } => {
            let metas: Vec<_> = store
                .list(Some(&path))
                .try_collect()
                .await
                .map_err(|e| list_err(e.into()))?;
            metas
                .into_iter()
                .filter_map(|m| {
                    let rel = m
                        .location
                        .as_ref()
                        .strip_prefix(path.as_ref())?
                        .trim_start_matches('/')
                        .to_string();
                    Some(ObjectInfo {
                        uri: join(base, &rel),
                        size: m.size,
                        tag: remote_tag(&m),
                    })
                })
                .collect()
        }
        Location::Http(_) => {
            return Err(list_err(
                "https locations cannot be listed; use a path or an object store".into(),
            ));
        }
    };
    found.sort_by(|a, b| a.uri.cmp(&b.uri));
    Ok(found)
}

/// Every file under `root` (URIs under `base`), or `None` when something
/// under it was removed during the walk. A missing `root` is empty.
async fn walk_local(
    root: &std::path::Path,
    base: &str,
) -> Result<Option<Vec<ObjectInfo>>, std::io::Error> {
    let mut found = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let mut entries = match tokio::fs::read_dir(&dir).await {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && dir == root => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        while let Some(entry) = entries.next_entry().await? {
            let path = entry.path();
            let meta = match entry.metadata().await {
                Ok(meta) => meta,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                Err(e) => return Err(e),
            };
            if meta.is_dir() {
                pending.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            found.push(ObjectInfo {
                uri: join(base, &rel),
                size: meta.len(),
                tag: local_tag(&meta),
            });
        }
    }
    Ok(Some(found))
}

/// A local file's version: size and modification time in nanoseconds.
fn local_tag(meta: &std::fs::Metadata) -> String {
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos());
    format!("size:{} mtime:{mtime}", meta.len())
}

/// An object's version: its ETag, else size and modification time.
fn remote_tag(meta: &object_store::ObjectMeta) -> String {
    match &meta.e_tag {
        Some(tag) => format!("etag:{tag}"),
        None => format!(
            "size:{} modified:{}",
            meta.size,
            meta.last_modified.to_rfc3339()
        ),
    }
}

/// Checks that `uri` names a location this module can reach (a path, a
/// known scheme, a valid bucket URL), without touching it.
pub fn check(uri: &str) -> Result<(), StoreError> {
    parse(uri).map(|_| ())
}

/// Writes one object so that readers see all of it or none: on a local disk
/// a temporary sibling renamed into place, on an object store one put (which
/// stores publish atomically). Creates missing local directories.
pub async fn write_object(uri: &str, data: Bytes) -> Result<(), StoreError> {
    let write_err = |source: Cause| StoreError::Write {
        uri: uri.into(),
        source,
    };
    match parse(uri)? {
        Location::Local(path) => {
            let (parent, tmp) =
                staging_sibling(&path).ok_or_else(|| write_err("names no file".into()))?;
            // One trip to the blocking pool with the bytes moved in:
            // `tokio::fs::write` copies what it writes, and each of its
            // calls is a trip of its own.
            tokio::task::spawn_blocking(move || {
                let result = std::fs::create_dir_all(&parent)
                    .and_then(|()| std::fs::write(&tmp, &data))
                    .and_then(|()| std::fs::rename(&tmp, &path));
                if result.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                result
            })
            .await
            .map_err(|e| write_err(e.into()))?
            .map_err(|e| write_err(e.into()))
        }
        Location::Remote { store, path } => store
            .put(&path, data.into())
            .await
            .map(|_| ())
            .map_err(|e| write_err(e.into())),
        Location::Http(_) => Err(write_err(
            "https locations are read-only; write to a path or an object store".into(),
        )),
    }
}

/// Writes `files` under `prefix` so that readers see all of them or none.
///
/// On a local disk the files go to a temporary sibling directory that is
/// renamed into place; on an object store every file is uploaded before the
/// last one (the manifest), whose presence marks the version as complete.
/// Refuses to overwrite a location that already holds the last file.
pub async fn write_atomically(prefix: &str, files: &[(&str, Bytes)]) -> Result<(), StoreError> {
    let Some((last_name, _)) = files.last() else {
        return Ok(());
    };
    match parse(prefix)? {
        Location::Local(dir) => write_local(prefix, &dir, files).await,
        Location::Remote { store, path } => {
            let last = path.clone().join(*last_name);
            match store.head(&last).await {
                Ok(_) => return Err(StoreError::Exists { uri: prefix.into() }),
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    return Err(StoreError::Write {
                        uri: prefix.into(),
                        source: e.into(),
                    });
                }
            }
            for (name, data) in files {
                store
                    .put(&path.clone().join(*name), data.clone().into())
                    .await
                    .map_err(|e| StoreError::Write {
                        uri: join(prefix, name),
                        source: e.into(),
                    })?;
            }
            Ok(())
        }
        Location::Http(_) => Err(StoreError::Write {
            uri: prefix.into(),
            source: "https locations are read-only; write artifacts to a path or an object store"
                .into(),
        }),
    }
}

/// The directory holding `path` and a unique hidden name beside it, where a
/// write is staged before one rename publishes it; `None` when `path` names
/// no file or directory (e.g. `..`).
fn staging_sibling(path: &Path) -> Option<(PathBuf, PathBuf)> {
    let name = path.file_name()?.to_string_lossy().into_owned();
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let tmp = parent.join(format!(".{name}.tmp-{}", uuid::Uuid::new_v4()));
    Some((parent, tmp))
}

async fn write_local(prefix: &str, dir: &Path, files: &[(&str, Bytes)]) -> Result<(), StoreError> {
    let write_err = |e: std::io::Error| StoreError::Write {
        uri: prefix.into(),
        source: e.into(),
    };
    if let Ok(mut entries) = tokio::fs::read_dir(dir).await
        && entries.next_entry().await.map_err(write_err)?.is_some()
    {
        return Err(StoreError::Exists { uri: prefix.into() });
    }
    let (parent, tmp) = staging_sibling(dir).ok_or_else(|| StoreError::InvalidUri {
        uri: prefix.into(),
        source: "names no directory".into(),
    })?;
    tokio::fs::create_dir_all(&parent)
        .await
        .map_err(write_err)?;
    let result = async {
        tokio::fs::create_dir(&tmp).await?;
        for (file, data) in files {
            tokio::fs::write(tmp.join(file), data).await?;
        }
        // An empty directory at the target (e.g. a mounted volume path) is replaced.
        if tokio::fs::metadata(dir).await.is_ok() {
            tokio::fs::remove_dir(dir).await?;
        }
        tokio::fs::rename(&tmp, dir).await
    }
    .await;
    if let Err(e) = result {
        let _ = tokio::fs::remove_dir_all(&tmp).await;
        return Err(write_err(e));
    }
    Ok(())
}

#[cfg(test)]
mod version_tag_tests {
    use super::*;

    #[tokio::test]
    async fn a_local_file_gets_a_new_tag_when_rows_are_added_and_the_same_tag_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("train.csv");
        std::fs::write(&file, "a,b\n1,2\n").unwrap();
        let uri = file.display().to_string();
        let first = version_tag(&uri).await.unwrap();
        assert_eq!(version_tag(&uri).await.unwrap(), first);
        std::fs::write(&file, "a,b\n1,2\n3,4\n").unwrap();
        assert_ne!(version_tag(&uri).await.unwrap(), first);
        assert!(matches!(
            version_tag(&dir.path().join("none.csv").display().to_string()).await,
            Err(StoreError::NotFound { .. })
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_object_is_written_whole_into_new_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let uri = format!("file://{}/feedback/m/a.jsonl", tmp.path().display());
        write_object(&uri, Bytes::from_static(b"{}\n"))
            .await
            .unwrap();
        assert_eq!(read_bytes(&uri).await.unwrap(), Bytes::from_static(b"{}\n"));
        // Only the object itself: no staged file is left beside it.
        let names: Vec<_> = std::fs::read_dir(tmp.path().join("feedback/m"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["a.jsonl"]);
        assert!(matches!(
            write_object("https://example.com/a.jsonl", Bytes::new()).await,
            Err(StoreError::Write { .. })
        ));
    }

    #[tokio::test]
    async fn writes_are_all_or_nothing_and_never_overwrite() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("models/v1");
        let uri = format!("file://{}", out.display());
        write_atomically(
            &uri,
            &[
                ("a.bin", Bytes::from_static(b"1")),
                ("manifest.json", Bytes::from_static(b"{}")),
            ],
        )
        .await
        .unwrap();
        assert_eq!(
            read_bytes(&join(&uri, "a.bin")).await.unwrap(),
            Bytes::from_static(b"1")
        );
        let again = write_atomically(&uri, &[("manifest.json", Bytes::from_static(b"{}"))]).await;
        assert!(matches!(again, Err(StoreError::Exists { .. })), "{again:?}");
        // No temporary directories are left beside the artifact.
        let siblings: Vec<_> = std::fs::read_dir(out.parent().unwrap()).unwrap().collect();
        assert_eq!(siblings.len(), 1);
    }

    #[tokio::test]
    async fn missing_files_and_bad_schemes_are_named() {
        let err = read_bytes("/nonexistent/driftline/x.csv")
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/driftline/x.csv"),
            "{err}"
        );
        let err = read_bytes("ftp://host/x.csv").await.unwrap_err();
        assert_eq!(
            crate::error_chain(&err),
            "`ftp://host/x.csv` is not a location driftline can use: unsupported scheme `ftp`; \
             use a path, file://, s3://, gs://, az:// or https://"
        );
    }

    #[tokio::test]
    async fn lists_by_suffix_recursively_and_sorted() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("day=2")).unwrap();
        std::fs::write(tmp.path().join("b.jsonl"), "").unwrap();
        std::fs::write(tmp.path().join("day=2/a.jsonl"), "").unwrap();
        std::fs::write(tmp.path().join("notes.txt"), "").unwrap();
        let prefix = tmp.path().display().to_string();
        let found = list(&prefix, ".jsonl").await.unwrap();
        assert_eq!(
            found,
            vec![join(&prefix, "b.jsonl"), join(&prefix, "day=2/a.jsonl")]
        );
        assert!(
            list(&join(&prefix, "absent"), ".jsonl")
                .await
                .unwrap()
                .is_empty()
        );
    }
}
