//! `when` conditions: decided from vars at load, from outcomes when a node would start; a
//! failure handler that runs after its failed dependency; plan, resume, hashes and located
//! errors. Every workflow runs in a temp dir of its own.

use std::path::Path;
use std::time::Duration;

use crate::support::{diagnostics, milepost, rollout_dir, stderr, stdout, Fixture};

impl Fixture {
    /// The lines the steps appended to `ledger`, in order.
    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.path("ledger")).unwrap_or_default().lines().map(String::from).collect()
    }

    /// Every journal of the rollout, oldest first, as text.
    fn journals(&self) -> Vec<String> {
        let runs = rollout_dir(&self.path("")).join("runs");
        let mut dirs: Vec<_> = std::fs::read_dir(runs).unwrap().flatten().map(|e| e.path()).collect();
        dirs.sort();
        dirs.iter().map(|d| std::fs::read_to_string(d.join("journal.jsonl")).unwrap()).collect()
    }

    fn resume(&self) -> assert_cmd::assert::Assert {
        milepost().arg("resume").arg(self.path("w.kdl")).timeout(Duration::from_secs(60)).assert()
    }
}

const BY_PROFILE: &str = r#"workflow w { vars { profile "dev" } }
module base { budget "1m"; install { run a "echo base >> ledger" } }
module prod-only { budget "30m"; after base; when "{{ vars.profile == 'prod' }}"
    install { run a "echo prod-only >> ledger" } }
module last { budget "1m"; after prod-only
    install {
        run a "echo last.a >> ledger"
        run b "echo last.b >> ledger" when="{{ vars.profile == 'prod' }}"
        run c "echo last.c >> ledger" when="{{ vars.profile != 'prod' }}"
    } }
"#;

#[test]
fn vars_decide_at_load_which_modules_and_steps_run() {
    let f = Fixture::new(BY_PROFILE);
    let run = f.apply(&[]).success();
    // A module skipped by its condition lets what comes after it run.
    assert_eq!(f.lines(), ["base", "last.a", "last.c"], "{}", stderr(&run));
    let text = stderr(&run);
    assert!(text.contains("prod-only skipped: when {{ vars.profile == 'prod' }} is false"), "{text}");
    assert!(text.contains("last › b skipped: when {{ vars.profile == 'prod' }} is false"), "{text}");
    let journal = &f.journals()[0];
    assert!(
        journal.contains(r#""type":"node-skipped","node":"prod-only","reason":{"condition""#),
        "{journal}"
    );
    assert!(journal.contains(r#""type":"step-skipped","node":"last","step":"b""#), "{journal}");

    let g = Fixture::new(BY_PROFILE);
    g.apply(&["--var", "profile=prod"]).success();
    assert_eq!(g.lines(), ["base", "prod-only", "last.a", "last.b"]);
}

/// A module that fails, a diagnostics module that runs only when it failed, and a module
/// after it without a condition.
fn handler_workflow(ha_dr: &str) -> String {
    format!(
        r#"workflow w {{ parallelism 2 }}
module ha-dr {{ budget "1m"; install {{ run a "echo start ha-dr >> ledger; {ha_dr}" }} }}
module diagnostics {{ budget "1m"; after ha-dr; when "{{{{ nodes.ha-dr.outcome == 'failed' }}}}"
    install {{
        run collect "echo diagnostics >> ledger"
        run upload "echo upload failed; exit 5"
    }} }}
module app {{ budget "1m"; after ha-dr; install {{ run a "echo app >> ledger" }} }}
"#
    )
}

#[test]
fn a_diagnostics_module_runs_after_its_failed_dependency_and_the_failure_stays_first() {
    let f = Fixture::new(&handler_workflow("exit 3"));
    let run = f.apply(&[]).code(1);
    let text = stderr(&run);
    // It ran after ha-dr ended; app, which needs ha-dr to pass, did not.
    assert_eq!(f.lines(), ["start ha-dr", "diagnostics"], "{text}");
    assert!(text.contains("app skipped: `ha-dr` failed"), "{text}");
    // The original failure is reported first, the handler's own after it.
    let original = text.find("✗ ha-dr › a").expect("ha-dr's failure is reported");
    let handler = text.find("✗ diagnostics › upload").expect("the handler's failure is reported");
    assert!(original < handler, "{text}");
    assert!(text.contains("0 passed, 2 failed, 1 skipped"), "{text}");
    let journal = &f.journals()[0];
    let started = |node: &str| journal.find(&format!(r#""type":"node-start","node":"{node}""#)).unwrap();
    let ended = journal.find(r#""type":"node-end","node":"ha-dr""#).unwrap();
    assert!(ended < started("diagnostics"), "{journal}");
}

#[test]
fn a_failure_handler_is_skipped_when_its_dependency_passed() {
    let f = Fixture::new(&handler_workflow("true"));
    let run = f.apply(&[]).success();
    let text = stderr(&run);
    assert_eq!(f.lines(), ["start ha-dr", "app"], "{text}");
    assert!(
        text.contains("diagnostics skipped: when {{ nodes.ha-dr.outcome == 'failed' }} is false"),
        "{text}"
    );
}

#[test]
fn plan_shows_conditions_and_a_skipped_module_takes_no_time() {
    let f = Fixture::new(BY_PROFILE);
    let plan = |extra: &[&str]| {
        milepost()
            .arg("plan")
            .arg(f.path("w.kdl"))
            .args(extra)
            .timeout(Duration::from_secs(30))
            .assert()
            .success()
    };
    let text = stdout(&plan(&["--steps"]));
    assert!(
        text.contains(
            "when {{ vars.profile == 'prod' }} = false → skipped (when {{ vars.profile == 'prod' }})"
        ),
        "{text}"
    );
    assert!(text.contains("echo last.b >> ledger  skipped (when {{ vars.profile == 'prod' }})"), "{text}");
    assert!(text.contains("echo last.c >> ledger  when {{ vars.profile != 'prod' }} = true"), "{text}");
    assert!(text.contains("skipped        prod-only (when {{ vars.profile == 'prod' }})"), "{text}");
    // In the timeline the skipped module takes nothing: base and last, a minute each.
    let json: serde_json::Value = serde_json::from_str(&stdout(&plan(&["--format", "json"]))).unwrap();
    assert_eq!(json["totals"]["finish_secs"], 120, "{json}");
    let prod_only = json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "prod-only").unwrap();
    assert_eq!(
        (prod_only["planned_secs"].as_u64(), prod_only["duration_source"].as_str()),
        (Some(0), Some("skipped"))
    );
    // With prod, it is planned like any module.
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&plan(&["--format", "json", "--var", "profile=prod"]))).unwrap();
    assert_eq!(json["totals"]["finish_secs"], 32 * 60, "{json}");
}

#[test]
fn resume_does_not_run_a_skipped_node_and_does_not_rerun_passed_steps() {
    let f = Fixture::new(
        r#"workflow w { vars { profile "dev" } }
module first { budget "1m"; install { run a "echo first >> ledger" } }
module prod-only { budget "1m"; when "{{ vars.profile == 'prod' }}"; install { run a "echo prod-only >> ledger" } }
module second { budget "1m"; after first prod-only
    install {
        run a "echo second.a >> ledger"
        run b "echo second.b >> ledger" when="{{ vars.profile == 'prod' }}"
        run c "echo second.c >> ledger; test -e fixed"
    } }
"#,
    );
    f.apply(&[]).code(1);
    assert_eq!(f.lines(), ["first", "second.a", "second.c"]);
    std::fs::write(f.path("fixed"), "").unwrap();
    let resumed = f.resume().success();
    assert_eq!(f.lines(), ["first", "second.a", "second.c", "second.c"], "{}", stderr(&resumed));
    let journals = f.journals();
    assert!(journals[1].contains(r#""node":"prod-only","reason":{"condition""#), "{}", journals[1]);
    assert!(!journals[1].contains(r#""type":"node-start","node":"prod-only""#), "{}", journals[1]);
}

#[test]
fn the_condition_is_part_of_the_step_and_node_hash() {
    let dir = tempfile::tempdir().unwrap();
    let hashes = |when: &str, step_when: &str| {
        let file = dir.path().join("w.kdl");
        std::fs::write(
            &file,
            format!(
                r#"workflow w {{ vars {{ profile "dev" }} }}
module m {{ budget "1m"; {when} install {{ run a "true" {step_when} }} }}"#
            ),
        )
        .unwrap();
        let loaded = milepost::spec::load(&file, &Default::default()).map_err(|e| format!("{e:?}")).unwrap();
        let node = &loaded.workflow.nodes[0];
        (milepost::state::step_hash(node, &node.install[0]), milepost::state::node_hash(node))
    };
    let plain = hashes("", "");
    let step = hashes("", r#"when="{{ vars.profile == 'dev' }}""#);
    let other_step = hashes("", r#"when="{{ vars.profile != 'prod' }}""#);
    let node = hashes(r#"when "{{ vars.profile == 'dev' }}";"#, "");
    assert_ne!(plain.0, step.0);
    assert_ne!(step.0, other_step.0);
    assert_eq!(plain.0, node.0, "a module's condition is not its steps'");
    assert_ne!(plain.1, node.1);
}

fn problems_of(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.kdl");
    std::fs::write(&file, text).unwrap();
    diagnostics(Path::new(&file))
}

#[test]
fn condition_errors_are_located_with_help() {
    let text = problems_of(
        r#"workflow w { vars { profile "dev" } }
module a { budget "1m"; install { run a "true" } }
module b { budget "1m"; when "vars.profile == 'prod'"; install { run a "true" } }
module c { budget "1m"; when "{{ nodes.a.outcome == 'failed' }}"; install { run a "true" } }
module d { budget "1m"; after a; when "{{ nodes.aa.outcome == 'failed' }}"; install { run a "true" } }
module e { budget "1m"; install { run a "true" when="{{ vars.profil == 'x' }}" } }
module f { budget "1m"; install { run a "true" when="{{ vars.profile }}" } }
module g { budget "1m"; install { run a "true" when="{{ vars.profile == }}" } }
module h { budget "1m"; after a; when "{{ nodes.a == 'failed' }}"; install { run a "true" } }
"#,
    );
    let expect = [
        ("the condition `vars.profile == 'prod'` is a bare expression", "w.kdl:3:30"),
        ("help: a condition is a tera expression in braces: \"{{ vars.profile ==", ""),
        ("the condition reads the outcome of `a`, which `c` does not run after", "w.kdl:4:30"),
        ("help: add `after a` to `c`", ""),
        ("the condition reads the outcome of `aa`, which is not defined", "w.kdl:5:39"),
        ("help: did you mean `a`?", ""),
        ("undefined template variable `vars.profil`", "w.kdl:6:48"),
        ("help: did you mean `vars.profile`?", ""),
        ("the condition gives \"dev\", not true or false", "w.kdl:7:48"),
        ("template does not render", "w.kdl:8:48"),
        ("the condition reads `nodes.a`", "w.kdl:9:39"),
        ("help: a condition reads a node's outcome: nodes.<id>.outcome == 'failed'", ""),
    ];
    for (message, at) in expect {
        let found = text.find(message).unwrap_or_else(|| panic!("`{message}` missing from:\n{text}"));
        if !at.is_empty() {
            let after = &text[found..];
            let start = after.find("╭─[").expect("a source excerpt follows") + "╭─[".len();
            let location = &after[start..start + after[start..].find(']').unwrap()];
            assert!(location.ends_with(at), "`{message}` is located at {location}, not {at}:\n{text}");
        }
    }
}

#[test]
fn on_resume_a_node_done_in_an_earlier_run_counts_as_passed() {
    let f = Fixture::new(
        r#"workflow w { }
module a { budget "1m"; install { run a "echo a >> ledger" } }
module b { budget "1m"; after a; install { run b "echo b >> ledger; test -e fixed" } }
module c { budget "1m"; after b; when "{{ nodes.a.outcome == 'passed' }}"; install { run c "echo c >> ledger" } }
module d { budget "1m"; after b; when "{{ nodes.a.outcome != 'passed' }}"; install { run d "echo d >> ledger" } }
"#,
    );
    let failed = f.apply(&[]).code(1);
    assert!(stderr(&failed).contains("c skipped: `b` failed"), "{}", stderr(&failed));
    std::fs::write(f.path("fixed"), "").unwrap();
    let resumed = f.resume().success();
    let text = stderr(&resumed);
    assert_eq!(f.lines(), ["a", "b", "b", "c"], "{text}");
    assert!(text.contains("d skipped: when {{ nodes.a.outcome != 'passed' }} is false"), "{text}");
    let status =
        milepost().arg("status").arg(f.path("w.kdl")).timeout(Duration::from_secs(30)).assert().success();
    let status = stdout(&status);
    assert!(status.contains("done"), "{status}");
}

#[test]
fn status_says_a_node_skipped_at_load_is_skipped() {
    let f = Fixture::new(BY_PROFILE);
    f.apply(&[]).success();
    let status =
        milepost().arg("status").arg(f.path("w.kdl")).timeout(Duration::from_secs(30)).assert().success();
    let status = stdout(&status);
    let line = status.lines().find(|l| l.contains("prod-only")).unwrap_or_else(|| panic!("{status}"));
    assert!(
        line.contains("skipped") && line.contains("when {{ vars.profile == 'prod' }} is false"),
        "{status}"
    );
}

/// Review of issue 16: a node its `when` skips as it would start is recorded as skipped:
/// what follows is done, a second resume has nothing to do, status says `skipped`.
#[test]
fn a_node_skipped_as_it_would_start_counts_as_ended() {
    let f = Fixture::new(
        r#"workflow w {}
module x { budget "1m"; install { run s "echo x >> ledger; test -f ok" } }
module diag { budget "1m"; after x; when "{{ nodes.x.outcome == 'failed' }}"
  install { run s "echo diag >> ledger; exit 5" } }
module y { budget "1m"; after diag; install { run s "echo y >> ledger" } }
"#,
    );
    f.apply(&[]).code(1);
    std::fs::write(f.path("ok"), "").unwrap();
    f.resume().success();
    let out = f.resume().success();
    assert!(stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
    assert_eq!(f.lines(), ["x", "diag", "x", "y"]);
    let status = milepost().arg("status").arg(f.path("w.kdl")).arg("--json").assert().success();
    let status: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    let of = |id: &str| {
        status["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap()["status"].clone()
    };
    assert_eq!((of("diag"), of("y")), ("skipped".into(), "done".into()), "{status}");
}

/// Review of issue 16: a staging rollout whose diagnostics module was skipped (or whose gate
/// a condition skipped at load) proves what it ran.
#[test]
fn skipped_nodes_do_not_hold_a_promotion() {
    let f = Fixture::new(
        r#"workflow w {
    vars { drills "off" }
    phase "1" "One" { modules x; gate g }
    environment staging { }
    environment prod { requires staging }
}
module x { budget "1m"; install { run s "echo x >> ledger" } }
module diag { budget "1m"; after x; when "{{ nodes.x.outcome == 'failed' }}"; install { run s "true" } }
gate g { budget "1m"; when "{{ vars.drills == 'on' }}"; validate { run v "true" } }
"#,
    );
    f.apply(&["--env", "staging"]).success();
    f.apply(&["--env", "prod"]).success();
}

/// Review of issue 16: outcomes are not what rollback, on-failure and finally steps see, and
/// a gate checks its whole phase: their conditions read vars only, said where written.
#[test]
fn conditions_that_cannot_see_outcomes_are_refused_where_written() {
    let f = Fixture::new(
        r#"workflow w {
    phase "1" "One" { modules a; gate g }
    finally { run fin "true" when="{{ nodes.a.outcome == 'failed' }}" }
}
module a { budget "1m"; install { run s "true" }
  on-failure { run d "true" when="{{ nodes.a.outcome == 'failed' }}" }
  rollback { run r "true" when="{{ nodes.a.outcome == 'passed' }}" } }
gate g { budget "1m"; when "{{ nodes.a.outcome != 'skipped' }}"; validate { run v "true" } }
"#,
    );
    let text = diagnostics(&f.path("w.kdl"));
    for expected in [
        "of a finally step reads the outcome of `a`",
        "of a rollback or on-failure step reads the outcome of `a`",
        "of a gate reads the outcome of `a`",
    ] {
        assert!(text.contains(expected), "missing {expected:?}:\n{text}");
    }
}

/// Review of issue 16: `on-failure "rollback"` and `on-failure { … }` written apart are one
/// setting, in either order.
#[test]
fn the_on_failure_policy_and_its_steps_add_up_in_either_order() {
    for order in [
        "on-failure { run d \"echo d >> ledger\" }\n  on-failure \"rollback\"",
        "on-failure \"rollback\"\n  on-failure { run d \"echo d >> ledger\" }",
    ] {
        let f = Fixture::new(&format!(
            "workflow w\nmodule a {{ budget \"1m\"; install {{ run s \"exit 1\" }}\n  {order}\n  rollback {{ run u \"echo u >> ledger\" }} }}\n"
        ));
        f.apply(&[]).code(1);
        assert_eq!(f.lines(), ["d", "u"], "{order}");
    }
}
