//! A [`Plan`]: the simulated schedule with everything derived from it (phase spans, totals,
//! slack, deadline), built once and handed to the renderers.

use std::time::Duration;

use jiff::civil::DateTime;

use super::simulate::{cpm, simulate, Cpm, Limits, Schedule};
use crate::graph::PlanGraph;
use crate::spec::{NodeId, NodeKind, Workflow};

/// Where a node stands before the run, from the state directory's last run.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "status", content = "reason")]
pub enum NodeStatus {
    /// Not run yet, or never completed.
    #[default]
    Pending,
    /// Completed with an unchanged definition: resume skips it.
    Done,
    /// Will run again, and why (failed, interrupted, definition changed, downstream of one).
    Rerun(String),
}

/// What the caller decides beside the workflow.
#[derive(Debug, Clone, Default)]
pub struct PlanOptions {
    /// Overrides the workflow's `parallelism`.
    pub parallelism: Option<u32>,
    /// Per node; empty means every node is pending.
    pub status: Vec<NodeStatus>,
    /// Per node durations to use instead of budget + buffer (calibration), with a label.
    pub durations: Option<Vec<(Duration, &'static str)>>,
    /// Clock time of the start, for clock columns.
    pub start: Option<DateTime>,
    /// The window the rollout must fit in, from the start.
    pub deadline: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhaseSpan {
    pub start: Duration,
    pub end: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// When the last node ends, with the parallelism limit.
    pub finish: Duration,
    /// Every remaining node one after another.
    pub sequential: Duration,
    pub modules: Duration,
    pub gates: Duration,
    /// Sequential minus finish.
    pub saving: Duration,
}

/// The first node that cannot end inside the window, and by how much the plan overruns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadlineCheck {
    pub window: Duration,
    pub first_late: Option<NodeId>,
    pub overrun: Duration,
}

#[derive(Debug)]
pub struct Plan<'w> {
    pub workflow: &'w Workflow,
    pub graph: PlanGraph,
    pub parallelism: u32,
    /// What each node is scheduled to take (zero for nodes already done).
    pub durations: Vec<Duration>,
    /// Where each duration came from: "budget", "budget+buffer", "history", "done".
    pub sources: Vec<&'static str>,
    pub status: Vec<NodeStatus>,
    pub schedule: Schedule,
    pub cpm: Cpm,
    pub phases: Vec<Option<PhaseSpan>>,
    pub totals: Totals,
    pub start: Option<DateTime>,
    pub deadline: Option<DeadlineCheck>,
}

impl<'w> Plan<'w> {
    pub fn new(workflow: &'w Workflow, options: &PlanOptions) -> Self {
        let graph = PlanGraph::new(workflow);
        let n = workflow.nodes.len();
        let status: Vec<NodeStatus> =
            if options.status.len() == n { options.status.clone() } else { vec![NodeStatus::Pending; n] };
        let (durations, sources): (Vec<Duration>, Vec<&'static str>) = (0..n)
            .map(|i| {
                let node = &workflow.nodes[i];
                if status[i] == NodeStatus::Done {
                    return (Duration::ZERO, "done");
                }
                match &options.durations {
                    Some(d) => d[i],
                    None if node.buffer.is_some() => (node.planned, "budget+buffer"),
                    None => (node.planned, "budget"),
                }
            })
            .unzip();
        let parallelism = options.parallelism.unwrap_or(workflow.parallelism).max(1);
        let schedule = simulate(&graph, &durations, &Limits::of(workflow, parallelism));
        let cpm = cpm(&graph, &durations);
        let phases = workflow
            .phases
            .iter()
            .map(|phase| {
                let members = phase.modules.iter().chain(&phase.gate).map(|&m| schedule.slots[m]);
                members.fold(None, |span: Option<PhaseSpan>, s| {
                    Some(match span {
                        None => PhaseSpan { start: s.start, end: s.end },
                        Some(p) => PhaseSpan { start: p.start.min(s.start), end: p.end.max(s.end) },
                    })
                })
            })
            .collect();
        let sum = |kind: NodeKind| -> Duration {
            (0..n).filter(|&i| workflow.nodes[i].kind == kind).map(|i| durations[i]).sum()
        };
        let (modules, gates) = (sum(NodeKind::Module), sum(NodeKind::Gate));
        let totals = Totals {
            finish: schedule.finish,
            sequential: modules + gates,
            modules,
            gates,
            saving: (modules + gates).saturating_sub(schedule.finish),
        };
        let deadline = options.deadline.map(|window| {
            let first_late = (0..n)
                .filter(|&i| schedule.slots[i].end > window)
                .min_by_key(|&i| (schedule.slots[i].start, schedule.slots[i].end, i));
            DeadlineCheck { window, first_late, overrun: schedule.finish.saturating_sub(window) }
        });
        Self {
            workflow,
            graph,
            parallelism,
            durations,
            sources,
            status,
            schedule,
            cpm,
            phases,
            totals,
            start: options.start,
            deadline,
        }
    }

    pub fn is_critical(&self, node: NodeId) -> bool {
        self.cpm.path.contains(&node)
    }

    /// Clock time at an offset from the start, when a start was given.
    pub fn clock(&self, offset: Duration) -> Option<DateTime> {
        let start = self.start?;
        let span = jiff::SignedDuration::try_from(offset).ok()?;
        start.checked_add(span).ok()
    }

    /// Nodes grouped by phase in definition order (nodes outside phases last), each group
    /// ordered by start.
    pub fn rows(&self) -> Vec<(Option<usize>, Vec<NodeId>)> {
        let mut groups: Vec<(Option<usize>, Vec<NodeId>)> =
            (0..self.workflow.phases.len()).map(|p| (Some(p), Vec::new())).collect();
        let mut loose = Vec::new();
        for &n in self.graph.order() {
            match self.workflow.nodes[n].phase {
                Some(p) => groups[p].1.push(n),
                None => loose.push(n),
            }
        }
        if !loose.is_empty() {
            groups.push((None, loose));
        }
        for (_, nodes) in &mut groups {
            nodes.sort_by_key(|&n| (self.schedule.slots[n].start, self.schedule.slots[n].end, n));
        }
        groups
    }

    /// Sets of nodes that run at the same time, in order of start: what "side by side" means.
    pub fn overlaps(&self) -> Vec<Vec<NodeId>> {
        let slots = &self.schedule.slots;
        let mut by_start: Vec<NodeId> = (0..slots.len()).filter(|&n| !self.durations[n].is_zero()).collect();
        by_start.sort_by_key(|&n| (slots[n].start, n));
        let mut groups: Vec<Vec<NodeId>> = Vec::new();
        for (i, &a) in by_start.iter().enumerate() {
            let together: Vec<NodeId> = by_start[i + 1..]
                .iter()
                .copied()
                .filter(|&b| slots[b].start < slots[a].end && slots[a].start < slots[b].end)
                .collect();
            if together.is_empty() || groups.iter().any(|g| g.contains(&a)) {
                continue;
            }
            let mut group = vec![a];
            group.extend(together);
            groups.push(group);
        }
        groups
    }
}
