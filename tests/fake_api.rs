//! A Kubernetes API server in the test process, over plain HTTP: discovery, get, list,
//! server-side apply (with created / changed / unchanged), watches played from scripts, and
//! forced answers (403, 409, …). It records every request so tests assert what milepost sent.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub authorization: String,
    pub body: String,
}

impl Seen {
    pub fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true" || p == "watch=1")
    }
}

/// A kind the server serves.
#[derive(Debug, Clone)]
pub struct Kind {
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
}

/// One step of a watch stream.
#[derive(Debug, Clone)]
pub enum WatchStep {
    /// Sends `{"type": …, "object": …}` after a pause.
    Event { after: Duration, kind: &'static str, object: Value },
    /// Cuts the connection mid-stream, as a load balancer dropping an idle watch does.
    Drop { after: Duration },
}

/// A forced answer for requests whose method matches and whose path contains `path`.
#[derive(Debug, Clone)]
struct Rule {
    method: &'static str,
    path: &'static str,
    code: u16,
    reason: &'static str,
    message: String,
}

#[derive(Default)]
struct State {
    kinds: Vec<Kind>,
    /// (plural, namespace, name) → (object, resourceVersion)
    objects: HashMap<(String, String, String), Value>,
    rv: u64,
    rules: Vec<Rule>,
    watches: VecDeque<Vec<WatchStep>>,
    seen: Vec<Seen>,
}

pub struct FakeApi {
    pub port: u16,
    state: Arc<Mutex<State>>,
}

pub fn core_kinds() -> Vec<Kind> {
    vec![
        Kind { group: "", version: "v1", kind: "Namespace", plural: "namespaces", namespaced: false },
        Kind { group: "", version: "v1", kind: "ConfigMap", plural: "configmaps", namespaced: true },
        Kind { group: "apps", version: "v1", kind: "Deployment", plural: "deployments", namespaced: true },
        Kind {
            group: "networking.k8s.io",
            version: "v1",
            kind: "NetworkPolicy",
            plural: "networkpolicies",
            namespaced: true,
        },
        Kind {
            group: "apiextensions.k8s.io",
            version: "v1",
            kind: "CustomResourceDefinition",
            plural: "customresourcedefinitions",
            namespaced: false,
        },
    ]
}

impl FakeApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State { kinds: core_kinds(), rv: 100, ..State::default() }));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        Self { port, state }
    }

    /// A kubeconfig for this server, with a namespace on its context.
    pub fn kubeconfig(&self, dir: &Path) -> std::path::PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{}\n\
             users:\n- name: tester\n  user:\n    token: t0k3n\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: from-context\n\
             current-context: fake\n",
            self.port
        );
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Every request from now on matching `method` and containing `path` gets this answer.
    pub fn answer(
        &self,
        method: &'static str,
        path: &'static str,
        code: u16,
        reason: &'static str,
        message: &str,
    ) {
        self.state.lock().unwrap().rules.push(Rule {
            method,
            path,
            code,
            reason,
            message: message.to_string(),
        });
    }

    /// The next watch request plays these steps, then holds the stream open.
    pub fn script_watch(&self, steps: Vec<WatchStep>) {
        self.state.lock().unwrap().watches.push_back(steps);
    }

    /// Stores an object as if applied earlier.
    pub fn put(&self, plural: &str, namespace: &str, object: Value) {
        let mut state = self.state.lock().unwrap();
        state.rv += 1;
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        state.objects.insert((plural.to_string(), namespace.to_string(), name), object);
    }

    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        self.state.lock().unwrap().objects.get(&key).cloned()
    }
}

fn status(code: u16, reason: &str, message: &str) -> (u16, Value) {
    (
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn write_json(stream: &mut TcpStream, code: u16, body: &Value) -> std::io::Result<()> {
    let text = body.to_string();
    write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

fn serve(mut stream: TcpStream, state: &Arc<Mutex<State>>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let (path, query) =
        target.split_once('?').map_or((target.clone(), String::new()), |(p, q)| (p.into(), q.into()));
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        reader.read_line(&mut h)?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_lowercase(), v.trim().to_string());
        }
    }
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let seen = Seen {
        method: method.clone(),
        path: path.clone(),
        query: query.clone(),
        content_type: headers.get("content-type").cloned().unwrap_or_default(),
        authorization: headers.get("authorization").cloned().unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    let watch = seen.is_watch();
    let script = {
        let mut s = state.lock().unwrap();
        s.seen.push(seen.clone());
        if let Some(rule) = s.rules.iter().find(|r| r.method == method && path.contains(r.path)).cloned() {
            drop(s);
            let (code, body) = status(rule.code, rule.reason, &rule.message);
            return write_json(&mut stream, code, &body);
        }
        if watch {
            Some(s.watches.pop_front().unwrap_or_default())
        } else {
            None
        }
    };
    if let Some(steps) = script {
        return play_watch(stream, steps);
    }
    let (code, body) = route(&seen, state);
    write_json(&mut stream, code, &body)
}

fn play_watch(mut stream: TcpStream, steps: Vec<WatchStep>) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    for step in steps {
        match step {
            WatchStep::Event { after, kind, object } => {
                std::thread::sleep(after);
                let line = json!({"type": kind, "object": object}).to_string() + "\n";
                write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
                stream.flush()?;
            }
            WatchStep::Drop { after } => {
                std::thread::sleep(after);
                // Half a chunk, then gone: the client sees a broken stream, not a clean end.
                write!(stream, "40\r\n{{\"type\":")?;
                stream.flush()?;
                return stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
    // Hold the watch open as a quiet server does; the client gives up first.
    std::thread::sleep(Duration::from_secs(60));
    Ok(())
}

/// Splits `/api/v1/namespaces/ns/configmaps/name` or `/apis/g/v/plural/name`.
struct Target {
    group: String,
    version: String,
    namespace: String,
    plural: String,
    name: String,
}

fn parse_target(path: &str) -> Option<Target> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, version, rest) = match parts.as_slice() {
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        _ => (String::new(), rest),
    };
    let (plural, name) = match rest {
        [plural] => (plural.to_string(), String::new()),
        [plural, name, ..] => (plural.to_string(), name.to_string()),
        _ => return None,
    };
    Some(Target { group, version, namespace, plural, name })
}

fn route(seen: &Seen, state: &Arc<Mutex<State>>) -> (u16, Value) {
    let mut s = state.lock().unwrap();
    let path = seen.path.as_str();
    if path == "/version" {
        return (
            200,
            json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}),
        );
    }
    if path == "/api" {
        return (200, json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}));
    }
    if path == "/apis" {
        let mut groups: Vec<(String, String)> = Vec::new();
        for k in s.kinds.iter().filter(|k| !k.group.is_empty()) {
            if !groups.iter().any(|(g, _)| g == k.group) {
                groups.push((k.group.to_string(), k.version.to_string()));
            }
        }
        let groups: Vec<Value> = groups
            .iter()
            .map(|(g, v)| {
                let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
            })
            .collect();
        return (200, json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}));
    }
    let discovery = |group: &str, version: &str, s: &State| -> (u16, Value) {
        let resources: Vec<Value> = s
            .kinds
            .iter()
            .filter(|k| k.group == group && k.version == version)
            .map(|k| {
                json!({"name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
                       "kind": k.kind, "verbs": ["get", "list", "watch", "create", "update", "patch", "delete"]})
            })
            .collect();
        let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
        if resources.is_empty() {
            return status(404, "NotFound", "the server could not find the requested resource");
        }
        (
            200,
            json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
        )
    };
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", v] => return discovery("", v, &s),
        ["apis", g, v] => return discovery(g, v, &s),
        _ => {}
    }
    let Some(t) = parse_target(path) else { return status(404, "NotFound", "no such path") };
    if !s.kinds.iter().any(|k| k.group == t.group && k.version == t.version && k.plural == t.plural) {
        return status(404, "NotFound", "the server could not find the requested resource");
    }
    let key = (t.plural.clone(), t.namespace.clone(), t.name.clone());
    match (seen.method.as_str(), t.name.is_empty()) {
        ("GET", false) => match s.objects.get(&key) {
            Some(o) => (200, o.clone()),
            None => status(404, "NotFound", &format!("{} \"{}\" not found", t.plural, t.name)),
        },
        ("GET", true) => {
            let wanted = seen.query.split('&').find_map(|p| p.strip_prefix("fieldSelector=metadata.name%3D"));
            let items: Vec<Value> = s
                .objects
                .iter()
                .filter(|((p, ns, name), _)| {
                    *p == t.plural && *ns == t.namespace && wanted.is_none_or(|w| w == name)
                })
                .map(|(_, o)| o.clone())
                .collect();
            let rv = s.rv.to_string();
            (
                200,
                json!({"kind": "List", "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}),
            )
        }
        ("PATCH", false) => {
            let mut applied: Value = match serde_json::from_str(&seen.body) {
                Ok(v) => v,
                Err(e) => return status(400, "BadRequest", &format!("not JSON: {e}")),
            };
            let dry_run = seen.query.contains("dryRun=All");
            let previous = s.objects.get(&key).cloned();
            let comparable = |o: &Value| {
                let mut o = o.clone();
                if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
                    m.remove("resourceVersion");
                    m.remove("managedFields");
                }
                if let Some(m) = o.as_object_mut() {
                    m.remove("status");
                }
                o
            };
            let unchanged = previous.as_ref().is_some_and(|p| comparable(p) == comparable(&applied));
            if unchanged {
                return (200, previous.unwrap());
            }
            if dry_run {
                if let Some(p) = &previous {
                    applied["metadata"]["resourceVersion"] = p["metadata"]["resourceVersion"].clone();
                }
                return (if previous.is_some() { 200 } else { 201 }, applied);
            }
            s.rv += 1;
            applied["metadata"]["resourceVersion"] = json!(s.rv.to_string());
            if t.plural == "customresourcedefinitions" {
                let spec = &applied["spec"];
                let group: &'static str =
                    Box::leak(spec["group"].as_str().unwrap_or("").to_string().into_boxed_str());
                let version: &'static str = Box::leak(
                    spec["versions"][0]["name"].as_str().unwrap_or("v1").to_string().into_boxed_str(),
                );
                let kind: &'static str =
                    Box::leak(spec["names"]["kind"].as_str().unwrap_or("").to_string().into_boxed_str());
                let plural: &'static str =
                    Box::leak(spec["names"]["plural"].as_str().unwrap_or("").to_string().into_boxed_str());
                let namespaced = spec["scope"].as_str() == Some("Namespaced");
                s.kinds.push(Kind { group, version, kind, plural, namespaced });
            }
            let created = previous.is_none();
            s.objects.insert(key, applied.clone());
            (if created { 201 } else { 200 }, applied)
        }
        _ => status(405, "MethodNotAllowed", "not in the fake"),
    }
}
