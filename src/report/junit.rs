//! JUnit XML: each module and gate a test suite, each validate step a test case, each gate a
//! test case of its own, so CI systems list a rollout's validations natively. A step's result
//! is its last run in the rollout (a step that `resume` kept keeps its earlier result). An
//! install step that failed in a node's last attempt is a failing case too.

use std::collections::BTreeMap;
use std::io;

use quick_xml::events::{BytesDecl, BytesText, Event};
use quick_xml::Writer;

use super::model::{NodeReport, Report, StepReport};
use crate::spec::{NodeKind, Stage};

/// A test case's verdict.
enum Verdict<'a> {
    Passed,
    Failed { kind: &'a str, message: String, text: String },
    Skipped(String),
}

struct Case<'a> {
    name: String,
    secs: f64,
    verdict: Verdict<'a>,
}

fn step_case(step: &StepReport) -> Case<'_> {
    let verdict = if step.result == "passed" {
        Verdict::Passed
    } else {
        let mut text = format!("log: {}\n", step.log);
        for line in &step.log_tail {
            text.push_str(line);
            text.push('\n');
        }
        Verdict::Failed {
            kind: &step.result,
            message: step.reason.clone().unwrap_or_else(|| step.result.clone()),
            text,
        }
    };
    Case { name: format!("{} ({})", step.name, step.kind), secs: step.took_secs.unwrap_or(0.0), verdict }
}

/// The cases of one node: its validate steps' last results, and for a gate the gate itself.
fn cases(node: &NodeReport) -> Vec<Case<'_>> {
    let mut last: BTreeMap<usize, &StepReport> = BTreeMap::new();
    for step in node.attempts.iter().flat_map(|a| &a.steps).filter(|s| s.stage == Stage::Validate) {
        last.insert(step.index, step);
    }
    let mut cases: Vec<Case> = last.values().map(|s| step_case(s)).collect();
    // An install step that failed in the last attempt is a failure CI must see, though it is
    // not a validation: the validations after it never ran.
    if let Some(attempt) = node.attempts.last() {
        for step in attempt.steps.iter().filter(|s| s.stage == Stage::Install && s.result != "passed") {
            let mut case = step_case(step);
            case.name = format!("install {}", case.name);
            cases.push(case);
        }
    }
    if last.is_empty() && node.kind == NodeKind::Module {
        let why =
            node.skip_reason.clone().unwrap_or_else(|| format!("{}: no validate step ran", node.result));
        cases.push(Case { name: "validate".into(), secs: 0.0, verdict: Verdict::Skipped(why) });
    }
    if node.kind == NodeKind::Gate {
        let verdict = match node.result.as_str() {
            "passed" => Verdict::Passed,
            "not-run" | "skipped" => Verdict::Skipped(
                node.skip_reason.clone().unwrap_or_else(|| "the gate did not run in this rollout".into()),
            ),
            // Not a failure: its checks passed and a person has yet to decide.
            "waiting-approval" => Verdict::Skipped(
                node.attempts
                    .last()
                    .and_then(|a| a.reason.clone())
                    .unwrap_or_else(|| "waits for approval".into()),
            ),
            other => Verdict::Failed {
                kind: "gate",
                message: node
                    .attempts
                    .last()
                    .and_then(|a| a.reason.clone())
                    .unwrap_or_else(|| format!("the gate {other}")),
                text: String::new(),
            },
        };
        cases.push(Case {
            name: format!("gate {}", node.id),
            secs: node.actual_secs.unwrap_or(0.0),
            verdict,
        });
    }
    cases
}

fn secs(s: f64) -> String {
    format!("{s:.3}")
}

pub fn render(report: &Report) -> String {
    let mut writer = Writer::new_with_indent(Vec::new(), b' ', 2);
    write(&mut writer, report).expect("writing XML to memory cannot fail");
    let mut xml = String::from_utf8(writer.into_inner()).expect("quick-xml writes UTF-8 from UTF-8 input");
    xml.push('\n');
    xml
}

fn write(w: &mut Writer<Vec<u8>>, report: &Report) -> io::Result<()> {
    w.write_event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)))?;
    let suites: Vec<(&NodeReport, Vec<Case>)> = report.nodes.iter().map(|n| (n, cases(n))).collect();
    let count = |f: &dyn Fn(&Verdict) -> bool| -> usize {
        suites.iter().flat_map(|(_, c)| c).filter(|c| f(&c.verdict)).count()
    };
    let tests = count(&|_| true).to_string();
    let failures = count(&|v| matches!(v, Verdict::Failed { .. })).to_string();
    let total = secs(report.actual_secs);
    let started =
        report.runs.first().map(|r| r.started_at.trim_end_matches('Z').to_string()).unwrap_or_default();
    w.create_element("testsuites")
        .with_attributes([
            ("name", report.workflow.id.as_str()),
            ("tests", &tests),
            ("failures", &failures),
            ("errors", "0"),
            ("time", &total),
        ])
        .write_inner_content(|w| {
            for (id, (node, cases)) in suites.iter().enumerate() {
                let failed = cases.iter().filter(|c| matches!(c.verdict, Verdict::Failed { .. })).count();
                let skipped = cases.iter().filter(|c| matches!(c.verdict, Verdict::Skipped(_))).count();
                let name = match &node.phase {
                    Some(p) => format!("{} / {}", p, node.id),
                    None => node.id.clone(),
                };
                let classname = format!("{}.{}", report.workflow.id, node.id);
                w.create_element("testsuite")
                    .with_attributes([
                        ("name", name.as_str()),
                        ("tests", &cases.len().to_string()),
                        ("failures", &failed.to_string()),
                        ("errors", "0"),
                        ("skipped", &skipped.to_string()),
                        ("time", &secs(node.actual_secs.unwrap_or(0.0))),
                        ("timestamp", &started),
                        ("id", &id.to_string()),
                        ("package", &report.workflow.id),
                    ])
                    .write_inner_content(|w| {
                        w.create_element("properties").write_inner_content(|w| {
                            let mut property = |name: &str, value: &str| {
                                w.create_element("property")
                                    .with_attributes([("name", name), ("value", value)])
                                    .write_empty()
                                    .map(|_| ())
                            };
                            property("kind", if node.kind == NodeKind::Gate { "gate" } else { "module" })?;
                            property("result", &node.result)?;
                            property("budget_secs", &node.budget_secs.to_string())?;
                            property("planned_secs", &node.planned_secs.to_string())?;
                            property("over_budget", &node.over_budget.to_string())?;
                            property("attempts", &node.attempts.len().to_string())
                        })?;
                        for case in cases {
                            write_case(w, &classname, case)?;
                        }
                        Ok(())
                    })?;
            }
            Ok(())
        })?;
    Ok(())
}

fn write_case(w: &mut Writer<Vec<u8>>, classname: &str, case: &Case) -> io::Result<()> {
    let element = w.create_element("testcase").with_attributes([
        ("name", case.name.as_str()),
        ("classname", classname),
        ("time", &secs(case.secs)),
    ]);
    match &case.verdict {
        Verdict::Passed => element.write_empty().map(|_| ()),
        Verdict::Skipped(why) => element
            .write_inner_content(|w| {
                w.create_element("skipped")
                    .with_attribute(("message", why.as_str()))
                    .write_empty()
                    .map(|_| ())
            })
            .map(|_| ()),
        Verdict::Failed { kind, message, text } => element
            .write_inner_content(|w| {
                w.create_element("failure")
                    .with_attributes([("message", message.as_str()), ("type", kind)])
                    .write_text_content(BytesText::new(text))
                    .map(|_| ())
            })
            .map(|_| ()),
    }
}
