//! Tera rendering of a workflow's strings: commands, URLs, paths, manifests.
//!
//! Strict: an undefined variable is an error, never an empty string. Every string renders
//! twice when secrets are about: once with their values, to run, and once with `***`, to
//! show, hash and store. No global state: one [`Renderer`] per workflow.

use std::collections::BTreeMap;

use serde::Serialize;
use tera::{Context, Tera};

pub mod cost;

/// What a secret looks like wherever milepost shows it.
pub const MASK: &str = "***";

/// `text` with every secret value replaced by [`MASK`].
pub fn mask(text: &str, secrets: &[String]) -> String {
    secrets.iter().fold(text.to_string(), |t, secret| t.replace(secret.as_str(), MASK))
}

/// A rendered string: the value to run, and the same with secrets masked.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Text {
    /// What the step runs with. Never logged, stored or printed.
    pub exec: String,
    /// What people and the journal see.
    pub shown: String,
}

impl Text {
    pub fn plain(s: impl Into<String>) -> Self {
        let s = s.into();
        Self { exec: s.clone(), shown: s }
    }
}

impl Serialize for Text {
    // Only the masked form is ever serialized: JSON output, hashes and the journal.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.shown.serialize(s)
    }
}

impl std::fmt::Display for Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

/// Why a string did not render.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TemplateError {
    /// The template names a variable that is not in the context.
    #[error("undefined variable `{name}`")]
    Undefined { name: String },
    /// Any other tera failure: syntax, a filter's error.
    #[error("{reason}")]
    Invalid { reason: String },
    /// The template could do unbounded work; refused before rendering ([`cost`]).
    #[error("{reason}")]
    TooCostly { reason: String, help: String },
}

/// The variables every string of one node can use, with and without secret values.
#[derive(Debug, Clone)]
pub struct Scope {
    exec: Context,
    shown: Option<Context>,
    /// `exec` and `shown` as JSON, for plain `{{ a.b }}` strings rendered without tera.
    exec_json: serde_json::Value,
    shown_json: Option<serde_json::Value>,
}

impl Scope {
    /// Adds a variable visible to this scope only, like a node's `dir`.
    pub fn insert<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) {
        self.exec.insert(key, value);
        let json = serde_json::to_value(value).unwrap_or_default();
        if let Some(shown) = &mut self.shown {
            shown.insert(key, value);
        }
        if let Some(map) = self.shown_json.as_mut().and_then(|j| j.as_object_mut()) {
            map.insert(key.to_string(), json.clone());
        }
        if let Some(map) = self.exec_json.as_object_mut() {
            map.insert(key.to_string(), json);
        }
    }

    /// The names a template can use, for "did you mean" help: `vars.x`, `dir`, …
    pub fn known_names(&self) -> Vec<String> {
        let json = self.exec.clone().into_json();
        let mut names = Vec::new();
        if let Some(map) = json.as_object() {
            for (key, value) in map {
                match value.as_object() {
                    Some(inner) => names.extend(inner.keys().map(|k| format!("{key}.{k}"))),
                    None => names.push(key.clone()),
                }
            }
        }
        names.sort();
        names
    }
}

/// Renders strings for one workflow.
pub struct Renderer {
    tera: Tera,
}

impl Default for Renderer {
    fn default() -> Self {
        Self::new()
    }
}

impl Renderer {
    pub fn new() -> Self {
        let mut tera = Tera::default();
        // Reading the environment from a template would bypass secret masking: secrets are
        // declared with `secret`, and only those reach templates.
        tera.register_function("get_env", |_: &std::collections::HashMap<String, tera::Value>| {
            Err(tera::Error::msg("get_env is disabled; declare a `secret` and use {{ secrets.name }}"))
        });
        cost::install_runtime_caps(&mut tera);
        Self { tera }
    }

    /// The workflow-wide scope: `vars.*`, `secrets.*` and `workflow.*`.
    pub fn scope(
        vars: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
        workflow: &impl Serialize,
    ) -> Scope {
        let mut exec = Context::new();
        exec.insert("vars", vars);
        exec.insert("workflow", workflow);
        exec.insert("secrets", secrets);
        let shown = (!secrets.is_empty()).then(|| {
            let masked: BTreeMap<&str, &str> = secrets.keys().map(|k| (k.as_str(), MASK)).collect();
            let mut shown = exec.clone();
            shown.insert("secrets", &masked);
            shown
        });
        let exec_json = exec.clone().into_json();
        let shown_json = shown.clone().map(Context::into_json);
        Scope { exec, shown, exec_json, shown_json }
    }

    /// Renders `text` in `scope`. Text without template syntax is returned as it is.
    ///
    /// # Errors
    /// [`TemplateError::Undefined`] names the missing variable; anything else is `Invalid`.
    pub fn render(&mut self, text: &str, scope: &Scope) -> Result<Text, TemplateError> {
        if !text.contains("{{") && !text.contains("{%") && !text.contains("{#") {
            return Ok(Text::plain(text));
        }
        if let Some(exec) = interpolate(text, &scope.exec_json) {
            let exec = exec?;
            let shown = match &scope.shown_json {
                Some(json) => interpolate(text, json).expect("the same text parses the same")?,
                None => exec.clone(),
            };
            return Ok(Text { exec, shown });
        }
        // Checked once: both renders run the same template over contexts of the same shape.
        cost::check(text, &scope.exec_json)
            .map_err(|c| TemplateError::TooCostly { reason: c.reason, help: c.help })?;
        let exec = self.render_one(text, &scope.exec)?;
        // Always the second render when secrets exist: `{{ __tera_context }}` or a macro can
        // reach them without the word "secrets" in the text.
        let shown = match &scope.shown {
            Some(ctx) => self.render_one(text, ctx)?,
            None => exec.clone(),
        };
        Ok(Text { exec, shown })
    }

    /// Renders `text` against an arbitrary context (metric formulas, template files).
    ///
    /// # Errors
    /// As [`Renderer::render`].
    pub fn render_with(&mut self, text: &str, context: &Context) -> Result<String, TemplateError> {
        cost::check(text, &context.clone().into_json())
            .map_err(|c| TemplateError::TooCostly { reason: c.reason, help: c.help })?;
        self.render_one(text, context)
    }

    fn render_one(&mut self, text: &str, context: &Context) -> Result<String, TemplateError> {
        self.tera.render_str(text, context).map_err(classify)
    }
}

/// Renders text whose only template syntax is `{{ name.path }}` by looking each path up in
/// `context`, as tera would render it; `None` for anything else (filters, expressions,
/// blocks, comments, non-string values), which tera renders. Most strings of a definition
/// are of this kind, and parsing each as a tera template dominated loading large plans.
fn interpolate(text: &str, context: &serde_json::Value) -> Option<Result<String, TemplateError>> {
    if text.contains("{%") || text.contains("{#") {
        return None;
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after.find("}}")?;
        let path = after[..end].trim();
        let simple = !path.is_empty()
            && !after[..end].starts_with('-')
            && !after[..end].ends_with('-')
            && path.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
            && path.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !path.ends_with('.')
            && !path.contains("..");
        // Literals and tera's own names look like paths but are not variables.
        let first = path.split('.').next().unwrap_or("");
        if !simple || matches!(first, "true" | "false" | "True" | "False" | "none") || first.starts_with("__")
        {
            return None;
        }
        let mut value = context;
        for key in path.split('.') {
            match value.get(key) {
                Some(v) => value = v,
                None => return Some(Err(TemplateError::Undefined { name: path.to_string() })),
            }
        }
        out.push_str(value.as_str()?);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Some(Ok(out))
}

/// Turns tera's error chain into the one fact a person needs.
fn classify(err: tera::Error) -> TemplateError {
    let mut reasons = Vec::new();
    let mut current: Option<&dyn std::error::Error> = Some(&err);
    while let Some(e) = current {
        let message = e.to_string();
        if let Some(rest) =
            message.strip_prefix("Variable `").filter(|_| message.contains("not found in context"))
        {
            if let Some(end) = rest.find('`') {
                return TemplateError::Undefined { name: rest[..end].to_string() };
            }
        }
        if !message.contains("__tera_one_off") {
            reasons.push(message);
        }
        current = e.source();
    }
    let reason = if reasons.is_empty() { err.to_string() } else { reasons.join(": ") };
    // Tera's parse errors draw their own arrow over several lines; the `= …` line is the fact.
    let reason = match reason.lines().find_map(|l| l.trim().strip_prefix("= ")) {
        Some(fact) => fact.to_string(),
        None => reason.split_whitespace().collect::<Vec<_>>().join(" "),
    };
    TemplateError::Invalid { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_with_secret() -> Scope {
        let vars = BTreeMap::from([("host".to_string(), "db.internal".to_string())]);
        let secrets = BTreeMap::from([("token".to_string(), "s3cr3t".to_string())]);
        Renderer::scope(&vars, &secrets, &serde_json::json!({ "id": "w" }))
    }

    #[test]
    fn secrets_render_for_running_and_masked_for_showing() {
        let mut r = Renderer::new();
        let text =
            r.render("curl -H 'X: {{ secrets.token }}' {{ vars.host }}", &scope_with_secret()).unwrap();
        assert_eq!(text.exec, "curl -H 'X: s3cr3t' db.internal");
        assert_eq!(text.shown, "curl -H 'X: ***' db.internal");
        assert_eq!(serde_json::to_string(&text).unwrap(), "\"curl -H 'X: ***' db.internal\"");
    }

    #[test]
    fn undefined_variables_are_named() {
        let mut r = Renderer::new();
        let err = r.render("{{ vars.nope }}", &scope_with_secret()).unwrap_err();
        assert_eq!(err, TemplateError::Undefined { name: "vars.nope".into() });
    }

    #[test]
    fn syntax_errors_are_reported_not_rendered() {
        let mut r = Renderer::new();
        let err = r.render("{{ vars.host ", &scope_with_secret()).unwrap_err();
        assert!(matches!(err, TemplateError::Invalid { .. }), "{err:?}");
    }

    #[test]
    fn plain_interpolation_renders_as_tera_does() {
        let scope = scope_with_secret();
        let mut fast = Renderer::new();
        let mut reference = Tera::default();
        for text in [
            "curl {{ vars.host }}/x?t={{secrets.token}}",
            "{{ workflow.id }}",
            "a {{ vars.host | upper }} b",
            "{% if true %}{{ vars.host }}{% endif %}",
            "{{ vars.host ~ 'x' }}",
            "{{ true }} and {{ false }}",
        ] {
            let mut tera_only = |ctx: &Context| reference.render_str(text, ctx).map_err(classify);
            let expected = (tera_only(&scope.exec), tera_only(scope.shown.as_ref().unwrap()));
            let got = fast.render(text, &scope).unwrap();
            assert_eq!((got.exec, got.shown), (expected.0.unwrap(), expected.1.unwrap()), "{text}");
        }
        assert_eq!(
            fast.render("x {{ vars.nope }}", &scope).unwrap_err(),
            TemplateError::Undefined { name: "vars.nope".into() }
        );
        assert!(interpolate("{{ vars.host | upper }}", &scope.exec_json).is_none(), "filters go to tera");
    }

    #[test]
    fn plain_text_is_left_alone() {
        let mut r = Renderer::new();
        assert_eq!(
            r.render("echo {not a template}", &scope_with_secret()).unwrap(),
            Text::plain("echo {not a template}")
        );
    }
}
