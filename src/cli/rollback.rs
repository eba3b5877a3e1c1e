//! `milepost rollback`: undo completed modules on purpose, dependents first, with a preview
//! and a confirmation; and the continuation of a rollback that stopped (`resume`).

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use clap::Args;

use super::apply::{rollout, Rollout, RunArgs};
use super::state::{open_locked, same_values, StateArgs};
use super::{exit, CliError, Cx};
use crate::graph::PlanGraph;
use crate::plan::{NodeStatus, Plan, PlanOptions};
use crate::spec::values::human;
use crate::spec::{NodeId, Workflow};
use crate::state::history::History;
use crate::state::lock::StateLock;
use crate::ui::errln;

/// What to roll back: shared by `rollback` and `plan --rollback`.
#[derive(Debug, Args)]
pub struct RollbackSelection {
    /// Roll back everything after this phase: its later phases' modules and gates.
    #[arg(long, value_name = "PHASE", conflicts_with = "phase")]
    pub to: Option<String>,
    /// Roll back this phase's modules and gate.
    #[arg(long = "phase", value_name = "PHASE")]
    pub phase: Option<String>,
    /// Roll back these nodes (repeatable).
    #[arg(long = "only", value_name = "ID")]
    pub only: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    state: StateArgs,
    #[command(flatten)]
    select: RollbackSelection,
    /// Do not ask: for CI and scripts (without a terminal, `rollback` asks for this).
    #[arg(long, short = 'y')]
    yes: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// The nodes `select` names that a rollback would undo: installed (in their current run, and
/// not rolled back since), with rollback steps. In plan order; `skipped` gets the selected
/// nodes left out, and why.
pub fn selection(
    workflow: &Workflow,
    history: &History,
    select: &RollbackSelection,
    skipped: &mut Vec<String>,
) -> Result<Vec<NodeId>, CliError> {
    let phase_index = |id: &str| {
        workflow.phases.iter().position(|p| p.id == id).ok_or_else(|| CliError::Usage {
            message: format!(
                "no phase `{id}`; known: {}",
                workflow.phases.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
    };
    let mut wanted = vec![false; workflow.nodes.len()];
    if let Some(to) = &select.to {
        let last = phase_index(to)?;
        for (n, node) in workflow.nodes.iter().enumerate() {
            wanted[n] = node.phase.is_some_and(|p| p > last);
        }
    }
    if let Some(phase) = &select.phase {
        let p = phase_index(phase)?;
        for (n, node) in workflow.nodes.iter().enumerate() {
            wanted[n] |= node.phase == Some(p);
        }
    }
    for id in &select.only {
        let n = workflow
            .node(id)
            .ok_or_else(|| CliError::Usage { message: format!("no module or gate `{id}`") })?;
        wanted[n] = true;
    }
    if select.to.is_none() && select.phase.is_none() && select.only.is_empty() {
        return Err(CliError::Usage {
            message: "say what to roll back: --to PHASE (everything after it), --phase PHASE or --only ID"
                .into(),
        });
    }
    let mut chosen = Vec::new();
    for n in (0..workflow.nodes.len()).filter(|&n| wanted[n]) {
        let node = &workflow.nodes[n];
        let installed = history.attempts.get(&node.id).is_some_and(|a| a.started || a.completed.is_some());
        if history.rolled_back.contains(&node.id) {
            skipped.push(format!("{} (rolled back already)", node.id));
        } else if !installed {
            skipped.push(format!("{} (not installed)", node.id));
        } else if node.rollback.is_empty() {
            if !node.install.is_empty() {
                skipped.push(format!("{} (no rollback steps)", node.id));
            }
        } else {
            chosen.push(n);
        }
    }
    Ok(chosen)
}

/// The preview: what is undone, in which order, and how long it is planned to take.
pub fn preview(
    workflow: &Workflow,
    chosen: &[NodeId],
    skipped: &[String],
    parallelism: Option<u32>,
) -> String {
    let undo = crate::rollback::undo_workflow(workflow, chosen);
    let graph = PlanGraph::new(&undo);
    let plan = Plan::new(&undo, &PlanOptions { parallelism, ..PlanOptions::default() });
    let mut out = format!(
        "rollback of {} node(s), what was built on them first · planned {}\n",
        chosen.len(),
        human(plan.totals.finish)
    );
    for &n in graph.order() {
        let node = &undo.nodes[n];
        let steps: Vec<&str> = node.install.iter().map(|s| s.name.as_str()).collect();
        out.push_str(&format!("  ↩ {:<28} {:>6}  {}\n", node.label(), human(node.planned), steps.join(", ")));
    }
    if !skipped.is_empty() {
        out.push_str(&format!("  left as they are: {}\n", skipped.join(", ")));
    }
    out
}

pub fn run(cx: &Cx, args: &RollbackArgs) -> Result<u8, CliError> {
    let (lock, dir, history, workflow) = open_locked(&args.state, args.run.state_dir.as_deref(), "rollback")?;
    let context = args.run.context.clone().or_else(|| workflow.kubernetes.context.clone());
    same_values(&history, &workflow, Some(context.as_deref()), &dir)?;
    let mut skipped = Vec::new();
    refuse_while_rolling_back(&history, &workflow, "a new rollback")?;
    let chosen = selection(&workflow, &history, &args.select, &mut skipped)?;
    if chosen.is_empty() {
        let left = if skipped.is_empty() { String::new() } else { format!(": {}", skipped.join(", ")) };
        errln!("nothing to roll back{left}");
        return Ok(exit::SUCCESS);
    }
    errln!("{}", preview(&workflow, &chosen, &skipped, args.run.parallelism));
    let standing = left_standing(&workflow, &history, &chosen);
    if !standing.is_empty() {
        errln!(
            "{} left installed on what this undoes: {} (add them with --only to undo them first)",
            cx.err.yellow("warning:"),
            standing.join(", ")
        );
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            return Err(CliError::Usage {
                message: "not asking without a terminal: add --yes to roll back these nodes".into(),
            });
        }
        eprint!("Roll back {} node(s)? [y/N] ", chosen.len());
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            errln!("nothing was rolled back");
            return Ok(exit::SUCCESS);
        }
    }
    let ids: Vec<String> = chosen.iter().map(|&n| workflow.nodes[n].id.clone()).collect();
    let plan = Rollout::anew("rollback", ids);
    let undo = crate::rollback::undo_workflow(&workflow, &chosen);
    rollout(cx, Arc::new(undo), &args.run, &dir, plan, &lock)
}

/// While a rollback has nodes left, installing some nodes (or undoing others) would break
/// "what was built on a node is undone first": only finishing it (`resume`) or installing
/// everything again (`apply`) is allowed.
pub fn refuse_while_rolling_back(history: &History, workflow: &Workflow, what: &str) -> Result<(), CliError> {
    let Some(pending) = pending_here(history, workflow) else { return Ok(()) };
    Err(CliError::Usage {
        message: format!(
            "a rollback has nodes left to undo ({}); {what} now would install or undo around them. Finish \
             it with `milepost resume`, or install everything again with `milepost apply` (every node)",
            pending.join(", ")
        ),
    })
}

/// The nodes of the pending rollback that the workflow still defines.
fn pending_here(history: &History, workflow: &Workflow) -> Option<Vec<String>> {
    let pending: Vec<String> =
        history.pending_rollback()?.into_iter().filter(|id| workflow.node(id).is_some()).collect();
    (!pending.is_empty()).then_some(pending)
}

/// The installed nodes, outside `chosen`, that stand on a node in it: left installed on
/// something undone.
pub fn left_standing(workflow: &Workflow, history: &History, chosen: &[NodeId]) -> Vec<String> {
    let graph = PlanGraph::new(workflow);
    graph
        .downstream(chosen)
        .into_iter()
        .filter(|n| !chosen.contains(n))
        .map(|n| &workflow.nodes[n].id)
        .filter(|id| {
            history.attempts.get(*id).is_some_and(|a| a.started || a.completed.is_some())
                && !history.rolled_back.contains(*id)
        })
        .cloned()
        .collect()
}

/// `resume` when the last rollback has nodes left: it goes on with the rollback (a killed
/// rollback resumes the rollback, not the install), keeping the rollback steps that passed.
pub fn continue_rollback(
    cx: &Cx,
    workflow: &Workflow,
    history: &History,
    run: &RunArgs,
    dir: &std::path::Path,
    lock: &StateLock,
) -> Option<Result<u8, CliError>> {
    let scope = history.rollback_scope.as_ref()?;
    let p = cx.err;
    if pending_here(history, workflow).is_none() {
        if let Some(gone) = history.pending_rollback() {
            errln!(
                "{} the rollback's remaining nodes are no longer defined ({}): nothing left to undo",
                p.yellow("warning:"),
                gone.join(", ")
            );
        }
        return None;
    }
    let chosen: Vec<NodeId> =
        (0..workflow.nodes.len()).filter(|&n| scope.contains(&workflow.nodes[n].id)).collect();
    for &n in &chosen {
        let node = &workflow.nodes[n];
        if node.rollback.is_empty() && !history.rolled_back.contains(&node.id) {
            errln!(
                "{} {} has no rollback steps any more: it counts as rolled back, nothing undone",
                p.yellow("warning:"),
                node.id
            );
        }
    }
    let undo = crate::rollback::undo_workflow(workflow, &chosen);
    let graph = PlanGraph::new(&undo);
    let empty = History::default();
    let decisions = crate::state::resume::decide(&undo, &graph, history.undo.as_deref().unwrap_or(&empty));
    errln!("{} continuing the rollback of {}", p.bold("↩"), scope.join(", "));
    for (n, d) in decisions.iter().enumerate() {
        match &d.status {
            NodeStatus::Done => errln!("  {} {} rolled back", p.green("✓"), undo.nodes[n].id),
            NodeStatus::Rerun(why) if d.skip_steps > 0 => {
                errln!(
                    "  {} {} goes on: {why} (first {} steps kept)",
                    p.yellow("↩"),
                    undo.nodes[n].id,
                    d.skip_steps
                )
            }
            _ => errln!("  {} {} rolls back", p.dim("·"), undo.nodes[n].id),
        }
    }
    let plan = Rollout {
        command: "rollback",
        selected: Vec::new(),
        restart: None,
        done: decisions.iter().map(|d| d.status == NodeStatus::Done).collect(),
        skip_steps: decisions.iter().map(|d| d.skip_steps).collect(),
        same_cluster: true,
    };
    Some(rollout(cx, Arc::new(undo), run, dir, plan, lock))
}
