//! Small SVG builders for the dashboard's plots. Hand-written rather than
//! `plotters`: four chart shapes, no fonts or raster backends to compile,
//! and output sized for the page weight (cells of one colour share a path).
//! Every label goes through [`escape`].

use std::fmt::Write as _;

use chrono::DateTime;

use super::html::escape;

const WIDTH: f64 = 760.0;
const LEFT: f64 = 48.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
/// Colours of series, in order (version curves, histogram bars).
pub const PALETTE: [&str; 6] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#8c564b", "#17becf",
];

/// One line of a [`line_chart`].
pub struct Series<'a> {
    pub label: &'a str,
    pub colour: &'a str,
    pub dashed: bool,
    /// (x, y) points; non-finite ones are skipped.
    pub points: Vec<(f64, f64)>,
}

/// A vertical marker on a [`line_chart`] (a promotion, a rollback).
pub struct Marker<'a> {
    pub x: f64,
    pub label: &'a str,
    pub colour: &'a str,
}

fn open(out: &mut String, height: f64, title: &str) {
    let _ = write!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" role="img" aria-label="{t}"><title>{t}</title>"#,
        t = escape(title)
    );
}

fn bounds(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    if hi - lo < 1e-12 {
        return Some((lo - 0.5, hi + 0.5));
    }
    Some((lo, hi))
}

/// A number short enough for an axis label.
pub fn short(v: f64) -> String {
    if !v.is_finite() {
        return "–".into();
    }
    let a = v.abs();
    if a != 0.0 && !(0.001..10_000.0).contains(&a) {
        format!("{v:.2e}")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.3}")
            .trim_end_matches('0')
            .trim_end_matches('.')
            .to_string()
    }
}

/// Time tick labels fine enough that the chart's five ticks over `span`
/// seconds read apart: seconds when ticks are under a minute apart, whole
/// days when they are days apart.
pub fn time_ticks(span: f64) -> impl Fn(f64) -> String {
    let step = span / 4.0;
    let format = if step < 60.0 {
        "%H:%M:%S"
    } else if step < 86_400.0 {
        "%m-%d %H:%M"
    } else {
        "%Y-%m-%d"
    };
    move |x: f64| {
        DateTime::from_timestamp_millis((x * 1000.0) as i64)
            .map(|t| t.format(format).to_string())
            .unwrap_or_default()
    }
}

/// Lines over a shared x axis, with optional vertical markers and a y range
/// (`None`: from the data). `x_label` formats x ticks.
pub fn line_chart(
    title: &str,
    series: &[Series<'_>],
    markers: &[Marker<'_>],
    y_range: Option<(f64, f64)>,
    x_label: &dyn Fn(f64) -> String,
) -> String {
    let height = 220.0;
    let bottom = 40.0;
    let mut out = String::new();
    open(&mut out, height, title);
    let xs = series
        .iter()
        .flat_map(|s| s.points.iter().map(|p| p.0))
        .chain(markers.iter().map(|m| m.x));
    let Some((x0, x1)) = bounds(xs) else {
        out.push_str(r#"<text x="20" y="30">no data yet</text></svg>"#);
        return out;
    };
    let (y0, y1) = y_range
        .or_else(|| bounds(series.iter().flat_map(|s| s.points.iter().map(|p| p.1))))
        .unwrap_or((0.0, 1.0));
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - bottom;
    let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * plot_w;
    let sy = |y: f64| TOP + plot_h - (y - y0) / (y1 - y0) * plot_h;
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/>"##
    );
    for i in 0..=4 {
        let y = y0 + (y1 - y0) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r#"<text x="{:.0}" y="{:.1}" class="ax" text-anchor="end">{}</text>"#,
            LEFT - 4.0,
            sy(y) + 4.0,
            escape(&short(y))
        );
        let x = x0 + (x1 - x0) * f64::from(i) / 4.0;
        let _ = write!(
            out,
            r#"<text x="{:.1}" y="{:.0}" class="ax" text-anchor="middle">{}</text>"#,
            sx(x),
            TOP + plot_h + 14.0,
            escape(&x_label(x))
        );
    }
    for (i, m) in markers.iter().enumerate() {
        let x = sx(m.x);
        let _ = write!(
            out,
            r#"<path d="M{x:.1} {TOP}v{plot_h}" stroke="{}" stroke-dasharray="3 2"/>"#,
            escape(m.colour),
        );
        if !m.label.is_empty() {
            // Stagger labels down the plot so neighbours stay readable.
            let _ = write!(
                out,
                r#"<text x="{:.1}" y="{:.1}" class="ax" fill="{}">{}</text>"#,
                x + 2.0,
                TOP + 10.0 + 12.0 * (i % 8) as f64,
                escape(m.colour),
                escape(m.label),
            );
        }
    }
    let mut legend_x = LEFT;
    for s in series {
        let mut d = String::new();
        for &(x, y) in s
            .points
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
        {
            let _ = write!(
                d,
                "{}{:.1} {:.1}",
                if d.is_empty() { "M" } else { "L" },
                sx(x),
                sy(y.clamp(y0, y1))
            );
        }
        if d.is_empty() {
            continue;
        }
        let _ = write!(
            out,
            r#"<path d="{d}" fill="none" stroke="{c}" stroke-width="1.5"{dash}/>"#,
            c = escape(s.colour),
            dash = if s.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            }
        );
        let _ = write!(
            out,
            r#"<line x1="{legend_x:.0}" y1="{ly:.0}" x2="{:.0}" y2="{ly:.0}" stroke="{c}" stroke-width="2"{dash}/><text x="{:.0}" y="{:.0}" class="ax">{}</text>"#,
            legend_x + 16.0,
            legend_x + 20.0,
            height - 8.0,
            escape(s.label),
            ly = height - 12.0,
            c = escape(s.colour),
            dash = if s.dashed {
                r#" stroke-dasharray="5 3""#
            } else {
                ""
            }
        );
        legend_x += 28.0 + 7.0 * s.label.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

/// Grouped bars: one group per label, one bar per series (shares in [0, 1]).
pub fn bar_chart(title: &str, labels: &[String], series: &[(&str, &str, Vec<f64>)]) -> String {
    let height = 230.0;
    let bottom = 60.0;
    let mut out = String::new();
    open(&mut out, height, title);
    if labels.is_empty() || series.is_empty() {
        out.push_str(r#"<text x="20" y="30">no data yet</text></svg>"#);
        return out;
    }
    let top = series
        .iter()
        .flat_map(|s| s.2.iter().copied())
        .filter(|v| v.is_finite())
        .fold(0.0_f64, f64::max)
        .max(1e-9);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = height - TOP - bottom;
    let group = plot_w / labels.len() as f64;
    let bar = (group * 0.8) / series.len() as f64;
    let _ = write!(
        out,
        r##"<rect x="{LEFT}" y="{TOP}" width="{plot_w}" height="{plot_h}" fill="#fafafa" stroke="#ccc"/><text x="{:.0}" y="{:.0}" class="ax" text-anchor="end">{}</text>"##,
        LEFT - 4.0,
        TOP + 8.0,
        escape(&short(top))
    );
    for (s, (_, colour, values)) in series.iter().enumerate() {
        let mut d = String::new();
        for (i, v) in values.iter().enumerate().take(labels.len()) {
            let h = if v.is_finite() { v / top * plot_h } else { 0.0 };
            let x = LEFT + group * i as f64 + group * 0.1 + bar * s as f64;
            let _ = write!(
                d,
                "M{x:.1} {:.1}h{bar:.1}v{h:.1}h{:.1}z",
                TOP + plot_h - h,
                -bar
            );
        }
        let _ = write!(out, r#"<path d="{d}" fill="{}"/>"#, escape(colour));
    }
    for (i, label) in labels.iter().enumerate() {
        let x = LEFT + group * (i as f64 + 0.5);
        let y = TOP + plot_h + 10.0;
        let _ = write!(
            out,
            r#"<text class="ax" text-anchor="end" transform="translate({x:.1} {y:.1}) rotate(-35)">{}</text>"#,
            escape(label)
        );
    }
    let mut legend_x = LEFT;
    for (label, colour, _) in series {
        let _ = write!(
            out,
            r#"<rect x="{legend_x:.0}" y="{:.0}" width="10" height="10" fill="{}"/><text x="{:.0}" y="{:.0}" class="ax">{}</text>"#,
            height - 14.0,
            escape(colour),
            legend_x + 14.0,
            height - 5.0,
            escape(label)
        );
        legend_x += 30.0 + 7.0 * label.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

/// One cell of a [`heatmap`]: its row and column and its value relative to
/// the row's threshold (1 = at the threshold).
pub struct HeatCell {
    pub row: usize,
    pub column: usize,
    pub ratio: f64,
    pub drifted: bool,
}

/// Colour steps of the heatmap by value / threshold.
const HEAT: [(f64, &str); 6] = [
    (0.25, "#f7fbff"),
    (0.5, "#c6dbef"),
    (0.75, "#6baed6"),
    (1.0, "#2171b5"),
    (2.0, "#fc9272"),
    (f64::INFINITY, "#de2d26"),
];

/// Feature × window cells coloured by value / threshold; cells over their
/// threshold are red and outlined. One path per colour keeps 10 000 cells small.
pub fn heatmap(title: &str, rows: &[String], columns: usize, cells: &[HeatCell]) -> String {
    let label_w = 150.0;
    let row_h = 16.0;
    let height = TOP + row_h * rows.len() as f64 + 34.0;
    let mut out = String::new();
    open(&mut out, height, title);
    if rows.is_empty() || columns == 0 {
        out.push_str(r#"<text x="20" y="30">no drift readings yet</text></svg>"#);
        return out;
    }
    let cell_w = (WIDTH - label_w - RIGHT) / columns as f64;
    let mut paths = vec![String::new(); HEAT.len()];
    let mut outline = String::new();
    for c in cells {
        let level = HEAT
            .iter()
            .position(|(upper, _)| c.ratio < *upper || !c.ratio.is_finite())
            .unwrap_or(HEAT.len() - 1);
        let x = label_w + cell_w * c.column as f64;
        let y = TOP + row_h * c.row as f64;
        let cell = format!("M{x:.1} {y:.0}h{cell_w:.2}v{}h{:.2}z", row_h - 1.0, -cell_w);
        if c.drifted {
            outline.push_str(&cell);
        }
        paths[level].push_str(&cell);
    }
    for (d, (_, colour)) in paths.iter().zip(HEAT) {
        if !d.is_empty() {
            let _ = write!(out, r#"<path d="{d}" fill="{colour}"/>"#);
        }
    }
    if !outline.is_empty() {
        let _ = write!(
            out,
            r##"<path d="{outline}" fill="none" stroke="#a50f15" stroke-width="0.6"/>"##
        );
    }
    for (i, label) in rows.iter().enumerate() {
        let _ = write!(
            out,
            r#"<text x="{:.0}" y="{:.0}" class="ax" text-anchor="end">{}</text>"#,
            label_w - 4.0,
            TOP + row_h * i as f64 + 12.0,
            escape(label)
        );
    }
    let mut x = label_w;
    let y = height - 12.0;
    for (upper, colour) in HEAT {
        let label = if upper.is_finite() {
            format!("<{upper}×")
        } else {
            "≥2× threshold".into()
        };
        let _ = write!(
            out,
            r##"<rect x="{x:.0}" y="{:.0}" width="10" height="10" fill="{colour}" stroke="#999"/><text x="{:.0}" y="{y:.0}" class="ax">{label}</text>"##,
            y - 9.0,
            x + 13.0
        );
        x += 30.0 + 7.0 * label.chars().count() as f64;
    }
    out.push_str("</svg>");
    out
}

/// A horizontal bar split by weight (a Model's traffic).
pub fn traffic_bar(parts: &[(String, u32)]) -> String {
    let mut out = String::from(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 160 14" width="160" height="14" role="img" aria-label="traffic">"#,
    );
    let mut x = 0.0;
    for (i, (label, weight)) in parts.iter().enumerate() {
        let w = 160.0 * f64::from(*weight) / 100.0;
        let _ = write!(
            out,
            r#"<rect x="{x:.1}" y="0" width="{w:.1}" height="14" fill="{}"><title>{}: {weight}%</title></rect>"#,
            PALETTE[i % PALETTE.len()],
            escape(label)
        );
        x += w;
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_escaped_in_every_chart() {
        let evil = "<script>alert(1)</script>";
        let line = line_chart(
            evil,
            &[Series {
                label: evil,
                colour: "#000",
                dashed: false,
                points: vec![(0.0, 1.0), (1.0, 2.0)],
            }],
            &[Marker {
                x: 0.5,
                label: evil,
                colour: "red",
            }],
            None,
            &|x| format!("{x}"),
        );
        let bars = bar_chart(evil, &[evil.to_string()], &[(evil, "#000", vec![0.5])]);
        let heat = heatmap(
            evil,
            &[evil.to_string()],
            1,
            &[HeatCell {
                row: 0,
                column: 0,
                ratio: 3.0,
                drifted: true,
            }],
        );
        let traffic = traffic_bar(&[(evil.to_string(), 100)]);
        for svg in [line, bars, heat, traffic] {
            assert!(!svg.contains("<script"), "{svg}");
            assert!(svg.contains("&lt;script&gt;"), "{svg}");
        }
    }

    #[test]
    fn heatmap_groups_cells_by_colour_and_outlines_drifted_ones() {
        let cells: Vec<HeatCell> = (0..100)
            .map(|i| HeatCell {
                row: i % 2,
                column: i / 2,
                ratio: if i % 2 == 0 { 0.1 } else { 3.0 },
                drifted: i % 2 == 1,
            })
            .collect();
        let svg = heatmap("drift", &["a".into(), "b".into()], 50, &cells);
        // Two colours used, plus one outline path: three paths for 100 cells.
        assert_eq!(svg.matches("<path").count(), 3, "{svg}");
        assert!(svg.contains("#de2d26") && svg.contains("#f7fbff"));
        assert!(svg.contains(r##"stroke="#a50f15""##));
    }

    #[test]
    fn empty_charts_say_so() {
        assert!(line_chart("t", &[], &[], None, &|x| x.to_string()).contains("no data yet"));
        assert!(heatmap("t", &[], 0, &[]).contains("no drift readings yet"));
    }

    #[test]
    fn short_numbers_stay_short() {
        assert_eq!(short(0.125), "0.125");
        assert_eq!(short(1234.0), "1234");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(short(1e-5), "1.00e-5");
    }
}
