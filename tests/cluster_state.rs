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

fn wait_for(mut ready: impl FnMut() -> bool, within: Duration, what: &str) {
    let start = Instant::now();
    while !ready() {
        assert!(start.elapsed() < within, "{what} did not happen within {within:?}");
        std::thread::sleep(Duration::from_millis(20));
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

/// `a` → gate `g` (two approvals from group `sre-leads`, its check appends `checked`) → `b`.
fn gated_by_two_sre_leads(state: &str) -> String {
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
}

/// Approvals with the state in a cluster: decisions are kept in the cluster and made as the
/// Kubernetes user the API server says the caller is (a SelfSubjectReview), so group
/// membership is the cluster's and nobody approves as someone else.
#[test]
fn approvals_in_the_cluster_are_made_as_the_cluster_user() {
    let team = Team::fake(gated_by_two_sre_leads, "10s");
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

// ---- Adversarial review: attacks on the promises of docs/state.md §14 ----

/// The team's fake API server, a state name and a workflow body with `state` filled in.
fn team_with(body: impl Fn(&str) -> String, lease: &str) -> Team {
    Team::fake(body, lease)
}

/// `milepost` as `operator` with extra environment, to the end: exit code and stderr.
fn run_env(team: &Team, operator: &str, command: &str, env: &[(&str, &str)]) -> (i32, String) {
    let mut cmd = team.command(operator, command, &team.kubeconfig);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.stdout(Stdio::null()).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_dead_api_server_at_start_is_a_clear_error_and_nothing_runs() {
    let team = team_with(|state| workflow(state, "true"), "5s");
    team.api().stop();
    let started = Instant::now();
    let (code, err) = team.run("alice", "apply");
    assert!(started.elapsed() < Duration::from_secs(30), "it gave up in time: {err}");
    assert!(code == 5 || code == 6, "a state or preflight failure, not a step's: {code} {err}");
    assert!(err.contains("127.0.0.1"), "the server it could not reach is named: {err}");
    assert!(team.ledger().is_empty(), "nothing ran: {err}");
    // Read-only commands say the same, and do not pretend the rollout is fresh.
    let (code, err) = team.run("bob", "status");
    assert_ne!(code, 0, "{err}");
    assert!(err.contains("127.0.0.1"), "{err}");
}

#[test]
fn rbac_refusing_leases_or_configmaps_says_what_to_grant() {
    for (verb, plural) in
        [("create", "leases"), ("get", "leases"), ("list", "configmaps"), ("create", "configmaps")]
    {
        let team = team_with(|state| workflow(state, "true"), "5s");
        team.api().deny(verb, plural);
        let (code, err) = team.run("alice", "apply");
        assert_ne!(code, 0, "{verb} {plural}: {err}");
        assert!(
            err.contains(&format!("`{verb}`")) && err.contains(plural) && err.contains("grant"),
            "{verb} {plural}: the message says what to grant: {err}"
        );
        assert!(team.ledger().is_empty(), "{verb} {plural}: nothing ran: {err}");
    }
}

#[test]
fn a_chunk_deleted_in_the_middle_is_named_damage_not_a_shorter_journal() {
    let team = team_with(|state| workflow(state, "true"), "5s");
    let (code, err) = run_env(&team, "alice", "apply", &[("MILEPOST_STATE_CHUNK_BYTES", "256")]);
    assert_eq!(code, 0, "{err}");
    let maps = team.api().objects("configmaps", "team");
    assert!(maps.len() >= 3, "several chunks: {}", maps.len());
    let middle =
        maps.iter().find(|m| m["metadata"]["annotations"]["milepost.dev/chunk"] == "1").expect("a chunk 1")
            ["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_string();
    team.api().remove("configmaps", "team", &middle).unwrap();
    for (operator, command) in [("bob", "status"), ("bob", "resume"), ("alice", "resume")] {
        let (code, err) = team.run(operator, command);
        assert_ne!(code, 0, "{operator} {command}: {err}");
        assert!(err.contains("lacks chunk 1"), "{operator} {command}: the damage is named: {err}");
    }
    assert_eq!(team.ledger(), ["a", "b", "c"], "nothing ran again on a damaged journal");
}

#[test]
fn hostile_journals_in_the_cluster_name_no_path_and_no_absurd_chunk() {
    for (run, chunk) in
        [("../../escaped", "0"), ("a/../../escaped", "0"), ("20990101T000000000Z-1", "18446744073709551615")]
    {
        let team = team_with(|state| workflow(state, "true"), "5s");
        let (code, err) = team.run("alice", "apply");
        assert_eq!(code, 0, "{err}");
        team.api().put(
            "configmaps",
            "team",
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                   "metadata": {"name": "rollout.hostile.0",
                                "labels": {"milepost.dev/state": "rollout"},
                                "annotations": {"milepost.dev/run": run, "milepost.dev/chunk": chunk}},
                   "data": {"journal": "{\"type\":\"run-start\"}\n"}}),
        );
        for command in ["status", "resume"] {
            let (code, err) = team.run("bob", command);
            assert_ne!(code, 0, "{run} {chunk} {command}: {err}");
            assert!(err.contains(run), "{run} {chunk} {command}: the run is named: {err}");
        }
        assert!(
            !team.path("escaped").exists() && !team.dir.path().parent().unwrap().join("escaped").exists()
        );
        assert_eq!(team.ledger(), ["a", "b", "c"], "{run}: nothing ran");
    }
}

#[test]
fn two_resumes_racing_for_an_expired_lease_one_wins_and_no_step_runs_twice() {
    let team = team_with(|state| workflow(state, "sleep 30"), "2s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    kill(&mut alice);
    std::thread::sleep(Duration::from_millis(2300));
    let spawn = |who: &str| {
        let err = std::fs::File::create(team.path(&format!("{who}.stderr"))).unwrap();
        team.command(who, "resume", &kubeconfig).stdout(Stdio::null()).stderr(err).spawn().unwrap()
    };
    let (mut bob, mut carol) = (spawn("bob"), spawn("carol"));
    let codes = [bob.wait().unwrap().code(), carol.wait().unwrap().code()];
    let errs = format!("bob: {}\ncarol: {}", team.stderr_of("bob"), team.stderr_of("carol"));
    assert!(codes.iter().all(|c| matches!(c, Some(0) | Some(4))), "{codes:?} {errs}");
    assert!(codes.contains(&Some(0)), "{codes:?} {errs}");
    let lines = team.ledger();
    every_step_ran_and_no_recorded_pass_again(&lines);
    assert_eq!(count(&lines, "b"), 2, "b ran for alice and for the one winner: {lines:?} {errs}");
}

#[test]
fn a_journal_write_whose_answer_was_lost_is_not_taken_for_a_fence() {
    // The server stores the write, then the connection breaks before the answer (a restart
    // after etcd committed): the retry finds its own write there, not another holder's.
    for method in ["POST", "PUT"] {
        let team = team_with(|state| workflow(state, "true"), "5s");
        team.api().lose_answers(method, "/configmaps", 1);
        let (code, err) = team.run("alice", "apply");
        assert_eq!(code, 0, "{method}: {err}");
        assert_eq!(team.ledger(), ["a", "b", "c"], "{method}: {err}");
        let (code, err) = team.run("bob", "resume");
        assert_eq!(code, 0, "{method}: {err}");
        assert_eq!(team.ledger(), ["a", "b", "c"], "{method}: nothing ran again: {err}");
    }
}

#[test]
fn server_errors_on_journal_writes_are_retried_while_the_lease_lasts() {
    let team = team_with(|state| workflow(state, "sleep 1"), "5s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    // b's end is written while the server answers 500 to every journal write, then heals.
    team.api().answer("PUT", "/configmaps/", 500, "InternalError", "etcdserver: request timed out");
    team.api().answer("POST", "/configmaps", 500, "InternalError", "etcdserver: request timed out");
    std::thread::sleep(Duration::from_millis(1800));
    team.api().forget_answers();
    let status = alice.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{}", team.stderr_of("alice"));
    assert_eq!(team.ledger(), ["a", "b", "c"]);
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), ["a", "b", "c"], "everything was in the cluster: {err}");
}

#[test]
fn read_only_commands_on_another_machine_while_a_rollout_runs() {
    let team = team_with(|state| workflow(state, "sleep 3"), "5s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    for command in ["status", "history", "plan", "report"] {
        let out = team.command("carol", command, &kubeconfig).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(out.status.code(), Some(0), "{command}: {stderr}{stdout}");
        if command == "status" {
            // What the cluster holds: a passed. (b, in flight, shows as pending: its start is
            // pushed with the next flush, when it ends; see the review's report.)
            assert!(stdout.lines().any(|l| l.contains(" a ") && l.contains("done")), "{stdout}{stderr}");
        }
    }
    // They left nothing behind in carol's folder but what a command may make.
    let left: Vec<_> = crate::support::walk(&team.path("carol"))
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".view-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert_eq!(alice.wait().unwrap().code(), Some(0), "{}", team.stderr_of("alice"));
    assert_eq!(team.ledger(), ["a", "b", "c"]);
}

/// The runs in the cluster.
fn runs_in_cluster(team: &Team) -> std::collections::HashSet<String> {
    team.api()
        .objects("configmaps", "team")
        .iter()
        .filter_map(|m| m["metadata"]["annotations"]["milepost.dev/run"].as_str().map(String::from))
        .collect()
}

/// Steps whose pass the cluster holds, in runs other than `older` (earlier rollouts):
/// `node` of each step-end record with outcome passed.
fn passes_in_cluster(
    team: &Team,
    older: &std::collections::HashSet<String>,
) -> std::collections::HashSet<String> {
    let mut passed = std::collections::HashSet::new();
    for map in team.api().objects("configmaps", "team") {
        if map["metadata"]["annotations"]["milepost.dev/run"].as_str().is_some_and(|r| older.contains(r)) {
            continue;
        }
        for line in map["data"]["journal"].as_str().unwrap_or("").lines() {
            let json = line.find('{').and_then(|at| {
                let end = line.rfind('}')?;
                serde_json::from_str::<serde_json::Value>(&line[at..=end]).ok()
            });
            if let Some(r) = json {
                if r["type"] == "step-end" && r["outcome"] == "passed" {
                    passed.insert(r["node"].as_str().unwrap_or("").to_string());
                }
            }
        }
    }
    passed
}

/// The cluster backend's crash harness (seeded; `MILEPOST_CRASH_SEED` replays one,
/// `MILEPOST_CRASH_ROUNDS` sets the rounds): operators on three machines apply and resume a
/// small DAG with chunks of 256 bytes, SIGKILLed or SIGTERMed at random moments (between a
/// flush's local fsync and its push among them). After every round a fourth machine reads
/// the status, and no step whose pass the cluster held before the round ran in it.
#[test]
fn kills_at_random_moments_with_the_cluster_backend_never_rerun_a_recorded_pass() {
    let rounds: u32 = std::env::var("MILEPOST_CRASH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(14);
    let seed: u64 =
        std::env::var("MILEPOST_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_c105);
    let mut rng = seed | 1;
    let mut next = move |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let nodes = [
        ("m0", ""),
        ("m1", "after m0; "),
        ("m2", "after m0; "),
        ("m3", "after m1 m2; "),
        ("m4", "after m3; "),
        ("m5", "after m3; "),
    ];
    let body: String = nodes
        .iter()
        .map(|(id, after)| {
            format!("module {id} {{ budget \"1m\"; {after}install {{ run s1 \"echo {id} >> ../ledger; sleep 0.05\"; run s2 \"sleep 0.05\" }} }}\n")
        })
        .collect();
    let team = team_with(|state| format!("workflow w {{\n    {state}\n    parallelism 2\n}}\n{body}"), "1s");
    let kubeconfig = team.kubeconfig.clone();
    let operators = ["alice", "bob", "carol"];
    let mut finished = true;
    let mut before: std::collections::HashSet<String> = Default::default();
    let mut older: std::collections::HashSet<String> = Default::default();
    for round in 0..rounds {
        let context = format!("seed {seed}, round {round}");
        let command = if finished { "apply" } else { "resume" };
        if command == "apply" {
            before.clear();
            older = runs_in_cluster(&team);
        }
        let mark = team.ledger().len();
        let first = next(3) as usize;
        let spawn = |operator: &str, command: &str| {
            team.command(operator, command, &kubeconfig)
                .env("MILEPOST_STATE_CHUNK_BYTES", "256")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut children = vec![spawn(operators[first], command)];
        // Now and then another machine resumes at the same moment: one of them waits (4).
        if next(4) == 0 {
            children.push(spawn(operators[(first + 1) % 3], "resume"));
        }
        let how = next(5);
        let mut forced = false;
        if how == 4 {
            // `unlock --force` from a fourth machine while the holder runs, and a resume at
            // once: the fenced holder's step in flight may run again there (at most one per
            // slot), nothing else.
            std::thread::sleep(Duration::from_millis(20 + next(500)));
            let (code, err) = team.run("dave", "unlock --force");
            assert!(code == 0, "{context}: {err}");
            forced = true;
            children.push(spawn("erin", "resume"));
        }
        if how < 3 {
            std::thread::sleep(Duration::from_millis(20 + next(500)));
            let signal =
                if how < 2 { nix::sys::signal::Signal::SIGKILL } else { nix::sys::signal::Signal::SIGTERM };
            let victim = &children[next(children.len() as u64) as usize];
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(victim.id() as i32), signal);
        }
        let codes: Vec<Option<i32>> = children.iter_mut().map(|c| c.wait().unwrap().code()).collect();
        let ran: Vec<String> = team.ledger()[mark..].to_vec();
        for step in &ran {
            assert!(
                !before.contains(step),
                "{context}: {step}'s pass was in the cluster and it ran again: {ran:?}"
            );
        }
        if codes.iter().all(|c| *c == Some(4)) {
            assert!(ran.is_empty(), "{context}: a refused {command} ran {ran:?}");
        }
        // Within one round no step ran twice: two machines never ran side by side.
        let mut seen = std::collections::HashSet::new();
        let twice: Vec<&String> = ran.iter().filter(|step| !seen.insert(*step)).collect();
        let allowed = if forced { 2 } else { 0 };
        assert!(twice.len() <= allowed, "{context}: {twice:?} ran twice in one round {codes:?}: {ran:?}");
        // The lease of a killed holder lasts 1 s; readers need no lock.
        let out = team.command("dave", "status --json", &kubeconfig).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr);
        if !out.status.success() && said.contains("no earlier run") && runs_in_cluster(&team).is_empty() {
            // Killed before its first push: the cluster has no run, and the next is an apply.
            finished = true;
            continue;
        }
        assert!(out.status.success(), "{context}: status unreadable: {said}");
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        finished = status["nodes"].as_array().unwrap().iter().all(|n| n["status"] == "done");
        before = passes_in_cluster(&team, &older);
        if finished {
            before.clear();
        }
    }
    // The rollout ends, from any machine.
    let mut done = finished;
    for _ in 0..10 {
        if done {
            break;
        }
        let mark = team.ledger().len();
        let (code, err) = team.run("dave", "resume");
        for step in &team.ledger()[mark..] {
            assert!(!before.contains(step), "seed {seed}: {step} ran again at the end: {err}");
        }
        done = code == 0;
        if !done {
            assert_eq!(code, 4, "seed {seed}: {err}");
            std::thread::sleep(Duration::from_millis(600));
        }
    }
    assert!(done, "seed {seed}: the rollout never finished");
}

/// A takeover whose fencing failed half-way (the last chunk changed, the tombstone refused
/// by a 500) and was tried again: the run must end fenced, so the old holder's next chunk
/// is refused too, not created after a chunk nobody reads.
#[test]
fn a_fence_interrupted_between_the_changed_chunk_and_the_tombstone_is_completed_next_time() {
    let team = team_with(|state| workflow(state, "sleep 2"), "30s");
    let kubeconfig = team.kubeconfig.clone();
    let err = std::fs::File::create(team.path("alice.stderr")).unwrap();
    let mut alice = team
        .command("alice", "apply", &kubeconfig)
        .env("MILEPOST_STATE_CHUNK_BYTES", "256")
        .stdout(Stdio::null())
        .stderr(err)
        .spawn()
        .unwrap();
    wait_for(|| team.path("marker-b").exists(), Duration::from_secs(30), "b's start");
    team.api().answer("POST", "/configmaps", 500, "InternalError", "etcdserver: leader changed");
    let (code, err) = team.run("bob", "unlock --force");
    assert_ne!(code, 0, "the tombstone was refused: {err}");
    team.api().forget_answers();
    let (code, err) = team.run("bob", "unlock --force");
    assert_eq!(code, 0, "{err}");
    let status = alice.wait().unwrap();
    let err = team.stderr_of("alice");
    assert_eq!(status.code(), Some(5), "{err}");
    assert_eq!(team.ledger(), ["a", "b"], "c never started on alice's machine: {err}");
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    every_step_ran_and_no_recorded_pass_again(&team.ledger());
    assert_eq!(count(&team.ledger(), "c"), 1);
}

/// The same, through a takeover of an expired lease: the first taker's fencing fails, it
/// gives the lock back (free), and the next taker finds a free lock, yet must fence the
/// run its first owner left open.
#[test]
fn a_run_left_open_behind_a_free_lock_is_fenced_by_the_next_holder() {
    let team = team_with(|state| workflow(state, "sleep 30"), "2s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    kill(&mut alice);
    std::thread::sleep(Duration::from_millis(2300));
    team.api().answer("POST", "/configmaps", 500, "InternalError", "etcdserver: leader changed");
    let (code, err) = team.run("bob", "resume");
    assert_ne!(code, 0, "{err}");
    team.api().forget_answers();
    let (code, err) = team.run("carol", "resume");
    assert_eq!(code, 0, "{err}");
    every_step_ran_and_no_recorded_pass_again(&team.ledger());
    let tombstones = team
        .api()
        .objects("configmaps", "team")
        .iter()
        .filter(|m| m["data"]["journal"].as_str().is_some_and(|t| t.contains("lock-broken")))
        .count();
    assert_eq!(tombstones, 1, "alice's open run ends with a tombstone");
}

/// Handlers, the rollback and `finally` are runs of their own: with the state in a cluster
/// they are pushed (closed) like the rollout, so another machine's history has them, and
/// `--keep-going` finishes what does not wait for the failure.
#[test]
fn handler_rollback_and_finally_runs_are_in_the_cluster_with_keep_going() {
    let team = team_with(
        |state| {
            format!(
                r#"workflow w {{
    {state}
    finally {{ run fin "echo fin >> ../ledger" }}
}}
module a {{ budget "1m"; install {{ run s "echo a >> ../ledger" }} }}
module b {{
    budget "1m"
    after a
    install {{ run s "echo b >> ../ledger; exit 1" }}
    rollback {{ run undo "echo undo-b >> ../ledger" }}
    on-failure "rollback" {{ run diag "echo diag-b >> ../ledger" }}
}}
module c {{ budget "1m"; install {{ run s "sleep 0.3; echo c >> ../ledger" }} }}
"#
            )
        },
        "5s",
    );
    let (code, err) = run_env(&team, "alice", "apply --keep-going", &[("MILEPOST_STATE_CHUNK_BYTES", "256")]);
    assert_eq!(code, 1, "{err}");
    let lines = team.ledger();
    for step in ["a", "b", "c", "diag-b", "undo-b", "fin"] {
        assert_eq!(count(&lines, step), 1, "{step}: {lines:?} {err}");
    }
    // Every run is in the cluster, its last chunk closed.
    let mut last: std::collections::BTreeMap<String, (usize, serde_json::Value)> = Default::default();
    for map in team.api().objects("configmaps", "team") {
        let notes = &map["metadata"]["annotations"];
        let run = notes["milepost.dev/run"].as_str().unwrap().to_string();
        let chunk: usize = notes["milepost.dev/chunk"].as_str().unwrap().parse().unwrap();
        if last.get(&run).is_none_or(|(k, _)| *k < chunk) {
            last.insert(run, (chunk, notes.clone()));
        }
    }
    assert_eq!(last.len(), 4, "apply, on-failure, rollback, finally: {last:?}");
    for (run, (_, notes)) in &last {
        assert_eq!(notes["milepost.dev/closed"], "true", "{run}: {notes}");
    }
    let out = team.command("carol", "history", &team.kubeconfig).output().unwrap();
    let history = String::from_utf8_lossy(&out.stdout);
    for command in ["apply", "on-failure", "rollback", "finally"] {
        assert!(history.contains(command), "{command}: {history}");
    }
}

/// A holder fenced by `unlock --force` while a node runs that then fails: its handlers, its
/// rollback and its `finally` do not run either (they would write runs nobody reads).
#[test]
fn a_fenced_holder_runs_no_handlers_rollback_or_finally() {
    let team = team_with(
        |state| {
            format!(
                r#"workflow w {{
    {state}
    finally {{ run fin "echo fin >> ../ledger" }}
}}
module a {{ budget "1m"; install {{ run s "echo a >> ../ledger" }} }}
module b {{
    budget "1m"
    after a
    install {{ run s "echo b >> ../ledger; touch ../marker-b; sleep 2; exit 1" }}
    rollback {{ run undo "echo undo-b >> ../ledger" }}
    on-failure "rollback" {{ run diag "echo diag-b >> ../ledger" }}
}}
"#
            )
        },
        "30s",
    );
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    let (code, err) = team.run("bob", "unlock --force");
    assert_eq!(code, 0, "{err}");
    let status = alice.wait().unwrap();
    let err = team.stderr_of("alice");
    assert_ne!(status.code(), Some(0), "{err}");
    assert_eq!(team.ledger(), ["a", "b"], "nothing ran after the fence: {err}");
}

/// `state` at the workflow level serves each environment under `NAME-ENV`; a promotion
/// reads staging's runs from the cluster, on a machine that never ran staging.
#[test]
fn environments_keep_state_under_names_of_their_own_and_promotion_reads_the_cluster() {
    let team = team_with(
        |state| {
            format!(
                r#"workflow w {{
    {state}
    environment staging {{ kubernetes {{ context "fake" }} }}
    environment prod {{ requires staging; kubernetes {{ context "fake" }} }}
}}
module a {{ budget "1m"; install {{ run s "echo a >> ../ledger" }} }}
"#
            )
        },
        "5s",
    );
    let (code, err) = team.run("bob", "apply --env prod");
    assert_eq!(code, 6, "staging has not passed: {err}");
    assert!(err.contains("staging"), "{err}");
    let (code, err) = team.run("alice", "apply --env staging");
    assert_eq!(code, 0, "{err}");
    assert!(team.api().object("leases", "team", "rollout-staging").is_some());
    assert!(team.api().object("leases", "team", "rollout").is_none());
    let labelled: Vec<String> = team
        .api()
        .objects("configmaps", "team")
        .iter()
        .map(|m| m["metadata"]["labels"]["milepost.dev/state"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(!labelled.is_empty() && labelled.iter().all(|l| l == "rollout-staging"), "{labelled:?}");
    // Bob never ran staging on his machine: the promotion is read from the cluster.
    let (code, err) = team.run("bob", "apply --env prod");
    assert_eq!(code, 0, "{err}");
    assert!(team.api().object("leases", "team", "rollout-prod").is_some());
    let (code, err) = team.run("carol", "status");
    assert_eq!(code, 0, "{err}");
}

/// `state pull` never overwrites a local journal holding what the cluster's lacks; one the
/// cluster's continues is brought up to date. `state push` refuses a run that differs.
#[test]
fn state_pull_and_push_never_overwrite_a_differing_run() {
    let team = team_with(|state| workflow(state, "true"), "5s");
    let (code, err) = team.run("alice", "apply");
    assert_eq!(code, 0, "{err}");
    let (code, err) = team.run("carol", "state pull");
    assert_eq!(code, 0, "{err}");
    let journal = crate::support::walk(&team.path("carol"))
        .into_iter()
        .find(|p| p.ends_with("journal.jsonl"))
        .expect("carol's copy");
    let whole = std::fs::read_to_string(&journal).unwrap();

    // Pulled while the rollout ran: a prefix, brought up to date.
    let half: String = whole.split_inclusive('\n').take(2).collect();
    std::fs::write(&journal, &half).unwrap();
    let (code, err) = team.run("carol", "state pull");
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), whole);

    // Something only here: refused, nothing overwritten, either way.
    let changed = whole.replacen("\"a\"", "\"A\"", 1);
    assert_ne!(changed, whole);
    std::fs::write(&journal, &changed).unwrap();
    let (code, err) = team.run("carol", "state pull");
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("nothing was overwritten"), "{err}");
    assert_eq!(std::fs::read_to_string(&journal).unwrap(), changed, "the local copy stays");
    let before = team.api().objects("configmaps", "team");
    // (The change breaks the line's checksum: push finds the damage before comparing.)
    let (code, err) = team.run("carol", "state push");
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("nothing was overwritten") || err.contains("damaged"), "{err}");
    let after = team.api().objects("configmaps", "team");
    let data = |maps: &[serde_json::Value]| maps.iter().map(|m| m["data"].clone()).collect::<Vec<_>>();
    assert_eq!(data(&before), data(&after), "the cluster's copy stays");
}

/// Killed between a flush's local fsync and its push (the push retried against a server
/// that stopped answering journal writes): the machine's own resume follows the cluster,
/// not its disk; b, whose end only the local disk had, runs again; a does not.
#[test]
fn a_kill_between_the_local_fsync_and_the_push_follows_the_cluster() {
    let team = team_with(|state| workflow(state, "sleep 1"), "2s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    team.api().unreachable("PUT", "/configmaps");
    team.api().unreachable("POST", "/configmaps");
    std::thread::sleep(Duration::from_millis(1600));
    kill(&mut alice);
    team.api().forget_answers();
    let local: String = crate::support::walk(&team.path("alice"))
        .into_iter()
        .filter(|p| p.ends_with("journal.jsonl"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    let cluster: String = team
        .api()
        .objects("configmaps", "team")
        .iter()
        .filter_map(|m| m["data"]["journal"].as_str().map(String::from))
        .collect();
    assert!(
        local.contains("\"node\":\"b\"") && local.contains("step-end"),
        "b's end is on alice's disk: {local}"
    );
    assert!(!cluster.contains("\"type\":\"step-end\",\"node\":\"b\""), "and not in the cluster: {cluster}");
    std::thread::sleep(Duration::from_millis(2200));
    let (code, err) = team.run("alice", "resume");
    assert_eq!(code, 0, "{err}");
    let lines = team.ledger();
    every_step_ran_and_no_recorded_pass_again(&lines);
    assert_eq!(count(&lines, "b"), 2, "{lines:?}");
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), lines, "nothing ran again: {err}");
}

/// A server that answers every journal write with a 500 while it renews the Lease (etcd out
/// of space): the holder does not retry forever; it stops with the server's words.
#[test]
fn journal_writes_refused_for_good_by_5xx_stop_the_run_in_bounded_time() {
    let team = team_with(|state| workflow(state, "sleep 0.5"), "2s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    team.api().answer(
        "PUT",
        "/configmaps",
        500,
        "InternalError",
        "etcdserver: mvcc: database space exceeded",
    );
    team.api().answer(
        "POST",
        "/configmaps",
        500,
        "InternalError",
        "etcdserver: mvcc: database space exceeded",
    );
    let start = Instant::now();
    let status = loop {
        if let Some(status) = alice.try_wait().unwrap() {
            break Some(status);
        }
        if start.elapsed() > Duration::from_secs(30) {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let Some(status) = status else {
        kill(&mut alice);
        panic!("still retrying after 30s: {}", team.stderr_of("alice"));
    };
    let err = team.stderr_of("alice");
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("database space exceeded"), "the server's words: {err}");
    assert_eq!(team.ledger(), ["a", "b"], "c never started: {err}");
}

/// Nodes that wait for nothing start without a flush before them (the group commit syncs
/// for dependents): a holder cut off from the server must still stop starting them once
/// its lease may have been taken, not run the whole rollout unrecorded.
#[test]
fn a_cut_off_holder_starts_no_independent_node_after_its_lease_may_be_taken() {
    let body: String = (0..12)
        .map(|i| {
            format!(
                "module n{i} {{ budget \"1m\"; install {{ run s \"echo n{i} >> ../ledger; touch ../marker-n; sleep 0.3\" }} }}\n"
            )
        })
        .collect();
    let team = team_with(|state| format!("workflow w {{\n    {state}\n    parallelism 1\n}}\n{body}"), "2s");
    let cut = Partition::start(team.api().port);
    let config = cut.kubeconfig(team.dir.path());
    let mut alice = team.start("alice", "apply", &config, "marker-n");
    cut.cut(true);
    let status = alice.wait().unwrap();
    let err = team.stderr_of("alice");
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("no further step starts here"), "{err}");
    let ran = team.ledger().len();
    assert!(ran < 10, "nodes started {ran} × 0.3 s after the cut of a 2 s lease: {err}");
}

/// RBAC that lets a user create the Lease but not update it: the first renewal is refused,
/// and when the lease runs out the run stops saying what to grant, not that the server
/// stopped answering.
#[test]
fn a_renewal_refused_by_rbac_says_what_to_grant() {
    let team = team_with(|state| workflow(state, "sleep 3"), "2s");
    let kubeconfig = team.kubeconfig.clone();
    team.api().deny("update", "leases");
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    let status = alice.wait().unwrap();
    let err = team.stderr_of("alice");
    assert_eq!(status.code(), Some(5), "{err}");
    assert!(err.contains("`update`") && err.contains("Lease") && err.contains("grant"), "{err}");
    assert_eq!(team.ledger(), ["a", "b"], "c never started: {err}");
}

/// Killed after its run folder was made and before its first push marked it: the run holds
/// its run-start alone. The machine's next rollout moves it aside (nothing of it ran), and
/// does not ask for a `state push` of local state that never was.
#[test]
fn a_run_killed_before_its_first_push_does_not_stop_the_machine() {
    let team = team_with(|state| workflow(state, "true"), "5s");
    let (code, err) = team.run("alice", "apply");
    assert_eq!(code, 0, "{err}");
    // Alice's next apply, as a kill left it: a run folder with its run-start only, no mark.
    let runs = crate::support::walk(&team.path("alice"))
        .into_iter()
        .find(|p| p.ends_with("journal.jsonl"))
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .to_path_buf();
    let first = std::fs::read_dir(&runs).unwrap().flatten().next().unwrap().path();
    let start =
        std::fs::read_to_string(first.join("journal.jsonl")).unwrap().lines().next().unwrap().to_string();
    let killed = runs.join("29991231T000000000Z-1");
    std::fs::create_dir_all(&killed).unwrap();
    std::fs::write(killed.join("journal.jsonl"), format!("{start}\n")).unwrap();
    let (code, err) = team.run("alice", "apply");
    assert_eq!(code, 0, "{err}");
    assert!(!killed.exists(), "moved aside: {err}");
}

/// From another machine a node in flight shows as pending: its node-start reaches the
/// cluster with the next flush, when it ends (flushes are for dependents; a push at every
/// node start would add a request per node), and status's header does not say that the
/// Lease names the last run's process either. Someone reading it may think nothing runs.
///
/// Node and step starts reach the cluster with every renewal of the lease (a third of it)
/// as well as with flushes, so within a renewal period another machine sees `b` running.
#[test]
fn status_on_another_machine_shows_a_node_in_flight_as_running() {
    let team = team_with(|state| workflow(state, "sleep 6"), "3s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    let started = Instant::now();
    let mut seen = String::new();
    // One renewal period (1 s) and slack for a loaded machine; b runs for 6 s.
    while started.elapsed() < Duration::from_secs(5) {
        let out = team.command("carol", "status", &kubeconfig).output().unwrap();
        seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if seen.lines().any(|l| l.contains(" b ") && l.contains("running")) {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    alice.wait().unwrap();
    assert!(seen.lines().any(|l| l.contains(" b ") && l.contains("running")), "{seen}");
}

/// A step's end is in the cluster before its dependents start, even when every request
/// takes a while.
#[test]
fn a_steps_end_is_in_the_cluster_before_its_dependent_starts() {
    let team = team_with(|state| workflow(state, "true"), "5s");
    team.api().set_latency(Duration::from_millis(150));
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    let cluster: String = team
        .api()
        .objects("configmaps", "team")
        .iter()
        .filter_map(|m| m["data"]["journal"].as_str().map(String::from))
        .collect();
    assert!(
        cluster
            .lines()
            .any(|l| l.contains("\"step-end\"") && l.contains("\"node\":\"a\"") && l.contains("passed")),
        "a's pass was acknowledged before b started: {cluster}"
    );
    assert_eq!(alice.wait().unwrap().code(), Some(0), "{}", team.stderr_of("alice"));
}

/// A holder paused (SIGSTOP: a suspended laptop, a stalled VM) past its lease: another
/// takes over; when it wakes, its late writes are refused and it starts nothing more.
#[test]
fn a_paused_holder_that_wakes_after_a_takeover_is_fenced() {
    let team = team_with(|state| workflow(state, "sleep 1"), "2s");
    let kubeconfig = team.kubeconfig.clone();
    let mut alice = team.start("alice", "apply", &kubeconfig, "marker-b");
    let pid = nix::unistd::Pid::from_raw(alice.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).unwrap();
    std::thread::sleep(Duration::from_millis(2300));
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    let after_bob = team.ledger();
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).unwrap();
    let status = alice.wait().unwrap();
    let err = team.stderr_of("alice");
    assert_eq!(status.code(), Some(5), "{err}");
    assert_eq!(team.ledger(), after_bob, "alice started nothing after waking: {err}");
    every_step_ran_and_no_recorded_pass_again(&team.ledger());
}

/// A chunk whose text was changed by hand: the damage is named where it is, in the
/// cluster, not as a file in a copy that is gone when the command ends.
#[test]
fn a_chunk_changed_by_hand_is_named_in_the_cluster() {
    let team = team_with(|state| workflow(state, "true"), "5s");
    let (code, err) = team.run("alice", "apply");
    assert_eq!(code, 0, "{err}");
    let mut map = team.api().objects("configmaps", "team").remove(0);
    let name = map["metadata"]["name"].as_str().unwrap().to_string();
    let text = map["data"]["journal"].as_str().unwrap().replacen("\"w\"", "\"W\"", 1);
    map["data"]["journal"] = json!(text);
    team.api().put("configmaps", "team", map);
    let (code, err) = team.run("bob", "status");
    assert_ne!(code, 0, "{err}");
    assert!(err.contains(&name) || err.contains("ConfigMap"), "the damaged chunk is named: {err}");
    assert!(!err.contains(".view-"), "not a copy that is gone: {err}");
}

/// Answers lost after the write was stored, again and again, across chunk rollovers and
/// Lease renewals: every write is found as this holder's own, the run ends, and another
/// machine has nothing to run again.
#[test]
fn lost_answers_across_chunk_rollovers_and_renewals_are_taken_as_written() {
    let team = team_with(|state| workflow(state, "sleep 1.5"), "2s");
    team.api().lose_answers("PUT", "/configmaps", 4);
    team.api().lose_answers("POST", "/configmaps", 4);
    team.api().lose_answers("PUT", "/leases", 2);
    let (code, err) = run_env(&team, "alice", "apply", &[("MILEPOST_STATE_CHUNK_BYTES", "256")]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), ["a", "b", "c"], "{err}");
    let (code, err) = team.run("bob", "resume");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), ["a", "b", "c"], "nothing ran again: {err}");
}

// ---- Adversarial review of approvals in the cluster ----

/// A team whose gate `g` needs `required` approvals from `sre-leads`.
fn approval_team(required: u32) -> Team {
    Team::fake(
        |state| {
            format!(
                r#"workflow w {{
    {state}
    phase "1" {{ modules a; gate g }}
}}
module a {{ budget "1m"; install {{ run step "echo a >> ../ledger" }} }}
gate g {{ budget "1m"; approval required={required} from="sre-leads"; validate {{ run v "echo checked >> ../ledger" }} }}
module b {{ budget "1m"; after g; install {{ run step "echo b >> ../ledger" }} }}
"#
            )
        },
        "10s",
    )
}

fn approvals_text(api: &FakeApi) -> String {
    api.object("configmaps", "team", "rollout.approvals")
        .and_then(|m| m["data"]["decisions"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Many people (30) approving at once from many machines (their own tokens), on a slow API
/// server: every decision lands (resourceVersion retries, backing off), none is lost, and
/// the gate goes on.
#[test]
fn cluster_approvals_racing_from_many_processes_are_all_kept() {
    const PEOPLE: u32 = 30;
    let team = approval_team(PEOPLE);
    let api = team.api();
    for i in 0..PEOPLE {
        api.add_user(&format!("t{i}"), &format!("user{i}"), &["sre-leads"]);
    }
    let (code, err) = team.run_with("user0", "apply", &api.kubeconfig_as(team.dir.path(), "t0"));
    assert_eq!(code, 7, "{err}");
    // A slow API server: the read-append-replace windows overlap.
    api.set_latency(Duration::from_millis(30));
    let racers: Vec<_> = (0..PEOPLE)
        .map(|i| {
            let kubeconfig = api.kubeconfig_as(team.dir.path(), &format!("t{i}"));
            team.command(&format!("user{i}"), "approve g", &kubeconfig)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for racer in racers {
        let out = racer.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let text = approvals_text(api);
    for i in 0..PEOPLE {
        assert!(text.contains(&format!("\"user\":\"user{i}\"")), "user{i} lost: {text}");
    }
    let (code, err) = team.run("carol", "resume");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), ["a", "checked", "b"], "{err}");
}

/// `required=2`: the same Kubernetes user approving from two machines (two tokens, two
/// state folders) is one approval.
#[test]
fn cluster_same_user_from_two_machines_counts_once() {
    let team = approval_team(2);
    let api = team.api();
    api.add_user("alice-laptop", "alice", &["sre-leads"]);
    api.add_user("alice-desktop", "alice", &["sre-leads"]);
    let (code, err) = team.run_with("m1", "apply", &api.kubeconfig_as(team.dir.path(), "alice-laptop"));
    assert_eq!(code, 7, "{err}");
    let (code, err) = team.run_with("m1", "approve g", &api.kubeconfig_as(team.dir.path(), "alice-laptop"));
    assert_eq!(code, 0, "{err}");
    let (code, err) = team.run_with("m2", "approve g", &api.kubeconfig_as(team.dir.path(), "alice-desktop"));
    assert_eq!(code, 0, "{err}");
    let (code, err) = team.run("m3", "resume");
    assert_eq!(code, 7, "one person is one approval: {err}");
    assert_eq!(team.ledger(), ["a", "checked"]);
}

/// The approvals ConfigMap garbled (a last line without its newline, as a hand edit leaves
/// it): the next approval must still land whole and count, not be glued to the garbage.
#[test]
fn cluster_approvals_garbled_last_line_does_not_eat_the_next_decision() {
    let team = approval_team(1);
    let api = team.api();
    api.add_user("alice-token", "alice", &["sre-leads"]);
    let alice = api.kubeconfig_as(team.dir.path(), "alice-token");
    let (code, err) = team.run_with("alice", "apply", &alice);
    assert_eq!(code, 7, "{err}");
    api.put(
        "configmaps",
        "team",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "rollout.approvals", "namespace": "team"},
               "data": {"decisions": "{\"decision\":\"appr"}}),
    );
    let (code, err) = team.run_with("alice", "approve g", &alice);
    assert_eq!(code, 0, "{err}");
    let (code, err) = team.run("carol", "resume");
    assert_eq!(code, 0, "the approval counts: {err}\n{}", approvals_text(api));
    assert_eq!(team.ledger(), ["a", "checked", "b"]);
}

/// The approvals ConfigMap deleted, then damaged in the middle: deleted, the request waits
/// for decisions again; damaged, a located error (exit 5), never a panic.
#[test]
fn cluster_approvals_deleted_or_damaged() {
    let team = approval_team(1);
    let api = team.api();
    api.add_user("alice-token", "alice", &["sre-leads"]);
    let alice = api.kubeconfig_as(team.dir.path(), "alice-token");
    let (code, err) = team.run_with("alice", "apply", &alice);
    assert_eq!(code, 7, "{err}");
    let (code, err) = team.run_with("alice", "approve g", &alice);
    assert_eq!(code, 0, "{err}");
    api.remove("configmaps", "team", "rollout.approvals");
    let (code, err) = team.run("carol", "resume");
    assert_eq!(code, 7, "the decisions are gone: it waits again: {err}");
    let (code, err) = team.run_with("alice", "approve g", &alice);
    assert_eq!(code, 0, "{err}");
    let text = approvals_text(api);
    api.put(
        "configmaps",
        "team",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "rollout.approvals", "namespace": "team"},
               "data": {"decisions": format!("not json\n{text}")}}),
    );
    let (code, err) = team.run("carol", "resume");
    assert_eq!(code, 5, "{err}");
    assert!(
        err.contains("rollout.approvals") && err.contains("line 1") && !err.contains("panicked"),
        "{err}"
    );
    assert_eq!(team.ledger(), ["a", "checked"]);
}

/// With the state in a cluster and a short lease, `apply` waits at a terminal (`script`)
/// through several renewals; approvals added meanwhile from other machines (the cluster's
/// ConfigMap) are seen, and the waiting run goes on by itself with its Lease held.
#[test]
fn cluster_apply_waiting_at_a_terminal_sees_approvals_made_elsewhere() {
    if !crate::support::has_script() {
        eprintln!("SKIPPED: `script` is not installed");
        return;
    }
    let team = Team::fake(gated_by_two_sre_leads, "3s");
    let api = team.api();
    api.add_user("alice-token", "alice", &["sre-leads"]);
    api.add_user("bob-token", "bob", &["sre-leads"]);
    let alice = api.kubeconfig_as(team.dir.path(), "alice-token");
    let bob = api.kubeconfig_as(team.dir.path(), "bob-token");
    let apply = format!(
        "exec env KUBECONFIG={} HOME={} NO_COLOR=1 {}",
        shell_words::quote(&alice.display().to_string()),
        shell_words::quote(&team.dir.path().display().to_string()),
        shell_words::join([
            assert_cmd::cargo::cargo_bin("milepost").display().to_string(),
            "apply".into(),
            team.workflow().display().to_string(),
            "--state-dir".into(),
            team.path("op").display().to_string(),
            "--progress".into(),
            "plain".into(),
        ])
    );
    let typescript = team.path("apply.typescript").display().to_string();
    let mut waiting = crate::support::at_a_terminal(&apply, &typescript);
    let shown = || std::fs::read_to_string(team.path("apply.typescript")).unwrap_or_default();
    wait_for(
        || shown().contains("asks for approval") || shown().contains("needs approval"),
        Duration::from_secs(30),
        "g asking",
    );
    // Through renewals of a 3s lease.
    std::thread::sleep(Duration::from_secs(5));
    assert!(waiting.try_wait().unwrap().is_none(), "apply did not wait: {}", shown());
    let (code, err) = team.run_with("alice", "approve g", &alice);
    assert_eq!(code, 0, "{err}");
    std::thread::sleep(Duration::from_secs(2));
    assert!(waiting.try_wait().unwrap().is_none(), "went on with 1 of 2: {}", shown());
    let (code, err) = team.run_with("bob", "approve g", &bob);
    assert_eq!(code, 0, "{err}");
    let start = Instant::now();
    let exit = loop {
        if let Some(exit) = waiting.try_wait().unwrap() {
            break exit;
        }
        if start.elapsed() > Duration::from_secs(30) {
            let _ = waiting.kill();
            panic!("the waiting apply did not go on: {}", shown());
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(exit.code(), Some(0), "{}", shown());
    assert_eq!(team.ledger(), ["a", "checked", "b"], "{}", shown());
}

/// The approvals are append-only and kept for every rollout of the state: a long-lived
/// rollout's decisions outgrow one ConfigMap (1 MiB of data). A decision made then must
/// still land and count, and the older ones still be read.
#[test]
fn cluster_approvals_outgrowing_one_configmap_still_land() {
    use milepost::state::approvals::{Choice, Decision};
    let team = approval_team(1);
    let api = team.api();
    api.add_user("alice-token", "alice", &["sre-leads"]);
    let alice = api.kubeconfig_as(team.dir.path(), "alice-token");
    // Years of earlier rollouts' decisions, each with its evidence: just under 1 MiB.
    let mut text = String::new();
    let mut n = 0;
    let old = |n: usize, note: usize| {
        let old = Decision {
            decision: Choice::Approved,
            node: "g".into(),
            request: format!("2025010{n:06}Z-1"),
            workflow: "w".into(),
            environment: "default".into(),
            user: "someone".into(),
            groups: vec!["sre-leads".into()],
            at: "2025-01-01T00:00:00.000Z".into(),
            source_hash: "0".repeat(32),
            note: Some("x".repeat(note)),
            evidence: Vec::new(),
        };
        String::from_utf8(milepost::state::journal::encode_line(&old)).unwrap()
    };
    let full = 1024 * 1024 - 100;
    loop {
        let line = old(n, 3000);
        if text.len() + line.len() > full - 1000 {
            break;
        }
        text.push_str(&line);
        n += 1;
    }
    // The last one fills it to `full`, give or take a byte.
    let bare = old(n, 1).len() - 1;
    text.push_str(&old(n, full - text.len() - bare));
    assert!(text.len().abs_diff(full) < 4, "{}", text.len());
    api.put(
        "configmaps",
        "team",
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "rollout.approvals", "namespace": "team"},
               "data": {"decisions": text}}),
    );
    let (code, err) = team.run_with("alice", "apply", &alice);
    assert_eq!(code, 7, "{err}");
    let (code, err) =
        team.run_with("alice", "approve g --note the-dashboards-of-this-rollout-are-green", &alice);
    assert_eq!(code, 0, "{err}");
    let (code, err) = team.run("carol", "resume");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), ["a", "checked", "b"]);
    // The old decisions are still there, whole.
    let (code, err) = team.run("carol", "history");
    assert_eq!(code, 0, "{err}");
    assert!(approvals_text(api).len() >= text.len(), "the old decisions were kept");
    let next = api.object("configmaps", "team", "rollout.approvals.1").expect("a next approvals configmap");
    assert!(next["data"]["decisions"].as_str().unwrap_or_default().contains("\"user\":\"alice\""), "{next}");
}

/// Read-only commands read a copy of the cluster's runs made for them: it is gone when they
/// end, and one a killed command left behind (its pid gone) is removed by the next.
#[test]
fn read_only_copies_are_removed_and_stale_ones_cleaned_up() {
    let team = Team::fake(|state| workflow(state, "true"), "10s");
    let (code, err) = team.run("alice", "apply");
    assert_eq!(code, 0, "{err}");
    let beside = team.path("carol/w");
    std::fs::create_dir_all(beside.join(".view-999999999-1-default/runs")).unwrap();
    let (code, err) = team.run("carol", "status");
    assert_eq!(code, 0, "{err}");
    let left: Vec<String> = std::fs::read_dir(&beside)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".view-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

/// `verify` from another machine re-runs the checks of what the cluster recorded as done,
/// and its run is in the cluster for everyone's history.
#[test]
fn verify_from_another_machine_is_recorded_in_the_cluster() {
    let team = Team::fake(
        |state| {
            format!(
                r#"workflow w {{
    {state}
}}
module a {{ budget "1m"; install {{ run i "echo a >> ../ledger" }}; validate {{ run v "echo check-a >> ../ledger" }} }}
"#
            )
        },
        "10s",
    );
    let (code, err) = team.run("alice", "apply");
    assert_eq!(code, 0, "{err}");
    let (code, err) = team.run("bob", "verify");
    assert_eq!(code, 0, "{err}");
    assert_eq!(team.ledger(), ["a", "check-a", "check-a"], "the install ran once, the check twice: {err}");
    let out = team.command("carol", "history", &team.kubeconfig).output().unwrap();
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(history.contains("apply") && history.contains("verify"), "{history}");
}
