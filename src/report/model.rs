//! The report's data: a rollout (the last `apply` and the `resume`/`verify` runs after it, or
//! one run) folded from its journals beside the plan it was measured against. Every format
//! renders this one value, and `--format json` is it, serialized (docs/report.md).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::facts::{self, MetricResult};
use crate::exec::node::log_name;
use crate::exec::step::log_tail;
use crate::exec::Outcome;
use crate::graph::PlanGraph;
use crate::plan::{Plan, PlanOptions};
use crate::spec::metrics::RunFacts;
use crate::spec::{NodeKind, Stage, Workflow};
use crate::state::format::Record;
use crate::state::history::{History, Journals};
use crate::state::resume::decide;

pub const SCHEMA_VERSION: u32 = 1;

/// How many lines of a failed step's log a report shows.
pub const TAIL_LINES: usize = 20;

#[derive(Debug, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub generated_at: String,
    pub workflow: WorkflowInfo,
    /// `complete`, `failed`, `interrupted` or `killed`: how the last run of the rollout ended.
    pub outcome: String,
    pub runs: Vec<RunInfo>,
    pub plan: PlanInfo,
    /// Sum of the runs' wall times: the actual timeline's length, gaps between runs left out.
    pub actual_secs: f64,
    pub phases: Vec<PhaseInfo>,
    pub nodes: Vec<NodeReport>,
    pub validations: Validations,
    pub metrics: Vec<MetricResult>,
    pub facts: RunFacts,
    /// The environment this report is of; absent for a workflow without environments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Every declared environment's standing today: a row each (promotion).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<crate::state::promotion::Standing>,
}

#[derive(Debug, Serialize)]
pub struct WorkflowInfo {
    pub id: String,
    pub title: String,
    pub file: String,
}

#[derive(Debug, Serialize)]
pub struct RunInfo {
    pub run_id: String,
    /// `apply`, `resume` or `verify`.
    pub command: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    pub took_secs: f64,
    /// `complete`, `failed`, `interrupted`, or `killed` when the journal has no run end.
    pub outcome: String,
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Where this run starts on the actual timeline (runs laid end to end).
    pub offset_secs: f64,
}

#[derive(Debug, Serialize)]
pub struct PlanInfo {
    pub parallelism: u32,
    /// Planned finish with budgets and buffers, from scratch.
    pub finish_secs: f64,
    pub budget_secs: f64,
    pub critical_path: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct PhaseInfo {
    pub id: String,
    pub title: Option<String>,
    pub modules: Vec<String>,
    pub gate: Option<String>,
    /// The gate's result: `passed`, `failed`, `skipped` or `not-run`.
    pub gate_result: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct NodeReport {
    pub id: String,
    pub kind: NodeKind,
    pub number: Option<u32>,
    pub title: String,
    pub phase: Option<String>,
    pub domain: Option<String>,
    pub critical: bool,
    pub planned_start_secs: f64,
    pub planned_end_secs: f64,
    pub budget_secs: f64,
    /// Budget plus buffer.
    pub planned_secs: f64,
    /// The last word on the node in this rollout: `passed`, `failed`, `interrupted`,
    /// `skipped` or `not-run`.
    pub result: String,
    pub skip_reason: Option<String>,
    /// Time spent in every attempt together.
    pub actual_secs: Option<f64>,
    /// Actual time past budget plus buffer.
    pub over_budget: bool,
    pub attempts: Vec<Attempt>,
    /// Its requests for approval in this rollout, oldest first, with every decision on each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<ApprovalReport>,
}

/// One request for approval and what came of it.
#[derive(Debug, Serialize)]
pub struct ApprovalReport {
    /// The run that asked.
    pub run_id: String,
    pub requested_at: String,
    pub required: u32,
    /// Who may decide; empty: anyone who can write the rollout's state.
    pub from: Vec<String>,
    /// `approved`, `rejected`, or `waiting` (no run has seen enough decisions yet).
    pub outcome: String,
    /// What the gate's checks showed when it asked.
    pub evidence: Vec<crate::exec::approval::Evidence>,
    pub decisions: Vec<DecisionReport>,
}

/// One person's decision.
#[derive(Debug, Serialize)]
pub struct DecisionReport {
    /// `approved` or `rejected`.
    pub decision: String,
    pub user: String,
    pub groups: Vec<String>,
    pub at: String,
    pub note: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct Attempt {
    /// An undo by the node's rollback steps (`milepost rollback`, `on-failure "rollback"`).
    pub rollback: bool,
    pub run_id: String,
    pub started_at: String,
    pub ended_at: Option<String>,
    /// On the actual timeline.
    pub start_secs: f64,
    pub end_secs: f64,
    pub took_secs: f64,
    pub result: String,
    pub reason: Option<String>,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Serialize)]
pub struct StepReport {
    pub index: usize,
    pub name: String,
    pub stage: Stage,
    pub kind: String,
    pub result: String,
    pub reason: Option<String>,
    pub took_secs: Option<f64>,
    /// Starts of the step (more than one when it was retried).
    pub tries: u32,
    pub log: String,
    /// The last lines of the log, for a step that did not pass.
    pub log_tail: Vec<String>,
    /// What a passing validate step printed last: what proved it.
    pub evidence: Option<String>,
}

impl Report {
    /// Every step that did not pass, with its node and attempt, in report order.
    pub fn failed_steps(&self) -> impl Iterator<Item = (&NodeReport, &Attempt, &StepReport)> {
        self.nodes
            .iter()
            .flat_map(|n| n.attempts.iter().map(move |a| (n, a)))
            .flat_map(|(n, a)| a.steps.iter().filter(|s| s.result != "passed").map(move |s| (n, a, s)))
    }
}

impl StepReport {
    pub fn stage_name(&self) -> &'static str {
        match self.stage {
            Stage::Install => "install",
            Stage::Validate => "validate",
        }
    }
}

#[derive(Debug, Default, Serialize)]
pub struct Validations {
    pub passed: u32,
    pub failed: u32,
    /// Validate steps of gates and modules that ran in this rollout, every try counted once.
    pub ran: u32,
}

/// Why there is no report.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("no run in {0}; start one with `milepost apply <workflow>`")]
    NoRuns(PathBuf),
    #[error("no run `{id}` in {dir}; `milepost history` lists the runs")]
    UnknownRun { id: String, dir: PathBuf },
}

fn result_of(outcome: &Outcome) -> &'static str {
    match outcome {
        Outcome::Passed => "passed",
        Outcome::Failed { .. } => "failed",
        Outcome::TimedOut { .. } => "timed-out",
        Outcome::Cancelled { .. } => "cancelled",
    }
}

fn seconds_between(from: &str, to: &str) -> f64 {
    match (from.parse::<jiff::Timestamp>(), to.parse::<jiff::Timestamp>()) {
        (Ok(a), Ok(b)) => (b.as_millisecond() - a.as_millisecond()).max(0) as f64 / 1000.0,
        _ => 0.0,
    }
}

/// The journals a report covers, as a range: `--run` alone, or every run of the rollout as
/// it stands: from the oldest run in which a node's current attempt began
/// (docs/state.md §8), so the report tells what `status` and `resume` count.
fn select_runs(
    workflow: &Workflow,
    history: &History,
    journals: &[(PathBuf, Vec<Record>)],
    state_dir: &Path,
    run: Option<&str>,
) -> Result<std::ops::Range<usize>, ReportError> {
    if journals.is_empty() {
        return Err(ReportError::NoRuns(state_dir.to_path_buf()));
    }
    let command = |records: &[Record]| match records.first() {
        Some(Record::RunStart { command, .. }) => command.clone(),
        _ => String::new(),
    };
    if let Some(id) = run {
        let found = journals.iter().position(|(dir, _)| dir.file_name().is_some_and(|n| n == id));
        return found
            .map(|i| i..i + 1)
            .ok_or_else(|| ReportError::UnknownRun { id: id.to_string(), dir: state_dir.to_path_buf() });
    }
    let first = workflow
        .nodes
        .iter()
        .filter_map(|n| history.attempts.get(&n.id))
        .map(|a| a.began_run)
        .min()
        .unwrap_or_else(|| {
            journals.iter().rposition(|(_, records)| command(records) == "apply").unwrap_or(0)
        });
    Ok(first..journals.len())
}

/// A step as one attempt of its node saw it.
#[derive(Default)]
struct StepSeen {
    tries: u32,
    end: Option<(Outcome, u64, Option<String>)>,
}

/// A node in one run, as its records tell it.
struct NodeSeen {
    started_at: String,
    ended_at: Option<String>,
    outcome: Option<Outcome>,
    steps: std::collections::BTreeMap<usize, StepSeen>,
}

/// The report of the runs `run` selects among `journals` (every run of `state_dir`, oldest
/// first). Gate and metric facts are as of the last covered run: a report of an old run
/// shows that run's figures, not today's.
pub fn build(
    workflow: &Workflow,
    state_dir: &Path,
    run: Option<&str>,
    journals: &Journals,
    decisions: &[crate::state::approvals::Decision],
) -> Result<Report, ReportError> {
    // Log paths in a report are absolute: it is read from anywhere.
    let state_dir = &state_dir.canonicalize().unwrap_or_else(|_| state_dir.to_path_buf());
    let all = History::from_journals(journals);
    let covered = select_runs(workflow, &all, journals, state_dir, run)?;
    // A report of an older run folds only what came up to it.
    let history =
        if covered.end == journals.len() { all } else { History::from_journals(&journals[..covered.end]) };
    let runs = &journals[covered];
    let plan = Plan::new(workflow, &PlanOptions::default());
    let mut attempts: HashMap<String, Vec<Attempt>> = HashMap::new();
    let mut skips: HashMap<String, String> = HashMap::new();
    let mut requests: HashMap<String, Vec<ApprovalReport>> = HashMap::new();
    let mut run_infos = Vec::new();
    let mut offset = 0.0;
    for (dir, records) in runs {
        let Some(Record::RunStart { run_id, command, started_at, .. }) = records.first() else { continue };
        let mut seen: Vec<(String, NodeSeen)> = Vec::new();
        // Waits for a person, per node in this run: when it began (its node's start or its
        // request) and how long they took in all. Not the node's time.
        let mut wait_from: HashMap<String, String> = HashMap::new();
        let mut waited: HashMap<String, f64> = HashMap::new();
        let mut last_at = started_at.clone();
        let mut info = RunInfo {
            run_id: run_id.clone(),
            command: command.clone(),
            started_at: started_at.clone(),
            ended_at: None,
            took_secs: 0.0,
            outcome: "killed".into(),
            passed: 0,
            failed: 0,
            skipped: 0,
            offset_secs: offset,
        };
        for record in records {
            let node_seen = |seen: &mut Vec<(String, NodeSeen)>, node: &str, at: &str| -> usize {
                match seen.iter().position(|(n, _)| n == node) {
                    Some(i) => i,
                    None => {
                        seen.push((
                            node.to_string(),
                            NodeSeen {
                                started_at: at.to_string(),
                                ended_at: None,
                                outcome: None,
                                steps: Default::default(),
                            },
                        ));
                        seen.len() - 1
                    }
                }
            };
            match record {
                Record::StepStart { node, index, at, .. } => {
                    let i = node_seen(&mut seen, node, at);
                    seen[i].1.steps.entry(*index).or_default().tries += 1;
                    last_at = at.clone();
                }
                Record::StepEnd { node, index, outcome, took_ms, evidence, at, .. } => {
                    let i = node_seen(&mut seen, node, at);
                    seen[i].1.steps.entry(*index).or_default().end =
                        Some((outcome.clone(), *took_ms, evidence.clone()));
                    last_at = at.clone();
                }
                // Not run: the step's row stays without an end.
                Record::StepSkipped { at, .. } => last_at = at.clone(),
                Record::NodeEnd { node, outcome, at, .. } => {
                    let i = node_seen(&mut seen, node, at);
                    seen[i].1.ended_at = Some(at.clone());
                    seen[i].1.outcome = Some(outcome.clone());
                    last_at = at.clone();
                    if outcome.passed() {
                        info.passed += 1;
                    } else {
                        info.failed += 1;
                    }
                }
                Record::NodeSkipped { node, reason } => {
                    info.skipped += 1;
                    skips.insert(node.clone(), reason.to_string());
                }
                Record::GatePassed { at, .. } | Record::LockBroken { at, .. } => last_at = at.clone(),
                Record::ApprovalRequested { node, at, evidence, required, from, .. } => {
                    last_at = at.clone();
                    wait_from.insert(node.clone(), at.clone());
                    let decided = decisions
                        .iter()
                        .filter(|d| d.node == *node && d.request == *run_id)
                        .map(|d| DecisionReport {
                            decision: d.decision.to_string(),
                            user: d.user.clone(),
                            groups: d.groups.clone(),
                            at: d.at.clone(),
                            note: d.note.clone(),
                        })
                        .collect();
                    requests.entry(node.clone()).or_default().push(ApprovalReport {
                        run_id: run_id.clone(),
                        requested_at: at.clone(),
                        required: *required,
                        from: from.clone(),
                        outcome: "waiting".into(),
                        evidence: evidence.clone(),
                        decisions: decided,
                    });
                }
                Record::ApprovalDecided { node, request, decision, at, .. } => {
                    last_at = at.clone();
                    if let Some(from) = wait_from.remove(node) {
                        *waited.entry(node.clone()).or_default() += seconds_between(&from, at);
                    }
                    let asked = requests
                        .get_mut(node)
                        .and_then(|r| r.iter_mut().rev().find(|r| r.run_id == *request));
                    if let Some(asked) = asked {
                        asked.outcome = decision.clone();
                    }
                }
                Record::RunEnd { failed, interrupted, deadline, waiting, at, .. } => {
                    info.ended_at = Some(at.clone());
                    last_at = at.clone();
                    info.outcome = if *interrupted {
                        "interrupted"
                    } else if *failed > 0 {
                        "failed"
                    } else if *deadline {
                        "deadline"
                    } else if *waiting > 0 {
                        "waiting"
                    } else {
                        "complete"
                    }
                    .into();
                }
                Record::NodeStart { node, at, .. } => {
                    wait_from.insert(node.clone(), at.clone());
                }
                Record::RunStart { .. } => {}
            }
        }
        info.took_secs = seconds_between(started_at, &last_at);
        let logs = dir.join("logs");
        // Handlers' runs (`on-failure`, `finally`) are in the run list; their steps are not
        // attempts of the nodes they ran for.
        let handlers = matches!(command.as_str(), "on-failure" | "finally");
        for (node_id, s) in seen {
            if handlers {
                continue;
            }
            let Some(node) = workflow.node(&node_id).map(|n| &workflow.nodes[n]) else { continue };
            // A node that ran again clears an earlier skip.
            skips.remove(&node_id);
            let ended = s.ended_at.clone().unwrap_or_else(|| last_at.clone());
            let start_secs = super::to_ms(offset + seconds_between(started_at, &s.started_at));
            let end_secs = super::to_ms(offset + seconds_between(started_at, &ended));
            // A rollback run's steps are the node's rollback steps, by their own index.
            let undoing = command == "rollback";
            let all_steps: Vec<_> = match undoing {
                true => node.rollback.iter().map(|s| (Stage::Install, s)).collect(),
                false => node.steps().collect(),
            };
            let steps: Vec<StepReport> = s
                .steps
                .into_iter()
                .filter_map(|(index, seen)| {
                    let (stage, step) = all_steps.get(index)?;
                    let log = logs.join(log_name(&node.id, index, &step.name));
                    let (result, reason, took, evidence) = match &seen.end {
                        Some((outcome, ms, evidence)) => (
                            result_of(outcome).to_string(),
                            outcome.reason().map(String::from),
                            Some(*ms as f64 / 1000.0),
                            evidence.clone(),
                        ),
                        None => {
                            ("interrupted".into(), Some("the run ended inside this step".into()), None, None)
                        }
                    };
                    let log_tail = if result == "passed" { Vec::new() } else { log_tail(&log, TAIL_LINES) };
                    Some(StepReport {
                        index,
                        name: step.name.clone(),
                        stage: *stage,
                        kind: step.kind.name().to_string(),
                        result,
                        reason,
                        took_secs: took,
                        tries: seen.tries,
                        log: log.display().to_string(),
                        log_tail,
                        evidence,
                    })
                })
                .collect();
            let (result, reason) = match &s.outcome {
                Some(o) => (result_of(o).to_string(), o.reason().map(String::from)),
                // Its steps so far passed and the run left it for a person's decision.
                None if info.outcome == "waiting" && history.approvals.contains_key(&node_id) => (
                    "waiting-approval".to_string(),
                    node.approval.as_ref().map(|a| format!("waits for approval from {}", a.who())),
                ),
                None => ("interrupted".to_string(), Some("the run ended while it ran".to_string())),
            };
            // A person's time deciding is not the node's: budgets compare the work.
            let person = waited.get(&node_id).copied().unwrap_or(0.0);
            attempts.entry(node_id).or_default().push(Attempt {
                rollback: undoing,
                run_id: run_id.clone(),
                started_at: s.started_at.clone(),
                ended_at: s.ended_at.clone(),
                start_secs,
                end_secs,
                took_secs: super::to_ms((end_secs - start_secs - person).max(0.0)),
                result,
                reason,
                steps,
            });
        }
        offset = super::to_ms(offset + info.took_secs);
        run_infos.push(info);
    }

    let mut validations = Validations::default();
    let nodes: Vec<NodeReport> = plan
        .rows()
        .into_iter()
        .flat_map(|(_, nodes)| nodes)
        .map(|n| {
            let node = &workflow.nodes[n];
            let tries = attempts.remove(&node.id).unwrap_or_default();
            for step in tries.iter().flat_map(|a| &a.steps).filter(|s| s.stage == Stage::Validate) {
                validations.ran += 1;
                if step.result == "passed" {
                    validations.passed += 1;
                } else {
                    validations.failed += 1;
                }
            }
            let actual: Option<f64> = if tries.is_empty() {
                None
            } else {
                Some(super::to_ms(tries.iter().map(|a| a.took_secs).sum()))
            };
            let skip_reason = skips.get(&node.id).cloned();
            let result = match (tries.last(), &skip_reason) {
                (Some(a), _) if a.rollback && a.result == "passed" => "rolled-back",
                (Some(a), _) if a.rollback => "rollback-failed",
                (Some(a), _) => match a.result.as_str() {
                    "passed" => "passed",
                    "waiting-approval" => "waiting-approval",
                    "interrupted" | "cancelled" => "interrupted",
                    _ => "failed",
                },
                (None, Some(_)) => "skipped",
                (None, None) => "not-run",
            };
            let slot = plan.schedule.slots[n];
            NodeReport {
                id: node.id.clone(),
                kind: node.kind,
                number: node.number,
                title: node.title.clone(),
                phase: workflow.phase_of(n).map(|p| p.id.clone()),
                domain: node.domain.clone(),
                critical: plan.is_critical(n),
                planned_start_secs: slot.start.as_secs_f64(),
                planned_end_secs: slot.end.as_secs_f64(),
                budget_secs: node.budget.as_secs_f64(),
                planned_secs: node.planned.as_secs_f64(),
                result: result.to_string(),
                skip_reason,
                actual_secs: actual,
                over_budget: actual.is_some_and(|a| a > node.planned.as_secs_f64()),
                attempts: tries,
                approvals: requests.remove(&node.id).unwrap_or_default(),
            }
        })
        .collect();

    let result_of_node = |id: &str| nodes.iter().find(|n| n.id == id).map(|n| n.result.clone());
    let phases = workflow
        .phases
        .iter()
        .map(|p| {
            let gate = p.gate.map(|g| workflow.nodes[g].id.clone());
            PhaseInfo {
                id: p.id.clone(),
                title: p.title.clone(),
                modules: p.modules.iter().map(|&m| workflow.nodes[m].id.clone()).collect(),
                gate_result: gate.as_deref().and_then(result_of_node),
                gate,
            }
        })
        .collect();

    let graph = PlanGraph::new(workflow);
    let facts = facts::run_facts(workflow, &history, &decide(workflow, &graph, &history));
    let metrics = facts::evaluate(workflow, &facts);
    // How the rollout itself last ended: a rollback or a handler after it ends nothing of it
    // (a rollback that passed after a failure does not make the rollout complete).
    let outcome = run_infos
        .iter()
        .rev()
        .find(|r| matches!(r.command.as_str(), "apply" | "resume" | "verify"))
        .or(run_infos.last())
        .map(|r| r.outcome.clone())
        .unwrap_or_default();
    Ok(Report {
        schema_version: SCHEMA_VERSION,
        generated_at: crate::state::format::now(),
        workflow: WorkflowInfo {
            id: workflow.id.clone(),
            title: workflow.title.clone(),
            file: workflow.file.display().to_string(),
        },
        outcome,
        actual_secs: offset,
        runs: run_infos,
        plan: PlanInfo {
            parallelism: plan.parallelism,
            finish_secs: plan.totals.finish.as_secs_f64(),
            budget_secs: workflow.nodes.iter().map(|n| n.budget.as_secs_f64()).sum(),
            critical_path: plan.cpm.path.iter().map(|&n| workflow.nodes[n].id.clone()).collect(),
        },
        phases,
        nodes,
        validations,
        metrics,
        facts,
        environment: workflow.environment().map(|e| e.name.clone()),
        environments: crate::state::promotion::standings(state_dir, workflow),
    })
}
