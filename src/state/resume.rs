//! The resume decision, shared by `resume` (what it runs), `plan` (what it shows), `status`
//! and reports (what they call done). A node is done when its current attempt passed with
//! the steps it has today, everything it depends on is done, and it was built on the runs
//! of those dependencies that are current: a dependency that ran again since invalidates
//! it. Otherwise it runs again, keeping the leading steps its current attempt passed
//! unchanged. docs/state.md §8 states the rules.

use super::history::History;
use super::step_hash;
use crate::graph::PlanGraph;
use crate::plan::NodeStatus;
use crate::spec::Workflow;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub status: NodeStatus,
    /// Leading steps that completed with an unchanged definition and are not run again.
    pub skip_steps: usize,
}

pub fn decide(workflow: &Workflow, graph: &PlanGraph, history: &History) -> Vec<Decision> {
    let n = workflow.nodes.len();
    let mut decisions = vec![Decision { status: NodeStatus::Pending, skip_steps: 0 }; n];
    let whole = |status| Decision { status, skip_steps: 0 };
    for &i in graph.order() {
        let node = &workflow.nodes[i];
        // Skipped by a condition decided at load: it never runs, so it is never done.
        if node.skipped_at_load() {
            continue;
        }
        let Some(attempt) = history.attempts.get(&node.id) else { continue };
        let ended = history.nodes.get(&node.id);
        if !attempt.started && ended.is_none() {
            continue; // selected by an apply that did not get to it: pending
        }
        // A dependency that runs again only to check (its install steps kept: a failed
        // `verify`, a failed validation) has not changed what this node was built on.
        let intact = |d: usize| {
            let dep = &decisions[d];
            dep.status == NodeStatus::Done
                || (dep.skip_steps >= workflow.nodes[d].install.len()
                    && history.attempts.get(&workflow.nodes[d].id).is_some_and(|a| a.completed.is_some()))
        };
        // Nothing was built by a node its `when` skips: a node builds on what that one follows.
        let deps = deps_through_skipped(workflow, graph, i);
        if let Some(&d) = deps.iter().find(|&&d| !intact(d)) {
            decisions[i] = whole(NodeStatus::Rerun(format!("`{}` runs again", workflow.nodes[d].id)));
            continue;
        }
        // Built on a run of a dependency that has built again since.
        if let Some(&d) = deps.iter().find(|&&d| history.rebuilt_since(&workflow.nodes[d].id, attempt.began))
        {
            let why = format!("`{}` ran again after it was built on", workflow.nodes[d].id);
            decisions[i] = whole(NodeStatus::Rerun(why));
            continue;
        }
        let kept = kept_steps(workflow, i, history);
        let steps = node.steps().count();
        let unchanged = kept == steps;
        decisions[i] = match ended {
            Some(r)
                if r.outcome.passed() && (unchanged || history.skipped_by_condition.contains(&node.id)) =>
            {
                whole(NodeStatus::Done)
            }
            Some(r) if r.outcome.passed() => Decision {
                status: NodeStatus::Rerun("definition changed since it completed".into()),
                skip_steps: kept,
            },
            // Rejected: its checks run again from the first, and it asks anew (what was
            // rejected is what they showed then).
            Some(r) if history.rejected.contains(&node.id) => Decision {
                status: NodeStatus::Rerun(format!("failed: {}", r.outcome.reason().unwrap_or("unknown"))),
                skip_steps: 0,
            },
            // Every step of today's definition passed (the one that failed is gone): the node
            // is recorded again without running a step.
            Some(r) => Decision {
                status: NodeStatus::Rerun(format!("failed: {}", r.outcome.reason().unwrap_or("unknown"))),
                skip_steps: kept,
            },
            // Left for a person's decision: it goes on from where it asked.
            None if history.approvals.contains_key(&node.id) => {
                Decision { status: NodeStatus::Rerun("waiting for approval".into()), skip_steps: kept }
            }
            None => Decision { status: NodeStatus::Rerun("interrupted in flight".into()), skip_steps: kept },
        };
    }
    decisions
}

/// The dependencies of `i`, with each one skipped at load by its `when` replaced by its own.
fn deps_through_skipped(workflow: &Workflow, graph: &PlanGraph, i: usize) -> Vec<usize> {
    let mut out = Vec::new();
    let mut stack: Vec<usize> = graph.deps(i).collect();
    while let Some(d) = stack.pop() {
        if workflow.nodes[d].skipped_at_load() {
            stack.extend(graph.deps(d));
        } else if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// Leading steps whose pass in the node's current attempt has today's definition.
fn kept_steps(workflow: &Workflow, i: usize, history: &History) -> usize {
    let node = &workflow.nodes[i];
    node.steps()
        .enumerate()
        .take_while(|(index, (_, step))| {
            history.passed_step(&node.id, *index) == Some(step_hash(node, step).as_str())
        })
        .count()
}
