//! Labelled traffic the model server captured (`*.jsonl` under a prefix),
//! read back as training rows.

use sha2::{Digest, Sha256};

use super::error::DataError;
use super::store;
use super::table::{Cell, Table};

/// Labelled traffic the model server captured under a prefix.
#[derive(Debug, Clone)]
pub struct Feedback {
    /// All rows of all `*.jsonl` files, in file-name order.
    pub table: Table,
    /// How many files were read.
    pub files: usize,
    /// Rows dropped because their target was missing.
    pub skipped_rows: usize,
}

/// Reads every `*.jsonl` file under `prefix` but the prediction log
/// (`predictions/`, unlabelled by design). Rows whose `target` is empty are
/// skipped (a label that never arrived must not block retraining); a prefix
/// with no files gives an empty table.
pub async fn load_feedback(prefix: &str, target: &str) -> Result<Feedback, DataError> {
    let log = format!(
        "{}/{}/",
        prefix.trim_end_matches('/'),
        crate::api::names::PREDICTION_LOG_DIR
    );
    let files: Vec<String> = store::list(prefix, ".jsonl")
        .await?
        .into_iter()
        .filter(|uri| !uri.starts_with(&log))
        .collect();
    let mut table = Table::empty(prefix, Vec::new());
    let mut hasher = Sha256::new();
    let mut skipped_rows = 0;
    for uri in &files {
        let data = store::read_bytes(uri).await?;
        hasher.update(&data);
        if data.iter().all(|b| b.is_ascii_whitespace()) {
            continue;
        }
        let part = Table::from_jsonl(uri, &data)?;
        let labelled: Vec<usize> = match part.position(target) {
            Some(t) => (0..part.rows)
                .filter(|&r| part.columns[t][r] != Cell::Missing)
                .collect(),
            None => Vec::new(),
        };
        skipped_rows += part.rows - labelled.len();
        let part = part.select(&labelled);
        for name in &part.names {
            if table.position(name).is_none() {
                table.names.push(name.clone());
                table.columns.push(vec![Cell::Missing; table.rows]);
            }
        }
        table.append(&part);
    }
    table.digest = hex::encode(hasher.finalize());
    Ok(Feedback {
        table,
        files: files.len(),
        skipped_rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn feedback_reads_every_jsonl_file_and_skips_unlabelled_rows() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("2026-01-02")).unwrap();
        std::fs::write(
            tmp.path().join("a.jsonl"),
            "{\"x\":1,\"y\":\"p\",\"_time\":3}\n",
        )
        .unwrap();
        std::fs::write(
            tmp.path().join("2026-01-02/b.jsonl"),
            "{\"x\":2,\"y\":\"q\"}\n{\"x\":3}\n{\"x\":4,\"y\":null}\n",
        )
        .unwrap();
        std::fs::write(tmp.path().join("ignored.csv"), "x,y\n9,z\n").unwrap();
        // The prediction log is no training data, labelled or not.
        std::fs::create_dir_all(tmp.path().join("predictions/2026-01-02")).unwrap();
        std::fs::write(
            tmp.path().join("predictions/2026-01-02/p.jsonl"),
            "{\"x\":5,\"y\":\"p\"}\n",
        )
        .unwrap();
        let fb = load_feedback(&tmp.path().display().to_string(), "y")
            .await
            .unwrap();
        assert_eq!(fb.files, 2);
        assert_eq!(fb.table.rows, 2);
        assert_eq!(fb.skipped_rows, 2);
        let x = fb.table.column("x", "test").unwrap();
        // File-name order: `2026-01-02/b.jsonl` sorts before `a.jsonl`.
        assert_eq!(x, &[Cell::Number(2.0), Cell::Number(1.0)]);
        let none = load_feedback(&tmp.path().join("none").display().to_string(), "y")
            .await
            .unwrap();
        assert_eq!(none.table.rows, 0);
    }
}
