//! `milepost report`: what a rollout did against its plan, as HTML, JUnit, JSON or Markdown.

use std::path::PathBuf;

use clap::Args;

use super::state::{open_journals, StateArgs};
use super::{exit, print, CliError, Cx};
use crate::report::{self, ReportError};
use crate::ui::errln;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum ReportFormat {
    Html,
    Junit,
    Json,
    Markdown,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    state: StateArgs,
    /// Report this run alone; default: the last `apply` and every `resume` after it.
    #[arg(long, value_name = "ID")]
    run: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Markdown)]
    format: ReportFormat,
    /// Write to this file instead of standard output.
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
    /// The state root (default: .milepost beside the workflow, or here).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

pub fn run(cx: &Cx, args: &ReportArgs) -> Result<u8, CliError> {
    let (dir, journals, workflow) = open_journals(&args.state, args.state_dir.as_deref(), "report")?;
    // Who decided on the rollout's requests for approval: in the store beside its runs.
    let decisions = super::approval_store(&workflow, &dir)
        .decisions()
        .map_err(|e| CliError::State { message: e.to_string() })?;
    let report =
        report::build(&workflow, &dir, args.run.as_deref(), &journals, &decisions).map_err(|e| match e {
            ReportError::UnknownRun { .. } => CliError::Usage { message: e.to_string() },
            other => CliError::State { message: other.to_string() },
        })?;
    let text = match args.format {
        ReportFormat::Html => report::html::render(&report).map_err(|message| CliError::State { message })?,
        ReportFormat::Junit => report::junit::render(&report),
        ReportFormat::Json => serde_json::to_string_pretty(&report).expect("plain data") + "\n",
        ReportFormat::Markdown => report::markdown::render(&report),
    };
    match &args.output {
        None => print(&text)?,
        Some(path) => {
            crate::files::write_atomically(path, text.as_bytes()).map_err(|source| CliError::Io {
                action: "write the report to",
                path: path.clone(),
                source,
            })?;
            errln!("{} wrote {}", cx.err.green("✓"), path.display());
        }
    }
    Ok(exit::SUCCESS)
}
