//! `environment` blocks: checked, one selected by `--env`, its settings laid over the
//! workflow's. Its vars join the overrides in [`super::load`], before the command line's.

use super::diagnostic::{did_you_mean, Problem, Problems};
use super::model::{ClusterState, Environment, Phase, Requirement, StateBackend};
use super::raw::RawWorkflow;
use super::source::SourceMap;

/// An environment's name names its state folder (docs/state.md §1), so it is a plain word.
fn plain_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 64
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// The index of the environment `name` (from `--env` or `MILEPOST_ENV`) names.
pub fn select(
    raw: &RawWorkflow,
    chosen: Option<&super::load::ChosenEnvironment>,
    problems: &mut Problems,
) -> Option<usize> {
    let chosen = chosen?;
    if chosen.from_variable && raw.environments.is_empty() {
        return None;
    }
    let name = chosen.name.as_str();
    let declared: Vec<&str> = raw.environments.iter().map(|e| e.name.value.as_str()).collect();
    let found = declared.iter().position(|d| *d == name);
    if found.is_none() {
        problems.nowhere(Problem::UnknownEnvironment {
            name: name.to_string(),
            from: if chosen.from_variable { "MILEPOST_ENV".into() } else { "--env".into() },
            suggestion: did_you_mean(name, declared.iter().copied()).map(String::from),
            declared: declared.iter().map(|d| d.to_string()).collect(),
        });
    }
    found
}

/// Lays the environment's parallelism, overrun policy, Kubernetes settings and secrets'
/// sources over the workflow's.
pub fn lay_over(raw: &mut RawWorkflow, env: usize) {
    let env = &raw.environments[env];
    if let Some(p) = &env.parallelism {
        raw.parallelism = Some(p.clone());
    }
    if let Some(o) = &env.on_overrun {
        raw.on_overrun = Some(o.clone());
    }
    if let Some(k) = &env.kubernetes {
        let base = raw.kubernetes.get_or_insert_with(Default::default);
        if k.context.is_some() {
            base.context = k.context.clone();
        }
        if k.namespace.is_some() {
            base.namespace = k.namespace.clone();
        }
    }
    // An undeclared one is reported by `check`, for every environment.
    let sources: Vec<(usize, _)> = env
        .secrets
        .iter()
        .filter_map(|secret| {
            let i = raw.secrets.iter().position(|s| s.name.value == secret.name.value)?;
            Some((i, secret.env.clone()))
        })
        .collect();
    for (i, env_var) in sources {
        raw.secrets[i].env = env_var;
    }
}

/// Every declared environment, checked: plain, unique names; a `requires` that names
/// another declared environment and a declared phase, without a cycle.
pub fn check(
    raw: &RawWorkflow,
    phases: &[Phase],
    sources: &SourceMap,
    problems: &mut Problems,
) -> Vec<Environment> {
    let names: Vec<&str> = raw.environments.iter().map(|e| e.name.value.as_str()).collect();
    let mut out = Vec::with_capacity(names.len());
    for (i, env) in raw.environments.iter().enumerate() {
        let name = &env.name.value;
        if !plain_name(name) {
            problems.at(
                Problem::BadValue {
                    what: format!("environment name `{name}`"),
                    reason: "is not a plain word".into(),
                    help: "use letters, digits, `-`, `_` and `.` (at most 64), starting with a letter or digit: \
                           it names the environment's state folder"
                        .into(),
                },
                env.name.at(),
            );
        }
        for secret in &env.secrets {
            if !raw.secrets.iter().any(|s| s.name.value == secret.name.value) {
                let declared = raw.secrets.iter().map(|s| s.name.value.as_str());
                problems.at(
                    Problem::UnknownSecret {
                        environment: name.clone(),
                        name: secret.name.value.clone(),
                        suggestion: did_you_mean(&secret.name.value, declared).map(String::from),
                    },
                    secret.name.at(),
                );
            }
        }
        // Folder names: `Default` is `default` on macOS and Windows.
        if name.eq_ignore_ascii_case(crate::spec::NO_ENVIRONMENT) {
            problems.at(
                Problem::BadValue {
                    what: format!("environment name `{name}`"),
                    reason: "is the name of the state of a workflow without environments".into(),
                    help: "pick another name: runs made before the workflow had environments are kept as `default`, \
                           and would count as this environment's"
                        .into(),
                },
                env.name.at(),
            );
        }
        if let Some(first) = raw.environments[..i].iter().find(|o| o.name.value.eq_ignore_ascii_case(name)) {
            let first = sources.describe(first.name.at());
            problems.at(Problem::Duplicate { kind: "environment", id: name.clone(), first }, env.name.at());
            continue;
        }
        let requires = env.requires.as_ref().and_then(|r| {
            let source = &r.environment.value;
            if source == name {
                problems.at(
                    Problem::BadValue {
                        what: format!("environment `{name}`"),
                        reason: "requires itself".into(),
                        help: "name the environment that must pass first, e.g. requires staging".into(),
                    },
                    r.environment.at(),
                );
                return None;
            }
            if !names.contains(&source.as_str()) {
                problems.at(
                    Problem::UnknownEnvironment {
                        name: source.clone(),
                        from: format!("`requires` of environment `{name}`"),
                        suggestion: did_you_mean(source, names.iter().copied()).map(String::from),
                        declared: names.iter().map(|n| n.to_string()).collect(),
                    },
                    r.environment.at(),
                );
                return None;
            }
            let phase = match &r.phase {
                None => None,
                Some(p) => match phases.iter().position(|ph| ph.id == p.value) {
                    Some(index) => Some(index),
                    None => {
                        let known: Vec<&str> = phases.iter().map(|ph| ph.id.as_str()).collect();
                        problems.at(
                            Problem::BadValue {
                                what: format!("phase `{}`", p.value),
                                reason: "is not a phase of this workflow".into(),
                                help: match did_you_mean(&p.value, known.iter().copied()) {
                                    Some(near) => format!("did you mean `{near}`?"),
                                    None => format!("phases: {}", known.join(", ")),
                                },
                            },
                            p.at(),
                        );
                        return None;
                    }
                },
            };
            Some(Requirement { environment: source.clone(), phase })
        });
        out.push(Environment {
            name: name.clone(),
            deadline: env.deadline.as_ref().map(|d| d.value),
            requires,
            state: state_of(raw, Some(i)),
        });
    }
    check_cycles(raw, &out, problems);
    out
}

/// `prod requires staging`, `staging requires prod`: neither could ever run.
fn check_cycles(raw: &RawWorkflow, envs: &[Environment], problems: &mut Problems) {
    for env in envs {
        let mut seen = vec![env.name.as_str()];
        let mut next = env.requires.as_ref().map(|r| r.environment.as_str());
        while let Some(name) = next {
            if name == env.name {
                let requires = raw
                    .environments
                    .iter()
                    .find(|e| e.name.value == env.name)
                    .and_then(|e| e.requires.as_ref())
                    .expect("a cycle passes through it");
                problems.at(
                    Problem::BadValue {
                        what: format!("environment `{}`", env.name),
                        reason: format!("requires itself through {}", seen[1..].join(" → ")),
                        help: "promotion runs one way: remove one of the `requires`".into(),
                    },
                    requires.environment.at(),
                );
                return;
            }
            if seen.contains(&name) {
                break;
            }
            seen.push(name);
            next = envs
                .iter()
                .find(|e| e.name == name)
                .and_then(|e| e.requires.as_ref())
                .map(|r| r.environment.as_str());
        }
    }
}

/// Where the chosen environment's state lives: its own `state`, else the workflow's. One
/// declaration at the workflow level serves every environment under a name of its own,
/// the environment's added: staging and prod must never share a lock or journals.
pub fn state_of(raw: &RawWorkflow, env: Option<usize>) -> Option<ClusterState> {
    let mut state = declared_state(raw, env)?;
    // The cluster of the environment's (else the workflow's) `kubernetes { context }`, fixed
    // here so another environment's commands read this one's state where it is.
    if state.context.is_none() {
        let own = env.and_then(|e| raw.environments[e].kubernetes.as_ref()).and_then(|k| k.context.as_ref());
        let workflow = raw.kubernetes.as_ref().and_then(|k| k.context.as_ref());
        state.context = own.or(workflow).map(|c| c.value.clone());
    }
    Some(state)
}

fn declared_state(raw: &RawWorkflow, env: Option<usize>) -> Option<ClusterState> {
    let own = env.and_then(|e| raw.environments[e].state.as_ref());
    match (own, &raw.state) {
        (Some(s), _) => match &s.value {
            StateBackend::Local => None,
            StateBackend::Kubernetes(c) => Some(c.clone()),
        },
        (None, Some(s)) => match &s.value {
            StateBackend::Local => None,
            StateBackend::Kubernetes(c) => {
                let mut c = c.clone();
                if let Some(e) = env {
                    c.name = with_environment(&c.name, &raw.environments[e].name.value);
                }
                Some(c)
            }
        },
        (None, None) => None,
    }
}

/// `name-env` as a DNS label of at most 63 bytes (a label value's limit): an environment's
/// name may hold capitals, `_` and `.`, so a name changed to fit gets a hash of the
/// original, and two environments never map to one name.
fn with_environment(name: &str, environment: &str) -> String {
    let plain: String = environment
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    let joined = format!("{name}-{}", plain.trim_matches('-'));
    if plain == environment && joined.len() <= 63 {
        return joined;
    }
    use sha2::{Digest, Sha256};
    let hash = Sha256::digest(environment.as_bytes());
    let hash: String = hash.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let keep = joined.len().min(63 - 9);
    format!("{}-{hash}", joined[..keep].trim_end_matches('-'))
}
