//! Definitions under hostile input (issue 12, items 13–17): every case ends quickly with a
//! located diagnostic, never a panic, an abort, a hang or a silent acceptance.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use milepost::spec::{load, LoadOptions};

use crate::support::milepost;

/// A generous bound for one load in the dev profile; these used to take 10 s to minutes.
const QUICK: Duration = Duration::from_secs(5);

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const MODULE: &str = "module m { budget \"1h\"; install { run x \"true\" } }\n";

/// `milepost validate` on `path`: exit code and stderr, failing if it runs past `QUICK`.
fn validate(path: &Path, extra: &[&str]) -> (i32, String) {
    let out = milepost()
        .arg("validate")
        .arg("-q")
        .arg(path)
        .args(extra)
        .env_remove("MILEPOST_TEST_SECRET")
        .timeout(QUICK)
        .output()
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Loads through the library and returns each diagnostic's location and message.
fn problems(path: &Path, options: &LoadOptions) -> Vec<(Option<String>, String)> {
    let started = Instant::now();
    let result = load(path, options);
    assert!(started.elapsed() < QUICK, "loading took {:?}", started.elapsed());
    match result {
        Ok(_) => Vec::new(),
        Err(errors) => errors.diagnostics.iter().map(|d| (d.location.clone(), d.to_string())).collect(),
    }
}

#[test]
fn issue_12_huge_durations_are_located_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    for budget in ["18446744073709551615s", "1000000y"] {
        let path = write(
            dir.path(),
            "w.kdl",
            format!("workflow w {{}}\nmodule m {{ budget \"{budget}\"; install {{ run x \"true\" }} }}\n"),
        );
        for command in ["validate", "plan"] {
            let out = milepost().arg(command).arg(&path).timeout(QUICK).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(3), "{budget} {command}: {stderr}");
            assert!(stderr.contains("longer than 10 years") && stderr.contains("w.kdl:2:19"), "{stderr}");
        }
    }
}

#[test]
fn issue_12_deep_nesting_is_a_located_error_not_a_stack_overflow() {
    let dir = tempfile::tempdir().unwrap();
    let deep = format!("workflow w {{}}\n{MODULE}module d {}{}\n", "{ a ".repeat(1600), "}".repeat(1600));
    let comments = format!("workflow w {{}}\n{MODULE}{}x{}\n", "/* ".repeat(1600), " */".repeat(1600));
    for (name, text) in [("blocks.kdl", deep), ("comments.kdl", comments)] {
        let path = write(dir.path(), name, text);
        let (code, stderr) = validate(&path, &[]);
        assert_eq!(code, 3, "{stderr}");
        assert!(stderr.contains("milepost::too_deep") && stderr.contains(&format!("{name}:3:")), "{stderr}");
    }
    // As deep as allowed: parsed by both parsers on a test thread's stack, no overflow.
    let limit = milepost::spec::decode::MAX_NESTING;
    let text =
        format!("workflow w {{}}\n{MODULE}module d {}{}\n", "{ a ".repeat(limit - 1), "}".repeat(limit - 1));
    let path = write(dir.path(), "limit.kdl", text);
    let found = problems(&path, &LoadOptions::default());
    assert!(found.iter().all(|(_, m)| !m.contains("nested")), "{found:?}");
    assert!(!found.is_empty(), "module d is still wrong, just not too deep");
}

#[test]
fn issue_12_includes_of_devices_and_fifos_are_refused_without_reading() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.kdl");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    for (target, kind) in [("/dev/zero", "a device"), ("fifo.kdl", "a named pipe (FIFO)")] {
        let path = write(dir.path(), "w.kdl", format!("workflow w {{ include \"{target}\" }}\n{MODULE}"));
        let (code, stderr) = validate(&path, &[]);
        assert_eq!(code, 3, "{stderr}");
        assert!(stderr.contains(&format!("is {kind}, not a regular file")), "{stderr}");
        assert!(stderr.contains("w.kdl:1:22"), "{stderr}");
    }
    // A pattern that would walk the whole filesystem (and /proc without end) stops early.
    let path = write(dir.path(), "w.kdl", format!("workflow w {{ include \"/**/*.kdlx\" }}\n{MODULE}"));
    let (code, stderr) = validate(&path, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("milepost::include_too_wide") && stderr.contains("w.kdl:1:22"), "{stderr}");
    // A template source or manifest is read the same way.
    let path = write(
        dir.path(),
        "t.kdl",
        "workflow w {}\nmodule m { budget \"1h\"; install { template t \"fifo.kdl\" dest=\"out\" } }\n",
    );
    let (code, stderr) = validate(&path, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("not a regular file") && stderr.contains("t.kdl:2:46"), "{stderr}");
}

#[test]
fn issue_12_ten_thousand_unknown_after_names_are_reported_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("workflow w {}\nmodule n { budget \"1h\"; install { run x \"true\" }\n");
    for i in 0..10_000 {
        text.push_str(&format!("    after missing-{i}\n"));
    }
    text.push_str("}\n");
    for i in 0..10_000 {
        text.push_str(&format!("module k{i} {{ budget \"1h\"; install {{ run x \"true\" }} }}\n"));
    }
    let path = write(dir.path(), "w.kdl", text);
    let started = Instant::now();
    let found = problems(&path, &LoadOptions::default());
    let loaded = started.elapsed();
    assert_eq!(found.len(), 10_000);
    assert!(found
        .iter()
        .all(|(at, _)| at.as_deref().is_some_and(|a| a.starts_with("w.kdl:") || a.contains("/w.kdl:"))));
    let started = Instant::now();
    let (code, stderr) = validate(&path, &[]);
    eprintln!("load {loaded:?}, validate (load and render) {:?}", started.elapsed());
    assert_eq!(code, 3);
    assert!(
        stderr.contains("the definitions have 10000 errors"),
        "{}",
        &stderr[stderr.len().saturating_sub(300)..]
    );
    assert!(
        stderr.contains("w.kdl:10002:11: `n` runs after `missing-9999`"),
        "every error keeps its location"
    );
}

#[test]
fn issue_12_costly_templates_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    for template in [
        "{% macro f(n) %}{{ self::f(n=n) }}{% endmacro f %}{{ self::f(n=1) }}",
        "{% for i in range(end=99999999999) %}x{% endfor %}",
        "{% for i in range(end=100000) %}{% for j in range(end=100000) %}x{% endfor %}{% endfor %}",
        "{{ range(end=99999999999) | length }}",
    ] {
        let path = write(
            dir.path(),
            "w.kdl",
            format!("workflow w {{}}\nmodule m {{ budget \"1h\"; install {{ run x #\"{template}\"# }} }}\n"),
        );
        let (code, stderr) = validate(&path, &[]);
        assert_eq!(code, 3, "{template}: {stderr}");
        assert!(stderr.contains("w.kdl:2:41"), "{template}: {stderr}");
    }
}

#[test]
fn issue_12_a_non_utf8_definition_names_the_line_and_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "w.kdl",
        b"workflow w {}\nmodule m { budget \"1h\"; install { run x \"echo \xe9\" } }\n",
    );
    let (code, stderr) = validate(&path, &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("is not UTF-8: byte 0xE9 at line 2, column 47 (byte offset 60)"), "{stderr}");
    assert!(stderr.contains("w.kdl:2:47") && !stderr.contains("permissions"), "{stderr}");
    // An included file, and a vars file, the same.
    write(dir.path(), "inc.kdl", b"module \xff { }\n");
    let path = write(dir.path(), "i.kdl", format!("workflow w {{ include \"inc.kdl\" }}\n{MODULE}"));
    let (_, stderr) = validate(&path, &[]);
    assert!(stderr.contains("inc.kdl:1:8"), "{stderr}");
}

#[test]
fn issue_12_multiline_strings_print_nothing_to_stderr() {
    // kdlite 0.1.1 printed the lines of every `"""` string through a leftover dbg!.
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "w.kdl",
        "workflow w {}\nmodule m { budget \"1h\"; install { run x \"\"\"\n    echo hunter2-in-a-multiline-string\n    \"\"\" } }\n",
    );
    let out = milepost().args(["validate", "-q"]).arg(&path).timeout(QUICK).assert().success();
    let stderr = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert_eq!(stderr, "", "nothing on stderr");
    let out = milepost().args(["graph", "--format", "json"]).arg(&path).timeout(QUICK).assert().success();
    assert!(out.get_output().stderr.is_empty());
}

#[test]
fn issue_12_an_undeclared_var_is_an_error_with_a_did_you_mean() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "w.kdl",
        "workflow w { vars { greeting \"hi\" } }\nmodule m { budget \"1h\"; install { run x \"echo {{ vars.greeting }}\" } }\n",
    );
    let (code, stderr) = validate(&path, &["--var", "greting=x"]);
    assert_eq!(code, 3, "{stderr}");
    assert!(
        stderr.contains("`--var` sets `greting`, which the workflow's `vars` block does not declare"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `greeting`?"), "{stderr}");
    // In a vars file the entry itself is pointed at.
    let vars = write(dir.path(), "prod.vars.kdl", "greeting \"hello\"\ngretting \"x\"\n");
    let (code, stderr) = validate(&path, &["--vars-file", vars.to_str().unwrap()]);
    assert_eq!(code, 3, "{stderr}");
    assert!(stderr.contains("prod.vars.kdl:2:1") && stderr.contains("did you mean `greeting`?"), "{stderr}");
    // Declared names are still accepted.
    assert_eq!(validate(&path, &["--var", "greeting=x"]).0, 0);
}

#[test]
fn issue_12_validate_warns_when_a_secret_is_in_a_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let inline = write(
        dir.path(),
        "inline.kdl",
        "workflow w { secret token env=\"MILEPOST_TEST_SECRET\" }\nmodule m { budget \"1h\"; install { run x \"curl -H 'Authorization: {{ secrets.token }}' x\" } }\n",
    );
    let (code, stderr) = validate(&inline, &[]);
    assert_eq!(code, 0, "a warning does not fail validation: {stderr}");
    assert!(stderr.contains("milepost::secret_in_command") && stderr.contains("inline.kdl:2:41"), "{stderr}");
    assert!(stderr.contains("warning: 1 warning"), "{stderr}");
    let via_env = write(
        dir.path(),
        "env.kdl",
        "workflow w { secret token env=\"MILEPOST_TEST_SECRET\" }\nmodule m { budget \"1h\"; install { run x \"curl -H \\\"Authorization: $TOKEN\\\" x\" { env TOKEN=\"{{ secrets.token }}\"; } } }\n",
    );
    assert_eq!(validate(&via_env, &[]), (0, String::new()));
}

#[test]
fn issue_12_phase2_passes_secrets_only_through_the_environment() {
    let workflow = crate::support::repo().join("workflows/phase2.kdl");
    let (code, stderr) = validate(&workflow, &[]);
    assert_eq!((code, stderr.as_str()), (0, ""), "no secret in any command line of the Phase 2 plan");
    // With every secret set: no command carries a value, and every value reaches an env.
    let names = [
        "VAULT_TOKEN",
        "ARGOCD_ADMIN_PASSWORD",
        "GITOPS_REPO_TOKEN",
        "GRAFANA_ADMIN_PASSWORD",
        "PAGERDUTY_ROUTING_KEY",
        "SLACK_WEBHOOK_URL",
    ];
    let env = names.iter().map(|n| (n.to_string(), format!("value-of-{n}"))).collect();
    let loaded = load(&workflow, &LoadOptions { env: Some(env), ..LoadOptions::default() }).unwrap();
    let mut in_env = Vec::new();
    for node in &loaded.workflow.nodes {
        for step in node.install.iter().chain(&node.validate) {
            if let milepost::spec::StepKind::Run { command, env, .. } = &step.kind {
                assert!(
                    !command.exec.contains("value-of-"),
                    "{} › {}: {}",
                    node.id,
                    step.name,
                    command.shown
                );
                in_env.extend(
                    env.iter().filter(|(_, v)| v.exec.starts_with("value-of-")).map(|(_, v)| v.exec.clone()),
                );
            }
        }
    }
    for n in names {
        assert!(in_env.contains(&format!("value-of-{n}")), "{n} is passed through some step's env");
    }
}
