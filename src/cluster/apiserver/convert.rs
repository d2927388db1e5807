//! Conversion between core/v1 and events.k8s.io/v1 Events, which share storage
//! as on a real cluster (so `kubectl describe` shows events kube-rs records).

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use super::resources::ResourceType;

/// Field renames: (events.k8s.io/v1 name, core/v1 name).
const RENAMES: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("deprecatedCount", "count"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedSource", "source"),
    ("reportingController", "reportingComponent"),
];

fn rename(obj: &Value, forward: bool, api_version: &str) -> Value {
    let Value::Object(m) = obj else {
        return obj.clone();
    };
    let mut out = Map::new();
    for (k, v) in m {
        let key = RENAMES
            .iter()
            .find(|(new, old)| if forward { k == new } else { k == old })
            .map(|(new, old)| if forward { *old } else { *new })
            .unwrap_or(k);
        out.insert(key.to_string(), v.clone());
    }
    out.insert("apiVersion".into(), json!(api_version));
    Value::Object(out)
}

/// events.k8s.io/v1 Event → core/v1 Event (storage form).
pub fn event_to_core(obj: &Value) -> Value {
    rename(obj, true, "v1")
}

/// core/v1 Event → events.k8s.io/v1 Event.
pub fn event_from_core(obj: &Value) -> Value {
    rename(obj, false, "events.k8s.io/v1")
}

/// Events of events.k8s.io are stored in core form.
pub(super) fn storage_form(ty: &ResourceType, obj: Value) -> Value {
    if ty.group == "events.k8s.io" {
        event_to_core(&obj)
    } else {
        obj
    }
}

/// An object as this type's clients see it.
pub(super) fn present<'a>(ty: &ResourceType, obj: &'a Value) -> Cow<'a, Value> {
    if ty.group == "events.k8s.io" {
        Cow::Owned(event_from_core(obj))
    } else {
        Cow::Borrowed(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_between_groups() {
        let v1 = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
                        "regarding": {"kind": "Model", "name": "m"}, "note": "gate failed", "reason": "GateFailed",
                        "reportingController": "driftline"});
        let core = event_to_core(&v1);
        assert_eq!(core["involvedObject"]["name"], "m");
        assert_eq!(core["message"], "gate failed");
        assert_eq!(core["apiVersion"], "v1");
        assert_eq!(event_from_core(&core), v1);
    }
}
