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

#[cfg(test)]
mod tests {
    use super::*;

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
