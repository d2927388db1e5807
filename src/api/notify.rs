//! Notifications: the lifecycle steps a person can be told about, their
//! names in `spec.notify[].events` and their CloudEvents `type`, and the
//! one shape of a sink, whether it is written on a Model (`spec.notify`) or
//! given to the operator for every Model (`--notify`, the chart's
//! `notify.sinks`). One parser and one set of messages for both; the CEL
//! rules in the CRD use the same messages.

use std::fmt;

use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::validate::FieldError;

/// Prefix of every CloudEvents `type` driftline sends.
pub const EVENT_TYPE_PREFIX: &str = "io.driftline.model.";

/// A lifecycle step the operator already records as a Kubernetes Event
/// (or, for `gatePassed` and `driftDetected`, as the status it writes).
#[derive(Deserialize, Serialize, Clone, Copy, Debug, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum NotifyEvent {
    TrainingStarted,
    TrainingFailed,
    DataRejected,
    GatePassed,
    GateRejected,
    ShadowPassed,
    ShadowFailed,
    CanaryStepPassed,
    CanaryStepFailed,
    Promoted,
    RolledBack,
    DriftDetected,
    RetrainDeferred,
    /// Live traffic has left the gate's regression test-set (`TestSetStale`).
    TestSetStale,
}

impl NotifyEvent {
    /// Every step, in lifecycle order.
    pub const ALL: [NotifyEvent; 14] = [
        NotifyEvent::TrainingStarted,
        NotifyEvent::TrainingFailed,
        NotifyEvent::DataRejected,
        NotifyEvent::GatePassed,
        NotifyEvent::GateRejected,
        NotifyEvent::ShadowPassed,
        NotifyEvent::ShadowFailed,
        NotifyEvent::CanaryStepPassed,
        NotifyEvent::CanaryStepFailed,
        NotifyEvent::Promoted,
        NotifyEvent::RolledBack,
        NotifyEvent::DriftDetected,
        NotifyEvent::RetrainDeferred,
        NotifyEvent::TestSetStale,
    ];

    /// The name written in `events:` (`rolledBack`): its serde word.
    pub fn name(self) -> String {
        super::words::word(&self)
    }

    /// The CloudEvents `type`: `io.driftline.model.rolledback`.
    pub fn cloud_event_type(self) -> String {
        format!("{EVENT_TYPE_PREFIX}{}", self.name().to_ascii_lowercase())
    }

    /// Whether the step is bad news (a Slack message's colour, its emoji).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            NotifyEvent::TrainingFailed
                | NotifyEvent::DataRejected
                | NotifyEvent::GateRejected
                | NotifyEvent::ShadowFailed
                | NotifyEvent::CanaryStepFailed
                | NotifyEvent::RolledBack
                | NotifyEvent::DriftDetected
                | NotifyEvent::TestSetStale
        )
    }
}

impl fmt::Display for NotifyEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// The body a sink receives.
#[derive(Deserialize, Serialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum NotifyFormat {
    /// A CloudEvents 1.0 event in structured JSON mode (`application/cloudevents+json`).
    #[default]
    #[serde(rename = "cloudevents")]
    CloudEvents,
    /// A Slack incoming-webhook body (`text` and `blocks`).
    #[serde(rename = "slack")]
    Slack,
}

/// A key of a Secret: the HMAC-SHA256 key the body is signed with.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NotifySecretRef {
    /// The Secret, in the Model's namespace (the operator's, for an operator-wide sink).
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::SECRET_NAME))]
    #[schemars(length(max = 253))]
    pub name: String,
    /// The key in the Secret's data holding the signing key.
    #[x_kube(validation = Rule::new("size(self) > 0").message(msg::SECRET_KEY))]
    #[schemars(length(max = 253))]
    pub key: String,
}

/// One place notifications go.
#[derive(Deserialize, Serialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NotifySink {
    /// Where events are POSTed: an `http://` or `https://` URL.
    #[x_kube(validation = Rule::new(URL_RULE).message(msg::URL))]
    #[schemars(length(max = 2048))]
    pub url: String,
    /// Which steps to send (`promoted`, `rolledBack`, …), or `*` for all.
    #[serde(default = "all_events")]
    #[x_kube(validation = Rule::new(events_rule()).message(msg::EVENT_UNKNOWN))]
    #[schemars(length(max = 16), inner(length(max = 32)))]
    pub events: Vec<String>,
    /// `cloudevents` (the default) or `slack`.
    #[serde(default)]
    pub format: NotifyFormat,
    /// Signs each body: `X-Driftline-Signature: sha256=<hex HMAC-SHA256>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<NotifySecretRef>,
}

fn all_events() -> Vec<String> {
    vec![ALL_EVENTS.to_string()]
}

/// The `events` entry that stands for every step.
pub const ALL_EVENTS: &str = "*";

/// The messages users see, shared by the CEL rules and [`validate_sinks`].
pub mod msg {
    pub const URL: &str = "a notify url must be an absolute http:// or https:// URL such as \
        `https://hooks.example.com/driftline`";
    pub const EVENT_UNKNOWN: &str = "notify events must be `*` or known steps: trainingStarted, \
        trainingFailed, dataRejected, gatePassed, gateRejected, shadowPassed, shadowFailed, \
        canaryStepPassed, canaryStepFailed, promoted, rolledBack, driftDetected, retrainDeferred, \
        testSetStale";
    pub const SECRET_NAME: &str = "a notify secretRef must name a Secret";
    pub const SECRET_KEY: &str = "a notify secretRef must name a key of the Secret";
}

/// CEL rule for a sink's `url`: the scheme and a host (CEL has no URL parser;
/// [`validate_sinks`] also parses it).
const URL_RULE: &str = "self.matches('^https?://[^/?# ]+([/?#].*)?$')";

/// CEL rule for `events`: each one `*` or a known step.
fn events_rule() -> String {
    let names: Vec<String> = std::iter::once(ALL_EVENTS.to_string())
        .chain(NotifyEvent::ALL.iter().map(|e| e.name()))
        .map(|n| format!("'{n}'"))
        .collect();
    format!("self.all(e, e in [{}])", names.join(", "))
}

impl NotifySink {
    /// Whether the sink asked for `event`.
    pub fn wants(&self, event: NotifyEvent) -> bool {
        self.events
            .iter()
            .any(|e| e == ALL_EVENTS || *e == event.name())
    }
}

/// Checks sinks at `path` (`spec.notify`, `--notify`): what the CEL rules
/// check, with their messages, plus a real URL parse.
pub fn validate_sinks(sinks: &[NotifySink], path: &str) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let mut check = |ok: bool, at: String, message: String| {
        if !ok {
            errors.push(FieldError { path: at, message });
        }
    };
    for (i, sink) in sinks.iter().enumerate() {
        let p = format!("{path}[{i}]");
        let parsed = url::Url::parse(&sink.url);
        let url_ok = parsed.as_ref().is_ok_and(|u| {
            matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
        });
        check(
            url_ok,
            format!("{p}.url"),
            format!("{} (got `{}`)", msg::URL, sink.url),
        );
        // One error for the list, at the path the CEL rule reports, naming each stranger.
        let unknown: Vec<String> = sink
            .events
            .iter()
            .filter(|e| *e != ALL_EVENTS && !NotifyEvent::ALL.iter().any(|k| k.name() == **e))
            .map(|e| format!("`{e}`"))
            .collect();
        check(
            unknown.is_empty(),
            format!("{p}.events"),
            format!("{} (got {})", msg::EVENT_UNKNOWN, unknown.join(", ")),
        );
        if let Some(s) = &sink.secret_ref {
            check(
                !s.name.trim().is_empty(),
                format!("{p}.secretRef.name"),
                msg::SECRET_NAME.into(),
            );
            check(
                !s.key.trim().is_empty(),
                format!("{p}.secretRef.key"),
                msg::SECRET_KEY.into(),
            );
        }
    }
    errors
}

/// Reads operator-wide sinks (`--notify`, `DRIFTLINE_NOTIFY`, the chart's
/// `notify.sinks` rendered as JSON): a JSON or YAML list of sinks, each
/// field decoded strictly and the whole list validated. `origin` names the
/// flag in the message.
pub fn parse_sinks(text: &str, origin: &str) -> Result<Vec<NotifySink>, String> {
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let de = serde_yaml::Deserializer::from_str(text);
    let sinks: Vec<NotifySink> = serde_path_to_error::deserialize(de)
        .map_err(|e| format!("{origin}: {}: {}", e.path(), e.inner()))?;
    let errors = validate_sinks(&sinks, origin);
    if errors.is_empty() {
        Ok(sinks)
    } else {
        Err(errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sink(url: &str, events: &[&str]) -> NotifySink {
        NotifySink {
            url: url.into(),
            events: events.iter().map(|e| e.to_string()).collect(),
            format: NotifyFormat::CloudEvents,
            secret_ref: None,
        }
    }

    #[test]
    fn every_step_has_a_name_and_a_cloud_event_type() {
        assert_eq!(NotifyEvent::RolledBack.name(), "rolledBack");
        assert_eq!(
            NotifyEvent::RolledBack.cloud_event_type(),
            "io.driftline.model.rolledback"
        );
        for e in NotifyEvent::ALL {
            assert!(
                msg::EVENT_UNKNOWN.contains(&format!(" {},", e.name()))
                    || msg::EVENT_UNKNOWN.ends_with(&format!(" {}", e.name())),
                "{e} missing from the message"
            );
            assert!(events_rule().contains(&format!("'{}'", e.name())));
        }
    }

    #[test]
    fn a_sink_that_is_not_http_or_names_an_unknown_step_is_refused_clearly() {
        let errors = validate_sinks(
            &[
                sink("ftp://hooks.example.com/x", &["promoted"]),
                sink("https://hooks.example.com/x", &["rolledback", "*"]),
                sink("not a url", &[]),
            ],
            "spec.notify",
        );
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 3, "{text:?}");
        assert!(text[0].starts_with("spec.notify[0].url: a notify url must be"));
        assert!(text[0].ends_with("(got `ftp://hooks.example.com/x`)"));
        assert!(text[1].starts_with("spec.notify[1].events: notify events must be"));
        assert!(text[1].ends_with("(got `rolledback`)"));
        assert!(text[2].starts_with("spec.notify[2].url"));
        assert!(validate_sinks(&[sink("http://127.0.0.1:9/h", &["*"])], "p").is_empty());
    }

    #[test]
    fn operator_wide_sinks_parse_from_json_or_yaml_with_one_parser() {
        let json = r#"[{"url":"https://h.example.com/a","events":["promoted"],"format":"slack",
            "secretRef":{"name":"hooks","key":"key"}}]"#;
        let sinks = parse_sinks(json, "--notify").expect("parses");
        assert_eq!(sinks[0].format, NotifyFormat::Slack);
        assert!(sinks[0].wants(NotifyEvent::Promoted));
        assert!(!sinks[0].wants(NotifyEvent::RolledBack));
        let yaml = "- url: http://h.example.com/b\n";
        let sinks = parse_sinks(yaml, "--notify").expect("parses");
        assert!(
            sinks[0].wants(NotifyEvent::RolledBack),
            "events default to *"
        );
        let err = parse_sinks("- url: https://h/x\n  event: [promoted]\n", "--notify")
            .expect_err("unknown field");
        assert!(err.starts_with("--notify: [0]"), "{err}");
        assert!(err.contains("event"), "{err}");
        let err = parse_sinks("- url: smtp://h/x\n", "--notify").expect_err("bad scheme");
        assert!(err.starts_with("--notify[0].url: a notify url"), "{err}");
        assert_eq!(parse_sinks("  ", "--notify"), Ok(Vec::new()));
    }
}
