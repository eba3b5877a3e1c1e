//! The loader never panics, whatever the bytes: random mutations of the real Phase 2 plan.
//! `PROPTEST_CASES=5000 cargo nextest run fuzz` runs it for longer (see docs/testing.md).

use std::path::Path;

use milepost::spec::decode::{accepts, Parse};
use milepost::spec::{load, LoadOptions};
use proptest::prelude::*;

use crate::support::repo;

#[derive(Debug, Clone)]
enum Mutation {
    Delete { at: usize, len: usize },
    Insert { at: usize, text: String },
    Duplicate { at: usize, len: usize },
    Flip { at: usize, byte: u8 },
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let token = prop_oneof![
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"".to_string()),
        Just(";".to_string()),
        Just("{{ vars.x }}".to_string()),
        Just("after k8s-infra".to_string()),
        Just("#true".to_string()),
        Just("/*".to_string()),
        Just("r#\"".to_string()),
        Just("\u{feff}".to_string()),
        "[ -~]{0,12}",
        any::<String>(),
    ];
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        (any::<usize>(), token).prop_map(|(at, text)| Mutation::Insert { at, text }),
        (any::<usize>(), 0usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
    ]
}

fn apply(text: &str, m: &Mutation) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let clamp = |at: usize, len: usize| at % (len + 1);
    match m {
        Mutation::Delete { at, len } => {
            let start = clamp(*at, bytes.len());
            let end = (start + len).min(bytes.len());
            bytes.drain(start..end);
        }
        Mutation::Insert { at, text } => {
            let at = clamp(*at, bytes.len());
            bytes.splice(at..at, text.bytes());
        }
        Mutation::Duplicate { at, len } => {
            let start = clamp(*at, bytes.len());
            let end = (start + len).min(bytes.len());
            let copy = bytes[start..end].to_vec();
            bytes.splice(end..end, copy);
        }
        Mutation::Flip { at, byte } => {
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = *byte;
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// A copy of the plan tree in a temp dir, so mutated files never touch the repository.
fn plan_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for sub in ["workflows", "modules", "checkpoints"] {
        copy_tree(&repo().join(sub), &dir.path().join(sub));
    }
    dir
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn mutated_definitions_never_panic(
        workflow_edits in proptest::collection::vec(mutation(), 0..4),
        module_edits in proptest::collection::vec(mutation(), 0..4),
    ) {
        let dir = plan_copy();
        let workflow = dir.path().join("workflows/phase2.kdl");
        let module = dir.path().join("modules/07-kubernetes.kdl");
        for (path, edits) in [(&workflow, &workflow_edits), (&module, &module_edits)] {
            let mut text = std::fs::read_to_string(path).unwrap();
            for m in edits {
                text = apply(&text, m);
            }
            std::fs::write(path, text).unwrap();
        }
        let options = LoadOptions { env: Some(Default::default()), ..LoadOptions::default() };
        if let Err(errors) = load(&workflow, &options) {
            prop_assert!(!errors.diagnostics.is_empty());
            let rendered = milepost::cli::render_spec_errors(&errors, false, 80);
            prop_assert!(rendered.contains("nothing was run"));
        }
    }

    /// Valid definitions are read by the fast parser, which keeps no positions; anything it
    /// accepts must be KDL to the kdl crate too, or milepost would accept what it should
    /// report.
    #[test]
    fn the_fast_parser_accepts_nothing_the_kdl_crate_rejects(
        edits in proptest::collection::vec(mutation(), 0..4),
    ) {
        let mut text = std::fs::read_to_string(repo().join("modules/07-kubernetes.kdl")).unwrap();
        for m in &edits {
            text = apply(&text, m);
        }
        if accepts(&text, Parse::Fast) {
            prop_assert!(accepts(&text, Parse::Exact), "kdlite accepted what kdl rejects:\n{text}");
        }
    }

    #[test]
    fn random_text_never_panics(text in any::<String>()) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.kdl");
        std::fs::write(&path, &text).unwrap();
        let _ = load(&path, &LoadOptions::default());
    }
}
