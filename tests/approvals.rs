//! Approvals (issue 17): a gate that asks after its checks, a module before its installs;
//! `apply` leaves them waiting (exit 7: no terminal in tests), `approve`/`reject` from other
//! processes decide, `resume` goes on without running a passed step again. Every step appends
//! its name to `ledger`, so what ran, and how often, is read back.

use std::path::Path;
use std::time::Duration;

use crate::support::{
    at_a_terminal, count, diagnostics, has_script, ledger, milepost, rollout_dir, stderr, stdout, Fixture,
};

/// A phase whose gate `g` needs one approval in prod only; `b` waits behind it, `c` does not.
const GATED: &str = r#"workflow w {
    environment staging {}
    environment prod {}
    phase one { modules a; gate g }
}
module a { budget "1m"; install { run a "echo a >> ledger" } }
gate g {
    budget "1m"
    approval environment="prod"
    validate { run check "echo check >> ledger; echo error rate 0.1%" }
}
module b { budget "1m"; after g; install { run b "echo b >> ledger" } }
module c { budget "1m"; install { run c "echo c >> ledger" } }
"#;

impl Fixture {
    /// `milepost <command> <node> w.kdl --env prod` and `extra`, a minute at most.
    fn decide(&self, command: &str, node: &str, extra: &[&str]) -> assert_cmd::assert::Assert {
        milepost()
            .arg(command)
            .arg(node)
            .arg(self.path("w.kdl"))
            .args(["--env", "prod"])
            .args(extra)
            .timeout(Duration::from_secs(60))
            .assert()
    }

    /// `milepost resume w.kdl --env prod`.
    fn resume_prod(&self) -> assert_cmd::assert::Assert {
        milepost()
            .arg("resume")
            .arg(self.path("w.kdl"))
            .args(["--env", "prod"])
            .timeout(Duration::from_secs(60))
            .assert()
    }

    fn steps_run(&self) -> Vec<String> {
        ledger(&self.path(""))
    }

    fn approvals_file(&self) -> std::path::PathBuf {
        rollout_dir(&self.path("")).join("approvals.jsonl")
    }
}

/// Steps that started in the journal of `run_dir`, as `node/step`.
fn started_steps(run_dir: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run_dir.join("journal.jsonl")).unwrap();
    text.lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["type"] == "step-start")
        .map(|r| format!("{}/{}", r["node"].as_str().unwrap(), r["step"].as_str().unwrap()))
        .collect()
}

fn newest_run(f: &Fixture) -> std::path::PathBuf {
    let runs = rollout_dir(&f.path("")).join("runs");
    let mut dirs: Vec<_> = std::fs::read_dir(runs).unwrap().map(|e| e.unwrap().path()).collect();
    dirs.sort();
    dirs.pop().unwrap()
}

/// The Done-when: `apply` stops at the gate with exit 7, `approve` from another process,
/// `resume` continues without running any passed step again.
#[test]
fn apply_waits_at_the_gate_approve_then_resume_runs_nothing_twice() {
    let f = Fixture::new(GATED);
    let out = f.apply(&["--env", "prod"]).code(7);
    let err = stderr(&out);
    assert!(err.contains("rollout waiting for approval: 2 passed, 0 failed, 1 skipped, 1 waiting"), "{err}");
    // Who can approve and the exact command, for the person reading a CI log.
    assert!(err.contains("g waits for approval from anyone who can write the rollout's state"), "{err}");
    assert!(
        err.contains(&format!("approve: milepost approve g {} --env prod", f.path("w.kdl").display())),
        "{err}"
    );
    assert!(err.contains("b skipped: `g` waits for approval"), "{err}");
    // The independent node ran to its end; nothing behind the gate started.
    let mut ran = f.steps_run();
    ran.sort();
    assert_eq!(ran, ["a", "c", "check"]);
    let status =
        stdout(&milepost().arg("status").arg(f.path("w.kdl")).args(["--env", "prod"]).assert().success());
    assert!(status.contains("waiting-approval") && status.contains("milepost approve g"), "{status}");
    let json = stdout(
        &milepost().arg("status").arg(f.path("w.kdl")).args(["--env", "prod", "--json"]).assert().success(),
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    let g = json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "g").unwrap();
    assert_eq!(g["status"], "waiting-approval");

    let out = f.decide("approve", "g", &["--note", "dashboards are green"]).success();
    assert!(stderr(&out).contains("1 of 1 approval(s)"), "{}", stderr(&out));
    let out = f.resume_prod().success();
    assert!(stderr(&out).contains("g approved by"), "{}", stderr(&out));
    // Every step ran exactly once over both runs; the resume started none of g's.
    let all = f.steps_run();
    for step in ["a", "b", "c", "check"] {
        assert_eq!(count(&all, step), 1, "{step}: {all:?}");
    }
    assert_eq!(started_steps(&newest_run(&f)), ["b/b"]);
    // The history lists the request and who decided, with the note.
    let history =
        stdout(&milepost().arg("history").arg(f.path("w.kdl")).args(["--env", "prod"]).assert().success());
    assert!(history.contains("g asked in run") && history.contains("approved by"), "{history}");
    assert!(history.contains("dashboards are green"), "{history}");
    // Staging has no approval line: it never waits.
    f.apply(&["--env", "staging"]).success();
    // A new rollout of prod asks anew: the approval let one rollout through, not every one.
    let out = f.apply(&["--env", "prod"]).code(7);
    assert!(stderr(&out).contains("g asks for approval"), "{}", stderr(&out));
}

/// A rejection ends the rollout failed (exit 1), with the note in the JSON and Markdown
/// reports; a later resume runs the gate's checks again and asks anew.
#[test]
fn reject_fails_the_rollout_with_the_note_in_the_reports() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    // A rejection needs its reason.
    f.decide("reject", "g", &[]).code(2);
    f.decide("reject", "g", &["--note", "   "]).code(2);
    f.decide("reject", "g", &["--note", "p99 latency doubled"]).success();
    // Decided: approving now is refused and says why.
    let out = f.decide("approve", "g", &[]).code(2);
    assert!(stderr(&out).contains("rejected already"), "{}", stderr(&out));
    let out = f.resume_prod().code(1);
    assert!(
        stderr(&out).contains("rejected by") && stderr(&out).contains("p99 latency doubled"),
        "{}",
        stderr(&out)
    );
    let status =
        stdout(&milepost().arg("status").arg(f.path("w.kdl")).args(["--env", "prod"]).assert().success());
    let g = status.lines().find(|l| l.contains(" g ")).unwrap_or_default();
    assert!(g.contains("failed") && g.contains("p99 latency doubled"), "{status}");

    let report = |format: &str| {
        stdout(
            &milepost()
                .arg("report")
                .arg(f.path("w.kdl"))
                .args(["--env", "prod", "--format", format])
                .assert()
                .success(),
        )
    };
    let json: serde_json::Value = serde_json::from_str(&report("json")).unwrap();
    let g = json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "g").unwrap();
    assert_eq!(g["result"], "failed");
    let asked = &g["approvals"][0];
    assert_eq!(asked["outcome"], "rejected");
    assert_eq!(asked["decisions"][0]["decision"], "rejected");
    assert_eq!(asked["decisions"][0]["note"], "p99 latency doubled");
    assert!(asked["evidence"][0]["text"].as_str().unwrap().contains("error rate 0.1%"), "{asked}");
    let markdown = report("markdown");
    assert!(markdown.contains("### Approvals") && markdown.contains("p99 latency doubled"), "{markdown}");
    assert!(report("html").contains("p99 latency doubled"));

    // The next resume runs the checks again from the first and asks again.
    f.resume_prod().code(7);
    assert_eq!(count(&f.steps_run(), "check"), 2, "{:?}", f.steps_run());
    assert_eq!(count(&f.steps_run(), "b"), 0);
}

/// An approval given for the gate's earlier checks does not count once they changed: the
/// resume says so and asks again; `approve` after the change is refused.
#[test]
fn an_approval_for_an_older_definition_does_not_count() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    f.decide("approve", "g", &[]).success();
    let changed = GATED.replace("echo error rate 0.1%", "echo error rate 0.2%");
    std::fs::write(f.path("w.kdl"), &changed).unwrap();
    let out = f.resume_prod().code(7);
    let err = stderr(&out);
    assert!(err.contains("do not count") && err.contains("older definition"), "{err}");
    assert_eq!(count(&f.steps_run(), "check"), 2, "the new checks ran: {:?}", f.steps_run());
    assert_eq!(count(&f.steps_run(), "b"), 0);

    // Changed again while waiting: a decision now would vouch for checks that are gone.
    std::fs::write(f.path("w.kdl"), changed.replace("0.2%", "0.3%")).unwrap();
    let out = f.decide("approve", "g", &[]).code(2);
    assert!(stderr(&out).contains("changed since run"), "{}", stderr(&out));
}

/// `required=2`: the same person approving twice is one approval; the gate still waits and
/// its checks are not run again.
#[test]
fn required_two_with_the_same_person_twice_still_waits() {
    let f = Fixture::new(
        &GATED.replace("approval environment=\"prod\"", "approval required=2 environment=\"prod\""),
    );
    f.apply(&["--env", "prod"]).code(7);
    let first = f.decide("approve", "g", &[]).success();
    assert!(stderr(&first).contains("1 of 2"), "{}", stderr(&first));
    let again = f.decide("approve", "g", &[]).success();
    assert!(stderr(&again).contains("counts once per person"), "{}", stderr(&again));
    let lines = std::fs::read_to_string(f.approvals_file()).unwrap();
    assert_eq!(lines.lines().count(), 1, "a repeat is not recorded: {lines}");
    let out = f.resume_prod().code(7);
    assert!(stderr(&out).contains("1 of 2 so far"), "{}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "check"), 1);
    assert_eq!(count(&f.steps_run(), "b"), 0);
}

/// Refusals: a node not waiting, one that needs no approval, one unknown, a person not
/// among `from`.
#[test]
fn approve_of_a_node_not_waiting_is_refused() {
    let text = GATED.replace(
        "module b { budget \"1m\"; after g;",
        "module b { budget \"1m\"; after g; approval from=\"nobody-has-this-name\";",
    );
    let f = Fixture::new(&text);
    // No run yet: nothing waits.
    let out = f.decide("approve", "g", &[]).code(2);
    assert!(stderr(&out).contains("is not waiting for approval"), "{}", stderr(&out));
    f.apply(&["--env", "prod"]).code(7);
    // b needs approval, but nothing asked yet: it waits behind g.
    let out = f.decide("approve", "b", &[]).code(2);
    assert!(stderr(&out).contains("`b` is not waiting for approval"), "{}", stderr(&out));
    let out = f.decide("approve", "a", &[]).code(2);
    assert!(stderr(&out).contains("`a` needs no approval"), "{}", stderr(&out));
    let out = f.decide("approve", "gg", &[]).code(2);
    assert!(stderr(&out).contains("did you mean `g`?"), "{}", stderr(&out));
    f.decide("approve", "g", &[]).success();
    f.resume_prod().code(7);
    // b asked before its install; this user is not among its `from`.
    let out = f.decide("approve", "b", &[]).code(2);
    assert!(stderr(&out).contains("may not decide on `b`"), "{}", stderr(&out));
    assert!(stderr(&out).contains("nobody-has-this-name"), "{}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "b"), 0);
}

/// A module asks before its first install step: nothing of it ran before the approval.
#[test]
fn a_module_asks_before_its_install_runs() {
    let f = Fixture::new(
        r#"workflow w {}
        module m { budget "1m"; approval; install { run one "echo one >> ledger"; run two "test -f ok && echo two >> ledger" } }
        module after-m { budget "1m"; after m; install { run x "echo x >> ledger" } }
        "#,
    );
    let out = f.apply(&[]).code(7);
    assert!(stderr(&out).contains("m needs approval"), "{}", stderr(&out));
    assert!(f.steps_run().is_empty(), "ran before approval: {:?}", f.steps_run());
    milepost().arg("approve").arg("m").arg(f.path("w.kdl")).assert().success();
    // Its second install step fails until `ok` exists: the approval stands for the resume
    // that continues the same attempt, which does not ask again.
    milepost().arg("resume").arg(f.path("w.kdl")).assert().code(1);
    assert_eq!(f.steps_run(), ["one"]);
    std::fs::write(f.path("ok"), "").unwrap();
    let out = milepost().arg("resume").arg(f.path("w.kdl")).assert().success();
    assert!(!stderr(&out).contains("asks for approval"), "{}", stderr(&out));
    assert!(stderr(&out).contains("m approved by"), "{}", stderr(&out));
    assert_eq!(f.steps_run(), ["one", "two", "x"]);
    let requests = crate::support::walk(&f.path(".milepost"))
        .iter()
        .filter(|p| p.ends_with("journal.jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap().matches("\"approval-requested\"").count())
        .sum::<usize>();
    assert_eq!(requests, 1, "asked once for the whole attempt");
}

/// Two people approving at the same moment: every process succeeds and the store stays
/// whole (the flock orders the appends); the rollout goes on.
#[test]
fn approvers_racing_leave_a_whole_store() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let racers: Vec<_> = (0..6)
        .map(|_| {
            std::process::Command::new(&bin)
                .arg("approve")
                .arg("g")
                .arg(f.path("w.kdl"))
                .args(["--env", "prod"])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut racer in racers {
        assert!(racer.wait().unwrap().success());
    }
    // Each line whole and checksummed: the status and resume read them all.
    let text = std::fs::read_to_string(f.approvals_file()).unwrap();
    assert!((1..=6).contains(&text.lines().count()) && text.ends_with('\n'), "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line).unwrap();
    }
    f.resume_prod().success();
    assert_eq!(count(&f.steps_run(), "b"), 1);
}

/// A damaged approvals file is an error that names the file and line (exit 5), never a
/// panic; a torn last line (a crash mid-append) is ignored.
#[test]
fn a_damaged_approvals_file_is_a_located_error() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    f.decide("approve", "g", &[]).success();
    let path = f.approvals_file();
    let whole = std::fs::read_to_string(&path).unwrap();
    // Torn: half a line after the whole one reads as nothing.
    std::fs::write(&path, format!("{whole}{{\"decision\":\"rejec")).unwrap();
    milepost().arg("status").arg(f.path("w.kdl")).args(["--env", "prod"]).assert().success();
    // Damaged: a changed byte before the last line.
    std::fs::write(&path, format!("{}{whole}", whole.replacen("approved", "rejected", 1))).unwrap();
    let out = f.resume_prod().code(5);
    let err = stderr(&out);
    assert!(err.contains("approvals.jsonl are damaged at line 1") && !err.contains("panicked"), "{err}");
    let out = f.decide("approve", "g", &[]).code(5);
    assert!(stderr(&out).contains("damaged at line 1"), "{}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "b"), 0);
}

/// Hostile `required`, `from` and `environment` values are diagnostics at their place.
#[test]
fn hostile_approval_values_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    // Values wrong on their own (found while decoding)…
    let single = r#"workflow w {
    environment staging {}
    environment prod {}
}
module a { budget "1m"; approval required=0; install { run a "true" } }
module b { budget "1m"; approval required=4294967297; install { run a "true" } }
module c { budget "1m"; approval required="2"; install { run a "true" } }
module d { budget "1m"; approval from="" "  alice"; install { run a "true" } }
module e { budget "1m"; approval "bob" "bob" colour="red"; install { run a "true" } }
module f { budget "1m"; approval from="a\u{7}b"; install { run a "true" } }
"#;
    // …and wrong against the rest of the workflow (found by the cross-node checks).
    let across = r#"workflow w {
    environment staging {}
    environment prod {}
}
module a { budget "1m"; approval environment="prdo"; install { run a "true" } }
module b { budget "1m"; approval; approval; install { run a "true" } }
module c { budget "1m"; approval environment="prod"; approval environment="prod"; install { run a "true" } }
"#;
    let cases: [(&str, &[&str], std::ops::RangeInclusive<usize>); 2] = [
        (
            single,
            &[
                "`required` must be from 1 to 100, found 0",
                "`required` must be from 1 to 100, found 4294967297",
                "`required` must be a whole number",
                "approver `` is empty",
                "has spaces around it",
                "approver `bob` is named twice",
                "colour",
                "has a control character",
            ],
            5..=10,
        ),
        (
            across,
            &[
                "names environment `prdo`, which the workflow does not",
                "did you mean `prod`?",
                "a second `approval` of `b` for every environment",
                "a second `approval` of `c` for environment `prod`",
            ],
            5..=7,
        ),
    ];
    for (i, (text, expected, lines)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("w{i}.kdl"));
        std::fs::write(&path, text).unwrap();
        let shown = diagnostics(&path);
        for e in expected {
            assert!(shown.contains(e), "missing {e:?} in:\n{shown}");
        }
        // Each at its line, as miette draws them.
        for line in lines {
            assert!(shown.contains(&format!("w{i}.kdl:{line}:")), "nothing located at line {line}:\n{shown}");
        }
        milepost().arg("validate").arg(&path).assert().code(3);
    }
}

/// At a terminal `apply` waits, holding the rollout's lock; `approve` from another process
/// decides meanwhile and the waiting run goes on by itself. `script` (util-linux) gives the
/// run its terminal; CI must have it, elsewhere the test says it was skipped.
#[test]
fn at_a_terminal_apply_waits_holding_the_lock_until_approved() {
    if !has_script() {
        assert!(std::env::var_os("CI").is_none(), "CI must have `script` (util-linux)");
        eprintln!("SKIPPED: `script` is not installed");
        return;
    }
    let f = Fixture::new(GATED);
    let apply = apply_prod_line(&f);
    let mut waiting = at_a_terminal(&apply, "/dev/null");
    let status = || {
        let out =
            milepost().arg("status").arg(f.path("w.kdl")).args(["--env", "prod", "--json"]).output().unwrap();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()
    };
    let g_is = |s: &serde_json::Value, what: &str| {
        s["nodes"].as_array().is_some_and(|n| n.iter().any(|n| n["id"] == "g" && n["status"] == what))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !g_is(&status(), "waiting-approval") {
        assert!(std::time::Instant::now() < deadline, "g never asked: {}", status());
        std::thread::sleep(Duration::from_millis(100));
    }
    // Still running and holding the lock: another rollout is refused.
    assert!(waiting.try_wait().unwrap().is_none(), "apply did not wait at the terminal");
    f.resume_prod().code(4);
    f.decide("approve", "g", &[]).success();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = waiting.try_wait().unwrap() {
            break exit;
        }
        if std::time::Instant::now() > deadline {
            let _ = waiting.kill();
            panic!("the waiting apply did not go on after the approval");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(exit.code(), Some(0));
    assert_eq!(count(&f.steps_run(), "b"), 1);
    assert_eq!(count(&f.steps_run(), "check"), 1);
    // One run did it all: no resume was needed.
    assert_eq!(std::fs::read_dir(rollout_dir(&f.path("")).join("runs")).unwrap().count(), 1);
}

// ---- Adversarial review of approvals ----

/// The output of `id FLAG` (this process's user or group name).
fn id(flag: &str) -> String {
    let out = std::process::Command::new("id").arg(flag).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn status_of(f: &Fixture, node: &str) -> serde_json::Value {
    let json = stdout(
        &milepost().arg("status").arg(f.path("w.kdl")).args(["--env", "prod", "--json"]).assert().success(),
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == node).unwrap().clone()
}

/// `from` is not part of the hash, and "the current definition's rule applies to the
/// standing request": someone approved, then taken out of `from`, no longer counts.
#[test]
fn an_approver_taken_out_of_from_no_longer_counts() {
    let me = id("-un");
    let text = GATED.replace(
        "approval environment=\"prod\"",
        &format!("approval from=\"{me}\" \"someone-else\" environment=\"prod\""),
    );
    let f = Fixture::new(&text);
    f.apply(&["--env", "prod"]).code(7);
    f.decide("approve", "g", &[]).success();
    std::fs::write(f.path("w.kdl"), text.replace(&format!("from=\"{me}\" "), "from=")).unwrap();
    let out = f.resume_prod().code(7);
    assert_eq!(
        count(&f.steps_run(), "b"),
        0,
        "b ran on the approval of someone no longer in `from`: {}",
        stderr(&out)
    );
    assert_eq!(count(&f.steps_run(), "check"), 1, "the checks were not changed: not run again");
    assert_eq!(status_of(&f, "g")["status"], "waiting-approval");
}

/// A person in `from` only through a group may decide, and their approval counts.
#[test]
fn an_approver_in_from_by_group_only_may_approve() {
    let group = id("-gn");
    let text = GATED.replace(
        "approval environment=\"prod\"",
        &format!("approval from=\"{group}\" \"nobody-has-this-name\" environment=\"prod\""),
    );
    let f = Fixture::new(&text);
    f.apply(&["--env", "prod"]).code(7);
    f.decide("approve", "g", &[]).success();
    f.resume_prod().success();
    assert_eq!(count(&f.steps_run(), "b"), 1);
}

/// `verify` of a rollout whose gate waits re-checks; it must not let the gate through
/// without its approval (verify asks for none).
#[test]
fn verify_of_a_waiting_rollout_does_not_pass_the_gate() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    let _ = milepost()
        .arg("verify")
        .arg(f.path("w.kdl"))
        .args(["--env", "prod"])
        .timeout(Duration::from_secs(60))
        .assert();
    assert_eq!(count(&f.steps_run(), "b"), 0, "{:?}", f.steps_run());
    assert_eq!(status_of(&f, "g")["status"], "waiting-approval", "verify answered the request");
    // The request still stands: approve, then resume goes on without asking again.
    f.decide("approve", "g", &[]).success();
    let out = f.resume_prod().success();
    assert!(!stderr(&out).contains("asks for approval"), "{}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "b"), 1);
}

/// `--keep-going` with a gate left waiting and an independent failure: the failure's exit
/// code (1) wins over waiting (7), as docs/exit-codes.md orders them.
#[test]
fn keep_going_with_a_waiting_gate_and_a_failure_exits_1() {
    let f = Fixture::new(&GATED.replace("echo c >> ledger", "echo c >> ledger; false"));
    let out = f.apply(&["--env", "prod", "--keep-going"]).code(1);
    assert!(stderr(&out).contains("g waits for approval"), "{}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "b"), 0);
    // The waiting gate is not undone or failed by the other node's failure.
    assert_eq!(status_of(&f, "g")["status"], "waiting-approval");
}

/// Hostile notes: too long, control characters, not UTF-8: clear refusals, never a panic,
/// and nothing a terminal would obey reaches `status`/`history`.
#[test]
fn hostile_notes_are_refused_clearly() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    let long = "x".repeat(50 * 1024);
    let out = f.decide("approve", "g", &["--note", &long]).code(2);
    assert!(stderr(&out).contains("at most 4096"), "{}", stderr(&out));
    let out = f.decide("reject", "g", &["--note", "fine\u{1b}]0;owned\u{7}\u{1b}[2J"]).code(2);
    assert!(stderr(&out).contains("control character"), "{}", stderr(&out));
    {
        use std::os::unix::ffi::OsStrExt;
        let out = milepost()
            .arg("approve")
            .arg("g")
            .arg(f.path("w.kdl"))
            .args(["--env", "prod", "--note"])
            .arg(std::ffi::OsStr::from_bytes(b"caf\xe9"))
            .assert()
            .code(2);
        assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    }
    assert!(!f.approvals_file().exists(), "nothing was recorded");
    // Shell metacharacters in values shown in the printed command are quoted.
    let out = f
        .decide("reject", "g", &["--note", "it's $(rm -rf ~) `bad`; \"quoted\" \\ tab\there\nsecond line"])
        .success();
    assert!(!stderr(&out).contains("panicked"));
    let out = f.resume_prod().code(1);
    assert!(stderr(&out).contains("$(rm -rf ~)"), "{}", stderr(&out));
    for command in ["status", "history"] {
        let out =
            stdout(&milepost().arg(command).arg(f.path("w.kdl")).args(["--env", "prod"]).assert().success());
        assert!(!out.contains('\u{1b}'), "{command}: {out:?}");
    }
}

/// A rejection, then `rollback`: the rollback undoes what installed; the gate is asked
/// anew by the next rollout, and the rejection stays in the history.
#[test]
fn a_rejection_then_rollback() {
    let text = GATED.replace(
        "install { run a \"echo a >> ledger\" }",
        "install { run a \"echo a >> ledger\" }; rollback { run undo-a \"echo undo-a >> ledger\" }",
    );
    let f = Fixture::new(&text);
    f.apply(&["--env", "prod"]).code(7);
    f.decide("reject", "g", &["--note", "no go"]).success();
    f.resume_prod().code(1);
    let out = milepost()
        .arg("rollback")
        .arg(f.path("w.kdl"))
        .args(["--env", "prod", "--phase", "one", "--yes"])
        .timeout(Duration::from_secs(60))
        .assert();
    let code = out.get_output().status.code();
    assert!(matches!(code, Some(0)), "{code:?}: {}", stderr(&out));
    assert!(!stderr(&out).contains("panicked"));
    assert_eq!(count(&f.steps_run(), "undo-a"), 1, "{:?}", f.steps_run());
    // Nothing waits any more: approving now is refused.
    f.decide("approve", "g", &[]).code(2);
    let history =
        stdout(&milepost().arg("history").arg(f.path("w.kdl")).args(["--env", "prod"]).assert().success());
    assert!(history.contains("no go"), "{history}");
    // A new rollout asks again.
    f.apply(&["--env", "prod"]).code(7);
}

/// Approval only in staging: prod never waits; a prod promotion that requires staging is
/// refused while staging's gate waits (a waiting gate has not passed).
#[test]
fn a_promotion_over_a_gate_waiting_in_staging_is_refused() {
    let text = GATED
        .replace("approval environment=\"prod\"", "approval environment=\"staging\"")
        .replace("environment prod {}", "environment prod { requires staging }");
    let f = Fixture::new(&text);
    milepost()
        .arg("apply")
        .arg(f.path("w.kdl"))
        .args(["--env", "staging"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(7);
    let out = f.apply(&["--env", "prod"]);
    let code = out.get_output().status.code();
    assert_ne!(code, Some(0), "prod ran over a staging gate that waits: {}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "b"), 0, "{:?}", f.steps_run());
    milepost()
        .arg("approve")
        .arg("g")
        .arg(f.path("w.kdl"))
        .args(["--env", "staging"])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    milepost()
        .arg("resume")
        .arg(f.path("w.kdl"))
        .args(["--env", "staging"])
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    // Prod has no approval line: it never waits.
    f.apply(&["--env", "prod"]).success();
}

/// The children of process `pid`.
fn children(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// SIGKILL of an `apply` waiting at a terminal, a torn line left in approvals.jsonl, then
/// approve and resume: no new request, no passed step again.
#[test]
fn sigkill_of_a_waiting_apply_then_approve_and_resume() {
    if !has_script() {
        eprintln!("SKIPPED: `script` is not installed");
        return;
    }
    let f = Fixture::new(GATED);
    let apply = format!("exec {}", apply_prod_line(&f));
    let mut script = at_a_terminal(&apply, "/dev/null");
    until_g_asks(&f);
    // A torn line, as a crashed approver would leave, while apply waits.
    std::fs::write(f.approvals_file(), "{\"decision\":\"appro").unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(script.try_wait().unwrap().is_none(), "apply stopped on a torn line");
    let apply_pid = children(script.id());
    assert_eq!(apply_pid.len(), 1, "{apply_pid:?}");
    nix_kill(apply_pid[0]);
    let _ = script.wait();
    f.decide("approve", "g", &[]).success();
    let out = f.resume_prod().success();
    assert!(!stderr(&out).contains("asks for approval"), "{}", stderr(&out));
    for step in ["a", "b", "c", "check"] {
        assert_eq!(count(&f.steps_run(), step), 1, "{step}: {:?}", f.steps_run());
    }
}

fn nix_kill(pid: u32) {
    std::process::Command::new("kill").args(["-KILL", &pid.to_string()]).status().unwrap();
}

/// A rollback of the phase while its gate waits: what the gate's checks vouched for is
/// undone, so an approval given afterwards must not let what waits behind it run on top of
/// nothing.
#[test]
fn a_rollback_while_the_gate_waits_then_approve_and_resume() {
    let text = GATED.replace(
        "install { run a \"echo a >> ledger\" }",
        "install { run a \"echo a >> ledger\" }; rollback { run undo-a \"echo undo-a >> ledger\" }",
    );
    let f = Fixture::new(&text);
    f.apply(&["--env", "prod"]).code(7);
    let out = milepost()
        .arg("rollback")
        .arg(f.path("w.kdl"))
        .args(["--env", "prod", "--phase", "one", "--yes"])
        .timeout(Duration::from_secs(60))
        .assert();
    assert!(!stderr(&out).contains("panicked"), "{}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "undo-a"), 1, "{:?} {}", f.steps_run(), stderr(&out));
    // Approved on the evidence of checks of what is undone now.
    f.decide("approve", "g", &[]).success();
    // The resume installs a again and runs g's checks again: they show something nobody
    // has seen, so g asks anew rather than going on on the old approval.
    let out = f.resume_prod().code(7);
    assert!(
        stderr(&out).contains("checks ran again") && stderr(&out).contains("g asks for approval"),
        "{}",
        stderr(&out)
    );
    assert_eq!(count(&f.steps_run(), "b"), 0, "{:?}", f.steps_run());
    assert_eq!(count(&f.steps_run(), "a"), 2, "{:?}", f.steps_run());
    assert_eq!(count(&f.steps_run(), "check"), 2, "{:?}", f.steps_run());
    f.decide("approve", "g", &[]).success();
    f.resume_prod().success();
    assert_eq!(count(&f.steps_run(), "b"), 1, "{:?}", f.steps_run());
    assert_eq!(count(&f.steps_run(), "check"), 2, "the approved checks are not run a third time");
}

/// `milepost apply w.kdl --env prod` at a terminal (`script`), once its gate `g` waits:
/// the `script` process and the pid of milepost itself. `None` without `script`.
fn apply_waiting_at_a_terminal(f: &Fixture) -> Option<(std::process::Child, u32)> {
    if !has_script() {
        eprintln!("SKIPPED: `script` is not installed");
        return None;
    }
    let apply = format!("exec {}", apply_prod_line(f));
    // The terminal's output (stderr included) goes to the typescript `apply.stderr`.
    let typescript = f.path("apply.stderr").display().to_string();
    let script = at_a_terminal(&apply, &typescript);
    until_g_asks(f);
    let pid = children(script.id());
    assert_eq!(pid.len(), 1, "{pid:?}");
    Some((script, pid[0]))
}

/// The exit code of `child` within 30 seconds.
fn exit_within(child: &mut std::process::Child) -> Option<i32> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(exit) = child.try_wait().unwrap() {
            return exit.code();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A rejection while `apply` waits at a terminal: the waiting run sees it and ends failed
/// (exit 1) with the note; nothing behind the gate ran.
#[test]
fn a_rejection_while_apply_waits_at_a_terminal_ends_it_failed() {
    let f = Fixture::new(GATED);
    let Some((mut script, _)) = apply_waiting_at_a_terminal(&f) else { return };
    f.decide("reject", "g", &["--note", "error budget spent"]).success();
    let code = exit_within(&mut script);
    let err = std::fs::read_to_string(f.path("apply.stderr")).unwrap_or_default();
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("error budget spent"), "{err}");
    assert_eq!(count(&f.steps_run(), "b"), 0);
}

/// Ctrl-C (SIGINT) of an `apply` waiting at a terminal: exit 130 (over 7), the request
/// stands; approve, and resume goes on without a new request or running the checks again.
#[test]
fn sigint_of_a_waiting_apply_exits_130_and_the_request_stands() {
    let f = Fixture::new(GATED);
    let Some((mut script, pid)) = apply_waiting_at_a_terminal(&f) else { return };
    std::process::Command::new("kill").args(["-INT", &pid.to_string()]).status().unwrap();
    let code = exit_within(&mut script);
    let err = std::fs::read_to_string(f.path("apply.stderr")).unwrap_or_default();
    assert_eq!(code, Some(130), "{err}");
    assert_eq!(status_of(&f, "g")["status"], "waiting-approval");
    f.decide("approve", "g", &[]).success();
    let out = f.resume_prod().success();
    assert!(!stderr(&out).contains("asks for approval"), "{}", stderr(&out));
    for step in ["a", "b", "c", "check"] {
        assert_eq!(count(&f.steps_run(), step), 1, "{step}: {:?}", f.steps_run());
    }
}

/// approvals.jsonl damaged (not torn) while `apply` waits at a terminal: the run says
/// where, leaves the gate waiting, and ends as a store that cannot be read ends (exit 5),
/// not as "approve, then resume" (7); after a restore, approve and resume go on.
#[test]
fn approvals_damaged_while_apply_waits_is_a_located_error() {
    let f = Fixture::new(GATED);
    let Some((mut script, _)) = apply_waiting_at_a_terminal(&f) else { return };
    std::fs::write(f.approvals_file(), "garbage\n").unwrap();
    let code = exit_within(&mut script);
    let err = std::fs::read_to_string(f.path("apply.stderr")).unwrap_or_default();
    assert!(err.contains("approvals.jsonl are damaged at line 1") && !err.contains("panicked"), "{err}");
    assert_eq!(code, Some(5), "{err}");
    assert!(!err.contains("once decided"), "no advice that cannot work: {err}");
    let out = milepost().arg("status").arg(f.path("w.kdl")).args(["--env", "prod"]).assert().code(5);
    assert!(stderr(&out).contains("damaged at line 1"), "{}", stderr(&out));
    std::fs::remove_file(f.approvals_file()).unwrap();
    assert_eq!(status_of(&f, "g")["status"], "waiting-approval");
    f.decide("approve", "g", &[]).success();
    f.resume_prod().success();
    for step in ["a", "b", "c", "check"] {
        assert_eq!(count(&f.steps_run(), step), 1, "{step}: {:?}", f.steps_run());
    }
}

/// `resume --from g` starts g anew: the approval of its earlier request does not carry over.
#[test]
fn resume_from_a_gate_asks_anew() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    f.decide("approve", "g", &[]).success();
    let out = milepost()
        .arg("resume")
        .arg(f.path("w.kdl"))
        .args(["--env", "prod", "--from", "g"])
        .timeout(Duration::from_secs(60))
        .assert()
        .code(7);
    assert!(stderr(&out).contains("g asks for approval"), "{}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "b"), 0);
    assert_eq!(count(&f.steps_run(), "check"), 2);
}

/// Two modules waiting side by side, one rejected and one approved: the resume records
/// the rejection and lets the approved one go on (now or on the next resume); the rejected
/// one asks anew, and nothing of it installs.
#[test]
fn two_waiting_modules_one_rejected_one_approved() {
    let f = Fixture::new(
        r#"workflow w {
    environment prod {}
}
module m1 { budget "1m"; approval; install { run m1 "echo m1 >> ledger" } }
module m2 { budget "1m"; approval; install { run m2 "echo m2 >> ledger" } }
module b1 { budget "1m"; after m1; install { run b1 "echo b1 >> ledger" } }
module b2 { budget "1m"; after m2; install { run b2 "echo b2 >> ledger" } }
"#,
    );
    f.apply(&["--env", "prod"]).code(7);
    f.decide("reject", "m1", &["--note", "not m1"]).success();
    f.decide("approve", "m2", &[]).success();
    let out = f.resume_prod().code(1);
    assert!(stderr(&out).contains("not m1"), "{}", stderr(&out));
    if count(&f.steps_run(), "m2") == 0 {
        // Fail-fast stopped before m2 went on: its request still stands.
        assert_eq!(status_of(&f, "m2")["status"], "waiting-approval");
    }
    // The next resume: m1 asks anew; m2 goes on if it has not.
    let out = f.resume_prod().code(7);
    assert!(stderr(&out).contains("m1 needs approval"), "{}", stderr(&out));
    let ran = f.steps_run();
    assert_eq!((count(&ran, "m1"), count(&ran, "b1")), (0, 0), "{ran:?}");
    assert_eq!((count(&ran, "m2"), count(&ran, "b2")), (1, 1), "{ran:?}");
}

/// The printed `approve`/`reject` commands, for a workflow in a folder whose name is full
/// of shell metacharacters, with a `--var` value likewise: pasted into a shell as printed,
/// they work and do nothing else.
#[test]
fn printed_commands_survive_a_shell_with_hostile_paths_and_values() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("it's a $(touch pwned) `dir`; \"x\" & y");
    std::fs::create_dir_all(&dir).unwrap();
    let text = GATED.replace("workflow w {", "workflow w {\n    vars { note \"n\" }");
    std::fs::write(dir.join("w.kdl"), &text).unwrap();
    let out = milepost()
        .current_dir(&dir)
        .arg("apply")
        .arg(dir.join("w.kdl"))
        .args(["--env", "prod", "--var", "note=$(touch pwned2) 'q' \"d\""])
        .timeout(Duration::from_secs(60))
        .assert();
    let err = stderr(&out);
    assert_eq!(out.get_output().status.code(), Some(7), "{err}");
    let approve = err
        .lines()
        .find_map(|l| l.trim().strip_prefix("approve: "))
        .unwrap_or_else(|| panic!("no approve command: {err}"))
        .to_string();
    let bin_dir = assert_cmd::cargo::cargo_bin("milepost").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let ran = std::process::Command::new("sh")
        .args(["-c", &approve])
        .current_dir(root.path())
        .env("PATH", path)
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    assert!(ran.status.success(), "{approve}: {}", String::from_utf8_lossy(&ran.stderr));
    for marker in ["pwned", "pwned2"] {
        assert!(!root.path().join(marker).exists() && !dir.join(marker).exists(), "the shell ran {marker}");
    }
    let text = std::fs::read_to_string(rollout_dir(&dir).join("approvals.jsonl")).unwrap();
    assert_eq!(text.lines().count(), 1, "{text}");
}

/// An approval of an old request that lands after a new rollout asked again (an approver
/// who read the old request just before `apply` started the gate anew): it answers the old
/// request only; the new one still waits.
#[test]
fn an_approval_of_an_old_request_landing_late_does_not_count() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    f.decide("approve", "g", &[]).success();
    let late = std::fs::read_to_string(f.approvals_file()).unwrap();
    std::fs::remove_file(f.approvals_file()).unwrap();
    // A new rollout asks anew; then the old approval lands.
    f.apply(&["--env", "prod"]).code(7);
    std::fs::write(f.approvals_file(), &late).unwrap();
    let out = f.resume_prod().code(7);
    assert!(!stderr(&out).contains("approved by"), "{}", stderr(&out));
    assert_eq!(count(&f.steps_run(), "b"), 0);
    assert_eq!(status_of(&f, "g")["status"], "waiting-approval");
    // It is the new request approve answers.
    let out = f.decide("approve", "g", &[]).success();
    assert!(stderr(&out).contains("1 of 1"), "{}", stderr(&out));
    f.resume_prod().success();
    assert_eq!(count(&f.steps_run(), "b"), 1);
}

/// A rejection after the request has its approvals comes after the decision: refused, with
/// what to do instead, and nothing recorded (the rollout goes on as approved).
#[test]
fn a_rejection_after_the_approvals_are_in_is_refused() {
    let f = Fixture::new(GATED);
    f.apply(&["--env", "prod"]).code(7);
    f.decide("approve", "g", &[]).success();
    let out = f.decide("reject", "g", &["--note", "too late"]).code(2);
    let err = stderr(&out);
    assert!(err.contains("has its approvals already") && err.contains("milepost rollback"), "{err}");
    let store = std::fs::read_to_string(f.approvals_file()).unwrap();
    assert!(!store.contains("too late"), "{store}");
    f.resume_prod().success();
    assert_eq!(count(&f.steps_run(), "b"), 1);
}

/// `milepost apply w.kdl --env prod --progress plain`, as shell text.
fn apply_prod_line(f: &Fixture) -> String {
    shell_words::join([
        assert_cmd::cargo::cargo_bin("milepost").display().to_string(),
        "apply".into(),
        f.path("w.kdl").display().to_string(),
        "--env".into(),
        "prod".into(),
        "--progress".into(),
        "plain".into(),
    ])
}

/// Waits (30 s at most) until `status` says gate `g` waits for approval.
fn until_g_asks(f: &Fixture) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let out =
            milepost().arg("status").arg(f.path("w.kdl")).args(["--env", "prod", "--json"]).output().unwrap();
        let s = serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default();
        if s["nodes"]
            .as_array()
            .is_some_and(|n| n.iter().any(|n| n["id"] == "g" && n["status"] == "waiting-approval"))
        {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "g never asked");
        std::thread::sleep(Duration::from_millis(100));
    }
}
