//! The definitions shipped in the repository stay valid.

use std::path::Path;

use milepost::graph::PlanGraph;
use milepost::spec::{load, LoadOptions, NodeKind};

use crate::support::repo;

fn phase2() -> milepost::spec::Workflow {
    let path = repo().join("workflows/phase2.kdl");
    load(&path, &LoadOptions { env: Some(Default::default()), ..LoadOptions::default() })
        .unwrap_or_else(|e| panic!("{}", milepost::cli::render_spec_errors(&e, false, 100)))
        .workflow
}

#[test]
fn every_workflow_in_the_repository_validates() {
    for entry in glob::glob(&format!("{}/workflows/*.kdl", repo().display())).expect("pattern") {
        let path = entry.expect("readable");
        if let Err(errors) = load(Path::new(&path), &LoadOptions::default()) {
            panic!("{}: {}", path.display(), milepost::cli::render_spec_errors(&errors, false, 100));
        }
    }
}

#[test]
fn phase2_matches_the_plan_review() {
    let w = phase2();
    let modules: Vec<(u32, &str, u64, u64, f64)> = w
        .modules()
        .map(|m| {
            (
                m.number.unwrap(),
                m.id.as_str(),
                m.budget.as_secs() / 60,
                m.planned.as_secs() / 60,
                m.success_probability,
            )
        })
        .collect();
    let mut sorted = modules.clone();
    sorted.sort_by_key(|m| m.0);
    let expected = [
        (7, 270, 324, 0.94),
        (8, 240, 240, 0.96),
        (9, 270, 324, 0.92),
        (10, 300, 300, 0.97),
        (11, 240, 240, 0.95),
        (12, 240, 288, 0.93),
    ];
    assert_eq!(sorted.len(), 6);
    for ((n, _, budget, planned, p), (en, eb, ep, epr)) in sorted.iter().zip(expected) {
        assert_eq!((*n, *budget, *planned), (en, eb, ep));
        assert!((p - epr).abs() < 1e-9);
    }
    assert_eq!(w.gates().count(), 3);
    assert_eq!(w.phases.len(), 3);
    assert!(w.gates().all(|g| g.kind == NodeKind::Gate));
}

#[test]
fn modules_8_and_11_are_independent() {
    let w = phase2();
    let g = PlanGraph::new(&w);
    let by_number = |n: u32| w.nodes.iter().position(|m| m.number == Some(n)).unwrap();
    let (eight, eleven) = (by_number(8), by_number(11));
    assert!(!g.has_path(eight, eleven) && !g.has_path(eleven, eight));
    assert!(g.has_path(by_number(7), eleven));
}

/// Issue 15 item 7: preflight reads every `run` command of the shipped rollout as the shell
/// would: no "cannot tell which program" noise, and only programs that are really run.
#[test]
fn preflight_reads_every_shipped_run_command() {
    use milepost::exec::preflight::{programs, Program};
    use milepost::spec::StepKind;

    let w = phase2();
    let mut found = std::collections::BTreeSet::new();
    let mut commands = 0;
    for node in &w.nodes {
        for (_, step) in node.steps() {
            let StepKind::Run { command, .. } = &step.kind else { continue };
            commands += 1;
            if step.name == "vault-unsealed-ha" {
                assert_eq!(programs(&command.exec)[0], Program::Named("vault".into()), "{:?}", command.exec);
            }
            for program in programs(&command.exec) {
                match program {
                    Program::Named(name) => {
                        found.insert(name);
                    }
                    Program::Builtin => {}
                    Program::Undecidable(word) => {
                        panic!("{} › {}: cannot tell `{word}` in {:?}", node.id, step.name, command.exec)
                    }
                }
            }
        }
    }
    assert!(commands > 50, "only {commands} run steps found");
    // `curl` runs inside a pod (`kubectl exec … -- curl`), `velero` is a chart: neither is a
    // program of these steps; the drills' scripts run through `bash`.
    let expected = [
        "argocd", "awk", "base64", "bash", "grep", "helm", "htpasswd", "istioctl", "jq", "kubectl", "sed",
        "sort", "tr", "trivy", "vault", "wc", "xargs",
    ];
    let found: Vec<&str> = found.iter().map(String::as_str).collect();
    assert_eq!(found, expected, "programs of the shipped run steps");
}
