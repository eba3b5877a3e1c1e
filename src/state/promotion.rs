//! Promotion: an environment that `requires` another may roll out only what that one has
//! passed, with the same definition. "The same definition" is each node's source hash
//! ([`crate::spec::Node::source_hash`]): its steps and the files they render as written,
//! the same in every environment, recorded in every `node-end`. docs/state.md §12.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::history::{read_journals, History};
use super::place;
use crate::spec::{Environment, NodeId, NodeKind, Requirement, Workflow};

/// What an environment has proven for the workflow as defined now.
#[derive(Debug, Clone, Serialize)]
pub struct Standing {
    pub environment: String,
    /// Runs recorded in its rollout folder.
    pub runs: usize,
    /// Its newest run: id, command, start.
    pub last_run: Option<LastRun>,
    /// Nodes whose current run passed with today's definition, of all nodes.
    pub passed: usize,
    pub nodes: usize,
    /// What it must have seen pass elsewhere first, and whether it has (`None`: nothing
    /// required).
    pub promotion: Option<Promotion>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastRun {
    pub run_id: String,
    pub command: String,
    pub started_at: String,
    /// `Some(true)` complete, `Some(false)` stopped (or waiting), `None` killed or still running.
    pub finished: Option<bool>,
    /// Nodes it left waiting for approval.
    #[serde(skip_serializing_if = "is_zero")]
    pub waiting: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

#[derive(Debug, Clone, Serialize)]
pub struct Promotion {
    /// The environment that must pass first.
    pub requires: String,
    /// `gate infrastructure-stability`, `phase 2A` or `the whole workflow`.
    pub what: String,
    /// Why it is not proven; `None` when it is.
    pub missing: Option<String>,
}

/// The nodes a requirement covers: the phase's gate (or its modules, without a gate) and
/// everything they stand on; every node for the whole workflow.
pub fn scope(workflow: &Workflow, requirement: &Requirement) -> Vec<NodeId> {
    let Some(phase) = requirement.phase.map(|p| &workflow.phases[p]) else {
        return (0..workflow.nodes.len()).collect();
    };
    let mut wanted = vec![false; workflow.nodes.len()];
    let mut stack: Vec<NodeId> = phase.gate.into_iter().chain(phase.modules.iter().copied()).collect();
    while let Some(n) = stack.pop() {
        if !std::mem::replace(&mut wanted[n], true) {
            stack.extend(workflow.nodes[n].deps.iter().copied());
        }
    }
    (0..workflow.nodes.len()).filter(|&n| wanted[n]).collect()
}

/// `gate infrastructure-stability`, `phase 2A`, `the whole workflow`.
pub fn describe(workflow: &Workflow, requirement: &Requirement) -> String {
    match requirement.phase.map(|p| &workflow.phases[p]) {
        None => "the whole workflow".into(),
        Some(phase) => match phase.gate {
            Some(gate) => format!("gate {} (phase {})", workflow.nodes[gate].id, phase.id),
            None => format!("phase {}", phase.id),
        },
    }
}

/// A short name for a set of source hashes: "definition 3f2a9c1e".
fn short_hash<'a>(hashes: impl Iterator<Item = &'a str>) -> String {
    let mut h = Sha256::new();
    for hash in hashes {
        h.update(hash.as_bytes());
    }
    h.finalize().iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// The rollout folder of `environment` beside `rollout_dir` (same root, same workflow).
pub fn sibling(rollout_dir: &Path, workflow: &Workflow, environment: &str) -> Result<PathBuf, String> {
    let root = rollout_dir.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    let local = place::rollout_dir(root, &workflow.id, environment);
    // An environment whose state is in a cluster is read from there.
    match workflow.environments.iter().find(|e| e.name == environment).and_then(|e| e.state.as_ref()) {
        None => Ok(local),
        Some(state) => super::cluster::view(state, &local)
            .map_err(|e| format!("cannot read the runs of environment `{environment}`: {e}")),
    }
}

/// What one node's current run in an environment proves.
enum NodeProof<'w> {
    /// Passed with today's definition, on the dependencies as they are.
    Passed,
    /// Passed with another definition.
    Changed,
    /// Passed, but built on a dependency that was built again since: it proves nothing of
    /// what that dependency is now (a gate that never saw the new module).
    Stale(&'w str),
    /// Passed before its dependency had ever completed: not built on it.
    Before(&'w str),
    Failed,
    Unfinished,
    NotRun,
}

fn standing_of<'w>(workflow: &'w Workflow, source: &History, n: NodeId) -> NodeProof<'w> {
    let node = &workflow.nodes[n];
    // Skipped by its condition there (at load, or as it would start): nothing to vouch for.
    if node.skipped_at_load() || source.skipped_by_condition.contains(&node.id) {
        return NodeProof::Passed;
    }
    match source.nodes.get(&node.id) {
        Some(end) if end.outcome.passed() => {
            if end.source_hash.as_deref() != Some(node.source_hash.as_str()) {
                return NodeProof::Changed;
            }
            let began = source.attempts.get(&node.id).map_or(0, |a| a.began);
            for dep in node.deps.iter().map(|&d| workflow.nodes[d].id.as_str()) {
                if source.rebuilt_since(dep, began) {
                    return NodeProof::Stale(dep);
                }
                // Run before its dependency ever completed (`--only`): not built on it.
                let built_on = source.completions.get(dep).is_some_and(|c| c.iter().any(|&c| c < began));
                if !built_on {
                    return NodeProof::Before(dep);
                }
            }
            NodeProof::Passed
        }
        Some(_) => NodeProof::Failed,
        None if source.attempts.get(&node.id).is_some_and(|a| a.started) => NodeProof::Unfinished,
        None => NodeProof::NotRun,
    }
}

/// Whether `source`'s history proves `requirement` for the workflow as defined now:
/// `Ok(())`, or a message that says exactly what is missing.
pub fn check(
    workflow: &Workflow,
    requirement: &Requirement,
    source: &History,
    source_dir: &Path,
) -> Result<(), String> {
    let scope = scope(workflow, requirement);
    let what = describe(workflow, requirement);
    let env = &requirement.environment;
    let now = short_hash(scope.iter().map(|&n| workflow.nodes[n].source_hash.as_str()));
    let mut changed = Vec::new();
    let mut not_passed = Vec::new();
    for &n in &scope {
        let node = &workflow.nodes[n];
        match standing_of(workflow, source, n) {
            NodeProof::Passed => {}
            NodeProof::Changed => changed.push(node),
            NodeProof::Stale(dep) => not_passed.push(format!("{} passed before {dep} ran again", node.id)),
            NodeProof::Before(dep) => not_passed.push(format!("{} passed before {dep} ran", node.id)),
            NodeProof::Failed => not_passed.push(format!("{} failed", node.id)),
            NodeProof::Unfinished => not_passed.push(format!("{} did not finish", node.id)),
            NodeProof::NotRun => not_passed.push(format!("{} has not run", node.id)),
        }
    }
    if changed.is_empty() && not_passed.is_empty() {
        return Ok(());
    }
    let mut message = format!("{env} has not passed {what} with this definition ({now})");
    let never = |n: &&NodeId| source.attempts.get(&workflow.nodes[**n].id).is_none_or(|a| !a.started);
    let nothing_ran = changed.is_empty() && scope.iter().all(|n| never(&n));
    if nothing_ran {
        message
            .push_str(&format!(": nothing of it has run in {env} (as recorded in {})", source_dir.display()));
        not_passed.clear();
    } else if not_passed.is_empty() {
        // Every node passed there, some with an earlier definition: name it, and what changed.
        let then =
            short_hash(scope.iter().map(|&n| {
                source.nodes[&workflow.nodes[n].id].source_hash.as_deref().unwrap_or("unrecorded")
            }));
        message.push_str(&format!("; it last passed with definition {then}…"));
    }
    if !changed.is_empty() {
        let modules = changed.iter().filter(|n| n.kind == NodeKind::Module).count();
        let noun = |count: usize, one: &str| if count == 1 { one.to_string() } else { format!("{one}s") };
        let counted = if modules == changed.len() {
            format!("{modules} {}", noun(modules, "module"))
        } else {
            format!("{} {}", changed.len(), noun(changed.len(), "node"))
        };
        let names: Vec<&str> = changed.iter().map(|n| n.id.as_str()).collect();
        message.push_str(&format!(", {counted} changed since: {}", names.join(", ")));
        let chosen: Vec<&str> = changed.iter().filter(|n| n.files_by_values).map(|n| n.id.as_str()).collect();
        if !chosen.is_empty() {
            message.push_str(&format!(
                " ({} render(s) a file whose path an environment's values choose, so it differs between \
                 environments and cannot be vouched for: choose inside the file instead, docs/state.md §12)",
                chosen.join(", ")
            ));
        }
    }
    if !not_passed.is_empty() {
        let shown: Vec<&str> = not_passed.iter().take(8).map(String::as_str).collect();
        let more = not_passed.len().saturating_sub(shown.len());
        let more = if more > 0 { format!(" and {more} more") } else { String::new() };
        message.push_str(&format!("; there {}{more}", shown.join(", ")));
    }
    // `--phase` runs that phase alone: enough only when nothing before it is needed.
    let phase = requirement
        .phase
        .filter(|&p| scope.iter().all(|&n| workflow.nodes[n].phase == Some(p)))
        .map(|p| format!(" --phase {}", workflow.phases[p].id))
        .unwrap_or_default();
    message.push_str(&format!(
        ". Roll it out there first: `milepost apply {} --env {env}{phase}`",
        shell_words::quote(&workflow.file.display().to_string())
    ));
    Err(message)
}

/// Reads `environment`'s history beside `rollout_dir` and checks the requirement.
pub fn check_beside(
    rollout_dir: &Path,
    workflow: &Workflow,
    requirement: &Requirement,
) -> Result<(), String> {
    let dir = sibling(rollout_dir, workflow, &requirement.environment)?;
    let journals = read_journals(&dir)
        .map_err(|e| format!("cannot read the runs of environment `{}`: {e}", requirement.environment))?;
    check(workflow, requirement, &History::from_journals(&journals), &dir)
}

/// Every declared environment's standing, read from the rollout folders beside
/// `rollout_dir`; an environment whose runs cannot be read says why as its promotion.
pub fn standings(rollout_dir: &Path, workflow: &Workflow) -> Vec<Standing> {
    workflow.environments.iter().map(|env| standing(rollout_dir, workflow, env)).collect()
}

/// One environment's standing: its runs read from its folder beside `rollout_dir`.
pub fn standing(rollout_dir: &Path, workflow: &Workflow, env: &Environment) -> Standing {
    let history = sibling(rollout_dir, workflow, &env.name)
        .and_then(|dir| read_journals(&dir).map_err(|e| e.to_string()))
        .map(|j| History::from_journals(&j));
    let passed = history.as_ref().map_or(0, |h| {
        (0..workflow.nodes.len())
            .filter(|&n| matches!(standing_of(workflow, h, n), NodeProof::Passed))
            .count()
    });
    let last_run = history.as_ref().ok().and_then(|h| h.runs.last()).map(|r| LastRun {
        run_id: r.run_id.clone(),
        command: r.command.clone(),
        started_at: r.started_at.clone(),
        finished: r.finished,
        waiting: r.waiting,
    });
    Standing {
        environment: env.name.clone(),
        runs: history.as_ref().map_or(0, |h| h.runs.len()),
        last_run,
        passed,
        nodes: workflow.nodes.len(),
        promotion: promotion(rollout_dir, workflow, env),
    }
}

/// What `env` requires another environment to have passed, and whether it has (`None`:
/// nothing required).
pub fn promotion(rollout_dir: &Path, workflow: &Workflow, env: &Environment) -> Option<Promotion> {
    let requirement = env.requires.as_ref()?;
    Some(Promotion {
        requires: requirement.environment.clone(),
        what: describe(workflow, requirement),
        missing: check_beside(rollout_dir, workflow, requirement).err(),
    })
}
