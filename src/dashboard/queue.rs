//! The annotation queue on a Model's page: rows set aside for a person's
//! label, by reason, and how many of them were labelled (`driftline
//! label`). Read-only: the page counts the queue's files under the Model's
//! feedback prefix; labelling happens in the terminal.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::api::QueueReason;
use crate::data::Queue;

/// The queue's counts for one reason.
#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct QueueCount {
    pub reason: String,
    pub queued: usize,
    pub labelled: usize,
}

/// The queue on the page.
#[derive(Serialize, Debug, Clone, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueueView {
    /// One row per reason, every reason shown.
    pub reasons: Vec<QueueCount>,
    /// Lines of queue files that could not be read (file and line).
    pub unreadable: usize,
    /// The command that labels the rest.
    pub command: String,
}

/// Counts a queue against the labels given for it.
pub fn queue_view(
    queue: &Queue,
    labels: &BTreeMap<(String, u64), Value>,
    namespace: &str,
    model: &str,
) -> QueueView {
    let reasons = QueueReason::ALL
        .into_iter()
        .map(|reason| {
            let rows = queue.rows.iter().filter(|r| r.reason == reason);
            QueueCount {
                reason: reason.to_string(),
                queued: rows.clone().count(),
                labelled: rows.filter(|r| labels.contains_key(&r.key())).count(),
            }
        })
        .collect();
    QueueView {
        reasons,
        unreadable: queue.problems.len(),
        command: format!("driftline label {model} -n {namespace}"),
    }
}

/// The page's "Annotation queue" section.
pub fn queue_section(view: Option<&QueueView>, out: &mut String) {
    let Some(view) = view else {
        return;
    };
    out.push_str("<h2 id=\"annotation-queue\">Annotation queue</h2><table id=\"queue\"><tr><th>Reason</th><th>Queued</th><th>Labelled</th><th>Waiting</th></tr>");
    for c in &view.reasons {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            c.reason,
            c.queued,
            c.labelled,
            c.queued - c.labelled
        );
    }
    out.push_str("</table>");
    if view.unreadable > 0 {
        let _ = write!(
            out,
            "<p class=\"note\">{} queue lines could not be read; <code>driftline label</code> names them.</p>",
            view.unreadable
        );
    }
    let _ = write!(
        out,
        "<p class=\"muted\">Label them with <code>{}</code>.</p>",
        super::html::escape(&view.command)
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::QueuedRow;

    fn row(id: &str, reason: QueueReason) -> QueuedRow {
        QueuedRow {
            id: id.into(),
            row: 0,
            version: "v1".into(),
            time: "2026-12-01T00:00:00Z".parse().unwrap(),
            reason,
            why: String::new(),
            score: 1.0,
            features: Default::default(),
            prediction: Value::Null,
            shadow: None,
        }
    }

    #[test]
    fn the_queue_is_counted_by_reason_with_what_was_labelled() {
        let queue = Queue {
            rows: vec![
                row("a", QueueReason::Uncertain),
                row("b", QueueReason::Uncertain),
                row("c", QueueReason::Drifted),
            ],
            problems: vec!["q.jsonl line 3: not a queued row".into()],
        };
        let labels = BTreeMap::from([(("b".to_string(), 0), Value::String("good".into()))]);
        let view = queue_view(&queue, &labels, "ml", "wine");
        let counts: Vec<_> = view
            .reasons
            .iter()
            .map(|c| (c.reason.as_str(), c.queued, c.labelled))
            .collect();
        assert_eq!(
            counts,
            [
                ("uncertain", 2, 1),
                ("drifted", 1, 0),
                ("disagreement", 0, 0)
            ]
        );
        let mut html = String::new();
        queue_section(Some(&view), &mut html);
        assert!(
            html.contains("<tr><td>uncertain</td><td>2</td><td>1</td><td>1</td></tr>"),
            "{html}"
        );
        assert!(html.contains("1 queue lines could not be read"), "{html}");
        assert!(html.contains("driftline label wine -n ml"), "{html}");
        let mut none = String::new();
        queue_section(None, &mut none);
        assert!(none.is_empty());
    }
}
