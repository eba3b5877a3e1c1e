//! State: the run journal, the state-directory lock, what earlier runs completed, and the
//! resume decision. Layout of a state directory (docs/state.md):
//!
//! ```text
//! .milepost/<workflow>/<env>/lock                          held by the running apply/resume
//! .milepost/<workflow>/<env>/runs/<run-id>/journal.jsonl   the run's records
//! .milepost/<workflow>/<env>/runs/<run-id>/logs/<node>.NN-<step>.log
//! ```

pub mod approvals;
pub mod cluster;
pub mod format;
pub mod history;
pub mod journal;
pub mod lock;
pub mod place;
pub mod promotion;
pub mod recorder;
pub mod resume;

use sha2::{Digest, Sha256};

use crate::spec::{Node, Step, Workflow};

fn hex(digest: &[u8]) -> String {
    digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
}

/// What identifies a step's definition: its node, kind and every rendered parameter, with
/// secrets masked (so a secret never reaches the journal, even hashed).
pub fn step_hash(node: &Node, step: &Step) -> String {
    let json = serde_json::to_vec(&(&node.id, step)).expect("steps always serialize");
    hex(&Sha256::digest(json))
}

/// A node's definition: its `when` and its steps, in order. Budgets, buffers and probabilities are planning
/// data, like `after`: changing them changes no hash, so nothing runs again for them.
pub fn node_hash(node: &Node) -> String {
    let mut h = Sha256::new();
    h.update(node.id.as_bytes());
    // Only a node with a condition hashes one: the others keep the hashes they had.
    if let Some(when) = &node.when {
        h.update(b"\0when\0");
        h.update(when.text.as_bytes());
    }
    for (_, step) in node.steps() {
        h.update(step_hash(node, step).as_bytes());
    }
    hex(&h.finalize())
}

pub fn definition_hash(workflow: &Workflow) -> String {
    let mut h = Sha256::new();
    for node in &workflow.nodes {
        h.update(node_hash(node).as_bytes());
    }
    hex(&h.finalize())
}

/// The definition as written ([`crate::spec::Node::source_hash`] of every node, in order):
/// the same in every environment, unlike [`definition_hash`], which hashes rendered steps.
pub fn source_hash(workflow: &Workflow) -> String {
    let mut h = Sha256::new();
    for node in &workflow.nodes {
        h.update(node.source_hash.as_bytes());
    }
    hex(&h.finalize())
}

/// What a run's values were: a hash of the `--var`/`--vars-file` values that differ from the
/// file's defaults (never the values themselves), so a resume with other values is refused
/// rather than counting as done what only ran elsewhere.
pub fn vars_hash(workflow: &Workflow) -> String {
    let json = serde_json::to_vec(&workflow.var_overrides).expect("strings always serialize");
    hex(&Sha256::digest(json))
}
