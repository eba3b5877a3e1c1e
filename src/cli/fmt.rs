//! `milepost fmt`: definition files rewritten in the canonical layout ([`crate::spec::format`]).

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use clap::Args;

use super::{exit, CliError, Cx};
use crate::spec::format::{format_file, Formatted};
use crate::spec::source::display_path;
use crate::spec::SpecErrors;
use crate::ui::errln;

#[derive(Debug, Args)]
pub struct FmtArgs {
    /// The definition files to format (workflows, modules, checkpoints, vars files).
    #[arg(required = true, value_name = "FILES")]
    files: Vec<PathBuf>,
    /// Write nothing: list the files that are not in the canonical layout and exit 1.
    #[arg(long)]
    check: bool,
}

pub fn run(cx: &Cx, args: &FmtArgs) -> Result<u8, CliError> {
    // Every file is read and formatted before any is written: a file that does not parse
    // stops the command with nothing changed.
    let mut results = Vec::new();
    let mut errors = SpecErrors { diagnostics: Vec::new() };
    for file in &args.files {
        match format_file(file) {
            Ok(formatted) => results.push((file, formatted)),
            Err(e) => errors.diagnostics.extend(e.diagnostics),
        }
    }
    if !errors.diagnostics.is_empty() {
        let width = if std::io::stderr().is_terminal() { crate::ui::terminal_width() } else { 100 };
        let mut text = super::render_diagnostics(&errors.diagnostics, cx.err.color, width);
        text.push_str(&format!("{} {errors}; no file was written\n", cx.err.red("error:")));
        let _ = std::io::stderr().write_all(text.as_bytes());
        return Ok(exit::DEFINITION);
    }
    let mut not_canonical = 0;
    for (file, formatted) in results {
        let shown = display_path(file);
        match formatted {
            Formatted::Canonical => {}
            Formatted::Refused(why) => {
                not_canonical += 1;
                errln!("{} {shown}: {why}; left as it is", cx.err.red("error:"));
            }
            Formatted::Changed(_) if args.check => {
                not_canonical += 1;
                errln!("{shown}");
            }
            Formatted::Changed(text) => {
                write_atomically(file, &text)?;
                errln!("{} {shown}", cx.err.dim("formatted"));
            }
        }
    }
    if args.check && not_canonical > 0 {
        errln!(
            "{} {not_canonical} file{} not in the canonical layout; `milepost fmt` rewrites {}",
            cx.err.yellow("warning:"),
            if not_canonical == 1 { " is" } else { "s are" },
            if not_canonical == 1 { "it" } else { "them" },
        );
    }
    Ok(if not_canonical > 0 { exit::FAILED } else { exit::SUCCESS })
}

/// Replaces `path` with `text` through a temporary file beside it, renamed over it: a crash
/// leaves the old file or the new one, never half of one. The file keeps its permissions,
/// and a symlink stays a symlink (its target is replaced).
fn write_atomically(path: &Path, text: &str) -> Result<(), CliError> {
    let io = |action, source| CliError::Io { action, path: path.to_path_buf(), source };
    let resolved = std::fs::canonicalize(path).map_err(|e| io("resolve", e))?;
    let path = resolved.as_path();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let temp = dir.join(format!(".{name}.fmt-{}", std::process::id()));
    let written = (|| {
        let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(&temp)?;
        file.write_all(text.as_bytes())?;
        if let Ok(meta) = std::fs::metadata(path) {
            file.set_permissions(meta.permissions())?;
        }
        file.sync_all()?;
        std::fs::rename(&temp, path)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&temp);
        return Err(io("write", e));
    }
    Ok(())
}
