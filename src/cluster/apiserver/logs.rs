//! `GET .../pods/{name}/log`: container output the runner wrote to disk.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::error::ApiError;
use super::request::ResourcePath;
use super::server::Shared;
use crate::cluster::layout::pod_log_path;

fn last_lines(text: &[u8], n: usize) -> &[u8] {
    let mut count = 0;
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    for (i, b) in body.iter().enumerate().rev() {
        if *b == b'\n' {
            count += 1;
            if count == n {
                return &text[i + 1..];
            }
        }
    }
    text
}

/// Serves a container's log, optionally only the last lines, optionally following it.
pub async fn serve(
    shared: Arc<Shared>,
    p: &ResourcePath,
    query: &HashMap<String, String>,
) -> Result<Response, ApiError> {
    let ns = p.namespace.clone().unwrap_or_default();
    let name = p.name.clone().unwrap_or_default();
    let key = (String::new(), "pods".to_string());
    let pod = shared
        .store()
        .get(&key, &ns, &name)
        .ok_or_else(|| ApiError::not_found("", "pods", &name))?;
    let names = |field: &str| -> Vec<String> {
        pod.pointer(field)
            .and_then(Value::as_array)
            .map(|cs| {
                cs.iter()
                    .filter_map(|c| c.get("name").and_then(Value::as_str).map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    // Init containers have logs too (a training Job's `train`); only a
    // regular container is ever picked when none is named, as kube-apiserver
    // does, and its messages list both kinds.
    let containers = names("/spec/containers");
    let init = names("/spec/initContainers");
    let choices = || {
        let mut text = format!("choose one of: [{}]", containers.join(" "));
        if !init.is_empty() {
            text.push_str(&format!(
                " or one of the init containers: [{}]",
                init.join(" ")
            ));
        }
        text
    };
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(c) || init.contains(c) => c.clone(),
        Some(c) => {
            return Err(ApiError::BadRequest(format!(
                "container {c} is not valid for pod {name}; {}",
                choices()
            )));
        }
        None if containers.len() == 1 => containers[0].clone(),
        None => {
            return Err(ApiError::BadRequest(format!(
                "a container name must be specified for pod {name}, {}",
                choices()
            )));
        }
    };
    let tail: Option<usize> =
        match query.get("tailLines") {
            Some(t) => Some(t.parse().map_err(|_| {
                ApiError::BadRequest(format!("tailLines `{t}` is not a whole number"))
            })?),
            None => None,
        };
    let follow = query.get("follow").is_some_and(|f| f == "true");
    let path = pod_log_path(&shared.state_dir, &ns, &name, &container);
    let content = match tokio::fs::read(&path).await {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::BadRequest(format!(
                "container \"{container}\" in pod \"{name}\" is waiting to start: no output yet"
            )));
        }
        Err(e) => {
            return Err(ApiError::Internal(format!(
                "reading log {}: {e}",
                path.display()
            )));
        }
    };
    let first = match tail {
        Some(n) => last_lines(&content, n).to_vec(),
        None => content.clone(),
    };
    if !follow {
        return Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain")],
            first,
        )
            .into_response());
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, Infallible>>(16);
    let offset = content.len() as u64;
    let mut closing = shared.closing.subscribe();
    tokio::spawn(async move {
        if tx.send(Ok(Bytes::from(first))).await.is_err() {
            return;
        }
        let mut offset = offset;
        loop {
            let mut chunk = Vec::new();
            if let Ok(mut f) = tokio::fs::File::open(&path).await
                && f.seek(std::io::SeekFrom::Start(offset)).await.is_ok()
            {
                let _ = f.read_to_end(&mut chunk).await;
            }
            if !chunk.is_empty() {
                offset += chunk.len() as u64;
                if tx.send(Ok(Bytes::from(chunk))).await.is_err() {
                    return;
                }
                continue;
            }
            // Stop once the pod is gone or finished and everything has been sent.
            let done = match shared.store().get(&key, &ns, &name) {
                None => true,
                Some(p) => matches!(
                    p.pointer("/status/phase").and_then(Value::as_str),
                    Some("Succeeded" | "Failed")
                ),
            };
            if done {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = tx.closed() => return,
                _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((StatusCode::OK, [(header::CONTENT_TYPE, "text/plain")], body).into_response())
}

#[cfg(test)]
mod tests {
    use super::last_lines;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(last_lines(b"a\nb\nc\n", 2), b"b\nc\n");
        assert_eq!(last_lines(b"a\nb\nc", 1), b"c");
        assert_eq!(last_lines(b"a\n", 5), b"a\n");
    }
}
