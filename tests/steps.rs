//! What becomes of a step's processes and output under pressure (issue 12): milepost killed
//! with `kill -9`, descendants that ignore SIGTERM, a closed or full stderr, huge lines, a
//! log that cannot be written, bytes that are not UTF-8, ids that sanitize alike, secrets
//! that span lines.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use milepost::exec::orphans;

use crate::support::{milepost, Fixture};

impl Fixture {
    /// `milepost apply` with stderr going to `stderr`; returns its exit code.
    fn apply_with_stderr(&self, stderr: impl Into<Stdio>, extra: &[&str]) -> Option<i32> {
        std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
            .arg("apply")
            .arg(self.path("w.kdl"))
            .args(extra)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(stderr)
            .status()
            .unwrap()
            .code()
    }

    /// The only run's folder.
    fn run_dir(&self) -> PathBuf {
        let runs: Vec<PathBuf> = std::fs::read_dir(crate::support::rollout_dir(&self.path(".")).join("runs"))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        runs[0].clone()
    }

    fn journal(&self) -> String {
        std::fs::read_to_string(self.run_dir().join("journal.jsonl")).unwrap()
    }

    fn logs(&self) -> Vec<(String, Vec<u8>)> {
        let mut logs: Vec<(String, Vec<u8>)> = std::fs::read_dir(self.run_dir().join("logs"))
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                (e.file_name().to_string_lossy().into_owned(), std::fs::read(e.path()).unwrap_or_default())
            })
            .collect();
        logs.sort();
        logs
    }
}

fn stderr_of(out: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&out.get_output().stderr).into_owned()
}

fn alive(pid: i32) -> bool {
    // Zombies count as gone: they no longer run.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !status.is_empty() && !status.contains("State:\tZ")
}

/// Waits for a file a step writes its pid to, and reads it.
fn pid_in(path: &Path) -> i32 {
    for _ in 0..400 {
        if let Ok(text) = std::fs::read_to_string(path) {
            if text.ends_with('\n') {
                return text.trim().parse().unwrap();
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{} was never written", path.display());
}

/// Polls until none of `pids` runs, at most `within`; returns those still running.
fn still_running(pids: &[i32], within: Duration) -> Vec<i32> {
    let until = Instant::now() + within;
    loop {
        let left: Vec<i32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || Instant::now() > until {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn kill(pids: &[i32]) {
    for &pid in pids {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
}

/// Issue 12, item 5: after `kill -9` of milepost, the running step (its shell, a child, and a
/// grandchild that ignores SIGTERM) kept running.
#[test]
fn issue_12_kill_9_of_milepost_leaves_no_step_process() {
    let f = Fixture::new(
        r#"workflow w {}
module m { budget "1m"; install { run hang "echo $$ > leader.pid; sh -c 'trap \"\" TERM; echo $$ > stubborn.pid; exec sleep 30' & sleep 30 & echo $! > sleeper.pid; wait" } }"#,
    );
    let mut apply = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
        .arg("apply")
        .arg(f.path("w.kdl"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pids =
        [pid_in(&f.path("leader.pid")), pid_in(&f.path("stubborn.pid")), pid_in(&f.path("sleeper.pid"))];
    assert!(pids.iter().all(|&p| alive(p)));
    apply.kill().unwrap();
    apply.wait().unwrap();
    let left = still_running(&pids, Duration::from_secs(3));
    kill(&left);
    assert!(left.is_empty(), "still running 3 s after milepost was killed: {left:?}");
    // And the next run would know which group to look for.
    let running = std::fs::read_to_string(f.run_dir().join(orphans::RUNNING_FILE)).unwrap();
    assert!(running.contains(&format!("+{} ", pids[0])), "{running}");
}

/// Issue 12, item 5, when the guardian is gone too: the next run stops what an earlier run
/// left running before it starts anything, and leaves alone a group whose number was reused.
#[test]
fn issue_12_reap_stops_what_an_earlier_run_left_running() {
    let state = tempfile::tempdir().unwrap();
    let run_dir = state.path().join("runs/20260101T000000000Z-1");
    std::fs::create_dir_all(&run_dir).unwrap();
    let spawn_stubborn = || {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("sh")
            .args(["-c", "trap '' TERM; sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .unwrap()
    };
    let mut left_behind = spawn_stubborn();
    let pgid = left_behind.id() as i32;
    let guard = orphans::Guard::without_guardian(&run_dir);
    // milepost killed before it released the step.
    std::mem::forget(guard.watch(pgid));
    // Until the shell has started its child.
    std::thread::sleep(Duration::from_millis(200));

    let stopped = orphans::reap(state.path()).unwrap();
    assert_eq!(stopped.len(), 1, "{stopped:?}");
    assert_eq!((stopped[0].pgid, stopped[0].run.as_str()), (pgid, "20260101T000000000Z-1"));
    assert_eq!(stopped[0].processes, 2);
    left_behind.wait().unwrap();
    assert!(!orphans::group_alive(pgid));
    assert_eq!(orphans::reap(state.path()).unwrap(), Vec::new());
    // Closed in the record: a later process that reuses the number is never taken for it.
    let record = std::fs::read_to_string(run_dir.join(orphans::RUNNING_FILE)).unwrap();
    assert!(record.lines().any(|l| l == format!("-{pgid}")), "{record}");

    // Another process now has the recorded number (faked: the recorded start time differs).
    let mut other = spawn_stubborn();
    let other_pgid = other.id() as i32;
    let other_dir = state.path().join("runs/20260101T000000001Z-2");
    std::fs::create_dir_all(&other_dir).unwrap();
    std::mem::forget(orphans::Guard::without_guardian(&other_dir).watch(other_pgid));
    let file = other_dir.join(orphans::RUNNING_FILE);
    let text = std::fs::read_to_string(&file).unwrap();
    let line = text.lines().nth(1).unwrap();
    let start: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    std::fs::write(&file, text.replace(line, &format!("+{other_pgid} {}", start - 1))).unwrap();
    assert_eq!(orphans::reap(state.path()).unwrap(), Vec::new());
    assert!(orphans::group_alive(other_pgid));
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(other_pgid), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    other.wait().unwrap();
}

/// Issue 12, item 6: a timeout stopped the shell, but a child that ignores SIGTERM lived on.
#[test]
fn issue_12_a_timeout_kills_descendants_that_ignore_sigterm() {
    let f = Fixture::new(
        r#"workflow w {}
module slow { budget "1m"; install { run hang "sh -c 'trap \"\" TERM; echo $$ > stubborn.pid; exec sleep 30' & wait" timeout="1s" } }"#,
    );
    let out = f.apply(&[]).code(1);
    assert!(stderr_of(&out).contains("timed out after 1s"), "{}", stderr_of(&out));
    let stubborn = pid_in(&f.path("stubborn.pid"));
    let left = still_running(&[stubborn], Duration::from_millis(500));
    kill(&left);
    assert!(left.is_empty(), "the child that ignores SIGTERM outlived the timeout");
}

/// Issue 12, item 8: `apply 2>/dev/full` and `apply 2>&1 | head -1` panicked (exit 101)
/// after the run had ended and been recorded.
#[test]
fn issue_12_a_closed_or_full_stderr_is_not_a_crash() {
    let f = Fixture::new(
        r#"workflow w {}
module good { budget "1m"; install { run ok "echo fine" } }
module bad { budget "1m"; install { run fails "echo one; echo two; exit 3" } }"#,
    );
    let full = || std::fs::File::options().write(true).open("/dev/full").unwrap();
    let closed = || {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        writer
    };
    assert_eq!(f.apply_with_stderr(full(), &["--only", "good"]), Some(0));
    assert_eq!(f.apply_with_stderr(full(), &[]), Some(1));
    assert_eq!(f.apply_with_stderr(closed(), &[]), Some(1));
    assert_eq!(f.apply_with_stderr(full(), &["--log-format", "json"]), Some(1));
    assert_eq!(f.apply_with_stderr(closed(), &["--progress", "bars"]), Some(1));
    let runs = std::fs::read_dir(crate::support::rollout_dir(&f.path(".")).join("runs")).unwrap();
    for run in runs {
        let journal = std::fs::read_to_string(run.unwrap().path().join("journal.jsonl")).unwrap();
        assert!(journal.lines().last().unwrap().contains(r#""type":"run-end""#), "{journal}");
    }
}

/// Issue 12, item 9: one 50 MB line became a 50 MB journal record (a validation's evidence)
/// and a 50 MB failure tail. The log keeps it whole; what is read back is cut, and says so.
/// A secret around the cut stays masked.
#[test]
fn issue_12_a_huge_line_is_cut_where_it_is_read_back() {
    let f = Fixture::new(
        r#"workflow w { secret key env="MILEPOST_TEST_CUT_SECRET" }
module m { budget "1m"
    validate { run huge "head -c 4090 /dev/zero | tr '\\0' a; printf %s \"$MILEPOST_TEST_CUT_SECRET\"; head -c 5000000 /dev/zero | tr '\\0' b; echo; exit 1" timeout="1s" interval="5s" }
}"#,
    );
    let secret = "s3cr3t-across-the-cut";
    let out = milepost()
        .arg("apply")
        .arg(f.path("w.kdl"))
        .env("MILEPOST_TEST_CUT_SECRET", secret)
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    let journal = f.journal();
    assert!(stderr.len() < 40_000, "stderr has {} bytes", stderr.len());
    assert!(journal.len() < 40_000, "the journal has {} bytes", journal.len());
    let cut = format!("… (cut {} bytes)", 4090 + 3 + 5_000_000 - 4096);
    assert!(stderr.contains(&cut), "{}", &stderr[stderr.len().saturating_sub(600)..]);
    assert!(journal.contains(&cut), "{journal}");
    let (_, log) = &f.logs()[0];
    assert!(log.len() > 5_000_000, "the log keeps the whole line");
    for text in [&stderr, &journal, &String::from_utf8_lossy(log).into_owned()] {
        assert!(!text.contains("s3cr"), "part of the secret leaked");
    }
}

/// Issue 12, item 10: a log on a full disk killed the step through a closed pipe (status
/// 141), unexplained; a quiet step passed and its output was silently lost.
#[test]
fn issue_12_a_log_that_cannot_be_written_does_not_kill_the_step() {
    // Each node's first step points its second step's log at /dev/full (writes: ENOSPC).
    let link = |name: &str| format!("for d in .milepost/*/*/runs/*/logs; do ln -s /dev/full $d/{name}; done");
    let f = Fixture::new(&format!(
        r#"workflow w {{}}
module noisy {{ budget "1m"; install {{ run link "{}"; run spew "head -c 300000 /dev/zero" }} }}
module quiet {{ budget "1m"; after noisy; install {{ run link "{}"; run fails "sh -c 'echo hi; exit 3'" }} }}"#,
        link("noisy.02-spew.log"),
        link("quiet.02-fails.log")
    ));
    let out = f.apply(&[]).code(1);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("✓ noisy passed"), "{stderr}");
    assert!(
        stderr.contains("noisy › spew: log not written: No space left on device (os error 28) (300000 bytes of output lost)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("quiet › fails: exited with status 3; log not written: No space left on device"),
        "{stderr}"
    );
}

/// Issue 12, item 11: one byte that is not UTF-8 hid a step's whole log tail and its evidence.
#[test]
fn issue_12_a_byte_that_is_not_utf8_hides_nothing() {
    let f = Fixture::new(
        r#"workflow w {}
module m { budget "1m"; validate { run check "printf 'before\\n\\377 bad byte\\nlast words\\n'; exit 1" timeout="1s" interval="5s" } }"#,
    );
    let out = f.apply(&[]).code(1);
    let stderr = stderr_of(&out);
    assert!(stderr.contains("│ before\n"), "{stderr}");
    assert!(stderr.contains("│ \u{FFFD} bad byte\n"), "{stderr}");
    assert!(f.journal().contains(r#""evidence":"$ printf"#), "{}", f.journal());
    assert!(
        f.journal().contains(r#"\ufffd bad byte\nlast words"#)
            || f.journal().contains("� bad byte\\nlast words")
    );
}

/// Issue 12, item 12: `a/b` and `a_b` (and ids beyond ASCII) wrote to one log file.
#[test]
fn issue_12_ids_that_sanitize_alike_keep_their_own_logs() {
    let f = Fixture::new(
        r#"workflow w {}
module "a/b" { budget "1m"; install { run s "echo from-a-slash-b" } }
module a_b { budget "1m"; install { run s "echo from-a-underscore-b" } }
module "a.b" { budget "1m"; install { run s "echo from-a-dot-b" } }"#,
    );
    f.apply(&[]).success();
    let logs = f.logs();
    assert_eq!(logs.len(), 3, "{:?}", logs.iter().map(|l| &l.0).collect::<Vec<_>>());
    for (name, text) in logs {
        assert_eq!(String::from_utf8(text).unwrap().lines().count(), 2, "{name} holds one step's output");
    }
}

/// Issue 12, item 18: masking went line by line, so a value with a newline (a PEM key) was
/// written whole to the log, the journal's failure reason and the terminal.
#[test]
fn issue_12_a_multiline_secret_reaches_no_log_journal_or_terminal() {
    let f = Fixture::new(
        r#"workflow w { secret key env="MILEPOST_TEST_PEM" }
module m { budget "1m"; install { run show "printf 'key:\\n%s\\n' \"$MILEPOST_TEST_PEM\"; exit 1" } }"#,
    );
    let pem = "-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA7\nqZ9xbodyline2\n-----END KEY-----";
    let out = milepost()
        .arg("apply")
        .arg(f.path("w.kdl"))
        .env("MILEPOST_TEST_PEM", pem)
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    let stderr = stderr_of(&out);
    let (_, log) = &f.logs()[0];
    let log = String::from_utf8_lossy(log).into_owned();
    assert!(log.ends_with("key:\n***\n"), "{log}");
    for text in [&stderr, &f.journal(), &log] {
        for line in pem.lines() {
            assert!(!text.contains(line), "{line:?} leaked: {text}");
        }
    }
}

/// The children of `parent` named `name` (as /proc/<pid>/stat gives it).
fn children_named(parent: u32, name: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let ppid = stat[close + 1..].split_whitespace().nth(1).and_then(|p| p.parse::<u32>().ok());
        if &stat[open + 1..close] == name && ppid == Some(parent) {
            found.push(pid);
        }
    }
    found
}

/// Issue 12, item 5, end to end: milepost and its guardian both killed, the step's child
/// lives on; the next run stops it before it runs the step again.
#[test]
fn issue_12_resume_stops_an_earlier_copy_before_running_the_step() {
    let f = Fixture::new(
        r#"workflow w {}
module m { budget "1m"; install { run hang "echo run >> ledger; test -e second && exit 0; sleep 30 & echo $! > sleeper.pid; wait" } }"#,
    );
    let mut apply = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
        .arg("apply")
        .arg(f.path("w.kdl"))
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeper = pid_in(&f.path("sleeper.pid"));
    let guardians = children_named(apply.id(), "milepost-guard");
    assert_eq!(guardians.len(), 1);
    kill(&guardians);
    apply.kill().unwrap();
    apply.wait().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    assert!(alive(sleeper), "nothing but the next run stops it");
    std::fs::write(f.path("second"), "").unwrap();
    milepost().arg("resume").arg(f.path("w.kdl")).timeout(Duration::from_secs(60)).assert().success();
    let left = still_running(&[sleeper], Duration::from_millis(100));
    kill(&left);
    assert!(left.is_empty(), "the resume ran beside the earlier copy");
}

/// Review of issue 12: with a secret declared, the last bytes the masker holds back reach
/// the log even when a daemon the step left holds the pipe, so the reason names the error.
#[test]
fn the_last_output_survives_a_daemon_holding_the_pipe_with_a_secret_declared() {
    let f = Fixture::new(
        r#"workflow d { parallelism 1; secret tok env="MILEPOST_REVIEW_TOK" }
module a { budget "5m"; install { run s1 "echo starting; echo 'fatal: port 8080 already in use'; (sleep 5 &) ; exit 1" } }"#,
    );
    let out = milepost()
        .arg("apply")
        .arg(f.path("w.kdl"))
        .env("MILEPOST_REVIEW_TOK", "abcdefghij-a-secret-longer-than-the-last-line-of-output-by-far")
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    let err = stderr_of(&out);
    assert!(err.contains("exited with status 1: fatal: port 8080 already in use"), "{err}");
}

/// Review of issue 12: a failed attempt's leftovers in its process group are stopped before
/// the retry, so two copies of the step never run at once.
#[test]
fn a_retry_never_runs_beside_what_the_failed_attempt_left() {
    let f = Fixture::new(
        r#"workflow rt { parallelism 1 }
module a { budget "1m"; install { run s1 "echo attempt >> ledger; (echo worker-start >> ledger; sleep 3; echo worker-end >> ledger) & sleep 0.2; exit 1" retries=1 backoff="1s" } }"#,
    );
    f.apply(&[]).code(1);
    std::thread::sleep(Duration::from_millis(3500));
    let ledger = std::fs::read_to_string(f.path("ledger")).unwrap();
    assert!(!ledger.contains("worker-end"), "a failed attempt's worker ran on: {ledger}");
    assert_eq!(ledger.matches("attempt").count(), 2, "{ledger}");
}

/// Review of issue 12: escape sequences in a step's output reach no terminal, report or
/// journal as such.
#[test]
fn escape_sequences_in_output_are_shown_escaped() {
    let f = Fixture::new(
        r#"workflow e {}
module a { budget "5m"; install { run s1 "printf 'ok\\n\\033]0;PWNED\\007\\033[2Jfake: rollout complete\\n'; exit 1" } }"#,
    );
    let out = f.apply(&[]).code(1);
    let err = stderr_of(&out);
    assert!(!err.contains('\u{1b}') && !err.contains('\u{7}'), "{err:?}");
    assert!(err.contains("\\x1b]0;PWNED\\x07\\x1b[2Jfake: rollout complete"), "{err}");
}
