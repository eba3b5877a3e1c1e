//! The HTML report: one self-contained file (inline CSS and SVG, no script, nothing fetched)
//! with the planned and the actual timeline side by side per node. Geometry is computed here;
//! the tera template only lays it out, with HTML escaping on.

use serde::Serialize;
use tera::{Context, Tera};

use super::model::{NodeReport, Report};
use super::seconds;

const TEMPLATE: &str = include_str!("report.html.tera");

/// A bar on a track, in percent of the track's width.
#[derive(Serialize)]
struct Bar {
    left: f64,
    width: f64,
    /// Where budget ends and buffer begins, in percent of the bar.
    budget_share: f64,
    class: String,
    title: String,
}

#[derive(Serialize)]
struct Row<'a> {
    node: &'a NodeReport,
    label: String,
    planned: Bar,
    actual: Vec<Bar>,
    planned_label: String,
    budget_label: String,
    actual_label: String,
}

#[derive(Serialize)]
struct Group<'a> {
    title: String,
    rows: Vec<Row<'a>>,
}

#[derive(Serialize)]
struct Tick {
    left: f64,
    label: String,
}

fn pct(value: f64, of: f64) -> f64 {
    if of <= 0.0 {
        0.0
    } else {
        (value / of * 100.0).clamp(0.0, 100.0)
    }
}

/// Five ticks from zero to `length`.
fn ticks(length: f64) -> Vec<Tick> {
    (0..=4).map(|i| Tick { left: f64::from(i) * 25.0, label: seconds(length * f64::from(i) / 4.0) }).collect()
}

fn row<'a>(report: &Report, node: &'a NodeReport) -> Row<'a> {
    let plan_len = report.plan.finish_secs;
    let actual_len = report.actual_secs.max(0.001);
    let gate = node.kind == crate::spec::NodeKind::Gate;
    let planned = Bar {
        // A gate is a milestone: drawn where its checks are planned to end.
        left: pct(if gate { node.planned_end_secs } else { node.planned_start_secs }, plan_len),
        width: pct(node.planned_end_secs - node.planned_start_secs, plan_len),
        budget_share: pct(node.budget_secs, node.planned_secs.max(node.budget_secs)),
        class: if node.critical { "planned critical".into() } else { "planned".into() },
        title: format!(
            "planned {} → {} (budget {}, with buffer {})",
            seconds(node.planned_start_secs),
            seconds(node.planned_end_secs),
            seconds(node.budget_secs),
            seconds(node.planned_secs)
        ),
    };
    let actual = node
        .attempts
        .iter()
        .map(|a| Bar {
            left: pct(a.start_secs, actual_len),
            // A step that took milliseconds still shows as a sliver.
            width: pct(a.end_secs - a.start_secs, actual_len).max(0.4),
            budget_share: 100.0,
            class: format!(
                "actual {}{}{}",
                a.result,
                if node.over_budget { " over" } else { "" },
                if a.rollback { " rollback" } else { "" }
            ),
            title: format!(
                "{}{} in run {}: {}{}",
                if a.rollback { "rollback " } else { "" },
                a.result,
                a.run_id,
                seconds(a.took_secs),
                a.reason.as_deref().map(|r| format!(" — {r}")).unwrap_or_default()
            ),
        })
        .collect();
    let label = match node.number {
        Some(n) => format!("#{n} {}", node.id),
        None => node.id.clone(),
    };
    let actual_label = node.actual_secs.map(seconds).unwrap_or_else(|| "—".into());
    Row {
        node,
        label,
        planned,
        actual,
        planned_label: seconds(node.planned_secs),
        budget_label: seconds(node.budget_secs),
        actual_label,
    }
}

pub fn render(report: &Report) -> Result<String, String> {
    let mut groups: Vec<Group> = Vec::new();
    for node in &report.nodes {
        let title = match &node.phase {
            Some(id) => {
                let phase = report.phases.iter().find(|p| &p.id == id);
                let name =
                    phase.and_then(|p| p.title.as_deref()).map(|t| format!(" · {t}")).unwrap_or_default();
                format!("Phase {id}{name}")
            }
            None => "Outside any phase".into(),
        };
        match groups.iter_mut().find(|g| g.title == title) {
            Some(g) => g.rows.push(row(report, node)),
            None => groups.push(Group { title, rows: vec![row(report, node)] }),
        }
    }
    let runs: Vec<serde_json::Value> = report
        .runs
        .iter()
        .map(|r| {
            serde_json::json!({
                "run": r,
                "left": pct(r.offset_secs, report.actual_secs.max(0.001)),
                "took": seconds(r.took_secs),
            })
        })
        .collect();
    let failures: Vec<serde_json::Value> = report
        .failed_steps()
        .map(|(n, a, s)| serde_json::json!({ "node": n.id, "run_id": a.run_id, "step": s }))
        .collect();
    let modules_done = report.nodes.iter().filter(|n| n.result == "passed").count();
    let mut context = Context::new();
    context.insert("r", report);
    context.insert("groups", &groups);
    context.insert("runs", &runs);
    context.insert("failures", &failures);
    context.insert("plan_ticks", &ticks(report.plan.finish_secs));
    context.insert("actual_ticks", &ticks(report.actual_secs));
    context.insert("planned_finish", &seconds(report.plan.finish_secs));
    context.insert("actual_total", &seconds(report.actual_secs));
    context.insert("nodes_passed", &modules_done);
    context.insert("critical_path", &report.plan.critical_path.join(" → "));
    let mut tera = Tera::default();
    tera.autoescape_on(vec!["report.html"]);
    tera.add_raw_template("report.html", TEMPLATE).map_err(|e| format!("the report template: {e:?}"))?;
    tera.render("report.html", &context).map_err(|e| format!("rendering the report: {e:?}"))
}
