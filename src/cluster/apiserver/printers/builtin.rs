//! The built-in kinds' printers: the columns `kubectl get` shows for them,
//! and the cells no JSONPath can compute (a pod's Ready and Status, a Job's
//! Completions, an Event's Object...), named by `#` paths.

use chrono::{DateTime, Utc};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceColumnDefinition;
use serde_json::{Value, json};

use super::{age, column, human_duration};
use crate::cluster::schema::JsonPath;

/// The Table columns kubectl shows for a built-in resource (after Name,
/// which [`table`] adds): pods, jobs, deployments, replicasets, services,
/// namespaces, nodes, configmaps, secrets, persistentvolumeclaims, events
/// (core and events.k8s.io), leases and CRDs; Age alone for anything else.
pub fn builtin_columns(group: &str, resource: &str) -> Vec<CustomResourceColumnDefinition> {
    match (group, resource) {
        ("", "pods") => vec![
            column("Ready", "string", "#pod.ready", 0, None),
            column("Status", "string", "#pod.status", 0, None),
            column("Restarts", "string", "#pod.restarts", 0, None),
            age(),
            column("IP", "string", ".status.podIP", 1, None),
            column("Node", "string", ".spec.nodeName", 1, None),
            column(
                "Nominated Node",
                "string",
                ".status.nominatedNodeName",
                1,
                None,
            ),
            column("Readiness Gates", "string", "#pod.readiness-gates", 1, None),
        ],
        ("batch", "jobs") => vec![
            column("Status", "string", "#job.status", 0, None),
            column("Completions", "string", "#job.completions", 0, None),
            column("Duration", "string", "#job.duration", 0, None),
            age(),
            column("Containers", "string", "#template.containers", 1, None),
            column("Images", "string", "#template.images", 1, None),
            column("Selector", "string", "#selector", 1, None),
        ],
        ("apps", "deployments") => vec![
            column("Ready", "string", "#deployment.ready", 0, None),
            column(
                "Up-to-date",
                "integer",
                "#or0:.status.updatedReplicas",
                0,
                None,
            ),
            column(
                "Available",
                "integer",
                "#or0:.status.availableReplicas",
                0,
                None,
            ),
            age(),
            column("Containers", "string", "#template.containers", 1, None),
            column("Images", "string", "#template.images", 1, None),
            column("Selector", "string", "#selector", 1, None),
        ],
        ("apps", "replicasets") => vec![
            column("Desired", "integer", "#or0:.spec.replicas", 0, None),
            column("Current", "integer", "#or0:.status.replicas", 0, None),
            column("Ready", "integer", "#or0:.status.readyReplicas", 0, None),
            age(),
            column("Containers", "string", "#template.containers", 1, None),
            column("Images", "string", "#template.images", 1, None),
            column("Selector", "string", "#selector", 1, None),
        ],
        ("", "nodes") => vec![
            column("Status", "string", "#node.status", 0, None),
            column("Roles", "string", "#node.roles", 0, None),
            age(),
            column(
                "Version",
                "string",
                ".status.nodeInfo.kubeletVersion",
                0,
                None,
            ),
        ],
        ("", "persistentvolumeclaims") => vec![
            column("Status", "string", ".status.phase", 0, None),
            column("Volume", "string", ".spec.volumeName", 0, None),
            column("Capacity", "string", ".status.capacity.storage", 0, None),
            column("Access Modes", "string", "#pvc.access-modes", 0, None),
            column("StorageClass", "string", ".spec.storageClassName", 0, None),
            age(),
        ],
        ("", "services") => vec![
            column("Type", "string", ".spec.type", 0, None),
            column("Cluster-IP", "string", "#service.cluster-ip", 0, None),
            column("External-IP", "string", "#service.external-ip", 0, None),
            column("Port(s)", "string", "#service.ports", 0, None),
            age(),
            column("Selector", "string", "#selector", 1, None),
        ],
        ("", "namespaces") => vec![column("Status", "string", ".status.phase", 0, None), age()],
        ("", "configmaps") => vec![column("Data", "integer", "#data-count", 0, None), age()],
        ("", "secrets") => vec![
            column("Type", "string", ".type", 0, None),
            column("Data", "integer", "#data-count", 0, None),
            age(),
        ],
        ("", "events") | ("events.k8s.io", "events") => vec![
            column("Last Seen", "string", "#event.last-seen", 0, None),
            column("Type", "string", ".type", 0, None),
            column("Reason", "string", ".reason", 0, None),
            column("Object", "string", "#event.object", 0, None),
            column("Subobject", "string", "#event.subobject", 1, None),
            column("Source", "string", "#event.source", 1, None),
            column("Message", "string", "#event.message", 0, None),
            column("First Seen", "string", "#event.first-seen", 1, None),
            column("Count", "string", "#event.count", 1, None),
            column("Name", "string", ".metadata.name", 1, Some("name")),
        ],
        ("coordination.k8s.io", "leases") => vec![
            column("Holder", "string", ".spec.holderIdentity", 0, None),
            age(),
        ],
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            vec![column("Created At", "date", "#created-at", 0, None)]
        }
        _ => vec![age()],
    }
}

// ---- computed cells of the built-in printers ----

fn at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(obj, |v, key| v.get(*key))
}

fn int_at(obj: &Value, path: &[&str]) -> i64 {
    at(obj, path).and_then(Value::as_i64).unwrap_or(0)
}

fn str_at<'a>(obj: &'a Value, path: &[&str]) -> Option<&'a str> {
    at(obj, path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

fn list_at<'a>(obj: &'a Value, path: &[&str]) -> &'a [Value] {
    at(obj, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn timestamp(obj: &Value, path: &[&str]) -> Option<DateTime<Utc>> {
    let text = str_at(obj, path)?;
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn age_since(then: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    then.map_or_else(|| "<unknown>".to_string(), |t| human_duration(now - t))
}

pub(super) fn computed_cell(kind: &str, obj: &Value, now: DateTime<Utc>) -> Value {
    if let Some(path) = kind.strip_prefix("#or0:") {
        let found = JsonPath::parse(path)
            .ok()
            .and_then(|p| p.first(obj).cloned());
        return found.filter(Value::is_number).unwrap_or_else(|| json!(0));
    }
    match kind {
        "#pod.ready" => {
            let total = list_at(obj, &["spec", "containers"]).len();
            let ready = list_at(obj, &["status", "containerStatuses"])
                .iter()
                .filter(|c| c.get("ready") == Some(&Value::Bool(true)))
                .count();
            json!(format!("{ready}/{total}"))
        }
        "#pod.status" => json!(pod_status(obj)),
        "#pod.restarts" => json!(pod_restarts(obj, now)),
        "#pod.readiness-gates" => {
            let gates = list_at(obj, &["spec", "readinessGates"]);
            if gates.is_empty() {
                return json!("<none>");
            }
            let conditions = list_at(obj, &["status", "conditions"]);
            let met = gates
                .iter()
                .filter(|g| {
                    conditions.iter().any(|c| {
                        c.get("type") == g.get("conditionType")
                            && str_at(c, &["status"]) == Some("True")
                    })
                })
                .count();
            json!(format!("{met}/{}", gates.len()))
        }
        "#job.status" => json!(job_status(obj)),
        "#node.status" => {
            let ready = list_at(obj, &["status", "conditions"])
                .iter()
                .find(|c| str_at(c, &["type"]) == Some("Ready"));
            let mut status = match ready.and_then(|c| str_at(c, &["status"])) {
                Some("True") => "Ready".to_string(),
                Some(_) => "NotReady".to_string(),
                None => "Unknown".to_string(),
            };
            if at(obj, &["spec", "unschedulable"]) == Some(&Value::Bool(true)) {
                status.push_str(",SchedulingDisabled");
            }
            json!(status)
        }
        "#node.roles" => {
            let mut roles: Vec<&str> = at(obj, &["metadata", "labels"])
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, _)| k.strip_prefix("node-role.kubernetes.io/"))
                .filter(|r| !r.is_empty())
                .collect();
            roles.sort_unstable();
            json!(if roles.is_empty() {
                "<none>".to_string()
            } else {
                roles.join(",")
            })
        }
        "#pvc.access-modes" => {
            let short: Vec<&str> = list_at(obj, &["status", "accessModes"])
                .iter()
                .filter_map(Value::as_str)
                .map(|m| match m {
                    "ReadWriteOnce" => "RWO",
                    "ReadOnlyMany" => "ROX",
                    "ReadWriteMany" => "RWX",
                    "ReadWriteOncePod" => "RWOP",
                    other => other,
                })
                .collect();
            json!(short.join(","))
        }
        "#job.completions" => {
            let succeeded = int_at(obj, &["status", "succeeded"]);
            let text = match at(obj, &["spec", "completions"]).and_then(Value::as_i64) {
                Some(c) => format!("{succeeded}/{c}"),
                None => match int_at(obj, &["spec", "parallelism"]) {
                    p if p > 1 => format!("{succeeded}/1 of {p}"),
                    _ => format!("{succeeded}/1"),
                },
            };
            json!(text)
        }
        "#job.duration" => {
            let start = timestamp(obj, &["status", "startTime"]);
            let end = timestamp(obj, &["status", "completionTime"]);
            match (start, end) {
                (None, _) => json!(""),
                (Some(s), None) => json!(human_duration(now - s)),
                (Some(s), Some(e)) => json!(human_duration(e - s)),
            }
        }
        "#template.containers" | "#template.images" => {
            let field = if kind == "#template.images" {
                "image"
            } else {
                "name"
            };
            let names: Vec<&str> = list_at(obj, &["spec", "template", "spec", "containers"])
                .iter()
                .filter_map(|c| str_at(c, &[field]))
                .collect();
            json!(names.join(","))
        }
        "#selector" => {
            let selector = at(obj, &["spec", "selector"]);
            let labels = selector
                .and_then(|s| s.get("matchLabels"))
                .or(selector.filter(|s| s.get("matchExpressions").is_none()));
            let mut parts: Vec<String> = labels
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            for expr in selector
                .and_then(|s| s.get("matchExpressions"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = str_at(expr, &["key"]).unwrap_or_default();
                let values: Vec<&str> = list_at(expr, &["values"])
                    .iter()
                    .filter_map(Value::as_str)
                    .collect();
                parts.push(match str_at(expr, &["operator"]).unwrap_or_default() {
                    "In" => format!("{key} in ({})", values.join(",")),
                    "NotIn" => format!("{key} notin ({})", values.join(",")),
                    "Exists" => key.to_string(),
                    _ => format!("!{key}"),
                });
            }
            json!(if parts.is_empty() {
                "<none>".to_string()
            } else {
                parts.join(",")
            })
        }
        "#deployment.ready" => {
            let want = at(obj, &["spec", "replicas"])
                .and_then(Value::as_i64)
                .unwrap_or(1);
            json!(format!(
                "{}/{want}",
                int_at(obj, &["status", "readyReplicas"])
            ))
        }
        "#service.cluster-ip" => json!(str_at(obj, &["spec", "clusterIP"]).unwrap_or("<none>")),
        "#service.external-ip" => json!(service_external_ip(obj)),
        "#service.ports" => {
            let ports: Vec<String> = list_at(obj, &["spec", "ports"])
                .iter()
                .map(|p| {
                    let port = int_at(p, &["port"]);
                    let protocol = str_at(p, &["protocol"]).unwrap_or("TCP");
                    match at(p, &["nodePort"]).and_then(Value::as_i64) {
                        Some(node) if node > 0 => format!("{port}:{node}/{protocol}"),
                        _ => format!("{port}/{protocol}"),
                    }
                })
                .collect();
            json!(if ports.is_empty() {
                "<none>".to_string()
            } else {
                ports.join(",")
            })
        }
        "#data-count" => {
            let count = |key: &str| {
                obj.get(key)
                    .and_then(Value::as_object)
                    .map_or(0, |m| m.len())
            };
            json!(count("data") + count("binaryData"))
        }
        "#event.last-seen" => {
            let last = timestamp(obj, &["lastTimestamp"])
                .or_else(|| timestamp(obj, &["deprecatedLastTimestamp"]))
                .or_else(|| timestamp(obj, &["series", "lastObservedTime"]))
                .or_else(|| timestamp(obj, &["eventTime"]))
                .or_else(|| timestamp(obj, &["firstTimestamp"]));
            json!(age_since(last, now))
        }
        "#event.first-seen" => {
            let first = timestamp(obj, &["firstTimestamp"])
                .or_else(|| timestamp(obj, &["deprecatedFirstTimestamp"]))
                .or_else(|| timestamp(obj, &["eventTime"]));
            json!(age_since(first, now))
        }
        "#event.object" => {
            let regarding = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            let kind = regarding
                .and_then(|r| str_at(r, &["kind"]))
                .unwrap_or_default();
            let name = regarding
                .and_then(|r| str_at(r, &["name"]))
                .unwrap_or_default();
            json!(format!("{}/{name}", kind.to_lowercase()))
        }
        "#event.subobject" => {
            let regarding = obj.get("involvedObject").or_else(|| obj.get("regarding"));
            json!(
                regarding
                    .and_then(|r| str_at(r, &["fieldPath"]))
                    .unwrap_or_default()
            )
        }
        "#event.source" => {
            let component = str_at(obj, &["source", "component"])
                .or_else(|| str_at(obj, &["reportingController"]))
                .or_else(|| str_at(obj, &["deprecatedSource", "component"]))
                .unwrap_or_default();
            match str_at(obj, &["source", "host"]) {
                Some(host) => json!(format!("{component}, {host}")),
                None => json!(component),
            }
        }
        "#event.message" => json!(
            str_at(obj, &["message"])
                .or_else(|| str_at(obj, &["note"]))
                .unwrap_or_default()
        ),
        "#event.count" => {
            let count = at(obj, &["count"])
                .or_else(|| at(obj, &["series", "count"]))
                .or_else(|| at(obj, &["deprecatedCount"]))
                .and_then(Value::as_i64)
                .unwrap_or(1);
            json!(count.to_string())
        }
        "#created-at" => match timestamp(obj, &["metadata", "creationTimestamp"]) {
            Some(t) => json!(t.format("%Y-%m-%dT%H:%M:%SZ").to_string()),
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

/// The Status column of `kubectl get pods` (kubectl's `printPod`, condensed).
fn pod_status(pod: &Value) -> String {
    let mut reason = str_at(pod, &["status", "reason"])
        .or_else(|| str_at(pod, &["status", "phase"]))
        .unwrap_or("Pending")
        .to_string();
    let init_specs = list_at(pod, &["spec", "initContainers"]).len();
    let mut initializing = false;
    for (i, status) in list_at(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        if let Some(terminated) = at(status, &["state", "terminated"]) {
            if int_at(terminated, &["exitCode"]) == 0 {
                continue;
            }
            reason = match str_at(terminated, &["reason"]) {
                Some(r) => format!("Init:{r}"),
                None if int_at(terminated, &["signal"]) != 0 => {
                    format!("Init:Signal:{}", int_at(terminated, &["signal"]))
                }
                None => format!("Init:ExitCode:{}", int_at(terminated, &["exitCode"])),
            };
        } else if let Some(waiting) =
            str_at(status, &["state", "waiting", "reason"]).filter(|r| *r != "PodInitializing")
        {
            reason = format!("Init:{waiting}");
        } else {
            reason = format!("Init:{i}/{init_specs}");
        }
        initializing = true;
        break;
    }
    if !initializing {
        let mut has_running = false;
        for status in list_at(pod, &["status", "containerStatuses"]).iter().rev() {
            if let Some(waiting) = str_at(status, &["state", "waiting", "reason"]) {
                reason = waiting.to_string();
            } else if let Some(terminated) = at(status, &["state", "terminated"]) {
                reason = match str_at(terminated, &["reason"]) {
                    Some(r) => r.to_string(),
                    None if int_at(terminated, &["signal"]) != 0 => {
                        format!("Signal:{}", int_at(terminated, &["signal"]))
                    }
                    None => format!("ExitCode:{}", int_at(terminated, &["exitCode"])),
                };
            } else if status.get("ready") == Some(&Value::Bool(true))
                && at(status, &["state", "running"]).is_some()
            {
                has_running = true;
            }
        }
        if reason == "Completed" && has_running {
            let ready = list_at(pod, &["status", "conditions"]).iter().any(|c| {
                str_at(c, &["type"]) == Some("Ready") && str_at(c, &["status"]) == Some("True")
            });
            reason = if ready { "Running" } else { "NotReady" }.to_string();
        }
    }
    if at(pod, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null()) {
        reason = if reason == "NodeLost" {
            "Unknown"
        } else {
            "Terminating"
        }
        .to_string();
    }
    reason
}

fn pod_restarts(pod: &Value, now: DateTime<Utc>) -> String {
    let statuses = list_at(pod, &["status", "containerStatuses"]);
    let restarts: i64 = statuses.iter().map(|s| int_at(s, &["restartCount"])).sum();
    let last = statuses
        .iter()
        .filter_map(|s| timestamp(s, &["lastState", "terminated", "finishedAt"]))
        .max();
    match last {
        Some(t) if restarts > 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    }
}

fn job_status(job: &Value) -> String {
    let has = |kind: &str| {
        list_at(job, &["status", "conditions"])
            .iter()
            .any(|c| str_at(c, &["type"]) == Some(kind) && str_at(c, &["status"]) == Some("True"))
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if at(job, &["metadata", "deletionTimestamp"]).is_some_and(|t| !t.is_null()) {
        "Terminating"
    } else if has("SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else if at(job, &["spec", "suspend"]) == Some(&Value::Bool(true)) {
        "Suspended"
    } else {
        "Running"
    }
    .to_string()
}

fn service_external_ip(svc: &Value) -> String {
    let mut ips: Vec<String> = list_at(svc, &["status", "loadBalancer", "ingress"])
        .iter()
        .filter_map(|i| str_at(i, &["ip"]).or_else(|| str_at(i, &["hostname"])))
        .map(str::to_string)
        .collect();
    ips.extend(
        list_at(svc, &["spec", "externalIPs"])
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string),
    );
    match str_at(svc, &["spec", "type"]) {
        Some("ExternalName") => str_at(svc, &["spec", "externalName"])
            .unwrap_or("<none>")
            .to_string(),
        Some("LoadBalancer") if ips.is_empty() => "<pending>".to_string(),
        _ if ips.is_empty() => "<none>".to_string(),
        _ => ips.join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::super::table_at;
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z")
            .map(|t| t.with_timezone(&Utc))
            .expect("valid test time")
    }

    #[test]
    fn pods_show_ready_status_restarts_and_age() {
        let pod = json!({
            "metadata": {"name": "train-1", "creationTimestamp": "2026-11-26T09:00:00Z"},
            "spec": {"containers": [{"name": "a"}, {"name": "b"}], "nodeName": "local"},
            "status": {"phase": "Running", "podIP": "127.0.0.5",
                "containerStatuses": [
                    {"name": "a", "ready": true, "restartCount": 2, "state": {"running": {}},
                     "lastState": {"terminated": {"finishedAt": "2026-11-26T11:50:00Z"}}},
                    {"name": "b", "ready": false, "restartCount": 0, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}
                ]}
        });
        let t = table_at(&builtin_columns("", "pods"), &[pod], json!({}), now());
        let names: Vec<&str> = t["columnDefinitions"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d["name"].as_str())
            .collect();
        assert_eq!(
            names,
            vec![
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "train-1",
                "1/2",
                "CrashLoopBackOff",
                "2 (10m ago)",
                "3h",
                "127.0.0.5",
                "local",
                null,
                "<none>"
            ])
        );
    }

    #[test]
    fn pod_status_reasons() {
        let completed = json!({"spec": {"containers": [{}]}, "status": {"phase": "Succeeded",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]}});
        assert_eq!(pod_status(&completed), "Completed");
        let failed = json!({"spec": {"containers": [{}]}, "status": {"phase": "Failed",
            "containerStatuses": [{"state": {"terminated": {"exitCode": 3}}}]}});
        assert_eq!(pod_status(&failed), "ExitCode:3");
        let pending = json!({"status": {"phase": "Pending"}});
        assert_eq!(pod_status(&pending), "Pending");
        let init = json!({"spec": {"initContainers": [{}, {}]}, "status": {"phase": "Pending",
            "initContainerStatuses": [{"state": {"terminated": {"exitCode": 0}}}, {"state": {"running": {}}}]}});
        assert_eq!(pod_status(&init), "Init:1/2");
        let deleting = json!({"metadata": {"deletionTimestamp": "2026-11-26T11:00:00Z"}, "status": {"phase": "Running"}});
        assert_eq!(pod_status(&deleting), "Terminating");
    }

    #[test]
    fn jobs_show_status_completions_and_duration() {
        let done = json!({
            "metadata": {"name": "wine-train-1", "creationTimestamp": "2026-11-26T11:00:00Z"},
            "spec": {"completions": 1, "template": {"spec": {"containers": [{"name": "train", "image": "driftline"}]}},
                     "selector": {"matchLabels": {"job-name": "wine-train-1"}}},
            "status": {"succeeded": 1, "startTime": "2026-11-26T11:00:00Z", "completionTime": "2026-11-26T11:02:30Z",
                       "conditions": [{"type": "Complete", "status": "True"}]}
        });
        let running = json!({
            "metadata": {"name": "r", "creationTimestamp": "2026-11-26T11:59:00Z"},
            "spec": {"parallelism": 3},
            "status": {"startTime": "2026-11-26T11:59:00Z"}
        });
        let t = table_at(
            &builtin_columns("batch", "jobs"),
            &[done, running],
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "wine-train-1",
                "Complete",
                "1/1",
                "2m30s",
                "60m",
                "train",
                "driftline",
                "job-name=wine-train-1"
            ])
        );
        assert_eq!(t["rows"][1]["cells"][1], "Running");
        assert_eq!(t["rows"][1]["cells"][2], "0/1 of 3");
        assert_eq!(t["rows"][1]["cells"][3], "60s");
        let failed = json!({"status": {"conditions": [{"type": "Failed", "status": "True"}]}});
        assert_eq!(job_status(&failed), "Failed");
        assert_eq!(job_status(&json!({"spec": {"suspend": true}})), "Suspended");
    }

    #[test]
    fn deployments_services_namespaces_configmaps_leases() {
        let deploy = json!({"metadata": {"name": "wine-v3"}, "spec": {"replicas": 2},
            "status": {"readyReplicas": 1, "updatedReplicas": 2}});
        let t = table_at(
            &builtin_columns("apps", "deployments"),
            &[deploy],
            json!({}),
            now(),
        );
        assert_eq!(t["rows"][0]["cells"][1], "1/2");
        assert_eq!(t["rows"][0]["cells"][2], 2);
        assert_eq!(t["rows"][0]["cells"][3], 0);

        let svc = json!({"metadata": {"name": "wine"}, "spec": {"type": "NodePort", "clusterIP": "10.0.0.7",
            "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 9090}],
            "selector": {"app": "wine"}}});
        let t = table_at(&builtin_columns("", "services"), &[svc], json!({}), now());
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "wine",
                "NodePort",
                "10.0.0.7",
                "<none>",
                "80:30080/TCP,9090/TCP",
                null,
                "app=wine"
            ])
        );
        let lb = json!({"spec": {"type": "LoadBalancer"}});
        assert_eq!(service_external_ip(&lb), "<pending>");

        let ns = json!({"metadata": {"name": "ml"}, "status": {"phase": "Active"}});
        let t = table_at(&builtin_columns("", "namespaces"), &[ns], json!({}), now());
        assert_eq!(t["rows"][0]["cells"][1], "Active");

        let cm = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        let t = table_at(&builtin_columns("", "configmaps"), &[cm], json!({}), now());
        assert_eq!(t["rows"][0]["cells"][1], 3);

        let lease = json!({"metadata": {"name": "driftline"}, "spec": {"holderIdentity": "op-1"}});
        let t = table_at(
            &builtin_columns("coordination.k8s.io", "leases"),
            &[lease],
            json!({}),
            now(),
        );
        assert_eq!(t["rows"][0]["cells"][1], "op-1");
    }

    #[test]
    fn replicasets_nodes_and_claims() {
        let rs = json!({"metadata": {"name": "wine-v3-abc"}, "spec": {"replicas": 2}, "status": {"replicas": 2}});
        let t = table_at(
            &builtin_columns("apps", "replicasets"),
            &[rs],
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["wine-v3-abc", 2, 2, 0, null, "", "", "<none>"])
        );

        let node = json!({"metadata": {"name": "local", "labels": {"node-role.kubernetes.io/control-plane": ""}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "Ready", "status": "True"}], "nodeInfo": {"kubeletVersion": "v1.33.0"}}});
        let t = table_at(&builtin_columns("", "nodes"), &[node], json!({}), now());
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "local",
                "Ready,SchedulingDisabled",
                "control-plane",
                null,
                "v1.33.0"
            ])
        );

        let pvc = json!({"metadata": {"name": "data"}, "spec": {"volumeName": "pv-1", "storageClassName": "local"},
            "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"]}});
        let t = table_at(
            &builtin_columns("", "persistentvolumeclaims"),
            &[pvc],
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["data", "Bound", "pv-1", "1Gi", "RWO", "local", null])
        );
    }

    #[test]
    fn events_put_name_last_and_describe_the_object() {
        let ev = json!({"metadata": {"name": "wine.1"}, "type": "Normal", "reason": "Promoted",
            "message": "v3 is champion", "involvedObject": {"kind": "Model", "name": "wine"},
            "lastTimestamp": "2026-11-26T11:58:00Z", "count": 2});
        let t = table_at(&builtin_columns("", "events"), &[ev], json!({}), now());
        assert_eq!(t["columnDefinitions"][0]["name"], "Last Seen");
        assert_eq!(t["columnDefinitions"][9]["name"], "Name");
        assert_eq!(
            t["rows"][0]["cells"],
            json!([
                "2m",
                "Normal",
                "Promoted",
                "model/wine",
                "",
                "",
                "v3 is champion",
                "<unknown>",
                "2",
                "wine.1"
            ])
        );
        let new_style = json!({"metadata": {"name": "e"}, "note": "hello", "regarding": {"kind": "Pod", "name": "p"},
            "eventTime": "2026-11-26T11:59:30Z"});
        let t = table_at(
            &builtin_columns("events.k8s.io", "events"),
            &[new_style],
            json!({}),
            now(),
        );
        assert_eq!(t["rows"][0]["cells"][0], "30s");
        assert_eq!(t["rows"][0]["cells"][3], "pod/p");
        assert_eq!(t["rows"][0]["cells"][6], "hello");
    }

    #[test]
    fn crds_show_created_at_and_unknown_kinds_get_age() {
        let crd = json!({"metadata": {"name": "models.driftline.dev", "creationTimestamp": "2026-11-20T08:00:00Z"}});
        let t = table_at(
            &builtin_columns("apiextensions.k8s.io", "customresourcedefinitions"),
            &[crd],
            json!({}),
            now(),
        );
        assert_eq!(
            t["rows"][0]["cells"],
            json!(["models.driftline.dev", "2026-11-20T08:00:00Z"])
        );
        let other = builtin_columns("example.com", "widgets");
        assert_eq!(other.len(), 1);
        assert_eq!(other[0].name, "Age");
    }
}
