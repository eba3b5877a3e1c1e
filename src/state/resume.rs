//! The resume decision, shared by `resume` (what it runs) and `plan` (what it shows): a node
//! is done when its last end passed with the definition it has now and everything it waits
//! for is done too; otherwise it runs again, skipping leading steps that passed unchanged.

use super::history::History;
use super::{node_hash, step_hash};
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
    for &i in graph.order() {
        let node = &workflow.nodes[i];
        let upstream_rerun = graph.deps(i).find(|&d| decisions[d].status != NodeStatus::Done);
        let last = history.nodes.get(&node.id);
        let unchanged = last.is_some_and(|r| r.node_hash == node_hash(node));
        decisions[i] = match (last, upstream_rerun) {
            (None, None) if history.in_flight.contains(&node.id) => Decision {
                status: NodeStatus::Rerun("interrupted in flight".into()),
                skip_steps: skipped_steps(workflow, i, history),
            },
            (None, _) => Decision { status: NodeStatus::Pending, skip_steps: 0 },
            (Some(r), None) if r.outcome.passed() && unchanged => {
                Decision { status: NodeStatus::Done, skip_steps: 0 }
            }
            (Some(r), None) if r.outcome.passed() => Decision {
                status: NodeStatus::Rerun("definition changed since it completed".into()),
                skip_steps: skipped_steps(workflow, i, history),
            },
            (Some(r), None) => Decision {
                status: NodeStatus::Rerun(format!("failed: {}", r.outcome.reason().unwrap_or("unknown"))),
                skip_steps: skipped_steps(workflow, i, history),
            },
            (Some(_), Some(d)) => Decision {
                status: NodeStatus::Rerun(format!("`{}` runs again", workflow.nodes[d].id)),
                skip_steps: 0,
            },
        };
    }
    decisions
}

/// Leading steps whose last run passed with today's definition.
fn skipped_steps(workflow: &Workflow, i: usize, history: &History) -> usize {
    let node = &workflow.nodes[i];
    node.steps()
        .enumerate()
        .take_while(|(index, (_, step))| {
            history.steps.get(&(node.id.clone(), *index)).is_some_and(|h| *h == step_hash(node, step))
        })
        .count()
}
