//! `milepost plan` on the Phase 2 plan and on small DAGs whose best schedule is known.

use crate::support::milepost;

fn stdout(args: &[&str]) -> String {
    let out = milepost().args(args).assert().success();
    String::from_utf8(out.get_output().stdout.clone()).unwrap()
}

fn plan_json(extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["plan", "workflows/phase2.kdl", "--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&stdout(&args)).unwrap()
}

fn node<'a>(json: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap()
}

#[test]
fn phase2_gantt() {
    insta::assert_snapshot!(stdout(&["plan", "workflows/phase2.kdl", "--start", "2026-12-01 09:00"]));
}

#[test]
fn phase2_mermaid() {
    insta::assert_snapshot!(stdout(&["plan", "workflows/phase2.kdl", "--format", "mermaid"]));
}

#[test]
fn phase2_json_has_the_review_figures() {
    let json = plan_json(&[]);
    assert_eq!(json["totals"]["finish"], "21h06m");
    assert_eq!(json["totals"]["finish_secs"], 75_960);
    assert_eq!(json["totals"]["sequential"], "30h06m");
    assert_eq!(json["totals"]["modules_secs"], 102_960, "28h36m of modules");
    let path: Vec<&str> =
        json["critical_path"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
    assert_eq!(
        path,
        [
            "k8s-infra",
            "autoscaling",
            "infrastructure-stability",
            "ha-dr",
            "deployment-reliability",
            "security",
            "production-readiness"
        ]
    );
    for (a, b) in [("autoscaling", "monitoring"), ("ha-dr", "cicd-gitops")] {
        assert_eq!(node(&json, a)["start_secs"], node(&json, b)["start_secs"], "{a} and {b} side by side");
        assert_ne!(node(&json, a)["lane"], node(&json, b)["lane"]);
    }
    assert_eq!(node(&json, "monitoring")["critical"], false);
    assert!(node(&json, "monitoring")["slack_secs"].as_u64().unwrap() > 0);
}

#[test]
fn parallelism_one_is_the_sequential_sum() {
    let json = plan_json(&["--parallelism", "1"]);
    assert_eq!(json["totals"]["finish_secs"], json["totals"]["sequential_secs"]);
}

#[test]
fn risk_is_the_product_and_repeatable() {
    let json = plan_json(&["--risk", "--trials", "500"]);
    let product: f64 = [0.94, 0.96, 0.92, 0.97, 0.95, 0.93].iter().product();
    let gates: f64 = json["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "gate")
        .map(|g| {
            json["risk"]["factors"].as_array().unwrap().iter().find(|f| f[0] == g["id"]).unwrap()[1]
                .as_f64()
                .unwrap()
        })
        .product();
    let first_time = json["risk"]["first_time_probability"].as_f64().unwrap();
    assert!((first_time - product * gates).abs() < 0.005, "{first_time} vs {}", product * gates);
    assert!((0.70..0.72).contains(&first_time), "about 71%, not the review's 96.2%");
    let again = plan_json(&["--risk", "--trials", "500"]);
    assert_eq!(json["risk"]["p50_secs"], again["risk"]["p50_secs"]);
    let other_seed = plan_json(&["--risk", "--trials", "500", "--seed", "7"]);
    assert!(other_seed["risk"]["p90_secs"].as_u64().unwrap() > 0);
}

#[test]
fn deadline_names_the_first_late_node() {
    let json = plan_json(&["--deadline", "20h"]);
    assert_eq!(json["deadline"]["fits"], false);
    assert_eq!(json["deadline"]["first_late"], "security");
    assert_eq!(json["deadline"]["overrun_secs"], 3960);
    let fits = plan_json(&["--deadline", "2026-12-02 07:00", "--start", "2026-12-01 09:00"]);
    assert_eq!(fits["deadline"]["fits"], true);
}

#[test]
fn steps_show_rendered_commands_with_secrets_masked() {
    let out = milepost()
        .args(["plan", "workflows/phase2.kdl", "--steps"])
        .env("VAULT_TOKEN", "hunter2-vault")
        .env("ARGOCD_ADMIN_PASSWORD", "hunter2-argo")
        .assert()
        .success();
    let text = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(text.contains("istioctl"), "rendered commands are listed");
    assert!(!text.contains("{{"), "templates are rendered");
    assert!(!text.contains("hunter2"), "secrets never shown");
    // Phase 2 passes secrets through `env`, which the JSON lists, masked.
    let out = milepost()
        .args(["plan", "workflows/phase2.kdl", "--steps", "--format", "json"])
        .env("VAULT_TOKEN", "hunter2-vault")
        .env("ARGOCD_ADMIN_PASSWORD", "hunter2-argo")
        .assert()
        .success();
    let json = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!json.contains("hunter2"), "secrets never shown");
    assert!(json.contains(r#""ADMIN_PASSWORD","#) && json.contains(r#""***""#), "env values are masked");
}

/// A diamond with a long branch and a fan-out whose best order is known.
#[test]
fn small_dag_gantt() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.kdl");
    std::fs::write(
        &path,
        r#"workflow small { parallelism 2; phase "P" "Only" { modules a b c d; gate g } }
module a { budget "1h"; install { run x "true" } }
module b { budget "3h"; after a; install { run x "true" } }
module c { budget "1h"; after a; install { run x "true" } }
module d { budget "1h"; after a; install { run x "true" } }
gate g { budget "30m"; validate { run x "true" } }"#,
    )
    .unwrap();
    let text = stdout(&["plan", path.to_str().unwrap()]);
    // b (3h) and c run first after a; d takes c's lane at 2h; finish 1h + 3h + 30m.
    assert!(text.contains("finish           4h30m"), "{text}");
    insta::assert_snapshot!(text);
}

#[test]
fn a_plan_after_a_complete_rollout_says_there_is_nothing_to_do() {
    let f = crate::support::Fixture::new(
        r#"workflow done-w { parallelism 1; vars { greeting "hi" } }
module a { budget "1m"; install { run s "echo {{ vars.greeting }}" } }
module b { budget "1m"; after a; install { run s "true" } }"#,
    );
    f.apply(&["--progress", "plain", "--var", "greeting=yo"]).success();
    let run = milepost::state::history::run_dirs(&crate::support::rollout_dir(&f.path(".")))
        .last()
        .and_then(|d| d.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .expect("the run is recorded");

    let plan = |extra: &[&str]| {
        milepost()
            .arg("plan")
            .arg(f.path("w.kdl"))
            .args(["--var", "greeting=yo"])
            .args(extra)
            .assert()
            .success()
    };
    let text = String::from_utf8(plan(&[]).get_output().stdout.clone()).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        format!("✓ nothing to do: every node of done-w is done (last run {run})")
    );
    assert!(!text.contains("critical path"), "no chart of zeros:\n{text}");
    // The hinted commands work as printed, values included.
    let hint = lines.next().unwrap();
    let commands: Vec<&str> = hint.split('`').skip(1).step_by(2).collect();
    assert_eq!(commands.len(), 2, "{hint}");
    let words: Vec<Vec<String>> = commands.iter().map(|c| shell_words::split(c).unwrap()).collect();
    assert!(words[0].ends_with(&["--fresh".into(), "--var".into(), "greeting=yo".into()]), "{hint}");
    assert_eq!(words[1][..2], ["milepost", "status"], "{hint}");
    for words in words {
        milepost().args(&words[1..]).assert().success();
    }

    // Machines still get the plan, every node done; --fresh still previews a new rollout.
    let json: serde_json::Value =
        serde_json::from_slice(&plan(&["--format", "json"]).get_output().stdout).unwrap();
    assert!(json["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done"), "{json}");
    assert!(String::from_utf8_lossy(&plan(&["--fresh"]).get_output().stdout).contains("critical path"));
}

#[test]
fn a_deadline_is_echoed_with_its_clock_time() {
    // From --start, the clock time is exact.
    let at = stdout(&["plan", "workflows/phase2.kdl", "--start", "2026-12-01 09:00", "--deadline", "22h"]);
    assert!(at.contains("deadline           22h (at 2026-12-02 07:00)  fits, 54m to spare"), "{at}");
    // Without a start it is now + the window, in UTC: the clock varies, the shape does not.
    milepost().args(["plan", "workflows/phase2.kdl", "--deadline", "20h"]).assert().success().stdout(
        predicates::str::is_match(
            r"(?m)^  deadline +20h \(at (\d{4}-\d\d-\d\d )?\d\d:\d\d UTC if started now\)  ",
        )
        .unwrap(),
    );
}
