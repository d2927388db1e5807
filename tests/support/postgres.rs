//! A throwaway PostgreSQL for tests: initdb + pg_ctl on a free loopback port
//! in a temp dir, from Debian's binaries. Shared by the pipeline and operator
//! test binaries (each includes it with `#[path]`).

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

use crate::require_tool::require_tool;

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The directory holding `initdb` and `pg_ctl`: `$PG_BIN`, Debian's
/// `/usr/lib/postgresql/<newest>/bin`, or `PATH`.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("PG_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((major, bin))
        })
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Some(bin);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .find(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
    })
}

/// A PostgreSQL cluster of its own for one test, stopped when dropped.
pub struct Postgres {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    /// PostgreSQL refuses to run as root: then it runs as this user.
    run_as: Option<String>,
}

impl Postgres {
    /// Starts a cluster, or returns `None` after printing why when
    /// PostgreSQL is not installed (outside CI only: see `require_tool`).
    pub fn start(test: &str) -> Option<Postgres> {
        let bin = require_tool(
            &format!("{test} on PostgreSQL"),
            postgres_bin_dir().ok_or_else(|| {
                "PostgreSQL not found (no $PG_BIN, /usr/lib/postgresql/*/bin or initdb on PATH); \
                 install Debian's `postgresql` package"
                    .to_string()
            }),
        )?;
        let dir = tempfile::tempdir().unwrap();
        let run_as = is_root().then(|| "postgres".to_string());
        if let Some(user) = &run_as {
            let uid = id_of(user, "-u");
            let gid = id_of(user, "-g");
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
        }
        let pg = Postgres {
            bin,
            dir,
            port: free_port(),
            run_as,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                &pg.data(),
                "-A",
                "trust",
                "-U",
                "driftline",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        pg.start_again();
        Some(pg)
    }

    pub fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    pub fn url(&self) -> String {
        format!("postgres://driftline@127.0.0.1:{}/postgres", self.port)
    }

    /// The same database; trust authentication ignores the password, which
    /// lets a test check it never shows.
    pub fn url_with_password(&self, password: &str) -> String {
        format!(
            "postgres://driftline:{password}@127.0.0.1:{}/postgres",
            self.port
        )
    }

    /// (Re)starts the server on the same port and data, waiting until it
    /// accepts connections.
    pub fn start_again(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log").display().to_string();
        self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data(),
                "-o",
                &options,
                "-l",
                &log,
                "-w",
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: sessions are cut, as in an outage).
    pub fn stop(&self) {
        self.run("pg_ctl", &["-D", &self.data(), "-m", "fast", "-w", "stop"]);
    }

    fn run(&self, tool: &str, args: &[&str]) {
        let program = self.bin.join(tool);
        let output = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&program)
                .args(args)
                .output(),
            None => Command::new(&program).args(args).output(),
        }
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        assert!(
            output.status.success(),
            "{tool} {args:?} failed: {}{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
            std::fs::read_to_string(self.dir.path().join("postgres.log")).unwrap_or_default()
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let program = self.bin.join("pg_ctl");
        let data = self.data();
        let args = ["-D", data.as_str(), "-m", "immediate", "stop"];
        // Already stopped is fine: only a running server must not outlive the test.
        let _ = match &self.run_as {
            Some(user) => Command::new("runuser")
                .args(["-u", user, "--"])
                .arg(&program)
                .args(args)
                .output(),
            None => Command::new(&program).args(args).output(),
        };
    }
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn id_of(user: &str, flag: &str) -> u32 {
    let out = Command::new("id").args([flag, user]).output().unwrap();
    assert!(
        out.status.success(),
        "PostgreSQL refuses to run as root and there is no `{user}` user to run it as"
    );
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}
