//! The binary as a person runs it.

use crate::support::milepost;

#[test]
fn validate_prints_the_phase2_summary() {
    let out = milepost().args(["validate", "workflows/phase2.kdl"]).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(!stdout.contains('\u{1b}'), "piped output must be plain");
    insta::assert_snapshot!(stdout);
}

#[test]
fn graph_json_shows_no_path_between_8_and_11() {
    let out = milepost().args(["graph", "workflows/phase2.kdl", "--format", "json"]).assert().success();
    let json: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let upstream = |id: &str| -> Vec<String> {
        json["nodes"].as_array().unwrap().iter().find(|n| n["id"] == id).unwrap()["upstream"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(!upstream("monitoring").contains(&"autoscaling".to_string()));
    assert!(!upstream("autoscaling").contains(&"monitoring".to_string()));
    assert!(upstream("monitoring").contains(&"k8s-infra".to_string()));
    assert_eq!(json["critical_path"][0], "k8s-infra");
}

#[test]
fn graph_renders_mermaid_and_dot() {
    let mermaid =
        milepost().args(["graph", "workflows/phase2.kdl", "--format", "mermaid"]).assert().success();
    insta::assert_snapshot!(String::from_utf8(mermaid.get_output().stdout.clone()).unwrap());
    let dot = milepost().args(["graph", "workflows/phase2.kdl", "--format", "dot"]).assert().success();
    let dot = String::from_utf8(dot.get_output().stdout.clone()).unwrap();
    assert!(dot.starts_with("digraph \"phase-2\" {") && dot.contains("\"k8s-infra\" -> \"monitoring\""));
}

#[test]
fn a_missing_workflow_file_is_a_clear_error() {
    milepost()
        .args(["validate", "workflows/nope.kdl"])
        .assert()
        .code(3)
        .stderr(predicates::str::contains("cannot read `workflows/nope.kdl`"));
}

#[test]
fn var_overrides_reach_rendered_commands() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.kdl");
    std::fs::write(
        &path,
        r#"workflow w { vars { host "a" } }
module m { budget "1h"; install { run x "echo {{ vars.host }}" } }"#,
    )
    .unwrap();
    let out = milepost().args(["graph", "--format", "json", "--var", "host=b"]).arg(&path).assert().success();
    assert!(String::from_utf8_lossy(&out.get_output().stdout).contains("\"m\""));
    milepost().args(["validate", "--var", "oops"]).arg(&path).assert().code(2);
}

#[test]
fn completions_name_every_subcommand_for_bash_zsh_and_fish() {
    for shell in ["bash", "zsh", "fish"] {
        let out = milepost().args(["completions", shell]).assert().success();
        let script = String::from_utf8(out.get_output().stdout.clone()).unwrap();
        for command in ["apply", "resume", "plan", "status", "fmt", "man"] {
            assert!(script.contains(command), "{shell} completions lack `{command}`:\n{script}");
        }
        assert!(script.contains("deadline"), "{shell} completions lack the options of a subcommand");
    }
}

#[test]
fn completions_for_an_unknown_shell_are_a_usage_error() {
    milepost().args(["completions", "tcsh"]).assert().code(2);
}

#[test]
fn man_prints_a_roff_page_naming_the_subcommands() {
    let out = milepost().arg("man").assert().success();
    let page = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    // clap_mangen opens with two lines that define a quote for groff, then the title.
    let title = page.lines().position(|l| l.starts_with(".TH milepost 1 "));
    assert!(title.is_some_and(|n| n <= 2), "a .TH header first:\n{page}");
    assert!(page.lines().all(|l| !l.starts_with('\u{1b}')), "roff, not terminal output");
    for command in ["apply", "resume", "plan", "report", "fmt", "completions"] {
        assert!(page.contains(&format!("milepost\\-{command}(1)")), "the page names `{command}`:\n{page}");
    }
}

#[test]
fn man_prints_a_subcommands_page() {
    let out = milepost().args(["man", "apply"]).assert().success();
    let page = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(page.contains(".TH milepost-apply 1 "), "{page}");
    assert!(page.contains("\\-\\-keep\\-going"), "the page lists apply's options:\n{page}");
    milepost().args(["man", "nope"]).assert().code(2).stderr(predicates::str::contains("no command `nope`"));
}
