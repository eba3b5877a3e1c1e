//! The Gantt chart a person reads at a glance: grouped by phase, gates as milestones, the
//! critical path marked, budgets and buffers visible, sized to the terminal.

use std::fmt::Write;
use std::time::Duration;

use super::super::build::{NodeStatus, Plan};
use super::super::risk::Risk;
use crate::spec::values::human;
use crate::spec::{NodeId, NodeKind, Stage};
use crate::ui::style::{pad, pad_left, truncate, width};
use crate::ui::Palette;

/// How to draw.
#[derive(Debug, Clone, Copy)]
pub struct TerminalOptions {
    pub palette: Palette,
    /// Total columns available.
    pub width: usize,
    /// List each node's rendered steps under it.
    pub steps: bool,
    /// The moment the plan is shown: a plan without a start tells the deadline's clock time
    /// as if started then.
    pub now: Option<jiff::Timestamp>,
}

const LABEL_COLS: usize = 30;

pub fn render(plan: &Plan, risk: Option<&Risk>, opts: TerminalOptions) -> String {
    let p = opts.palette;
    let w = plan.workflow;
    let mut out = String::new();
    let title = if w.title.is_empty() { String::new() } else { format!(" — {}", w.title) };
    let _ = writeln!(out, "{}{title}", p.bold(&w.id));
    let start = plan.start.map(|s| format!(" · start {}", s.strftime("%Y-%m-%d %H:%M"))).unwrap_or_default();
    let resumed = plan.status.iter().filter(|s| **s == NodeStatus::Done).count();
    let resumed = if resumed > 0 { format!(" · {resumed} done, resuming") } else { String::new() };
    let _ = writeln!(out, "{}\n", p.dim(&format!("parallelism {}{start}{resumed}", plan.parallelism)));

    let time_cols = if plan.start.is_some() { 11 } else { 7 };
    let left = 2 + LABEL_COLS + 1 + time_cols + 1 + 6 + 2;
    let bar_cols = opts.width.saturating_sub(left + 1).max(20);
    let finish = plan.totals.finish.max(Duration::from_secs(1));
    let col = |t: Duration| -> usize {
        ((t.as_secs_f64() / finish.as_secs_f64()) * bar_cols as f64).round() as usize
    };
    let _ = writeln!(out, "{}{}", " ".repeat(left), p.dim(&axis(finish, bar_cols)));

    for (phase, nodes) in plan.rows() {
        let heading = match phase {
            Some(i) => {
                let ph = &w.phases[i];
                let title = ph.title.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
                let span = plan.phases[i]
                    .map(|s| {
                        format!("  {} → {}  ({})", at(plan, s.start), at(plan, s.end), human(s.end - s.start))
                    })
                    .unwrap_or_default();
                format!("{}{title}{}", p.bold(&format!("Phase {}", ph.id)), p.dim(&span))
            }
            None => p.bold("Outside any phase"),
        };
        let _ = writeln!(out, "{heading}");
        for n in nodes {
            out.push_str(&row(plan, n, bar_cols, &col, time_cols, p));
            if opts.steps {
                out.push_str(&steps(plan, n, p));
            }
        }
        out.push('\n');
    }

    let mut legend = format!(
        "{} critical path   {} budget   {} buffer   {} gate   {} slack",
        p.red("★"),
        "█",
        "▒",
        "◆",
        "·"
    );
    // Said only where a node asks: the plan's time does not include a person's.
    if plan.workflow.nodes.iter().any(|n| n.approval.is_some()) {
        legend.push_str("   ⏸ asks for approval (waiting not planned)");
    }
    let _ = writeln!(out, "  {}\n", p.dim(&legend));

    let t = &plan.totals;
    let unlimited = if plan.cpm.length == t.finish {
        String::new()
    } else {
        format!(" (unlimited parallelism: {})", human(plan.cpm.length))
    };
    let saving_pct = if t.sequential.is_zero() {
        0.0
    } else {
        t.saving.as_secs_f64() / t.sequential.as_secs_f64() * 100.0
    };
    let lines = [
        ("finish", human(t.finish), format!("with parallelism {}{unlimited}", plan.parallelism)),
        (
            "sequential",
            human(t.sequential),
            format!("modules {} + gates {}", human(t.modules), human(t.gates)),
        ),
        ("saving", human(t.saving), format!("{saving_pct:.0}% by running independent nodes in parallel")),
    ];
    for (label, value, detail) in lines {
        let _ = writeln!(out, "  {} {}  {}", pad(label, 14), p.bold(&pad_left(&value, 7)), p.dim(&detail));
    }
    if let Some(end) = plan.clock(t.finish) {
        let _ =
            writeln!(out, "  {} {}", pad("ends", 14), p.bold(&end.strftime("%Y-%m-%d %H:%M").to_string()));
    }
    if plan.sources.contains(&"history") {
        out.push_str(&calibration(plan, p));
    }
    let path: Vec<String> = plan.cpm.path.iter().map(|&n| node_name(plan, n)).collect();
    let _ = writeln!(out, "  {} {}", pad("critical path", 14), p.red(&path.join(" → ")));
    for group in plan.overlaps() {
        let names: Vec<String> = group.iter().map(|&n| node_name(plan, n)).collect();
        let _ = writeln!(out, "  {} {}", pad("in parallel", 14), names.join(" ∥ "));
    }
    for (n, status) in plan.status.iter().enumerate() {
        if let NodeStatus::Rerun(why) = status {
            let _ = writeln!(out, "  {} {} runs again: {why}", pad("resume", 14), node_name(plan, n));
        }
    }
    for (n, node) in w.nodes.iter().enumerate() {
        if let Some(when) = node.when.as_ref().filter(|_| node.skipped_at_load()) {
            let _ = writeln!(out, "  {} {} (when {})", pad("skipped", 14), node_name(plan, n), when.text);
        }
    }
    if let Some(d) = plan.deadline {
        out.push_str(&deadline(plan, d, opts));
    }
    if let Some(risk) = risk {
        out.push_str(&risk_lines(plan, risk, p));
    }
    out
}

/// Which durations came from history and which from budgets, as `plan --calibrate` promises.
fn calibration(plan: &Plan, p: Palette) -> String {
    let pick = |source: &str| -> Vec<String> {
        (0..plan.sources.len())
            .filter(|&n| {
                plan.sources[n] == source || (source == "budget" && plan.sources[n] == "budget+buffer")
            })
            .map(|n| node_name(plan, n))
            .collect()
    };
    let (measured, budgeted) = (pick("history"), pick("budget"));
    let mut out = format!(
        "  {} {}\n",
        pad("calibrated", 14),
        p.dim(&format!("~ median of recorded runs: {}", measured.join(", ")))
    );
    if !budgeted.is_empty() {
        let _ = writeln!(
            out,
            "  {} {}",
            pad("", 14),
            p.dim(&format!("budget, no history: {}", budgeted.join(", ")))
        );
    }
    out
}

/// Durations under a minute to a tenth of a second: calibrated nodes often take seconds.
fn human_short(d: Duration) -> String {
    if d < Duration::from_secs(60) {
        format!("{:.1}s", d.as_secs_f64())
    } else {
        human(d)
    }
}

fn node_name(plan: &Plan, n: NodeId) -> String {
    let node = &plan.workflow.nodes[n];
    match node.kind {
        NodeKind::Module => node.label(),
        NodeKind::Gate => format!("◆ {}", node.id),
    }
}

/// An offset as `+5h24m`, or a clock time when the plan has a start.
fn at(plan: &Plan, offset: Duration) -> String {
    match plan.clock(offset) {
        Some(clock) => clock.strftime("%m-%d %H:%M").to_string(),
        None => format!("+{}", human(offset)),
    }
}

fn row(
    plan: &Plan,
    n: NodeId,
    bar_cols: usize,
    col: &dyn Fn(Duration) -> usize,
    time_cols: usize,
    p: Palette,
) -> String {
    let node = &plan.workflow.nodes[n];
    let slot = plan.schedule.slots[n];
    let critical = plan.is_critical(n);
    let marker = if critical { p.red("★") } else { " ".to_string() };
    let status = match &plan.status[n] {
        NodeStatus::Done => " ✓",
        NodeStatus::Rerun(_) => " ↻",
        NodeStatus::Pending => "",
    };
    let asks = if node.approval.is_some() { " ⏸" } else { "" };
    let label = truncate(&format!("{}{status}{asks}", node_name(plan, n)), LABEL_COLS);
    let duration = match (&plan.status[n], plan.sources[n]) {
        (NodeStatus::Done, _) => "done".to_string(),
        (_, "skipped") => "skip".to_string(),
        // `~`: measured in earlier runs, not the team's budget.
        (_, "history") => format!("~{}", human_short(plan.durations[n])),
        _ => human(plan.durations[n]),
    };
    let mut bar = vec![' '; bar_cols + 1];
    let (s, e) = (col(slot.start), col(slot.end).max(col(slot.start) + 1).min(bar_cols));
    match node.kind {
        NodeKind::Gate => {
            let at = e.saturating_sub(1).max(s).min(bar_cols.saturating_sub(1));
            bar[at] = '◆';
        }
        NodeKind::Module if plan.status[n] == NodeStatus::Done || node.skipped_at_load() => {}
        NodeKind::Module => {
            let budget_share = if plan.durations[n].is_zero() {
                1.0
            } else {
                (node.budget.as_secs_f64() / plan.durations[n].as_secs_f64()).min(1.0)
            };
            let split = s + (((e - s) as f64) * budget_share).round() as usize;
            for (i, c) in bar.iter_mut().enumerate().take(e).skip(s) {
                *c = if i < split.max(s + 1) { '█' } else { '▒' };
            }
        }
    }
    let slack = plan.cpm.slack[n];
    if !slack.is_zero() && plan.status[n] != NodeStatus::Done {
        let until = col(slot.end + slack).min(bar_cols);
        for c in bar.iter_mut().take(until).skip(e) {
            if *c == ' ' {
                *c = '·';
            }
        }
    }
    let bar: String = bar.into_iter().collect::<String>().trim_end().to_string();
    let painted = if critical {
        p.red(&bar)
    } else if node.kind == NodeKind::Gate {
        p.magenta(&bar)
    } else {
        p.cyan(&bar)
    };
    format!(
        "{marker} {} {} {} │{painted}\n",
        pad(&label, LABEL_COLS),
        pad_left(&at(plan, slot.start), time_cols),
        pad_left(&duration, 6),
    )
}

fn steps(plan: &Plan, n: NodeId, p: Palette) -> String {
    let node = &plan.workflow.nodes[n];
    let mut out = String::new();
    if let Some(when) = &node.when {
        let verdict = match when.known {
            Some(false) => format!("skipped (when {})", when.text),
            Some(true) => "runs".to_string(),
            None => "decided when it would start".to_string(),
        };
        let _ = writeln!(out, "      {} {}", p.dim(&when.describe()), p.dim(&format!("→ {verdict}")));
    }
    for (stage, step) in node.steps() {
        let stage = match stage {
            Stage::Install => "install ",
            Stage::Validate => "validate",
        };
        let mut timeout = step.timeout.map(|t| format!("  (timeout {})", human(t))).unwrap_or_default();
        if let Some(when) = &step.when {
            match when.known {
                Some(false) => timeout.push_str(&format!("  skipped (when {})", when.text)),
                _ => timeout.push_str(&format!("  {}", when.describe())),
            }
        }
        let _ = writeln!(
            out,
            "      {} {} {} {}{}",
            p.dim(stage),
            pad(step.kind.name(), 8),
            pad(&step.name, 20),
            step.kind.summary(),
            p.dim(&timeout)
        );
    }
    out
}

/// Hour marks along the bar area, spaced so labels never touch.
fn axis(finish: Duration, cols: usize) -> String {
    let hours = finish.as_secs_f64() / 3600.0;
    let candidates = [0.25, 0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 12.0, 24.0, 48.0, 168.0];
    let step = candidates.iter().copied().find(|s| (hours / s) * 8.0 <= cols as f64).unwrap_or(168.0);
    let mut line = vec![' '; cols + 8];
    let mut t = 0.0;
    while t <= hours + 1e-9 {
        let c = ((t / hours.max(1e-9)) * cols as f64).round() as usize;
        let label = human(Duration::from_secs_f64(t * 3600.0));
        let label = if label == "0s" { "0h".to_string() } else { label };
        if c + width(&label) <= line.len() && line[c..c + width(&label)].iter().all(|&x| x == ' ') {
            line[c] = '╵';
            for (i, ch) in label.chars().enumerate() {
                if c + 1 + i < line.len() {
                    line[c + 1 + i] = ch;
                }
            }
        }
        t += step;
    }
    line.into_iter().collect::<String>().trim_end().to_string()
}

fn deadline(plan: &Plan, d: super::super::build::DeadlineCheck, opts: TerminalOptions) -> String {
    let p = opts.palette;
    let window = human(d.window);
    // The window's end on the clock: from the start when there is one, else from now.
    let end = match (plan.clock(d.window), opts.now) {
        (Some(end), _) => Some(end.strftime("%Y-%m-%d %H:%M").to_string()),
        (None, Some(now)) => Some(format!("{} if started now", crate::ui::utc_clock_after(now, d.window))),
        (None, None) => None,
    };
    let clock = end.map(|end| format!(" (at {end})")).unwrap_or_default();
    match d.first_late {
        None => format!(
            "  {} {}{clock}  {}\n",
            pad("deadline", 14),
            p.green(&pad_left(&window, 7)),
            p.dim(&format!("fits, {} to spare", human(d.window - plan.totals.finish)))
        ),
        Some(n) => {
            let slot = plan.schedule.slots[n];
            format!(
                "  {} {}{clock}  {}\n",
                pad("deadline", 14),
                p.red(&pad_left(&window, 7)),
                p.red(&format!(
                    "{} cannot finish inside the window (ends {}); the plan overruns it by {}",
                    node_name(plan, n),
                    at(plan, slot.end),
                    human(d.overrun)
                ))
            )
        }
    }
}

fn risk_lines(plan: &Plan, risk: &Risk, p: Palette) -> String {
    let w = plan.workflow;
    let mut out = String::new();
    let _ = writeln!(out, "\n{}", p.bold("Risk"));
    let product: Vec<String> = risk.factors.iter().map(|(_, pr)| format!("{pr:.2}")).collect();
    let _ = writeln!(
        out,
        "  {} {}  {}",
        pad("first time", 14),
        p.bold(&pad_left(&format!("{:.1}%", risk.first_time * 100.0), 7)),
        p.dim("every remaining node passes on its first attempt")
    );
    let _ = writeln!(out, "  {} {} = {:.4}", pad("", 14), product.join(" × "), risk.first_time);
    let weakest = risk.factors.iter().min_by(|a, b| a.1.total_cmp(&b.1));
    if let Some(&(n, pr)) = weakest {
        let _ = writeln!(out, "  {} {} ({:.0}%)", pad("weakest", 14), w.nodes[n].label(), pr * 100.0);
    }
    let _ = writeln!(
        out,
        "  {} {}  {}",
        pad("P50 finish", 14),
        p.bold(&pad_left(&human(round_minute(risk.p50)), 7)),
        p.dim(&format!("Monte Carlo, {} trials, seed {}", risk.trials, risk.seed))
    );
    let _ =
        writeln!(out, "  {} {}", pad("P90 finish", 14), p.bold(&pad_left(&human(round_minute(risk.p90)), 7)));
    if let Some(share) = risk.within_deadline {
        let _ = writeln!(out, "  {} {:.0}% of trials finish inside the deadline", pad("", 14), share * 100.0);
    }
    out
}

pub fn round_minute(d: Duration) -> Duration {
    Duration::from_secs((d.as_secs_f64() / 60.0).round() as u64 * 60)
}
