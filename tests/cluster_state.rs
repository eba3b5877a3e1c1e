//! A rollout's state in a cluster (`state "kubernetes"`, docs/state.md §14), against the API
//! server in the test process (tests/fake_api.rs, made to answer as the recordings of a real
//! one do): operators on "machines" of their own (a state folder each), one SIGKILLed or cut
//! off from the server, another resuming; the server restarted mid-rollout; journals longer
//! than a chunk and a page. The invariant every test ends with: every step ran, and no step
//! whose pass was recorded ran again.
//!
//! The same scenario runs against a real API server with MILEPOST_E2E_KUBECONFIG (and
//! MILEPOST_E2E_NAMESPACE, default `default`): `e2e_two_operators_against_a_real_cluster`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::fake_api::{FakeApi, Partition};
use crate::support::{count, ledger};

/// A team: one workflow, one cluster, operators with state folders of their own.
struct Team {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    api: Option<FakeApi>,
}

/// `a` → `b` (slow the first time, touching `marker-b`) → `c`; each step appends its name
/// to the ledger.
fn workflow(state: &str, slow: &str) -> String {
    format!(
        r#"workflow w {{
    {state}
}}
module a {{ budget "1m"; install {{ run step "echo a >> ../ledger" }} }}
module b {{ budget "1m"; after a; install {{ run step "echo b >> ../ledger; if [ ! -e ../marker-b ]; then touch ../marker-b; {slow}; fi" }} }}
module c {{ budget "1m"; after b; install {{ run step "echo c >> ../ledger" }} }}
"#
    )
}

impl Team {
    fn fake(body: impl Fn(&str) -> String, lease: &str) -> Self {
        let api = FakeApi::start();
        api.put(
            "namespaces",
            "",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team"}}),
        );
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = api.kubeconfig(dir.path());
        let state = format!(r#"state "kubernetes" namespace="team" name="rollout" lease="{lease}""#);
        Self::write(&dir, &body(&state));
        Team { dir, kubeconfig, api: Some(api) }
    }

    fn write(dir: &tempfile::TempDir, text: &str) {
        // Steps run in the workflow's folder; `..` is the team's folder with the ledger.
        std::fs::create_dir_all(dir.path().join("plan")).unwrap();
        std::fs::write(dir.path().join("plan/w.kdl"), text).unwrap();
    }

    fn api(&self) -> &FakeApi {
        self.api.as_ref().expect("a fake API server")
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn workflow(&self) -> PathBuf {
        self.path("plan/w.kdl")
    }

    /// `milepost COMMAND w.kdl` as `operator`: a state folder of its own (its machine).
    fn command(&self, operator: &str, command: &str, kubeconfig: &Path) -> Command {
        let mut cmd = Command::new(assert_cmd::cargo::cargo_bin("milepost"));
        cmd.args(command.split_whitespace())
            .arg(self.workflow())
            .arg("--state-dir")
            .arg(self.path(operator))
            .env("KUBECONFIG", kubeconfig)
            .env("NO_COLOR", "1")
            .env("HOME", self.dir.path())
            .env_remove("MILEPOST_ENV");
        cmd
    }

    /// Runs to the end: exit code and stderr.
    fn run(&self, operator: &str, command: &str) -> (i32, String) {
        self.run_with(operator, command, &self.kubeconfig.clone())
    }

    fn run_with(&self, operator: &str, command: &str, kubeconfig: &Path) -> (i32, String) {
        let out = self.command(operator, command, kubeconfig).stdout(Stdio::null()).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
    }

    /// Started in the background, returned once a step touched `marker`; stderr to a file.
    fn start(&self, operator: &str, command: &str, kubeconfig: &Path, marker: &str) -> Child {
        let err = std::fs::File::create(self.path(&format!("{operator}.stderr"))).unwrap();
        let mut child =
            self.command(operator, command, kubeconfig).stdout(Stdio::null()).stderr(err).spawn().unwrap();
        let start = Instant::now();
        while !self.path(marker).exists() {
            if start.elapsed() > Duration::from_secs(30) || child.try_wait().unwrap().is_some() {
                panic!("{operator}'s {command} did not reach {marker}: {}", self.stderr_of(operator));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    fn stderr_of(&self, operator: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{operator}.stderr"))).unwrap_or_default()
    }

    fn ledger(&self) -> Vec<String> {
        ledger(self.dir.path())
    }
}

fn kill(child: &mut Child) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    child.wait().unwrap();
}

/// The invariant: a, b and c ran, in order, and `a` (recorded passed before anything went
/// wrong) exactly once.
fn every_step_ran_and_no_recorded_pass_again(lines: &[String]) {
    assert_eq!(count(lines, "a"), 1, "a's pass was recorded, it must not run again: {lines:?}");
    assert!(count(lines, "b") >= 1 && count(lines, "c") == 1, "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("c"), "{lines:?}");
}

#[test]
fn an_operator_resumes_what_a_killed_one_left_once_its_lease_expires() {
    let team = Team::fake(|state| workflow(state, "sleep 30"), "2s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    kill(&mut alice);
    let killed = Instant::now();

    // Bob, on another machine: the lease Alice renewed a moment ago is live.
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("held by") && err.contains("milepost apply") && err.contains("unlock --force"),
        "{err}"
    );
    if killed.elapsed() < Duration::from_millis(1500) {
        assert_eq!(team.ledger(), ["a", "b"], "a refused resume ran nothing");
    }

    // Once it expired, Bob's resume takes over: a is not run again, b (in flight, never
    // recorded as passed) is, then c.
    std::thread::sleep(Duration::from_millis(2200));
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    every_step_ran_and_no_recorded_pass_again(&team.ledger());

    // Alice's run ends with the record of who took the lock from her, in the cluster.
    let (code, out) = {
        let out = team.command("carol", "history", &kubeconfig).output().unwrap();
        (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("fenced") && out.contains("its lease had expired"), "{out}");
    let (code, err) = team.run("carol", "status");
    assert_eq!(code, 0, "{err}");
    let journals = team.api().objects("configmaps", "team");
    let text: String = journals
        .iter()
        .filter_map(|m| m["data"]["journal"].as_str())
        .filter(|t| t.contains("lock-broken"))
        .collect();
    assert!(
        text.contains("\"forced\":false")
            && text.contains("(milepost resume)")
            && text.contains("(milepost apply)"),
        "{text}"
    );
}

#[test]
fn a_holder_cut_off_from_the_server_stops_before_its_next_step_and_its_writes_are_refused() {
    let team = Team::fake(|state| workflow(state, "sleep 4"), "2s");
    let cut = Partition::start(team.api().port);
    let alice_config = cut.kubeconfig(team.dir.path());
    let mut alice = team.start("alice", "apply", &alice_config, "marker-b");
    cut.cut(true);

    // Bob waits out Alice's lease (renewals she can no longer send) and takes over.
    let started = Instant::now();
    let code = loop {
        let (code, err) = team.run("bob", "resume");
        if code != 4 || started.elapsed() > Duration::from_secs(20) {
            assert_eq!(code, 0, "{err}");
            break code;
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    assert_eq!(code, 0);
    cut.cut(false);

    // Alice's step ends; she must not start c, and what she writes now is refused.
    let status = alice.wait().unwrap();
    let err = team.stderr_of("alice");
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("no further step starts here") || err.contains("writes are refused"), "{err}");
    let lines = team.ledger();
    every_step_ran_and_no_recorded_pass_again(&lines);
    assert_eq!(count(&lines, "c"), 1, "c ran on Bob's machine only: {lines:?}");
}

#[test]
fn a_forced_unlock_fences_the_holder_whose_late_writes_are_refused() {
    let team = Team::fake(|state| workflow(state, "sleep 2"), "30s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");

    let (code, err) = team.run("bob", "unlock");
    assert_eq!(code, 4, "without --force a live holder is named, not unlocked: {err}");
    assert!(err.contains("milepost apply"), "{err}");
    let (code, err) = team.run("bob", "unlock --force");
    assert_eq!(code, 0, "{err}");

    // Alice's write of b's end is refused (409): she stops before c.
    let status = alice.wait().unwrap();
    let err = team.stderr_of("alice");
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("refused") || err.contains("unlock --force"), "{err}");
    assert_eq!(team.ledger(), ["a", "b"], "c never started");
    // The Lease was not brought back by her renewals (they carry its uid).
    assert!(team
        .api()
        .object("leases", "team", "rollout")
        .is_none_or(|l| !l["spec"]["holderIdentity"].as_str().unwrap_or("").contains("apply")));

    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    every_step_ran_and_no_recorded_pass_again(&team.ledger());
    let forced: String = team
        .api()
        .objects("configmaps", "team")
        .iter()
        .filter_map(|m| m["data"]["journal"].as_str().map(String::from))
        .filter(|t| t.contains("lock-broken"))
        .collect();
    assert!(forced.contains("\"forced\":true") && forced.contains("unlock --force"), "{forced}");
}

#[test]
fn a_server_restart_mid_rollout_loses_nothing() {
    let steps: String = (0..6)
        .map(|i| {
            let after = if i == 0 { String::new() } else { format!("after m{}; ", i - 1) };
            format!("module m{i} {{ budget \"1m\"; {after}install {{ run step \"echo m{i} >> ../ledger; sleep 0.3\" }} }}\n")
        })
        .collect();
    let team = Team::fake(|state| format!("workflow w {{\n    {state}\n}}\n{steps}"), "10s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "ledger");
    std::thread::sleep(Duration::from_millis(400));
    team.api().stop();
    std::thread::sleep(Duration::from_millis(1500));
    team.api().start_again();
    let status = alice.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", team.stderr_of("alice"));
    let lines = team.ledger();
    for i in 0..6 {
        assert_eq!(count(&lines, &format!("m{i}")), 1, "{lines:?}");
    }
    // Everything is in the cluster: another machine sees the rollout complete and has
    // nothing to resume.
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("nothing to resume") || err.contains("complete"), "{err}");
    assert_eq!(team.ledger().len(), 6, "bob ran nothing again");
}

#[test]
fn journals_longer_than_a_chunk_and_a_page_read_back_whole() {
    let steps: String = (0..40)
        .map(|i| {
            format!("module m{i} {{ budget \"1m\"; install {{ run step \"echo m{i} >> ../ledger\" }} }}\n")
        })
        .collect();
    let team =
        Team::fake(|state| format!("workflow w {{\n    {state}\n    parallelism 4\n}}\n{steps}"), "10s");
    let out = team
        .command("alice", "apply", &team.kubeconfig)
        .env("MILEPOST_STATE_CHUNK_BYTES", "256")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let maps = team.api().objects("configmaps", "team");
    assert!(maps.len() > 100, "more chunks than one page of a list: {}", maps.len());
    for map in &maps {
        let size = map["data"]["journal"].as_str().map_or(0, str::len);
        assert!(size <= 256 || map["data"]["journal"].as_str().unwrap().matches('\n').count() == 1, "{size}");
    }
    // Another machine reads every chunk, over several pages, and has nothing to do.
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger().len(), 40, "{err}");
    let listed =
        team.api().seen().iter().filter(|s| s.method == "GET" && s.param("continue").is_some()).count();
    assert!(listed > 0, "the list was read in pages");
}

#[test]
fn local_runs_are_pushed_before_the_cluster_takes_over_and_pulled_back() {
    let team = Team::fake(|state| workflow(state, "true"), "10s");
    // First without the cluster: local state.
    let cluster_plan = std::fs::read_to_string(team.workflow()).unwrap();
    let local_plan: String =
        cluster_plan.lines().filter(|l| !l.contains("state \"kubernetes\"")).collect::<Vec<_>>().join("\n");
    std::fs::write(team.workflow(), &local_plan).unwrap();
    let (code, err) = team.run("alice", "apply");
    assert_eq!(code, 0, "{err}");
    std::fs::write(team.workflow(), &cluster_plan).unwrap();

    let (code, err) = team.run("alice", "resume");
    assert_eq!(code, 5, "local runs never pushed stop a rollout in the cluster: {err}");
    assert!(err.contains("state push"), "{err}");
    let (code, err) = team.run("alice", "state push");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("pushed 1 run"), "{err}");
    let (code, err) = team.run("alice", "state push");
    assert_eq!(code, 0, "pushing again changes nothing: {err}");
    assert!(err.contains("pushed 0 run"), "{err}");

    // Bob's machine sees the rollout complete: nothing runs again.
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), ["a", "b", "c"]);
    let (code, err) = team.run("carol", "state pull");
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("pulled 1 run"), "alice's run; bob's resume had nothing to do: {err}");
    assert_eq!(walk_journals(&team.path("carol")), 1, "{err}");
}

fn walk_journals(dir: &Path) -> usize {
    crate::support::walk(dir).iter().filter(|p| p.ends_with("journal.jsonl")).count()
}

#[test]
fn hostile_state_settings_are_located_errors() {
    let dir = tempfile::tempdir().unwrap();
    for (setting, expect) in [
        (r#"state "kubernetes" name="x""#, "namespace"),
        (r#"state "kubernetes" namespace="Team" name="x""#, "DNS label"),
        (r#"state "kubernetes" namespace="t" name="-x""#, "DNS label"),
        (r#"state "kubernetes" namespace="t" name="x" lease="0s""#, "lease"),
        (r#"state "kubernetes" namespace="t" name="x" lease="2h""#, "lease"),
        (r#"state "kubernetes" namespace="t" name="x" lease=15"#, "unit"),
        (r#"state "s3" namespace="t" name="x""#, "not one"),
        (r#"state "local" namespace="t""#, "takes no settings"),
        (&format!(r#"state "kubernetes" namespace="t" name="{}""#, "x".repeat(41)), "40"),
    ] {
        let path = dir.path().join("w.kdl");
        std::fs::write(&path, format!("workflow w {{\n    {setting}\n}}\nmodule a {{ budget \"1m\"; install {{ run s \"true\" }} }}\n")).unwrap();
        let shown = crate::support::diagnostics(&path);
        assert!(shown.contains(expect) && shown.contains("w.kdl:2"), "{setting}: {shown}");
    }
}

/// The scenario of the first test against a real API server: a name of its own per run, so
/// it passes on a fresh cluster and again on the next run; its objects deleted at the end.
#[test]
#[ignore = "needs a cluster: set MILEPOST_E2E_KUBECONFIG and run with --run-ignored all"]
fn e2e_two_operators_against_a_real_cluster() {
    let kubeconfig = PathBuf::from(
        std::env::var("MILEPOST_E2E_KUBECONFIG").expect("MILEPOST_E2E_KUBECONFIG must point at a kubeconfig"),
    );
    let namespace = std::env::var("MILEPOST_E2E_NAMESPACE").unwrap_or_else(|_| "default".into());
    two_operators(&kubeconfig, &namespace, None);
}

/// The real-cluster scenario's own steps (names, kill, waits, cleanup) against the fake,
/// twice in one cluster, as the real one will run them on its second run.
#[test]
fn the_real_cluster_scenario_passes_against_the_fake_twice() {
    let api = FakeApi::start();
    api.put("namespaces", "", json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "e2e"}}));
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    two_operators(&kubeconfig, "e2e", Some(&api));
    two_operators(&kubeconfig, "e2e", Some(&api));
}

fn two_operators(kubeconfig: &Path, namespace: &str, fake: Option<&FakeApi>) {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let name = format!("e2e-{}-{}", std::process::id(), nanos % 1_000_000_000);
    let dir = tempfile::tempdir().unwrap();
    let state = format!(r#"state "kubernetes" namespace="{namespace}" name="{name}" lease="3s""#);
    Team::write(&dir, &workflow(&state, "sleep 30"));
    let team = Team { dir, kubeconfig: kubeconfig.to_path_buf(), api: None };

    let mut alice = team.start("alice", "apply", kubeconfig, "marker-b");
    kill(&mut alice);
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 4, "{err}");
    std::thread::sleep(Duration::from_secs(4));
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    every_step_ran_and_no_recorded_pass_again(&team.ledger());
    let (code, err) = team.run("carol", "status");
    assert_eq!(code, 0, "{err}");

    // Clean up what this run made: its journals and its Lease.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        use k8s_openapi::api::coordination::v1::Lease;
        use k8s_openapi::api::core::v1::ConfigMap;
        use kube::api::{Api, DeleteParams, ListParams};
        let options = kube::config::KubeConfigOptions::default();
        let kubeconfig = kube::config::Kubeconfig::read_from(kubeconfig).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options).await.unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let maps: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let mine =
            maps.list(&ListParams::default().labels(&format!("milepost.dev/state={name}"))).await.unwrap();
        assert!(!mine.items.is_empty(), "the journals were in the cluster");
        for map in mine.items {
            let _ = maps.delete(&map.metadata.name.unwrap_or_default(), &DeleteParams::default()).await;
        }
        let leases: Api<Lease> = Api::namespaced(client, namespace);
        let _ = leases.delete(&name, &DeleteParams::default()).await;
    });
    if let Some(api) = fake {
        let left = api
            .objects("configmaps", namespace)
            .into_iter()
            .filter(|m| m["metadata"]["name"].as_str().unwrap_or("").starts_with(&name))
            .count();
        assert_eq!(left, 0, "the cleanup removed this run's journals");
        assert!(api.object("leases", namespace, &name).is_none(), "and its Lease");
    }
}

/// Approvals with the state in a cluster: decisions are kept in the cluster and made as the
/// Kubernetes user the API server says the caller is (a SelfSubjectReview), so group
/// membership is the cluster's and nobody approves as someone else.
#[test]
fn approvals_in_the_cluster_are_made_as_the_cluster_user() {
    let team = Team::fake(
        |state| {
            format!(
                r#"workflow w {{
    {state}
    phase "1" {{ modules a; gate g }}
}}
module a {{ budget "1m"; install {{ run step "echo a >> ../ledger" }} }}
gate g {{ budget "1m"; approval required=2 from="sre-leads"; validate {{ run v "echo checked >> ../ledger" }} }}
module b {{ budget "1m"; after g; install {{ run step "echo b >> ../ledger" }} }}
"#
            )
        },
        "10s",
    );
    let api = team.api();
    api.add_user("alice-token", "alice", &["sre-leads"]);
    api.add_user("bob-token", "bob", &["sre-leads"]);
    api.add_user("mallory-token", "mallory", &["developers"]);
    let as_user = |token: &str| api.kubeconfig_as(team.dir.path(), token);

    let (code, err) = team.run_with("alice", "apply", &as_user("alice-token"));
    assert_eq!(code, 7, "waiting for approval: {err}");
    let (code, err) = team.run_with("mallory", "approve g", &as_user("mallory-token"));
    assert_eq!(code, 2, "mallory is not in sre-leads in the cluster: {err}");
    assert!(err.contains("mallory") && err.contains("sre-leads"), "{err}");
    let (code, err) = team.run_with("alice", "approve g", &as_user("alice-token"));
    assert_eq!(code, 0, "{err}");
    // On another machine, as bob: the second approval; the decisions are in the cluster.
    let (code, err) = team.run_with("bob", "approve g", &as_user("bob-token"));
    assert_eq!(code, 0, "{err}");
    let decisions = api.object("configmaps", "team", "rollout.approvals").expect("the approvals configmap");
    let text = decisions["data"]["decisions"].as_str().unwrap_or_default();
    assert!(text.contains("\"user\":\"alice\"") && text.contains("\"user\":\"bob\""), "{text}");
    assert!(!text.contains("mallory"), "{text}");
    // Carol resumes from a third machine: the checks are not run again, b runs.
    let (code, err) = team.run("carol", "resume");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), ["a", "checked", "b"], "{err}");
}
