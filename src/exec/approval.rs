//! A person's go before a node goes on (`approval` in a module or gate). The executor asks
//! and waits; where requests and decisions are kept is `state`'s business: it implements
//! [`Approvals`], as it implements [`super::Recorder`], so execution never depends on a store
//! (a file today, a cluster's ConfigMap later).
//!
//! A gate asks once its checks passed, so the approver sees what they proved; a module
//! before its first install step (go/no-go).

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::events::{ExecEvent, Outcome};
use super::node::NodeRun;
use crate::spec::Node;

/// How often a waiting node reads the decisions.
pub const POLL: Duration = Duration::from_secs(1);

/// A request for approval: which run asked, for which definition of the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub run_id: String,
    /// The node's [`Node::source_hash`] when it asked: a decision answers this definition.
    pub source_hash: String,
}

/// What one validate step showed: its name and the last lines of its output.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Evidence {
    pub step: String,
    pub text: String,
}

/// Where a request stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Enough distinct people approved.
    Approved { by: Vec<String> },
    /// Someone who may decide said no; one rejection is enough.
    Rejected { by: String, note: String },
    /// Not enough yet; who approved so far.
    Waiting { approved_by: Vec<String> },
}

/// What an earlier run left for this node.
#[derive(Debug, Clone, Default)]
pub struct Standing {
    /// The request that still stands for the node's definition of today; `None`: ask anew.
    pub request: Option<Request>,
    /// What a person should know: approvals given for an older definition, which do not count.
    pub notes: Vec<String>,
    /// The evidence of the checks kept from an earlier run, for a new request that did not
    /// run them here.
    pub evidence: Vec<Evidence>,
}

/// Where requests are found and decisions read; implemented by `state`.
pub trait Approvals: Send + Sync {
    /// The request an earlier run made for `node` that still stands.
    fn standing(&self, node: &Node) -> Standing;

    /// The decisions on `request` so far, tallied against what `node` requires.
    ///
    /// # Errors
    /// The decisions could not be read (a damaged store): the node is left waiting.
    fn verdict(&self, request: &Request, node: &Node) -> Result<Verdict, String>;
}

/// How the approval of a node ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Asked {
    /// Approved: the node goes on.
    GoOn,
    /// Rejected, or the request could not be made: the node ends so.
    Ended(Outcome),
    /// Not decided, and not waited for (no terminal, `--no-wait`, CI) or the wait was stopped
    /// (Ctrl-C): the node is left waiting, resumable.
    Waiting,
}

/// Asks for `run`'s node's approval, or finds the standing request, and waits for the
/// decision while `run.wait_for_approval` (polling every [`POLL`]), until `stop` is set.
pub async fn ask(run: &NodeRun, mut stop: watch::Receiver<bool>) -> Asked {
    let node = &run.workflow.nodes[run.node];
    let Some(approval) = node.approval.clone() else { return Asked::GoOn };
    // A run that asks for none (`verify` re-checks what was approved already).
    let Some(approvals) = run.approvals.clone() else { return Asked::GoOn };
    let mut standing = approvals.standing(node);
    // A gate asks after its checks, and its approver vouches for what they showed then. Its
    // checks ran again in this run (what they check was installed again since it asked, as
    // after a rollback of what is before it): the standing request's decisions were made on
    // evidence these checks no longer show, so it asks anew with theirs. (A module's request
    // stands for the resume that continues its install: it asked before any of it ran.)
    let checked_here = node.kind == crate::spec::NodeKind::Gate && run.skip_steps < node.steps().count();
    if let Some(stale) = standing.request.take_if(|_| checked_here) {
        standing.notes.push(format!(
            "its checks ran again since run {} asked (what they check changed): the decisions on that request \
             do not count; asking again",
            stale.run_id
        ));
    }
    for message in standing.notes {
        let _ = run.events.send(ExecEvent::ApprovalNote { node: run.node, message });
    }
    let request = match standing.request {
        Some(request) => request,
        None => {
            let request = Request { run_id: run.run_id.clone(), source_hash: node.source_hash.clone() };
            let event = ExecEvent::ApprovalRequested {
                node: run.node,
                approval: approval.clone(),
                evidence: standing.evidence,
            };
            // On disk before anyone can read it: `milepost approve` looks for it there.
            let recorded = match super::record(&run.recorder, &event) {
                Ok(()) => super::sync(&run.syncer).await,
                Err(reason) => Err(reason),
            };
            if let Err(reason) = recorded {
                return Asked::Ended(Outcome::Failed { reason });
            }
            let _ = run.events.send(event);
            request
        }
    };
    let mut told = false;
    loop {
        let verdict = match approvals.verdict(&request, node) {
            Ok(verdict) => verdict,
            // milepost's own trouble, not the node's: it is not failed (that would start its
            // on-failure handlers), only left waiting until the decisions can be read.
            Err(reason) => {
                let message = format!("cannot read the decisions: {reason}; left waiting");
                let _ = run.events.send(ExecEvent::ApprovalNote { node: run.node, message });
                return Asked::Waiting;
            }
        };
        match verdict {
            Verdict::Approved { by } => {
                let event =
                    ExecEvent::ApprovalDecided { node: run.node, request: request.run_id, by, note: None };
                return match super::record(&run.recorder, &event) {
                    Ok(()) => {
                        let _ = run.events.send(event);
                        Asked::GoOn
                    }
                    Err(reason) => Asked::Ended(Outcome::Failed { reason }),
                };
            }
            Verdict::Rejected { by, note } => {
                let reason = format!("rejected by {by}: {note}");
                let event = ExecEvent::ApprovalDecided {
                    node: run.node,
                    request: request.run_id,
                    by: vec![by],
                    note: Some(note),
                };
                let _ = super::record(&run.recorder, &event);
                let _ = run.events.send(event);
                return Asked::Ended(Outcome::Failed { reason });
            }
            Verdict::Waiting { approved_by } => {
                if !told {
                    told = true;
                    let _ = run.events.send(ExecEvent::ApprovalWaiting {
                        node: run.node,
                        approval: approval.clone(),
                        approved_by,
                        waits: run.wait_for_approval,
                    });
                }
                if !run.wait_for_approval || *stop.borrow() {
                    return Asked::Waiting;
                }
                tokio::select! {
                    _ = tokio::time::sleep(POLL) => {}
                    _ = super::step::wait_cancelled(&mut stop) => return Asked::Waiting,
                }
            }
        }
    }
}
