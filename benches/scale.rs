//! Scale: load + validate, and plan, for generated workflows of 1k, 10k and 100k modules
//! with 3 dependencies each. Targets (issues 2 and 3): 10k under 1 s, 100k under 10 s; the
//! whole `plan` command of 100k under 2 s (issue 15; `bench/plan_scale.py` times the command).
//!
//! `cargo bench --bench scale` (release profile). Peak memory: `/usr/bin/time -v milepost validate`
//! on the same generated file (docs/testing.md).
//!
//! `apply_300_objects`: one `apply` step of 300 ConfigMaps against the fake API server of
//! the test suite answering each request 2 ms late, one object at a time vs milepost's
//! concurrency (docs/kubernetes.md).

use std::fmt::Write;
use std::path::PathBuf;

use milepost::plan::{Plan, PlanOptions};
use milepost::spec::{load, LoadOptions};

#[path = "../tests/fake_api.rs"]
#[allow(dead_code)]
mod fake_api;

fn main() {
    divan::main();
}

/// A workflow of `n` modules in one file; module i runs after three earlier modules chosen
/// by a fixed rule, has a budget and buffer, and one templated install and validate step.
pub fn generate(n: usize) -> String {
    let mut text = String::with_capacity(n * 260);
    text.push_str("workflow generated {\n    parallelism 8\n    vars { host \"svc.internal\" }\n}\n");
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    for i in 0..n {
        let _ = write!(text, "module m{i} {{\n    budget \"{}m\" buffer=\"10%\"\n", 10 + i % 50);
        if i > 0 {
            text.push_str("    after");
            for _ in 0..3.min(i) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let back = 1 + (seed as usize) % 50.min(i);
                let _ = write!(text, " m{}", i - back);
            }
            text.push('\n');
        }
        let _ = write!(
            text,
            "    install {{ run deploy \"kubectl apply -f {{{{ dir }}}}/m{i}.yaml\" timeout=\"5m\" retries=1 }}\n    validate {{ http health \"https://{{{{ vars.host }}}}/m{i}/healthz\" expect=200 }}\n}}\n"
        );
    }
    text
}

fn write_workflow(n: usize) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("generated.kdl");
    std::fs::write(&path, generate(n)).expect("write workflow");
    (dir, path)
}

#[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 3, sample_size = 1)]
fn load_and_validate(bencher: divan::Bencher, n: usize) {
    let (_dir, path) = write_workflow(n);
    bencher.bench(|| {
        let loaded = load(&path, &LoadOptions::default()).expect("generated workflow is valid");
        assert_eq!(loaded.workflow.nodes.len(), n);
        loaded
    });
}

#[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 3, sample_size = 1)]
fn plan(bencher: divan::Bencher, n: usize) {
    let (_dir, path) = write_workflow(n);
    let loaded = load(&path, &LoadOptions::default()).expect("generated workflow is valid");
    bencher.bench(|| {
        let plan = Plan::new(&loaded.workflow, &PlanOptions::default());
        assert!(!plan.totals.finish.is_zero());
        plan.totals
    });
}

/// What `plan --format json` does after loading (issue 15 item 10): the plan, the parallel
/// groups (`Plan::overlaps`, quadratic before), the critical flags and the JSON text.
/// Target: the whole `plan` command of 100,000 modules under 2 s.
#[divan::bench(args = [1_000, 10_000, 100_000], sample_count = 3, sample_size = 1)]
fn plan_rendered(bencher: divan::Bencher, n: usize) {
    let (_dir, path) = write_workflow(n);
    let loaded = load(&path, &LoadOptions::default()).expect("generated workflow is valid");
    bencher.bench(|| {
        let plan = Plan::new(&loaded.workflow, &PlanOptions::default());
        milepost::plan::render::json::render(&plan, None, false).len()
    });
}

/// The resume decision over a journal of `n` completed steps (issue 5: 10,000 under 200 ms).
#[divan::bench(args = [10_000], sample_count = 5, sample_size = 1)]
fn resume_decision(bencher: divan::Bencher, n: usize) {
    use milepost::exec::Outcome;
    use milepost::graph::PlanGraph;
    use milepost::state::format::{Record, FORMAT_VERSION};
    use milepost::state::history::History;
    use milepost::state::journal::Journal;
    use milepost::state::{node_hash, resume::decide, step_hash};

    // Modules have two steps each (install and validate), so n steps are n/2 modules.
    let (dir, path) = write_workflow(n / 2);
    let workflow = load(&path, &LoadOptions::default()).expect("generated workflow is valid").workflow;
    let state = milepost::state::place::rollout_dir(&dir.path().join(".milepost"), &workflow.id, "default");
    let run = state.join("runs/20260101T000000000Z-1");
    std::fs::create_dir_all(&run).unwrap();
    let start = Record::RunStart {
        format_version: FORMAT_VERSION,
        run_id: "r".into(),
        workflow: workflow.id.clone(),
        workflow_file: path.display().to_string(),
        definition_hash: String::new(),
        started_at: String::new(),
        pid: 1,
        host: String::new(),
        command: "apply".into(),
        previous_run: None,
        restart: None,
        vars_hash: None,
        context: None,
        environment: None,
        cluster: None,
        source_hash: None,
    };
    let mut journal = Journal::create(&run.join("journal.jsonl"), &start).unwrap();
    for node in &workflow.nodes {
        for (index, (_, step)) in node.steps().enumerate() {
            let record = Record::StepEnd {
                node: node.id.clone(),
                step: step.name.clone(),
                index,
                outcome: Outcome::Passed,
                took_ms: 1,
                step_hash: step_hash(node, step),
                at: String::new(),
                evidence: None,
            };
            journal.append(&record).unwrap();
        }
        let end = Record::NodeEnd {
            node: node.id.clone(),
            outcome: Outcome::Passed,
            took_ms: 2,
            node_hash: node_hash(node),
            at: String::new(),
            source_hash: None,
        };
        journal.append(&end).unwrap();
    }
    journal.sync().unwrap();
    bencher.bench(|| {
        let history = History::load(&state).expect("journal reads");
        let graph = PlanGraph::new(&workflow);
        let decisions = decide(&workflow, &graph, &history);
        assert!(decisions.iter().all(|d| d.status == milepost::plan::NodeStatus::Done));
        decisions.len()
    });
}

/// 300 ConfigMaps through `cluster::apply::apply_with`, `concurrency` in flight, against the
/// fake API server with 2 ms per request. Every sample changes every object (a GET and a
/// writing PATCH each); discovery is cached before the first sample.
#[divan::bench(args = [1, milepost::cluster::apply::APPLY_CONCURRENCY], sample_count = 5, sample_size = 1)]
fn apply_300_objects(bencher: divan::Bencher, concurrency: usize) {
    use milepost::cluster::apply::{apply_with, ApplyOptions};

    let api = fake_api::FakeApi::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = api.kubeconfig(dir.path());
    api.put_applied(
        "namespaces",
        "",
        "kubectl",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
    );
    std::env::set_var("KUBECONFIG", &kubeconfig);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let settings = milepost::cluster::Settings { context: None, namespace: Some("bench".into()) };
    let cluster = runtime.block_on(milepost::cluster::connect(&settings)).expect("the fake answers");
    let documents = |round: usize| {
        let text: Vec<String> = (0..300)
            .map(|i| format!("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-{i:03}\ndata:\n  round: \"{round}\"\n"))
            .collect();
        milepost::cluster::manifest::parse(std::path::Path::new("bench.yaml"), &text.join("---\n"))
            .expect("valid")
    };
    let options = ApplyOptions {
        namespace: None,
        force: false,
        dry_run: false,
        field_manager: "milepost/bench/objects",
    };
    // Discovery and the first creation, outside the measurement; then 2 ms a request.
    runtime
        .block_on(apply_with(&cluster, &documents(0), options, concurrency, &mut |_| {}))
        .expect("applied");
    api.set_latency(std::time::Duration::from_millis(2));
    let round = std::cell::Cell::new(0);
    bencher
        .with_inputs(|| {
            round.set(round.get() + 1);
            documents(round.get())
        })
        .bench_local_values(|docs| {
            let applied = runtime.block_on(apply_with(&cluster, &docs, options, concurrency, &mut |_| {}));
            assert_eq!(applied.expect("applied").len(), 300);
        });
}
