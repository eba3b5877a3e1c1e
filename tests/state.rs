//! The state directory: resume after a failure, plan agreeing with resume, the lock, secrets
//! kept out, and crashes at random points never losing or repeating a completed step.

use std::path::Path;

use milepost::state::format::Record;
use milepost::state::history::run_dirs;
use milepost::state::journal;

use crate::support::{milepost, walk, Local};

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// Every journal record of every run in a state directory, oldest run first.
fn records(state: &Path) -> Vec<Vec<Record>> {
    run_dirs(state).iter().map(|d| journal::read(&d.join("journal.jsonl")).unwrap()).collect()
}

#[test]
fn resume_after_a_2b_failure_reruns_nothing_from_2a_and_plan_said_so() {
    let local = Local::new();
    local.run("apply", true).code(1);

    let plan = local.run("plan", false).success();
    let plan_text = String::from_utf8_lossy(&plan.get_output().stdout).into_owned();
    assert!(plan_text.contains("#9 ha-dr runs again: failed"), "{plan_text}");
    let json_out = local.command("plan").args(["--format", "json"]).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&json_out.get_output().stdout).unwrap();
    let status_of = |id: &str| {
        json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap()["status"].clone()
    };
    for done in ["k8s-infra", "autoscaling", "monitoring", "infrastructure-stability", "cicd-gitops"] {
        assert_eq!(status_of(done), "done", "{done}");
    }
    assert_eq!(status_of("ha-dr"), "rerun");

    let resumed = local.run("resume", false).success();
    let text = stderr(&resumed);
    assert!(text.contains("ha-dr runs again: failed") && text.contains("first 2 steps kept"), "{text}");

    // The resume run's journal: exactly the nodes plan predicted, nothing from 2A.
    let runs = records(&crate::support::rollout_dir(local.dir.path()));
    assert_eq!(runs.len(), 2);
    let ran: Vec<String> = runs[1]
        .iter()
        .filter_map(|r| match r {
            Record::StepStart { node, .. } => Some(node.clone()),
            _ => None,
        })
        .collect();
    for node in ["k8s-infra", "autoscaling", "monitoring", "infrastructure-stability", "cicd-gitops"] {
        assert!(!ran.contains(&node.to_string()), "{node} ran again on resume");
    }
    for node in ["ha-dr", "deployment-reliability", "security", "production-readiness"] {
        assert!(ran.contains(&node.to_string()), "{node} did not run on resume");
    }
    let logs = crate::support::rollout_dir(local.dir.path()).join("runs");
    let resume_run = run_dirs(&crate::support::rollout_dir(local.dir.path()))[1].clone();
    let resume_logs: Vec<String> = std::fs::read_dir(resume_run.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    for node in ["k8s-infra.", "autoscaling.", "monitoring.", "infrastructure-stability.", "cicd-gitops."] {
        assert!(
            !resume_logs.iter().any(|l| l.starts_with(node)),
            "{node} has logs in the resume run: {resume_logs:?}"
        );
    }
    assert!(resume_logs.iter().any(|l| l.starts_with("ha-dr.")), "{resume_logs:?}");
    assert!(logs.exists());

    let status = local.command("status").arg("--json").assert().success();
    let status: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done"), "{status}");
    assert_eq!(status["metrics"][0]["value"], 100.0);
    local.run("resume", false).success();
}

#[test]
fn a_second_rollout_on_the_same_state_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {}
module slow { budget "1m"; install { run wait "touch started; sleep 3" } }"#,
    )
    .unwrap();
    let mut first = crate::support::apply_in_background(&w, &dir.path().join("started"));
    let second = milepost().arg("apply").arg(&w).assert().code(4);
    let text = stderr(&second);
    assert!(
        text.contains(&format!("pid {}", first.id())) && text.contains("in use by another rollout"),
        "{text}"
    );
    assert!(first.wait().unwrap().success());
}

#[test]
fn secrets_never_reach_the_state_directory() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w { secret token env="MILEPOST_TEST_TOKEN" }
module m { budget "1m"
    install { run use "echo token={{ secrets.token }}; echo err {{ secrets.token }} >&2" { env TOKEN="{{ secrets.token }}" } }
    validate { run check "echo checking $TOKEN; test -n \"$TOKEN\"" { env TOKEN="{{ secrets.token }}" } }
}
module fails { budget "1m"; after m; install { run boom "echo {{ secrets.token }}; exit 1" } }"#,
    )
    .unwrap();
    let out = milepost().arg("apply").arg(&w).env("MILEPOST_TEST_TOKEN", "s3cr3t-value-42").assert().code(1);
    assert!(!stderr(&out).contains("s3cr3t-value-42"), "{}", stderr(&out));
    milepost().arg("status").arg(&w).env("MILEPOST_TEST_TOKEN", "s3cr3t-value-42").assert().success();
    let mut checked = 0;
    for entry in walk(&dir.path().join(".milepost")) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("s3cr3t-value-42"),
            "secret in {}",
            entry.display()
        );
        checked += 1;
    }
    assert!(checked >= 4, "journal and logs were written");
    let log = std::fs::read_to_string(
        walk(&dir.path().join(".milepost"))
            .into_iter()
            .find(|p| p.to_string_lossy().ends_with("01-use.log"))
            .unwrap(),
    )
    .unwrap();
    assert!(log.contains("token=***"), "{log}");
}

#[test]
fn an_unwritable_state_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {}
module m { budget "1m"; install { run x "echo ran >> ledger" } }"#,
    )
    .unwrap();
    let blocker = dir.path().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let out = milepost().arg("apply").arg(&w).arg("--state-dir").arg(blocker.join("state")).assert().code(5);
    assert!(stderr(&out).contains("not-a-dir"), "{}", stderr(&out));
    assert!(!dir.path().join("ledger").exists(), "nothing ran without a journal");
}

#[test]
fn verify_reruns_only_validate_steps_and_records_drift() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w { phase "A" { modules m; gate g } }
module m { budget "1m"
    install { run setup "echo once >> installs; touch marker" }
    validate { run marker-present "test -f marker" timeout="300ms" interval="50ms" }
}
gate g { budget "1m"; validate { run ok "echo gate >> gate-checks" } }"#,
    )
    .unwrap();
    milepost().arg("apply").arg(&w).assert().success();
    milepost().arg("verify").arg(&w).assert().success();
    assert_eq!(
        std::fs::read_to_string(dir.path().join("installs")).unwrap().lines().count(),
        1,
        "install never re-runs"
    );
    assert_eq!(std::fs::read_to_string(dir.path().join("gate-checks")).unwrap().lines().count(), 2);

    std::fs::remove_file(dir.path().join("marker")).unwrap();
    let drift = milepost().arg("verify").arg(&w).args(["--node", "m"]).assert().code(1);
    assert!(stderr(&drift).contains("m › marker-present: still failing"), "{}", stderr(&drift));
    assert_eq!(std::fs::read_to_string(dir.path().join("installs")).unwrap().lines().count(), 1);
    let status = milepost().arg("status").arg(&w).arg("--json").assert().success();
    let status: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    assert_eq!(status["nodes"][0]["status"], "failed", "the drift is recorded: {status}");
}

/// Regression: a node that completed in one run and was killed mid-step in the next must
/// run again on resume, not count as done.
#[test]
fn a_crash_after_an_earlier_success_still_reruns_the_interrupted_node() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, r#"workflow w {}
module m { budget "1m"; install { run slow "echo run >> ledger; if [ -f slow ]; then touch started; sleep 5; fi" } }"#).unwrap();
    milepost().arg("apply").arg(&w).assert().success();
    std::fs::write(dir.path().join("slow"), "").unwrap();
    let mut second = crate::support::apply_in_background(&w, &dir.path().join("started"));
    second.kill().unwrap();
    second.wait().unwrap();
    std::fs::remove_file(dir.path().join("slow")).unwrap();
    let resumed = milepost().arg("resume").arg(&w).assert().success();
    assert!(stderr(&resumed).contains("m runs again: interrupted"), "{}", stderr(&resumed));
    assert_eq!(std::fs::read_to_string(dir.path().join("ledger")).unwrap().lines().count(), 3);
}

/// Issue 15 item 5: `verify` of the shipped example passes right after a healthy apply (no
/// gate tears the service down), and fails once what the rollout delivered has drifted.
#[test]
fn verify_of_the_local_example_passes_until_something_drifts() {
    let local = Local::new();
    local.run("apply", false).success();
    let healthy = local.run("verify", false).success();
    let text = stderr(&healthy);
    assert!(text.contains("9 passed, 0 failed"), "{text}");

    // Drift: a seeded record is gone; the restore drill no longer matches the data.
    std::fs::remove_file(local.dir.path().join(".work/staging/data/record-5.txt")).unwrap();
    let drifted = local.run("verify", false).code(1);
    let text = stderr(&drifted);
    assert!(text.contains("deployment-reliability › restore-drill"), "{text}");
}

/// Issue 15 item 5: the service going away after the rollout is drift `verify` reports.
#[test]
fn verify_of_the_local_example_fails_when_the_service_is_down() {
    let local = Local::new();
    local.run("apply", false).success();
    local.stop_service();
    // Wait until the port is closed, so the verify cannot race the service's exit.
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", local.port)).is_err() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let drifted = local.run("verify", false).code(1);
    let text = stderr(&drifted);
    assert!(text.contains("k8s-infra › port"), "{text}");
}

/// Issue 15 item 6: one `skipped` for the console, `run-end` and `history`. A node a
/// fail-fast stop left out has no node-skipped record, and `history` said 0 skipped.
#[test]
fn history_counts_skipped_nodes_as_the_run_did() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w { parallelism 1 }
module a { budget "1m"; install { run boom "exit 3" } }
module b { budget "10s"; install { run fine "true" } }"#,
    )
    .unwrap();
    let applied = milepost().arg("apply").arg(&w).assert().code(1);
    assert!(stderr(&applied).contains("0 passed, 1 failed, 1 skipped"), "{}", stderr(&applied));
    let end = records(&crate::support::rollout_dir(dir.path())).remove(0).pop().unwrap();
    assert!(matches!(end, Record::RunEnd { skipped: 1, .. }), "{end:?}");
    let history = milepost().arg("history").arg(&w).assert().success();
    let text = String::from_utf8_lossy(&history.get_output().stdout).into_owned();
    assert!(text.contains("0 passed, 1 failed, 1 skipped"), "{text}");
}
