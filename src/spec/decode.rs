//! KDL → raw definitions. Checks one value at a time (types, durations, unknown names);
//! everything that needs more than one node is [`super::validate`]'s job.

use std::path::Path;

use kdl::{KdlDocument, KdlEntry, KdlNode, KdlValue};
use miette::SourceSpan;

use super::diagnostic::{Problem, Problems};
use super::raw::*;
use super::source::{FileId, Location, Spanned};
use super::values::{parse_duration, parse_percent};

const TOP_LEVEL: &[&str] = &["workflow", "module", "gate"];
const WORKFLOW_CHILDREN: &[&str] = &[
    "title",
    "include",
    "parallelism",
    "shell",
    "on-overrun",
    "vars",
    "secret",
    "resource",
    "phase",
    "metric",
    "kubernetes",
];
const MODULE_CHILDREN: &[&str] = &[
    "number",
    "title",
    "description",
    "budget",
    "buffer",
    "success-probability",
    "domain",
    "after",
    "uses",
    "on-overrun",
    "install",
    "validate",
];
const GATE_CHILDREN: &[&str] =
    &["title", "description", "budget", "success-probability", "after", "uses", "on-overrun", "validate"];
const STEP_KINDS: &[&str] = &["run", "http", "tcp", "template", "apply", "wait"];

/// Parses one file's text and decodes what it defines.
pub fn decode_file(text: &str, file: FileId, dir: &Path, problems: &mut Problems) -> RawFile {
    let doc = match KdlDocument::parse_v2(text) {
        Ok(doc) => doc,
        Err(err) => {
            for d in err.diagnostics {
                let message = d.message.unwrap_or_else(|| "invalid KDL".into());
                let help = bare_word_help(text, d.span.offset()).or(d.help);
                let problem = Problem::Syntax { message, label: d.label.clone(), help };
                let at = Location { file, span: d.span };
                match d.label {
                    Some(label) => problems.labelled(problem, at, label),
                    None => problems.at(problem, at),
                }
            }
            return RawFile::default();
        }
    };
    let mut out = RawFile::default();
    let mut cx = Cx { file, problems };
    for node in doc.nodes() {
        match node.name().value() {
            "workflow" => {
                if let Some(w) = cx.workflow(node) {
                    out.workflows.push(w);
                }
            }
            "module" => {
                if let Some(m) = cx.node(node, NodeKind::Module, dir) {
                    out.nodes.push(m);
                }
            }
            "gate" => {
                if let Some(g) = cx.node(node, NodeKind::Gate, dir) {
                    out.nodes.push(g);
                }
            }
            other => cx.unknown_node(node, other, "a definition file", TOP_LEVEL),
        }
    }
    out
}

/// Decoding context: which file we are in and where problems go.
struct Cx<'p> {
    file: FileId,
    problems: &'p mut Problems,
}

impl Cx<'_> {
    fn at(&self, span: SourceSpan) -> Location {
        Location { file: self.file, span }
    }

    fn name_at(&self, node: &KdlNode) -> Location {
        self.at(node.name().span())
    }

    fn unknown_node(&mut self, node: &KdlNode, name: &str, context: &str, expected: &[&'static str]) {
        let problem = Problem::UnknownNode {
            name: name.to_string(),
            context: context.to_string(),
            expected: expected.to_vec(),
        };
        self.problems.at(problem, self.name_at(node));
    }

    /// Reports properties not in `allowed`, properties given twice, and positional values
    /// past `max_args`.
    fn check_shape(&mut self, node: &KdlNode, max_args: usize, takes: &str, allowed: &[&'static str]) {
        let mut seen: Vec<&str> = Vec::new();
        let mut args = 0;
        for entry in node.entries() {
            match entry.name() {
                Some(key) => {
                    let key = key.value();
                    if !allowed.contains(&key) {
                        let problem = Problem::UnknownProperty {
                            name: key.to_string(),
                            node: node.name().value().to_string(),
                            expected: allowed.to_vec(),
                        };
                        self.problems.at(problem, self.at(entry.span()));
                    } else if seen.contains(&key) {
                        let problem = Problem::DuplicateProperty { name: key.to_string() };
                        self.problems.at(problem, self.at(entry.span()));
                    }
                    seen.push(key);
                }
                None => {
                    args += 1;
                    if args > max_args {
                        let problem = Problem::ExtraArgument {
                            node: node.name().value().to_string(),
                            takes: takes.to_string(),
                        };
                        self.problems.at(problem, self.at(entry.span()));
                    }
                }
            }
        }
    }

    fn no_children(&mut self, node: &KdlNode) {
        if let Some(children) = node.children() {
            let problem = Problem::BadValue {
                what: format!("`{}`", node.name().value()),
                reason: "takes no block".into(),
                help: "remove the braces and what is inside them".into(),
            };
            self.problems.at(problem, self.at(children.span()));
        }
    }

    /// A leaf node with exactly one value: `title "…"`, `parallelism 2`.
    fn leaf<'n>(&mut self, node: &'n KdlNode, example: &str) -> Option<&'n KdlEntry> {
        self.check_shape(node, 1, "one value", &[]);
        self.no_children(node);
        let first = args(node).next();
        if first.is_none() {
            self.missing(node, "value", example);
        }
        first
    }

    fn missing(&mut self, node: &KdlNode, what: &str, example: &str) {
        let problem = Problem::Missing {
            node: node.name().value().to_string(),
            what: what.to_string(),
            example: example.to_string(),
        };
        self.problems.at(problem, self.name_at(node));
    }

    fn string(&mut self, entry: &KdlEntry, what: &str) -> Option<Spanned<String>> {
        match entry.value() {
            KdlValue::String(s) => Some(Spanned::new(s.clone(), self.file, entry.span())),
            other => {
                self.wrong_type(entry, what, "a string", other);
                None
            }
        }
    }

    fn wrong_type(&mut self, entry: &KdlEntry, what: &str, expected: &str, found: &KdlValue) {
        let problem = Problem::WrongType {
            what: what.to_string(),
            expected: expected.to_string(),
            found: describe_value(found),
        };
        self.problems.at(problem, self.at(entry.span()));
    }

    fn unsigned(&mut self, entry: &KdlEntry, what: &str, min: i128) -> Option<Spanned<u32>> {
        match entry.value() {
            KdlValue::Integer(n) if *n >= min && *n <= i128::from(u32::MAX) => {
                Some(Spanned::new(*n as u32, self.file, entry.span()))
            }
            KdlValue::Integer(n) => {
                let problem = Problem::BadValue {
                    what: what.to_string(),
                    reason: format!("must be at least {min}, found {n}"),
                    help: format!("use a whole number of {min} or more"),
                };
                self.problems.at(problem, self.at(entry.span()));
                None
            }
            other => {
                self.wrong_type(entry, what, "a whole number", other);
                None
            }
        }
    }

    fn number(&mut self, entry: &KdlEntry, what: &str) -> Option<Spanned<f64>> {
        match entry.value() {
            KdlValue::Integer(n) => Some(Spanned::new(*n as f64, self.file, entry.span())),
            KdlValue::Float(x) => Some(Spanned::new(*x, self.file, entry.span())),
            other => {
                self.wrong_type(entry, what, "a number", other);
                None
            }
        }
    }

    fn boolean(&mut self, entry: &KdlEntry, what: &str) -> Option<bool> {
        match entry.value() {
            KdlValue::Bool(b) => Some(*b),
            other => {
                self.wrong_type(entry, what, "#true or #false", other);
                None
            }
        }
    }

    fn duration(&mut self, entry: &KdlEntry, what: &str) -> Option<Spanned<std::time::Duration>> {
        let text = match entry.value() {
            KdlValue::String(s) => s,
            KdlValue::Integer(_) | KdlValue::Float(_) => {
                let problem = Problem::BadDuration {
                    value: entry.value().to_string(),
                    reason: "a bare number has no unit".into(),
                };
                self.problems.at(problem, self.at(entry.span()));
                return None;
            }
            other => {
                self.wrong_type(entry, what, "a duration string like \"4h30m\"", other);
                return None;
            }
        };
        match parse_duration(text) {
            Ok(d) => Some(Spanned::new(d, self.file, entry.span())),
            Err(reason) => {
                let problem = Problem::BadDuration { value: text.clone(), reason };
                self.problems.at(problem, self.at(entry.span()));
                None
            }
        }
    }

    fn percent(&mut self, entry: &KdlEntry, what: &str) -> Option<Spanned<super::values::Percent>> {
        let KdlValue::String(text) = entry.value() else {
            self.wrong_type(entry, what, "a percentage string like \"20%\"", entry.value());
            return None;
        };
        match parse_percent(text) {
            Ok(p) => Some(Spanned::new(p, self.file, entry.span())),
            Err(reason) => {
                let problem = Problem::BadPercent { value: text.clone(), reason };
                self.problems.at(problem, self.at(entry.span()));
                None
            }
        }
    }

    fn on_overrun(&mut self, node: &KdlNode) -> Option<Spanned<OnOverrun>> {
        let entry = self.leaf(node, "on-overrun fail")?;
        let value = self.string(entry, "`on-overrun`")?;
        match value.value.as_str() {
            "warn" => Some(value.map(|_| OnOverrun::Warn)),
            "fail" => Some(value.map(|_| OnOverrun::Fail)),
            other => {
                let problem = Problem::BadValue {
                    what: "`on-overrun`".into(),
                    reason: format!("must be `warn` or `fail`, found `{other}`"),
                    help: "warn logs a warning when the budget runs out; fail stops the node".into(),
                };
                self.problems.at(problem, value.at());
                None
            }
        }
    }

    /// The node's single name argument: `module k8s-infra { … }`.
    fn id(&mut self, node: &KdlNode, example: &str) -> Option<Spanned<String>> {
        let Some(entry) = args(node).next() else {
            self.missing(node, "name", example);
            return None;
        };
        let id = self.string(entry, &format!("the name of a `{}`", node.name().value()))?;
        if id.value.trim().is_empty() {
            let problem = Problem::BadValue {
                what: "a name".into(),
                reason: "cannot be empty".into(),
                help: example.to_string(),
            };
            self.problems.at(problem, id.at());
            return None;
        }
        Some(id)
    }

    /// Every positional value as a string: `after a b`, `modules x y`.
    fn strings(&mut self, node: &KdlNode, what: &str) -> Vec<Spanned<String>> {
        args(node).filter_map(|e| self.string(e, what)).collect()
    }

    fn workflow(&mut self, node: &KdlNode) -> Option<RawWorkflow> {
        self.check_shape(node, 1, "one name", &[]);
        let id = self.id(node, "workflow phase-2 { … }")?;
        let mut w = RawWorkflow {
            id,
            title: None,
            includes: Vec::new(),
            parallelism: None,
            shell: None,
            on_overrun: None,
            vars: Vec::new(),
            secrets: Vec::new(),
            resources: Vec::new(),
            phases: Vec::new(),
            metrics: Vec::new(),
            kubernetes: None,
        };
        for child in children(node) {
            match child.name().value() {
                "title" => w.title = self.leaf(child, "title \"…\"").and_then(|e| self.string(e, "`title`")),
                "include" => {
                    self.check_shape(child, usize::MAX, "file patterns", &[]);
                    self.no_children(child);
                    if args(child).next().is_none() {
                        self.missing(child, "file pattern", "include \"../modules/*.kdl\"");
                    }
                    w.includes.extend(self.strings(child, "an include pattern"));
                }
                "parallelism" => {
                    w.parallelism =
                        self.leaf(child, "parallelism 2").and_then(|e| self.unsigned(e, "`parallelism`", 1));
                }
                "shell" => {
                    w.shell = self
                        .leaf(child, "shell \"bash -euo pipefail -c\"")
                        .and_then(|e| self.string(e, "`shell`"))
                }
                "on-overrun" => w.on_overrun = self.on_overrun(child),
                "vars" => {
                    self.check_shape(child, 0, "no values", &[]);
                    for var in children(child) {
                        let name = Spanned::new(var.name().value().to_string(), self.file, var.name().span());
                        if let Some(value) =
                            self.leaf(var, "istio_profile \"default\"").and_then(|e| self.var_value(e))
                        {
                            w.vars.push((name, value));
                        }
                    }
                }
                "secret" => {
                    self.check_shape(child, 1, "one name", &["env"]);
                    self.no_children(child);
                    let Some(name) = self.id(child, "secret vault_token env=\"VAULT_TOKEN\"") else {
                        continue;
                    };
                    let env = match child.entry("env") {
                        Some(e) => self.string(e, "`env`"),
                        None => Some(name.clone().map(|n| n.to_uppercase())),
                    };
                    if let Some(env) = env {
                        w.secrets.push(RawSecret { name, env });
                    }
                }
                "resource" => {
                    self.check_shape(child, 1, "one name", &["limit"]);
                    self.no_children(child);
                    let Some(name) = self.id(child, "resource cluster-api limit=1") else { continue };
                    let limit = match child.entry("limit") {
                        Some(e) => self.unsigned(e, "`limit`", 1),
                        None => {
                            self.missing(child, "limit", "resource cluster-api limit=1");
                            None
                        }
                    };
                    if let Some(limit) = limit {
                        w.resources.push(RawResource { name, limit });
                    }
                }
                "phase" => {
                    if let Some(p) = self.phase(child) {
                        w.phases.push(p);
                    }
                }
                "metric" => {
                    if let Some(m) = self.metric(child) {
                        w.metrics.push(m);
                    }
                }
                "kubernetes" => {
                    self.check_shape(child, 0, "no values", &[]);
                    let mut k = RawKubernetes::default();
                    for setting in children(child) {
                        match setting.name().value() {
                            "context" => {
                                k.context = self
                                    .leaf(setting, "context \"prod\"")
                                    .and_then(|e| self.string(e, "`context`"))
                            }
                            "namespace" => {
                                k.namespace = self
                                    .leaf(setting, "namespace \"default\"")
                                    .and_then(|e| self.string(e, "`namespace`"))
                            }
                            other => {
                                self.unknown_node(setting, other, "`kubernetes`", &["context", "namespace"])
                            }
                        }
                    }
                    w.kubernetes = Some(k);
                }
                other => self.unknown_node(child, other, "a workflow", WORKFLOW_CHILDREN),
            }
        }
        Some(w)
    }

    /// Variables are text; numbers and booleans are accepted and kept as written.
    fn var_value(&mut self, entry: &KdlEntry) -> Option<Spanned<String>> {
        let text = match entry.value() {
            KdlValue::String(s) => s.clone(),
            KdlValue::Integer(n) => n.to_string(),
            KdlValue::Float(x) => x.to_string(),
            KdlValue::Bool(b) => b.to_string(),
            KdlValue::Null => {
                self.wrong_type(entry, "a variable", "a string, number or boolean", entry.value());
                return None;
            }
        };
        Some(Spanned::new(text, self.file, entry.span()))
    }

    fn phase(&mut self, node: &KdlNode) -> Option<RawPhase> {
        self.check_shape(node, 2, "an id and a title", &[]);
        let id = self.id(node, "phase \"2A\" \"Foundation\" { modules a b; gate g }")?;
        let title = args(node).nth(1).and_then(|e| self.string(e, "a phase title"));
        let mut phase = RawPhase { id, title, modules: Vec::new(), gate: None };
        for child in children(node) {
            match child.name().value() {
                "modules" => {
                    self.check_shape(child, usize::MAX, "module names", &[]);
                    self.no_children(child);
                    phase.modules.extend(self.strings(child, "a module name"));
                }
                "gate" => {
                    phase.gate = self
                        .leaf(child, "gate infrastructure-stability")
                        .and_then(|e| self.string(e, "a gate name"));
                }
                other => self.unknown_node(child, other, "a phase", &["modules", "gate"]),
            }
        }
        Some(phase)
    }

    fn metric(&mut self, node: &KdlNode) -> Option<RawMetric> {
        self.check_shape(node, 2, "a name and a formula", &["target"]);
        self.no_children(node);
        let example = "metric success-rate \"{{ completed_modules / total_modules * 100 }}\" target=100";
        let id = self.id(node, example)?;
        let Some(formula) = args(node).nth(1) else {
            self.missing(node, "formula", example);
            return None;
        };
        let formula = self.string(formula, "a metric formula")?;
        let target = node.entry("target").and_then(|e| self.number(e, "`target`"));
        Some(RawMetric { id, formula, target })
    }

    fn node(&mut self, node: &KdlNode, kind: NodeKind, dir: &Path) -> Option<RawNode> {
        let noun = kind.noun();
        let problems_before = self.problems.len();
        self.check_shape(node, 1, "one name", &[]);
        let id = self.id(node, &format!("{noun} my-{noun} {{ … }}"))?;
        let mut raw = RawNode {
            kind,
            id,
            dir: dir.to_path_buf(),
            number: None,
            title: None,
            description: None,
            budget: None,
            buffer: None,
            probability: None,
            domain: None,
            after: Vec::new(),
            uses: Vec::new(),
            on_overrun: None,
            install: Vec::new(),
            validate: Vec::new(),
            flawed: false,
        };
        let allowed = match kind {
            NodeKind::Module => MODULE_CHILDREN,
            NodeKind::Gate => GATE_CHILDREN,
        };
        for child in children(node) {
            let name = child.name().value();
            if !allowed.contains(&name) {
                self.unknown_node(child, name, &format!("a {noun}"), allowed);
                continue;
            }
            match name {
                "number" => {
                    raw.number = self.leaf(child, "number 7").and_then(|e| self.unsigned(e, "`number`", 0))
                }
                "title" => {
                    raw.title = self.leaf(child, "title \"…\"").and_then(|e| self.string(e, "`title`"))
                }
                "description" => {
                    raw.description =
                        self.leaf(child, "description \"…\"").and_then(|e| self.string(e, "`description`"))
                }
                "budget" => {
                    let props: &[&'static str] = if kind == NodeKind::Module { &["buffer"] } else { &[] };
                    self.check_shape(child, 1, "one duration", props);
                    self.no_children(child);
                    match args(child).next() {
                        Some(e) => raw.budget = self.duration(e, "`budget`"),
                        None => self.missing(child, "duration", "budget \"4h30m\" buffer=\"20%\""),
                    }
                    if let Some(e) = child.entry("buffer") {
                        raw.buffer = self.percent(e, "`buffer`");
                    }
                }
                "buffer" => {
                    raw.buffer = self.leaf(child, "buffer \"20%\"").and_then(|e| self.percent(e, "`buffer`"))
                }
                "success-probability" => {
                    raw.probability = self
                        .leaf(child, "success-probability 0.94")
                        .and_then(|e| self.number(e, "`success-probability`"));
                }
                "domain" => {
                    raw.domain =
                        self.leaf(child, "domain infrastructure").and_then(|e| self.string(e, "`domain`"))
                }
                "after" => {
                    self.check_shape(child, usize::MAX, "names", &[]);
                    self.no_children(child);
                    if args(child).next().is_none() {
                        self.missing(child, "module or gate name", "after k8s-infra");
                    }
                    raw.after.extend(self.strings(child, "a module or gate name"));
                }
                "uses" => {
                    self.check_shape(child, usize::MAX, "resource names", &[]);
                    self.no_children(child);
                    raw.uses.extend(self.strings(child, "a resource name"));
                }
                "on-overrun" => raw.on_overrun = self.on_overrun(child),
                "install" => raw.install = self.steps(child),
                "validate" => raw.validate = self.steps(child),
                _ => unreachable!("`allowed` lists every name matched above"),
            }
        }
        if raw.budget.is_none() && !has_child(node, "budget") {
            let problem = Problem::Missing {
                node: format!("{noun} {}", raw.id.value),
                what: "budget".into(),
                example: "budget \"4h\"".into(),
            };
            self.problems.at(problem, raw.id.at());
        }
        raw.flawed = self.problems.len() > problems_before;
        Some(raw)
    }

    fn steps(&mut self, block: &KdlNode) -> Vec<RawStep> {
        self.check_shape(block, 0, "no values", &[]);
        children(block).filter_map(|s| self.step(s)).collect()
    }

    fn step(&mut self, node: &KdlNode) -> Option<RawStep> {
        let kind = node.name().value();
        let (primary, example, props): (&str, &str, &[&'static str]) = match kind {
            "run" => (
                "command",
                "run migrate \"./migrate.sh\" timeout=\"5m\"",
                &["timeout", "retries", "backoff", "interval", "cwd", "shell"],
            ),
            "http" => (
                "URL",
                "http health \"https://host/healthz\" expect=200",
                &["timeout", "interval", "method", "expect", "body"],
            ),
            "tcp" => ("address", "tcp postgres \"db.internal:5432\"", &["timeout", "interval"]),
            "template" => (
                "source file",
                "template config \"app.conf.tera\" dest=\"out/app.conf\"",
                &["dest", "timeout"],
            ),
            "apply" => (
                "manifest path",
                "apply ingress \"manifests/ingress.yaml\"",
                &["namespace", "force", "timeout", "retries", "backoff"],
            ),
            "wait" => (
                "resource",
                "wait istiod \"deployment/istiod\" namespace=istio-system condition=Available",
                &["namespace", "condition", "until", "timeout", "interval"],
            ),
            other => {
                self.unknown_node(node, other, "a step block", STEP_KINDS);
                return None;
            }
        };
        self.check_shape(node, 2, &format!("a name and a {primary}"), props);
        let mut values = args(node);
        let name = match values.next() {
            Some(e) => self.string(e, "a step name")?,
            None => {
                self.missing(node, "step name", example);
                return None;
            }
        };
        let Some(primary_entry) = values.next() else {
            self.missing(node, primary, example);
            return None;
        };
        let primary_value = self.string(primary_entry, &format!("the {primary} of `{kind}`"))?;
        let prop = |key: &str| node.entry(key);
        let mut env = Vec::new();
        for child in children(node) {
            match (kind, child.name().value()) {
                ("run", "env") => {
                    // Any property name is an environment variable, so only values are checked.
                    self.no_children(child);
                    for entry in child.entries() {
                        match entry.name() {
                            Some(key) => {
                                let key = Spanned::new(key.value().to_string(), self.file, key.span());
                                if let Some(value) = self.var_value(entry) {
                                    env.push((key, value));
                                }
                            }
                            None => {
                                let problem = Problem::ExtraArgument {
                                    node: "env".into(),
                                    takes: "only properties, NAME=\"value\"".into(),
                                };
                                self.problems.at(problem, self.at(entry.span()));
                            }
                        }
                    }
                }
                (_, other) => {
                    let expected: &[&'static str] = if kind == "run" { &["env"] } else { &[] };
                    self.unknown_node(child, other, &format!("a `{kind}` step"), expected);
                }
            }
        }
        let step_kind = match kind {
            "run" => RawStepKind::Run {
                command: primary_value,
                shell: prop("shell").and_then(|e| self.string(e, "`shell`")),
                cwd: prop("cwd").and_then(|e| self.string(e, "`cwd`")),
                env,
            },
            "http" => RawStepKind::Http {
                url: primary_value,
                method: prop("method").and_then(|e| self.string(e, "`method`")),
                expect: prop("expect").and_then(|e| self.status(e)),
                body: prop("body").and_then(|e| self.string(e, "`body`")),
            },
            "tcp" => RawStepKind::Tcp { address: primary_value },
            "template" => {
                let Some(dest) = prop("dest") else {
                    self.missing(node, "dest property", example);
                    return None;
                };
                RawStepKind::Template { source: primary_value, dest: self.string(dest, "`dest`")? }
            }
            "apply" => RawStepKind::Apply {
                path: primary_value,
                namespace: prop("namespace").and_then(|e| self.string(e, "`namespace`")),
                force: prop("force").and_then(|e| self.boolean(e, "`force`")).unwrap_or(false),
            },
            "wait" => RawStepKind::Wait {
                resource: primary_value,
                namespace: prop("namespace").and_then(|e| self.string(e, "`namespace`")),
                condition: prop("condition").and_then(|e| self.string(e, "`condition`")),
                until: prop("until").and_then(|e| self.string(e, "`until`")),
            },
            _ => unreachable!("step kinds were matched above"),
        };
        Some(RawStep {
            name,
            at: self.name_at(node),
            kind: step_kind,
            timeout: prop("timeout").and_then(|e| self.duration(e, "`timeout`")),
            retries: prop("retries").and_then(|e| self.unsigned(e, "`retries`", 0)),
            backoff: prop("backoff").and_then(|e| self.duration(e, "`backoff`")),
            interval: prop("interval").and_then(|e| self.duration(e, "`interval`")),
        })
    }

    fn status(&mut self, entry: &KdlEntry) -> Option<Spanned<u16>> {
        match entry.value() {
            KdlValue::Integer(n) if (100..=599).contains(n) => {
                Some(Spanned::new(*n as u16, self.file, entry.span()))
            }
            KdlValue::Integer(n) => {
                let problem = Problem::BadValue {
                    what: "`expect`".into(),
                    reason: format!("must be an HTTP status from 100 to 599, found {n}"),
                    help: "for example expect=200".into(),
                };
                self.problems.at(problem, self.at(entry.span()));
                None
            }
            other => {
                self.wrong_type(entry, "`expect`", "an HTTP status number", other);
                None
            }
        }
    }
}

/// KDL v2 reads `4h` or `20%` as a broken number; the fix is quotes, which its own help
/// does not say.
fn bare_word_help(text: &str, offset: usize) -> Option<String> {
    let before = text.get(..offset)?;
    let start = before.rfind(|c: char| c.is_whitespace() || c == '=').map_or(0, |i| i + 1);
    let word: String =
        text.get(start..)?.chars().take_while(|c| !c.is_whitespace() && *c != ';' && *c != '}').collect();
    let starts_with_digit = word.chars().next().is_some_and(|c| c.is_ascii_digit() || c == '-');
    let has_letters = word.chars().any(|c| c.is_ascii_alphabetic() || c == '%');
    (starts_with_digit && has_letters)
        .then(|| format!("values that start with a digit are numbers in KDL v2; quote it: \"{word}\""))
}

fn args(node: &KdlNode) -> impl Iterator<Item = &KdlEntry> {
    node.entries().iter().filter(|e| e.name().is_none())
}

fn children(node: &KdlNode) -> impl Iterator<Item = &KdlNode> {
    node.children().into_iter().flat_map(|doc| doc.nodes())
}

fn has_child(node: &KdlNode, name: &str) -> bool {
    children(node).any(|c| c.name().value() == name)
}

fn describe_value(value: &KdlValue) -> String {
    match value {
        KdlValue::String(s) => format!("the string \"{s}\""),
        KdlValue::Integer(n) => format!("the number {n}"),
        KdlValue::Float(x) => format!("the number {x}"),
        KdlValue::Bool(b) => format!("#{b}"),
        KdlValue::Null => "#null".into(),
    }
}
