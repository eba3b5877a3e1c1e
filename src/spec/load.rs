//! The entry point of `spec`: reads a workflow file and everything it includes, and returns
//! the validated [`Workflow`] or every problem found.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use miette::SourceSpan;

use super::decode::{decode_file, Parse};
use super::diagnostic::{did_you_mean, Problem, Problems, SpecDiagnostic, SpecErrors};
use super::model::Workflow;
use super::raw::RawNode;
use super::source::{Location, ReadError, SourceMap};
use super::validate::{resolve, Inputs};

/// What a command passes beside the workflow path.
#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// `--var name=value`, later ones win.
    pub vars: Vec<(String, String)>,
    /// `--vars-file`: KDL files of `name "value"` lines, applied before `--var`.
    pub vars_files: Vec<PathBuf>,
    /// Environment for secrets; `None` reads the process environment.
    pub env: Option<BTreeMap<String, String>>,
    /// The workflow's environment to load (`--env`, `MILEPOST_ENV`).
    pub environment: Option<ChosenEnvironment>,
    /// Without `environment`, load the first environment a workflow declares: for views of
    /// every environment, which need values as an environment gives them.
    pub any_environment: bool,
}

/// An environment asked for, and whether by `MILEPOST_ENV` (ignored by a workflow that
/// declares no environments) rather than `--env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChosenEnvironment {
    pub name: String,
    pub from_variable: bool,
}

/// A loaded workflow with the sources it came from.
#[derive(Debug)]
pub struct Loaded {
    pub workflow: Workflow,
    pub sources: SourceMap,
    /// What loads but deserves a look (a secret in a command line); `validate` prints them.
    pub warnings: Vec<SpecDiagnostic>,
}

impl Loaded {
    /// How many definition files were read.
    pub fn sources_len(&self) -> usize {
        self.sources.len()
    }
}

/// Loads and validates `path`.
///
/// # Errors
/// Every problem found in the definitions, in file order.
pub fn load(path: &Path, options: &LoadOptions) -> Result<Loaded, SpecErrors> {
    // Most definitions are valid: the fast parser reads them. When anything is wrong, all is
    // read again with the kdl crate, whose positions and syntax messages diagnostics need.
    let mut sources = SourceMap::default();
    let mut problems = Problems::default();
    if let Some(workflow) = load_into(path, options, &mut sources, &mut problems, Parse::Fast) {
        // Warnings need positions too, which the fast read does not keep.
        if problems.is_empty() && !problems.has_warnings() {
            return Ok(Loaded { workflow, sources, warnings: Vec::new() });
        }
    }
    let mut sources = SourceMap::default();
    let mut problems = Problems::default();
    let result = load_into(path, options, &mut sources, &mut problems, Parse::Exact);
    match result {
        Some(workflow) if problems.is_empty() => {
            let warnings = problems.warnings(&sources);
            Ok(Loaded { workflow, sources, warnings })
        }
        _ => Err(problems.into_errors(&sources)),
    }
}

fn load_into(
    path: &Path,
    options: &LoadOptions,
    sources: &mut SourceMap,
    problems: &mut Problems,
    parse: Parse,
) -> Option<Workflow> {
    let path = absolute(path);
    let entry = read(&path, sources, problems, None)?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let text = sources.file(entry).text.clone();
    let mut decoded = decode_file(&text, entry, &dir, problems, parse);
    if decoded.workflows.is_empty() {
        if problems.is_empty() {
            let name = sources.file(entry).name.clone();
            problems.at(
                Problem::NoWorkflow { file: name },
                Location { file: entry, span: SourceSpan::from(0..0) },
            );
        }
        return None;
    }
    for extra in decoded.workflows.iter().skip(1) {
        problems.at(Problem::SecondWorkflow, extra.id.at());
    }
    let mut workflow = decoded.workflows.swap_remove(0);
    let environment =
        match (&options.environment, options.any_environment && !workflow.environments.is_empty()) {
            (None, true) => Some(0),
            (chosen, _) => super::environments::select(&workflow, chosen.as_ref(), problems),
        };
    if let Some(env) = environment {
        super::environments::lay_over(&mut workflow, env);
    }
    let mut nodes: Vec<RawNode> = decoded.nodes;
    for pattern in &workflow.includes {
        for file in expand_include(&pattern.value, &dir, pattern.at(), problems) {
            if sources.find(&file).is_some() {
                continue;
            }
            let Some(id) = read(&file, sources, problems, Some(pattern.at())) else { continue };
            let text = sources.file(id).text.clone();
            let file_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
            let included = decode_file(&text, id, &file_dir, problems, parse);
            for w in &included.workflows {
                problems.at(Problem::SecondWorkflow, w.id.at());
            }
            nodes.extend(included.nodes);
        }
    }
    // An environment's values first, then the command line's: later ones win.
    let from_environment =
        environment.map(|e| environment_vars(&workflow, e, &dir, sources, problems)).unwrap_or_default();
    let from_environment = declared_overrides(&workflow, from_environment, problems);
    // Every other environment's values are checked too: a typo in prod's vars is found
    // when staging is loaded, not on the day of the production rollout.
    for other in (0..workflow.environments.len()).filter(|&e| Some(e) != environment) {
        let set = environment_vars(&workflow, other, &dir, sources, problems);
        declared_overrides(&workflow, set, problems);
    }
    let from_command_line = declared_overrides(&workflow, overrides(options, sources, problems), problems);
    // What makes this run's values its own within its environment: the command line's
    // values that differ from what the workflow and environment give (docs/state.md §8).
    let var_overrides = from_command_line
        .iter()
        .filter(|(k, v)| {
            let given = from_environment
                .get(*k)
                .or_else(|| workflow.vars.iter().find(|(dk, _)| &dk.value == *k).map(|(_, dv)| &dv.value));
            given != Some(*v)
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut vars = from_environment;
    vars.extend(from_command_line);
    let inputs = Inputs { vars, var_overrides, env: options.env.clone(), environment };
    resolve(workflow, path, nodes, &inputs, sources, problems)
}

/// The files an include pattern names, sorted so load order is the same everywhere.
fn expand_include(pattern: &str, dir: &Path, at: Location, problems: &mut Problems) -> Vec<PathBuf> {
    let full = dir.join(pattern);
    let full_text = full.to_string_lossy().to_string();
    let is_glob = pattern.contains(['*', '?', '[']);
    if !is_glob {
        if !full.exists() {
            problems.at(Problem::MissingFile { what: "included file".into(), path: pattern.to_string() }, at);
            return Vec::new();
        }
        return vec![normalize(&full)];
    }
    let glob = match glob::Pattern::new(&full_text) {
        Ok(glob) => glob,
        Err(e) => {
            problems.at(Problem::BadInclude { pattern: pattern.to_string(), reason: e.msg.to_string() }, at);
            return Vec::new();
        }
    };
    let Some(mut files) = walk_glob(&full, &glob) else {
        problems.at(Problem::IncludeTooWide { pattern: pattern.to_string(), limit: MAX_GLOB_VISITS }, at);
        return Vec::new();
    };
    files.sort();
    if files.is_empty() {
        let searched = super::source::display_path(&normalize(&full));
        problems.at(Problem::IncludeMatchesNothing { pattern: pattern.to_string(), searched }, at);
    }
    files
}

/// The most directory entries one include pattern may look at: `include "/**/*.kdl"` would
/// otherwise walk the whole filesystem (and /proc without end).
const MAX_GLOB_VISITS: usize = 20_000;

/// The regular files matching `glob` (the pattern `full`, joined to the including file's
/// folder), found by walking from the pattern's longest literal prefix, no deeper than the
/// pattern reaches, looking at no more than [`MAX_GLOB_VISITS`] entries (`None` past that).
/// As the glob crate's own walk: `*` and `?` stay within one path component, `*` matches
/// names that start with a dot, `**` matches any number of folders, symlinks are followed.
fn walk_glob(full: &Path, glob: &glob::Pattern) -> Option<Vec<PathBuf>> {
    let options = glob::MatchOptions {
        case_sensitive: true,
        require_literal_separator: true,
        require_literal_leading_dot: false,
    };
    let wild = |c: &std::path::Component| c.as_os_str().to_string_lossy().contains(['*', '?', '[']);
    let components: Vec<std::path::Component> = full.components().collect();
    let literal = components.iter().take_while(|c| !wild(c)).count();
    let base: PathBuf = components[..literal].iter().collect();
    let rest = &components[literal..];
    let unbounded = rest.iter().any(|c| c.as_os_str() == "**");
    let mut files = Vec::new();
    let mut visits = 0usize;
    let mut stack = vec![(base, 1usize)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(Result::ok) {
            visits += 1;
            if visits > MAX_GLOB_VISITS {
                return None;
            }
            let path = entry.path();
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            if meta.is_file() && glob.matches_path_with(&path, options) {
                files.push(normalize(&path));
            } else if meta.is_dir() && (unbounded || depth < rest.len()) {
                stack.push((path, depth + 1));
            }
        }
    }
    Some(files)
}

/// Reads `path` into `sources`; what stops it is a problem at `at` (or nowhere).
pub(super) fn read(
    path: &Path,
    sources: &mut SourceMap,
    problems: &mut Problems,
    at: Option<Location>,
) -> Option<super::source::FileId> {
    let shown = super::source::display_path(path);
    match super::source::read_text(path) {
        Ok(text) => Some(sources.add(path.to_path_buf(), text)),
        Err(ReadError::NotUtf8 { text, offset, byte, line, column }) => {
            // The file joins the map read lossily, so the diagnostic can quote the line: the
            // text before `offset` is exact, and the bad byte became one U+FFFD (3 bytes).
            let id = sources.add(path.to_path_buf(), text);
            let problem = Problem::NotUtf8 { path: shown, byte, line, column, offset };
            problems.at(problem, Location { file: id, span: SourceSpan::new(offset.into(), 3) });
            None
        }
        Err(e) => {
            let problem = e.into_problem(shown);
            match at {
                Some(at) => problems.at(problem, at),
                None => problems.nowhere(problem),
            }
            None
        }
    }
}

/// One variable set from outside the definitions.
struct Override {
    name: String,
    value: String,
    /// The vars file entry; `None` for `--var`.
    at: Option<Location>,
    /// Where it was set, for messages: "`--var`", "the vars file", "environment `prod`".
    from: String,
}

/// The environment's `vars-file`s (relative to the workflow file), then its `vars`.
fn environment_vars(
    workflow: &super::raw::RawWorkflow,
    env: usize,
    dir: &Path,
    sources: &mut SourceMap,
    problems: &mut Problems,
) -> Vec<Override> {
    let env = &workflow.environments[env];
    let mut vars = Vec::new();
    for file in &env.vars_files {
        vars_file(&absolute(&dir.join(&file.value)), Some(file.at()), sources, problems, &mut vars);
    }
    for (name, value) in &env.vars {
        vars.push(Override {
            name: name.value.clone(),
            value: value.value.clone(),
            at: Some(name.at()),
            from: format!("environment `{}`", env.name.value),
        });
    }
    vars
}

/// `--vars-file` contents, then `--var`, in the order they apply (later ones win).
fn overrides(options: &LoadOptions, sources: &mut SourceMap, problems: &mut Problems) -> Vec<Override> {
    let mut vars = Vec::new();
    for file in &options.vars_files {
        vars_file(&absolute(file), None, sources, problems, &mut vars);
    }
    for (k, v) in &options.vars {
        vars.push(Override { name: k.clone(), value: v.clone(), at: None, from: "`--var`".into() });
    }
    vars
}

/// The `name "value"` lines of a vars file, appended to `vars`; `named_at` is where the
/// definitions name the file, if they do.
fn vars_file(
    path: &Path,
    named_at: Option<Location>,
    sources: &mut SourceMap,
    problems: &mut Problems,
    vars: &mut Vec<Override>,
) {
    {
        let Some(id) = read(path, sources, problems, named_at) else { return };
        let text = sources.file(id).text.clone();
        if let Some((problem, at)) = super::decode::too_deep(&text) {
            problems.at(problem, Location { file: id, span: at });
            return;
        }
        let parsed = match super::decode::parse_exact(&text) {
            super::decode::ExactParse::Parsed(parsed) => parsed,
            super::decode::ExactParse::TooManyBraces => {
                let problem = Problem::BadVarOverride {
                    reason: "a vars file is `name \"value\"` lines; this one has thousands of `{`".into(),
                };
                problems.at(problem, Location { file: id, span: SourceSpan::from(0..0) });
                return;
            }
        };
        match parsed {
            Err(err) => {
                for d in err.diagnostics {
                    let message = d.message.unwrap_or_else(|| "invalid KDL".into());
                    problems.at(
                        Problem::Syntax { message, label: d.label, help: d.help },
                        Location { file: id, span: d.span },
                    );
                }
            }
            Ok(doc) => {
                for node in doc.nodes() {
                    let at = Location { file: id, span: node.name().span() };
                    match node.entries() {
                        [entry] if entry.name().is_none() && !entry.value().is_null() => {
                            let value = match entry.value() {
                                kdl::KdlValue::String(s) => s.clone(),
                                kdl::KdlValue::Bool(b) => b.to_string(),
                                other => other.to_string(),
                            };
                            vars.push(Override {
                                name: node.name().value().to_string(),
                                value,
                                at: Some(at),
                                from: "the vars file".into(),
                            });
                        }
                        _ => problems.at(
                            Problem::BadVarOverride {
                                reason: format!(
                                    "`{}` must have exactly one value: name \"value\"",
                                    node.name().value()
                                ),
                            },
                            at,
                        ),
                    }
                }
            }
        }
    }
}

/// The overrides as a map, each checked against the workflow's `vars` block: setting a
/// variable the workflow does not declare is a mistake (a typo in a production value would
/// otherwise be ignored silently), reported with the nearest declared name.
fn declared_overrides(
    workflow: &super::raw::RawWorkflow,
    overrides: Vec<Override>,
    problems: &mut Problems,
) -> BTreeMap<String, String> {
    let declared: std::collections::BTreeSet<&str> =
        workflow.vars.iter().map(|(k, _)| k.value.as_str()).collect();
    let mut vars = BTreeMap::new();
    for o in overrides {
        if declared.contains(o.name.as_str()) {
            vars.insert(o.name, o.value);
            continue;
        }
        let problem = Problem::UndeclaredVar {
            from: o.from,
            suggestion: did_you_mean(&o.name, declared.iter().copied()).map(String::from),
            declared: declared.iter().map(|d| d.to_string()).collect(),
            name: o.name,
        };
        match o.at {
            Some(at) => problems.at(problem, at),
            None => problems.nowhere(problem),
        }
    }
    vars
}

/// Parses `name=value` from `--var`.
///
/// # Errors
/// A message naming the malformed argument.
pub fn parse_var(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{arg}` is not name=value")),
    }
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).map(|p| normalize(&p)).unwrap_or_else(|_| path.to_path_buf())
}

/// Removes `.` and `..` components without touching the filesystem, so one file included
/// through two spellings is read once.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}
