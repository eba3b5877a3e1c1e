//! `apply` and `wait` steps against an API server in the test process (tests/fake_api.rs):
//! what milepost sends — discovery, server-side apply PATCHes, watches — and how it handles
//! each answer, 403, 404, 409, a watch that times out and one that drops. The suite against a
//! real cluster is at the end; it runs only with MILEPOST_E2E_KUBECONFIG (docs/kubernetes.md).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::fake_api::{FakeApi, WatchStep};
use crate::support::{milepost, milepost_without_cluster, walk};

struct Cluster {
    api: FakeApi,
    dir: tempfile::TempDir,
}

/// The manifests every test starts with: files, so YAML indentation is what it looks like.
fn manifests() -> Vec<(String, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/kube/manifests");
    let mut files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&path).unwrap())
        })
        .collect();
    files.sort();
    files
}

impl Cluster {
    fn new(steps: &str) -> Self {
        Self::with_modules(&format!("module platform {{\n    budget \"10m\"\n{steps}\n}}\n"))
    }

    /// The fake with the namespace `apps` already there, as for steps that apply into it.
    fn in_namespace(steps: &str) -> Self {
        let c = Self::new(steps);
        c.api.put_applied(
            "namespaces",
            "",
            "kubectl",
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}),
        );
        c
    }

    /// A workflow of these modules, the manifests of MANIFESTS beside it.
    fn with_modules(modules: &str) -> Self {
        let api = FakeApi::start();
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        for (name, text) in manifests() {
            std::fs::write(dir.path().join("manifests").join(name), text).unwrap();
        }
        let workflow =
            format!("workflow k8s {{\n    vars {{ replicas 3 }}\n    kubernetes {{ namespace \"apps\" }}\n}}\n{modules}");
        std::fs::write(dir.path().join("w.kdl"), workflow).unwrap();
        api.kubeconfig(dir.path());
        Self { api, dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn milepost(&self, args: &[&str]) -> assert_cmd::Command {
        let mut cmd = milepost();
        cmd.args(args)
            .arg(self.path("w.kdl"))
            .env("KUBECONFIG", self.path("kubeconfig"))
            .env("HOME", self.dir.path())
            .timeout(Duration::from_secs(60));
        cmd
    }

    fn apply(&self) -> assert_cmd::assert::Assert {
        self.milepost(&["apply", "--progress", "plain"]).assert()
    }

    /// The log of the node's step `n` (1-based) in the last run.
    fn log(&self, n: usize, step: &str) -> String {
        self.log_of("platform", n, step)
    }

    /// The log of `node`'s step `n` (1-based) in the last run.
    fn log_of(&self, node: &str, n: usize, step: &str) -> String {
        let runs = milepost::state::history::run_dirs(&crate::support::rollout_dir(&self.path(".")));
        let file = runs.last().unwrap().join("logs").join(milepost::exec::node::log_name(node, n - 1, step));
        std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
    }
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

#[test]
fn apply_sends_server_side_apply_and_reports_created_then_unchanged() {
    let c = Cluster::new("    install { apply objects \"manifests\" }");
    c.apply().success();
    let log = c.log(1, "objects");
    for line in [
        "created   namespace/apps",
        "created   customresourcedefinition/widgets.example.com",
        "created   configmap/settings -n apps",
        "created   networkpolicy/default-deny -n apps",
        "created   widget/first -n apps",
        "5 object(s): 5 created, 0 changed, 0 unchanged",
    ] {
        assert!(log.contains(line), "missing `{line}` in:\n{log}");
    }
    let patches: Vec<_> = c.api.seen().into_iter().filter(|s| s.method == "PATCH").collect();
    assert_eq!(patches.len(), 5);
    for p in &patches {
        assert_eq!(p.content_type, "application/apply-patch+yaml", "{p:?}");
        assert_eq!(p.param("fieldManager").as_deref(), Some("milepost/platform/objects"), "{p:?}");
        assert!(!p.query.contains("force"), "force only when asked: {p:?}");
        assert_eq!(p.authorization, "Bearer t0k3n");
    }
    let paths: Vec<&str> = patches.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(
        paths[0], "/api/v1/namespaces/apps",
        "cluster-scoped kinds have no namespace; namespaces first"
    );
    assert_eq!(paths[1], "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com");
    assert!(paths.contains(&"/api/v1/namespaces/apps/configmaps/settings"), "{paths:?}");
    assert!(paths.contains(&"/apis/example.com/v1/namespaces/apps/widgets/first"), "{paths:?}");
    // Rendered with tera before it was sent; resolved through discovery, not a kind table.
    let config = c.api.object("configmaps", "apps", "settings").unwrap();
    assert_eq!(config["data"]["replicas"], "3");
    let discovered: Vec<String> =
        c.api.seen().into_iter().filter(|s| s.method == "GET").map(|s| s.path).collect();
    assert!(discovered.contains(&"/apis/networking.k8s.io/v1".to_string()), "{discovered:?}");
    assert!(discovered.contains(&"/apis/example.com/v1".to_string()), "{discovered:?}");

    c.apply().success();
    let log = c.log(1, "objects");
    assert!(log.contains("5 object(s): 0 created, 0 changed, 5 unchanged"), "{log}");
    assert!(log.contains("unchanged configmap/settings -n apps"), "{log}");
}

#[test]
fn force_takes_over_fields_and_a_changed_manifest_is_reported_changed() {
    let c = Cluster::in_namespace("    install { apply objects \"manifests/10-config.yaml\" force=#true }");
    c.apply().success();
    let patches: Vec<_> = c.api.seen().into_iter().filter(|s| s.method == "PATCH").collect();
    assert!(patches.iter().all(|p| p.query.contains("force=true")), "{patches:?}");
    c.milepost(&["apply", "--var", "replicas=5"]).assert().success();
    let log = c.log(1, "objects");
    assert!(log.contains("changed   configmap/settings -n apps"), "{log}");
    assert!(log.contains("unchanged networkpolicy/default-deny -n apps"), "{log}");
}

#[test]
fn a_forbidden_patch_names_the_verb_resource_and_namespace() {
    // A 403 can heal (a Role granted meanwhile): retries are spent on it.
    let c = Cluster::in_namespace(
        "    install { apply objects \"manifests/10-config.yaml\" retries=1 backoff=\"10ms\" }",
    );
    c.api.deny("patch", "configmaps");
    let out = c.apply().code(1);
    let text = stderr(&out);
    assert!(
        text.contains(
            "forbidden (403): RBAC does not allow `patch` on configmaps `settings` in namespace `apps`"
        ),
        "{text}"
    );
    assert!(text.contains("User \"tester\" cannot patch"), "the API server's own words: {text}");
    assert!(text.contains("10-config.yaml:1"), "which manifest: {text}");
    assert_eq!(patches(&c, "/configmaps/"), 2, "one attempt and one retry");
}

/// PATCH requests the fake API server answered on paths containing `path`.
fn patches(c: &Cluster, path: &str) -> usize {
    c.api.seen().iter().filter(|s| s.method == "PATCH" && s.path.contains(path)).count()
}

#[test]
fn an_unknown_kind_says_which_group_version_is_missing() {
    let c = Cluster::new("    install { apply objects \"manifests/gizmo.yaml\" }");
    std::fs::write(
        c.path("manifests/gizmo.yaml"),
        "apiVersion: example.org/v9\nkind: Gizmo\nmetadata:\n  name: g\n",
    )
    .unwrap();
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("does not serve example.org/v9 (404 from discovery)"), "{text}");
    assert!(text.contains("gizmo.yaml:1: gizmo/g"), "{text}");
}

#[test]
fn a_conflict_suggests_force_and_is_not_retried() {
    let c = Cluster::in_namespace(
        "    install { apply objects \"manifests/10-config.yaml\" retries=3 backoff=\"10s\" }",
    );
    // kubectl applied the policy earlier with other policy types: it owns them.
    c.api.put_applied(
        "networkpolicies",
        "apps",
        "kubectl",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "default-deny", "namespace": "apps"},
               "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}}),
    );
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("conflict (409) on networkpolicies `default-deny` in namespace `apps`"), "{text}");
    assert!(text.contains("conflict with \"kubectl\"") && text.contains("force=#true"), "{text}");
    // The same request would conflict again: no backoff spent, one PATCH sent.
    assert_eq!(patches(&c, "/networkpolicies/"), 1);
    assert!(c.log(1, "objects").contains("the same request would be refused again; not retried"));
}

fn deployment(ready: &str, reason: &str) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "apps", "resourceVersion": "7", "generation": 1},
        "status": {"observedGeneration": 1, "conditions": [
            {"type": "Available", "status": ready, "reason": reason, "message": "replicas"}
        ]}
    })
}

#[test]
fn wait_returns_when_the_watch_shows_the_condition() {
    let c = Cluster::new("    validate { wait web \"deployment/web\" condition=Available timeout=\"20s\" }");
    c.api.put("deployments", "apps", deployment("False", "MinimumReplicasUnavailable"));
    c.api.script_watch(vec![WatchStep::Event {
        after: Duration::from_millis(300),
        kind: "MODIFIED",
        object: deployment("True", "MinimumReplicasAvailable"),
    }]);
    c.apply().success();
    let log = c.log(1, "web");
    assert!(
        log.contains("deployment/web -n apps: Available=False (MinimumReplicasUnavailable: replicas)"),
        "{log}"
    );
    assert!(log.contains("deployment/web -n apps condition=Available"), "{log}");
    let watches: Vec<_> = c.api.seen().into_iter().filter(|s| s.is_watch()).collect();
    assert_eq!(watches.len(), 1, "one watch, no polling");
    assert!(watches[0].query.contains("fieldSelector=metadata.name%3Dweb"), "{watches:?}");
}

#[test]
fn a_wait_that_times_out_reports_the_last_observed_conditions() {
    let c = Cluster::new("    validate { wait web \"deployment/web\" condition=Available timeout=\"2s\" }");
    c.api.put("deployments", "apps", deployment("False", "MinimumReplicasUnavailable"));
    let text = stderr(&c.apply().code(1));
    assert!(
        text.contains("deployment/web -n apps not condition=Available after 2s; last seen: Available=False (MinimumReplicasUnavailable: replicas)"),
        "{text}"
    );
}

#[test]
fn a_dropped_watch_is_watched_again_and_still_sees_the_change() {
    let c = Cluster::new("    validate { wait web \"deployment/web\" condition=Available timeout=\"30s\" }");
    c.api.put("deployments", "apps", deployment("False", "MinimumReplicasUnavailable"));
    c.api.script_watch(vec![WatchStep::Drop { after: Duration::from_millis(200) }]);
    c.api.script_watch(vec![WatchStep::Event {
        after: Duration::from_millis(200),
        kind: "MODIFIED",
        object: deployment("True", "MinimumReplicasAvailable"),
    }]);
    c.apply().success();
    let watches = c.api.seen().into_iter().filter(|s| s.is_watch()).count();
    assert!(watches >= 2, "the watch was re-established: {watches} watch request(s)");
    let log = c.log(1, "web");
    assert!(log.contains("watch interrupted") || watches >= 2, "{log}");
}

#[test]
fn a_forbidden_watch_fails_at_once_with_the_refusal() {
    let c = Cluster::new("    validate { wait web \"deployment/web\" condition=Available timeout=\"60s\" }");
    // The watcher lists first: RBAC refuses `list` (recording 61b), and the message says so.
    c.api.deny("list", "deployments");
    let started = std::time::Instant::now();
    let text = stderr(&c.apply().code(1));
    assert!(
        text.contains("forbidden (403): RBAC does not allow `list` on deployments `web` in namespace `apps`"),
        "{text}"
    );
    assert!(text.contains("User \"tester\" cannot list resource \"deployments\""), "{text}");
    assert!(started.elapsed() < Duration::from_secs(50), "a refusal does not wait out the timeout");
}

#[test]
fn preflight_needs_a_reachable_cluster_with_accepted_credentials() {
    let c = Cluster::new("    install { apply objects \"manifests/10-config.yaml\" }");
    // No kubeconfig anywhere, not in a pod.
    let out = milepost_without_cluster(&c.path("nowhere")).arg("apply").arg(c.path("w.kdl")).assert().code(6);
    assert!(stderr(&out).contains("no Kubernetes cluster is configured"), "{}", stderr(&out));

    c.api.answer("GET", "/version", 401, "Unauthorized", "Unauthorized");
    let text = stderr(&c.apply().code(6));
    assert!(text.contains("rejected the credentials (401 Unauthorized)"), "{text}");
    assert!(text.contains("nothing was run"), "{text}");

    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = std::fs::read_to_string(c.path("kubeconfig")).unwrap();
    std::fs::write(c.path("kubeconfig"), config.replace(&c.api.port.to_string(), &closed.to_string()))
        .unwrap();
    let text = stderr(&c.apply().code(6));
    assert!(text.contains(&format!("cannot reach the API server at http://127.0.0.1:{closed}")), "{text}");

    let text = stderr(&c.milepost(&["apply", "--context", "nope"]).assert().code(6));
    assert!(text.contains("the context `nope` is not in it"), "{text}");
}

#[test]
fn a_yaml_mistake_in_a_rendered_manifest_is_a_definition_error_at_its_line() {
    let c = Cluster::new("    install { apply objects \"manifests/broken.yaml\" }");
    std::fs::write(
        c.path("manifests/broken.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: y\ndata: [unclosed\n",
    )
    .unwrap();
    let out = c.milepost(&["validate"]).assert().code(3);
    let text = stderr(&out);
    assert!(text.contains("manifests/broken.yaml:1"), "{text}");
    assert!(c.api.seen().is_empty(), "nothing was sent");
}

#[test]
fn plan_server_shows_what_apply_would_change_without_changing_it() {
    let c = Cluster::in_namespace("    install { apply objects \"manifests/10-config.yaml\" }");
    c.apply().success();
    let out = c.milepost(&["plan", "--server", "--var", "replicas=9"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("changed   configmap/settings -n apps"), "{text}");
    assert!(text.contains("unchanged networkpolicy/default-deny -n apps"), "{text}");
    let dry: Vec<_> =
        c.api.seen().into_iter().filter(|s| s.method == "PATCH" && s.query.contains("dryRun=All")).collect();
    assert_eq!(dry.len(), 2);
    assert_eq!(
        c.api.object("configmaps", "apps", "settings").unwrap()["data"]["replicas"],
        "3",
        "nothing stored"
    );
}

/// Against a real API server (kind, k3d): see docs/kubernetes.md. Ignored, so it is listed as
/// skipped, unless run with `cargo nextest run --run-ignored all e2e`.
#[test]
#[ignore = "needs a cluster: set MILEPOST_E2E_KUBECONFIG and run with --run-ignored all"]
fn e2e_apply_twice_and_wait_on_a_patched_condition() {
    let kubeconfig = std::env::var("MILEPOST_E2E_KUBECONFIG")
        .expect("MILEPOST_E2E_KUBECONFIG must point at a kubeconfig for a disposable cluster");
    e2e::run(Path::new(&kubeconfig));
}

/// The e2e test's own steps against the fake, whose watches stream what is written: its
/// names, files, status patch and cleanup work before anyone runs it on a cluster.
#[test]
fn kube_the_e2e_test_passes_against_the_fake_twice() {
    let api = FakeApi::start();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = api.kubeconfig(dir.path());
    e2e::run(&kubeconfig);
    e2e::run(&kubeconfig);
    let deletes = api.seen().into_iter().filter(|s| s.method == "DELETE").count();
    assert_eq!(deletes, 4, "each run deleted its namespace and its CRD");
}

mod e2e {
    use super::*;
    use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams};
    use kube::discovery::ApiResource;

    /// A client for the e2e cluster, on a runtime of its own.
    fn client(kubeconfig: &Path, runtime: &tokio::runtime::Runtime) -> kube::Client {
        runtime.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
                &Default::default(),
            )
            .await
            .unwrap();
            kube::Client::try_from(config).unwrap()
        })
    }

    /// Deletes the run's namespace and CRD when the test ends, passed or not, so the next
    /// run on the same cluster starts clean (it would pass anyway: its names are new).
    struct Cleanup {
        kubeconfig: PathBuf,
        namespace: String,
        crd: String,
    }

    impl Drop for Cleanup {
        fn drop(&mut self) {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                return;
            };
            let client = client(&self.kubeconfig, &runtime);
            runtime.block_on(async {
                let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
                let _ = namespaces.delete(&self.namespace, &DeleteParams::default()).await;
                let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
                    Api::all(client);
                let _ = crds.delete(&self.crd, &DeleteParams::default()).await;
            });
        }
    }

    pub fn run(kubeconfig: &Path) {
        let dir = tempfile::tempdir().unwrap();
        // Names of this run only: a second run on the same cluster (or one whose cleanup
        // was cut short) finds nothing of the first.
        let id = format!("{}{}", std::process::id(), jiff::Timestamp::now().as_millisecond() % 1_000_000);
        let ns = format!("milepost-e2e-{id}");
        let group = format!("e2e{id}.example.com");
        let _cleanup = Cleanup {
            kubeconfig: kubeconfig.to_path_buf(),
            namespace: ns.clone(),
            crd: format!("widgets.{group}"),
        };
        std::fs::create_dir_all(dir.path().join("manifests")).unwrap();
        for (name, text) in manifests() {
            let text = text.replace("name: apps", &format!("name: {ns}")).replace("example.com", &group);
            std::fs::write(dir.path().join("manifests").join(name), text).unwrap();
        }
        let workflow = format!(
            "workflow e2e {{\n    vars {{ replicas 3 }}\n    kubernetes {{ namespace \"{ns}\" }}\n}}\n\
             module platform {{\n    budget \"10m\"\n    install {{ apply objects \"manifests\" }}\n}}\n\
             module ready {{\n    budget \"5m\"\n    after platform\n    validate {{ wait first \"widgets.{group}/first\" condition=Ready timeout=\"60s\" }}\n}}\n"
        );
        std::fs::write(dir.path().join("w.kdl"), workflow).unwrap();
        let run = |args: &[&str]| {
            milepost()
                .args(args)
                .arg(dir.path().join("w.kdl"))
                .env("KUBECONFIG", kubeconfig)
                .timeout(Duration::from_secs(300))
                .assert()
        };
        run(&["apply", "--only", "platform"]).success();
        let logs = |dir: &Path| {
            let runs = milepost::state::history::run_dirs(&crate::support::rollout_dir(dir));
            std::fs::read_to_string(runs.last().unwrap().join("logs/platform.01-objects.log")).unwrap()
        };
        assert!(logs(dir.path()).contains("5 object(s): 5 created"), "{}", logs(dir.path()));
        run(&["apply", "--only", "platform"]).success();
        assert!(logs(dir.path()).contains("0 created, 0 changed, 5 unchanged"), "{}", logs(dir.path()));

        // Patch Ready=True into the widget's status subresource a few seconds after the wait
        // starts, as a controller would.
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let patched_at = std::sync::Arc::new(std::sync::Mutex::new(None));
        let patcher = {
            let kubeconfig = kubeconfig.to_path_buf();
            let ns = ns.clone();
            let group = group.clone();
            let patched_at = patched_at.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(3));
                let client = client(&kubeconfig, &runtime);
                runtime.block_on(async {
                    let ar =
                        ApiResource::from_gvk(&kube::core::GroupVersionKind::gvk(&group, "v1", "Widget"));
                    let api: Api<DynamicObject> = Api::namespaced_with(client, &ns, &ar);
                    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
                    api.patch_status("first", &PatchParams::default(), &Patch::Merge(&status)).await.unwrap();
                    *patched_at.lock().unwrap() = Some(jiff::Timestamp::now());
                });
            })
        };
        run(&["apply", "--only", "ready"]).success();
        patcher.join().unwrap();
        let patched = patched_at.lock().unwrap().expect("the status was patched");
        // When the wait step ended, from the journal: the watch saw the patch, no poll did.
        let runs = milepost::state::history::run_dirs(&crate::support::rollout_dir(dir.path()));
        let records = milepost::state::journal::read(&runs.last().unwrap().join("journal.jsonl")).unwrap();
        let ended = records
            .iter()
            .find_map(|r| match r {
                milepost::state::format::Record::StepEnd { step, at, .. } if step == "first" => {
                    Some(at.clone())
                }
                _ => None,
            })
            .expect("the wait step ended");
        let ended: jiff::Timestamp = ended.parse().unwrap();
        let lag = ended.duration_since(patched);
        assert!(lag < jiff::SignedDuration::from_secs(1), "the wait returned {lag:?} after the patch");
    }
}

#[test]
fn a_rollout_wait_on_a_kind_without_rollouts_fails_at_once() {
    let c = Cluster::new(
        "    validate { wait settings \"configmap/settings\" until=\"rollout\" timeout=\"60s\" }",
    );
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("a ConfigMap has no rollout to wait for"), "{text}");
}

#[test]
fn plan_server_does_not_wait_for_a_crd_a_dry_run_never_creates() {
    let c = Cluster::new("    install { apply objects \"manifests\" }");
    let out = c.milepost(&["plan", "--server"]).assert().success();
    let text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(text.contains("created   widget/first (its CRD is new in this step: not checked)"), "{text}");
    assert!(
        text.contains(
            "created   configmap/settings -n apps (its namespace is new in this step: not checked)"
        ),
        "a dry run creates no namespace, so the server would answer 404 for it: {text}"
    );
    assert!(c.api.object("customresourcedefinitions", "", "widgets.example.com").is_none());
}

#[test]
fn an_apply_path_without_objects_is_a_definition_error() {
    let c = Cluster::new("    install { apply objects \"empty\" }");
    std::fs::create_dir_all(c.path("empty")).unwrap();
    std::fs::write(c.path("empty/only-comments.yaml"), "# nothing yet\n---\n").unwrap();
    let text = stderr(&c.milepost(&["validate"]).assert().code(3));
    assert!(text.contains("holds no Kubernetes object"), "{text}");
}

#[test]
fn secrets_the_api_server_quotes_back_are_masked() {
    let c = Cluster::in_namespace("    install { apply objects \"manifests/secret.yaml\" }");
    let workflow = std::fs::read_to_string(c.path("w.kdl")).unwrap();
    std::fs::write(
        c.path("w.kdl"),
        workflow.replace("kubernetes {", "secret token env=\"MILEPOST_TEST_K8S_TOKEN\"\n    kubernetes {"),
    )
    .unwrap();
    std::fs::write(
        c.path("manifests/secret.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: creds\ndata:\n  token: \"{{ secrets.token }}\"\n",
    )
    .unwrap();
    c.api.answer(
        "PATCH",
        "/configmaps/creds",
        422,
        "Invalid",
        "data.token: Invalid value: \"hunter2-s3cr3t\": too short",
    );
    let out = c.milepost(&["apply"]).env("MILEPOST_TEST_K8S_TOKEN", "hunter2-s3cr3t").assert().code(1);
    let text = stderr(&out);
    assert!(text.contains("invalid (422)") && text.contains("Invalid value: \"***\""), "{text}");
    let patch = c.api.seen().into_iter().find(|s| s.method == "PATCH").unwrap();
    assert!(patch.body.contains("hunter2-s3cr3t"), "the cluster gets the real value");
    for entry in walk(&c.path(".milepost")) {
        let content = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&content).contains("hunter2-s3cr3t"),
            "{} holds the secret",
            entry.display()
        );
    }
}

#[test]
fn verify_needs_no_cluster_when_only_install_steps_use_one() {
    let c = Cluster::in_namespace(
        "    install { apply objects \"manifests/10-config.yaml\" }\n    validate { run ok \"true\" }",
    );
    c.apply().success();
    let out = milepost_without_cluster(&c.path("nowhere"))
        .arg("verify")
        .arg(c.path("w.kdl"))
        .timeout(Duration::from_secs(60))
        .assert()
        .success();
    let text = stderr(&out);
    assert!(!text.contains("no Kubernetes cluster is configured"), "{text}");
}

/// Two modules applying labels to one Namespace, as modules 07 and 12 of the Phase 2 plan
/// do (issue 13 item 1): `one` sets istio-injection and enforce=baseline, `two` only enforce.
fn two_modules_labelling(force_two: bool) -> Cluster {
    let modules = format!(
        "module one {{\n    budget \"10m\"\n    install {{ apply labels \"ns-one.yaml\" }}\n}}\n\
         module two {{\n    budget \"10m\"\n    after one\n    install {{ apply labels \"ns-two.yaml\" force=#{force_two} }}\n}}\n"
    );
    let c = Cluster::with_modules(&modules);
    std::fs::write(
        c.path("ns-one.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fm-demo\n  labels:\n    istio-injection: enabled\n    pod-security.kubernetes.io/enforce: baseline\n",
    )
    .unwrap();
    std::fs::write(
        c.path("ns-two.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: fm-demo\n  labels:\n    pod-security.kubernetes.io/enforce: restricted\n",
    )
    .unwrap();
    c
}

fn managers(object: &serde_json::Value) -> Vec<String> {
    let entries = object["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    entries.iter().map(|e| e["manager"].as_str().unwrap_or("").to_string()).collect()
}

#[test]
fn kube_steps_applying_one_object_keep_each_others_fields_and_fight_over_shared_ones() {
    let c = two_modules_labelling(true);
    c.apply().success();
    let ns = c.api.object("namespaces", "", "fm-demo").unwrap();
    let labels = &ns["metadata"]["labels"];
    assert_eq!(labels["istio-injection"], "enabled", "module one's label survives module two: {labels}");
    assert_eq!(labels["pod-security.kubernetes.io/enforce"], "restricted", "{labels}");
    assert_eq!(managers(&ns), ["milepost/one/labels", "milepost/two/labels"]);
    // Again: `one` still sets enforce=baseline, which `two` took: the fight shows as a 409
    // naming the other step, instead of a label silently lost.
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("conflict with \"milepost/two/labels\""), "{text}");
}

#[test]
fn kube_two_steps_setting_one_field_conflict_unless_one_forces() {
    let c = two_modules_labelling(false);
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("conflict (409) on namespaces `fm-demo`"), "{text}");
    assert!(
        text.contains(
            "conflict with \"milepost/one/labels\": .metadata.labels.pod-security.kubernetes.io/enforce"
        ),
        "the server names the other step's manager: {text}"
    );
    let ns = c.api.object("namespaces", "", "fm-demo").unwrap();
    assert_eq!(ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"], "baseline");
}

#[test]
fn kube_objects_owned_by_the_single_legacy_manager_are_taken_over() {
    let c = Cluster::in_namespace("    install { apply objects \"manifests/10-config.yaml\" }");
    // An earlier milepost applied the ConfigMap with another value and an extra key, and the
    // policy as it is now, all as the single manager `milepost`.
    c.api.put_applied(
        "configmaps",
        "apps",
        "milepost",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "apps"},
               "data": {"replicas": "2", "old-key": "kept"}}),
    );
    c.api.put_applied(
        "networkpolicies",
        "apps",
        "milepost",
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "default-deny", "namespace": "apps"},
               "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}}),
    );
    c.apply().success();
    let log = c.log(1, "objects");
    assert!(
        log.contains(
            "configmap/settings: taking over fields from the former single field manager `milepost` (force)"
        ),
        "a conflict with the legacy manager alone is forced: {log}"
    );
    assert!(log.contains("configmap/settings: dropped the former single field manager `milepost`"), "{log}");
    assert!(
        log.contains("networkpolicy/default-deny: dropped the former single field manager `milepost`"),
        "{log}"
    );
    let config = c.api.object("configmaps", "apps", "settings").unwrap();
    assert_eq!(config["data"]["replicas"], "3");
    assert_eq!(config["data"]["old-key"], "kept", "dropping the entry leaves the fields, unowned");
    assert_eq!(managers(&config), ["milepost/platform/objects"]);
    let policy = c.api.object("networkpolicies", "apps", "default-deny").unwrap();
    assert_eq!(managers(&policy), ["milepost/platform/objects"]);
    // The JSON patch tested the resourceVersion it read.
    let json_patches: Vec<_> = c
        .api
        .seen()
        .into_iter()
        .filter(|s| s.method == "PATCH" && s.content_type.starts_with("application/json-patch"))
        .collect();
    assert_eq!(json_patches.len(), 2, "{json_patches:?}");
    assert!(
        json_patches[0].body.contains("\"op\":\"test\",\"path\":\"/metadata/resourceVersion\""),
        "{json_patches:?}"
    );

    // The next run finds nothing to take over.
    c.apply().success();
    let log = c.log(1, "objects");
    assert!(log.contains("0 created, 0 changed, 2 unchanged"), "{log}");
    assert!(!log.contains("former"), "{log}");
}

#[test]
fn kube_a_conflict_with_the_legacy_manager_and_another_is_not_forced() {
    let c = Cluster::in_namespace("    install { apply objects \"manifests/10-config.yaml\" }");
    c.api.put_applied(
        "configmaps",
        "apps",
        "milepost",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "apps"},
               "data": {"replicas": "2"}}),
    );
    std::fs::write(
        c.path("manifests/10-config.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  replicas: \"3\"\n  mode: fast\n",
    )
    .unwrap();
    c.api.put_applied(
        "configmaps",
        "apps",
        "ops-team",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "apps"},
               "data": {"mode": "slow"}}),
    );
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("conflict (409)") && text.contains("\"ops-team\""), "{text}");
    let config = c.api.object("configmaps", "apps", "settings").unwrap();
    assert_eq!(config["data"]["replicas"], "2", "not forced: {config}");
    assert_eq!(patches(&c, "/configmaps/settings"), 1, "no forced retry");
}

/// The recorded answer of a real server to a GET (tests/kube-recordings).
fn recorded_object(name: &str) -> serde_json::Value {
    crate::kube_contract::recording(name)["response"]["body"].clone()
}

#[test]
fn kube_a_rollout_wait_on_objects_already_rolled_out_passes_from_the_first_list() {
    // Issue 13 item 2: a Deployment with replicas 0, a StatefulSet and a DaemonSet, settled
    // as a real server answered (no replicas keys at all for the Deployment). The watcher's
    // first list gives them without kind: only discovery says what they are.
    let c = Cluster::new(
        "    validate {\n        wait web0 \"deployment/web0\" until=\"rollout\" timeout=\"20s\"\n        \
         wait db \"statefulset/db\" until=\"rollout\" timeout=\"20s\"\n        \
         wait agent \"daemonset/agent\" until=\"rollout\" timeout=\"20s\"\n    }",
    );
    c.api.put("deployments", "apps", recorded_object("31-deploy-replicas0-get"));
    c.api.put("statefulsets", "apps", recorded_object("38-sts-get"));
    c.api.put("daemonsets", "apps", recorded_object("40-ds-get"));
    let started = std::time::Instant::now();
    c.apply().success();
    assert!(started.elapsed() < Duration::from_secs(15), "passed at once, not by a later event");
    assert!(c.log(1, "web0").contains("deployment/web0 -n apps rollout"), "{}", c.log(1, "web0"));
    assert!(c.log(2, "db").contains("statefulset/db -n apps rollout"), "{}", c.log(2, "db"));
    assert!(c.log(3, "agent").contains("daemonset/agent -n apps rollout"), "{}", c.log(3, "agent"));
}

#[test]
fn kube_a_pending_rollout_still_waits() {
    // Recording 35: two replicas that never run (no scheduler): not rolled out.
    let c = Cluster::new("    validate { wait web \"deployment/web\" until=\"rollout\" timeout=\"2s\" }");
    c.api.put("deployments", "apps", recorded_object("35-deploy-replicas2-pending-get"));
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("deployment/web -n apps not rollout complete after 2s"), "{text}");
    // readyReplicas and availableReplicas are left out by the server: 0, not `?`.
    assert!(text.contains("replicas 2 updated 2 ready 0 available 0"), "{text}");
}

#[test]
fn kube_a_forbidden_watch_after_an_allowed_list_names_watch() {
    let c = Cluster::new("    validate { wait web \"deployment/web\" condition=Available timeout=\"60s\" }");
    c.api.put("deployments", "apps", deployment("False", "MinimumReplicasUnavailable"));
    c.api.deny("watch", "deployments");
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("RBAC does not allow `watch` on deployments `web`"), "{text}");
}

#[test]
fn kube_an_apply_refused_as_create_names_create() {
    // Recording 68: patch granted, create not: applying a missing object is refused as create.
    let c = Cluster::in_namespace("    install { apply objects \"manifests/10-config.yaml\" }");
    c.api.deny("create", "configmaps");
    let text = stderr(&c.apply().code(1));
    assert!(
        text.contains(
            "forbidden (403): RBAC does not allow `create` on configmaps `settings` in namespace `apps`"
        ),
        "{text}"
    );
}

#[test]
fn kube_a_403_that_is_not_rbac_does_not_blame_rbac() {
    // Recording 95: a namespace being deleted refuses new content with a 403.
    let c = Cluster::in_namespace("    install { apply objects \"manifests/10-config.yaml\" }");
    c.api.answer(
        "PATCH",
        "/configmaps/",
        403,
        "Forbidden",
        "configmaps \"settings\" is forbidden: unable to create new content in namespace apps because it is being terminated",
    );
    let text = stderr(&c.apply().code(1));
    assert!(
        text.contains("forbidden (403): patch configmaps `settings` in namespace `apps`: configmaps"),
        "{text}"
    );
    assert!(!text.contains("RBAC"), "{text}");
}

#[test]
fn kube_a_field_at_the_wrong_level_is_reported_once_without_an_empty_reason() {
    // Recording 76: a ConfigMap with `spec:` is a 500 with no reason, every time.
    let c = Cluster::in_namespace(
        "    install { apply objects \"manifests/typo.yaml\" retries=2 backoff=\"10ms\" }",
    );
    std::fs::write(
        c.path("manifests/typo.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: typo\nspec:\n  replicas: \"3\"\n",
    )
    .unwrap();
    let text = stderr(&c.apply().code(1));
    assert!(
        text.contains(
            "patch configmaps `typo` in namespace `apps` failed (500): failed to create typed patch object \
             (apps/typo; /v1, Kind=ConfigMap): .spec: field not declared in schema"
        ),
        "{text}"
    );
    assert!(text.contains("check the indentation"), "{text}");
    assert!(!text.contains("(500 )"), "{text}");
    assert_eq!(patches(&c, "/configmaps/typo"), 1, "not retried");
    assert!(c.log(1, "objects").contains("not retried"), "{}", c.log(1, "objects"));
}

#[test]
fn kube_a_wait_that_times_out_while_the_server_is_unreachable_says_so() {
    let c = Cluster::new("    validate { wait web \"deployment/web\" condition=Available timeout=\"3s\" }");
    c.api.unreachable("GET", "/deployments");
    let text = stderr(&c.apply().code(1));
    assert!(
        text.contains("deployment/web -n apps not condition=Available after 3s; it was never seen"),
        "{text}"
    );
    assert!(text.contains("the API server could not be reached for the last"), "{text}");
}

#[test]
fn kube_phase2_applies_the_volume_snapshot_class_after_its_crds() {
    // Issue 13 item 4: module 7's `storage` step applied a VolumeSnapshotClass before
    // anything installed the snapshot.storage.k8s.io CRDs (a real server: 404, plain text).
    let loaded = milepost::spec::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/phase2.kdl"),
        &milepost::spec::LoadOptions::default(),
    )
    .unwrap();
    let node = loaded.workflow.nodes.iter().find(|n| n.id == "k8s-infra").unwrap();
    let mut crds_installed = false;
    let mut applied = false;
    for (_, step) in node.steps() {
        match &step.kind {
            milepost::spec::StepKind::Run { command, .. } => {
                crds_installed |= command.exec.contains("external-snapshotter/client/config/crd");
            }
            milepost::spec::StepKind::Apply { path, manifests, .. } => {
                let documents = milepost::exec::kubernetes::documents(path, manifests).unwrap();
                if documents.iter().any(|d| d.kind() == "VolumeSnapshotClass") {
                    assert!(
                        crds_installed,
                        "step `{}` applies a VolumeSnapshotClass before its CRDs",
                        step.name
                    );
                    applied = true;
                }
            }
            _ => {}
        }
    }
    assert!(applied, "module 7 still applies the VolumeSnapshotClass Velero uses");
}

#[test]
fn kube_an_apply_step_applies_objects_concurrently_and_logs_them_in_file_order() {
    let c = Cluster::in_namespace("    install { apply objects \"many.yaml\" }");
    let docs: Vec<String> = (0..24)
        .map(|i| {
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:02}\ndata:\n  i: \"{i}\"\n")
        })
        .collect();
    std::fs::write(c.path("many.yaml"), docs.join("---\n")).unwrap();
    // 24 objects, a GET and a PATCH each, 100 ms a request: 4.8 s one at a time.
    c.api.set_latency(Duration::from_millis(100));
    let started = std::time::Instant::now();
    c.apply().success();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(4), "applied one at a time? {took:?}");
    let log = c.log(1, "objects");
    let order: Vec<&str> = log.lines().filter(|l| l.starts_with("created")).collect();
    let expected: Vec<String> = (0..24).map(|i| format!("created   configmap/cm-{i:02} -n apps")).collect();
    assert_eq!(order, expected, "log lines keep the file order");
}

#[test]
fn kube_a_write_between_the_apply_and_the_managed_fields_edit_wins() {
    let c = Cluster::in_namespace("    install { apply objects \"manifests/10-config.yaml\" }");
    c.api.put_applied(
        "configmaps",
        "apps",
        "milepost",
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings", "namespace": "apps"},
               "data": {"replicas": "3"}}),
    );
    // Another client writes the ConfigMap between milepost's apply and its JSON patch.
    c.api.write_before_json_patch(true);
    c.apply().success();
    let log = c.log(1, "objects");
    assert!(
        log.contains("configmap/settings: could not drop the former field manager `milepost`")
            && log.contains("the next apply tries again"),
        "{log}"
    );
    let config = c.api.object("configmaps", "apps", "settings").unwrap();
    assert_eq!(
        managers(&config),
        ["milepost", "milepost/platform/objects"],
        "nothing written over the other write"
    );
    // The next run, undisturbed, drops it.
    c.api.write_before_json_patch(false);
    c.apply().success();
    let config = c.api.object("configmaps", "apps", "settings").unwrap();
    assert_eq!(managers(&config), ["milepost/platform/objects"]);
}

#[test]
fn kube_a_wait_that_times_out_while_the_server_answers_errors_says_so() {
    let c = Cluster::new("    validate { wait web \"deployment/web\" condition=Available timeout=\"3s\" }");
    c.api.answer(
        "GET",
        "/deployments",
        500,
        "InternalError",
        "Internal error occurred: etcdserver: request timed out",
    );
    let text = stderr(&c.apply().code(1));
    assert!(text.contains("the API server answered the watch with errors for the last"), "{text}");
    assert!(text.contains("etcdserver: request timed out"), "{text}");
    assert!(!text.contains("could not be reached"), "{text}");
}

#[test]
fn kube_a_field_manager_over_the_api_limit_is_cut_the_same_way_every_run() {
    let node = format!("platform-{}", "x".repeat(100));
    let step = format!("objects-{}", "y".repeat(30));
    let c = Cluster::with_modules(&format!(
        "module {node} {{\n    budget \"10m\"\n    install {{ apply {step} \"manifests/10-config.yaml\" }}\n}}\n"
    ));
    c.api.put_applied(
        "namespaces",
        "",
        "kubectl",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "apps"}}),
    );
    c.apply().success();
    c.apply().success();
    let managers: Vec<String> = c
        .api
        .seen()
        .into_iter()
        .filter(|s| s.method == "PATCH")
        .map(|s| s.param("fieldManager").unwrap())
        .collect();
    assert_eq!(managers.len(), 4);
    assert!(managers.iter().all(|m| m.len() == 128 && *m == managers[0]), "{managers:?}");
    assert!(managers[0].starts_with("milepost/platform-xxx"), "{managers:?}");
    assert!(managers[0].contains("/objects-yyy"), "the step's name stays readable: {managers:?}");
    let log = c.log_of(&node, 1, &step);
    assert!(log.contains("0 created, 0 changed, 2 unchanged"), "{log}");
}

/// Review of issue 13: two `apply` steps of the Phase 2 plan that set one field to two
/// values fight on every later `apply` (a 409, or with force a silent flip). None may.
#[test]
fn kube_phase2_steps_never_set_one_field_to_two_values() {
    fn leaves(value: &serde_json::Value, path: String, out: &mut Vec<(String, serde_json::Value)>) {
        match value {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    leaves(v, format!("{path}/{k}"), out);
                }
            }
            other => out.push((path, other.clone())),
        }
    }
    let loaded = milepost::spec::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/phase2.kdl"),
        &milepost::spec::LoadOptions::default(),
    )
    .unwrap();
    // (object, field) → (value, step)
    let mut seen: std::collections::HashMap<(String, String), (serde_json::Value, String)> =
        Default::default();
    let mut fields = 0;
    for node in &loaded.workflow.nodes {
        for (_, step) in node.steps() {
            let milepost::spec::StepKind::Apply { path, manifests, .. } = &step.kind else { continue };
            // A manifest a `template` step writes during the run is not there to read.
            let Ok(documents) = milepost::exec::kubernetes::documents(path, manifests) else { continue };
            for doc in documents {
                let object = serde_json::to_value(&doc.object).unwrap();
                let id = format!(
                    "{}/{}/{}",
                    doc.kind(),
                    object["metadata"]["namespace"].as_str().unwrap_or(""),
                    doc.name()
                );
                let mut found = Vec::new();
                leaves(&object, String::new(), &mut found);
                for (field, value) in found {
                    fields += 1;
                    let who = format!("{}/{}", node.id, step.name);
                    match seen.get(&(id.clone(), field.clone())) {
                        Some((earlier, by)) if *earlier != value && *by != who => {
                            panic!("{id} {field}: `{by}` sets {earlier}, `{who}` sets {value}")
                        }
                        _ => {
                            seen.insert((id.clone(), field), (value, who));
                        }
                    }
                }
            }
        }
    }
    assert!(fields > 500, "the plan's manifests were read ({fields} fields)");
}

/// Review of issue 13: concurrency only within a run of one kind. A document of another kind
/// waits for everything before it (a Role before its RoleBinding): here, the NetworkPolicy's
/// PATCH comes after every ConfigMap before it and before any after it.
#[test]
fn kube_a_change_of_kind_waits_for_everything_before_it() {
    let c = Cluster::in_namespace("    install { apply objects \"mixed.yaml\" }");
    let cm = |i: usize| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i}\ndata:\n  i: \"{i}\"\n")
    };
    let policy = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  name: deny\nspec:\n  podSelector: {}\n";
    let docs = [cm(0), cm(1), cm(2), cm(3), policy.to_string(), cm(4), cm(5), cm(6)];
    std::fs::write(c.path("mixed.yaml"), docs.join("---\n")).unwrap();
    c.api.set_latency(Duration::from_millis(30));
    c.apply().success();
    let patches: Vec<String> =
        c.api.seen().into_iter().filter(|s| s.method == "PATCH").map(|s| s.path).collect();
    let at = |name: &str| patches.iter().position(|p| p.ends_with(name)).unwrap();
    for i in 0..4 {
        assert!(at(&format!("cm-{i}")) < at("deny"), "{patches:?}");
    }
    for i in 4..7 {
        assert!(at(&format!("cm-{i}")) > at("deny"), "{patches:?}");
    }
}

/// Review of issue 13: one API group whose discovery fails (an aggregated API such as
/// metrics-server not ready, as on a fresh k3d) must not hide the others from a `wait`.
#[test]
fn kube_a_wait_finds_its_kind_while_another_group_cannot_be_listed() {
    let c = Cluster::new("    validate { wait web0 \"deployment/web0\" until=\"rollout\" timeout=\"20s\" }");
    c.api.put("deployments", "apps", recorded_object("31-deploy-replicas0-get"));
    c.api.answer(
        "GET",
        "/apis/networking.k8s.io/v1",
        503,
        "ServiceUnavailable",
        "the server is currently unable to handle the request",
    );
    c.apply().success();
    assert!(c.log(1, "web0").contains("deployment/web0 -n apps rollout"), "{}", c.log(1, "web0"));
}

/// Issue 14: a run records the cluster it talked to (server and CA); a resume that would
/// talk to another cluster is refused in preflight, since what ran there would count as
/// done here.
#[test]
fn a_resume_against_another_cluster_is_refused() {
    let c = Cluster::with_modules(
        "module first {\n    budget \"10m\"\n    install { apply objects \"manifests/00-namespace.yaml\" }\n}\n\
         module second {\n    budget \"10m\"\n    after first\n    install { apply config \"manifests/10-config.yaml\" retries=0 }\n}\n",
    );
    c.api.deny("patch", "configmaps");
    c.apply().code(1);
    let run = &milepost::state::history::run_dirs(&crate::support::rollout_dir(c.dir.path()))[0];
    let records = milepost::state::journal::read(&run.join("journal.jsonl")).unwrap();
    let recorded = match &records[0] {
        milepost::state::format::Record::RunStart { cluster: Some(cluster), .. } => cluster.server.clone(),
        other => panic!("no cluster recorded: {other:?}"),
    };
    assert_eq!(recorded, format!("http://127.0.0.1:{}", c.api.port));
    // The kubeconfig now names another API server, as a rebuilt cluster or another context would.
    let other = FakeApi::start();
    other.kubeconfig(c.dir.path());
    let out = c.milepost(&["resume"]).assert().code(6);
    let text = stderr(&out);
    assert!(text.contains(&format!("were made against cluster {recorded}")), "{text}");
    assert!(other.seen().iter().all(|s| s.method != "PATCH"), "something was applied to the other cluster");
}
