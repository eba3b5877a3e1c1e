//! `milepost report` and `plan --calibrate`: what a rollout did, in four formats that agree with
//! `status`, checked in a real browser and against the JUnit schema where CI installs them.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use milepost::state::format::Record;
use milepost::state::history::run_dirs;
use milepost::state::journal;

use crate::support::{milepost, Local};

fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

fn json(a: &assert_cmd::assert::Assert) -> serde_json::Value {
    serde_json::from_slice(&a.get_output().stdout).expect("valid JSON")
}

/// Every `*_secs` number in `value`, with its key.
fn secs_fields(value: &serde_json::Value, found: &mut Vec<(String, f64)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match v.as_f64() {
                    Some(n) if key.ends_with("_secs") => found.push((key.clone(), n)),
                    _ => secs_fields(v, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| secs_fields(v, found)),
        _ => {}
    }
}

/// A tool the report checks need. CI installs it (.ci/run), so there its absence fails the
/// test; elsewhere the check is reported as skipped on stderr.
fn required_tool(candidates: &[&str], what: &str) -> Option<String> {
    let found = candidates
        .iter()
        .find(|c| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success()));
    match found {
        Some(c) => Some(c.to_string()),
        None if std::env::var_os("CI").is_some() => panic!("CI must have {what}; .ci/run installs it"),
        None => {
            eprintln!("SKIPPED: {what} is not installed ({})", candidates.join(", "));
            None
        }
    }
}

/// Opens the page in headless Chromium: no console message, the DOM has what the page
/// promises, and a screenshot renders.
fn check_in_browser(html: &Path, must_show: &[&str]) {
    let Some(chromium) = required_tool(&["chromium", "chromium-browser", "google-chrome"], "Chromium") else {
        return;
    };
    let profile = tempfile::tempdir().unwrap();
    let base = |cmd: &mut Command| {
        cmd.args(["--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr", "--v=0"])
            .arg(format!("--user-data-dir={}", profile.path().display()));
    };
    let mut dump = Command::new(&chromium);
    base(&mut dump);
    let out = dump.arg("--dump-dom").arg(format!("file://{}", html.display())).output().unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
    for text in must_show {
        assert!(dom.contains(text), "the rendered page lacks {text}");
    }
    let shot = profile.path().join("report.png");
    let mut screenshot = Command::new(&chromium);
    base(&mut screenshot);
    let out = screenshot
        .args(["--hide-scrollbars", "--window-size=1400,1800"])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG") && png.len() > 20_000, "a blank or broken screenshot");
}

/// Validates against the JUnit schema that CI fetches (MILEPOST_JUNIT_XSD, see .ci/run).
fn check_junit_schema(xml: &Path) {
    let Some(xmllint) = required_tool(&["xmllint"], "xmllint") else { return };
    let Some(xsd) = std::env::var_os("MILEPOST_JUNIT_XSD") else {
        assert!(std::env::var_os("CI").is_none(), "CI must set MILEPOST_JUNIT_XSD");
        eprintln!("SKIPPED: MILEPOST_JUNIT_XSD is not set");
        return;
    };
    let out = Command::new(xmllint).arg("--noout").arg("--schema").arg(xsd).arg(xml).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_failed_then_resumed_rollout_reports_both_attempts_in_every_format() {
    let local = Local::new();
    local.run("apply", true).code(1);
    local.run("resume", false).success();
    let dir = local.dir.path();

    let report = json(&local.command("report").args(["--format", "json"]).assert().success());
    assert_eq!(report["schema_version"], 1);
    assert_eq!(report["outcome"], "complete");
    // Times are whole milliseconds, as recorded: no `1.2610000000000001`.
    let mut secs = Vec::new();
    secs_fields(&report, &mut secs);
    assert!(secs.len() > 50, "{secs:?}");
    for (key, n) in &secs {
        assert!(n.to_string().split('.').nth(1).is_none_or(|d| d.len() <= 3), "{key}: {n}");
    }
    let runs = report["runs"].as_array().unwrap();
    let commands: Vec<(&str, &str)> =
        runs.iter().map(|r| (r["command"].as_str().unwrap(), r["outcome"].as_str().unwrap())).collect();
    assert_eq!(commands, [("apply", "failed"), ("resume", "complete")]);
    let node = |id: &str| report["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap().clone();
    let ha_dr = node("ha-dr");
    let attempts = ha_dr["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(
        (attempts[0]["result"].as_str(), attempts[1]["result"].as_str()),
        (Some("timed-out"), Some("passed"))
    );
    // Metrics count the whole time ha-dr took to get done, its failed run included.
    let spent = report["facts"]["nodes"]["ha-dr"]["actual_secs"].as_f64().unwrap();
    let drawn = ha_dr["actual_secs"].as_f64().unwrap();
    let resumed = attempts[1]["took_secs"].as_f64().unwrap();
    assert!(
        (spent - drawn).abs() < 0.1 && spent > resumed + 0.5,
        "facts {spent}, report {drawn}, resumed {resumed}"
    );
    let failed = attempts[0]["steps"].as_array().unwrap().iter().find(|s| s["result"] != "passed").unwrap();
    assert!(failed["reason"].as_str().unwrap().contains("injected failure"), "{failed}");
    assert!(Path::new(failed["log"].as_str().unwrap()).is_file(), "the log path is real: {failed}");
    assert!(failed["log_tail"].as_array().unwrap().iter().any(|l| l.as_str().unwrap().contains("checksum")));
    assert_eq!(node("k8s-infra")["attempts"].as_array().unwrap().len(), 1, "2A ran once");
    assert!(node("k8s-infra")["critical"].as_bool().unwrap());

    // One set of metrics: status, the JSON report and the HTML report agree.
    let status = json(&local.command("status").arg("--json").assert().success());
    assert_eq!(status["metrics"], report["metrics"]);
    assert_eq!(report["metrics"][0]["value"], 100.0);

    let html_path = dir.join("out/report.html");
    local.command("report").args(["--format", "html", "-o"]).arg(&html_path).assert().success();
    let html = std::fs::read_to_string(&html_path).unwrap();
    for external in ["src=\"http", "href=\"http", "url(http", "@import", "<script"] {
        assert!(!html.contains(external), "the report must be self-contained: found {external}");
    }
    let run_ids: Vec<&str> = runs.iter().map(|r| r["run_id"].as_str().unwrap()).collect();
    for id in &run_ids {
        assert!(html.contains(id), "{id} missing from the HTML");
    }
    assert!(html.contains(r#"data-metric="phase-2-success-rate"><td>phase-2-success-rate</td>"#));
    assert!(
        html.contains(r#"<td class="num metric-value">100</td>"#),
        "the HTML shows the same metric value"
    );
    assert_eq!(html.matches("bar actual timed-out").count(), 1, "the failed attempt is drawn");
    check_in_browser(&html_path, &[run_ids[0], run_ids[1], "Planned and actual timeline", "backup-verified"]);

    // JUnit: the rollout ends with every validation passed; the first run alone shows the failure.
    let junit = dir.join("junit.xml");
    local.command("report").args(["--format", "junit", "-o"]).arg(&junit).assert().success();
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"failures="0""#) && xml.contains(r#"<testcase name="gate production-readiness""#));
    check_junit_schema(&junit);
    let first = dir.join("first.xml");
    local
        .command("report")
        .args(["--format", "junit", "--run", run_ids[0], "-o"])
        .arg(&first)
        .assert()
        .success();
    let xml = std::fs::read_to_string(&first).unwrap();
    assert!(
        xml.contains(r#"<testcase name="backup-verified (run)" classname="local-phase-2.ha-dr""#),
        "{xml}"
    );
    assert!(xml.contains("<failure message=\"still failing") && xml.contains("injected failure"), "{xml}");
    assert!(xml.contains(r#"<skipped message="#), "nodes the failure stopped are skipped: {xml}");
    check_junit_schema(&first);
    // A report of the first run alone shows the metrics as they stood after it, not today's.
    let first_json =
        json(&local.command("report").args(["--format", "json", "--run", run_ids[0]]).assert().success());
    assert_eq!(first_json["metrics"][0]["id"], "phase-2-success-rate");
    assert!(first_json["metrics"][0]["value"].as_f64().unwrap() < 100.0, "{}", first_json["metrics"]);

    let md = stdout(&local.command("report").assert().success());
    assert!(md.starts_with("## ✅ Phase 2 on one machine — complete"), "{md}");
    assert!(md.contains("apply failed") && md.contains("resume complete"), "{md}");
    assert!(md.contains("| phase-2-success-rate | 100.00 | 100 | ✅ met |"), "{md}");
    assert!(md.contains("**ha-dr** · `backup-verified`"), "{md}");

    let unknown = local.command("report").args(["--run", "nope"]).assert().code(2);
    let err = String::from_utf8_lossy(&unknown.get_output().stderr).into_owned();
    assert!(err.contains("no run `nope`") && err.contains("milepost history"), "{err}");
}

/// A small rollout whose report text is stable apart from times and ids.
fn fixture(workflow: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.kdl"), workflow).unwrap();
    dir
}

const TWO_STEP: &str = r#"
workflow small {
    title "A small rollout"
    phase "1" { modules prepare check; gate ready }
    metric done "{{ completed_modules / total_modules * 100.0 }}" target=100
}
module prepare {
    number 1
    budget "2m" buffer="50%"
    install { run setup "true" }
    validate { run present "echo present" }
}
module check {
    number 2
    budget "1m"
    after prepare
    install { run migrate "echo 'migration said no' >&2; exit 3" }
    validate { run probe "true" }
}
gate ready {
    budget "30s"
    validate { run all "true" }
}
"#;

#[test]
fn the_markdown_summary_reads_well() {
    let dir = fixture(TWO_STEP);
    let w = dir.path().join("w.kdl");
    milepost().arg("apply").arg(&w).timeout(Duration::from_secs(60)).assert().code(1);
    let md = stdout(&milepost().arg("report").arg(&w).assert().success());
    let root = dir.path().canonicalize().unwrap().display().to_string();
    // The install failure reaches CI through JUnit too, though it is not a validation.
    let junit = dir.path().join("junit.xml");
    milepost().args(["report", "--format", "junit", "-o"]).arg(&junit).arg(&w).assert().success();
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"<testcase name="install migrate (run)" classname="small.check""#), "{xml}");
    assert!(xml.contains(r#"<testsuites name="small" tests="4" failures="1""#), "{xml}");
    check_junit_schema(&junit);
    insta::with_settings!({filters => vec![
        (root.as_str(), "[dir]"),
        (r"\d{8}T\d{9}Z-\d+", "[run]"),
        (r"\b\d+\.\d+s\b", "[t]"),
        // A node that took under a millisecond.
        (r"\| 0s \|", "| [t] |"),
    ]}, {
        insta::assert_snapshot!(md);
    });
}

fn node_ends(state: &Path) -> Vec<(String, u64)> {
    run_dirs(state)
        .iter()
        .flat_map(|d| journal::read(&d.join("journal.jsonl")).unwrap())
        .filter_map(|r| match r {
            Record::NodeEnd { node, took_ms, outcome, .. } if outcome.passed() => Some((node, took_ms)),
            _ => None,
        })
        .collect()
}

#[test]
fn plan_calibrate_schedules_the_median_of_recorded_runs() {
    let dir = fixture(
        r#"
workflow cal { phase "1" { modules fast slow } }
module fast { budget "1h"; install { run a "sleep 0.05" } }
module slow { budget "2h" buffer="10%"; after fast; install { run b "true" } }
"#,
    );
    let w = dir.path().join("w.kdl");
    for _ in 0..3 {
        milepost()
            .arg("apply")
            .arg(&w)
            .args(["--only", "fast"])
            .timeout(Duration::from_secs(60))
            .assert()
            .success();
    }
    let mut fast: Vec<u64> = node_ends(&crate::support::rollout_dir(dir.path()))
        .into_iter()
        .filter(|(n, _)| n == "fast")
        .map(|(_, t)| t)
        .collect();
    assert_eq!(fast.len(), 3);
    fast.sort();

    let plan = json(
        &milepost().args(["plan", "--fresh", "--calibrate", "--format", "json"]).arg(&w).assert().success(),
    );
    let node = |id: &str| plan["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap().clone();
    assert_eq!(node("fast")["duration_source"], "history");
    assert_eq!(node("fast")["planned_ms"], fast[1], "the median of {fast:?}");
    assert_eq!(node("slow")["duration_source"], "budget+buffer", "no history: its budget");
    assert_eq!(node("slow")["planned_secs"], 7920);
    assert_eq!(plan["totals"]["finish_ms"], fast[1] + 7_920_000);

    let text = stdout(&milepost().args(["plan", "--fresh", "--calibrate"]).arg(&w).assert().success());
    assert!(text.contains("median of recorded runs: fast"), "{text}");
    assert!(text.contains("budget, no history: slow"), "{text}");

    let uncalibrated =
        json(&milepost().args(["plan", "--fresh", "--format", "json"]).arg(&w).assert().success());
    assert_eq!(uncalibrated["nodes"][0]["duration_source"], "budget");

    // A new budget keeps what was measured; a changed step makes it someone else's duration.
    let source = |text: &str| {
        std::fs::write(&w, text).unwrap();
        let plan = json(
            &milepost()
                .args(["plan", "--fresh", "--calibrate", "--format", "json"])
                .arg(&w)
                .assert()
                .success(),
        );
        plan["nodes"].as_array().unwrap().iter().find(|n| n["id"] == "fast").unwrap()["duration_source"]
            .clone()
    };
    let defined = std::fs::read_to_string(&w).unwrap();
    assert_eq!(source(&defined.replace(r#"budget "1h""#, r#"budget "3h""#)), "history");
    assert_eq!(source(&defined.replace("sleep 0.05", "sleep 0.5")), "budget");
}
