//! What can be wrong with a definition, and how it is shown: one miette diagnostic per
//! mistake, all of them collected into [`SpecErrors`] so one run reports every problem.

use std::fmt;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceSpan};

use super::source::{Location, SourceMap};

/// One mistake in the definitions. The message says what; [`Problem::help`] says what to do.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Problem {
    /// The text is not valid KDL v2.
    #[error("{message}")]
    Syntax { message: String, label: Option<String>, help: Option<String> },
    /// A node name the language does not have in this place.
    #[error("unknown node `{name}` in {context}")]
    UnknownNode { name: String, context: String, expected: Vec<&'static str> },
    /// A property the node does not take.
    #[error("unknown property `{name}` on `{node}`")]
    UnknownProperty { name: String, node: String, expected: Vec<&'static str> },
    /// A property given twice on one node.
    #[error("property `{name}` is given twice")]
    DuplicateProperty { name: String },
    /// More positional values than the node takes.
    #[error("`{node}` takes {takes}, found an extra value")]
    ExtraArgument { node: String, takes: String },
    /// A required argument, property or child is absent.
    #[error("`{node}` is missing its {what}")]
    Missing { node: String, what: String, example: String },
    /// A value of the wrong type, such as a number where a string belongs.
    #[error("{what} must be {expected}, found {found}")]
    WrongType { what: String, expected: String, found: String },
    /// A value of the right type outside what the field allows.
    #[error("{what} {reason}")]
    BadValue { what: String, reason: String, help: String },
    /// A duration that does not parse.
    #[error("`{value}` is not a duration: {reason}")]
    BadDuration { value: String, reason: String },
    /// A percentage that does not parse.
    #[error("`{value}` is not a percentage: {reason}")]
    BadPercent { value: String, reason: String },
    /// A budget of zero or less.
    #[error("the budget of `{node}` must be more than zero")]
    NonPositiveBudget { node: String },
    /// A probability outside 0..1.
    #[error("success probability {value} is outside 0..1")]
    ProbabilityOutOfRange { value: f64 },
    /// Two modules or gates with one id.
    #[error("{kind} `{id}` is defined twice")]
    Duplicate { kind: &'static str, id: String, first: String },
    /// `after` names something that does not exist.
    #[error("`{node}` runs after `{missing}`, which is not defined")]
    UnknownAfter { node: String, missing: String, suggestion: Option<String> },
    /// A phase lists a module that does not exist.
    #[error("phase `{phase}` lists module `{name}`, which is not defined")]
    UnknownPhaseModule { phase: String, name: String, suggestion: Option<String> },
    /// A phase names a gate that does not exist.
    #[error("phase `{phase}` is gated by `{name}`, which is not a defined gate")]
    UnknownPhaseGate { phase: String, name: String, suggestion: Option<String> },
    /// A resource that the workflow does not declare.
    #[error("`{node}` uses resource `{name}`, which the workflow does not declare")]
    UnknownResource { node: String, name: String },
    /// One module listed by two phases.
    #[error("module `{module}` is in two phases, `{first}` and `{second}`")]
    ModuleInTwoPhases { module: String, first: String, second: String },
    /// One gate closing two phases.
    #[error("gate `{gate}` closes two phases, `{first}` and `{second}`")]
    GateInTwoPhases { gate: String, first: String, second: String },
    /// A gate that no phase names, so it would cover nothing.
    #[error("gate `{gate}` is not the gate of any phase")]
    OrphanGate { gate: String },
    /// A phase with a gate and no modules: the gate would prove nothing.
    #[error("phase `{phase}` has gate `{gate}` but no modules")]
    GateWithoutModules { phase: String, gate: String },
    /// Two phases with one id.
    #[error("phase `{phase}` is defined twice")]
    DuplicatePhase { phase: String },
    /// Dependencies that go round in a circle.
    #[error("dependency cycle: {}", cycle.join(" → "))]
    Cycle { cycle: Vec<String> },
    /// An include glob that matches no file.
    #[error("include `{pattern}` matches no file")]
    IncludeMatchesNothing { pattern: String, searched: String },
    /// An include glob that would look at too many files and folders.
    #[error("include `{pattern}` looks through more than {limit} files and folders")]
    IncludeTooWide { pattern: String, limit: usize },
    /// An include that is not a valid glob.
    #[error("include `{pattern}` is not a valid pattern: {reason}")]
    BadInclude { pattern: String, reason: String },
    /// A file that cannot be read.
    #[error("cannot read `{path}`: {reason}")]
    Unreadable { path: String, reason: String },
    /// A manifest that is not YAML, or not a Kubernetes object.
    #[error("manifest {file}:{line}:{column}: {reason}")]
    BadManifest { file: String, line: usize, column: usize, reason: String },
    /// A file referenced by a step that does not exist.
    #[error("{what} `{path}` does not exist")]
    MissingFile { what: String, path: String },
    /// A template that uses a variable nobody defined.
    #[error("undefined template variable `{name}`")]
    UndefinedVariable { name: String, known: Vec<String> },
    /// A template that tera cannot parse or render.
    #[error("template does not render: {reason}")]
    Template { reason: String },
    /// The entry file has no `workflow` node.
    #[error("no `workflow` node in `{file}`")]
    NoWorkflow { file: String },
    /// More than one `workflow` node.
    #[error("a second `workflow` node; a rollout has one")]
    SecondWorkflow,
    /// Two steps of one module with one name.
    #[error("step `{step}` appears twice in `{node}`")]
    DuplicateStep { node: String, step: String },
    /// A module or gate with no steps at all.
    #[error("`{node}` has no steps")]
    NoSteps { node: String },
    /// A metric formula that names an unknown variable or does not evaluate.
    #[error("metric `{metric}` does not evaluate: {reason}")]
    BadMetric { metric: String, reason: String },
    /// A `--var` or vars file entry that is malformed.
    #[error("{reason}")]
    BadVarOverride { reason: String },
    /// A `--var` or vars file entry for a variable the workflow does not declare.
    #[error("{from} sets `{name}`, which the workflow's `vars` block does not declare")]
    UndeclaredVar { name: String, from: String, suggestion: Option<String>, declared: Vec<String> },
    /// A file the definitions name that is not a regular file (a FIFO, a device).
    #[error("`{path}` is {kind}, not a regular file")]
    NotAFile { path: String, kind: &'static str },
    /// A file larger than [`super::source::MAX_FILE_BYTES`].
    #[error("`{path}` is {size} bytes, more than the {limit} bytes milepost reads")]
    FileTooLarge { path: String, size: u64, limit: u64 },
    /// A file that is not UTF-8.
    #[error(
        "`{path}` is not UTF-8: byte 0x{byte:02X} at line {line}, column {column} (byte offset {offset})"
    )]
    NotUtf8 { path: String, byte: u8, line: usize, column: usize, offset: usize },
    /// Braces or block comments nested deeper than the parsers can safely follow.
    #[error("{what} nested more than {limit} levels deep")]
    TooDeep { what: &'static str, limit: usize },
    /// A template that could do unbounded work or produce unbounded text.
    #[error("template is too costly to render: {reason}")]
    TemplateLimit { reason: String, help: String },
    /// A secret's value is part of a `run` command line (a warning): every local user can
    /// read a process's arguments.
    #[error("the command of `{node} › {step}` contains the value of a secret")]
    SecretInCommand { node: String, step: String },
    /// `--env`/`MILEPOST_ENV` or a `requires` names an environment the workflow does not
    /// declare.
    #[error("{from} names environment `{name}`, which the workflow does not declare")]
    UnknownEnvironment { name: String, from: String, suggestion: Option<String>, declared: Vec<String> },
    /// A `when` condition that is not one, or reads what it cannot know.
    #[error("the condition {reason}")]
    Condition { reason: String, help: String },
    /// An environment sets the source of a secret the workflow does not declare.
    #[error("environment `{environment}` sets secret `{name}`, which the workflow does not declare")]
    UnknownSecret { environment: String, name: String, suggestion: Option<String> },
}

impl super::source::ReadError {
    /// The problem to report for a file at `path` (as shown) that could not be read.
    pub fn into_problem(self, path: String) -> Problem {
        use super::source::{ReadError, MAX_FILE_BYTES};
        match self {
            ReadError::Io(e) => Problem::Unreadable { path, reason: e.to_string() },
            ReadError::NotAFile { kind } => Problem::NotAFile { path, kind },
            ReadError::TooLarge { size } => Problem::FileTooLarge { path, size, limit: MAX_FILE_BYTES },
            ReadError::NotUtf8 { offset, byte, line, column, .. } => {
                Problem::NotUtf8 { path, byte, line, column, offset }
            }
        }
    }
}

impl Problem {
    /// A stable code per kind, for docs and for people searching for the message.
    pub fn code(&self) -> &'static str {
        use Problem::*;
        match self {
            Syntax { .. } => "milepost::syntax",
            UnknownNode { .. } => "milepost::unknown_node",
            UnknownProperty { .. } => "milepost::unknown_property",
            DuplicateProperty { .. } => "milepost::duplicate_property",
            ExtraArgument { .. } => "milepost::extra_argument",
            Missing { .. } => "milepost::missing",
            WrongType { .. } => "milepost::wrong_type",
            BadValue { .. } => "milepost::bad_value",
            BadDuration { .. } => "milepost::bad_duration",
            BadPercent { .. } => "milepost::bad_percent",
            NonPositiveBudget { .. } => "milepost::non_positive_budget",
            ProbabilityOutOfRange { .. } => "milepost::probability_range",
            Duplicate { .. } => "milepost::duplicate_id",
            UnknownAfter { .. } => "milepost::unknown_after",
            UnknownPhaseModule { .. } => "milepost::unknown_phase_module",
            UnknownPhaseGate { .. } => "milepost::unknown_phase_gate",
            UnknownResource { .. } => "milepost::unknown_resource",
            ModuleInTwoPhases { .. } => "milepost::module_in_two_phases",
            GateInTwoPhases { .. } => "milepost::gate_in_two_phases",
            OrphanGate { .. } => "milepost::orphan_gate",
            GateWithoutModules { .. } => "milepost::gate_without_modules",
            DuplicatePhase { .. } => "milepost::duplicate_phase",
            Cycle { .. } => "milepost::cycle",
            IncludeMatchesNothing { .. } => "milepost::include_matches_nothing",
            BadInclude { .. } => "milepost::bad_include",
            IncludeTooWide { .. } => "milepost::include_too_wide",
            Unreadable { .. } => "milepost::unreadable",
            MissingFile { .. } => "milepost::missing_file",
            BadManifest { .. } => "milepost::bad_manifest",
            UndefinedVariable { .. } => "milepost::undefined_variable",
            Condition { .. } => "milepost::condition",
            Template { .. } => "milepost::template",
            NoWorkflow { .. } => "milepost::no_workflow",
            SecondWorkflow => "milepost::second_workflow",
            DuplicateStep { .. } => "milepost::duplicate_step",
            NoSteps { .. } => "milepost::no_steps",
            BadMetric { .. } => "milepost::bad_metric",
            BadVarOverride { .. } => "milepost::bad_var",
            UndeclaredVar { .. } => "milepost::undeclared_var",
            NotAFile { .. } => "milepost::not_a_file",
            FileTooLarge { .. } => "milepost::file_too_large",
            NotUtf8 { .. } => "milepost::not_utf8",
            TooDeep { .. } => "milepost::too_deep",
            TemplateLimit { .. } => "milepost::template_limit",
            SecretInCommand { .. } => "milepost::secret_in_command",
            UnknownEnvironment { .. } => "milepost::unknown_environment",
            UnknownSecret { .. } => "milepost::unknown_secret",
        }
    }

    /// What to do about it.
    pub fn help(&self) -> Option<String> {
        use Problem::*;
        let text = match self {
            Syntax { help, .. } => return help.clone(),
            UnknownNode { name, expected, .. } | UnknownProperty { name, expected, .. } => {
                match did_you_mean(name, expected.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None if expected.is_empty() => match self {
                        UnknownNode { .. } => "this place takes no child nodes".into(),
                        _ => "this node takes no properties".into(),
                    },
                    None => format!("expected one of: {}", expected.join(", ")),
                }
            }
            DuplicateProperty { .. } => "keep one; the second would silently win".into(),
            ExtraArgument { .. } => "remove the extra value, or name it as a property".into(),
            Missing { example, .. } => format!("for example: {example}"),
            WrongType { expected, .. } if expected.contains("#true") => {
                "booleans are written #true and #false".into()
            }
            WrongType { expected, .. } if expected.contains("string") => {
                "strings are quoted: \"4h30m\", \"2A\"".into()
            }
            WrongType { .. } => "numbers are written without quotes: 2, 0.94".into(),
            BadValue { help, .. } | Condition { help, .. } => help.clone(),
            BadDuration { reason, .. } if reason.contains("10 years") => {
                "a budget, timeout, backoff or interval is at most \"10y\"; check the number and its unit".into()
            }
            BadDuration { .. } => "write durations like \"4h30m\", \"90s\" or \"500ms\"".into(),
            BadPercent { .. } => "write percentages like \"20%\"".into(),
            NonPositiveBudget { .. } => "a budget is the planned time, e.g. budget \"4h\"".into(),
            ProbabilityOutOfRange { .. } => "write it as a fraction, e.g. 0.94 for 94%".into(),
            Duplicate { first, .. } => format!("first defined at {first}; rename one of them"),
            UnknownAfter { suggestion, .. }
            | UnknownPhaseModule { suggestion, .. }
            | UnknownPhaseGate { suggestion, .. } => match suggestion {
                Some(near) => format!("did you mean `{near}`?"),
                None => "define it in an included file, or fix the name".into(),
            },
            UnknownResource { name, .. } => {
                format!("declare it in the workflow: resource {name} limit=1")
            }
            ModuleInTwoPhases { .. } => "a module belongs to one phase; remove it from one".into(),
            GateInTwoPhases { .. } => "give each phase its own gate".into(),
            OrphanGate { gate } => format!("name it in a phase: phase \"2A\" {{ gate {gate} }}"),
            GateWithoutModules { .. } => "list the phase's modules: modules a b".into(),
            DuplicatePhase { .. } => "rename one of the phases".into(),
            Cycle { .. } => "remove one of the `after` edges in the cycle".into(),
            IncludeMatchesNothing { searched, .. } => {
                format!("patterns are relative to the including file; searched {searched}")
            }
            BadInclude { .. } => "use * and ? wildcards, e.g. \"../modules/*.kdl\"".into(),
            IncludeTooWide { .. } => {
                "start the pattern at the folder that holds the definitions, e.g. \"../modules/**/*.kdl\"".into()
            }
            Unreadable { .. } => "check the path and its permissions".into(),
            MissingFile { .. } => "paths are relative to the file that names them".into(),
            BadManifest { .. } => "lines count in the manifest as rendered by tera; wrap another tool's \
                                   {{ }} in {% raw %}…{% endraw %}"
                .into(),
            UndefinedVariable { name, known } => {
                if let Some(near) = did_you_mean(name, known.iter().map(String::as_str).filter(|k| k != name))
                {
                    format!("did you mean `{near}`?")
                } else if known.is_empty() {
                    "define it in the workflow's vars block, or pass --var name=value".into()
                } else {
                    format!(
                        "defined variables: {}; add it to vars or pass --var name=value",
                        known.join(", ")
                    )
                }
            }
            Template { .. } => "see https://keats.github.io/tera/docs/ for the syntax".into(),
            NoWorkflow { .. } => "start the file with: workflow my-rollout { … }".into(),
            SecondWorkflow => "move the second workflow to a file of its own".into(),
            DuplicateStep { .. } => "step names identify steps in logs and on resume".into(),
            NoSteps { .. } => "add an install or validate block with at least one step".into(),
            BadMetric { .. } => "formulas are tera expressions over run variables".into(),
            BadVarOverride { .. } => "write --var name=value".into(),
            UndeclaredVar { suggestion: Some(near), .. } => format!("did you mean `{near}`?"),
            UndeclaredVar { name, declared, .. } if declared.is_empty() => {
                format!("declare it in the workflow: vars {{ {name} \"default\" }}")
            }
            UndeclaredVar { name, declared, .. } => {
                let mut shown: Vec<&str> = declared.iter().take(12).map(String::as_str).collect();
                if declared.len() > shown.len() {
                    shown.push("…");
                }
                format!(
                    "declared variables: {}; declare `{name}` in the workflow's vars block to set it",
                    shown.join(", ")
                )
            }
            NotAFile { .. } => {
                "definition files, vars files, templates and manifests must be regular files".into()
            }
            FileTooLarge { .. } => "a definition file is plain text well below 64 MiB; check the path".into(),
            NotUtf8 { .. } => {
                "definitions are UTF-8 text; convert the file, e.g. iconv -f latin1 -t utf-8".into()
            }
            TooDeep { .. } => {
                "definitions nest a few levels (module › install › run › env); check for unclosed or repeated braces"
                    .into()
            }
            TemplateLimit { help, .. } => help.clone(),
            UnknownEnvironment { suggestion: Some(near), .. } => format!("did you mean `{near}`?"),
            UnknownEnvironment { declared, .. } if declared.is_empty() => {
                "this workflow declares no environments: drop --env (and MILEPOST_ENV), or declare one: \
                 environment staging { … }"
                    .into()
            }
            UnknownEnvironment { declared, .. } => format!("declared environments: {}", declared.join(", ")),
            UnknownSecret { suggestion: Some(near), .. } => format!("did you mean `{near}`?"),
            UnknownSecret { name, .. } => {
                format!("declare it in the workflow first: secret {name} env=\"…\"; the environment only says where its value comes from")
            }
            SecretInCommand { .. } => "pass it through the environment instead: `env TOKEN=\"{{ secrets.token }}\"` in the step's block and \"$TOKEN\" in the command; command lines are visible to every local user (ps)".into(),
        };
        Some(text)
    }
}

/// The closest of `candidates` to `name`, when it is close enough to be a typo.
pub fn did_you_mean<'a>(name: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    // Comparing is quadratic in the lengths; a typo of a long name is not worth it.
    const LONGEST: usize = 200;
    if name.len() > LONGEST {
        return None;
    }
    candidates
        .into_iter()
        .filter(|c| c.len() <= LONGEST)
        .map(|c| (strsim::jaro_winkler(name, c), c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// The longest line a diagnostic quotes, in bytes; past it only `file:line:col` is shown.
const MAX_QUOTED_LINE: usize = 4096;

/// Problems found while loading, before sources are attached.
#[derive(Debug, Default)]
pub struct Problems {
    found: Vec<(Problem, Option<Location>, Option<String>)>,
    /// Things that load but deserve a look (`validate` prints them); never block a run.
    warnings: Vec<(Problem, Location)>,
}

impl Problems {
    pub fn at(&mut self, problem: Problem, at: Location) {
        self.found.push((problem, Some(at), None));
    }

    pub fn labelled(&mut self, problem: Problem, at: Location, label: impl Into<String>) {
        self.found.push((problem, Some(at), Some(label.into())));
    }

    pub fn nowhere(&mut self, problem: Problem) {
        self.found.push((problem, None, None));
    }

    /// A warning: reported by `validate`, never a reason to refuse the definitions.
    pub fn warn(&mut self, problem: Problem, at: Location) {
        self.warnings.push((problem, at));
    }

    pub fn has_warnings(&self) -> bool {
        !self.warnings.is_empty()
    }

    /// The warnings, with sources attached, sorted by file and offset.
    pub fn warnings(&self, sources: &SourceMap) -> Vec<SpecDiagnostic> {
        let mut out: Vec<SpecDiagnostic> = self
            .warnings
            .iter()
            .map(|(problem, at)| SpecDiagnostic {
                location: Some(sources.describe(*at)),
                src: (sources.line_len(*at) <= MAX_QUOTED_LINE).then(|| sources.named_source(at.file)),
                span: (sources.line_len(*at) <= MAX_QUOTED_LINE).then_some(at.span),
                order: Some((at.file.0, at.span.offset())),
                problem: problem.clone(),
                label: None,
                severity: miette::Severity::Warning,
            })
            .collect();
        out.sort_by_key(|d| d.order);
        out
    }

    pub fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    pub fn extend(&mut self, other: Problems) {
        self.found.extend(other.found);
        self.warnings.extend(other.warnings);
    }

    pub fn len(&self) -> usize {
        self.found.len()
    }

    /// Attaches the source text and sorts by file and offset.
    pub fn into_errors(self, sources: &SourceMap) -> SpecErrors {
        let mut diagnostics: Vec<SpecDiagnostic> = self
            .found
            .into_iter()
            .map(|(problem, at, label)| SpecDiagnostic {
                location: at.map(|at| sources.describe(at)),
                // miette cannot draw a label past column 65 535 (it panics), and nobody reads
                // such a line: the location names it instead.
                src: at
                    .filter(|at| sources.line_len(*at) <= MAX_QUOTED_LINE)
                    .map(|at| sources.named_source(at.file)),
                span: at.filter(|at| sources.line_len(*at) <= MAX_QUOTED_LINE).map(|at| at.span),
                order: at.map(|at| (at.file.0, at.span.offset())),
                problem,
                label,
                severity: miette::Severity::Error,
            })
            .collect();
        diagnostics.sort_by_key(|d| d.order.unwrap_or((u32::MAX, usize::MAX)));
        diagnostics.dedup_by(|a, b| a.problem == b.problem && a.order == b.order);
        SpecErrors { diagnostics }
    }
}

/// One rendered-ready diagnostic: the problem, where it is and the file's text.
#[derive(Debug)]
pub struct SpecDiagnostic {
    pub problem: Problem,
    /// `file:line:col`, for one-line renderings and JSON.
    pub location: Option<String>,
    label: Option<String>,
    src: Option<NamedSource<Arc<str>>>,
    span: Option<SourceSpan>,
    order: Option<(u32, usize)>,
    severity: miette::Severity,
}

impl SpecDiagnostic {
    /// Whether the rendering quotes the source; when not, [`Self::location`] says where.
    pub fn quotes_source(&self) -> bool {
        self.src.is_some()
    }
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.problem.fmt(f)
    }
}

impl std::error::Error for SpecDiagnostic {}

impl Diagnostic for SpecDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.problem.code()))
    }

    fn severity(&self) -> Option<miette::Severity> {
        Some(self.severity)
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.problem.help().map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn miette::SourceCode> {
        self.src.as_ref().map(|s| s as &dyn miette::SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        let span = self.span?;
        let label = self.label.clone().unwrap_or_else(|| default_label(&self.problem).into());
        Some(Box::new(std::iter::once(LabeledSpan::new_with_span(Some(label), span))))
    }
}

fn default_label(problem: &Problem) -> &'static str {
    use Problem::*;
    match problem {
        Syntax { .. } => "here",
        UnknownNode { .. } | UnknownProperty { .. } => "not known here",
        Missing { .. } => "in this node",
        WrongType { .. } | BadValue { .. } => "this value",
        BadDuration { .. } => "not a duration",
        BadPercent { .. } => "not a percentage",
        Duplicate { .. } | DuplicatePhase { .. } | DuplicateStep { .. } => "defined again here",
        UnknownAfter { .. } | UnknownPhaseModule { .. } | UnknownPhaseGate { .. } => {
            "no module or gate has this name"
        }
        Cycle { .. } => "the cycle passes through here",
        UndefinedVariable { .. } => "used in this string",
        IncludeMatchesNothing { .. } => "matches nothing",
        NotUtf8 { .. } => "not UTF-8",
        TooDeep { .. } => "too deep from here",
        SecretInCommand { .. } => "a secret is rendered into this command",
        _ => "here",
    }
}

/// Every problem found in one load, sorted by file and position.
#[derive(Debug, thiserror::Error)]
pub struct SpecErrors {
    pub diagnostics: Vec<SpecDiagnostic>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.diagnostics.len() {
            1 => write!(f, "the definitions have 1 error"),
            n => write!(f, "the definitions have {n} errors"),
        }
    }
}

impl Diagnostic for SpecErrors {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new("milepost::invalid_definitions"))
    }

    fn related<'a>(&'a self) -> Option<Box<dyn Iterator<Item = &'a dyn Diagnostic> + 'a>> {
        Some(Box::new(self.diagnostics.iter().map(|d| d as &dyn Diagnostic)))
    }
}
