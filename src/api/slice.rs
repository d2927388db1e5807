//! Slice conditions: `where: {color: red, alcohol: ">=10", region: "eu|us",
//! age: "18..65"}`. A condition is a string so the CRD schema stays
//! structural; it is parsed once, here.

use std::fmt;

/// One parsed condition on one column.
#[derive(Debug, Clone, PartialEq)]
pub enum SliceCondition {
    /// The cell equals this value (compared as text; numbers compared numerically).
    Equals(String),
    /// The cell equals one of these values: `a|b|c`.
    OneOf(Vec<String>),
    /// Numeric range; `min` inclusive, `max` exclusive: `10..12`, `>=10`, `<5`.
    Range {
        min: Option<f64>,
        min_inclusive: bool,
        max: Option<f64>,
        max_inclusive: bool,
    },
}

/// Why a slice condition was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("slice condition `{input}`: {reason}")]
pub struct SliceConditionError {
    pub input: String,
    pub reason: String,
}

impl SliceCondition {
    /// Parses a condition as written in YAML.
    pub fn parse(input: &str) -> Result<Self, SliceConditionError> {
        let s = input.trim();
        let err = |reason: &str| SliceConditionError {
            input: input.to_string(),
            reason: reason.to_string(),
        };
        if s.is_empty() {
            return Err(err(
                "is empty; write a value such as `red`, `>=10` or `10..12`",
            ));
        }
        let num = |t: &str| -> Result<f64, SliceConditionError> {
            let v: f64 = t
                .trim()
                .parse()
                .map_err(|_| err(&format!("`{}` is not a number", t.trim())))?;
            if !v.is_finite() {
                return Err(err("bounds must be finite numbers"));
            }
            Ok(v)
        };
        for (op, min_side, inclusive) in [
            (">=", true, true),
            ("<=", false, true),
            (">", true, false),
            ("<", false, false),
        ] {
            if let Some(rest) = s.strip_prefix(op) {
                let v = num(rest)?;
                return Ok(if min_side {
                    SliceCondition::Range {
                        min: Some(v),
                        min_inclusive: inclusive,
                        max: None,
                        max_inclusive: false,
                    }
                } else {
                    SliceCondition::Range {
                        min: None,
                        min_inclusive: false,
                        max: Some(v),
                        max_inclusive: inclusive,
                    }
                });
            }
        }
        if let Some((lo, hi)) = s.split_once("..") {
            let (lo, hi) = (num(lo)?, num(hi)?);
            if lo >= hi {
                return Err(err("range start must be below its end"));
            }
            return Ok(SliceCondition::Range {
                min: Some(lo),
                min_inclusive: true,
                max: Some(hi),
                max_inclusive: false,
            });
        }
        if s.contains('|') {
            let values: Vec<String> = s.split('|').map(|v| v.trim().to_string()).collect();
            if values.iter().any(|v| v.is_empty()) {
                return Err(err("an alternative in `a|b` is empty"));
            }
            return Ok(SliceCondition::OneOf(values));
        }
        Ok(SliceCondition::Equals(s.to_string()))
    }

    /// Whether a numeric cell satisfies the condition.
    pub fn matches_number(&self, x: f64) -> bool {
        match self {
            SliceCondition::Equals(v) => v.parse::<f64>().is_ok_and(|v| v == x),
            SliceCondition::OneOf(vs) => vs.iter().any(|v| v.parse::<f64>().is_ok_and(|v| v == x)),
            SliceCondition::Range {
                min,
                min_inclusive,
                max,
                max_inclusive,
            } => {
                let lo_ok = match min {
                    Some(m) if *min_inclusive => x >= *m,
                    Some(m) => x > *m,
                    None => true,
                };
                let hi_ok = match max {
                    Some(m) if *max_inclusive => x <= *m,
                    Some(m) => x < *m,
                    None => true,
                };
                lo_ok && hi_ok
            }
        }
    }

    /// Whether a text cell satisfies the condition (ranges never match text).
    pub fn matches_text(&self, x: &str) -> bool {
        match self {
            SliceCondition::Equals(v) => v == x,
            SliceCondition::OneOf(vs) => vs.iter().any(|v| v == x),
            SliceCondition::Range { .. } => x.parse::<f64>().is_ok_and(|n| self.matches_number(n)),
        }
    }
}

impl fmt::Display for SliceCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SliceCondition::Equals(v) => write!(f, "= {v}"),
            SliceCondition::OneOf(vs) => write!(f, "in {}", vs.join("|")),
            SliceCondition::Range {
                min,
                min_inclusive,
                max,
                max_inclusive,
            } => {
                match min {
                    Some(m) => write!(f, "{}{m}", if *min_inclusive { "[" } else { "(" })?,
                    None => write!(f, "(-inf")?,
                }
                match max {
                    Some(m) => write!(f, ", {m}{}", if *max_inclusive { "]" } else { ")" }),
                    None => write!(f, ", +inf)"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_alternatives_and_ranges() {
        assert_eq!(
            SliceCondition::parse("red").unwrap(),
            SliceCondition::Equals("red".into())
        );
        let one_of = SliceCondition::parse("eu|us").unwrap();
        assert!(one_of.matches_text("us") && !one_of.matches_text("apac"));
        let ge = SliceCondition::parse(">=10").unwrap();
        assert!(ge.matches_number(10.0) && !ge.matches_number(9.99));
        let lt = SliceCondition::parse("<5").unwrap();
        assert!(lt.matches_number(4.9) && !lt.matches_number(5.0));
        let range = SliceCondition::parse("10..12").unwrap();
        assert!(
            range.matches_number(10.0) && range.matches_number(11.9) && !range.matches_number(12.0)
        );
        assert!(SliceCondition::parse("7").unwrap().matches_number(7.0));
    }

    #[test]
    fn bad_conditions_say_why() {
        assert!(SliceCondition::parse("").is_err());
        let e = SliceCondition::parse(">=abc").unwrap_err();
        assert!(e.reason.contains("`abc` is not a number"), "{e}");
        assert!(SliceCondition::parse("12..10").is_err());
        assert!(SliceCondition::parse("a||b").is_err());
    }
}
