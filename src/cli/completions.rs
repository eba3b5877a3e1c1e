//! `milepost completions` and `milepost man`: what the shell and `man` know of the command
//! line, generated from the same clap definitions that parse it.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::{exit, print, Cli, CliError};

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for, e.g. `milepost completions bash > ~/.local/share/bash-completion/completions/milepost`.
    #[arg(value_enum)]
    shell: Shell,
}

pub fn completions(args: &CompletionsArgs) -> Result<u8, CliError> {
    let mut out = Vec::new();
    clap_complete::generate(args.shell, &mut Cli::command(), "milepost", &mut out);
    print(&String::from_utf8_lossy(&out))?;
    Ok(exit::SUCCESS)
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// A subcommand's page (`milepost-apply(1)`) instead of the main one.
    #[arg(value_name = "COMMAND")]
    command: Option<String>,
}

/// The manual page, in roff: `milepost man > milepost.1`, `milepost man apply > milepost-apply.1`,
/// or `milepost man | man -l -`.
pub fn man(args: &ManArgs) -> Result<u8, CliError> {
    let mut cli = Cli::command().disable_help_subcommand(true);
    // Built, subcommands know their full names: `milepost-apply`, `milepost apply`.
    cli.build();
    let page = match &args.command {
        None => cli,
        Some(name) => cli.find_subcommand(name).filter(|c| !c.is_hide_set()).cloned().ok_or_else(|| {
            let known: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
            CliError::Usage { message: format!("no command `{name}`; one of: {}", known.join(", ")) }
        })?,
    };
    let mut out = Vec::new();
    clap_mangen::Man::new(page)
        .source(concat!("milepost ", env!("CARGO_PKG_VERSION")))
        .render(&mut out)
        .map_err(|source| CliError::Io { action: "render", path: "the manual page".into(), source })?;
    print(&String::from_utf8_lossy(&out))?;
    Ok(exit::SUCCESS)
}
