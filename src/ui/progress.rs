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
    /// Stopped by the operator (Ctrl-C twice, SIGTERM), not failed: nothing to fix.
    pub cancelled: bool,
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
    /// What follows `milepost approve NODE` to decide on this rollout: the workflow file and
    /// the values and places that make it this rollout (set by the CLI, which knows them).
    pub decide_args: String,
    /// Nodes left waiting for approval, in the order they stopped.
    pub waiting: Vec<usize>,
    /// Nodes whose approval was rejected: who, and their note.
    pub rejected: Vec<(usize, String, String)>,
}

impl Drop for Reporter<'_> {
    /// Lines handled but not yet written are never lost, and no bar is left on the screen,
    /// however the run ends.
    fn drop(&mut self) {
        self.clear_bars();
        self.flush();
    }
}

/// A bar template with `{took}`: time since the bar started, in the one duration format
/// every other line uses (`2s`, `1m30s`), not indicatif's `00:00:02`.
fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template).expect("a valid template").with_key(
        "took",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = w.write_str(&human(state.elapsed()));
        },
    )
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
            decide_args: String::new(),
            waiting: Vec::new(),
            rejected: Vec::new(),
        }
    }

    /// The commands that decide on `node`'s approval.
    pub fn decide_commands(&self, node: usize) -> (String, String) {
        let id = shell_words::quote(&self.workflow.nodes[node].id).into_owned();
        (
            format!("milepost approve {id} {}", self.decide_args),
            format!("milepost reject {id} {} --note \"why\"", self.decide_args),
        )
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
                        style("{prefix:.bold} [{bar:30}] {pos}/{len} nodes · {took} · {msg}")
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
                    // `{pos}` is the running step's place (1-based), set as each step starts.
                    bar.set_style(style("  {spinner} {prefix:32} step {pos}/{len} {msg:40} {took}"));
                    bar.set_prefix(crate::ui::style::truncate(&self.name(*node), 32));
                    bar.enable_steady_tick(Duration::from_millis(120));
                    self.bars.insert(*node, bar);
                }
            }
            ExecEvent::StepStarted { node, index, step, attempt, .. } => {
                if let Some(bar) = self.bars.get(node) {
                    bar.set_position(*index as u64 + 1);
                    let budget = human(self.workflow.nodes[*node].planned);
                    let again = if *attempt > 1 { format!(" (attempt {attempt})") } else { String::new() };
                    bar.set_message(format!("{step}{again} · budget {budget}"));
                } else if *attempt > 1 {
                    self.line(format!("  {} › {step} attempt {attempt}", self.name(*node)));
                }
            }
            ExecEvent::StepSkipped { node, step, when, .. } => {
                if self.multi.is_none() {
                    self.line(format!(
                        "  {} {} › {step} skipped: when {when} is false",
                        p.dim("–"),
                        self.name(*node)
                    ));
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
            ExecEvent::StepFinished { node, step, outcome, took, log, .. } => match outcome {
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
                    self.line(format!("  {} {} › {step}: {}", p.red("✗"), self.name(*node), p.red(&reason)));
                    self.failures.push(Failure {
                        node: self.workflow.nodes[*node].id.clone(),
                        step: step.clone(),
                        reason,
                        log: log.clone(),
                        cancelled: matches!(failed, Outcome::Cancelled { .. }),
                    });
                }
            },
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
            // "skipped" is said only of the nodes the run's `skipped` count includes (docs/state.md,
            // run-end): a node done in an earlier run is kept, not skipped.
            ExecEvent::NodeSkipped { node, reason } => match reason {
                crate::exec::SkipReason::NotSelected => {}
                crate::exec::SkipReason::AlreadyDone => {
                    self.line(format!("{} {} kept: {reason}", p.dim("–"), self.name(*node)));
                }
                _ => self.line(format!("{} {} skipped: {reason}", p.dim("–"), self.name(*node))),
            },
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
            ExecEvent::RunFinished { .. } => self.clear_bars(),
            ExecEvent::ApprovalRequested { node, .. } => {
                self.line(format!("{} {} asks for approval", p.yellow("⏸"), self.name(*node)));
            }
            ExecEvent::ApprovalWaiting { node, approval, approved_by, waits } => {
                let (approve, reject) = self.decide_commands(*node);
                let so_far = match approved_by.as_slice() {
                    [] => String::new(),
                    by => format!(" ({} of {} so far: {})", by.len(), approval.required, by.join(", ")),
                };
                let how = if *waits { "waiting; Ctrl-C stops the wait (resumable)" } else { "left waiting" };
                self.line(format!(
                    "{} {} needs approval from {}{so_far}; {how}\n    approve: {approve}\n    reject:  {reject}",
                    p.yellow("⏸"),
                    self.name(*node),
                    approval.who()
                ));
            }
            ExecEvent::ApprovalDecided { node, by, note, .. } => match note {
                None => self.line(format!(
                    "  {} {} approved by {}",
                    p.green("✓"),
                    self.name(*node),
                    by.join(", ")
                )),
                Some(note) => {
                    self.rejected.push((*node, by.join(", "), note.clone()));
                    self.line(format!(
                        "  {} {} rejected by {}: {note}",
                        p.red("✗"),
                        self.name(*node),
                        by.join(", ")
                    ))
                }
            },
            ExecEvent::ApprovalNote { node, message } => {
                self.line(format!("  {} {}: {message}", p.yellow("⚠"), self.name(*node)));
            }
            ExecEvent::NodeWaiting { node } => {
                if let Some(bar) = self.bars.remove(node) {
                    bar.finish_and_clear();
                }
                self.waiting.push(*node);
                self.line(format!("{} {} waiting for approval", p.yellow("⏸"), self.name(*node)));
            }
        }
    }

    /// Takes every bar off the screen: nodes a Ctrl-C stopped may not have ended theirs.
    fn clear_bars(&mut self) {
        for (_, bar) in self.bars.drain() {
            bar.finish_and_clear();
        }
        if let Some(overall) = self.overall.take() {
            overall.finish_and_clear();
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
            ExecEvent::StepSkipped { node, step, when, .. } => {
                tracing::info!(event = "step_skipped", node = %name(node), step = %step, when = %when)
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
                        cancelled: matches!(outcome, Outcome::Cancelled { .. }),
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
                    waiting = summary.waiting,
                    took_ms = summary.took.as_millis() as u64
                )
            }
            ExecEvent::ApprovalRequested { node, approval, .. } => {
                tracing::info!(event = "approval_requested", node = %name(node), required = approval.required, from = %approval.from.join(","))
            }
            ExecEvent::ApprovalWaiting { node, approval, approved_by, waits } => {
                let (approve, reject) = self.decide_commands(*node);
                tracing::info!(event = "approval_waiting", node = %name(node), who = %approval.who(), approved = approved_by.len(), waits, approve = %approve, reject = %reject)
            }
            ExecEvent::ApprovalDecided { node, by, note, .. } => {
                tracing::info!(event = "approval_decided", node = %name(node), by = %by.join(","), rejected = note.is_some(), note = %note.as_deref().unwrap_or(""))
            }
            ExecEvent::ApprovalNote { node, message } => {
                tracing::warn!(event = "approval_note", node = %name(node), message = %message)
            }
            ExecEvent::NodeWaiting { node } => {
                self.waiting.push(*node);
                tracing::info!(event = "node_waiting", node = %name(node))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exec::RunSummary;
    use crate::spec::Stage;
    use crate::testing::workflow_from;

    fn reporter(w: &Workflow) -> Reporter<'_> {
        let mut r = Reporter::new(w, Palette::PLAIN, ProgressMode::Bars, true);
        r.handle(&ExecEvent::RunStarted {
            run_id: "r".into(),
            nodes: 1,
            planned_finish: Duration::from_secs(3),
        });
        r.handle(&ExecEvent::NodeStarted { node: 0, steps: 3 });
        r
    }

    fn step(index: usize, name: &str) -> ExecEvent {
        ExecEvent::StepStarted {
            node: 0,
            index,
            stage: Stage::Install,
            step: name.into(),
            attempt: 1,
            log: PathBuf::from("l"),
        }
    }

    /// Issue 15 item 6: the bar shows the running step's place, not how many finished
    /// ("step 0/3 build" while build ran).
    #[test]
    fn the_node_bar_counts_the_running_step() {
        let w = workflow_from(
            r#"workflow w {}
            module a { budget "1m"; install { run build "true"; run push "true"; run roll "true" } }"#,
        );
        let mut r = reporter(&w);
        r.handle(&step(0, "build"));
        assert_eq!(r.bars[&0].position(), 1);
        r.handle(&step(1, "push"));
        assert_eq!(r.bars[&0].position(), 2);
        assert_eq!(r.bars[&0].length(), Some(3));
    }

    /// Issue 15 item 6: a run that ends with a node's bar still up (Ctrl-C) clears it.
    #[test]
    fn the_run_end_clears_every_bar() {
        let w = workflow_from(
            r#"workflow w {}
            module a { budget "1m"; install { run build "true" } }"#,
        );
        let mut r = reporter(&w);
        let bar = r.bars[&0].clone();
        r.handle(&ExecEvent::RunFinished { summary: RunSummary { interrupted: true, ..Default::default() } });
        assert!(bar.is_finished() && r.bars.is_empty() && r.overall.is_none());
    }

    /// Issue 15 item 6: the console says "skipped" only of nodes the `skipped` count
    /// includes; a resume's done nodes are kept.
    #[test]
    fn done_nodes_are_kept_not_skipped() {
        use crate::exec::SkipReason;
        let w = workflow_from(
            r#"workflow w {}
            module a { budget "1m"; install { run build "true" } }
            module b { budget "1m"; after a; install { run build "true" } }"#,
        );
        let mut r = Reporter::new(&w, Palette::PLAIN, ProgressMode::Plain, false);
        r.handle(&ExecEvent::NodeSkipped { node: 0, reason: SkipReason::AlreadyDone });
        r.handle(&ExecEvent::NodeSkipped { node: 1, reason: SkipReason::Stopped });
        let text = std::mem::take(&mut *r.pending.borrow_mut());
        let lines: Vec<&str> = text.lines().map(|l| l.split_once(' ').unwrap().1).collect();
        assert_eq!(lines, ["– a kept: done in an earlier run", "– b skipped: the rollout stopped"]);
    }

    /// What a bar drew last, as a terminal would show it.
    #[derive(Debug, Default, Clone)]
    struct Screen(std::sync::Arc<std::sync::Mutex<String>>);

    impl indicatif::TermLike for Screen {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            if !s.trim().is_empty() {
                *self.0.lock().unwrap() = s.trim_end().to_string();
            }
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Issue 15 item 6: bars show durations the way every line does, not `00:00:02`, and
    /// rounded (1803ms is `2s`).
    #[test]
    fn bars_show_durations_like_every_line() {
        let screen = Screen::default();
        let bar =
            ProgressBar::with_draw_target(Some(3), ProgressDrawTarget::term_like(Box::new(screen.clone())))
                .with_style(style("step {pos}/{len} · {took}"));
        bar.set_elapsed(Duration::from_millis(1_803));
        bar.set_position(1);
        bar.force_draw();
        assert_eq!(*screen.0.lock().unwrap(), "step 1/3 · 2s");
    }
}
