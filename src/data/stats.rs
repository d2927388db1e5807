//! The statistics the data check compares, in one pass over a window's
//! rows: per column its empty, numeric and text cells, range, categories
//! and values outside a reference range; duplicate rows.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

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
    // Rows are hashed column by column (each column's cells are contiguous),
    // then each row's 64-bit hash is looked up once: duplicates among 10M
    // rows collide by chance with probability ~3e-6.
    let mut hashes = vec![0x9e37_79b9_7f4a_7c15_u64; table.rows];
    for (_, cells) in &counted {
        for (h, cell) in hashes.iter_mut().zip(cells.iter()) {
            let v = match cell {
                Cell::Number(x) => mix(x.to_bits()),
                Cell::Text(t) => {
                    // A fixed-key hasher: the same rows count the same in every process.
                    let mut text = std::collections::hash_map::DefaultHasher::new();
                    t.hash(&mut text);
                    text.finish() ^ 0x5555_5555_5555_5555
                }
                Cell::Missing => 0xaaaa_aaaa_aaaa_aaaa,
            };
            *h = mix(h.rotate_left(23) ^ v);
        }
    }
    let mut seen: HashSet<u64, BuildHasherDefault<Prehashed>> =
        HashSet::with_capacity_and_hasher(table.rows, Default::default());
    for h in hashes {
        if !seen.insert(h) {
            stats.duplicate_rows += 1;
        }
    }
    stats
}

/// splitmix64's finaliser: every input bit moves every output bit, so row
/// hashes built from it need no second hashing in the set.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The set's hasher for keys that already are well-mixed hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = mix(self.0 ^ u64::from(b));
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
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
        // Every label of the target is a class; other columns' text a
        // category. Looked up by reference: a string is copied only the
        // first time its category is seen.
        let number;
        let category = match cell {
            Cell::Text(t) => Some(t.as_str()),
            Cell::Number(_) if is_target => {
                number = cell.as_text();
                number.as_deref()
            }
            _ => None,
        };
        if let Some(k) = category {
            let known = c.categories.len();
            if let Some(n) = c.categories.get_mut(k) {
                *n += 1;
            } else if known < MAX_CATEGORIES {
                c.categories.insert(k.to_string(), 1);
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

    #[test]
    fn only_rows_equal_in_every_column_are_duplicates() {
        // Swapped values, an empty cell against 0, a number against its
        // text: all different rows; the last two rows repeat earlier ones.
        let t = Table::from_csv(
            "t.csv",
            b"a,b,label\n1,2,x\n2,1,x\n,0,x\n0,,x\n0,0,x\n1,2,x\n0,,x\n",
        )
        .unwrap();
        let s = compute(&t, &["a".into(), "b".into()], "label", &BTreeMap::new());
        assert_eq!(s.duplicate_rows, 2);
        let t = Table::from_csv("t.csv", b"a,label\n1,x\n1,y\n").unwrap();
        let s = compute(&t, &["a".into()], "label", &BTreeMap::new());
        assert_eq!(s.duplicate_rows, 0, "the target counts too");
    }
}
