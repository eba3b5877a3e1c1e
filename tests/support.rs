//! Shared helpers: running the binary, rendering diagnostics like the CLI does.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use milepost::spec::{load, LoadOptions};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The binary with a plain, predictable environment.
pub fn milepost() -> Command {
    let mut cmd = Command::cargo_bin("milepost").expect("the milepost binary is built for tests");
    cmd.current_dir(repo()).env("NO_COLOR", "1").env_remove("CLICOLOR_FORCE").env("COLUMNS", "100");
    cmd
}

/// Diagnostics exactly as `milepost validate` prints them, without colour, 80 columns.
pub fn diagnostics(path: &Path) -> String {
    match load(path, &LoadOptions { env: Some(Default::default()), ..LoadOptions::default() }) {
        Ok(_) => "(valid)".to_string(),
        Err(errors) => milepost::cli::render_spec_errors(&errors, false, 80),
    }
}

/// A path relative to the repository root, as diagnostics show it when run from there.
pub fn relative(path: &Path) -> PathBuf {
    path.strip_prefix(repo()).map(Path::to_path_buf).unwrap_or_else(|_| path.to_path_buf())
}
