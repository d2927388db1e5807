//! The words users write for the spec's enums (`jensenShannon`, `familyWise`,
//! `canaryPassed`), with one home: their serde names. Flags, table cells,
//! registry rows and messages print and parse a spec enum through here, never
//! through `{:?}`, so a value reads the same in YAML, on the command line, in
//! `kubectl get` and in `driftline history`.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The word a spec value is written as in YAML (`jensenShannon`, `auto`, `0.1`).
pub fn word<T: Serialize + ?Sized>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Null) | Err(_) => String::new(),
        Ok(other) => other.to_string(),
    }
}

/// Parses the word a user wrote, exactly as the YAML decoder would; the
/// error names what was expected.
pub fn parse_word<T: DeserializeOwned>(text: &str) -> Result<T, String> {
    let text = text.trim();
    serde_json::from_value(serde_json::Value::String(text.to_string()))
        .or_else(|e| match text.parse::<f64>() {
            // Numbers are words too (`--drift-threshold 0.1`).
            Ok(n) => serde_json::to_value(n)
                .and_then(serde_json::from_value)
                .map_err(|_| e),
            Err(_) => Err(e),
        })
        .map_err(|e| format!("`{text}`: {e}"))
}

/// `Display` and `FromStr` through [`word`] and [`parse_word`], for spec enums.
macro_rules! spec_words {
    ($($t:ty),* $(,)?) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&$crate::api::words::word(self))
            }
        }
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                $crate::api::words::parse_word(s)
            }
        }
    )*};
}
pub(crate) use spec_words;

#[cfg(test)]
mod tests {
    use crate::api::{DriftControl, DriftStatistic, DriftThreshold, TrainingTrigger};

    #[test]
    fn a_value_prints_and_parses_as_its_yaml_word() {
        assert_eq!(DriftStatistic::JensenShannon.to_string(), "jensenShannon");
        assert_eq!(
            "falseDiscoveryRate".parse::<DriftControl>(),
            Ok(DriftControl::FalseDiscoveryRate)
        );
        // Registry rows keep the words already written there.
        assert_eq!(TrainingTrigger::NewData.to_string(), "NewData");
        assert_eq!("auto".parse::<DriftThreshold>(), Ok(DriftThreshold::Auto));
        assert_eq!(
            "0.25".parse::<DriftThreshold>(),
            Ok(DriftThreshold::Fixed(0.25))
        );
        assert_eq!(DriftThreshold::Fixed(0.25).to_string(), "0.25");
    }

    #[test]
    fn a_wrong_word_says_what_was_expected() {
        let err = "bonferoni".parse::<DriftControl>().unwrap_err();
        assert!(err.contains("`bonferoni`"), "{err}");
        assert!(err.contains("familyWise"), "{err}");
        assert!(err.contains("falseDiscoveryRate"), "{err}");
        assert!("high".parse::<DriftThreshold>().is_err());
    }
}
