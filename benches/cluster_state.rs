//! The cluster state backend against the local journal (issue 17; docs/state.md §14): the
//! same 1,000-step DAG as bench/compare.py (each step after up to 3 random steps among the
//! 50 before it, `true` as the command, parallelism 2), rolled out by the milepost binary
//! with its state in a local folder and with `state "kubernetes"` against the fake API
//! server of the test suite answering every request 2 ms late (a realistic in-cluster round
//! trip). Rounds alternate the two; medians and the ratio are printed. Target: ≤ 1.5×.
//!
//! `cargo bench --bench cluster_state -- [--rounds 5] [--steps 1000] [--milepost target/release/milepost]`
//!
//! The fake runs in this process on its own threads; machines here are shared and noisy, so
//! quote medians of 5 rounds or more, never one run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

#[path = "../tests/fake_api.rs"]
#[allow(dead_code)]
mod fake_api;

/// Each step's dependencies: up to 3 of the 50 before it, from a fixed seed.
fn dag(steps: usize, seed: u64) -> Vec<Vec<usize>> {
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let mut next = move |below: usize| {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as usize) % below.max(1)
    };
    (0..steps)
        .map(|i| {
            let window: Vec<usize> = (i.saturating_sub(50)..i).collect();
            let wanted = next(4).min(window.len());
            let mut deps: Vec<usize> = Vec::new();
            while deps.len() < wanted {
                let d = window[next(window.len())];
                if !deps.contains(&d) {
                    deps.push(d);
                }
            }
            deps.sort_unstable();
            deps
        })
        .collect()
}

fn workflow(deps: &[Vec<usize>], state: &str) -> String {
    let mut text = format!("workflow bench {{\n    parallelism 2\n    {state}\n}}\n");
    for (i, d) in deps.iter().enumerate() {
        let after = match d.is_empty() {
            true => String::new(),
            false => format!("after {}; ", d.iter().map(|j| format!("s{j}")).collect::<Vec<_>>().join(" ")),
        };
        text.push_str(&format!("module s{i} {{ budget \"1m\"; {after}install {{ run step \"true\" }} }}\n"));
    }
    text
}

/// One rollout from scratch: wall time.
fn roll_out(milepost: &Path, dir: &Path, kubeconfig: Option<&Path>) -> Duration {
    let _ = std::fs::remove_dir_all(dir.join(".milepost"));
    let mut cmd = Command::new(milepost);
    cmd.arg("apply").arg(dir.join("w.kdl")).args(["--progress", "plain"]).env("NO_COLOR", "1");
    if let Some(k) = kubeconfig {
        cmd.env("KUBECONFIG", k);
    }
    let start = Instant::now();
    let out = cmd.output().expect("milepost runs");
    let took = start.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    took
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |name: &str| args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned();
    let rounds: usize = value("--rounds").and_then(|v| v.parse().ok()).unwrap_or(5);
    let steps: usize = value("--steps").and_then(|v| v.parse().ok()).unwrap_or(1000);
    let milepost = PathBuf::from(value("--milepost").unwrap_or_else(|| "target/release/milepost".into()));
    assert!(milepost.exists(), "{} is not built: cargo build --release", milepost.display());

    let api = fake_api::FakeApi::start();
    api.put(
        "namespaces",
        "",
        serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "bench"}}),
    );
    api.set_latency(Duration::from_millis(2));
    let deps = dag(steps, 7);
    let local = tempfile::tempdir().unwrap();
    let cluster = tempfile::tempdir().unwrap();
    std::fs::write(local.path().join("w.kdl"), workflow(&deps, "")).unwrap();
    let kubeconfig = api.kubeconfig(cluster.path());
    let (mut locals, mut clusters) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        // A fresh name per round: every round starts with no state in the cluster either.
        let state = format!(r#"state "kubernetes" namespace="bench" name="r{round}""#);
        std::fs::write(cluster.path().join("w.kdl"), workflow(&deps, &state)).unwrap();
        locals.push(roll_out(&milepost, local.path(), None));
        clusters.push(roll_out(&milepost, cluster.path(), Some(&kubeconfig)));
        eprintln!("round {round}: local {:?}, cluster {:?}", locals[round], clusters[round]);
    }
    let requests = api.seen().len() / rounds;
    let (l, c) = (median(locals), median(clusters));
    println!("{steps}-step DAG, parallelism 2, {rounds} rounds, API latency 2 ms");
    println!("local journal     median {:>8.3}s", l.as_secs_f64());
    println!("cluster (fake)    median {:>8.3}s  ({requests} requests per rollout)", c.as_secs_f64());
    println!("ratio cluster/local: {:.2}x (target <= 1.5x)", c.as_secs_f64() / l.as_secs_f64());
}
