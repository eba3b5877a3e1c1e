//! The README's commands, run as a newcomer would type them, in order (issue 15 item 8: docs
//! stay true to the code). Every `cargo run -- …` line of its shell blocks runs against the
//! built binary in a private copy of the repository's examples and workflows, with free
//! ports in place of the example's fixed ones; the exit code its comment promises ("refused",
//! "fails", "waits for approval") and the figures the text quotes are checked.

use std::path::Path;
use std::process::Command;

use crate::support::repo;

/// The shell blocks of the README, line by line, in order.
fn readme_commands() -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut lines = Vec::new();
    let mut in_sh = false;
    for line in text.lines() {
        match line.trim() {
            "```sh" => in_sh = true,
            "```" => in_sh = false,
            command if in_sh && !command.is_empty() => lines.push(command.to_string()),
            _ => {}
        }
    }
    lines
}

/// The exit code a line's comment promises.
fn expected_code(line: &str) -> i32 {
    let comment = line.split_once(" # ").map_or("", |(_, c)| c);
    if comment.contains("refused") {
        6
    } else if comment.contains("fails") {
        1
    } else if comment.contains("waits for approval") {
        7
    } else {
        0
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue; // a reader's own .milepost and .work stay out
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[test]
fn the_readme_commands_do_what_their_comments_say() {
    let dir = tempfile::tempdir().unwrap();
    for folder in ["examples", "workflows", "modules", "checkpoints"] {
        copy_dir(&repo().join(folder), &dir.path().join(folder));
    }
    // The example's services stop when the test ends, passed or not.
    let _services = Services(dir.path().join("examples/local/.work"));
    let bin = assert_cmd::cargo::cargo_bin("milepost");
    let ports = [("staging", free_port()), ("prod", free_port())];
    let mut ran = 0;
    for line in readme_commands() {
        let command = line.split_once(" # ").map_or(line.as_str(), |(c, _)| c).trim();
        // The quick start's commands; the `milepost …` reference further down needs an
        // installed binary and a cluster.
        if !(command.contains("cargo run --") || command.starts_with("sed ") || command.starts_with("git ")) {
            continue;
        }
        if command.starts_with("git checkout") {
            let original = repo().join("examples/local/phase2.kdl");
            std::fs::copy(original, dir.path().join("examples/local/phase2.kdl")).unwrap();
            continue;
        }
        let mut shell = command.replace("cargo run --", &shell_words::quote(&bin.display().to_string()));
        // The example's fixed ports would clash with another checkout testing at once.
        if shell.contains("examples/local/phase2.kdl") {
            for (env, port) in ports {
                if shell.contains(&format!("--env {env}")) {
                    shell.push_str(&format!(" --var port={port}"));
                }
            }
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(&shell)
            .current_dir(dir.path())
            .env("NO_COLOR", "1")
            .env_remove("MILEPOST_ENV")
            .env_remove("MILEPOST_DEMO_FAIL")
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        );
        assert_eq!(
            out.status.code(),
            Some(expected_code(&line)),
            "README line `{line}`\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        if line.contains("waits for approval at the end") {
            assert!(stderr.contains("production-readiness waits for approval"), "{stderr}");
        }
        if line.contains("its checks are not run again") {
            assert!(stderr.contains("production-readiness approved by"), "{stderr}");
        }
        if line.contains("refused: names autoscaling") {
            assert!(stderr.contains("1 module changed since: autoscaling"), "{stderr}");
        }
        if line.contains("plan workflows/phase2.kdl --risk") {
            // The figures the README quotes after this command.
            for quoted in ["21h06m", "30h06m", "71.1%"] {
                assert!(stdout.contains(quoted), "the README quotes {quoted}: {stdout}");
            }
        }
        ran += 1;
    }
    assert!(ran >= 12, "the README's commands were not found: {ran}");
}

/// Stops the services the example started under a `.work` folder when dropped.
struct Services(std::path::PathBuf);

impl Drop for Services {
    fn drop(&mut self) {
        for env in ["staging", "prod"] {
            if let Ok(pid) = std::fs::read_to_string(self.0.join(env).join("service.pid")) {
                if let Ok(pid) = pid.trim().parse() {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid),
                        nix::sys::signal::Signal::SIGTERM,
                    );
                }
            }
        }
    }
}
