//! One step attempt: a command in its own process group, an HTTP or TCP probe, a template
//! written atomically. Returns an [`Outcome`]; `Err` is reserved for milepost's own failures
//! (cannot create the pipe for a command's output). A log that cannot be written is not one:
//! the outcome says so.

use std::fs::File;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::events::Outcome;
pub use super::log::log_tail;
use super::log::{copy_output, last_output_line, LazyLog};
use crate::spec::{Step, StepKind};

/// What a step needs beside its definition.
pub struct StepContext<'a> {
    pub shell: &'a [String],
    pub log: &'a Path,
    /// Secret values to mask in what the command prints; empty when there are none.
    pub secrets: &'a [String],
    /// Becomes true when running children must be terminated.
    pub cancel: watch::Receiver<bool>,
    /// For `apply` and `wait`; preflight connected it.
    pub cluster: Option<&'a crate::cluster::Cluster>,
    /// Stops the step's process group if milepost goes away; `None` in library tests.
    pub guard: Option<&'a super::orphans::Guard>,
    /// What went wrong beside a step that passed (its log could not be written), for the
    /// node to report.
    pub warnings: Vec<String>,
    /// The node's id: `apply` steps name their field manager after node and step.
    pub node: &'a str,
}

/// Grace between SIGTERM and SIGKILL for a process group being stopped.
const KILL_GRACE: Duration = Duration::from_secs(2);

/// Runs a command once under `limit`. The child and everything it starts share a new process
/// group, so a timeout or cancel kills them all.
pub async fn run_command(
    step: &Step,
    cx: &mut StepContext<'_>,
    limit: Option<Duration>,
) -> std::io::Result<Outcome> {
    let StepKind::Run { command, shell, cwd, env } = &step.kind else {
        unreachable!("run_command is only called for run steps")
    };
    let shell = shell.as_deref().unwrap_or(cx.shell);
    // The log is created when the command first writes: a thousand silent steps would cost a
    // thousand inode allocations, which on ext4 took longer than the commands themselves.
    // A plain `program arg …` runs without a shell, as make does: same result, one fork less.
    let mut cmd = match simple_words(&command.exec, shell) {
        Some(words) => {
            let mut cmd = tokio::process::Command::new(&words[0]);
            cmd.args(&words[1..]);
            cmd
        }
        None => {
            let mut cmd = tokio::process::Command::new(&shell[0]);
            cmd.args(&shell[1..]).arg(&command.exec);
            cmd
        }
    };
    // stdout and stderr share one pipe, so the log keeps the order the command wrote in.
    let (reader, writer) = std::io::pipe()?;
    cmd.current_dir(cwd).stdin(dev_null()?).process_group(0).kill_on_drop(true);
    cmd.stdout(Stdio::from(writer.try_clone()?)).stderr(Stdio::from(writer));
    for (k, v) in env {
        cmd.env(k, &v.exec);
    }
    let parent = std::process::id();
    // SAFETY: `die_with_milepost` makes only async-signal-safe calls (prctl, getppid) and
    // allocates nothing.
    unsafe {
        cmd.pre_exec(move || die_with_milepost(parent));
    }
    let spawned = cmd.spawn();
    // Our copies of the write end close here, so the copy below ends when the command's do.
    drop(cmd);
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            let reason = format!("cannot start `{}`: {e}", shell.join(" "));
            return Ok(Outcome::Failed { reason });
        }
    };
    let pid = child.id().map(|p| p as i32);
    let watched = match (cx.guard, pid) {
        (Some(guard), Some(pid)) => Some(guard.watch(pid)),
        _ => None,
    };
    let output = tokio::net::unix::pipe::Receiver::from_owned_fd(std::os::fd::OwnedFd::from(reader))?;
    let log = LazyLog::new(cx.log, &command.shown);
    let log_state = log.state();
    let (stop_copy, copy_stopped) = watch::channel(false);
    let mut copy =
        tokio::spawn(copy_output(output, log, std::sync::Arc::new(cx.secrets.to_vec()), copy_stopped));
    let deadline = limit.map(|l| tokio::time::Instant::now() + l);
    let sleep = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(sleep);
    let mut cancel = cx.cancel.clone();
    let outcome = tokio::select! {
        status = child.wait() => {
            let status = status?;
            if status.success() {
                Outcome::Passed
            } else {
                let reason = match status.code() {
                    Some(code) => format!("exited with status {code}"),
                    None => "killed by a signal".to_string(),
                };
                Outcome::Failed { reason }
            }
        }
        _ = &mut sleep => {
            stop_group(pid, &mut child).await;
            Outcome::TimedOut { reason: format!("timed out after {}", crate::spec::values::human(limit.unwrap_or_default())) }
        }
        _ = wait_cancelled(&mut cancel) => {
            stop_group(pid, &mut child).await;
            Outcome::Cancelled { reason: "terminated by the operator".into() }
        }
    };
    // A command that passes may leave a daemon behind on purpose (`setsid svc &`, or in its
    // own group). One that failed may not: what it left in its group is stopped, so a retry
    // or a resume never runs beside it.
    if matches!(outcome, Outcome::Failed { .. }) {
        stop_group(pid, &mut child).await;
    }
    if let Some(watched) = watched {
        watched.release();
    }
    if tokio::time::timeout(Duration::from_secs(1), &mut copy).await.is_err() {
        // A daemon it left behind holds the pipe; what it prints from now on is not the step's.
        let _ = stop_copy.send(true);
        if tokio::time::timeout(Duration::from_secs(1), &mut copy).await.is_err() {
            copy.abort();
        }
    }
    let attempt_starts = log_state.opened_at.get().copied();
    // Read only now, when all of the attempt's output (masked or not) is in the log.
    let outcome = match (outcome, attempt_starts) {
        (Outcome::Failed { reason }, Some(from)) => match last_output_line(cx.log, from) {
            Some(line) => Outcome::Failed { reason: format!("{reason}: {line}") },
            None => Outcome::Failed { reason },
        },
        (other, _) => other,
    };
    let mut problem = log_state.problem();
    if attempt_starts.is_none() && !outcome.passed() {
        // A failure always has a log to point at, even when the command said nothing.
        let mut log = LazyLog::new(cx.log, &command.shown);
        log.keep(b"(no output)\n");
        problem = problem.or_else(|| log.state().problem());
    }
    // The log is milepost's to write: failing to write it does not change the command's
    // outcome, and is said where the outcome is.
    Ok(match problem {
        None => outcome,
        Some(problem) if outcome.passed() => {
            cx.warnings.push(problem);
            outcome
        }
        Some(problem) => outcome.map_reason(|reason| format!("{reason}; {problem}")),
    })
}

/// In the child, before it runs the command: SIGKILL when milepost's spawning thread (the
/// runtime's only one) ends, and no start at all if milepost ended before that took effect.
fn die_with_milepost(parent: u32) -> std::io::Result<()> {
    nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL).map_err(std::io::Error::from)?;
    if nix::unistd::getppid().as_raw() as u32 != parent {
        return Err(std::io::Error::from_raw_os_error(nix::libc::ESRCH));
    }
    Ok(())
}

/// Stdin for every command: one /dev/null opened once, handed out as duplicates.
fn dev_null() -> std::io::Result<Stdio> {
    static DEV_NULL: std::sync::OnceLock<File> = std::sync::OnceLock::new();
    let file = match DEV_NULL.get() {
        Some(file) => file,
        None => {
            let file = File::open("/dev/null")?;
            DEV_NULL.get_or_init(|| file)
        }
    };
    Ok(Stdio::from(file.try_clone()?))
}

/// The words of a command that needs no shell: no quoting, expansion, redirection,
/// operators or builtins, run by the default `sh -c`, its program found on PATH.
fn simple_words(command: &str, shell: &[String]) -> Option<Vec<String>> {
    const SPECIAL: &[char] = &[
        '$', '`', '"', '\'', '\\', '|', '&', ';', '<', '>', '(', ')', '{', '}', '*', '?', '[', ']', '~', '#',
        '=', '%', '\n', '!',
    ];
    if shell != ["sh", "-c"] || command.contains(SPECIAL) {
        return None;
    }
    let mut words: Vec<String> = command.split_whitespace().map(String::from).collect();
    let program = words.first()?;
    if program.contains('/') {
        return None;
    }
    words[0] = on_path(program)?;
    Some(words)
}

/// Where PATH finds `program`, looked up once per run: a thousand steps running the same
/// program would otherwise stat every PATH folder a thousand times. Only hits are kept; a
/// program a step installs later is found then (and a miss runs through the shell anyway).
fn on_path(program: &str) -> Option<String> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static FOUND: OnceLock<Mutex<HashMap<String, String>>> = OnceLock::new();
    let found = FOUND.get_or_init(Default::default);
    if let Some(path) = found.lock().ok()?.get(program) {
        return Some(path.clone());
    }
    let path_var = std::env::var_os("PATH")?;
    let path = super::preflight::resolve(program, Path::new("."), &path_var)?;
    let path = path.to_string_lossy().into_owned();
    found.lock().ok()?.insert(program.to_string(), path.clone());
    Some(path)
}

/// SIGTERM to the group; after the grace, SIGKILL to whatever of it is left, whether or not
/// the command itself has exited: a descendant that ignores SIGTERM outlives its shell.
async fn stop_group(pid: Option<i32>, child: &mut tokio::process::Child) {
    use nix::sys::signal::{killpg, Signal};

    use super::orphans::group_alive;
    let Some(pid) = pid else { return };
    let group = nix::unistd::Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    let until = tokio::time::Instant::now() + KILL_GRACE;
    // The command first (which reaps it), then the rest of its group.
    let exited = tokio::time::timeout_at(until, child.wait()).await.is_ok();
    while group_alive(pid) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if !exited || group_alive(pid) {
        let _ = killpg(group, Signal::SIGKILL);
    }
    let _ = child.wait().await;
    // Again until the group is empty: a member that was forking when the first SIGKILL came
    // may have a child the signal did not reach.
    let until = tokio::time::Instant::now() + Duration::from_secs(1);
    while group_alive(pid) && tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let _ = killpg(group, Signal::SIGKILL);
    }
}

pub async fn wait_cancelled(cancel: &mut watch::Receiver<bool>) {
    while !*cancel.borrow() {
        if cancel.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// One HTTP request; passes when the status matches and, if asked, the body contains text.
pub async fn http_once(step: &Step, limit: Duration) -> Outcome {
    let StepKind::Http { method, url, expect, body } = &step.kind else {
        unreachable!("http_once is only called for http steps")
    };
    let (method, url_exec, url_shown, expect) =
        (method.clone(), url.exec.clone(), url.shown.clone(), *expect);
    let needle = body.as_ref().map(|b| (b.exec.clone(), b.shown.clone()));
    let wants_body = needle.is_some();
    let shown_for_errors = url_shown.clone();
    let result = tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(limit.max(Duration::from_millis(100))))
            .http_status_as_error(false)
            .build()
            .into();
        let request = ureq::http::Request::builder()
            .method(method.as_str())
            .uri(&url_exec)
            .body(Vec::<u8>::new())
            .map_err(|e| format!("bad request: {e}"))?;
        let mut response =
            agent.run(request).map_err(|e| e.to_string().replace(&url_exec, &shown_for_errors))?;
        let status = response.status().as_u16();
        let text =
            if wants_body { response.body_mut().read_to_string().unwrap_or_default() } else { String::new() };
        Ok::<_, String>((status, text))
    })
    .await;
    match result {
        Err(e) => Outcome::Failed { reason: format!("probe task failed: {e}") },
        Ok(Err(reason)) => Outcome::Failed { reason: format!("{} {url_shown}: {reason}", step_method(step)) },
        Ok(Ok((status, _))) if status != expect => {
            Outcome::Failed { reason: format!("{url_shown} answered {status}, expected {expect}") }
        }
        Ok(Ok((_, text))) => match needle {
            Some((exec, shown)) if !text.contains(&exec) => {
                Outcome::Failed { reason: format!("{url_shown} answered without \"{shown}\" in its body") }
            }
            _ => Outcome::Passed,
        },
    }
}

fn step_method(step: &Step) -> &str {
    match &step.kind {
        StepKind::Http { method, .. } => method,
        _ => "",
    }
}

/// One TCP connect.
pub async fn tcp_once(step: &Step, limit: Duration) -> Outcome {
    let StepKind::Tcp { address } = &step.kind else { unreachable!("tcp_once is only called for tcp steps") };
    match tokio::time::timeout(limit, tokio::net::TcpStream::connect(&address.exec)).await {
        Ok(Ok(_)) => Outcome::Passed,
        Ok(Err(e)) => Outcome::Failed { reason: format!("connect {}: {e}", address.shown) },
        Err(_) => {
            Outcome::Failed { reason: format!("connect {}: no answer within {:?}", address.shown, limit) }
        }
    }
}

/// Writes the rendered template next to its destination, then renames it into place, so a
/// reader never sees half a file.
pub fn write_template(step: &Step) -> Outcome {
    let StepKind::Template { dest, content, .. } = &step.kind else {
        unreachable!("write_template is only called for template steps")
    };
    let result = crate::files::write_atomically(dest, content.exec.as_bytes());
    match result {
        Ok(()) => Outcome::Passed,
        Err(e) => Outcome::Failed { reason: format!("cannot write {}: {e}", dest.display()) },
    }
}

/// Remaining time before `deadline`, at least a millisecond.
pub fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))
}
