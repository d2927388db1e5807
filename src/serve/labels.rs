//! What a label is: the labels a model takes ([`LabelKind`], the one rule
//! for labels from `POST …/feedback` and from `driftline label`), and the
//! body and answer of `POST …/feedback`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a label must look like.
#[derive(Debug, Clone, PartialEq)]
pub enum LabelKind {
    /// One of these class names.
    Class(Vec<String>),
    /// A finite number.
    Value,
}

impl LabelKind {
    /// The label as this model's labels are kept (a number naming a class
    /// becomes that class's name), or what is wrong with it. The one rule
    /// for labels from `POST …/feedback` and from `driftline label`.
    pub fn check(&self, label: &Value) -> Result<Value, String> {
        match (self, label) {
            (LabelKind::Value, Value::Number(n)) if n.as_f64().is_some_and(f64::is_finite) => {
                Ok(label.clone())
            }
            (LabelKind::Value, other) => Err(format!("must be a number, got {other}")),
            (LabelKind::Class(classes), Value::String(s)) if classes.contains(s) => {
                Ok(label.clone())
            }
            (LabelKind::Class(classes), Value::Number(n)) => {
                let name = crate::drift::number_as_category(n.as_f64().unwrap_or(f64::NAN));
                if classes.contains(&name) {
                    Ok(Value::String(name))
                } else {
                    Err(format!(
                        "{n} is not a class of this model; classes: {}",
                        classes.join(", ")
                    ))
                }
            }
            (LabelKind::Class(classes), other) => Err(format!(
                "{other} is not a class of this model; classes: {}",
                classes.join(", ")
            )),
        }
    }
}

/// One label sent to `POST …/feedback`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabelItem {
    pub id: String,
    /// One label, or one per row of a batch request.
    pub label: Value,
}

/// Body of `POST …/feedback`: one item, a list, or `{"feedback": [...]}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum FeedbackBody {
    One(LabelItem),
    Many(Vec<LabelItem>),
    Wrapped { feedback: Vec<LabelItem> },
}

impl FeedbackBody {
    /// The items, however they were sent.
    pub fn into_items(self) -> Vec<LabelItem> {
        match self {
            FeedbackBody::One(i) => vec![i],
            FeedbackBody::Many(v) | FeedbackBody::Wrapped { feedback: v } => v,
        }
    }
}

/// Answer of `POST …/feedback`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedbackOutcome {
    /// Labelled rows joined with their request.
    pub joined: usize,
    /// Ids that were unknown (expired, not sampled, or never served) and
    /// could not be kept: the server has no feedback prefix.
    pub unknown: Vec<String>,
    /// Ids this server no longer remembers (past the horizon, sampled out,
    /// or served by another replica), kept as late labels under
    /// `<prefix>/labels/` for the next training's join with the prediction log.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late: Vec<String>,
}
