//! A [`Plan`]: the simulated schedule with everything derived from it (phase spans, totals,
//! slack, deadline), built once and handed to the renderers.

use std::time::Duration;

use jiff::civil::DateTime;

use super::simulate::{cpm, simulate, Cpm, Limits, Schedule, Slot};
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
    /// Per node: on `cpm.path` (a lookup per row, not a search of the path).
    critical: Vec<bool>,
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
                // `when` decided false at load: it will not run, and takes no time.
                if node.skipped_at_load() {
                    return (Duration::ZERO, "skipped");
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
        let mut critical = vec![false; n];
        for &node in &cpm.path {
            critical[node] = true;
        }
        Self {
            critical,
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
        self.critical[node]
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
        overlaps(&self.schedule.slots, &self.durations)
    }
}

/// [`Plan::overlaps`]: each node that takes time and is not yet in a group, with every node
/// starting at or after it (by start, then index) while it runs; nodes that overlap nothing
/// later are left out. One sort, then a walk that reads only each group's own members:
/// O(n log n + output) where the former scan of every later node was O(n²).
fn overlaps(slots: &[Slot], durations: &[Duration]) -> Vec<Vec<NodeId>> {
    let mut by_start: Vec<NodeId> = (0..slots.len()).filter(|&n| !durations[n].is_zero()).collect();
    by_start.sort_by_key(|&n| (slots[n].start, n));
    let mut grouped = vec![false; slots.len()];
    let mut groups: Vec<Vec<NodeId>> = Vec::new();
    for (i, &a) in by_start.iter().enumerate() {
        if grouped[a] {
            continue;
        }
        let later = &by_start[i + 1..];
        // Sorted by start: the nodes starting before `a` ends are a prefix of the rest.
        let starts_inside = later.partition_point(|&b| slots[b].start < slots[a].end);
        let mut group = vec![a];
        group.extend(later[..starts_inside].iter().copied().filter(|&b| slots[a].start < slots[b].end));
        if group.len() == 1 {
            continue;
        }
        for &n in &group {
            grouped[n] = true;
        }
        groups.push(group);
    }
    groups
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use proptest::prelude::*;

    use super::{overlaps, Slot};
    use crate::spec::NodeId;

    /// The definition `overlaps` had before it was made linear (issue 15 item 10), kept as
    /// the oracle: for every node, a scan of every later node, membership by search.
    fn overlaps_by_definition(slots: &[Slot], durations: &[Duration]) -> Vec<Vec<NodeId>> {
        let mut by_start: Vec<NodeId> = (0..slots.len()).filter(|&n| !durations[n].is_zero()).collect();
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

    /// Slots on a coarse clock so that equal starts, touching ends and zero durations are
    /// common; the end is drawn on its own, so it may even precede the start.
    fn schedule() -> impl Strategy<Value = (Vec<Slot>, Vec<Duration>)> {
        let slot = (0u64..30, 0u64..30, 0u64..4).prop_map(|(start, end, zero)| {
            let slot = Slot { start: Duration::from_secs(start), end: Duration::from_secs(end), lane: 0 };
            (
                slot,
                if zero == 0 { Duration::ZERO } else { Duration::from_secs(end.saturating_sub(start) + 1) },
            )
        });
        proptest::collection::vec(slot, 0..60).prop_map(|v| v.into_iter().unzip())
    }

    proptest! {
        #[test]
        fn overlaps_equals_the_former_definition((slots, durations) in schedule()) {
            prop_assert_eq!(overlaps(&slots, &durations), overlaps_by_definition(&slots, &durations));
        }

        #[test]
        fn overlaps_equals_the_former_definition_on_simulated_schedules(
            spans in proptest::collection::vec((0u64..50, 1u64..20), 0..80),
        ) {
            // Well-formed schedules: end = start + duration, as `simulate` makes them.
            let slots: Vec<Slot> = spans
                .iter()
                .map(|&(s, d)| Slot { start: Duration::from_secs(s), end: Duration::from_secs(s + d), lane: 0 })
                .collect();
            let durations: Vec<Duration> = spans.iter().map(|&(_, d)| Duration::from_secs(d)).collect();
            prop_assert_eq!(overlaps(&slots, &durations), overlaps_by_definition(&slots, &durations));
        }
    }

    /// 200,000 nodes in 8 lanes of staggered slots: the former scan of every later node took
    /// minutes here (2·10¹⁰ comparisons); the sweep takes milliseconds even in the dev profile.
    #[test]
    fn overlaps_of_200_000_nodes_is_fast() {
        let n = 200_000;
        let slots: Vec<Slot> = (0..n as u64)
            .map(|i| {
                let (lane, k) = (i % 8, i / 8);
                let start = Duration::from_secs(k * 600 + lane * 60);
                Slot { start, end: start + Duration::from_secs(600), lane: lane as u32 }
            })
            .collect();
        let durations: Vec<Duration> = slots.iter().map(|s| s.end - s.start).collect();
        let began = Instant::now();
        let groups = overlaps(&slots, &durations);
        let took = began.elapsed();
        assert!(!groups.is_empty());
        assert!(took < Duration::from_secs(5), "overlaps of {n} nodes took {took:?}");
    }
}
