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
    "fi",
    "done",
    "esac",
    "in",
    "}",
    "[",
    "[[",
    "]]",
    "test",
    "cd",
    "export",
    "set",
    "unset",
    "echo",
    "printf",
    "true",
    "false",
    "exit",
    "return",
    "source",
    ".",
    "eval",
    "read",
    "trap",
    "wait",
    "sleep",
    "type",
    "shift",
    "local",
    "ulimit",
    "umask",
    ":",
    "let",
    "declare",
    "readonly",
    "times",
    "alias",
    "break",
    "continue",
    "pushd",
    "popd",
    "getopts",
    "hash",
    "mapfile",
    "readarray",
    "shopt",
    "builtin",
    "unalias",
    "pwd",
];

/// Words before a command that run it rather than being it: `if kubectl …`, `! grep …`,
/// `exec helm …`, `env A=1 vault …` (`env` is always there).
const PREFIX_WORDS: &[&str] = &[
    "if", "then", "else", "elif", "do", "while", "until", "!", "{", "time", "exec", "command", "env", "nohup",
];

/// Constructs whose first simple command names no program: a loop variable's list, a
/// `function` definition's name.
const NO_PROGRAM_WORDS: &[&str] = &["for", "select", "function"];

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
            let mut seen = std::collections::HashSet::new();
            for program in programs(&command.exec) {
                if !seen.insert(program.clone()) {
                    continue;
                }
                match program {
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
    }
    found
}

/// What one simple command of a `run` step starts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Program {
    /// A program looked up on PATH, or a path from the step's directory when it has a `/`.
    Named(String),
    /// A shell builtin or keyword.
    Builtin,
    /// Known only when the shell expands it (`$TOOL`, `"$(which helm)"`, `*.sh`).
    Undecidable(String),
}

/// The programs a shell command runs: one per simple command, in order, for every command of
/// `&&`, `||`, `;`, `|`, `&` and newline chains, inside `( … )` subshells and `$( … )` and
/// `` ` … ` `` substitutions, past `NAME=value` assignments, redirections (`2>&1`,
/// `<<<"$x"`, `> file`) and words such as `if`, `!`, `do`, `exec`. Words are split as the
/// shell splits them (shell-words); here-document bodies are not commands. A simple command
/// that names no program (only assignments, a `for` list, a subshell) gives nothing; text
/// the shell would reject (an unclosed quote) gives nothing rather than a guess.
pub fn programs(command: &str) -> Vec<Program> {
    let mut found = Vec::new();
    for segment in simple_commands(command) {
        let Ok(words) = shell_words::split(&segment) else { continue };
        found.extend(program_of(&words));
    }
    found
}

/// The program of one simple command, given its words.
fn program_of(words: &[String]) -> Option<Program> {
    let mut words = words.iter().map(String::as_str);
    let mut prefix = "";
    while let Some(word) = words.next() {
        if prefix == "command" && matches!(word, "-v" | "-V") {
            // `command -v helm` asks whether helm exists; it does not run it.
            return Some(Program::Builtin);
        }
        let takes_options = matches!(prefix, "exec" | "command" | "env" | "nohup" | "time");
        if is_assignment(word) || (takes_options && word.starts_with('-')) {
            continue;
        }
        if let Some(needs_target) = redirection(word) {
            if needs_target {
                words.next();
            }
            continue;
        }
        if PREFIX_WORDS.contains(&word) {
            prefix = word;
            continue;
        }
        if word.ends_with("(…)") && word.len() > "(…)".len() && !word.contains(['$', '<', '>']) {
            // `name() { …` defines a function: its body follows.
            continue;
        }
        if word == "case" {
            // `case WORD in PATTERN) command …`: the command after the pattern is checked.
            words.by_ref().find(|w| *w == "in");
            continue;
        }
        if word.ends_with(')') && !word.contains('(') {
            // A `case` pattern: `prod) helm …`.
            continue;
        }
        if NO_PROGRAM_WORDS.contains(&word) || word.starts_with('(') {
            return None;
        }
        if SHELL_WORDS.contains(&word) {
            return Some(Program::Builtin);
        }
        return Some(if word.contains(['$', '`', '*', '?', '[', '~', '(']) {
            Program::Undecidable(word.to_string())
        } else {
            Program::Named(word.to_string())
        });
    }
    None
}

/// `NAME=value`, with NAME a shell variable name.
fn is_assignment(word: &str) -> bool {
    let Some((name, _)) = word.split_once('=') else { return false };
    let name = name.strip_suffix('+').unwrap_or(name);
    name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Whether `word` is a redirection (`>`, `2>>file`, `&>log`, `<<<"$x"`, `2>&1`), and if so
/// whether its target is the next word.
fn redirection(word: &str) -> Option<bool> {
    let rest = word.trim_start_matches(|c: char| c.is_ascii_digit());
    let rest = rest.strip_prefix('&').filter(|r| r.starts_with('>')).unwrap_or(rest);
    let op_len = ["<<<", "<<-", "<<", ">>", "<>", ">|", ">&", "<&", ">", "<"]
        .iter()
        .find(|op| rest.starts_with(*op))
        .map(|op| op.len())?;
    Some(rest.len() == op_len)
}

/// The simple commands of `command` as text, top level first, then the bodies of its
/// subshells and substitutions; each substitution left in its command as `$(…)`.
fn simple_commands(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut nested = Vec::new();
    split_top_level(command, &mut out, &mut nested);
    while let Some(body) = nested.pop() {
        split_top_level(&body, &mut out, &mut nested);
    }
    out
}

/// Splits at unquoted `;`, `&`, `|`, newlines (`&&`, `||` included), keeping `2>&1`, `&>` and
/// `>|` whole; pushes the bodies of `( … )`, `$( … )` and backquotes to `nested`.
fn split_top_level(command: &str, out: &mut Vec<String>, nested: &mut Vec<String>) {
    let chars: Vec<char> = command.chars().collect();
    let mut current = String::new();
    let mut heredocs: Vec<(String, bool)> = Vec::new();
    let mut i = 0;
    let finish = |current: &mut String, out: &mut Vec<String>| {
        if !current.trim().is_empty() {
            out.push(std::mem::take(current));
        }
        current.clear();
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\\' => {
                current.push(c);
                if let Some(&next) = chars.get(i + 1) {
                    current.push(next);
                }
                i += 2;
                continue;
            }
            '\'' => {
                let end = (i + 1..chars.len()).find(|&j| chars[j] == '\'').unwrap_or(chars.len());
                current.extend(&chars[i..(end + 1).min(chars.len())]);
                i = end + 1;
                continue;
            }
            '"' => {
                // Inside double quotes only substitutions matter.
                current.push(c);
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    if chars[i] == '\\' {
                        current.extend(&chars[i..(i + 2).min(chars.len())]);
                        i += 2;
                    } else if let Some(next) = substitution(&chars, i, nested) {
                        current.push_str("$(…)");
                        i = next;
                    } else {
                        current.push(chars[i]);
                        i += 1;
                    }
                }
                if i < chars.len() {
                    current.push('"');
                }
                i += 1;
                continue;
            }
            '#' if current.chars().last().is_none_or(char::is_whitespace) => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
                continue;
            }
            '(' => {
                let end = closing(&chars, i + 1);
                nested.push(chars[i + 1..end.min(chars.len())].iter().collect());
                current.push_str("(…)");
                i = end + 1;
                continue;
            }
            ';' | '|' | '&' => {
                let redirect = matches!(current.chars().last(), Some('>' | '<'))
                    || (c == '&' && chars.get(i + 1) == Some(&'>'));
                if redirect {
                    current.push(c);
                } else {
                    finish(&mut current, out);
                }
                i += 1;
                continue;
            }
            '\n' => {
                finish(&mut current, out);
                i += 1;
                // Here-document bodies: skip lines up to each delimiter.
                for (delimiter, tabs) in heredocs.drain(..) {
                    while i < chars.len() {
                        let end = (i..chars.len()).find(|&j| chars[j] == '\n').unwrap_or(chars.len());
                        let line: String = chars[i..end].iter().collect();
                        i = end + 1;
                        let line = if tabs { line.trim_start_matches('\t') } else { &line };
                        if line == delimiter {
                            break;
                        }
                    }
                }
                continue;
            }
            '<' if chars.get(i + 1) == Some(&'<')
                && chars.get(i + 2) != Some(&'<')
                && !current.ends_with('<') =>
            {
                let mut j = i + 2;
                let tabs = chars.get(j) == Some(&'-');
                if tabs {
                    j += 1;
                }
                while chars.get(j).is_some_and(|c| *c == ' ' || *c == '\t') {
                    j += 1;
                }
                let start = j;
                while chars.get(j).is_some_and(|c| !c.is_whitespace() && !";|&<>()".contains(*c)) {
                    j += 1;
                }
                let word: String =
                    chars[start..j].iter().filter(|c| !matches!(c, '\'' | '"' | '\\')).collect();
                heredocs.push((word, tabs));
                current.extend(&chars[i..j]);
                i = j;
                continue;
            }
            _ => {}
        }
        if let Some(next) = substitution(&chars, i, nested) {
            current.push_str("$(…)");
            i = next;
            continue;
        }
        current.push(c);
        i += 1;
    }
    finish(&mut current, out);
}

/// At `$(`, `$((` or a backquote: pushes the command inside (not arithmetic) to `nested`
/// and returns where the substitution ends.
fn substitution(chars: &[char], i: usize, nested: &mut Vec<String>) -> Option<usize> {
    match (chars[i], chars.get(i + 1)) {
        ('$', Some('(')) => {
            let end = closing(chars, i + 2);
            if chars.get(i + 2) != Some(&'(') {
                nested.push(chars[i + 2..end.min(chars.len())].iter().collect());
            }
            Some(end + 1)
        }
        ('`', _) => {
            let mut j = i + 1;
            while j < chars.len() && chars[j] != '`' {
                j += if chars[j] == '\\' { 2 } else { 1 };
            }
            nested.push(chars[i + 1..j.min(chars.len())].iter().collect());
            Some(j + 1)
        }
        _ => None,
    }
}

/// The index of the `)` that closes a `(` just before `from`, past quotes and nested
/// parentheses; the length when there is none.
fn closing(chars: &[char], from: usize) -> usize {
    let mut depth = 1;
    let mut i = from;
    while i < chars.len() {
        match chars[i] {
            '\\' => i += 1,
            '\'' => i = (i + 1..chars.len()).find(|&j| chars[j] == '\'').unwrap_or(chars.len()),
            '"' => {
                i += 1;
                while i < chars.len() && chars[i] != '"' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
            }
            '(' => depth += 1,
            ')' => {
                depth -= 1;
                if depth == 0 {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    chars.len()
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

    fn named(command: &str) -> Vec<String> {
        programs(command)
            .into_iter()
            .filter_map(|p| match p {
                Program::Named(name) => Some(name),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn programs_skip_assignments_and_builtins() {
        assert_eq!(programs("FOO=1 BAR=2 kubectl apply -f x"), [Program::Named("kubectl".into())]);
        assert_eq!(programs("  helm upgrade"), [Program::Named("helm".into())]);
        assert_eq!(programs("test -f x && rm x"), [Program::Builtin, Program::Named("rm".into())]);
        assert_eq!(programs("$TOOL run"), [Program::Undecidable("$TOOL".into())]);
        assert_eq!(programs("./scripts/drill.sh"), [Program::Named("./scripts/drill.sh".into())]);
    }

    /// The three misreadings of issue 15 item 7.
    #[test]
    fn quoted_assignments_and_substitutions_are_read_as_the_shell_reads_them() {
        // Was: "cannot tell which program `$ARGOCD_ADMIN_PASSWORD>'` runs" (split at `(`).
        let helm = r#"helm upgrade --install argocd argo/argo-cd --set-string x="$(printf '%s\n' "$ADMIN_PASSWORD" | htpasswd -niBC 10 '' | tr -d ':\n' | sed 's/$2y/$2a/')" --wait"#;
        assert_eq!(named(helm), ["helm", "htpasswd", "tr", "sed"]);
        assert!(!programs(helm).iter().any(|p| matches!(p, Program::Undecidable(_))), "{:?}", programs(helm));
        // Was: `vault` missed (the quoted value with a space was read as the program).
        assert_eq!(
            named("VAULT_ADDR='https://vault.internal:8200' vault status -format=json | jq -e ."),
            ["vault", "jq"]
        );
        assert_eq!(named("VAULT_ADDR='a b' VAULT_TOKEN=\"$T\" vault status"), ["vault"]);
    }

    #[test]
    fn chains_redirections_and_keywords() {
        assert_eq!(
            named("out=$(kubectl get x 2>&1); echo \"$out\"; ! grep -q '^W' <<<\"$out\""),
            ["grep", "kubectl"]
        );
        assert_eq!(named("a || b && c; d | e & f |& g"), ["a", "b", "c", "d", "e", "f", "g"]);
        assert_eq!(named("kubectl logs x >/tmp/log 2>&1 && 2> err curl -s http://x"), ["kubectl", "curl"]);
        assert_eq!(named("cat > out &> all >| clobber"), ["cat"]);
        assert_eq!(named("if kubectl get ns x; then helm ls; else exit 1; fi"), ["kubectl", "helm"]);
        assert_eq!(named("for s in a b; do trivy image \"r/$s\"; done"), ["trivy"]);
        assert_eq!(named("while true; do sleep 1; done"), Vec::<String>::new());
        assert_eq!(
            named("exec velero backup get; command argocd; env -i A=1 istioctl version"),
            ["velero", "argocd", "istioctl"]
        );
        assert_eq!(named("(cd x && make) > log"), ["make"]);
        assert_eq!(named("v=`date +%s`; n=$((1 + 2))"), ["date"]);
        assert_eq!(named("echo 'a; b | c' \"d && e\" f\\;g"), Vec::<String>::new());
        assert_eq!(named("cat <<EOF\nnot a command\n  neither\nEOF\nkubectl apply -f -"), ["cat", "kubectl"]);
        assert_eq!(named("kubectl get pods # then helm, in a comment"), ["kubectl"]);
        assert_eq!(named("case \"$E\" in prod) helm ls;; *) kubectl get ns;; esac"), ["helm", "kubectl"]);
    }

    /// Nothing is invented from a fragment: expansions are undecidable, broken quoting and
    /// bare substitutions give nothing.
    #[test]
    fn what_cannot_be_known_is_not_guessed() {
        assert_eq!(
            programs("\"$(which helm)\" ls"),
            [Program::Undecidable("$(…)".into()), Program::Named("which".into())]
        );
        assert_eq!(programs("command -v helm || exit 1"), [Program::Builtin, Program::Builtin]);
        assert_eq!(programs("echo 'unclosed"), []);
        assert_eq!(programs("f() { kubectl get x; }"), [Program::Named("kubectl".into()), Program::Builtin]);
        assert_eq!(programs("*.sh"), [Program::Undecidable("*.sh".into())]);
    }
}
