//! Processes as `/proc` shows them, for tests that check which processes
//! outlive which. Shared by the cluster and operator test binaries (each
//! includes it with `#[path]`).

#![allow(dead_code)]

use std::time::{Duration, Instant};

/// One process: enough to tell it from a later one with the same pid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub pgrp: i32,
    /// Clock ticks after boot: with the pid, names one process for good.
    pub start_time: u64,
    pub state: char,
    pub cmdline: String,
}

impl Proc {
    fn read(pid: i32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: count after its last `)`.
        let rest: Vec<&str> = stat[stat.rfind(')')? + 1..].split_whitespace().collect();
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        Some(Proc {
            pid,
            state: rest.first()?.chars().next()?,
            ppid: rest.get(1)?.parse().ok()?,
            pgrp: rest.get(2)?.parse().ok()?,
            start_time: rest.get(19)?.parse().ok()?,
            cmdline: String::from_utf8_lossy(&cmdline).replace('\0', " "),
        })
    }

    /// The same process (pid and start time) still runs (a zombie has exited).
    pub fn running(&self) -> bool {
        Proc::read(self.pid)
            .is_some_and(|now| now.start_time == self.start_time && now.state != 'Z')
    }
}

/// Every process on the machine.
pub fn all() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(Proc::read)
        .collect()
}

/// The running children of `pid`.
pub fn children_of(pid: u32) -> Vec<Proc> {
    all()
        .into_iter()
        .filter(|p| p.ppid == pid as i32 && p.state != 'Z')
        .collect()
}

/// The running members of process group `pgrp`.
pub fn group(pgrp: i32) -> Vec<Proc> {
    all()
        .into_iter()
        .filter(|p| p.pgrp == pgrp && p.state != 'Z')
        .collect()
}

/// Polls `found` until it gives a value; panics naming `what` after `within`.
/// (Processes that are not our children have no exit to await.)
pub async fn wait_for<T>(what: &str, within: Duration, mut found: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = found() {
            return value;
        }
        assert!(Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until none of `procs` runs; returns those still running after `within`.
pub async fn still_running_after(procs: &[Proc], within: Duration) -> Vec<Proc> {
    let deadline = Instant::now() + within;
    loop {
        let running: Vec<Proc> = procs.iter().filter(|p| p.running()).cloned().collect();
        if running.is_empty() || Instant::now() >= deadline {
            return running;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
