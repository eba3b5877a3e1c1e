//! Rollback: undoing modules by their `rollback` steps, dependents first. A rollback runs as
//! a rollout of its own ([`undo_workflow`]): each node's `rollback` steps are its install
//! steps, and it waits for the rollbacks of every node built on it. So it is journaled,
//! shown and resumed like any rollout (docs/state.md §13).

use std::collections::HashMap;

use crate::graph::PlanGraph;
use crate::spec::{Node, NodeId, NodeKind, OnFailure, Phase, Step, Workflow};

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
    let undo_nodes = nodes
        .iter()
        .map(|&n| {
            let mut node = workflow.nodes[n].clone();
            let steps = std::mem::take(&mut node.rollback);
            // Undo what was built on it first.
            let deps = nodes.iter().filter(|&&m| m != n && graph.has_path(n, m)).map(|m| index[m]).collect();
            let budget = node.rollback_budget;
            let mut node = run_node(node, steps, deps, budget);
            node.success_probability = 1.0;
            node
        })
        .collect();
    let phases: Vec<Phase> = workflow
        .phases
        .iter()
        .map(|p| Phase {
            id: p.id.clone(),
            title: p.title.clone(),
            modules: p.modules.iter().filter_map(|m| index.get(m).copied()).collect(),
            gate: p.gate.and_then(|g| index.get(&g).copied()),
        })
        .collect();
    let mut undo = derived(workflow, undo_nodes, phases);
    for (i, node) in undo.nodes.iter_mut().enumerate() {
        node.phase =
            node.phase.filter(|&p| undo.phases[p].modules.contains(&i) || undo.phases[p].gate == Some(i));
    }
    undo
}

/// The run of the `on-failure { … }` handlers of `nodes` (failed nodes that have one): each
/// node's handler steps as its install steps, all independent.
pub fn handlers_workflow(workflow: &Workflow, nodes: &[NodeId]) -> Workflow {
    let handlers = nodes
        .iter()
        .map(|&n| {
            let mut node = workflow.nodes[n].clone();
            let steps = std::mem::take(&mut node.handler);
            let budget = node.budget;
            let mut node = run_node(node, steps, Vec::new(), budget);
            node.phase = None;
            node
        })
        .collect();
    derived(workflow, handlers, Vec::new())
}

/// The run of the workflow's `finally` steps, as one node named `finally`; `None` without
/// any.
pub fn finally_workflow(workflow: &Workflow) -> Option<Workflow> {
    if workflow.finally.is_empty() {
        return None;
    }
    let mut node = workflow.nodes.first()?.clone();
    node.id = "finally".into();
    node.number = None;
    node.title = "finally".into();
    node.description = None;
    node.kind = NodeKind::Module;
    node.phase = None;
    node.dir = workflow.dir.clone();
    let budget =
        workflow.finally.iter().map(|s| s.timeout.unwrap_or(std::time::Duration::from_secs(600))).sum();
    let node = run_node(node, workflow.finally.clone(), Vec::new(), budget);
    Some(derived(workflow, vec![node], Vec::new()))
}

/// `node` made to run `steps` as its install steps, and nothing else, after `deps`, planned at
/// `budget`.
fn run_node(mut node: Node, steps: Vec<Step>, deps: Vec<NodeId>, budget: std::time::Duration) -> Node {
    node.install = steps;
    node.validate = Vec::new();
    // An undo, a handler or `finally` goes on whatever anyone says: the rollout they serve
    // was approved, or stopped.
    node.approval = None;
    node.deps = deps;
    node.uses = Vec::new();
    node.budget = budget;
    node.buffer = None;
    node.planned = budget;
    node
}

/// A workflow of `nodes` and `phases` with everything else of `workflow`: its values, secrets,
/// shell and environment. Its metrics are the workflow's own business, not the run's.
fn derived(workflow: &Workflow, nodes: Vec<Node>, phases: Vec<Phase>) -> Workflow {
    Workflow {
        id: workflow.id.clone(),
        title: workflow.title.clone(),
        file: workflow.file.clone(),
        dir: workflow.dir.clone(),
        parallelism: workflow.parallelism,
        shell: workflow.shell.clone(),
        on_overrun: workflow.on_overrun,
        on_failure: workflow.on_failure,
        finally: Vec::new(),
        notify: workflow.notify.clone(),
        vars: workflow.vars.clone(),
        var_overrides: workflow.var_overrides.clone(),
        secrets: workflow.secrets.clone(),
        resources: workflow.resources.clone(),
        phases,
        nodes,
        metrics: Vec::new(),
        kubernetes: workflow.kubernetes.clone(),
        environments: workflow.environments.clone(),
        environment: workflow.environment,
        state: workflow.state.clone(),
    }
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
