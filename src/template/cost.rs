//! Limits on the work a template may do while definitions load.
//!
//! tera has no fuel: a recursive macro overflows the stack, `range(end=99999999999)` fills
//! memory, and nested loops run for hours, all inside `validate`. Templates are therefore
//! checked before they render: the parsed template is walked once, its loops multiplied out
//! from their bounds, and the work and output it could produce are bounded from above. What
//! cannot be bounded statically is capped while rendering: `range` and every filter refuse
//! to produce more than [`MAX_ITEMS`] items or [`MAX_FILTER_OUTPUT`] bytes. The rules are in
//! docs/definitions.md, section 10, "Limits".
//!
//! This reads tera's AST (`tera::ast`, public but outside its semver promise); `Cargo.lock`
//! pins the tera it was written against.

use std::collections::HashMap;
use std::sync::Arc;

use tera::ast::{Expr, ExprVal, FunctionCall, Node};

/// The most items one `range(…)` or filter may produce, and the bound assumed for a loop
/// over anything but a `range` of literal numbers.
pub const MAX_ITEMS: u64 = 10_000;
/// The most template nodes one render may evaluate, every loop multiplied out.
pub const MAX_WORK: u64 = 1_000_000;
/// The most text one render may produce, estimated from above.
pub const MAX_OUTPUT: u64 = 16 * 1024 * 1024;
/// The most text one filter may produce.
pub const MAX_FILTER_OUTPUT: u64 = 1024 * 1024;
/// How deep parentheses, brackets and `{% %}` blocks may nest; tera's parser and renderer
/// recurse once per level.
pub const MAX_NESTING: usize = 64;
/// The most operators one tag may hold: tera builds `1 + 1 + …` as a tree as deep as the
/// chain is long, and 5 000 of them overflowed the stack. Two-character operators count 2.
pub const MAX_OPERATORS: usize = 128;

/// Why a template was refused, and what to do instead.
#[derive(Debug, Clone, PartialEq)]
pub struct TooCostly {
    pub reason: String,
    pub help: String,
}

fn refuse(reason: impl Into<String>, help: impl Into<String>) -> TooCostly {
    TooCostly { reason: reason.into(), help: help.into() }
}

/// Checks `text` before it renders in a context whose JSON is `context`. A template that
/// does not parse passes: tera's own render reports the syntax error, having done no work.
///
/// # Errors
/// [`TooCostly`] when the template nests too deeply, defines or calls a macro, lets `set`
/// feed on itself, or could evaluate more than [`MAX_WORK`] nodes or print more than
/// [`MAX_OUTPUT`] bytes.
pub fn check(text: &str, context: &serde_json::Value) -> Result<(), TooCostly> {
    check_nesting(text)?;
    let Ok(template) = tera::Template::new("check", None, text) else { return Ok(()) };
    if !template.macros.is_empty() || !template.imported_macro_files.is_empty() {
        return Err(macros_refused());
    }
    let mut walk = Walk {
        context,
        context_size: serde_json::to_string(context).map_or(0, |s| s.len()) as u64,
        largest_container: largest_container(context),
        sizes: HashMap::new(),
        set_by_template: Vec::new(),
        work: 0,
        output: 0,
    };
    collect_sets(&template.ast, &mut walk.set_by_template);
    walk.nodes(&template.ast, 1)?;
    Ok(())
}

fn macros_refused() -> TooCostly {
    refuse(
        "it defines or calls a macro",
        "macros are not available in definitions (a recursive macro never ends); write the text out, or loop with {% for %}",
    )
}

/// Parentheses and brackets inside tags, and `{% %}` blocks, counted without parsing. The
/// scan sees what tera's parser sees, or more, never less: string literals inside tags,
/// comments and `{% raw %}` blocks are skipped as tera skips them, so text such as
/// `{% if a == "%}{% endif %}" %}` cannot hide a level.
fn check_nesting(text: &str) -> Result<(), TooCostly> {
    let b = text.as_bytes();
    let (mut parens, mut blocks, mut i) = (0usize, 0usize, 0usize);
    let after = |from: usize, needle: &str| {
        text.get(from..).and_then(|t| t.find(needle)).map(|p| from + p + needle.len())
    };
    while i + 1 < b.len() {
        if b[i] != b'{' || !matches!(b[i + 1], b'{' | b'%' | b'#') {
            i += 1;
            continue;
        }
        if b[i + 1] == b'#' {
            i = after(i + 2, "#}").unwrap_or(b.len());
            continue;
        }
        let close = if b[i + 1] == b'{' { b'}' } else { b'%' };
        let start = i + 2;
        let mut j = start;
        let mut operators = 0usize;
        // The tag ends at its closing delimiter outside string literals.
        let end = loop {
            if j + 1 >= b.len() {
                break b.len();
            }
            match b[j] {
                q @ (b'"' | b'\'' | b'`') => {
                    j = b[j + 1..].iter().position(|&c| c == q).map_or(b.len(), |p| j + p + 2);
                }
                c if c == close && b[j + 1] == b'}' => break j,
                b'(' | b'[' => {
                    parens += 1;
                    if parens > MAX_NESTING {
                        return Err(too_deep("parentheses or brackets"));
                    }
                    j += 1;
                }
                b')' | b']' => {
                    parens = parens.saturating_sub(1);
                    j += 1;
                }
                c if c.is_ascii_alphabetic() || c == b'_' => {
                    let len = b[j..].iter().take_while(|c| c.is_ascii_alphanumeric() || **c == b'_').count();
                    if matches!(&b[j..j + len], b"and" | b"or" | b"not" | b"in" | b"is") {
                        operators += 1;
                    }
                    j += len;
                }
                b'+' | b'-' | b'*' | b'/' | b'%' | b'~' | b'<' | b'>' | b'=' | b'!' => {
                    operators += 1;
                    j += 1;
                }
                _ => j += 1,
            }
            if operators > MAX_OPERATORS {
                return Err(refuse(
                    format!("one tag holds more than {MAX_OPERATORS} operators"),
                    "split the expression, or compute the value outside milepost and pass it with --var",
                ));
            }
        };
        i = (end + 2).min(b.len());
        if close != b'%' {
            continue;
        }
        let inner = text.get(start..end).unwrap_or("");
        let word = inner.trim_start_matches('-').split_whitespace().next().unwrap_or("");
        match word {
            "raw" => {
                // Up to the `%}` that closes `{% endraw %}`; nothing inside is a tag.
                i = after(i, "endraw").and_then(|e| after(e, "%}")).unwrap_or(b.len());
            }
            "if" | "for" | "filter" | "block" | "macro" => {
                blocks += 1;
                if blocks > MAX_NESTING {
                    return Err(too_deep("{% %} blocks"));
                }
            }
            w if w.starts_with("end") => blocks = blocks.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

fn too_deep(what: &str) -> TooCostly {
    refuse(
        format!("{what} nest more than {MAX_NESTING} levels deep"),
        "split the expression, or compute the value outside milepost and pass it with --var",
    )
}

/// Names that `{% set %}` assigns anywhere in the template.
fn collect_sets(nodes: &[Node], out: &mut Vec<String>) {
    for node in nodes {
        match node {
            Node::Set(_, set) => out.push(set.key.clone()),
            Node::Forloop(_, f, _) => {
                collect_sets(&f.body, out);
                collect_sets(f.empty_body.as_deref().unwrap_or(&[]), out);
            }
            Node::If(i, _) => {
                for (_, _, body) in &i.conditions {
                    collect_sets(body, out);
                }
                if let Some((_, body)) = &i.otherwise {
                    collect_sets(body, out);
                }
            }
            Node::FilterSection(_, f, _) => collect_sets(&f.body, out),
            Node::Block(_, b, _) => collect_sets(&b.body, out),
            _ => {}
        }
    }
}

fn largest_container(value: &serde_json::Value) -> u64 {
    match value {
        serde_json::Value::Array(a) => a.iter().map(largest_container).max().unwrap_or(0).max(a.len() as u64),
        serde_json::Value::Object(o) => {
            o.values().map(largest_container).max().unwrap_or(0).max(o.len() as u64)
        }
        _ => 0,
    }
}

struct Walk<'a> {
    context: &'a serde_json::Value,
    /// The whole context as JSON: the most any lookup can print (`{{ __tera_context }}`).
    context_size: u64,
    largest_container: u64,
    /// Upper bounds for names bound by `set` and `for`.
    sizes: HashMap<String, u64>,
    set_by_template: Vec<String>,
    work: u64,
    output: u64,
}

impl Walk<'_> {
    fn nodes(&mut self, nodes: &[Node], times: u64) -> Result<(), TooCostly> {
        for node in nodes {
            self.node(node, times)?;
        }
        Ok(())
    }

    fn count(&mut self, times: u64, printed: u64) -> Result<(), TooCostly> {
        self.work = self.work.saturating_add(times);
        self.output = self.output.saturating_add(times.saturating_mul(printed));
        if self.work > MAX_WORK {
            return Err(refuse(
                format!("its loops could evaluate more than {MAX_WORK} template nodes"),
                format!(
                    "loops multiply: a range(…) of literal numbers counts its length, any other loop {MAX_ITEMS}; keep the product of nested loops, times what they contain, under {MAX_WORK}"
                ),
            ));
        }
        if self.output > MAX_OUTPUT {
            return Err(refuse(
                format!("it could print more than {} MiB", MAX_OUTPUT / (1024 * 1024)),
                "print less inside loops; a rendered string or file is at most 16 MiB",
            ));
        }
        Ok(())
    }

    fn node(&mut self, node: &Node, times: u64) -> Result<(), TooCostly> {
        match node {
            Node::Text(s) | Node::Raw(_, s, _) => self.count(times, s.len() as u64),
            Node::VariableBlock(_, expr) => {
                let size = self.expr(expr)?;
                self.count(times, size)
            }
            Node::MacroDefinition(..) | Node::ImportMacro(..) => Err(macros_refused()),
            Node::Extends(..) | Node::Include(..) | Node::Super => Err(refuse(
                "it uses extends, include or super",
                "a definition's template is one string or one file; other templates cannot be loaded",
            )),
            Node::Set(_, set) => {
                if let Some(name) = self.reads_set_variable(&set.value) {
                    return Err(refuse(
                        format!("`{{% set {} %}}` reads `{name}`, which the template itself sets", set.key),
                        "a value built from set values can double at each step; compute it from vars directly",
                    ));
                }
                let size = self.expr(&set.value)?;
                self.sizes.insert(set.key.clone(), size);
                self.count(times, 0)
            }
            Node::FilterSection(_, section, _) => {
                self.filter_call(&section.filter, MAX_FILTER_OUTPUT)?;
                self.nodes(&section.body, times)
            }
            Node::Block(_, block, _) => self.nodes(&block.body, times),
            Node::Forloop(_, f, _) => {
                let items = self.loop_bound(&f.container);
                let container = self.expr(&f.container)?;
                // Each item is part of the container, or a number from a range.
                let item = container.max(24);
                self.sizes.insert(f.value.clone(), item);
                if let Some(key) = &f.key {
                    self.sizes.insert(key.clone(), item);
                }
                self.count(times, 0)?;
                self.nodes(&f.body, times.saturating_mul(items))?;
                self.nodes(f.empty_body.as_deref().unwrap_or(&[]), times)
            }
            Node::If(i, _) => {
                // Every branch is counted: an upper bound.
                for (_, cond, body) in &i.conditions {
                    self.expr(cond)?;
                    self.count(times, 0)?;
                    self.nodes(body, times)?;
                }
                if let Some((_, body)) = &i.otherwise {
                    self.nodes(body, times)?;
                }
                Ok(())
            }
            Node::Break(_) | Node::Continue(_) | Node::Comment(..) => Ok(()),
        }
    }

    /// How many times a loop over `container` can run.
    fn loop_bound(&self, container: &Expr) -> u64 {
        if let ExprVal::FunctionCall(call) = &container.val {
            if call.name == "range" && container.filters.is_empty() {
                if let Some(n) = literal_range(call) {
                    return n;
                }
            }
        }
        MAX_ITEMS.max(self.largest_container)
    }

    /// A name set by the template that `expr` reads, if any.
    fn reads_set_variable(&self, expr: &Expr) -> Option<String> {
        let mut names = Vec::new();
        idents(expr, &mut names);
        names.into_iter().find(|n| self.set_by_template.iter().any(|s| s == root(n)))
    }

    /// An upper bound of the size of what `expr` gives, in bytes.
    fn expr(&mut self, expr: &Expr) -> Result<u64, TooCostly> {
        let mut size = self.value(&expr.val)?;
        for filter in &expr.filters {
            size = self.filter_call(filter, size)?;
        }
        Ok(size)
    }

    fn value(&mut self, val: &ExprVal) -> Result<u64, TooCostly> {
        Ok(match val {
            ExprVal::String(s) => s.len() as u64,
            ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => 24,
            ExprVal::Ident(name) => self.ident(name),
            ExprVal::Math(m) => {
                self.expr(&m.lhs)?;
                self.expr(&m.rhs)?;
                24
            }
            ExprVal::Logic(l) => {
                self.expr(&l.lhs)?;
                self.expr(&l.rhs)?;
                5
            }
            ExprVal::In(i) => {
                self.expr(&i.lhs)?;
                self.expr(&i.rhs)?;
                5
            }
            ExprVal::Test(t) => {
                for a in &t.args {
                    self.expr(a)?;
                }
                5
            }
            ExprVal::MacroCall(_) => return Err(macros_refused()),
            ExprVal::FunctionCall(call) => {
                for a in call.args.values() {
                    self.expr(a)?;
                }
                match call.name.as_str() {
                    // Up to MAX_ITEMS numbers, enforced while rendering.
                    "range" => literal_range(call).unwrap_or(MAX_ITEMS).saturating_mul(24),
                    _ => MAX_FILTER_OUTPUT,
                }
            }
            ExprVal::Array(items) => {
                let mut total = 2u64;
                for e in items {
                    total = total.saturating_add(self.expr(e)?).saturating_add(1);
                }
                total
            }
            ExprVal::StringConcat(c) => {
                let mut total = 0u64;
                for v in &c.values {
                    total = total.saturating_add(self.value(v)?);
                }
                total
            }
        })
    }

    /// The size of a variable: what the context holds at that path, or what `set`/`for`
    /// bound it to, or, if neither is known, the whole context.
    fn ident(&self, name: &str) -> u64 {
        if let Some(&size) = self.sizes.get(root(name)) {
            return size;
        }
        let mut value = self.context;
        for key in name.split('.') {
            match value.get(key) {
                Some(v) => value = v,
                None => return self.context_size,
            }
        }
        match value {
            serde_json::Value::String(s) => s.len() as u64,
            other => serde_json::to_string(other).map_or(self.context_size, |s| s.len() as u64),
        }
    }

    /// The size after `filter` applied to `input` bytes; every filter's own result is capped
    /// at [`MAX_FILTER_OUTPUT`] while rendering.
    fn filter_call(&mut self, filter: &FunctionCall, input: u64) -> Result<u64, TooCostly> {
        for a in filter.args.values() {
            self.expr(a)?;
        }
        let literal = |key: &str| match filter.args.get(key).map(|e| &e.val) {
            Some(ExprVal::String(s)) => Some(s.len() as u64),
            _ => None,
        };
        let grown = match filter.name.as_str() {
            // Never longer than the input (or a small constant).
            "lower" | "upper" | "trim" | "trim_start" | "trim_end" | "trim_start_matches"
            | "trim_end_matches" | "truncate" | "striptags" | "capitalize" | "title" | "first" | "last"
            | "nth" | "length" | "reverse" | "sort" | "unique" | "slice" | "round" | "int" | "float"
            | "abs" | "as_str" | "safe" | "split" | "wordcount" | "default" | "get" | "filter" | "map"
            | "group_by" | "pluralize" | "concat" | "date" => input.saturating_add(64),
            // A bounded blow-up per byte.
            "escape" | "escape_xml" | "json_encode" | "linebreaksbr" | "addslashes" => {
                input.saturating_mul(6)
            }
            "replace" => match (literal("from"), literal("to")) {
                (Some(from), Some(to)) => input.saturating_mul(to.div_ceil(from.max(1)).max(1)),
                _ => MAX_FILTER_OUTPUT,
            },
            "indent" => input.saturating_mul(literal("prefix").unwrap_or(4).saturating_add(1)),
            "join" => input.saturating_mul(literal("sep").unwrap_or(0).saturating_add(1)),
            _ => MAX_FILTER_OUTPUT,
        };
        Ok(grown.min(MAX_FILTER_OUTPUT))
    }
}

/// The first segment of `a.b[c]`.
fn root(name: &str) -> &str {
    name.split(['.', '[']).next().unwrap_or(name)
}

/// Every variable an expression reads.
fn idents(expr: &Expr, out: &mut Vec<String>) {
    fn val(v: &ExprVal, out: &mut Vec<String>) {
        match v {
            ExprVal::Ident(name) => out.push(name.clone()),
            ExprVal::Math(m) => {
                idents(&m.lhs, out);
                idents(&m.rhs, out);
            }
            ExprVal::Logic(l) => {
                idents(&l.lhs, out);
                idents(&l.rhs, out);
            }
            ExprVal::In(i) => {
                idents(&i.lhs, out);
                idents(&i.rhs, out);
            }
            ExprVal::Test(t) => {
                out.push(t.ident.clone());
                t.args.iter().for_each(|a| idents(a, out));
            }
            ExprVal::FunctionCall(c) => c.args.values().for_each(|a| idents(a, out)),
            ExprVal::MacroCall(c) => c.args.values().for_each(|a| idents(a, out)),
            ExprVal::Array(items) => items.iter().for_each(|a| idents(a, out)),
            ExprVal::StringConcat(c) => c.values.iter().for_each(|v| val(v, out)),
            ExprVal::String(_) | ExprVal::Int(_) | ExprVal::Float(_) | ExprVal::Bool(_) => {}
        }
    }
    val(&expr.val, out);
    for f in &expr.filters {
        f.args.values().for_each(|a| idents(a, out));
    }
}

/// The number of items of `range(…)` when every argument is a literal integer.
fn literal_range(call: &FunctionCall) -> Option<u64> {
    let int = |key: &str, default: Option<i64>| match call.args.get(key) {
        Some(Expr { val: ExprVal::Int(n), filters, .. }) if filters.is_empty() => Some(*n),
        Some(_) => None,
        None => default,
    };
    let (start, end, step) = (int("start", Some(0))?, int("end", None)?, int("step_by", Some(1))?);
    if step <= 0 || end <= start {
        return Some(0);
    }
    Some(((end as i128 - start as i128 + step as i128 - 1) / step as i128) as u64)
}

/// tera's filters, each refusing a result larger than [`MAX_FILTER_OUTPUT`] bytes or
/// [`MAX_ITEMS`] items, and a `range` that refuses more than [`MAX_ITEMS`] items.
pub fn install_runtime_caps(tera: &mut tera::Tera) {
    let filters: Vec<(String, Arc<dyn tera::Filter>)> = tera.filters.drain().collect();
    for (name, inner) in filters {
        tera.filters.insert(name.clone(), Arc::new(CappedFilter { name, inner }));
    }
    tera.register_function("range", capped_range);
}

struct CappedFilter {
    name: String,
    inner: Arc<dyn tera::Filter>,
}

impl tera::Filter for CappedFilter {
    fn filter(&self, value: &tera::Value, args: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
        let out = self.inner.filter(value, args)?;
        let too_big = match &out {
            tera::Value::String(s) => s.len() as u64 > MAX_FILTER_OUTPUT,
            tera::Value::Array(a) => a.len() as u64 > MAX_ITEMS,
            _ => false,
        };
        if too_big {
            return Err(tera::Error::msg(format!(
                "the `{}` filter gave more than {} KiB or {MAX_ITEMS} items, the most milepost renders",
                self.name,
                MAX_FILTER_OUTPUT / 1024
            )));
        }
        Ok(out)
    }

    fn is_safe(&self) -> bool {
        self.inner.is_safe()
    }
}

/// tera's `range(start=0, end, step_by=1)`, refusing more than [`MAX_ITEMS`] items before
/// allocating any.
fn capped_range(args: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    let int = |key: &str, default: Option<i64>| -> tera::Result<i64> {
        match args.get(key) {
            Some(v) => v.as_i64().ok_or_else(|| {
                tera::Error::msg(format!(
                    "Function `range` received {key}={v} but `{key}` can only be a number"
                ))
            }),
            None => default
                .ok_or_else(|| tera::Error::msg("Function `range` was called without a `end` argument")),
        }
    };
    let (start, end, step) = (int("start", Some(0))?, int("end", None)?, int("step_by", Some(1))?);
    if step <= 0 {
        return Err(tera::Error::msg("Function `range` was called with a `step_by` of 0 or less"));
    }
    if start > end {
        return Err(tera::Error::msg(
            "Function `range` was called with a `start` argument greater than the `end` one",
        ));
    }
    let count = (end as i128 - start as i128 + step as i128 - 1) / step as i128;
    if count > MAX_ITEMS as i128 {
        return Err(tera::Error::msg(format!(
            "range(…) would hold {count} items; milepost renders at most {MAX_ITEMS}"
        )));
    }
    Ok(tera::Value::Array((start..end).step_by(step as usize).map(tera::Value::from).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cost(text: &str) -> Result<(), TooCostly> {
        check(text, &serde_json::json!({ "vars": { "x": "abc", "zones": "a,b,c" } }))
    }

    #[test]
    fn ordinary_templates_pass() {
        for text in [
            "echo {{ vars.x }}",
            "{% for z in vars.zones | split(pat=\",\") %}- {{ z | trim }}\n{% endfor %}",
            "{% for i in range(end=100) %}{% for j in range(end=100) %}{{ i * j }}{% endfor %}{% endfor %}",
            "{% set host = vars.x ~ \".internal\" %}{{ host | upper }}",
            "{% if vars.x is defined %}{{ vars.x | replace(from=\"a\", to=\"b\") }}{% endif %}",
            "{{ vars.x | default(value=\"y\") }}",
            "{% for k, v in vars %}{{ k }}={{ v }}\n{% endfor %}",
        ] {
            assert_eq!(cost(text), Ok(()), "{text}");
        }
    }

    /// Issue 12 item 13: templates evaluated at load time aborted (recursive macro) or ran
    /// for minutes (huge ranges, nested loops); each is now refused before it renders.
    #[test]
    fn issue_12_costly_templates_are_refused() {
        let table = [
            ("{% macro f(n) %}{{ self::f(n=n) }}{% endmacro f %}{{ self::f(n=1) }}", "macro"),
            ("{% for i in range(end=99999999999) %}x{% endfor %}", "could evaluate"),
            ("{% for i in range(end=100000) %}{% for j in range(end=100000) %}x{% endfor %}{% endfor %}", "could evaluate"),
            ("{% for a in vars.zones | split(pat=\",\") %}{% for b in vars.zones | split(pat=\",\") %}x{% endfor %}{% endfor %}", "could evaluate"),
            ("{% set a = vars.x %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}", "itself sets"),
            ("{% for i in range(end=10000) %}{{ vars.x | replace(from=\"a\", to=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\") | replace(from=\"a\", to=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\") | replace(from=\"a\", to=\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\") }}{% endfor %}", "could print"),
            (&format!("{{{{ {}1{} }}}}", "(".repeat(2000), ")".repeat(2000)), "nest more than"),
            (&format!("{}x{}", "{% if true %}".repeat(2000), "{% endif %}".repeat(2000)), "nest more than"),
            // Closing tags the parser does not see (in a string, a comment, a raw block)
            // must not hide a level.
            (&format!("{}x", "{% if a == \"%}{% endif %}\" %}".repeat(2000)), "nest more than"),
            (&format!("{}x", "{% if true %}{# {% endif %} #}".repeat(2000)), "nest more than"),
            (&format!("{}x", "{% if true %}{% raw %}{% endif %}{% endraw %}".repeat(2000)), "nest more than"),
            (&format!("{{{{ {}1 }}}}", "(\")\" ~ ".repeat(2000)), "nest more than"),
            (&format!("{{{{ 1{} }}}}", " + 1".repeat(5000)), "operators"),
            (&format!("{{{{ vars.x{} }}}}", " ~ vars.x".repeat(5000)), "operators"),
            (&format!("{{% if true{} %}}x{{% endif %}}", " and true".repeat(5000)), "operators"),
        ];
        for (text, expected) in table {
            let err = cost(text).unwrap_err();
            assert!(err.reason.contains(expected), "{text}: {err:?}");
        }
    }

    #[test]
    fn the_runtime_range_is_capped() {
        let mut tera = tera::Tera::default();
        install_runtime_caps(&mut tera);
        let ctx = tera::Context::new();
        let err = tera.render_str("{{ range(end=99999999999) | length }}", &ctx).unwrap_err();
        assert!(format!("{err:?}").contains("at most 10000"), "{err:?}");
        assert_eq!(
            tera.render_str("{{ range(start=2, end=11, step_by=3) | join(sep=\",\") }}", &ctx).unwrap(),
            "2,5,8"
        );
    }
}
