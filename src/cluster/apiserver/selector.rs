//! Label and field selectors, as `kubectl -l` and `--field-selector` write them.

use serde_json::Value;

use super::error::ApiError;

#[derive(Debug, Clone, PartialEq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector (`app=web,tier in (a,b),!legacy`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut cur = String::new();
    for c in s.chars() {
        match c {
            '(' => {
                depth += 1;
                cur.push(c);
            }
            ')' => {
                depth -= 1;
                cur.push(c);
            }
            ',' if depth == 0 => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

fn parse_set(key: &str, rest: &str, selector: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| ApiError::BadRequest(format!("unable to parse requirement: `{key}` in selector `{selector}`: values must be in parentheses")))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    /// Parses a selector; an empty string selects everything.
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut requirements = Vec::new();
        for term in split_top(selector) {
            let req = if let Some(key) = term.strip_prefix('!') {
                Requirement::NotExists(key.trim().to_string())
            } else if let Some((k, v)) = term.split_once("!=") {
                Requirement::NotEquals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once("==") {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, v)) = term.split_once('=') {
                Requirement::Equals(k.trim().into(), v.trim().into())
            } else if let Some((k, rest)) = term.split_once(" notin ") {
                Requirement::NotIn(k.trim().into(), parse_set(k, rest, selector)?)
            } else if let Some((k, rest)) = term.split_once(" in ") {
                Requirement::In(k.trim().into(), parse_set(k, rest, selector)?)
            } else if term
                .chars()
                .all(|c| c.is_alphanumeric() || "-_./".contains(c))
            {
                Requirement::Exists(term.clone())
            } else {
                return Err(ApiError::BadRequest(format!(
                    "unable to parse requirement `{term}` in label selector `{selector}`"
                )));
            };
            requirements.push(req);
        }
        Ok(LabelSelector { requirements })
    }

    /// Whether an object's labels satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.requirements.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => !get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed field selector (`metadata.name=x,status.phase!=Running`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<(String, bool, String)>,
}

impl FieldSelector {
    /// Parses a selector; an empty string selects everything.
    pub fn parse(selector: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for term in split_top(selector) {
            let (path, equal, value) = if let Some((k, v)) = term.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = term.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = term.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::BadRequest(format!(
                    "invalid field selector `{selector}`: term `{term}` needs `=`, `==` or `!=`"
                )));
            };
            terms.push((path.trim().to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector { terms })
    }

    /// Refuses a term on a field the real API server cannot select on, with
    /// its words: every kind selects on `metadata.name` and
    /// `metadata.namespace`; the kinds with extra field labels (pods,
    /// events, secrets, ...) answer `field label not supported` for others.
    pub fn check(&self, group: &str, kind: &str) -> Result<(), ApiError> {
        const POD: &[&str] = &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        ];
        const EVENT: &[&str] = &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ];
        let extra: Option<&[&str]> = match (group, kind) {
            ("", "Pod") => Some(POD),
            ("", "Event") | ("events.k8s.io", "Event") => Some(EVENT),
            ("", "Secret") => Some(&["type"]),
            ("", "Node") => Some(&["spec.unschedulable"]),
            ("", "Namespace") => Some(&["status.phase"]),
            ("", "ReplicationController") | ("apps", "ReplicaSet") => Some(&["status.replicas"]),
            ("batch", "Job") => Some(&["status.successful"]),
            _ => None,
        };
        for (path, _, _) in &self.terms {
            if path == "metadata.name" || path == "metadata.namespace" {
                continue;
            }
            match extra {
                Some(fields) if fields.contains(&path.as_str()) => {}
                Some(_) => {
                    return Err(ApiError::BadRequest(format!(
                        "field label not supported: {path}"
                    )));
                }
                None => {
                    return Err(ApiError::BadRequest(format!(
                        "\"{path}\" is not a known field selector: only \"metadata.name\", \"metadata.namespace\""
                    )));
                }
            }
        }
        Ok(())
    }

    /// The value a `metadata.name=` term pins, if any (lets lookups skip scans).
    pub fn name(&self) -> Option<&str> {
        self.terms
            .iter()
            .find(|(p, eq, _)| p == "metadata.name" && *eq)
            .map(|(_, _, v)| v.as_str())
    }

    /// Whether the object's fields satisfy every term; a missing field reads as "".
    pub fn matches(&self, obj: &Value) -> bool {
        self.terms.iter().all(|(path, equal, value)| {
            let mut cur = Some(obj);
            for part in path.split('.') {
                cur = cur.and_then(|c| c.get(part));
            }
            let actual = match cur {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn label_selector_supports_set_and_existence_terms() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, want) in [
            ("app=web", true),
            ("app==web,tier=front", true),
            ("app!=web", false),
            ("tier in (front, back)", true),
            ("tier notin (front)", false),
            ("app", true),
            ("!legacy", true),
            ("!app", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&obj),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("tier in front").is_err());
    }

    #[test]
    fn field_selector_reads_nested_paths_and_missing_fields_as_empty() {
        let obj =
            json!({"metadata": {"name": "a"}, "involvedObject": {"kind": "Model"}, "status": {}});
        assert!(
            FieldSelector::parse("metadata.name=a,involvedObject.kind=Model")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("status.phase!=Running")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .unwrap()
                .matches(&obj)
        );
        assert!(
            !FieldSelector::parse("metadata.name=b")
                .unwrap()
                .matches(&obj)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }

    #[test]
    fn field_selectors_on_fields_the_real_server_cannot_select_are_refused_in_its_words() {
        let check = |sel: &str, group: &str, kind: &str| {
            FieldSelector::parse(sel)
                .unwrap()
                .check(group, kind)
                .map_err(|e| e.to_string())
        };
        assert!(check("metadata.name=a,metadata.namespace=b", "", "ConfigMap").is_ok());
        assert!(check("spec.nodeName=n,status.phase!=Running", "", "Pod").is_ok());
        assert!(check("involvedObject.kind=Model", "events.k8s.io", "Event").is_ok());
        let refused = check("data.a=b", "", "ConfigMap").unwrap_err();
        assert!(
            refused.contains(r#""data.a" is not a known field selector: only "metadata.name", "metadata.namespace""#),
            "{refused}"
        );
        let refused = check("spec.image=x", "", "Pod").unwrap_err();
        assert!(
            refused.contains("field label not supported: spec.image"),
            "{refused}"
        );
    }
}
