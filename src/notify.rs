//! Notifications: webhooks told of a rollout's events (`notify` blocks). Sent by a thread of
//! their own with retries and backoff, so a slow or failing endpoint never holds or fails the
//! rollout; what could not be sent is reported at the end. Secrets are masked in every body.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exec::{ExecEvent, Outcome};
use crate::spec::{NodeKind, Notify, NotifyEvent, Workflow};

/// What one notification says; a body template sees these fields.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// `run-start`, `run-end`, `gate-passed`, `gate-failed`, `step-failed`, `overrun`,
    /// `approval-needed`.
    pub event: String,
    pub workflow: String,
    pub environment: Option<String>,
    pub run_id: String,
    pub node: Option<String>,
    pub step: Option<String>,
    /// One line for a person, secrets masked.
    pub text: String,
}

impl Message {
    /// What a template is tried on at load.
    pub fn sample() -> Self {
        Message {
            event: "step-failed".into(),
            workflow: "phase-2".into(),
            environment: Some("prod".into()),
            run_id: "20260101T000000000Z-1".into(),
            node: Some("ha-dr".into()),
            step: Some("backup".into()),
            text: "✗ phase-2 (prod): ha-dr › backup failed: exited with status 1".into(),
        }
    }
}

/// The body a template makes of a message.
///
/// # Errors
/// Tera's message, for a template that does not render.
pub fn render(template: &str, message: &Message) -> Result<String, String> {
    let context = tera::Context::from_serialize(message).map_err(|e| e.to_string())?;
    tera::Tera::one_off(template, &context, false).map_err(|e| {
        let mut text = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    })
}

/// How the sending went.
#[derive(Debug, Default)]
pub struct Outcomes {
    pub sent: usize,
    /// Why each notification that could not be sent was not, secrets masked.
    pub failed: Vec<String>,
    /// Still being sent when the rollout ended and stopped waiting.
    pub unsent: usize,
}

struct Job {
    hook: Notify,
    body: String,
}

/// Sends what [`Notifier::event`] makes of the rollout's events, in the background.
pub struct Notifier {
    hooks: Vec<Notify>,
    workflow: String,
    environment: Option<String>,
    node_names: Vec<(String, NodeKind)>,
    secrets: Vec<String>,
    /// `milepost approve NODE` is followed by this to decide on this rollout.
    pub decide_args: String,
    run_id: String,
    queue: Option<mpsc::Sender<Job>>,
    done: mpsc::Receiver<Outcomes>,
    queued: usize,
}

/// Tries per notification, and the wait before each retry.
const TRIES: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(500);
/// How long one try may take.
const TIMEOUT: Duration = Duration::from_secs(5);

impl Notifier {
    /// `None` when the workflow has no `notify` block.
    pub fn start(workflow: &Workflow, run_id: &str) -> Option<Self> {
        if workflow.notify.is_empty() {
            return None;
        }
        let secrets = workflow.secret_values();
        let (queue, jobs) = mpsc::channel::<Job>();
        let (report, done) = mpsc::channel();
        let masked = secrets.clone();
        std::thread::spawn(move || {
            let mut outcomes = Outcomes::default();
            for job in jobs {
                match send(&job) {
                    Ok(()) => outcomes.sent += 1,
                    Err(reason) => {
                        let reason = mask(&reason, &masked);
                        outcomes.failed.push(format!("{} ({}): {reason}", job.hook.name, job.hook.url.shown));
                    }
                }
            }
            let _ = report.send(outcomes);
        });
        Some(Notifier {
            hooks: workflow.notify.clone(),
            workflow: workflow.id.clone(),
            environment: workflow.environment().map(|e| e.name.clone()),
            node_names: workflow.nodes.iter().map(|n| (n.id.clone(), n.kind)).collect(),
            secrets,
            decide_args: String::new(),
            run_id: run_id.to_string(),
            queue: Some(queue),
            done,
            queued: 0,
        })
    }

    /// Queues the notifications `event` makes; never waits.
    pub fn event(&mut self, event: &ExecEvent) {
        let Some((kind, node, step, text)) = self.describe(event) else { return };
        let place = match &self.environment {
            Some(env) => format!("{} ({env})", self.workflow),
            None => self.workflow.clone(),
        };
        let message = Message {
            event: NotifyEvent::ALL
                .iter()
                .find(|(_, e)| *e == kind)
                .map(|(n, _)| n.to_string())
                .unwrap_or_default(),
            workflow: self.workflow.clone(),
            environment: self.environment.clone(),
            run_id: self.run_id.clone(),
            node,
            step,
            text: mask(&format!("{place}: {text}"), &self.secrets),
        };
        for hook in self.hooks.iter().filter(|h| h.events.contains(&kind)) {
            let body = match &hook.template {
                None => serde_json::json!({ "text": message.text }).to_string(),
                Some(template) => match render(template, &message) {
                    Ok(body) => mask(&body, &self.secrets),
                    Err(_) => continue, // tried at load on every field; cannot fail here
                },
            };
            if let Some(queue) = &self.queue {
                if queue.send(Job { hook: hook.clone(), body }).is_ok() {
                    self.queued += 1;
                }
            }
        }
    }

    fn describe(&self, event: &ExecEvent) -> Option<(NotifyEvent, Option<String>, Option<String>, String)> {
        let name = |n: usize| self.node_names.get(n).map(|(id, _)| id.clone());
        let kind_of = |n: usize| self.node_names.get(n).map(|(_, k)| *k);
        Some(match event {
            ExecEvent::RunStarted { nodes, .. } => {
                (NotifyEvent::RunStart, None, None, format!("▶ run {} started, {nodes} node(s)", self.run_id))
            }
            ExecEvent::RunFinished { summary } => {
                let verdict = if summary.failed > 0 || summary.interrupted { "stopped" } else { "complete" };
                (
                    NotifyEvent::RunEnd,
                    None,
                    None,
                    format!(
                        "run {} {verdict}: {} passed, {} failed, {} skipped",
                        self.run_id, summary.passed, summary.failed, summary.skipped
                    ),
                )
            }
            ExecEvent::NodeFinished { node, outcome, .. } if kind_of(*node) == Some(NodeKind::Gate) => {
                let id = name(*node)?;
                match outcome {
                    Outcome::Passed => {
                        (NotifyEvent::GatePassed, Some(id.clone()), None, format!("✓ gate {id} passed"))
                    }
                    other => (
                        NotifyEvent::GateFailed,
                        Some(id.clone()),
                        None,
                        format!("✗ gate {id} failed: {}", other.reason().unwrap_or("")),
                    ),
                }
            }
            ExecEvent::StepFinished { node, step, outcome, .. } if !outcome.passed() => {
                let id = name(*node)?;
                let text = format!("✗ {id} › {step} failed: {}", outcome.reason().unwrap_or(""));
                (NotifyEvent::StepFailed, Some(id), Some(step.clone()), text)
            }
            ExecEvent::ApprovalRequested { node, approval, .. } => {
                let id = name(*node)?;
                let command = format!("milepost approve {} {}", shell_words::quote(&id), self.decide_args);
                let text = format!("⏸ {id} needs approval from {}: `{}`", approval.who(), command.trim_end());
                (NotifyEvent::ApprovalNeeded, Some(id), None, text)
            }
            ExecEvent::Overrun { node, planned, .. } => {
                let id = name(*node)?;
                let text = format!("⏱ {id} ran past its planned {}", crate::spec::values::human(*planned));
                (NotifyEvent::Overrun, Some(id), None, text)
            }
            _ => return None,
        })
    }

    /// Stops taking notifications and waits up to `wait` for the queued ones: a slow endpoint
    /// delays the end of a rollout by that much at most.
    pub fn finish(mut self, wait: Duration) -> Outcomes {
        self.queue = None;
        match self.done.recv_timeout(wait) {
            Ok(outcomes) => outcomes,
            Err(_) => Outcomes { unsent: self.queued, ..Outcomes::default() },
        }
    }
}

fn mask(text: &str, secrets: &[String]) -> String {
    secrets.iter().filter(|s| !s.is_empty()).fold(text.to_string(), |t, s| t.replace(s.as_str(), "••••"))
}

/// One notification, tried [`TRIES`] times with a doubling backoff.
fn send(job: &Job) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut last = String::new();
    let started = Instant::now();
    for attempt in 0..TRIES {
        if attempt > 0 {
            std::thread::sleep(BACKOFF * 2u32.pow(attempt - 1));
        }
        let request = ureq::http::Request::builder()
            .method("POST")
            .uri(&job.hook.url.exec)
            .header("content-type", "application/json")
            .body(job.body.clone().into_bytes())
            .map_err(|e| format!("bad request: {e}"))?;
        match agent.run(request) {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => last = format!("answered {}", response.status().as_u16()),
            Err(e) => last = e.to_string().replace(&job.hook.url.exec, &job.hook.url.shown),
        }
    }
    Err(format!("{last} ({TRIES} tries in {})", crate::spec::values::human(started.elapsed())))
}
