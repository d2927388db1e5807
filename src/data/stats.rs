//! The statistics the data check compares, in one pass over a window's
//! rows: per column its empty, numeric and text cells, range, categories
//! and values outside a reference range; duplicate rows.

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::api::{ColumnStats, DataStats, MAX_CATEGORIES};

use super::frame::{Column, Frame};
use super::table::{Cell, Table};

/// Counts `columns` (the features) and `target` of `table`. Numbers outside
/// `ranges` (the champion's training range per column) are counted too.
pub fn compute(
    table: &Table,
    columns: &[String],
    target: &str,
    ranges: &BTreeMap<String, (f64, f64)>,
) -> DataStats {
    let mut stats = Statistics::new(target, ranges.clone());
    stats.add_table(table, columns);
    stats.finish()
}

/// The data check's statistics gathered batch by batch, so the window need
/// not fit in memory: besides the counts, only one 64-bit hash per row is
/// kept, for duplicates (duplicates among 10M rows collide by chance with
/// probability ~3e-6).
pub struct Statistics {
    stats: DataStats,
    ranges: BTreeMap<String, (f64, f64)>,
    repeats: Repeats,
}

type HashSetOfRows = HashSet<u64, BuildHasherDefault<Prehashed>>;

/// The row hashes seen and how many repeated one: on a thread of its own
/// (each batch's hashes sent there, so the set's lookups overlap with
/// counting the next batch), or here when no thread can be started.
enum Repeats {
    Thread {
        batches: std::sync::mpsc::SyncSender<Vec<u64>>,
        counted: std::thread::JoinHandle<u64>,
    },
    Here {
        seen: HashSetOfRows,
        repeats: u64,
    },
    /// Not counted: the set would grow with the window (a streamed
    /// training's baseline, which the data check never compares duplicates
    /// with: it counts the new window's own).
    Skipped,
}

impl Repeats {
    fn start() -> Repeats {
        let (batches, received) = std::sync::mpsc::sync_channel::<Vec<u64>>(4);
        let counted = std::thread::Builder::new()
            .name("duplicate-rows".into())
            .spawn(move || {
                let mut seen = HashSetOfRows::default();
                let mut repeats = 0;
                for hashes in received {
                    repeats += insert(&mut seen, hashes);
                }
                repeats
            });
        match counted {
            Ok(counted) => Repeats::Thread { batches, counted },
            Err(_) => Repeats::Here {
                seen: HashSetOfRows::default(),
                repeats: 0,
            },
        }
    }

    fn add(&mut self, hashes: Vec<u64>) {
        match self {
            Repeats::Thread { batches, .. } => {
                // Only a thread that has died stops receiving; `finish` reports it.
                let _ = batches.send(hashes);
            }
            Repeats::Here { seen, repeats } => *repeats += insert(seen, hashes),
            Repeats::Skipped => {}
        }
    }

    /// Repeated rows, `None` when not counted.
    fn finish(self) -> Option<u64> {
        Some(match self {
            Repeats::Thread { batches, counted } => {
                drop(batches);
                counted
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }
            Repeats::Here { repeats, .. } => repeats,
            Repeats::Skipped => return None,
        })
    }
}

/// Adds rows' hashes to the set; returns how many were already in it.
fn insert(seen: &mut HashSetOfRows, hashes: Vec<u64>) -> u64 {
    seen.reserve(hashes.len());
    hashes.into_iter().filter(|h| !seen.insert(*h)).count() as u64
}

impl Statistics {
    pub fn new(target: &str, ranges: BTreeMap<String, (f64, f64)>) -> Self {
        Self::new_counted(target, ranges, Repeats::start())
    }

    fn new_counted(target: &str, ranges: BTreeMap<String, (f64, f64)>, repeats: Repeats) -> Self {
        Self {
            stats: DataStats {
                rows: 0,
                duplicate_rows: 0,
                duplicates_uncounted: false,
                target: target.to_string(),
                columns: BTreeMap::new(),
            },
            ranges,
            repeats,
        }
    }

    /// As [`new`](Self::new), without counting duplicate rows: memory stays
    /// flat however many rows pass (for a window streamed past memory).
    pub fn without_duplicates(target: &str, ranges: BTreeMap<String, (f64, f64)>) -> Self {
        Self::new_counted(target, ranges, Repeats::Skipped)
    }

    /// Counts one batch: `columns` (the features) and the target.
    pub fn add(&mut self, frame: &Frame, columns: &[String]) {
        let counted: Vec<(String, View<'_>)> = self
            .counted(columns, |name| frame.position(name))
            .into_iter()
            .map(|(name, i)| (name, View::Column(&frame.columns[i])))
            .collect();
        self.count(counted, frame.rows);
    }

    /// Counts a table of raw cells as [`add`](Self::add) counts a frame.
    pub fn add_table(&mut self, table: &Table, columns: &[String]) {
        let counted: Vec<(String, View<'_>)> = self
            .counted(columns, |name| table.position(name))
            .into_iter()
            .map(|(name, i)| (name, View::Cells(&table.columns[i])))
            .collect();
        self.count(counted, table.rows);
    }

    /// The counted columns (the features, then the target) a batch has.
    fn counted(
        &self,
        columns: &[String],
        position: impl Fn(&str) -> Option<usize>,
    ) -> Vec<(String, usize)> {
        columns
            .iter()
            .chain(std::iter::once(&self.stats.target))
            .filter_map(|name| position(name).map(|i| (name.clone(), i)))
            .collect()
    }

    fn count(&mut self, counted: Vec<(String, View<'_>)>, rows: usize) {
        for (name, view) in &counted {
            let is_target = *name == self.stats.target;
            let range = self.ranges.get(name).copied();
            let column = self.stats.columns.entry(name.clone()).or_default();
            match view {
                View::Cells(cells) => add_cells(column, cells, is_target, range),
                View::Column(c) => add_column(column, c, is_target, range),
            }
        }
        self.stats.rows += rows as u64;
        if matches!(self.repeats, Repeats::Skipped) {
            return;
        }
        // Rows are hashed column by column (each column's values are
        // contiguous), then each row's hash is looked up once.
        let mut hashes = vec![0x9e37_79b9_7f4a_7c15_u64; rows];
        for (_, view) in &counted {
            match view {
                View::Cells(cells) => hash_cells(&mut hashes, cells.iter()),
                View::Column(Column::Cells(cells)) => hash_cells(&mut hashes, cells.iter()),
                View::Column(Column::Numbers { values, missing }) => {
                    for (i, (h, x)) in hashes.iter_mut().zip(values).enumerate() {
                        let v = if missing.as_ref().is_some_and(|m| m[i]) {
                            MISSING_HASH
                        } else {
                            mix(x.to_bits())
                        };
                        *h = mix(h.rotate_left(23) ^ v);
                    }
                }
                View::Column(Column::Codes { codes, names }) => {
                    let per_code: Vec<u64> = names.iter().map(|t| text_hash(t)).collect();
                    for (h, &code) in hashes.iter_mut().zip(codes) {
                        let v = per_code.get(code as usize).copied().unwrap_or(MISSING_HASH);
                        *h = mix(h.rotate_left(23) ^ v);
                    }
                }
                View::Column(c) => {
                    let cells: Vec<Cell> = (0..c.len()).map(|i| c.cell(i)).collect();
                    hash_cells(&mut hashes, cells.iter());
                }
            }
        }
        self.repeats.add(hashes);
    }

    /// Rows counted so far.
    pub fn rows(&self) -> u64 {
        self.stats.rows
    }

    pub fn finish(self) -> DataStats {
        let mut stats = self.stats;
        match self.repeats.finish() {
            Some(n) => stats.duplicate_rows = n,
            None => stats.duplicates_uncounted = true,
        }
        stats
    }
}

/// A counted column: raw cells (a table) or a frame's column.
enum View<'a> {
    Cells(&'a [Cell]),
    Column(&'a Column),
}

/// A missing value's part of a row hash.
const MISSING_HASH: u64 = 0xaaaa_aaaa_aaaa_aaaa;

/// A text value's part of a row hash.
fn text_hash(t: &str) -> u64 {
    // A fixed-key hasher: the same rows count the same in every process.
    let mut text = std::collections::hash_map::DefaultHasher::new();
    t.hash(&mut text);
    text.finish() ^ 0x5555_5555_5555_5555
}

fn hash_cells<'a>(hashes: &mut [u64], cells: impl Iterator<Item = &'a Cell>) {
    for (h, cell) in hashes.iter_mut().zip(cells) {
        let v = match cell {
            Cell::Number(x) => mix(x.to_bits()),
            Cell::Text(t) => text_hash(t),
            Cell::Missing => MISSING_HASH,
        };
        *h = mix(h.rotate_left(23) ^ v);
    }
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

/// Counts a frame's column as [`add_cells`] counts its cells: numbers by
/// slice, text by code (each category counted once per batch, in the
/// order its first row comes).
fn add_column(c: &mut ColumnStats, column: &Column, is_target: bool, range: Option<(f64, f64)>) {
    match column {
        Column::Cells(cells) => add_cells(c, cells, is_target, range),
        // The common case in one tight pass: what `add_number` does per value.
        Column::Numbers {
            values,
            missing: None,
        } if !is_target && !values.is_empty() => {
            c.numbers += values.len() as u64;
            // Eight running minima and maxima, so the loop carries no chain
            // of dependent comparisons (and vectorises); `f64::min` skips
            // NaN, so the result is the same minimum whatever the order.
            let (mut min, mut max) = (
                [c.min.unwrap_or(values[0]); 8],
                [c.max.unwrap_or(values[0]); 8],
            );
            let chunks = values.chunks_exact(8);
            let rest = chunks.remainder();
            for chunk in chunks {
                for j in 0..8 {
                    min[j] = min[j].min(chunk[j]);
                    max[j] = max[j].max(chunk[j]);
                }
            }
            for &x in rest {
                min[0] = min[0].min(x);
                max[0] = max[0].max(x);
            }
            c.min = Some(min.iter().fold(f64::NAN, |a, &b| a.min(b)));
            c.max = Some(max.iter().fold(f64::NAN, |a, &b| a.max(b)));
            if let Some((lo, hi)) = range {
                c.out_of_range += values.iter().filter(|&&x| x < lo || x > hi).count() as u64;
            }
        }
        Column::Numbers { values, missing } => {
            // A numeric target's classes: counted per distinct value in
            // first-seen order, each printed once per batch, not once per row.
            let mut classes: Vec<(u64, u64)> = Vec::new();
            let mut class_of: std::collections::HashMap<u64, usize> =
                std::collections::HashMap::new();
            for (i, x) in values.iter().enumerate() {
                if missing.as_ref().is_some_and(|m| m[i]) {
                    c.nulls += 1;
                    continue;
                }
                add_number(c, *x, false, range);
                if is_target {
                    let k = *class_of.entry(x.to_bits()).or_insert_with(|| {
                        classes.push((x.to_bits(), 0));
                        classes.len() - 1
                    });
                    classes[k].1 += 1;
                }
            }
            for (bits, n) in classes {
                let text = Cell::Number(f64::from_bits(bits))
                    .as_text()
                    .unwrap_or_default();
                add_category(c, &text, n);
            }
        }
        Column::Codes { codes, names } => {
            let mut counts = vec![0u64; names.len()];
            let mut order: Vec<usize> = Vec::new();
            for &code in codes {
                match counts.get_mut(code as usize) {
                    Some(n) => {
                        if *n == 0 {
                            order.push(code as usize);
                        }
                        *n += 1;
                    }
                    None => c.nulls += 1,
                }
            }
            for k in order {
                c.texts += counts[k];
                add_category(c, &names[k], counts[k]);
            }
        }
        Column::Times { .. } => {
            let cells: Vec<Cell> = (0..column.len()).map(|i| column.cell(i)).collect();
            add_cells(c, &cells, is_target, range);
        }
    }
}

fn add_number(c: &mut ColumnStats, x: f64, is_target: bool, range: Option<(f64, f64)>) {
    c.numbers += 1;
    c.min = Some(c.min.map_or(x, |m| m.min(x)));
    c.max = Some(c.max.map_or(x, |m| m.max(x)));
    if range.is_some_and(|(lo, hi)| x < lo || x > hi) {
        c.out_of_range += 1;
    }
    // Every label of the target is a class, numbers too.
    if is_target {
        add_category(c, &Cell::Number(x).as_text().unwrap_or_default(), 1);
    }
}

/// `n` more rows of category `k`: a category is kept the first time it is
/// seen while there is room, and copied only then.
fn add_category(c: &mut ColumnStats, k: &str, n: u64) {
    let known = c.categories.len();
    if let Some(count) = c.categories.get_mut(k) {
        *count += n;
    } else if known < MAX_CATEGORIES {
        c.categories.insert(k.to_string(), n);
    }
}

fn add_cells(c: &mut ColumnStats, cells: &[Cell], is_target: bool, range: Option<(f64, f64)>) {
    for cell in cells {
        match cell {
            Cell::Missing => c.nulls += 1,
            Cell::Number(x) => add_number(c, *x, is_target, range),
            // Every column's text is a category.
            Cell::Text(t) => {
                c.texts += 1;
                add_category(c, t, 1);
            }
        }
    }
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
    fn batch_by_batch_counts_what_the_whole_table_counts() {
        let head = "x,color,label\n";
        let first = "1,red,a\n5,,b\n1,red,a\n";
        let second = "9,blue,\n1,red,a\nhigh,red,a\n7,green,c\n";
        let whole = Table::from_csv("t.csv", format!("{head}{first}{second}").as_bytes()).unwrap();
        let ranges = BTreeMap::from([("x".to_string(), (0.0, 6.0))]);
        let columns = ["x".to_string(), "color".to_string()];
        let expected = compute(&whole, &columns, "label", &ranges);
        let mut batches = Statistics::new("label", ranges);
        for part in [first, second] {
            let t = Table::from_csv("t.csv", format!("{head}{part}").as_bytes()).unwrap();
            batches.add_table(&t, &columns);
        }
        let got = batches.finish();
        assert_eq!(got, expected);
        assert_eq!(got.duplicate_rows, 2, "a repeat across batches counts");
        assert_eq!(got.columns["x"].max, Some(9.0));
        // Without duplicates: the same counts, and it says so.
        let mut flat = Statistics::without_duplicates(
            "label",
            BTreeMap::from([("x".to_string(), (0.0, 6.0))]),
        );
        for part in [first, second] {
            let t = Table::from_csv("t.csv", format!("{head}{part}").as_bytes()).unwrap();
            flat.add_table(&t, &columns);
        }
        let flat = flat.finish();
        assert!(flat.duplicates_uncounted);
        assert_eq!(
            DataStats {
                duplicate_rows: 2,
                duplicates_uncounted: false,
                ..flat
            },
            expected
        );
    }

    #[test]
    fn a_numeric_target_in_a_frame_counts_the_classes_its_cells_do() {
        let labels = [1.0, 0.0, 1.0, -0.0, 2.5, 1.0, 0.0];
        let missing: Vec<bool> = (0..labels.len()).map(|i| i == 4).collect();
        let frame = Frame {
            source: "t".into(),
            names: vec!["label".into()],
            columns: vec![Column::Numbers {
                values: labels.to_vec(),
                missing: Some(missing.clone()),
            }],
            rows: labels.len(),
        };
        let cells: Vec<Cell> = labels
            .iter()
            .zip(&missing)
            .map(|(&x, &m)| if m { Cell::Missing } else { Cell::Number(x) })
            .collect();
        let table = Table {
            source: "t".into(),
            names: vec!["label".into()],
            columns: vec![cells],
            rows: labels.len(),
            digest: "d".into(),
        };
        let (mut by_frame, mut by_cells) = (
            Statistics::new("label", BTreeMap::new()),
            Statistics::new("label", BTreeMap::new()),
        );
        by_frame.add(&frame, &[]);
        by_cells.add_table(&table, &[]);
        let (a, b) = (by_frame.finish(), by_cells.finish());
        assert_eq!(a, b);
        let label = &a.columns["label"];
        assert_eq!((label.numbers, label.nulls), (6, 1));
        assert_eq!(
            label.categories.values().sum::<u64>(),
            6,
            "{:?}",
            label.categories
        );
        assert_eq!(
            label.categories.get("1"),
            Some(&3),
            "{:?}",
            label.categories
        );
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
