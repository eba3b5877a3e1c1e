//! The dispatcher owns all run state: what waits, what runs, what failed, the Ctrl-C count.
//! Nodes start when their dependencies passed and a slot (and every resource they use) is
//! free; among ready nodes the longest remaining path goes first, as in `plan`.

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
}

/// Nodes that ended together, and whether their records reached the disk.
type SyncedBatch = (Vec<(NodeId, Outcome)>, Result<(), String>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    Waiting,
    Ready,
    Running,
    Passed,
    Failed,
    Skipped,
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
        .map(|i| if done(i) || !selected(i) { Duration::ZERO } else { workflow.nodes[i].planned })
        .collect();
    let tails = graph.tails(|i| planned[i]);
    let started = Instant::now();

    let mut state = vec![State::Waiting; n];
    let mut summary = RunSummary::default();
    let planned_finish = tails.iter().copied().max().unwrap_or_default();
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
            let _ = events.send(ExecEvent::NodeSkipped { node: i, reason });
        }
    }

    // Dependencies not yet passed, per node: a node is ready when its count reaches zero.
    let mut waiting: Vec<usize> =
        (0..n).map(|i| graph.deps(i).filter(|&d| state[d] != State::Passed).count()).collect();
    let mut ready: BinaryHeap<(Duration, Reverse<NodeId>)> = BinaryHeap::new();
    for i in 0..n {
        if state[i] == State::Waiting && waiting[i] == 0 {
            state[i] = State::Ready;
            ready.push((tails[i], Reverse(i)));
        }
    }

    let (cancel_tx, cancel_rx) = watch::channel(false);
    let mut running: JoinSet<(NodeId, Outcome)> = JoinSet::new();
    let mut running_since: Vec<Option<Instant>> = vec![None; n];
    let mut in_use = vec![0u32; workflow.resources.len()];
    let mut stopping = false;
    let mut interrupts = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let syncer = super::syncer_of(&options.recorder);
    // Batches of ended nodes whose records are being made durable; their dependents wait
    // for the sync, the other lanes do not.
    let mut syncing: JoinSet<SyncedBatch> = JoinSet::new();

    loop {
        // Start what can start.
        let mut deferred = Vec::new();
        while !stopping && running.len() < options.parallelism as usize {
            let Some((tail, Reverse(i))) = ready.pop() else { break };
            let node = &workflow.nodes[i];
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
            };
            // One flat folder for all step logs: a directory per node cost more than the
            // steps themselves on ext4 (directory inode allocation), see bench/compare.py.
            if let Err(e) = std::fs::create_dir_all(&run.log_dir) {
                let reason = format!("cannot create the log folder {}: {e}", run.log_dir.display());
                running.spawn(async move { (i, Outcome::Failed { reason }) });
                continue;
            }
            running.spawn(async move { (i, run_node(run).await) });
        }
        ready.extend(deferred);

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
                let took = running_since[i].take().map(|t| t.elapsed()).unwrap_or_default();
                for &r in &workflow.nodes[i].uses {
                    in_use[r] -= 1;
                }
                // Every node that ended by now is recorded, then one sync covers them all:
                // durable before any dependent starts, one fsync per batch.
                let mut ended = vec![(i, outcome, took)];
                while let Some(Ok((more, outcome))) = running.try_join_next() {
                    let took = running_since[more].take().map(|t| t.elapsed()).unwrap_or_default();
                    for &r in &workflow.nodes[more].uses {
                        in_use[r] -= 1;
                    }
                    ended.push((more, outcome, took));
                }
                // Every node that ended by now is written, then one sync covers them all, on a
                // blocking thread: durable before any dependent starts, one fsync per batch.
                let mut record_failed = None;
                for (node, outcome, took) in &ended {
                    let event = ExecEvent::NodeRecorded { node: *node, outcome: outcome.clone(), took: *took };
                    if let Err(reason) = super::record(&options.recorder, &event, false) {
                        record_failed = Some(reason);
                    }
                }
                if let Some(reason) = record_failed {
                    let _ = events.send(ExecEvent::RecordFailed { reason });
                    summary.record_failed = true;
                    stopping = true;
                }
                // Fail fast means no new start from now, not from when the sync is done.
                if !options.keep_going && ended.iter().any(|(_, o, _)| !o.passed()) {
                    stopping = true;
                }
                let batch: Vec<(NodeId, Outcome)> = ended.into_iter().map(|(i, o, _)| (i, o)).collect();
                let syncer = syncer.clone();
                syncing.spawn(async move {
                    let synced = super::sync(&syncer).await;
                    (batch, synced)
                });
            }
            Some(synced) = syncing.join_next(), if !syncing.is_empty() => {
                let Ok((batch, synced)) = synced else { continue };
                if let Err(reason) = synced {
                    let _ = events.send(ExecEvent::RecordFailed { reason });
                    summary.record_failed = true;
                    stopping = true;
                }
                for (i, outcome) in batch {
                    if outcome.passed() {
                        state[i] = State::Passed;
                        summary.passed += 1;
                        for d in graph.dependents(i) {
                            waiting[d] -= 1;
                            if waiting[d] == 0 && state[d] == State::Waiting {
                                state[d] = State::Ready;
                                ready.push((tails[d], Reverse(d)));
                            }
                        }
                    } else {
                        state[i] = State::Failed;
                        summary.failed += 1;
                        if !options.keep_going {
                            stopping = true;
                        }
                        for d in graph.downstream(&[i]).into_iter().skip(1) {
                            if matches!(state[d], State::Waiting | State::Ready) {
                                state[d] = State::Skipped;
                                let upstream = workflow.nodes[i].id.clone();
                                let event = ExecEvent::NodeSkipped {
                                    node: d,
                                    reason: SkipReason::UpstreamFailed { upstream },
                                };
                                let _ = super::record(&options.recorder, &event, false);
                                let _ = events.send(event);
                            }
                        }
                        ready.retain(|&(_, Reverse(r))| state[r] == State::Ready);
                    }
                }
            }
            _ = tokio::signal::ctrl_c() => {
                interrupts += 1;
                summary.interrupted = true;
                stopping = true;
                if interrupts == 1 {
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
                let elapsed = started.elapsed();
                let running_left = (0..n)
                    .filter_map(|i| running_since[i].map(|since| planned[i].saturating_sub(since.elapsed()) + (tails[i] - planned[i])))
                    .max()
                    .unwrap_or_default();
                let ready_left = ready.iter().map(|&(t, _)| t).max().unwrap_or_default();
                let _ = events.send(ExecEvent::Tick {
                    elapsed,
                    projected_finish: elapsed + running_left.max(ready_left),
                    planned_finish,
                });
            }
        }
    }
    for (i, s) in state.iter_mut().enumerate() {
        if matches!(s, State::Waiting | State::Ready) {
            *s = State::Skipped;
            let _ = events.send(ExecEvent::NodeSkipped { node: i, reason: SkipReason::Stopped });
        }
    }
    summary.skipped = state.iter().filter(|s| **s == State::Skipped).count();
    summary.took = started.elapsed();
    summary
}
