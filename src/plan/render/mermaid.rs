//! A Mermaid gantt block for GitHub and GitLab markdown.

use std::fmt::Write;

use super::super::build::{NodeStatus, Plan};
use crate::spec::NodeKind;

/// Without `--start`, times are laid on a nominal day so the chart still reads as offsets.
const NOMINAL_START: &str = "2000-01-01 00:00";

pub fn render(plan: &Plan) -> String {
    let w = plan.workflow;
    let mut out = String::from("```mermaid\ngantt\n");
    let title = if w.title.is_empty() { w.id.clone() } else { w.title.clone() };
    let _ = writeln!(out, "    title {}", clean(&title));
    out.push_str("    dateFormat YYYY-MM-DD HH:mm\n");
    out.push_str("    axisFormat %H:%M\n");
    let origin = plan.start.unwrap_or_else(|| NOMINAL_START.parse().expect("a valid constant date"));
    let stamp = |offset: std::time::Duration| -> String {
        let span = jiff::SignedDuration::try_from(offset).unwrap_or_default();
        origin.checked_add(span).unwrap_or(origin).strftime("%Y-%m-%d %H:%M").to_string()
    };
    for (phase, nodes) in plan.rows() {
        let section = match phase {
            Some(i) => {
                let ph = &w.phases[i];
                match &ph.title {
                    Some(t) => format!("{} {t}", ph.id),
                    None => ph.id.clone(),
                }
            }
            None => "Other".to_string(),
        };
        let _ = writeln!(out, "    section {}", clean(&section));
        for n in nodes {
            let node = &w.nodes[n];
            let slot = plan.schedule.slots[n];
            let mut tags = Vec::new();
            match plan.status[n] {
                NodeStatus::Done => tags.push("done"),
                NodeStatus::Rerun(_) => tags.push("active"),
                NodeStatus::Pending => {}
            }
            if plan.is_critical(n) {
                tags.push("crit");
            }
            if node.kind == NodeKind::Gate {
                tags.push("milestone");
            }
            let name = match (node.kind, node.number) {
                (NodeKind::Gate, _) => format!("◆ {}", node.id),
                (_, Some(num)) => format!("{num} · {}", node.id),
                _ => node.id.clone(),
            };
            let minutes = plan.durations[n].as_secs().div_ceil(60);
            tags.push("");
            let tags = tags.join(", ");
            let _ = writeln!(out, "    {} :{tags}n{n}, {}, {minutes}m", clean(&name), stamp(slot.start));
        }
    }
    out.push_str("```\n");
    out
}

/// Mermaid gantt lines break on `:`, `#` and `;`.
fn clean(text: &str) -> String {
    text.chars().map(|c| if matches!(c, ':' | '#' | ';') { ' ' } else { c }).collect()
}
