//! Notifications: webhooks told of a rollout's events (`notify` blocks). Sent by a thread per
//! endpoint with retries and backoff, in the order the events happened, so a slow or failing
//! endpoint never holds or fails the rollout nor delays another endpoint; what could not be
//! sent is reported at the end. Secrets are masked in every body.

use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::exec::{ExecEvent, Outcome};
use crate::spec::{NodeKind, Notify, NotifyEvent, Workflow};

/// What one notification says; a body template sees these fields.
#[derive(Debug, Clone, Serialize)]
pub struct Message {
    /// `run-start`, `run-end`, `gate-passed`, `gate-failed`, `step-failed`, `overrun`,
    /// `projected-past-deadline`, `approval-needed`.
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
    // The limits every other template of a definition has: a loop over a huge range would
    // otherwise take the memory and time of the load (the sample) and of every event.
    let json = serde_json::to_value(message).map_err(|e| e.to_string())?;
    crate::template::cost::check(template, &json).map_err(|c| format!("{} ({})", c.reason, c.help))?;
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
    /// Still being sent (or waiting to be) when the rollout ended and stopped waiting.
    pub unsent: usize,
}

/// What one endpoint's sender has done so far; read at the end even if it has not finished,
/// so the count of what was left unsent names only what really was.
#[derive(Default)]
struct Progress {
    sent: usize,
    failed: Vec<String>,
    /// Senders that emptied their queue and ended.
    finished: usize,
}

type Shared = Arc<(Mutex<Progress>, Condvar)>;

/// One sender per endpoint: the notifications of one endpoint go out one at a time in the
/// order the rollout made them, each retried before the next is tried, so retries neither
/// reorder nor duplicate what the endpoint sees; a hanging endpoint holds only its own queue.
struct Endpoint {
    hook: Notify,
    queue: mpsc::Sender<String>,
    /// Bytes of bodies queued and not yet sent (or given up): bounded by [`MAX_PENDING`].
    pending: Arc<std::sync::atomic::AtomicUsize>,
    /// Bodies not queued because [`MAX_PENDING`] was reached.
    dropped: usize,
}

/// Sends what [`Notifier::event`] makes of the rollout's events, in the background.
pub struct Notifier {
    endpoints: Vec<Endpoint>,
    workflow: String,
    environment: Option<String>,
    node_names: Vec<(String, NodeKind)>,
    secrets: Vec<String>,
    /// `milepost approve NODE` is followed by this to decide on this rollout.
    pub decide_args: String,
    run_id: String,
    /// The rollout's deadline, from the dispatcher's start (`--deadline` or the environment's).
    deadline: Option<Duration>,
    /// The last projection seen was past the deadline: `projected-past-deadline` was sent for
    /// this crossing, and is sent again only after a projection back within the deadline.
    past_deadline: bool,
    progress: Shared,
    queued: usize,
}

/// Tries per notification, and the wait before each retry.
const TRIES: u32 = 3;
const BACKOFF: Duration = Duration::from_millis(500);
/// How long one try may take.
const TIMEOUT: Duration = Duration::from_secs(5);
/// How long the end of a rollout waits at most for what is still being sent: a slow or hanging
/// endpoint delays the rollout by this much in total, never more (docs/definitions.md `notify`).
pub const END_WAIT: Duration = Duration::from_secs(5);
/// Bytes of bodies one endpoint may have waiting; past it a notification is not queued and is
/// reported at the end (one line per endpoint with the count).
const MAX_PENDING: usize = 16 << 20;

impl Notifier {
    /// `None` when the workflow has no `notify` block. `deadline` is the one the dispatcher
    /// keeps, measured from its start.
    pub fn start(workflow: &Workflow, run_id: &str, deadline: Option<Duration>) -> Option<Self> {
        if workflow.notify.is_empty() {
            return None;
        }
        let secrets = workflow.secret_values();
        let progress: Shared = Arc::default();
        let endpoints = workflow
            .notify
            .iter()
            .map(|hook| {
                let mut hook = hook.clone();
                hook.url.shown = without_password(&hook.url.shown);
                let (queue, bodies) = mpsc::channel::<String>();
                let (progress, masked) = (progress.clone(), secrets.clone());
                let pending = Arc::new(std::sync::atomic::AtomicUsize::new(0));
                let endpoint = Endpoint { hook: hook.clone(), queue, pending: pending.clone(), dropped: 0 };
                std::thread::spawn(move || {
                    for body in bodies {
                        let result = send(&hook, &body);
                        pending.fetch_sub(body.len(), std::sync::atomic::Ordering::Relaxed);
                        let mut p = progress.0.lock().unwrap_or_else(|e| e.into_inner());
                        match result {
                            Ok(()) => p.sent += 1,
                            Err(reason) => {
                                let reason = mask(&reason, &masked);
                                p.failed.push(format!("{} ({}): {reason}", hook.name, hook.url.shown));
                            }
                        }
                    }
                    let mut p = progress.0.lock().unwrap_or_else(|e| e.into_inner());
                    p.finished += 1;
                    progress.1.notify_all();
                });
                endpoint
            })
            .collect();
        Some(Notifier {
            endpoints,
            workflow: workflow.id.clone(),
            environment: workflow.environment().map(|e| e.name.clone()),
            node_names: workflow.nodes.iter().map(|n| (n.id.clone(), n.kind)).collect(),
            secrets,
            decide_args: String::new(),
            run_id: run_id.to_string(),
            deadline,
            past_deadline: false,
            progress,
            queued: 0,
        })
    }

    /// Queues the notifications `event` makes; never waits.
    pub fn event(&mut self, event: &ExecEvent) {
        for (kind, node, step, text) in self.describe(event) {
            self.queue(kind, node, step, &text);
        }
    }

    fn queue(&mut self, kind: NotifyEvent, node: Option<String>, step: Option<String>, text: &str) {
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
        for endpoint in self.endpoints.iter_mut().filter(|e| e.hook.events.contains(&kind)) {
            let body = match &endpoint.hook.template {
                None => serde_json::json!({ "text": message.text }).to_string(),
                Some(template) => match render(template, &message) {
                    Ok(body) => mask(&body, &self.secrets),
                    // The sample at load has every field; a real event may not (`node` of
                    // `run-start` is null, and `{{ node | upper }}` fails on it). Reported at
                    // the end with the other failures, never dropped unsaid.
                    Err(reason) => {
                        let mut p = self.progress.0.lock().unwrap_or_else(|e| e.into_inner());
                        p.failed.push(format!(
                            "{} ({}): its template did not render for `{}`: {}",
                            endpoint.hook.name,
                            endpoint.hook.url.shown,
                            message.event,
                            mask(&reason, &self.secrets)
                        ));
                        // Counted as made, as its failure is: what is left unsent at the end
                        // is what was made and neither sent nor failed.
                        self.queued += 1;
                        continue;
                    }
                },
            };
            // A hanging endpoint and a wide template (a body near the template output limit
            // for each of hundreds of events) would otherwise hold them all in memory.
            let pending = endpoint.pending.load(std::sync::atomic::Ordering::Relaxed);
            if pending + body.len() > MAX_PENDING {
                endpoint.dropped += 1;
                continue;
            }
            endpoint.pending.fetch_add(body.len(), std::sync::atomic::Ordering::Relaxed);
            if endpoint.queue.send(body).is_ok() {
                self.queued += 1;
            }
        }
    }

    fn describe(&mut self, event: &ExecEvent) -> Vec<(NotifyEvent, Option<String>, Option<String>, String)> {
        let name = |n: usize| self.node_names.get(n).map(|(id, _)| id.clone());
        let kind_of = |n: usize| self.node_names.get(n).map(|(_, k)| *k);
        let one = match event {
            ExecEvent::RunStarted { nodes, planned_finish, .. } => {
                let start = (
                    NotifyEvent::RunStart,
                    None,
                    None,
                    format!("▶ run {} started, {nodes} node(s)", self.run_id),
                );
                // The plan itself may not fit: said at once, after the start it belongs to.
                return [Some(start), self.projection(Duration::ZERO, *planned_finish)]
                    .into_iter()
                    .flatten()
                    .collect();
            }
            // The dispatcher's forecast, sent with every node end and once a second: the
            // plan's simulation re-run from what is left, so watching it here costs nothing.
            ExecEvent::Tick { elapsed, projected_finish, .. } => self.projection(*elapsed, *projected_finish),
            ExecEvent::RunFinished { summary } => {
                let verdict = if summary.failed > 0 || summary.interrupted { "stopped" } else { "complete" };
                Some((
                    NotifyEvent::RunEnd,
                    None,
                    None,
                    format!(
                        "run {} {verdict}: {} passed, {} failed, {} skipped",
                        self.run_id, summary.passed, summary.failed, summary.skipped
                    ),
                ))
            }
            ExecEvent::NodeFinished { node, outcome, .. } if kind_of(*node) == Some(NodeKind::Gate) => {
                name(*node).map(|id| match outcome {
                    Outcome::Passed => {
                        (NotifyEvent::GatePassed, Some(id.clone()), None, format!("✓ gate {id} passed"))
                    }
                    other => (
                        NotifyEvent::GateFailed,
                        Some(id.clone()),
                        None,
                        format!("✗ gate {id} failed: {}", other.reason().unwrap_or("")),
                    ),
                })
            }
            ExecEvent::StepFinished { node, step, outcome, .. } if !outcome.passed() => {
                name(*node).map(|id| {
                    let text = format!("✗ {id} › {step} failed: {}", outcome.reason().unwrap_or(""));
                    (NotifyEvent::StepFailed, Some(id), Some(step.clone()), text)
                })
            }
            ExecEvent::ApprovalRequested { node, approval, .. } => name(*node).map(|id| {
                let command = format!("milepost approve {} {}", shell_words::quote(&id), self.decide_args);
                let text = format!("⏸ {id} needs approval from {}: `{}`", approval.who(), command.trim_end());
                (NotifyEvent::ApprovalNeeded, Some(id), None, text)
            }),
            ExecEvent::Overrun { node, planned, .. } => name(*node).map(|id| {
                let text = format!("⏱ {id} ran past its planned {}", crate::spec::values::human(*planned));
                (NotifyEvent::Overrun, Some(id), None, text)
            }),
            _ => None,
        };
        one.into_iter().collect()
    }

    /// `projected-past-deadline` when the projected finish (from the dispatcher's start) passes
    /// the deadline: once per crossing, so a forecast that stays late (it is re-made every
    /// second) says so once, and one that comes back within the deadline and passes it again
    /// says so again.
    fn projection(
        &mut self,
        elapsed: Duration,
        projected: Duration,
    ) -> Option<(NotifyEvent, Option<String>, Option<String>, String)> {
        let deadline = self.deadline?;
        let late = projected > deadline;
        let crossed = late && !self.past_deadline;
        self.past_deadline = late;
        if !crossed {
            return None;
        }
        let now = jiff::Timestamp::now();
        let human = crate::spec::values::human;
        let text = format!(
            "⏳ projected to finish at {} ({} after the start), past the deadline {} ({}) by {}",
            crate::ui::utc_clock_after(now, projected.saturating_sub(elapsed)),
            human(projected),
            crate::ui::utc_clock_after(now, deadline.saturating_sub(elapsed)),
            human(deadline),
            human(projected - deadline),
        );
        Some((NotifyEvent::ProjectedPastDeadline, None, None, text))
    }

    /// Stops taking notifications and waits up to `wait` for the queued ones: a slow endpoint
    /// delays the end of a rollout by that much at most.
    pub fn finish(self, wait: Duration) -> Outcomes {
        let until = Instant::now() + wait;
        let senders = self.endpoints.len();
        // Dropping the queues lets each sender end once it has sent what it holds.
        let dropped: Vec<String> = self
            .endpoints
            .iter()
            .filter(|e| e.dropped > 0)
            .map(|e| {
                format!(
                    "{} ({}): {} notification(s) not queued: {} MiB of bodies were already waiting for it",
                    e.hook.name,
                    e.hook.url.shown,
                    e.dropped,
                    MAX_PENDING >> 20
                )
            })
            .collect();
        drop(self.endpoints);
        let (lock, ended) = &*self.progress;
        let mut p = lock.lock().unwrap_or_else(|e| e.into_inner());
        while p.finished < senders {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            p = ended.wait_timeout(p, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        let mut failed = std::mem::take(&mut p.failed);
        let unsent = self.queued.saturating_sub(p.sent + failed.len());
        failed.extend(dropped);
        Outcomes { sent: p.sent, unsent, failed }
    }
}

/// `url` with the password of its user info (`https://bot:PASSWORD@host/…`) masked: a
/// credential written in the URL itself, not through a secret, is still not for warnings.
fn without_password(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else { return url.to_string() };
    let authority_end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    let Some(at) = url[start..authority_end].rfind('@').map(|i| start + i) else { return url.to_string() };
    match url[start..at].find(':') {
        Some(colon) => format!("{}••••{}", &url[..start + colon + 1], &url[at..]),
        None => url.to_string(),
    }
}

fn mask(text: &str, secrets: &[String]) -> String {
    // Longest first: a secret that is part of another (`abc`, `abcdef`) masked first would
    // leave the rest of the longer one (`••••def`) to be read.
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.into_iter().fold(text.to_string(), |t, s| t.replace(s.as_str(), "••••"))
}

/// One notification, tried [`TRIES`] times with a doubling backoff.
fn send(hook: &Notify, body: &str) -> Result<(), String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        // A redirect is not followed: a 301/302 turns the POST into a GET without the body
        // (counted as sent, yet nothing delivered), a 307 cannot resend it, and another host
        // would be told what was meant for this one. Reported as an answer, not retried.
        .max_redirects(0)
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
            .uri(&hook.url.exec)
            .header("content-type", "application/json")
            .body(body.as_bytes().to_vec())
            .map_err(|e| format!("bad request: {e}"))?;
        match agent.run(request) {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) => {
                let status = response.status().as_u16();
                last = format!("answered {status}");
                // The endpoint refused this body (a revoked webhook answers 404, a bad one
                // 400): another try is refused alike. A timeout (408) or throttling (429) is
                // worth the retry.
                if (400..500).contains(&status) && !matches!(status, 408 | 429) {
                    return Err(format!("{last} (not retried)"));
                }
                if (300..400).contains(&status) {
                    return Err(format!("{last}, a redirect (not followed)"));
                }
            }
            Err(e) => last = e.to_string().replace(&hook.url.exec, &hook.url.shown),
        }
    }
    Err(format!("{last} ({TRIES} tries in {})", crate::spec::values::human(started.elapsed())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_projection_past_the_deadline_is_told_once_per_crossing() {
        let workflow = crate::testing::workflow_from(
            // `approval-needed` is accepted (reserved for approvals), or this would not load.
            "workflow w { notify chat { url \"http://127.0.0.1:9/x\"; events \"projected-past-deadline\" \"approval-needed\" } }\n\
             module a { budget \"1m\"; install { run s \"true\" } }\n",
        );
        let secs = Duration::from_secs;
        let mut notifier = Notifier::start(&workflow, "r", Some(secs(100))).unwrap();
        let mut told =
            |elapsed: u64, projected: u64| notifier.projection(secs(elapsed), secs(projected)).is_some();
        assert!(!told(0, 100), "on the deadline is within it");
        assert!(told(1, 130), "past it: told");
        assert!(!told(2, 140), "still past it, a second later: told already");
        assert!(!told(3, 90), "back within it");
        assert!(told(4, 101), "past it again: told again");
        let mut none = Notifier::start(&workflow, "r", None).unwrap();
        assert!(none.projection(secs(0), secs(1_000_000)).is_none(), "no deadline, nothing to pass");
    }

    #[test]
    fn a_secret_inside_another_is_masked_whole() {
        let secrets = vec!["abc".to_string(), "abcdef".to_string(), r#"a"b\c.*$(x){{ }}"#.to_string()];
        let masked = mask(r#"abcdef abc a"b\c.*$(x){{ }} {"k":"a\"b"}"#, &secrets);
        assert_eq!(masked, r#"•••• •••• •••• {"k":"a\"b"}"#);
        let masked = mask("abcdef", &["abcdef".to_string(), "abc".to_string()]);
        assert_eq!(masked, "••••");
    }

    #[test]
    fn a_body_whose_template_failed_is_not_taken_from_what_is_still_sending() {
        // An endpoint that takes the connection and never answers: what is queued for it is
        // still sending when the end stops waiting.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", silent.local_addr().unwrap());
        let mut workflow = crate::testing::workflow_from(&format!(
            "workflow w {{ notify chat {{ url \"{url}\"; events \"run-start\" \"gate-passed\" }} }}\n\
             module a {{ budget \"1m\"; install {{ run s \"true\" }} }}\n"
        ));
        workflow.notify[0].template = Some("{{ node | upper }}".into());
        let mut notifier = Notifier::start(&workflow, "r", None).unwrap();
        notifier.queue(NotifyEvent::RunStart, None, None, "started"); // null node: fails
        notifier.queue(NotifyEvent::GatePassed, Some("g".into()), None, "passed");
        notifier.queue(NotifyEvent::GatePassed, Some("h".into()), None, "passed");
        let outcomes = notifier.finish(Duration::from_millis(200));
        assert_eq!(outcomes.failed.len(), 1, "{:?}", outcomes.failed);
        assert!(outcomes.failed[0].contains("did not render for `run-start`"), "{:?}", outcomes.failed);
        assert_eq!((outcomes.sent, outcomes.unsent), (0, 2));
    }

    #[test]
    fn what_waits_for_a_hanging_endpoint_is_bounded_in_memory() {
        // Before: every body was held, 340 MB for 500 events of a wide template.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/x", silent.local_addr().unwrap());
        let mut workflow = crate::testing::workflow_from(&format!(
            "workflow w {{ notify chat {{ url \"{url}\"; events \"gate-passed\" }} }}\n\
             module a {{ budget \"1m\"; install {{ run s \"true\" }} }}\n"
        ));
        // About 1 MB a body, within the template limits.
        workflow.notify[0].template =
            Some(format!("{{% for i in range(end=10000) %}}{}{{% endfor %}}", "x".repeat(100)));
        let mut notifier = Notifier::start(&workflow, "r", None).unwrap();
        for _ in 0..30 {
            notifier.queue(NotifyEvent::GatePassed, Some("g".into()), None, "passed");
        }
        let waiting = notifier.endpoints[0].pending.load(std::sync::atomic::Ordering::Relaxed);
        assert!(waiting <= MAX_PENDING, "{waiting}");
        let outcomes = notifier.finish(Duration::from_millis(100));
        assert_eq!(outcomes.failed.len(), 1, "{:?}", outcomes.failed);
        let dropped = 30 - outcomes.unsent;
        assert!(dropped >= 10, "{outcomes:?}");
        let said = format!("chat ({url}): {dropped} notification(s) not queued: 16 MiB of bodies");
        assert!(outcomes.failed[0].starts_with(&said), "{:?}", outcomes.failed);
    }

    #[test]
    fn a_password_in_a_literal_url_is_not_shown() {
        assert_eq!(
            without_password("https://bot:hunter2@hooks.example/x?a=b@c"),
            "https://bot:••••@hooks.example/x?a=b@c"
        );
        assert_eq!(without_password("https://hooks.example/x@y"), "https://hooks.example/x@y");
        assert_eq!(without_password("https://bot@hooks.example/"), "https://bot@hooks.example/");
        assert_eq!(without_password("***"), "***");
    }
}
