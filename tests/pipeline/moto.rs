//! A moto S3 server on loopback (PyPI `moto[server]`, installed by `.ci/run`
//! from `.ci/requirements.txt`), with the client a test and a driftline
//! process use. The Python interpreter is `python3`, or
//! `DRIFTLINE_TEST_PYTHON` when set.

use std::net::TcpListener;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};

pub const BUCKET: &str = "driftline-test";

/// A moto S3 server, stopped on drop.
pub struct Moto {
    child: std::process::Child,
    port: u16,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

impl Moto {
    pub async fn start() -> Self {
        Self::start_with(&[]).await
    }

    /// Started with extra environment (e.g. moto's request recorder).
    pub async fn start_with(env: &[(&str, String)]) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let python = std::env::var("DRIFTLINE_TEST_PYTHON").unwrap_or_else(|_| "python3".into());
        let port = free_port();
        let mut child = std::process::Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run `{python}`: {e}"));
        let started = Instant::now();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                panic!(
                    "the moto S3 server exited ({status}): {err}\n\
                     install it with `python3 -m pip install -r .ci/requirements.txt`"
                );
            }
            if reqwest::get(format!("http://127.0.0.1:{port}/"))
                .await
                .is_ok()
            {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the moto S3 server did not answer on port {port} within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let moto = Moto { child, port };
        let created = reqwest::Client::new()
            .put(moto.url(""))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "bucket: {created:?}");
        moto
    }

    /// Starts moto's request recorder afresh (the server must have been
    /// started with `MOTO_RECORDER_FILEPATH`): what the store is asked from
    /// now on is logged by the store itself.
    pub async fn record(&self) {
        let http = reqwest::Client::new();
        for step in ["reset-recording", "start-recording"] {
            let r = http
                .post(format!(
                    "http://127.0.0.1:{}/moto-api/recorder/{step}",
                    self.port
                ))
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{step}: {r:?}");
        }
    }

    /// `(method, decoded path and query)` of every request recorded since [`Moto::record`].
    pub async fn recorded(&self) -> Vec<(String, String)> {
        let text = reqwest::get(format!(
            "http://127.0.0.1:{}/moto-api/recorder/download-recording",
            self.port
        ))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        text.lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let entry: serde_json::Value = serde_json::from_str(l).unwrap();
                let url = url::Url::parse(entry["url"].as_str().unwrap()).unwrap();
                // Keys are compared as written (`date=…`), not as sent (`date%3D…`).
                let path = percent_encoding::percent_decode_str(url.path())
                    .decode_utf8_lossy()
                    .into_owned();
                let target = match url.query() {
                    Some(q) => format!("{path}?{q}"),
                    None => path,
                };
                (entry["method"].as_str().unwrap().to_string(), target)
            })
            .collect()
    }

    /// The HTTP URL of a key in the test bucket.
    pub fn url(&self, key: &str) -> String {
        format!("http://127.0.0.1:{}/{BUCKET}/{key}", self.port)
    }

    /// The bucket as a client with the same credentials sees it.
    pub fn store(&self) -> object_store::aws::AmazonS3 {
        let mut b = object_store::aws::AmazonS3Builder::new().with_bucket_name(BUCKET);
        for (k, v) in self.env() {
            b = b.with_config(k.to_ascii_lowercase().parse().unwrap(), v);
        }
        b.build().expect("an S3 client for moto")
    }

    pub async fn put(&self, key: &str, body: impl Into<Vec<u8>>) {
        self.store()
            .put(&key.into(), body.into().into())
            .await
            .unwrap_or_else(|e| panic!("PUT {key}: {e}"));
    }

    pub async fn get(&self, key: &str) -> Vec<u8> {
        let r = self.store().get(&key.into()).await;
        let r = r.unwrap_or_else(|e| panic!("GET {key}: {e}"));
        r.bytes().await.unwrap().to_vec()
    }

    /// Keys under `prefix`.
    pub async fn keys(&self, prefix: &str) -> Vec<String> {
        let prefix = object_store::path::Path::from(prefix);
        let listed: Vec<_> = self
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap();
        listed.into_iter().map(|m| m.location.to_string()).collect()
    }

    /// What a pod's environment would hold for this store.
    pub fn env(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "driftline".into()),
            ("AWS_SECRET_ACCESS_KEY", "driftline-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    pub fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_driftline"));
        c.args(args).env("RUST_LOG", "warn").kill_on_drop(true);
        for (k, v) in self.env() {
            c.env(k, v);
        }
        c
    }

    pub async fn driftline(&self, args: &[&str]) -> Output {
        self.command(args).output().await.expect("driftline runs")
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
