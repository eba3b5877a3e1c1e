//! `when` conditions: one tera expression in `{{ … }}`, over `vars.*` and the outcomes of
//! nodes upstream (`nodes.<id>.outcome`). Parsed and checked at load; decided at load when
//! it reads vars only, otherwise when its node or step would start. Evaluated with the
//! crate's [`Renderer`], never a second expression language.

use std::collections::BTreeMap;

use serde::Serialize;
use tera::Context;

use crate::template::{Renderer, TemplateError};

/// The outcomes a condition can compare with.
pub const OUTCOMES: &[&str] = &["passed", "failed", "skipped", "pending"];

/// A checked `when` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// As written, `{{ … }}` included: shown, hashed, journaled.
    pub text: String,
    /// The tera expression between the braces, node references rewritten to
    /// `nodes["id"].outcome` (tera names cannot hold `-`).
    expr: String,
    /// The ids of the nodes whose outcome it reads, in order of first mention.
    pub reads: Vec<String>,
    /// Its value when it reads vars only: decided at load.
    pub known: Option<bool>,
}

impl Serialize for Condition {
    // The text as written identifies it: part of a step's hash.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.text.serialize(s)
    }
}

/// Why a condition is not one.
#[derive(Debug, Clone, PartialEq)]
pub enum ConditionError {
    /// Not a single `{{ … }}` expression.
    Form { reason: String },
    /// `nodes.x` without `.outcome`.
    BadReference { found: String },
    /// It rendered something other than `true` or `false`.
    NotBoolean { found: String },
    /// Tera could not evaluate it.
    Template(TemplateError),
}

impl std::fmt::Display for ConditionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConditionError::Form { reason } => write!(f, "the condition {reason}"),
            ConditionError::BadReference { found } => write!(f, "the condition reads `{found}`"),
            ConditionError::NotBoolean { found } => {
                write!(f, "the condition gives {found}, not true or false")
            }
            ConditionError::Template(e) => write!(f, "the condition does not evaluate: {e}"),
        }
    }
}

impl Condition {
    /// Parses `text` (`{{ vars.profile == 'prod' }}`): the form and the node references.
    ///
    /// # Errors
    /// [`ConditionError::Form`] for a bare expression or text around the braces,
    /// [`ConditionError::BadReference`] for `nodes.x` not followed by `.outcome`.
    pub fn parse(text: &str) -> Result<Condition, ConditionError> {
        let trimmed = text.trim();
        let Some(inner) = trimmed.strip_prefix("{{").and_then(|t| t.strip_suffix("}}")) else {
            let reason = if trimmed.contains("{{") || trimmed.contains("{%") {
                "has text outside its `{{ … }}`".to_string()
            } else {
                "is a bare expression".to_string()
            };
            return Err(ConditionError::Form { reason });
        };
        if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") || inner.contains("%}") {
            return Err(ConditionError::Form { reason: "holds more than one `{{ … }}`".into() });
        }
        if inner.trim().is_empty() {
            return Err(ConditionError::Form { reason: "is empty".into() });
        }
        let (expr, reads) = rewrite_references(inner)?;
        Ok(Condition { text: text.to_string(), expr, reads, known: None })
    }

    /// Evaluates the condition with `vars` and the outcome of each node it reads.
    ///
    /// # Errors
    /// [`ConditionError::Template`] when tera fails (an undefined variable names itself),
    /// [`ConditionError::NotBoolean`] when the value is not a boolean.
    pub fn evaluate(
        &self,
        renderer: &mut Renderer,
        vars: &BTreeMap<String, String>,
        outcome: &dyn Fn(&str) -> &'static str,
    ) -> Result<bool, ConditionError> {
        let mut context = Context::new();
        context.insert("vars", vars);
        let nodes: BTreeMap<&str, BTreeMap<&str, &str>> =
            self.reads.iter().map(|id| (id.as_str(), BTreeMap::from([("outcome", outcome(id))]))).collect();
        context.insert("nodes", &nodes);
        // Set, then encoded: a boolean prints `true`, the string "true" prints `"true"`.
        let template = format!("{{% set when_value = {} %}}{{{{ when_value | json_encode() }}}}", self.expr);
        let rendered = renderer.render_with(&template, &context).map_err(ConditionError::Template)?;
        match rendered.trim() {
            "true" => Ok(true),
            "false" => Ok(false),
            other => Err(ConditionError::NotBoolean { found: other.to_string() }),
        }
    }

    /// `{{ … }} = false` when decided at load, the text otherwise.
    pub fn describe(&self) -> String {
        match self.known {
            Some(v) => format!("when {} = {v}", self.text),
            None => format!("when {}", self.text),
        }
    }
}

/// `nodes.ha-dr.outcome` → `nodes["ha-dr"].outcome`, outside quotes; the ids read.
fn rewrite_references(expr: &str) -> Result<(String, Vec<String>), ConditionError> {
    let mut out = String::with_capacity(expr.len() + 8);
    let mut reads: Vec<String> = Vec::new();
    let chars: Vec<char> = expr.chars().collect();
    let mut i = 0;
    let mut quote: Option<char> = None;
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_';
    while i < chars.len() {
        let c = chars[i];
        if let Some(q) = quote {
            out.push(c);
            if c == q {
                quote = None;
            }
            i += 1;
            continue;
        }
        if matches!(c, '\'' | '"' | '`') {
            quote = Some(c);
            out.push(c);
            i += 1;
            continue;
        }
        let starts_word = i == 0 || !(is_name(chars[i - 1]) || chars[i - 1] == '.');
        let rest: String = chars[i..].iter().take(6).collect();
        if starts_word && rest == "nodes." {
            let mut j = i + 6;
            while j < chars.len() && (is_name(chars[j]) || chars[j] == '-') {
                j += 1;
            }
            let id: String = chars[i + 6..j].iter().collect();
            let tail: String = chars[j..].iter().take(8).collect();
            let ends = chars.get(j + 8).is_none_or(|&c| !is_name(c));
            if id.is_empty() || tail != ".outcome" || !ends {
                let found: String =
                    chars[i..].iter().take_while(|&&c| is_name(c) || c == '.' || c == '-').collect();
                return Err(ConditionError::BadReference { found });
            }
            out.push_str(&format!("nodes[\"{id}\"].outcome"));
            if !reads.contains(&id) {
                reads.push(id);
            }
            i = j + 8;
            continue;
        }
        out.push(c);
        i += 1;
    }
    Ok((out, reads))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(text: &str, vars: &[(&str, &str)], outcome: &'static str) -> Result<bool, ConditionError> {
        let vars: BTreeMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Condition::parse(text)?.evaluate(&mut Renderer::new(), &vars, &|_| outcome)
    }

    #[test]
    fn conditions_evaluate_over_vars_and_outcomes() {
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("{{ vars.profile == 'prod' }}", "passed", Ok(true)),
            ("{{ vars.profile != 'prod' }}", "passed", Ok(false)),
            ("{{ nodes.ha-dr.outcome == 'failed' }}", "failed", Ok(true)),
            ("{{ nodes.ha-dr.outcome == 'failed' }}", "passed", Ok(false)),
            (
                "{{ nodes.a.outcome in ['failed', 'skipped'] and vars.profile == 'prod' }}",
                "skipped",
                Ok(true),
            ),
            ("{{ vars.profile == 'dev' or vars.profile == 'prod' }}", "passed", Ok(true)),
            ("{{ vars.flag }}", "passed", Err(())),
            ("{{ vars.profile }}", "passed", Err(())),
            ("{{ vars.missing == 'x' }}", "passed", Err(())),
        ];
        for (text, outcome, expected) in cases {
            let got = eval(text, &[("profile", "prod"), ("flag", "true")], outcome);
            match expected {
                Ok(v) => assert_eq!(got, Ok(*v), "{text}"),
                Err(()) => assert!(got.is_err(), "{text}: {got:?}"),
            }
        }
    }

    #[test]
    fn the_form_and_references_are_checked() {
        assert!(matches!(Condition::parse("vars.profile == 'prod'"), Err(ConditionError::Form { .. })));
        assert!(matches!(Condition::parse("x {{ true }}"), Err(ConditionError::Form { .. })));
        assert!(matches!(Condition::parse("{{ }}"), Err(ConditionError::Form { .. })));
        assert!(matches!(
            Condition::parse("{{ nodes.a == 'failed' }}"),
            Err(ConditionError::BadReference { found }) if found == "nodes.a"
        ));
        let c = Condition::parse("{{ nodes.ha-dr.outcome == 'nodes.x' or nodes.b.outcome == 'failed' }}")
            .unwrap();
        assert_eq!(c.reads, vec!["ha-dr".to_string(), "b".to_string()]);
    }
}
