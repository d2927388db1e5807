//! The registry room's one error type.

use thiserror::Error;

/// What went wrong talking to the registry database. Every variant keeps its
/// cause as `#[source]`; URLs in messages never carry a password.
#[derive(Debug, Error)]
pub enum RegistryError {
    /// The URL is not one the registry can use (scheme, missing host…).
    #[error("registry URL `{url}`: {problem}")]
    InvalidUrl {
        /// The URL as given, password replaced by `***`.
        url: String,
        /// What is wrong and what would be right.
        problem: String,
    },
    /// The database could not be reached or refused the connection.
    #[error("registry at {url} is unreachable: {reason}")]
    Unreachable {
        /// The URL, password replaced by `***`.
        url: String,
        /// The cause in a few words (`connection refused`, `host not found`…).
        reason: String,
        #[source]
        source: sqlx::Error,
    },
    /// Creating or upgrading the registry's tables failed.
    #[error("registry at {url}: schema migration failed")]
    Migrate {
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A read or write failed once connected.
    #[error("registry: {operation} failed")]
    Query {
        /// What was being done, e.g. `write 12 records`.
        operation: String,
        #[source]
        source: sqlx::Error,
    },
    /// A stored JSON column could not be read back.
    #[error("registry: stored {what} is not valid JSON")]
    Corrupt {
        what: &'static str,
        #[source]
        source: serde_json::Error,
    },
    /// The buffered writer holds `capacity` rows already; this one was refused.
    #[error(
        "registry buffer full ({capacity} records waiting for the database); record not queued"
    )]
    BufferFull { capacity: usize },
}

impl RegistryError {
    /// Whether retrying the same operation later may succeed (the database
    /// was down, busy or restarting), as opposed to a record it will always
    /// refuse.
    pub fn is_transient(&self) -> bool {
        match self {
            RegistryError::Unreachable { .. } | RegistryError::BufferFull { .. } => true,
            RegistryError::Query { source, .. } => is_transient_sqlx(source),
            RegistryError::Migrate { source, .. } => match source {
                sqlx::migrate::MigrateError::Execute(e) => is_transient_sqlx(e),
                _ => false,
            },
            RegistryError::InvalidUrl { .. } | RegistryError::Corrupt { .. } => false,
        }
    }
}

/// Connection-level failures and the database codes that mean "try again".
pub(crate) fn is_transient_sqlx(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            if code.len() == 5 {
                // PostgreSQL SQLSTATE classes: 08 connection, 53 resources,
                // 57 operator intervention (shutdown, restart), 40 serialization.
                ["08", "53", "57", "40"].iter().any(|c| code.starts_with(c))
            } else {
                // SQLite result codes (at most 4 digits): 5 BUSY, 6 LOCKED and
                // their extended codes.
                code.parse::<i32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
            }
        }
        _ => false,
    }
}

/// A few words for why a connection failed, for a one-line message.
pub(crate) fn unreachable_reason(e: &sqlx::Error) -> String {
    let reason: String = match e {
        sqlx::Error::Io(io) => match io.kind() {
            std::io::ErrorKind::ConnectionRefused => {
                "connection refused (is the database running and listening there?)".into()
            }
            std::io::ErrorKind::TimedOut => "connection timed out".into(),
            std::io::ErrorKind::NotFound => "host or file not found".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied".into(),
            _ => {
                let text = io.to_string();
                if text.contains("failed to lookup address")
                    || text.contains("Name or service not known")
                {
                    "host not found".into()
                } else {
                    text
                }
            }
        },
        sqlx::Error::PoolTimedOut => "no connection within the connect timeout".into(),
        sqlx::Error::Database(db) => db.message().to_string(),
        other => other.to_string(),
    };
    reason.lines().next().unwrap_or_default().to_string()
}
