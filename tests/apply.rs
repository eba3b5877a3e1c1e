//! `milepost apply` on small workflows in temp dirs: order, parallelism, failure handling,
//! timeouts, retries, probes, signals, output. Timing is read from what the steps record,
//! never asserted against the wall clock.

use std::time::Duration;

use crate::support::{milepost, milepost_without_cluster, Fixture};

impl Fixture {
    /// `(event, node, seconds)` lines the steps appended to `ledger`.
    fn ledger(&self) -> Vec<(String, String, f64)> {
        let text = std::fs::read_to_string(self.path("ledger")).unwrap_or_default();
        text.lines()
            .map(|l| {
                let parts: Vec<&str> = l.split_whitespace().collect();
                (parts[0].to_string(), parts[1].to_string(), parts[2].parse().unwrap())
            })
            .collect()
    }

    fn span(&self, node: &str) -> (f64, f64) {
        let ledger = self.ledger();
        let at = |event: &str| ledger.iter().find(|(e, n, _)| e == event && n == node).map(|x| x.2);
        (
            at("start").unwrap_or_else(|| panic!("{node} never started")),
            at("end").unwrap_or_else(|| panic!("{node} never ended")),
        )
    }
}

/// A module that records its start and end around a short sleep.
fn timed(id: &str, after: &str, extra: &str) -> String {
    let after = if after.is_empty() { String::new() } else { format!("after {after}") };
    format!(
        r#"module {id} {{ budget "1m"; {after} {extra}
    install {{ run work "echo start {id} $(date +%s.%N) >> ledger; sleep 0.4; echo end {id} $(date +%s.%N) >> ledger" }} }}
"#
    )
}

fn overlap(a: (f64, f64), b: (f64, f64)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn order_follows_the_dag_and_independent_nodes_overlap() {
    let text = format!(
        "workflow w {{ parallelism 2 }}\n{}{}{}{}",
        timed("root", "", ""),
        timed("left", "root", ""),
        timed("right", "root", ""),
        timed("join", "left right", "")
    );
    let f = Fixture::new(&text);
    f.apply(&["--state-dir", f.path("state").to_str().unwrap()]).success();
    let (root, left, right, join) = (f.span("root"), f.span("left"), f.span("right"), f.span("join"));
    assert!(left.0 >= root.1 && right.0 >= root.1, "children start after root ends");
    assert!(join.0 >= left.1 && join.0 >= right.1, "join starts after both");
    assert!(overlap(left, right), "left and right run at the same time: {left:?} {right:?}");
}

#[test]
fn parallelism_one_never_overlaps() {
    let text = format!(
        "workflow w {{ parallelism 1 }}\n{}{}{}",
        timed("a", "", ""),
        timed("b", "", ""),
        timed("c", "", "")
    );
    let f = Fixture::new(&text);
    f.apply(&[]).success();
    let spans = [f.span("a"), f.span("b"), f.span("c")];
    for i in 0..3 {
        for j in i + 1..3 {
            assert!(!overlap(spans[i], spans[j]), "{i} and {j} overlapped");
        }
    }
}

#[test]
fn resource_limits_serialize_their_users() {
    let text = format!(
        "workflow w {{ parallelism 4; resource api limit=1 }}\n{}{}",
        timed("a", "", "uses api;"),
        timed("b", "", "uses api;")
    );
    let f = Fixture::new(&text);
    f.apply(&[]).success();
    assert!(!overlap(f.span("a"), f.span("b")));
}

const FAILING: &str = r#"workflow w { parallelism 1 }
module bad { budget "1m"; install { run boom "echo about to fail; echo the real reason >&2; exit 3" } }
module later { budget "1m"; install { run work "echo start later 0 >> ledger" } }
module child { budget "1m"; after bad; install { run work "echo start child 0 >> ledger" } }
"#;

#[test]
fn fail_fast_starts_nothing_new_and_shows_the_log() {
    let f = Fixture::new(FAILING);
    let out = f.apply(&[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("exited with status 3: the real reason"), "{stderr}");
    assert!(stderr.contains("log: ") && stderr.contains("01-boom.log"), "{stderr}");
    assert!(stderr.contains("│ about to fail"), "the log tail is shown: {stderr}");
    assert!(f.ledger().is_empty(), "nothing starts after a failure");
    assert!(!stderr.contains('\u{1b}'), "output is plain when not a terminal");
}

#[test]
fn keep_going_runs_what_does_not_depend_on_the_failure() {
    let f = Fixture::new(FAILING);
    let out = f.apply(&["--keep-going"]).code(1);
    let nodes: Vec<String> = f.ledger().into_iter().map(|(_, n, _)| n).collect();
    assert_eq!(nodes, ["later"]);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("child skipped: `bad` failed"), "{stderr}");
}

#[test]
fn a_timeout_kills_the_whole_process_group() {
    let f = Fixture::new(
        r#"workflow w {}
module slow { budget "1m"; install { run hang "sleep 30 & echo $! > grandchild.pid; wait" timeout="1s" } }"#,
    );
    let out = f.apply(&[]).code(1);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("timed out after 1s"));
    let pid: i32 = std::fs::read_to_string(f.path("grandchild.pid")).unwrap().trim().parse().unwrap();
    assert!(!alive(pid), "the backgrounded sleep {pid} outlived the timeout");
}

#[test]
fn retries_run_again_until_success() {
    let f = Fixture::new(
        r#"workflow w {}
module flaky { budget "1m"; install { run twice-failing "echo x >> attempts; test $(wc -l < attempts) -ge 3" retries=2 backoff="10ms" } }"#,
    );
    f.apply(&[]).success();
    assert_eq!(std::fs::read_to_string(f.path("attempts")).unwrap().lines().count(), 3);
}

#[test]
fn probes_poll_until_they_pass_or_time_out() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let open = listener.local_addr().unwrap().port();
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let f = Fixture::new(
        r#"workflow w { vars { open "0"; closed "0" } }
module up { budget "1m"; validate { tcp listening "127.0.0.1:{{ vars.open }}" timeout="5s" interval="50ms" } }
module down { budget "1m"; after up; validate { tcp nobody "127.0.0.1:{{ vars.closed }}" timeout="1s" interval="100ms" } }"#,
    );
    let out = f.apply(&["--var", &format!("open={open}"), "--var", &format!("closed={closed}")]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("✓ up passed"), "{stderr}");
    assert!(stderr.contains("down › nobody: still failing after 1s: connect 127.0.0.1:"), "{stderr}");
    drop(listener);
}

#[test]
fn sigterm_stops_the_rollout_and_leaves_no_child() {
    let f = Fixture::new(
        r#"workflow w {}
module long { budget "1m"; install { run hang "sleep 30 & echo $! > child.pid; wait" } }"#,
    );
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let mut child = std::process::Command::new(bin)
        .arg("apply")
        .arg(f.path("w.kdl"))
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = f.path("child.pid");
    for _ in 0..200 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n')) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    let grandchild: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(!alive(grandchild), "sleep {grandchild} survived SIGTERM");
}

/// Issue 15 item 6: an operator's stop is not a failure to fix; the hint says so.
#[test]
fn a_stopped_rollout_does_not_ask_to_fix_a_cause() {
    let f = Fixture::new(
        r#"workflow w {}
module long { budget "1m"; install { run hang "sleep 30 & echo $! > child.pid; wait" } }"#,
    );
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let child = std::process::Command::new(bin)
        .arg("apply")
        .arg(f.path("w.kdl"))
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid_file = f.path("child.pid");
    for _ in 0..200 {
        if std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n')) {
            break;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("rollout stopped"), "{stderr}");
    assert!(!stderr.contains("fix the cause"), "{stderr}");
    assert!(stderr.contains("continues where it stopped"), "{stderr}");
}

#[test]
fn preflight_refuses_what_cannot_finish() {
    let f = Fixture::new(
        r#"workflow w { secret token env="MILEPOST_TEST_UNSET_TOKEN" }
module m { budget "1m"; install {
    run first "echo ran >> ledger"
    run tool "definitely-not-a-real-program-xyz --version"
    run auth "echo {{ secrets.token }}"
} }"#,
    );
    let out = f.apply(&[]).code(6);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("`definitely-not-a-real-program-xyz` is not on PATH"), "{stderr}");
    assert!(stderr.contains("MILEPOST_TEST_UNSET_TOKEN"), "{stderr}");
    assert!(!f.path("ledger").exists(), "nothing ran");
}

#[test]
fn kubernetes_steps_without_a_cluster_stop_before_anything_runs() {
    let f = Fixture::new(
        r#"workflow w {}
module m { budget "1m"; install { run first "echo ran >> ledger"; apply manifests "cm.yaml" } }"#,
    );
    std::fs::write(f.path("cm.yaml"), "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n").unwrap();
    let out = milepost_without_cluster(&f.path("no-home"))
        .arg("apply")
        .arg(f.path("w.kdl"))
        .timeout(Duration::from_secs(60))
        .assert()
        .code(6);
    assert!(String::from_utf8_lossy(&out.get_output().stderr).contains("no Kubernetes cluster is configured"));
    assert!(!f.path("ledger").exists());
}

#[test]
fn the_local_example_runs_8_and_11_side_by_side() {
    // A private copy on a free port: the working tree and port 18471 stay untouched, and two
    // checkouts can test at once.
    let local = crate::support::Local::new();
    let out = local.run("apply", false).success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let at = |needle: &str| stderr.find(needle).unwrap_or_else(|| panic!("no `{needle}` in {stderr}"));
    let first_end = at("#8 autoscaling passed").min(at("#11 monitoring passed"));
    assert!(at("#8 autoscaling started") < first_end && at("#11 monitoring started") < first_end, "{stderr}");
    assert!(stderr.contains("rollout complete: 9 passed, 0 failed, 0 skipped"));

    let failed = local.run("apply", true).code(1);
    let stderr = String::from_utf8_lossy(&failed.get_output().stderr).to_string();
    assert!(stderr.contains("ha-dr › backup-verified: still failing"), "{stderr}");
    assert!(stderr.contains("injected failure"), "{stderr}");
    assert!(stderr.contains("log: "), "{stderr}");
    // `Local` stops the service the failed run left up for a resume when it is dropped.
}

fn alive(pid: i32) -> bool {
    // Zombies count as gone: they no longer run.
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    !status.is_empty() && !status.contains("State:\tZ")
}

#[test]
fn on_overrun_fail_stops_the_node_and_says_why() {
    let f = Fixture::new(
        r#"workflow w {}
module slow { budget "1s"; on-overrun fail; install { run hang "sleep 20" } }"#,
    );
    let out = f.apply(&[]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("ran past its budget of 1s; stopping it"), "{stderr}");
    assert!(
        stderr.contains("slow › hang: stopped: the node ran past its budget of 1s (on-overrun fail)"),
        "{stderr}"
    );
}

#[test]
fn json_log_format_writes_only_json_lines() {
    let f = Fixture::new(FAILING);
    let out = f.apply(&["--log-format", "json"]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let mut events = Vec::new();
    for line in stderr.lines().filter(|l| !l.trim().is_empty()) {
        let json: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        events.push(json["fields"]["event"].as_str().unwrap_or_default().to_string());
    }
    for expected in ["run_started", "step_finished", "node_finished", "failure", "run_finished"] {
        assert!(events.iter().any(|e| e == expected), "no {expected} in {events:?}");
    }
}

#[test]
fn logs_hold_what_the_step_printed_and_nothing_a_leftover_daemon_prints_later() {
    let f = Fixture::new(
        r#"workflow w { parallelism 1 }
module quiet { budget "1m"; install { run silent "exit 3" } }
module noisy { budget "1m"; install { run daemon "(sleep 2; echo late) & echo early; exit 2" } }"#,
    );
    let out = f.apply(&["--keep-going"]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("silent: exited with status 3\n"), "a silent failure says only that: {stderr}");
    assert!(stderr.contains("daemon: exited with status 2: early"), "{stderr}");
    std::thread::sleep(Duration::from_secs(3));
    let logs = crate::support::rollout_dir(&f.path(".")).join("runs");
    let run = std::fs::read_dir(&logs).unwrap().next().unwrap().unwrap().path().join("logs");
    let silent = std::fs::read_to_string(run.join("quiet.01-silent.log")).unwrap();
    assert_eq!(silent, "$ exit 3\n(no output)\n");
    let daemon = std::fs::read_to_string(run.join("noisy.01-daemon.log")).unwrap();
    assert_eq!(
        daemon, "$ (sleep 2; echo late) & echo early; exit 2\nearly\n",
        "the daemon's later line is not the step's"
    );
}

#[test]
fn a_deadline_stops_before_the_node_that_would_pass_it_and_resume_goes_on() {
    let f = Fixture::new(
        r#"workflow w { parallelism 1 }
module a { budget "1m"; install { run s "echo a >> done" } }
module b { budget "2m"; after a; install { run s "echo b >> done" } }"#,
    );
    // a fits the 90 s window; b, starting when a ends, would end 2m later, after it.
    let out = f.apply(&["--deadline", "90s", "--progress", "plain"]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("the rollout stopped before it"), "{stderr}");
    // The window is echoed with the clock time it ends at (which varies: only its shape).
    let echo =
        predicates::str::is_match(r"(?m)^deadline 1m30s \(at (\d{4}-\d\d-\d\d )?\d\d:\d\d UTC\)$").unwrap();
    assert!(predicates::Predicate::eval(&echo, stderr.as_str()), "{stderr}");
    assert_eq!(std::fs::read_to_string(f.path("done")).unwrap(), "a\n");
    let report = milepost().arg("report").arg(f.path("w.kdl")).args(["--format", "json"]).assert().success();
    let report: serde_json::Value = serde_json::from_slice(&report.get_output().stdout).unwrap();
    assert_eq!(report["outcome"], "deadline", "{report}");
    let history = milepost().arg("history").arg(f.path("w.kdl")).assert().success();
    assert!(String::from_utf8_lossy(&history.get_output().stdout).contains("stopped"));

    milepost().arg("resume").arg(f.path("w.kdl")).timeout(Duration::from_secs(60)).assert().success();
    assert_eq!(std::fs::read_to_string(f.path("done")).unwrap(), "a\nb\n");
}

#[test]
fn a_probe_log_names_its_command_once_and_each_attempt_after_its_output() {
    let f = Fixture::new(
        r#"workflow w {}
module m { budget "1m"; validate { run ready "echo not yet; exit 1" timeout="1s" interval="200ms" } }"#,
    );
    let out = f.apply(&["--progress", "plain"]).code(1);
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(stderr.contains("still failing after 1s: exited with status 1: not yet"), "{stderr}");
    let run = std::fs::read_dir(crate::support::rollout_dir(&f.path(".")).join("runs"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let log = std::fs::read_to_string(run.join("logs/m.01-ready.log")).unwrap();
    assert_eq!(log.matches("$ echo not yet; exit 1").count(), 1, "{log}");
    let lines: Vec<&str> = log.lines().collect();
    assert!(lines.len() >= 5, "several attempts: {log}");
    // Each attempt: its output, then milepost's line about it.
    for pair in lines[1..].chunks(2) {
        assert_eq!(pair[0], "not yet", "{log}");
        if let Some(note) = pair.get(1) {
            assert!(
                note.starts_with("milepost: attempt ") && note.ends_with("exited with status 1: not yet"),
                "{log}"
            );
        }
    }
}
