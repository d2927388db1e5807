//! A load generator for the Open Inference Protocol: sends a dataset's rows
//! to a server or gateway at a steady rate, labels them through the feedback
//! endpoint, and can switch to a shifted dataset part-way (to watch drift
//! trigger a retraining). Used by `driftline load`, `driftline demo` and tests.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use crate::api::{Task, routes};
use crate::data::{Cell, Table};

/// Why load could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The model's metadata could not be read.
    #[error("cannot read the model's inputs from {url}: {reason}")]
    Metadata {
        /// The metadata URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A column the model needs is not in the data.
    #[error("column `{column}` missing in {source_name}; the model's inputs are {inputs}")]
    MissingColumn {
        /// The missing column.
        column: String,
        /// Where the rows came from.
        source_name: String,
        /// The model's input names.
        inputs: String,
    },
    /// The data has no rows.
    #[error("{0} has no rows to send")]
    Empty(String),
}

/// Cell as a tensor element of `datatype`.
pub fn cell_json(cell: &Cell, datatype: &str) -> Value {
    match (cell, datatype) {
        (Cell::Number(x), "BYTES") => json!(x.to_string()),
        (Cell::Number(x), _) => json!(x),
        (Cell::Text(s), _) => json!(s),
        (Cell::Missing, "BYTES") => json!(""),
        (Cell::Missing, _) => Value::Null,
    }
}

/// Cell as a feedback label: class names are strings, regression targets numbers.
pub fn label_json(cell: &Cell, task: Task) -> Value {
    match (cell, task) {
        (Cell::Number(x), Task::Classification) if x.fract() == 0.0 => {
            json!((*x as i64).to_string())
        }
        (Cell::Number(x), Task::Classification) => json!(x.to_string()),
        (Cell::Number(x), Task::Regression) => json!(x),
        (Cell::Text(s), _) => json!(s),
        (Cell::Missing, _) => Value::Null,
    }
}

/// Whether a served prediction equals a label (both as text).
pub fn same_label(prediction: &Value, label: &Value) -> bool {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    text(prediction) == text(label)
}

/// The model's inputs as `(name, datatype)`, from `GET /v2/models/{name}`.
pub async fn model_inputs(
    http: &reqwest::Client,
    base: &str,
    model: &str,
) -> Result<Vec<(String, String)>, LoadError> {
    let url = routes::url(base, routes::MODEL, model);
    let err = |reason: String| LoadError::Metadata {
        url: url.clone(),
        reason,
    };
    let answer = http
        .get(&url)
        .send()
        .await
        .map_err(|e| err(e.to_string()))?;
    if !answer.status().is_success() {
        return Err(err(format!("status {}", answer.status())));
    }
    let metadata: Value = answer.json().await.map_err(|e| err(e.to_string()))?;
    let inputs: Vec<(String, String)> = metadata["inputs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| {
                    Some((
                        i["name"].as_str()?.to_string(),
                        i["datatype"].as_str()?.to_string(),
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    if inputs.is_empty() {
        return Err(err("the answer lists no inputs".into()));
    }
    Ok(inputs)
}

/// The column index of each input, or the first one the data lacks.
pub fn input_columns(table: &Table, inputs: &[(String, String)]) -> Result<Vec<usize>, LoadError> {
    inputs
        .iter()
        .map(|(name, _)| {
            table
                .position(name)
                .ok_or_else(|| LoadError::MissingColumn {
                    column: name.clone(),
                    source_name: table.source.clone(),
                    inputs: inputs
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                })
        })
        .collect()
}

/// The infer request for rows `start..end` of `table`.
pub fn infer_body(
    table: &Table,
    columns: &[usize],
    inputs: &[(String, String)],
    start: usize,
    end: usize,
    id: &str,
) -> Value {
    let tensors: Vec<Value> = inputs
        .iter()
        .zip(columns)
        .map(|((name, datatype), col)| {
            let data: Vec<Value> = table.columns[*col][start..end]
                .iter()
                .map(|c| cell_json(c, datatype))
                .collect();
            json!({"name": name, "datatype": datatype, "shape": [end - start, 1], "data": data})
        })
        .collect();
    json!({"id": id, "inputs": tensors})
}

/// The order a dataset's rows are sent in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowOrder {
    /// Each pass over the rows in a fresh random order drawn from `seed`:
    /// every stretch of traffic is a random sample of the rows, as requests
    /// from independent clients are. The default: a file sorted or clustered
    /// by anything (time, label, source) sent in its own order would make a
    /// window of in-distribution rows look drifted.
    Shuffled { seed: u64 },
    /// The file's own order, cycled (to replay a log as it happened).
    File,
}

impl Default for RowOrder {
    fn default() -> Self {
        Self::Shuffled { seed: 0 }
    }
}

impl std::str::FromStr for RowOrder {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "shuffled" | "shuffle" | "random" => Ok(Self::default()),
            "file" | "in-order" => Ok(Self::File),
            _ => Err(format!("row order `{s}`: expected `shuffled` or `file`")),
        }
    }
}

/// Hands out the rows of a table batch by batch in a [`RowOrder`]. A batch
/// never spans two passes; each pass sends every row once.
#[derive(Debug)]
pub struct RowCycle {
    order: Vec<usize>,
    at: usize,
    rng: Option<ChaCha8Rng>,
}

impl RowCycle {
    pub fn new(rows: usize, order: RowOrder) -> Self {
        let mut cycle = Self {
            order: (0..rows).collect(),
            at: 0,
            rng: match order {
                RowOrder::Shuffled { seed } => Some(ChaCha8Rng::seed_from_u64(seed)),
                RowOrder::File => None,
            },
        };
        cycle.reshuffle();
        cycle
    }

    fn reshuffle(&mut self) {
        if let Some(rng) = &mut self.rng {
            self.order.shuffle(rng);
        }
    }

    /// The next `batch` row indices (fewer at the end of a pass; none for an
    /// empty table).
    pub fn next_batch(&mut self, batch: usize) -> Vec<usize> {
        if self.order.is_empty() {
            return Vec::new();
        }
        if self.at >= self.order.len() {
            self.at = 0;
            self.reshuffle();
        }
        let end = (self.at + batch.max(1)).min(self.order.len());
        let rows = self.order[self.at..end].to_vec();
        self.at = end;
        rows
    }
}

/// What to send, and how fast.
#[derive(Clone)]
pub struct LoadPlan {
    /// Base URL of the server or gateway.
    pub base: String,
    /// Model name in the URL.
    pub model: String,
    /// Rows to send, cycled.
    pub data: Arc<Table>,
    /// Rows to send instead once `shift_after` has passed.
    pub shifted: Option<Arc<Table>>,
    pub shift_after: Duration,
    /// Requests per second.
    pub rate: f64,
    /// How long to send.
    pub duration: Duration,
    /// Stop after this many requests, if sooner.
    pub requests: Option<u64>,
    /// Rows per request.
    pub batch: usize,
    /// The order rows are sent in (the shifted rows too).
    pub order: RowOrder,
    /// Label every request through the feedback endpoint with this column.
    pub label: Option<(String, Task)>,
    /// Most requests in flight.
    pub concurrency: usize,
}

/// What the load produced.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    /// Answered requests by the `model_version` that answered.
    pub by_version: BTreeMap<String, u64>,
    /// Requests sent from the shifted rows.
    pub shifted: u64,
    pub labelled: u64,
    /// Rows whose prediction matched the label.
    pub correct: u64,
    pub scored: u64,
}

struct Outcome {
    version: Option<String>,
    ok: bool,
    labelled: bool,
    correct: u64,
    scored: u64,
}

async fn one(
    http: reqwest::Client,
    plan: Arc<LoadPlan>,
    table: Table,
    columns: Arc<Vec<usize>>,
    inputs: Arc<Vec<(String, String)>>,
    id: String,
) -> Outcome {
    let (start, end) = (0, table.rows);
    let base = plan.base.trim_end_matches('/');
    let body = infer_body(&table, &columns, &inputs, start, end, &id);
    let mut out = Outcome {
        version: None,
        ok: false,
        labelled: false,
        correct: 0,
        scored: 0,
    };
    let Ok(answer) = http
        .post(routes::url(base, routes::INFER, &plan.model))
        .json(&body)
        .send()
        .await
    else {
        return out;
    };
    if !answer.status().is_success() {
        return out;
    }
    let Ok(response) = answer.json::<Value>().await else {
        return out;
    };
    out.ok = true;
    out.version = response["model_version"].as_str().map(String::from);
    let Some((target, task)) = &plan.label else {
        return out;
    };
    let Some(col) = table.position(target) else {
        return out;
    };
    let labels: Vec<Value> = table.columns[col][start..end]
        .iter()
        .map(|c| label_json(c, *task))
        .collect();
    let predictions = response["outputs"]
        .as_array()
        .and_then(|o| o.iter().find(|t| t["name"] == "predictions").or(o.first()))
        .and_then(|t| t["data"].as_array().cloned())
        .unwrap_or_default();
    for (p, l) in predictions.iter().zip(&labels) {
        out.scored += 1;
        out.correct += u64::from(same_label(p, l));
    }
    out.labelled = http
        .post(routes::url(base, routes::FEEDBACK, &plan.model))
        .json(&json!({"id": id, "label": labels}))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    out
}

/// Sends the plan's load and reports what came back.
pub async fn run(http: &reqwest::Client, plan: LoadPlan) -> Result<LoadReport, LoadError> {
    if plan.data.rows == 0 {
        return Err(LoadError::Empty(plan.data.source.clone()));
    }
    let inputs = model_inputs(http, &plan.base, &plan.model).await?;
    let columns = Arc::new(input_columns(&plan.data, &inputs)?);
    let shifted_columns = match &plan.shifted {
        Some(t) if t.rows == 0 => return Err(LoadError::Empty(t.source.clone())),
        Some(t) => Some(Arc::new(input_columns(t, &inputs)?)),
        None => None,
    };
    let inputs = Arc::new(inputs);
    let plan = Arc::new(plan);
    let batch = plan.batch.max(1);
    let gap = Duration::from_secs_f64(1.0 / plan.rate.max(0.001));
    let slots = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut report = LoadReport::default();
    let mut rows = RowCycle::new(plan.data.rows, plan.order);
    let mut shifted_rows = plan
        .shifted
        .as_ref()
        .map(|t| RowCycle::new(t.rows, plan.order));
    let mut tick = tokio::time::interval(gap);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while started.elapsed() < plan.duration && plan.requests.is_none_or(|n| report.sent < n) {
        tick.tick().await;
        let shift = started.elapsed() >= plan.shift_after;
        let (table, cols) = match (&plan.shifted, &shifted_columns, &mut shifted_rows) {
            (Some(t), Some(c), Some(cycle)) if shift => {
                report.shifted += 1;
                (t.select(&cycle.next_batch(batch)), c.clone())
            }
            _ => (plan.data.select(&rows.next_batch(batch)), columns.clone()),
        };
        let Ok(permit) = slots.clone().acquire_owned().await else {
            break;
        };
        report.sent += 1;
        let id = format!("load-{}-{}", std::process::id(), report.sent);
        let (http, plan, inputs) = (http.clone(), plan.clone(), inputs.clone());
        tasks.spawn(async move {
            let out = one(http, plan, table, cols, inputs, id).await;
            drop(permit);
            out
        });
        while let Some(done) = tasks.try_join_next() {
            tally(&mut report, done.ok());
        }
    }
    while let Some(done) = tasks.join_next().await {
        tally(&mut report, done.ok());
    }
    Ok(report)
}

fn tally(report: &mut LoadReport, outcome: Option<Outcome>) {
    let Some(o) = outcome else {
        report.errors += 1;
        return;
    };
    if o.ok {
        report.ok += 1;
    } else {
        report.errors += 1;
    }
    if let Some(v) = o.version {
        *report.by_version.entry(v).or_default() += 1;
    }
    report.labelled += u64::from(o.labelled);
    report.correct += o.correct;
    report.scored += o.scored;
}

/// The same rows with every numeric column but `target` moved up by `by_std`
/// of its own standard deviation: a covariate shift every feature shares,
/// so the drift rule fires whatever the model leans on (`driftline up
/// --drift-after`). Text and missing cells stay as they are.
pub fn shifted(table: &Table, target: &str, by_std: f64) -> Table {
    let mut out = table.clone();
    out.source = format!("{} (numeric features shifted by {by_std} sd)", table.source);
    for (name, column) in out.names.iter().zip(out.columns.iter_mut()) {
        if name == target {
            continue;
        }
        let values: Vec<f64> = column
            .iter()
            .filter_map(|c| match c {
                Cell::Number(v) if v.is_finite() => Some(*v),
                _ => None,
            })
            .collect();
        if values.len() < 2 {
            continue;
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let var =
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (values.len() - 1) as f64;
        let delta = by_std * var.sqrt();
        for cell in column.iter_mut() {
            if let Cell::Number(v) = cell {
                *v += delta;
            }
        }
    }
    out
}

#[cfg(test)]
mod shift_tests {
    use super::*;

    #[test]
    fn numeric_features_move_by_their_spread_and_the_target_stays() {
        let table = Table {
            source: "t".into(),
            names: vec!["x".into(), "colour".into(), "y".into()],
            columns: vec![
                vec![Cell::Number(1.0), Cell::Number(3.0), Cell::Missing],
                vec![
                    Cell::Text("red".into()),
                    Cell::Text("blue".into()),
                    Cell::Missing,
                ],
                vec![Cell::Number(0.0), Cell::Number(1.0), Cell::Number(1.0)],
            ],
            rows: 3,
            digest: String::new(),
        };
        let s = shifted(&table, "y", 2.0);
        // x: mean 2, sample sd sqrt(2): moved by 2*sqrt(2).
        let d = 2.0 * 2f64.sqrt();
        assert_eq!(
            s.columns[0],
            vec![Cell::Number(1.0 + d), Cell::Number(3.0 + d), Cell::Missing]
        );
        assert_eq!(s.columns[1], table.columns[1]);
        assert_eq!(s.columns[2], table.columns[2]);
        assert_eq!(s.rows, 3);
    }
}

#[cfg(test)]
mod order_tests {
    use super::*;

    fn passes(order: RowOrder, rows: usize, batch: usize, n: usize) -> Vec<Vec<usize>> {
        let mut cycle = RowCycle::new(rows, order);
        (0..n).map(|_| cycle.next_batch(batch)).collect()
    }

    #[test]
    fn shuffled_rows_visit_every_row_once_per_pass_in_a_new_order_each_pass() {
        let seen = passes(RowOrder::Shuffled { seed: 7 }, 50, 1, 150);
        let pass: Vec<Vec<usize>> = seen.chunks(50).map(|c| c.concat()).collect();
        for p in &pass {
            let mut sorted = p.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..50).collect::<Vec<_>>(), "each row once a pass");
        }
        assert_ne!(pass[0], (0..50).collect::<Vec<_>>(), "not the file's order");
        assert_ne!(pass[0], pass[1], "each pass in a new order");
        assert_eq!(
            seen,
            passes(RowOrder::Shuffled { seed: 7 }, 50, 1, 150),
            "the same seed sends the same rows"
        );
        assert_ne!(seen, passes(RowOrder::Shuffled { seed: 8 }, 50, 1, 150));
    }

    #[test]
    fn file_order_cycles_and_a_batch_never_spans_two_passes() {
        assert_eq!(
            passes(RowOrder::File, 5, 2, 5),
            vec![vec![0, 1], vec![2, 3], vec![4], vec![0, 1], vec![2, 3]]
        );
        assert!(
            RowCycle::new(0, RowOrder::default())
                .next_batch(3)
                .is_empty()
        );
    }

    #[test]
    fn the_order_flag_reads_shuffled_or_file_and_names_both_when_wrong() {
        assert_eq!("shuffled".parse(), Ok(RowOrder::Shuffled { seed: 0 }));
        assert_eq!("File".parse(), Ok(RowOrder::File));
        let err = "sorted".parse::<RowOrder>().unwrap_err();
        assert!(err.contains("`shuffled` or `file`"), "{err}");
    }
}
