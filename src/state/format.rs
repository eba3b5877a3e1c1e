//! The journal's on-disk format: JSON Lines, one [`Record`] per line, the first a
//! `run-start` carrying `format_version`. From version 2 every line ends with a checksum
//! (see `journal.rs`). Fields added later get `#[serde(default)]`; a journal with a newer
//! version is refused by this build. Documented in docs/state.md.

use serde::{Deserialize, Serialize};

use crate::exec::{Outcome, SkipReason};

/// 2: every line carries a checksum, nodes have a `node-start`, and `run-start` names the
/// run it follows and what an `apply` selected. Version 1 journals are still read.
pub const FORMAT_VERSION: u32 = 2;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Record {
    RunStart {
        format_version: u32,
        run_id: String,
        workflow: String,
        /// Absolute path of the workflow file, so `resume` needs no argument.
        workflow_file: String,
        /// Hash of every node's definition, in order.
        definition_hash: String,
        started_at: String,
        pid: u32,
        host: String,
        /// `apply`, `resume` or `verify`.
        command: String,
        /// The run this one follows in the state directory (the newest one when it took the
        /// lock): a journal removed from the middle of the history is noticed, not skipped.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_run: Option<String>,
        /// The nodes this run starts anew (docs/state.md §8): an `apply`'s selection
        /// (`--only`, `--phase`, `--from`; absent: every node of the workflow), a
        /// `resume --from`'s node and what follows it (absent: none).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        restart: Option<Vec<String>>,
        /// [`super::vars_hash`] of the run: which values it ran with. Absent in journals
        /// written before it existed (not checked).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        vars_hash: Option<String>,
        /// The Kubernetes context the run was given (`--context` or the workflow's), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<String>,
        /// The environment (`--env`) the run was for; absent for a workflow without any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        environment: Option<String>,
        /// The cluster the run connected to, when it ran Kubernetes steps.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cluster: Option<ClusterIdentity>,
        /// [`super::source_hash`]: the definition as written, the same in every environment
        /// (promotion compares it). Absent in journals written before it existed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_hash: Option<String>,
    },
    /// A node begins: from its first step (a new run of it), or past `first_step` leading
    /// steps kept from its earlier, unfinished run (resume, verify).
    NodeStart {
        node: String,
        first_step: usize,
        /// How many of its steps are install steps (the rest validate): a run that runs
        /// install steps again builds something new on which dependents were not built.
        install_steps: usize,
        at: String,
    },
    StepStart {
        node: String,
        step: String,
        index: usize,
        attempt: u32,
        at: String,
    },
    StepEnd {
        node: String,
        step: String,
        index: usize,
        #[serde(flatten)]
        outcome: Outcome,
        took_ms: u64,
        /// Hash of the rendered step (kind, command/URL/manifest, parameters); secrets masked.
        step_hash: String,
        at: String,
        /// The last lines of the step's output, for validate steps: what proved it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        evidence: Option<String>,
    },
    /// A step whose `when` was false: not run; kept like a passed step on resume.
    StepSkipped {
        node: String,
        step: String,
        index: usize,
        when: String,
        step_hash: String,
        at: String,
    },
    NodeEnd {
        node: String,
        #[serde(flatten)]
        outcome: Outcome,
        took_ms: u64,
        node_hash: String,
        at: String,
        /// The node's [`crate::spec::Node::source_hash`] when it ended: what an environment
        /// that requires this one compares (promotion).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        source_hash: Option<String>,
    },
    NodeSkipped {
        node: String,
        reason: SkipReason,
    },
    GatePassed {
        gate: String,
        at: String,
    },
    /// A node asks for approval: a gate once its checks passed, a module before its first
    /// install step. The request is this run's id and the node; decisions name it.
    ApprovalRequested {
        node: String,
        at: String,
        /// The node's definition as written when it asked: a decision answers this one.
        source_hash: String,
        /// What the gate's checks showed (their `step-end` evidence); empty for a module.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        evidence: Vec<crate::exec::approval::Evidence>,
        required: u32,
        /// Who may decide; empty: anyone who can write the rollout's state.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        from: Vec<String>,
    },
    /// The decisions on a request were read and let the node go on (`approved`) or ended it
    /// (`rejected`): what this run saw, as the approvals store said it.
    ApprovalDecided {
        node: String,
        at: String,
        /// The run whose `approval-requested` this answers.
        request: String,
        /// `approved` or `rejected`.
        decision: String,
        /// Who approved (every counted approver), or who rejected.
        by: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    RunEnd {
        passed: usize,
        failed: usize,
        skipped: usize,
        interrupted: bool,
        /// Stopped before a node whose planned end would pass `--deadline`. Absent: false
        /// (journals written before it existed read the same).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        deadline: bool,
        /// Nodes left waiting for approval (not ended, not counted above). Absent: 0.
        #[serde(default, skip_serializing_if = "is_zero")]
        waiting: usize,
        took_ms: u64,
        at: String,
    },
    /// The cluster lock of the run's rollout was taken from this run's holder (docs/state.md
    /// §13): after its lease expired, or by `milepost unlock --force`. Nothing of this run
    /// is written after it: the holder's later writes are refused.
    LockBroken {
        /// Who took the lock.
        by: String,
        /// The holder this run had.
        holder: String,
        /// `unlock --force` rather than an expired lease.
        forced: bool,
        at: String,
    },
}

/// Which cluster a run talked to: its API server and the certificate authorities trusted
/// for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterIdentity {
    pub server: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_sha256: Option<String>,
}

impl std::fmt::Display for ClusterIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.ca_sha256 {
            Some(ca) => write!(f, "{} (CA {}…)", self.server, &ca[..ca.len().min(12)]),
            None => f.write_str(&self.server),
        }
    }
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

pub fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
