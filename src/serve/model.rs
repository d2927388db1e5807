//! Glue between the server and the `ml` room: loading an artifact as a
//! [`Predictor`], and writing feedback files to the artifact store.

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::path::Path as StorePath;

use super::error::ServeError;
use super::feedback::FeedbackSink;

/// Writes feedback files under a prefix URI of any object store.
pub struct StoreFeedbackSink {
    store: Arc<dyn ObjectStore>,
    prefix: StorePath,
    uri: String,
}

impl StoreFeedbackSink {
    /// A sink for `prefix` (`file:///…/`, `s3://bucket/…/`, … or a local directory path).
    pub fn new(prefix: &str) -> Result<Self, ServeError> {
        let bad = |reason: String| ServeError::Config(format!("--feedback `{prefix}`: {reason}"));
        let url = match url::Url::parse(prefix) {
            Ok(url) if url.scheme().len() > 1 => url,
            // A bare path (or a Windows drive letter) is a local directory.
            _ => {
                let absolute = std::path::absolute(prefix).map_err(|e| bad(e.to_string()))?;
                url::Url::from_directory_path(&absolute).map_err(|_| bad("not an absolute directory path".into()))?
            }
        };
        // Cloud credentials come from the environment, as for artifacts.
        let (store, path) = object_store::parse_url_opts(&url, std::env::vars()).map_err(|e| bad(e.to_string()))?;
        Ok(Self { store: Arc::from(store), prefix: path, uri: url.to_string() })
    }
}

#[async_trait::async_trait]
impl FeedbackSink for StoreFeedbackSink {
    async fn write(&self, file_name: &str, contents: Vec<u8>) -> Result<String, ServeError> {
        let location = self.prefix.child(file_name);
        let uri = format!("{}/{}", self.uri.trim_end_matches('/'), file_name);
        // Object stores publish a put atomically (the local one writes a staged file and renames it).
        self.store
            .put(&location, contents.into())
            .await
            .map_err(|e| ServeError::FeedbackWrite { uri: uri.clone(), reason: e.to_string() })?;
        Ok(uri)
    }

    fn prefix(&self) -> String {
        self.uri.clone()
    }
}
