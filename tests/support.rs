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

/// `milepost apply <workflow>` started in the background, and the moment a step touched
/// `marker` (so the run is known to be inside that step).
pub fn apply_in_background(workflow: &Path, marker: &Path) -> std::process::Child {
    let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"))
        .arg("apply")
        .arg(workflow)
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the milepost binary starts");
    for _ in 0..500 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}
