//! `milepost fmt`: the canonical layout, on private copies of the definitions (never the
//! working tree).

use std::path::{Path, PathBuf};

use milepost::plan::render::json;
use milepost::plan::{Plan, PlanOptions};
use milepost::spec::format::{comments, format_document, Formatted};
use milepost::spec::{load, LoadOptions};
use proptest::prelude::*;

use crate::support::{milepost, repo, walk};

/// The folders holding definitions, copied whole (includes, templates and manifests too).
const DEFINITION_DIRS: &[&str] = &["workflows", "modules", "checkpoints", "examples", "tests/fixtures/valid"];

fn copy_tree(from: &Path, to: &Path) {
    for file in walk(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

/// The plan of a workflow file with every rendered step: what the definitions mean.
fn meaning(workflow: &Path) -> Option<String> {
    let loaded =
        load(workflow, &LoadOptions { env: Some(Default::default()), ..LoadOptions::default() }).ok()?;
    Some(json::render(&Plan::new(&loaded.workflow, &PlanOptions::default()), None, true))
}

fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8(a.get_output().stderr.clone()).unwrap()
}

#[test]
fn fmt_of_every_definition_in_the_repository_is_stable_and_means_the_same() {
    let dir = tempfile::tempdir().unwrap();
    for sub in DEFINITION_DIRS {
        copy_tree(&repo().join(sub), &dir.path().join(sub));
    }
    let files: Vec<PathBuf> =
        walk(dir.path()).into_iter().filter(|p| p.extension().is_some_and(|e| e == "kdl")).collect();
    assert!(files.len() > 20, "found {} definition files", files.len());
    let before: Vec<(Option<String>, Vec<String>)> =
        files.iter().map(|f| (meaning(f), comments(&std::fs::read_to_string(f).unwrap()))).collect();
    assert!(before.iter().filter(|(m, _)| m.is_some()).count() >= 10, "the workflows load");

    milepost().arg("fmt").args(&files).assert().success();
    milepost().args(["fmt", "--check"]).args(&files).assert().success().stderr("");
    for (file, (meant, commented)) in files.iter().zip(&before) {
        let text = std::fs::read_to_string(file).unwrap();
        assert_eq!(&meaning(file), meant, "{} means something else once formatted:\n{text}", file.display());
        assert_eq!(&comments(&text), commented, "{} lost a comment:\n{text}", file.display());
    }
    let leftovers: Vec<PathBuf> =
        walk(dir.path()).into_iter().filter(|p| p.to_string_lossy().contains(".fmt-")).collect();
    assert!(leftovers.is_empty(), "temporary files left behind: {leftovers:?}");
}

#[test]
fn fmt_check_lists_what_would_change_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let messy = dir.path().join("messy.kdl");
    let tidy = dir.path().join("tidy.kdl");
    let text = "// the plan\nworkflow w {\n  title   \"W\"   // shown in summaries\n\n\n  parallelism 2; vars { a \"1\" }\n}\nmodule m { budget \"1h\"\n      install {\n  run x #\"echo \"hi\"\"#\n    }\n}\n";
    std::fs::write(&messy, text).unwrap();
    std::fs::write(&tidy, "workflow t {\n    title \"T\"\n}\n").unwrap();

    let check = milepost().args(["fmt", "--check"]).arg(&messy).arg(&tidy).assert().code(1);
    let listed = stderr(&check);
    assert!(listed.contains("messy.kdl") && !listed.contains("tidy.kdl"), "{listed}");
    assert_eq!(std::fs::read_to_string(&messy).unwrap(), text, "--check writes nothing");

    milepost().arg("fmt").arg(&messy).arg(&tidy).assert().success();
    assert_eq!(
        std::fs::read_to_string(&messy).unwrap(),
        "// the plan\nworkflow w {\n    title \"W\" // shown in summaries\n\n    parallelism 2\n    vars {\n        a \"1\"\n    }\n}\nmodule m {\n    budget \"1h\"\n    install {\n        run x #\"echo \"hi\"\"#\n    }\n}\n"
    );
    milepost().args(["fmt", "--check"]).arg(&messy).arg(&tidy).assert().success();
}

#[test]
fn fmt_of_a_file_that_does_not_parse_is_a_definition_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.kdl");
    let bad = dir.path().join("bad.kdl");
    std::fs::write(&good, "workflow w {\n  title \"W\"\n}\n").unwrap();
    std::fs::copy(repo().join("tests/fixtures/invalid/kdl-syntax-error.kdl"), &bad).unwrap();

    let fmt = milepost().current_dir(dir.path()).args(["fmt", "good.kdl", "bad.kdl"]).assert().code(3);
    let validate = milepost().current_dir(dir.path()).args(["validate", "bad.kdl"]).assert().code(3);
    let (fmt, validate) = (stderr(&fmt), stderr(&validate));
    // The same located diagnostics as every other command, then fmt's own last line.
    let diagnostics = validate.rsplit_once("error: ").unwrap().0;
    assert!(fmt.starts_with(diagnostics), "fmt:\n{fmt}\nvalidate:\n{validate}");
    assert!(fmt.contains("bad.kdl:6:10") && fmt.ends_with("no file was written\n"), "{fmt}");
    assert_eq!(std::fs::read_to_string(&good).unwrap(), "workflow w {\n  title \"W\"\n}\n");
}

#[test]
fn fmt_refuses_a_file_whose_comment_the_kdl_formatter_would_drop() {
    // kdl 6.7's autoformat replaces the text between a node's entries and its `{` with one
    // space: this comment would go. fmt leaves the file as it is and says why.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.kdl");
    let text = "workflow w /* keep me */ {\n  title \"W\"\n}\n";
    std::fs::write(&file, text).unwrap();
    let out = milepost().arg("fmt").arg(&file).assert().code(1);
    assert!(stderr(&out).contains("would lose or change the comment `/* keep me */`"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}

#[cfg(unix)]
#[test]
fn fmt_replaces_the_file_whole_and_keeps_its_permissions() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("w.kdl");
    std::fs::write(&file, "workflow w {\ntitle \"W\"\n}\n").unwrap();
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    milepost().arg("fmt").arg(&file).assert().success();
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o640);
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names, ["w.kdl"], "no temporary file is left");
}

#[cfg(unix)]
#[test]
fn fmt_through_a_symlink_formats_its_target_and_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("real")).unwrap();
    let target = dir.path().join("real/w.kdl");
    std::fs::write(&target, "workflow w {\ntitle \"W\"\n}\n").unwrap();
    let link = dir.path().join("w.kdl");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    milepost().arg("fmt").arg(&link).assert().success();
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "workflow w {\n    title \"W\"\n}\n");
}

/// A small definition laid out at random: indentation, blank lines, comments in the places
/// people put them, `;` between nodes.
fn messy_document() -> impl Strategy<Value = String> {
    let space = prop::sample::select(vec!["", " ", "   ", "\t"]);
    let gap = prop::sample::select(vec!["\n", "\n\n", "\n\n\n", "; "]);
    let comment = prop::sample::select(vec!["", " // note\n", " /* c */", "\n// line\n"]);
    let leaf = (
        space.clone(),
        prop::sample::select(vec!["budget \"1h\"", "after a b", "run x #\"echo \"q\"\"#"]),
        comment.clone(),
        gap.clone(),
    )
        // A `;` cannot start a line: after a line comment, the comment's newline ends the node.
        .prop_map(|(s, node, c, g)| format!("{s}{node}{c}{}", if c.ends_with('\n') { "" } else { g }));
    let block = (space, prop::collection::vec(leaf, 0..4), comment, gap)
        .prop_map(|(s, leaves, c, g)| format!("{s}module m{{{c}\n{}}}{g}", leaves.concat()));
    prop::collection::vec(block, 1..4).prop_map(|blocks| blocks.concat())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// fmt of fmt output changes nothing, and fmt keeps every comment and value.
    #[test]
    fn fmt_is_idempotent_and_keeps_comments(text in messy_document()) {
        let doc = kdl::KdlDocument::parse_v2(&text).expect("the generator writes KDL");
        match format_document(&text, doc) {
            Formatted::Canonical => {}
            Formatted::Refused(why) => prop_assert!(false, "refused {text:?}: {why}"),
            Formatted::Changed(out) => {
                prop_assert_eq!(comments(&out), comments(&text));
                let again = kdl::KdlDocument::parse_v2(&out).expect("formatted text parses");
                prop_assert_eq!(format_document(&out, again), Formatted::Canonical, "{}", out);
            }
        }
    }
}
