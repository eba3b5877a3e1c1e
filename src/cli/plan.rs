//! `milepost plan`: the dry-run timeline.

use std::time::Duration;

use clap::Args;
use jiff::civil::DateTime;

use super::{exit, print, CliError, Cx, DefinitionArgs};
use crate::cluster::apply::{self, ApplyOptions};
use crate::plan::render::{json, mermaid, terminal};
use crate::plan::risk::{self, DEFAULT_SEED, DEFAULT_TRIALS};
use crate::plan::{NodeStatus, Plan, PlanOptions};
use crate::spec::values::parse_duration;
use crate::spec::{StepKind, Workflow};
use crate::state::history::History;
use crate::state::resume::decide;
use crate::ui::errln;
use crate::ui::terminal_width;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum PlanFormat {
    Terminal,
    Json,
    Mermaid,
}

#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    definitions: DefinitionArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = PlanFormat::Terminal)]
    format: PlanFormat,
    /// Override the workflow's parallelism.
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u32).range(1..))]
    parallelism: Option<u32>,
    /// List each node's rendered steps: exact commands, URLs, manifests (secrets masked).
    #[arg(long)]
    steps: bool,
    /// Clock time of the start, e.g. "2026-12-01 09:00"; shows clock times.
    #[arg(long, value_parser = parse_datetime)]
    start: Option<DateTime>,
    /// The window's end: a duration from the start ("18h") or a clock time.
    #[arg(long)]
    deadline: Option<String>,
    /// First-time success probability and Monte Carlo P50/P90 finish.
    #[arg(long)]
    risk: bool,
    /// Monte Carlo trials for --risk.
    #[arg(long, default_value_t = DEFAULT_TRIALS)]
    trials: u32,
    /// The state root (default: .milepost beside the workflow). When it holds an earlier
    /// run of this workflow and environment, the plan shows what `resume` would do.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Ignore earlier runs: plan the whole rollout from scratch.
    #[arg(long)]
    fresh: bool,
    /// Schedule each node for the median of its recorded actual durations instead of its
    /// budget + buffer, where earlier runs completed it.
    #[arg(long)]
    calibrate: bool,
    /// Dry-run every `apply` step against the live cluster (server-side): which objects would
    /// be created, changed or left unchanged. Nothing is stored.
    #[arg(long)]
    server: bool,
    /// The kubeconfig context for --server (default: the workflow's, else the current one).
    #[arg(long, value_name = "NAME")]
    context: Option<String>,
    /// Preview a rollback instead (with --to, --phase or --only): what would be undone, in
    /// which order, and the time it is planned to take.
    #[arg(long)]
    rollback: bool,
    #[command(flatten)]
    undo: super::rollback::RollbackSelection,
    /// Random seed for --risk; the same seed gives the same figures.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
}

pub fn run(cx: &Cx, args: &PlanArgs) -> Result<u8, CliError> {
    let loaded = args.definitions.load()?;
    let undo = &args.undo;
    if !args.rollback && (undo.to.is_some() || undo.phase.is_some() || !undo.only.is_empty()) {
        return Err(CliError::Usage {
            message: "--to, --phase and --only preview a rollback: add --rollback".into(),
        });
    }
    if args.rollback {
        let workflow = &loaded.workflow;
        let dir = super::rollout_dir(workflow, args.state_dir.as_deref(), "plan")?;
        let history = History::load(&dir).map_err(|e| CliError::State { message: e.to_string() })?;
        let mut skipped = Vec::new();
        let chosen = super::rollback::selection(workflow, &history, undo, &mut skipped)?;
        if chosen.is_empty() {
            let left = if skipped.is_empty() { String::new() } else { format!(": {}", skipped.join(", ")) };
            print(&format!("nothing to roll back{left}\n"))?;
        } else {
            print(&super::rollback::preview(workflow, &chosen, &skipped, args.parallelism))?;
        }
        return Ok(exit::SUCCESS);
    }
    let (start, deadline) = window(args)?;
    let mut options =
        PlanOptions { parallelism: args.parallelism, start, deadline, ..PlanOptions::default() };
    let workflow = &loaded.workflow;
    // Without --env, a workflow with environments has no state to read: the preview is a
    // fresh rollout with the workflow's own values.
    let no_environment = workflow.environment.is_none() && !workflow.environments.is_empty();
    if no_environment {
        errln!(
            "{}",
            cx.err.dim(&format!(
                "no --env: a fresh rollout with the workflow's own values; environments: {}",
                workflow.environment_names().join(", ")
            ))
        );
    }
    let mut promotion = None;
    // The rollout's last run, when the plan is resume-aware.
    let mut last_run = None;
    if !no_environment && (!args.fresh || args.calibrate) {
        let dir = super::rollout_dir(workflow, args.state_dir.as_deref(), "plan")?;
        promotion =
            workflow.environment().and_then(|env| crate::state::promotion::promotion(&dir, workflow, env));
        let history = History::load(&dir).map_err(|e| CliError::State { message: e.to_string() })?;
        if !args.fresh && !history.runs.is_empty() {
            last_run =
                history.runs.iter().rev().find(|r| r.workflow == workflow.id).map(|r| r.run_id.clone());
            match super::state::same_values(&history, workflow, None, &dir) {
                Ok(()) => {
                    let graph = crate::graph::PlanGraph::new(workflow);
                    options.status =
                        decide(workflow, &graph, &history).into_iter().map(|d| d.status).collect();
                }
                // A preview still helps: the whole plan, as a new rollout with these values.
                Err(e) => errln!("{} {e}; showing a new rollout", cx.err.yellow("warning:")),
            }
        }
        if args.calibrate {
            options.durations = Some(calibrated(workflow, &history));
        }
    }
    if let (PlanFormat::Terminal, Some(run)) = (args.format, &last_run) {
        if !options.status.is_empty() && options.status.iter().all(|s| *s == NodeStatus::Done) {
            print(&(nothing_to_do(workflow, run, args, cx) + &promotion_line(promotion.as_ref(), cx)))?;
            return Ok(exit::SUCCESS);
        }
    }
    let plan = Plan::new(&loaded.workflow, &options);
    let risk = args.risk.then(|| risk::assess(&plan, args.trials, args.seed));
    let server = if args.server { Some(server_dry_run(cx, &plan, args.context.as_deref())?) } else { None };
    let text = match args.format {
        PlanFormat::Terminal => {
            let opts = terminal::TerminalOptions {
                palette: cx.out,
                width: terminal_width(),
                steps: args.steps,
                now: Some(jiff::Timestamp::now()),
            };
            let mut text = terminal::render(&plan, risk.as_ref(), opts);
            if let Some(server) = &server {
                text.push_str(&server_text(server, cx));
            }
            text.push_str(&promotion_line(promotion.as_ref(), cx));
            text
        }
        PlanFormat::Json => {
            let text = json::render(&plan, risk.as_ref(), args.steps);
            if server.is_none() && promotion.is_none() {
                text
            } else {
                let mut value: serde_json::Value = serde_json::from_str(&text).expect("plan JSON parses");
                if let Some(server) = &server {
                    value["server"] = serde_json::to_value(server).expect("plain data");
                }
                if let Some(promotion) = &promotion {
                    value["promotion"] = serde_json::to_value(promotion).expect("plain data");
                }
                serde_json::to_string_pretty(&value).expect("plain data") + "\n"
            }
        }
        PlanFormat::Mermaid => mermaid::render(&plan),
    };
    print(&text)?;
    Ok(exit::SUCCESS)
}

/// The plan's last line for an environment that requires another: proven, or what is missing.
fn promotion_line(promotion: Option<&crate::state::promotion::Promotion>, cx: &Cx) -> String {
    let Some(p) = promotion else { return String::new() };
    let line = match &p.missing {
        None => {
            cx.out.green(&format!("✓ promotion: {} has passed {} with this definition", p.requires, p.what))
        }
        Some(missing) => cx.out.yellow(&format!("✗ promotion: {missing}")),
    };
    format!("\n{line}\n")
}

/// What `plan` says instead of a chart of zeros when the last rollout did everything.
fn nothing_to_do(workflow: &Workflow, run: &str, args: &PlanArgs, cx: &Cx) -> String {
    let p = cx.out;
    // The commands as they would be typed: the same file and values (another value is
    // another rollout, which `status` refuses to mix up).
    let command = |words: &[&str], state_dir: bool| {
        let mut words: Vec<String> = words.iter().map(|w| w.to_string()).collect();
        words.insert(2, crate::spec::source::display_path(&args.definitions.workflow));
        if let Some(env) = workflow.environment() {
            words.extend(["--env".to_string(), env.name.clone()]);
        }
        for (name, value) in &workflow.var_overrides {
            words.extend(["--var".to_string(), format!("{name}={value}")]);
        }
        if let (true, Some(dir)) = (state_dir, &args.state_dir) {
            words.extend(["--state-dir".to_string(), dir.display().to_string()]);
        }
        shell_words::join(words)
    };
    format!(
        "{} nothing to do: every node of {} is done (last run {run})\n{}\n",
        p.green("✓"),
        p.bold(&workflow.id),
        p.dim(&format!(
            "  `{}` previews a new rollout from scratch; `{}` shows the last one",
            command(&["milepost", "plan", "--fresh"], false),
            command(&["milepost", "status"], true),
        ))
    )
}

/// One `apply` step's dry run: the objects and what would happen to each, or why it cannot tell.
#[derive(Debug, serde::Serialize)]
struct ServerStep {
    node: String,
    step: String,
    objects: Vec<String>,
    error: Option<String>,
}

/// The server-side dry run of every `apply` step still to run, in plan order.
fn server_dry_run(cx: &Cx, plan: &Plan, context: Option<&str>) -> Result<Vec<ServerStep>, CliError> {
    let workflow = plan.workflow;
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| {
        CliError::Io { action: "start the runtime for", path: workflow.file.clone(), source }
    })?;
    let settings = super::apply::cluster_settings(workflow, context);
    let cluster = runtime
        .block_on(crate::cluster::connect(&settings))
        .map_err(|e| CliError::Preflight { message: e.to_string() })?;
    errln!("{}", cx.err.dim(&format!("server-side dry run against {}", cluster.server)));
    // The API server quotes objects back in its answers: mask secrets as apply steps do.
    let secrets = workflow.secret_values();
    let mask = |text: &str| crate::template::mask(text, &secrets);
    let mut steps = Vec::new();
    for &n in plan.graph.order() {
        if plan.status[n] == crate::plan::NodeStatus::Done {
            continue;
        }
        let node = &workflow.nodes[n];
        for (_, step) in node.steps() {
            let StepKind::Apply { path, namespace, force, manifests } = &step.kind else { continue };
            let mut lines = Vec::new();
            let result = crate::exec::kubernetes::documents(path, manifests).and_then(|documents| {
                let field_manager = apply::field_manager(&node.id, &step.name);
                let options = ApplyOptions {
                    namespace: namespace.as_deref(),
                    force: *force,
                    dry_run: true,
                    field_manager: &field_manager,
                };
                let mut log = |line: &str| lines.push(line.to_string());
                runtime.block_on(apply::apply(&cluster, &documents, options, &mut log)).map_err(|e| e.reason)
            });
            steps.push(ServerStep {
                node: node.label(),
                step: step.name.clone(),
                objects: lines.iter().map(|l| mask(l)).collect(),
                error: result.err().map(|e| mask(&e)),
            });
        }
    }
    Ok(steps)
}

fn server_text(steps: &[ServerStep], cx: &Cx) -> String {
    let p = cx.out;
    let mut out = format!("\n{}\n", p.bold("Against the cluster (server-side dry run; nothing stored)"));
    if steps.is_empty() {
        out.push_str("  no apply step left to run\n");
    }
    for s in steps {
        out.push_str(&format!("  {} › {}\n", s.node, s.step));
        for line in &s.objects {
            let painted = if line.starts_with("unchanged") { p.dim(line) } else { p.yellow(line) };
            out.push_str(&format!("    {painted}\n"));
        }
        if let Some(e) = &s.error {
            out.push_str(&format!("    {} {e}\n", p.red("cannot tell:")));
        }
    }
    out
}

/// Each node's median recorded duration where it has history with today's steps, its
/// budget + buffer otherwise. A budget change keeps the history; a step change drops it.
fn calibrated(workflow: &Workflow, history: &History) -> Vec<(Duration, &'static str)> {
    workflow
        .nodes
        .iter()
        .map(|node| {
            let steps: Vec<String> = node.steps().map(|(_, s)| crate::state::step_hash(node, s)).collect();
            let same_steps: Vec<Duration> = history
                .actuals
                .get(&node.id)
                .into_iter()
                .flatten()
                .filter(|a| a.step_hashes == steps)
                .map(|a| a.took)
                .collect();
            match median(&same_steps) {
                Some(m) => (m, "history"),
                None if node.buffer.is_some() => (node.planned, "budget+buffer"),
                None => (node.planned, "budget"),
            }
        })
        .collect()
}

/// The middle value; the mean of the two middle ones for an even count.
fn median(durations: &[Duration]) -> Option<Duration> {
    let mut sorted = durations.to_vec();
    sorted.sort();
    let mid = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => Some(sorted[mid]),
        _ => Some((sorted[mid - 1] + sorted[mid]) / 2),
    }
}

/// The start (if any) and the deadline as a window from it.
fn window(args: &PlanArgs) -> Result<(Option<DateTime>, Option<Duration>), CliError> {
    let Some(text) = &args.deadline else { return Ok((args.start, None)) };
    if let Ok(d) = parse_duration(text) {
        return Ok((args.start, Some(d)));
    }
    let end = parse_datetime(text).map_err(|reason| CliError::Usage {
        message: format!(
            "--deadline `{text}` is neither a duration (\"18h\") nor a time (\"2026-12-01 18:00\"): {reason}"
        ),
    })?;
    let start = args.start.unwrap_or_else(|| jiff::Zoned::now().datetime());
    let window = start.duration_until(end);
    let window = Duration::try_from(window).map_err(|_| CliError::Usage {
        message: format!("--deadline {text} is before the start {}", start.strftime("%Y-%m-%d %H:%M")),
    })?;
    Ok((Some(start), Some(window)))
}

/// `2026-12-01 09:00`, `2026-12-01T09:00`, with or without seconds.
pub fn parse_datetime(text: &str) -> Result<DateTime, String> {
    let normalized = text.trim().replacen(' ', "T", 1);
    normalized.parse::<DateTime>().map_err(|e| format!("expected \"YYYY-MM-DD HH:MM\" ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        let s = Duration::from_secs;
        assert_eq!(median(&[s(5), s(1), s(3)]), Some(s(3)));
        assert_eq!(median(&[s(4), s(1), s(3), s(2)]), Some(Duration::from_millis(2500)));
        assert_eq!(median(&[]), None);
    }
}
