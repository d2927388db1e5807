//! `-o table|json|yaml` for the user commands: one rendering path, so every
//! command prints machine-readable output the same way.

use serde::Serialize;

/// Output format of a user command.
#[derive(clap::ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Output {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document.
    Json,
    /// One YAML document.
    Yaml,
}

/// `value` in the chosen format; `table` renders it for people.
pub fn render<T: Serialize>(
    format: Output,
    value: &T,
    table: impl FnOnce(&T) -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Output::Table => table(value),
        Output::Json => format!("{}\n", serde_json::to_string_pretty(value)?),
        Output::Yaml => serde_yaml::to_string(value)?,
    })
}

/// Left-aligned columns three spaces apart, as kubectl prints them; empty
/// cells show `-`.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let cell = |s: &str| {
        if s.is_empty() {
            "-".to_string()
        } else {
            s.to_string()
        }
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, c) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell(c).chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        let last = cells.len().saturating_sub(1);
        let mut out = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            out.push_str(&c);
            if i < last {
                let pad = widths[i] - c.chars().count() + 3;
                out.push_str(&" ".repeat(pad));
            }
        }
        out.push('\n');
        out
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    for row in rows {
        out.push_str(&line(row.iter().map(|c| cell(c)).collect()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_empty_cells_show_a_dash() {
        let t = table(
            &["NAME", "CHAMPION"],
            &[
                vec!["wine-quality".into(), "v3".into()],
                vec!["churn".into(), String::new()],
            ],
        );
        assert_eq!(
            t,
            "NAME           CHAMPION\nwine-quality   v3\nchurn          -\n"
        );
    }

    #[test]
    fn json_and_yaml_carry_the_same_fields() {
        #[derive(Serialize)]
        struct V {
            name: &'static str,
            champion: Option<&'static str>,
        }
        let v = V {
            name: "wine-quality",
            champion: Some("v3"),
        };
        let json = render(Output::Json, &v, |_| unreachable!()).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["champion"], "v3");
        let yaml = render(Output::Yaml, &v, |_| unreachable!()).unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed["name"].as_str(), Some("wine-quality"));
        assert_eq!(
            render(Output::Table, &v, |v| v.name.to_string()).unwrap(),
            "wine-quality"
        );
    }
}
