//! Tabular data as raw cells, column by column, until the fitted
//! preprocessing turns them into numbers: CSV with a header row and JSON
//! Lines parse here; Parquet arrives through `parquet.rs`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::api::DataFormat;

use super::error::DataError;
use super::store;

/// One raw input value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Cell {
    Number(f64),
    Text(String),
    Missing,
}

/// A cell borrowed from wherever its row lives (a [`Cell`], or a model
/// server's decoded request): encoding reads cells through it, so a request
/// is encoded without first being copied into owned cells.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CellRef<'a> {
    Number(f64),
    Text(&'a str),
    Missing,
}

impl<'a> CellRef<'a> {
    /// The cell as a category or label, a text borrowed: numbers print
    /// without a trailing `.0` (the one rule; [`Cell::as_text`] copies it).
    pub fn text(self) -> Option<std::borrow::Cow<'a, str>> {
        match self {
            CellRef::Number(x) => Some(x.to_string().into()),
            CellRef::Text(s) => Some(s.into()),
            CellRef::Missing => None,
        }
    }
}

impl Cell {
    /// A CSV field: empty → missing, a number (including NaN/inf, refused
    /// later with the row named) → number, anything else → text.
    pub fn parse(field: &str) -> Cell {
        let s = field.trim();
        if s.is_empty() {
            return Cell::Missing;
        }
        match s.parse::<f64>() {
            Ok(x) => Cell::Number(x),
            Err(_) => Cell::Text(s.to_string()),
        }
    }

    /// A JSON value: null → missing, booleans → `true`/`false` text.
    pub fn from_json(value: &serde_json::Value) -> Cell {
        match value {
            serde_json::Value::Null => Cell::Missing,
            serde_json::Value::Bool(b) => Cell::Text(b.to_string()),
            serde_json::Value::Number(n) => n.as_f64().map_or(Cell::Missing, Cell::Number),
            serde_json::Value::String(s) => Cell::parse(s),
            other => Cell::Text(other.to_string()),
        }
    }

    /// The cell borrowed: what encoding a row reads.
    pub fn view(&self) -> CellRef<'_> {
        match self {
            Cell::Number(x) => CellRef::Number(*x),
            Cell::Text(s) => CellRef::Text(s),
            Cell::Missing => CellRef::Missing,
        }
    }

    /// The cell as a category or label: numbers print without a trailing `.0`.
    pub fn as_text(&self) -> Option<String> {
        self.view().text().map(std::borrow::Cow::into_owned)
    }

    /// Whether the cell satisfies a slice condition.
    pub fn matches(&self, condition: &crate::api::SliceCondition) -> bool {
        match self {
            Cell::Number(x) => condition.matches_number(*x),
            Cell::Text(s) => condition.matches_text(s),
            Cell::Missing => false,
        }
    }
}

/// A table of raw cells, column by column.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// Where the rows came from (for error messages).
    pub source: String,
    pub names: Vec<String>,
    /// One vector per column, each `rows` long.
    pub columns: Vec<Vec<Cell>>,
    pub rows: usize,
    /// sha256 of the bytes read.
    pub digest: String,
}

/// Lower-case hex sha256 of some bytes.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

impl Table {
    /// An empty table with these columns.
    pub fn empty(source: &str, names: Vec<String>) -> Table {
        let columns = vec![Vec::new(); names.len()];
        Table {
            source: source.into(),
            names,
            columns,
            rows: 0,
            digest: sha256_hex(b""),
        }
    }

    /// Index of a column by name.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    /// A column by name, or an error naming who needed it.
    pub fn column(&self, name: &str, needed_by: &str) -> Result<&[Cell], DataError> {
        self.position(name)
            .map(|i| self.columns[i].as_slice())
            .ok_or_else(|| DataError::MissingColumn {
                source_uri: self.source.clone(),
                column: name.into(),
                needed_by: needed_by.into(),
            })
    }

    /// Parses CSV with a header row; ragged rows are refused with their line.
    pub fn from_csv(source: &str, data: &[u8]) -> Result<Table, DataError> {
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            return Err(DataError::EmptyData {
                source_uri: source.into(),
            });
        }
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(true)
            .flexible(false)
            .trim(csv::Trim::All)
            .from_reader(data);
        let malformed = |line: u64, reason: String| DataError::Malformed {
            source_uri: source.into(),
            line,
            reason,
        };
        let header = reader
            .headers()
            .map_err(|e| malformed(1, e.to_string()))?
            .clone();
        let names: Vec<String> = header.iter().map(str::to_string).collect();
        check_names(source, &names)?;
        let mut columns: Vec<Vec<Cell>> = vec![Vec::new(); names.len()];
        let mut record = csv::StringRecord::new();
        loop {
            match reader.read_record(&mut record) {
                Ok(false) => break,
                Ok(true) => {
                    for (col, field) in columns.iter_mut().zip(record.iter()) {
                        col.push(Cell::parse(field));
                    }
                }
                Err(e) => {
                    let line = e.position().map_or(0, |p| p.line());
                    let reason = match e.kind() {
                        csv::ErrorKind::UnequalLengths {
                            expected_len, len, ..
                        } => {
                            format!("row has {len} fields; the header has {expected_len}")
                        }
                        _ => e.to_string(),
                    };
                    return Err(malformed(line, reason));
                }
            }
        }
        let rows = columns.first().map_or(0, Vec::len);
        if rows == 0 {
            return Err(DataError::NoRows {
                source_uri: source.into(),
            });
        }
        Ok(Table {
            source: source.into(),
            names,
            columns,
            rows,
            digest: sha256_hex(data),
        })
    }

    /// Parses JSON Lines: one object per line; keys starting with `_` are
    /// metadata and ignored; a key absent from a line is a missing cell.
    pub fn from_jsonl(source: &str, data: &[u8]) -> Result<Table, DataError> {
        let text = std::str::from_utf8(data).map_err(|e| DataError::Malformed {
            source_uri: source.into(),
            line: 0,
            reason: format!("not UTF-8: {e}"),
        })?;
        let mut table = Table::empty(source, Vec::new());
        table.digest = sha256_hex(data);
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let value: serde_json::Value =
                serde_json::from_str(line).map_err(|e| DataError::Malformed {
                    source_uri: source.into(),
                    line: i as u64 + 1,
                    reason: format!("not valid JSON: {e}"),
                })?;
            let serde_json::Value::Object(object) = value else {
                return Err(DataError::Malformed {
                    source_uri: source.into(),
                    line: i as u64 + 1,
                    reason: "expected a JSON object with one key per column".into(),
                });
            };
            for (key, value) in &object {
                if key.starts_with('_') {
                    continue;
                }
                if table.position(key).is_none() {
                    table.names.push(key.clone());
                    table.columns.push(vec![Cell::Missing; table.rows]);
                }
                let col = table.position(key).unwrap_or_default();
                table.columns[col].push(Cell::from_json(value));
            }
            table.rows += 1;
            for col in &mut table.columns {
                col.resize(table.rows, Cell::Missing);
            }
        }
        if table.rows == 0 {
            return Err(DataError::EmptyData {
                source_uri: source.into(),
            });
        }
        Ok(table)
    }

    /// Parses bytes in the given format, or by the URI's extension.
    pub fn parse(
        source: &str,
        format: Option<DataFormat>,
        data: &[u8],
    ) -> Result<Table, DataError> {
        match format.unwrap_or_else(|| format_of(source)) {
            // An image set's index is CSV; its images are read by `ml::vision`.
            DataFormat::Csv | DataFormat::Images => Table::from_csv(source, data),
            DataFormat::Jsonl => Table::from_jsonl(source, data),
            DataFormat::Parquet => super::parquet::table_from_bytes(source, data),
        }
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Table {
        Table {
            source: self.source.clone(),
            names: self.names.clone(),
            columns: self
                .columns
                .iter()
                .map(|c| indices.iter().map(|&i| c[i].clone()).collect())
                .collect(),
            rows: indices.len(),
            digest: self.digest.clone(),
        }
    }

    /// Appends another table's rows; its columns are matched by name, and
    /// columns it lacks become missing cells.
    pub fn append(&mut self, other: &Table) {
        for (name, col) in self.names.iter().zip(self.columns.iter_mut()) {
            match other.position(name) {
                Some(j) => col.extend(other.columns[j].iter().cloned()),
                None => col.extend(std::iter::repeat_n(Cell::Missing, other.rows)),
            }
        }
        self.rows += other.rows;
    }
}

fn check_names(source: &str, names: &[String]) -> Result<(), DataError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, name) in names.iter().enumerate() {
        if name.is_empty() {
            return Err(DataError::Malformed {
                source_uri: source.into(),
                line: 1,
                reason: format!("header column {} has no name", i + 1),
            });
        }
        if !seen.insert(name.as_str()) {
            return Err(DataError::Malformed {
                source_uri: source.into(),
                line: 1,
                reason: format!("header names column `{name}` twice"),
            });
        }
    }
    Ok(())
}

/// The format a URI's extension implies (`.jsonl`/`.ndjson`, `.parquet`,
/// or CSV).
pub fn format_of(uri: &str) -> DataFormat {
    known_format(uri).unwrap_or(DataFormat::Csv)
}

/// The format a file name's extension names, if it names one.
pub fn known_format(uri: &str) -> Option<DataFormat> {
    let lower = uri.to_ascii_lowercase();
    if lower.ends_with(".jsonl") || lower.ends_with(".ndjson") {
        Some(DataFormat::Jsonl)
    } else if lower.ends_with(".parquet") || lower.ends_with(".pq") {
        Some(DataFormat::Parquet)
    } else if lower.ends_with(".csv") {
        Some(DataFormat::Csv)
    } else {
        None
    }
}

/// Reads and parses a dataset from a URI.
pub async fn read_table(uri: &str, format: Option<DataFormat>) -> Result<Table, DataError> {
    let data: Bytes = store::read_bytes(uri).await?;
    Table::parse(uri, format, &data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_are_numbers_text_or_missing() {
        let t = Table::from_csv("t.csv", b"a,b,c\n1.5,red,\n2,white,x\n").unwrap();
        assert_eq!(t.rows, 2);
        assert_eq!(t.columns[0], vec![Cell::Number(1.5), Cell::Number(2.0)]);
        assert_eq!(t.columns[1][0], Cell::Text("red".into()));
        assert_eq!(t.columns[2][0], Cell::Missing);
        assert_eq!(t.digest.len(), 64);
    }

    #[test]
    fn empty_header_only_and_ragged_csv_are_refused_with_the_line() {
        let e = Table::from_csv("e.csv", b"").unwrap_err();
        assert!(e.to_string().contains("`e.csv` is empty"), "{e}");
        let e = Table::from_csv("h.csv", b"a,b\n").unwrap_err();
        assert!(e.to_string().contains("no data rows"), "{e}");
        let e = Table::from_csv("r.csv", b"a,b\n1,2\n3\n").unwrap_err();
        assert!(
            e.to_string().contains("line 3") && e.to_string().contains("1 fields"),
            "{e}"
        );
        let e = Table::from_csv("d.csv", b"a,a\n1,2\n").unwrap_err();
        assert!(e.to_string().contains("`a` twice"), "{e}");
    }

    #[test]
    fn jsonl_ignores_metadata_keys_and_fills_absent_keys() {
        let t = Table::from_jsonl(
            "f.jsonl",
            b"{\"_id\":\"1\",\"x\":1,\"y\":\"a\"}\n{\"x\":null,\"z\":true}\n",
        )
        .unwrap();
        assert_eq!(t.names, vec!["x", "y", "z"]);
        assert_eq!(t.columns[0], vec![Cell::Number(1.0), Cell::Missing]);
        assert_eq!(t.columns[1], vec![Cell::Text("a".into()), Cell::Missing]);
        assert_eq!(t.columns[2], vec![Cell::Missing, Cell::Text("true".into())]);
        let e = Table::from_jsonl("f.jsonl", b"{\"x\":1}\n[1]\n").unwrap_err();
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
