//! `milepost apply`: the whole rollout, one command.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use clap::Args;

use super::{exit, CliError, Cx, DefinitionArgs};
use crate::exec::{self, preflight, ApplyOptions, ExecEvent, SharedRecorder};
use crate::graph::PlanGraph;
use crate::spec::values::{human, parse_duration};
use crate::spec::{NodeId, Workflow};
use crate::state::definition_hash;
use crate::state::format::{now, ClusterIdentity, Record, FORMAT_VERSION};
use crate::state::journal::Journal;
use crate::state::lock;
use crate::state::recorder::JournalRecorder;
use crate::ui::errln;
use crate::ui::progress::{ProgressMode, Reporter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    definitions: DefinitionArgs,
    /// Run only this phase's modules and gate.
    #[arg(long, value_name = "PHASE")]
    phase: Option<String>,
    /// Run only these nodes (repeatable).
    #[arg(long, value_name = "ID")]
    only: Vec<String>,
    /// Run this node and everything downstream of it.
    #[arg(long, value_name = "ID")]
    from: Option<String>,
    #[command(flatten)]
    run: RunArgs,
}

/// How a rollout runs; shared by `apply` and `resume`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Override the workflow's parallelism.
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u32).range(1..))]
    pub parallelism: Option<u32>,
    /// After a failure, run everything that does not depend on it.
    #[arg(long)]
    pub keep_going: bool,
    /// End of the maintenance window, as a duration from now ("6h"): a node whose planned
    /// end would pass it does not start, and the rollout stops there, resumable.
    #[arg(long)]
    pub deadline: Option<String>,
    /// The state root: a folder per workflow and environment in it (default: .milepost
    /// beside the workflow).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    /// How to show progress.
    #[arg(long, value_enum, default_value_t = ProgressMode::Auto)]
    pub progress: ProgressMode,
    /// `json` writes events as JSON lines (tracing) instead of text.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// The kubeconfig context for `apply` and `wait` steps (default: the workflow's
    /// `kubernetes { context }`, else the kubeconfig's current context).
    #[arg(long, value_name = "NAME")]
    pub context: Option<String>,
    /// Do not wait at a terminal for approvals: leave a node that needs one waiting, run
    /// what does not depend on it, and end with exit code 7 (as without a terminal, or in CI).
    #[arg(long)]
    pub no_wait: bool,
}

impl RunArgs {
    /// Whether a node that needs approval is waited for here: a person at a terminal (stdin
    /// and stderr), not CI, not `--no-wait`. Otherwise nobody could answer, or nobody watches.
    pub fn waits_for_approval(&self) -> bool {
        !self.no_wait
            && std::env::var_os("CI").is_none()
            && std::io::stdin().is_terminal()
            && std::io::stderr().is_terminal()
    }
}

pub fn run(cx: &Cx, args: &ApplyArgs) -> Result<u8, CliError> {
    let loaded = args.definitions.load()?;
    let workflow = Arc::new(loaded.workflow);
    let selected = selection(&workflow, args)?;
    let state_dir = super::rollout_dir(&workflow, args.run.state_dir.as_deref(), "apply")?;
    let lock = take_lock(&workflow, &state_dir, "apply")?;
    // A selective apply keeps the other nodes' runs as they are, for a later resume: they
    // must have been made with these values, or the resume would count them as done here.
    if !selected.is_empty() {
        let history = crate::state::history::History::load(&state_dir)
            .map_err(|e| CliError::State { message: e.to_string() })?;
        let context = args.run.context.clone().or_else(|| workflow.kubernetes.context.clone());
        super::state::same_values(&history, &workflow, Some(context.as_deref()), &state_dir)?;
        super::rollback::refuse_while_rolling_back(&history, &workflow, "a selective apply")?;
    }
    let restart = (!selected.is_empty()).then(|| ids_of(&workflow, &selected));
    let plan = Rollout {
        command: "apply",
        same_cluster: !selected.is_empty(),
        selected,
        restart,
        done: Vec::new(),
        skip_steps: Vec::new(),
    };
    rollout(cx, workflow, &args.run, &state_dir, plan, &lock)
}

/// The state directory's lock, taken before anything is read or decided: two rollouts that
/// start together must not both decide from the same journals. With the state in a
/// cluster, the cluster's lock too, and its runs pulled into the folder.
pub fn take_lock(workflow: &Workflow, state_dir: &Path, command: &str) -> Result<lock::StateLock, CliError> {
    let mut lock = take_local_lock(state_dir, command)?;
    lock.cluster = super::remote::take(workflow, state_dir, command)?;
    Ok(lock)
}

/// The local folder's lock only.
pub fn take_local_lock(state_dir: &Path, command: &str) -> Result<lock::StateLock, CliError> {
    lock::acquire(state_dir, command).map_err(|e| match e {
        held @ lock::LockError::Held { .. } => CliError::Locked { message: held.to_string() },
        other => CliError::State { message: other.to_string() },
    })
}

/// What one invocation runs.
pub struct Rollout {
    pub command: &'static str,
    /// Nodes to run; empty: all.
    pub selected: Vec<bool>,
    /// Nodes started anew, recorded in `run-start` (docs/state.md §8): an apply's selection
    /// (`None`: all), a `resume --from`'s nodes (`None`: none).
    pub restart: Option<Vec<String>>,
    pub done: Vec<bool>,
    pub skip_steps: Vec<usize>,
    /// Whether a cluster other than the one the rollout folder's earlier runs talked to is
    /// refused (it would take what ran there for done here) or only warned about (an apply
    /// of every node, which starts all of them anew).
    pub same_cluster: bool,
}

impl Rollout {
    /// A `command` run of every node of its workflow from the first step, starting
    /// `restart` anew.
    pub fn anew(command: &'static str, restart: Vec<String>) -> Self {
        Rollout {
            command,
            selected: Vec::new(),
            restart: Some(restart),
            done: Vec::new(),
            skip_steps: Vec::new(),
            same_cluster: true,
        }
    }
}

/// The ids of the nodes `flags` marks.
pub fn ids_of(workflow: &Workflow, flags: &[bool]) -> Vec<String> {
    workflow.nodes.iter().zip(flags).filter(|(_, f)| **f).map(|(n, _)| n.id.clone()).collect()
}

/// Preflight, journal, run, report, under the lock the caller took. Shared by `apply`,
/// `resume` and `verify`.
pub fn rollout(
    cx: &Cx,
    workflow: Arc<Workflow>,
    args: &RunArgs,
    state_dir: &Path,
    plan: Rollout,
    lock: &lock::StateLock,
) -> Result<u8, CliError> {
    let p = cx.err;
    // Under the lock, before anything runs: a step an earlier, killed run left running is
    // stopped, so no step runs beside an earlier copy of itself.
    let stopped = exec::orphans::reap(state_dir).map_err(|e| CliError::Locked { message: e.to_string() })?;
    for group in stopped {
        errln!(
            "{} stopped process group {} that run {} left running ({} process(es))",
            p.yellow("warning:"),
            group.pgid,
            group.run,
            group.processes
        );
    }
    let deadline = match &args.deadline {
        None => workflow.environment().and_then(|e| e.deadline),
        Some(text) => Some(parse_duration(text).map_err(|reason| CliError::Usage {
            message: format!("--deadline `{text}` is not a duration such as \"6h\": {reason}"),
        })?),
    };

    let will_run = |i: usize| {
        (plan.selected.is_empty() || plan.selected[i]) && !plan.done.get(i).copied().unwrap_or(false)
    };
    let mut found = preflight::check(&workflow, will_run, &plan.skip_steps);
    // Promotion: what this environment requires another to have passed first.
    if let Some(requirement) = workflow.environment().and_then(|e| e.requires.as_ref()) {
        // What installs needs the promotion; an undo, a handler or a check never waits for it.
        if matches!(plan.command, "apply" | "resume") {
            if let Err(missing) = crate::state::promotion::check_beside(state_dir, &workflow, requirement) {
                found.errors.push(missing);
            }
        }
    }
    // One thread: children, probes and the journal are all I/O; measured faster than two
    // workers, whose wake-ups cost more than the fsyncs they would overlap (bench/compare.py).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| {
        CliError::Io { action: "start the runtime for", path: state_dir.to_path_buf(), source }
    })?;
    let needs_cluster = workflow.nodes.iter().enumerate().any(|(i, node)| {
        // Only steps this invocation runs: verify skips every install step.
        let skip = plan.skip_steps.get(i).copied().unwrap_or(0);
        will_run(i) && node.steps().skip(skip).any(|(_, step)| step.kind.is_kubernetes())
    });
    let mut cluster = None;
    let mut identity = None;
    if needs_cluster {
        let settings = cluster_settings(&workflow, args.context.as_deref());
        match runtime.block_on(crate::cluster::connect(&settings)) {
            Ok(c) => {
                errln!("{}", p.dim(&format!("kubernetes: {} · namespace {}", c.server, c.namespace)));
                let now = ClusterIdentity { server: c.server.clone(), ca_sha256: c.ca_fingerprint.clone() };
                match &crate::state::place::recorded_cluster(state_dir, &workflow.id) {
                    Some(before) if *before != now && plan.same_cluster => found.errors.push(format!(
                        "the runs in {} were made against cluster {before}; this {} would run against {now}. \
                         Read as this rollout's, they would count as done what ran there, not here. Give \
                         the context of that cluster, or give this cluster its own environment",
                        state_dir.display(),
                        plan.command
                    )),
                    Some(before) if *before != now => found.warnings.push(format!(
                        "the earlier runs in {} were made against cluster {before}; this apply runs every \
                         selected node on {now}",
                        state_dir.display()
                    )),
                    _ => {}
                }
                identity = Some(now);
                cluster = Some(Arc::new(c));
            }
            Err(e) => found.errors.push(e.to_string()),
        }
    }
    for w in &found.warnings {
        errln!("{} {w}", p.yellow("warning:"));
    }
    if !found.errors.is_empty() {
        for e in &found.errors {
            errln!("{} {e}", p.red("error:"));
        }
        errln!("{} preflight found {} problem(s); nothing was run", p.red("error:"), found.errors.len());
        return Ok(exit::PREFLIGHT);
    }
    // Only what installs asks for approval: `verify` re-checks what was approved, and undo,
    // handler and `finally` runs serve a rollout that was approved or stopped.
    let approvals = match plan.command {
        "apply" | "resume" if workflow.nodes.iter().any(|n| n.approval.is_some()) => {
            let mut history = crate::state::history::History::load(state_dir)
                .map_err(|e| CliError::State { message: e.to_string() })?;
            // Nodes this run starts anew ask anew: an earlier rollout's request is not theirs.
            let anew: Vec<String> = match (&plan.restart, plan.command) {
                (Some(ids), _) => ids.clone(),
                (None, "apply") => workflow.nodes.iter().map(|n| n.id.clone()).collect(),
                (None, _) => Vec::new(),
            };
            for id in &anew {
                history.approvals.remove(id);
                if let Some(a) = history.attempts.get_mut(id) {
                    a.evidence.clear();
                }
            }
            let store = super::approval_store(&workflow, state_dir);
            // A store that cannot be read stops the run before anything runs, naming it.
            store.decisions().map_err(|e| CliError::State { message: e.to_string() })?;
            Some(Arc::new(crate::state::approvals::StoreApprovals::new(store, &history))
                as Arc<dyn exec::approval::Approvals>)
        }
        _ => None,
    };
    let previous_run = crate::state::history::run_dirs(state_dir)
        .last()
        .and_then(|dir| dir.file_name())
        .map(|name| name.to_string_lossy().into_owned());
    let run_id = new_run_id(previous_run.as_deref());
    let this_run = run_id.clone();
    let start = Record::RunStart {
        format_version: FORMAT_VERSION,
        run_id: run_id.clone(),
        workflow: workflow.id.clone(),
        workflow_file: std::path::absolute(&workflow.file)
            .unwrap_or_else(|_| workflow.file.clone())
            .display()
            .to_string(),
        definition_hash: definition_hash(&workflow),
        started_at: now(),
        pid: std::process::id(),
        host: lock::hostname(),
        command: plan.command.to_string(),
        previous_run,
        restart: plan.restart.clone(),
        vars_hash: Some(crate::state::vars_hash(&workflow)),
        context: args.context.clone().or_else(|| workflow.kubernetes.context.clone()),
        environment: workflow.environment().map(|e| e.name.clone()),
        cluster: identity,
        source_hash: Some(crate::state::source_hash(&workflow)),
    };
    let (run_dir, journal) = Journal::create_run(&state_dir.join("runs"), &run_id, &start)
        .map_err(|e| CliError::State { message: e.to_string() })?;
    let mirror = super::remote::mirror(lock, &run_dir, &run_id);
    let mut recorder = JournalRecorder::new(journal, workflow.clone());
    if let Some(mirror) = &mirror {
        // The run is in the cluster before its first step: a takeover can fence it.
        mirror.push(false).map_err(|message| CliError::State { message })?;
        recorder = recorder.mirrored(mirror.clone());
    }
    let recorder = Arc::new(Mutex::new(recorder));

    let mode = match args.log_format {
        LogFormat::Json => ProgressMode::Json,
        LogFormat::Text => args.progress,
    };
    if mode == ProgressMode::Json {
        // A write error is not reported on stderr: with stderr closed, that report would panic.
        let _ = tracing_subscriber::fmt()
            .json()
            .with_writer(std::io::stderr)
            .with_current_span(false)
            .log_internal_errors(false)
            .try_init();
    }
    let options = ApplyOptions {
        parallelism: args.parallelism.unwrap_or(workflow.parallelism).max(1),
        // A rollback undoes all it can: a failed undo stops only what waits for it.
        keep_going: args.keep_going || plan.command == "rollback",
        selected: plan.selected,
        done: plan.done,
        deadline,
        run_dir: run_dir.clone(),
        run_id,
        skip_steps: plan.skip_steps,
        recorder: Some(recorder.clone() as SharedRecorder),
        cluster,
        guard: Some(Arc::new(exec::orphans::Guard::start(&run_dir))),
        approvals,
        wait_for_approval: args.waits_for_approval(),
    };
    if let Some(window) = deadline {
        // The dispatcher measures the window from its start, a moment from now.
        let at = crate::ui::utc_clock_after(jiff::Timestamp::now(), window);
        if mode == ProgressMode::Json {
            tracing::info!(event = "deadline", window_secs = window.as_secs(), at = %at);
        } else {
            errln!("{}", p.dim(&format!("deadline {} (at {at})", human(window))));
        }
    }
    let mut reporter = Reporter::new(&workflow, p, mode, std::io::stderr().is_terminal());
    reporter.decide_args = decide_args(&workflow, args);
    // Handlers' runs tell nobody: the rollout they follow does.
    let mut notifier = match plan.command {
        "apply" | "resume" | "rollback" => crate::notify::Notifier::start(&workflow, &this_run, deadline),
        _ => None,
    };
    if let Some(n) = notifier.as_mut() {
        n.decide_args = reporter.decide_args.clone();
    }
    let summary = runtime.block_on(async {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let run = tokio::spawn(exec::execute(workflow.clone(), options, tx));
        let tell =
            |reporter: &mut Reporter, notifier: &mut Option<crate::notify::Notifier>, event: &ExecEvent| {
                reporter.handle(event);
                if let Some(n) = notifier.as_mut() {
                    n.event(event);
                }
            };
        while let Some(event) = rx.recv().await {
            tell(&mut reporter, &mut notifier, &event);
            while let Ok(event) = rx.try_recv() {
                tell(&mut reporter, &mut notifier, &event);
            }
            reporter.flush();
        }
        let summary = run.await.unwrap_or_default();
        tell(&mut reporter, &mut notifier, &ExecEvent::RunFinished { summary: summary.clone() });
        reporter.flush();
        summary
    });
    if let Some(notifier) = notifier {
        // A slow endpoint holds the end of the rollout this long at most.
        let sent = notifier.finish(crate::notify::END_WAIT);
        for failure in &sent.failed {
            errln!("{} notification not sent: {failure}", p.yellow("warning:"));
        }
        if sent.unsent > 0 {
            errln!(
                "{} {} notification(s) still sending when the rollout ended: not waited for",
                p.yellow("warning:"),
                sent.unsent
            );
        }
    }
    let end = Record::RunEnd {
        passed: summary.passed,
        failed: summary.failed,
        skipped: summary.skipped,
        interrupted: summary.interrupted,
        deadline: summary.deadline_stop,
        waiting: summary.waiting,
        took_ms: summary.took.as_millis() as u64,
        at: now(),
    };
    let end_recorded = recorder
        .lock()
        .map_err(|_| "the journal writer broke".to_string())
        .and_then(|mut r| r.append(&end, true))
        .and_then(|()| mirror.as_ref().map_or(Ok(()), |m| m.push(true)));

    let stopped = summary.failed > 0 || summary.interrupted || summary.deadline_stop || summary.record_failed;
    // A node left waiting because the decisions could not be read (the store damaged while
    // the run waited) is milepost's trouble, not a person's: "approve, then resume" would
    // not help (the resume refuses the store too). It ends as the store's error does before
    // a run (exit 5, naming the file and line), not as waiting (7).
    let unreadable = match (summary.waiting > 0, plan.command) {
        (true, "apply" | "resume") => super::approval_store(&workflow, state_dir).decisions().err(),
        _ => None,
    };
    if mode == ProgressMode::Json {
        // JSON lines only: the run_finished event already carries the summary.
        for failure in &reporter.failures {
            tracing::error!(event = "failure", node = %failure.node, step = %failure.step, reason = %failure.reason, log = %failure.log.display());
        }
    } else {
        for failure in &reporter.failures {
            errln!("\n{} {} › {}: {}", p.red("✗"), failure.node, failure.step, failure.reason);
            errln!("  log: {}", crate::spec::source::display_path(&failure.log));
            for line in exec::step::log_tail(&failure.log, 20) {
                errln!("  {} {line}", p.dim("│"));
            }
        }
        for (node, by, note) in &reporter.rejected {
            errln!("\n{} {} rejected by {by}: {note}", p.red("✗"), workflow.nodes[*node].id);
        }
        let what = match plan.command {
            "rollback" => "rollback",
            "on-failure" => "on-failure handlers",
            "finally" => "finally",
            _ => "rollout",
        };
        let verdict = match (stopped, summary.waiting > 0) {
            (true, _) => p.red(&format!("{what} stopped")),
            (false, true) => p.yellow(&format!("{what} waiting for approval")),
            (false, false) => p.green(&format!("{what} complete")),
        };
        let waiting = match summary.waiting {
            0 => String::new(),
            n => format!(", {n} waiting for approval"),
        };
        errln!(
            "\n{verdict}: {} passed, {} failed, {} skipped{waiting} in {}",
            summary.passed,
            summary.failed,
            summary.skipped,
            human(summary.took)
        );
        for &node in &reporter.waiting {
            let (approve, reject) = reporter.decide_commands(node);
            let who = workflow.nodes[node].approval.as_ref().map(|a| a.who()).unwrap_or_default();
            errln!("{} {} waits for approval from {who}", p.yellow("⏸"), workflow.nodes[node].id);
            errln!("    approve: {approve}\n    reject:  {reject}");
        }
        if let Some(e) = &unreadable {
            errln!("{} {e}", p.red("error:"));
        } else if !stopped && summary.waiting > 0 {
            errln!("{}", p.dim(&format!("once decided, `{}` goes on", resume_command(&workflow, args))));
        }
        if summary.deadline_stop {
            errln!("the next node would end after the deadline; the rollout stopped before it");
        }
        let resume = resume_command(&workflow, args);
        // Nodes the operator stopped count as failed, but there is no cause to fix.
        let caused = reporter.failures.iter().any(|f| !f.cancelled) || summary.record_failed;
        let hint = if !reporter.rejected.is_empty() && !caused {
            format!("act on the rejection, then `{resume}` runs the checks again and asks anew")
        } else if caused {
            format!("fix the cause, then `{resume}` continues from the failed step")
        } else {
            format!("`{resume}` continues where it stopped")
        };
        // Handlers run once, where they are called: nothing of theirs to resume.
        if stopped && !matches!(plan.command, "on-failure" | "finally") {
            errln!("{}", p.dim(&hint));
        }
    }
    if let Err(message) = end_recorded {
        return Err(CliError::State { message });
    }
    // `on-failure "rollback"`: what the failure leaves is undone now, by a rollback run of
    // its own (journaled and resumable like this one). The rollout still failed.
    let failed_only =
        summary.failed > 0 && !summary.interrupted && !summary.deadline_stop && !summary.record_failed;
    let mut handlers_failed = false;
    // An operator's stop during a handler or the rollback stops what would follow, too.
    let mut stopped_later = false;
    if failed_only && matches!(plan.command, "apply" | "resume") {
        // Read once: the handlers' run changes no node's state.
        let history = crate::state::history::History::load(state_dir)
            .map_err(|e| CliError::State { message: e.to_string() })?;
        let failed = failed_in(&workflow, &history, &this_run);
        // Diagnostics first, while what failed is still there; then the undo.
        match handlers_after_failure(cx, &workflow, args, state_dir, &failed, lock)? {
            Some(exit::INTERRUPTED) => stopped_later = true,
            Some(code) => handlers_failed |= code != exit::SUCCESS,
            None => {}
        }
        if !stopped_later {
            stopped_later = rollback_after_failure(cx, &workflow, args, state_dir, &history, &failed, lock)?
                == Some(exit::INTERRUPTED);
        }
    }
    // `finally`: whatever the outcome, but for an operator's stop; a rollout that waits for
    // approval has not ended (its resume runs it).
    let waits = summary.waiting > 0 && !stopped;
    if matches!(plan.command, "apply" | "resume") && !summary.interrupted && !stopped_later && !waits {
        if let Some(finally) = crate::rollback::finally_workflow(&workflow) {
            errln!("\n{} finally", p.bold("▸"));
            let run = Rollout::anew("finally", Vec::new());
            match rollout(cx, Arc::new(finally), args, state_dir, run, lock)? {
                exit::INTERRUPTED => stopped_later = true,
                code => handlers_failed |= code != exit::SUCCESS,
            }
        }
    }
    Ok(if summary.interrupted || stopped_later {
        exit::INTERRUPTED
    } else if summary.record_failed || unreadable.is_some() {
        exit::IO
    } else if stopped || handlers_failed {
        // A handler's failure is reported where it happened; it never replaces the rollout's.
        exit::FAILED
    } else if summary.waiting > 0 {
        exit::WAITING
    } else {
        exit::SUCCESS
    })
}

/// Runs the `on-failure { … }` diagnostics of the `failed` nodes that have one, as a run of
/// their own; its exit code, `None` when there were none to run.
fn handlers_after_failure(
    cx: &Cx,
    workflow: &Arc<Workflow>,
    args: &RunArgs,
    state_dir: &Path,
    failed: &[NodeId],
    lock: &lock::StateLock,
) -> Result<Option<u8>, CliError> {
    let with_handler: Vec<NodeId> =
        failed.iter().copied().filter(|&n| !workflow.nodes[n].handler.is_empty()).collect();
    if with_handler.is_empty() {
        return Ok(None);
    }
    errln!("\n{} on-failure: {}", cx.err.bold("▸"), ids_at(workflow, &with_handler).join(", "));
    let handlers = Arc::new(crate::rollback::handlers_workflow(workflow, &with_handler));
    let code = rollout(cx, handlers, args, state_dir, Rollout::anew("on-failure", Vec::new()), lock)?;
    Ok(Some(code))
}

/// The ids of `nodes`, in their order.
fn ids_at(workflow: &Workflow, nodes: &[NodeId]) -> Vec<String> {
    nodes.iter().map(|&n| workflow.nodes[n].id.clone()).collect()
}

/// The nodes whose end in run `run_id` is a failure.
fn failed_in(workflow: &Workflow, history: &crate::state::history::History, run_id: &str) -> Vec<NodeId> {
    (0..workflow.nodes.len())
        .filter(|&n| {
            history
                .nodes
                .get(&workflow.nodes[n].id)
                .is_some_and(|end| !end.outcome.passed() && end.run_id == run_id)
        })
        .collect()
}

/// Undoes, by a rollback run, what the `failed` nodes leave under
/// `on-failure "rollback"` ([`crate::rollback::after_failure`]); nothing (`None`) when no
/// failed node asks for it, else the rollback's exit code. Its own failure is reported and
/// never replaces the rollout's.
fn rollback_after_failure(
    cx: &Cx,
    workflow: &Arc<Workflow>,
    args: &RunArgs,
    state_dir: &Path,
    history: &crate::state::history::History,
    failed: &[NodeId],
    lock: &lock::StateLock,
) -> Result<Option<u8>, CliError> {
    let ran = |n: usize| {
        history.attempts.get(&workflow.nodes[n].id).is_some_and(|a| a.started || a.completed.is_some())
            && !history.rolled_back.contains(&workflow.nodes[n].id)
    };
    let undo = crate::rollback::after_failure(workflow, failed, &ran);
    if undo.is_empty() {
        return Ok(None);
    }
    let p = cx.err;
    let ids = ids_at(workflow, &undo);
    errln!(
        "\n{} on-failure rollback: undoing {} (what was built on them first)",
        p.bold("↩"),
        ids.join(", ")
    );
    let plan = Rollout::anew("rollback", ids);
    let code =
        rollout(cx, Arc::new(crate::rollback::undo_workflow(workflow, &undo)), args, state_dir, plan, lock)?;
    if code != exit::SUCCESS {
        errln!("{} the rollback did not finish; the rollout's failure above stands", p.red("error:"));
    } else {
        errln!(
            "{}",
            p.dim("fix the cause, then `milepost resume` installs what was rolled back again and goes on")
        );
    }
    Ok(Some(code))
}

/// The `resume` command that continues this rollout from any folder: the workflow's path
/// (absolute), and the values and places that make it this rollout (secrets are not vars,
/// and never appear).
fn resume_command(workflow: &Workflow, args: &RunArgs) -> String {
    let mut words = vec!["milepost".to_string(), "resume".to_string()];
    words.extend(rollout_words(workflow, args));
    if let Some(context) = &args.context {
        words.extend(["--context".to_string(), context.clone()]);
    }
    shell_words::join(words)
}

/// What follows `milepost approve NODE` (or `reject`) to decide on this rollout from any
/// folder.
fn decide_args(workflow: &Workflow, args: &RunArgs) -> String {
    shell_words::join(rollout_words(workflow, args))
}

/// The words that name this rollout to another command: the workflow's absolute path, its
/// environment, the `--var`s that differ from the file's and the state root.
fn rollout_words(workflow: &Workflow, args: &RunArgs) -> Vec<String> {
    let mut words = vec![std::path::absolute(&workflow.file)
        .unwrap_or_else(|_| workflow.file.clone())
        .display()
        .to_string()];
    if let Some(env) = workflow.environment() {
        words.extend(["--env".to_string(), env.name.clone()]);
    }
    for (name, value) in &workflow.var_overrides {
        words.extend(["--var".to_string(), format!("{name}={value}")]);
    }
    if let Some(dir) = &args.state_dir {
        let dir = std::path::absolute(dir).unwrap_or_else(|_| dir.clone());
        words.extend(["--state-dir".to_string(), dir.display().to_string()]);
    }
    words
}

/// A run id: the UTC start time to the millisecond and the pid. Always later than the
/// newest run's, even if the clock stepped back, so name order stays run order.
fn new_run_id(previous: Option<&str>) -> String {
    const FORMAT: &str = "%Y%m%dT%H%M%S%.3fZ";
    let mut at = jiff::Timestamp::now();
    let previous_at = previous.and_then(|id| {
        let stamp = id.split('-').next()?;
        // `20261126T084715591Z`: the millis have no dot.
        let (seconds, millis) = stamp.strip_suffix('Z')?.split_at_checked(15)?;
        let civil =
            jiff::civil::DateTime::strptime("%Y%m%dT%H%M%S%.3f", format!("{seconds}.{millis}")).ok()?;
        civil.to_zoned(jiff::tz::TimeZone::UTC).ok().map(|z| z.timestamp())
    });
    if let Some(previous_at) = previous_at {
        // Compared as written, to the millisecond.
        if at.as_millisecond() <= previous_at.as_millisecond() {
            at = previous_at + jiff::SignedDuration::from_millis(1);
        }
    }
    at.strftime(FORMAT).to_string().replace('.', "") + &format!("-{}", std::process::id())
}

/// Where to connect: `--context` over the workflow's `kubernetes` block.
pub fn cluster_settings(workflow: &Workflow, context: Option<&str>) -> crate::cluster::Settings {
    crate::cluster::Settings {
        context: context.map(String::from).or_else(|| workflow.kubernetes.context.clone()),
        namespace: workflow.kubernetes.namespace.clone(),
    }
}

/// Which nodes this invocation runs; empty means all.
fn selection(workflow: &Workflow, args: &ApplyArgs) -> Result<Vec<bool>, CliError> {
    let find = |id: &str| {
        workflow.node(id).ok_or_else(|| CliError::Usage {
            message: format!(
                "no module or gate `{id}` in {}; known: {}",
                workflow.id,
                workflow.nodes.iter().map(|n| n.id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })
    };
    let mut selected = vec![false; workflow.nodes.len()];
    let mut any = false;
    if let Some(phase) = &args.phase {
        let ph = workflow.phases.iter().find(|p| &p.id == phase).ok_or_else(|| CliError::Usage {
            message: format!(
                "no phase `{phase}`; known: {}",
                workflow.phases.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
            ),
        })?;
        for &n in ph.modules.iter().chain(&ph.gate) {
            selected[n] = true;
        }
        any = true;
    }
    for id in &args.only {
        selected[find(id)?] = true;
        any = true;
    }
    if let Some(from) = &args.from {
        let graph = PlanGraph::new(workflow);
        for n in graph.downstream(&[find(from)?]) {
            selected[n] = true;
        }
        any = true;
    }
    Ok(if any { selected } else { Vec::new() })
}

#[cfg(test)]
mod tests {
    use super::new_run_id;

    #[test]
    fn run_ids_grow_even_when_the_clock_steps_back() {
        let later = "20991231T235959999Z-7";
        let id = new_run_id(Some(later));
        assert!(id.as_str() > later, "{id}");
        assert!(id.starts_with("21000101T000000000Z-"), "{id}");
        let now = new_run_id(None);
        assert!(new_run_id(Some(&now)) > now);
    }
}
