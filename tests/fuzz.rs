//! The loader never panics, whatever the bytes: random mutations of the real Phase 2 plan,
//! including the hostile constructs of issue 12 item 13 (huge durations, deep nesting, tera
//! bombs, thousands of unknown names, device and FIFO includes, non-UTF-8 bytes). Every load
//! ends within [`MAX_LOAD`] and every diagnostic it reports has a location.
//! `PROPTEST_CASES=10000 cargo nextest run fuzz` runs it for longer (see docs/testing.md).

use std::path::Path;
use std::time::{Duration, Instant};

use milepost::spec::decode::{accepts, Parse};
use milepost::spec::{load, LoadOptions};
use proptest::prelude::*;

use crate::support::repo;

/// The longest one load of a mutated plan may take (issue 12: "0 runs over 2 s").
const MAX_LOAD: Duration = Duration::from_secs(2);

#[derive(Debug, Clone)]
enum Mutation {
    Delete {
        at: usize,
        len: usize,
    },
    Insert {
        at: usize,
        text: String,
    },
    Duplicate {
        at: usize,
        len: usize,
    },
    /// Overwrites one byte with an ASCII byte (so most mutations still reach the parsers).
    Flip {
        at: usize,
        byte: u8,
    },
    /// Inserts raw bytes, usually not UTF-8.
    Bytes {
        at: usize,
        bytes: Vec<u8>,
    },
    /// One of the constructs that hung, aborted or panicked the loader, placed where it
    /// takes effect (see [`Hostile`]); `nth` picks which occurrence of its anchor.
    Hostile {
        construct: Hostile,
        nth: usize,
    },
}

#[derive(Debug, Clone)]
enum Hostile {
    /// Replaces the value of a `budget "…"` or `timeout="…"` with this duration.
    Duration(&'static str),
    /// Inserts this many nested `{ a ` blocks (or `/* ` comments) at a line start.
    Nesting { depth: usize, comments: bool },
    /// Inserts this tera text into a templated string (before a `{{ vars.`).
    Template(String),
    /// Adds this many names that nothing defines to an `after`.
    UnknownAfter(usize),
    /// Adds this include to the workflow: a device, a FIFO (created in the copy).
    Include(&'static str),
}

fn hostile() -> impl Strategy<Value = Hostile> {
    let bombs = [
        "{% macro f(n) %}{{ self::f(n=n) }}{% endmacro f %}{{ self::f(n=1) }}".to_string(),
        "{% for i in range(end=99999999999) %}x{% endfor %}".to_string(),
        "{% for i in range(end=100000) %}{% for j in range(end=100000) %}x{% endfor %}{% endfor %}".to_string(),
        "{% for i in range(end=9000) %}{% for j in range(end=9000) %}{% for k in range(end=9000) %}x{% endfor %}{% endfor %}{% endfor %}".to_string(),
        "{{ range(end=99999999999) | length }}".to_string(),
        "{% set a = vars.cluster_name %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}".to_string(),
        "{% for c in vars.cluster_name | split(pat=``) %}{% for d in vars.cluster_name | split(pat=``) %}{{ c }}{% endfor %}{% endfor %}".to_string(),
        format!("{{{{ {}1{} }}}}", "(".repeat(1600), ")".repeat(1600)),
        format!("{}x{}", "{% if true %}".repeat(1600), "{% endif %}".repeat(1600)),
        format!("{}x", "{% if true %}{# {% endif %} #}".repeat(1600)),
        format!("{{{{ 1{} }}}}", " + 1".repeat(5000)),
    ];
    prop_oneof![
        prop::sample::select(vec![
            "18446744073709551615s",
            "1000000y",
            "584942417355y",
            "99999999999999h",
            "10y 1s"
        ])
        .prop_map(Hostile::Duration),
        (60usize..2000, any::<bool>()).prop_map(|(depth, comments)| Hostile::Nesting { depth, comments }),
        prop::sample::select(bombs.to_vec()).prop_map(Hostile::Template),
        (100usize..10_000).prop_map(Hostile::UnknownAfter),
        prop::sample::select(vec!["/dev/zero", "/dev/urandom", "fifo.kdl", "/etc", "/**/*.kdlx"])
            .prop_map(Hostile::Include),
    ]
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
        Just("\"\"\"\n".to_string()),
        "[ -~]{0,12}",
        any::<String>(),
    ];
    prop_oneof![
        3 => (any::<usize>(), 0usize..40).prop_map(|(at, len)| Mutation::Delete { at, len }),
        3 => (any::<usize>(), token).prop_map(|(at, text)| Mutation::Insert { at, text }),
        3 => (any::<usize>(), 0usize..200).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        3 => (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip { at, byte }),
        1 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..4))
            .prop_map(|(at, bytes)| Mutation::Bytes { at, bytes }),
        3 => (hostile(), any::<usize>()).prop_map(|(construct, nth)| Mutation::Hostile { construct, nth }),
    ]
}

/// Where the `nth` (modulo their number) occurrence of `anchor` starts; `None` if absent.
fn nth_match(bytes: &[u8], anchor: &[u8], nth: usize) -> Option<usize> {
    let found: Vec<usize> =
        bytes.windows(anchor.len()).enumerate().filter(|(_, w)| *w == anchor).map(|(i, _)| i).collect();
    (!found.is_empty()).then(|| found[nth % found.len()])
}

fn apply(bytes: &[u8], m: &Mutation) -> Vec<u8> {
    let mut bytes = bytes.to_vec();
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
        Mutation::Bytes { at, bytes: raw } => {
            let at = clamp(*at, bytes.len());
            bytes.splice(at..at, raw.iter().copied());
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
                bytes[at] = *byte & 0x7f;
            }
        }
        Mutation::Hostile { construct, nth } => hostile_apply(&mut bytes, construct, *nth),
    }
    bytes
}

fn hostile_apply(bytes: &mut Vec<u8>, construct: &Hostile, nth: usize) {
    match construct {
        Hostile::Duration(d) => {
            let anchor: &[u8] = if nth.is_multiple_of(2) { b"budget \"" } else { b"timeout=\"" };
            if let Some(start) = nth_match(bytes, anchor, nth / 2).map(|i| i + anchor.len()) {
                let end = bytes[start..].iter().position(|&c| c == b'"').map_or(start, |e| start + e);
                bytes.splice(start..end, d.bytes());
            }
        }
        Hostile::Nesting { depth, comments } => {
            let at = nth_match(bytes, b"\n", nth).map_or(0, |i| i + 1);
            let (open, close) = if *comments { ("/* ", " */") } else { ("{ a ", "}") };
            let text = format!("x {}{}\n", open.repeat(*depth), close.repeat(*depth));
            bytes.splice(at..at, text.bytes());
        }
        Hostile::Template(t) => {
            if let Some(at) = nth_match(bytes, b"{{ vars.", nth) {
                bytes.splice(at..at, t.bytes());
            }
        }
        Hostile::UnknownAfter(n) => {
            if let Some(at) = nth_match(bytes, b"    after ", nth).map(|i| i + 10) {
                let names: String = (0..*n).map(|i| format!("undefined-{i} ")).collect();
                bytes.splice(at..at, names.bytes());
            }
        }
        Hostile::Include(target) => {
            if let Some(at) = nth_match(bytes, b"include ", 0).map(|i| i + 8) {
                bytes.splice(at..at, format!("\"{target}\" ").bytes());
            }
        }
    }
}

/// A copy of the plan tree in a temp dir, so mutated files never touch the repository.
fn plan_copy() -> tempfile::TempDir {
    // In memory where the machine has it: creating the plan's 55 files on this disk took
    // 0.2 s, most of a case's time.
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.unwrap();
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

/// Loads the plan in `dir` and checks what issue 12 asks of every mutant: no panic (the
/// test would fail), done within [`MAX_LOAD`], every diagnostic located and rendered.
fn load_checked(workflow: &Path) -> Result<bool, TestCaseError> {
    if let Some(keep) = std::env::var_os("MILEPOST_FUZZ_KEEP") {
        // The case about to load, kept where an abort (which proptest cannot shrink or
        // record) leaves it: the mutated files of the last case, overwritten each time.
        let root = workflow.parent().and_then(Path::parent).unwrap();
        std::fs::create_dir_all(&keep).unwrap();
        for name in ["workflows/phase2.kdl", "modules/07-kubernetes.kdl", "modules/08-autoscaling.kdl"] {
            std::fs::copy(root.join(name), Path::new(&keep).join(name.replace('/', "_"))).unwrap();
        }
    }
    let options = LoadOptions { env: Some(Default::default()), ..LoadOptions::default() };
    let started = Instant::now();
    let result = load(workflow, &options);
    let took = started.elapsed();
    if std::env::var_os("MILEPOST_FUZZ_TIMES").is_some() {
        // For the figures in docs/testing.md: one line per load, sorted afterwards.
        let outcome = if result.is_ok() { "accepted" } else { "rejected" };
        eprintln!("fuzz-load {:>6} us {outcome}", took.as_micros());
    }
    prop_assert!(took < MAX_LOAD, "the load took {took:?}");
    if let Err(errors) = result {
        prop_assert!(!errors.diagnostics.is_empty());
        for d in &errors.diagnostics {
            prop_assert!(d.location.is_some(), "not located: {d}");
        }
        let rendered = milepost::cli::render_spec_errors(&errors, false, 80);
        prop_assert!(rendered.contains("nothing was run"));
        prop_assert!(started.elapsed() < MAX_LOAD, "loading and rendering took {:?}", started.elapsed());
        return Ok(false);
    }
    Ok(true)
}

proptest! {
    // 96 cases each by default: well under a minute for the four tests in a dev build.
    // PROPTEST_CASES overrides it (docs/testing.md §6).
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn mutated_definitions_never_panic(
        workflow_edits in proptest::collection::vec(mutation(), 0..4),
        module_edits in proptest::collection::vec(mutation(), 0..4),
    ) {
        let dir = plan_copy();
        std::process::Command::new("mkfifo").arg(dir.path().join("workflows/fifo.kdl")).status().unwrap();
        let workflow = dir.path().join("workflows/phase2.kdl");
        let module = dir.path().join("modules/07-kubernetes.kdl");
        for (path, edits) in [(&workflow, &workflow_edits), (&module, &module_edits)] {
            let mut bytes = std::fs::read(path).unwrap();
            for m in edits {
                bytes = apply(&bytes, m);
            }
            std::fs::write(path, bytes).unwrap();
        }
        load_checked(&workflow)?;
    }

    /// One hostile construct in an otherwise valid plan: always rejected, quickly, located.
    #[test]
    fn hostile_constructs_are_rejected_quickly_and_located(
        construct in hostile(),
        nth in any::<usize>(),
        in_module in any::<bool>(),
    ) {
        let dir = plan_copy();
        std::process::Command::new("mkfifo").arg(dir.path().join("workflows/fifo.kdl")).status().unwrap();
        let workflow = dir.path().join("workflows/phase2.kdl");
        // Each construct goes where its anchor is: budgets, templates and `after` live in
        // modules, `include` in the workflow; nesting goes anywhere.
        let path = match construct {
            Hostile::Include(_) => workflow.clone(),
            Hostile::Nesting { .. } if !in_module => workflow.clone(),
            Hostile::UnknownAfter(_) => dir.path().join("modules/08-autoscaling.kdl"),
            _ => dir.path().join("modules/07-kubernetes.kdl"),
        };
        let mut bytes = std::fs::read(&path).unwrap();
        hostile_apply(&mut bytes, &construct, nth);
        std::fs::write(&path, bytes).unwrap();
        let accepted = load_checked(&workflow)?;
        let changed = std::fs::read(&path).unwrap() != std::fs::read(repo().join(path.strip_prefix(dir.path()).unwrap())).unwrap();
        prop_assert!(!(changed && accepted), "{construct:?} was accepted");
    }

    /// Valid definitions are read by the fast parser, which keeps no positions; anything it
    /// accepts must be KDL to the kdl crate too, or milepost would accept what it should
    /// report.
    #[test]
    fn the_fast_parser_accepts_nothing_the_kdl_crate_rejects(
        edits in proptest::collection::vec(mutation(), 0..4),
    ) {
        let mut bytes = std::fs::read(repo().join("modules/07-kubernetes.kdl")).unwrap();
        for m in &edits {
            bytes = apply(&bytes, m);
        }
        let text = String::from_utf8_lossy(&bytes);
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
