//! Go-style durations as users write them in YAML and on the command line:
//! `250ms`, `90s`, `10m`, `6h`, `1d`, or combinations such as `1h30m`. One
//! grammar for the CRDs (their CEL rule matches it), the operator, the
//! decision core and every flag (`cli::flags::duration`).

use std::time::Duration;

/// Why a duration string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DurationError {
    #[error("duration is empty; write e.g. `10m`, `6h` or `90s`")]
    Empty,
    #[error(
        "duration `{0}`: expected whole numbers each followed by a unit (ms, s, m, h, d), e.g. `10m` or `1h30m`"
    )]
    Malformed(String),
    #[error("duration `{input}`: unknown unit `{unit}`; use ms, s, m, h or d")]
    UnknownUnit { input: String, unit: String },
}

/// Parses `10m`, `6h`, `1h30m`, `45s`, `2d`, `250ms` and `0s`.
pub fn parse_duration(input: &str) -> Result<Duration, DurationError> {
    let s = input.trim();
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    let mut total: u64 = 0;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(DurationError::Malformed(input.to_string()));
        }
        let value: u64 = rest[..digits]
            .parse()
            .map_err(|_| DurationError::Malformed(input.to_string()))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "" => return Err(DurationError::Malformed(input.to_string())),
            other => {
                return Err(DurationError::UnknownUnit {
                    input: input.to_string(),
                    unit: other.to_string(),
                });
            }
        };
        total = value
            .checked_mul(scale)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| DurationError::Malformed(input.to_string()))?;
    }
    Ok(Duration::from_millis(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_units_users_write() {
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("6h").unwrap(), Duration::from_secs(21_600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert_eq!(parse_duration("0s").unwrap(), Duration::ZERO);
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(
            parse_duration("1s500ms").unwrap(),
            Duration::from_millis(1_500)
        );
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("m"),
            Err(DurationError::Malformed(_))
        ));
        assert!(matches!(
            parse_duration("1.5s"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration("3w"),
            Err(DurationError::UnknownUnit { .. })
        ));
    }
}
