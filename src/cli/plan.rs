//! `milepost plan`: the dry-run timeline.

use std::time::Duration;

use clap::Args;
use jiff::civil::DateTime;

use super::{exit, print, CliError, Cx, DefinitionArgs};
use crate::plan::render::{json, mermaid, terminal};
use crate::plan::risk::{self, DEFAULT_SEED, DEFAULT_TRIALS};
use crate::plan::{Plan, PlanOptions};
use crate::spec::values::parse_duration;
use crate::spec::Workflow;
use crate::state::history::History;
use crate::state::resume::decide;
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
    /// Where runs are recorded (default: .milepost beside the workflow). When it holds an
    /// earlier run, the plan shows what `resume` would do: done, re-run, pending.
    #[arg(long, value_name = "DIR")]
    state_dir: Option<std::path::PathBuf>,
    /// Ignore earlier runs: plan the whole rollout from scratch.
    #[arg(long)]
    fresh: bool,
    /// Schedule each node for the median of its recorded actual durations instead of its
    /// budget + buffer, where earlier runs completed it.
    #[arg(long)]
    calibrate: bool,
    /// Random seed for --risk; the same seed gives the same figures.
    #[arg(long, default_value_t = DEFAULT_SEED)]
    seed: u64,
}

pub fn run(cx: &Cx, args: &PlanArgs) -> Result<u8, CliError> {
    let loaded = args.definitions.load()?;
    let (start, deadline) = window(args)?;
    let mut options =
        PlanOptions { parallelism: args.parallelism, start, deadline, ..PlanOptions::default() };
    let workflow = &loaded.workflow;
    let dir = args.state_dir.clone().unwrap_or_else(|| workflow.dir.join(".milepost"));
    if !args.fresh || args.calibrate {
        let history = History::load(&dir).map_err(|e| CliError::State { message: e.to_string() })?;
        if !args.fresh && !history.runs.is_empty() {
            let graph = crate::graph::PlanGraph::new(workflow);
            options.status = decide(workflow, &graph, &history).into_iter().map(|d| d.status).collect();
        }
        if args.calibrate {
            options.durations = Some(calibrated(workflow, &history));
        }
    }
    let plan = Plan::new(&loaded.workflow, &options);
    let risk = args.risk.then(|| risk::assess(&plan, args.trials, args.seed));
    let text = match args.format {
        PlanFormat::Terminal => {
            let opts =
                terminal::TerminalOptions { palette: cx.out, width: terminal_width(), steps: args.steps };
            terminal::render(&plan, risk.as_ref(), opts)
        }
        PlanFormat::Json => json::render(&plan, risk.as_ref(), args.steps),
        PlanFormat::Mermaid => mermaid::render(&plan),
    };
    print(&text);
    Ok(exit::SUCCESS)
}

/// Each node's median recorded duration where it has history, its budget + buffer otherwise.
fn calibrated(workflow: &Workflow, history: &History) -> Vec<(Duration, &'static str)> {
    workflow
        .nodes
        .iter()
        .map(|node| match history.actuals.get(&node.id).and_then(|d| median(d)) {
            Some(m) => (m, "history"),
            None if node.buffer.is_some() => (node.planned, "budget+buffer"),
            None => (node.planned, "budget"),
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
