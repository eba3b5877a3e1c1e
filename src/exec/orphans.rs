//! No step process outlives milepost, however milepost ends, and no run starts a step while a
//! copy of it from an earlier run still runs. Three layers, for three ways it can go wrong:
//!
//! - A step's own process (the shell) gets SIGKILL when milepost dies: `PR_SET_PDEATHSIG`,
//!   set in the child before it runs the command. The kernel sends it when the *thread* that
//!   spawned the child ends; steps are spawned on the runtime's one thread, which lives as
//!   long as the process. It does not reach what the shell started.
//! - A **guardian** process, one per run ([`Guard`]): milepost names each running step's
//!   process group to it through a pipe. When milepost is gone, however it ended (`kill -9`
//!   included), the pipe closes, and the guardian stops the groups still named: SIGTERM, then
//!   SIGKILL after [`GRACE`], descendants that ignore SIGTERM included.
//! - Each run's folder lists the groups it started and released (`runs/<id>/running`), so
//!   that a later run, once it holds the lock, stops what survived even the guardian
//!   ([`reap`]), or refuses to start when it cannot.
//!
//! A step that exits on its own is released: what it left behind in its group is not killed
//! (docs/apply.md, "Daemons are allowed"). Never prints.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// The first argument that makes the milepost binary a run's guardian (see [`serve`]).
pub const GUARD_ARG: &str = "__milepost-guard";

/// What a group stopped for good (milepost is gone) gets between SIGTERM and SIGKILL.
pub const GRACE: Duration = Duration::from_secs(1);

/// The file in a run's folder that lists its steps' process groups.
pub const RUNNING_FILE: &str = "running";

/// One run's watch over its steps' process groups: the guardian and the `running` file.
pub struct Guard {
    /// The pipe to the guardian; `None` when it could not be started or has gone.
    guardian: Mutex<Option<std::io::PipeWriter>>,
    record: Mutex<RunningFile>,
}

/// `runs/<id>/running`: `identity` first, then `+<pgid> <start time>` when a step's group
/// starts and `-<pgid>` when it is released. Append-only, created at the first step.
struct RunningFile {
    path: PathBuf,
    file: Option<File>,
}

impl Guard {
    /// Starts the guardian for a run whose folder is `run_dir`. Without a guardian (it could
    /// not be started), the direct children still die with milepost and the `running` file
    /// still lets the next run stop the rest.
    pub fn start(run_dir: &Path) -> Self {
        let record = RunningFile { path: run_dir.join(RUNNING_FILE), file: None };
        Self { guardian: Mutex::new(spawn_guardian().ok()), record: Mutex::new(record) }
    }

    /// A guard with no guardian, for runs of the library in tests.
    pub fn without_guardian(run_dir: &Path) -> Self {
        let record = RunningFile { path: run_dir.join(RUNNING_FILE), file: None };
        Self { guardian: Mutex::new(None), record: Mutex::new(record) }
    }

    /// Whether a guardian watches this run.
    pub fn has_guardian(&self) -> bool {
        self.guardian.lock().is_ok_and(|g| g.is_some())
    }

    /// Names the process group of a step that just started; call at once after the spawn.
    /// Until [`Watched::release`], the group is stopped if milepost goes away.
    pub fn watch(&self, pgid: i32) -> Watched<'_> {
        self.tell(&format!("+{pgid}\n"));
        let started = stat(pgid).map_or(0, |s| s.start_time);
        self.note(&format!("+{pgid} {started}\n"));
        Watched { guard: self, pgid, released: false }
    }

    fn tell(&self, line: &str) {
        let Ok(mut guardian) = self.guardian.lock() else { return };
        // One short write is atomic on a pipe. A guardian that has gone takes no more.
        if guardian.as_mut().is_some_and(|pipe| pipe.write_all(line.as_bytes()).is_err()) {
            *guardian = None;
        }
    }

    fn note(&self, line: &str) {
        let Ok(mut record) = self.record.lock() else { return };
        if record.file.is_none() {
            let opened = File::options().create(true).append(true).open(&record.path);
            let Ok(mut file) = opened else { return };
            let _ = file.write_all(format!("{}\n", identity()).as_bytes());
            record.file = Some(file);
        }
        // Not synced: it matters only while the machine is up, and the page cache outlives a
        // killed process.
        let _ = record.file.as_mut().expect("opened above").write_all(line.as_bytes());
    }
}

/// A step's process group under watch. Dropped without [`Watched::release`] (the step's
/// future was abandoned), the group is killed: nothing else would stop it.
pub struct Watched<'g> {
    guard: &'g Guard,
    pgid: i32,
    released: bool,
}

impl Watched<'_> {
    /// The step ended: its command exited (and its group was stopped, if it had to be).
    pub fn release(mut self) {
        self.released = true;
    }
}

impl Drop for Watched<'_> {
    fn drop(&mut self) {
        if !self.released {
            let _ = killpg(Pid::from_raw(self.pgid), Signal::SIGKILL);
        }
        self.guard.tell(&format!("-{}\n", self.pgid));
        self.guard.note(&format!("-{}\n", self.pgid));
    }
}

/// The guardian: `milepost __milepost-guard`, in a process group of its own (a Ctrl-C at the
/// terminal is milepost's to handle, not its), reading the pipe on its stdin.
fn spawn_guardian() -> std::io::Result<std::io::PipeWriter> {
    use std::os::unix::process::CommandExt;
    let (reader, writer) = std::io::pipe()?;
    // Through /proc, so that a binary replaced or removed during the run still starts.
    std::process::Command::new("/proc/self/exe")
        .arg(GUARD_ARG)
        .stdin(reader)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .current_dir("/")
        .process_group(0)
        .spawn()?;
    // The write end is close-on-exec: steps never hold it, so it closes exactly when
    // milepost's last copy does.
    Ok(writer)
}

/// The guardian's whole life: keep the set of named groups until the pipe closes, then stop
/// what is still named. Returns the exit code.
pub fn serve() -> u8 {
    use nix::sys::signal::{signal, SigHandler};
    // SAFETY: setting a signal to be ignored runs no handler code.
    unsafe {
        let _ = signal(Signal::SIGINT, SigHandler::SigIgn);
        let _ = signal(Signal::SIGHUP, SigHandler::SigIgn);
    }
    // `killall -9 milepost` is aimed at the run, not at what cleans up after it.
    let _ = nix::sys::prctl::set_name(c"milepost-guard");
    let mut groups = BTreeSet::new();
    for line in std::io::stdin().lock().split(b'\n') {
        let Ok(line) = line else { break };
        let text = String::from_utf8_lossy(&line);
        let (sign, number) = text.split_at(text.len().min(1));
        match (sign, number.trim().parse::<i32>()) {
            ("+", Ok(pgid)) if pgid > 1 => {
                groups.insert(pgid);
            }
            ("-", Ok(pgid)) => {
                groups.remove(&pgid);
            }
            _ => {}
        }
    }
    let groups: Vec<i32> = groups.into_iter().collect();
    stop_groups(&groups, GRACE);
    0
}

/// SIGTERM to every group, SIGKILL after `grace` to what is left of them; returns the groups
/// that still have a live process a second after that (blocking).
pub fn stop_groups(groups: &[i32], grace: Duration) -> Vec<i32> {
    for &pgid in groups {
        let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    }
    let alive = wait_until_gone(groups, grace, None);
    // Again until the groups are empty: a member that was forking when the first SIGKILL
    // came may have a child the signal did not reach.
    wait_until_gone(&alive, Duration::from_secs(1), Some(Signal::SIGKILL))
}

/// Polls until no group in `groups` has a live process, at most `within`, sending `signal`
/// to what is left at each poll; returns the groups still alive.
fn wait_until_gone(groups: &[i32], within: Duration, signal: Option<Signal>) -> Vec<i32> {
    let until = Instant::now() + within;
    loop {
        let alive: Vec<i32> = groups.iter().copied().filter(|&g| group_alive(g)).collect();
        if alive.is_empty() || Instant::now() >= until {
            return alive;
        }
        for &pgid in &alive {
            if let Some(signal) = signal {
                let _ = killpg(Pid::from_raw(pgid), signal);
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a process group has a process that still runs. Zombies do not count: nobody may
/// reap them soon (a container whose first process does not), and they run nothing.
pub fn group_alive(pgid: i32) -> bool {
    match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => false,
        _ => processes().any(|p| p.group == pgid && p.runs()),
    }
}

/// What /proc/<pid>/stat says about one process.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stat {
    pid: i32,
    state: char,
    group: i32,
    /// Clock ticks after boot: with the pid, names one process for the life of the machine.
    start_time: u64,
}

impl Stat {
    /// Not a zombie waiting to be reaped, nor dead.
    fn runs(&self) -> bool {
        !matches!(self.state, 'Z' | 'X' | 'x')
    }
}

fn stat(pid: i32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold anything, parentheses included.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        pid,
        state: fields.first()?.chars().next()?,
        group: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

fn processes() -> impl Iterator<Item = Stat> {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(stat)
}

/// This boot and this pid namespace: a recorded group is only looked for where its ids mean
/// the same thing.
fn identity() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let namespace =
        std::fs::read_link("/proc/self/ns/pid").map(|p| p.display().to_string()).unwrap_or_default();
    format!("boot {} {}", boot.trim(), namespace)
}

/// A step's process group of an earlier run that [`reap`] stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    pub run: String,
    pub pgid: i32,
    /// How many of its processes were running.
    pub processes: usize,
}

/// Why a run must not start.
#[derive(Debug, thiserror::Error)]
pub enum ReapError {
    /// A step process of an earlier run survived SIGKILL (a process in uninterruptible sleep,
    /// or owned by another user).
    #[error(
        "a step of run {run} still runs (process group {pgid}) and could not be stopped; \
         stop it (kill -KILL -- -{pgid}), then run again"
    )]
    StillRunning { run: String, pgid: i32 },
}

/// Stops the step processes that earlier runs in `state_dir` left running: every group a
/// `running` file names and does not release, if it still has live processes (SIGTERM, then
/// SIGKILL after [`GRACE`]). Blocking; returns what it stopped. Records from another boot or
/// pid namespace, and groups whose number now belongs to another process, are left alone.
///
/// # Errors
/// [`ReapError::StillRunning`] when a group survives SIGKILL: then no step may start.
///
/// # Caveats
/// Call it only while holding the state directory's lock: a live run's groups are named
/// too, and would be killed.
pub fn reap(state_dir: &Path) -> Result<Vec<Stopped>, ReapError> {
    let me = identity();
    let mut open: Vec<(String, i32, u64)> = Vec::new();
    let runs = std::fs::read_dir(state_dir.join("runs")).into_iter().flatten().flatten();
    for run in runs {
        let Ok(text) = std::fs::read_to_string(run.path().join(RUNNING_FILE)) else { continue };
        let mut lines = text.lines();
        if lines.next() != Some(me.as_str()) {
            continue;
        }
        let mut started: BTreeMap<i32, u64> = BTreeMap::new();
        for line in lines {
            let (sign, rest) = line.split_at(line.len().min(1));
            let mut words = rest.split_whitespace();
            let Some(Ok(pgid)) = words.next().map(str::parse::<i32>) else { continue };
            match sign {
                "+" => {
                    started.insert(pgid, words.next().and_then(|w| w.parse().ok()).unwrap_or(0));
                }
                "-" => {
                    started.remove(&pgid);
                }
                _ => {}
            }
        }
        let name = run.file_name().to_string_lossy().into_owned();
        open.extend(started.into_iter().map(|(pgid, start)| (name.clone(), pgid, start)));
    }
    if open.is_empty() {
        return Ok(Vec::new());
    }
    let all: Vec<Stat> = processes().collect();
    let mut found = Vec::new();
    for (run, pgid, start) in open.iter().cloned() {
        // The leader's number is reused only once its group is gone: a leader that started at
        // another time means the recorded group has ended.
        // Unknown start time: nothing tells the group from another that took its number.
        if all.iter().any(|p| p.pid == pgid && p.start_time != start) || pgid <= 1 || start == 0 {
            continue;
        }
        let processes = all.iter().filter(|p| p.group == pgid && p.runs() && p.start_time >= start).count();
        if processes > 0 {
            found.push(Stopped { run, pgid, processes });
        }
    }
    let groups: Vec<i32> = found.iter().map(|s| s.pgid).collect();
    if let Some(&pgid) = stop_groups(&groups, GRACE).first() {
        let run = found.iter().find(|s| s.pgid == pgid).map(|s| s.run.clone()).unwrap_or_default();
        return Err(ReapError::StillRunning { run, pgid });
    }
    // Every group looked at is over now: closed in its run's record, so a later run never
    // takes a process that reuses the number for it.
    for (run, pgid, _) in &open {
        let path = state_dir.join("runs").join(run).join(RUNNING_FILE);
        if let Ok(mut file) = std::fs::OpenOptions::new().append(true).open(path) {
            let _ = std::io::Write::write_all(&mut file, format!("-{pgid}\n").as_bytes());
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_reads_a_name_with_parentheses_and_spaces() {
        let me = stat(std::process::id() as i32).unwrap();
        assert_eq!(me.pid, std::process::id() as i32);
        assert_eq!(me.group, nix::unistd::getpgrp().as_raw());
        assert!(me.start_time > 0);
    }

    #[test]
    fn an_empty_or_missing_state_directory_has_nothing_to_reap() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(reap(&dir.path().join("nowhere")).unwrap(), Vec::new());
        assert_eq!(reap(dir.path()).unwrap(), Vec::new());
    }
}
