//! The dispatcher owns all run state: what waits, what runs, what failed, the Ctrl-C count.
//! Nodes start when their dependencies passed and a slot (and every resource they use) is
//! free; among ready nodes the longest remaining path goes first, as in `plan`.
//!
//! A node with a `when` condition is skipped when it is false: at the start when it reads
//! vars only, when it would start otherwise. A node whose condition reads the outcome of a
//! dependency starts once that dependency ended, whatever its outcome (a failure handler),
//! and even after a failure stopped new starts; a node skipped by its condition lets its
//! dependents start, as one that passed would.
//!
//! A node whose dependencies passed but whose records are not yet on disk is held: it may
//! not start before they are (a crash must not lose a step something was built on). The
//! journal is synced when a held node is the one the scheduler would start next, or at the
//! end, so one fsync covers every node that ended meanwhile instead of one per node.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::events::{ExecEvent, Outcome, RunSummary, SkipReason};
use super::node::{run_node, NodeRun};
use crate::graph::PlanGraph;
use crate::plan::simulate::{simulate, simulate_from, Limits, Progress};
use crate::spec::{NodeId, Workflow};

#[derive(Clone)]
pub struct ApplyOptions {
    pub parallelism: u32,
    /// Run everything that does not depend on a failure, instead of stopping new starts.
    pub keep_going: bool,
    /// Nodes to run; the others are skipped as not selected. Empty: all.
    pub selected: Vec<bool>,
    /// Nodes already done in an earlier run: skipped, their dependents may start.
    pub done: Vec<bool>,
    /// Don't start a node whose planned end would pass this, from the start of the run.
    pub deadline: Option<Duration>,
    /// This run's folder in the state directory; logs go below it.
    pub run_dir: PathBuf,
    pub run_id: String,
    /// Leading steps to skip per node (resume); empty: none.
    pub skip_steps: Vec<usize>,
    pub recorder: Option<super::SharedRecorder>,
    /// The connected cluster, when the rollout has Kubernetes steps.
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    /// Stops the steps' process groups if milepost goes away; `None` in library tests.
    pub guard: Option<Arc<super::orphans::Guard>>,
    /// Where approvals are asked and read; `None`: this run asks for none (`verify`,
    /// rollbacks, handlers).
    pub approvals: Option<Arc<dyn super::approval::Approvals>>,
    /// Wait at a terminal for approvals; otherwise a node that needs one is left waiting and
    /// the run ends when nothing else can run.
    pub wait_for_approval: bool,
}

/// The records a finished sync covers (see `written`), and whether they reached the disk.
type Synced = (u64, Result<(), String>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
    Passed,
    Failed,
    Skipped,
    /// Skipped by its `when`: counts as passed for the order.
    Bypassed,
    /// Left waiting for approval: not ended; nothing after it starts.
    AwaitingApproval,
}

impl State {
    /// Whether dependents may start past it.
    fn clears(&self) -> bool {
        matches!(self, State::Passed | State::Bypassed)
    }
}

/// Runs the workflow to its end and returns the summary; events describe everything on the way.
pub async fn execute(
    workflow: Arc<Workflow>,
    options: ApplyOptions,
    events: mpsc::UnboundedSender<ExecEvent>,
) -> RunSummary {
    let graph = PlanGraph::new(&workflow);
    let n = workflow.nodes.len();
    let selected = |i: usize| options.selected.is_empty() || options.selected[i];
    let done = |i: usize| options.done.get(i).copied().unwrap_or(false);
    // Only what this invocation runs counts toward its plan (resume: not the done part).
    let planned: Vec<Duration> = (0..n)
        .map(|i| {
            let node = &workflow.nodes[i];
            if done(i) || !selected(i) || node.skipped_at_load() {
                Duration::ZERO
            } else {
                node.planned
            }
        })
        .collect();
    // The nodes each node's condition reads, and the outcome each has so far.
    let reads: Vec<Vec<NodeId>> = workflow
        .nodes
        .iter()
        .map(|node| match &node.when {
            Some(w) => w.reads.iter().filter_map(|id| workflow.node(id)).collect(),
            None => Vec::new(),
        })
        .collect();
    // `d` starts after `x` ends, whatever its outcome: its condition reads it.
    let tolerates = |d: NodeId, x: NodeId| reads[d].contains(&x);
    let mut outcome_of: Vec<&'static str> = vec!["pending"; n];
    let mut renderer = crate::template::Renderer::new();
    let tails = graph.tails(|i| planned[i]);
    let started = Instant::now();

    let mut state = vec![State::Waiting; n];
    let mut summary = RunSummary::default();
    // The plan's own simulation, with this run's parallelism and resource limits; re-run
    // once a second with what has finished for the live forecast.
    let limits = Limits::of(&workflow, options.parallelism);
    let planned_finish = simulate(&graph, &planned, &limits).finish;
    let _ = events.send(ExecEvent::RunStarted {
        run_id: options.run_id.clone(),
        nodes: (0..n).filter(|&i| !done(i) && selected(i)).count(),
        planned_finish,
    });
    // Nodes not run in this invocation count as passed for ordering purposes.
    for (i, s) in state.iter_mut().enumerate() {
        if done(i) || !selected(i) {
            *s = State::Passed;
            let reason = if done(i) { SkipReason::AlreadyDone } else { SkipReason::NotSelected };
            if done(i) {
                outcome_of[i] = "passed";
            }
            let _ = events.send(ExecEvent::NodeSkipped { node: i, reason });
        }
    }

    // Dependencies not yet passed, per node: a node is ready when its count reaches zero.
    let mut waiting: Vec<usize> =
        (0..n).map(|i| graph.deps(i).filter(|&d| !state[d].clears()).count()).collect();
    let mut ready: BinaryHeap<(Duration, Reverse<NodeId>)> = BinaryHeap::new();
    // Ready but for the durability of their dependencies' records: node end batches are
    // numbered as written; `durable` is the last batch a finished sync covers.
    let mut held: BinaryHeap<(Duration, Reverse<NodeId>)> = BinaryHeap::new();
    let mut needs = vec![0u64; n];
    let mut written = 0u64;
    let mut durable = 0u64;
    for i in 0..n {
        if state[i] == State::Waiting && waiting[i] == 0 {
            state[i] = State::Ready;
            ready.push((tails[i], Reverse(i)));
        }
    }

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let (drain_tx, drain_rx) = watch::channel(false);
    let mut running: JoinSet<(NodeId, super::node::Ended)> = JoinSet::new();
    let mut running_since: Vec<Option<Instant>> = vec![None; n];
    let mut in_use = vec![0u32; workflow.resources.len()];
    let mut stopping = false;
    // A failure stopped new starts (fail-fast): only failure handlers still start.
    let mut failure_stop = false;
    let mut interrupts = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let syncer = super::syncer_of(&options.recorder);
    // At most one sync at a time; it covers every record written before it started.
    let mut syncing: JoinSet<Synced> = JoinSet::new();
    // One flat folder for all step logs: a directory per node cost more than the steps
    // themselves on ext4 (directory inode allocation), see bench/compare.py.
    let log_dir = std::fs::create_dir_all(options.run_dir.join("logs"));

    loop {
        // Start what can start.
        let mut deferred = Vec::new();
        // Ready, but not failure handlers, after a failure stopped new starts.
        let mut parked = Vec::new();
        let held_leads = |ready: &BinaryHeap<_>, held: &BinaryHeap<_>| {
            held.peek().is_some_and(|h| ready.peek().is_none_or(|r| h > r))
        };
        while !stopping && running.len() < options.parallelism as usize {
            // A held node comes first: keep the slot for it until its dependencies are durable.
            if held_leads(&ready, &held) {
                break;
            }
            let Some((tail, Reverse(i))) = ready.pop() else { break };
            let node = &workflow.nodes[i];
            if failure_stop && !reads[i].iter().any(|&r| matches!(state[r], State::Failed | State::Skipped)) {
                parked.push((tail, Reverse(i)));
                continue;
            }
            // Skipped when it would start, after what it follows (the order holds through
            // it); a condition on outcomes is decided now, from the outcomes of this rollout.
            let mut broken = None;
            if let Some(when) = &node.when {
                let seen: std::collections::HashMap<&str, &'static str> =
                    reads[i].iter().map(|&r| (workflow.nodes[r].id.as_str(), outcome_of[r])).collect();
                let outcome = |id: &str| seen.get(id).copied().unwrap_or("pending");
                let holds = match when.known {
                    Some(known) => Ok(known),
                    None => when.evaluate(&mut renderer, &workflow.vars, &outcome),
                };
                match holds {
                    Ok(true) => {}
                    Ok(false) => {
                        state[i] = State::Bypassed;
                        outcome_of[i] = "skipped";
                        let reason = SkipReason::Condition { when: when.text.clone() };
                        let event = ExecEvent::NodeSkipped { node: i, reason };
                        let _ = super::record(&options.recorder, &event);
                        let _ = events.send(event);
                        for d in graph.dependents(i) {
                            waiting[d] -= 1;
                            if waiting[d] == 0 && state[d] == State::Waiting {
                                state[d] = State::Ready;
                                ready.push((tails[d], Reverse(d)));
                            }
                        }
                        continue;
                    }
                    Err(e) => broken = Some(e.to_string()),
                }
            }
            if !node.uses.iter().all(|&r| in_use[r] < workflow.resources[r].limit) {
                deferred.push((tail, Reverse(i)));
                continue;
            }
            if let Some(deadline) = options.deadline {
                if started.elapsed() + node.planned > deadline {
                    state[i] = State::Skipped;
                    summary.deadline_stop = true;
                    stopping = true;
                    let _ = events.send(ExecEvent::NodeSkipped { node: i, reason: SkipReason::Deadline });
                    break;
                }
            }
            for &r in &node.uses {
                in_use[r] += 1;
            }
            state[i] = State::Running;
            running_since[i] = Some(Instant::now());
            let run = NodeRun {
                workflow: workflow.clone(),
                node: i,
                log_dir: options.run_dir.join("logs"),
                events: events.clone(),
                cancel: cancel_rx.clone(),
                skip_steps: options.skip_steps.get(i).copied().unwrap_or(0),
                recorder: options.recorder.clone(),
                cluster: options.cluster.clone(),
                syncer: syncer.clone(),
                guard: options.guard.clone(),
                outcomes: node
                    .steps()
                    .filter_map(|(_, step)| step.when.as_ref())
                    .flat_map(|w| w.reads.iter())
                    .filter_map(|id| workflow.node(id).map(|r| (id.clone(), outcome_of[r])))
                    .collect(),
                approvals: options.approvals.clone(),
                wait_for_approval: options.wait_for_approval,
                draining: drain_rx.clone(),
                run_id: options.run_id.clone(),
            };
            let begun = ExecEvent::NodeBegun { node: i, first_step: run.skip_steps };
            if let Err(reason) = super::record(&options.recorder, &begun) {
                let _ = events.send(ExecEvent::RecordFailed { reason });
                summary.record_failed = true;
                stopping = true;
                state[i] = State::Skipped;
                for &r in &node.uses {
                    in_use[r] -= 1;
                }
                running_since[i] = None;
                break;
            }
            if let Some(reason) = broken {
                running.spawn(async move { (i, (Some(Outcome::Failed { reason }), Duration::ZERO)) });
                continue;
            }
            if let Err(e) = &log_dir {
                let reason = format!("cannot create the log folder {}: {e}", run.log_dir.display());
                running.spawn(async move { (i, (Some(Outcome::Failed { reason }), Duration::ZERO)) });
                continue;
            }
            running.spawn(async move { (i, run_node(run).await) });
        }
        ready.extend(deferred);
        ready.extend(parked);
        // Sync ahead when a held node leads, even with every slot taken, so that it is
        // durable by the time a slot frees; and before the run ends, whatever stopped it.
        let wants_sync = running.is_empty() || held_leads(&ready, &held);
        if wants_sync && syncing.is_empty() && written > durable && !summary.record_failed {
            let syncer = syncer.clone();
            let covers = written;
            syncing.spawn(async move { (covers, super::sync(&syncer).await) });
        }

        if running.is_empty() && syncing.is_empty() {
            break;
        }
        tokio::select! {
            joined = running.join_next(), if !running.is_empty() => {
                let Some(joined) = joined else { continue };
                let (i, outcome) = match joined {
                    Ok(result) => result,
                    Err(e) => {
                        // A node task that panicked or was aborted: milepost's own bug, reported as a failure.
                        tracing::error!(error = %e, "a node task ended abnormally");
                        continue;
                    }
                };
                let mut ended = Vec::new();
                let mut left_waiting = Vec::new();
                let mut joined = Some((i, outcome));
                while let Some((i, (outcome, waited))) = joined.take() {
                    // A person's time deciding is not the node's: budgets, reports and
                    // `plan --calibrate` measure the work.
                    let took = running_since[i].take().map(|t| t.elapsed()).unwrap_or_default().saturating_sub(waited);
                    for &r in &workflow.nodes[i].uses {
                        in_use[r] -= 1;
                    }
                    match outcome {
                        Some(outcome) => ended.push((i, outcome, took)),
                        // Not an end: no record, nothing after it starts; a resume goes on.
                        None => left_waiting.push(i),
                    }
                    joined = running.try_join_next().and_then(Result::ok);
                }
                for i in left_waiting {
                    state[i] = State::AwaitingApproval;
                    summary.waiting += 1;
                    let _ = events.send(ExecEvent::NodeWaiting { node: i });
                }
                if ended.is_empty() {
                    continue;
                }
                // Every node that ended by now is written as one batch; their dependents are
                // held until a sync covers it.
                let mut record_failed = None;
                for (node, outcome, took) in &ended {
                    let event = ExecEvent::NodeRecorded { node: *node, outcome: outcome.clone(), took: *took };
                    if let Err(reason) = super::record(&options.recorder, &event) {
                        record_failed = Some(reason);
                    }
                }
                written += 1;
                if let Some(reason) = record_failed {
                    let _ = events.send(ExecEvent::RecordFailed { reason });
                    summary.record_failed = true;
                    stopping = true;
                }
                let mut skipped = Vec::new();
                for (i, outcome, _) in &ended {
                    let i = *i;
                    if outcome.passed() {
                        state[i] = State::Passed;
                        outcome_of[i] = "passed";
                        summary.passed += 1;
                        for d in graph.dependents(i) {
                            waiting[d] -= 1;
                            needs[d] = written;
                            if waiting[d] == 0 && state[d] == State::Waiting {
                                state[d] = State::Ready;
                                held.push((tails[d], Reverse(d)));
                            }
                        }
                        continue;
                    }
                    state[i] = State::Failed;
                    outcome_of[i] = "failed";
                    summary.failed += 1;
                    if !options.keep_going {
                        failure_stop = true;
                        // Nothing new starts: a node waiting for a person would only hold the
                        // end of a failed run. It stays waiting, for the resume.
                        let _ = drain_tx.send(true);
                    }
                    // Dependents are skipped, and theirs in turn, but for those whose
                    // condition reads the outcome: they wait for their other dependencies.
                    let mut ended_badly = vec![i];
                    while let Some(x) = ended_badly.pop() {
                        for d in graph.dependents(x) {
                            if tolerates(d, x) {
                                if state[d] == State::Waiting {
                                    waiting[d] -= 1;
                                    needs[d] = written;
                                    if waiting[d] == 0 {
                                        state[d] = State::Ready;
                                        held.push((tails[d], Reverse(d)));
                                    }
                                }
                                continue;
                            }
                            if matches!(state[d], State::Waiting | State::Ready) {
                                state[d] = State::Skipped;
                                outcome_of[d] = "skipped";
                                let upstream = workflow.nodes[i].id.clone();
                                let event =
                                    ExecEvent::NodeSkipped { node: d, reason: SkipReason::UpstreamFailed { upstream } };
                                let _ = super::record(&options.recorder, &event);
                                skipped.push(event);
                                ended_badly.push(d);
                            }
                        }
                    }
                    ready.retain(|&(_, Reverse(r))| state[r] == State::Ready);
                    held.retain(|&(_, Reverse(r))| state[r] == State::Ready);
                }
                // A fresh forecast with every node end, so the end line's pace is not up to
                // a second old (a short resume would otherwise show its start's forecast).
                let _ = events.send(forecast(&graph, &planned, &limits, &state, &running_since, started, planned_finish));
                for (node, outcome, took) in ended {
                    let _ = events.send(ExecEvent::NodeFinished { node, outcome, took });
                }
                for event in skipped {
                    let _ = events.send(event);
                }
            }
            Some(synced) = syncing.join_next(), if !syncing.is_empty() => {
                let Ok((covers, synced)) = synced else { continue };
                if let Err(reason) = synced {
                    let _ = events.send(ExecEvent::RecordFailed { reason });
                    summary.record_failed = true;
                    stopping = true;
                    continue;
                }
                durable = covers;
                for (tail, Reverse(d)) in std::mem::take(&mut held) {
                    if needs[d] <= durable {
                        ready.push((tail, Reverse(d)));
                    } else {
                        held.push((tail, Reverse(d)));
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                summary.interrupted = true;
                stopping = true;
                if interrupts == 1 {
                    let _ = drain_tx.send(true);
                    let _ = events.send(ExecEvent::Draining);
                } else {
                    let _ = cancel_tx.send(true);
                }
            }
            _ = async { match sigterm.as_mut() { Some(s) => { s.recv().await; } None => std::future::pending().await } } => {
                summary.interrupted = true;
                stopping = true;
                let _ = cancel_tx.send(true);
            }
            _ = tick.tick() => {
                let _ = events.send(forecast(&graph, &planned, &limits, &state, &running_since, started, planned_finish));
            }
        }
    }
    // What waits behind a node left for approval says so; the rest was stopped.
    let mut behind: Vec<Option<NodeId>> = vec![None; n];
    for &i in graph.order() {
        behind[i] = graph.deps(i).find_map(|d| match state[d] {
            State::AwaitingApproval => Some(d),
            _ => behind[d],
        });
    }
    for (i, s) in state.iter_mut().enumerate() {
        if matches!(s, State::Waiting | State::Ready) {
            *s = State::Skipped;
            let reason = match behind[i] {
                Some(d) => SkipReason::AwaitsApproval { upstream: workflow.nodes[d].id.clone() },
                None => SkipReason::Stopped,
            };
            let _ = events.send(ExecEvent::NodeSkipped { node: i, reason });
        }
    }
    summary.skipped = state.iter().filter(|s| matches!(s, State::Skipped | State::Bypassed)).count();
    summary.took = started.elapsed();
    summary
}

/// Elapsed time and the projected finish: the plan's simulation re-run from what has
/// finished, with what runs charged only its remaining budget.
fn forecast(
    graph: &PlanGraph,
    planned: &[Duration],
    limits: &Limits,
    state: &[State],
    running_since: &[Option<Instant>],
    started: Instant,
    planned_finish: Duration,
) -> ExecEvent {
    let elapsed = started.elapsed();
    let finished: Vec<bool> = state
        .iter()
        .map(|s| matches!(s, State::Passed | State::Failed | State::Skipped | State::Bypassed))
        .collect();
    let now_running: Vec<NodeId> = (0..state.len()).filter(|&i| running_since[i].is_some()).collect();
    let left: Vec<Duration> = (0..state.len())
        .map(|i| match running_since[i] {
            Some(since) => planned[i].saturating_sub(since.elapsed()),
            None => planned[i],
        })
        .collect();
    let progress = Progress { finished: &finished, running: &now_running };
    let remaining = simulate_from(graph, &left, limits, progress).finish;
    ExecEvent::Tick { elapsed, projected_finish: elapsed + remaining, planned_finish }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use proptest::prelude::*;

    use super::*;
    use crate::exec::{Flush, Recorder};

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Entry {
        StepStarted(NodeId, usize),
        StepEnded(NodeId, usize),
        NodeEnded(NodeId),
        /// A flush began: everything logged before it is on disk when it returns.
        Flushed,
    }

    /// Logs what was written and when a flush began, in one order.
    struct Log(Arc<Mutex<Vec<Entry>>>);

    impl Recorder for Log {
        fn record(&mut self, event: &ExecEvent) -> Result<(), String> {
            let entry = match event {
                ExecEvent::StepStarted { node, index, .. } => Entry::StepStarted(*node, *index),
                ExecEvent::StepFinished { node, index, .. } => Entry::StepEnded(*node, *index),
                ExecEvent::NodeRecorded { node, .. } => Entry::NodeEnded(*node),
                _ => return Ok(()),
            };
            self.0.lock().unwrap().push(entry);
            Ok(())
        }

        fn syncer(&self) -> Option<Flush> {
            let log = self.0.clone();
            Some(Arc::new(move || {
                log.lock().unwrap().push(Entry::Flushed);
                Ok(())
            }))
        }
    }

    /// Runs a workflow of `true` steps to its end and returns the log and the events.
    fn run(text: &str, dir: &std::path::Path) -> (Arc<Workflow>, Vec<Entry>, Vec<ExecEvent>) {
        // Steps run in the workflow's folder, so it is written where it stays while they run.
        let file = dir.join("w.kdl");
        std::fs::write(&file, text).unwrap();
        let loaded = crate::spec::load(&file, &Default::default()).map_err(|e| format!("{e:?}")).unwrap();
        let workflow = Arc::new(loaded.workflow);
        let log = Arc::new(Mutex::new(Vec::new()));
        let options = ApplyOptions {
            parallelism: workflow.parallelism,
            keep_going: false,
            selected: Vec::new(),
            done: Vec::new(),
            deadline: None,
            run_dir: dir.to_path_buf(),
            run_id: "test".into(),
            skip_steps: Vec::new(),
            recorder: Some(Arc::new(Mutex::new(Log(log.clone())))),
            cluster: None,
            guard: None,
            approvals: None,
            wait_for_approval: false,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let summary = runtime.block_on(execute(workflow.clone(), options, tx));
        assert_eq!(summary.passed, workflow.nodes.len(), "{summary:?}");
        let entries = log.lock().unwrap().clone();
        let mut events = Vec::new();
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        (workflow, entries, events)
    }

    /// Issue 15 item 6: each node end comes with a forecast made at that end, not the one
    /// of up to a second before (a short run showed its start's forecast on every line).
    #[test]
    fn every_node_end_follows_a_fresh_forecast() {
        let dir = tempfile::tempdir().unwrap();
        let text = r#"workflow w { parallelism 1 }
            module a { budget "20s"; install { run x "true" } }
            module b { budget "10s"; after a; install { run x "true" } }"#;
        let (workflow, _, events) = run(text, dir.path());
        let ends: Vec<usize> = events
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, ExecEvent::NodeFinished { .. }))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(ends.len(), 2, "{events:?}");
        let projected = |end: usize| match &events[end - 1] {
            ExecEvent::Tick { projected_finish, planned_finish, .. } => (*projected_finish, *planned_finish),
            other => panic!("a node end without a forecast before it: {other:?}"),
        };
        // After a: b's 10s are left of the 30s plan; after b: nothing is left.
        let (after_a, planned) = projected(ends[0]);
        assert_eq!(planned, Duration::from_secs(30));
        assert!(after_a > Duration::from_secs(10) && after_a < Duration::from_secs(11), "{after_a:?}");
        let (after_b, _) = projected(ends[1]);
        assert!(after_b < Duration::from_secs(1), "{after_b:?} for {}", workflow.id);
    }

    /// Approvals that say "not yet" `polls` times, then `then`; counts the polls.
    struct Delayed {
        polls: std::sync::atomic::AtomicU32,
        not_yet: u32,
        then: crate::exec::approval::Verdict,
    }

    impl crate::exec::approval::Approvals for Delayed {
        fn standing(&self, _: &crate::spec::Node) -> crate::exec::approval::Standing {
            Default::default()
        }

        fn verdict(
            &self,
            _: &crate::exec::approval::Request,
            _: &crate::spec::Node,
        ) -> Result<crate::exec::approval::Verdict, String> {
            let n = self.polls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(match n < self.not_yet {
                true => crate::exec::approval::Verdict::Waiting { approved_by: Vec::new() },
                false => self.then.clone(),
            })
        }
    }

    /// A gate `g` that needs approval, `after` it `b`, and `c` beside them, run with
    /// `approvals` and waiting or not; the summary, the events and the steps that ran.
    fn run_gated(approvals: Arc<Delayed>, wait: bool) -> (RunSummary, Vec<ExecEvent>, Vec<String>) {
        run_gated_with(approvals, wait, "echo c >> ledger")
    }

    /// [`run_gated`] with `c` running `c_runs`.
    fn run_gated_with(
        approvals: Arc<Delayed>,
        wait: bool,
        c_runs: &str,
    ) -> (RunSummary, Vec<ExecEvent>, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.kdl");
        let text = r#"workflow w { phase p { modules a; gate g } }
            module a { budget "1m"; install { run a "echo a >> ledger" } }
            gate g { budget "1m"; approval; validate { run check "echo check >> ledger" } }
            module b { budget "1m"; after g; install { run b "echo b >> ledger" } }
            module c { budget "1m"; install { run c "C" } }"#
            .replace("\"C\"", &format!("{c_runs:?}"));
        std::fs::write(&file, text).unwrap();
        let workflow = Arc::new(
            crate::spec::load(&file, &Default::default()).map_err(|e| format!("{e:?}")).unwrap().workflow,
        );
        let options = ApplyOptions {
            parallelism: 2,
            keep_going: false,
            selected: Vec::new(),
            done: Vec::new(),
            deadline: None,
            run_dir: dir.path().to_path_buf(),
            run_id: "test".into(),
            skip_steps: Vec::new(),
            recorder: None,
            cluster: None,
            guard: None,
            approvals: Some(approvals),
            wait_for_approval: wait,
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        // Bounded: a wait that never ends is the bug these tests look for, not a hang.
        let summary = runtime
            .block_on(async {
                tokio::time::timeout(Duration::from_secs(30), execute(workflow, options, tx)).await
            })
            .expect("the run ended within 30 s");
        let mut events = Vec::new();
        while let Ok(event) = rx.try_recv() {
            events.push(event);
        }
        let ledger = std::fs::read_to_string(dir.path().join("ledger")).unwrap_or_default();
        (summary, events, ledger.lines().map(String::from).collect())
    }

    fn delayed(not_yet: u32, then: crate::exec::approval::Verdict) -> Arc<Delayed> {
        Arc::new(Delayed { polls: Default::default(), not_yet, then })
    }

    /// At a terminal the gate waits, polling, until the approval arrives, then goes on.
    #[test]
    fn a_waiting_gate_goes_on_when_the_approval_arrives() {
        use crate::exec::approval::Verdict;
        let approvals = delayed(2, Verdict::Approved { by: vec!["alice".into()] });
        let (summary, events, ledger) = run_gated(approvals.clone(), true);
        assert_eq!((summary.passed, summary.failed, summary.waiting), (4, 0, 0), "{summary:?}");
        assert_eq!(approvals.polls.load(std::sync::atomic::Ordering::SeqCst), 3);
        // b ran after the approval, never before; the check ran once.
        assert_eq!(ledger.iter().filter(|l| *l == "check").count(), 1, "{ledger:?}");
        assert_eq!(ledger.last().map(String::as_str), Some("b"), "{ledger:?}");
        let told =
            events.iter().filter(|e| matches!(e, ExecEvent::ApprovalWaiting { waits: true, .. })).count();
        assert_eq!(told, 1, "who can approve is said once, not at every poll");
    }

    /// A rejection ends the gate failed with who and why; what follows it is skipped.
    #[test]
    fn a_rejected_approval_fails_the_gate_with_the_note() {
        use crate::exec::approval::Verdict;
        let approvals = delayed(1, Verdict::Rejected { by: "bob".into(), note: "error budget burnt".into() });
        let (summary, events, ledger) = run_gated(approvals, true);
        assert_eq!((summary.failed, summary.waiting), (1, 0), "{summary:?}");
        let reason = events.iter().find_map(|e| match e {
            ExecEvent::NodeFinished { outcome, .. } if !outcome.passed() => {
                outcome.reason().map(String::from)
            }
            _ => None,
        });
        assert_eq!(reason.as_deref(), Some("rejected by bob: error budget burnt"));
        assert!(!ledger.contains(&"b".to_string()), "{ledger:?}");
    }

    /// Without a terminal the gate is left waiting: not failed, b not started, c ran.
    #[test]
    fn without_waiting_an_approval_gate_is_left_waiting_and_independent_nodes_finish() {
        use crate::exec::approval::Verdict;
        let approvals = delayed(u32::MAX, Verdict::Approved { by: Vec::new() });
        let (summary, events, ledger) = run_gated(approvals.clone(), false);
        assert_eq!((summary.passed, summary.failed, summary.waiting), (2, 0, 1), "{summary:?}");
        assert_eq!(approvals.polls.load(std::sync::atomic::Ordering::SeqCst), 1, "read once, not polled");
        assert!(ledger.contains(&"c".to_string()) && !ledger.contains(&"b".to_string()), "{ledger:?}");
        assert!(events.iter().any(|e| matches!(e, ExecEvent::NodeWaiting { .. })));
        assert!(
            !events.iter().any(|e| matches!(e, ExecEvent::NodeFinished { node: 1, .. })),
            "g did not end"
        );
    }

    /// A failure elsewhere stops new starts: a gate waiting for a person at a terminal stops
    /// waiting (left waiting, for the resume) instead of holding the end of a failed run.
    #[test]
    fn a_failure_elsewhere_ends_a_wait_for_approval() {
        use crate::exec::approval::Verdict;
        let approvals = delayed(u32::MAX, Verdict::Approved { by: Vec::new() });
        let (summary, _, ledger) = run_gated_with(approvals, true, "sleep 0.5; exit 1");
        assert_eq!((summary.failed, summary.waiting), (1, 1), "{summary:?}");
        assert!(!ledger.contains(&"b".to_string()), "{ledger:?}");
    }

    /// Whether a flush began after entry `from` and before entry `to`.
    fn flushed_between(log: &[Entry], from: usize, to: usize) -> bool {
        log[from + 1..to].contains(&Entry::Flushed)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Nothing starts on top of a record that is not yet on disk: a node's first step
        /// starts after its dependencies' ends were flushed, a later step after the step
        /// before it was, and the run ends with everything flushed.
        #[test]
        fn nothing_starts_before_what_it_builds_on_is_durable(
            deps in proptest::collection::vec(proptest::collection::vec(any::<prop::sample::Index>(), 0..3), 1..10),
            steps in proptest::collection::vec(1usize..3, 10),
            parallelism in 1u32..4,
        ) {
            let mut text = format!("workflow w {{ parallelism {parallelism} }}\n");
            for (i, d) in deps.iter().enumerate() {
                let mut after: Vec<usize> = if i == 0 { Vec::new() } else { d.iter().map(|x| x.index(i)).collect() };
                after.sort();
                after.dedup();
                let after = if after.is_empty() {
                    String::new()
                } else {
                    format!("after {}; ", after.iter().map(|a| format!("n{a}")).collect::<Vec<_>>().join(" "))
                };
                let runs: String = (0..steps[i]).map(|s| format!("run s{s} \"true\"; ")).collect();
                text.push_str(&format!("module n{i} {{ budget \"1m\"; {after}install {{ {runs}}} }}\n"));
            }
            let dir = tempfile::tempdir().unwrap();
            let (workflow, log, _) = run(&text, dir.path());
            let graph = PlanGraph::new(&workflow);
            let at = |e: Entry| log.iter().position(|&x| x == e);
            for (p, &entry) in log.iter().enumerate() {
                let Entry::StepStarted(node, index) = entry else { continue };
                if index == 0 {
                    for dep in graph.deps(node) {
                        let ended = at(Entry::NodeEnded(dep));
                        prop_assert!(ended.is_some_and(|q| q < p && flushed_between(&log, q, p)),
                            "{} started before the end of {} was durable: {log:?}", workflow.nodes[node].id, workflow.nodes[dep].id);
                    }
                } else {
                    let ended = at(Entry::StepEnded(node, index - 1));
                    prop_assert!(ended.is_some_and(|q| q < p && flushed_between(&log, q, p)),
                        "step {index} of {} started before step {} was durable: {log:?}", workflow.nodes[node].id, index - 1);
                }
            }
            let last_end = log.iter().rposition(|e| matches!(e, Entry::NodeEnded(_))).unwrap();
            prop_assert!(flushed_between(&log, last_end, log.len()) , "the run ended with records not flushed: {log:?}");
        }
    }
}
