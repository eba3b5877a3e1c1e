//! Issue 17 (notifications): `notify` blocks tell a webhook of a rollout's events, in the
//! background: a failing or slow endpoint never fails or holds the rollout (past a bounded
//! wait at its end), what was not sent is reported, secrets are masked.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::milepost;

/// A webhook endpoint on a free port: answers `status` after `delay` and keeps the bodies.
struct Hook {
    port: u16,
    bodies: Arc<Mutex<Vec<String>>>,
}

impl Hook {
    fn start(status: u16, delay: Duration) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let kept = bodies.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let kept = kept.clone();
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
                    kept.lock().unwrap().push(String::from_utf8_lossy(&body).into_owned());
                    std::thread::sleep(delay);
                    let mut stream = stream;
                    let _ = write!(
                        stream,
                        "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                    );
                });
            }
        });
        Hook { port, bodies }
    }

    fn bodies(&self) -> Vec<String> {
        self.bodies.lock().unwrap().clone()
    }
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
    let texts: Vec<String> = bodies
        .iter()
        .map(|b| serde_json::from_str::<serde_json::Value>(b).unwrap()["text"].as_str().unwrap().to_string())
        .collect();
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
        .env("HOOK_URL", format!("http://127.0.0.1:{}/hook", hook.port))
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
