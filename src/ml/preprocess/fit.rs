//! Fitting a feature's preprocessing: its kind (declared or inferred),
//! the checks its cells must pass, and the statistics of its training
//! cells (moments, a median's sample, booleans, categories), one cell or
//! one column of a frame at a time.

use std::collections::BTreeMap;

use crate::api::FeatureKind;
use crate::data::{Cell, Column};

use super::super::error::MlError;
use super::{FeatureSchema, bool_of, bool_value, numeric_value, parse_bool};

/// Infers a column's kind: all numbers → numeric, all true/false → boolean,
/// mostly text → categorical. Mostly numbers with some text is a data error
/// (a stray word in a numeric column), reported with its row.
pub fn infer_kind(source: &str, name: &str, cells: &[Cell]) -> Result<FeatureKind, MlError> {
    let mut counts = KindCounts::default();
    for (row, cell) in cells.iter().enumerate() {
        counts.observe(row, cell);
    }
    counts.decide(source, name)
}

/// What kind inference counts of a column, one cell at a time.
#[derive(Debug, Clone)]
struct KindCounts {
    numbers: u64,
    texts: u64,
    /// Whether every text cell so far reads as a boolean.
    texts_bool: bool,
    /// The first text cell (0-based row), for the stray-word error.
    first_text: Option<(usize, String)>,
}

impl Default for KindCounts {
    fn default() -> Self {
        KindCounts {
            numbers: 0,
            texts: 0,
            texts_bool: true,
            first_text: None,
        }
    }
}

impl KindCounts {
    fn observe(&mut self, row: usize, cell: &Cell) {
        match cell {
            Cell::Number(_) => self.numbers += 1,
            Cell::Text(t) => {
                self.texts += 1;
                self.texts_bool &= parse_bool(t).is_some();
                if self.first_text.is_none() {
                    self.first_text = Some((row, t.clone()));
                }
            }
            Cell::Missing => {}
        }
    }

    /// The one rule of kind inference.
    fn decide(&self, source: &str, name: &str) -> Result<FeatureKind, MlError> {
        if self.numbers == 0 && self.texts == 0 {
            return Err(MlError::EmptyColumn {
                source_uri: source.into(),
                column: name.into(),
            });
        }
        if self.texts == 0 {
            return Ok(FeatureKind::Numeric);
        }
        if self.numbers == 0 && self.texts_bool {
            return Ok(FeatureKind::Boolean);
        }
        if self.numbers > self.texts {
            let (row, value) = self.first_text.clone().unwrap_or_default();
            return Err(MlError::NotANumber {
                source_uri: source.into(),
                row: row + 1,
                column: name.into(),
                value,
                hint: " (inferred from its other values); fix the cell, or declare the column in data.featureKinds".into(),
            });
        }
        Ok(FeatureKind::Categorical)
    }
}

/// Checks every cell of a column against its kind, naming the first bad
/// row (1-based, as in the file).
pub fn check_column(
    source: &str,
    name: &str,
    kind: FeatureKind,
    cells: &[Cell],
) -> Result<(), MlError> {
    for (row, cell) in cells.iter().enumerate() {
        check_cell(source, name, kind, row, cell)?;
    }
    Ok(())
}

/// The one rule of which cells a kind accepts.
fn check_cell(
    source: &str,
    name: &str,
    kind: FeatureKind,
    row: usize,
    cell: &Cell,
) -> Result<(), MlError> {
    match (kind, cell) {
        (_, Cell::Missing) | (FeatureKind::Categorical, _) => Ok(()),
        (FeatureKind::Numeric, c) => numeric_value(c.view(), source, row, name).map(|_| ()),
        (FeatureKind::Boolean, c) => bool_value(c.view(), source, row, name).map(|_| ()),
    }
}

/// Fits one feature's preprocessing on training cells.
pub fn fit_feature(
    source: &str,
    name: &str,
    kind: FeatureKind,
    cells: &[Cell],
) -> Result<FeatureSchema, MlError> {
    let mut fit = ColumnFit::new(name, Some(kind), FitLimits::EXACT, 0);
    for (row, cell) in cells.iter().enumerate() {
        fit.observe(source, row, cell, true)?;
    }
    fit.finish(source)
}

/// Mean and standard deviation, one value at a time: the rule that
/// standardises numeric features and regression targets. The variance is
/// summed about the first value, which keeps it exact enough in one pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Moments {
    n: u64,
    sum: f64,
    shift: Option<f64>,
    sum_d: f64,
    sum_d2: f64,
}

impl Moments {
    pub fn push(&mut self, x: f64) {
        let k = *self.shift.get_or_insert(x);
        let d = x - k;
        self.n += 1;
        self.sum += x;
        self.sum_d += d;
        self.sum_d2 += d * d;
    }

    /// [`push`](Self::push) of each of `xs` in turn, summed in four lanes
    /// so no addition waits on the one before: the same sums to rounding.
    pub fn extend(&mut self, xs: &[f64]) {
        let Some(&first) = xs.first() else {
            return;
        };
        let k = *self.shift.get_or_insert(first);
        let (mut sum, mut sum_d, mut sum_d2) = ([0.0f64; 4], [0.0f64; 4], [0.0f64; 4]);
        let chunks = xs.chunks_exact(4);
        let rest = chunks.remainder();
        for c in chunks {
            for j in 0..4 {
                let d = c[j] - k;
                sum[j] += c[j];
                sum_d[j] += d;
                sum_d2[j] += d * d;
            }
        }
        self.n += (xs.len() - rest.len()) as u64;
        self.sum += sum.iter().sum::<f64>();
        self.sum_d += sum_d.iter().sum::<f64>();
        self.sum_d2 += sum_d2.iter().sum::<f64>();
        for &x in rest {
            self.push(x);
        }
    }

    pub fn mean(&self) -> f64 {
        self.sum / self.n.max(1) as f64
    }

    /// The standard deviation, 1 when the values (nearly) do not vary.
    pub fn std(&self) -> f64 {
        let n = self.n.max(1) as f64;
        let var = ((self.sum_d2 - self.sum_d * self.sum_d / n) / n).max(0.0);
        if var.sqrt() > 1e-12 { var.sqrt() } else { 1.0 }
    }
}

/// How much one feature's fit may hold: an exact fit (in memory, where the
/// column is held anyway) keeps every value; a streaming fit keeps a seeded
/// sample of numbers for the median and stops counting numbers as
/// categories once a column has this many distinct ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitLimits {
    pub median_sample: usize,
    pub number_categories: usize,
}

impl FitLimits {
    pub const EXACT: FitLimits = FitLimits {
        median_sample: usize::MAX,
        number_categories: usize::MAX,
    };

    /// Bytes a fit within these limits may hold per column, at most
    /// (a category's text counted at 64 bytes).
    pub fn bytes(&self) -> u64 {
        (self.median_sample as u64).saturating_mul(8)
            + (self.number_categories as u64).saturating_mul(64)
    }
}

/// One feature's preprocessing, fitted one cell at a time: kind inference
/// and the kind's checks over every row, the fit over the training rows.
/// The in-memory fit and the streaming pass both use it.
#[derive(Debug)]
pub struct ColumnFit {
    name: String,
    declared: Option<FeatureKind>,
    limits: FitLimits,
    counts: KindCounts,
    /// The first cell each kind refuses, over every row.
    bad_number: Option<MlError>,
    bad_bool: Option<MlError>,
    /// Over the training rows: present cells, numbers, booleans, categories.
    present: u64,
    moments: Moments,
    sample: Vec<f64>,
    numbers_seen: u64,
    sample_rng: rand_chacha::ChaCha8Rng,
    /// Algorithm L's state once the sample is full: its weight, and the
    /// count of numbers at which the next one replaces a kept one.
    skip_weight: f64,
    next_replaced: u64,
    /// A batch's training numbers, reused between batches.
    scratch: Vec<f64>,
    trues: u64,
    categories: BTreeMap<String, u64>,
    number_categories: BTreeMap<u64, u64>,
    numbers_overflowed: bool,
}

impl ColumnFit {
    /// A fit of column `name`; `declared` is `data.featureKinds`' kind, else
    /// the kind is inferred; `seed` draws the median's sample.
    pub fn new(name: &str, declared: Option<FeatureKind>, limits: FitLimits, seed: u64) -> Self {
        use rand::SeedableRng;
        ColumnFit {
            name: name.into(),
            declared,
            limits,
            counts: KindCounts::default(),
            bad_number: None,
            bad_bool: None,
            present: 0,
            moments: Moments::default(),
            sample: Vec::new(),
            numbers_seen: 0,
            sample_rng: rand_chacha::ChaCha8Rng::seed_from_u64(seed),
            skip_weight: 1.0,
            next_replaced: 0,
            scratch: Vec::new(),
            trues: 0,
            categories: BTreeMap::new(),
            number_categories: BTreeMap::new(),
            numbers_overflowed: false,
        }
    }

    /// Counts one cell at `row` (0-based, for errors); `train` when the row
    /// is in the training split. A declared kind's refusal is returned at
    /// once; an inferred kind's when [`finish`](Self::finish) knows it.
    pub fn observe(
        &mut self,
        source: &str,
        row: usize,
        cell: &Cell,
        train: bool,
    ) -> Result<(), MlError> {
        match cell {
            Cell::Number(x) => self.number(source, row, *x, train),
            // A missing cell passes every kind's check and counts nowhere.
            Cell::Missing => Ok(()),
            Cell::Text(t) => {
                let verdict = TextVerdict::of(t);
                self.text(source, row, t, &verdict, train)
            }
        }
    }

    /// Counts a frame's column, its rows numbered from `first`, exactly as
    /// [`observe`](Self::observe) counts each of its cells in order
    /// (`train[i]`: row `i` is a training row), without making a cell per
    /// value: numbers straight from the slice, a text once per distinct
    /// code. The streamed statistics pass reads every row of the window
    /// through here.
    pub fn observe_column(
        &mut self,
        source: &str,
        first: usize,
        column: &Column,
        train: &[bool],
    ) -> Result<(), MlError> {
        match column {
            Column::Numbers { values, missing } => {
                self.numbers(source, first, values, missing.as_deref(), train)?;
            }
            Column::Codes { codes, names } => {
                let verdicts: Vec<TextVerdict> = names.iter().map(|n| TextVerdict::of(n)).collect();
                for (i, (&code, &train)) in codes.iter().zip(train).enumerate() {
                    if let (Some(name), Some(verdict)) =
                        (names.get(code as usize), verdicts.get(code as usize))
                    {
                        self.text(source, first + i, name, verdict, train)?;
                    }
                }
            }
            other => {
                let reader = other.reader();
                for (i, &train) in train.iter().enumerate() {
                    self.observe(source, first + i, &reader.get(i), train)?;
                }
            }
        }
        Ok(())
    }

    /// [`observe`](Self::observe) of `Cell::Number(x)`.
    fn number(&mut self, source: &str, row: usize, x: f64, train: bool) -> Result<(), MlError> {
        self.numbers(source, row, &[x], None, &[train])
    }

    /// [`observe`](Self::observe) of each of `values` in turn (rows from
    /// `first`; `missing[i]`: a missing cell), in bulk: the checks find a
    /// column's first refused number in one scan, the training numbers are
    /// counted in a tight loop. A declared kind's refusal is returned
    /// before anything is counted (a refused column's fit is discarded).
    fn numbers(
        &mut self,
        source: &str,
        first: usize,
        values: &[f64],
        missing: Option<&[bool]>,
        train: &[bool],
    ) -> Result<(), MlError> {
        let present = |i: usize| !missing.is_some_and(|m| m[i]);
        let passes = |kind: FeatureKind, x: f64| match kind {
            FeatureKind::Numeric => x.is_finite(),
            FeatureKind::Boolean => bool_of(&Cell::Number(x)).is_some(),
            FeatureKind::Categorical => true,
        };
        let first_refused = |kind: FeatureKind| {
            (0..values.len())
                .find(|&i| present(i) && !passes(kind, values[i]))
                .and_then(|i| {
                    check_cell(
                        source,
                        &self.name,
                        kind,
                        first + i,
                        &Cell::Number(values[i]),
                    )
                    .err()
                })
        };
        match self.declared {
            Some(kind) => {
                if let Some(e) = first_refused(kind) {
                    return Err(e);
                }
            }
            None => {
                let (bad_number, bad_bool) = (
                    self.bad_number
                        .is_none()
                        .then(|| first_refused(FeatureKind::Numeric)),
                    self.bad_bool
                        .is_none()
                        .then(|| first_refused(FeatureKind::Boolean)),
                );
                self.counts.numbers += (0..values.len()).filter(|&i| present(i)).count() as u64;
                if let Some(e) = bad_number {
                    self.bad_number = e;
                }
                if let Some(e) = bad_bool {
                    self.bad_bool = e;
                }
            }
        }
        let (numeric, boolean) = (
            self.wants(FeatureKind::Numeric),
            self.wants(FeatureKind::Boolean),
        );
        let mut finite = std::mem::take(&mut self.scratch);
        finite.clear();
        for (i, (&x, &train)) in values.iter().zip(train).enumerate() {
            if !train || !present(i) {
                continue;
            }
            self.present += 1;
            if numeric && x.is_finite() {
                finite.push(x);
            }
            if boolean && x == 1.0 {
                self.trues += 1;
            }
            if self.wants(FeatureKind::Categorical) && !self.numbers_overflowed {
                *self.number_categories.entry(x.to_bits()).or_default() += 1;
                if self.number_categories.len() > self.limits.number_categories {
                    self.numbers_overflowed = true;
                    self.number_categories.clear();
                }
            }
        }
        self.sample_numbers(&finite);
        self.scratch = finite;
        Ok(())
    }

    /// [`observe`](Self::observe) of `Cell::Text(t)`, with `t`'s verdict.
    fn text(
        &mut self,
        source: &str,
        row: usize,
        t: &str,
        verdict: &TextVerdict,
        train: bool,
    ) -> Result<(), MlError> {
        let refused = |kind| check_cell(source, &self.name, kind, row, &Cell::Text(t.into())).err();
        if let Some(kind) = self.declared {
            let passes = match kind {
                FeatureKind::Numeric => verdict.number.is_some(),
                FeatureKind::Boolean => verdict.boolean.is_some(),
                FeatureKind::Categorical => true,
            };
            if !passes && let Some(e) = refused(kind) {
                return Err(e);
            }
        } else {
            self.counts.texts += 1;
            self.counts.texts_bool &= verdict.boolean.is_some();
            if self.counts.first_text.is_none() {
                self.counts.first_text = Some((row, t.to_string()));
            }
            if self.bad_number.is_none() && verdict.number.is_none() {
                self.bad_number = refused(FeatureKind::Numeric);
            }
            if self.bad_bool.is_none() && verdict.boolean.is_none() {
                self.bad_bool = refused(FeatureKind::Boolean);
            }
        }
        if !train {
            return Ok(());
        }
        self.present += 1;
        if self.wants(FeatureKind::Numeric)
            && let Some(x) = verdict.number
        {
            self.sample_numbers(&[x]);
        }
        if self.wants(FeatureKind::Boolean) && verdict.boolean == Some(true) {
            self.trues += 1;
        }
        if self.wants(FeatureKind::Categorical) {
            match self.categories.get_mut(t) {
                Some(n) => *n += 1,
                None => {
                    self.categories.insert(t.to_string(), 1);
                }
            }
        }
        Ok(())
    }

    /// Whether the fit counts what kind `k` needs: the declared kind's
    /// statistics, or every kind's while the kind is inferred.
    fn wants(&self, k: FeatureKind) -> bool {
        self.declared.is_none_or(|d| d == k)
    }

    /// Training numbers, in order, into the moments and the median's sample.
    ///
    /// The sample is a reservoir (every number has the same chance to be
    /// kept) drawn by Li's Algorithm L: random draws only at the numbers
    /// that replace a kept one, about k·ln(n/k) of n, where one draw per
    /// number cost a streamed pass more than the rest of its counting.
    fn sample_numbers(&mut self, xs: &[f64]) {
        use rand::Rng;
        self.moments.extend(xs);
        let k = self.limits.median_sample;
        let mut rest = xs;
        // Filling: the first k numbers are kept.
        let fill = k.saturating_sub(self.sample.len()).min(rest.len());
        self.sample.extend_from_slice(&rest[..fill]);
        self.numbers_seen += fill as u64;
        rest = &rest[fill..];
        if fill > 0 && self.sample.len() == k {
            self.skip_weight = 1.0;
            self.advance_reservoir();
        }
        if k == 0 {
            self.numbers_seen += rest.len() as u64;
            return;
        }
        // Full: only the numbers Algorithm L lands on replace a kept one.
        while !rest.is_empty() {
            let skip = self.next_replaced - self.numbers_seen - 1;
            if skip >= rest.len() as u64 {
                self.numbers_seen += rest.len() as u64;
                break;
            }
            let x = rest[skip as usize];
            rest = &rest[skip as usize + 1..];
            self.numbers_seen += skip + 1;
            let j = self.sample_rng.random_range(0..k);
            self.sample[j] = x;
            self.advance_reservoir();
        }
    }

    /// Algorithm L's next replacing number, after the current one.
    fn advance_reservoir(&mut self) {
        use rand::Rng;
        let k = self.limits.median_sample as f64;
        // Draws in (0, 1]: a logarithm of 0 would be infinite.
        let mut unit = || 1.0 - self.sample_rng.random::<f64>();
        self.skip_weight *= (unit().ln() / k).exp();
        let skip = (unit().ln() / (1.0 - self.skip_weight).ln()).floor();
        // A weight of 1 (a draw of exactly 1) skips nothing.
        let skip = if skip.is_finite() && skip > 0.0 {
            skip as u64
        } else {
            0
        };
        self.next_replaced = self.numbers_seen.saturating_add(skip).saturating_add(1);
    }

    /// The fitted schema: the kind (declared or inferred over every row),
    /// its first refused cell as the error, else the fit of the training rows.
    pub fn finish(self, source: &str) -> Result<FeatureSchema, MlError> {
        let name = self.name.clone();
        let kind = match self.declared {
            Some(k) => k,
            None => {
                let kind = self.counts.decide(source, &name)?;
                let refused = match kind {
                    FeatureKind::Numeric => self.bad_number,
                    FeatureKind::Boolean => self.bad_bool,
                    FeatureKind::Categorical => None,
                };
                if let Some(e) = refused {
                    return Err(e);
                }
                kind
            }
        };
        if self.present == 0 {
            return Err(MlError::EmptyColumn {
                source_uri: source.into(),
                column: name,
            });
        }
        match kind {
            FeatureKind::Numeric => {
                let mut values = self.sample;
                values.sort_by(f64::total_cmp);
                let mid = values.len() / 2;
                let median = if values.len().is_multiple_of(2) {
                    (values[mid - 1] + values[mid]) / 2.0
                } else {
                    values[mid]
                };
                Ok(FeatureSchema {
                    name,
                    kind,
                    categories: Vec::new(),
                    fill: Cell::Number(median),
                    mean: self.moments.mean(),
                    std: self.moments.std(),
                })
            }
            FeatureKind::Boolean => {
                let fill = if self.trues * 2 > self.present {
                    1.0
                } else {
                    0.0
                };
                Ok(FeatureSchema {
                    name,
                    kind,
                    categories: Vec::new(),
                    fill: Cell::Number(fill),
                    mean: 0.0,
                    std: 1.0,
                })
            }
            FeatureKind::Categorical => {
                if self.numbers_overflowed {
                    return Err(MlError::InvalidConfig {
                        field: format!("data.featureKinds.{name}"),
                        reason: format!(
                            "`{source}`: column `{name}` mixes text with more than {} distinct numbers, too many categories to stream; declare its kind or clean the column",
                            self.limits.number_categories
                        ),
                    });
                }
                let mut counts = self.categories;
                for (bits, n) in self.number_categories {
                    let text = Cell::Number(f64::from_bits(bits))
                        .as_text()
                        .unwrap_or_default();
                    *counts.entry(text).or_default() += n;
                }
                // Most frequent; ties go to the first in name order for determinism.
                let fill = counts
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                    .map(|(k, _)| k.clone())
                    .unwrap_or_default();
                Ok(FeatureSchema {
                    name,
                    kind,
                    categories: counts.into_keys().collect(),
                    fill: Cell::Text(fill),
                    mean: 0.0,
                    std: 1.0,
                })
            }
        }
    }
}

/// What a text cell reads as, worked out once per distinct text.
struct TextVerdict {
    /// As a number (finite), as the numeric kind reads it.
    number: Option<f64>,
    /// As a boolean, as the boolean kind reads it.
    boolean: Option<bool>,
}

impl TextVerdict {
    fn of(t: &str) -> TextVerdict {
        TextVerdict {
            number: t.parse::<f64>().ok().filter(|x| x.is_finite()),
            boolean: parse_bool(t),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::MISSING;

    const LIMITS: FitLimits = FitLimits {
        median_sample: 64,
        number_categories: 8,
    };

    /// Two fits of the same column, one cell at a time and by column: the
    /// same schema, or the same refusal.
    fn both(column: &Column, declared: Option<FeatureKind>, train: &[bool]) -> [String; 2] {
        let mut by_cell = ColumnFit::new("c", declared, LIMITS, 5);
        let mut by_column = ColumnFit::new("c", declared, LIMITS, 5);
        let reader = column.reader();
        let a = (0..train.len())
            .try_for_each(|i| by_cell.observe("s", 10 + i, &reader.get(i), train[i]))
            .and_then(|()| by_cell.finish("s"));
        let b = by_column
            .observe_column("s", 10, column, train)
            .and_then(|()| by_column.finish("s"));
        [format!("{a:?}"), format!("{b:?}")]
    }

    #[test]
    fn a_column_is_fitted_as_its_cells_are_one_by_one() {
        let rows = 300;
        let train: Vec<bool> = (0..rows).map(|i| i % 7 != 3).collect();
        let numbers = Column::Numbers {
            values: (0..rows).map(|i| ((i * 37) % 101) as f64 / 4.0).collect(),
            missing: Some((0..rows).map(|i| i % 11 == 0).collect()),
        };
        let names: Vec<String> = ["red", "2.5", "true", "no", "inf"]
            .map(String::from)
            .to_vec();
        let codes = |n: u32| Column::Codes {
            codes: (0..rows as u32)
                .map(|i| if i % 13 == 0 { MISSING } else { (i * 7) % n })
                .collect(),
            names: names.clone(),
        };
        let bools = Column::Numbers {
            values: (0..rows).map(|i| (i % 3 == 0) as u8 as f64).collect(),
            missing: None,
        };
        let cases: Vec<(&str, Column, Option<FeatureKind>)> = vec![
            ("numbers", numbers.clone(), None),
            (
                "numbers as numeric",
                numbers.clone(),
                Some(FeatureKind::Numeric),
            ),
            (
                "numbers as boolean (refused)",
                numbers,
                Some(FeatureKind::Boolean),
            ),
            ("0/1 numbers", bools.clone(), None),
            ("0/1 numbers as boolean", bools, Some(FeatureKind::Boolean)),
            ("mixed text", codes(5), None),
            (
                "mixed text as categorical",
                codes(5),
                Some(FeatureKind::Categorical),
            ),
            (
                "mixed text as numeric (refused)",
                codes(5),
                Some(FeatureKind::Numeric),
            ),
            ("boolean words", codes(2).clone(), None),
        ];
        for (case, column, declared) in cases {
            let [a, b] = both(&column, declared, &train);
            assert_eq!(a, b, "{case}");
        }
        // The refusal names the first refused cell: row 11 (0-based, the batch
        // starting at 10), shown 1-based.
        let [refused, _] = both(&codes(5), Some(FeatureKind::Numeric), &train);
        assert!(
            refused.contains("row: 12") && refused.contains(r#"value: "true""#),
            "{refused}"
        );
    }

    #[test]
    fn moments_summed_in_lanes_agree_with_one_at_a_time() {
        for n in [1usize, 3, 4, 9, 1001] {
            let xs: Vec<f64> = (0..n)
                .map(|i| 1e6 + (i as f64 * 0.37).sin() * 3.0)
                .collect();
            let (mut one, mut lanes) = (Moments::default(), Moments::default());
            xs.iter().for_each(|&x| one.push(x));
            lanes.extend(&xs[..n / 2]);
            lanes.extend(&xs[n / 2..]);
            assert_eq!(one.n, lanes.n);
            assert!(
                (one.mean() - lanes.mean()).abs() <= 1e-12 * one.mean().abs(),
                "{n}"
            );
            assert!(
                (one.std() - lanes.std()).abs() <= 1e-9 * one.std(),
                "{n}: {} {}",
                one.std(),
                lanes.std()
            );
        }
    }

    #[test]
    fn the_medians_sample_is_uniform_over_a_stream_longer_than_it() {
        let k = 2_000;
        let n = 400_000u64;
        let limits = FitLimits {
            median_sample: k,
            number_categories: 8,
        };
        let mut fit = ColumnFit::new("x", Some(FeatureKind::Numeric), limits, 9);
        for i in 0..n {
            fit.observe("s", i as usize, &Cell::Number(i as f64), true)
                .unwrap();
        }
        assert_eq!(fit.sample.len(), k);
        // Each tenth of the stream keeps about a tenth of the sample
        // (binomial sd ≈ 13 of 200), the last tenth included.
        for tenth in 0..10 {
            let (lo, hi) = (
                tenth as f64 * n as f64 / 10.0,
                (tenth + 1) as f64 * n as f64 / 10.0,
            );
            let kept = fit.sample.iter().filter(|&&x| x >= lo && x < hi).count();
            assert!((140..=260).contains(&kept), "tenth {tenth}: {kept} of {k}");
        }
        let mut distinct = fit.sample.clone();
        distinct.sort_by(f64::total_cmp);
        distinct.dedup();
        assert_eq!(distinct.len(), k, "every kept number is another number");
        let schema = fit.finish("s").unwrap();
        let Cell::Number(median) = schema.fill else {
            panic!("{schema:?}")
        };
        assert!(
            (median - n as f64 / 2.0).abs() < 0.05 * n as f64,
            "{median}"
        );
    }
}
