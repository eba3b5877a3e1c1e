//! A Kubernetes API server in the test process, over plain HTTP, answering the way a real
//! kube-apiserver v1.36 does in what milepost reads (../shared/kube-recordings, replayed by
//! tests/kube_contract.rs): discovery (plain-text 404 for a group nobody serves), get, list
//! (items of built-in kinds carry no kind/apiVersion, custom resources' do), server-side apply
//! with one ownership set per field manager (fields a manager stops sending are removed unless
//! another owns them; a different value on a field another manager owns is a 409 unless
//! force), JSON patches with `test`, Status bodies with reason and details as recorded, 403s
//! naming the verb RBAC refused, and the 500 of a field at the wrong level. Also what a
//! cluster state backend uses (recordings 100–166): create (POST), replace (PUT) with
//! resourceVersion checks (a Lease wants one and is created by a PUT of a missing one),
//! DELETE preconditions, the 1 MiB data and 3 MiB request limits, SelfSubjectReview and
//! SelfSubjectAccessReview for the user a bearer token stands for (`add_user`), and lists a
//! page at a time (`limit`, `continue`) or by label selector. Watches are played from
//! scripts or live from the writes; forced answers (401, …) and a per-request latency are
//! settable. The server can be stopped and started again on its port with its objects, and
//! `Partition` cuts one client off. It records every request so tests assert what milepost
//! sent.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Map, Value};

/// The user the kubeconfig's token stands for, as the server names it in a 403.
pub const USER: &str = "tester";

/// The token `kubeconfig` writes; it stands for `USER`.
pub const TOKEN: &str = "t0k3n";

/// The API server's limit on a request body (3 MiB): over it, 413 (recording 140).
const REQUEST_LIMIT: usize = 3 * 1024 * 1024;

/// A ConfigMap's data or a Secret's decoded data may not exceed 1 MiB (139, 142).
const OBJECT_DATA_LIMIT: usize = 1024 * 1024;

/// A user a bearer token stands for, as a static token file names it: the server adds
/// `system:authenticated` to the groups (151). The recording's token file gave user
/// `limited` the uid `uid-limited`; the fake names every user's uid that way.
#[derive(Debug, Clone)]
struct User {
    token: String,
    name: String,
    groups: Vec<String>,
}

impl User {
    fn new(token: &str, name: &str, groups: &[&str]) -> Self {
        let mut groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        groups.push("system:authenticated".into());
        User { token: token.into(), name: name.into(), groups }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub authorization: String,
    pub user_agent: String,
    pub body: String,
}

impl Seen {
    pub fn is_watch(&self) -> bool {
        self.query.split('&').any(|p| p == "watch=true" || p == "watch=1")
    }

    /// A query parameter, URL-decoded.
    pub fn param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|p| p.strip_prefix(&format!("{name}="))).map(decode)
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A kind the server serves.
#[derive(Debug, Clone)]
pub struct Kind {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub namespaced: bool,
    /// Served through a CRD: list items keep kind/apiVersion, any field is accepted, and an
    /// unknown resource in its group is a plain-text 404.
    pub custom: bool,
}

impl Kind {
    fn builtin(group: &str, version: &str, kind: &str, plural: &str, namespaced: bool) -> Self {
        Kind {
            group: group.into(),
            version: version.into(),
            kind: kind.into(),
            plural: plural.into(),
            namespaced,
            custom: false,
        }
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.clone()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `configmaps` for the core group, `leases.coordination.k8s.io` for others.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.plural.clone()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    /// `ConfigMap` for the core group, `Lease.coordination.k8s.io` for others: how a 422
    /// (109, 139) and a DELETE precondition's 409 (117) name the kind.
    fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    /// A PUT without `metadata.resourceVersion` is accepted (last write wins, 133); a Lease
    /// refuses it (106).
    fn unconditional_update(&self) -> bool {
        self.kind != "Lease"
    }

    /// A PUT of a missing object creates it (a Lease, 123); a ConfigMap's is a 404 (138).
    fn create_on_update(&self) -> bool {
        self.kind == "Lease"
    }

    /// The top-level fields its schema declares; `None`: anything goes (custom resources).
    fn top_level_fields(&self) -> Option<&'static [&'static str]> {
        if self.custom {
            return None;
        }
        Some(match self.kind.as_str() {
            "ConfigMap" => &["apiVersion", "kind", "metadata", "data", "binaryData", "immutable"],
            "Secret" => &["apiVersion", "kind", "metadata", "data", "stringData", "type", "immutable"],
            "Role" => &["apiVersion", "kind", "metadata", "rules"],
            "RoleBinding" => &["apiVersion", "kind", "metadata", "roleRef", "subjects"],
            "Lease" => &["apiVersion", "kind", "metadata", "spec"],
            _ => &["apiVersion", "kind", "metadata", "spec", "status"],
        })
    }

    /// Kinds whose `status` is a subresource: an apply of the main resource leaves it alone.
    fn has_status(&self) -> bool {
        !matches!(self.kind.as_str(), "ConfigMap" | "Secret" | "Role" | "RoleBinding" | "Lease")
    }
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
    body: Value,
}

#[derive(Default)]
struct State {
    kinds: Vec<Kind>,
    /// (plural, namespace, name) → object
    objects: HashMap<(String, String, String), Value>,
    rv: u64,
    rules: Vec<Rule>,
    /// (method, path part, how many more): requests served (their writes stored) whose
    /// answers are lost, as when the server or the network goes down after etcd committed.
    lost_answers: Vec<(&'static str, &'static str, u32)>,
    /// (user, verb, plural) RBAC refuses; no user: everyone.
    denied: Vec<(Option<String>, String, String)>,
    /// Who each bearer token stands for; the first is the default user (`USER`).
    users: Vec<User>,
    watches: VecDeque<Vec<WatchStep>>,
    seen: Vec<Seen>,
    /// Someone else writes the object just before each JSON patch lands.
    write_before_json_patch: bool,
    /// Every write, for watches without a script: (resourceVersion, plural, namespace, name,
    /// event type, object).
    changes: Vec<(u64, String, String, String, &'static str, Value)>,
    latency: Duration,
}

pub struct FakeApi {
    pub port: u16,
    state: Arc<Mutex<State>>,
    server: Arc<Mutex<Server>>,
}

/// The listening side, apart from the store so that `stop` and `start_again` keep the store.
#[derive(Default)]
struct Server {
    /// Bumped by `stop`: a connection accepted under an older one is not served.
    generation: u64,
    running: bool,
    accept: Option<std::thread::JoinHandle<()>>,
    /// The connections open now, to close at `stop`.
    open: HashMap<u64, TcpStream>,
    next: u64,
}

fn write_kubeconfig(path: PathBuf, port: u16, token: &str) -> PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://127.0.0.1:{port}\n\
         users:\n- name: tester\n  user:\n    token: {token}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n    namespace: from-context\n\
         current-context: fake\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

pub fn core_kinds() -> Vec<Kind> {
    vec![
        Kind::builtin("", "v1", "Namespace", "namespaces", false),
        Kind::builtin("", "v1", "ConfigMap", "configmaps", true),
        Kind::builtin("", "v1", "Secret", "secrets", true),
        Kind::builtin("", "v1", "Service", "services", true),
        Kind::builtin("apps", "v1", "Deployment", "deployments", true),
        Kind::builtin("apps", "v1", "StatefulSet", "statefulsets", true),
        Kind::builtin("apps", "v1", "DaemonSet", "daemonsets", true),
        Kind::builtin("networking.k8s.io", "v1", "NetworkPolicy", "networkpolicies", true),
        Kind::builtin("coordination.k8s.io", "v1", "Lease", "leases", true),
        Kind::builtin("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
        Kind::builtin("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", true),
        Kind::builtin(
            "apiextensions.k8s.io",
            "v1",
            "CustomResourceDefinition",
            "customresourcedefinitions",
            false,
        ),
    ]
}

impl FakeApi {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(Mutex::new(State {
            kinds: core_kinds(),
            rv: 100,
            users: vec![User::new(TOKEN, USER, &[])],
            ..State::default()
        }));
        let api = Self { port, state, server: Arc::new(Mutex::new(Server::default())) };
        api.listen(listener);
        api
    }

    fn listen(&self, listener: TcpListener) {
        let state = self.state.clone();
        let server = self.server.clone();
        let mut ctl = self.server.lock().unwrap();
        ctl.running = true;
        let generation = ctl.generation;
        ctl.accept = Some(std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let id = {
                    let mut ctl = server.lock().unwrap();
                    if ctl.generation != generation {
                        // `stop`'s wake-up call, or a client racing it: the listener goes.
                        break;
                    }
                    ctl.next += 1;
                    let id = ctl.next;
                    if let Ok(clone) = stream.try_clone() {
                        ctl.open.insert(id, clone);
                    }
                    id
                };
                let state = state.clone();
                let server = server.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state, &server, generation);
                    server.lock().unwrap().open.remove(&id);
                });
            }
        }));
    }

    /// The server goes down as a restarted API server does: the port refuses connections and
    /// every open connection (watches, requests in flight) is closed; requests read before
    /// and answered after are not served. The stored objects stay for `start_again`.
    pub fn stop(&self) {
        let accept = {
            let mut ctl = self.server.lock().unwrap();
            if !ctl.running {
                return;
            }
            ctl.running = false;
            ctl.generation += 1;
            for (_, conn) in ctl.open.drain() {
                let _ = conn.shutdown(Shutdown::Both);
            }
            ctl.accept.take()
        };
        // Wakes the accept loop, which sees the new generation and drops the listener.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
        if let Some(accept) = accept {
            let _ = accept.join();
        }
    }

    /// Listens on the same port again, serving the same store (std sets SO_REUSEADDR).
    pub fn start_again(&self) {
        if self.server.lock().unwrap().running {
            return;
        }
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(("127.0.0.1", self.port)) {
                Ok(listener) => break listener,
                // The old socket may linger a moment after `stop`.
                Err(_) if tries < 100 => {
                    tries += 1;
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("port {} again: {e}", self.port),
            }
        };
        self.listen(listener);
    }

    /// A kubeconfig for this server, with a namespace on its context, as user `USER`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        write_kubeconfig(dir.join("kubeconfig"), self.port, TOKEN)
    }

    /// A kubeconfig for this server whose token is `token` (see `add_user`), written to
    /// `dir/kubeconfig-<token>`.
    pub fn kubeconfig_as(&self, dir: &Path, token: &str) -> PathBuf {
        write_kubeconfig(dir.join(format!("kubeconfig-{token}")), self.port, token)
    }

    /// From now on `token` stands for `username` in `groups` (and `system:authenticated`):
    /// what a SelfSubjectReview answers and whom a 403 names.
    pub fn add_user(&self, token: &str, username: &str, groups: &[&str]) {
        let mut state = self.state.lock().unwrap();
        state.users.retain(|u| u.token != token);
        state.users.push(User::new(token, username, groups));
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.lock().unwrap().seen.clone()
    }

    /// Every request from now on matching `method` and containing `path` gets a Status with
    /// this code, reason and message (and no details).
    pub fn answer(
        &self,
        method: &'static str,
        path: &'static str,
        code: u16,
        reason: &'static str,
        message: &str,
    ) {
        let mut body = failure(code, reason, message, None);
        if reason.is_empty() {
            body.as_object_mut().unwrap().remove("reason");
        }
        self.state.lock().unwrap().rules.push(Rule { method, path, code, body });
    }

    /// Every request from now on matching `method` and containing `path` finds the
    /// connection closed without an answer, as when the API server is down.
    pub fn unreachable(&self, method: &'static str, path: &'static str) {
        self.state.lock().unwrap().rules.push(Rule { method, path, code: 0, body: Value::Null });
    }

    /// The next `times` requests matching `method` and containing `path` are carried out
    /// (a write is stored) but their connection is closed before the answer: the client
    /// cannot tell whether its write landed.
    pub fn lose_answers(&self, method: &'static str, path: &'static str, times: u32) {
        self.state.lock().unwrap().lost_answers.push((method, path, times));
    }

    /// The forced answers set by `answer` and `unreachable` end: the server answers again.
    pub fn forget_answers(&self) {
        self.state.lock().unwrap().rules.clear();
    }

    /// Removes an object, as `kubectl delete` by hand would.
    pub fn remove(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        self.state.lock().unwrap().objects.remove(&key)
    }

    /// From now on another client writes the object (a new resourceVersion) just before
    /// each JSON patch reaches it, so a `test` of the resourceVersion fails.
    pub fn write_before_json_patch(&self, on: bool) {
        self.state.lock().unwrap().write_before_json_patch = on;
    }

    /// RBAC refuses `verb` (get, list, watch, patch, create, update, delete) on `plural` to
    /// every user from now on.
    pub fn deny(&self, verb: &str, plural: &str) {
        self.state.lock().unwrap().denied.push((None, verb.into(), plural.into()));
    }

    /// RBAC refuses `verb` on `plural` to `username` only, from now on.
    pub fn deny_user(&self, username: &str, verb: &str, plural: &str) {
        self.state.lock().unwrap().denied.push((Some(username.into()), verb.into(), plural.into()));
    }

    /// RBAC refuses nothing from now on.
    pub fn allow_all(&self) {
        self.state.lock().unwrap().denied.clear();
    }

    /// Every answer from now on comes this much later, as over a network.
    pub fn set_latency(&self, latency: Duration) {
        self.state.lock().unwrap().latency = latency;
    }

    /// The next watch request plays these steps, then holds the stream open.
    pub fn script_watch(&self, steps: Vec<WatchStep>) {
        self.state.lock().unwrap().watches.push_back(steps);
    }

    /// Stores an object as if written earlier by a controller (no field manager).
    pub fn put(&self, plural: &str, namespace: &str, object: Value) {
        let mut state = self.state.lock().unwrap();
        state.rv += 1;
        let mut object = object;
        object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let key = (plural.to_string(), namespace.to_string(), name);
        let created = !state.objects.contains_key(&key);
        state.store(key, object, created);
    }

    /// Stores an object exactly as given, resourceVersion included (a recorded answer); the
    /// server's counter goes on from above it, as it would have.
    pub fn put_as_is(&self, plural: &str, namespace: &str, object: Value) {
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let mut state = self.state.lock().unwrap();
        let rv = object["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(0);
        state.rv = state.rv.max(rv);
        state.objects.insert((plural.to_string(), namespace.to_string(), name), object);
    }

    /// Server-side applies `object` as `manager` (with force), as an earlier run would have.
    pub fn put_applied(&self, plural: &str, namespace: &str, manager: &str, object: Value) -> (u16, Value) {
        let mut state = self.state.lock().unwrap();
        let kind = state.kinds.iter().find(|k| k.plural == plural).cloned().expect("a served kind");
        let name = object["metadata"]["name"].as_str().unwrap().to_string();
        let t = Target {
            group: kind.group.clone(),
            version: kind.version.clone(),
            namespace: namespace.into(),
            plural: plural.into(),
            name,
            subresource: None,
        };
        apply(&mut state, &t, &kind, manager, true, false, object)
    }

    pub fn object(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (plural.to_string(), namespace.to_string(), name.to_string());
        self.state.lock().unwrap().objects.get(&key).cloned()
    }

    /// Every stored object of a kind in a namespace, by name.
    pub fn objects(&self, plural: &str, namespace: &str) -> Vec<Value> {
        let state = self.state.lock().unwrap();
        let mut found: Vec<(&String, &Value)> = state
            .objects
            .iter()
            .filter(|((p, ns, _), _)| p == plural && ns == namespace)
            .map(|((_, _, name), o)| (name, o))
            .collect();
        found.sort_by(|a, b| a.0.cmp(b.0));
        found.into_iter().map(|(_, o)| o.clone()).collect()
    }
}

impl State {
    /// Stores a written object and tells live watches.
    fn store(&mut self, key: (String, String, String), object: Value, created: bool) {
        let rv =
            object["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse().ok()).unwrap_or(self.rv);
        let kind = if created { "ADDED" } else { "MODIFIED" };
        self.changes.push((rv, key.0.clone(), key.1.clone(), key.2.clone(), kind, object.clone()));
        self.objects.insert(key, object);
    }
}

/// A failure `Status` as the API server writes it.
fn failure(code: u16, reason: &str, message: &str, details: Option<Value>) -> Value {
    let mut body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                          "message": message, "reason": reason});
    if let Some(details) = details {
        body["details"] = details;
    }
    body["code"] = json!(code);
    body
}

/// What `route` answers: JSON, or plain text (`404 page not found`).
enum Answer {
    Json(u16, Value),
    Text(u16, String),
}

fn status(code: u16, reason: &str, message: &str, details: Option<Value>) -> Answer {
    Answer::Json(code, failure(code, reason, message, details))
}

fn page_not_found() -> Answer {
    Answer::Text(404, "404 page not found\n".into())
}

fn write_answer(stream: &mut TcpStream, answer: &Answer) -> std::io::Result<()> {
    let (code, content_type, text) = match answer {
        Answer::Json(code, body) => (*code, "application/json", body.to_string()),
        Answer::Text(code, text) => (*code, "text/plain; charset=utf-8", text.clone()),
    };
    write!(
        stream,
        "HTTP/1.1 {code} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
        text.len()
    )?;
    stream.flush()
}

fn serve(
    mut stream: TcpStream,
    state: &Arc<Mutex<State>>,
    server: &Arc<Mutex<Server>>,
    generation: u64,
) -> std::io::Result<()> {
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
        user_agent: headers.get("user-agent").cloned().unwrap_or_default(),
        body: String::from_utf8_lossy(&body).into_owned(),
    };
    // Every request, watches and forced answers included, waits the latency.
    let latency = state.lock().unwrap().latency;
    if !latency.is_zero() {
        std::thread::sleep(latency);
    }
    let (answer, script) = {
        // A request read before `stop` is not served after it (its socket is closed too).
        let ctl = server.lock().unwrap();
        if ctl.generation != generation {
            return stream.shutdown(Shutdown::Both);
        }
        handle(&seen, state)
    };
    if let Some(Answer::Json(0, _)) = answer {
        return stream.shutdown(std::net::Shutdown::Both);
    }
    if let Some(answer) = answer {
        return write_answer(&mut stream, &answer);
    }
    match script {
        Some(Watch::Script(steps)) => play_watch(stream, steps),
        Some(live) => live_watch(stream, state, live, server, generation),
        None => Ok(()),
    }
}

/// One request: an answer, or (for a watch that is allowed) the script to play.
fn handle(seen: &Seen, state: &Arc<Mutex<State>>) -> (Option<Answer>, Option<Watch>) {
    let mut s = state.lock().unwrap();
    s.seen.push(seen.clone());
    if let Some(rule) =
        s.rules.iter().find(|r| r.method == seen.method && seen.path.contains(r.path)).cloned()
    {
        return (Some(Answer::Json(rule.code, rule.body)), None);
    }
    let answer = route(seen, &mut s);
    if answer.is_some() {
        if let Some(lost) =
            s.lost_answers.iter_mut().find(|(m, p, n)| *n > 0 && *m == seen.method && seen.path.contains(p))
        {
            lost.2 -= 1;
            return (Some(Answer::Json(0, Value::Null)), None);
        }
    }
    match answer {
        Some(a) => (Some(a), None),
        None => match s.watches.pop_front() {
            Some(script) => (None, Some(Watch::Script(script))),
            None => {
                let t = parse_target(&seen.path).expect("a watch has a resource");
                let from = seen.param("resourceVersion").and_then(|v| v.parse().ok()).unwrap_or(s.rv);
                let name = seen
                    .param("fieldSelector")
                    .and_then(|f| f.strip_prefix("metadata.name=").map(String::from));
                let seconds = seen.param("timeoutSeconds").and_then(|v| v.parse().ok()).unwrap_or(60u64);
                let kind = s.kinds.iter().find(|k| k.group == t.group && k.plural == t.plural);
                let bookmark =
                    kind.filter(|_| seen.param("allowWatchBookmarks").as_deref() == Some("true")).map(|k| {
                        let mut object =
                            json!({"kind": k.kind, "apiVersion": k.api_version(), "metadata": {}});
                        // A Lease's bookmark carries an empty spec too (113).
                        if k.kind == "Lease" {
                            object["spec"] = json!({});
                        }
                        object
                    });
                let watch = Watch::Live {
                    plural: t.plural,
                    namespace: t.namespace,
                    name,
                    from,
                    seconds: seconds.min(60),
                    bookmark,
                };
                (None, Some(watch))
            }
        },
    }
}

/// What a watch request gets: a script, or the changes made from its resourceVersion on.
enum Watch {
    Script(Vec<WatchStep>),
    Live {
        plural: String,
        namespace: String,
        name: Option<String>,
        from: u64,
        seconds: u64,
        /// With allowWatchBookmarks: the bookmark's object, sent once in the last 1.5 s.
        bookmark: Option<Value>,
    },
}

/// Streams the changes to matching objects after `from`, until `seconds` have passed.
fn live_watch(
    mut stream: TcpStream,
    state: &Arc<Mutex<State>>,
    watch: Watch,
    server: &Arc<Mutex<Server>>,
    generation: u64,
) -> std::io::Result<()> {
    let Watch::Live { plural, namespace, name, mut from, seconds, mut bookmark } = watch else {
        return Ok(());
    };
    write!(
        stream,
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )?;
    stream.flush()?;
    let until = std::time::Instant::now() + Duration::from_secs(seconds);
    // BOOKMARKs came in the last 1–2 s before the server ended the stream (113, 82).
    let bookmark_at = until - Duration::from_millis(1500).min(Duration::from_secs(seconds));
    while std::time::Instant::now() < until {
        if server.lock().unwrap().generation != generation {
            // Stopped: the socket is closed, and this stream ends.
            return Ok(());
        }
        let events: Vec<(u64, &'static str, Value)> = {
            let s = state.lock().unwrap();
            s.changes
                .iter()
                .filter(|(rv, p, ns, n, _, _)| {
                    *rv > from && *p == plural && *ns == namespace && name.as_ref().is_none_or(|w| w == n)
                })
                .map(|(rv, _, _, _, kind, object)| (*rv, *kind, object.clone()))
                .collect()
        };
        for (rv, kind, object) in events {
            from = from.max(rv);
            let line = json!({"type": kind, "object": object}).to_string() + "\n";
            write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
            stream.flush()?;
        }
        if std::time::Instant::now() >= bookmark_at {
            if let Some(mut object) = bookmark.take() {
                // As far as this stream has gone: a later change is not skipped on resume.
                object["metadata"]["resourceVersion"] = json!(from.to_string());
                let line = json!({"type": "BOOKMARK", "object": object}).to_string() + "\n";
                write!(stream, "{:x}\r\n{line}\r\n", line.len())?;
                stream.flush()?;
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    // The server ends the stream at its timeout.
    write!(stream, "0\r\n\r\n")?;
    stream.flush()
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

/// Splits `/api/v1/namespaces/ns/configmaps/name` or `/apis/g/v/plural/name[/sub]`.
struct Target {
    group: String,
    version: String,
    namespace: String,
    plural: String,
    name: String,
    /// `status` in `/…/widgets/first/status`.
    subresource: Option<String>,
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
    let (plural, name, subresource) = match rest {
        [plural] => (plural.to_string(), String::new(), None),
        [plural, name] => (plural.to_string(), name.to_string(), None),
        [plural, name, sub] => (plural.to_string(), name.to_string(), Some(sub.to_string())),
        _ => return None,
    };
    Some(Target { group, version, namespace, plural, name, subresource })
}

/// The answer, or `None` for a watch the script plays.
fn route(seen: &Seen, s: &mut State) -> Option<Answer> {
    let path = seen.path.as_str();
    // A bearer token nobody stands for is refused before anything else, on every path. No
    // token at all is the default user here (tests' raw requests), not system:anonymous.
    let token = seen.authorization.strip_prefix("Bearer ");
    if token.is_some_and(|t| !s.users.iter().any(|u| u.token == t)) {
        let mut body = failure(401, "Unauthorized", "Unauthorized", None);
        body.as_object_mut().unwrap().remove("details");
        return Some(Answer::Json(401, body));
    }
    if path == "/version" {
        return Some(Answer::Json(
            200,
            json!({"major": "1", "minor": "36", "gitVersion": "v1.36.2-fake", "platform": "linux/amd64"}),
        ));
    }
    if path == "/api" {
        return Some(Answer::Json(
            200,
            json!({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}),
        ));
    }
    if path == "/apis" {
        let mut groups: Vec<(String, String)> = Vec::new();
        for k in s.kinds.iter().filter(|k| !k.group.is_empty()) {
            if !groups.iter().any(|(g, _)| *g == k.group) {
                groups.push((k.group.clone(), k.version.clone()));
            }
        }
        let groups: Vec<Value> = groups
            .iter()
            .map(|(g, v)| {
                let gv = json!({"groupVersion": format!("{g}/{v}"), "version": v});
                json!({"name": g, "versions": [gv.clone()], "preferredVersion": gv})
            })
            .collect();
        return Some(Answer::Json(
            200,
            json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
        ));
    }
    let user = s.users.iter().find(|u| token == Some(u.token.as_str())).unwrap_or(&s.users[0]).clone();
    if seen.method == "POST" && path == "/apis/authentication.k8s.io/v1/selfsubjectreviews" {
        return Some(self_subject_review(&user));
    }
    if seen.method == "POST" && path == "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" {
        return Some(self_subject_access_review(seen, s, &user));
    }
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api", v] => return Some(discovery("", v, s)),
        ["apis", g, v] => return Some(discovery(g, v, s)),
        _ => {}
    }
    let Some(t) = parse_target(path) else { return Some(page_not_found()) };
    let group_served = t.group.is_empty() || s.kinds.iter().any(|k| k.group == t.group);
    if !group_served {
        // Nobody serves the group (a CRD not installed): the mux answers, in plain text.
        return Some(page_not_found());
    }
    let Some(kind) = s
        .kinds
        .iter()
        .find(|k| k.group == t.group && k.version == t.version && k.plural == t.plural)
        .cloned()
    else {
        let custom_group = s.kinds.iter().any(|k| k.group == t.group && k.custom);
        if custom_group {
            return Some(page_not_found());
        }
        return Some(status(
            404,
            "NotFound",
            "the server could not find the requested resource",
            Some(json!({})),
        ));
    };
    let verb = match (seen.method.as_str(), t.name.is_empty()) {
        ("GET", true) if seen.is_watch() => "watch",
        ("GET", true) => "list",
        ("GET", false) => "get",
        ("PATCH", _) => "patch",
        ("PUT", _) => "update",
        ("POST", _) => "create",
        ("DELETE", _) => "delete",
        _ => "get",
    };
    let listed_name =
        seen.param("fieldSelector").and_then(|f| f.strip_prefix("metadata.name=").map(String::from));
    if let Some(refused) = forbidden(s, &kind, &t, verb, listed_name.as_deref(), &user.name) {
        return Some(refused);
    }
    if seen.body.len() > REQUEST_LIMIT {
        // The body is read up to the limit and refused: no details (140).
        let mut body = failure(
            413,
            "RequestEntityTooLarge",
            &format!("Request entity too large: limit is {REQUEST_LIMIT}"),
            None,
        );
        body.as_object_mut().unwrap().remove("details");
        return Some(Answer::Json(413, body));
    }
    let key = (t.plural.clone(), t.namespace.clone(), t.name.clone());
    match (seen.method.as_str(), t.name.is_empty()) {
        ("GET", false) => Some(match s.objects.get(&key) {
            Some(o) => Answer::Json(200, o.clone()),
            None => not_found(&kind, &t.name),
        }),
        ("GET", true) if seen.is_watch() => None,
        ("GET", true) => {
            let selector = match seen.param("labelSelector").filter(|l| !l.is_empty()) {
                Some(text) => match parse_selector(&text) {
                    Ok(selector) => Some(selector),
                    // Not recorded: the wording is the fake's.
                    Err(e) => return Some(status(400, "BadRequest", &e, None)),
                },
                None => None,
            };
            // A continued list answers from where the token says, at the token's
            // resourceVersion (163): the fake serves the objects as they are now.
            let (list_rv, start) = match seen.param("continue").filter(|c| !c.is_empty()) {
                Some(token) => match decode_continue(&token) {
                    Ok((rv, start)) => (rv, Some(start)),
                    Err(e) => {
                        let mut body =
                            failure(400, "BadRequest", &format!("invalid continue token: {e}"), None);
                        body.as_object_mut().unwrap().remove("details");
                        return Some(Answer::Json(400, body));
                    }
                },
                None => (s.rv, None),
            };
            let limit = seen.param("limit").and_then(|l| l.parse::<usize>().ok()).filter(|l| *l > 0);
            // A continued list is the snapshot at the token's version, whatever was written
            // since (166: the server reads it from its watch cache).
            let stored: Vec<(String, Value)> = match start {
                Some(_) => snapshot(s, &t.plural, &t.namespace, list_rv),
                None => s
                    .objects
                    .iter()
                    .filter(|((p, ns, _), _)| *p == t.plural && *ns == t.namespace)
                    .map(|((_, _, name), o)| (name.clone(), o.clone()))
                    .collect(),
            };
            let mut items: Vec<(String, Value)> = stored
                .into_iter()
                .filter(|(name, o)| {
                    listed_name.as_ref().is_none_or(|w| w == name)
                        && start.as_ref().is_none_or(|from| name.as_str() >= from.as_str())
                        && selector.as_ref().is_none_or(|sel| selects(sel, &o["metadata"]["labels"]))
                })
                .collect();
            // In etcd's key order, by name.
            items.sort_by(|a, b| a.0.cmp(&b.0));
            let total = items.len();
            let mut next = None;
            if let Some(limit) = limit.filter(|l| total > *l) {
                items.truncate(limit);
                // The token names the key after the last item (`name` and a NUL).
                next =
                    Some((encode_continue(list_rv, &format!("{}\u{0}", items[limit - 1].0)), total - limit));
            }
            let items: Vec<Value> = items
                .into_iter()
                .map(|(_, mut o)| {
                    // Built-in kinds' list items start at metadata (recordings 32, 39, 41).
                    if !kind.custom {
                        if let Some(m) = o.as_object_mut() {
                            m.remove("kind");
                            m.remove("apiVersion");
                        }
                    }
                    o
                })
                .collect();
            let mut metadata = json!({"resourceVersion": list_rv.to_string()});
            match next {
                Some((token, remaining)) => {
                    metadata["continue"] = json!(token);
                    // With a selector the server cannot count what remains, and says nothing.
                    if selector.is_none() && listed_name.is_none() {
                        metadata["remainingItemCount"] = json!(remaining);
                    }
                }
                // The last page has neither (164); a custom resource's list says "" (57).
                None if kind.custom => metadata["continue"] = json!(""),
                None => {}
            }
            Some(Answer::Json(
                200,
                json!({"kind": format!("{}List", kind.kind), "apiVersion": kind.api_version(),
                       "metadata": metadata, "items": items}),
            ))
        }
        ("PATCH", false) => Some(patch(seen, s, &t, &kind)),
        ("POST", true) => Some(create(seen, s, &t, &kind)),
        ("PUT", false) if t.subresource.is_none() => Some(update(seen, s, &t, &kind)),
        ("DELETE", false) => Some(match s.objects.get(&key).cloned() {
            Some(stored) => {
                // DeleteOptions' preconditions: the uid first (117), then the version (118).
                let options = serde_json::from_str::<Value>(&seen.body).unwrap_or(Value::Null);
                let conflict = |what: &str, sent: &str, record: &str, might: &str| {
                    let mut d = details(&kind, Some(&t.name));
                    d["kind"] = json!(kind.kind);
                    status(
                        409,
                        "Conflict",
                        &format!(
                            "Operation cannot be fulfilled on {} \"{}\": the {what} in the precondition ({sent}) does not match the {what} in record ({record}). The object might have been {might}",
                            kind.qualified_kind(),
                            t.name
                        ),
                        Some(d),
                    )
                };
                let stored_uid = stored["metadata"]["uid"].as_str().unwrap_or("").to_string();
                let stored_rv = stored["metadata"]["resourceVersion"].as_str().unwrap_or("").to_string();
                if let Some(uid) = options.pointer("/preconditions/uid").and_then(Value::as_str) {
                    if uid != stored_uid {
                        return Some(conflict("UID", uid, &stored_uid, "deleted and then recreated"));
                    }
                }
                if let Some(rv) = options.pointer("/preconditions/resourceVersion").and_then(Value::as_str) {
                    if rv != stored_rv {
                        return Some(conflict("ResourceVersion", rv, &stored_rv, "modified"));
                    }
                }
                // Gone at once: no finalizers, no Terminating phase here.
                let mut object = s.objects.remove(&key).unwrap();
                s.rv += 1;
                object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
                s.changes.push((s.rv, key.0, key.1, key.2, "DELETED", object));
                let mut d = details(&kind, Some(&t.name));
                if !stored_uid.is_empty() {
                    d["uid"] = json!(stored_uid);
                }
                Answer::Json(
                    200,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                           "details": d}),
                )
            }
            None => not_found(&kind, &t.name),
        }),
        _ => Some(status(405, "MethodNotAllowed", "not in the fake", None)),
    }
}

fn discovery(group: &str, version: &str, s: &State) -> Answer {
    let resources: Vec<Value> = s
        .kinds
        .iter()
        .filter(|k| k.group == group && k.version == version)
        .flat_map(|k| {
            let main = json!({"name": k.plural, "singularName": k.kind.to_lowercase(), "namespaced": k.namespaced,
                   "kind": k.kind, "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]});
            let status = json!({"name": format!("{}/status", k.plural), "singularName": "", "namespaced": k.namespaced,
                   "kind": k.kind, "verbs": ["get", "patch", "update"]});
            if k.has_status() {
                vec![main, status]
            } else {
                vec![main]
            }
        })
        .collect();
    if resources.is_empty() {
        if group.is_empty() || s.kinds.iter().any(|k| k.group == group) {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Some(json!({})),
            );
        }
        return page_not_found();
    }
    let gv = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Answer::Json(
        200,
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// `details` naming an object: `{name, group, kind}`, no group for the core group.
fn details(kind: &Kind, name: Option<&str>) -> Value {
    let mut d = Map::new();
    if let Some(name) = name {
        d.insert("name".into(), json!(name));
    }
    if !kind.group.is_empty() {
        d.insert("group".into(), json!(kind.group));
    }
    d.insert("kind".into(), json!(kind.plural));
    Value::Object(d)
}

fn not_found(kind: &Kind, name: &str) -> Answer {
    status(
        404,
        "NotFound",
        &format!("{} \"{name}\" not found", kind.qualified()),
        Some(details(kind, Some(name))),
    )
}

/// RBAC's refusal, worded as recordings 60–64 and 68 are.
fn forbidden(
    s: &State,
    kind: &Kind,
    t: &Target,
    verb: &str,
    listed: Option<&str>,
    user: &str,
) -> Option<Answer> {
    let denied = |verb: &str| denies(s, user, verb, &kind.plural);
    let mut verb = verb;
    if !denied(verb) {
        // An apply that would create needs `create` too (68).
        let missing = !s.objects.contains_key(&(t.plural.clone(), t.namespace.clone(), t.name.clone()));
        if verb == "patch" && missing && denied("create") {
            verb = "create";
        } else {
            return None;
        }
    }
    let name = if t.name.is_empty() { listed } else { Some(t.name.as_str()) };
    let subject = match name {
        Some(n) => format!("{} \"{n}\"", kind.qualified()),
        None => kind.qualified(),
    };
    let scope = if kind.namespaced {
        format!("in the namespace \"{}\"", t.namespace)
    } else {
        "at the cluster scope".to_string()
    };
    let message = format!(
        "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
        kind.plural, kind.group
    );
    Some(status(403, "Forbidden", &message, Some(details(kind, name))))
}

fn parse_body(text: &str) -> Result<Value, String> {
    serde_json::from_str(text).or_else(|_| serde_saphyr::from_str::<Value>(text).map_err(|e| e.to_string()))
}

fn patch(seen: &Seen, s: &mut State, t: &Target, kind: &Kind) -> Answer {
    let body = match parse_body(&seen.body) {
        Ok(v) => v,
        Err(e) => return status(400, "BadRequest", &format!("error decoding patch: {e}"), None),
    };
    let dry_run = seen.param("dryRun").as_deref() == Some("All");
    if seen.content_type.starts_with("application/json-patch+json") {
        return json_patch(s, t, kind, &body, dry_run);
    }
    if seen.content_type.starts_with("application/merge-patch+json") {
        // Without a fieldManager the server names the manager after the User-Agent (81).
        let manager = manager_of(seen);
        return merge_patch(s, t, kind, &body, &manager, dry_run);
    }
    if !seen.content_type.starts_with("application/apply-patch") {
        return status(415, "UnsupportedMediaType", "the fake answers apply and JSON patches only", None);
    }
    let Some(manager) = seen.param("fieldManager") else {
        return status(
            400,
            "BadRequest",
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch",
            None,
        );
    };
    // Not recorded: the server's limit on the manager's length (apimachinery's
    // ValidateFieldManager, 128 bytes); the wording here is the fake's.
    if manager.len() > 128 {
        return status(
            422,
            "Invalid",
            &format!("PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Too long: may not be more than 128 bytes (got {})", manager.len()),
            Some(json!({"group": "meta.k8s.io", "kind": "PatchOptions"})),
        );
    }
    let force = seen.param("force").as_deref() == Some("true");
    let (code, body) = apply(s, t, kind, &manager, force, dry_run, body);
    Answer::Json(code, body)
}

/// A JSON merge patch (RFC 7386) of the object, or of its `status` for the status
/// subresource. A `metadata.resourceVersion` in it must be the stored one (134). The fields
/// it sets move to `manager`'s `Update` entry without any conflict; a manager left owning
/// nothing disappears (56, 81).
fn merge_patch(s: &mut State, t: &Target, kind: &Kind, body: &Value, manager: &str, dry_run: bool) -> Answer {
    fn merge(target: &mut Value, patch: &Value) {
        match (target.as_object_mut(), patch.as_object()) {
            (Some(t), Some(p)) => {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
            _ => *target = patch.clone(),
        }
    }
    let key = (t.plural.clone(), t.namespace.clone(), t.name.clone());
    let Some(previous) = s.objects.get(&key).cloned() else { return not_found(kind, &t.name) };
    if let Some(rv) = body.pointer("/metadata/resourceVersion") {
        if *rv != previous["metadata"]["resourceVersion"] {
            return modified(kind, &t.name);
        }
    }
    let mut object = previous.clone();
    match t.subresource.as_deref() {
        Some("status") => merge(&mut object["status"], &body["status"]),
        Some(_) => {
            return status(
                404,
                "NotFound",
                "the server could not find the requested resource",
                Some(json!({})),
            )
        }
        None => merge(&mut object, body),
    }
    if object == previous || dry_run {
        return Answer::Json(200, object);
    }
    // Ownership: what the patch sets is the patching manager's now.
    let mut set: BTreeSet<FieldPath> = BTreeSet::new();
    let patched = match t.subresource.as_deref() {
        Some("status") => json!({"status": body["status"].clone()}),
        _ => body.clone(),
    };
    collect_leaves(&patched, &mut Vec::new(), &mut set);
    set.retain(|p| {
        p.first().map(String::as_str) != Some("metadata")
            || p.get(1).map(String::as_str) != Some("resourceVersion")
    });
    let mut owners = owners_of(&previous);
    for o in owners.iter_mut() {
        o.fields.retain(|f| !set.iter().any(|p| overlaps(f, p)));
    }
    let subresource = t.subresource.clone();
    match owners
        .iter_mut()
        .find(|o| o.manager == manager && o.operation == "Update" && o.subresource == subresource)
    {
        Some(o) => o.fields.extend(set),
        None => owners.push(Owner {
            manager: manager.into(),
            operation: "Update".into(),
            api_version: kind.api_version(),
            time: now(),
            subresource,
            fields: set,
        }),
    }
    owners.retain(|o| !o.fields.is_empty());
    write_owners(&mut object, &owners);
    s.rv += 1;
    object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
    s.store(key, object.clone(), false);
    Answer::Json(200, object)
}

/// Leaf paths of a patch: maps walked, anything else (and `null`, a removal) a leaf.
fn collect_leaves(v: &Value, at: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    match v.as_object() {
        Some(map) if !map.is_empty() => {
            for (k, child) in map {
                at.push(k.clone());
                collect_leaves(child, at, out);
                at.pop();
            }
        }
        _ if !at.is_empty() => {
            out.insert(at.clone());
        }
        _ => {}
    }
}

/// Writes the ownership sets back as `metadata.managedFields` (none when nobody owns a field).
fn write_owners(object: &mut Value, owners: &[Owner]) {
    if owners.is_empty() {
        object["metadata"].as_object_mut().unwrap().remove("managedFields");
        return;
    }
    // The server lists Apply entries before Update ones (116); otherwise in the order made.
    let mut owners = owners.to_vec();
    owners.sort_by(|a, b| a.operation.cmp(&b.operation));
    object["metadata"]["managedFields"] = Value::Array(
        owners
            .iter()
            .map(|o| {
                let mut e = json!({"manager": o.manager, "operation": o.operation, "apiVersion": o.api_version,
                                   "time": o.time, "fieldsType": "FieldsV1", "fieldsV1": encode_fields(&o.fields)});
                if let Some(sub) = &o.subresource {
                    e["subresource"] = json!(sub);
                }
                e
            })
            .collect(),
    );
}

/// A JSON patch (RFC 6902): `test`, `replace`, `add`, `remove`. A failed test is the
/// generic 422 of recording 136.
fn json_patch(s: &mut State, t: &Target, kind: &Kind, ops: &Value, dry_run: bool) -> Answer {
    let key = (t.plural.clone(), t.namespace.clone(), t.name.clone());
    if s.write_before_json_patch && s.objects.contains_key(&key) {
        s.rv += 1;
        let rv = s.rv.to_string();
        s.objects.get_mut(&key).unwrap()["metadata"]["resourceVersion"] = json!(rv);
    }
    let Some(previous) = s.objects.get(&key).cloned() else { return not_found(kind, &t.name) };
    let rejected = || {
        status(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request",
            Some(json!({})),
        )
    };
    let mut object = previous.clone();
    for op in ops.as_array().into_iter().flatten() {
        let path = op["path"].as_str().unwrap_or("");
        let (parent_path, last) = path.rsplit_once('/').unwrap_or(("", path));
        let last = last.replace("~1", "/").replace("~0", "~");
        match op["op"].as_str().unwrap_or("") {
            "test" => {
                if object.pointer(path) != Some(&op["value"]) {
                    return rejected();
                }
            }
            "replace" | "add" => {
                let Some(parent) = object.pointer_mut(parent_path).and_then(Value::as_object_mut) else {
                    return rejected();
                };
                if op["op"] == "replace" && !parent.contains_key(&last) {
                    return rejected();
                }
                parent.insert(last, op["value"].clone());
            }
            "remove" => {
                let Some(parent) = object.pointer_mut(parent_path).and_then(Value::as_object_mut) else {
                    return rejected();
                };
                if parent.remove(&last).is_none() {
                    return rejected();
                }
            }
            _ => return rejected(),
        }
    }
    if object == previous {
        return Answer::Json(200, previous);
    }
    // `[{}]` strips managedFields; an empty list changes nothing (so that clients unaware
    // of the field cannot strip it), as the server does.
    match object.pointer("/metadata/managedFields").and_then(Value::as_array) {
        Some(list) if list.is_empty() => {
            object["metadata"]["managedFields"] = previous["metadata"]["managedFields"].clone();
        }
        Some(list) if list.len() == 1 && list[0].as_object().is_some_and(Map::is_empty) => {
            object["metadata"].as_object_mut().unwrap().remove("managedFields");
        }
        _ => {}
    }
    if object == previous {
        return Answer::Json(200, previous);
    }
    if !dry_run {
        s.rv += 1;
        object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
        s.store(key, object.clone(), false);
    }
    Answer::Json(200, object)
}

/// A path of map keys from the object's root: `["metadata", "labels", "team"]`.
type FieldPath = Vec<String>;

/// One `managedFields` entry, its fieldsV1 decoded into leaf paths.
#[derive(Debug, Clone)]
struct Owner {
    manager: String,
    operation: String,
    api_version: String,
    time: String,
    subresource: Option<String>,
    fields: BTreeSet<FieldPath>,
}

fn owners_of(object: &Value) -> Vec<Owner> {
    let entries = object.pointer("/metadata/managedFields").and_then(Value::as_array);
    entries
        .into_iter()
        .flatten()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or("").to_string();
            let mut fields = BTreeSet::new();
            decode_fields(&e["fieldsV1"], &mut Vec::new(), &mut fields);
            Owner {
                manager: text("manager"),
                operation: text("operation"),
                api_version: text("apiVersion"),
                time: text("time"),
                subresource: e["subresource"].as_str().map(String::from),
                fields,
            }
        })
        .collect()
}

/// `{"f:data": {"f:a": {}}}` → `[["data", "a"]]`. A list's `k:`/`v:`/`i:` entries make the
/// list itself the leaf: the fake treats lists as atomic.
fn decode_fields(tree: &Value, at: &mut FieldPath, out: &mut BTreeSet<FieldPath>) {
    let Some(map) = tree.as_object() else { return };
    let children: Vec<(&String, &Value)> = map.iter().filter(|(k, _)| k.starts_with("f:")).collect();
    let list_entries = map.keys().any(|k| k.starts_with("k:") || k.starts_with("v:") || k.starts_with("i:"));
    if (children.is_empty() || list_entries) && !at.is_empty() {
        out.insert(at.clone());
        return;
    }
    for (k, v) in children {
        at.push(k[2..].to_string());
        decode_fields(v, at, out);
        at.pop();
    }
}

fn encode_fields(fields: &BTreeSet<FieldPath>) -> Value {
    let mut root = json!({});
    for path in fields {
        let mut node = &mut root;
        for key in path {
            node = node.as_object_mut().unwrap().entry(format!("f:{key}")).or_insert_with(|| json!({}));
        }
    }
    root
}

/// The leaves of what a manager sent, with their values; maps are walked, lists and scalars
/// (and empty maps) are leaves. Identity and bookkeeping are nobody's field.
fn leaves(body: &Value, kind: &Kind) -> Vec<(FieldPath, Value)> {
    fn walk(v: &Value, at: &mut FieldPath, out: &mut Vec<(FieldPath, Value)>) {
        match v.as_object() {
            Some(map) if !map.is_empty() => {
                for (k, child) in map {
                    at.push(k.clone());
                    walk(child, at, out);
                    at.pop();
                }
            }
            _ => out.push((at.clone(), v.clone())),
        }
    }
    let mut out = Vec::new();
    let Some(map) = body.as_object() else { return out };
    for (k, v) in map {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "status" if kind.has_status() => {}
            "metadata" => {
                for (mk, mv) in v.as_object().into_iter().flatten() {
                    if matches!(
                        mk.as_str(),
                        "name"
                            | "namespace"
                            | "resourceVersion"
                            | "uid"
                            | "creationTimestamp"
                            | "managedFields"
                            | "generation"
                    ) {
                        continue;
                    }
                    let mut at = vec!["metadata".to_string(), mk.clone()];
                    walk(mv, &mut at, &mut out);
                }
            }
            _ => walk(v, &mut vec![k.clone()], &mut out),
        }
    }
    out
}

fn get_path<'a>(object: &'a Value, path: &FieldPath) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, key| node.get(key))
}

fn set_path(object: &mut Value, path: &FieldPath, value: Value) {
    let mut node = object;
    for key in &path[..path.len() - 1] {
        if !node.get(key).is_some_and(Value::is_object) {
            node[key.as_str()] = json!({});
        }
        node = node.get_mut(key).unwrap();
    }
    node[path[path.len() - 1].as_str()] = value;
}

/// Removes the field and the maps it leaves empty (not the top-level ones).
fn remove_path(object: &mut Value, path: &FieldPath) {
    fn go(node: &mut Value, path: &[String], depth: usize) {
        let Some(map) = node.as_object_mut() else { return };
        if path.len() == 1 {
            map.remove(&path[0]);
            return;
        }
        if let Some(child) = map.get_mut(&path[0]) {
            go(child, &path[1..], depth + 1);
            if depth > 0 && child.as_object().is_some_and(Map::is_empty) {
                map.remove(&path[0]);
            }
        }
    }
    go(object, path, 0);
}

fn overlaps(a: &FieldPath, b: &FieldPath) -> bool {
    a.starts_with(b) || b.starts_with(a)
}

fn now() -> String {
    jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

const SUBDOMAIN_RULE: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Server-side apply of `body` by `manager`; the status code and the answer.
fn apply(
    s: &mut State,
    t: &Target,
    kind: &Kind,
    manager: &str,
    force: bool,
    dry_run: bool,
    body: Value,
) -> (u16, Value) {
    let unwrap = |a: Answer| match a {
        Answer::Json(code, v) => (code, v),
        Answer::Text(code, text) => (code, Value::String(text)),
    };
    // The typed object is built from the schema first: a field at the wrong level is a 500
    // with no reason and no details (recordings 75, 76).
    if let (Some(declared), Some(map)) = (kind.top_level_fields(), body.as_object()) {
        if let Some(field) = map.keys().find(|k| !declared.contains(&k.as_str())) {
            let gv = if kind.group.is_empty() { format!("/{}", kind.version) } else { kind.api_version() };
            let message = format!(
                "failed to create typed patch object ({}/{}; {gv}, Kind={}): .{field}: field not declared in schema",
                t.namespace, t.name, kind.kind
            );
            let mut body = failure(500, "", &message, None);
            body.as_object_mut().unwrap().remove("reason");
            return (500, body);
        }
    }
    if !is_dns_subdomain(&t.name) {
        let invalid = format!("Invalid value: \"{}\": {SUBDOMAIN_RULE}", t.name);
        return unwrap(status(
            422,
            "Invalid",
            &format!("{} \"{}\" is invalid: metadata.name: {invalid}", kind.kind, t.name),
            Some(json!({"name": t.name, "kind": kind.kind,
                         "causes": [{"reason": "FieldValueInvalid", "message": invalid, "field": "metadata.name"}]})),
        ));
    }
    if kind.kind == "Service" {
        for (i, port) in
            body.pointer("/spec/ports").and_then(Value::as_array).into_iter().flatten().enumerate()
        {
            let number = port["port"].as_i64().unwrap_or(0);
            if !(1..=65535).contains(&number) {
                let invalid = format!("Invalid value: {number}: must be between 1 and 65535, inclusive");
                let field = format!("spec.ports[{i}].port");
                return unwrap(status(
                    422,
                    "Invalid",
                    &format!("Service \"{}\" is invalid: {field}: {invalid}", t.name),
                    Some(json!({"name": t.name, "kind": "Service",
                                 "causes": [{"reason": "FieldValueInvalid", "message": invalid, "field": field}]})),
                ));
            }
        }
    }
    if kind.namespaced && !s.objects.contains_key(&("namespaces".into(), String::new(), t.namespace.clone()))
    {
        // Apply into a namespace that does not exist names the namespace (17).
        return (
            404,
            failure(
                404,
                "NotFound",
                &format!("namespaces \"{}\" not found", t.namespace),
                Some(json!({"name": t.namespace, "kind": "namespaces"})),
            ),
        );
    }
    let key = (t.plural.clone(), t.namespace.clone(), t.name.clone());
    let previous = s.objects.get(&key).cloned();
    // A resourceVersion in an apply makes it a compare-and-swap on an existing object (114);
    // on a missing one it is not checked (121).
    if let (Some(rv), Some(live)) =
        (body.pointer("/metadata/resourceVersion").and_then(Value::as_str), &previous)
    {
        if !rv.is_empty() && live["metadata"]["resourceVersion"].as_str() != Some(rv) {
            return unwrap(modified(kind, &t.name));
        }
    }
    let mut owners = previous.as_ref().map(owners_of).unwrap_or_default();
    let sent = leaves(&body, kind);
    let sent_paths: BTreeSet<FieldPath> = sent.iter().map(|(p, _)| p.clone()).collect();
    let is_me = |o: &Owner| o.manager == manager && o.operation == "Apply" && o.subresource.is_none();

    // Conflicts: a different value on a field another manager owns.
    let mut conflicts: Vec<(String, FieldPath)> = Vec::new();
    if let Some(live) = &previous {
        for (path, value) in &sent {
            if get_path(live, path) == Some(value) {
                continue;
            }
            for o in owners.iter().filter(|o| !is_me(o)) {
                if let Some(owned) = o.fields.iter().find(|f| overlaps(f, path)) {
                    let who = if o.operation == "Apply" {
                        format!("\"{}\"", o.manager)
                    } else {
                        format!("\"{}\" using {}", o.manager, o.api_version)
                    };
                    let field = if owned.len() > path.len() { owned } else { path };
                    if !conflicts.iter().any(|(w, f)| *w == who && f == field) {
                        conflicts.push((who, field.clone()));
                    }
                }
            }
        }
    }
    if !conflicts.is_empty() && !force {
        // Listed by manager, then field (115).
        conflicts.sort();
        let dotted = |p: &FieldPath| format!(".{}", p.join("."));
        let mut by_manager: Vec<(String, Vec<String>)> = Vec::new();
        for (who, field) in &conflicts {
            match by_manager.iter_mut().find(|(w, _)| w == who) {
                Some((_, fields)) => fields.push(dotted(field)),
                None => by_manager.push((who.clone(), vec![dotted(field)])),
            }
        }
        let n = conflicts.len();
        let detail = if n == 1 {
            format!("conflict with {}: {}", conflicts[0].0, dotted(&conflicts[0].1))
        } else {
            by_manager
                .iter()
                .map(|(who, fields)| {
                    if fields.len() == 1 {
                        format!("conflict with {who}: {}", fields[0])
                    } else {
                        let lines: Vec<String> = fields.iter().map(|f| format!("- {f}")).collect();
                        format!("conflicts with {who}:\n{}", lines.join("\n"))
                    }
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let plural = if n == 1 { "" } else { "s" };
        let causes: Vec<Value> = conflicts
            .iter()
            .map(|(who, field)| {
                json!({"reason": "FieldManagerConflict", "message": format!("conflict with {who}"), "field": dotted(field)})
            })
            .collect();
        return (
            409,
            failure(
                409,
                "Conflict",
                &format!("Apply failed with {n} conflict{plural}: {detail}"),
                Some(json!({"causes": causes})),
            ),
        );
    }
    // Forced: the fields move to this manager.
    let differs = |p: &FieldPath, v: &Value| previous.as_ref().and_then(|l| get_path(l, p)) != Some(v);
    for o in owners.iter_mut().filter(|o| !is_me(o)) {
        o.fields.retain(|f| !sent.iter().any(|(p, v)| overlaps(f, p) && differs(p, v)));
    }

    let created = previous.is_none();
    let mut object = previous.clone().unwrap_or_else(|| {
        let mut o =
            json!({"kind": kind.kind, "apiVersion": kind.api_version(), "metadata": {"name": t.name}});
        if kind.namespaced {
            o["metadata"]["namespace"] = json!(t.namespace);
        }
        o
    });
    // Fields this manager owned and no longer sends go, unless someone else owns them too.
    let mine_before: BTreeSet<FieldPath> =
        owners.iter().filter(|o| is_me(o)).flat_map(|o| o.fields.iter().cloned()).collect();
    for dropped in mine_before.difference(&sent_paths) {
        let shared = owners.iter().any(|o| !is_me(o) && o.fields.iter().any(|f| overlaps(f, dropped)));
        if !shared {
            remove_path(&mut object, dropped);
        }
    }
    for (path, value) in &sent {
        set_path(&mut object, path, value.clone());
    }
    if created {
        defaults(&mut object, kind, &t.name);
    }
    // The new ownership: this manager's Apply entry holds exactly what it sent.
    let stamp = now();
    match owners.iter_mut().find(|o| is_me(o)) {
        Some(me) => me.fields = sent_paths.clone(),
        None => owners.push(Owner {
            manager: manager.into(),
            operation: "Apply".into(),
            api_version: kind.api_version(),
            time: stamp.clone(),
            subresource: None,
            fields: sent_paths.clone(),
        }),
    }
    owners.retain(|o| !o.fields.is_empty());

    let content = |o: &Value| {
        let mut o = o.clone();
        if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
            m.remove("resourceVersion");
            m.remove("managedFields");
        }
        o
    };
    if let Some(previous) = &previous {
        let same_owners = {
            let before = owners_of(previous);
            before.len() == owners.len()
                && before.iter().zip(&owners).all(|(a, b)| a.manager == b.manager && a.fields == b.fields)
        };
        if same_owners && content(previous) == content(&object) {
            // A no-op apply writes nothing: resourceVersion and managedFields stay (13).
            return (200, previous.clone());
        }
        // A changed spec is a new generation.
        if previous.get("spec") != object.get("spec") {
            if let Some(g) = previous.pointer("/metadata/generation").and_then(Value::as_i64) {
                object["metadata"]["generation"] = json!(g + 1);
            }
        }
    }
    if let Some(me) = owners.iter_mut().find(|o| is_me(o)) {
        me.time = stamp;
    }
    if let Some(invalid) = validate(kind, &t.name, &object) {
        return unwrap(invalid);
    }
    // Nobody owning anything (a Namespace applied with only its name): no managedFields (10).
    write_owners(&mut object, &owners);
    if dry_run {
        // The would-be object, with the resourceVersion it has now (15).
        match previous.as_ref().map(|p| p["metadata"]["resourceVersion"].clone()) {
            Some(rv) => object["metadata"]["resourceVersion"] = rv,
            None => {
                object["metadata"].as_object_mut().unwrap().remove("resourceVersion");
            }
        }
        return (if created { 201 } else { 200 }, object);
    }
    s.rv += 1;
    object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
    if kind.kind == "CustomResourceDefinition" {
        register_crd(s, &object);
    }
    s.store(key, object.clone(), created);
    (if created { 201 } else { 200 }, object)
}

/// What the server adds to a new object (recordings 10, 30, 51).
fn defaults(object: &mut Value, kind: &Kind, name: &str) {
    // A new uid for every object made, so that one deleted and made again differs (123).
    static UIDS: AtomicU64 = AtomicU64::new(1);
    object["metadata"]["uid"] =
        json!(format!("00000000-0000-4000-8000-{:012x}", UIDS.fetch_add(1, Ordering::Relaxed)));
    object["metadata"]["creationTimestamp"] = json!(now());
    match kind.kind.as_str() {
        "Namespace" => {
            object["metadata"]["labels"]["kubernetes.io/metadata.name"] = json!(name);
            object["spec"] = json!({"finalizers": ["kubernetes"]});
            object["status"] = json!({"phase": "Active"});
        }
        "ConfigMap" | "Lease" => {}
        "Secret" => {
            if object.get("type").is_none() {
                object["type"] = json!("Opaque");
            }
        }
        "CustomResourceDefinition" => {
            object["status"] = json!({"conditions": null, "acceptedNames": {"plural": "", "kind": ""}, "storedVersions": []});
        }
        _ => {
            if object.get("spec").is_some() {
                object["metadata"]["generation"] = json!(1);
            }
            if kind.has_status() {
                object["status"] = json!({});
            }
        }
    }
}

/// A CRD is Established at once here; its kind is served from then on.
fn register_crd(s: &mut State, crd: &Value) {
    let spec = &crd["spec"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let kind = Kind {
        group: text(&spec["group"]),
        version: spec["versions"][0]["name"].as_str().unwrap_or("v1").to_string(),
        kind: text(&spec["names"]["kind"]),
        plural: text(&spec["names"]["plural"]),
        namespaced: spec["scope"].as_str() == Some("Namespaced"),
        custom: true,
    };
    if !s.kinds.iter().any(|k| k.group == kind.group && k.version == kind.version && k.plural == kind.plural)
    {
        s.kinds.push(kind);
    }
}

/// Whether RBAC refuses `verb` on `plural` to `user`.
fn denies(s: &State, user: &str, verb: &str, plural: &str) -> bool {
    s.denied.iter().any(|(who, v, p)| who.as_deref().is_none_or(|w| w == user) && v == verb && p == plural)
}

/// Who am I (150, 151): the user the token stands for; metadata has only a creation time.
fn self_subject_review(user: &User) -> Answer {
    Answer::Json(
        201,
        json!({"kind": "SelfSubjectReview", "apiVersion": "authentication.k8s.io/v1",
               "metadata": {"creationTimestamp": now()},
               "status": {"userInfo": {"username": user.name, "uid": format!("uid-{}", user.name),
                                       "groups": user.groups}}}),
    )
}

/// May I (152, 153): 201 either way, `status: {allowed}` and nothing else; the spec echoed,
/// with managedFields naming the client (no creationTimestamp).
fn self_subject_access_review(seen: &Seen, s: &State, user: &User) -> Answer {
    let body = parse_body(&seen.body).unwrap_or(Value::Null);
    let spec = body["spec"].clone();
    let attributes = &spec["resourceAttributes"];
    let text = |k: &str| attributes[k].as_str().unwrap_or("").to_string();
    let allowed = !denies(s, &user.name, &text("verb"), &text("resource"));
    let mut fields = BTreeSet::new();
    collect_leaves(&json!({"spec": spec}), &mut Vec::new(), &mut fields);
    let owner = Owner {
        manager: manager_of(seen),
        operation: "Update".into(),
        api_version: "authorization.k8s.io/v1".into(),
        time: now(),
        subresource: None,
        fields,
    };
    let mut answer = json!({"kind": "SelfSubjectAccessReview", "apiVersion": "authorization.k8s.io/v1",
                            "metadata": {}, "spec": spec, "status": {"allowed": allowed}});
    write_owners(&mut answer, &[owner]);
    Answer::Json(201, answer)
}

/// The `fieldManager` parameter, else the User-Agent's product (`curl`, 81, 152).
fn manager_of(seen: &Seen) -> String {
    seen.param("fieldManager").unwrap_or_else(|| {
        let product = seen.user_agent.split('/').next().unwrap_or("");
        if product.is_empty() {
            "unknown".to_string()
        } else {
            product.to_string()
        }
    })
}

/// A write into a namespace that does not exist names the namespace (17).
fn missing_namespace(s: &State, kind: &Kind, namespace: &str) -> Option<Answer> {
    if !kind.namespaced || s.objects.contains_key(&("namespaces".into(), String::new(), namespace.into())) {
        return None;
    }
    Some(status(
        404,
        "NotFound",
        &format!("namespaces \"{namespace}\" not found"),
        Some(json!({"name": namespace, "kind": "namespaces"})),
    ))
}

/// A write carrying a resourceVersion that is not the stored one (105, 114, 132, 134).
fn modified(kind: &Kind, name: &str) -> Answer {
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            kind.qualified()
        ),
        Some(details(kind, Some(name))),
    )
}

/// A PUT whose uid is not the stored object's (none: the object is gone), worded as the
/// storage layer does (120).
fn uid_precondition_failed(kind: &Kind, t: &Target, sent: &str, stored: &str) -> Answer {
    let key = if kind.namespaced {
        format!("/registry/{}/{}/{}", kind.plural, t.namespace, t.name)
    } else {
        format!("/registry/{}/{}", kind.plural, t.name)
    };
    status(
        409,
        "Conflict",
        &format!(
            "Operation cannot be fulfilled on {} \"{}\": StorageError: invalid object, Code: 4, Key: {key}, ResourceVersion: 0, AdditionalErrorMsg: Precondition failed: UID in precondition: {sent}, UID in object meta: {stored}",
            kind.qualified(),
            t.name
        ),
        Some(details(kind, Some(&t.name))),
    )
}

/// Validation of a whole object: the name, a Lease's numbers (109), the 1 MiB of a
/// ConfigMap's (139) or a Secret's (142) data. Several errors are listed in brackets.
fn validate(kind: &Kind, name: &str, object: &Value) -> Option<Answer> {
    let mut errors: Vec<(String, &str, String)> = Vec::new(); // (field, reason, message)
    if !is_dns_subdomain(name) {
        errors.push((
            "metadata.name".into(),
            "FieldValueInvalid",
            format!("Invalid value: \"{name}\": {SUBDOMAIN_RULE}"),
        ));
    }
    match kind.kind.as_str() {
        "Lease" => {
            if let Some(d) = object.pointer("/spec/leaseDurationSeconds").and_then(Value::as_i64) {
                if d <= 0 {
                    errors.push((
                        "spec.leaseDurationSeconds".into(),
                        "FieldValueInvalid",
                        format!("Invalid value: {d}: must be greater than 0"),
                    ));
                }
            }
            if let Some(n) = object.pointer("/spec/leaseTransitions").and_then(Value::as_i64) {
                if n < 0 {
                    errors.push((
                        "spec.leaseTransitions".into(),
                        "FieldValueInvalid",
                        format!("Invalid value: {n}: must be greater than or equal to 0"),
                    ));
                }
            }
        }
        "ConfigMap" => {
            // Values count, keys do not; binaryData counts decoded.
            let text: usize = object["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| v.as_str().map_or(0, str::len))
                .sum();
            let binary: usize = object["binaryData"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| decoded_len(v.as_str().unwrap_or("")))
                .sum();
            if text + binary > OBJECT_DATA_LIMIT {
                errors.push((
                    "[]".into(),
                    "FieldValueTooLong",
                    format!("Too long: may not be more than {OBJECT_DATA_LIMIT} bytes"),
                ));
            }
        }
        "Secret" => {
            let size: usize = object["data"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(_, v)| decoded_len(v.as_str().unwrap_or("")))
                .sum();
            if size > OBJECT_DATA_LIMIT {
                errors.push((
                    "data".into(),
                    "FieldValueTooLong",
                    format!("Too long: may not be more than {OBJECT_DATA_LIMIT} bytes"),
                ));
            }
        }
        _ => {}
    }
    if errors.is_empty() {
        return None;
    }
    let listed: Vec<String> = errors.iter().map(|(f, _, m)| format!("{f}: {m}")).collect();
    let listed = if listed.len() == 1 { listed[0].clone() } else { format!("[{}]", listed.join(", ")) };
    let causes: Vec<Value> =
        errors.iter().map(|(f, r, m)| json!({"reason": r, "message": m, "field": f})).collect();
    let mut d = details(kind, Some(name));
    d["kind"] = json!(kind.kind);
    d["causes"] = json!(causes);
    Some(status(
        422,
        "Invalid",
        &format!("{} \"{name}\" is invalid: {listed}", kind.qualified_kind()),
        Some(d),
    ))
}

/// The bytes a standard base64 text decodes to.
fn decoded_len(text: &str) -> usize {
    let pad = text.bytes().rev().take_while(|b| *b == b'=').count();
    (text.len() / 4 * 3 + [0, 0, 1, 2][text.len() % 4]).saturating_sub(pad)
}

/// What a create keeps of the sent object: the server owns uid, resourceVersion,
/// creationTimestamp, generation and managedFields.
fn fresh_object(kind: &Kind, namespace: &str, name: &str, body: &Value) -> Value {
    let mut object = body.clone();
    object["kind"] = json!(kind.kind);
    object["apiVersion"] = json!(kind.api_version());
    let metadata = object["metadata"].as_object_mut().unwrap();
    for k in ["uid", "resourceVersion", "creationTimestamp", "generation", "managedFields"] {
        metadata.remove(k);
    }
    metadata.insert("name".into(), json!(name));
    if kind.namespaced {
        metadata.insert("namespace".into(), json!(namespace));
    }
    if kind.has_status() {
        object.as_object_mut().unwrap().remove("status");
    }
    defaults(&mut object, kind, name);
    object
}

/// The sent object's fields, owned by `manager`'s Update entry (102, 130).
fn update_owner(kind: &Kind, manager: &str, fields: BTreeSet<FieldPath>) -> Owner {
    Owner {
        manager: manager.into(),
        operation: "Update".into(),
        api_version: kind.api_version(),
        time: now(),
        subresource: None,
        fields,
    }
}

/// Stores a new object made by POST or by a PUT of a missing Lease: 201.
fn store_created(
    s: &mut State,
    kind: &Kind,
    key: (String, String, String),
    mut object: Value,
    manager: &str,
    dry_run: bool,
) -> Answer {
    if let Some(invalid) = validate(kind, &key.2, &object) {
        return invalid;
    }
    let fields: BTreeSet<FieldPath> = leaves(&object, kind).into_iter().map(|(p, _)| p).collect();
    write_owners(&mut object, &[update_owner(kind, manager, fields)]);
    if dry_run {
        return Answer::Json(201, object);
    }
    s.rv += 1;
    object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
    s.store(key, object.clone(), true);
    Answer::Json(201, object)
}

/// POST: creates, or 409 AlreadyExists (110).
fn create(seen: &Seen, s: &mut State, t: &Target, kind: &Kind) -> Answer {
    let body = match parse_body(&seen.body) {
        Ok(v) if v.is_object() => v,
        _ => return status(400, "BadRequest", "the fake could not decode the object", None),
    };
    let name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("").to_string();
    if name.is_empty() {
        // Not recorded; generateName is not in the fake.
        return status(
            422,
            "Invalid",
            &format!(
                "{} \"\" is invalid: metadata.name: Required value: name or generateName is required",
                kind.kind
            ),
            Some(json!({"kind": kind.kind, "causes": [{"reason": "FieldValueRequired",
                "message": "Required value: name or generateName is required", "field": "metadata.name"}]})),
        );
    }
    if let Some(missing) = missing_namespace(s, kind, &t.namespace) {
        return missing;
    }
    // Validation comes before storage: an invalid object is a 422 even if the name is
    // taken (142 after 141).
    let object = fresh_object(kind, &t.namespace, &name, &body);
    if let Some(invalid) = validate(kind, &name, &object) {
        return invalid;
    }
    let key = (t.plural.clone(), t.namespace.clone(), name.clone());
    if s.objects.contains_key(&key) {
        return status(
            409,
            "AlreadyExists",
            &format!("{} \"{name}\" already exists", kind.qualified()),
            Some(details(kind, Some(&name))),
        );
    }
    if body.pointer("/metadata/resourceVersion").and_then(Value::as_str).is_some_and(|v| !v.is_empty()) {
        // Not recorded: the storage layer's refusal, an InternalError.
        return status(
            500,
            "InternalError",
            "resourceVersion should not be set on objects to be created",
            None,
        );
    }
    let dry_run = seen.param("dryRun").as_deref() == Some("All");
    store_created(s, kind, key, object, &manager_of(seen), dry_run)
}

/// PUT: replaces the object if the resourceVersion sent is the stored one (104, 105); a
/// Lease wants one (106); a missing Lease is created (123) unless a uid is sent (120); a
/// missing ConfigMap is a 404 (138). An update that changes nothing writes nothing.
fn update(seen: &Seen, s: &mut State, t: &Target, kind: &Kind) -> Answer {
    let body = match parse_body(&seen.body) {
        Ok(v) if v.is_object() => v,
        _ => return status(400, "BadRequest", "the fake could not decode the object", None),
    };
    let sent_name = body.pointer("/metadata/name").and_then(Value::as_str).unwrap_or("");
    if sent_name != t.name {
        // Not recorded: the wording is apiserver's.
        return status(
            400,
            "BadRequest",
            &format!("the name of the object ({sent_name}) does not match the name on the URL ({})", t.name),
            None,
        );
    }
    let field = |k: &str| {
        body.pointer(&format!("/metadata/{k}"))
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(String::from)
    };
    let (rv, uid) = (field("resourceVersion"), field("uid"));
    let manager = manager_of(seen);
    let dry_run = seen.param("dryRun").as_deref() == Some("All");
    let key = (t.plural.clone(), t.namespace.clone(), t.name.clone());
    let Some(previous) = s.objects.get(&key).cloned() else {
        if !kind.create_on_update() {
            return not_found(kind, &t.name);
        }
        if let Some(uid) = uid {
            return uid_precondition_failed(kind, t, &uid, "");
        }
        if let Some(missing) = missing_namespace(s, kind, &t.namespace) {
            return missing;
        }
        // The resourceVersion sent is not checked on this create (123).
        let object = fresh_object(kind, &t.namespace, &t.name, &body);
        return store_created(s, kind, key, object, &manager, dry_run);
    };
    let stored = |k: &str| previous["metadata"][k].as_str().unwrap_or("").to_string();
    if let Some(uid) = uid.filter(|u| *u != stored("uid")) {
        // Not recorded for an object that exists; worded as 120.
        return uid_precondition_failed(kind, t, &uid, &stored("uid"));
    }
    match rv {
        None if !kind.unconditional_update() => {
            let invalid = "Invalid value: 0: must be specified for an update";
            let mut d = details(kind, Some(&t.name));
            d["causes"] = json!([{"reason": "FieldValueInvalid", "message": invalid, "field": "metadata.resourceVersion"}]);
            return status(
                422,
                "Invalid",
                &format!(
                    "{} \"{}\" is invalid: metadata.resourceVersion: {invalid}",
                    kind.qualified(),
                    t.name
                ),
                Some(d),
            );
        }
        Some(rv) if rv != stored("resourceVersion") => return modified(kind, &t.name),
        _ => {}
    }
    let mut object = body.clone();
    object["kind"] = json!(kind.kind);
    object["apiVersion"] = json!(kind.api_version());
    for k in ["uid", "creationTimestamp", "generation", "resourceVersion", "managedFields"] {
        match previous["metadata"].get(k) {
            Some(v) => object["metadata"][k] = v.clone(),
            None => {
                object["metadata"].as_object_mut().unwrap().remove(k);
            }
        }
    }
    if kind.namespaced {
        object["metadata"]["namespace"] = json!(t.namespace);
    }
    if kind.has_status() {
        // The status is its own subresource: a PUT of the object leaves it.
        match previous.get("status") {
            Some(v) => object["status"] = v.clone(),
            None => {
                object.as_object_mut().unwrap().remove("status");
            }
        }
    }
    if let Some(invalid) = validate(kind, &t.name, &object) {
        return invalid;
    }
    if object == previous {
        // Nothing changes: nothing is written, the resourceVersion stays.
        return Answer::Json(200, previous);
    }
    // Ownership: what changed is this manager's Update entry's; what went is nobody's.
    let before: Vec<(FieldPath, Value)> = leaves(&previous, kind);
    let after: Vec<(FieldPath, Value)> = leaves(&object, kind);
    let changed: BTreeSet<FieldPath> = after
        .iter()
        .filter(|(p, v)| !before.iter().any(|(q, w)| q == p && w == v))
        .map(|(p, _)| p.clone())
        .collect();
    let gone: BTreeSet<FieldPath> =
        before.iter().filter(|(p, _)| !after.iter().any(|(q, _)| q == p)).map(|(p, _)| p.clone()).collect();
    let mut owners = owners_of(&previous);
    for o in owners.iter_mut() {
        o.fields.retain(|f| !changed.iter().chain(&gone).any(|p| overlaps(f, p)));
    }
    let is_me = |o: &Owner| o.manager == manager && o.operation == "Update" && o.subresource.is_none();
    match owners.iter_mut().find(|o| is_me(o)) {
        Some(me) => {
            me.fields.extend(changed);
            me.time = now();
        }
        None => owners.push(update_owner(kind, &manager, changed)),
    }
    owners.retain(|o| !o.fields.is_empty());
    write_owners(&mut object, &owners);
    if previous.get("spec") != object.get("spec") {
        if let Some(g) = previous.pointer("/metadata/generation").and_then(Value::as_i64) {
            object["metadata"]["generation"] = json!(g + 1);
        }
    }
    if dry_run {
        return Answer::Json(200, object);
    }
    s.rv += 1;
    object["metadata"]["resourceVersion"] = json!(s.rv.to_string());
    s.store(key, object.clone(), false);
    Answer::Json(200, object)
}

/// One requirement of a label selector.
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    Exists(String),
    Absent(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

/// `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x)`, joined by commas.
fn parse_selector(text: &str) -> Result<Vec<Requirement>, String> {
    let mut parts = Vec::new();
    let (mut depth, mut from) = (0, 0);
    for (i, c) in text.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&text[from..i]);
                from = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[from..]);
    let set = |rest: &str| -> Result<Vec<String>, String> {
        let inner = rest.trim().strip_prefix('(').and_then(|r| r.strip_suffix(')'));
        let inner =
            inner.ok_or_else(|| format!("unable to parse requirement: found '{rest}', expected: '('"))?;
        Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
    };
    parts
        .into_iter()
        .map(|part| {
            let part = part.trim();
            if let Some((k, rest)) = part.split_once(" notin ") {
                return Ok(Requirement::NotIn(k.trim().into(), set(rest)?));
            }
            if let Some((k, rest)) = part.split_once(" in ") {
                return Ok(Requirement::In(k.trim().into(), set(rest)?));
            }
            if let Some(k) = part.strip_prefix('!') {
                return Ok(Requirement::Absent(k.trim().into()));
            }
            if let Some((k, v)) = part.split_once("!=") {
                return Ok(Requirement::NotEquals(k.trim().into(), v.trim().into()));
            }
            if let Some((k, v)) = part.split_once("==").or_else(|| part.split_once('=')) {
                return Ok(Requirement::Equals(k.trim().into(), v.trim().into()));
            }
            if part.is_empty() || part.contains(' ') {
                return Err(format!("unable to parse requirement: {part:?}"));
            }
            Ok(Requirement::Exists(part.into()))
        })
        .collect()
}

/// Whether `labels` satisfy every requirement (`!=` and `notin` hold for a missing label).
fn selects(selector: &[Requirement], labels: &Value) -> bool {
    let get = |k: &str| labels.get(k).and_then(Value::as_str);
    selector.iter().all(|r| match r {
        Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
        Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
        Requirement::Exists(k) => get(k).is_some(),
        Requirement::Absent(k) => get(k).is_none(),
        Requirement::In(k, vs) => get(k).is_some_and(|l| vs.iter().any(|v| v == l)),
        Requirement::NotIn(k, vs) => get(k).is_none_or(|l| !vs.iter().any(|v| v == l)),
    })
}

const BASE64_URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// The server's continue token: unpadded URL-safe base64 of
/// `{"v":"meta.k8s.io/v1","rv":…,"start":"<next key>"}` (162, 163 decoded).
fn encode_continue(rv: u64, start: &str) -> String {
    let text = json!({"v": "meta.k8s.io/v1", "rv": rv, "start": start}).to_string();
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..=chunk.len() {
            out.push(BASE64_URL[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// The token's resourceVersion and start key (a leading `/` dropped: the server's own
/// tokens have it on later pages, 163), or why it is not one, in the server's words (165).
fn decode_continue(token: &str) -> Result<(u64, String), String> {
    let mut bytes = Vec::new();
    let (mut n, mut bits) = (0u32, 0);
    for (i, c) in token.bytes().enumerate() {
        let Some(v) = BASE64_URL.iter().position(|b| *b == c) else {
            return Err(format!("continue key is not valid: illegal base64 data at input byte {i}"));
        };
        n = (n << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            bytes.push((n >> bits) as u8);
            n &= (1 << bits) - 1;
        }
    }
    let value: Value = match serde_json::from_slice(&bytes) {
        Ok(v) => v,
        Err(e) => {
            // Go's encoding/json names the first character it cannot start a value with.
            let first = bytes.iter().find(|b| !b" \t\r\n".contains(b)).copied();
            let message = match first {
                Some(b) if !b"{[\"-0123456789tfn".contains(&b) => {
                    let shown = match b {
                        0x20..=0x7e => (b as char).to_string(),
                        0x00..=0x1f => format!("\\x{b:02x}"),
                        _ if b < 0xa0 => format!("\\u{:04x}", b),
                        _ => char::from(b).to_string(),
                    };
                    format!("invalid character '{shown}' looking for beginning of value")
                }
                // Not recorded: serde's wording, not Go's.
                _ => e.to_string(),
            };
            return Err(format!("continue key is not valid: {message}"));
        }
    };
    if value["v"] != "meta.k8s.io/v1" {
        return Err(format!(
            "continue key is not valid: server does not recognize this encoded version {}",
            value["v"]
        ));
    }
    let rv = value["rv"].as_u64().unwrap_or(0);
    let start = value["start"].as_str().unwrap_or("");
    Ok((rv, start.trim_start_matches('/').to_string()))
}

/// A TCP proxy between clients and a server, to cut one client off while others still reach
/// the server: while cut, open connections are closed and new ones are closed at once.
pub struct Partition {
    pub port: u16,
    links: Arc<Mutex<Links>>,
}

#[derive(Default)]
struct Links {
    cut: bool,
    /// Both sides of every forwarded connection, to close when cut.
    open: HashMap<u64, (TcpStream, TcpStream)>,
    next: u64,
}

impl Partition {
    /// Forwards `127.0.0.1:<port>` to `127.0.0.1:<target>`.
    pub fn start(target: u16) -> Partition {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let links = Arc::new(Mutex::new(Links::default()));
        let shared = links.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let links = shared.clone();
                std::thread::spawn(move || {
                    let _ = forward(client, target, &links);
                });
            }
        });
        Partition { port, links }
    }

    /// Cuts the link (true) or restores it (false).
    pub fn cut(&self, cut: bool) {
        let mut links = self.links.lock().unwrap();
        links.cut = cut;
        if cut {
            for (_, (a, b)) in links.open.drain() {
                let _ = a.shutdown(Shutdown::Both);
                let _ = b.shutdown(Shutdown::Both);
            }
        }
    }

    /// A kubeconfig reaching the server through this link, as user `USER`, written to
    /// `dir/kubeconfig-via-<port>`.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        self.kubeconfig_as(dir, TOKEN)
    }

    /// The same with another user's token (see `FakeApi::add_user`).
    pub fn kubeconfig_as(&self, dir: &Path, token: &str) -> PathBuf {
        write_kubeconfig(dir.join(format!("kubeconfig-via-{}-{token}", self.port)), self.port, token)
    }
}

fn forward(client: TcpStream, target: u16, links: &Arc<Mutex<Links>>) -> std::io::Result<()> {
    if links.lock().unwrap().cut {
        return client.shutdown(Shutdown::Both);
    }
    // The server down: the client's connection is closed.
    let server = TcpStream::connect(("127.0.0.1", target))?;
    let id = {
        let mut l = links.lock().unwrap();
        if l.cut {
            let _ = server.shutdown(Shutdown::Both);
            return client.shutdown(Shutdown::Both);
        }
        l.next += 1;
        let id = l.next;
        l.open.insert(id, (client.try_clone()?, server.try_clone()?));
        id
    };
    let (mut from_client, mut to_server) = (client.try_clone()?, server.try_clone()?);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_client, &mut to_server);
        let _ = to_server.shutdown(Shutdown::Write);
    });
    let (mut from_server, mut to_client) = (server.try_clone()?, client.try_clone()?);
    let _ = std::io::copy(&mut from_server, &mut to_client);
    // The server closed (it answers with `Connection: close`): so does the link.
    let _ = to_client.shutdown(Shutdown::Both);
    let _ = up.join();
    links.lock().unwrap().open.remove(&id);
    let _ = client.shutdown(Shutdown::Both);
    server.shutdown(Shutdown::Both)
}

/// The objects of `plural` in `namespace` as they were at resourceVersion `rv`: each one's
/// last write at or before it (none if that was a deletion), else the stored object if it is
/// no newer (one stored by `put_as_is` has no history).
fn snapshot(s: &State, plural: &str, namespace: &str, rv: u64) -> Vec<(String, Value)> {
    let mut names: BTreeSet<&String> = BTreeSet::new();
    names.extend(s.objects.keys().filter(|(p, ns, _)| p == plural && ns == namespace).map(|(_, _, n)| n));
    names.extend(s.changes.iter().filter(|c| c.1 == plural && c.2 == namespace).map(|c| &c.3));
    let version = |o: &Value| o["metadata"]["resourceVersion"].as_str().and_then(|v| v.parse::<u64>().ok());
    names
        .into_iter()
        .filter_map(|name| {
            let last = s
                .changes
                .iter()
                .rev()
                .find(|c| c.0 <= rv && c.1 == plural && c.2 == namespace && c.3 == *name);
            let object = match last {
                Some((_, _, _, _, "DELETED", _)) => None,
                Some((_, _, _, _, _, object)) => Some(object.clone()),
                None => s
                    .objects
                    .get(&(plural.to_string(), namespace.to_string(), name.clone()))
                    .filter(|o| version(o).is_some_and(|v| v <= rv))
                    .cloned(),
            };
            object.map(|o| (name.clone(), o))
        })
        .collect()
}
