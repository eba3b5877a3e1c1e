//! Schedule simulation: list scheduling over the DAG under a parallelism limit and resource
//! limits, ready nodes ordered by the longest remaining path. Pure and deterministic: the
//! same durations give the same schedule, so `plan`, `apply` and Monte Carlo share it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Duration;

use crate::graph::PlanGraph;
use crate::spec::{NodeId, Workflow};

/// When one node runs in the simulated schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Slot {
    pub start: Duration,
    pub end: Duration,
    /// Which of the `parallelism` lanes runs it (for drawing and for the JSON).
    pub lane: u32,
}

/// A simulated run of the whole DAG.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub slots: Vec<Slot>,
    pub finish: Duration,
}

/// What limits concurrency: the global slot count, and per-resource limits.
#[derive(Debug, Clone)]
pub struct Limits {
    pub parallelism: u32,
    /// Limit per resource, indexed like [`Workflow::resources`].
    pub resource_limits: Vec<u32>,
    /// Resources each node holds while it runs.
    pub uses: Vec<Vec<usize>>,
}

impl Limits {
    pub fn of(workflow: &Workflow, parallelism: u32) -> Self {
        Self {
            parallelism: parallelism.max(1),
            resource_limits: workflow.resources.iter().map(|r| r.limit).collect(),
            uses: workflow.nodes.iter().map(|n| n.uses.clone()).collect(),
        }
    }

    /// Only the global limit; for graphs without a workflow (tests, benchmarks).
    pub fn parallelism(parallelism: u32, nodes: usize) -> Self {
        Self { parallelism: parallelism.max(1), resource_limits: Vec::new(), uses: vec![Vec::new(); nodes] }
    }
}

/// Where a rollout stands when its schedule is simulated again mid-run: `apply`'s live
/// forecast is this same simulation, re-run with what has finished and what runs.
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress<'a> {
    /// Nodes that ended (or will not run), indexed by node; empty: none.
    pub finished: &'a [bool],
    /// Nodes running now: they hold their lanes from the start, for their `durations`
    /// (what is left of them).
    pub running: &'a [NodeId],
}

/// Simulates the run: a node starts when its dependencies have ended and a lane (and each
/// resource it uses) is free; among ready nodes the one with the longest remaining path goes
/// first, ties to the lower node index.
pub fn simulate(graph: &PlanGraph, durations: &[Duration], limits: &Limits) -> Schedule {
    simulate_from(graph, durations, limits, Progress::default())
}

/// [`simulate`] from a point in a run: finished nodes take no time, running ones start at 0.
pub fn simulate_from(
    graph: &PlanGraph,
    durations: &[Duration],
    limits: &Limits,
    progress: Progress,
) -> Schedule {
    let n = graph.len();
    let finished = |i: usize| progress.finished.get(i).copied().unwrap_or(false);
    let tails = graph.tails(|i| durations[i]);
    let mut waiting: Vec<usize> = (0..n).map(|i| graph.deps(i).filter(|&d| !finished(d)).count()).collect();
    let mut ready: BinaryHeap<(Duration, Reverse<NodeId>)> = (0..n)
        .filter(|&i| waiting[i] == 0 && !finished(i) && !progress.running.contains(&i))
        .map(|i| (tails[i], Reverse(i)))
        .collect();
    // Ends in time order, then node order, so simultaneous ends release deterministically.
    let mut running: BinaryHeap<Reverse<(Duration, NodeId)>> = BinaryHeap::new();
    let mut free_lanes: BinaryHeap<Reverse<u32>> = (0..limits.parallelism).map(Reverse).collect();
    let mut in_use = vec![0u32; limits.resource_limits.len()];
    let mut slots = vec![Slot::default(); n];
    let mut blocked: Vec<(Duration, Reverse<NodeId>)> = Vec::new();
    let mut now = Duration::ZERO;
    let mut done = (0..n).filter(|&i| finished(i)).count();
    for &node in progress.running {
        // A run never has more running than lanes; if it did, the extra ones share lane 0.
        let Reverse(lane) = free_lanes.pop().unwrap_or(Reverse(0));
        for &r in &limits.uses[node] {
            in_use[r] += 1;
        }
        slots[node] = Slot { start: now, end: durations[node], lane };
        running.push(Reverse((durations[node], node)));
    }
    while done < n {
        while !free_lanes.is_empty() {
            let Some(candidate) = ready.pop() else { break };
            let node = candidate.1 .0;
            let fits = limits.uses[node].iter().all(|&r| in_use[r] < limits.resource_limits[r]);
            if !fits {
                blocked.push(candidate);
                continue;
            }
            for &r in &limits.uses[node] {
                in_use[r] += 1;
            }
            let Reverse(lane) = free_lanes.pop().expect("loop runs while a lane is free");
            let end = now + durations[node];
            slots[node] = Slot { start: now, end, lane };
            running.push(Reverse((end, node)));
        }
        ready.extend(blocked.drain(..));
        let Some(Reverse((end, _))) = running.peek().copied() else {
            // Nothing runs and nothing can start: only possible with a resource limit of 0,
            // which validation forbids. Stop rather than spin.
            break;
        };
        now = end;
        while let Some(Reverse((end, node))) = running.peek().copied() {
            if end != now {
                break;
            }
            running.pop();
            done += 1;
            free_lanes.push(Reverse(slots[node].lane));
            for &r in &limits.uses[node] {
                in_use[r] -= 1;
            }
            for next in graph.dependents(node) {
                waiting[next] -= 1;
                // A node that ended already (skipped) takes no lane when its dependency ends.
                if waiting[next] == 0 && !finished(next) {
                    ready.push((tails[next], Reverse(next)));
                }
            }
        }
    }
    let finish = slots.iter().map(|s| s.end).max().unwrap_or_default();
    Schedule { slots, finish }
}

/// Critical-path method figures, independent of the parallelism limit.
#[derive(Debug, Clone)]
pub struct Cpm {
    /// The longest path through the DAG: the finish with unlimited parallelism.
    pub length: Duration,
    pub path: Vec<NodeId>,
    /// How long each node can slip without moving the unlimited-parallelism finish.
    pub slack: Vec<Duration>,
}

pub fn cpm(graph: &PlanGraph, durations: &[Duration]) -> Cpm {
    let n = graph.len();
    let tails = graph.tails(|i| durations[i]);
    let mut earliest = vec![Duration::ZERO; n];
    for &i in graph.order() {
        earliest[i] = graph.deps(i).map(|d| earliest[d] + durations[d]).max().unwrap_or_default();
    }
    let (length, path) = graph.critical_path(|i| durations[i]);
    let slack = (0..n).map(|i| length.saturating_sub(earliest[i] + tails[i])).collect();
    Cpm { length, path, slack }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_from_mid_run_keeps_running_nodes_in_their_lanes() {
        // a → c, b alone; one lane. b runs with 5s left, a finished: c waits for b's lane.
        let graph = PlanGraph::from_edges(3, [(0, 2)]).unwrap();
        let durations = [Duration::from_secs(60), Duration::from_secs(5), Duration::from_secs(120)];
        let finished = [true, false, false];
        let progress = Progress { finished: &finished, running: &[1] };
        let schedule = simulate_from(&graph, &durations, &Limits::parallelism(1, 3), progress);
        assert_eq!(schedule.slots[1].start, Duration::ZERO);
        assert_eq!(schedule.slots[2].start, Duration::from_secs(5));
        assert_eq!(schedule.finish, Duration::from_secs(125));

        // c was skipped (its upstream failed) while b runs: it takes no lane when b ends.
        let graph = PlanGraph::from_edges(3, [(1, 2)]).unwrap();
        let finished = [false, false, true];
        let progress = Progress { finished: &finished, running: &[1] };
        let schedule = simulate_from(&graph, &durations, &Limits::parallelism(1, 3), progress);
        assert_eq!(schedule.slots[2], Slot::default());
        assert_eq!(schedule.finish, Duration::from_secs(65));
    }
    use crate::testing::workflow_from;

    fn hours(h: f64) -> Duration {
        Duration::from_secs_f64(h * 3600.0)
    }

    /// Builds a workflow of modules `name:hours:dep,dep` and simulates it.
    fn run(spec: &[&str], parallelism: u32) -> (Workflow, Schedule) {
        let mut text = format!("workflow w {{ parallelism {parallelism} }}\n");
        for line in spec {
            let mut parts = line.split(':');
            let (name, h, deps) = (parts.next().unwrap(), parts.next().unwrap(), parts.next().unwrap_or(""));
            let after =
                if deps.is_empty() { String::new() } else { format!("after {}", deps.replace(',', " ")) };
            text.push_str(&format!(
                "module {name} {{ budget \"{h}h\"; {after}\n install {{ run x \"true\" }} }}\n"
            ));
        }
        let w = workflow_from(&text);
        let g = PlanGraph::new(&w);
        let durations: Vec<Duration> = w.nodes.iter().map(|n| n.planned).collect();
        let s = simulate(&g, &durations, &Limits::of(&w, parallelism));
        (w, s)
    }

    fn start(w: &Workflow, s: &Schedule, id: &str) -> Duration {
        s.slots[w.node(id).unwrap()].start
    }

    #[test]
    fn single_node() {
        let (_, s) = run(&["a:2"], 1);
        assert_eq!(s.finish, hours(2.0));
    }

    #[test]
    fn fan_out_with_parallelism_one_runs_longest_first() {
        let (w, s) = run(&["root:1", "a:1:root", "b:3:root", "c:2:root"], 1);
        assert_eq!(s.finish, hours(7.0));
        assert_eq!(start(&w, &s, "b"), hours(1.0));
        assert_eq!(start(&w, &s, "c"), hours(4.0));
        assert_eq!(start(&w, &s, "a"), hours(6.0));
    }

    #[test]
    fn chain_is_sequential_whatever_the_parallelism() {
        let (_, s) = run(&["a:1", "b:2:a", "c:3:b"], 8);
        assert_eq!(s.finish, hours(6.0));
    }

    #[test]
    fn diamond_runs_its_middle_in_parallel() {
        let (w, s) = run(&["a:1", "b:2:a", "c:3:a", "d:1:b,c"], 2);
        assert_eq!(s.finish, hours(5.0));
        assert_eq!(start(&w, &s, "b"), start(&w, &s, "c"));
        assert_eq!(start(&w, &s, "d"), hours(4.0));
    }

    #[test]
    fn parallelism_larger_than_width_equals_the_critical_path() {
        let (w, s) = run(&["a:1", "b:2", "c:3", "d:1:a"], 16);
        let g = PlanGraph::new(&w);
        let durations: Vec<Duration> = w.nodes.iter().map(|n| n.planned).collect();
        assert_eq!(s.finish, cpm(&g, &durations).length);
        assert_eq!(s.finish, hours(3.0));
    }

    #[test]
    fn longest_remaining_path_beats_a_longer_single_node() {
        // With one lane free, `a` (1h, but 5h of work behind it) must go before `x` (3h).
        let (w, s) = run(&["a:1", "b:4:a", "x:3"], 1);
        assert_eq!(start(&w, &s, "a"), Duration::ZERO);
        assert_eq!(s.finish, hours(8.0));
    }

    #[test]
    fn resource_limits_serialize_their_users() {
        let w = workflow_from(
            r#"workflow w { parallelism 4; resource api limit=1 }
            module a { budget "1h"; uses api; install { run x "true" } }
            module b { budget "1h"; uses api; install { run x "true" } }
            module c { budget "1h"; install { run x "true" } }"#,
        );
        let g = PlanGraph::new(&w);
        let durations: Vec<Duration> = w.nodes.iter().map(|n| n.planned).collect();
        let s = simulate(&g, &durations, &Limits::of(&w, 4));
        assert_eq!(s.finish, hours(2.0));
        let (a, b) = (s.slots[0], s.slots[1]);
        assert!(a.end <= b.start || b.end <= a.start);
    }

    #[test]
    fn slack_is_zero_on_the_critical_path() {
        let (w, _) = run(&["a:1", "b:3:a", "c:1:a", "d:1:b,c"], 2);
        let g = PlanGraph::new(&w);
        let durations: Vec<Duration> = w.nodes.iter().map(|n| n.planned).collect();
        let c = cpm(&g, &durations);
        assert_eq!(c.slack[w.node("b").unwrap()], Duration::ZERO);
        assert_eq!(c.slack[w.node("c").unwrap()], hours(2.0));
        assert_eq!(c.length, hours(5.0));
    }

    mod properties {
        use proptest::prelude::*;

        use super::super::*;

        /// A random DAG: each node depends on up to 3 earlier ones; durations 0–10h.
        fn dag() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, Vec<Duration>)> {
            (1usize..40).prop_flat_map(|n| {
                let edges = proptest::collection::vec((0..n, 0..n), 0..n * 3).prop_map(|pairs| {
                    let mut e: Vec<(usize, usize)> = pairs.into_iter().filter(|(a, b)| a < b).collect();
                    e.sort();
                    e.dedup();
                    e
                });
                let durations = proptest::collection::vec((0u64..36_000).prop_map(Duration::from_secs), n);
                (Just(n), edges, durations)
            })
        }

        proptest! {
            #[test]
            fn schedules_respect_dependencies_and_limits((n, edges, durations) in dag(), parallelism in 1u32..6) {
                let graph = PlanGraph::from_edges(n, edges.iter().copied()).expect("edges go forward");
                let s = simulate(&graph, &durations, &Limits::parallelism(parallelism, n));
                for &(a, b) in &edges {
                    prop_assert!(s.slots[b].start >= s.slots[a].end, "{b} started before {a} ended");
                }
                // At every start, no more than `parallelism` nodes of non-zero length overlap.
                for i in 0..n {
                    let t = s.slots[i].start;
                    let running = (0..n)
                        .filter(|&j| s.slots[j].start <= t && t < s.slots[j].end)
                        .count();
                    prop_assert!(running <= parallelism as usize);
                }
                let c = cpm(&graph, &durations);
                prop_assert!(s.finish >= c.length);
                let unlimited = simulate(&graph, &durations, &Limits::parallelism(n as u32, n));
                prop_assert_eq!(unlimited.finish, c.length);
                let again = simulate(&graph, &durations, &Limits::parallelism(parallelism, n));
                prop_assert_eq!(again.slots, s.slots);
            }
        }
    }
}
