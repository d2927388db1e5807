//! Value parsers shared by the commands' flags: one grammar for durations
//! (`api::parse_duration`), one rule for rates and scales.

use std::time::Duration;

/// A duration flag (`30s`, `5m`, `1h30m`), in `api::parse_duration`'s grammar.
pub fn duration(text: &str) -> Result<Duration, String> {
    crate::api::parse_duration(text).map_err(|e| e.to_string())
}

/// A requests-per-second flag: a finite number > 0.
pub fn rate(text: &str) -> Result<f64, String> {
    positive(text).map_err(|_| format!("`{text}` is not a rate > 0 (requests per second)"))
}

/// A clock-scale flag (`--time-scale`): a finite number > 0.
pub fn positive_scale(text: &str) -> Result<f64, String> {
    positive(text).map_err(|_| format!("`{text}` is not a number > 0"))
}

/// A `NAMESPACE/NAME` flag: both parts DNS-1123 names.
pub fn namespaced_name(text: &str) -> Result<(String, String), String> {
    let dns = |s: &str| {
        !s.is_empty()
            && s.len() <= 253
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
    };
    match text.split_once('/') {
        Some((ns, name)) if dns(ns) && dns(name) => Ok((ns.to_string(), name.to_string())),
        _ => Err(format!(
            "`{text}` is not NAMESPACE/NAME (lowercase letters, digits, '-' and '.')"
        )),
    }
}

/// A namespace flag: a DNS-1123 label (lowercase letters, digits and '-',
/// at most 63 characters, starting and ending with a letter or digit).
pub fn namespace(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && text.starts_with(|c: char| c.is_ascii_alphanumeric())
        && text.ends_with(|c: char| c.is_ascii_alphanumeric());
    if valid {
        Ok(text.to_string())
    } else {
        Err(format!(
            "`{text}` is not a namespace name: at most 63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ))
    }
}

/// `-n/--namespace` of the commands that name a Model from the registry or
/// the artifact root rather than through a cluster (`history`,
/// `disagreements`).
#[derive(clap::Args, Debug, Clone)]
pub struct ModelNamespace {
    /// Namespace of the Model.
    #[arg(
        short = 'n',
        long = "namespace",
        default_value = "default",
        env = "DRIFTLINE_NAMESPACE",
        value_parser = namespace
    )]
    pub namespace: String,
}

/// An address to listen on, or `off` (`--dashboard-addr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Listen(pub Option<std::net::SocketAddr>);

/// A listen-address flag: `HOST:PORT` (port 0: any free one) or `off`.
pub fn listen(text: &str) -> Result<Listen, String> {
    if text == "off" {
        return Ok(Listen(None));
    }
    text.parse()
        .map(|a| Listen(Some(a)))
        .map_err(|_| format!("`{text}` is not an address like 127.0.0.1:9091, or `off`"))
}

fn positive(text: &str) -> Result<f64, ()> {
    match text.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(()),
    }
}

/// `--notify`: operator-wide notification sinks, a JSON or YAML list of
/// `{url, events, format, secretRef}` (the shape of a Model's `spec.notify`,
/// read by the same parser).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct NotifySinks(pub Vec<crate::api::NotifySink>);

/// Parses `--notify` / `DRIFTLINE_NOTIFY` through [`crate::api::parse_sinks`].
pub fn notify_sinks(text: &str) -> Result<NotifySinks, String> {
    crate::api::parse_sinks(text, "--notify").map(NotifySinks)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_names_are_two_dns_names() {
        assert_eq!(
            namespaced_name("gateways/public"),
            Ok(("gateways".to_string(), "public".to_string()))
        );
        for bad in ["public", "/public", "gateways/", "Gateways/public", "a/b/c"] {
            assert!(namespaced_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn namespaces_are_dns_labels() {
        assert_eq!(namespace("team-a"), Ok("team-a".to_string()));
        for bad in ["", "Team", "a.b", "-a", "a-", &"a".repeat(64)] {
            let error = namespace(bad).unwrap_err();
            assert!(error.contains("is not a namespace name"), "{bad}: {error}");
        }
    }

    #[test]
    fn rates_and_scales_must_be_finite_and_positive() {
        assert_eq!(rate("20"), Ok(20.0));
        assert!(rate("0").unwrap_err().contains("not a rate > 0"));
        assert!(
            positive_scale("inf")
                .unwrap_err()
                .contains("not a number > 0")
        );
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert!(duration("soon").is_err());
        assert_eq!(listen("off"), Ok(Listen(None)));
        assert_eq!(
            listen("127.0.0.1:0"),
            Ok(Listen(Some("127.0.0.1:0".parse().unwrap())))
        );
        assert!(listen("localhost").unwrap_err().contains("not an address"));
    }
}
