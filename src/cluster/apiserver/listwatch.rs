//! Reading collections: list (label and field selectors, paging, Tables)
//! and watch (from a resourceVersion, initial events, bookmarks, 410 Gone).

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use super::convert::present;
use super::error::ApiError;
use super::printers;
use super::request::ResourcePath;
use super::resources::ResourceType;
use super::selector::{FieldSelector, LabelSelector};
use super::server::{Shared, json_response};
use super::store::{EventType, object_key};

/// The request's `fieldSelector`, refused when the real API server would
/// refuse it (a field it cannot select on).
pub(super) fn field_selector(
    ty: &ResourceType,
    query: &HashMap<String, String>,
) -> Result<FieldSelector, ApiError> {
    let field = FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))?;
    field.check(&ty.group, &ty.kind)?;
    Ok(field)
}

/// A page of a collection, or all of it, as a List or a Table.
pub(super) fn list(
    shared: &Arc<Shared>,
    ty: &ResourceType,
    p: &ResourcePath,
    query: &HashMap<String, String>,
    want_table: bool,
) -> Result<Response, ApiError> {
    let label = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?;
    let field = field_selector(ty, query)?;
    let limit: usize = match query.get("limit").filter(|l| !l.is_empty()) {
        Some(l) => l.parse().map_err(|_| {
            ApiError::BadRequest(format!("limit `{l}` is not a non-negative integer"))
        })?,
        None => 0,
    };
    let after = match query.get("continue").filter(|c| !c.is_empty()) {
        Some(token) => {
            let (ns, name) = token.split_once('/').ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "continue token `{token}` is not one this server issued"
                ))
            })?;
            Some((ns.to_string(), name.to_string()))
        }
        None => None,
    };
    let store = shared.store();
    let rv = store.resource_version();
    let key = ty.storage_key();
    let mut items: Vec<Arc<Value>> = Vec::new();
    let mut next: Option<String> = None;
    let mut remaining = 0usize;
    let matches = |o: &Value| label.matches(o) && field.matches(o);
    if let (Some(name), None) = (field.name(), &after) {
        // A name-pinned list (kubectl wait/delete) needs no scan.
        let ns = p.namespace.as_deref().unwrap_or("");
        if p.namespace.is_some() || !ty.namespaced {
            if let Some(o) = store.get(&key, ns, name).filter(|o| matches(o)) {
                items.push(o);
            }
        } else {
            items.extend(
                store
                    .list(&key, None, None)
                    .filter(|(k, o)| k.1 == name && matches(o))
                    .map(|(_, o)| o.clone()),
            );
        }
    } else {
        for (_, o) in store.list(&key, p.namespace.as_deref(), after) {
            if !matches(o) {
                continue;
            }
            if limit > 0 && items.len() == limit {
                if next.is_none() {
                    let last = object_key(items.last().map(|a| a.as_ref()).unwrap_or(&Value::Null));
                    next = Some(format!("{}/{}", last.0, last.1));
                }
                remaining += 1;
                continue;
            }
            items.push(o.clone());
        }
    }
    drop(store);
    let mut meta = json!({"resourceVersion": rv.to_string()});
    if let Some(token) = next {
        meta["continue"] = json!(token);
        meta["remainingItemCount"] = json!(remaining);
    }
    if want_table {
        let objs: Vec<Value> = items.iter().map(|o| present(ty, o).into_owned()).collect();
        let include = query
            .get("includeObject")
            .map(String::as_str)
            .unwrap_or("Metadata");
        return Ok(json_response(
            StatusCode::OK,
            &printers::render(ty, &objs, meta, include),
        ));
    }
    // Serialise item by item: large lists avoid one big intermediate Value.
    let mut out = Vec::with_capacity(items.len() * 512 + 256);
    out.extend_from_slice(
        format!(
            "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{},\"items\":[",
            ty.kind,
            ty.api_version(),
            meta
        )
        .as_bytes(),
    );
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut out, present(ty, o).as_ref())
            .map_err(|e| ApiError::Internal(e.to_string()))?;
    }
    out.extend_from_slice(b"]}");
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        out,
    )
        .into_response())
}

struct WatchFilter {
    key: (String, String),
    namespace: Option<String>,
    label: LabelSelector,
    field: FieldSelector,
}

impl WatchFilter {
    fn matches(&self, key: &(String, String), ns: &str, obj: &Value) -> bool {
        *key == self.key
            && self.namespace.as_deref().is_none_or(|n| n == ns)
            && self.label.matches(obj)
            && self.field.matches(obj)
    }
}

/// A stream of watch events (one JSON object per line) until the client
/// leaves, the timeout passes or the server closes.
pub(super) fn watch(
    shared: Arc<Shared>,
    ty: &ResourceType,
    p: &ResourcePath,
    query: &HashMap<String, String>,
    want_table: bool,
) -> Result<Response, ApiError> {
    let filter = WatchFilter {
        key: ty.storage_key(),
        namespace: p.namespace.clone(),
        label: LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))?,
        field: field_selector(ty, query)?,
    };
    let timeout = match query.get("timeoutSeconds").filter(|t| !t.is_empty()) {
        Some(t) => Duration::from_secs(t.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "timeoutSeconds `{t}` is not a whole number of seconds"
            ))
        })?),
        None => Duration::from_secs(1800),
    };
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let send_initial = query.get("sendInitialEvents").is_some_and(|b| b == "true");
    let from: Option<u64> = match query.get("resourceVersion").filter(|r| !r.is_empty()) {
        Some(r) => Some(r.parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "resourceVersion `{r}` is not a version this server issued"
            ))
        })?),
        None => None,
    };
    let ty = ty.clone();
    let include = query
        .get("includeObject")
        .cloned()
        .unwrap_or_else(|| "Metadata".into());
    let (initial, start) = {
        let store = shared.store();
        match from {
            Some(rv) if rv > 0 && !send_initial => (Vec::new(), rv),
            _ => {
                let objs: Vec<Arc<Value>> = store
                    .list(&filter.key, filter.namespace.as_deref(), None)
                    .filter(|(_, o)| filter.label.matches(o) && filter.field.matches(o))
                    .map(|(_, o)| o.clone())
                    .collect();
                (objs, store.resource_version())
            }
        }
    };
    let (tx, rx) = mpsc::channel::<Result<Bytes, Infallible>>(64);
    let mut changes = shared.changed.subscribe();
    let mut closing = shared.closing.subscribe();
    let interval = shared.bookmark_interval;
    tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut first_table = true;
        let plain = !want_table && ty.group != "events.k8s.io";
        let mut line = |event: &str, obj: &Value| -> Bytes {
            let object = if want_table && event != "BOOKMARK" && event != "ERROR" {
                let t =
                    printers::render(&ty, &[present(&ty, obj).into_owned()], json!({}), &include);
                let t = if first_table {
                    t
                } else {
                    printers::without_columns(t)
                };
                first_table = false;
                t
            } else if event == "ERROR" {
                obj.clone()
            } else {
                present(&ty, obj).into_owned()
            };
            let mut s = json!({"type": event, "object": object}).to_string();
            s.push('\n');
            Bytes::from(s)
        };
        let bookmark = |rv: u64, initial_end: bool| {
            let mut meta = json!({"resourceVersion": rv.to_string()});
            if initial_end {
                meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
            }
            json!({"kind": ty.kind, "apiVersion": ty.api_version(), "metadata": meta})
        };
        for obj in &initial {
            if tx.send(Ok(line("ADDED", obj))).await.is_err() {
                return;
            }
        }
        let mut last = start;
        if send_initial
            && tx
                .send(Ok(line("BOOKMARK", &bookmark(last, true))))
                .await
                .is_err()
        {
            return;
        }
        loop {
            let batch = shared.store().changes_since(last);
            match batch {
                Err(gone) => {
                    let _ = tx.send(Ok(line("ERROR", &gone.status()))).await;
                    return;
                }
                Ok(batch) => {
                    for change in batch {
                        last = change.rv;
                        if change.type_key != filter.key {
                            continue;
                        }
                        let now_in =
                            filter.matches(&change.type_key, &change.namespace, &change.object);
                        let was_in = change.previous.as_ref().is_some_and(|p| {
                            filter.matches(&change.type_key, &change.namespace, p)
                        });
                        // A modification moving an object into or out of a selector is an
                        // ADDED or DELETED for that watch, as on a real API server.
                        let event = match (change.event, was_in, now_in) {
                            (EventType::Modified, false, true) => "ADDED",
                            (EventType::Modified, true, false) => "DELETED",
                            (_, _, false) => continue,
                            (EventType::Added, _, true) => "ADDED",
                            (EventType::Modified, _, true) => "MODIFIED",
                            (EventType::Deleted, _, true) => "DELETED",
                        };
                        let bytes = if plain {
                            // The common case: encode the object once for all watchers.
                            let encoded = change.encoded.get_or_init(|| {
                                Bytes::from(
                                    serde_json::to_vec(change.object.as_ref()).unwrap_or_default(),
                                )
                            });
                            let mut buf = Vec::with_capacity(encoded.len() + 32);
                            buf.extend_from_slice(
                                format!("{{\"type\":\"{event}\",\"object\":").as_bytes(),
                            );
                            buf.extend_from_slice(encoded);
                            buf.extend_from_slice(b"}\n");
                            Bytes::from(buf)
                        } else {
                            line(event, &change.object)
                        };
                        if tx.send(Ok(bytes)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            tokio::select! {
                res = changes.changed() => if res.is_err() { return },
                _ = tokio::time::sleep_until(deadline) => {
                    if bookmarks {
                        let rv = shared.store().resource_version().max(last);
                        let _ = tx.send(Ok(line("BOOKMARK", &bookmark(rv, false)))).await;
                    }
                    return;
                }
                _ = tokio::time::sleep(interval), if bookmarks => {
                    // Nothing in this watch changed for a while: tell the client how far it has read.
                    let rv = { let s = shared.store(); let rv = s.resource_version(); if s.changes_since(last).map(|c| c.is_empty()).unwrap_or(false) { rv } else { last } };
                    if tx.send(Ok(line("BOOKMARK", &bookmark(rv, false)))).await.is_err() { return; }
                    last = last.max(rv);
                }
                _ = tx.closed() => return,
                _ = async { let _ = closing.wait_for(|c| *c).await; } => return,
            }
        }
    });
    let body = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response())
}
