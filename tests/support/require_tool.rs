//! Skip or fail when a test's tool is missing: one rule for every test
//! binary (each includes this file with `#[path]`).
//!
//! A developer without kubectl, PostgreSQL, chromium, tritonclient or the
//! real control plane's binaries still runs the rest of the suite: the test
//! prints a `SKIPPED` line and passes. Under CI a missing tool fails the
//! test, so a skipped test never passes as green. `CI` counts as set when it
//! holds anything but nothing, `false` or `0` (runners set `true` or `1`;
//! `.ci/run` exports `CI=true` itself).

#![allow(dead_code)]

/// Whether a `CI` variable with this value (`None`: unset) means CI.
pub fn ci_from(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        !v.is_empty() && !v.eq_ignore_ascii_case("false") && v != "0"
    })
}

/// Whether this process runs under CI (see [`ci_from`]).
pub fn in_ci() -> bool {
    ci_from(std::env::var("CI").ok().as_deref())
}

/// `tool` when it was found. Otherwise (`Err(what is missing and how to
/// get it)`) the test fails under CI, and elsewhere prints `SKIPPED` and
/// returns `None`, after which the test returns without checking anything.
pub fn require_tool<T>(test: &str, tool: Result<T, String>) -> Option<T> {
    decide(test, tool, in_ci())
}

fn decide<T>(test: &str, tool: Result<T, String>, ci: bool) -> Option<T> {
    match tool {
        Ok(found) => Some(found),
        Err(missing) if ci => panic!(
            "{test}: {missing}. Under CI (CI={}) a missing tool fails the test instead of \
             skipping it: .ci/run installs every tool the suite needs",
            std::env::var("CI").unwrap_or_default()
        ),
        Err(missing) => {
            eprintln!("SKIPPED: {test}: {missing}");
            None
        }
    }
}

/// The installed kubectl on PATH, or what is missing and how to get it
/// (for [`require_tool`]).
pub fn kubectl() -> Result<std::path::PathBuf, String> {
    std::env::var_os("PATH")
        .and_then(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("kubectl"))
                .find(|p| p.is_file())
        })
        .ok_or_else(|| {
            "kubectl is not on PATH (.ci/run installs it; see its kubectl block)".to_string()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ci_is_any_value_but_nothing_false_or_zero() {
        for set in ["true", "TRUE", "1", "yes", "github-actions"] {
            assert!(ci_from(Some(set)), "CI={set}");
        }
        for unset in [
            None,
            Some(""),
            Some(" "),
            Some("false"),
            Some("False"),
            Some("0"),
        ] {
            assert!(!ci_from(unset), "CI={unset:?}");
        }
    }

    #[test]
    fn a_found_tool_is_used_and_a_missing_one_skips_outside_ci() {
        assert_eq!(decide("t", Ok::<_, String>(7), true), Some(7));
        assert_eq!(decide("t", Ok::<_, String>(7), false), Some(7));
        assert_eq!(
            decide::<u8>("t", Err("kubectl not on PATH".into()), false),
            None
        );
    }

    #[test]
    #[should_panic(expected = "t: kubectl not on PATH. Under CI")]
    fn a_missing_tool_fails_under_ci() {
        decide::<u8>("t", Err("kubectl not on PATH".into()), true);
    }
}
