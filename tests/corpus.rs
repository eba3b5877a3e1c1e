//! Every bad definition in tests/fixtures/invalid gives its expected diagnostic, and every
//! good one in tests/fixtures/valid loads.

use crate::support::{diagnostics, milepost, relative, repo};

#[test]
fn invalid_definitions_give_their_diagnostics() {
    std::env::set_current_dir(repo()).expect("cd to the repository");
    insta::glob!("fixtures/invalid/*.kdl", |path| {
        let text = std::fs::read_to_string(path).expect("fixture is readable");
        let rendered = diagnostics(&relative(path));
        assert!(rendered.contains("nothing was run"), "{} was accepted", path.display());
        let expect = text.lines().find_map(|l| l.trim().strip_prefix("// expect:")).map(str::trim);
        insta::with_settings!({ description => expect.unwrap_or("") }, {
            insta::assert_snapshot!(rendered);
        });
    });
}

#[test]
fn valid_definitions_load() {
    std::env::set_current_dir(repo()).expect("cd to the repository");
    let mut count = 0;
    for entry in glob::glob("tests/fixtures/valid/*.kdl").expect("pattern") {
        let path = entry.expect("readable entry");
        assert_eq!(diagnostics(&path), "(valid)", "{}", path.display());
        count += 1;
    }
    assert!(count > 0, "no valid fixtures found");
}

#[test]
fn invalid_definitions_exit_with_the_definition_code() {
    milepost()
        .args(["validate", "tests/fixtures/invalid/cycle-three.kdl"])
        .assert()
        .code(3)
        .stdout("")
        .stderr(predicates::str::contains("dependency cycle"));
}
