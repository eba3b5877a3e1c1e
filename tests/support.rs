//! Shared helpers: running the binary, rendering diagnostics like the CLI does.

use std::path::{Path, PathBuf};
use std::time::Duration;

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

/// The binary on a machine with no Kubernetes configured: no KUBECONFIG, a HOME without
/// ~/.kube/config, not in a pod.
pub fn milepost_without_cluster(home: &Path) -> Command {
    let mut cmd = milepost();
    cmd.env_remove("KUBECONFIG").env_remove("KUBERNETES_SERVICE_HOST").env("HOME", home);
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
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("milepost"));
    command.arg("apply").arg(workflow);
    spawn_until(command, marker)
}

/// A workflow file `w.kdl` in a temp dir of its own, for tests that run the binary on it.
/// Topic files add the helpers they need in `impl Fixture` blocks of their own.
pub struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub fn new(workflow: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("w.kdl"), workflow).unwrap();
        Self { dir }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `milepost apply w.kdl` with `extra` arguments, a minute at most.
    pub fn apply(&self, extra: &[&str]) -> assert_cmd::assert::Assert {
        milepost().arg("apply").arg(self.path("w.kdl")).args(extra).timeout(Duration::from_secs(60)).assert()
    }
}

/// A private copy of examples/local with its own port, so tests can run side by side.
pub struct Local {
    pub dir: tempfile::TempDir,
    pub port: u16,
}

impl Local {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        for file in [
            "phase2.kdl",
            "service.py",
            "templates/service.json.tera",
            "templates/scaling.conf.tera",
            "templates/alerts.rules.tera",
        ] {
            let to = dir.path().join(file);
            std::fs::create_dir_all(to.parent().unwrap()).unwrap();
            std::fs::copy(repo().join("examples/local").join(file), to).unwrap();
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        Self { dir, port }
    }

    pub fn workflow(&self) -> PathBuf {
        self.dir.path().join("phase2.kdl")
    }

    /// `milepost <command> <workflow> --var port=…` in environment staging, for more
    /// arguments.
    pub fn command(&self, command: &str) -> Command {
        self.command_in("staging", self.port, command)
    }

    /// `milepost <command> <workflow> --var port=…` in `environment` (the local example's
    /// environments each serve on a port of their own).
    pub fn command_in(&self, environment: &str, port: u16, command: &str) -> Command {
        let mut cmd = milepost();
        cmd.arg(command).arg(self.workflow()).args(["--var", &format!("port={port}")]);
        cmd.env("MILEPOST_ENV", environment);
        cmd
    }

    pub fn run(&self, command: &str, fail: bool) -> assert_cmd::assert::Assert {
        let mut cmd = self.command(command);
        if fail {
            cmd.env("MILEPOST_DEMO_FAIL", "2B");
        } else {
            cmd.env_remove("MILEPOST_DEMO_FAIL");
        }
        cmd.timeout(Duration::from_secs(60)).assert()
    }

    /// Stops the service of every environment that started one.
    pub fn stop_service(&self) {
        for env in subdirs(&self.dir.path().join(".work")) {
            if let Ok(pid) = std::fs::read_to_string(env.join("service.pid")) {
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

impl Drop for Local {
    fn drop(&mut self) {
        self.stop_service();
    }
}

/// Every file below `dir`.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The rollout folder (`.milepost/<workflow>/<environment>`) of the one workflow that ran
/// in `dir`: where its lock and runs are.
pub fn rollout_dir(dir: &Path) -> PathBuf {
    let root = dir.join(".milepost");
    let folders: Vec<PathBuf> = subdirs(&root).iter().flat_map(|w| subdirs(w)).collect();
    match folders.as_slice() {
        [one] => one.clone(),
        other => panic!("expected one rollout folder in {}, found {other:?}", root.display()),
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect())
        .unwrap_or_default();
    dirs.retain(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'));
    dirs.sort();
    dirs
}

/// What a command printed to stderr.
pub fn stderr(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stderr).into_owned()
}

/// What a command printed to stdout.
pub fn stdout(a: &assert_cmd::assert::Assert) -> String {
    String::from_utf8_lossy(&a.get_output().stdout).into_owned()
}

/// The lines steps appended to `ledger` in `dir`, in order.
pub fn ledger(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("ledger")).unwrap_or_default().lines().map(String::from).collect()
}

/// How many of `lines` are `line`.
pub fn count(lines: &[String], line: &str) -> usize {
    lines.iter().filter(|l| *l == line).count()
}

/// `command` started in the background, and the moment a step touched `marker` (so the run
/// is known to be inside that step).
pub fn spawn_until(mut command: std::process::Command, marker: &Path) -> std::process::Child {
    let child = command.env("NO_COLOR", "1").stderr(std::process::Stdio::null()).spawn().expect("it starts");
    for _ in 0..500 {
        if marker.exists() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child
}

/// Whether `script` (util-linux), which gives a command a pseudo-terminal, is installed.
pub fn has_script() -> bool {
    std::process::Command::new("script").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// `command_line` (shell text) run at a pseudo-terminal by `script`, what it shows written
/// to `typescript`, outside CI (a terminal, not a CI log) and without colour.
pub fn at_a_terminal(command_line: &str, typescript: &str) -> std::process::Child {
    std::process::Command::new("script")
        .args(["-qfec", command_line, typescript])
        .env_remove("CI")
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}
