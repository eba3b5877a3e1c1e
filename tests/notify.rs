//! Issue 17 (notifications): `notify` blocks tell a webhook of a rollout's events, in the
//! background: a failing or slow endpoint never fails or holds the rollout (past a bounded
//! wait at its end), what was not sent is reported, secrets are masked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{milepost, stderr};

/// How a test endpoint answers its `n`th request (from 0): a status, or never (it hangs).
type Answer = Arc<dyn Fn(usize) -> Option<u16> + Send + Sync>;

/// Each request's body and the status it was answered (`None`: never), in arrival order.
type Requests = Arc<Mutex<Vec<(String, Option<u16>)>>>;

/// A webhook endpoint on a free port; keeps every request's body with the status it answered
/// (`None`: not answered), in the order the requests arrived.
struct Hook {
    port: u16,
    requests: Requests,
}

impl Hook {
    /// Answers `status` after `delay`.
    fn start(status: u16, delay: Duration) -> Self {
        Self::answering(delay, Arc::new(move |_| Some(status)))
    }

    fn answering(delay: Duration, answer: Answer) -> Self {
        Self::answering_at(delay, answer, None)
    }

    /// As [`Hook::answering`], with a `location` header on every answer (for redirects).
    fn answering_at(delay: Duration, answer: Answer, location: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let requests: Requests = Arc::default();
        let kept = requests.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (kept, answer, location) = (kept.clone(), answer.clone(), location.clone());
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    // Numbered and kept under one lock, so the number is the arrival order.
                    let status = {
                        let mut kept = kept.lock().unwrap();
                        let status = answer(kept.len());
                        kept.push((String::from_utf8_lossy(&body).into_owned(), status));
                        status
                    };
                    let Some(status) = status else {
                        // Hang: hold the connection open, answer nothing, until the test ends.
                        std::thread::sleep(Duration::from_secs(3600));
                        drop(stream);
                        return;
                    };
                    std::thread::sleep(delay);
                    let mut stream = stream;
                    let location = location.map(|l| format!("location: {l}\r\n")).unwrap_or_default();
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\n{location}content-length: 0\r\nconnection: close\r\n\r\n"
                    );
                });
            }
        });
        Hook { port, requests }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    /// Every request's body, answered or not.
    fn bodies(&self) -> Vec<String> {
        self.requests.lock().unwrap().iter().map(|(b, _)| b.clone()).collect()
    }

    /// The `text` of each notification the endpoint accepted (a 2xx answer), in order.
    fn delivered(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, status)| status.is_some_and(|s| (200..300).contains(&s)))
            .map(|(b, _)| text_of(b))
            .collect()
    }
}

fn text_of(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body).unwrap()["text"].as_str().unwrap().to_string()
}

fn workflow(dir: &std::path::Path, events: &str) -> std::path::PathBuf {
    let w = dir.join("w.kdl");
    std::fs::write(
        &w,
        format!(
            r#"workflow w {{
    secret hook env="HOOK_URL"
    secret token env="TOKEN"
    phase "1" {{ modules a; gate g }}
    notify chat {{ url "{{{{ secrets.hook }}}}"; events {events} }}
}}
module a {{ budget "1m"; install {{ run s "true" }} }}
gate g {{ budget "1m"; validate {{ run v "echo checked" }} }}
module b {{ budget "1m"; after g; install {{ run s "echo $T >&2; exit 3" {{ env T="{{{{ secrets.token }}}}"; }} }} }}
"#
        ),
    )
    .unwrap();
    w
}

#[test]
fn a_webhook_is_told_the_events_it_asks_for_with_secrets_masked() {
    let hook = Hook::start(200, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let w = workflow(dir.path(), r#""run-start" "gate-passed" "step-failed" "run-end""#);
    let out = milepost()
        .arg("apply")
        .arg(&w)
        .env("HOOK_URL", format!("http://127.0.0.1:{}/hook", hook.port))
        .env("TOKEN", "s3cr3t-t0ken")
        .assert()
        .code(1);
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(!err.contains("notification not sent"), "{err}");
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 4, "{bodies:?}");
    let texts: Vec<String> = bodies.iter().map(|b| text_of(b)).collect();
    assert!(texts[0].starts_with("w: ▶ run "), "{texts:?}");
    assert!(texts.iter().any(|t| t == "w: ✓ gate g passed"), "{texts:?}");
    assert!(texts.iter().any(|t| t.starts_with("w: ✗ b › s failed")), "{texts:?}");
    assert!(texts.last().unwrap().contains("stopped: 2 passed, 1 failed"), "{texts:?}");
    assert!(bodies.iter().all(|b| !b.contains("s3cr3t-t0ken")), "{bodies:?}");
}

#[test]
fn a_failing_or_slow_webhook_never_fails_or_holds_the_rollout() {
    let dir = tempfile::tempdir().unwrap();
    let w = workflow(dir.path(), r#""run-end""#);
    std::fs::write(&w, std::fs::read_to_string(&w).unwrap().replace("exit 3", "true")).unwrap();
    // Failing: the rollout passes; the failure is reported without the secret URL.
    let failing = Hook::start(500, Duration::ZERO);
    let url = format!("http://127.0.0.1:{}/s3cr3t-path", failing.port);
    let out =
        milepost().arg("apply").arg(&w).env("HOOK_URL", &url).env("TOKEN", "tok3n-value").assert().success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(err.contains("notification not sent: chat") && err.contains("answered 500 (3 tries"), "{err}");
    assert!(!err.contains("s3cr3t-path"), "{err}");
    assert_eq!(failing.bodies().len(), 3, "three tries");
    // Slow: the rollout ends after the bounded wait, not the endpoint's minute.
    let slow = Hook::start(200, Duration::from_secs(60));
    let started = Instant::now();
    let out = milepost()
        .arg("apply")
        .arg(&w)
        .env("HOOK_URL", format!("http://127.0.0.1:{}/hook", slow.port))
        .env("TOKEN", "tok3n-value")
        .timeout(Duration::from_secs(50))
        .assert()
        .success();
    let err = String::from_utf8_lossy(&out.get_output().stderr).into_owned();
    assert!(
        err.contains("still sending when the rollout ended") || err.contains("notification not sent"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(50));
}

#[test]
fn notify_mistakes_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        "workflow w { notify chat { url \"http://x\"; events \"run-ended\"; template \"missing.tera\" } }\n\
         module a { budget \"1m\"; install { run s \"true\" } }\n",
    )
    .unwrap();
    let text = crate::support::diagnostics(&w);
    assert!(text.contains("event `run-ended` is not an event milepost sends"), "{text}");
    assert!(text.contains("did you mean `run-end`?"), "{text}");
    assert!(text.contains("missing.tera"), "{text}");
}

#[test]
fn a_template_shapes_the_body_for_other_chats() {
    let hook = Hook::start(200, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("teams.json.tera"),
        r#"{"title": "{{ event }} {{ workflow }}", "text": {{ text | json_encode() }}}"#,
    )
    .unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        "workflow w { notify teams { url \"http://127.0.0.1:PORT/t\"; events \"run-end\"; template \"teams.json.tera\" } }\n\
         module a { budget \"1m\"; install { run s \"true\" } }\n"
            .replace("PORT", &hook.port.to_string()),
    )
    .unwrap();
    milepost().arg("apply").arg(&w).assert().success();
    let bodies = hook.bodies();
    let body: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    assert_eq!(body["title"], "run-end w");
    assert!(body["text"].as_str().unwrap().contains("complete: 1 passed"), "{body}");
}

/// A rollout whose events follow one another in a known order: one chain, two gates that pass
/// and a last one whose check fails (a step failure, then the gate's).
const CHAIN: &str = r#"workflow w {
    secret hook env="HOOK_URL"
    notify chat {
        url "{{ secrets.hook }}"
        events "run-start" "gate-passed" "gate-failed" "step-failed" "overrun" "run-end"
    }
    phase "1" { modules a; gate g1 }
    phase "2" { modules b; gate g2 }
    phase "3" { modules c; gate g3 }
}
module a { budget "1m"; install { run s "true" } }
gate g1 { budget "1m"; after a; validate { run v "true" } }
module b { budget "1m"; after g1; install { run s "true" } }
gate g2 { budget "1m"; after b; validate { run v "true" } }
module c { budget "1m"; after g2; install { run s "true" } }
gate g3 { budget "1m"; after c; validate { run v "exit 3" timeout="1s" interval="200ms" } }
"#;

#[test]
fn notify_every_event_is_delivered_once_in_order_through_retries() {
    // The first two requests fail: the first notification (run-start) is tried three times
    // while the later ones wait behind it, so they arrive after it and once each.
    let hook = Hook::answering(Duration::ZERO, Arc::new(|n| Some(if n < 2 { 500 } else { 200 })));
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN).unwrap();
    let out = milepost().arg("apply").arg(&w).env("HOOK_URL", hook.url()).assert().code(1);
    let err = stderr(&out);
    assert!(!err.contains("notification not sent") && !err.contains("still sending"), "{err}");
    let delivered = hook.delivered();
    let expected = [
        "w: ▶ run ",
        "w: ✓ gate g1 passed",
        "w: ✓ gate g2 passed",
        "w: ✗ g3 › v failed",
        "w: ✗ gate g3 failed",
        "w: run ",
    ];
    assert_eq!(delivered.len(), expected.len(), "{delivered:#?}");
    for (text, start) in delivered.iter().zip(expected) {
        assert!(text.starts_with(start), "expected `{start}…`, in order: {delivered:#?}");
    }
    assert!(delivered[5].contains("stopped: 5 passed, 1 failed"), "{delivered:#?}");
    // The two refused tries were of run-start, before anything else was sent.
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), expected.len() + 2, "{bodies:#?}");
    assert!(bodies[..3].iter().all(|b| text_of(b).starts_with("w: ▶ run ")), "{bodies:#?}");
}

/// How much later a rollout may end with a hanging endpoint than with a healthy one: the
/// documented end wait, plus slack for noisy, shared machines. Without the bound, one
/// notification alone would hold it 3 tries × 5 s + backoff = 16.5 s, and three of them 49.5 s.
const HANG_BOUND: Duration = Duration::from_secs(5 + 5);

#[test]
fn notify_a_hanging_webhook_delays_the_rollout_by_the_end_wait_at_most_and_holds_no_other() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {
    secret good env="GOOD_URL"
    secret other env="OTHER_URL"
    notify good { url "{{ secrets.good }}"; events "run-start" "gate-passed" "run-end"; }
    notify other { url "{{ secrets.other }}"; events "run-start" "gate-passed" "run-end"; }
    phase "1" { modules a; gate g }
}
module a { budget "1m"; install { run s "sleep 1" } }
gate g { budget "1m"; after a; validate { run v "true" } }
"#,
    )
    .unwrap();
    let run = |good: &Hook, other: &Hook| {
        let started = Instant::now();
        let out = milepost()
            .arg("apply")
            .arg(&w)
            .env("GOOD_URL", good.url())
            .env("OTHER_URL", other.url())
            .timeout(Duration::from_secs(120))
            .assert()
            .success();
        (started.elapsed(), stderr(&out))
    };
    // The same rollout, first with two healthy endpoints, then with the second one hanging.
    let (good, healthy) = (Hook::start(200, Duration::ZERO), Hook::start(200, Duration::ZERO));
    let (baseline, err) = run(&good, &healthy);
    assert!(!err.contains("still sending") && !err.contains("not sent"), "{err}");
    assert_eq!(good.delivered().len(), 3);
    let (good, hanging) =
        (Hook::start(200, Duration::ZERO), Hook::answering(Duration::ZERO, Arc::new(|_| None)));
    let (slow, err) = run(&good, &hanging);
    assert!(
        slow.saturating_sub(baseline) <= HANG_BOUND,
        "with a hanging endpoint {slow:?}, without {baseline:?}: more than {HANG_BOUND:?} later"
    );
    // The hanging endpoint was reached (the timing above measured something) and held only
    // its own notifications: the healthy one had all three, in order, and only the hanging
    // one's three are counted as unsent.
    assert!(!hanging.bodies().is_empty());
    let delivered = good.delivered();
    assert_eq!(delivered.len(), 3, "{delivered:#?}");
    assert!(delivered[0].starts_with("w: ▶ run ") && delivered[2].contains("complete"), "{delivered:#?}");
    assert!(err.contains("3 notification(s) still sending when the rollout ended"), "{err}");
}

#[test]
fn notify_a_webhook_that_refuses_the_body_is_not_tried_again() {
    // A 404 (a deleted webhook) answers every try alike; a 500 is retried (tested above).
    let hook = Hook::start(404, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN.replace("exit 3", "true")).unwrap();
    let out = milepost().arg("apply").arg(&w).env("HOOK_URL", hook.url()).assert().success();
    let err = stderr(&out);
    assert!(err.contains("answered 404 (not retried)"), "{err}");
    assert_eq!(hook.bodies().len(), 5, "one request per notification: {:#?}", hook.bodies());
}

/// Two nodes of a 1m budget in a chain, the first running 2 s: a plan of 2m, re-projected
/// with every node end and every second while the first runs.
const TWO_MINUTES: &str = r#"workflow w {
    secret hook env="HOOK_URL"
    notify chat { url "{{ secrets.hook }}"; events "run-start" "projected-past-deadline" "run-end"; }
}
module a { budget "1m"; install { run s "sleep 2" } }
module b { budget "1m"; after a; install { run s "true" } }
"#;

#[test]
fn notify_a_projection_past_the_deadline_is_told_once() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, TWO_MINUTES).unwrap();
    // 2m of budgets cannot fit 90 s: said at the start, and not again on the later
    // projections, which stay past it.
    let hook = Hook::start(200, Duration::ZERO);
    let out = milepost()
        .args(["apply", "--deadline", "90s"])
        .arg(&w)
        .env("HOOK_URL", hook.url())
        .assert()
        .success();
    let delivered = hook.delivered();
    assert_eq!(delivered.len(), 3, "{delivered:#?}\n{}", stderr(&out));
    assert!(delivered[0].starts_with("w: ▶ run "), "{delivered:#?}");
    let late = &delivered[1];
    assert!(late.starts_with("w: ⏳ projected to finish at "), "{late}");
    assert!(late.contains("(2m after the start), past the deadline "), "{late}");
    assert!(late.contains("(1m30s) by 30s"), "{late}");
    assert!(delivered[2].contains("complete: 2 passed"), "{delivered:#?}");
    // An hour fits: nothing said.
    let hook = Hook::start(200, Duration::ZERO);
    milepost().args(["apply", "--deadline", "1h"]).arg(&w).env("HOOK_URL", hook.url()).assert().success();
    let delivered = hook.delivered();
    assert_eq!(delivered.len(), 2, "{delivered:#?}");
    assert!(delivered.iter().all(|t| !t.contains("deadline")), "{delivered:#?}");
}

/// Approvals (issue 17): a gate that asks sends `approval-needed`, saying who can approve
/// and the command to run.
#[test]
fn an_approval_request_is_announced_with_who_and_the_command() {
    let hook = Hook::start(200, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {
    secret hook env="HOOK_URL"
    phase "1" { modules a; gate g }
    notify chat { url "{{ secrets.hook }}"; events "approval-needed" }
}
module a { budget "1m"; install { run s "true" } }
gate g { budget "1m"; approval from="sre-leads"; validate { run v "echo checked" } }
"#,
    )
    .unwrap();
    milepost()
        .arg("apply")
        .arg(&w)
        .env("HOOK_URL", hook.url())
        .timeout(Duration::from_secs(60))
        .assert()
        .code(7);
    let bodies = hook.bodies();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    let text: serde_json::Value = serde_json::from_str(&bodies[0]).unwrap();
    let text = text["text"].as_str().unwrap();
    assert!(text.contains("g needs approval from one of sre-leads"), "{text}");
    assert!(text.contains(&format!("milepost approve g {}", w.display())), "{text}");
}

#[test]
fn notify_a_redirect_is_not_followed_and_is_reported() {
    // Followed, a 302 turned the POST into a GET without the body, answered 200 by the other
    // host and counted as sent: nothing delivered, nothing said. A 307 failed each of its
    // three tries as "redirect failed".
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN.replace("exit 3", "true")).unwrap();
    for status in [302, 307] {
        let elsewhere = Hook::start(200, Duration::ZERO);
        let hook = Hook::answering_at(Duration::ZERO, Arc::new(move |_| Some(status)), Some(elsewhere.url()));
        let out = milepost().arg("apply").arg(&w).env("HOOK_URL", hook.url()).assert().success();
        let err = stderr(&out);
        assert!(err.contains(&format!("answered {status}, a redirect (not followed)")), "{err}");
        assert!(!err.contains(&hook.url()), "the URL is masked: {err}");
        assert!(elsewhere.bodies().is_empty(), "{:#?}", elsewhere.bodies());
        assert_eq!(hook.bodies().len(), 5, "one request per notification: {:#?}", hook.bodies());
    }
}

#[test]
fn notify_a_url_that_is_not_http_is_a_located_error() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(&w, CHAIN).unwrap();
    for url in ["file:///etc/passwd", "hooks", "ftp://example.com/x", "http:///x"] {
        let out = milepost().arg("validate").arg(&w).env("HOOK_URL", url).assert().code(3);
        let err = stderr(&out);
        assert!(err.contains("url `***` is not an http(s) URL") && err.contains("w.kdl:"), "{url}: {err}");
        assert!(!err.contains(url), "the secret URL is masked: {err}");
    }
    // Without the secret, `validate` still passes: the URL is `apply`'s preflight's to check.
    milepost().arg("validate").arg(&w).env_remove("HOOK_URL").assert().success();
}

#[test]
fn notify_two_blocks_for_one_endpoint_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {
    secret hook env="HOOK_URL"
    notify chat { url "{{ secrets.hook }}"; events "run-start" }
    notify again { url "{{ secrets.hook }}"; events "run-end" }
    notify chat { url "http://127.0.0.1:9/other"; events "run-end" }
}
module a { budget "1m"; install { run s "true" } }
"#,
    )
    .unwrap();
    let out = milepost().arg("validate").arg(&w).env("HOOK_URL", "http://127.0.0.1:9/x").assert().code(3);
    let err = stderr(&out);
    assert!(err.contains("notify `again` has the URL of notify `chat`"), "{err}");
    assert!(err.contains("notify block `chat` is defined twice"), "{err}");
    assert!(!err.contains("127.0.0.1:9/x"), "{err}");
}

#[test]
fn notify_a_template_that_fails_on_a_real_event_is_reported_not_dropped() {
    // The sample at load has a node; `run-start` has none, and `upper` fails on null.
    let hook = Hook::start(200, Duration::ZERO);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.tera"), r#"{"node": "{{ node | upper }}"}"#).unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        r#"workflow w {
    secret hook env="HOOK_URL"
    notify chat { url "{{ secrets.hook }}"; events "run-start" "run-end"; template "t.tera" }
}
module a { budget "1m"; install { run s "true" } }
"#,
    )
    .unwrap();
    let out = milepost().arg("apply").arg(&w).env("HOOK_URL", hook.url()).assert().success();
    let err = stderr(&out);
    for event in ["run-start", "run-end"] {
        let said = format!("notification not sent: chat (***): its template did not render for `{event}`");
        assert!(err.contains(&said), "{err}");
    }
    assert!(!err.contains("still sending"), "{err}");
    assert!(hook.bodies().is_empty());
}

#[test]
fn notify_a_template_too_costly_to_render_is_refused_at_load() {
    // Before: the sample render at load took 10 s and 4 GB.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.tera"), "{% for i in range(end=100000000) %}xxxxxxxxxx{% endfor %}")
        .unwrap();
    let w = dir.path().join("w.kdl");
    std::fs::write(
        &w,
        "workflow w { notify chat { url \"http://127.0.0.1:9/x\"; template \"t.tera\" } }\n\
         module a { budget \"1m\"; install { run s \"true\" } }\n",
    )
    .unwrap();
    let started = Instant::now();
    let text = crate::support::diagnostics(&w);
    assert!(text.contains("its loops could evaluate more than"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
}
