//! Protobuf request bodies (`application/vnd.kubernetes.protobuf`), which
//! kubectl and client-go send for built-in kinds, decoded into the JSON object
//! model the rest of the server works on.
//!
//! Decoding is generic: one descriptor set of the Kubernetes API protos
//! (`proto/k8s.binpb`) and one table of Go JSON facts (`proto/fields.txt`),
//! both written by `tools/k8s-proto` from the Go modules the real API server
//! is built from. The JSON produced is what the real server's Go types would
//! write: the special apimachinery types keep their JSON forms, zero values
//! are left out where Go's `omitempty` leaves them out, and pointers keep an
//! explicit zero (`replicas: 0`).

use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use base64::Engine;
use chrono::{DateTime, SecondsFormat};
use prost_reflect::{
    DescriptorPool, DynamicMessage, MapKey, MessageDescriptor, ReflectMessage, Value as Pb,
};
use serde_json::{Map, Value, json};

use super::error::ApiError;

/// The media type of Kubernetes protobuf bodies.
pub const MEDIA_TYPE: &str = "application/vnd.kubernetes.protobuf";

/// Every Kubernetes protobuf body starts with these four bytes.
const MAGIC: &[u8] = b"k8s\0";

const UNKNOWN: &str = "k8s.io.apimachinery.pkg.runtime.Unknown";
const TYPE_META: &str = "k8s.io.apimachinery.pkg.runtime.TypeMeta";
const META: &str = "k8s.io.apimachinery.pkg.apis.meta.v1";
const EXTENSIONS: &str = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1";

/// The descriptors and Go JSON facts, loaded once.
struct Schema {
    pool: DescriptorPool,
    /// Fields whose zero value is still written (pointers, no omitempty).
    zero_valued: HashSet<String>,
    /// Fields whose JSON name differs from their proto name.
    json_names: HashMap<String, String>,
    /// Embedded Go structs: their fields go in the parent's object.
    inline: HashSet<String>,
}

static SCHEMA: LazyLock<Result<Schema, String>> = LazyLock::new(|| {
    let pool = DescriptorPool::decode(&include_bytes!("proto/k8s.binpb")[..])
        .map_err(|e| format!("the built-in Kubernetes protobuf descriptors do not load: {e}"))?;
    let mut zero_valued = HashSet::new();
    let mut json_names = HashMap::new();
    let mut inline = HashSet::new();
    for line in include_str!("proto/fields.txt").lines() {
        let mut words = line.split_whitespace();
        let Some(field) = words.next().filter(|w| !w.starts_with('#')) else {
            continue;
        };
        for fact in words {
            if fact == "zero" {
                zero_valued.insert(field.to_string());
            } else if fact == "inline" {
                inline.insert(field.to_string());
            } else if let Some(name) = fact.strip_prefix("json=") {
                json_names.insert(field.to_string(), name.to_string());
            }
        }
    }
    Ok(Schema {
        pool,
        zero_valued,
        json_names,
        inline,
    })
});

fn schema() -> Result<&'static Schema, ApiError> {
    SCHEMA.as_ref().map_err(|e| ApiError::Internal(e.clone()))
}

/// Whether a `Content-Type` (already lower-cased, parameters dropped) is protobuf.
pub fn is_protobuf(content_type: &str) -> bool {
    content_type == MEDIA_TYPE
}

/// Decodes a `k8s\0` + `runtime.Unknown` body into the object's JSON form,
/// with `apiVersion` and `kind` from the envelope's type meta.
pub fn decode_object(body: &[u8]) -> Result<Value, ApiError> {
    let schema = schema()?;
    let Some(envelope) = body.strip_prefix(MAGIC) else {
        return Err(ApiError::BadRequest(format!(
            "the {MEDIA_TYPE} body does not start with the 4-byte `k8s\\0` prefix every Kubernetes protobuf body has; send the object encoded by client-go, or as JSON"
        )));
    };
    let unknown_desc = message(schema, UNKNOWN)?;
    let unknown = DynamicMessage::decode(unknown_desc, envelope).map_err(|e| {
        ApiError::BadRequest(format!(
            "the {MEDIA_TYPE} body is not a runtime.Unknown envelope: {e}"
        ))
    })?;
    let type_meta = match unknown.get_field_by_name("typeMeta").as_deref() {
        Some(Pb::Message(m)) => m.clone(),
        _ => DynamicMessage::new(message(schema, TYPE_META)?),
    };
    let text = |m: &DynamicMessage, name: &str| match m.get_field_by_name(name).as_deref() {
        Some(Pb::String(s)) => s.clone(),
        _ => String::new(),
    };
    let api_version = text(&type_meta, "apiVersion");
    let kind = text(&type_meta, "kind");
    let encoding = text(&unknown, "contentEncoding");
    if !encoding.is_empty() {
        return Err(ApiError::UnsupportedMediaType {
            accepted: format!(
                "application/json, {MEDIA_TYPE} without a content encoding (this body has contentEncoding `{encoding}`)"
            ),
        });
    }
    if api_version.is_empty() || kind.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "the {MEDIA_TYPE} body's envelope names no apiVersion and kind (typeMeta is `{api_version}`/`{kind}`); the server needs both to decode it"
        )));
    }
    let desc = kind_message(schema, &api_version, &kind).ok_or_else(|| {
        ApiError::UnsupportedMediaType {
            accepted: format!(
                "application/json (protobuf is decoded for built-in kinds only, and {kind} of {api_version} is not one; custom resources are JSON or YAML)"
            ),
        }
    })?;
    let raw = match unknown.get_field_by_name("raw").as_deref() {
        Some(Pb::Bytes(b)) => b.clone(),
        _ => Default::default(),
    };
    let msg = DynamicMessage::decode(desc, raw).map_err(|e| {
        ApiError::BadRequest(format!(
            "the {MEDIA_TYPE} body does not decode as a {kind} of {api_version}: {e}"
        ))
    })?;
    let mut out = Map::new();
    out.insert("apiVersion".into(), json!(api_version));
    out.insert("kind".into(), json!(kind));
    if let Value::Object(fields) = to_json(schema, &msg)? {
        out.extend(fields);
    }
    Ok(Value::Object(out))
}

fn message(schema: &Schema, name: &str) -> Result<MessageDescriptor, ApiError> {
    schema
        .pool
        .get_message_by_name(name)
        .ok_or_else(|| ApiError::Internal(format!("protobuf descriptor `{name}` is missing")))
}

/// The message of a built-in kind: the proto package of group `g.example.io`
/// version `v` ends in `.g.v` (the core group's in `.core.v1`).
fn kind_message(schema: &Schema, api_version: &str, kind: &str) -> Option<MessageDescriptor> {
    let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
    let label = if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    };
    let suffix = format!(".{label}.{version}");
    schema
        .pool
        .all_messages()
        .find(|m| m.name() == kind && m.package_name().ends_with(&suffix))
}

/// One message as the Go type's JSON.
fn to_json(schema: &Schema, msg: &DynamicMessage) -> Result<Value, ApiError> {
    let desc = msg.descriptor();
    if let Some(special) = special_json(schema, &desc, msg)? {
        return Ok(special);
    }
    let mut out = Map::new();
    for field in desc.fields() {
        if !msg.has_field(&field) {
            continue;
        }
        let cow = msg.get_field(&field);
        let value: &Pb = &cow;
        let full = field.full_name();
        let keep_zero = schema.zero_valued.contains(full);
        let json = match value {
            Pb::List(items) if items.is_empty() => continue,
            Pb::Map(entries) if entries.is_empty() => continue,
            Pb::List(items) => Value::Array(
                items
                    .iter()
                    .map(|v| scalar_or_message(schema, v))
                    .collect::<Result<_, _>>()?,
            ),
            Pb::Map(entries) => {
                let mut m = Map::new();
                for (k, v) in entries {
                    m.insert(map_key(k), scalar_or_message(schema, v)?);
                }
                Value::Object(m)
            }
            Pb::Message(_) => scalar_or_message(schema, value)?,
            scalar if is_zero(scalar) && !keep_zero => continue,
            scalar => scalar_or_message(schema, scalar)?,
        };
        if schema.inline.contains(full)
            && let Value::Object(fields) = json
        {
            out.extend(fields);
            continue;
        }
        let name = schema
            .json_names
            .get(full)
            .map(String::as_str)
            .unwrap_or(field.name());
        out.insert(name.to_string(), json);
    }
    Ok(Value::Object(out))
}

fn scalar_or_message(schema: &Schema, value: &Pb) -> Result<Value, ApiError> {
    Ok(match value {
        Pb::Bool(b) => json!(b),
        Pb::I32(n) => json!(n),
        Pb::I64(n) => json!(n),
        Pb::U32(n) => json!(n),
        Pb::U64(n) => json!(n),
        Pb::F32(f) => json!(f),
        Pb::F64(f) => json!(f),
        Pb::EnumNumber(n) => json!(n),
        Pb::String(s) => json!(s),
        // Go's encoding/json writes []byte as standard base64 (Secret data).
        Pb::Bytes(b) => json!(base64::engine::general_purpose::STANDARD.encode(b)),
        Pb::Message(m) => to_json(schema, m)?,
        Pb::List(items) => Value::Array(
            items
                .iter()
                .map(|v| scalar_or_message(schema, v))
                .collect::<Result<_, _>>()?,
        ),
        Pb::Map(entries) => {
            let mut m = Map::new();
            for (k, v) in entries {
                m.insert(map_key(k), scalar_or_message(schema, v)?);
            }
            Value::Object(m)
        }
    })
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

fn is_zero(value: &Pb) -> bool {
    match value {
        Pb::Bool(b) => !b,
        Pb::I32(n) | Pb::EnumNumber(n) => *n == 0,
        Pb::I64(n) => *n == 0,
        Pb::U32(n) => *n == 0,
        Pb::U64(n) => *n == 0,
        Pb::F32(f) => *f == 0.0,
        Pb::F64(f) => *f == 0.0,
        Pb::String(s) => s.is_empty(),
        Pb::Bytes(b) => b.is_empty(),
        Pb::Message(_) | Pb::List(_) | Pb::Map(_) => false,
    }
}

/// The apimachinery types whose Go JSON is not their proto shape.
fn special_json(
    schema: &Schema,
    desc: &MessageDescriptor,
    msg: &DynamicMessage,
) -> Result<Option<Value>, ApiError> {
    let field = |name: &str| msg.get_field_by_name(name).map(|v| v.into_owned());
    let int = |name: &str| match field(name) {
        Some(Pb::I64(n)) => n,
        Some(Pb::I32(n)) => i64::from(n),
        _ => 0,
    };
    let text = |name: &str| match field(name) {
        Some(Pb::String(s)) => s,
        _ => String::new(),
    };
    let bytes = |name: &str| match field(name) {
        Some(Pb::Bytes(b)) => b.to_vec(),
        _ => Vec::new(),
    };
    let full = desc.full_name();
    let out = if full == "k8s.io.apimachinery.pkg.api.resource.Quantity" {
        json!(text("string"))
    } else if full == format!("{META}.Time") {
        time_json(int("seconds"), int("nanos"), SecondsFormat::Secs)
    } else if full == format!("{META}.MicroTime") {
        time_json(int("seconds"), int("nanos"), SecondsFormat::Micros)
    } else if full == format!("{META}.Duration") {
        json!(go_duration(int("duration")))
    } else if full == "k8s.io.apimachinery.pkg.util.intstr.IntOrString" {
        // type 0 is an int, 1 a string.
        if int("type") == 1 {
            json!(text("strVal"))
        } else {
            json!(int("intVal"))
        }
    } else if full == "k8s.io.apimachinery.pkg.runtime.RawExtension"
        || full == format!("{META}.FieldsV1")
        || full == format!("{EXTENSIONS}.JSON")
    {
        embedded_json(full, &bytes("raw"))?
    } else if full == format!("{META}.Verbs") || full.ends_with(".ExtraValue") {
        // Go declares these as named string lists: a JSON array.
        match field("items") {
            Some(list @ Pb::List(_)) => scalar_or_message(schema, &list)?,
            _ => json!([]),
        }
    } else if full == format!("{EXTENSIONS}.JSONSchemaPropsOrBool") {
        match field("schema").filter(|_| msg.has_field_by_name("schema")) {
            Some(schema_value) => scalar_or_message(schema, &schema_value)?,
            None => json!(matches!(field("allows"), Some(Pb::Bool(true)))),
        }
    } else if full == format!("{EXTENSIONS}.JSONSchemaPropsOrArray") {
        match field("jSONSchemas") {
            Some(Pb::List(items)) if !items.is_empty() => {
                scalar_or_message(schema, &Pb::List(items))?
            }
            _ => match field("schema").filter(|_| msg.has_field_by_name("schema")) {
                Some(s) => scalar_or_message(schema, &s)?,
                None => Value::Null,
            },
        }
    } else if full == format!("{EXTENSIONS}.JSONSchemaPropsOrStringArray") {
        match field("schema").filter(|_| msg.has_field_by_name("schema")) {
            Some(s) => scalar_or_message(schema, &s)?,
            None => match field("property") {
                Some(list @ Pb::List(_)) => scalar_or_message(schema, &list)?,
                _ => json!([]),
            },
        }
    } else {
        return Ok(None);
    };
    Ok(Some(out))
}

/// `metav1.Time` and `MicroTime`: RFC 3339 in UTC; the zero time is `null`.
fn time_json(seconds: i64, nanos: i64, precision: SecondsFormat) -> Value {
    if seconds == 0 && nanos == 0 {
        return Value::Null;
    }
    let nanos = u32::try_from(nanos).unwrap_or(0);
    match DateTime::from_timestamp(seconds, nanos) {
        Some(t) => json!(t.to_rfc3339_opts(precision, true)),
        None => Value::Null,
    }
}

/// A nanosecond count as Go's `time.Duration.String` writes it (`1h2m3.5s`).
fn go_duration(nanos: i64) -> String {
    if nanos == 0 {
        return "0s".into();
    }
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.unsigned_abs();
    if n < 1_000 {
        return format!("{sign}{n}ns");
    }
    if n < 1_000_000 {
        return format!("{sign}{}µs", trim_fraction(n, 1_000));
    }
    if n < 1_000_000_000 {
        return format!("{sign}{}ms", trim_fraction(n, 1_000_000));
    }
    let hours = n / 3_600_000_000_000;
    let minutes = n / 60_000_000_000 % 60;
    let secs = trim_fraction(n % 60_000_000_000, 1_000_000_000);
    match (hours, minutes) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

/// `n / unit` with the fraction's trailing zeros dropped.
fn trim_fraction(n: u64, unit: u64) -> String {
    let whole = n / unit;
    let frac = n % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let digits = unit.ilog10() as usize;
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}", frac.trim_end_matches('0'))
}

/// Raw JSON carried in bytes (RawExtension, FieldsV1, CRD `JSON`); a nested
/// protobuf object is decoded the same way as a body.
fn embedded_json(type_name: &str, raw: &[u8]) -> Result<Value, ApiError> {
    if raw.is_empty() {
        return Ok(Value::Null);
    }
    if raw.starts_with(MAGIC) {
        return decode_object(raw);
    }
    serde_json::from_slice(raw).map_err(|e| {
        ApiError::BadRequest(format!(
            "a {type_name} in the protobuf body holds bytes that are neither JSON nor a protobuf object: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_reflect::prost::Message;

    fn msg(name: &str) -> DynamicMessage {
        DynamicMessage::new(schema().unwrap().pool.get_message_by_name(name).unwrap())
    }

    fn set(m: &mut DynamicMessage, field: &str, value: Pb) {
        m.set_field_by_name(field, value);
    }

    fn text(s: &str) -> Pb {
        Pb::String(s.into())
    }

    /// A body as client-go writes it: magic, then runtime.Unknown.
    fn envelope(api_version: &str, kind: &str, object: &DynamicMessage) -> Vec<u8> {
        let mut type_meta = msg(TYPE_META);
        set(&mut type_meta, "apiVersion", text(api_version));
        set(&mut type_meta, "kind", text(kind));
        let mut unknown = msg(UNKNOWN);
        set(&mut unknown, "typeMeta", Pb::Message(type_meta));
        set(
            &mut unknown,
            "raw",
            Pb::Bytes(object.encode_to_vec().into()),
        );
        set(&mut unknown, "contentEncoding", text(""));
        set(&mut unknown, "contentType", text(""));
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        body
    }

    fn meta(name: &str) -> DynamicMessage {
        let mut m = msg(&format!("{META}.ObjectMeta"));
        set(&mut m, "name", text(name));
        // Go writes non-pointer strings even when empty; JSON must omit them.
        set(&mut m, "namespace", text(""));
        set(
            &mut m,
            "creationTimestamp",
            Pb::Message(msg(&format!("{META}.Time"))),
        );
        m
    }

    #[test]
    fn secret_bytes_become_base64_and_empty_defaults_vanish() {
        let mut secret = msg("k8s.io.api.core.v1.Secret");
        set(&mut secret, "metadata", Pb::Message(meta("s")));
        let mut data = HashMap::new();
        data.insert(MapKey::String("k".into()), Pb::Bytes(b"v".to_vec().into()));
        set(&mut secret, "data", Pb::Map(data));
        set(&mut secret, "type", text("Opaque"));
        let obj = decode_object(&envelope("v1", "Secret", &secret)).unwrap();
        assert_eq!(
            obj,
            json!({"apiVersion": "v1", "kind": "Secret",
                   "metadata": {"name": "s", "creationTimestamp": null},
                   "data": {"k": "dg=="}, "type": "Opaque"})
        );
    }

    #[test]
    fn pointer_zero_survives_and_special_types_take_their_json_forms() {
        let mut quantity = msg("k8s.io.apimachinery.pkg.api.resource.Quantity");
        set(&mut quantity, "string", text("500m"));
        let mut limits = HashMap::new();
        limits.insert(MapKey::String("cpu".into()), Pb::Message(quantity));
        let mut resources = msg("k8s.io.api.core.v1.ResourceRequirements");
        set(&mut resources, "limits", Pb::Map(limits));
        let mut port = msg("k8s.io.apimachinery.pkg.util.intstr.IntOrString");
        set(&mut port, "type", Pb::I64(1));
        set(&mut port, "strVal", text("http"));
        let mut probe_handler = msg("k8s.io.api.core.v1.HTTPGetAction");
        set(&mut probe_handler, "port", Pb::Message(port));
        let mut handler = msg("k8s.io.api.core.v1.ProbeHandler");
        set(&mut handler, "httpGet", Pb::Message(probe_handler));
        let mut probe = msg("k8s.io.api.core.v1.Probe");
        set(&mut probe, "handler", Pb::Message(handler));
        let mut container = msg("k8s.io.api.core.v1.Container");
        set(&mut container, "name", text("web"));
        set(&mut container, "image", text("x"));
        set(&mut container, "resources", Pb::Message(resources));
        set(&mut container, "readinessProbe", Pb::Message(probe));
        let mut pod_spec = msg("k8s.io.api.core.v1.PodSpec");
        set(
            &mut pod_spec,
            "containers",
            Pb::List(vec![Pb::Message(container)]),
        );
        let mut template = msg("k8s.io.api.core.v1.PodTemplateSpec");
        set(&mut template, "spec", Pb::Message(pod_spec));
        let mut surge = msg("k8s.io.apimachinery.pkg.util.intstr.IntOrString");
        set(&mut surge, "type", Pb::I64(0));
        set(&mut surge, "intVal", Pb::I32(2));
        let mut rolling = msg("k8s.io.api.apps.v1.RollingUpdateDeployment");
        set(&mut rolling, "maxSurge", Pb::Message(surge));
        let mut strategy = msg("k8s.io.api.apps.v1.DeploymentStrategy");
        set(&mut strategy, "rollingUpdate", Pb::Message(rolling));
        let mut spec = msg("k8s.io.api.apps.v1.DeploymentSpec");
        // replicas is a *int32: an explicit 0 (scale to zero) must be kept.
        set(&mut spec, "replicas", Pb::I32(0));
        // minReadySeconds is a plain int32 with omitempty: 0 means unset.
        set(&mut spec, "minReadySeconds", Pb::I32(0));
        set(&mut spec, "template", Pb::Message(template));
        set(&mut spec, "strategy", Pb::Message(strategy));
        let mut deployment = msg("k8s.io.api.apps.v1.Deployment");
        let mut m = meta("web");
        let mut created = msg(&format!("{META}.Time"));
        set(&mut created, "seconds", Pb::I64(1_700_000_000));
        set(&mut m, "creationTimestamp", Pb::Message(created));
        set(&mut deployment, "metadata", Pb::Message(m));
        set(&mut deployment, "spec", Pb::Message(spec));
        set(
            &mut deployment,
            "status",
            Pb::Message(msg("k8s.io.api.apps.v1.DeploymentStatus")),
        );
        let obj = decode_object(&envelope("apps/v1", "Deployment", &deployment)).unwrap();
        assert_eq!(obj["metadata"]["creationTimestamp"], "2023-11-14T22:13:20Z");
        assert_eq!(obj["spec"]["replicas"], 0);
        assert!(obj["spec"].get("minReadySeconds").is_none(), "{obj}");
        assert_eq!(obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"], 2);
        let c = &obj["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["resources"]["limits"]["cpu"], "500m");
        // Go embeds ProbeHandler in Probe (proto field `handler`): its fields are inline.
        assert_eq!(c["readinessProbe"]["httpGet"]["port"], "http");
        assert!(c["readinessProbe"].get("handler").is_none(), "{c}");
        assert_eq!(obj["status"], json!({}));
    }

    #[test]
    fn micro_time_duration_raw_extension_and_renamed_fields() {
        let mut event = msg("k8s.io.api.events.v1.Event");
        let mut t = msg(&format!("{META}.MicroTime"));
        set(&mut t, "seconds", Pb::I64(1_700_000_000));
        set(&mut t, "nanos", Pb::I32(123_456_000));
        set(&mut event, "eventTime", Pb::Message(t));
        set(&mut event, "metadata", Pb::Message(meta("e")));
        let obj = decode_object(&envelope("events.k8s.io/v1", "Event", &event)).unwrap();
        assert_eq!(obj["eventTime"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(obj["kind"], "Event");

        let mut raw = msg("k8s.io.apimachinery.pkg.runtime.RawExtension");
        set(
            &mut raw,
            "raw",
            Pb::Bytes(br#"{"a":[1,2]}"#.to_vec().into()),
        );
        let schema = schema().unwrap();
        assert_eq!(to_json(schema, &raw).unwrap(), json!({"a": [1, 2]}));

        let mut props = msg(&format!("{EXTENSIONS}.JSONSchemaProps"));
        set(&mut props, "type", text("object"));
        set(
            &mut props,
            "xKubernetesPreserveUnknownFields",
            Pb::Bool(true),
        );
        assert_eq!(
            to_json(schema, &props).unwrap(),
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true})
        );

        for (nanos, text) in [
            (0, "0s"),
            (1_500, "1.5µs"),
            (2_000_000, "2ms"),
            (90_000_000_000, "1m30s"),
            (3_600_000_000_000, "1h0m0s"),
            (-1_500_000_000, "-1.5s"),
        ] {
            assert_eq!(go_duration(nanos), text);
        }
    }

    #[test]
    fn every_served_builtin_kind_and_scale_have_a_descriptor() {
        let schema = schema().unwrap();
        let registry = super::super::resources::Registry::with_builtins();
        for ty in registry.types().iter().filter(|t| !t.custom) {
            assert!(
                kind_message(schema, &ty.api_version(), &ty.kind).is_some(),
                "{} {} has no protobuf descriptor: add its group to tools/k8s-proto",
                ty.api_version(),
                ty.kind
            );
        }
        let scale = kind_message(schema, "autoscaling/v1", "Scale").unwrap();
        assert_eq!(scale.full_name(), "k8s.io.api.autoscaling.v1.Scale");
        let core_event = kind_message(schema, "v1", "Event").unwrap();
        assert_eq!(core_event.full_name(), "k8s.io.api.core.v1.Event");
    }

    #[test]
    fn malformed_and_unsupported_bodies_are_status_errors_that_say_why() {
        let err = decode_object(b"{\"kind\":\"Secret\"}").unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(err.to_string().contains("k8s\\0"), "{err}");

        let mut truncated = MAGIC.to_vec();
        truncated.extend([0x0a, 0x40, 0x0a]);
        let err = decode_object(&truncated).unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(err.to_string().contains("runtime.Unknown"), "{err}");

        let widget = msg("k8s.io.api.core.v1.ConfigMap");
        let err = decode_object(&envelope("example.dev/v1", "Widget", &widget)).unwrap_err();
        assert_eq!(err.code(), 415);
        assert!(
            err.to_string().contains("Widget of example.dev/v1"),
            "{err}"
        );

        // A ConfigMap envelope whose raw bytes are garbage.
        let mut type_meta = msg(TYPE_META);
        set(&mut type_meta, "apiVersion", text("v1"));
        set(&mut type_meta, "kind", text("ConfigMap"));
        let mut unknown = msg(UNKNOWN);
        set(&mut unknown, "typeMeta", Pb::Message(type_meta));
        set(
            &mut unknown,
            "raw",
            Pb::Bytes(vec![0x0a, 0xff, 0xff].into()),
        );
        let mut body = MAGIC.to_vec();
        body.extend(unknown.encode_to_vec());
        let err = decode_object(&body).unwrap_err();
        assert_eq!(err.code(), 400);
        assert!(
            err.to_string()
                .contains("does not decode as a ConfigMap of v1"),
            "{err}"
        );
    }
}
