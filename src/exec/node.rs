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
}

/// Runs the node to its end and returns how it ended.
pub async fn run_node(run: NodeRun) -> Outcome {
    let started = Instant::now();
    let node = &run.workflow.nodes[run.node];
    let _ = run
        .events
        .send(ExecEvent::NodeStarted { node: run.node, steps: node.install.len() + node.validate.len() });
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
    let steps = run_steps(&run, local_rx, overran.clone());
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
    let _ = run.events.send(ExecEvent::NodeFinished {
        node: run.node,
        outcome: outcome.clone(),
        took: started.elapsed(),
    });
    outcome
}

async fn run_steps(
    run: &NodeRun,
    cancel: watch::Receiver<bool>,
    overran: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Outcome {
    let node = &run.workflow.nodes[run.node];
    let secrets = run.workflow.secret_values();
    for (index, (stage, step)) in node.steps().enumerate().skip(run.skip_steps) {
        let log = run.log_dir.join(log_name(&node.id, index, &step.name));
        let started = Instant::now();
        let mut cx = StepContext {
            shell: &run.workflow.shell,
            log: &log,
            secrets: &secrets,
            cancel: cancel.clone(),
            cluster: run.cluster.as_deref(),
            node: &node.id,
        };
        let outcome = match run_step(run, index, stage, step, &mut cx).await {
            Ok(outcome) => outcome,
            Err(e) => Outcome::Failed { reason: format!("cannot write the step log {}: {e}", log.display()) },
        };
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
pub fn log_name(node: &str, index: usize, step: &str) -> String {
    format!("{}.{:02}-{}.log", sanitize(node), index + 1, sanitize(step))
}

/// A step name as a file name.
pub fn sanitize(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
}
