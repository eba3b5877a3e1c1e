//! Metric formulas: tera expressions over the facts of a run, e.g.
//! `{{ completed_modules / total_modules * 100 }}`.

use std::collections::BTreeMap;

use serde::Serialize;
use tera::Context;

use crate::template::{Renderer, TemplateError};

/// Pass counts of one domain's validations.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DomainFacts {
    pub passed: u32,
    pub total: u32,
    /// `passed / total`, 0 when nothing ran.
    pub rate: f64,
}

/// One module's or gate's time against its budget, read as `nodes["k8s-infra"].actual_secs`.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct NodeFacts {
    /// 1 when the node is complete (as `resume` would keep it), else 0.
    pub done: u32,
    /// Its last completed run's duration; 0 when it never completed.
    pub actual_secs: f64,
    pub budget_secs: f64,
    /// Budget plus buffer.
    pub planned_secs: f64,
    /// `actual_secs / budget_secs`; 0 when it never completed.
    pub budget_used: f64,
}

/// Everything a metric formula can read. The names are the documented run variables.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RunFacts {
    pub completed_modules: u32,
    pub total_modules: u32,
    pub failed_modules: u32,
    pub completed_gates: u32,
    pub total_gates: u32,
    pub validations_passed: u32,
    pub validations_total: u32,
    pub successful_runs: u32,
    pub total_runs: u32,
    /// Total actual time over total planned time of completed nodes, as a ratio.
    pub budget_ratio: f64,
    pub domains: BTreeMap<String, DomainFacts>,
    pub nodes: BTreeMap<String, NodeFacts>,
}

impl RunFacts {
    /// Facts with every count at one, used to check formulas before anything runs.
    pub fn sample<'a>(
        domains: impl IntoIterator<Item = &'a str>,
        nodes: impl IntoIterator<Item = &'a str>,
    ) -> Self {
        let one = DomainFacts { passed: 1, total: 1, rate: 1.0 };
        let node =
            NodeFacts { done: 1, actual_secs: 1.0, budget_secs: 1.0, planned_secs: 1.0, budget_used: 1.0 };
        Self {
            completed_modules: 1,
            total_modules: 1,
            failed_modules: 1,
            completed_gates: 1,
            total_gates: 1,
            validations_passed: 1,
            validations_total: 1,
            successful_runs: 1,
            total_runs: 1,
            budget_ratio: 1.0,
            domains: domains.into_iter().map(|d| (d.to_string(), one)).collect(),
            nodes: nodes.into_iter().map(|n| (n.to_string(), node)).collect(),
        }
    }
}

/// Evaluates `formula` over `facts`.
///
/// # Errors
/// An undefined variable, a syntax error, or a result that is not a finite number (a division
/// by zero among them).
pub fn evaluate(renderer: &mut Renderer, formula: &str, facts: &RunFacts) -> Result<f64, String> {
    let context = Context::from_serialize(facts).map_err(|e| e.to_string())?;
    let text = renderer.render_with(formula, &context).map_err(|e| match e {
        TemplateError::Undefined { name } => format!("unknown variable `{name}`"),
        TemplateError::Invalid { reason } | TemplateError::TooCostly { reason, .. } => reason,
    })?;
    let value: f64 =
        text.trim().parse().map_err(|_| format!("the formula gave `{}`, not a number", text.trim()))?;
    if value.is_finite() {
        Ok(value)
    } else {
        Err(format!("the formula gave {value} (a division by zero?)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success_rate_formula_evaluates() {
        let facts = RunFacts { completed_modules: 3, total_modules: 6, ..RunFacts::default() };
        let mut r = Renderer::new();
        let value = evaluate(&mut r, "{{ completed_modules / total_modules * 100 }}", &facts).unwrap();
        assert!((value - 50.0).abs() < 1e-9);
    }

    #[test]
    fn unknown_variables_and_division_by_zero_are_errors() {
        let mut r = Renderer::new();
        let facts = RunFacts::default();
        assert!(evaluate(&mut r, "{{ nope }}", &facts).unwrap_err().contains("unknown variable `nope`"));
        let err = evaluate(&mut r, "{{ completed_modules / total_modules }}", &facts).unwrap_err();
        assert!(!err.is_empty());
    }

    #[test]
    fn a_formula_reads_one_node_by_its_id() {
        let facts = RunFacts::sample(["scaling"], ["k8s-infra"]);
        let mut r = Renderer::new();
        let value = evaluate(&mut r, r#"{{ nodes["k8s-infra"].budget_used * 100 }}"#, &facts).unwrap();
        assert!((value - 100.0).abs() < 1e-9);
        let err = evaluate(&mut r, r#"{{ nodes["nope"].budget_used }}"#, &facts).unwrap_err();
        assert!(err.contains("nope") || err.contains("unknown"), "{err}");
    }
}
