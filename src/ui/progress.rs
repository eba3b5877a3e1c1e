//! Shows a rollout as it happens. On a terminal: an indicatif view with one line per
//! running node and an overall bar; otherwise (or `--progress plain`): one timestamped line
//! per event, for CI logs; or JSON lines through tracing (`--log-format json`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::Palette;
use crate::exec::{ExecEvent, Outcome};
use crate::spec::values::human;
use crate::spec::{NodeKind, Workflow};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    Auto,
    /// Bars: one line per running node and an overall bar.
    Bars,
    /// One timestamped line per event.
    Plain,
    /// JSON lines through tracing, for machines.
    Json,
}

/// A failed step, kept for the end of the run.
#[derive(Debug, Clone)]
pub struct Failure {
    pub node: String,
    pub step: String,
    pub reason: String,
    pub log: PathBuf,
}

pub struct Reporter<'w> {
    workflow: &'w Workflow,
    palette: Palette,
    mode: ProgressMode,
    multi: Option<MultiProgress>,
    overall: Option<ProgressBar>,
    bars: HashMap<usize, ProgressBar>,
    done: usize,
    total: usize,
    last_tick: Option<(Duration, Duration, Duration)>,
    pub failures: Vec<Failure>,
    /// Plain lines not yet written: everything handled in one wake-up goes out in one write.
    pending: std::cell::RefCell<String>,
    /// The last timestamp shown, by its second: formatting the local time per line cost more
    /// than the line.
    stamp: std::cell::RefCell<(i64, String)>,
}

impl Drop for Reporter<'_> {
    /// Lines handled but not yet written are never lost, however the run ends.
    fn drop(&mut self) {
        self.flush();
    }
}

impl<'w> Reporter<'w> {
    pub fn new(workflow: &'w Workflow, palette: Palette, mode: ProgressMode, is_terminal: bool) -> Self {
        let mode = match mode {
            ProgressMode::Auto if is_terminal => ProgressMode::Bars,
            ProgressMode::Auto => ProgressMode::Plain,
            other => other,
        };
        let multi = (mode == ProgressMode::Bars)
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(8)));
        Self {
            workflow,
            palette,
            mode,
            multi,
            overall: None,
            bars: HashMap::new(),
            done: 0,
            total: 0,
            last_tick: None,
            failures: Vec::new(),
            pending: Default::default(),
            stamp: std::cell::RefCell::new((i64::MIN, String::new())),
        }
    }

    /// Writes the plain lines handled so far; call when no more events are waiting.
    pub fn flush(&self) {
        use std::io::Write;
        let mut pending = self.pending.borrow_mut();
        if !pending.is_empty() {
            let _ = std::io::stderr().lock().write_all(pending.as_bytes());
            pending.clear();
        }
    }

    fn name(&self, node: usize) -> String {
        let n = &self.workflow.nodes[node];
        match n.kind {
            NodeKind::Module => n.label(),
            NodeKind::Gate => format!("◆ {}", n.id),
        }
    }

    /// A line above the bars (or on its own in plain mode).
    fn line(&self, text: String) {
        let now = jiff::Timestamp::now();
        let mut stamp = self.stamp.borrow_mut();
        if stamp.0 != now.as_second() {
            *stamp = (
                now.as_second(),
                now.to_zoned(jiff::tz::TimeZone::system()).strftime("%H:%M:%S").to_string(),
            );
        }
        let text = format!("{} {text}", self.palette.dim(&stamp.1));
        match &self.multi {
            Some(multi) => {
                let _ = multi.println(text);
            }
            None => {
                let mut pending = self.pending.borrow_mut();
                pending.push_str(&text);
                pending.push('\n');
            }
        }
    }

    pub fn handle(&mut self, event: &ExecEvent) {
        if self.mode == ProgressMode::Json {
            self.trace(event);
            return;
        }
        let p = self.palette;
        match event {
            ExecEvent::RunStarted { run_id, nodes, planned_finish } => {
                self.total = *nodes;
                self.line(format!(
                    "{} {} · run {run_id} · {nodes} nodes · plan {}",
                    p.bold("▶"),
                    p.bold(&self.workflow.id),
                    human(*planned_finish)
                ));
                if let Some(multi) = &self.multi {
                    let bar = multi.add(ProgressBar::new(*nodes as u64));
                    bar.set_style(
                        ProgressStyle::with_template(
                            "{prefix:.bold} [{bar:30}] {pos}/{len} nodes · {elapsed_precise} · {msg}",
                        )
                        .expect("a valid template")
                        .progress_chars("█▉ "),
                    );
                    bar.set_prefix("overall");
                    self.overall = Some(bar);
                }
            }
            ExecEvent::NodeStarted { node, steps } => {
                let planned = self.workflow.nodes[*node].planned;
                self.line(format!(
                    "{} {} started · {steps} steps · budget {}",
                    p.cyan("▶"),
                    self.name(*node),
                    human(planned)
                ));
                if let Some(multi) = &self.multi {
                    let bar = multi.insert_before(
                        self.overall.as_ref().expect("created at run start"),
                        ProgressBar::new(*steps as u64),
                    );
                    bar.set_style(
                        ProgressStyle::with_template(
                            "  {spinner} {prefix:32} step {pos}/{len} {msg:40} {elapsed}",
                        )
                        .expect("a valid template"),
                    );
                    bar.set_prefix(crate::ui::style::truncate(&self.name(*node), 32));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars.insert(*node, bar);
                }
            }
            ExecEvent::StepStarted { node, step, attempt, .. } => {
                if let Some(bar) = self.bars.get(node) {
                    let budget = human(self.workflow.nodes[*node].planned);
                    let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    bar.set_message(format!("{step}{again} · budget {budget}"));
                } else if *attempt > 1 {
                    self.line(format!("  {} › {step} attempt {attempt}", self.name(*node)));
                }
            }
            ExecEvent::ProbeRetry { node, step, attempt, reason } => {
                // The first miss, then every tenth: enough to see a probe is alive without flooding CI logs.
                if self.multi.is_none() && (*attempt == 1 || attempt % 10 == 0) {
                    self.line(format!(
                        "  {} › {step} {}",
                        self.name(*node),
                        p.dim(&format!("not yet (attempt {attempt}): {reason}"))
                    ));
                }
            }
            ExecEvent::StepFinished { node, step, outcome, took, log, .. } => {
                if let Some(bar) = self.bars.get(node) {
                    bar.inc(1);
                }
                match outcome {
                    Outcome::Passed => {
                        if self.multi.is_none() {
                            self.line(format!(
                                "  {} {} › {step} {}",
                                p.green("✓"),
                                self.name(*node),
                                p.dim(&human(*took))
                            ));
                        }
                    }
                    failed => {
                        let reason = failed.reason().unwrap_or_default().to_string();
                        self.line(format!(
                            "  {} {} › {step}: {}",
                            p.red("✗"),
                            self.name(*node),
                            p.red(&reason)
                        ));
                        self.failures.push(Failure {
                            node: self.workflow.nodes[*node].id.clone(),
                            step: step.clone(),
                            reason,
                            log: log.clone(),
                        });
                    }
                }
            }
            ExecEvent::StepWarning { node, step, message } => {
                self.line(format!("  {} {} › {step}: {message}", p.yellow("⚠"), self.name(*node)));
            }
            ExecEvent::Overrun { node, planned, fatal } => {
                let what = if *fatal { "stopping it (on-overrun fail)" } else { "still running" };
                self.line(format!(
                    "{} {} ran past its budget of {}; {what}",
                    p.yellow("⚠"),
                    self.name(*node),
                    human(*planned)
                ));
            }
            ExecEvent::NodeFinished { node, outcome, took } => {
                self.done += 1;
                if let Some(bar) = self.bars.remove(node) {
                    bar.finish_and_clear();
                }
                if let Some(overall) = &self.overall {
                    overall.inc(1);
                }
                let planned = self.workflow.nodes[*node].planned;
                let against = format!("{} of {}", human(*took), human(planned));
                let mark = if outcome.passed() { p.green("✓") } else { p.red("✗") };
                let verdict = if outcome.passed() { "passed" } else { "failed" };
                self.line(format!("{mark} {} {verdict} · {against}{}", self.name(*node), self.pace()));
            }
            ExecEvent::NodeSkipped { node, reason } => {
                if !matches!(reason, crate::exec::SkipReason::NotSelected) {
                    self.line(format!("{} {} skipped: {reason}", p.dim("–"), self.name(*node)));
                }
            }
            ExecEvent::Tick { elapsed, projected_finish, planned_finish } => {
                self.last_tick = Some((*elapsed, *projected_finish, *planned_finish));
                if let Some(overall) = &self.overall {
                    overall.set_message(self.pace().trim_start_matches(" · ").to_string());
                }
            }
            ExecEvent::NodeRecorded { .. } | ExecEvent::NodeBegun { .. } => {}
            ExecEvent::RecordFailed { reason } => {
                self.line(format!("{} {reason}; no new nodes start", p.red("✗")));
            }
            ExecEvent::Draining => {
                self.line(format!(
                    "{} interrupted: no new nodes start; running ones finish (Ctrl-C again to terminate them)",
                    p.yellow("⚠")
                ));
            }
            ExecEvent::RunFinished { .. } => {
                if let Some(overall) = self.overall.take() {
                    overall.finish_and_clear();
                }
            }
        }
    }

    /// How far ahead of or behind the plan the rollout is, by its projected finish.
    fn pace(&self) -> String {
        let Some((_, projected, planned)) = self.last_tick else { return String::new() };
        if projected <= planned {
            format!(" · projected {} · {} ahead of plan", human(projected), human(planned - projected))
        } else {
            format!(" · projected {} · {} behind plan", human(projected), human(projected - planned))
        }
    }

    fn trace(&mut self, event: &ExecEvent) {
        let name = |n: &usize| self.workflow.nodes[*n].id.clone();
        match event {
            ExecEvent::RunStarted { run_id, nodes, planned_finish } => {
                tracing::info!(event = "run_started", run = %run_id, nodes, planned_secs = planned_finish.as_secs())
            }
            ExecEvent::NodeStarted { node, steps } => {
                tracing::info!(event = "node_started", node = %name(node), steps)
            }
            ExecEvent::StepStarted { node, step, attempt, .. } => {
                tracing::info!(event = "step_started", node = %name(node), step = %step, attempt)
            }
            ExecEvent::ProbeRetry { node, step, attempt, reason } => {
                tracing::debug!(event = "probe_retry", node = %name(node), step = %step, attempt, reason = %reason)
            }
            ExecEvent::StepFinished { node, step, outcome, took, log, .. } => {
                let reason = outcome.reason().unwrap_or_default();
                if !outcome.passed() {
                    self.failures.push(Failure {
                        node: name(node),
                        step: step.clone(),
                        reason: reason.to_string(),
                        log: log.clone(),
                    });
                }
                tracing::info!(event = "step_finished", node = %name(node), step = %step, passed = outcome.passed(), reason = %reason, took_ms = took.as_millis() as u64, log = %log.display())
            }
            ExecEvent::StepWarning { node, step, message } => {
                tracing::warn!(event = "step_warning", node = %name(node), step = %step, message = %message)
            }
            ExecEvent::Overrun { node, planned, fatal } => {
                tracing::warn!(event = "overrun", node = %name(node), planned_secs = planned.as_secs(), fatal)
            }
            ExecEvent::NodeFinished { node, outcome, took } => {
                tracing::info!(event = "node_finished", node = %name(node), passed = outcome.passed(), took_ms = took.as_millis() as u64)
            }
            ExecEvent::NodeSkipped { node, reason } => {
                tracing::info!(event = "node_skipped", node = %name(node), reason = %reason)
            }
            ExecEvent::Tick { .. } => {}
            ExecEvent::Draining => tracing::warn!(event = "draining"),
            ExecEvent::NodeRecorded { .. } | ExecEvent::NodeBegun { .. } => {}
            ExecEvent::RecordFailed { reason } => tracing::error!(event = "record_failed", reason = %reason),
            ExecEvent::RunFinished { summary } => {
                tracing::info!(
                    event = "run_finished",
                    passed = summary.passed,
                    failed = summary.failed,
                    skipped = summary.skipped,
                    took_ms = summary.took.as_millis() as u64
                )
            }
        }
    }
}
