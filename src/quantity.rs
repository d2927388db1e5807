//! Kubernetes resource quantities ("500m", "8Gi", "1e3"): the one grammar,
//! used by the Model's validation (`api`) and by the embedded node's
//! scheduler (`cluster`). No room: both may use it, as neither may import
//! the other.

/// A quantity string that is not a valid Kubernetes quantity.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{text}` is not a Kubernetes quantity (expected e.g. `500m`, `2`, `512Mi`, `1G`, `1e3`)")]
pub struct BadQuantity {
    /// The text as written.
    pub text: String,
}

/// Parses a quantity into its value in base units (cores, bytes, devices).
pub fn parse_quantity(text: &str) -> Result<f64, BadQuantity> {
    let bad = || BadQuantity {
        text: text.to_string(),
    };
    // No surrounding spaces, as the API server's grammar.
    let s = text;
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let number: f64 = number.parse().map_err(|_| bad())?;
    let multiplier = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024.0f64.powi(2),
        "Gi" => 1024.0f64.powi(3),
        "Ti" => 1024.0f64.powi(4),
        "Pi" => 1024.0f64.powi(5),
        "Ei" => 1024.0f64.powi(6),
        exp if exp.starts_with(['e', 'E']) => {
            let power: i32 = exp[1..].parse().map_err(|_| bad())?;
            10f64.powi(power)
        }
        _ => return Err(bad()),
    };
    let value = number * multiplier;
    if !value.is_finite() || value < 0.0 {
        return Err(bad());
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_like_kubernetes() {
        assert_eq!(parse_quantity("500m").unwrap(), 0.5);
        assert_eq!(parse_quantity("2").unwrap(), 2.0);
        assert_eq!(parse_quantity("1Gi").unwrap(), 1073741824.0);
        assert_eq!(parse_quantity("1G").unwrap(), 1e9);
        assert_eq!(parse_quantity("1e3").unwrap(), 1000.0);
        assert_eq!(parse_quantity("1.5Ki").unwrap(), 1536.0);
        assert!(parse_quantity("lots").is_err());
        assert!(parse_quantity("1Qi").is_err());
        assert!(parse_quantity("-1").is_err());
        assert_eq!(parse_quantity("250u").unwrap(), 250e-6);
        assert!(
            parse_quantity(" 1").is_err(),
            "no spaces, as the API server"
        );
        assert!(parse_quantity("").is_err());
        let err = parse_quantity("8GB").unwrap_err();
        assert!(err.to_string().contains("`8GB`"), "{err}");
    }
}
