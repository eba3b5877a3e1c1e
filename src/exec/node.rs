//! One node (module or gate): its install steps once each with retries, then its validate
//! steps as probes, against its budget. Reports through events; never prints.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};

use super::events::{ExecEvent, Outcome};
use super::step::{self, StepContext};
use crate::spec::{NodeId, OnOverrun, Stage, Step, StepKind, Workflow};

pub struct NodeRun {
    pub workflow: Arc<Workflow>,
    pub node: NodeId,
    /// The run's log folder; this node's step logs are `<node>.NN-<step>.log` in it.
    pub log_dir: PathBuf,
    pub events: mpsc::UnboundedSender<ExecEvent>,
    /// Set by the dispatcher on a second Ctrl-C or SIGTERM.
    pub cancel: watch::Receiver<bool>,
    /// Leading steps that completed unchanged in an earlier run.
    pub skip_steps: usize,
    pub recorder: Option<super::SharedRecorder>,
    pub cluster: Option<Arc<crate::cluster::Cluster>>,
    pub syncer: Option<super::Syncer>,
    pub guard: Option<Arc<super::orphans::Guard>>,
    /// The outcomes, when the node started, of the nodes its steps' conditions read.
    pub outcomes: std::collections::HashMap<String, &'static str>,
    /// Where approvals are asked and read; `None`: this run asks for none (`verify`).
    pub approvals: Option<Arc<dyn super::approval::Approvals>>,
    /// Wait for a decision (a person at a terminal), or leave the node waiting.
    pub wait_for_approval: bool,
    /// Set by the dispatcher on the first Ctrl-C, or when a failure stops new starts: a wait
    /// for approval ends (the node stays waiting, resumable), where running steps go on to
    /// their end.
    pub draining: watch::Receiver<bool>,
    pub run_id: String,
}

/// How a node's run ended: with an outcome (`None`: left waiting for approval), and how long
/// of it was spent waiting for a person, which is not the node's time.
pub type Ended = (Option<Outcome>, Duration);

/// Runs the node to its end and returns how it ended; `None`: it waits for approval.
///
/// Its approval is asked where it belongs: a module's before its first install step, a
/// gate's after its checks passed. The wait for a person is outside the node's budget: a
/// budget plans the work, and nobody's lunch break is an overrun. A module resumed past its
/// first step asks too, and finds the standing request that let it through.
pub async fn run_node(run: NodeRun) -> Ended {
    use super::approval::{ask, Asked};
    let node = &run.workflow.nodes[run.node];
    let _ = run
        .events
        .send(ExecEvent::NodeStarted { node: run.node, steps: node.install.len() + node.validate.len() });
    let mut waited = Duration::ZERO;
    let mut asking = async || {
        let since = Instant::now();
        let asked = ask(&run, stop_waiting(&run)).await;
        waited += since.elapsed();
        match asked {
            Asked::GoOn => None,
            Asked::Ended(outcome) => Some(Some(outcome)),
            Asked::Waiting => Some(None),
        }
    };
    let module_asks = node.approval.is_some() && node.kind == crate::spec::NodeKind::Module;
    if module_asks {
        if let Some(ended) = asking().await {
            return (ended, waited);
        }
    }
    let outcome = budgeted_steps(&run).await;
    if module_asks || node.approval.is_none() || !outcome.passed() {
        return (Some(outcome), waited);
    }
    let ended = asking().await.unwrap_or(Some(Outcome::Passed));
    (ended, waited)
}

/// Set on the first Ctrl-C (draining) or a cancel: a wait for approval stops at either,
/// where running steps stop only at a cancel.
fn stop_waiting(run: &NodeRun) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    let (mut draining, mut cancel) = (run.draining.clone(), run.cancel.clone());
    tokio::spawn(async move {
        tokio::select! {
            _ = step::wait_cancelled(&mut draining) => {}
            _ = step::wait_cancelled(&mut cancel) => {}
            _ = tx.closed() => return,
        }
        let _ = tx.send(true);
    });
    rx
}

/// The node's steps against its budget.
async fn budgeted_steps(run: &NodeRun) -> Outcome {
    let node = &run.workflow.nodes[run.node];
    // The node's own cancel: the operator's, or a fatal overrun.
    let (local_cancel, local_rx) = watch::channel(false);
    let mut global = run.cancel.clone();
    let forward = {
        let local_cancel = local_cancel.clone();
        tokio::spawn(async move {
            step::wait_cancelled(&mut global).await;
            let _ = local_cancel.send(true);
        })
    };
    // Set before a fatal overrun cancels the steps, so the stopped step says why.
    let overran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let steps = run_steps(run, local_rx, overran.clone());
    tokio::pin!(steps);
    let planned = node.planned;
    let fatal = node.on_overrun == OnOverrun::Fail;
    let outcome = tokio::select! {
        outcome = &mut steps => outcome,
        _ = tokio::time::sleep(planned) => {
            let _ = run.events.send(ExecEvent::Overrun { node: run.node, planned, fatal });
            if fatal {
                overran.store(true, std::sync::atomic::Ordering::SeqCst);
                let _ = local_cancel.send(true);
                let _ = (&mut steps).await;
                Outcome::Failed { reason: format!("ran past its budget of {} (on-overrun fail)", crate::spec::values::human(planned)) }
            } else {
                (&mut steps).await
            }
        }
    };
    forward.abort();
    // The dispatcher reports the end (NodeFinished), with a fresh forecast before it.
    outcome
}

async fn run_steps(
    run: &NodeRun,
    cancel: watch::Receiver<bool>,
    overran: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Outcome {
    let node = &run.workflow.nodes[run.node];
    let secrets = run.workflow.secret_values();
    let mut renderer = None;
    for (index, (stage, step)) in node.steps().enumerate().skip(run.skip_steps) {
        if let Some(when) = &step.when {
            let holds = match when.known {
                Some(v) => Ok(v),
                None => {
                    let outcome = |id: &str| run.outcomes.get(id).copied().unwrap_or("pending");
                    let renderer = renderer.get_or_insert_with(crate::template::Renderer::new);
                    when.evaluate(renderer, &run.workflow.vars, &outcome)
                }
            };
            match holds {
                Ok(true) => {}
                Ok(false) => {
                    let skipped = ExecEvent::StepSkipped {
                        node: run.node,
                        index,
                        step: step.name.clone(),
                        when: when.text.clone(),
                    };
                    let recorded = super::record(&run.recorder, &skipped);
                    let _ = run.events.send(skipped);
                    if let Err(reason) = recorded {
                        return Outcome::Failed { reason };
                    }
                    continue;
                }
                Err(e) => return Outcome::Failed { reason: format!("step `{}`: {e}", step.name) },
            }
        }
        let log = run.log_dir.join(log_name(&node.id, index, &step.name));
        let started = Instant::now();
        let mut cx = StepContext {
            shell: &run.workflow.shell,
            log: &log,
            secrets: &secrets,
            cancel: cancel.clone(),
            cluster: run.cluster.as_deref(),
            guard: run.guard.as_deref(),
            warnings: Vec::new(),
            node: &node.id,
        };
        let outcome = match run_step(run, index, stage, step, &mut cx).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed { reason: format!("cannot run the step: {e}") },
        };
        for message in std::mem::take(&mut cx.warnings) {
            let _ =
                run.events.send(ExecEvent::StepWarning { node: run.node, step: step.name.clone(), message });
        }
        let outcome = match outcome {
            Outcome::Cancelled { .. } if overran.load(std::sync::atomic::Ordering::SeqCst) => {
                Outcome::Failed {
                    reason: format!(
                        "stopped: the node ran past its budget of {} (on-overrun fail)",
                        crate::spec::values::human(node.planned)
                    ),
                }
            }
            other => other,
        };
        // A reason travels in the journal, the terminal and reports: one screenful at most,
        // whatever an API server or a command said.
        let outcome = outcome.map_reason(|reason| super::log::cut(&reason, super::log::LINE_CAP));
        let finished = ExecEvent::StepFinished {
            node: run.node,
            index,
            step: step.name.clone(),
            outcome: outcome.clone(),
            took: started.elapsed(),
            log: log.clone(),
        };
        // Durable before the next step of this node starts; the last step's end is made
        // durable together with the node's end, in the dispatcher's grouped sync.
        let last = index + 1 == node.install.len() + node.validate.len();
        let mut recorded = super::record(&run.recorder, &finished);
        if recorded.is_ok() && (!last || !outcome.passed()) {
            // On a blocking thread: the other nodes' children are watched meanwhile.
            recorded = super::sync(&run.syncer).await;
        }
        let _ = run.events.send(finished);
        if let Err(reason) = recorded {
            return Outcome::Failed { reason };
        }
        if !outcome.passed() {
            return outcome;
        }
    }
    Outcome::Passed
}

/// Install steps run once with retries; validate steps, and http/tcp probes anywhere, poll
/// at their interval until they pass or their timeout ends.
async fn run_step(
    run: &NodeRun,
    index: usize,
    stage: Stage,
    step: &Step,
    cx: &mut StepContext<'_>,
) -> std::io::Result<Outcome> {
    let polls = stage == Stage::Validate
        || matches!(step.kind, StepKind::Http { .. } | StepKind::Tcp { .. } | StepKind::Wait { .. });
    let start_event = |attempt| {
        let event = ExecEvent::StepStarted {
            node: run.node,
            index,
            stage,
            step: step.name.clone(),
            attempt,
            log: cx.log.to_path_buf(),
        };
        // Not synced: a start without an end already means "in flight" on resume.
        let _ = super::record(&run.recorder, &event);
        event
    };
    if polls {
        let limit = step.timeout.unwrap_or(crate::spec::validate::DEFAULT_PROBE_TIMEOUT);
        let deadline = Instant::now() + limit;
        let _ = run.events.send(start_event(1));
        let mut attempt = 1;
        loop {
            let (outcome, may_heal) = attempt_once(step, cx, Some(step::remaining(deadline))).await?;
            // A wait watches until its own deadline.
            let waits = matches!(step.kind, StepKind::Wait { .. });
            if outcome.passed() || waits || !may_heal || matches!(outcome, Outcome::Cancelled { .. }) {
                return Ok(outcome);
            }
            let reason = outcome.reason().unwrap_or_default().to_string();
            append_log(cx.log, &format!("attempt {attempt}: {reason}"));
            if Instant::now() + step.interval >= deadline {
                let reason = format!("still failing after {}: {reason}", crate::spec::values::human(limit));
                return Ok(Outcome::TimedOut { reason });
            }
            let _ = run.events.send(ExecEvent::ProbeRetry {
                node: run.node,
                step: step.name.clone(),
                attempt,
                reason,
            });
            if pause(step.interval, cx).await {
                return Ok(Outcome::Cancelled { reason: "terminated by the operator".into() });
            }
            attempt += 1;
        }
    }
    let attempts = step.retries + 1;
    let mut outcome = Outcome::Passed;
    for attempt in 1..=attempts {
        let _ = run.events.send(start_event(attempt));
        let may_heal;
        (outcome, may_heal) = attempt_once(step, cx, step.timeout).await?;
        if outcome.passed() || matches!(outcome, Outcome::Cancelled { .. }) || attempt == attempts {
            break;
        }
        if !may_heal {
            append_log(
                cx.log,
                &format!(
                    "attempt {attempt} of {attempts}: the same request would be refused again; not retried"
                ),
            );
            break;
        }
        append_log(
            cx.log,
            &format!("attempt {attempt} of {attempts}: {}", outcome.reason().unwrap_or_default()),
        );
        // Exponential backoff: 1×, 2×, 4× … the configured backoff.
        let wait = step.backoff.saturating_mul(1 << (attempt - 1).min(10));
        if pause(wait, cx).await {
            return Ok(Outcome::Cancelled { reason: "terminated by the operator".into() });
        }
    }
    Ok(outcome)
}

/// One attempt, and whether another could end otherwise (false for a request the API server
/// refused for what it is, such as a conflict: retrying would only spend the backoff).
async fn attempt_once(
    step: &Step,
    cx: &mut StepContext<'_>,
    limit: Option<Duration>,
) -> std::io::Result<(Outcome, bool)> {
    let probe_limit = limit.unwrap_or(Duration::from_secs(30));
    Ok(match &step.kind {
        StepKind::Run { .. } => (step::run_command(step, cx, limit).await?, true),
        StepKind::Http { .. } => {
            (step::http_once(step, probe_limit.min(Duration::from_secs(30))).await, true)
        }
        StepKind::Tcp { .. } => (step::tcp_once(step, probe_limit.min(Duration::from_secs(10))).await, true),
        StepKind::Template { .. } => (step::write_template(step), true),
        StepKind::Apply { .. } | StepKind::Wait { .. } => {
            // An apply without a timeout still ends; a big directory with a CRD to wait for
            // needs more than a probe's 30 s.
            let limit = limit.unwrap_or(super::kubernetes::APPLY_DEFAULT_TIMEOUT);
            let mut cancel = cx.cancel.clone();
            tokio::select! {
                result = super::kubernetes::run(step, cx, limit) => result,
                _ = step::wait_cancelled(&mut cancel) => {
                    (Outcome::Cancelled { reason: "terminated by the operator".into() }, false)
                }
            }
        }
    })
}

/// Sleeps, unless cancelled first (then returns true).
async fn pause(d: Duration, cx: &mut StepContext<'_>) -> bool {
    let mut cancel = cx.cancel.clone();
    tokio::select! {
        _ = tokio::time::sleep(d) => false,
        _ = step::wait_cancelled(&mut cancel) => true,
    }
}

fn append_log(path: &std::path::Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::File::options().create(true).append(true).open(path) {
        let _ = writeln!(f, "milepost: {line}");
    }
}

/// The file name of a step's log in its run's `logs/` folder: `<node>.NN-<step>.log`.
///
/// Distinct nodes always get distinct names: a node id that is not kept as it is gets `~` and
/// a hash of the id, and no kept id contains `~`. Steps of one node differ by `NN`.
pub fn log_name(node: &str, index: usize, step: &str) -> String {
    let (node_part, kept) = file_part(node);
    let node_part = if kept { node_part } else { format!("{node_part}~{}", short_hash(node)) };
    format!("{node_part}.{:02}-{}.log", index + 1, file_part(step).0)
}

/// The most bytes of a node id or step name in a log's name: two of them and the rest stay
/// well under the 255 bytes a file name may have.
const NAME_PART: usize = 64;

/// A node id or step name as part of a file name, and whether it is the name as written:
/// every character other than ASCII letters, digits, `-` and `_` becomes `_`, and it is cut
/// to [`NAME_PART`] bytes.
fn file_part(name: &str) -> (String, bool) {
    let part: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(NAME_PART)
        .collect();
    let kept = part == name;
    (part, kept)
}

/// Eight hex digits of the SHA-256 of `name`.
fn short_hash(name: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(name.as_bytes())[..4].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn log_names_keep_plain_ids_and_mark_the_others() {
        let table = [
            ("k8s-infra", 4, "port", "k8s-infra.05-port.log"),
            ("ha_dr", 0, "backup verified", "ha_dr.01-backup_verified.log"),
            ("a/b", 0, "s", "a_b~c14cddc0.01-s.log"),
            ("a_b", 0, "s", "a_b.01-s.log"),
            ("dépôt", 1, "s", "d_p_t~7783a822.02-s.log"),
        ];
        for (node, index, step, expected) in table {
            assert_eq!(log_name(node, index, step), expected, "{node}");
        }
        let long = "x".repeat(300);
        let name = log_name(&long, 0, &long);
        assert!(name.len() < 255, "{name}");
    }

    /// Issue 12, item 12: `a/b` and `a_b`, or two non-ASCII ids, shared one log file.
    #[test]
    fn issue_12_ids_that_sanitize_alike_get_their_own_logs() {
        let ids = ["a/b", "a_b", "a.b", "a b", "äb", "öb", "a~b", "a_b~c14cddc0"];
        let names: std::collections::BTreeSet<String> = ids.iter().map(|id| log_name(id, 0, "s")).collect();
        assert_eq!(names.len(), ids.len(), "{names:?}");
    }

    proptest! {
        #[test]
        fn distinct_node_ids_never_share_a_log(a in "\\PC{1,80}", b in "\\PC{1,80}", index in 0usize..120) {
            prop_assume!(a != b);
            prop_assert_ne!(log_name(&a, index, "step"), log_name(&b, index, "step"));
        }
    }
}
