//! The operator's one error type. Each variant says whether waiting helps
//! ([`OperatorError::is_permanent`]), carries a metric label and a condition
//! reason, and keeps its cause as `#[source]`: a message names what the
//! operator was doing, the cause follows once in [`OperatorError::chain`].

use std::fmt;

/// Why a reconcile could not finish.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The Model has no name or namespace (never true of a stored object).
    #[error("the Model has no name or namespace")]
    Unnamed,
    /// A child object could not be built from the spec.
    #[error("cannot build {what}")]
    Build {
        /// What was being built, in the user's words.
        what: String,
        /// Why.
        #[source]
        source: BuildError,
    },
    /// The Kubernetes API refused or failed a request.
    #[error("{action}")]
    Kube {
        /// What the operator was doing (`apply Job ml/wine-train-2`).
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The artifact store could not be read or written.
    #[error("{action}")]
    Store {
        /// What the operator was doing.
        action: String,
        /// The store's error.
        #[source]
        source: crate::data::store::StoreError,
    },
    /// This replica stopped leading (see [`super::leader`]): it stops acting at once.
    #[error("lost the leader Lease {lease}; this replica stops reconciling")]
    LeaseLost {
        /// The Lease, `namespace/name`.
        lease: String,
        /// Why: another holder, or no renewal within the renew deadline.
        #[source]
        cause: super::leader::StoppedLeading,
    },
    /// A data check report exists but cannot be read as one.
    #[error("data check report {uri} is not a driftline data check report")]
    DataCheckReport {
        /// Where it is.
        uri: String,
        /// What was wrong with it.
        #[source]
        source: serde_json::Error,
    },
    /// A gate report exists but cannot be read as one.
    #[error("gate report {uri} is not a driftline gate report")]
    GateReport {
        /// Where it is.
        uri: String,
        /// What was wrong with it.
        #[source]
        source: serde_json::Error,
    },
}

/// Why a child object could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A rule of the operator's own (a traffic entry that names no version).
    #[error("{0}")]
    Rule(String),
    /// The object or a document it carries does not encode.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    /// The Model YAML a training pod reads does not encode.
    #[error(transparent)]
    Yaml(#[from] serde_yaml::Error),
}

impl OperatorError {
    /// A build error of `what` from a rule of the operator's own.
    pub fn rule(what: impl Into<String>, reason: impl Into<String>) -> Self {
        OperatorError::Build {
            what: what.into(),
            source: BuildError::Rule(reason.into()),
        }
    }

    /// A build error of `what` from a cause.
    pub fn build(what: impl Into<String>) -> impl FnOnce(BuildError) -> Self {
        let what = what.into();
        move |source| OperatorError::Build { what, source }
    }

    /// Errors that a retry cannot fix: the spec must change first.
    pub fn is_permanent(&self) -> bool {
        matches!(self, OperatorError::Unnamed | OperatorError::Build { .. })
    }

    /// Label for `driftline_operator_reconcile_errors_total{kind}`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            OperatorError::Unnamed => "unnamed",
            OperatorError::Build { .. } => "build",
            OperatorError::Kube { .. } => "kube",
            OperatorError::Store { .. } => "store",
            OperatorError::GateReport { .. } => "gate_report",
            OperatorError::DataCheckReport { .. } => "data_check_report",
            OperatorError::LeaseLost { .. } => "lease_lost",
        }
    }

    /// The condition reason users see for this error.
    pub fn reason(&self) -> &'static str {
        match self {
            OperatorError::Unnamed | OperatorError::Build { .. } => "InvalidSpec",
            OperatorError::Kube { .. } => "KubernetesApiError",
            OperatorError::Store { .. } => "ArtifactStoreError",
            OperatorError::GateReport { .. } => "GateReportUnreadable",
            OperatorError::DataCheckReport { .. } => "DataCheckReportUnreadable",
            OperatorError::LeaseLost { .. } => "LeaseLost",
        }
    }

    /// The message and every cause after it, each once, on one line: what a
    /// condition, an Event and the log say.
    pub fn chain(&self) -> Chain<'_> {
        Chain(self)
    }
}

/// An error and its causes, `what: why: deeper why` (see [`OperatorError::chain`]).
pub struct Chain<'a>(&'a (dyn std::error::Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::error_chain(self.0))
    }
}

/// Wraps a kube error with what was being done.
pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> OperatorError {
    let action = action.into();
    move |source| OperatorError::Kube { action, source }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> OperatorError {
        let status =
            kube::core::Status::failure("jobs.batch is forbidden", "Forbidden").with_code(403);
        kube(format!("create Job {}", "ml/wine-quality-train-2"))(kube::Error::Api(status.boxed()))
    }

    #[test]
    fn each_cause_is_said_once_after_what_was_being_done() {
        let e = refused();
        let line = e.chain().to_string();
        assert!(
            line.starts_with("create Job ml/wine-quality-train-2: "),
            "{line}"
        );
        assert_eq!(
            line.matches("jobs.batch is forbidden").count(),
            1,
            "the API's message once: {line}"
        );
        assert_eq!(
            e.to_string(),
            "create Job ml/wine-quality-train-2",
            "the message itself names no cause"
        );
    }

    #[test]
    fn every_variant_keeps_its_cause_as_a_source() {
        let bad_yaml = serde_yaml::from_str::<u32>("[").expect_err("not YAML");
        let json = serde_json::from_str::<u32>("x").expect_err("not JSON");
        let store = crate::data::store::StoreError::NotFound {
            uri: "s3://models/v1/gate.json".into(),
        };
        let with_cause = [
            refused(),
            OperatorError::build("the training pod's Model")(bad_yaml.into()),
            OperatorError::rule("HTTPRoute ml/wine", "status.traffic names `latest`"),
            OperatorError::Store {
                action: "read gate report s3://models/v1/gate.json".into(),
                source: store,
            },
            OperatorError::GateReport {
                uri: "s3://models/v1/gate.json".into(),
                source: json,
            },
        ];
        for e in &with_cause {
            let mut deepest = std::error::Error::source(e).expect("a cause");
            while let Some(deeper) = deepest.source() {
                deepest = deeper;
            }
            let line = e.chain().to_string();
            assert_eq!(
                line.matches(&deepest.to_string()).count(),
                1,
                "the deepest cause once: {line}"
            );
            assert!(line.starts_with(&e.to_string()), "{line}");
        }
    }
}
