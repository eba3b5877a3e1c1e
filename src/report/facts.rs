//! The run variables metric formulas read, folded from the state directory, and the metrics
//! evaluated over them. `status` and every report format use this one function, so they agree.

use serde::Serialize;

use crate::plan::NodeStatus;
use crate::spec::metrics::{DomainFacts, NodeFacts, RunFacts};
use crate::spec::{NodeKind, Stage, Workflow};
use crate::state::history::History;
use crate::state::resume::Decision;
use crate::state::step_hash;
use crate::template::Renderer;

/// One metric's value against its target, or why it has none.
#[derive(Debug, Clone, Serialize)]
pub struct MetricResult {
    pub id: String,
    pub formula: String,
    pub value: Option<f64>,
    pub target: Option<f64>,
    /// `value >= target`; absent without a target or a value.
    pub met: Option<bool>,
    pub error: Option<String>,
}

/// Facts as the state directory has them now: a node counts as completed when `resume` would
/// keep it, a validation as passed when its last run passed with today's definition.
pub fn run_facts(workflow: &Workflow, history: &History, decisions: &[Decision]) -> RunFacts {
    let mut f = RunFacts::default();
    let mut actual = 0.0;
    let mut planned = 0.0;
    for (n, node) in workflow.nodes.iter().enumerate() {
        let done = decisions[n].status == NodeStatus::Done;
        let failed = history.nodes.get(&node.id).is_some_and(|r| !r.outcome.passed());
        match node.kind {
            NodeKind::Module => {
                f.total_modules += 1;
                f.completed_modules += u32::from(done);
                f.failed_modules += u32::from(failed);
            }
            NodeKind::Gate => {
                f.total_gates += 1;
                f.completed_gates += u32::from(done);
            }
        }
        // Every declared domain is a variable, even one whose modules have no validate step.
        if let Some(domain) = &node.domain {
            f.domains.entry(domain.clone()).or_insert(DomainFacts::default());
        }
        let mut facts = NodeFacts {
            done: u32::from(done),
            budget_secs: node.budget.as_secs_f64(),
            planned_secs: node.planned.as_secs_f64(),
            ..NodeFacts::default()
        };
        if done {
            if let Some(r) = history.nodes.get(&node.id) {
                actual += r.spent.as_secs_f64();
                planned += node.planned.as_secs_f64();
                facts.actual_secs = super::to_ms(r.spent.as_secs_f64());
                facts.budget_used =
                    if facts.budget_secs > 0.0 { ratio(facts.actual_secs / facts.budget_secs) } else { 0.0 };
            }
        }
        f.nodes.insert(node.id.clone(), facts);
        for (index, (stage, step)) in node.steps().enumerate() {
            if stage != Stage::Validate {
                continue;
            }
            let passed = history.passed_step(&node.id, index) == Some(step_hash(node, step).as_str());
            f.validations_total += 1;
            f.validations_passed += u32::from(passed);
            if let Some(domain) = &node.domain {
                let d = f.domains.entry(domain.clone()).or_insert(DomainFacts::default());
                d.total += 1;
                d.passed += u32::from(passed);
            }
        }
    }
    for d in f.domains.values_mut() {
        d.rate = if d.total == 0 { 0.0 } else { f64::from(d.passed) / f64::from(d.total) };
    }
    f.total_runs = history.runs.len() as u32;
    f.successful_runs = history.runs.iter().filter(|r| r.finished == Some(true)).count() as u32;
    f.budget_ratio = if planned > 0.0 { ratio(actual / planned) } else { 0.0 };
    f
}

/// Every metric of the workflow over `facts`, in definition order.
pub fn evaluate(workflow: &Workflow, facts: &RunFacts) -> Vec<MetricResult> {
    let mut renderer = Renderer::new();
    workflow
        .metrics
        .iter()
        .map(|m| {
            let (value, error) = match crate::spec::metrics::evaluate(&mut renderer, &m.formula, facts) {
                Ok(v) => (Some(v), None),
                Err(e) => (None, Some(e)),
            };
            MetricResult {
                id: m.id.clone(),
                formula: m.formula.clone(),
                value,
                target: m.target,
                // A small tolerance: 99.99999 from floating-point sums meets a target of 100.
                met: value.zip(m.target).map(|(v, t)| v >= t - 1e-9),
                error,
            }
        })
        .collect()
}

/// A ratio to six decimals: enough for any percentage a metric shows, without float noise.
fn ratio(value: f64) -> f64 {
    (value * 1e6).round() / 1e6
}
