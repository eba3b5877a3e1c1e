//! Command-line interface: parses arguments, calls the library, prints, maps errors to exit
//! codes. The only place besides `ui` and `report` that writes to the terminal.

mod apply;
mod approve;
mod completions;
mod fmt;
mod graph;
mod plan;
mod remote;
mod report;
mod rollback;
mod state;
mod validate;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use miette::{GraphicalReportHandler, GraphicalTheme};

use crate::spec::diagnostic::SpecDiagnostic;
use crate::spec::{load, parse_var, LoadOptions, Loaded, SpecErrors, Workflow};
use crate::ui::style::ColorChoice;
use crate::ui::{terminal_width, Palette};

/// Exit codes, documented in docs/exit-codes.md.
pub mod exit {
    /// Everything asked for was done.
    pub const SUCCESS: u8 = 0;
    /// A step, probe or gate failed; the rollout stopped (and can be resumed).
    pub const FAILED: u8 = 1;
    /// The command line was wrong (clap's own code).
    pub const USAGE: u8 = 2;
    /// The definitions are invalid; nothing ran.
    pub const DEFINITION: u8 = 3;
    /// Another rollout holds the state directory's lock.
    pub const LOCKED: u8 = 4;
    /// milepost could not read or write what it needs (state directory, output file).
    pub const IO: u8 = 5;
    /// Preflight found the rollout could not finish (missing program, secret, cluster); nothing ran.
    pub const PREFLIGHT: u8 = 6;
    /// A node waits for approval; what does not depend on it ran. `approve`, then `resume`.
    pub const WAITING: u8 = 7;
    /// Stopped by Ctrl-C or SIGTERM; state is resumable.
    pub const INTERRUPTED: u8 = 130;
}

#[derive(Debug, Parser)]
#[command(name = "milepost", version, about = "Declarative rollouts: the plan is code", long_about = None)]
struct Cli {
    /// When to colour output.
    #[arg(long, global = true, value_enum, default_value_t = ColorChoice::Auto)]
    color: ColorChoice,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Roll the whole plan out: every module and gate, independent ones in parallel.
    Apply(apply::ApplyArgs),
    /// Continue the last rollout from its failed step or gate.
    Resume(state::ResumeArgs),
    /// Undo completed modules by their rollback steps, what was built on them first.
    Rollback(rollback::RollbackArgs),
    /// Re-run only the validate steps of completed modules and gates (a drift audit).
    Verify(state::VerifyArgs),
    /// Approve a module or gate that waits for approval.
    Approve(approve::ApproveArgs),
    /// Reject a module or gate that waits for approval: it fails with your note.
    Reject(approve::RejectArgs),
    /// Where the last rollout stands: nodes, budgets, gates, metrics.
    Status(state::StatusArgs),
    /// The runs recorded in the state directory.
    History(state::HistoryArgs),
    /// Check the definitions and print a one-screen summary.
    Validate(validate::ValidateArgs),
    /// Preview the rollout: Gantt chart, critical path, totals, risk. Runs nothing.
    Plan(plan::PlanArgs),
    /// Print the dependency graph as DOT, Mermaid or JSON.
    Graph(graph::GraphArgs),
    /// What a rollout did against its plan: HTML, JUnit XML, JSON or Markdown.
    Report(report::ReportArgs),
    /// Rewrite definition files in the canonical layout, comments kept (--check: only tell).
    Fmt(fmt::FmtArgs),
    /// Print shell completions: bash, zsh, fish, elvish or powershell.
    Completions(completions::CompletionsArgs),
    /// Print the manual page (roff), or a subcommand's, e.g. `milepost man | man -l -`.
    Man(completions::ManArgs),
    /// Who holds a rollout's lock; `--force` takes a cluster lock from a holder that is gone.
    Unlock(remote::UnlockArgs),
    /// Move a rollout's runs between the local folder and its cluster state.
    State(remote::StateCommand),
}

/// The workflow file and the values that complete it; shared by every command that loads.
#[derive(Debug, Args)]
pub struct DefinitionArgs {
    /// The workflow file, e.g. workflows/phase2.kdl.
    pub workflow: PathBuf,
    /// Set a template variable, overriding the workflow's vars (repeatable).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Read variables from a KDL file of `name "value"` lines (repeatable).
    #[arg(long = "vars-file", value_name = "FILE")]
    pub vars_files: Vec<PathBuf>,
    /// The environment to roll out to, one the workflow declares (`environment NAME { … }`);
    /// default: $MILEPOST_ENV.
    #[arg(long = "env", value_name = "NAME")]
    pub environment: Option<String>,
}

impl DefinitionArgs {
    /// With `environment_variable`, `MILEPOST_ENV` stands in for `--env`: for the commands
    /// that roll out or read a rollout, not for those that only read definitions.
    fn options(&self, environment_variable: bool) -> LoadOptions {
        let environment = match environment_variable {
            true => chosen_environment(self.environment.as_deref()),
            false => self.environment.as_deref().and_then(|e| chosen_environment(Some(e))),
        };
        LoadOptions {
            vars: self.vars.clone(),
            vars_files: self.vars_files.clone(),
            env: None,
            environment,
            any_environment: false,
        }
    }

    /// Loads the workflow for a command that rolls out or reads state; definition errors
    /// come back for `main` to render.
    fn load(&self) -> Result<Loaded, CliError> {
        load(&self.workflow, &self.options(true)).map_err(CliError::Definitions)
    }

    /// Loads the workflow for a command that reads definitions only (`validate`, `graph`):
    /// an exported `MILEPOST_ENV` of another project does not concern them.
    fn load_definitions(&self) -> Result<Loaded, CliError> {
        load(&self.workflow, &self.options(false)).map_err(CliError::Definitions)
    }
}

/// The environment named by `--env`, else by a non-empty `MILEPOST_ENV`. The variable is
/// for shells that work in one environment all day: a workflow that declares none ignores it,
/// where `--env` for such a workflow is a mistake.
pub fn chosen_environment(flag: Option<&str>) -> Option<crate::spec::load::ChosenEnvironment> {
    use crate::spec::load::ChosenEnvironment;
    match flag {
        Some(name) => Some(ChosenEnvironment { name: name.trim().to_string(), from_variable: false }),
        None => std::env::var("MILEPOST_ENV")
            .ok()
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .map(|name| ChosenEnvironment { name, from_variable: true }),
    }
}

/// The folder of the workflow's rollouts in its environment, under `explicit_root`
/// (`--state-dir`) or `.milepost` beside it; a root in the layout before environments is
/// migrated first. A workflow that declares environments has no state without one.
pub fn rollout_dir(
    workflow: &Workflow,
    explicit_root: Option<&Path>,
    command: &str,
) -> Result<PathBuf, CliError> {
    if workflow.environment.is_none() && !workflow.environments.is_empty() {
        return Err(CliError::Usage {
            message: format!(
                "{} declares environments ({}): say which one `milepost {command}` is for with --env NAME \
                 (or MILEPOST_ENV)",
                workflow.id,
                workflow.environment_names().join(", ")
            ),
        });
    }
    let root = crate::state::place::root(explicit_root, &workflow.dir);
    migrate(&root)?;
    let dir = crate::state::place::rollout_dir(&root, &workflow.id, workflow.environment_name());
    remote::folder(workflow, dir, command)
}

/// Moves a root's runs from the layout before environments, saying so.
pub fn migrate(root: &Path) -> Result<(), CliError> {
    use crate::state::place::{self, MigrateError};
    match place::migrate(root) {
        Ok(0) => Ok(()),
        Ok(moved) => {
            crate::ui::errln!(
                "moved {moved} run(s) in {} to the layout with environments (docs/state.md §1)",
                root.display()
            );
            Ok(())
        }
        Err(MigrateError::Locked(message)) => Err(CliError::Locked { message }),
        Err(e) => Err(CliError::State { message: e.to_string() }),
    }
}

/// Where a rollout's approval decisions are kept: the one place a store is chosen, for
/// `apply`/`resume` (which read it) and `approve`/`reject` (which add to it): beside the runs,
/// or in the cluster that keeps the rollout's state.
pub fn approval_store(
    workflow: &Workflow,
    rollout_dir: &Path,
) -> std::sync::Arc<dyn crate::state::approvals::ApprovalStore> {
    use crate::state::approvals::{ClusterStore, FileStore};
    match &workflow.state {
        None => std::sync::Arc::new(FileStore::new(rollout_dir)),
        Some(state) => {
            let remote = crate::state::cluster::Remote::shared(state, None).map_err(|e| e.to_string());
            std::sync::Arc::new(ClusterStore::new(remote))
        }
    }
}

/// Who is deciding, for `approve`/`reject`: the OS user, or, with the state in a cluster,
/// the user the API server says the kubeconfig's credentials are (a SelfSubjectReview).
pub fn identity(workflow: &Workflow) -> Result<crate::state::approvals::Identity, CliError> {
    match &workflow.state {
        None => Ok(crate::state::approvals::local_identity()),
        Some(state) => crate::state::cluster::Remote::shared(state, None)
            .map_err(|e| e.to_string())
            .and_then(|remote| crate::state::approvals::cluster_identity(&remote))
            .map_err(|message| CliError::Preflight { message }),
    }
}

/// What every command gets: how to paint, where to print.
pub struct Cx {
    pub out: Palette,
    pub err: Palette,
}

/// Why a command did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Definitions with mistakes; each is a diagnostic.
    #[error("{0}")]
    Definitions(SpecErrors),
    /// Another rollout holds the state directory.
    #[error("{message}")]
    Locked { message: String },
    /// The state directory could not be read or written.
    #[error("{message}")]
    State { message: String },
    /// What the rollout needs is not there (a cluster); nothing ran.
    #[error("{message}")]
    Preflight { message: String },
    /// Arguments that parse but do not make sense together.
    #[error("{message}")]
    Usage { message: String },
    /// A file milepost writes or reads beside the definitions.
    #[error("cannot {action} `{path}`: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
}

impl CliError {
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Definitions(_) => exit::DEFINITION,
            CliError::Io { .. } => exit::IO,
            CliError::Usage { .. } => exit::USAGE,
            CliError::Locked { .. } => exit::LOCKED,
            CliError::State { .. } => exit::IO,
            CliError::Preflight { .. } => exit::PREFLIGHT,
        }
    }
}

pub fn main() -> ExitCode {
    // A run's guardian is this binary started again (src/exec/orphans.rs), not a command.
    if std::env::args_os().nth(1).is_some_and(|a| a == crate::exec::orphans::GUARD_ARG) {
        return ExitCode::from(crate::exec::orphans::serve());
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { exit::USAGE } else { exit::SUCCESS });
        }
    };
    let cx = Cx {
        out: Palette::detect(cli.color, &std::io::stdout()),
        err: Palette::detect(cli.color, &std::io::stderr()),
    };
    let result = match &cli.command {
        Command::Apply(args) => apply::run(&cx, args),
        Command::Resume(args) => state::resume(&cx, args),
        Command::Verify(args) => state::verify(&cx, args),
        Command::Approve(args) => approve::approve(&cx, args),
        Command::Reject(args) => approve::reject(&cx, args),
        Command::Rollback(args) => rollback::run(&cx, args),
        Command::Status(args) => state::status(&cx, args),
        Command::History(args) => state::history(&cx, args),
        Command::Validate(args) => validate::run(&cx, args),
        Command::Plan(args) => plan::run(&cx, args),
        Command::Graph(args) => graph::run(&cx, args),
        Command::Report(args) => report::run(&cx, args),
        Command::Fmt(args) => fmt::run(&cx, args),
        Command::Completions(args) => completions::completions(args),
        Command::Man(args) => completions::man(args),
        Command::Unlock(args) => remote::unlock(&cx, args),
        Command::State(args) => remote::state(&cx, args),
    };
    crate::state::cluster::views::remove();
    match result {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let width = if std::io::stderr().is_terminal() { terminal_width() } else { 100 };
            let text = match &err {
                CliError::Definitions(errors) => render_spec_errors(errors, cx.err.color, width),
                other => format!("{} {other}\n", cx.err.red("error:")),
            };
            let _ = std::io::stderr().write_all(text.as_bytes());
            ExitCode::from(err.exit_code())
        }
    }
}

/// How many diagnostics are drawn in full; the rest get one line each. Drawing one reads
/// its file up to the problem, so 10 000 of them in one large file took minutes.
const DRAWN_IN_FULL: usize = 50;

/// Every diagnostic in miette's graphical form (the first [`DRAWN_IN_FULL`]; then one line
/// each), then a one-line count.
pub fn render_spec_errors(errors: &SpecErrors, color: bool, width: usize) -> String {
    let mut out = render_diagnostics(&errors.diagnostics, color, width);
    let palette = Palette { color };
    out.push_str(&format!("{} {errors}; nothing was run\n", palette.red("error:")));
    out
}

/// Diagnostics (errors or warnings) as [`render_spec_errors`] draws them, without the count.
pub fn render_diagnostics(diagnostics: &[SpecDiagnostic], color: bool, width: usize) -> String {
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(width).with_links(false);
    let mut out = String::new();
    for (i, diagnostic) in diagnostics.iter().enumerate() {
        let code = diagnostic.problem.code();
        let location = diagnostic.location.as_deref();
        if i >= DRAWN_IN_FULL {
            if i == DRAWN_IN_FULL {
                out.push_str(&format!("… and {} more:\n", diagnostics.len() - DRAWN_IN_FULL));
            }
            let at = location.map(|l| format!("{l}: ")).unwrap_or_default();
            out.push_str(&format!("  {at}{diagnostic} [{code}]\n"));
            continue;
        }
        if handler.render_report(&mut out, diagnostic).is_err() {
            out.push_str(&format!("{diagnostic}\n"));
        }
        if let (false, Some(location)) = (diagnostic.quotes_source(), location) {
            out.push_str(&format!("  at {location}\n"));
        }
        out.push('\n');
    }
    out
}

/// Prints to stdout. A closed pipe (`milepost plan | head`) is not an error: the reader had
/// what it wanted. Any other failure (a full disk under `> report.json`) is, or the file
/// would be cut short in silence.
pub fn print(text: &str) -> Result<(), CliError> {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(text.as_bytes()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(CliError::Io { action: "write to", path: PathBuf::from("standard output"), source: e })
        }
        _ => Ok(()),
    }
}
