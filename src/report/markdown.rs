//! Markdown: a summary fit for a pull request or a change ticket — the verdict first, then
//! budgets, checkpoints, metrics and what failed.

use std::fmt::Write;

use super::model::Report;
use super::seconds;

fn mark(result: &str) -> &'static str {
    match result {
        "passed" | "complete" | "approved" => "✅",
        "failed" | "timed-out" | "rejected" => "❌",
        "interrupted" | "killed" | "deadline" | "cancelled" | "skipped" | "rollback-failed" => "⚠️",
        "rolled-back" => "↩️",
        _ => "⏸️",
    }
}

/// `|` would end a table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// Free text people wrote (a note, a user name) as literal Markdown: every character that
/// could start emphasis, a link, raw HTML or a code span is escaped, so a note reads as
/// written and cannot change the report around it.
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' | '|' | '!' | '~' | '&' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let title = if report.workflow.title.is_empty() { &report.workflow.id } else { &report.workflow.title };
    let _ = writeln!(out, "## {} {title} — {}\n", mark(&report.outcome), report.outcome);
    let runs: Vec<String> = report
        .runs
        .iter()
        .map(|r| format!("{} {} ({})", r.command, r.outcome, seconds(r.took_secs)))
        .collect();
    let passed = report.nodes.iter().filter(|n| n.result == "passed").count();
    let _ = writeln!(
        out,
        "`{}` · {passed}/{} nodes passed · actual {} over {} run(s): {} · planned {} (budget + buffer, parallelism {})\n",
        report.workflow.id,
        report.nodes.len(),
        seconds(report.actual_secs),
        report.runs.len(),
        runs.join(", "),
        seconds(report.plan.finish_secs),
        report.plan.parallelism,
    );
    let _ = writeln!(out, "Critical path: {}\n", report.plan.critical_path.join(" → "));

    out.push_str("| Phase | Node | Budget (+buffer) | Actual | Attempts | Result |\n");
    out.push_str("|---|---|---|---|---|---|\n");
    for n in &report.nodes {
        let label = match n.number {
            Some(num) => format!("#{num} {}", n.id),
            None => n.id.clone(),
        };
        let actual = match n.actual_secs {
            Some(a) if n.over_budget => format!("**{} over**", seconds(a)),
            Some(a) => seconds(a),
            None => "—".into(),
        };
        let _ = writeln!(
            out,
            "| {} | {}{} | {} ({}) | {actual} | {} | {} {} |",
            n.phase.as_deref().unwrap_or("—"),
            if n.critical { "★ " } else { "" },
            cell(&label),
            seconds(n.budget_secs),
            seconds(n.planned_secs),
            n.attempts.len(),
            mark(&n.result),
            n.result
        );
    }

    out.push_str("\n### Checkpoints\n\n");
    for p in &report.phases {
        let result = p.gate_result.as_deref().unwrap_or("no gate");
        let gate = p.gate.as_deref().unwrap_or("—");
        let _ = writeln!(out, "- {} **{}** gate `{gate}`: {result}", mark(result), p.id);
    }

    let asked: Vec<_> = report.nodes.iter().flat_map(|n| n.approvals.iter().map(move |a| (n, a))).collect();
    if !asked.is_empty() {
        out.push_str("\n### Approvals\n");
        for (n, a) in asked {
            let from = if a.from.is_empty() { "anyone".to_string() } else { a.from.join(", ") };
            let _ = writeln!(
                out,
                "\n- {} **{}** asked in run `{}` at {} ({} of {}): {}",
                mark(&a.outcome),
                n.id,
                a.run_id,
                a.requested_at,
                a.required,
                cell(&from),
                a.outcome
            );
            for d in &a.decisions {
                let note = d.note.as_deref().map(|t| format!(": {}", plain(t))).unwrap_or_default();
                let _ = writeln!(out, "  - {} by {} at {}{note}", d.decision, plain(&d.user), d.at);
            }
        }
    }

    if !report.metrics.is_empty() {
        out.push_str("\n### Success metrics\n\n| Metric | Value | Target | |\n|---|---|---|---|\n");
        for m in &report.metrics {
            let value = m.value.map(|v| format!("{v:.2}")).unwrap_or_else(|| "n/a".into());
            let target = m.target.map(|t| t.to_string()).unwrap_or_else(|| "—".into());
            let verdict = match (m.met, &m.error) {
                (Some(true), _) => "✅ met".to_string(),
                (Some(false), _) => "❌ not met".to_string(),
                (None, Some(e)) => cell(e),
                (None, None) => String::new(),
            };
            let _ = writeln!(out, "| {} | {value} | {target} | {verdict} |", m.id);
        }
    }

    if !report.environments.is_empty() {
        out.push_str("\n### Environments\n\n| Environment | Passed with this definition | Last run | Promotion |\n|---|---|---|---|\n");
        for e in &report.environments {
            let last =
                e.last_run.as_ref().map_or("—".to_string(), |r| format!("`{}` {}", r.run_id, r.command));
            let promotion = match &e.promotion {
                None => "—".to_string(),
                Some(p) if p.missing.is_none() => format!("✅ {} passed {}", p.requires, p.what),
                Some(p) => format!("❌ {}", cell(p.missing.as_deref().unwrap_or_default())),
            };
            let this = if report.environment.as_deref() == Some(e.environment.as_str()) {
                " (this report)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "| {}{this} | {}/{} | {last} | {promotion} |",
                e.environment, e.passed, e.nodes
            );
        }
    }

    let _ = writeln!(
        out,
        "\nValidations: {} of {} tries passed.",
        report.validations.passed, report.validations.ran
    );

    let failed: Vec<_> = report.failed_steps().collect();
    if !failed.is_empty() {
        out.push_str("\n### Failed steps\n");
        for (n, a, s) in failed {
            let _ = writeln!(
                out,
                "\n- **{}** · `{}` ({} {}) in run `{}`: {}\n  log: `{}`",
                n.id,
                s.name,
                s.stage_name(),
                s.kind,
                a.run_id,
                s.reason.as_deref().unwrap_or(&s.result),
                s.log
            );
            if !s.log_tail.is_empty() {
                let _ = writeln!(out, "\n  ```\n  {}\n  ```", s.log_tail.join("\n  "));
            }
        }
    }
    out
}

#[cfg(test)]
mod plain_tests {
    use super::plain;

    #[test]
    fn notes_and_names_are_literal_text() {
        assert_eq!(plain("ok, ship it"), "ok, ship it");
        assert_eq!(plain("<script>x</script>"), "\\<script\\>x\\</script\\>");
        assert_eq!(plain("**no** [link](http://x)"), "\\*\\*no\\*\\* \\[link\\](http://x)");
        assert_eq!(plain("a`b"), "a\\`b");
        assert_eq!(plain("two\nlines"), "two lines");
    }
}
