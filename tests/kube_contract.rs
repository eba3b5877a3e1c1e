//! Contract tests: the exchanges recorded from a real kube-apiserver v1.36.2
//! (../shared/kube-recordings, README there; the ones used here are copied to
//! tests/kube-recordings) are replayed, in order, against tests/fake_api.rs, and the parts
//! milepost reads are compared: the status code; a Status's reason, message and details;
//! plain-text bodies; whether list items carry kind/apiVersion; the managers in
//! managedFields and the labels and data an apply leaves; whether the resourceVersion moved.
//! The fake is only as honest as these tests make it.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::fake_api::FakeApi;

fn recordings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube-recordings")
}

pub fn recording(name: &str) -> Value {
    let path = recordings().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// An answer as the client sees it.
struct Reply {
    code: u16,
    content_type: String,
    /// Parsed JSON, or the text as a JSON string.
    body: Value,
}

/// Sends a recorded request as it was sent (method, path, query, Content-Type, body).
fn send(api: &FakeApi, request: &Value) -> Reply {
    let text = |k: &str| request[k].as_str().unwrap_or("").to_string();
    let query = text("query");
    let target = if query.is_empty() { text("path") } else { format!("{}?{query}", text("path")) };
    let body = match &request["body"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let content_type = request["headers"]["Content-Type"].as_str().unwrap_or("application/json");
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", api.port)).unwrap();
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    write!(
        stream,
        "{} {target} HTTP/1.1\r\nHost: fake\r\nUser-Agent: curl/8.14.1\r\nAccept: application/json\r\nContent-Type: {content_type}\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        text("method"),
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let code = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let content_type = head.lines().find_map(|l| l.strip_prefix("Content-Type: ")).unwrap_or("").to_string();
    let body = if content_type.starts_with("application/json") {
        serde_json::from_str(body).unwrap_or(Value::String(body.to_string()))
    } else {
        Value::String(body.to_string())
    };
    Reply { code, content_type, body }
}

fn managers(object: &Value) -> Vec<(String, String)> {
    let entries = object["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .map(|e| {
            (
                e["manager"].as_str().unwrap_or("").to_string(),
                e["operation"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The label keys a manager's entry owns.
fn owned_labels(object: &Value) -> Vec<(String, Vec<String>)> {
    let entries = object["metadata"]["managedFields"].as_array().cloned().unwrap_or_default();
    entries
        .iter()
        .map(|e| {
            let labels = e["fieldsV1"]["f:metadata"]["f:labels"].as_object();
            let keys = labels
                .map(|m| m.keys().filter(|k| k.starts_with("f:")).map(|k| k[2..].to_string()).collect())
                .unwrap_or_default();
            (e["manager"].as_str().unwrap_or("").to_string(), keys)
        })
        .collect()
}

/// What milepost reads of one answer, recorded vs fake; the differences, described.
fn compare(recorded: &Value, got: &Reply) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut same = |what: &str, want: &Value, have: &Value| {
        if want != have {
            diffs.push(format!("{what}: recorded {want}, fake {have}"));
        }
    };
    let code = recorded["status"].as_u64().unwrap_or(0);
    same("status code", &code.into(), &u64::from(got.code).into());
    let want = &recorded["body"];
    let want_type = recorded["headers"]["Content-Type"].as_str().unwrap_or("");
    if want_type.starts_with("text/plain") {
        same("plain text", &Value::Bool(true), &Value::Bool(got.content_type.starts_with("text/plain")));
        same("body", want, &got.body);
        return diffs;
    }
    let have = &got.body;
    match want["kind"].as_str().unwrap_or("") {
        "Status" => {
            // The recordings' user `limited` is the fake's `tester`.
            let message = match want["message"].as_str() {
                Some(m) => Value::String(m.replace("User \"limited\"", "User \"tester\"")),
                None => Value::Null,
            };
            same("message", &message, &have["message"]);
            same("reason", &want["reason"], &have["reason"]);
            // uids are the server's own.
            let details = |d: &Value| {
                let mut d = d.clone();
                if let Some(m) = d.as_object_mut() {
                    m.remove("uid");
                }
                d
            };
            same("details", &details(&want["details"]), &details(&have["details"]));
            same("status", &want["status"], &have["status"]);
            same("code", &want["code"], &have["code"]);
        }
        "APIVersions" => same("versions", &want["versions"], &have["versions"]),
        "APIResourceList" => {
            // The fake serves fewer kinds; each it serves must be as recorded.
            let key = |r: &Value| format!("{} {} {}", r["name"], r["namespaced"], r["kind"]);
            let recorded: Vec<String> = want["resources"].as_array().into_iter().flatten().map(key).collect();
            for r in have["resources"].as_array().into_iter().flatten() {
                if !recorded.contains(&key(r)) {
                    same("resource", &Value::Null, r);
                }
            }
        }
        kind if kind.ends_with("List") => {
            same("list kind", &want["kind"], &have["kind"]);
            same("list apiVersion", &want["apiVersion"], &have["apiVersion"]);
            let shape = |list: &Value| -> Value {
                list["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|i| {
                        serde_json::json!([
                            i["metadata"]["name"],
                            i.get("kind").is_some(),
                            i.get("apiVersion").is_some()
                        ])
                    })
                    .collect()
            };
            same("items [name, has kind, has apiVersion]", &shape(want), &shape(have));
        }
        _ => {
            same("kind", &want["kind"], &have["kind"]);
            same("labels", &want["metadata"]["labels"], &have["metadata"]["labels"]);
            same("data", &want["data"], &have["data"]);
            let m = |o: &Value| serde_json::to_value(managers(o)).unwrap();
            same("managedFields managers", &m(want), &m(have));
            let l = |o: &Value| serde_json::to_value(owned_labels(o)).unwrap();
            same("labels owned per manager", &l(want), &l(have));
            if want["status"] == serde_json::json!({}) {
                same("status of a new object", &want["status"], &have["status"]);
            }
        }
    }
    diffs
}

/// Recordings made after a controller acted (the fake runs none): used as fixtures, not
/// replayed.
const NOT_REPLAYED: &[&str] = &[
    "31-deploy-replicas0-get",
    "35-deploy-replicas2-pending-get",
    "38-sts-get",
    "40-ds-get",
    // Replayed by kube_contract_a_json_patch_tests_the_resource_version_first, from the
    // state 135 answered (the fake has no merge patch).
    "100-ns-team-create",
    "135-cm-merge-patch-current",
    "136-cm-json-patch-test-fails-422",
    "137-cm-json-patch-test-passes",
];

#[test]
fn kube_contract_the_fake_answers_as_the_recorded_api_server_did() {
    let api = FakeApi::start();
    let mut names: Vec<String> = std::fs::read_dir(recordings())
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| !NOT_REPLAYED.contains(&n.as_str()))
        .collect();
    // In the order they were made; `61b` sorts after `61`.
    names.sort_by_key(|n| {
        let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
        (digits.parse::<u32>().unwrap(), n.clone())
    });
    assert!(names.len() > 40, "{names:?}");
    // (recorded, fake) resourceVersion last seen per object path.
    let mut versions: HashMap<String, (Value, Value)> = HashMap::new();
    let mut failures = Vec::new();
    for name in &names {
        // Who may do what, as the recordings' RBAC had it for user `limited`.
        match name.as_str() {
            "60-403-get" => {
                for verb in ["get", "list", "watch", "patch", "create"] {
                    api.deny(verb, "configmaps");
                }
            }
            "67-limited-get-missing-granted" => {
                api.allow_all();
                api.deny("create", "configmaps");
            }
            "70-cm-apply-other-manager-force" => api.allow_all(),
            _ => {}
        }
        let exchange = recording(name);
        let reply = send(&api, &exchange["request"]);
        let mut diffs = compare(&exchange["response"], &reply);
        // A no-op apply keeps the resourceVersion; a change (or a GET after one) moves it.
        let path = exchange["request"]["path"].as_str().unwrap_or("").to_string();
        let rv = |b: &Value| b["metadata"]["resourceVersion"].clone();
        let (want_rv, have_rv) = (rv(&exchange["response"]["body"]), rv(&reply.body));
        if !want_rv.is_null()
            && exchange["response"]["body"]["kind"].as_str().is_some_and(|k| !k.ends_with("List"))
        {
            if let Some((before_want, before_have)) = versions.get(&path) {
                let recorded_same = *before_want == want_rv;
                let fake_same = *before_have == have_rv;
                if recorded_same != fake_same {
                    diffs.push(format!(
                        "resourceVersion: recorded {} it, fake {} it",
                        if recorded_same { "kept" } else { "moved" },
                        if fake_same { "kept" } else { "moved" }
                    ));
                }
            }
            versions.insert(path, (want_rv, have_rv));
        }
        if !diffs.is_empty() {
            failures.push(format!("{name}:\n  {}", diffs.join("\n  ")));
        }
    }
    assert!(failures.is_empty(), "the fake differs from the recordings:\n{}", failures.join("\n"));
}

/// What milepost's drop of the legacy field manager relies on (136, 137): a JSON patch whose
/// `test` of the resourceVersion fails is the generic 422 and writes nothing; with the
/// current one it applies and the resourceVersion moves.
#[test]
fn kube_contract_a_json_patch_tests_the_resource_version_first() {
    let api = FakeApi::start();
    api.put_as_is("namespaces", "", recording("100-ns-team-create")["response"]["body"].clone());
    let stored = recording("135-cm-merge-patch-current")["response"]["body"].clone();
    api.put_as_is("configmaps", "team", stored.clone());
    let stale = recording("136-cm-json-patch-test-fails-422");
    let reply = send(&api, &stale["request"]);
    let diffs = compare(&stale["response"], &reply);
    assert!(diffs.is_empty(), "136: {diffs:?}");
    assert_eq!(api.object("configmaps", "team", "rollout-state").unwrap(), stored, "nothing written");
    let current = recording("137-cm-json-patch-test-passes");
    let reply = send(&api, &current["request"]);
    assert_eq!(reply.code, 200);
    assert_eq!(reply.body["data"], current["response"]["body"]["data"]);
    assert_ne!(
        reply.body["metadata"]["resourceVersion"], stored["metadata"]["resourceVersion"],
        "a write moves it"
    );
}

/// The copies in tests/kube-recordings are the recorder's files, byte for byte, where the
/// originals are beside the repository (../shared/kube-recordings).
#[test]
fn kube_contract_copied_recordings_match_the_originals() {
    let originals = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/kube-recordings");
    if !originals.is_dir() {
        eprintln!("{} is not there: nothing to compare", originals.display());
        return;
    }
    for entry in std::fs::read_dir(recordings()).unwrap() {
        let path = entry.unwrap().path();
        let original = originals.join(path.file_name().unwrap());
        assert_eq!(
            std::fs::read(&path).unwrap(),
            std::fs::read(&original).unwrap_or_default(),
            "{} differs from {}",
            path.display(),
            original.display()
        );
    }
}
