//! Helpers shared by unit tests.

use std::io::Write;

use crate::spec::{load, LoadOptions, Workflow};

/// Loads a workflow written inline. Panics with the rendered diagnostics if it is invalid.
pub fn workflow_from(text: &str) -> Workflow {
    let dir = tempfile::tempdir().expect("a temp dir");
    let path = dir.path().join("workflow.kdl");
    std::fs::File::create(&path).and_then(|mut f| f.write_all(text.as_bytes())).expect("write workflow");
    match load(&path, &LoadOptions::default()) {
        Ok(loaded) => loaded.workflow,
        Err(errors) => panic!("{}", crate::cli::render_spec_errors(&errors, false, 100)),
    }
}
