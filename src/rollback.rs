//! Rollback: undoing modules by their `rollback` steps, dependents first. A rollback runs as
//! a rollout of its own ([`undo_workflow`]): each node's `rollback` steps are its install
//! steps, and it waits for the rollbacks of every node built on it. So it is journaled,
//! shown and resumed like any rollout (docs/state.md §13).

use std::collections::HashMap;

use crate::graph::PlanGraph;
use crate::spec::{NodeId, NodeKind, OnFailure, Phase, Workflow};

/// What a failure with `on-failure "rollback"` undoes: a failed module, itself; a failed
/// gate, the modules of its phase that ran in this rollout. Only nodes with rollback steps;
/// in plan order (the rollout reverses it).
pub fn after_failure(workflow: &Workflow, failed: &[NodeId], ran: &dyn Fn(NodeId) -> bool) -> Vec<NodeId> {
    let mut undo = vec![false; workflow.nodes.len()];
    for &f in failed {
        let node = &workflow.nodes[f];
        if node.on_failure != OnFailure::Rollback {
            continue;
        }
        undo[f] = true;
        if node.kind == NodeKind::Gate {
            if let Some(phase) = workflow.phase_of(f) {
                for &m in &phase.modules {
                    if ran(m) {
                        undo[m] = true;
                    }
                }
            }
        }
    }
    (0..workflow.nodes.len()).filter(|&n| undo[n] && !workflow.nodes[n].rollback.is_empty()).collect()
}

/// The rollout that undoes `nodes` (indexes into `workflow`): their rollback steps as install
/// steps, no validate steps, planned at their rollback budgets, each after the rollbacks of
/// the nodes in `nodes` that are downstream of it. Node ids are kept: the journal of a
/// rollback names the nodes it undoes.
pub fn undo_workflow(workflow: &Workflow, nodes: &[NodeId]) -> Workflow {
    let graph = PlanGraph::new(workflow);
    let index: HashMap<NodeId, usize> = nodes.iter().enumerate().map(|(i, &n)| (n, i)).collect();
    let mut undo = workflow.clone();
    undo.nodes = nodes
        .iter()
        .map(|&n| {
            let mut node = workflow.nodes[n].clone();
            node.install = std::mem::take(&mut node.rollback);
            node.validate = Vec::new();
            node.budget = node.rollback_budget;
            node.buffer = None;
            node.planned = node.rollback_budget;
            node.success_probability = 1.0;
            node.uses = Vec::new();
            // Undo what was built on it first.
            node.deps = nodes.iter().filter(|&&m| m != n && graph.has_path(n, m)).map(|m| index[m]).collect();
            node
        })
        .collect();
    undo.phases = workflow
        .phases
        .iter()
        .map(|p| Phase {
            id: p.id.clone(),
            title: p.title.clone(),
            modules: p.modules.iter().filter_map(|m| index.get(m).copied()).collect(),
            gate: p.gate.and_then(|g| index.get(&g).copied()),
        })
        .collect();
    for (i, node) in undo.nodes.iter_mut().enumerate() {
        node.phase =
            node.phase.filter(|&p| undo.phases[p].modules.contains(&i) || undo.phases[p].gate == Some(i));
    }
    undo.metrics = Vec::new();
    undo
}

/// The run of the `on-failure { … }` handlers of `nodes` (failed nodes that have one): each
/// node's handler steps as its install steps, all independent.
pub fn handlers_workflow(workflow: &Workflow, nodes: &[NodeId]) -> Workflow {
    let mut run = workflow.clone();
    run.nodes = nodes
        .iter()
        .map(|&n| {
            let mut node = workflow.nodes[n].clone();
            node.install = std::mem::take(&mut node.handler);
            node.validate = Vec::new();
            node.deps = Vec::new();
            node.uses = Vec::new();
            node.phase = None;
            node.buffer = None;
            node.planned = node.budget;
            node
        })
        .collect();
    run.phases = Vec::new();
    run.metrics = Vec::new();
    run
}

/// The run of the workflow's `finally` steps, as one node named `finally`; `None` without
/// any.
pub fn finally_workflow(workflow: &Workflow) -> Option<Workflow> {
    if workflow.finally.is_empty() {
        return None;
    }
    let mut run = workflow.clone();
    let mut node = workflow.nodes.first()?.clone();
    node.id = "finally".into();
    node.number = None;
    node.title = "finally".into();
    node.description = None;
    node.kind = NodeKind::Module;
    node.install = workflow.finally.clone();
    node.validate = Vec::new();
    node.deps = Vec::new();
    node.uses = Vec::new();
    node.phase = None;
    node.buffer = None;
    node.dir = workflow.dir.clone();
    node.budget = node.install.iter().map(|s| s.timeout.unwrap_or(std::time::Duration::from_secs(600))).sum();
    node.planned = node.budget;
    run.nodes = vec![node];
    run.phases = Vec::new();
    run.metrics = Vec::new();
    Some(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rollback_undoes_dependents_first_and_touches_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let w = dir.path().join("w.kdl");
        std::fs::write(
            &w,
            r#"workflow w { phase "A" { modules a b; gate g }; phase "B" { modules c d; gate h } }
module a { budget "1m"; install { run s "true" }; rollback { run u "true" } }
module b { budget "1m"; after a; install { run s "true" }; rollback budget="2m" { run u "true" } }
module c { budget "1m"; after g; install { run s "true" }; rollback { run u "true" } }
module d { budget "1m"; after c; install { run s "true" }; rollback { run u "true" } }
gate g { budget "1m"; validate { run v "true" } }
gate h { budget "1m"; on-failure "rollback"; validate { run v "true" } }
"#,
        )
        .unwrap();
        let workflow = crate::spec::load(&w, &Default::default()).unwrap().workflow;
        let id = |n: &str| workflow.node(n).unwrap();
        // The gate of B failed: B's modules that ran, nothing of A.
        let undo = after_failure(&workflow, &[id("h")], &|n| n != id("a"));
        let ids: Vec<&str> = undo.iter().map(|&n| workflow.nodes[n].id.as_str()).collect();
        assert_eq!(ids, ["c", "d"]);
        let rollout = undo_workflow(&workflow, &[id("a"), id("b"), id("c"), id("d")]);
        let deps = |n: &str| -> Vec<&str> {
            let node = rollout.nodes.iter().find(|x| x.id == n).unwrap();
            node.deps.iter().map(|&d| rollout.nodes[d].id.as_str()).collect()
        };
        assert_eq!(deps("d"), Vec::<&str>::new());
        assert_eq!(deps("c"), ["d"]);
        assert_eq!(deps("b"), ["c", "d"]);
        assert_eq!(deps("a"), ["b", "c", "d"]);
        let b = rollout.nodes.iter().find(|x| x.id == "b").unwrap();
        assert_eq!((b.install[0].name.as_str(), b.validate.len(), b.planned.as_secs()), ("u", 0, 120));
        // A gate without `on-failure "rollback"` undoes nothing.
        assert!(after_failure(&workflow, &[id("g")], &|_| true).is_empty());
    }
}
