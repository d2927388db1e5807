//! `driftline serve`'s drift flags: one flag per field of the Model's
//! `spec.drift`, with that spec's defaults and words (the operator passes a
//! Model's settings through them, `operator::children::drift_flags`), plus
//! the two settings only a server has.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::api::{
    DriftControl, DriftSpec, DriftStatistic, DriftThreshold, DriftTrigger, FeatureDriftOverride,
};
use crate::drift::DriftConfig;

use super::flags;

/// The drift flags, flattened into `driftline serve`'s arguments.
#[derive(Debug, Clone, clap::Args)]
pub struct DriftFlags {
    /// Drift statistic compared with the threshold: jensenShannon, psi, ks, wasserstein.
    #[arg(long = "drift-statistic", default_value_t = DriftSpec::default().statistic)]
    pub statistic: DriftStatistic,
    /// A feature drifts when its statistic exceeds this: `auto` (each
    /// feature's null quantile for the window's size, calibrated at
    /// training) or a number for every feature.
    #[arg(long = "drift-threshold", default_value_t = DriftSpec::default().threshold)]
    pub threshold: DriftThreshold,
    /// With `--drift-threshold auto`: the false-flag rate allowed per window.
    #[arg(long = "drift-false-alarm-rate", default_value_t = DriftSpec::default().false_alarm_rate)]
    pub false_alarm_rate: f64,
    /// With `--drift-threshold auto`: which rate that is: `familyWise` (any
    /// feature of a drift-free window), `falseDiscoveryRate` or `perFeature`.
    #[arg(long = "drift-control", default_value_t = DriftSpec::default().control)]
    pub control: DriftControl,
    /// Rows per drift window.
    #[arg(long = "drift-window", default_value_t = DriftSpec::default().window)]
    pub window: u32,
    /// Also close a drift window after this long, e.g. `10m`.
    #[arg(long = "drift-window-time", value_parser = flags::duration)]
    pub window_time: Option<Duration>,
    /// Closed drift windows kept.
    #[arg(long = "drift-recent", default_value_t = DriftConfig::default().recent_windows)]
    pub recent: usize,
    /// How drifted features add up to a drifted window: `weighted` (by the
    /// model's feature importance; drifted predictions count too), `share`
    /// (of features, as Evidently) or `any`.
    #[arg(long = "drift-trigger", default_value_t = DriftSpec::default().trigger)]
    pub trigger: DriftTrigger,
    /// A window drifts when at least this share of the features (`share`) or
    /// of their importance weight (`weighted`) drifts.
    #[arg(long = "drifted-share", default_value_t = DriftSpec::default().drifted_share)]
    pub drifted_share: f64,
    /// One feature's own drift threshold, or `ignore` to never count it:
    /// `--drift-feature alcohol=0.2 --drift-feature id=ignore`.
    #[arg(long = "drift-feature", value_name = "NAME=THRESHOLD|ignore", value_parser = parse_drift_feature)]
    pub features: Vec<(String, FeatureDriftOverride)>,
}

impl DriftFlags {
    /// The monitor's configuration. Values are checked by the spec's own
    /// rules when the monitor starts; names the model lacks are refused when
    /// it loads.
    pub fn config(&self) -> Result<DriftConfig, String> {
        let mut features = BTreeMap::new();
        for (name, o) in &self.features {
            if features.insert(name.clone(), o.clone()).is_some() {
                return Err(format!("--drift-feature names `{name}` twice"));
            }
        }
        let spec = DriftSpec {
            statistic: self.statistic,
            threshold: self.threshold,
            false_alarm_rate: self.false_alarm_rate,
            control: self.control,
            window: self.window,
            trigger: self.trigger,
            drifted_share: self.drifted_share,
            features,
            // The operator counts windows in a row; a server only reports them.
            ..DriftSpec::default()
        };
        Ok(DriftConfig {
            window_duration: self.window_time,
            recent_windows: self.recent,
            ..DriftConfig::from(spec)
        })
    }
}

/// Parses `NAME=THRESHOLD` or `NAME=ignore` for `--drift-feature`.
pub fn parse_drift_feature(text: &str) -> Result<(String, FeatureDriftOverride), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{text}`: expected NAME=THRESHOLD or NAME=ignore"))?;
    let name = name.trim();
    if name.is_empty() {
        return Err(format!("`{text}`: the feature name is empty"));
    }
    let value = value.trim();
    let o = if value.eq_ignore_ascii_case("ignore") {
        FeatureDriftOverride {
            threshold: None,
            ignore: true,
        }
    } else {
        let threshold: f64 = value.parse().map_err(|_| {
            format!("`{text}`: `{value}` is neither a threshold number nor `ignore`")
        })?;
        if !threshold.is_finite() || threshold <= 0.0 {
            return Err(format!(
                "`{text}`: the threshold must be a number > 0 (got {value})"
            ));
        }
        FeatureDriftOverride {
            threshold: Some(threshold),
            ignore: false,
        }
    };
    Ok((name.to_string(), o))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The drift flags as clap parses them.
    fn parse(args: &[&str]) -> Result<DriftFlags, clap::Error> {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            drift: DriftFlags,
        }
        let argv = std::iter::once("serve").chain(args.iter().copied());
        Cli::try_parse_from(argv).map(|cli| cli.drift)
    }

    #[test]
    fn no_flags_mean_the_specs_defaults() {
        let config = parse(&[]).unwrap().config().unwrap();
        assert_eq!(config.spec, DriftSpec::default());
        assert_eq!(config, DriftConfig::default());
    }

    #[test]
    fn flags_take_the_words_of_the_yaml() {
        let set = parse(&[
            "--drift-threshold",
            "0.2",
            "--drift-trigger",
            "share",
            "--drift-control",
            "falseDiscoveryRate",
            "--drift-statistic",
            "psi",
            "--drift-window",
            "500",
        ])
        .unwrap()
        .config()
        .unwrap()
        .spec;
        assert_eq!(set.threshold, DriftThreshold::Fixed(0.2));
        assert_eq!(set.trigger, DriftTrigger::Share);
        assert_eq!(set.control, DriftControl::FalseDiscoveryRate);
        assert_eq!(set.statistic, DriftStatistic::Psi);
        assert_eq!(set.window, 500);
        for (flag, bad, expected) in [
            ("--drift-threshold", "high", "expected `auto` or a number"),
            ("--drift-trigger", "most", "`weighted`, `share`, `any`"),
            ("--drift-control", "bonferroni", "`familyWise`"),
        ] {
            let Err(err) = parse(&[flag, bad]) else {
                panic!("`{bad}` was accepted for {flag}")
            };
            assert!(err.to_string().contains(expected), "{flag} {bad}: {err}");
        }
    }

    #[test]
    fn feature_overrides_parse_and_bad_ones_say_why() {
        assert_eq!(
            parse_drift_feature("alcohol=0.2"),
            Ok((
                "alcohol".into(),
                FeatureDriftOverride {
                    threshold: Some(0.2),
                    ignore: false
                }
            ))
        );
        assert_eq!(
            parse_drift_feature("id=ignore"),
            Ok((
                "id".into(),
                FeatureDriftOverride {
                    threshold: None,
                    ignore: true
                }
            ))
        );
        for (text, expected) in [
            ("alcohol", "NAME=THRESHOLD"),
            ("=0.2", "name is empty"),
            ("alcohol=high", "`high`"),
            ("alcohol=-1", "> 0"),
            ("alcohol=inf", "> 0"),
        ] {
            let err = parse_drift_feature(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let twice = parse(&["--drift-feature", "a=0.2", "--drift-feature", "a=ignore"]).unwrap();
        assert!(twice.config().unwrap_err().contains("`a` twice"));
        let both = parse(&["--drift-feature", "a=0.2", "--drift-feature", "b=ignore"]).unwrap();
        let features = both.config().unwrap().spec.features;
        assert_eq!(features["a"].threshold, Some(0.2));
        assert!(features["b"].ignore);
    }
}
