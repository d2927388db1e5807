//! Where the registry lives: a SQLite file (the default) or a PostgreSQL URL.

use std::fmt;

use super::error::RegistryError;

/// The database kind behind a registry URL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A validated registry location. `Display` and `Debug` never show the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryUrl {
    backend: Backend,
    /// What sqlx connects to, password included.
    connect: String,
    /// The same with the password replaced by `***`, for messages and logs.
    redacted: String,
    in_memory: bool,
}

const USAGE: &str = "use sqlite://PATH (a file, created if missing), a plain file path, \
                     or postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE";

impl RegistryUrl {
    /// Checks `text` without connecting: `sqlite://PATH`, `sqlite::memory:`,
    /// a plain file path (SQLite), or `postgres://…` / `postgresql://…`.
    pub fn parse(text: &str) -> Result<RegistryUrl, RegistryError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(invalid(text, format!("empty; {USAGE}")));
        }
        match scheme_of(text) {
            None => Ok(Self::sqlite_file(text)),
            Some("sqlite") => Self::parse_sqlite(text),
            Some("postgres" | "postgresql") => Self::parse_postgres(text),
            Some(other) => Err(invalid(
                &redact_any(text),
                format!("scheme `{other}` is not supported; {USAGE}"),
            )),
        }
    }

    /// SQLite or PostgreSQL.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Whether the database lives only in this process (`sqlite::memory:`).
    pub fn is_in_memory(&self) -> bool {
        self.in_memory
    }

    /// The database file of a SQLite registry (`None`: PostgreSQL or in memory).
    pub fn file(&self) -> Option<std::path::PathBuf> {
        if self.backend != Backend::Sqlite || self.in_memory {
            return None;
        }
        let rest = self
            .connect
            .strip_prefix("sqlite://")
            .or_else(|| self.connect.strip_prefix("sqlite:"))?;
        let path = rest.split_once('?').map_or(rest, |(p, _)| p);
        Some(std::path::PathBuf::from(path))
    }

    /// The URL sqlx connects to (with the password): never log it.
    pub(crate) fn connect_url(&self) -> &str {
        &self.connect
    }

    fn sqlite_file(path: &str) -> RegistryUrl {
        let connect = format!("sqlite://{path}?mode=rwc");
        RegistryUrl {
            backend: Backend::Sqlite,
            redacted: connect.clone(),
            connect,
            in_memory: false,
        }
    }

    fn parse_sqlite(text: &str) -> Result<RegistryUrl, RegistryError> {
        let rest = text
            .strip_prefix("sqlite://")
            .or_else(|| text.strip_prefix("sqlite:"))
            .unwrap_or_default();
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        if path.is_empty() {
            return Err(invalid(text, format!("no database file named; {USAGE}")));
        }
        let in_memory = path == ":memory:" || query.split('&').any(|p| p == "mode=memory");
        // sqlx opens an existing file only unless told `mode=rwc`; a registry
        // should be created on first use.
        let connect = if query.split('&').any(|p| p.starts_with("mode=")) {
            text.to_string()
        } else if query.is_empty() {
            format!("{text}?mode=rwc")
        } else {
            format!("{text}&mode=rwc")
        };
        Ok(RegistryUrl {
            backend: Backend::Sqlite,
            redacted: connect.clone(),
            connect,
            in_memory,
        })
    }

    fn parse_postgres(text: &str) -> Result<RegistryUrl, RegistryError> {
        let parsed = url::Url::parse(text)
            .map_err(|e| invalid(&redact_any(text), format!("{e}; {USAGE}")))?;
        let redacted = redact(&parsed);
        let has_socket_host = parsed.query_pairs().any(|(k, _)| k == "host");
        if parsed.host_str().is_none_or(str::is_empty) && !has_socket_host {
            return Err(invalid(&redacted, format!("no host; {USAGE}")));
        }
        if parsed.path().trim_start_matches('/').is_empty() {
            return Err(invalid(&redacted, format!("no database name; {USAGE}")));
        }
        Ok(RegistryUrl {
            backend: Backend::Postgres,
            connect: text.to_string(),
            redacted,
            in_memory: false,
        })
    }
}

impl std::str::FromStr for RegistryUrl {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        RegistryUrl::parse(s)
    }
}

impl fmt::Display for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted)
    }
}

impl fmt::Debug for RegistryUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegistryUrl({})", self.redacted)
    }
}

/// The scheme of `text` if it is written as a URL (`name:` before any `/`).
fn scheme_of(text: &str) -> Option<&str> {
    let (scheme, _) = text.split_once(':')?;
    let is_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    // `C:\…` style drive letters are paths, not schemes.
    (is_scheme && scheme.len() > 1).then_some(scheme)
}

fn redact(url: &url::Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        // Only fails for URLs that cannot have credentials, which this one has.
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

/// Redacts any URL-looking text, parsed or not, before it reaches a message.
fn redact_any(text: &str) -> String {
    match url::Url::parse(text) {
        Ok(parsed) => redact(&parsed),
        // Unparseable: hide everything between `://` and the last `@`.
        Err(_) => match (text.find("://"), text.rfind('@')) {
            (Some(start), Some(at)) if at > start + 3 => {
                format!("{}***{}", &text[..start + 3], &text[at..])
            }
            _ => text.to_string(),
        },
    }
}

fn invalid(url: &str, problem: String) -> RegistryError {
    RegistryError::InvalidUrl {
        url: url.to_string(),
        problem,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_path_is_a_sqlite_file_created_on_first_use() {
        let url = RegistryUrl::parse("/var/lib/driftline/registry.db").unwrap();
        assert_eq!(url.backend(), Backend::Sqlite);
        assert_eq!(
            url.connect_url(),
            "sqlite:///var/lib/driftline/registry.db?mode=rwc"
        );
    }

    #[test]
    fn the_database_file_of_a_sqlite_registry_is_known() {
        let file = |u: &str| RegistryUrl::parse(u).unwrap().file();
        assert_eq!(
            file("/var/lib/driftline/registry.db"),
            Some("/var/lib/driftline/registry.db".into())
        );
        assert_eq!(
            file("sqlite://.driftline/r.db?mode=ro"),
            Some(".driftline/r.db".into())
        );
        assert_eq!(file("sqlite::memory:"), None);
        assert_eq!(file("postgres://u@db/driftline"), None);
    }

    #[test]
    fn sqlite_urls_keep_an_explicit_mode() {
        let url = RegistryUrl::parse("sqlite://r.db?mode=ro").unwrap();
        assert_eq!(url.connect_url(), "sqlite://r.db?mode=ro");
        assert!(
            RegistryUrl::parse("sqlite::memory:")
                .unwrap()
                .is_in_memory()
        );
    }

    #[test]
    fn postgres_passwords_never_reach_messages() {
        let url = RegistryUrl::parse("postgres://op:s3cret@db.example:5432/driftline").unwrap();
        assert_eq!(url.backend(), Backend::Postgres);
        assert_eq!(
            url.to_string(),
            "postgres://op:***@db.example:5432/driftline"
        );
        assert!(!format!("{url:?}").contains("s3cret"));

        let err = RegistryUrl::parse("mysql://op:s3cret@db/driftline").unwrap_err();
        let message = err.to_string();
        assert!(!message.contains("s3cret"), "{message}");
        assert!(
            message.contains("scheme `mysql` is not supported"),
            "{message}"
        );
    }

    #[test]
    fn postgres_urls_need_a_host_and_a_database() {
        let err = RegistryUrl::parse("postgres://op@db.example:5432").unwrap_err();
        assert!(err.to_string().contains("no database name"), "{err}");
        let err = RegistryUrl::parse("postgres:///driftline").unwrap_err();
        assert!(err.to_string().contains("no host"), "{err}");
        assert!(RegistryUrl::parse("postgres:///driftline?host=/run/postgresql").is_ok());
    }
}
