//! What earlier runs did, folded from their journals, oldest first.

use std::collections::{BTreeMap, HashMap};
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
    /// The node's definition as written when it ended (absent before it was recorded).
    pub source_hash: Option<String>,
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
    /// Nodes it left waiting for approval.
    pub waiting: usize,
}

/// One whole, passing run of a node: how long it took, and the hashes of the steps that ran
/// (by index), so a duration measured under other steps is not taken for today's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actual {
    pub took: Duration,
    pub step_hashes: Vec<String>,
}

/// A node's current run: the one that resume continues and that `status` reports. It
/// begins when the node starts from its first step, or when a run starts it anew (`apply`,
/// `resume --from`), and is continued (never restarted) by a `resume` or `verify` that keeps
/// leading steps. docs/state.md §8.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    /// The workflow whose run began it: an `apply` of another workflow in the same state
    /// directory leaves it alone.
    pub workflow: String,
    /// Where it began, in the order of every record of every journal.
    pub began: u64,
    /// The journal (by index, oldest first) it began in: where a report of it starts.
    pub began_run: usize,
    /// Where it last completed having built something: its first pass, or a later pass of a
    /// run that ran install steps again. Dependents built before that are out of date.
    pub completed: Option<u64>,
    /// Install steps ran since it last completed (a fresh attempt always will).
    rebuilt: bool,
    /// Whether any of its steps started (a run that started it anew and never reached it: not).
    pub started: bool,
    /// Passing step hashes by index: the steps that need not run again.
    pub steps: BTreeMap<usize, String>,
    /// The step that failed last, and why.
    pub failure: Option<(String, String)>,
    /// How long its runs took, summed over the runs that continued it.
    pub spent: Duration,
    /// The run of its last record: a node in flight in a live run is running now.
    pub last_run: String,
    /// Where its last step or node record was: the order of in-flight nodes.
    last_seen: u64,
    /// What its passed validate steps showed, by index: the evidence an approver sees.
    pub evidence: BTreeMap<usize, crate::exec::approval::Evidence>,
}

/// A request for approval, as its `approval-requested` record tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRequest {
    pub node: String,
    /// The run that asked: with `node`, the request's identity.
    pub run_id: String,
    pub at: String,
    pub source_hash: String,
    pub evidence: Vec<crate::exec::approval::Evidence>,
    pub required: u32,
    pub from: Vec<String>,
    /// What a run saw of its decisions (`approval-decided`): the last one.
    pub decided: Option<Decided>,
}

/// `approval-decided`, as recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    pub decision: String,
    pub by: Vec<String>,
    pub note: Option<String>,
    pub at: String,
}

#[derive(Debug, Default)]
pub struct History {
    pub runs: Vec<RunRecord>,
    /// The end of each node's current attempt, when it has ended.
    pub nodes: HashMap<String, NodeRecord>,
    /// Each node's current attempt (docs/state.md §8).
    pub attempts: HashMap<String, Attempt>,
    /// Every completion of each node that built something ([`Attempt::completed`]), oldest
    /// first: what a dependent was built on is the last one before it began.
    pub completions: HashMap<String, Vec<u64>>,
    /// Per workflow, what its last `apply` selected (`None`: every node): the rollout that
    /// `resume` continues.
    pub scopes: HashMap<String, Option<Vec<String>>>,
    /// Per workflow, the values (`vars_hash`) and Kubernetes context of its latest run that
    /// recorded them: a resume with others is refused.
    pub identities: HashMap<String, (String, Option<String>)>,
    /// Per workflow, the cluster its latest run that connected to one talked to.
    pub clusters: HashMap<String, super::format::ClusterIdentity>,
    /// Nodes whose current attempt started and has no end: in flight at a crash (or now).
    pub in_flight: Vec<String>,
    /// How long each node took whenever it passed with all its steps run in one run (not in
    /// a `verify`, not resumed past its first step, not re-recorded without running a step),
    /// oldest first: what `plan --calibrate` reads.
    pub actuals: HashMap<String, Vec<Actual>>,
    /// What the rollback runs recorded, as a history of their own: the rollback's attempts
    /// (kept steps, failures) that a resume of a rollback continues.
    pub undo: Option<Box<History>>,
    /// The nodes the last rollback set out to undo; a node installed again since leaves it.
    pub rollback_scope: Option<Vec<String>>,
    /// Nodes whose rollback passed and that no rollout has run again since.
    pub rolled_back: std::collections::BTreeSet<String>,
    /// Nodes whose current run ended skipped by their `when`, decided as they would start.
    pub skipped_by_condition: std::collections::BTreeSet<String>,
    /// The failure a rolled-back node's rollback followed, if it had failed.
    pub rolled_back_after: HashMap<String, String>,
    /// Each node's standing request for approval: asked, and not yet answered by the node's
    /// passing end or a rejection, nor dropped by a run that started the node anew or a
    /// rollback of it (docs/state.md §15).
    pub approvals: HashMap<String, ApprovalRequest>,
    /// Every request for approval, oldest first, with what the runs saw of its decisions.
    pub requests: Vec<ApprovalRequest>,
    /// Nodes whose current run ended rejected: a resume runs their checks again.
    pub rejected: std::collections::BTreeSet<String>,
    /// Records folded so far: the position of the next one.
    position: u64,
    /// Journals folded so far.
    journals: usize,
}

/// The run folders of a state directory, oldest first (run ids start with a UTC timestamp).
/// Folders being created (`.partial-*`) are not runs yet.
pub fn run_dirs(state_dir: &Path) -> Vec<PathBuf> {
    super::place::subdirs(&state_dir.join("runs"))
}

/// Every run's folder and records, oldest first: read once, for commands that need the
/// records themselves as well as the [`History`] folded from them.
pub type Journals = Vec<(PathBuf, Vec<Record>)>;

/// Reads every journal of a state directory, oldest first. A run folder without its
/// journal, or a journal that names a previous run that is not there, is an error: the
/// history would silently lack what that run did.
pub fn read_journals(state_dir: &Path) -> Result<Journals, JournalError> {
    let mut journals: Journals = Vec::new();
    let moved = super::place::moved_runs(state_dir);
    for dir in run_dirs(state_dir) {
        let path = dir.join("journal.jsonl");
        if !path.exists() {
            return Err(JournalError::Missing {
                message: format!(
                    "the run folder {} has no journal.jsonl: what that run did is unknown. \
                     Restore it, or move the folder out of runs/ (its completed steps then run again)",
                    dir.display()
                ),
            });
        }
        let records = journal::read(&path)?;
        if let Some(Record::RunStart { previous_run: Some(previous), run_id, .. }) = records.first() {
            let before = journals.last().and_then(|(_, r)| match r.first() {
                Some(Record::RunStart { run_id, .. }) => Some(run_id.as_str()),
                _ => None,
            });
            // The oldest run left may follow runs pruned before it (docs/state.md §1).
            if before.is_some_and(|before| before != previous) && !moved.contains(previous) {
                return Err(JournalError::Missing {
                    message: format!(
                        "run {run_id} follows run {previous}, whose folder is not in {}: what that run \
                         did is unknown. Restore it, or move the later runs out of runs/",
                        state_dir.join("runs").display()
                    ),
                });
            }
        }
        journals.push((dir, records));
    }
    Ok(journals)
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
        let mut in_flight: Vec<(u64, String)> = history
            .attempts
            .iter()
            .filter(|(id, a)| a.started && !history.nodes.contains_key(*id))
            .map(|(id, a)| (a.last_seen, id.clone()))
            .collect();
        in_flight.sort();
        history.in_flight = in_flight.into_iter().map(|(_, id)| id).collect();
        history
    }

    /// The hash the step at `index` of `node` last passed with in the node's current attempt.
    pub fn passed_step(&self, node: &str, index: usize) -> Option<&str> {
        self.attempts.get(node).and_then(|a| a.steps.get(&index)).map(String::as_str)
    }

    /// The failing step and reason of the node's current attempt.
    pub fn failure(&self, node: &str) -> Option<&(String, String)> {
        self.attempts.get(node).and_then(|a| a.failure.as_ref())
    }

    /// Whether the node's current attempt completed something its dependent, whose attempt
    /// began at `began`, was not built on: it completed before that and has built again
    /// since. A dependency that had never completed by then (an `after` added later, a
    /// node run on its own with `--only`) is not what the dependent was built on.
    pub fn rebuilt_since(&self, dependency: &str, began: u64) -> bool {
        let Some(completions) = self.completions.get(dependency) else { return false };
        let before = completions.iter().rev().find(|&&c| c < began);
        let current = self.attempts.get(dependency).and_then(|a| a.completed);
        before.is_some() && current != before.copied()
    }

    /// The nodes a run starts anew, from its `run-start`.
    fn restarted(&self, command: &str, workflow: &str, restart: &Option<Vec<String>>) -> Vec<String> {
        match (command, restart) {
            (_, Some(ids)) => ids.clone(),
            // An apply without a list (all of format 1's) starts every node of its workflow.
            ("apply", None) => self
                .attempts
                .iter()
                .filter(|(_, a)| a.workflow == workflow)
                .map(|(id, _)| id.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A new attempt of `node` begins here; nothing of the earlier one counts any more.
    fn begin(&mut self, node: &str, started: bool, run: &RunRecord) {
        // Installed again (or to be): no longer rolled back, nor left to roll back.
        self.rolled_back.remove(node);
        self.skipped_by_condition.remove(node);
        self.rolled_back_after.remove(node);
        self.rejected.remove(node);
        if let Some(scope) = self.rollback_scope.as_mut() {
            scope.retain(|n| n != node);
        }
        self.reset(node, started, run);
    }

    /// A new attempt of `node` begins here, without a word on its rollback.
    fn reset(&mut self, node: &str, started: bool, run: &RunRecord) {
        let began = self.position;
        self.nodes.remove(node);
        let attempt = Attempt {
            workflow: run.workflow.clone(),
            began,
            began_run: self.journals,
            rebuilt: true,
            started,
            last_run: run.run_id.clone(),
            last_seen: began,
            ..Attempt::default()
        };
        self.attempts.insert(node.to_string(), attempt);
    }

    /// The node's current attempt goes on past `first_step` kept steps.
    /// The attempt a step's end or skip of `node` belongs to, seen now: begun by `run` if the
    /// journal has no start of it (a journal cut before its node-start).
    fn seen(&mut self, node: &str, run: &RunRecord) -> &mut Attempt {
        if !self.attempts.contains_key(node) {
            self.begin(node, true, run);
        }
        let position = self.position;
        let attempt = self.attempts.get_mut(node).expect("ensured above");
        attempt.last_seen = position;
        attempt
    }

    fn resume(&mut self, node: &str, first_step: usize, run: &RunRecord) {
        let position = self.position;
        if !self.attempts.contains_key(node) {
            self.begin(node, true, run);
        }
        self.nodes.remove(node);
        let attempt = self.attempts.get_mut(node).expect("just ensured");
        attempt.started = true;
        attempt.steps.retain(|&i, _| i < first_step);
        attempt.last_run = run.run_id.clone();
        attempt.last_seen = position;
    }

    /// A node begins in `run`: from its first step a new attempt, past kept steps the same
    /// one. A `verify` only ever continues: it checks, and builds nothing.
    fn start(&mut self, node: &str, first_step: usize, run: &RunRecord) {
        if first_step == 0 && run.command != "verify" {
            self.begin(node, true, run);
        } else {
            self.resume(node, first_step, run);
        }
    }

    fn fold(&mut self, records: &[Record]) {
        match records.first() {
            Some(Record::RunStart { command, .. }) if command == "rollback" => self.fold_rollback(records),
            // Handlers (`on-failure { … }`, `finally`) install nothing and undo nothing: their
            // runs are listed, their nodes' states untouched.
            Some(Record::RunStart { command, .. }) if command == "on-failure" || command == "finally" => {
                let mut own = History::default();
                own.fold_rollout(records);
                self.runs.extend(own.runs);
                self.position += records.len() as u64;
                self.journals += 1;
            }
            _ => self.fold_rollout(records),
        }
    }

    /// A rollback run (docs/state.md §13): its records tell the rollback's own history
    /// ([`History::undo`]: what resume continues); each node its rollback passed is rolled
    /// back: its install attempt starts over, untouched until a rollout runs it again.
    fn fold_rollback(&mut self, records: &[Record]) {
        let undo = self.undo.get_or_insert_with(Default::default);
        undo.fold_rollout(records);
        let run = undo.runs.last().cloned();
        self.position += records.len() as u64;
        if let Some(Record::RunStart { restart: Some(scope), .. }) = records.first() {
            self.rollback_scope = Some(scope.clone());
        }
        if let Some(run) = run {
            for record in records {
                if let Record::NodeEnd { node, outcome, .. } = record {
                    if outcome.passed() {
                        // What it was rolled back after, for status to say.
                        if let Some((step, reason)) = self.failure(node).cloned() {
                            self.rolled_back_after.insert(node.clone(), format!("{step}: {reason}"));
                        }
                        self.reset(node, false, &run);
                        self.rolled_back.insert(node.clone());
                        // Installed again later, it is asked again.
                        self.approvals.remove(node);
                    }
                }
            }
            self.runs.push(run);
        }
        self.journals += 1;
    }

    /// The rollback left to do: the nodes of the last rollback not rolled back yet, nor
    /// installed again since (`None`: nothing).
    pub fn pending_rollback(&self) -> Option<Vec<String>> {
        let scope = self.rollback_scope.as_ref()?;
        let left: Vec<String> = scope.iter().filter(|n| !self.rolled_back.contains(*n)).cloned().collect();
        (!left.is_empty()).then_some(left)
    }

    fn fold_rollout(&mut self, records: &[Record]) {
        let mut run: Option<RunRecord> = None;
        // Nodes that began or went on in this run, and whether from their first step: only
        // those durations are whole.
        let mut began_here: HashMap<String, bool> = HashMap::new();
        // Install step counts from `node-start` (format 1 has none: every step counts).
        let mut installs: HashMap<String, usize> = HashMap::new();
        // The passing step hashes of each node in this run, by index.
        let mut ran: HashMap<String, BTreeMap<usize, String>> = HashMap::new();
        for record in records {
            self.position += 1;
            match record {
                Record::RunStart {
                    run_id,
                    workflow,
                    workflow_file,
                    started_at,
                    command,
                    restart,
                    vars_hash,
                    context,
                    cluster,
                    ..
                } => {
                    if let Some(hash) = vars_hash {
                        self.identities.insert(workflow.clone(), (hash.clone(), context.clone()));
                    }
                    if let Some(cluster) = cluster {
                        self.clusters.insert(workflow.clone(), cluster.clone());
                    }
                    let started = RunRecord {
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
                        waiting: 0,
                    };
                    // A run that starts nodes anew (`apply`, `resume --from`) starts a new
                    // rollout of them: nothing of theirs from before counts, whether or not
                    // this run gets to them.
                    for node in self.restarted(command, workflow, restart) {
                        self.begin(&node, false, &started);
                        // A new rollout of it asks anew.
                        self.approvals.remove(&node);
                    }
                    if command == "apply" {
                        self.scopes.insert(workflow.clone(), restart.clone());
                    }
                    run = Some(started);
                }
                Record::NodeStart { node, first_step, install_steps, .. } => {
                    let Some(r) = run.as_ref() else { continue };
                    self.start(node, *first_step, &r.clone());
                    began_here.insert(node.clone(), *first_step == 0);
                    installs.insert(node.clone(), *install_steps);
                }
                Record::StepStart { node, index, .. } => {
                    let Some(r) = run.as_ref() else { continue };
                    let r = r.clone();
                    // Format 1 has no node-start: a node's first step start in a run is it.
                    if !began_here.contains_key(node) {
                        self.start(node, *index, &r);
                        began_here.insert(node.clone(), *index == 0);
                    }
                    // A started step is not complete until its end, nor is anything after it.
                    let position = self.position;
                    let install = *index < installs.get(node).copied().unwrap_or(usize::MAX);
                    let attempt = self.attempts.get_mut(node).expect("began above");
                    attempt.steps.retain(|&i, _| i < *index);
                    attempt.evidence.retain(|&i, _| i < *index);
                    attempt.last_seen = position;
                    attempt.last_run = r.run_id.clone();
                    if install && r.command != "verify" {
                        attempt.rebuilt = true;
                    }
                }
                Record::StepEnd { node, step, index, outcome, step_hash, evidence, .. } => {
                    let Some(r) = run.as_ref() else { continue };
                    let attempt = self.seen(node, &r.clone());
                    if outcome.passed() {
                        ran.entry(node.clone()).or_default().insert(*index, step_hash.clone());
                        attempt.steps.insert(*index, step_hash.clone());
                        attempt.failure = None;
                        if let Some(text) = evidence {
                            let shown =
                                crate::exec::approval::Evidence { step: step.clone(), text: text.clone() };
                            attempt.evidence.insert(*index, shown);
                        }
                    } else {
                        attempt.steps.remove(index);
                        let reason = outcome.reason().unwrap_or_default().to_string();
                        attempt.failure = Some((step.clone(), reason));
                    }
                }
                // A step its condition skipped is kept like a passed one: resume does not
                // decide it again, and the steps after it are kept too.
                Record::StepSkipped { node, index, step_hash, .. } => {
                    let Some(r) = run.as_ref() else { continue };
                    self.seen(node, &r.clone()).steps.insert(*index, step_hash.clone());
                }
                Record::NodeEnd { node, outcome, took_ms, node_hash, source_hash, .. } => {
                    // Format 1 has no node-start: a node recorded without running a step
                    // continues its attempt with every step kept.
                    let Some(r) = run.as_ref() else { continue };
                    if !began_here.contains_key(node) {
                        let kept = self.attempts.get(node).map_or(0, |a| a.steps.len());
                        self.resume(node, kept, &r.clone());
                        began_here.insert(node.clone(), false);
                    }
                    let took = Duration::from_millis(*took_ms);
                    if let Some(r) = run.as_mut() {
                        if outcome.passed() {
                            r.passed += 1;
                        } else {
                            r.failed += 1;
                        }
                    }
                    let from_first_step = began_here.get(node).copied().unwrap_or(false);
                    let whole_run = run.as_ref().is_some_and(|r| r.command != "verify");
                    if outcome.passed() && whole_run && from_first_step {
                        let step_hashes = ran.remove(node).unwrap_or_default().into_values().collect();
                        self.actuals.entry(node.clone()).or_default().push(Actual { took, step_hashes });
                    }
                    let position = self.position;
                    let attempt = self.attempts.get_mut(node).expect("began above");
                    attempt.spent = if from_first_step { took } else { attempt.spent + took };
                    attempt.last_seen = position;
                    if outcome.passed() && (attempt.rebuilt || attempt.completed.is_none()) {
                        attempt.completed = Some(position);
                        attempt.rebuilt = false;
                        self.completions.entry(node.clone()).or_default().push(position);
                    }
                    if outcome.passed() {
                        // Its request was answered by its going on: the next run of it asks anew.
                        self.approvals.remove(node);
                    }
                    let run_id = run.as_ref().map(|r| r.run_id.clone()).unwrap_or_default();
                    self.nodes.insert(
                        node.clone(),
                        NodeRecord {
                            outcome: outcome.clone(),
                            node_hash: node_hash.clone(),
                            took,
                            spent: attempt.spent,
                            run_id,
                            source_hash: source_hash.clone(),
                        },
                    );
                }
                Record::NodeSkipped { node, reason } => {
                    if let Some(r) = run.as_mut() {
                        r.skipped += 1;
                    }
                    // Skipped by its `when` as it would have started: it ended, having built
                    // nothing, and counts as done until something it reads runs again.
                    if let (crate::exec::SkipReason::Condition { .. }, Some(r)) = (reason, run.as_ref()) {
                        let r = r.clone();
                        self.begin(node, true, &r);
                        let position = self.position;
                        if let Some(attempt) = self.attempts.get_mut(node) {
                            attempt.completed = Some(position);
                            attempt.rebuilt = false;
                            attempt.last_seen = position;
                        }
                        self.completions.entry(node.clone()).or_default().push(position);
                        self.nodes.insert(
                            node.clone(),
                            NodeRecord {
                                outcome: Outcome::Passed,
                                node_hash: String::new(),
                                took: Duration::ZERO,
                                spent: Duration::ZERO,
                                run_id: r.run_id.clone(),
                                source_hash: None,
                            },
                        );
                        self.skipped_by_condition.insert(node.clone());
                    }
                }
                Record::GatePassed { .. } | Record::LockBroken { .. } => {}
                Record::ApprovalRequested { node, at, source_hash, evidence, required, from } => {
                    let Some(r) = run.as_ref() else { continue };
                    let request = ApprovalRequest {
                        node: node.clone(),
                        run_id: r.run_id.clone(),
                        at: at.clone(),
                        source_hash: source_hash.clone(),
                        evidence: evidence.clone(),
                        required: *required,
                        from: from.clone(),
                        decided: None,
                    };
                    self.requests.push(request.clone());
                    self.approvals.insert(node.clone(), request);
                }
                Record::ApprovalDecided { node, at, request, decision, by, note } => {
                    let decided = Decided {
                        decision: decision.clone(),
                        by: by.clone(),
                        note: note.clone(),
                        at: at.clone(),
                    };
                    if let Some(r) =
                        self.requests.iter_mut().rev().find(|r| r.node == *node && r.run_id == *request)
                    {
                        r.decided = Some(decided.clone());
                    }
                    if let Some(r) = self.approvals.get_mut(node).filter(|r| r.run_id == *request) {
                        r.decided = Some(decided);
                    }
                    if decision == "rejected" {
                        // Answered: a resume runs the checks again and asks anew.
                        self.approvals.remove(node);
                        self.rejected.insert(node.clone());
                    }
                }
                Record::RunEnd { took_ms, failed, skipped, interrupted, deadline, waiting, .. } => {
                    if let Some(r) = run.as_mut() {
                        // The run's own count (docs/state.md, run-end): it includes the nodes
                        // a stop or a deadline left out, which have no node-skipped record.
                        r.skipped = *skipped;
                        r.finished = Some(*failed == 0 && !interrupted && !deadline && *waiting == 0);
                        r.waiting = *waiting;
                        r.took = Some(Duration::from_millis(*took_ms));
                    }
                }
            }
        }
        if let Some(r) = run {
            self.runs.push(r);
        }
        self.journals += 1;
    }

    /// The scope of the rollout `resume` continues for `workflow`: what its last `apply`
    /// selected, `None` for every node.
    pub fn scope(&self, workflow: &str) -> Option<&Vec<String>> {
        self.scopes.get(workflow).and_then(Option::as_ref)
    }
}
