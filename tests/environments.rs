//! Issue 14: environments. One plan, staging then production, with state that can never be
//! mixed up: runs of one environment (or one workflow) never count for another, promotion
//! is checked before anything runs, and roots in the layout before environments migrate.

use std::path::{Path, PathBuf};

use crate::support::{count, diagnostics, ledger, milepost, stderr, stdout, Local};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// Steps whose text no environment's value touches: exactly the steps a mixed-up state
/// would count as done in production after staging ran them.
const TWO_ENVS: &str = r#"workflow w {
    vars { target "none" }
    environment staging { vars { target "staging" } }
    environment prod { vars { target "prod" } }
}
module a { budget "1m"; install { run s "echo a >> ledger" } }
module b { budget "1m"; after a; install { run s "echo b >> ledger" } }
module c { budget "1m"; after b; install { run s "echo c-{{ vars.target }} >> ledger" } }
"#;

/// The issue's reproduction: staging's runs made production skip every step whose text did
/// not change. Now production has a state of its own: resume finds nothing to continue,
/// and apply runs every step there.
#[test]
fn staging_runs_never_count_as_done_in_prod() {
    let dir = tempfile::tempdir().unwrap();
    let w = write(dir.path(), "w.kdl", TWO_ENVS);
    milepost().arg("apply").arg(&w).args(["--env", "staging"]).assert().success();
    let out = milepost().arg("resume").arg(&w).args(["--env", "prod"]).assert().code(5);
    assert!(stderr(&out).contains("no earlier run of w in environment `prod`"), "{}", stderr(&out));
    let out = milepost().arg("plan").arg(&w).args(["--env", "prod", "--format", "json"]).assert().success();
    let plan: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    for node in plan["nodes"].as_array().unwrap() {
        assert_ne!(node["status"], "done", "prod's plan counts staging's run: {node}");
    }
    milepost().arg("apply").arg(&w).env("MILEPOST_ENV", "prod").assert().success();
    let lines = ledger(dir.path());
    assert_eq!((count(&lines, "a"), count(&lines, "b")), (2, 2), "{lines:?}");
    assert_eq!((count(&lines, "c-staging"), count(&lines, "c-prod")), (1, 1), "{lines:?}");
    // status --env prod shows prod alone.
    let status = milepost().arg("status").arg(&w).args(["--env", "prod", "--json"]).assert().success();
    let status: serde_json::Value = serde_json::from_slice(&status.get_output().stdout).unwrap();
    assert_eq!(status["environment"], "prod");
    let staging = milepost().arg("history").arg(&w).args(["--env", "staging"]).assert().success();
    let staging_run = stdout(&staging).split_whitespace().next().unwrap().to_string();
    assert_ne!(status["last_run"], staging_run.as_str());
    let prod_history = stdout(&milepost().arg("history").arg(&w).args(["--env", "prod"]).assert().success());
    assert!(!prod_history.contains(&staging_run), "{prod_history}");
    // A second apply of staging does not disturb prod: prod stays done.
    milepost().arg("apply").arg(&w).args(["--env", "staging", "--only", "a"]).assert().success();
    let out = milepost().arg("resume").arg(&w).args(["--env", "prod"]).assert().success();
    assert!(stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
}

/// A workflow with environments refuses to run, resume or plan without one, and names them.
#[test]
fn a_workflow_with_environments_needs_one() {
    let dir = tempfile::tempdir().unwrap();
    let w = write(dir.path(), "w.kdl", TWO_ENVS);
    // plan without one previews a fresh rollout with the workflow's own values.
    let out = milepost().arg("plan").arg(&w).env_remove("MILEPOST_ENV").assert().success();
    assert!(stderr(&out).contains("no --env: a fresh rollout"), "{}", stderr(&out));
    for command in ["apply", "resume", "verify"] {
        let out = milepost().arg(command).arg(&w).env_remove("MILEPOST_ENV").assert().code(2);
        assert!(
            stderr(&out).contains("w declares environments (staging, prod): say which one"),
            "{command}: {}",
            stderr(&out)
        );
    }
    assert!(!dir.path().join("ledger").exists());
    // An unknown one is a definition error with the nearest name.
    let out = milepost().arg("apply").arg(&w).args(["--env", "prdo"]).assert().code(3);
    assert!(
        stderr(&out).contains("names environment `prdo`, which the workflow does not declare"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("did you mean `prod`?"), "{}", stderr(&out));
    // --env for a workflow that declares none.
    let plain = write(
        dir.path(),
        "plain.kdl",
        "workflow p\nmodule a { budget \"1m\"; install { run s \"true\" } }\n",
    );
    let out = milepost().arg("apply").arg(&plain).args(["--env", "prod"]).assert().code(3);
    assert!(stderr(&out).contains("this workflow declares no environments"), "{}", stderr(&out));
    // MILEPOST_ENV is for a shell that works in one environment: a workflow without any
    // ignores it, and an empty one is no choice.
    milepost().arg("apply").arg(&plain).env("MILEPOST_ENV", "prod").assert().success();
    let out = milepost().arg("apply").arg(&w).env("MILEPOST_ENV", " ").assert().code(2);
    assert!(stderr(&out).contains("say which one"), "{}", stderr(&out));
    // validate needs none: it checks the definitions.
    milepost().arg("validate").arg(&w).env_remove("MILEPOST_ENV").assert().success();
}

/// Two workflows in one folder, even with the same node ids and step texts, share nothing:
/// neither's runs count for the other, and an apply of one resets nothing of the other.
#[test]
fn two_workflows_in_one_folder_share_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let module = "module m { budget \"1m\"; install { run s \"echo m >> ledger\" } }\n\
                  module n { budget \"1m\"; after m; install { run s \"echo n >> ledger; test ! -f broken\" } }\n";
    let x = write(dir.path(), "x.kdl", &format!("workflow x\n{module}"));
    let y = write(dir.path(), "y.kdl", &format!("workflow y\n{module}"));
    milepost().arg("apply").arg(&x).assert().success();
    let out = milepost().arg("resume").arg(&y).assert().code(5);
    assert!(stderr(&out).contains("no earlier run of y"), "{}", stderr(&out));
    std::fs::write(dir.path().join("broken"), "").unwrap();
    milepost().arg("apply").arg(&y).assert().code(1);
    assert_eq!(count(&ledger(dir.path()), "m"), 2, "y's m ran although x's passed");
    // x is untouched by y's failed apply.
    let out = milepost().arg("resume").arg(&x).assert().success();
    assert!(stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
    std::fs::remove_file(dir.path().join("broken")).unwrap();
    milepost().arg("resume").arg(&y).assert().success();
    assert_eq!(count(&ledger(dir.path()), "m"), 2, "y's passed m ran again");
    // Each history holds its own runs.
    let hx = stdout(&milepost().arg("history").arg(&x).assert().success());
    let hy = stdout(&milepost().arg("history").arg(&y).assert().success());
    assert_eq!((hx.lines().count(), hy.lines().count()), (1, 2), "{hx}\n{hy}");
}

/// A state root in the layout before environments (`.milepost/runs/…`), holding the runs of
/// two workflows interleaved, is moved to one folder per workflow on first use; each chain
/// of runs reads whole, and nothing recorded runs again.
#[test]
fn a_root_in_the_layout_before_environments_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let chain = "module a { budget \"1m\"; install { run s \"echo a >> ledger\" } }\n\
                 module b { budget \"1m\"; after a; install { run s \"echo b >> ledger\" } }\n";
    let x = write(dir.path(), "x.kdl", &format!("workflow x\n{chain}"));
    let y = write(dir.path(), "y.kdl", &format!("workflow y\n{chain}"));
    milepost().arg("apply").arg(&x).args(["--only", "a"]).assert().success();
    milepost().arg("apply").arg(&y).assert().success();
    milepost().arg("apply").arg(&x).args(["--only", "b"]).assert().success();
    let root = dir.path().join(".milepost");
    let legacy = to_legacy(&root, &["x", "y"]);

    let out = milepost().arg("status").arg(&x).arg("--json").assert().success();
    assert!(stderr(&out).contains("moved 3 run(s)"), "{}", stderr(&out));
    let status: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done"), "{status}");
    assert!(!legacy.exists());
    let out = milepost().arg("resume").arg(&y).assert().success();
    assert!(stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
    let out = milepost().arg("resume").arg(&x).assert().success();
    assert!(stderr(&out).contains("nothing to resume"), "{}", stderr(&out));
    assert_eq!(ledger(dir.path()).len(), 4, "{:?}", ledger(dir.path()));
}

/// Puts every run of `workflows` back in one `runs/` folder, as milepost wrote it before
/// environments, each run naming the newest run of the folder as its previous one.
fn to_legacy(root: &Path, workflows: &[&str]) -> PathBuf {
    let legacy = root.join("runs");
    std::fs::create_dir_all(&legacy).unwrap();
    let mut runs = Vec::new();
    for workflow in workflows {
        runs.extend(milepost::state::history::run_dirs(&root.join(workflow).join("default")));
    }
    runs.sort_by_key(|r| r.file_name().unwrap().to_owned());
    let mut previous: Option<String> = None;
    for run in &runs {
        let name = run.file_name().unwrap().to_string_lossy().into_owned();
        let target = legacy.join(&name);
        std::fs::rename(run, &target).unwrap();
        relink(&target.join("journal.jsonl"), previous.as_deref());
        previous = Some(name);
    }
    for workflow in workflows {
        std::fs::remove_dir_all(root.join(workflow)).unwrap();
    }
    legacy
}

/// Rewrites a journal's run-start to name `previous` (as the layout before environments
/// did: the newest run of the one folder), with its checksum made right.
fn relink(journal: &Path, previous: Option<&str>) {
    use milepost::state::format::Record;
    let mut records = milepost::state::journal::read(journal).unwrap();
    if let Some(Record::RunStart { previous_run, .. }) = records.first_mut() {
        *previous_run = previous.map(String::from);
    }
    std::fs::remove_file(journal).unwrap();
    let mut rewritten = milepost::state::journal::Journal::create(journal, &records[0]).unwrap();
    for record in &records[1..] {
        rewritten.append(record).unwrap();
    }
    rewritten.sync().unwrap();
}

/// Promotion on the local example (the issue's "Done when"): prod before staging is refused
/// in preflight; staging, then prod runs every step in prod; changing one module after
/// staging passed makes prod's preflight name it, while a budget or a comment does not.
#[test]
fn the_local_example_promotes_staging_to_prod() {
    let local = Local::new();
    let prod_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let prod = |command: &str| {
        let mut cmd = local.command_in("prod", prod_port, command);
        cmd.env_remove("MILEPOST_DEMO_FAIL").timeout(std::time::Duration::from_secs(60));
        cmd
    };
    let out = prod("apply").assert().code(6);
    let err = stderr(&out);
    assert!(
        err.contains("staging has not passed the whole workflow with this definition (")
            && err.contains("nothing of it has run in staging"),
        "{err}"
    );
    assert!(!local.dir.path().join(".work/prod").exists(), "prod ran a step");

    local.run("apply", false).success();
    // Prod's last gate asks for approval once its checks passed (issue 17): no terminal here,
    // so the rollout is left waiting (exit 7) until someone approves and it resumes.
    let out = prod("apply").args(["--progress", "plain"]).assert().code(7);
    assert!(
        stderr(&out).contains("8 passed, 0 failed, 0 skipped, 1 waiting for approval"),
        "{}",
        stderr(&out)
    );
    milepost()
        .args(["approve", "production-readiness"])
        .arg(local.workflow())
        .args(["--env", "prod"])
        .assert()
        .success();
    let out = prod("resume").assert().success();
    assert!(stderr(&out).contains("1 passed, 0 failed"), "{}", stderr(&out));
    // Both environments' rollouts ran every step, each in its own folder.
    for (env, runs) in [("staging", 1), ("prod", 2)] {
        let data = local.dir.path().join(format!(".work/{env}/data/record-5.txt"));
        assert!(data.exists(), "{env} did not run");
        let folder = local.dir.path().join(format!(".milepost/local-phase-2/{env}/runs"));
        assert_eq!(std::fs::read_dir(&folder).unwrap().count(), runs, "{env}");
    }
    let overview =
        stdout(&milepost().arg("status").arg(local.workflow()).env_remove("MILEPOST_ENV").assert().success());
    assert!(overview.contains("staging  9/9 passed with this definition"), "{overview}");
    assert!(overview.contains("requires staging to pass the whole workflow: proven"), "{overview}");
    // The report has a row per environment; plan says what staging has proven.
    let report = stdout(&prod("report").assert().success());
    assert!(report.contains("| prod (this report) | 9/9 |"), "{report}");
    assert!(report.contains("| staging | 9/9 |"), "{report}");
    let plan = stdout(&prod("plan").assert().success());
    assert!(
        plan.contains("✓ promotion: staging has passed the whole workflow with this definition"),
        "{plan}"
    );

    // A budget and a comment are planning data, not definition.
    let workflow = local.workflow();
    let text = std::fs::read_to_string(&workflow).unwrap();
    let planning = text.replace(
        "budget \"10s\"\n    success-probability 0.96",
        "budget \"12s\"\n    success-probability 0.96",
    ) + "\n// a comment\n";
    assert_ne!(planning, text);
    std::fs::write(&workflow, &planning).unwrap();
    prod("apply").args(["--only", "autoscaling"]).assert().success();
    // One step of one module changed: prod's preflight names it, and nothing runs.
    let changed = planning.replace("run apply-policy \"sleep 1 &&", "run apply-policy \"sleep 0 &&");
    assert_ne!(changed, planning);
    std::fs::write(&workflow, &changed).unwrap();
    let plan = stdout(&prod("plan").assert().success());
    assert!(plan.contains("✗ promotion: staging has not passed"), "{plan}");
    let out = prod("apply").assert().code(6);
    let err = stderr(&out);
    assert!(err.contains("it last passed with definition"), "{err}");
    assert!(err.contains("1 module changed since: autoscaling"), "{err}");
    // Once staging has passed it, prod may (and asks for approval again: a new rollout).
    local.run("apply", false).success();
    prod("apply").assert().code(7);
}

/// An environment's settings apply: its parallelism and deadline, its Kubernetes context, and
/// where its secrets come from.
#[test]
fn an_environments_settings_are_laid_over_the_workflows() {
    let dir = tempfile::tempdir().unwrap();
    let w = write(
        dir.path(),
        "w.kdl",
        r#"workflow w {
    parallelism 4
    secret token env="TOKEN"
    kubernetes { context "dev" }
    environment prod {
        parallelism 1
        deadline "6h"
        secret token env="PROD_TOKEN"
        kubernetes { context "prod-admin" }
    }
}
module a { budget "1m"; install { run s "test \"$T\" = prod-value" { env T="{{ secrets.token }}"; } } }
"#,
    );
    let out = milepost().arg("validate").arg(&w).args(["--env", "prod"]).assert().success();
    assert!(stdout(&out).contains("parallelism     1"), "{}", stdout(&out));
    milepost()
        .arg("apply")
        .arg(&w)
        .args(["--env", "prod"])
        .env("TOKEN", "dev-value")
        .env("PROD_TOKEN", "prod-value")
        .assert()
        .success();
    let run = &milepost::state::history::run_dirs(&dir.path().join(".milepost/w/prod"))[0];
    let records = milepost::state::journal::read(&run.join("journal.jsonl")).unwrap();
    match &records[0] {
        milepost::state::format::Record::RunStart { context, environment, .. } => {
            assert_eq!((context.as_deref(), environment.as_deref()), (Some("prod-admin"), Some("prod")));
        }
        other => panic!("{other:?}"),
    }
}

/// Mistakes in environments are definition errors located in the file.
#[test]
fn mistakes_in_environments_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let w = write(
        dir.path(),
        "w.kdl",
        r#"workflow w {
    vars { target "x" }
    secret token env="TOKEN"
    phase "A" { modules a }
    environment staging { vars { traget "y" } }
    environment staging { }
    environment "../up" { }
    environment prod { requires stagin }
    environment qa { requires qa }
    environment one { requires two }
    environment two { requires one }
    environment pre { requires staging phase="B"; secret tokn env="X" }
}
module a { budget "1m"; install { run s "true" } }
"#,
    );
    let text = diagnostics(&w).split_whitespace().filter(|w| *w != "│").collect::<Vec<_>>().join(" ");
    assert!(text.contains("w.kdl:10:32]"), "the cycle is shown where it is: {text}");
    for expected in [
        "environment `staging` sets `traget`, which the workflow's `vars` block does not declare",
        "environment `staging` is defined twice",
        "environment name `../up` is not a plain word",
        "names environment `stagin`, which the workflow does not declare",
        "did you mean `staging`?",
        "environment `qa` requires itself",
        "requires itself through two",
        "phase `B` is not a phase of this workflow",
        "environment `pre` sets secret `tokn`, which the workflow does not declare",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }
}

/// Review of issue 14: a migration cut short (here by a file-size limit standing in for a
/// full disk) moves nothing, and the next command migrates whole; leftover folders of an
/// older milepost never block a later migration.
#[test]
fn a_migration_cut_short_leaves_every_chain_readable() {
    let dir = tempfile::tempdir().unwrap();
    let chain = "module a { budget \"1m\"; install { run s \"echo a >> ledger\" } }\n";
    let x = write(dir.path(), "x.kdl", &format!("workflow x\n{chain}"));
    let y = write(dir.path(), "y.kdl", &format!("workflow y\n{chain}"));
    milepost().arg("apply").arg(&y).assert().success();
    milepost().arg("apply").arg(&x).assert().success();
    milepost().arg("apply").arg(&y).assert().success();
    let root = dir.path().join(".milepost");
    let legacy = to_legacy(&root, &["x", "y"]);
    std::fs::create_dir(legacy.join(".gone.partial")).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let cut = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("trap '' XFSZ; ulimit -f 0; exec '{}' status '{}'", bin.display(), y.display()))
        .output()
        .unwrap();
    assert_eq!(cut.status.code(), Some(5), "{}", String::from_utf8_lossy(&cut.stderr));
    assert_eq!(std::fs::read_dir(&legacy).unwrap().count(), 4, "a run moved though the migration failed");
    milepost().arg("status").arg(&y).assert().success();
    milepost().arg("status").arg(&x).assert().success();
    // An older milepost writes runs/ again, with a folder it left half made: migrated too.
    std::fs::create_dir_all(legacy.join(".again.partial")).unwrap();
    milepost().arg("status").arg(&x).assert().success();
    assert!(!legacy.exists());
    assert!(root.join(".runs-before-environments/.again.partial").exists());
}

/// Review of issue 14: two files with one workflow id share its state folder (the id is the
/// identity), so the runs of one are refused for the other rather than counted.
#[test]
fn two_files_with_one_workflow_id_do_not_count_each_others_runs() {
    let dir = tempfile::tempdir().unwrap();
    let body = |target: &str| {
        format!(
            "workflow w {{ vars {{ target \"{target}\" }} }}\n\
             module a {{ budget \"1m\"; install {{ run s \"echo a >> ledger\" }} }}\n\
             module b {{ budget \"1m\"; after a; install {{ run s \"echo b-{{{{ vars.target }}}} >> ledger; test ! -f broken\" }} }}\n"
        )
    };
    let staging = write(dir.path(), "staging.kdl", &body("staging"));
    let prod = write(dir.path(), "prod.kdl", &body("prod"));
    std::fs::write(dir.path().join("broken"), "").unwrap();
    milepost().arg("apply").arg(&staging).assert().code(1);
    let out = milepost().arg("resume").arg(&prod).assert().code(2);
    assert!(stderr(&out).contains("two files with the workflow id `w`"), "{}", stderr(&out));
    // A selective apply would keep staging's `a` for prod's next resume: refused the same way.
    let out = milepost().arg("apply").arg(&prod).args(["--only", "b"]).assert().code(2);
    assert!(stderr(&out).contains("two files with the workflow id `w`"), "{}", stderr(&out));
    assert_eq!(count(&ledger(dir.path()), "a"), 1);
}

/// Review of issue 14: a node whose pass in staging was built on a dependency that ran
/// again since (`--only` the changed module) proves nothing of it: the gate never saw it.
#[test]
fn a_pass_built_on_an_earlier_dependency_does_not_promote() {
    let dir = tempfile::tempdir().unwrap();
    let text = r#"workflow w {
    phase "A" { modules a; gate g }
    environment staging { }
    environment prod { requires staging phase="A" }
}
module a { budget "1m"; install { run s "echo version=v1 > out" } }
gate g { budget "1m"; validate { run check "true" } }
"#;
    let w = write(dir.path(), "w.kdl", text);
    milepost().arg("apply").arg(&w).args(["--env", "staging"]).assert().success();
    std::fs::write(&w, text.replace("version=v1", "version=v2")).unwrap();
    milepost().arg("apply").arg(&w).args(["--env", "staging", "--only", "a"]).assert().success();
    let out = milepost().arg("apply").arg(&w).args(["--env", "prod"]).assert().code(6);
    assert!(stderr(&out).contains("g passed before a ran again"), "{}", stderr(&out));
    milepost().arg("apply").arg(&w).args(["--env", "staging"]).assert().success();
    milepost().arg("apply").arg(&w).args(["--env", "prod"]).assert().success();
}

/// Review of issue 14: a file chosen by an environment's values makes no module differ
/// between environments; an environment named `default`, or workflows named `runs` or
/// `lock`, cannot be confused with the state layout.
#[test]
fn names_and_paths_that_look_like_the_layout_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("t")).unwrap();
    for flavor in ["common", "staging", "prod"] {
        std::fs::write(dir.path().join(format!("t/{flavor}.conf")), format!("{flavor}\n")).unwrap();
    }
    let w = write(
        dir.path(),
        "w.kdl",
        r#"workflow w {
    vars { flavor "common" }
    environment staging { vars { flavor "staging" } }
    environment prod { vars { flavor "prod" }; requires staging }
}
module a { budget "1m"; install { template conf "t/{{ vars.flavor }}.conf" dest="out/{{ vars.flavor }}.conf" } }
"#,
    );
    milepost().arg("apply").arg(&w).args(["--env", "staging"]).assert().success();
    // The file an environment's values choose is another file in prod: no environment can
    // vouch for it, and the refusal says why.
    let out = milepost().arg("apply").arg(&w).args(["--env", "prod"]).assert().code(6);
    assert!(stderr(&out).contains("a file whose path an environment's values choose"), "{}", stderr(&out));
    // The overview reads values as an environment gives them: the workflow's own default
    // names a file that need not exist.
    std::fs::remove_file(dir.path().join("t/common.conf")).unwrap();
    let overview = stdout(&milepost().arg("status").arg(&w).env_remove("MILEPOST_ENV").assert().success());
    assert!(overview.contains("staging  1/1 passed with this definition"), "{overview}");
    // MILEPOST_ENV of another project does not concern commands that read definitions only.
    milepost()
        .arg("validate")
        .arg(&w)
        .args(["--env", "staging"])
        .env("MILEPOST_ENV", "nope")
        .assert()
        .success();
    milepost().arg("graph").arg(&w).args(["--env", "staging"]).env("MILEPOST_ENV", "nope").assert().success();

    let bad = write(
        dir.path(),
        "bad.kdl",
        "workflow b { environment default { } }\nmodule a { budget \"1m\"; install { run s \"true\" } }\n",
    );
    let out = milepost().arg("validate").arg(&bad).assert().code(3);
    assert!(
        stderr(&out).contains("is the name of the state of a workflow without environments"),
        "{}",
        stderr(&out)
    );

    for id in ["runs", "lock", "other"] {
        let file = write(
            dir.path(),
            &format!("{id}.kdl"),
            &format!("workflow {id}\nmodule a {{ budget \"1m\"; install {{ run s \"true\" }} }}\n"),
        );
        milepost().arg("apply").arg(&file).assert().success();
    }
    for id in ["runs", "lock", "other"] {
        milepost().arg("status").arg(dir.path().join(format!("{id}.kdl"))).assert().success();
    }
}

/// Issue 15 item 3: `resume`, `status`, `history` and `report` without a workflow, from the
/// folder the rollout was started in, find it (its state is beside the workflow, below here)
/// and its environment.
#[test]
fn state_commands_without_a_workflow_find_the_newest_run_below_here() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("deploy/plans")).unwrap();
    let w = write(
        &dir.path().join("deploy/plans"),
        "w.kdl",
        r#"workflow w { environment staging { }; environment prod { } }
module a { budget "1m"; install { run s "echo a >> ledger" } }
module b { budget "1m"; after a; install { run s "test ! -f broken" } }
"#,
    );
    std::fs::write(dir.path().join("deploy/plans/broken"), "").unwrap();
    let here = |command: &str| {
        let mut cmd = milepost();
        cmd.current_dir(dir.path()).env_remove("MILEPOST_ENV").arg(command);
        cmd
    };
    here("apply").arg("deploy/plans/w.kdl").args(["--env", "staging"]).assert().code(1);
    std::fs::remove_file(dir.path().join("deploy/plans/broken")).unwrap();
    let out = here("status").assert().success();
    assert!(stdout(&out).contains("w · staging"), "{}", stdout(&out));
    assert!(stderr(&out).contains("the newest run below here is of"), "{}", stderr(&out));
    here("history").assert().success();
    here("report").assert().success();
    let out = here("resume").assert().success();
    assert!(stderr(&out).contains("resuming w"), "{}", stderr(&out));
    assert_eq!(ledger(&dir.path().join("deploy/plans")), vec!["a"]);
    let _ = w;
}

/// Review of issue 14: what a module renders is part of its definition wherever its path
/// comes from, and a node run before its dependency ever ran was not built on it: neither
/// lets prod go ahead on something staging never validated.
#[test]
fn promotion_sees_rendered_files_and_the_order_nodes_ran_in() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("t")).unwrap();
    std::fs::write(dir.path().join("t/a.conf"), "v1\n").unwrap();
    let w = write(
        dir.path(),
        "w.kdl",
        r#"workflow w { environment staging { }; environment prod { requires staging } }
module a { budget "1m"; install { template cfg "{{ dir }}/t/a.conf" dest="out/a.conf" } }
module b { budget "1m"; after a; install { run s "cat out/a.conf >> ledger" } }
"#,
    );
    milepost().arg("apply").arg(&w).args(["--env", "staging"]).assert().success();
    std::fs::write(dir.path().join("t/a.conf"), "v2 never in staging\n").unwrap();
    let out = milepost().arg("apply").arg(&w).args(["--env", "prod"]).assert().code(6);
    assert!(stderr(&out).contains("1 module changed since: a"), "{}", stderr(&out));
    // b first, then a, each alone: b was never built on a.
    milepost().arg("apply").arg(&w).args(["--env", "staging", "--only", "b"]).assert().success();
    milepost().arg("apply").arg(&w).args(["--env", "staging", "--only", "a"]).assert().success();
    let out = milepost().arg("apply").arg(&w).args(["--env", "prod"]).assert().code(6);
    assert!(stderr(&out).contains("b passed before a ran"), "{}", stderr(&out));
    milepost().arg("apply").arg(&w).args(["--env", "staging"]).assert().success();
    milepost().arg("apply").arg(&w).args(["--env", "prod"]).assert().success();
}

/// Review of issue 14: one file reached by two names (a symlink) is one workflow file.
#[test]
fn a_workflow_file_reached_through_a_symlink_is_the_same_file() {
    let dir = tempfile::tempdir().unwrap();
    let real = write(
        dir.path(),
        "real.kdl",
        "workflow s\nmodule a { budget \"1m\"; install { run s \"echo a >> ledger\" } }\n\
         module b { budget \"1m\"; after a; install { run s \"test ! -f broken\" } }\n",
    );
    std::os::unix::fs::symlink(&real, dir.path().join("current.kdl")).unwrap();
    std::fs::write(dir.path().join("broken"), "").unwrap();
    milepost().arg("apply").arg(dir.path().join("current.kdl")).assert().code(1);
    std::fs::remove_file(dir.path().join("broken")).unwrap();
    milepost().arg("resume").arg(&real).assert().success();
    assert_eq!(ledger(dir.path()), vec!["a"]);
}
