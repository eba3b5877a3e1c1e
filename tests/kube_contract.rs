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

use serde_json::{json, Value};

use crate::fake_api::{FakeApi, Partition, TOKEN};

fn recordings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/kube-recordings")
}

pub fn recording(name: &str) -> Value {
    let path = recordings().join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut exchange: Value = serde_json::from_str(&text).unwrap();
    // Big bodies are stored as `<'x' repeated N times>` with an `elided` note (139–142).
    for elided in exchange["elided"].as_array().cloned().unwrap_or_default() {
        let pointer = elided["pointer"].as_str().unwrap();
        let times = elided["times"].as_u64().unwrap() as usize;
        *exchange.pointer_mut(pointer).unwrap() =
            Value::String(elided["repeat"].as_str().unwrap().repeat(times));
    }
    exchange
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
    send_to(api.port, request, None)
}

/// The same to any port, with a bearer token if given; code 0: no answer.
fn send_to(port: u16, request: &Value, token: Option<&str>) -> Reply {
    let text = |k: &str| request[k].as_str().unwrap_or("").to_string();
    let query = text("query");
    let target = if query.is_empty() { text("path") } else { format!("{}?{query}", text("path")) };
    let body = match &request["body"] {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let content_type = request["headers"]["Content-Type"].as_str().unwrap_or("application/json");
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return Reply { code: 0, content_type: String::new(), body: Value::Null };
    };
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let authorization = token.map(|t| format!("Authorization: Bearer {t}\r\n")).unwrap_or_default();
    let _ = write!(
        stream,
        "{} {target} HTTP/1.1\r\nHost: fake\r\nUser-Agent: curl/8.14.1\r\nAccept: application/json\r\nContent-Type: {content_type}\r\n\
         {authorization}Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        text("method"),
        body.len()
    );
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
            // Pagination (162–166): whether another page follows, and how many items remain.
            let more = |list: &Value| {
                Value::Bool(list["metadata"]["continue"].as_str().is_some_and(|c| !c.is_empty()))
            };
            same("a continue token", &more(want), &more(have));
            same(
                "remainingItemCount",
                &want["metadata"]["remainingItemCount"],
                &have["metadata"]["remainingItemCount"],
            );
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
    // A watch stream: replayed by kube_contract_a_lease_watch_streams_the_renew.
    "113-lease-watch-stream",
];

/// The recorded resourceVersions and uids in a request, as the fake's own (`ids`: recorded →
/// fake, from the answers so far): a PUT, a DELETE precondition or a JSON patch `test`
/// carries what the client last read.
fn translate_request(request: &Value, ids: &HashMap<String, String>) -> Value {
    let mut request = request.clone();
    let body = &mut request["body"];
    let swap = |v: Option<&mut Value>| {
        if let Some(v) = v {
            if let Some(fake) = v.as_str().and_then(|r| ids.get(r)) {
                *v = Value::String(fake.clone());
            }
        }
    };
    for pointer in
        ["/metadata/resourceVersion", "/metadata/uid", "/preconditions/uid", "/preconditions/resourceVersion"]
    {
        swap(body.pointer_mut(pointer));
    }
    for op in body.as_array_mut().into_iter().flatten() {
        if op["path"] == "/metadata/resourceVersion" {
            swap(op.get_mut("value"));
        }
    }
    request
}

/// A recorded Status message with the recorded uids and `(resourceVersion)`s as the fake's
/// (117, 118, 120), in one pass.
fn translate_message(message: &str, ids: &HashMap<String, String>) -> String {
    let mut message = message.to_string();
    for (recorded, fake) in ids.iter().filter(|(r, _)| r.contains('-')) {
        message = message.replace(recorded.as_str(), fake);
    }
    let mut out = String::new();
    let mut rest = message.as_str();
    while let Some(open) = rest.find('(') {
        out.push_str(&rest[..=open]);
        rest = &rest[open + 1..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && rest[digits.len()..].starts_with(')') {
            out.push_str(ids.get(&digits).unwrap_or(&digits));
            rest = &rest[digits.len()..];
        }
    }
    out.push_str(rest);
    out
}

#[test]
fn kube_contract_the_fake_answers_as_the_recorded_api_server_did() {
    let api = FakeApi::start();
    let mut names: Vec<String> = std::fs::read_dir(recordings())
        .unwrap()
        .map(|e| e.unwrap().path().file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|n| !NOT_REPLAYED.contains(&n.as_str()))
        // 150 on are replayed by their own tests, each from a fresh server.
        .filter(|n| {
            n.chars().take_while(char::is_ascii_digit).collect::<String>().parse::<u32>().unwrap() < 150
        })
        .collect();
    // In the order they were made; `61b` sorts after `61`.
    names.sort_by_key(|n| {
        let digits: String = n.chars().take_while(char::is_ascii_digit).collect();
        (digits.parse::<u32>().unwrap(), n.clone())
    });
    assert!(names.len() > 40, "{names:?}");
    // (recorded, fake) resourceVersion last seen per object path.
    let mut versions: HashMap<String, (Value, Value)> = HashMap::new();
    // Recorded resourceVersion or uid → the fake's.
    let mut ids: HashMap<String, String> = HashMap::new();
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
        let mut exchange = recording(name);
        let reply = send(&api, &translate_request(&exchange["request"], &ids));
        if let Some(message) = exchange["response"]["body"]["message"].as_str() {
            exchange["response"]["body"]["message"] = Value::String(translate_message(message, &ids));
        }
        let mut diffs = compare(&exchange["response"], &reply);
        let is_list = exchange["response"]["body"]["kind"].as_str().is_some_and(|k| k.ends_with("List"));
        for key in ["resourceVersion", "uid"].into_iter().filter(|_| !is_list) {
            let recorded = exchange["response"]["body"]["metadata"][key].as_str();
            if let (Some(recorded), Some(fake)) = (recorded, reply.body["metadata"][key].as_str()) {
                ids.insert(recorded.to_string(), fake.to_string());
            }
        }
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

/// Who am I (150, 151): the user a bearer token stands for, with `system:authenticated`
/// after the groups given, and the uid the recording's token file gave (`uid-<name>`).
#[test]
fn kube_contract_self_subject_review_names_the_token_s_user() {
    let api = FakeApi::start();
    api.add_user("limited-token", "limited", &[]);
    let limited = recording("151-selfsubjectreview-limited");
    let reply = send_to(api.port, &limited["request"], Some("limited-token"));
    let want = &limited["response"]["body"];
    assert_eq!(reply.code, 201);
    assert_eq!(reply.body["kind"], want["kind"]);
    assert_eq!(reply.body["apiVersion"], want["apiVersion"]);
    assert_eq!(reply.body["status"], want["status"], "userInfo as recorded");
    let keys = |m: &Value| m.as_object().map(|m| m.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
    assert_eq!(keys(&reply.body["metadata"]), keys(&want["metadata"]), "only creationTimestamp");

    // The admin's groups: its own, then system:authenticated (150). Its uid and extra come
    // from a client certificate, which the fake does not do.
    api.add_user("admin-token", "kube-real-admin", &["system:masters"]);
    let admin = recording("150-selfsubjectreview-admin");
    let reply = send_to(api.port, &admin["request"], Some("admin-token"));
    assert_eq!(reply.code, 201);
    let want = &admin["response"]["body"]["status"]["userInfo"];
    assert_eq!(reply.body["status"]["userInfo"]["username"], want["username"]);
    assert_eq!(reply.body["status"]["userInfo"]["groups"], want["groups"]);

    // A token nobody stands for: 401, as a real server answers.
    let reply = send_to(api.port, &limited["request"], Some("nobody-token"));
    assert_eq!(reply.code, 401);
    assert_eq!(reply.body["reason"], "Unauthorized");

    // The kubeconfig's token, and no token at all, stand for the default user.
    for token in [Some(TOKEN), None] {
        let reply = send_to(api.port, &limited["request"], token);
        assert_eq!(reply.body["status"]["userInfo"]["username"], crate::fake_api::USER);
        assert_eq!(reply.body["status"]["userInfo"]["groups"], json!(["system:authenticated"]));
    }
}

/// May I (152, 153): 201 either way, `status: {allowed}` and nothing else, per the fake's
/// RBAC for the token's user.
#[test]
fn kube_contract_self_subject_access_review_answers_per_user() {
    let api = FakeApi::start();
    api.add_user("limited-token", "limited", &[]);
    api.deny_user("limited", "update", "leases");
    for (name, token) in [
        ("152-selfsubjectaccessreview-limited", Some("limited-token")),
        ("153-selfsubjectaccessreview-admin", None),
    ] {
        let exchange = recording(name);
        let reply = send_to(api.port, &exchange["request"], token);
        let diffs = compare(&exchange["response"], &reply);
        assert!(diffs.is_empty(), "{name}: {diffs:?}");
        let want = &exchange["response"]["body"];
        assert_eq!(reply.body["status"], want["status"], "{name}");
        assert_eq!(reply.body["spec"], want["spec"], "{name}");
        assert!(reply.body["metadata"].get("creationTimestamp").is_none(), "{name}");
    }
    // deny() refuses everyone, allow_all() no one.
    let limited = recording("153-selfsubjectaccessreview-admin");
    api.deny("update", "leases");
    assert_eq!(send(&api, &limited["request"]).body["status"], json!({"allowed": false}));
    api.allow_all();
    assert_eq!(
        send_to(api.port, &limited["request"], Some("limited-token")).body["status"],
        json!({"allowed": true})
    );
}

/// Pagination (160–166): the fake's pages are the recorded ones, its own continue tokens
/// lead where the server's do, a token it did not make is the recorded 400, and a token
/// used twice gives the same page.
#[test]
fn kube_contract_lists_page_by_limit_and_continue() {
    let api = FakeApi::start();
    let namespace = recording("160-ns-pages-create");
    let diffs = compare(&namespace["response"], &send(&api, &namespace["request"]));
    assert!(diffs.is_empty(), "160: {diffs:?}");
    // What the controller-manager and earlier POSTs had put in the namespace.
    for item in recording("161-cm-list-all")["response"]["body"]["items"].as_array().unwrap() {
        let mut item = item.clone();
        item["kind"] = json!("ConfigMap");
        item["apiVersion"] = json!("v1");
        api.put_as_is("configmaps", "pages", item);
    }
    let mut replies = HashMap::new();
    for name in [
        "161-cm-list-all",
        "162-cm-list-limit2-page1",
        "163-cm-list-limit2-page2",
        "164-cm-list-limit2-page3",
        "165-cm-list-bad-continue-400",
        "166-cm-list-continue-again",
    ] {
        let exchange = recording(name);
        let reply = send(&api, &exchange["request"]);
        let diffs = compare(&exchange["response"], &reply);
        assert!(diffs.is_empty(), "{name}: {diffs:?}");
        replies.insert(name, reply.body);
    }
    // Following the fake's own tokens.
    let names = |list: &Value| -> Vec<Value> {
        list["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect()
    };
    let mut page = replies["162-cm-list-limit2-page1"].clone();
    let list_rv = page["metadata"]["resourceVersion"].clone();
    for want in ["163-cm-list-limit2-page2", "164-cm-list-limit2-page3"] {
        let token = page["metadata"]["continue"].as_str().unwrap().to_string();
        let mut request = recording(want)["request"].clone();
        request["query"] = json!(format!("limit=2&continue={token}"));
        page = send(&api, &request).body;
        assert_eq!(names(&page), names(&recording(want)["response"]["body"]), "{want}");
        assert_eq!(page["metadata"]["resourceVersion"], list_rv, "the first page's version");
    }
}

/// Label selectors on a list (not recorded: milepost lists its ConfigMaps by label);
/// with a selector the server does not count what remains.
#[test]
fn fake_api_lists_by_label_selector() {
    let api = FakeApi::start();
    api.put("namespaces", "", json!({"metadata": {"name": "team"}}));
    for (name, labels) in [
        ("one", json!({"app": "milepost", "env": "prod"})),
        ("two", json!({"app": "milepost", "env": "dev"})),
        ("three", json!({"app": "other"})),
        ("four", json!({})),
    ] {
        api.put("configmaps", "team", json!({"kind": "ConfigMap", "apiVersion": "v1",
                                             "metadata": {"name": name, "namespace": "team", "labels": labels}}));
    }
    let list = |query: &str| -> Value {
        let request = json!({"method": "GET", "path": "/api/v1/namespaces/team/configmaps", "query": query, "body": null});
        let reply = send(&api, &request);
        assert_eq!(reply.code, 200, "{query}: {}", reply.body);
        reply.body
    };
    let names = |list: &Value| -> Vec<String> {
        list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(names(&list("labelSelector=app%3Dmilepost")), ["one", "two"]);
    assert_eq!(names(&list("labelSelector=app%3Dmilepost%2Cenv%3Dprod")), ["one"]);
    assert_eq!(names(&list("labelSelector=env")), ["one", "two"]);
    assert_eq!(names(&list("labelSelector=%21env")), ["four", "three"]);
    assert_eq!(names(&list("labelSelector=app%21%3Dmilepost")), ["four", "three"]);
    assert_eq!(names(&list("labelSelector=env%20in%20%28dev%2Cqa%29")), ["two"]);
    let page = list("labelSelector=app%3Dmilepost&limit=1");
    assert_eq!(names(&page), ["one"]);
    assert!(page["metadata"]["continue"].as_str().is_some_and(|c| !c.is_empty()));
    assert!(page["metadata"].get("remainingItemCount").is_none(), "{page}");
    let token = page["metadata"]["continue"].as_str().unwrap().to_string();
    assert_eq!(names(&list(&format!("labelSelector=app%3Dmilepost&limit=1&continue={token}"))), ["two"]);
}

fn get(port: u16, path: &str) -> Reply {
    send_to(port, &json!({"method": "GET", "path": path, "query": "", "body": null}), None)
}

/// A stopped server refuses connections and keeps its objects; started again on the same
/// port, it serves them (a client surviving an API server restart).
#[test]
fn fake_api_keeps_its_objects_across_stop_and_start_again() {
    let api = FakeApi::start();
    for name in ["100-ns-team-create", "130-cm-create"] {
        let exchange = recording(name);
        assert_eq!(send(&api, &exchange["request"]).code, exchange["response"]["status"], "{name}");
    }
    let path = "/api/v1/namespaces/team/configmaps/rollout-state";
    let before = get(api.port, path).body;
    api.stop();
    assert!(std::net::TcpStream::connect(("127.0.0.1", api.port)).is_err(), "refused while stopped");
    assert_eq!(get(api.port, path).code, 0);
    api.start_again();
    let after = get(api.port, path);
    assert_eq!(after.code, 200);
    assert_eq!(after.body, before, "the same object, resourceVersion included");
    // The counter goes on from where it was.
    let put = recording("131-cm-put-current");
    let mut request = put["request"].clone();
    request["body"]["metadata"]["resourceVersion"] = before["metadata"]["resourceVersion"].clone();
    request["body"]["metadata"]["uid"] = before["metadata"]["uid"].clone();
    let reply = send(&api, &request);
    assert_eq!(reply.code, 200, "{}", reply.body);
    let rv = |v: &Value| v["metadata"]["resourceVersion"].as_str().unwrap().parse::<u64>().unwrap();
    assert!(rv(&reply.body) > rv(&before));
}

/// A request in flight when the server stops gets no answer and writes nothing.
#[test]
fn fake_api_stop_closes_requests_in_flight() {
    let api = FakeApi::start();
    let namespace = recording("100-ns-team-create");
    assert_eq!(send(&api, &namespace["request"]).code, 201);
    api.set_latency(std::time::Duration::from_millis(600));
    let create = recording("130-cm-create")["request"].clone();
    let port = api.port;
    let in_flight = std::thread::spawn(move || send_to(port, &create, None));
    std::thread::sleep(std::time::Duration::from_millis(200));
    let started = std::time::Instant::now();
    api.stop();
    let reply = in_flight.join().unwrap();
    assert_eq!(reply.code, 0, "no answer: {}", reply.body);
    assert!(
        started.elapsed() < std::time::Duration::from_millis(400),
        "closed at stop, not after the latency"
    );
    std::thread::sleep(std::time::Duration::from_millis(600));
    api.set_latency(std::time::Duration::ZERO);
    api.start_again();
    assert_eq!(get(api.port, "/api/v1/namespaces/team/configmaps/rollout-state").code, 404, "not written");
}

/// A partition cuts the clients behind it off (open connections closed, new ones closed at
/// once) while others still reach the server; restored, it forwards again.
#[test]
fn fake_api_partition_cuts_one_client_off() {
    let api = FakeApi::start();
    let link = Partition::start(api.port);
    assert_eq!(get(link.port, "/version").code, 200);
    // A watch held open through the link ends when the link is cut.
    api.put("namespaces", "", json!({"metadata": {"name": "team"}}));
    let port = link.port;
    let watch = std::thread::spawn(move || {
        let started = std::time::Instant::now();
        let request = json!({"method": "GET", "path": "/api/v1/namespaces/team/configmaps",
                             "query": "watch=true&timeoutSeconds=8", "body": null});
        send_to(port, &request, None);
        started.elapsed()
    });
    std::thread::sleep(std::time::Duration::from_millis(300));
    link.cut(true);
    assert!(watch.join().unwrap() < std::time::Duration::from_secs(4), "the watch ended at the cut");
    assert_eq!(get(link.port, "/version").code, 0, "cut off");
    assert_eq!(get(api.port, "/version").code, 200, "the server is up for others");
    link.cut(false);
    assert_eq!(get(link.port, "/version").code, 200, "restored");
    // A stopped server behind the link: closed too.
    api.stop();
    assert_eq!(get(link.port, "/version").code, 0);
    api.start_again();
    assert_eq!(get(link.port, "/version").code, 200);
}

/// What milepost's cluster state backend will do, through kube-rs as milepost uses it:
/// Leases as a lock, ConfigMaps listed by label a page at a time, who am I, and a client
/// cut off by a partition or by a server restart that works again afterwards.
mod through_kube_rs {
    use std::path::Path;

    use k8s_openapi::api::authentication::v1::SelfSubjectReview;
    use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
    use serde_json::json;

    use crate::fake_api::{FakeApi, Partition};

    fn client(kubeconfig: &Path, runtime: &tokio::runtime::Runtime) -> kube::Client {
        runtime.block_on(async {
            let config = kube::Config::from_custom_kubeconfig(
                kube::config::Kubeconfig::read_from(kubeconfig).unwrap(),
                &Default::default(),
            )
            .await
            .unwrap();
            kube::Client::try_from(config).unwrap()
        })
    }

    fn code(e: kube::Error) -> u16 {
        match e {
            kube::Error::Api(status) => status.code,
            other => panic!("not an API error: {other}"),
        }
    }

    fn lease(holder: &str) -> Lease {
        Lease {
            metadata: kube::api::ObjectMeta { name: Some("rollout-lock".into()), ..Default::default() },
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.into()),
                lease_duration_seconds: Some(15),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn fake_api_serves_leases_configmaps_and_whoami_to_kube_rs() {
        let api = FakeApi::start();
        api.put("namespaces", "", json!({"metadata": {"name": "team"}}));
        api.add_user("alice-token", "alice", &["ops"]);
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let alice = client(&api.kubeconfig_as(dir.path(), "alice-token"), &runtime);
        let tester = client(&api.kubeconfig(dir.path()), &runtime);
        runtime.block_on(async {
            let whoami = Api::<SelfSubjectReview>::all(alice.clone())
                .create(&PostParams::default(), &SelfSubjectReview::default())
                .await
                .unwrap();
            let user = whoami.status.unwrap().user_info.unwrap();
            assert_eq!(user.username.as_deref(), Some("alice"));
            assert_eq!(user.groups.unwrap(), ["ops", "system:authenticated"]);

            let leases: Api<Lease> = Api::namespaced(alice.clone(), "team");
            let others: Api<Lease> = Api::namespaced(tester.clone(), "team");
            assert_eq!(code(leases.get("rollout-lock").await.unwrap_err()), 404);
            let mine = leases.create(&PostParams::default(), &lease("alice")).await.unwrap();
            assert_eq!(code(others.create(&PostParams::default(), &lease("bob")).await.unwrap_err()), 409);
            // A renew with what alice read wins once; bob's, from the same read, loses.
            let mut renew = mine.clone();
            renew.spec.as_mut().unwrap().lease_transitions = Some(1);
            let renewed = leases.replace("rollout-lock", &PostParams::default(), &renew).await.unwrap();
            assert_ne!(renewed.metadata.resource_version, mine.metadata.resource_version);
            let mut takeover = mine.clone();
            takeover.spec = lease("bob").spec;
            assert_eq!(
                code(others.replace("rollout-lock", &PostParams::default(), &takeover).await.unwrap_err()),
                409
            );
            // Release only what alice holds.
            let stale = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: mine.metadata.uid.clone(),
                    resource_version: mine.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            assert_eq!(code(leases.delete("rollout-lock", &stale).await.unwrap_err()), 409);
            let current = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: renewed.metadata.uid.clone(),
                    resource_version: renewed.metadata.resource_version.clone(),
                }),
                ..Default::default()
            };
            leases.delete("rollout-lock", &current).await.unwrap();
            assert_eq!(code(leases.get("rollout-lock").await.unwrap_err()), 404);

            // ConfigMaps listed by label, a page at a time.
            let maps: Api<ConfigMap> = Api::namespaced(alice.clone(), "team");
            for (name, owner) in [("a", "milepost"), ("b", "other"), ("c", "milepost"), ("d", "milepost")] {
                let mut map = ConfigMap::default();
                map.metadata.name = Some(name.into());
                map.metadata.labels = Some([("owner".to_string(), owner.to_string())].into());
                maps.create(&PostParams::default(), &map).await.unwrap();
            }
            let mut names = Vec::new();
            let mut params = ListParams::default().labels("owner=milepost").limit(2);
            loop {
                let page = maps.list(&params).await.unwrap();
                names.extend(page.items.iter().map(|m| m.metadata.name.clone().unwrap()));
                match page.metadata.continue_.filter(|c| !c.is_empty()) {
                    Some(token) => params = params.continue_token(&token),
                    None => break,
                }
            }
            assert_eq!(names, ["a", "c", "d"]);
        });
    }

    #[test]
    fn fake_api_kube_rs_client_survives_a_partition_and_a_restart() {
        let api = FakeApi::start();
        api.put("namespaces", "", json!({"metadata": {"name": "team"}}));
        let link = Partition::start(api.port);
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cut_off = client(&link.kubeconfig(dir.path()), &runtime);
        let direct = client(&api.kubeconfig(dir.path()), &runtime);
        runtime.block_on(async {
            let through: Api<Lease> = Api::namespaced(cut_off.clone(), "team");
            let direct: Api<Lease> = Api::namespaced(direct.clone(), "team");
            through.create(&PostParams::default(), &lease("alice")).await.unwrap();
            link.cut(true);
            assert!(matches!(through.get("rollout-lock").await, Err(e) if !matches!(e, kube::Error::Api(_))));
            assert!(direct.get("rollout-lock").await.is_ok(), "others still reach the server");
            link.cut(false);
            assert!(through.get("rollout-lock").await.is_ok(), "restored");
            api.stop();
            assert!(direct.get("rollout-lock").await.is_err(), "the server is down");
            api.start_again();
            let lease = direct.get("rollout-lock").await.unwrap();
            assert_eq!(
                lease.spec.unwrap().holder_identity.as_deref(),
                Some("alice"),
                "kept across the restart"
            );
            assert!(through.get("rollout-lock").await.is_ok());
        });
    }
}

/// Replays recordings in order, the recorded resourceVersions and uids in requests and
/// messages as the fake's; every answer as recorded.
fn replay(api: &FakeApi, names: &[&str], ids: &mut HashMap<String, String>) {
    for name in names {
        let mut exchange = recording(name);
        let reply = send(api, &translate_request(&exchange["request"], ids));
        if let Some(message) = exchange["response"]["body"]["message"].as_str() {
            exchange["response"]["body"]["message"] = Value::String(translate_message(message, ids));
        }
        let diffs = compare(&exchange["response"], &reply);
        assert!(diffs.is_empty(), "{name}: {diffs:?}");
        if !exchange["response"]["body"]["kind"].as_str().unwrap_or("").ends_with("List") {
            for key in ["resourceVersion", "uid"] {
                let recorded = exchange["response"]["body"]["metadata"][key].as_str();
                if let (Some(recorded), Some(fake)) = (recorded, reply.body["metadata"][key].as_str()) {
                    ids.insert(recorded.to_string(), fake.to_string());
                }
            }
        }
    }
}

/// The watch on a Lease (111–113): from the list's resourceVersion, the renew arrives as
/// MODIFIED with kind and apiVersion, then a BOOKMARK (kind, apiVersion, resourceVersion and
/// an empty spec) before the server ends the stream at timeoutSeconds.
#[test]
fn kube_contract_a_lease_watch_streams_the_renew() {
    let api = FakeApi::start();
    let mut ids = HashMap::new();
    replay(
        &api,
        &[
            "100-ns-team-create",
            "102-lease-create",
            "104-lease-renew-put",
            "107-lease-takeover-put",
            "108-lease-put-transitions-backwards",
            "111-lease-watch-list",
        ],
        &mut ids,
    );
    let recorded = recording("113-lease-watch-stream");
    let query = recorded["request"]["query"].as_str().unwrap();
    let (head, from) = query.rsplit_once("resourceVersion=").unwrap();
    let target =
        format!("{}?{head}resourceVersion={}", recorded["request"]["path"].as_str().unwrap(), ids[from]);
    let port = api.port;
    let started = std::time::Instant::now();
    let watch = std::thread::spawn(move || {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        write!(
            stream,
            "GET {target} HTTP/1.1\r\nHost: fake\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut raw = String::new();
        let _ = stream.read_to_string(&mut raw);
        raw
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    replay(&api, &["112-lease-watch-renew"], &mut ids);
    let raw = watch.join().unwrap();
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_secs(4) && elapsed < std::time::Duration::from_secs(6),
        "{elapsed:?}"
    );
    let events: Vec<Value> =
        raw.lines().filter(|l| l.starts_with('{')).map(|l| serde_json::from_str(l).unwrap()).collect();
    let want = recorded["response"]["body"].as_array().unwrap();
    let types = |events: &[Value]| events.iter().map(|e| e["type"].clone()).collect::<Vec<_>>();
    assert_eq!(types(&events), types(want), "{raw}");
    for key in ["kind", "apiVersion", "spec"] {
        assert_eq!(events[0]["object"][key], want[0]["object"][key], "MODIFIED {key}");
    }
    let mut bookmark = events[1]["object"].clone();
    let mut want_bookmark = want[1]["object"].clone();
    // The same version as the event before it, as recorded.
    assert_eq!(bookmark["metadata"]["resourceVersion"], events[0]["object"]["metadata"]["resourceVersion"]);
    bookmark["metadata"]["resourceVersion"] = Value::Null;
    want_bookmark["metadata"]["resourceVersion"] = Value::Null;
    assert_eq!(bookmark, want_bookmark);
}

/// The latency is paid by every kind of request: reads, lists, writes, deletes, reviews,
/// forced answers and watches (a benchmark sets 2 ms per request). Whatever the answer
/// (a stale PUT is a 409), it comes after the latency.
#[test]
fn fake_api_latency_applies_to_every_request() {
    let api = FakeApi::start();
    send(&api, &recording("100-ns-team-create")["request"]);
    let latency = std::time::Duration::from_millis(150);
    api.set_latency(latency);
    api.answer("GET", "/forced", 401, "Unauthorized", "Unauthorized");
    let mut requests: Vec<Value> = [
        "102-lease-create",
        "103-lease-get",
        "111-lease-watch-list",
        "104-lease-renew-put",
        "122-lease-delete",
        "130-cm-create",
        "135-cm-merge-patch-current",
        "137-cm-json-patch-test-passes",
        "151-selfsubjectreview-limited",
        "152-selfsubjectaccessreview-limited",
    ]
    .iter()
    .map(|name| recording(name)["request"].clone())
    .collect();
    requests.push(json!({"method": "GET", "path": "/apis/x/v1/forced", "query": "", "body": null}));
    requests.push(json!({"method": "GET", "path": "/api/v1/namespaces/team/configmaps",
                         "query": "watch=true&timeoutSeconds=1", "body": null}));
    for request in &requests {
        let started = std::time::Instant::now();
        let reply = send(&api, request);
        assert_ne!(reply.code, 0, "{request}");
        assert!(started.elapsed() >= latency, "{request}: {}", reply.code);
    }
}

/// A continued list is the snapshot at the first page's version: what was written since
/// does not show (166 served from the watch cache; not recorded with writes in the same
/// namespace, which is what this checks).
#[test]
fn fake_api_continued_list_is_the_first_page_s_snapshot() {
    let api = FakeApi::start();
    api.put("namespaces", "", json!({"metadata": {"name": "team"}}));
    let map = |name: &str, value: &str| json!({"kind": "ConfigMap", "apiVersion": "v1", "metadata": {"name": name, "namespace": "team"}, "data": {"v": value}});
    for name in ["a", "b", "c"] {
        api.put("configmaps", "team", map(name, "before"));
    }
    let list = |query: &str| -> Value {
        let request = json!({"method": "GET", "path": "/api/v1/namespaces/team/configmaps", "query": query, "body": null});
        send(&api, &request).body
    };
    let first = list("limit=1");
    let token = first["metadata"]["continue"].as_str().unwrap().to_string();
    api.put("configmaps", "team", map("b", "after"));
    api.put("configmaps", "team", map("bb", "new"));
    let delete = json!({"method": "DELETE", "path": "/api/v1/namespaces/team/configmaps/c", "query": "", "body": null});
    assert_eq!(send(&api, &delete).code, 200);
    let rest = list(&format!("continue={token}"));
    let seen: Vec<(Value, Value)> = rest["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["metadata"]["name"].clone(), i["data"]["v"].clone()))
        .collect();
    assert_eq!(seen, [(json!("b"), json!("before")), (json!("c"), json!("before"))]);
    assert_eq!(rest["metadata"]["resourceVersion"], first["metadata"]["resourceVersion"]);
    // A new list sees the writes.
    let now: Vec<Value> =
        list("")["items"].as_array().unwrap().iter().map(|i| i["metadata"]["name"].clone()).collect();
    assert_eq!(now, [json!("a"), json!("b"), json!("bb")]);
}
