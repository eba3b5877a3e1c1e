//! What earlier runs did, folded from their journals, oldest first.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::format::Record;
use super::journal::{self, JournalError};
use crate::exec::Outcome;

/// The last word on one node across runs.
#[derive(Debug, Clone)]
pub struct NodeRecord {
    pub outcome: Outcome,
    pub node_hash: String,
    pub took: Duration,
    /// The time of every run that brought the node to this end: its `took`, plus the earlier
    /// ends it was resumed from (a run that started it past its first step continues them).
    pub spent: Duration,
    pub run_id: String,
}

/// One run, summarised.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run_id: String,
    pub command: String,
    pub workflow: String,
    pub workflow_file: String,
    pub started_at: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// `None` while a run has no `run-end`: it was killed, or still runs.
    pub finished: Option<bool>,
    pub took: Option<Duration>,
}

/// One whole, passing run of a node: how long it took, and the hashes of the steps that ran
/// (by index), so a duration measured under other steps is not taken for today's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    pub took: Duration,
    pub step_hashes: Vec<String>,
}

#[derive(Debug, Default)]
pub struct History {
    pub runs: Vec<RunRecord>,
    /// Last node end per node id.
    pub nodes: HashMap<String, NodeRecord>,
    /// Step hashes that passed, per (node, index), most recent.
    pub steps: HashMap<(String, usize), String>,
    /// Nodes started in the last run without an end: in flight at a crash.
    pub in_flight: Vec<String>,
    /// Failure reasons of the last end of each failed node's steps.
    pub step_failures: HashMap<String, (String, String)>,
    /// How long each node took whenever it passed with all its steps run in one run (not in
    /// a `verify`, not resumed past its first step, not re-recorded without running a step),
    /// oldest first: what `plan --calibrate` reads.
    pub actuals: HashMap<String, Vec<Actual>>,
}

/// The run folders of a state directory, oldest first (run ids start with a UTC timestamp).
pub fn run_dirs(state_dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(state_dir.join("runs"))
        .map(|rd| {
            rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.join("journal.jsonl").exists()).collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

/// Every run's folder and records, oldest first: read once, for commands that need the
/// records themselves as well as the [`History`] folded from them.
pub type Journals = Vec<(PathBuf, Vec<Record>)>;

/// Reads every journal of a state directory, oldest first.
pub fn read_journals(state_dir: &Path) -> Result<Journals, JournalError> {
    run_dirs(state_dir)
        .into_iter()
        .map(|dir| {
            let records = journal::read(&dir.join("journal.jsonl"))?;
            Ok((dir, records))
        })
        .collect()
}

impl History {
    pub fn load(state_dir: &Path) -> Result<Self, JournalError> {
        Ok(Self::from_journals(&read_journals(state_dir)?))
    }

    /// The history the given journals tell, in their order.
    pub fn from_journals(journals: &[(PathBuf, Vec<Record>)]) -> Self {
        let mut history = History::default();
        for (_, records) in journals {
            history.fold(records);
        }
        history
    }

    fn fold(&mut self, records: &[Record]) {
        // In order of first start, for in_flight; the sets answer membership.
        let mut started: Vec<String> = Vec::new();
        let mut started_set: HashSet<String> = HashSet::new();
        let mut ended: HashSet<String> = HashSet::new();
        let mut run: Option<RunRecord> = None;
        // Nodes whose first step ran in this run: only their durations are whole.
        let mut from_first_step: HashSet<String> = HashSet::new();
        // The passing step hashes of each node in this run, by index.
        let mut ran: HashMap<String, std::collections::BTreeMap<usize, String>> = HashMap::new();
        for record in records {
            match record {
                Record::RunStart { run_id, workflow, workflow_file, started_at, command, .. } => {
                    run = Some(RunRecord {
                        run_id: run_id.clone(),
                        command: command.clone(),
                        workflow: workflow.clone(),
                        workflow_file: workflow_file.clone(),
                        started_at: started_at.clone(),
                        passed: 0,
                        failed: 0,
                        skipped: 0,
                        finished: None,
                        took: None,
                    });
                }
                Record::StepStart { node, index, .. } => {
                    // A started step is not complete until its end, whatever earlier runs did.
                    self.steps.remove(&(node.clone(), *index));
                    if started_set.insert(node.clone()) {
                        started.push(node.clone());
                        if *index == 0 {
                            from_first_step.insert(node.clone());
                        }
                    }
                }
                Record::StepEnd { node, step, index, outcome, step_hash, .. } => {
                    if outcome.passed() {
                        ran.entry(node.clone()).or_default().insert(*index, step_hash.clone());
                        self.steps.insert((node.clone(), *index), step_hash.clone());
                        self.step_failures.remove(node);
                    } else {
                        self.steps.remove(&(node.clone(), *index));
                        let reason = outcome.reason().unwrap_or_default().to_string();
                        self.step_failures.insert(node.clone(), (step.clone(), reason));
                    }
                }
                Record::NodeEnd { node, outcome, took_ms, node_hash, .. } => {
                    ended.insert(node.clone());
                    let took = Duration::from_millis(*took_ms);
                    if let Some(r) = run.as_mut() {
                        if outcome.passed() {
                            r.passed += 1;
                        } else {
                            r.failed += 1;
                        }
                    }
                    let whole_run = run.as_ref().is_some_and(|r| r.command != "verify");
                    if outcome.passed() && whole_run && from_first_step.contains(node) {
                        let step_hashes = ran.remove(node).unwrap_or_default().into_values().collect();
                        self.actuals.entry(node.clone()).or_default().push(Actual { took, step_hashes });
                    }
                    let run_id = run.as_ref().map(|r| r.run_id.clone()).unwrap_or_default();
                    let spent = match self.nodes.get(node) {
                        Some(earlier) if !from_first_step.contains(node) => earlier.spent + took,
                        _ => took,
                    };
                    self.nodes.insert(
                        node.clone(),
                        NodeRecord {
                            outcome: outcome.clone(),
                            node_hash: node_hash.clone(),
                            took,
                            spent,
                            run_id,
                        },
                    );
                }
                Record::NodeSkipped { .. } => {
                    if let Some(r) = run.as_mut() {
                        r.skipped += 1;
                    }
                }
                Record::GatePassed { .. } => {}
                Record::RunEnd { took_ms, failed, interrupted, deadline, .. } => {
                    if let Some(r) = run.as_mut() {
                        r.finished = Some(*failed == 0 && !interrupted && !deadline);
                        r.took = Some(Duration::from_millis(*took_ms));
                    }
                }
            }
        }
        // A node that started in this run and never ended was in flight at a crash: an
        // earlier completion no longer counts, so resume runs it again (at least once).
        self.in_flight = started.into_iter().filter(|n| !ended.contains(n)).collect();
        for node in &self.in_flight {
            self.nodes.remove(node);
        }
        if let Some(r) = run {
            self.runs.push(r);
        }
    }
}
