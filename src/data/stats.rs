//! The statistics the data check compares, in one pass over a window's
//! rows: per column its empty, numeric and text cells, range, categories
//! and values outside a reference range; duplicate rows.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};

use crate::api::{ColumnStats, DataStats, MAX_CATEGORIES};

use super::table::{Cell, Table};

/// Counts `columns` (the features) and `target` of `table`. Numbers outside
/// `ranges` (the champion's training range per column) are counted too.
pub fn compute(
    table: &Table,
    columns: &[String],
    target: &str,
    ranges: &BTreeMap<String, (f64, f64)>,
) -> DataStats {
    let mut stats = DataStats {
        rows: table.rows as u64,
        duplicate_rows: 0,
        target: target.to_string(),
        columns: BTreeMap::new(),
    };
    let counted: Vec<(&String, &[Cell])> = columns
        .iter()
        .chain(std::iter::once(&stats.target))
        .filter_map(|name| {
            table
                .position(name)
                .map(|i| (name, table.columns[i].as_slice()))
        })
        .collect();
    for (name, cells) in &counted {
        let is_target = *name == target;
        stats.columns.insert(
            (*name).clone(),
            column(cells, is_target, ranges.get(*name).copied()),
        );
    }
    let mut seen = HashSet::with_capacity(table.rows);
    for row in 0..table.rows {
        // A fixed-key hasher: the same rows count the same in every process.
        let mut h = std::collections::hash_map::DefaultHasher::new();
        for (_, cells) in &counted {
            match &cells[row] {
                Cell::Number(x) => (0u8, x.to_bits()).hash(&mut h),
                Cell::Text(t) => (1u8, t).hash(&mut h),
                Cell::Missing => 2u8.hash(&mut h),
            }
        }
        if !seen.insert(h.finish()) {
            stats.duplicate_rows += 1;
        }
    }
    stats
}

fn column(cells: &[Cell], is_target: bool, range: Option<(f64, f64)>) -> ColumnStats {
    let mut c = ColumnStats::default();
    for cell in cells {
        match cell {
            Cell::Missing => c.nulls += 1,
            Cell::Number(x) => {
                c.numbers += 1;
                c.min = Some(c.min.map_or(*x, |m| m.min(*x)));
                c.max = Some(c.max.map_or(*x, |m| m.max(*x)));
                if range.is_some_and(|(lo, hi)| *x < lo || *x > hi) {
                    c.out_of_range += 1;
                }
            }
            Cell::Text(_) => c.texts += 1,
        }
        // Every label of the target is a class; other columns' text a category.
        let category = match cell {
            Cell::Text(t) => Some(t.clone()),
            Cell::Number(_) if is_target => cell.as_text(),
            _ => None,
        };
        if let Some(k) = category {
            let known = c.categories.len();
            if let Some(n) = c.categories.get_mut(&k) {
                *n += 1;
            } else if known < MAX_CATEGORIES {
                c.categories.insert(k, 1);
            }
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_count_nulls_types_ranges_classes_and_duplicates() {
        let t = Table::from_csv(
            "t.csv",
            b"x,color,label\n1,red,a\n5,,b\n1,red,a\n9,blue,\nhigh,red,a\n",
        )
        .unwrap();
        let ranges = BTreeMap::from([("x".to_string(), (0.0, 6.0))]);
        let s = compute(&t, &["x".into(), "color".into()], "label", &ranges);
        assert_eq!(s.rows, 5);
        assert_eq!(s.duplicate_rows, 1, "row 3 repeats row 1");
        let x = &s.columns["x"];
        assert_eq!((x.numbers, x.texts, x.nulls), (4, 1, 0));
        assert_eq!((x.min, x.max, x.out_of_range), (Some(1.0), Some(9.0), 1));
        assert!(!x.numeric(), "a stray word makes it not numeric");
        assert_eq!(s.columns["color"].null_rate(s.rows), 0.2);
        assert_eq!(
            s.class_shares(),
            BTreeMap::from([("a".to_string(), 0.75), ("b".to_string(), 0.25)])
        );
        assert_eq!(s.columns["label"].nulls, 1);
    }
}
