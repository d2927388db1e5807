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
        "duration `{0}`: expected whole numbers (at most 9 digits) each followed by a unit (ms, s, m, h, d), e.g. `10m` or `1h30m`"
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
        if digits == 0 || digits > MAX_DIGITS {
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

/// A duration in a Model's spec (`training.deadline`, `retrain.cooldown`,
/// a canary step's `pause`, `rollout.progressDeadline`): decoded once, when
/// the spec is, so no reader parses it again with a failure policy of its
/// own. It keeps the words the user wrote, so writing a spec back changes
/// nothing. The CRD's CEL rule (`DURATION_RULE`) and 32-character limit
/// admit only strings this type decodes, so a stored Model always reads.
#[derive(Clone, PartialEq, Eq)]
pub struct SpecDuration {
    text: String,
    value: Duration,
}

impl SpecDuration {
    /// The duration.
    pub fn get(&self) -> Duration {
        self.value
    }

    /// As the user wrote it (`1h30m`).
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl std::str::FromStr for SpecDuration {
    type Err = DurationError;
    fn from_str(text: &str) -> Result<Self, DurationError> {
        Ok(SpecDuration {
            value: parse_duration(text)?,
            text: text.trim().to_string(),
        })
    }
}

impl std::fmt::Display for SpecDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl std::fmt::Debug for SpecDuration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.text)
    }
}

impl serde::Serialize for SpecDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> serde::Deserialize<'de> for SpecDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for SpecDuration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SpecDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "maxLength": MAX_LENGTH,
        })
    }
}

/// The longest duration string a spec holds: with [`parse_duration`]'s
/// per-number limit, no duration this long overflows.
pub const MAX_LENGTH: usize = 32;
/// Digits one number of a duration may have (`999999999d` is ~2.7 million years).
pub const MAX_DIGITS: usize = 9;

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
    fn a_spec_duration_reads_once_and_writes_back_what_was_written() {
        let d: SpecDuration = serde_json::from_str("\"1h30m\"").unwrap();
        assert_eq!(d.get(), Duration::from_secs(5_400));
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h30m\"");
        let err = serde_json::from_str::<SpecDuration>("\"2 hours\"").unwrap_err();
        assert!(err.to_string().contains("duration `2 hours`"), "{err}");
        // Every string the CRD admits decodes: 32 characters of 9-digit numbers do not overflow.
        let longest = "999999999d999999999d999999999ms";
        assert!(longest.len() <= MAX_LENGTH);
        assert!(longest.parse::<SpecDuration>().is_ok());
        assert!("9999999999d".parse::<SpecDuration>().is_err(), "10 digits");
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
