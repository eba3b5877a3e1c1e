//! The JSON Schemas in docs/schemas describe what `plan --format json`, `status --json` and
//! `report --format json` really print: real outputs validate, and a document with a
//! renamed or missing field does not.

use serde_json::Value;

use crate::support::{milepost, repo, Local};

fn schema(name: &str) -> jsonschema::Validator {
    let path = repo().join(format!("docs/schemas/{name}.schema.json"));
    let schema: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    if let Err(e) = jsonschema::meta::validate(&schema) {
        panic!("{} is not a valid JSON Schema: {e}", path.display());
    }
    jsonschema::draft202012::new(&schema).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every reason `document` fails `validator`, one per line; empty when it is valid.
fn errors(validator: &jsonschema::Validator, document: &Value) -> String {
    validator.iter_errors(document).map(|e| format!("{} at {}\n", e, e.instance_path())).collect()
}

fn assert_valid(validator: &jsonschema::Validator, document: &Value, what: &str) {
    let errors = errors(validator, document);
    assert!(errors.is_empty(), "{what} does not match its schema:\n{errors}");
}

fn json_of(assert: assert_cmd::assert::Assert) -> Value {
    serde_json::from_slice(&assert.get_output().stdout).expect("the command prints JSON")
}

#[test]
fn plan_json_matches_its_schema_with_every_option_and_step_kind() {
    let plan = schema("plan");
    let phase2 = json_of(
        milepost()
            .args([
                "plan",
                "workflows/phase2.kdl",
                "--format",
                "json",
                "--steps",
                "--risk",
                "--trials",
                "200",
            ])
            .args(["--start", "2026-12-01 09:00", "--deadline", "20h"])
            .assert()
            .success(),
    );
    assert!(phase2["deadline"].is_object() && phase2["risk"].is_object() && phase2["start"].is_string());
    assert_valid(&plan, &phase2, "plan of phase2 with --steps --risk --deadline --start");
    let plain =
        json_of(milepost().args(["plan", "workflows/phase2.kdl", "--format", "json"]).assert().success());
    assert_valid(&plan, &plain, "plan of phase2");
    // One fixture per step kind, with its rendered steps.
    for fixture in
        ["run-step", "http-step", "tcp-step", "template-step", "apply-step", "wait-step", "kubernetes"]
    {
        let file = format!("tests/fixtures/valid/{fixture}.kdl");
        let out = json_of(
            milepost().args(["plan", &file, "--format", "json", "--steps", "--fresh"]).assert().success(),
        );
        assert_valid(&plan, &out, &file);
    }
}

#[test]
fn plan_status_and_report_json_of_a_real_rollout_match_their_schemas() {
    let (plan, status, report) = (schema("plan"), schema("status"), schema("report"));
    let local = Local::new();
    local.run("apply", true).code(1);
    let json = |command: &str, flags: &[&str]| json_of(local.command(command).args(flags).assert().success());

    // After a failure: done, re-run (with reasons), failed steps with log tails.
    let resuming = json("plan", &["--format", "json"]);
    assert!(resuming["nodes"].as_array().unwrap().iter().any(|n| n["status"] == "rerun"));
    assert_valid(&plan, &resuming, "the resume-aware plan");
    let failed = json("status", &["--json"]);
    assert!(failed["nodes"].as_array().unwrap().iter().any(|n| n["status"] == "failed"));
    assert_valid(&status, &failed, "status after a failure");
    let failed_report = json("report", &["--format", "json"]);
    assert_eq!(failed_report["outcome"], "failed");
    assert_valid(&report, &failed_report, "the report of a failed rollout");

    // After the resume: complete.
    local.run("resume", false).success();
    assert_valid(&status, &json("status", &["--json"]), "status after the resume");
    let complete = json("report", &["--format", "json"]);
    assert_eq!(complete["outcome"], "complete");
    assert_valid(&report, &complete, "the report of a complete rollout");
}

#[test]
fn a_document_with_a_renamed_or_missing_field_fails_its_schema() {
    let plan = schema("plan");
    let good = json_of(
        milepost().args(["plan", "workflows/phase2.kdl", "--format", "json", "--steps"]).assert().success(),
    );
    assert_valid(&plan, &good, "plan of phase2");

    let mut renamed = good.clone();
    let totals = renamed["totals"].as_object_mut().unwrap();
    let finish = totals.remove("finish_secs").unwrap();
    totals.insert("finish_seconds".into(), finish);
    let found = errors(&plan, &renamed);
    assert!(found.contains("finish_secs") && found.contains("finish_seconds"), "{found}");

    let mut missing = good.clone();
    missing["nodes"][0].as_object_mut().unwrap().remove("lane");
    assert!(errors(&plan, &missing).contains("lane"), "a node without `lane` passed");

    let mut wrong_kind = good.clone();
    wrong_kind["nodes"][0]["steps"]["install"][0]["kind"] = "http".into();
    assert!(!errors(&plan, &wrong_kind).is_empty(), "a run step labelled http passed");

    let mut wrong_type = good;
    wrong_type["critical_path"] = Value::String("k8s-infra".into());
    assert!(!errors(&plan, &wrong_type).is_empty(), "a string for an array passed");

    // The other two schemas are as strict.
    let status = schema("status");
    let extra = serde_json::json!({
        "workflow": "w", "environment": null, "environments": [],
        "last_run": null, "nodes": [], "gates_passed": [], "metrics": [],
        "facts": { "completed_modules": 0, "total_modules": 0, "failed_modules": 0,
                   "completed_gates": 0, "total_gates": 0, "validations_passed": 0,
                   "validations_total": 0, "successful_runs": 0, "total_runs": 0,
                   "budget_ratio": 0.0, "domains": {}, "nodes": {} },
    });
    assert_valid(&status, &extra, "a minimal status");
    let mut renamed = extra.clone();
    renamed["lastRun"] = renamed.as_object_mut().unwrap().remove("last_run").unwrap();
    assert!(errors(&status, &renamed).contains("lastRun"), "a renamed status field passed");
    let report = schema("report");
    assert!(!errors(&report, &extra).is_empty(), "a status document passed as a report");
}

/// Conditions (issue 16): a node's `when`, a step's, and a node skipped at load, in plan
/// and status JSON.
#[test]
fn conditions_in_plan_and_status_json_match_their_schemas() {
    let plan = json_of(
        milepost()
            .args([
                "plan",
                "tests/fixtures/valid/when.kdl",
                "--format",
                "json",
                "--steps",
                "--var",
                "profile=dev",
            ])
            .assert()
            .success(),
    );
    assert_valid(&schema("plan"), &plan, "plan --format json --steps of tests/fixtures/valid/when.kdl");
    let nodes = plan["nodes"].as_array().unwrap();
    let node = |id: &str| nodes.iter().find(|n| n["id"] == id).unwrap();
    assert_eq!(node("checked")["when"]["value"], false);
    assert_eq!(node("checked")["duration_source"], "skipped");
    assert_eq!(node("diagnostics")["when"]["value"], Value::Null);
    assert!(node("ha-dr").get("when").is_none());
    let step = &node("diagnostics")["steps"]["install"][1];
    assert_eq!(step["when"], "{{ vars.profile == 'prod' and nodes.ha-dr.outcome != 'passed' }}");
}

/// Approvals (issue 17): a node waiting for approval, then a rejection with its note, in
/// status and report JSON.
#[test]
fn approvals_in_status_and_report_json_match_their_schemas() {
    let f = crate::support::Fixture::new(
        r#"workflow w { phase p { modules a; gate g } }
        module a { budget "1m"; install { run a "true" } }
        gate g { budget "1m"; approval required=1 from="nobody-else"; validate { run check "echo fine" } }
        module m { budget "1m"; approval; install { run m "true" } }
        "#,
    );
    f.apply(&[]).code(7);
    let w = f.path("w.kdl");
    let json = |args: &[&str]| json_of(milepost().args(args).arg(&w).assert().success());
    let status = json(&["status", "--json"]);
    let statuses: Vec<&str> =
        status["nodes"].as_array().unwrap().iter().map(|n| n["status"].as_str().unwrap()).collect();
    assert!(statuses.contains(&"waiting-approval"), "{statuses:?}");
    assert_valid(&schema("status"), &status, "status of a rollout waiting for approval");
    let waiting = json(&["report", "--format", "json"]);
    assert_eq!(waiting["outcome"], "waiting");
    assert_valid(&schema("report"), &waiting, "the report of a rollout waiting for approval");

    // The module's `from` is anyone: rejecting it records the note.
    milepost().args(["reject", "m"]).arg(&w).args(["--note", "not today"]).assert().success();
    // A failure outranks a wait: g still waits, m failed.
    milepost().arg("resume").arg(&w).assert().code(1);
    let rejected = json(&["report", "--format", "json"]);
    let m = rejected["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "m").unwrap();
    assert_eq!(m["approvals"][0]["decisions"][0]["note"], "not today");
    assert_valid(&schema("report"), &rejected, "the report of a rejected approval");
}

/// Approvals review: a request part-approved (1 of 2), then superseded by a new request
/// when the gate's checks ran again after a rollback; status and report JSON still match
/// their schemas, and the report lists both requests with their decisions.
#[test]
fn superseded_and_part_approved_requests_match_the_schemas() {
    let f = crate::support::Fixture::new(
        r#"workflow w { phase p { modules a; gate g } }
        module a { budget "1m"; install { run a "true" }; rollback { run undo "true" } }
        gate g { budget "1m"; approval required=2; validate { run check "echo fine" } }
        "#,
    );
    f.apply(&[]).code(7);
    let w = f.path("w.kdl");
    let json = |args: &[&str]| json_of(milepost().args(args).arg(&w).assert().success());
    milepost().args(["approve", "g"]).arg(&w).args(["--note", "one\nof two\t(tab)"]).assert().success();
    let status = json(&["status", "--json"]);
    assert_valid(&schema("status"), &status, "status of a part-approved request");
    milepost().arg("rollback").arg(&w).args(["--phase", "p", "--yes"]).assert().success();
    milepost().arg("resume").arg(&w).assert().code(7);
    let status = json(&["status", "--json"]);
    assert_valid(&schema("status"), &status, "status after the request was superseded");
    let report = json(&["report", "--format", "json"]);
    assert_valid(&schema("report"), &report, "the report of a superseded request");
    let g = report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "g").unwrap();
    // The new request stands with none of the old request's decisions.
    let asked = g["approvals"].as_array().unwrap();
    let last = asked.last().unwrap();
    assert_eq!(
        (&last["outcome"], last["decisions"].as_array().map(Vec::len)),
        (&serde_json::json!("waiting"), Some(0)),
        "{g}"
    );
    // The history still lists the first request and its decision, note and all.
    let history =
        String::from_utf8(milepost().arg("history").arg(&w).assert().success().get_output().stdout.clone())
            .unwrap();
    assert!(history.contains("of two"), "{history}");
}
