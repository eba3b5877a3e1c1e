//! Turns execution events into journal records, with the definition hashes resume needs.

use std::sync::Arc;

use super::format::{now, Record};
use super::journal::Journal;
use super::{node_hash, step_hash};
use crate::exec::{ExecEvent, Recorder};
use crate::spec::{NodeKind, Workflow};

/// How much of a validate step's output is kept as evidence.
const EVIDENCE_LINES: usize = 5;

pub struct JournalRecorder {
    journal: Journal,
    workflow: Arc<Workflow>,
    step_hashes: Vec<Vec<String>>,
    node_hashes: Vec<String>,
    /// Where every flush is pushed too: the cluster's copy of the journal.
    mirror: Option<Arc<super::cluster::Mirror>>,
    /// The evidence of the passed checks of nodes that will ask for approval, in this run.
    evidence: std::collections::HashMap<usize, Vec<crate::exec::approval::Evidence>>,
}

impl JournalRecorder {
    pub fn new(journal: Journal, workflow: Arc<Workflow>) -> Self {
        let step_hashes =
            workflow.nodes.iter().map(|n| n.steps().map(|(_, s)| step_hash(n, s)).collect()).collect();
        let node_hashes = workflow.nodes.iter().map(node_hash).collect();
        Self { journal, workflow, step_hashes, node_hashes, mirror: None, evidence: Default::default() }
    }

    /// Every flush also pushes what it made durable to `mirror`, before it returns.
    pub fn mirrored(mut self, mirror: Arc<super::cluster::Mirror>) -> Self {
        self.mirror = Some(mirror);
        self
    }

    pub fn append(&mut self, record: &Record, durable: bool) -> Result<(), String> {
        self.journal.append(record).map_err(|e| e.to_string())?;
        if durable {
            self.journal.sync().map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

impl Recorder for JournalRecorder {
    fn record(&mut self, event: &ExecEvent) -> Result<(), String> {
        // A node that waits for nothing starts without a flush before it (flushes are for
        // dependents), so the push's check of the lock would not stop it: a holder whose
        // lease may have been taken starts no node (docs/state.md §14, "Losing it").
        if let (ExecEvent::NodeBegun { .. }, Some(mirror)) = (event, &self.mirror) {
            mirror.check()?;
        }
        let w = self.workflow.clone();
        let record = match event {
            ExecEvent::StepStarted { node, index, step, attempt, .. } => Record::StepStart {
                node: w.nodes[*node].id.clone(),
                step: step.clone(),
                index: *index,
                attempt: *attempt,
                at: now(),
            },
            ExecEvent::StepFinished { node, index, step, outcome, took, log } => {
                let is_validate = *index >= w.nodes[*node].install.len();
                let evidence = is_validate
                    .then(|| crate::exec::step::log_tail(log, EVIDENCE_LINES).join("\n"))
                    .filter(|e| !e.is_empty());
                // A node that asks for approval shows the approver what its checks showed.
                if w.nodes[*node].approval.is_some() && outcome.passed() {
                    let shown = self.evidence.entry(*node).or_default();
                    shown.retain(|e| e.step != *step);
                    if let Some(text) = &evidence {
                        shown
                            .push(crate::exec::approval::Evidence { step: step.clone(), text: text.clone() });
                    }
                }
                Record::StepEnd {
                    node: w.nodes[*node].id.clone(),
                    step: step.clone(),
                    index: *index,
                    outcome: outcome.clone(),
                    took_ms: took.as_millis() as u64,
                    step_hash: self.step_hashes[*node][*index].clone(),
                    at: now(),
                    evidence,
                }
            }
            ExecEvent::StepSkipped { node, index, step, when } => Record::StepSkipped {
                node: w.nodes[*node].id.clone(),
                step: step.clone(),
                index: *index,
                when: when.clone(),
                step_hash: self.step_hashes[*node][*index].clone(),
                at: now(),
            },
            ExecEvent::NodeRecorded { node, outcome, took } => {
                let id = w.nodes[*node].id.clone();
                if outcome.passed() && w.nodes[*node].kind == NodeKind::Gate {
                    self.append(&Record::GatePassed { gate: id.clone(), at: now() }, false)?;
                }
                Record::NodeEnd {
                    node: id,
                    outcome: outcome.clone(),
                    took_ms: took.as_millis() as u64,
                    node_hash: self.node_hashes[*node].clone(),
                    at: now(),
                    source_hash: Some(w.nodes[*node].source_hash.clone()),
                }
            }
            ExecEvent::NodeBegun { node, first_step } => Record::NodeStart {
                node: w.nodes[*node].id.clone(),
                first_step: *first_step,
                install_steps: w.nodes[*node].install.len(),
                at: now(),
            },
            ExecEvent::NodeSkipped { node, reason } => {
                Record::NodeSkipped { node: w.nodes[*node].id.clone(), reason: reason.clone() }
            }
            ExecEvent::ApprovalRequested { node, approval, evidence } => {
                // What this run's checks showed; kept checks' evidence comes with the event.
                let mut shown = evidence.clone();
                for e in self.evidence.remove(node).unwrap_or_default() {
                    shown.retain(|kept| kept.step != e.step);
                    shown.push(e);
                }
                Record::ApprovalRequested {
                    node: w.nodes[*node].id.clone(),
                    at: now(),
                    source_hash: w.nodes[*node].source_hash.clone(),
                    evidence: shown,
                    required: approval.required,
                    from: approval.from.clone(),
                }
            }
            ExecEvent::ApprovalDecided { node, request, by, note } => Record::ApprovalDecided {
                node: w.nodes[*node].id.clone(),
                at: now(),
                request: request.clone(),
                decision: if note.is_some() { "rejected" } else { "approved" }.into(),
                by: by.clone(),
                note: note.clone(),
            },
            _ => return Ok(()),
        };
        self.append(&record, false)
    }

    fn syncer(&self) -> Option<crate::exec::Flush> {
        // Without a second handle nothing could be made durable: every sync then fails,
        // and the run stops on the first one, rather than going on without a journal.
        let mirror = self.mirror.clone();
        Some(match self.journal.sync_handle() {
            Ok(sync) => std::sync::Arc::new(move || {
                sync().map_err(|e| e.to_string())?;
                mirror.as_ref().map_or(Ok(()), |m| m.push(false))
            }),
            Err(e) => {
                let reason = e.to_string();
                std::sync::Arc::new(move || Err(reason.clone()))
            }
        })
    }
}
