//! Checks before the first step: a rollout that cannot finish should not start.

use std::path::Path;

use crate::spec::{StepKind, Workflow};

/// What preflight found. Errors stop the rollout before anything runs.
#[derive(Debug, Default)]
pub struct Preflight {
    pub errors: Vec<String>,
    pub warnings: Vec<String>,
}

/// Words a shell runs itself; never looked up on PATH.
const SHELL_WORDS: &[&str] = &[
    "if", "then", "else", "elif", "fi", "for", "while", "until", "do", "done", "case", "esac", "in",
    "function", "!", "{", "}", "[", "[[", "test", "cd", "export", "set", "unset", "echo", "printf", "true",
    "false", "exit", "return", "source", ".", "eval", "exec", "read", "trap", "wait", "sleep", "command",
    "type", "shift", "local", "ulimit", "umask", ":", "let", "declare", "readonly", "times", "alias",
];

/// `skip` is how many leading steps of each node will not run (resume, verify); empty: none.
pub fn check(workflow: &Workflow, selected: impl Fn(usize) -> bool, skip: &[usize]) -> Preflight {
    let mut found = Preflight::default();
    for secret in &workflow.secrets {
        if !secret.set {
            found.errors.push(format!(
                "secret `{}` needs the environment variable {} (export {}=…)",
                secret.name, secret.env, secret.env
            ));
        }
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    // Many steps share a shell and a few programs: each is looked up once.
    let mut known = std::collections::HashMap::new();
    let mut resolves = |program: &str, cwd: &Path| {
        let key = if program.contains('/') { cwd.join(program) } else { program.into() };
        *known.entry(key).or_insert_with(|| resolve(program, cwd, &path_var).is_some())
    };
    for (i, node) in workflow.nodes.iter().enumerate().filter(|(i, _)| selected(*i)) {
        for (_, step) in node.steps().skip(skip.get(i).copied().unwrap_or(0)) {
            let StepKind::Run { command, cwd, shell, .. } = &step.kind else { continue };
            let at = format!("{} › {}", node.id, step.name);
            let shell = shell.as_ref().unwrap_or(&workflow.shell);
            if let Some(program) = shell.first() {
                if !resolves(program, cwd) {
                    found.errors.push(format!("{at}: the shell `{program}` is not on PATH"));
                }
            }
            match first_program(&command.exec) {
                Program::Named(name) if !resolves(&name, cwd) => {
                    found.errors.push(format!("{at}: `{name}` is not on PATH (or not executable)"));
                }
                Program::Undecidable(word) => found
                    .warnings
                    .push(format!("{at}: cannot tell which program `{word}` runs until it runs")),
                _ => {}
            }
        }
    }
    found
}

#[derive(Debug, PartialEq, Eq)]
enum Program {
    Named(String),
    Builtin,
    Undecidable(String),
}

/// The program a shell command starts with, past `NAME=value` assignments.
fn first_program(command: &str) -> Program {
    let mut words = command.split(|c: char| c.is_whitespace() || matches!(c, ';' | '|' | '&' | '(' | ')'));
    let word = loop {
        match words.next() {
            None => return Program::Builtin,
            Some("") => continue,
            Some(w) if w.contains('=') && !w.starts_with('=') && !w.contains('/') => continue,
            Some(w) => break w,
        }
    };
    if SHELL_WORDS.contains(&word) {
        Program::Builtin
    } else if word.contains(['$', '`', '"', '\'', '*', '?', '<', '>']) {
        Program::Undecidable(word.to_string())
    } else {
        Program::Named(word.to_string())
    }
}

/// Where `program` is, as a shell finds it: a path from `cwd` when it has a `/`, else the
/// first executable file of that name in `path_var`'s folders.
pub(super) fn resolve(program: &str, cwd: &Path, path_var: &std::ffi::OsStr) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable =
        |p: &Path| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        let p = cwd.join(program);
        return executable(&p).then_some(p);
    }
    std::env::split_paths(path_var).map(|dir| dir.join(program)).find(|p| executable(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_program_skips_assignments_and_builtins() {
        assert_eq!(first_program("FOO=1 BAR=2 kubectl apply -f x"), Program::Named("kubectl".into()));
        assert_eq!(first_program("  helm upgrade"), Program::Named("helm".into()));
        assert_eq!(first_program("test -f x && rm x"), Program::Builtin);
        assert_eq!(first_program("$TOOL run"), Program::Undecidable("$TOOL".into()));
        assert_eq!(first_program("./scripts/drill.sh"), Program::Named("./scripts/drill.sh".into()));
    }
}
