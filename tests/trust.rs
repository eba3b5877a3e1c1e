//! Regressions of "trust the state" (issue 12): what resume counts as done, kept steps over
//! repeated interruptions, the lock taken before deciding, a full disk, damaged journals,
//! live runs, planning data.

use std::path::Path;

use milepost::state::format::Record;
use milepost::state::history::run_dirs;
use milepost::state::journal;

use crate::support::{apply_in_background, count, ledger, milepost, stderr};

fn status_json(w: &Path) -> serde_json::Value {
    let out = milepost().arg("status").arg(w).arg("--json").assert().success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

fn status_of(status: &serde_json::Value, id: &str) -> String {
    let nodes = status["nodes"].as_array().unwrap();
    nodes.iter().find(|n| n["id"] == id).unwrap()["status"].as_str().unwrap().to_string()
}

/// A chain a → b → c and an independent d: each step appends its name to `ledger`; `a`
/// stops in its step while `slow` exists.
const CHAIN: &str = r#"workflow w { parallelism 1 }
module a { budget "9m"; install { run s "echo a >> ledger; if [ -f slow ]; then touch started; sleep 30; fi" } }
module b { budget "1m"; after a; install { run s "echo b >> ledger" } }
module c { budget "1m"; after b; install { run s "echo c >> ledger" } }
module d { budget "1m"; install { run s "echo d >> ledger" } }
"#;

/// Item 0: an `apply` starts a new rollout; killed after it re-ran `a`, nothing downstream
/// of `a` (nor `d`, which it never reached) counts as done from the earlier rollout.
#[test]
fn an_interrupted_apply_is_not_completed_by_the_rollout_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN).unwrap();
    milepost().arg("apply").arg(&w).assert().success();
    std::fs::write(dir.path().join("slow"), "").unwrap();
    let mut second = apply_in_background(&w, &dir.path().join("started"));
    second.kill().unwrap();
    second.wait().unwrap();
    std::fs::remove_file(dir.path().join("slow")).unwrap();

    let status = status_json(&w);
    for id in ["a", "b", "c", "d"] {
        assert_ne!(status_of(&status, id), "done", "{id}: {status}");
    }
    let resumed = milepost().arg("resume").arg(&w).assert().success();
    assert!(!stderr(&resumed).contains("nothing to resume"), "{}", stderr(&resumed));
    let lines = ledger(dir.path());
    assert_eq!(
        (count(&lines, "a"), count(&lines, "b"), count(&lines, "c"), count(&lines, "d")),
        (3, 2, 2, 2)
    );
    let status = status_json(&w);
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done"), "{status}");
}

/// Item 0, the other half: a node re-run on its own (`apply --only a`) invalidates what was
/// built on its earlier run, while `apply --phase`-style partial runs of other nodes do not.
#[test]
fn a_node_run_again_upstream_invalidates_what_came_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN).unwrap();
    milepost().arg("apply").arg(&w).assert().success();
    milepost().arg("apply").arg(&w).args(["--only", "d"]).assert().success();
    let status = status_json(&w);
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done"), "{status}");

    milepost().arg("apply").arg(&w).args(["--only", "a"]).assert().success();
    let status = status_json(&w);
    assert_eq!(status_of(&status, "a"), "done");
    assert_eq!(status_of(&status, "d"), "done");
    assert_eq!(status_of(&status, "b"), "changed", "{status}");
    assert_eq!(status_of(&status, "c"), "changed", "{status}");
    // resume continues the rollout of the last apply (`--only a`): done; it names the rest.
    let resumed = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&resumed).contains("not done, outside it: b, c"), "{}", stderr(&resumed));
    let plan = milepost().arg("plan").arg(&w).assert().success();
    let plan = String::from_utf8_lossy(&plan.get_output().stdout).into_owned();
    assert!(plan.contains("`a` ran again after it was built on"), "{plan}");
    milepost().arg("resume").arg(&w).args(["--from", "b"]).assert().success();
    let lines = ledger(dir.path());
    assert_eq!(
        (count(&lines, "a"), count(&lines, "b"), count(&lines, "c"), count(&lines, "d")),
        (2, 2, 2, 2)
    );
}

/// Item 1: the issue's reproduction. `x` is killed after its first step; a run that does
/// not restart `x` ends; the next resume still keeps `x.s1`.
#[test]
fn kept_steps_survive_any_number_of_runs_that_do_not_reach_them() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("wf.kdl");
    std::fs::write(
        &w,
        r#"workflow rp { parallelism 1 }
module x { budget "1m"; install { run s1 "echo x.s1 >> ledger"; run s2 "echo x.s2 >> ledger; if [ -f slow ]; then touch started; sleep 30; fi" } }
module y { budget "5m"; install { run t "echo y.t >> ledger; test -z \"$FAIL_Y\"" } }"#,
    )
    .unwrap();
    std::fs::write(dir.path().join("slow"), "").unwrap();
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
        .arg("apply")
        .arg(&w)
        .arg("--keep-going")
        .env("FAIL_Y", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    for _ in 0..500 {
        if dir.path().join("started").exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::remove_file(dir.path().join("slow")).unwrap();
    // y fails first (longest path first, parallelism 1): x is not reached.
    milepost().arg("resume").arg(&w).env("FAIL_Y", "1").assert().code(1);
    for _ in 0..3 {
        milepost().arg("resume").arg(&w).env("FAIL_Y", "1").assert().code(1);
    }
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(
        stderr(&out).contains("x runs again: interrupted in flight (first 1 steps kept)"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&ledger(dir.path()), "x.s1"), 1, "{:?}", ledger(dir.path()));
}

/// Item 2: resume takes the lock before it reads the journals and decides: with the state
/// directory held, it says so and decides nothing.
#[test]
fn resume_decides_nothing_without_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN).unwrap();
    milepost().arg("apply").arg(&w).args(["--only", "a"]).assert().success();
    let held = milepost::state::lock::acquire(&crate::support::rollout_dir(dir.path()), "apply").unwrap();
    let out = milepost().arg("resume").arg(&w).assert().code(4);
    assert!(!stderr(&out).contains("resuming"), "it decided before holding the lock: {}", stderr(&out));
    let out = milepost().arg("verify").arg(&w).assert().code(4);
    assert!(stderr(&out).contains("in use by another rollout"), "{}", stderr(&out));
    drop(held);
    milepost().arg("resume").arg(&w).assert().success();
}

/// Item 3: a write that fails half-way (a file-size limit stands in for a full disk) leaves
/// the journal ending at its last whole record; once there is room, resume finishes the
/// rollout without running a recorded step again.
#[test]
fn a_full_disk_leaves_whole_records_and_the_next_run_works() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    let mut text = String::from("workflow w { parallelism 1 }\n");
    for i in 0..40 {
        text.push_str(&format!(
            "module m{i} {{ budget \"1m\"; install {{ run step \"echo m{i} >> ledger\" }} }}\n"
        ));
    }
    std::fs::write(&w, text).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f 8; exec '{}' apply '{}' --progress plain",
            bin.display(),
            w.display()
        ))
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{err}");
    assert!(err.contains("cannot write the journal") && err.contains("File too large"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let state = crate::support::rollout_dir(dir.path());
    let journal = run_dirs(&state)[0].join("journal.jsonl");
    let bytes = std::fs::read(&journal).unwrap();
    assert!(bytes.ends_with(b"\n"), "the journal ends with a whole record");
    assert!(bytes.len() <= 8192);
    let written = journal::read(&journal).unwrap();
    assert!(written.len() > 5);
    let resumed = milepost().arg("resume").arg(&w).assert().success();
    let _ = resumed;
    let lines = ledger(dir.path());
    for i in 0..40 {
        let n = count(&lines, &format!("m{i}"));
        assert!(n >= 1, "m{i} never ran");
    }
    // Every step the first run recorded as passed ran exactly once.
    for record in written {
        if let Record::StepEnd { node, outcome, .. } = record {
            assert!(outcome.passed());
            assert_eq!(count(&lines, &node), 1, "{node} ran again after its pass was recorded");
        }
    }
}

/// Item 4: damage is found and named, with the file and the line, by every reader; a
/// deleted journal is noticed, not taken as a fresh start.
#[test]
fn damaged_or_missing_journals_are_named_not_read_past() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN).unwrap();
    milepost().arg("apply").arg(&w).args(["--only", "a"]).assert().success();
    milepost().arg("apply").arg(&w).args(["--only", "b"]).assert().success();
    milepost().arg("apply").arg(&w).args(["--only", "c"]).assert().success();
    let state = crate::support::rollout_dir(dir.path());
    let runs = run_dirs(&state);
    let journal = runs[1].join("journal.jsonl");
    let original = std::fs::read(&journal).unwrap();

    // One flipped byte in a step's hash.
    let text = String::from_utf8(original.clone()).unwrap();
    let at = text.find("\"step_hash\":\"").unwrap() + 14;
    let mut flipped = original.clone();
    flipped[at] = if flipped[at] == b'0' { b'1' } else { b'0' };
    std::fs::write(&journal, &flipped).unwrap();
    let line = text[..at].matches('\n').count() + 1;
    for command in ["status", "resume", "plan", "history"] {
        let out = milepost().arg(command).arg(&w).assert().code(5);
        let err = stderr(&out);
        assert!(
            err.contains(&format!("{} is damaged at line {line}", journal.display())),
            "{command}: {err}"
        );
        assert!(err.contains("checksum"), "{command}: {err}");
    }
    // Emptied.
    std::fs::write(&journal, "").unwrap();
    let err = stderr(&milepost().arg("resume").arg(&w).assert().code(5));
    assert!(err.contains("damaged at line 1") && err.contains("empty"), "{err}");
    // Deleted: the run folder without it, or the whole folder.
    std::fs::remove_file(&journal).unwrap();
    let err = stderr(&milepost().arg("resume").arg(&w).assert().code(5));
    assert!(err.contains("has no journal.jsonl"), "{err}");
    std::fs::remove_dir_all(&runs[1]).unwrap();
    let err = stderr(&milepost().arg("status").arg(&w).assert().code(5));
    let missing = runs[1].file_name().unwrap().to_string_lossy().into_owned();
    assert!(err.contains(&format!("follows run {missing}")), "{err}");
    assert_eq!(count(&ledger(dir.path()), "b"), 1, "nothing ran on damaged state");
}

/// Item 7: while a rollout runs, `status` shows its nodes running (not interrupted) and
/// `verify` reports the lock.
#[test]
fn a_live_run_is_shown_running_and_holds_off_verify() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {}
module m { budget "1m"; install { run wait "touch started; sleep 30" }; validate { run ok "true" } }"#,
    )
    .unwrap();
    let mut run = apply_in_background(&w, &dir.path().join("started"));
    let status = status_json(&w);
    assert_eq!(status_of(&status, "m"), "running", "{status}");
    let out = milepost().arg("verify").arg(&w).assert().code(4);
    assert!(stderr(&out).contains("in use by another rollout"), "{}", stderr(&out));
    let history = |w: &Path| {
        let out = milepost().arg("history").arg(w).assert().success();
        String::from_utf8_lossy(&out.get_output().stdout).into_owned()
    };
    assert!(history(&w).contains(" running "), "{}", history(&w));
    run.kill().unwrap();
    run.wait().unwrap();
    assert_eq!(status_of(&status_json(&w), "m"), "interrupted");
    assert!(history(&w).contains(" killed? "), "{}", history(&w));
}

/// Item 19: budgets, buffers and probabilities are planning data: changing them runs
/// nothing again.
#[test]
fn changing_only_planning_data_runs_nothing_again() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN).unwrap();
    milepost().arg("apply").arg(&w).assert().success();
    let changed = CHAIN.replace(
        "module a { budget \"9m\"",
        "module a { budget \"3h\"; buffer \"20%\"; success-probability 0.5",
    );
    std::fs::write(&w, changed).unwrap();
    milepost().arg("validate").arg(&w).assert().success();
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
    assert_eq!(count(&ledger(dir.path()), "b"), 1);
}

/// Item 20: the plan `apply` announces (and re-forecasts from) is the plan's own simulation,
/// with the run's parallelism: `apply -j1` says what `plan -j1` says.
#[test]
fn apply_announces_the_plan_that_plan_simulates() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {}
module a { budget "1m"; install { run s "true" } }
module b { budget "1m"; install { run s "true" } }
module c { budget "2m"; after a; install { run s "true" } }"#,
    )
    .unwrap();
    for (j, expected) in [("1", "4m"), ("2", "3m")] {
        let plan =
            milepost().arg("plan").arg(&w).args(["-j", j, "--format", "json", "--fresh"]).assert().success();
        let plan: serde_json::Value = serde_json::from_slice(&plan.get_output().stdout).unwrap();
        assert_eq!(plan["totals"]["finish"], expected);
        let out = milepost().arg("apply").arg(&w).args(["-j", j, "--progress", "plain"]).assert().success();
        assert!(stderr(&out).contains(&format!("3 nodes · plan {expected}")), "-j{j}: {}", stderr(&out));
    }
}

/// Writes `text` as `w.kdl` in a new temp dir.
fn workflow(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, text).unwrap();
    (dir, w)
}

/// Review 1: a node continued past kept steps that runs an install step again builds
/// something new: what was built on its earlier run runs again, even after a run that
/// stopped before reaching it.
#[test]
fn a_dependency_rebuilt_past_kept_steps_invalidates_its_dependents() {
    let (dir, w) = workflow(
        r#"workflow w { parallelism 1 }
module a { budget "1h"; install { run s1 "echo a.s1 >> ledger"; run s2 "echo a.s2 >> ledger" } }
module b { budget "1m"; after a; install { run s "echo b >> ledger" } }
module x { budget "30m"; install { run s "echo x >> ledger; test ! -f broken" } }"#,
    );
    std::fs::write(dir.path().join("broken"), "").unwrap();
    milepost().arg("apply").arg(&w).arg("--keep-going").assert().code(1);
    let text = std::fs::read_to_string(&w).unwrap().replace("echo a.s2 >>", "echo a.s2-v2 >>");
    std::fs::write(&w, text).unwrap();
    milepost().arg("resume").arg(&w).assert().code(1); // a.s2-v2 runs, x fails, b never starts
    std::fs::remove_file(dir.path().join("broken")).unwrap();
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&out).contains("b runs again: `a` ran again after it was built on"), "{}", stderr(&out));
    assert_eq!(count(&ledger(dir.path()), "b"), 2);
}

/// Review 2 and 5: `verify` checks and builds nothing: a passing one leaves dependents done,
/// and a failing one reruns the checks, not what was built on the node.
#[test]
fn verify_never_makes_dependents_run_again() {
    let (dir, w) = workflow(
        r#"workflow w {
    phase "P1" { modules a; gate g }
    phase "P2" { modules b }
}
module a { budget "1m"; install { run s "echo a >> ledger" }; validate { run v "test ! -f drift" timeout="200ms" interval="50ms" } }
gate g { budget "1m"; validate { run v "echo g >> ledger" } }
module b { budget "1m"; after g; install { run s "echo b >> ledger" } }"#,
    );
    milepost().arg("apply").arg(&w).assert().success();
    milepost().arg("verify").arg(&w).assert().success();
    let status = status_json(&w);
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done"), "{status}");
    std::fs::write(dir.path().join("drift"), "").unwrap();
    milepost().arg("verify").arg(&w).assert().code(1);
    std::fs::remove_file(dir.path().join("drift")).unwrap();
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&out).contains("a runs again: failed"), "{}", stderr(&out));
    let lines = ledger(dir.path());
    assert_eq!((count(&lines, "a"), count(&lines, "b")), (1, 1), "{lines:?}");
}

/// Review 3: a failed step removed from the definition: the steps that passed are kept,
/// and the node is recorded again without running one.
#[test]
fn a_removed_failing_step_runs_nothing_again() {
    let (dir, w) = workflow(
        r#"workflow w {}
module a { budget "1m"; install { run s1 "echo s1 >> ledger"; run s2 "echo s2 >> ledger"; run s3 "false" } }"#,
    );
    milepost().arg("apply").arg(&w).assert().code(1);
    let text = std::fs::read_to_string(&w).unwrap().replace("; run s3 \"false\"", "");
    std::fs::write(&w, text).unwrap();
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&out).contains("(first 2 steps kept)"), "{}", stderr(&out));
    assert_eq!(ledger(dir.path()), ["s1", "s2"]);
}

/// Review 4: `after` is planning data: a dependency added later, on a node that completed
/// after this one began, runs nothing again.
#[test]
fn an_added_dependency_runs_nothing_again() {
    let (_dir, w) = workflow(
        r#"workflow w { parallelism 1 }
module a { budget "3m"; install { run s "true" } }
module b { budget "2m"; after a; install { run s "true" } }
module c { budget "1m"; install { run s "true" } }"#,
    );
    milepost().arg("apply").arg(&w).assert().success();
    let text = std::fs::read_to_string(&w).unwrap().replace("after a;", "after a c;");
    std::fs::write(&w, text).unwrap();
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
}

/// Review 6: an `apply` of another workflow in a shared state directory starts nothing of
/// this one anew.
#[test]
fn an_apply_of_another_workflow_leaves_this_one_alone() {
    let (dir, w1) =
        workflow("workflow one {}\nmodule x { budget \"1m\"; install { run s \"echo x >> ledger\" } }");
    let w2 = dir.path().join("w2.kdl");
    std::fs::write(
        &w2,
        "workflow two {}\nmodule y { budget \"1m\"; install { run s \"echo y >> ledger\" } }",
    )
    .unwrap();
    milepost().arg("apply").arg(&w1).assert().success();
    milepost().arg("apply").arg(&w2).assert().success();
    assert_eq!(status_of(&status_json(&w1), "x"), "done");
    let out = milepost().arg("resume").arg(&w1).assert().success();
    assert!(stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
}

/// Review 7: moving the oldest runs away, as docs/state.md §1 allows, keeps the state readable.
#[test]
fn pruning_the_oldest_runs_keeps_the_state_readable() {
    let (dir, w) = workflow(CHAIN);
    for only in ["a", "b", "c"] {
        milepost().arg("apply").arg(&w).args(["--only", only]).assert().success();
    }
    let runs = run_dirs(&crate::support::rollout_dir(dir.path()));
    std::fs::rename(&runs[0], dir.path().join("old-run")).unwrap();
    milepost().arg("status").arg(&w).assert().success();
    milepost().arg("history").arg(&w).assert().success();
}

/// Review 9: `resume --from X` starts X anew even if the run stops before reaching it.
#[test]
fn resume_from_is_remembered_when_the_run_stops_first() {
    let (dir, w) = workflow(CHAIN);
    milepost().arg("apply").arg(&w).assert().success();
    // a's budget (9m) is past the 1m deadline: the run stops before a.
    milepost().arg("resume").arg(&w).args(["--from", "a", "--deadline", "1m"]).assert().code(1);
    assert_ne!(status_of(&status_json(&w), "a"), "done");
    let out = milepost().arg("resume").arg(&w).assert().success();
    assert!(!stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
    assert_eq!(count(&ledger(dir.path()), "a"), 2);
}

/// Review 10: a report counts what `status` counts: nodes done before the last `apply`
/// (an `--only` one) are passed, not "not run".
#[test]
fn the_report_agrees_with_status() {
    let (_dir, w) = workflow(CHAIN);
    milepost().arg("apply").arg(&w).assert().success();
    milepost().arg("apply").arg(&w).args(["--only", "c"]).assert().success();
    let out = milepost().arg("report").arg(&w).args(["--format", "json"]).assert().success();
    let report: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    for node in report["nodes"].as_array().unwrap() {
        assert_eq!(node["result"], "passed", "{node}");
    }
}

/// Review 11: `running` is what the live run runs, not a node an earlier run left in flight.
#[test]
fn only_the_live_runs_nodes_show_running() {
    let (dir, w) = workflow(
        r#"workflow w {}
module x { budget "1m"; install { run s "if [ -f slow ]; then touch started; sleep 30; fi" } }
module y { budget "1m"; install { run s "if [ -f slow ]; then touch started; sleep 30; fi" } }"#,
    );
    std::fs::write(dir.path().join("slow"), "").unwrap();
    let mut first = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
        .arg("apply")
        .arg(&w)
        .args(["--only", "x"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = dir.path().join("started");
    while !started.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::remove_file(&started).unwrap();
    let mut second = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
        .arg("apply")
        .arg(&w)
        .args(["--only", "y"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    while !started.exists() {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = status_json(&w);
    second.kill().unwrap();
    second.wait().unwrap();
    assert_eq!(status_of(&status, "x"), "interrupted", "{status}");
    assert_eq!(status_of(&status, "y"), "running", "{status}");
}

/// Review of issue 12: a report written to a full disk is an error (exit 5), not a file cut
/// short in silence; a reader that closed the pipe early is not.
#[test]
fn a_full_stdout_is_an_error_a_closed_pipe_is_not() {
    let (_dir, w) = workflow(CHAIN);
    milepost().arg("apply").arg(&w).assert().success();
    for command in [&["status"][..], &["report", "--format", "json"], &["history"], &["plan"]] {
        let full = std::fs::File::options().write(true).open("/dev/full").unwrap();
        let status = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
            .args(command)
            .arg(&w)
            .stdout(full)
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(5), "{command:?}");
    }
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
        .arg("status")
        .arg(&w)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    assert_eq!(child.wait().unwrap().code(), Some(0));
}

/// Issue 14's most dangerous case, guarded here: runs made with other `--var` values (or
/// another Kubernetes context) are not read as this rollout's. A step whose text the values
/// do not touch would otherwise count as done in production after it ran only in staging.
#[test]
fn runs_made_with_other_values_are_not_taken_for_this_rollouts() {
    let (dir, w) = workflow(
        r#"workflow w { vars { target "staging" } }
module a { budget "1m"; install { run s "echo a >> ledger" } }
module b { budget "1m"; after a; install { run s "echo b-{{ vars.target }} >> ledger; false" } }"#,
    );
    milepost().arg("apply").arg(&w).assert().code(1);
    for command in ["resume", "status", "verify"] {
        let out = milepost().arg(command).arg(&w).args(["--var", "target=prod"]).assert().code(2);
        let err = stderr(&out);
        assert!(
            err.contains("made with other values: the --var/--vars-file values differ"),
            "{command}: {err}"
        );
    }
    let out = milepost().arg("resume").arg(&w).args(["--context", "prod-ctx"]).assert().code(2);
    assert!(stderr(&out).contains("the Kubernetes context was none, now `prod-ctx`"), "{}", stderr(&out));
    // A preview still works: a new rollout, said so.
    let out = milepost().arg("plan").arg(&w).args(["--var", "target=prod"]).assert().success();
    assert!(stderr(&out).contains("showing a new rollout"), "{}", stderr(&out));
    // The same values as the run: resume goes on (and fails again at b).
    milepost().arg("resume").arg(&w).assert().code(1);
    assert_eq!(count(&ledger(dir.path()), "a"), 1, "a never ran again");
    // Explicit defaults are the same values.
    milepost().arg("resume").arg(&w).args(["--var", "target=staging"]).assert().code(1);
}

/// Issue 15 item 3: the resume command a failed apply prints works as printed, from another
/// folder, with the values the run was made with.
#[test]
fn the_printed_resume_command_works_as_printed() {
    let (dir, w) = workflow(
        r#"workflow w { vars { target "staging" } }
module a { budget "1m"; install { run s "echo a-{{ vars.target }} >> ledger" } }
module b { budget "1m"; after a; install { run s "test ! -f broken" } }"#,
    );
    std::fs::write(dir.path().join("broken"), "").unwrap();
    let out = milepost().arg("apply").arg(&w).args(["--var", "target=prod team"]).assert().code(1);
    let err = stderr(&out);
    let hint = err.split("fix the cause, then `").nth(1).and_then(|r| r.split('`').next()).unwrap();
    assert!(hint.starts_with("milepost resume ") && hint.contains("'target=prod team'"), "{hint}");
    std::fs::remove_file(dir.path().join("broken")).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let elsewhere = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(hint.replacen("milepost", &shell_quote(&bin.display().to_string()), 1))
        .current_dir(elsewhere.path())
        .stderr(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0), "{hint}");
    assert_eq!(ledger(dir.path()), ["a-prod team"]);
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}
