//! Issue 16: rollback. A failed module (or gate) under `on-failure "rollback"` leaves the
//! cluster as it was, by plan; `milepost rollback` undoes completed modules on purpose; a
//! rollback is journaled and resumed like any rollout.

use std::time::Duration;

use crate::support::{count, ledger, milepost, spawn_until, stderr, stdout, Local};

fn status_of(status: &serde_json::Value, id: &str) -> String {
    let nodes = status["nodes"].as_array().unwrap();
    nodes.iter().find(|n| n["id"] == id).unwrap()["status"].as_str().unwrap().to_string()
}

fn json(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).unwrap()
}

/// A chain a → b → c in phase A and d in phase B after c; every install and rollback step
/// appends to `ledger`. `a`'s first rollback step waits while `slow` exists.
const CHAIN: &str = r#"workflow w {
    parallelism 2
    phase "A" { modules a b c }
    phase "B" { modules d }
}
module a {
    budget "1m"
    install { run s "echo a >> ledger" }
    rollback {
        run u1 "echo undo-a1 >> ledger; if [ -f slow ]; then touch started; sleep 30; fi"
        run u2 "echo undo-a2 >> ledger"
    }
}
module b { budget "1m"; after a; install { run s "echo b >> ledger" }; rollback { run u "echo undo-b >> ledger" } }
module c { budget "1m"; after b; install { run s "echo c >> ledger" }; rollback { run u "echo undo-c >> ledger" } }
module d { budget "1m"; after c; install { run s "echo d >> ledger" }; rollback { run u "echo undo-d >> ledger" } }
"#;

fn chain() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN).unwrap();
    (dir, w)
}

/// Dependents first, whatever the parallelism; a phase rolls back alone.
#[test]
fn a_rollback_undoes_what_was_built_on_a_node_first_and_nothing_else() {
    let (dir, w) = chain();
    milepost().arg("apply").arg(&w).assert().success();
    let out = milepost().arg("rollback").arg(&w).args(["--phase", "A", "--yes"]).assert().success();
    assert!(stderr(&out).contains("rollback complete: 3 passed"), "{}", stderr(&out));
    let undone: Vec<String> = ledger(dir.path()).into_iter().filter(|l| l.starts_with("undo")).collect();
    assert_eq!(undone, ["undo-c", "undo-b", "undo-a1", "undo-a2"]);
    let status = json(&milepost().arg("status").arg(&w).arg("--json").assert().success());
    for id in ["a", "b", "c"] {
        assert_eq!(status_of(&status, id), "rolled-back", "{status}");
    }
    assert_eq!(status_of(&status, "d"), "changed", "d is built on c, which is gone: {status}");
    // Nothing rolls back twice; a later resume installs them again, from the start.
    let out = milepost().arg("rollback").arg(&w).args(["--phase", "A", "--yes"]).assert().success();
    assert!(stderr(&out).contains("nothing to roll back: a (rolled back already)"), "{}", stderr(&out));
    milepost().arg("resume").arg(&w).assert().success();
    let lines = ledger(dir.path());
    assert_eq!(
        (count(&lines, "a"), count(&lines, "b"), count(&lines, "c"), count(&lines, "d")),
        (2, 2, 2, 2)
    );
}

/// The preview names what is undone, in order, with the time it is planned to take; without
/// a terminal and without --yes nothing is rolled back.
#[test]
fn a_rollback_is_previewed_and_confirmed() {
    let (dir, w) = chain();
    milepost().arg("apply").arg(&w).assert().success();
    let plan = stdout(
        &milepost().arg("plan").arg(&w).args(["--rollback", "--only", "b", "--only", "d"]).assert().success(),
    );
    assert!(plan.starts_with("rollback of 2 node(s), what was built on them first · planned 2m"), "{plan}");
    let d = plan.find("↩ d").unwrap();
    let b = plan.find("↩ b").unwrap();
    assert!(d < b, "d is built on b: undone first\n{plan}");
    let out = milepost().arg("rollback").arg(&w).args(["--only", "b"]).assert().code(2);
    assert!(stderr(&out).contains("add --yes"), "{}", stderr(&out));
    assert!(!ledger(dir.path()).iter().any(|l| l.starts_with("undo")));
    let out = milepost().arg("plan").arg(&w).args(["--to", "A"]).assert().code(2);
    assert!(stderr(&out).contains("add --rollback"), "{}", stderr(&out));
}

/// A rollback killed with SIGKILL goes on with `resume`: the rollback, not the install, and
/// no rollback step whose pass was recorded runs again.
#[test]
fn a_killed_rollback_is_resumed_without_repeating_passed_steps() {
    let (dir, w) = chain();
    milepost().arg("apply").arg(&w).assert().success();
    std::fs::write(dir.path().join("slow"), "").unwrap();
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"));
    command.arg("rollback").arg(&w).args(["--to", "A", "--only", "a", "--only", "b", "--only", "c", "--yes"]);
    let started = dir.path().join("started");
    let mut child = spawn_until(command, &started);
    assert!(started.exists(), "the rollback never reached a's first step");
    child.kill().unwrap();
    child.wait().unwrap();
    std::fs::remove_file(dir.path().join("slow")).unwrap();
    let status = json(&milepost().arg("status").arg(&w).arg("--json").assert().success());
    assert_eq!(status_of(&status, "a"), "rolling-back", "{status}");
    assert_eq!(status_of(&status, "c"), "rolled-back", "{status}");
    // While it has nodes left, nothing installs or undoes around them.
    for (command, extra) in [
        ("rollback", vec!["--only", "a", "--yes"]),
        ("resume", vec!["--from", "b"]),
        ("apply", vec!["--only", "c"]),
    ] {
        let out = milepost().arg(command).arg(&w).args(&extra).assert().code(2);
        assert!(
            stderr(&out).contains("a rollback has nodes left to undo (a)"),
            "{command}: {}",
            stderr(&out)
        );
    }
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&out).contains("continuing the rollback of"), "{}", stderr(&out));
    let lines = ledger(dir.path());
    for once in ["undo-d", "undo-c", "undo-b", "undo-a2"] {
        assert_eq!(count(&lines, once), 1, "{once}: {lines:?}");
    }
    assert_eq!(count(&lines, "undo-a1"), 2, "a1 was in flight when killed: it runs again");
    assert_eq!(count(&lines, "a"), 1, "the resume installed a again instead of finishing the rollback");
    let status = json(&milepost().arg("status").arg(&w).arg("--json").assert().success());
    for id in ["a", "b", "c", "d"] {
        assert_eq!(status_of(&status, id), "rolled-back", "{status}");
    }
}

/// `on-failure "rollback"` on a module: its own rollback runs after it fails; a rollback
/// that fails too is reported after the original failure, which stands (exit 1), and a
/// resume goes on with the rollback.
#[test]
fn a_failed_rollback_never_hides_the_failure_it_follows() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w { on-failure "rollback" }
module ok { budget "1m"; install { run s "echo ok >> ledger" }; rollback { run u "echo undo-ok >> ledger" } }
module bad {
    budget "1m"
    after ok
    install { run s "echo bad >> ledger; echo the original failure >&2; exit 3" }
    rollback { run u "echo undo-bad >> ledger; test ! -f stuck" }
}
"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("stuck"), "").unwrap();
    let out = milepost().arg("apply").arg(&w).args(["--progress", "plain"]).assert().code(1);
    let err = stderr(&out);
    let original = err.find("the original failure").expect("the original failure is reported");
    let rollback = err.find("on-failure rollback: undoing bad").expect("the rollback ran");
    assert!(original < rollback, "{err}");
    assert!(err.contains("the rollback did not finish; the rollout's failure above stands"), "{err}");
    assert_eq!(count(&ledger(dir.path()), "undo-ok"), 0, "only the failed module is undone");
    std::fs::remove_file(dir.path().join("stuck")).unwrap();
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&out).contains("continuing the rollback of bad"), "{}", stderr(&out));
    assert_eq!(count(&ledger(dir.path()), "undo-bad"), 2);
}

/// The issue's "Done when" on the local example: a failure of 2B's gate under
/// `on-failure "rollback"` rolls back the 2B modules that ran; 2A is untouched; status
/// shows it; the report has install → failure → rollback on the timeline.
#[test]
fn the_local_example_rolls_back_2b_when_its_gate_fails() {
    let local = Local::new();
    let out = local
        .command("apply")
        .env("MILEPOST_DEMO_FAIL", "2B-gate")
        .timeout(Duration::from_secs(60))
        .assert()
        .code(1);
    let err = stderr(&out);
    assert!(err.contains("on-failure rollback: undoing ha-dr, cicd-gitops"), "{err}");
    assert!(err.contains("rollback complete: 2 passed"), "{err}");
    let work = local.dir.path().join(".work/staging");
    assert!(!work.join("backups/data.tar.gz").exists(), "ha-dr's backup is still there");
    assert!(!work.join("release/VERSION").exists(), "cicd-gitops's release is still there");
    assert!(work.join("config/scaling.conf").exists(), "2A was touched");
    let status = json(&local.command("status").arg("--json").assert().success());
    for id in ["ha-dr", "cicd-gitops"] {
        assert_eq!(status_of(&status, id), "rolled-back", "{status}");
    }
    for id in ["k8s-infra", "autoscaling", "infrastructure-stability"] {
        assert_eq!(status_of(&status, id), "done", "{status}");
    }
    let report = json(&local.command("report").args(["--format", "json"]).assert().success());
    let node = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "ha-dr").unwrap();
    let attempts = node["attempts"].as_array().unwrap();
    let kinds: Vec<(bool, &str)> =
        attempts.iter().map(|a| (a["rollback"].as_bool().unwrap(), a["result"].as_str().unwrap())).collect();
    assert_eq!(kinds, [(false, "passed"), (true, "passed")], "install, then rollback: {node}");
    assert_eq!(node["result"], "rolled-back");
    assert!(attempts[1]["start_secs"].as_f64() >= attempts[0]["end_secs"].as_f64(), "{node}");
    let gate =
        report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "deployment-reliability").unwrap();
    assert_eq!(gate["result"], "failed");
    assert_eq!(report["outcome"], "failed", "the rollback after it does not make the rollout complete");
    assert_eq!(status_of(&status, "deployment-reliability"), "failed", "{status}");
    let reason = |id: &str| {
        let nodes = status["nodes"].as_array().unwrap();
        nodes.iter().find(|n| n["id"] == id).unwrap()["reason"].as_str().unwrap_or_default().to_string()
    };
    assert!(reason("deployment-reliability").contains("injected failure"), "{status}");
    // Fixed, a resume installs 2B again and finishes the rollout.
    local.run("resume", false).success();
    assert!(work.join("backups/data.tar.gz").exists());
}

/// Handlers: a failed module's `on-failure { … }` diagnostics run before its rollback, and
/// the workflow's `finally` after everything, whatever the outcome; a failing handler is
/// reported after the failure it follows and never replaces it.
#[test]
fn handlers_run_in_order_and_never_hide_the_failure() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {
    finally { run cleanup "echo finally >> ledger" }
}
module ok { budget "1m"; install { run s "echo ok >> ledger" } }
module bad {
    budget "1m"
    after ok
    install { run s "echo bad >> ledger; echo the original failure >&2; exit 3" }
    on-failure "rollback" {
        run describe "echo diagnostics >> ledger; echo diagnostics broke >&2; exit 1"
    }
    rollback { run u "echo undo-bad >> ledger" }
}
"#,
    )
    .unwrap();
    let out = milepost().arg("apply").arg(&w).args(["--progress", "plain"]).assert().code(1);
    let err = stderr(&out);
    let original = err.find("the original failure").unwrap();
    let handler = err.find("diagnostics broke").expect("the handler's failure is reported");
    assert!(original < handler, "{err}");
    let lines = ledger(dir.path());
    assert_eq!(lines, ["ok", "bad", "diagnostics", "undo-bad", "finally"]);
    // Handlers change no node's state: bad rolled back, ok done; the runs are listed.
    let status = json(&milepost().arg("status").arg(&w).arg("--json").assert().success());
    assert_eq!(status_of(&status, "ok"), "done", "{status}");
    assert_eq!(status_of(&status, "bad"), "rolled-back", "{status}");
    let history = stdout(&milepost().arg("history").arg(&w).assert().success());
    for command in ["apply", "on-failure", "rollback", "finally"] {
        assert!(history.contains(command), "{history}");
    }
    // A clean rollout runs `finally` too; its failure alone fails the command.
    std::fs::write(
        &w,
        std::fs::read_to_string(&w)
            .unwrap()
            .replace("exit 3", "true")
            .replace("echo finally", "exit 4; echo finally"),
    )
    .unwrap();
    let out = milepost().arg("apply").arg(&w).assert().code(1);
    assert!(stderr(&out).contains("rollout complete"), "{}", stderr(&out));
    assert!(stderr(&out).contains("finally stopped"), "{}", stderr(&out));
}

/// The rollback's crash harness (seeded; `MILEPOST_CRASH_SEED` replays one): a random DAG is
/// installed, then rolled back and resumed with kills (SIGKILL, SIGTERM) at random moments and
/// rollback steps that fail for a while. Invariants: the state always reads; no rollback step
/// whose pass was recorded starts again; no install step runs while the rollback is
/// unfinished; in the end every node is rolled back, every rollback step ran.
#[test]
fn kills_during_rollbacks_never_repeat_a_recorded_undo() {
    use milepost::state::format::Record;
    use nix::sys::signal::{kill, Signal};
    let seed: u64 =
        std::env::var("MILEPOST_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_0016);
    let mut state = seed | 1;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("fail")).unwrap();
    let nodes = 6;
    let mut text = String::from("workflow w { parallelism 2 }\n");
    for i in 0..nodes {
        let after = if i > 0 { format!("after n{}; ", next(i)) } else { String::new() };
        let mut undo = String::new();
        for s in 0..2 {
            undo.push_str(&format!(
                "run u{s} \"echo undo-n{i}.u{s} >> ledger; test ! -f fail/n{i}.u{s}; sleep 0.{:02}\"; ",
                next(4) * 10
            ));
        }
        text.push_str(&format!(
            "module n{i} {{ budget \"1m\"; {after}install {{ run s \"echo n{i} >> ledger\" }}; rollback {{ {undo}}} }}\n"
        ));
    }
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, &text).unwrap();
    milepost().arg("apply").arg(&w).assert().success();
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let only: Vec<String> = (0..nodes).flat_map(|i| ["--only".to_string(), format!("n{i}")]).collect();
    for round in 0..12 {
        for i in 0..nodes {
            let _ = std::fs::remove_file(dir.path().join(format!("fail/n{i}.u{}", next(2))));
            if next(100) < 15 {
                std::fs::write(dir.path().join(format!("fail/n{i}.u{}", next(2))), "").unwrap();
            }
        }
        // A rollback killed before it recorded anything left nothing to resume: start it again.
        let status = json(&milepost().arg("status").arg(&w).arg("--json").assert().success());
        let started = (0..nodes).any(|i| status_of(&status, &format!("n{i}")) != "done");
        // Rolled back whole: a resume now would install again, which is another story.
        if (0..nodes).all(|i| status_of(&status, &format!("n{i}")) == "rolled-back") {
            break;
        }
        let mut cmd = std::process::Command::new(&bin);
        if round == 0 || !started {
            cmd.arg("rollback").arg(&w).args(&only).arg("--yes");
        } else {
            cmd.arg("resume").arg(&w);
        }
        let mut child =
            cmd.stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(next(250)));
        let pid = nix::unistd::Pid::from_raw(child.id() as i32);
        match next(3) {
            0 => {
                let _ = kill(pid, Signal::SIGKILL);
            }
            1 => {
                let _ = kill(pid, Signal::SIGTERM);
            }
            _ => {}
        }
        child.wait().unwrap();
        milepost().arg("status").arg(&w).assert().success();
    }
    let _ = std::fs::remove_dir_all(dir.path().join("fail"));
    std::fs::create_dir(dir.path().join("fail")).unwrap();
    for _ in 0..5 {
        let status = json(&milepost().arg("status").arg(&w).arg("--json").assert().success());
        if (0..nodes).all(|i| status_of(&status, &format!("n{i}")) == "rolled-back") {
            break;
        }
        if (0..nodes).all(|i| status_of(&status, &format!("n{i}")) == "done") {
            let _ = milepost().arg("rollback").arg(&w).args(&only).arg("--yes").assert();
        } else {
            let _ = milepost().arg("resume").arg(&w).timeout(Duration::from_secs(60)).assert();
        }
    }
    let status = json(&milepost().arg("status").arg(&w).arg("--json").assert().success());
    for i in 0..nodes {
        assert_eq!(status_of(&status, &format!("n{i}")), "rolled-back", "seed {seed}: {status}");
    }
    // From the journals: no rollback step started again once its pass was recorded.
    let mut passed: std::collections::HashSet<(String, usize)> = Default::default();
    let mut any_rollback = false;
    for run in milepost::state::history::run_dirs(&crate::support::rollout_dir(dir.path())) {
        let records = milepost::state::journal::read(&run.join("journal.jsonl")).unwrap();
        let rollback =
            matches!(records.first(), Some(Record::RunStart { command, .. }) if command == "rollback");
        // The apply that installed everything comes before any rollback.
        let first_apply = !rollback && !any_rollback;
        any_rollback |= rollback;
        for record in records {
            match record {
                Record::StepStart { .. } if first_apply => {}
                Record::StepStart { node, index, .. } => {
                    assert!(
                        rollback,
                        "seed {seed}: an install step of {node} ran while the rollback was unfinished"
                    );
                    assert!(
                        !passed.contains(&(node.clone(), index)),
                        "seed {seed}: {node} undo {index} ran again"
                    );
                }
                Record::StepEnd { node, index, outcome, .. } if rollback && outcome.passed() => {
                    passed.insert((node, index));
                }
                _ => {}
            }
        }
    }
    let lines = ledger(dir.path());
    for i in 0..nodes {
        assert_eq!(count(&lines, &format!("n{i}")), 1, "seed {seed}: n{i} installed again");
        for s in 0..2 {
            assert!(count(&lines, &format!("undo-n{i}.u{s}")) >= 1, "seed {seed}: undo-n{i}.u{s} never ran");
        }
    }
}

/// An undo never waits for a promotion: prod rolls back what it installed even when staging
/// no longer proves the definition.
#[test]
fn a_rollback_in_prod_does_not_wait_for_staging() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    let text = r#"workflow w { environment staging { }; environment prod { requires staging } }
module a { budget "1m"; install { run s "echo a >> ledger" }; rollback { run u "echo undo-a >> ledger" } }
"#;
    std::fs::write(&w, text).unwrap();
    milepost().arg("apply").arg(&w).args(["--env", "staging"]).assert().success();
    milepost().arg("apply").arg(&w).args(["--env", "prod"]).assert().success();
    std::fs::write(&w, text.replace("echo a >>", "echo a2 >>")).unwrap();
    milepost().arg("apply").arg(&w).args(["--env", "prod"]).assert().code(6);
    milepost().arg("rollback").arg(&w).args(["--env", "prod", "--only", "a", "--yes"]).assert().success();
    assert_eq!(count(&ledger(dir.path()), "undo-a"), 1);
}

/// Review of issue 16: an operator's stop during the on-failure handlers stops what would
/// follow (rollback, `finally`), and the command exits 130.
#[test]
fn a_stop_during_a_handler_stops_what_follows() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w { finally { run fin "echo fin >> ledger" } }
module a { budget "1m"; install { run s "exit 1" }
  on-failure "rollback" { run slow "touch started; sleep 5" }
  rollback { run u "echo undo >> ledger" } }
"#,
    )
    .unwrap();
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"));
    command.arg("apply").arg(&w);
    let started = dir.path().join("started");
    let mut child = spawn_until(command, &started);
    assert!(started.exists());
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert!(ledger(dir.path()).is_empty(), "{:?}", ledger(dir.path()));
}
