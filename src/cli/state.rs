//! `resume`, `status` and `history`: commands that read the state directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde::Serialize;

use super::apply::{rollout, take_lock, Rollout, RunArgs};
use super::{exit, print, CliError, Cx};
use crate::graph::PlanGraph;
use crate::plan::NodeStatus;
use crate::report::facts::{self, run_facts};
use crate::spec::values::human;
use crate::spec::{load, parse_var, LoadOptions, NodeKind, Workflow};
use crate::state::format::Record;
use crate::state::history::{read_journals, History, Journals};
use crate::state::lock::{self, StateLock};
use crate::state::resume::{decide, Decision};
use crate::state::{place, promotion};
use crate::ui::errln;
use crate::ui::style::pad;

/// The workflow and state directory a state command works on.
#[derive(Debug, Args)]
pub struct StateArgs {
    /// The workflow file; default: the one the newest run in the state root used.
    pub workflow: Option<PathBuf>,
    /// Set a template variable (repeatable); use the same values as the run.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Read variables from a KDL file (repeatable).
    #[arg(long = "vars-file", value_name = "FILE")]
    pub vars_files: Vec<PathBuf>,
    /// The environment whose rollout to read; default: $MILEPOST_ENV, else the newest
    /// run's.
    #[arg(long = "env", value_name = "NAME")]
    pub environment: Option<String>,
}

#[derive(Debug, Args)]
pub struct ResumeArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Run this node and everything downstream of it again, done or not.
    #[arg(long, value_name = "ID")]
    from: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Only this phase's completed modules and gate.
    #[arg(long, value_name = "PHASE")]
    phase: Option<String>,
    /// Only these nodes (repeatable).
    #[arg(long = "node", value_name = "ID")]
    nodes: Vec<String>,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The state root (default: .milepost beside the workflow, or here).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// Print JSON for machines.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    state: StateArgs,
    /// The state root (default: .milepost beside the workflow, or here).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// The rollout folder and the workflow a state command works on: the workflow named, in the
/// environment named, or else the workflow and environment of the newest run in the state
/// root (`--state-dir`, else `.milepost` here).
pub(super) fn target(
    args: &StateArgs,
    explicit_root: Option<&Path>,
    command: &str,
) -> Result<(PathBuf, Workflow), CliError> {
    use crate::spec::load::ChosenEnvironment;
    let chosen = super::chosen_environment(args.environment.as_deref());
    let (file, environment, root) = match &args.workflow {
        Some(file) => (file.clone(), chosen, explicit_root.map(Path::to_path_buf)),
        None => {
            let here = explicit_root.map_or_else(|| PathBuf::from(".milepost"), Path::to_path_buf);
            // No root here: the newest run in the roots below, where `milepost apply
            // examples/local/phase2.kdl` run from here keeps its state.
            let roots = match explicit_root {
                None if !here.is_dir() => {
                    place::roots_below(Path::new("."), 4).ok_or_else(|| CliError::Usage {
                        message: format!(
                        "there is no .milepost here, and the folders below are too many to search for one; \
                         name the workflow: `milepost {command} <workflow>`"
                    ),
                    })?
                }
                _ => vec![here.clone()],
            };
            let wanted = chosen.as_ref().map(|c| c.name.as_str());
            let newest = |environment: Option<&str>| -> Result<Option<(PathBuf, place::LastRun)>, CliError> {
                let mut newest: Option<(PathBuf, place::LastRun)> = None;
                for root in &roots {
                    super::migrate(root)?;
                    if let Some(last) = place::last_run(root, environment) {
                        if newest.as_ref().is_none_or(|(_, n)| n.run_id < last.run_id) {
                            newest = Some((root.clone(), last));
                        }
                    }
                }
                Ok(newest)
            };
            // MILEPOST_ENV narrows the choice when a run of it is there; --env insists.
            let found = match newest(wanted)? {
                Some(found) => Some(found),
                None if chosen.as_ref().is_some_and(|c| c.from_variable) => newest(None)?,
                None => None,
            };
            let root = found.as_ref().map_or_else(|| here.clone(), |(root, _)| root.clone());
            if let (None, Some((found_in, last))) = (explicit_root, &found) {
                if *found_in != here {
                    crate::ui::errln!(
                        "the newest run below here is of {} (state in {})",
                        last.workflow_file.display(),
                        found_in.display()
                    );
                }
            }
            let last = found.map(|(_, last)| last);
            let Some(last) = last else {
                let of = wanted.map(|e| format!(" of environment `{e}`")).unwrap_or_default();
                let place = if here.is_dir() || explicit_root.is_some() {
                    format!("in {}", here.display())
                } else {
                    "in a .milepost here or below".to_string()
                };
                return Err(CliError::State {
                    message: format!(
                        "no earlier run{of} {place}; name the workflow (`milepost {command} <workflow>`), \
                         or start one with `milepost apply <workflow>`"
                    ),
                });
            };
            let recorded = last.environment.map(|name| ChosenEnvironment { name, from_variable: false });
            (last.workflow_file, chosen.or(recorded), Some(root))
        }
    };
    let options = LoadOptions {
        vars: args.vars.clone(),
        vars_files: args.vars_files.clone(),
        env: None,
        environment,
        any_environment: false,
    };
    let workflow = load(&file, &options).map_err(CliError::Definitions)?.workflow;
    let dir = super::rollout_dir(&workflow, root.as_deref(), command)?;
    Ok((dir, workflow))
}

/// The journals of a rollout folder that must hold at least one run.
fn journals_of(dir: &Path, workflow: &Workflow) -> Result<Journals, CliError> {
    let journals = read_journals(dir).map_err(|e| CliError::State { message: e.to_string() })?;
    if journals.is_empty() {
        return Err(no_run(dir, workflow));
    }
    Ok(journals)
}

fn no_run(dir: &Path, workflow: &Workflow) -> CliError {
    let env = workflow.environment().map(|e| format!(" --env {}", e.name)).unwrap_or_default();
    CliError::State {
        message: format!(
            "no earlier run of {}{} in {}; start one with `milepost apply {}{env}`",
            workflow.id,
            workflow.environment().map(|e| format!(" in environment `{}`", e.name)).unwrap_or_default(),
            dir.display(),
            workflow.file.display()
        ),
    }
}

/// The rollout folder, its journals, and the workflow: the one named, or the one the last
/// run recorded.
pub(super) fn open_journals(
    args: &StateArgs,
    explicit_root: Option<&Path>,
    command: &str,
) -> Result<(PathBuf, Journals, Workflow), CliError> {
    let (dir, workflow) = target(args, explicit_root, command)?;
    let journals = journals_of(&dir, &workflow)?;
    Ok((dir, journals, workflow))
}

/// The rollout a resume or verify continues, its lock taken before its journals are read:
/// two that start together must not both decide from the same journals. Without a run
/// there is nothing to continue.
pub(super) fn open_locked(
    args: &StateArgs,
    explicit_root: Option<&Path>,
    command: &str,
) -> Result<(StateLock, PathBuf, History, Workflow), CliError> {
    let (dir, workflow) = target(args, explicit_root, command)?;
    // A working copy of cluster state has its runs once the lock pulled them.
    if workflow.state.is_none() && !dir.join("runs").is_dir() {
        return Err(no_run(&dir, &workflow));
    }
    let lock = take_lock(&workflow, &dir, command)?;
    let history = History::from_journals(&journals_of(&dir, &workflow)?);
    Ok((lock, dir, history, workflow))
}

pub fn resume(cx: &Cx, args: &ResumeArgs) -> Result<u8, CliError> {
    let (lock, dir, history, workflow) = open_locked(&args.state, args.run.state_dir.as_deref(), "resume")?;
    let context = args.run.context.clone().or_else(|| workflow.kubernetes.context.clone());
    same_values(&history, &workflow, Some(context.as_deref()), &dir)?;
    // A rollback that stopped goes on first: a killed rollback resumes the rollback.
    if args.from.is_none() {
        if let Some(result) =
            super::rollback::continue_rollback(cx, &workflow, &history, &args.run, &dir, &lock)
        {
            return result;
        }
    }
    let graph = PlanGraph::new(&workflow);
    let mut decisions = decide(&workflow, &graph, &history);
    // The rollout resume continues: what the last apply selected.
    let mut selected: Vec<bool> = match history.scope(&workflow.id) {
        Some(ids) => workflow.nodes.iter().map(|n| ids.contains(&n.id)).collect(),
        None => vec![true; workflow.nodes.len()],
    };
    let mut restart = None;
    if args.from.is_some() {
        super::rollback::refuse_while_rolling_back(&history, &workflow, "`resume --from`")?;
    }
    if let Some(from) = &args.from {
        let start = workflow
            .node(from)
            .ok_or_else(|| CliError::Usage { message: format!("no module or gate `{from}`") })?;
        let again = graph.downstream(&[start]);
        for &n in &again {
            decisions[n] = Decision { status: NodeStatus::Rerun(format!("--from {from}")), skip_steps: 0 };
            selected[n] = true;
        }
        restart = Some(again.iter().map(|&n| workflow.nodes[n].id.clone()).collect());
    }
    let p = cx.err;
    let in_scope = |n: usize| selected[n];
    let done =
        (0..workflow.nodes.len()).filter(|&n| in_scope(n) && decisions[n].status == NodeStatus::Done).count();
    // Nodes a condition skips at load never run: nothing to resume for them.
    let skipped =
        (0..workflow.nodes.len()).filter(|&n| in_scope(n) && workflow.nodes[n].skipped_at_load()).count();
    if done + skipped == selected.iter().filter(|s| **s).count() {
        let outside: Vec<&str> = (0..workflow.nodes.len())
            .filter(|&n| !in_scope(n) && decisions[n].status != NodeStatus::Done)
            .map(|n| workflow.nodes[n].id.as_str())
            .collect();
        if outside.is_empty() {
            errln!("{} nothing to resume: every node of {} is done", p.green("✓"), workflow.id);
        } else {
            errln!(
                "{} nothing to resume: every node the last `apply` selected is done\n  not done, outside it: {} \
                 (`milepost apply` runs them, or `milepost resume --from <id>`)",
                p.green("✓"),
                outside.join(", ")
            );
        }
        return Ok(exit::SUCCESS);
    }
    errln!("{} resuming {} from {}: {done} done, kept", p.bold("↻"), workflow.id, dir.display());
    for (n, d) in decisions.iter().enumerate().filter(|(n, _)| in_scope(*n)) {
        let node = &workflow.nodes[n];
        match &d.status {
            NodeStatus::Rerun(why) => {
                let skip = if d.skip_steps > 0 {
                    format!(" (first {} steps kept)", d.skip_steps)
                } else {
                    String::new()
                };
                errln!("  {} {} runs again: {why}{skip}", p.yellow("↻"), node.id);
            }
            NodeStatus::Pending => match node.when.as_ref().filter(|_| node.skipped_at_load()) {
                Some(when) => errln!("  {} {} skipped (when {})", p.dim("–"), node.id, when.text),
                None => errln!("  {} {} runs", p.dim("·"), node.id),
            },
            NodeStatus::Done => {}
        }
    }
    let plan = Rollout {
        command: "resume",
        selected,
        restart,
        done: decisions.iter().map(|d| d.status == NodeStatus::Done).collect(),
        skip_steps: decisions.iter().map(|d| d.skip_steps).collect(),
        same_cluster: true,
    };
    rollout(cx, Arc::new(workflow), &args.run, &dir, plan, &lock)
}

/// Re-runs only the validate steps of completed modules and gates: a drift audit. Install
/// steps never run; the results are recorded like any run.
pub fn verify(cx: &Cx, args: &VerifyArgs) -> Result<u8, CliError> {
    let (lock, dir, history, workflow) = open_locked(&args.state, args.run.state_dir.as_deref(), "verify")?;
    let context = args.run.context.clone().or_else(|| workflow.kubernetes.context.clone());
    same_values(&history, &workflow, Some(context.as_deref()), &dir)?;
    let graph = PlanGraph::new(&workflow);
    let decisions = decide(&workflow, &graph, &history);
    let phase = match &args.phase {
        None => None,
        Some(id) => {
            Some(workflow.phases.iter().position(|p| &p.id == id).ok_or_else(|| CliError::Usage {
                message: format!(
                    "no phase `{id}`; known: {}",
                    workflow.phases.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
                ),
            })?)
        }
    };
    for id in &args.nodes {
        if workflow.node(id).is_none() {
            return Err(CliError::Usage { message: format!("no module or gate `{id}`") });
        }
    }
    let selected: Vec<bool> = workflow
        .nodes
        .iter()
        .enumerate()
        .map(|(n, node)| {
            decisions[n].status == NodeStatus::Done
                && !node.validate.is_empty()
                && phase.is_none_or(|p| node.phase == Some(p))
                && (args.nodes.is_empty() || args.nodes.contains(&node.id))
        })
        .collect();
    let count = selected.iter().filter(|s| **s).count();
    if count == 0 {
        errln!("nothing to verify: no completed module or gate matches");
        return Ok(exit::SUCCESS);
    }
    errln!(
        "{} verifying {count} completed node(s) of {}: validate steps only",
        cx.err.bold("⟲"),
        workflow.id
    );
    let plan = Rollout {
        command: "verify",
        selected,
        restart: None,
        done: Vec::new(),
        skip_steps: workflow.nodes.iter().map(|n| n.install.len()).collect(),
        same_cluster: true,
    };
    rollout(cx, Arc::new(workflow), &args.run, &dir, plan, &lock)
}

#[derive(Serialize)]
struct StatusNode<'a> {
    id: &'a str,
    kind: NodeKind,
    phase: Option<&'a str>,
    status: String,
    reason: Option<String>,
    took_secs: Option<f64>,
    planned_secs: u64,
    over_budget: bool,
}

pub fn status(cx: &Cx, args: &StatusArgs) -> Result<u8, CliError> {
    if args.state.workflow.is_some() && super::chosen_environment(args.state.environment.as_deref()).is_none()
    {
        if let Some(code) = environments_overview(cx, args)? {
            return Ok(code);
        }
    }
    let (dir, workflow) = target(&args.state, args.state_dir.as_deref(), "status")?;
    let journals = read_journals(&dir).map_err(|e| CliError::State { message: e.to_string() })?;
    if journals.is_empty() {
        // An environment that has not run yet still has a standing: what it waits for.
        let Some(env) = workflow.environment() else { return Err(no_run(&dir, &workflow)) };
        let standings = vec![promotion::standing(&dir, &workflow, env)];
        if args.json {
            let out = serde_json::json!({ "workflow": workflow.id, "environment": env.name, "environments": standings });
            print(&(serde_json::to_string_pretty(&out).expect("plain data") + "\n"))?;
        } else {
            let p = cx.out;
            let mut out = format!(
                "{} · {} · no run yet\n\n{}\n",
                p.bold(&workflow.id),
                p.bold(&env.name),
                p.bold("Environments")
            );
            out.push_str(&environment_rows(&standings, p));
            print(&out)?;
        }
        return Ok(exit::SUCCESS);
    }
    let history = History::from_journals(&journals);
    same_values(&history, &workflow, None, &dir)?;
    let live = live_run(&dir, &journals, &workflow);
    let graph = PlanGraph::new(&workflow);
    let decisions = decide(&workflow, &graph, &history);
    let mut nodes = Vec::new();
    // Who decided so far on the requests that stand; read only when one does.
    let approved = match history.approvals.is_empty() {
        true => Vec::new(),
        false => super::approval_store(&workflow, &dir)
            .decisions()
            .map_err(|e| CliError::State { message: e.to_string() })?,
    };
    for &n in graph.order() {
        let node = &workflow.nodes[n];
        let last = history.nodes.get(&node.id);
        let pending_rollback = history.pending_rollback().unwrap_or_default();
        let (status, reason) = match &decisions[n].status {
            _ if history.rolled_back.contains(&node.id)
                && history.rolled_back_after.contains_key(&node.id) =>
            {
                (
                    "rolled-back".to_string(),
                    Some(format!("failed ({}), then rolled back", history.rolled_back_after[&node.id])),
                )
            }
            _ if history.rolled_back.contains(&node.id) => (
                "rolled-back".to_string(),
                Some("its rollback passed; apply or resume installs it again".to_string()),
            ),
            _ if pending_rollback.contains(&node.id) => {
                let failure = history
                    .undo
                    .as_ref()
                    .and_then(|u| u.failure(&node.id))
                    .map(|(step, r)| format!("{step}: {r}"));
                (
                    "rolling-back".to_string(),
                    Some(failure.unwrap_or_else(|| {
                        "its rollback has not finished: `milepost resume` goes on with it".into()
                    })),
                )
            }
            NodeStatus::Done if history.skipped_by_condition.contains(&node.id) => (
                "skipped".to_string(),
                node.when.as_ref().map(|w| format!("its condition was false: {}", w.text)),
            ),
            NodeStatus::Done => ("done".to_string(), None),
            // Its last run failed, whatever else makes it run again now (a gate whose phase
            // was rolled back after it failed).
            NodeStatus::Rerun(_) if history.nodes.get(&node.id).is_some_and(|end| !end.outcome.passed()) => {
                // No step failed when it ended otherwise (a rejected approval, an overrun).
                let detail = history
                    .failure(&node.id)
                    .map(|(step, r)| format!("{step}: {r}"))
                    .or_else(|| last.and_then(|end| end.outcome.reason().map(String::from)));
                ("failed".into(), detail)
            }
            NodeStatus::Rerun(why) if why.starts_with("failed") => {
                let detail = history.failure(&node.id).map(|(step, r)| format!("{step}: {r}"));
                ("failed".into(), detail.or(Some(why.clone())))
            }
            NodeStatus::Rerun(_) if history.approvals.contains_key(&node.id) && node.approval.is_some() => {
                ("waiting-approval".into(), Some(waiting_reason(&workflow, n, &history, &approved, args)))
            }
            NodeStatus::Rerun(_)
                if live.as_ref().is_some_and(|(run, _)| {
                    history.in_flight.contains(&node.id)
                        && history.attempts.get(&node.id).is_some_and(|a| &a.last_run == run)
                }) =>
            {
                ("running".into(), live.as_ref().map(|(_, text)| text.clone()))
            }
            NodeStatus::Rerun(why) if why.starts_with("interrupted") => {
                ("interrupted".into(), Some(why.clone()))
            }
            NodeStatus::Rerun(why) => ("changed".into(), Some(why.clone())),
            NodeStatus::Pending => match node.when.as_ref().filter(|_| node.skipped_at_load()) {
                Some(when) => ("skipped".into(), Some(format!("when {} is false", when.text))),
                None => ("pending".into(), None),
            },
        };
        let took = last.map(|r| r.spent);
        nodes.push(StatusNode {
            id: &node.id,
            kind: node.kind,
            phase: workflow.phase_of(n).map(|p| p.id.as_str()),
            status,
            reason,
            took_secs: took.map(|t| t.as_millis() as f64 / 1000.0),
            planned_secs: node.planned.as_secs(),
            over_budget: took.is_some_and(|t| t > node.planned),
        });
    }
    let facts = run_facts(&workflow, &history, &decisions);
    let metrics = facts::evaluate(&workflow, &facts);
    // This environment's row alone: its promotion, in the words of every other row.
    let standings: Vec<_> =
        workflow.environment().map(|env| promotion::standing(&dir, &workflow, env)).into_iter().collect();
    if args.json {
        let out = serde_json::json!({
            "workflow": workflow.id,
            "environment": workflow.environment().map(|e| &e.name),
            "environments": standings,
            "last_run": history.runs.last().map(|r| &r.run_id),
            "nodes": nodes,
            "gates_passed": workflow.gates().filter(|g| history.nodes.get(&g.id).is_some_and(|r| r.outcome.passed())).map(|g| &g.id).collect::<Vec<_>>(),
            "metrics": metrics,
            "facts": facts,
        });
        print(&(serde_json::to_string_pretty(&out).expect("plain data") + "\n"))?;
        return Ok(exit::SUCCESS);
    }
    let p = cx.out;
    let mut out = String::new();
    let last = history.runs.last().expect("open() checked there is a run");
    let env = workflow.environment().map(|e| format!(" · {}", p.bold(&e.name))).unwrap_or_default();
    out.push_str(&format!(
        "{}{env} · last run {} ({}, {})\n\n",
        p.bold(&workflow.id),
        last.run_id,
        last.command,
        last.started_at
    ));
    for node in &nodes {
        let mark = match node.status.as_str() {
            "done" => p.green("✓"),
            "failed" => p.red("✗"),
            "interrupted" | "changed" => p.yellow("↻"),
            "rolled-back" | "rolling-back" => p.yellow("↩"),
            "running" => p.bold("▶"),
            "waiting-approval" => p.yellow("⏸"),
            "skipped" => p.dim("–"),
            _ => p.dim("·"),
        };
        let took = node
            .took_secs
            .map(|t| human(std::time::Duration::from_secs_f64(t)))
            .unwrap_or_else(|| "—".into());
        let budget = format!("{took} of {}", human(std::time::Duration::from_secs(node.planned_secs)));
        let budget = if node.over_budget { p.yellow(&budget) } else { budget };
        let reason = node.reason.as_deref().map(|r| format!("  {}", p.dim(r))).unwrap_or_default();
        out.push_str(&format!(
            "  {mark} {} {} {} {}{reason}\n",
            pad(node.phase.unwrap_or("—"), 4),
            pad(node.id, 28),
            pad(&node.status, 11),
            budget
        ));
    }
    if !metrics.is_empty() {
        out.push_str(&format!("\n{}\n", p.bold("Metrics")));
        for m in &metrics {
            let target = m.target.map(|t| format!(" (target {t})")).unwrap_or_default();
            let line = match (m.value, m.met) {
                (Some(v), Some(true)) => p.green(&format!("{v:.1}{target} met")),
                (Some(v), Some(false)) => p.red(&format!("{v:.1}{target} not met")),
                (Some(v), None) => format!("{v:.1}"),
                (None, _) => p.dim(&format!("n/a: {}", m.error.as_deref().unwrap_or(""))),
            };
            out.push_str(&format!("  {} {line}\n", pad(&m.id, 30)));
        }
    }
    if !standings.is_empty() {
        out.push_str(&format!("\n{}\n", p.bold("Environments")));
        out.push_str(&environment_rows(&standings, p));
    }
    print(&out)?;
    Ok(exit::SUCCESS)
}

/// Who can approve a waiting node, who did so far, and the command to run.
fn waiting_reason(
    workflow: &Workflow,
    n: usize,
    history: &History,
    decisions: &[crate::state::approvals::Decision],
    args: &StatusArgs,
) -> String {
    let node = &workflow.nodes[n];
    let (Some(approval), Some(request)) = (&node.approval, history.approvals.get(&node.id)) else {
        return String::new();
    };
    let asked = crate::exec::approval::Request {
        run_id: request.run_id.clone(),
        source_hash: request.source_hash.clone(),
    };
    let so_far = match crate::state::approvals::tally(
        &node.id,
        &asked,
        approval.required,
        &approval.from,
        decisions,
    ) {
        crate::exec::approval::Verdict::Waiting { approved_by } if !approved_by.is_empty() => {
            format!(" ({} of {} so far: {})", approved_by.len(), approval.required, approved_by.join(", "))
        }
        crate::exec::approval::Verdict::Approved { by } => {
            format!(" (approved by {}: resume goes on)", by.join(", "))
        }
        crate::exec::approval::Verdict::Rejected { by, note } => {
            format!(" (rejected by {by}: {note}; resume records it)")
        }
        _ => String::new(),
    };
    let stale =
        if request.source_hash != node.source_hash { "; its steps changed since it asked" } else { "" };
    let mut words = vec![
        "milepost".to_string(),
        "approve".to_string(),
        node.id.clone(),
        workflow.file.display().to_string(),
    ];
    if let Some(env) = workflow.environment() {
        words.extend(["--env".to_string(), env.name.clone()]);
    }
    if let Some(dir) = &args.state_dir {
        words.extend(["--state-dir".to_string(), dir.display().to_string()]);
    }
    format!(
        "needs approval from {}{so_far}{stale} (request of run {}): {}",
        approval.who(),
        request.run_id,
        shell_words::join(words)
    )
}

/// `status <workflow>` without `--env` for a workflow with environments: one row each.
/// `None` when the workflow declares none (the usual status follows).
fn environments_overview(cx: &Cx, args: &StatusArgs) -> Result<Option<u8>, CliError> {
    let (file, state) = (args.state.workflow.as_ref().expect("checked by the caller"), &args.state);
    // Read as its first environment declares it: the workflow's own values need not make
    // sense alone (a template path chosen by a value only environments set).
    let options = LoadOptions {
        vars: state.vars.clone(),
        vars_files: state.vars_files.clone(),
        env: None,
        environment: None,
        any_environment: true,
    };
    let workflow = load(file, &options).map_err(CliError::Definitions)?.workflow;
    if workflow.environments.is_empty() {
        return Ok(None);
    }
    let root = place::root(args.state_dir.as_deref(), &workflow.dir);
    super::migrate(&root)?;
    // Any folder of the workflow's serves: the rows are read beside it.
    let beside = place::rollout_dir(&root, &workflow.id, &workflow.environments[0].name);
    let standings = promotion::standings(&beside, &workflow);
    if args.json {
        let out = serde_json::json!({ "workflow": workflow.id, "environments": standings });
        print(&(serde_json::to_string_pretty(&out).expect("plain data") + "\n"))?;
        return Ok(Some(exit::SUCCESS));
    }
    let p = cx.out;
    let mut out = format!("{} · {} environments\n\n", p.bold(&workflow.id), workflow.environments.len());
    out.push_str(&environment_rows(&standings, p));
    out.push_str(&format!(
        "\n{}\n",
        p.dim(&format!("one environment's nodes: milepost status {} --env NAME", file.display()))
    ));
    print(&out)?;
    Ok(Some(exit::SUCCESS))
}

/// A row per environment: what passed with today's definition, its last run, and its
/// promotion.
pub(super) fn environment_rows(standings: &[promotion::Standing], p: crate::ui::Palette) -> String {
    let width = standings.iter().map(|s| s.environment.len()).max().unwrap_or(0).max(8);
    let mut out = String::new();
    for s in standings {
        let passed = format!("{}/{} passed with this definition", s.passed, s.nodes);
        let passed = if s.passed == s.nodes { p.green(&passed) } else { passed };
        let last = match &s.last_run {
            None => p.dim("no run yet"),
            Some(r) => {
                let verdict = match r.finished {
                    Some(true) => "complete",
                    Some(false) if r.waiting > 0 => "waiting for approval",
                    Some(false) => "stopped",
                    None => "no end",
                };
                format!("last run {} ({}, {verdict})", r.run_id, r.command)
            }
        };
        out.push_str(&format!("  {} {passed} · {last}\n", pad(&s.environment, width)));
        if let Some(promotion) = &s.promotion {
            let line = match &promotion.missing {
                None => {
                    p.green(&format!("requires {} to pass {}: proven", promotion.requires, promotion.what))
                }
                Some(missing) => p.yellow(&format!("not yet: {missing}")),
            };
            out.push_str(&format!("  {} {line}\n", pad("", width)));
        }
    }
    out
}

/// Refuses to read the runs of this workflow in `dir` as this invocation's when they were
/// made with other `--var`/`--vars-file` values or another Kubernetes context (`context`:
/// `None` when the command does not know it): steps whose text the values do not touch
/// would count as done where they never ran (staging's runs making production skip them).
pub(super) fn same_values(
    history: &History,
    workflow: &Workflow,
    context: Option<Option<&str>>,
    dir: &Path,
) -> Result<(), CliError> {
    let mut differ = Vec::new();
    // Two files with one workflow id share a state folder (the id is the identity): the
    // runs of one must not count for the other. A file that is gone was moved or renamed.
    let last_file = history.runs.iter().rev().find(|r| r.workflow == workflow.id).map(|r| &r.workflow_file);
    if let Some(last_file) = last_file {
        if let (Ok(recorded), Ok(this)) = (Path::new(last_file).canonicalize(), workflow.file.canonicalize())
        {
            if recorded != this {
                return Err(CliError::Usage {
                    message: format!(
                        "the runs in {} are of {}, and this is {}: two files with the workflow id `{}` \
                         share one state. Read as this file's, those runs would count as done what only \
                         the other file ran. Give each file its own workflow id, or make them one file with \
                         environments; `milepost apply {}` (every node) starts this file's rollout anew",
                        dir.display(),
                        recorded.display(),
                        this.display(),
                        workflow.id,
                        shell_words::quote(&this.display().to_string())
                    ),
                });
            }
        }
    }
    let Some((recorded_hash, recorded_context)) = history.identities.get(&workflow.id) else {
        return refuse_if_different(workflow, dir, differ);
    };
    if *recorded_hash != crate::state::vars_hash(workflow) {
        differ.push("the --var/--vars-file values differ".to_string());
    }
    if let Some(now) = context {
        if recorded_context.as_deref() != now {
            let shown = |c: Option<&str>| c.map_or("none".to_string(), |c| format!("`{c}`"));
            differ.push(format!(
                "the Kubernetes context was {}, now {}",
                shown(recorded_context.as_deref()),
                shown(now)
            ));
        }
    }
    refuse_if_different(workflow, dir, differ)
}

fn refuse_if_different(workflow: &Workflow, dir: &Path, differ: Vec<String>) -> Result<(), CliError> {
    if differ.is_empty() {
        return Ok(());
    }
    Err(CliError::Usage {
        message: format!(
            "the runs of {} in {} were made with other values: {}. Read as this rollout's, they would \
             count as done what ran there, not here. Give the same values; values that make another \
             place are an environment of their own (`environment NAME {{ … }}`, docs/definitions.md)",
            workflow.id,
            dir.display(),
            differ.join("; ")
        ),
    })
}

/// The last run's id and "now, in …" when it has no end and its milepost still holds the
/// state directory's lock.
fn live_run(dir: &Path, journals: &Journals, workflow: &Workflow) -> Option<(String, String)> {
    let (_, records) = journals.last()?;
    if records.iter().any(|r| matches!(r, Record::RunEnd { .. })) {
        return None;
    }
    let Some(Record::RunStart { run_id, pid, command, host, .. }) = records.first() else { return None };
    let holding = match &workflow.state {
        // In a cluster: the Lease names the run's process as its live holder.
        Some(state) => crate::state::cluster::Remote::shared(state, None)
            .and_then(|remote| remote.holder())
            .ok()
            .flatten()
            .is_some_and(|(holder, _)| crate::state::cluster::holder_is(&holder, host, *pid)),
        None => lock::holder(dir) == Some(*pid),
    };
    holding
        .then(|| (run_id.clone(), format!("now, in `milepost {command}` run {run_id} (pid {pid} on {host})")))
}

pub fn history(cx: &Cx, args: &HistoryArgs) -> Result<u8, CliError> {
    let (dir, workflow) = target(&args.state, args.state_dir.as_deref(), "history")?;
    let journals = read_journals(&dir).map_err(|e| CliError::State { message: e.to_string() })?;
    let history = History::from_journals(&journals);
    let live = live_run(&dir, &journals, &workflow).map(|(run, _)| run);
    let p = cx.out;
    let mut out = String::new();
    if history.runs.is_empty() {
        out.push_str(&format!("no runs in {}\n", dir.display()));
    }
    // Runs whose cluster lock was taken from their holder end there (docs/state.md §14).
    let broken: std::collections::HashMap<&str, String> = journals
        .iter()
        .filter_map(|(_, records)| {
            let Some(Record::RunStart { run_id, .. }) = records.first() else { return None };
            records.iter().find_map(|r| match r {
                Record::LockBroken { by, forced, at, .. } => Some((
                    run_id.as_str(),
                    format!(
                        "  its lock was taken by {by} at {at}{}\n",
                        if *forced { " (unlock --force)" } else { " (its lease had expired)" }
                    ),
                )),
                _ => None,
            })
        })
        .collect();
    for r in &history.runs {
        let verdict = match r.finished {
            _ if broken.contains_key(r.run_id.as_str()) => p.yellow("fenced  "),
            Some(true) => p.green("complete"),
            Some(false) if r.waiting > 0 => p.yellow("waiting "),
            Some(false) => p.red("stopped "),
            None if live.as_ref() == Some(&r.run_id) => p.bold("running "),
            None => p.yellow("killed? "),
        };
        let took = r.took.map(human).unwrap_or_else(|| "—".into());
        out.push_str(&format!(
            "{} {} {} {verdict} {} passed, {} failed, {} skipped · {took}\n",
            pad(&r.run_id, 30),
            pad(&r.command, 7),
            pad(&r.started_at, 24),
            r.passed,
            r.failed,
            r.skipped
        ));
        if let Some(why) = broken.get(r.run_id.as_str()) {
            out.push_str(why);
        }
    }
    // Requests for approval and the decisions on each, oldest first.
    if !history.requests.is_empty() {
        let decisions = super::approval_store(&workflow, &dir)
            .decisions()
            .map_err(|e| CliError::State { message: e.to_string() })?;
        out.push_str(&format!("\n{}\n", p.bold("Approvals")));
        for request in &history.requests {
            let who = match request.from.as_slice() {
                [] => "anyone".to_string(),
                from => from.join(", "),
            };
            let outcome = request.decided.as_ref().map_or("waiting", |d| d.decision.as_str());
            out.push_str(&format!(
                "  {} asked in run {} at {}: {} of {who} · {outcome}\n",
                request.node, request.run_id, request.at, request.required
            ));
            for d in decisions.iter().filter(|d| d.node == request.node && d.request == request.run_id) {
                let note = d.note.as_deref().map(|n| format!(": {n}")).unwrap_or_default();
                let stale =
                    if d.source_hash != request.source_hash { " (for another definition)" } else { "" };
                out.push_str(&format!(
                    "    {} by {} (groups {}) at {}{stale}{note}\n",
                    d.decision,
                    d.user,
                    d.groups.join(", "),
                    d.at
                ));
            }
        }
    }
    print(&out)?;
    Ok(exit::SUCCESS)
}
