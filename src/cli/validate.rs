//! `milepost validate`: the definitions checked, and a one-screen summary.

use std::io::{IsTerminal, Write};
use std::time::Duration;

use clap::Args;

use super::{exit, print, CliError, Cx, DefinitionArgs};
use crate::graph::PlanGraph;
use crate::spec::values::human;
use crate::spec::{Loaded, NodeKind};
use crate::ui::style::{pad, pad_left};
use crate::ui::Palette;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    definitions: DefinitionArgs,
    /// Only the exit code and errors; no summary.
    #[arg(long, short)]
    quiet: bool,
}

pub fn run(cx: &Cx, args: &ValidateArgs) -> Result<u8, CliError> {
    let loaded = args.definitions.load_definitions()?;
    if !loaded.warnings.is_empty() {
        let width = if std::io::stderr().is_terminal() { crate::ui::terminal_width() } else { 100 };
        let mut text = super::render_diagnostics(&loaded.warnings, cx.err.color, width);
        let n = loaded.warnings.len();
        text.push_str(&format!(
            "{} {n} warning{}\n",
            cx.err.yellow("warning:"),
            if n == 1 { "" } else { "s" }
        ));
        let _ = std::io::stderr().write_all(text.as_bytes());
    }
    if !args.quiet {
        print(&summary(&loaded, cx.out))?;
    }
    Ok(exit::SUCCESS)
}

/// Modules, gates, phases, edges and budgets, aligned.
pub fn summary(loaded: &Loaded, p: Palette) -> String {
    let w = &loaded.workflow;
    let graph = PlanGraph::new(w);
    let sum = |kind: NodeKind, f: fn(&crate::spec::Node) -> Duration| -> Duration {
        w.nodes.iter().filter(|n| n.kind == kind).map(f).sum()
    };
    let module_budget = sum(NodeKind::Module, |n| n.budget);
    let module_planned = sum(NodeKind::Module, |n| n.planned);
    let gate_budget = sum(NodeKind::Gate, |n| n.budget);
    let files = loaded.sources_len();
    let mut out = String::new();
    let title = if w.title.is_empty() { String::new() } else { format!(" — {}", w.title) };
    out.push_str(&format!("{} {}{title}\n", p.green("✓"), p.bold(&w.id)));
    out.push_str(&format!(
        "  {} ({} file{})\n\n",
        crate::spec::source::display_path(&w.file),
        files,
        if files == 1 { "" } else { "s" }
    ));
    let modules = w.modules().count();
    let gates = w.gates().count();
    let phases: Vec<String> = w
        .phases
        .iter()
        .map(|ph| match &ph.title {
            Some(t) => format!("{} {t}", ph.id),
            None => ph.id.clone(),
        })
        .collect();
    let environments: Vec<String> = w
        .environments
        .iter()
        .map(|e| {
            let this = if w.environment().is_some_and(|s| s.name == e.name) { " (this one)" } else { "" };
            match &e.requires {
                Some(r) => format!(
                    "{}{this} ← {} passed {}",
                    e.name,
                    r.environment,
                    crate::state::promotion::describe(w, r)
                ),
                None => format!("{}{this}", e.name),
            }
        })
        .collect();
    let mut rows = vec![
        (
            "modules",
            modules.to_string(),
            format!("budget {} ({} with buffers)", human(module_budget), human(module_planned)),
        ),
        ("gates", gates.to_string(), format!("budget {}", human(gate_budget))),
        ("phases", w.phases.len().to_string(), phases.join(" · ")),
        ("edges", graph.edge_count().to_string(), String::new()),
        ("parallelism", w.parallelism.to_string(), String::new()),
    ];
    if !environments.is_empty() {
        rows.push(("environments", w.environments.len().to_string(), environments.join(" · ")));
    }
    for (label, count, detail) in rows {
        out.push_str(format!("  {} {} {}\n", pad(label, 12), pad_left(&count, 4), p.dim(&detail)).trim_end());
        out.push('\n');
    }
    out.push('\n');
    let header = ["phase", "node", "budget", "buffer", "planned", "after"];
    let mut table: Vec<[String; 6]> = Vec::new();
    // Grouped by phase (in definition order), dependencies first within each.
    let mut rows: Vec<usize> = graph.order().to_vec();
    rows.sort_by_key(|&n| w.nodes[n].phase.unwrap_or(usize::MAX));
    for n in rows {
        let node = &w.nodes[n];
        let phase = w.phase_of(n).map(|ph| ph.id.clone()).unwrap_or_else(|| "—".into());
        let label = match node.kind {
            NodeKind::Module => node.label(),
            NodeKind::Gate => format!("◆ {}", node.id),
        };
        let after: Vec<&str> = node.deps.iter().map(|&d| w.nodes[d].id.as_str()).collect();
        let after = if after.is_empty() { "—".to_string() } else { after.join(", ") };
        let buffer = node.buffer.map(|b| b.to_string()).unwrap_or_else(|| "—".into());
        table.push([phase, label, human(node.budget), buffer, human(node.planned), after]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| table.iter().map(|r| r[c].chars().count()).chain([header[c].len()]).max().unwrap_or(0))
        .collect();
    let line = |cells: [&str; 6], paint: &dyn Fn(&str) -> String| {
        let mut s = String::from("  ");
        for (c, cell) in cells.iter().enumerate() {
            let padded = if (2..5).contains(&c) { pad_left(cell, widths[c]) } else { pad(cell, widths[c]) };
            s.push_str(&paint(&padded));
            s.push_str("  ");
        }
        s.trim_end().to_string() + "\n"
    };
    out.push_str(&line(header, &|s| p.dim(s)));
    for row in &table {
        let cells = [
            row[0].as_str(),
            row[1].as_str(),
            row[2].as_str(),
            row[3].as_str(),
            row[4].as_str(),
            row[5].as_str(),
        ];
        out.push_str(&line(cells, &|s| s.to_string()));
    }
    out.push_str(&conditions(w, p));
    out
}

/// The `when` conditions, with their value when decided at load.
fn conditions(w: &crate::spec::Workflow, p: crate::ui::Palette) -> String {
    let mut lines: Vec<(String, &crate::spec::Condition)> = Vec::new();
    for node in &w.nodes {
        if let Some(when) = &node.when {
            lines.push((node.id.clone(), when));
        }
        for (_, step) in node.steps() {
            if let Some(when) = &step.when {
                lines.push((format!("{} › {}", node.id, step.name), when));
            }
        }
    }
    if lines.is_empty() {
        return String::new();
    }
    let width = lines.iter().map(|(l, _)| l.chars().count()).max().unwrap_or(0);
    let mut out = format!("\n  {}\n", p.dim("conditions"));
    for (label, when) in lines {
        let verdict = match when.known {
            Some(true) => "runs",
            Some(false) => "skipped",
            None => "decided when it would start",
        };
        out.push_str(&format!(
            "  {}  {}  {}\n",
            pad(&label, width),
            when.describe(),
            p.dim(&format!("→ {verdict}"))
        ));
    }
    out
}
