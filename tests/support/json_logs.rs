//! Log lines captured as JSON, the way `driftline --log-json` writes them,
//! from a test run alone in a child process: logging is process-wide
//! (tracing caches which call sites are on), so a test that reads the logs
//! gets a process and a global subscriber of its own.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Set in the child process that runs a log test alone.
const LOG_CHILD: &str = "DRIFTLINE_TEST_LOG_CHILD";

/// What the subscriber wrote, shared with the test.
#[derive(Clone, Default)]
pub struct CapturedLogs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLogs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for CapturedLogs {
    type Writer = CapturedLogs;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl CapturedLogs {
    /// Every line so far, parsed (each must be JSON).
    pub fn lines(&self) -> Vec<Value> {
        let text = String::from_utf8(self.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .map(|l| serde_json::from_str(l).expect("every log line is JSON"))
            .collect()
    }
}

/// Runs `body` with JSON logs captured, in a child process of this test
/// binary that runs only the test `path` (`module::test_name`); in the
/// parent, asserts that the child passed.
pub fn in_child_process<F, Fut>(path: &str, body: F)
where
    F: FnOnce(CapturedLogs) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    if std::env::var_os(LOG_CHILD).is_some() {
        let logs = CapturedLogs::default();
        let subscriber = tracing_subscriber::fmt()
            .json()
            .with_max_level(tracing::Level::INFO)
            .with_writer(logs.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).expect("the child's only subscriber");
        tokio::runtime::Runtime::new().unwrap().block_on(body(logs));
        return;
    }
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", path, "--nocapture", "--test-threads", "1"])
        .env(LOG_CHILD, "1")
        .output()
        .expect("the test binary runs");
    let out = String::from_utf8_lossy(&child.stdout);
    assert!(
        child.status.success() && out.contains("1 passed"),
        "the child process failed:\n{out}\n{}",
        String::from_utf8_lossy(&child.stderr)
    );
}
