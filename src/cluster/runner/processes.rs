//! What the node started, so nothing it started outlives it.
//!
//! - Every container process is forked by one thread the node owns (see
//!   [`ProcessTable`]) and asks the kernel for a parent-death signal
//!   (`PR_SET_PDEATHSIG`, SIGKILL): when the node's process dies, even by
//!   SIGKILL, its container processes die with it. The signal fires when the
//!   *thread* that forked the child ends, which is why no tokio worker (they
//!   come and go) forks them: the table's thread ends only when the table is
//!   dropped, after every pod worker has stopped its processes.
//! - Each process is recorded in `<state_dir>/processes/<pid>` with the
//!   kernel's start time of the process. What escaped the signal (a
//!   container's own children, which share its process group) is found from
//!   these records when a node next starts on the same state directory, and
//!   stopped: SIGTERM, then SIGKILL after a grace period. A process whose pid
//!   was reused since (another start time) is never signalled.
//! - A lock on the directory keeps two live nodes from sharing it (the
//!   second would take the first one's processes for survivors).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tokio::sync::oneshot;

/// How long survivors of an earlier run get between SIGTERM and SIGKILL.
pub const SURVIVOR_GRACE: Duration = Duration::from_secs(5);

/// Why the node's process table could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ProcessTableError {
    /// The records directory or its lock could not be used.
    #[error("cannot use {path} for the node's process records")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: io::Error,
    },
    /// Another node runs on this state directory.
    #[error(
        "another driftline node is running on {state_dir} (its lock {lock} is held); stop it, or give this one another state directory"
    )]
    InUse {
        /// The state directory.
        state_dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The thread that starts processes could not be created.
    #[error("cannot start the node's process-starting thread")]
    Thread(#[source] io::Error),
}

/// One recorded process: what the node started, as written in its record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessRecord {
    /// Process id (also its process group: containers lead their own group).
    pub pid: i32,
    /// Start time in clock ticks since boot (`/proc/<pid>/stat`, field 22).
    pub start_time: u64,
    /// `namespace/pod/container`, for the log.
    pub label: String,
}

impl ProcessRecord {
    fn to_line(&self) -> String {
        format!("{} {} {}\n", self.pid, self.start_time, self.label)
    }

    fn parse(text: &str) -> Option<ProcessRecord> {
        let mut fields = text.trim().splitn(3, ' ');
        Some(ProcessRecord {
            pid: fields.next()?.parse().ok()?,
            start_time: fields.next()?.parse().ok()?,
            label: fields.next().unwrap_or_default().to_string(),
        })
    }
}

/// What `/proc/<pid>/stat` says about a process that matters here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// State letter: `R`, `S`, `D`, `Z` (zombie: dead, not yet reaped), ...
    pub state: char,
    /// Process group.
    pub pgrp: i32,
    /// Start time in clock ticks since boot.
    pub start_time: u64,
}

impl ProcStat {
    /// Parses a `/proc/<pid>/stat` line. The command name (field 2) may hold
    /// spaces and parentheses, so fields are counted after its last `)`.
    pub fn parse(text: &str) -> Option<ProcStat> {
        let rest = &text[text.rfind(')')? + 1..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // rest starts at field 3 (state): pgrp is field 5, starttime field 22.
        Some(ProcStat {
            state: fields.first()?.chars().next()?,
            pgrp: fields.get(2)?.parse().ok()?,
            start_time: fields.get(19)?.parse().ok()?,
        })
    }

    /// Still running (a zombie has exited and only waits to be reaped).
    pub fn alive(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

/// The live processes a record still accounts for: the recorded process if
/// it is still the one recorded (same start time), and every live member of
/// its process group started no earlier. When the pid now belongs to a
/// process started at another time, the record is stale and nothing is.
pub fn survivors(record: &ProcessRecord, processes: &BTreeMap<i32, ProcStat>) -> Vec<i32> {
    if processes
        .get(&record.pid)
        .is_some_and(|p| p.start_time != record.start_time)
    {
        return Vec::new();
    }
    processes
        .iter()
        .filter(|(_, p)| p.pgrp == record.pid && p.start_time >= record.start_time && p.alive())
        .map(|(pid, _)| *pid)
        .collect()
}

/// Every process on the machine, from `/proc`.
fn all_processes() -> BTreeMap<i32, ProcStat> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return BTreeMap::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let stat = ProcStat::parse(&std::fs::read_to_string(e.path().join("stat")).ok()?)?;
            Some((pid, stat))
        })
        .collect()
}

/// The start time of a process (None once it is gone).
fn start_time(pid: i32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    Some(ProcStat::parse(&text)?.start_time)
}

struct SpawnRequest {
    command: tokio::process::Command,
    reply: oneshot::Sender<io::Result<tokio::process::Child>>,
}

/// The node's process table: starts container processes from its own
/// thread with a parent-death signal, and keeps a record of each until it
/// is gone. Dropping it ends the thread, which kills whatever it started
/// that still runs.
pub struct ProcessTable {
    requests: std::sync::mpsc::Sender<SpawnRequest>,
    dir: PathBuf,
    // Held open for the node's life: the lock goes with the file.
    _lock: std::fs::File,
}

impl ProcessTable {
    /// Opens the records of `state_dir`, stops what an earlier node on it
    /// left running (SIGTERM, SIGKILL after `grace`), and starts the thread
    /// that starts processes. Needs a tokio runtime (the processes are
    /// tokio children). Returns the table and the records of what it stopped.
    pub async fn open(
        state_dir: &Path,
        grace: Duration,
    ) -> Result<(ProcessTable, Vec<ProcessRecord>), ProcessTableError> {
        let dir = state_dir.join("processes");
        let io_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| ProcessTableError::Io { path, source }
        };
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join(".lock");
        let Some(lock) =
            crate::cluster::layout::try_lock(&lock_path).map_err(io_err(&lock_path))?
        else {
            return Err(ProcessTableError::InUse {
                state_dir: state_dir.to_path_buf(),
                lock: lock_path,
            });
        };
        let stopped = reap(&dir, grace).await;
        let handle = tokio::runtime::Handle::current();
        let (requests, incoming) = std::sync::mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("driftline-node-processes".into())
            .spawn(move || {
                // tokio children register with the runtime that reaps them.
                let _runtime = handle.enter();
                for request in incoming {
                    let _ = request.reply.send(spawn_here(request.command));
                }
            })
            .map_err(ProcessTableError::Thread)?;
        Ok((
            ProcessTable {
                requests,
                dir,
                _lock: lock,
            },
            stopped,
        ))
    }

    /// Starts `command` from the table's thread, with a parent-death signal,
    /// and records it under `label` (`namespace/pod/container`).
    pub async fn spawn(
        &self,
        command: tokio::process::Command,
        label: &str,
    ) -> io::Result<tokio::process::Child> {
        let (reply, answer) = oneshot::channel();
        let stopped = || io::Error::other("the node's process table is closed");
        self.requests
            .send(SpawnRequest { command, reply })
            .map_err(|_| stopped())?;
        let child = answer.await.map_err(|_| stopped())??;
        if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
            // Our own unreaped child: the pid cannot have been reused yet.
            let record = ProcessRecord {
                pid,
                start_time: start_time(pid).unwrap_or_default(),
                label: label.to_string(),
            };
            if let Err(err) = write_record(&self.dir, &record) {
                tracing::warn!(%err, pid, label, "cannot record a container process; a crash of this node could leave it behind");
            }
        }
        Ok(child)
    }

    /// Forgets a process that has exited (and whose group was stopped).
    pub fn forget(&self, pid: u32) {
        let _ = std::fs::remove_file(self.dir.join(pid.to_string()));
    }
}

/// Writes a record atomically (a crash leaves the old state or the new).
pub fn write_record(dir: &Path, record: &ProcessRecord) -> io::Result<()> {
    let path = dir.join(record.pid.to_string());
    let tmp = dir.join(format!(".{}.tmp", record.pid));
    std::fs::write(&tmp, record.to_line())?;
    std::fs::rename(&tmp, &path)
}

/// Stops the survivors of every record in `dir` and removes the records.
async fn reap(dir: &Path, grace: Duration) -> Vec<ProcessRecord> {
    let mut records = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            // The lock, or a record half written when the node died.
            if path.extension().is_some_and(|e| e == "tmp") {
                let _ = std::fs::remove_file(&path);
            }
            continue;
        }
        if let Some(record) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|t| ProcessRecord::parse(&t))
        {
            records.push(record);
        }
        let _ = std::fs::remove_file(&path);
    }
    let processes = all_processes();
    let mut stopped = Vec::new();
    let mut victims: Vec<(i32, u64)> = Vec::new();
    for record in records {
        let found = survivors(&record, &processes);
        if found.is_empty() {
            continue;
        }
        tracing::warn!(
            pid = record.pid,
            container = %record.label,
            processes = found.len(),
            "stopping processes an earlier run of this node left behind"
        );
        victims.extend(found.iter().map(|pid| (*pid, processes[pid].start_time)));
        stopped.push(record);
    }
    signal_all(&victims, Signal::SIGTERM);
    let deadline = tokio::time::Instant::now() + grace;
    // Not our children: there is no exit to wait for, only /proc to read.
    while victims
        .iter()
        .any(|(pid, started)| is_running(*pid, *started))
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    signal_all(&victims, Signal::SIGKILL);
    stopped
}

/// Whether `pid` is still the process started at `started`, and alive.
fn is_running(pid: i32, started: u64) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|t| ProcStat::parse(&t))
        .is_some_and(|s| s.start_time == started && s.alive())
}

fn signal_all(victims: &[(i32, u64)], signal: Signal) {
    for (pid, started) in victims {
        // Checked right before the signal: a pid freed meanwhile is not ours.
        if is_running(*pid, *started) {
            let _ = kill(Pid::from_raw(*pid), signal);
        }
    }
}

/// Starts `command` on the calling thread with a parent-death signal.
fn spawn_here(mut command: tokio::process::Command) -> io::Result<tokio::process::Child> {
    die_with_parent(&mut command);
    command.spawn()
}

/// Asks the kernel to SIGKILL the process `command` starts when the thread
/// that starts it ends (see the module docs for why that thread is the
/// table's). A parent that died before the child asked is caught by
/// comparing the child's parent with the pid it was forked from.
#[allow(unsafe_code)]
fn die_with_parent(command: &mut tokio::process::Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec; it makes two
    // async-signal-safe system calls (prctl, getppid), allocates nothing and
    // takes no lock, as `pre_exec` requires.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGKILL)?;
            if nix::unistd::getppid() != parent {
                return Err(io::Error::from_raw_os_error(
                    nix::errno::Errno::ESRCH as i32,
                ));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::sync::Arc;

    fn stat(state: char, pgrp: i32, start_time: u64) -> ProcStat {
        ProcStat {
            state,
            pgrp,
            start_time,
        }
    }

    #[test]
    fn proc_stat_lines_parse_even_with_odd_command_names() {
        let line = "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 117 0 0 0 0 0 0 0 20 0 1 0 987654 2519040 213 18446744073709551615";
        assert_eq!(ProcStat::parse(line), Some(stat('S', 4242, 987654)));
        assert_eq!(ProcStat::parse("garbage"), None);
        assert!(!stat('Z', 1, 1).alive());
        assert!(stat('D', 1, 1).alive());
    }

    #[test]
    fn records_round_trip() {
        let record = ProcessRecord {
            pid: 77,
            start_time: 12345,
            label: "ml/wine-v1-abc/server".into(),
        };
        assert_eq!(ProcessRecord::parse(&record.to_line()), Some(record));
        assert_eq!(ProcessRecord::parse("not a record"), None);
    }

    #[test]
    fn survivors_are_the_recorded_group_and_never_a_reused_pid() {
        let record = ProcessRecord {
            pid: 100,
            start_time: 5000,
            label: "ml/p/c".into(),
        };
        let processes = BTreeMap::from([
            (100, stat('S', 100, 5000)), // the container process itself
            (101, stat('S', 100, 5100)), // a child it left in its group
            (102, stat('Z', 100, 5200)), // a child that exited, not yet reaped
            (103, stat('S', 103, 5300)), // unrelated
            (104, stat('S', 100, 4000)), // in a group 100 before ours existed: not ours
        ]);
        assert_eq!(survivors(&record, &processes), vec![100, 101]);
        // The leader died by its parent-death signal; its child lives on.
        let mut orphaned = processes.clone();
        orphaned.remove(&100);
        assert_eq!(survivors(&record, &orphaned), vec![101]);
        // Pid 100 now belongs to a process started later: the record is stale.
        let mut reused = processes;
        reused.insert(100, stat('S', 100, 9000));
        assert_eq!(survivors(&record, &reused), Vec::<i32>::new());
    }

    /// A shell leading its own process group; dropped unreaped (a failed
    /// assertion), its whole group is killed, so a failing test leaves
    /// nothing running.
    struct Sleeper(std::process::Child);

    impl std::ops::Deref for Sleeper {
        type Target = std::process::Child;
        fn deref(&self) -> &Self::Target {
            &self.0
        }
    }

    impl std::ops::DerefMut for Sleeper {
        fn deref_mut(&mut self) -> &mut Self::Target {
            &mut self.0
        }
    }

    impl Drop for Sleeper {
        fn drop(&mut self) {
            if matches!(self.0.try_wait(), Ok(None)) {
                let _ = kill(Pid::from_raw(-(self.0.id() as i32)), Signal::SIGKILL);
                let _ = self.0.wait();
            }
        }
    }

    fn sleeper(script: &str) -> Sleeper {
        let mut command = std::process::Command::new("sh");
        command.args(["-c", script]);
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        Sleeper(command.spawn().expect("sh runs"))
    }

    fn record_of(child: &std::process::Child) -> ProcessRecord {
        let pid = child.id() as i32;
        ProcessRecord {
            pid,
            start_time: start_time(pid).expect("running"),
            label: "test/pod/main".into(),
        }
    }

    #[tokio::test]
    async fn a_node_reaps_what_an_earlier_one_left_and_spares_reused_pids() {
        let dir = tempfile::tempdir().unwrap();
        let records = dir.path().join("processes");
        std::fs::create_dir_all(&records).unwrap();
        // Left by a node that crashed: one stops on SIGTERM, one ignores it.
        let mut polite = sleeper("exec sleep 600");
        let mut stubborn = sleeper("trap '' TERM; sleep 600 & wait");
        // The stubborn shell's own child, once it runs (it ignores SIGTERM too).
        let group = stubborn.id() as i32;
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let grandchild = loop {
            if let Some((pid, stat)) = all_processes()
                .into_iter()
                .find(|(pid, p)| p.pgrp == group && *pid != group && p.alive())
            {
                break (pid, stat.start_time);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the shell never started its sleep"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        // Recorded with another start time: its pid was reused since.
        let mut stranger = sleeper("exec sleep 600");
        write_record(&records, &record_of(&polite)).unwrap();
        write_record(&records, &record_of(&stubborn)).unwrap();
        let mut stale = record_of(&stranger);
        stale.start_time -= 1;
        write_record(&records, &stale).unwrap();

        let (table, stopped) = ProcessTable::open(dir.path(), Duration::from_millis(300))
            .await
            .expect("opens");
        let mut labels: Vec<i32> = stopped.iter().map(|r| r.pid).collect();
        labels.sort();
        let mut expected = vec![polite.id() as i32, stubborn.id() as i32];
        expected.sort();
        assert_eq!(labels, expected);
        assert_eq!(
            polite.wait().unwrap().signal(),
            Some(Signal::SIGTERM as i32)
        );
        assert_eq!(
            stubborn.wait().unwrap().signal(),
            Some(Signal::SIGKILL as i32)
        );
        // Not our child, so there is no exit to await: poll /proc for the
        // SIGKILL `open` sent it to take effect.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while is_running(grandchild.0, grandchild.1) {
            assert!(
                std::time::Instant::now() < deadline,
                "the stubborn container's own child outlived the reaping"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            stranger.try_wait().unwrap().is_none(),
            "a reused pid is never signalled"
        );
        // The records are gone with what they described.
        let left: Vec<_> = std::fs::read_dir(&records)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        assert!(left.is_empty(), "{left:?}");
        // A second node on the same state directory is refused while this one lives.
        let again = ProcessTable::open(dir.path(), Duration::from_millis(300)).await;
        assert!(
            matches!(again, Err(ProcessTableError::InUse { .. })),
            "{:?}",
            again.err()
        );
        drop(table);
        assert!(
            ProcessTable::open(dir.path(), Duration::from_millis(300))
                .await
                .is_ok()
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn processes_outlive_the_thread_that_asked_and_die_with_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let (table, _) = ProcessTable::open(dir.path(), Duration::from_millis(300))
            .await
            .expect("opens");
        let table = Arc::new(table);
        // Ask from a thread that ends right after: a process forked by it
        // would get its parent-death signal now.
        let asking = table.clone();
        let runtime = tokio::runtime::Handle::current();
        let mut child = std::thread::spawn(move || {
            runtime.block_on(async move {
                let mut command = tokio::process::Command::new("sleep");
                // Killed if a failed assertion drops it; held, it proves nothing.
                command.arg("600").kill_on_drop(true);
                asking.spawn(command, "test/pod/main").await
            })
        })
        .join()
        .expect("the asking thread ends")
        .expect("sleep starts");
        let pid = child.id().expect("running");
        let record = std::fs::read_to_string(dir.path().join("processes").join(pid.to_string()))
            .expect("the process is recorded");
        assert!(record.ends_with(" test/pod/main\n"), "{record}");
        assert!(
            tokio::time::timeout(Duration::from_millis(500), child.wait())
                .await
                .is_err(),
            "the process lives on after the thread that asked for it ended"
        );
        // The node goes: so does everything it started.
        drop(table);
        let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
            .await
            .expect("the process dies with the table")
            .unwrap();
        assert_eq!(status.signal(), Some(Signal::SIGKILL as i32));
    }
}
