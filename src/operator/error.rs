//! The operator's one error type. Each variant says whether waiting helps
//! ([`OperatorError::is_permanent`]) and carries a metric label.

/// Why a reconcile could not finish.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// The Model has no name or namespace (never true of a stored object).
    #[error("the Model has no name or namespace")]
    Unnamed,
    /// A child object could not be built from the spec.
    #[error("cannot build {what}: {reason}")]
    Build {
        /// What was being built, in the user's words.
        what: String,
        /// Why.
        reason: String,
    },
    /// The Kubernetes API refused or failed a request.
    #[error("{action}: {source}")]
    Kube {
        /// What the operator was doing (`apply Job ml/wine-train-2`).
        action: String,
        /// The client's error.
        #[source]
        source: kube::Error,
    },
    /// The artifact store could not be read or written.
    #[error("{action}: {source}")]
    Store {
        /// What the operator was doing.
        action: String,
        /// The store's error.
        #[source]
        source: crate::ml::store::StoreError,
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
    /// A gate report exists but cannot be read as one.
    #[error("gate report {uri} is not a driftline gate report: {reason}")]
    GateReport {
        /// Where it is.
        uri: String,
        /// What was wrong.
        reason: String,
    },
}

impl OperatorError {
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
            OperatorError::LeaseLost { .. } => "LeaseLost",
        }
    }
}

/// Wraps a kube error with what was being done.
pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> OperatorError {
    let action = action.into();
    move |source| OperatorError::Kube { action, source }
}
