//! What the executor tells the outside world. `exec` never prints: `ui` and `state` consume
//! these events.

use std::path::PathBuf;
use std::time::Duration;

use crate::spec::{NodeId, Stage};

/// How one step ended. A failed step is data, not an error: it travels in events and the
/// journal, and milepost itself is fine.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Outcome {
    Passed,
    /// The step ran and did not pass; `reason` is what the person needs to read first.
    Failed {
        reason: String,
    },
    /// Its timeout ended it; for commands, the whole process group was killed.
    TimedOut {
        reason: String,
    },
    /// Stopped by the operator (second Ctrl-C, SIGTERM) or a fatal budget overrun.
    Cancelled {
        reason: String,
    },
}

impl Outcome {
    pub fn passed(&self) -> bool {
        matches!(self, Outcome::Passed)
    }

    /// The same outcome with `change` applied to its reason.
    pub fn map_reason(self, change: impl FnOnce(String) -> String) -> Outcome {
        match self {
            Outcome::Passed => Outcome::Passed,
            Outcome::Failed { reason } => Outcome::Failed { reason: change(reason) },
            Outcome::TimedOut { reason } => Outcome::TimedOut { reason: change(reason) },
            Outcome::Cancelled { reason } => Outcome::Cancelled { reason: change(reason) },
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            Outcome::Passed => None,
            Outcome::Failed { reason } | Outcome::TimedOut { reason } | Outcome::Cancelled { reason } => {
                Some(reason)
            }
        }
    }
}

/// Why a node did not run.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SkipReason {
    /// A node it depends on failed.
    UpstreamFailed { upstream: String },
    /// Fail-fast or Ctrl-C stopped new starts.
    Stopped,
    /// Its planned end would pass the `--deadline`.
    Deadline,
    /// Not selected by --only/--phase/--from.
    NotSelected,
    /// Completed in an earlier run with an unchanged definition.
    AlreadyDone,
    /// Its `when` condition is false (decided at load, or when it would have started).
    Condition { when: String },
    /// A node it depends on waits for approval (not recorded: a resume runs it).
    AwaitsApproval { upstream: String },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::UpstreamFailed { upstream } => write!(f, "`{upstream}` failed"),
            SkipReason::Stopped => f.write_str("the rollout stopped"),
            SkipReason::Deadline => f.write_str("it would end after the deadline"),
            SkipReason::NotSelected => f.write_str("not selected"),
            SkipReason::AlreadyDone => f.write_str("done in an earlier run"),
            SkipReason::Condition { when } => write!(f, "when {when} is false"),
            SkipReason::AwaitsApproval { upstream } => write!(f, "`{upstream}` waits for approval"),
        }
    }
}

#[derive(Debug, Clone)]
pub enum ExecEvent {
    RunStarted {
        run_id: String,
        nodes: usize,
        planned_finish: Duration,
    },
    NodeStarted {
        node: NodeId,
        steps: usize,
    },
    StepStarted {
        node: NodeId,
        index: usize,
        stage: Stage,
        step: String,
        attempt: u32,
        log: PathBuf,
    },
    /// A step whose `when` is false: not run, journaled as skipped.
    StepSkipped {
        node: NodeId,
        index: usize,
        step: String,
        when: String,
    },
    /// A probe attempt failed and will be tried again after its interval.
    ProbeRetry {
        node: NodeId,
        step: String,
        attempt: u32,
        reason: String,
    },
    StepFinished {
        node: NodeId,
        index: usize,
        step: String,
        outcome: Outcome,
        took: Duration,
        log: PathBuf,
    },
    /// Something went wrong beside a step that passed: its log could not be written.
    StepWarning {
        node: NodeId,
        step: String,
        message: String,
    },
    /// A node ran past budget + buffer.
    Overrun {
        node: NodeId,
        planned: Duration,
        fatal: bool,
    },
    NodeFinished {
        node: NodeId,
        outcome: Outcome,
        took: Duration,
    },
    NodeSkipped {
        node: NodeId,
        reason: SkipReason,
    },
    /// Once a second while anything runs: elapsed against the plan.
    Tick {
        elapsed: Duration,
        projected_finish: Duration,
        planned_finish: Duration,
    },
    /// First Ctrl-C: nothing new starts, running nodes finish.
    Draining,
    /// Only for the recorder: a node begins, past `first_step` steps kept from an earlier run.
    NodeBegun {
        node: NodeId,
        first_step: usize,
    },
    /// Only for the recorder: a node's end, with the time the dispatcher measured.
    NodeRecorded {
        node: NodeId,
        outcome: Outcome,
        took: Duration,
    },
    /// The journal could not be written; nothing new starts.
    RecordFailed {
        reason: String,
    },
    RunFinished {
        summary: RunSummary,
    },
    /// A node asks for approval (a new request, journaled): who may decide, and what its
    /// checks showed.
    ApprovalRequested {
        node: NodeId,
        approval: crate::spec::Approval,
        evidence: Vec<super::approval::Evidence>,
    },
    /// A node waits for approval: said once per run of it, with who approved so far, and
    /// whether this run waits (a terminal) or leaves it waiting.
    ApprovalWaiting {
        node: NodeId,
        approval: crate::spec::Approval,
        approved_by: Vec<String>,
        waits: bool,
    },
    /// Decided: approved by `by` (no note), or rejected by `by[0]` with `note`.
    ApprovalDecided {
        node: NodeId,
        /// The run whose request this answers.
        request: String,
        by: Vec<String>,
        note: Option<String>,
    },
    /// Something a person should know about a node's approval (an approval that no longer
    /// counts).
    ApprovalNote {
        node: NodeId,
        message: String,
    },
    /// The node's steps so far passed and it waits for approval: not ended, not failed;
    /// nothing after it starts.
    NodeWaiting {
        node: NodeId,
    },
}

/// The end of a run, for the last lines and the exit code.
#[derive(Debug, Clone, Default)]
pub struct RunSummary {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
    pub took: Duration,
    pub interrupted: bool,
    pub deadline_stop: bool,
    /// The journal could not be written; the run stopped.
    pub record_failed: bool,
    /// Nodes left waiting for approval.
    pub waiting: usize,
}
