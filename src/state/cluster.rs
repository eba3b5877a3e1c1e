//! A rollout's state in a Kubernetes cluster (`state "kubernetes"`, docs/state.md §13).
//!
//! The lock is a `coordination.k8s.io/v1` Lease renewed while its holder runs; the journals
//! are ConfigMaps, one per chunk of a run's journal, labelled with the rollout's name. The
//! local rollout folder stays the working copy every command reads and writes as before: a
//! holder pulls the cluster's runs into it under the Lease, and its journal's every flush
//! is pushed before anything that depends on it starts (the group commit of `exec` makes
//! that one request per flush, not one per step).
//!
//! Fencing: a chunk is written with its resourceVersion as a precondition, and a new
//! chunk is created, never replaced. Whoever takes the lock from a holder that did not
//! release it changes the holder's last chunk and creates the chunk after it (a tombstone
//! carrying a `lock-broken` record), so every later write of the old holder is refused
//! (409), whichever object it aims at.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};

use super::format::{now, Record};
use crate::spec::ClusterState;

const STATE_LABEL: &str = "milepost.dev/state";
const RUN: &str = "milepost.dev/run";
const CHUNK: &str = "milepost.dev/chunk";
const HOLDER: &str = "milepost.dev/holder";
const FENCED_BY: &str = "milepost.dev/fenced-by";
/// On the last chunk a fence rewrote: a change of its resourceVersion, not the tombstone.
const FENCING: &str = "milepost.dev/fencing";
const CLOSED: &str = "milepost.dev/closed";
const DATA_KEY: &str = "journal";
const APPROVALS_KEY: &str = "decisions";
/// Bytes of decisions per approvals ConfigMap before the next one is started: well below
/// the API server's 1 MiB, so the longest decision (a 4 KiB note, its evidence) still fits.
const APPROVALS_CHUNK: usize = 512 * 1024;
const FIELD_MANAGER: &str = "milepost";
/// Objects listed per request: a long history comes in pages. Chunks hold up to 64 KiB, so
/// a page is at most ~1.6 MB, read well within a request's timeout on a slow link.
const PAGE: u32 = 25;

/// Bytes of journal per ConfigMap. The API server refuses more than 1 MiB of data; a write
/// sends the whole chunk and gets it back, so a small chunk keeps a flush cheap.
/// `MILEPOST_STATE_CHUNK_BYTES` sets it for tests of the rollover.
fn chunk_limit() -> usize {
    std::env::var("MILEPOST_STATE_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n >= 256)
        .unwrap_or(64 * 1024)
}

/// Why the cluster state could not be used.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The lock is held by someone whose lease has not expired.
    #[error(
        "the rollout's lock in the cluster (Lease {namespace}/{name}) is held by {holder} until \
         {until} (renewed {renewed}); wait for it to finish or its lease to expire, or, if that \
         holder is gone for good, `milepost unlock --force`"
    )]
    Held { namespace: String, name: String, holder: String, until: String, renewed: String },
    /// The cluster that keeps the state could not be connected to: nothing was read.
    #[error("{0}")]
    Connect(String),
    /// This holder may not write any more: its lock was taken or could not be kept.
    #[error("{0}")]
    Fenced(String),
    /// The API server could not be reached or refused.
    #[error("{0}")]
    Api(String),
    /// What the cluster holds is not a whole journal.
    #[error("{0}")]
    Damaged(String),
    /// The local working copy could not be written.
    #[error("cannot write {path}: {source}")]
    Local { path: PathBuf, source: std::io::Error },
}

/// A connection to one rollout's state.
pub struct Remote {
    runtime: Option<tokio::runtime::Runtime>,
    leases: Api<Lease>,
    maps: Api<ConfigMap>,
    pub spec: ClusterState,
    pub server: String,
    /// How long one request may take before it counts as failed.
    timeout: Duration,
}

impl Drop for Remote {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// One run's journal as the cluster holds it.
#[derive(Debug, Clone, Default)]
pub struct RemoteRun {
    pub text: String,
    /// Chunks written so far, tombstone included.
    pub chunks: usize,
    /// The last chunk: its resourceVersion, annotations and text.
    last: Option<(String, BTreeMap<String, String>, String)>,
    pub holder: String,
    pub closed: bool,
    pub fenced_by: Option<String>,
    /// A tombstone chunk was read: nothing from it on is the run's.
    tombstoned: bool,
}

impl Remote {
    /// Connects to the cluster `spec` names, through its context or else `context`.
    ///
    /// # Errors
    /// The kubeconfig or the API server, in words a person can act on.
    fn connect(spec: &ClusterState, context: Option<&str>) -> Result<Self, RemoteError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("milepost-state")
            .enable_all()
            .build()
            .map_err(|e| RemoteError::Connect(format!("cannot start the cluster state's runtime: {e}")))?;
        let settings = crate::cluster::Settings {
            context: spec.context.clone().or_else(|| context.map(String::from)),
            namespace: Some(spec.namespace.clone()),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        runtime.spawn(async move {
            let _ = tx.send(crate::cluster::connect(&settings).await);
        });
        let cluster = rx
            .recv()
            .map_err(|_| RemoteError::Connect("the cluster state's runtime stopped".into()))?
            .map_err(|e| RemoteError::Connect(format!("the rollout's state is in the cluster: {e}")))?;
        let _entered = runtime.enter();
        let leases = Api::namespaced(cluster.client.clone(), &spec.namespace);
        let maps = Api::namespaced(cluster.client.clone(), &spec.namespace);
        let timeout = (spec.lease / 3).clamp(Duration::from_secs(1), Duration::from_secs(10));
        drop(_entered);
        Ok(Self { runtime: Some(runtime), leases, maps, spec: spec.clone(), server: cluster.server, timeout })
    }

    /// The connection to the cluster `spec` names, made once per process: a command that
    /// pulls the runs, asks who holds the lock and reads the approvals connects (and asks the
    /// server's version) once, not for each.
    ///
    /// # Errors
    /// As [`Remote::connect`]; a failed connection is not kept.
    pub fn shared(spec: &ClusterState, context: Option<&str>) -> Result<Arc<Self>, RemoteError> {
        type Open = Vec<(ClusterState, Option<String>, Arc<Remote>)>;
        static OPEN: Mutex<Open> = Mutex::new(Vec::new());
        let context = spec.context.clone().or_else(|| context.map(String::from));
        let known =
            |open: &Open| open.iter().find(|(s, c, _)| s == spec && *c == context).map(|(.., r)| r.clone());
        if let Some(remote) = OPEN.lock().ok().and_then(|open| known(&open)) {
            return Ok(remote);
        }
        let remote = Arc::new(Self::connect(spec, context.as_deref())?);
        if let Ok(mut open) = OPEN.lock() {
            open.push((spec.clone(), context, remote.clone()));
        }
        Ok(remote)
    }

    /// Runs `future` on this connection's runtime and waits for it from any thread, a
    /// runtime's own included (the journal's flush runs on another runtime's blocking pool).
    fn call<T: Send + 'static>(
        &self,
        future: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, RemoteError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let timeout = self.timeout;
        self.runtime.as_ref().expect("runtime until drop").spawn(async move {
            let _ = tx.send(tokio::time::timeout(timeout, future).await);
        });
        match rx.recv() {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(RemoteError::Api(format!(
                "the API server at {} did not answer in {}s",
                self.server,
                timeout.as_secs()
            ))),
            Err(_) => Err(RemoteError::Api("the cluster state's runtime stopped".into())),
        }
    }

    fn where_(&self) -> String {
        format!("namespace `{}` at {}", self.spec.namespace, self.server)
    }

    fn api_error(&self, verb: &str, what: &str, err: &kube::Error) -> RemoteError {
        RemoteError::Api(crate::cluster::describe(err, verb, what, Some(&self.spec.namespace)))
    }

    /// Every run of the rollout, by run id: its chunks, listed page by page and joined in
    /// order. A missing chunk is damage, not a shorter journal.
    pub fn runs(&self) -> Result<BTreeMap<String, RemoteRun>, RemoteError> {
        let mut chunks: BTreeMap<String, BTreeMap<usize, ConfigMap>> = BTreeMap::new();
        let mut token: Option<String> = None;
        loop {
            let mut params =
                ListParams::default().labels(&format!("{STATE_LABEL}={}", self.spec.name)).limit(PAGE);
            if let Some(t) = &token {
                params = params.continue_token(t);
            }
            let maps = self.maps.clone();
            let page = self
                .call(async move { maps.list(&params).await })?
                .map_err(|e| self.api_error("list", "the rollout's journals (configmaps)", &e))?;
            for map in page.items {
                let notes = map.metadata.annotations.clone().unwrap_or_default();
                let (Some(run), Some(index)) =
                    (notes.get(RUN), notes.get(CHUNK).and_then(|c| c.parse::<usize>().ok()))
                else {
                    continue;
                };
                // Only what milepost writes is read: a labelled ConfigMap with another name
                // or a run id that could name a path is damage, said here, before a fence
                // aims writes at names it does not have (404 after 404, "kept changing").
                let name = map.metadata.name.clone().unwrap_or_default();
                if !plain_run_id(run) || name != chunk_name(&self.spec.name, run, index) {
                    return Err(RemoteError::Damaged(format!(
                        "ConfigMap {name} in {} is labelled {STATE_LABEL}={} but is no journal chunk                          milepost writes (run `{run}`, chunk {index}); remove it or its label",
                        self.where_(),
                        self.spec.name
                    )));
                }
                chunks.entry(run.clone()).or_default().insert(index, map);
            }
            token = page.metadata.continue_.filter(|t| !t.is_empty());
            if token.is_none() {
                break;
            }
        }
        let mut runs = BTreeMap::new();
        for (run, parts) in chunks {
            let mut out = RemoteRun::default();
            for (expected, (index, map)) in parts.into_iter().enumerate() {
                if index != expected {
                    return Err(RemoteError::Damaged(format!(
                        "the journal of run {run} in {} lacks chunk {expected} (the next is {index}); \
                         it was deleted by hand or by a cleanup, and what it held is lost",
                        self.where_()
                    )));
                }
                let notes = map.metadata.annotations.clone().unwrap_or_default();
                let text = map.data.as_ref().and_then(|d| d.get(DATA_KEY)).cloned().unwrap_or_default();
                // Everything before the tombstone was acknowledged to its holder, who went on
                // from it: that counts, even in chunks it made while a fence was under way
                // (after the first fenced chunk, before the tombstone). The tombstone's own
                // `lock-broken` record ends the run; nothing after it can have been written.
                let tombstone =
                    notes.contains_key(FENCED_BY) && text.starts_with("{\"type\":\"lock-broken\"");
                if !out.tombstoned {
                    out.text.push_str(&text);
                }
                out.tombstoned |= tombstone;
                out.holder = notes.get(HOLDER).cloned().unwrap_or_default();
                out.closed = notes.get(CLOSED).is_some_and(|c| c == "true");
                if let Some(by) = notes.get(FENCED_BY) {
                    out.fenced_by.get_or_insert_with(|| by.clone());
                }
                out.chunks = index + 1;
                out.last = Some((map.metadata.resource_version.clone().unwrap_or_default(), notes, text));
            }
            runs.insert(run, out);
        }
        Ok(runs)
    }

    /// Writes the cluster's runs into `dir` (a rollout folder): each run's journal where it
    /// differs. Returns the local runs the cluster does not have.
    pub fn pull(&self, dir: &Path) -> Result<Vec<String>, RemoteError> {
        let runs = self.runs()?;
        let runs_dir = dir.join("runs");
        let local = |source, path: &Path| RemoteError::Local { path: path.to_path_buf(), source };
        std::fs::create_dir_all(&runs_dir).map_err(|e| local(e, &runs_dir))?;
        for (id, run) in &runs {
            if !plain_run_id(id) {
                return Err(RemoteError::Damaged(format!(
                    "a journal in {} names run `{id}`, which is no run id milepost writes",
                    self.where_()
                )));
            }
            let run_dir = runs_dir.join(id);
            let path = run_dir.join("journal.jsonl");
            if std::fs::read(&path).is_ok_and(|now| now == run.text.as_bytes()) {
                continue;
            }
            std::fs::create_dir_all(&run_dir).map_err(|e| local(e, &run_dir))?;
            let partial = run_dir.join(".journal.jsonl.pulled");
            std::fs::write(&partial, &run.text).map_err(|e| local(e, &partial))?;
            // Read before it replaces anything: damage is named where it is, in the cluster,
            // not as a file of a read-only command's copy that is gone when it ends.
            if let Err(super::journal::JournalError::Damaged { line, reason, .. }) =
                super::journal::read(&partial)
            {
                let _ = std::fs::remove_file(&partial);
                return Err(RemoteError::Damaged(format!(
                    "run {id}'s journal in {} (ConfigMaps {} to {}) is damaged at line {line}: {reason}. It \
                     was changed in the cluster; milepost will not guess what it recorded: restore it (a \
                     machine that ran or read the run has it in runs/{id}/journal.jsonl), or delete the \
                     run's ConfigMaps (its completed steps then run again)",
                    self.where_(),
                    chunk_name(&self.spec.name, id, 0),
                    chunk_name(&self.spec.name, id, run.chunks.saturating_sub(1)),
                )));
            }
            std::fs::rename(&partial, &path).map_err(|e| local(e, &path))?;
            let _ = std::fs::write(run_dir.join(PUSHED_MARK), "");
        }
        let missing = super::history::run_dirs(dir)
            .iter()
            .filter_map(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()))
            .filter(|id| !runs.contains_key(id))
            .collect();
        Ok(missing)
    }

    /// The Lease, if there is one.
    fn lease(&self) -> Result<Option<Lease>, RemoteError> {
        let (leases, name) = (self.leases.clone(), self.spec.name.clone());
        self.call(async move { leases.get_opt(&name).await })?
            .map_err(|e| self.api_error("read", &format!("Lease {}", self.spec.name), &e))
    }

    /// Takes the lock for `holder`, fences the runs of a holder it was taken from, and
    /// keeps the lease renewed until the returned hold is dropped.
    ///
    /// # Errors
    /// [`RemoteError::Held`] while another holder's lease lasts; the API server's refusals.
    pub fn acquire(self: &Arc<Self>, holder: &str) -> Result<Arc<Hold>, RemoteError> {
        for _ in 0..5 {
            let (sent, sent_wall) = (Instant::now(), std::time::SystemTime::now());
            let before = self.lease()?;
            let now = jiff::Timestamp::now();
            let duration = self.spec.lease.as_secs() as i32;
            let (taken_from, lease) = match before {
                None => {
                    let lease = Lease {
                        metadata: ObjectMeta { name: Some(self.spec.name.clone()), ..ObjectMeta::default() },
                        spec: Some(LeaseSpec {
                            holder_identity: Some(holder.to_string()),
                            lease_duration_seconds: Some(duration),
                            acquire_time: Some(MicroTime(now)),
                            renew_time: Some(MicroTime(now)),
                            lease_transitions: Some(0),
                            ..LeaseSpec::default()
                        }),
                    };
                    let leases = self.leases.clone();
                    match self.call(async move { leases.create(&PostParams::default(), &lease).await })? {
                        Ok(made) => (None, made),
                        Err(kube::Error::Api(s)) if s.code == 409 => continue,
                        Err(e) => {
                            return Err(self.api_error("create", &format!("Lease {}", self.spec.name), &e))
                        }
                    }
                }
                Some(mut lease) => {
                    let spec = lease.spec.clone().unwrap_or_default();
                    let current = spec.holder_identity.clone().filter(|h| !h.is_empty());
                    let renewed = spec.renew_time.as_ref().or(spec.acquire_time.as_ref()).map(|t| t.0);
                    let lasts = Duration::from_secs(spec.lease_duration_seconds.unwrap_or(0).max(0) as u64);
                    if let (Some(current), Some(renewed)) = (&current, renewed) {
                        let until = renewed + jiff::SignedDuration::try_from(lasts).unwrap_or_default();
                        if current != holder && until > now {
                            return Err(RemoteError::Held {
                                namespace: self.spec.namespace.clone(),
                                name: self.spec.name.clone(),
                                holder: current.clone(),
                                until: until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                                renewed: renewed.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                            });
                        }
                    }
                    lease.spec = Some(LeaseSpec {
                        holder_identity: Some(holder.to_string()),
                        lease_duration_seconds: Some(duration),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(spec.lease_transitions.unwrap_or(0).saturating_add(1)),
                        ..LeaseSpec::default()
                    });
                    lease.metadata.managed_fields = None;
                    let (leases, name) = (self.leases.clone(), self.spec.name.clone());
                    let put = lease.clone();
                    match self.call(async move { leases.replace(&name, &post_params(), &put).await })? {
                        Ok(made) => (current, made),
                        Err(kube::Error::Api(s)) if s.code == 409 => continue,
                        Err(e) => {
                            return Err(self.api_error("update", &format!("Lease {}", self.spec.name), &e))
                        }
                    }
                }
            };
            let hold = Arc::new(Hold {
                remote: self.clone(),
                holder: holder.to_string(),
                state: Mutex::new(HoldState {
                    lease,
                    renewed_at: sent,
                    renewed_wall: sent_wall,
                    lost: None,
                    released: false,
                    refused: None,
                }),
                stop: Mutex::new(None),
                following: Mutex::new(None),
            });
            // A holder that did not release the lock may have left runs open: nothing of
            // theirs may be written after this.
            // Every open run of another holder is fenced, even behind a free lock: a taker
            // whose fencing failed half-way gave the lock back, free, with the run it was
            // fencing still open (and its holder perhaps only paused).
            let previous = taken_from.filter(|p| p != holder).unwrap_or_default();
            hold.fence_open_runs(&previous, false, None)?;
            hold.start_renewing();
            return Ok(hold);
        }
        Err(RemoteError::Api(format!(
            "the Lease {} in {} kept changing while milepost tried to take it; try again",
            self.spec.name,
            self.where_()
        )))
    }

    /// `unlock --force`: the lock is taken from whoever holds it, their open runs fenced and
    /// the Lease deleted. Returns the holder it was taken from.
    pub fn break_lock(self: &Arc<Self>, by: &str) -> Result<Option<String>, RemoteError> {
        // A hold that fences but never renews or releases: the Lease is deleted, not kept.
        let breaker = |lease: Lease| Hold {
            remote: self.clone(),
            holder: by.to_string(),
            state: Mutex::new(HoldState {
                lease,
                renewed_at: Instant::now(),
                renewed_wall: std::time::SystemTime::now(),
                lost: None,
                released: true,
                refused: None,
            }),
            stop: Mutex::new(None),
            following: Mutex::new(None),
        };
        let Some(lease) = self.lease()? else {
            // No Lease (a forced unlock before, whose fencing failed half-way): its runs left
            // open are fenced all the same.
            breaker(Lease::default()).fence_open_runs("nobody", true, None)?;
            return Ok(None);
        };
        let previous = lease.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
        let hold = breaker(lease.clone());
        // The Lease goes first, then the runs are fenced: a run its holder creates after
        // the fence's listing was created after the delete, and its holder, which reads the
        // Lease back after creating a run (`Hold::verify`), stops before its first step.
        // The holder renews every third of its lease, so the Lease read before fencing has
        // often been renewed by the time it is deleted (409). The same holder renewing it
        // is no reason to stop: its runs are fenced; delete the renewed Lease. Another
        // holder having taken it is.
        let mut lease = lease;
        for _ in 0..5 {
            let (leases, name) = (self.leases.clone(), self.spec.name.clone());
            let params = DeleteParams {
                preconditions: Some(Preconditions {
                    uid: lease.metadata.uid.clone(),
                    resource_version: lease.metadata.resource_version.clone(),
                }),
                ..DeleteParams::default()
            };
            let deleted = self.call(async move { leases.delete(&name, &params).await })?;
            match deleted {
                Ok(_) => {
                    hold.fence_open_runs(previous.as_deref().unwrap_or("nobody"), true, previous.as_deref())?;
                    return Ok(previous);
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    hold.fence_open_runs(previous.as_deref().unwrap_or("nobody"), true, previous.as_deref())?;
                    return Ok(previous);
                }
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(self.api_error("delete", &format!("Lease {}", self.spec.name), &e)),
            }
            let Some(now) = self.lease()? else {
                hold.fence_open_runs(previous.as_deref().unwrap_or("nobody"), true, previous.as_deref())?;
                return Ok(previous);
            };
            let holder = now.spec.as_ref().and_then(|s| s.holder_identity.clone()).filter(|h| !h.is_empty());
            if holder.is_some() && holder != previous {
                break;
            }
            lease = now;
        }
        Err(RemoteError::Api(format!(
            "the Lease {} changed while it was being removed (another holder took it): run `milepost \
             unlock --force` again if it is still needed",
            self.spec.name
        )))
    }

    /// Who holds the lock now, and until when: for `status`.
    pub fn holder(&self) -> Result<Option<(String, String)>, RemoteError> {
        let Some(lease) = self.lease()? else { return Ok(None) };
        let spec = lease.spec.unwrap_or_default();
        let Some(holder) = spec.holder_identity.filter(|h| !h.is_empty()) else { return Ok(None) };
        let renewed = spec.renew_time.map(|t| t.0).unwrap_or_else(jiff::Timestamp::now);
        let lasts = jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(0)));
        let until = renewed + lasts;
        if until < jiff::Timestamp::now() {
            return Ok(None);
        }
        Ok(Some((holder, until.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())))
    }

    /// Who the cluster says this client is (a SelfSubjectReview): the user and groups an
    /// approval is recorded under, so nobody approves as someone else.
    pub fn who_am_i(&self) -> Result<(String, Vec<String>), RemoteError> {
        use k8s_openapi::api::authentication::v1::SelfSubjectReview;
        let reviews: Api<SelfSubjectReview> = {
            let _entered = self.runtime.as_ref().expect("runtime until drop").enter();
            Api::all(self.maps.clone().into_client())
        };
        let review = self
            .call(async move { reviews.create(&PostParams::default(), &SelfSubjectReview::default()).await })?
            .map_err(|e| self.api_error("ask who this is (create)", "a SelfSubjectReview", &e))?;
        let info = review.status.and_then(|s| s.user_info).unwrap_or_default();
        let user = info.username.filter(|u| !u.is_empty()).ok_or_else(|| {
            RemoteError::Api(
                "the API server did not say who this client is (a SelfSubjectReview without a username)"
                    .into(),
            )
        })?;
        Ok((user, info.groups.unwrap_or_default()))
    }

    /// The approvals ConfigMap `index` of this state: `NAME.approvals`, then
    /// `NAME.approvals.1`, `.2`… once the one before is full.
    fn approvals_name(&self, index: usize) -> String {
        match index {
            0 => format!("{}.approvals", self.spec.name),
            n => format!("{}.approvals.{n}", self.spec.name),
        }
    }

    /// The approvals ConfigMaps there are, in order (a missing one ends them).
    fn approvals_maps(&self) -> Result<Vec<ConfigMap>, RemoteError> {
        let mut out = Vec::new();
        loop {
            let (maps, name) = (self.maps.clone(), self.approvals_name(out.len()));
            let found = self
                .call(async move { maps.get_opt(&name).await })?
                .map_err(|e| self.api_error("read", "the rollout's approvals (configmap)", &e))?;
            match found {
                Some(map) => out.push(map),
                None => return Ok(out),
            }
        }
    }

    /// The text of the rollout's approvals ConfigMaps (`NAME.approvals`, `.1`, …), in order,
    /// empty without one. A map's last line without its newline (a hand edit) is left out
    /// but for the last map's, which the reader ignores as a torn line.
    pub fn approvals(&self) -> Result<String, RemoteError> {
        let maps = self.approvals_maps()?;
        let count = maps.len();
        let mut out = String::new();
        for (i, map) in maps.into_iter().enumerate() {
            let text = map.data.and_then(|mut d| d.remove(APPROVALS_KEY)).unwrap_or_default();
            match i + 1 < count && !text.is_empty() && !text.ends_with('\n') {
                true => out.push_str(&text[..text.rfind('\n').map_or(0, |at| at + 1)]),
                false => out.push_str(&text),
            }
        }
        Ok(out)
    }

    /// Appends `line` to the last approvals ConfigMap: read, append, replace with the
    /// resourceVersion read (or create), again on a conflict, so two people deciding at once
    /// both land. Decisions are not fenced by the lock: they are made while a rollout holds it.
    ///
    /// Decisions are kept for every rollout of the state, so they outgrow one ConfigMap (the
    /// API server refuses more than 1 MiB of data, and every decision after that would be
    /// refused for good): a map holding [`APPROVALS_CHUNK`] bytes is full, and the decision
    /// goes to a new one after it (two people starting it at once: one creates it, the other
    /// is told it exists and appends to it).
    pub fn add_approval(&self, line: &str) -> Result<(), RemoteError> {
        // Each conflict means another decision landed, so every round someone wins; but many
        // people at once on a slow API server kept losing all of a fixed 20 quick rounds
        // (30 approvers, 30 ms a call). Retries back off, with jitter so they spread out,
        // for up to a minute.
        let started = std::time::Instant::now();
        for round in 0u32.. {
            if round > 0 {
                if started.elapsed() > std::time::Duration::from_secs(60) {
                    break;
                }
                let cap = 20u64.saturating_mul(1 << round.min(6)).min(1000);
                let pause = rand::random_range(cap / 4..=cap);
                std::thread::sleep(std::time::Duration::from_millis(pause));
            }
            let mut maps = self.approvals_maps()?;
            let last = maps.pop();
            let full = last.as_ref().is_some_and(|m| {
                let used = m.data.as_ref().and_then(|d| d.get(APPROVALS_KEY)).map_or(0, String::len);
                used > 0 && used + line.len() > APPROVALS_CHUNK
            });
            let (index, found) = match (last, full) {
                (None, _) => (0, None),
                (Some(_), true) => (maps.len() + 1, None),
                (Some(map), false) => (maps.len(), Some(map)),
            };
            let name = self.approvals_name(index);
            let create = found.is_none();
            let mut map = found.unwrap_or_else(|| ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(BTreeMap::from([
                        ("app.kubernetes.io/managed-by".to_string(), "milepost".to_string()),
                        ("milepost.dev/approvals".to_string(), self.spec.name.clone()),
                    ])),
                    ..ObjectMeta::default()
                },
                ..ConfigMap::default()
            });
            map.metadata.managed_fields = None;
            let data = map.data.get_or_insert_with(BTreeMap::new);
            let text = data.entry(APPROVALS_KEY.to_string()).or_default();
            // A last line without its newline (a hand edit; the cluster's writes are whole)
            // is ignored by readers, as a torn line of the local store is; appended to, it
            // would swallow this decision into one damaged line. Cut it first, as the local
            // store does.
            if !text.is_empty() && !text.ends_with('\n') {
                text.truncate(text.rfind('\n').map_or(0, |at| at + 1));
            }
            text.push_str(line);
            let (maps, put) = (self.maps.clone(), name.clone());
            let written = self.call(async move {
                match create {
                    true => maps.create(&post_params(), &map).await.map(|_| ()),
                    false => maps.replace(&put, &post_params(), &map).await.map(|_| ()),
                }
            })?;
            match written {
                Ok(()) => return Ok(()),
                Err(kube::Error::Api(s)) if s.code == 409 => continue,
                Err(e) => return Err(self.api_error("write", "the rollout's approvals (configmap)", &e)),
            }
        }
        Err(RemoteError::Api(
            "the rollout's approvals kept changing while this decision was added; try again".into(),
        ))
    }

    /// The resourceVersion of chunk `index` of `run` if it holds exactly `text`, written by
    /// `holder` and not fenced since: a write of ours whose answer was lost.
    fn own_chunk(&self, run: &str, index: usize, text: &str, holder: &str) -> Option<String> {
        let (maps, name) = (self.maps.clone(), chunk_name(&self.spec.name, run, index));
        let map = self.call(async move { maps.get_opt(&name).await }).ok()?.ok()??;
        let notes = map.metadata.annotations.clone().unwrap_or_default();
        let same = map.data.as_ref().and_then(|d| d.get(DATA_KEY)).is_some_and(|t| t == text)
            && notes.get(HOLDER).is_some_and(|h| h == holder)
            && notes.get(RUN).is_some_and(|r| r == run)
            && !notes.contains_key(FENCED_BY);
        same.then(|| map.metadata.resource_version.unwrap_or_default())
    }

    /// Writes a chunk: creates it (`rv` None) or replaces it if it is still at `rv`.
    fn write_chunk(
        &self,
        run: &str,
        index: usize,
        text: &str,
        rv: Option<&str>,
        notes: BTreeMap<String, String>,
    ) -> Result<Result<String, kube::Error>, RemoteError> {
        let mut annotations = notes;
        annotations.insert(RUN.into(), run.to_string());
        annotations.insert(CHUNK.into(), index.to_string());
        let map = ConfigMap {
            metadata: ObjectMeta {
                name: Some(chunk_name(&self.spec.name, run, index)),
                labels: Some(BTreeMap::from([
                    ("app.kubernetes.io/managed-by".to_string(), "milepost".to_string()),
                    (STATE_LABEL.to_string(), self.spec.name.clone()),
                ])),
                annotations: Some(annotations),
                resource_version: rv.map(String::from),
                ..ObjectMeta::default()
            },
            data: Some(BTreeMap::from([(DATA_KEY.to_string(), text.to_string())])),
            ..ConfigMap::default()
        };
        let maps = self.maps.clone();
        let name = map.metadata.name.clone().unwrap_or_default();
        let create = rv.is_none();
        self.call(async move {
            let written = match create {
                true => maps.create(&post_params(), &map).await,
                false => maps.replace(&name, &post_params(), &map).await,
            };
            written.map(|m| m.metadata.resource_version.unwrap_or_default())
        })
    }
}

fn post_params() -> PostParams {
    PostParams { field_manager: Some(FIELD_MANAGER.into()), ..PostParams::default() }
}

/// The ConfigMap of chunk `index` of `run`: run ids hold capitals (`…T…Z`), names may not.
fn chunk_name(state: &str, run: &str, index: usize) -> String {
    format!("{state}.{}.{index}", run.to_ascii_lowercase())
}

/// A run id as milepost writes them (`20261130T001810123Z-4242`): nothing that could name
/// a path outside the runs folder.
fn plain_run_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

/// How every loss of the lock ends, for people and for tests.
const LOST: &str = "this run's writes are refused and no further step starts here; `milepost resume` \
                    continues from what the cluster recorded";

/// A run folder whose journal came from, or went to, the cluster.
pub const PUSHED_MARK: &str = ".in-cluster";

/// The lock, held: renewed in the background, and asked before every write.
pub struct Hold {
    remote: Arc<Remote>,
    pub holder: String,
    state: Mutex<HoldState>,
    stop: Mutex<Option<tokio::sync::oneshot::Sender<()>>>,
    /// The run being written, pushed with every renewal too (weak: the mirror holds the hold).
    following: Mutex<Option<std::sync::Weak<Mirror>>>,
}

struct HoldState {
    lease: Lease,
    /// When the last renewal that succeeded was sent.
    renewed_at: Instant,
    /// The same by the wall clock: `Instant` stands still while the machine sleeps (a
    /// suspended laptop, a paused VM), the lease's expiry on other machines does not.
    renewed_wall: std::time::SystemTime,
    /// Why this holder may not write any more.
    lost: Option<String>,
    released: bool,
    /// What the API server answered to the last renewal that it refused (a 403 when RBAC
    /// allows creating the Lease but not updating it): said when the lease runs out.
    refused: Option<String>,
}

impl std::fmt::Debug for Hold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hold").field("holder", &self.holder).field("lease", &self.remote.spec.name).finish()
    }
}

impl Hold {
    pub fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    /// Whether this holder may still write and start steps: its lease was renewed recently
    /// enough that nobody else can have taken the lock. A fifth of the lease is kept as a
    /// margin for clocks and the request in flight.
    pub fn check(&self) -> Result<(), RemoteError> {
        let state = self.state.lock().map_err(|_| RemoteError::Fenced("the lock's state broke".into()))?;
        if let Some(reason) = &state.lost {
            return Err(RemoteError::Fenced(reason.clone()));
        }
        let lease = self.remote.spec.lease;
        let since = state.renewed_at.elapsed().max(state.renewed_wall.elapsed().unwrap_or_default());
        if since + lease / 5 >= lease {
            if let Some(refused) = &state.refused {
                return Err(RemoteError::Fenced(format!(
                    "the rollout's lock (Lease {}) was last renewed {:.1}s ago and lasts {}s: renewing it \
                     was refused: {refused}: {LOST}",
                    self.remote.spec.name,
                    since.as_secs_f64(),
                    lease.as_secs(),
                )));
            }
            return Err(RemoteError::Fenced(format!(
                "the rollout's lock (Lease {}) was last renewed {:.1}s ago and lasts {}s: the API server \
                 at {} has not answered since, so another operator may take the lock: {LOST}",
                self.remote.spec.name,
                since.as_secs_f64(),
                lease.as_secs(),
                self.remote.server
            )));
        }
        Ok(())
    }

    /// Reads the Lease back: it must still name this holder (same uid). Asked after a run's
    /// first chunk is created, which no fence can have covered if the lock was broken just
    /// before (`unlock --force` deletes the Lease, then fences what it lists).
    pub fn verify(&self) -> Result<(), RemoteError> {
        let uid = self.state.lock().ok().and_then(|s| s.lease.metadata.uid.clone());
        let now = self.remote.lease()?;
        let ours = now.as_ref().is_some_and(|l| {
            l.metadata.uid == uid
                && l.spec.as_ref().and_then(|s| s.holder_identity.as_deref()) == Some(&self.holder)
        });
        if !ours {
            self.lose(format!(
                "the rollout's lock (Lease {}) was taken from this run before its first step: {LOST}",
                self.remote.spec.name
            ));
        }
        self.check()
    }

    fn lose(&self, reason: String) {
        if let Ok(mut state) = self.state.lock() {
            state.lost.get_or_insert(reason);
        }
    }

    /// Renews every third of the lease on the connection's runtime until dropped.
    fn start_renewing(self: &Arc<Self>) {
        let (tx, mut rx) = tokio::sync::oneshot::channel();
        if let Ok(mut stop) = self.stop.lock() {
            *stop = Some(tx);
        }
        let hold = Arc::downgrade(self);
        let every = self.remote.spec.lease / 3;
        let runtime = self.remote.runtime.as_ref().expect("runtime until drop");
        runtime.spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut rx => return,
                    () = tokio::time::sleep(every) => {}
                }
                let Some(hold) = hold.upgrade() else { return };
                if !hold.renew().await {
                    return;
                }
                // What the run recorded since its last flush (a node started, a step begun
                // that runs for hours): other machines' `status` sees it within a renewal
                // period, not only when something ends. A failure is the mirror's to keep:
                // the next flush reports it.
                let following =
                    hold.following.lock().ok().and_then(|f| f.as_ref().and_then(std::sync::Weak::upgrade));
                // Not awaited: a push retrying a refusing server must not hold the renewals.
                if let Some(mirror) = following {
                    tokio::task::spawn_blocking(move || mirror.push_when_idle());
                }
            }
        });
    }

    /// Pushes `mirror` with every renewal from now on.
    pub fn follow(&self, mirror: &Arc<Mirror>) {
        if let Ok(mut following) = self.following.lock() {
            *following = Some(Arc::downgrade(mirror));
        }
    }

    /// One renewal; false once the lock is lost for good.
    async fn renew(&self) -> bool {
        let (sent, sent_wall) = (Instant::now(), std::time::SystemTime::now());
        let (mut lease, holder) = match self.state.lock() {
            Ok(s) if s.lost.is_none() && !s.released => (s.lease.clone(), self.holder.clone()),
            _ => return false,
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        lease.metadata.managed_fields = None;
        let (leases, name) = (self.remote.leases.clone(), self.remote.spec.name.clone());
        // The uid stays in the body: a PUT of a deleted Lease would otherwise create it
        // again (file 123 of the recordings), bringing back a lock `unlock --force` broke.
        match tokio::time::timeout(self.remote.timeout, leases.replace(&name, &post_params(), &lease)).await {
            Ok(Ok(renewed)) => {
                if let Ok(mut s) = self.state.lock() {
                    s.lease = renewed;
                    s.renewed_at = sent;
                    s.renewed_wall = sent_wall;
                    s.refused = None;
                }
                true
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 409 || status.code == 404 => {
                let now = tokio::time::timeout(self.remote.timeout, leases.get_opt(&name)).await;
                let current = match now {
                    Ok(Ok(Some(l))) => l,
                    Ok(Ok(None)) => {
                        self.lose(format!(
                            "the rollout's lock (Lease {name}) was removed (`milepost unlock --force`): {LOST}"
                        ));
                        return false;
                    }
                    _ => return true,
                };
                let by = current.spec.as_ref().and_then(|s| s.holder_identity.clone()).unwrap_or_default();
                if by == holder {
                    // Still ours: an earlier renewal was stored but its answer lost. Renew
                    // now on the Lease as it is, or the lease would run out here while the
                    // server counts it as renewed.
                    let mut again = current.clone();
                    if let Some(spec) = again.spec.as_mut() {
                        spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
                    }
                    again.metadata.managed_fields = None;
                    let sent = (Instant::now(), std::time::SystemTime::now());
                    let renewed = tokio::time::timeout(
                        self.remote.timeout,
                        leases.replace(&name, &post_params(), &again),
                    )
                    .await;
                    if let Ok(mut s) = self.state.lock() {
                        match renewed {
                            Ok(Ok(renewed)) => {
                                s.lease = renewed;
                                (s.renewed_at, s.renewed_wall) = sent;
                            }
                            _ => s.lease = current,
                        }
                    }
                    return true;
                }
                let now = if by.is_empty() {
                    "another holder took it and released it since".to_string()
                } else {
                    format!("it is held by {by}")
                };
                self.lose(format!(
                    "the rollout's lock (Lease {name}) was taken from this run ({now}): {LOST}"
                ));
                false
            }
            // Refused (403, 422, …): kept to say why when the lease runs out.
            Ok(Err(e @ kube::Error::Api(_))) => {
                let said = crate::cluster::describe(
                    &e,
                    "update",
                    &format!("Lease {name}"),
                    Some(&self.remote.spec.namespace),
                );
                if let Ok(mut s) = self.state.lock() {
                    s.refused = Some(said);
                }
                true
            }
            // Unreachable for now: `check` says when that has lasted too long.
            _ => true,
        }
    }

    /// Fences every run of the rollout still open and written by another holder: its last
    /// chunk is changed and a tombstone chunk created after it, carrying a `lock-broken`
    /// record, so none of that holder's later writes can land.
    ///
    /// With `only`, the runs of that holder alone: `unlock --force` fences after deleting the
    /// Lease, when a new holder may already have runs of its own.
    fn fence_open_runs(&self, previous: &str, forced: bool, only: Option<&str>) -> Result<(), RemoteError> {
        for _ in 0..10 {
            let runs = self.remote.runs()?;
            let mut raced = false;
            // Not closed is what counts, not `fenced_by`: a fence that changed the last chunk
            // but whose tombstone was refused, or after whose change the old holder created
            // its next chunk, leaves a run fenced in name whose next chunk can still be
            // written; fencing it again puts a tombstone after its real last chunk.
            for (id, run) in runs
                .iter()
                .filter(|(_, r)| !r.closed && r.holder != self.holder && only.is_none_or(|h| r.holder == h))
            {
                let Some((rv, notes, text)) = &run.last else { continue };
                let mut notes = notes.clone();
                notes.insert(FENCING.into(), self.holder.clone());
                let last = run.chunks - 1;
                // The holder's next replace of its chunk now finds another resourceVersion.
                match self.remote.write_chunk(id, last, text, Some(rv), notes.clone())? {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 || s.code == 404 => {
                        raced = true;
                        continue;
                    }
                    Err(e) => return Err(self.remote.api_error("fence", &format!("run {id}'s journal"), &e)),
                }
                // And its next new chunk already exists.
                let broken = Record::LockBroken {
                    by: self.holder.clone(),
                    holder: if run.holder.is_empty() { previous.to_string() } else { run.holder.clone() },
                    forced,
                    at: now(),
                };
                let line = String::from_utf8(super::journal::encode(&broken)).unwrap_or_default();
                notes.remove(FENCING);
                notes.insert(FENCED_BY.into(), self.holder.clone());
                notes.insert(CLOSED.into(), "true".into());
                match self.remote.write_chunk(id, last + 1, &line, None, notes)? {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => raced = true,
                    Err(e) => return Err(self.remote.api_error("fence", &format!("run {id}'s journal"), &e)),
                }
            }
            if !raced {
                return Ok(());
            }
        }
        Err(RemoteError::Api(
            "the runs of the previous holder kept changing while they were fenced; is it still running? \
             try again"
                .into(),
        ))
    }

    /// Gives the lock up: the Lease names no holder and expires at once (as client-go's
    /// leader election releases). Nothing if it was lost.
    pub fn release(&self) {
        if let Ok(mut stop) = self.stop.lock() {
            if let Some(tx) = stop.take() {
                let _ = tx.send(());
            }
        }
        let mut lease = match self.state.lock() {
            Ok(mut s) if s.lost.is_none() && !s.released => {
                s.released = true;
                s.lease.clone()
            }
            _ => return,
        };
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(MicroTime(jiff::Timestamp::now()));
        }
        lease.metadata.managed_fields = None;
        let (leases, name) = (self.remote.leases.clone(), self.remote.spec.name.clone());
        // A failure leaves the lease to expire: the next holder waits that long at most.
        let _ = self.remote.call(async move { leases.replace(&name, &post_params(), &lease).await });
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.release();
    }
}

/// A journal's text cut into chunks of at most `limit` bytes at line ends (a longer line
/// is a chunk of its own).
fn split_chunks(text: &str, limit: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in text.split_inclusive('\n') {
        if !current.is_empty() && current.len() + line.len() > limit {
            out.push(std::mem::take(&mut current));
        }
        current.push_str(line);
    }
    if !current.is_empty() || out.is_empty() {
        out.push(current);
    }
    out
}

/// Pushes one run's journal to the cluster as it grows.
pub struct Mirror {
    hold: Arc<Hold>,
    run: String,
    path: PathBuf,
    state: Mutex<MirrorState>,
}

#[derive(Default)]
struct MirrorState {
    /// Bytes of the local journal in the cluster.
    sent: u64,
    chunk: usize,
    /// The current chunk's text and resourceVersion (`None`: not created yet).
    text: String,
    rv: Option<String>,
    /// The first failure: nothing is pushed after it.
    broken: Option<String>,
}

impl Mirror {
    pub fn new(hold: Arc<Hold>, run: &str, journal: &Path) -> Self {
        Self {
            hold,
            run: run.to_string(),
            path: journal.to_path_buf(),
            state: Mutex::new(MirrorState::default()),
        }
    }

    /// Writes what the local journal gained since the last push, whole lines only; with
    /// `close`, the run is marked ended so nobody fences it. Retries an unreachable server
    /// while this holder's lease lasts.
    ///
    /// # Errors
    /// A message: the lock was lost or taken (fenced), the server refused, the lease ran out.
    pub fn push(&self, close: bool) -> Result<(), String> {
        let mut state = self.state.lock().map_err(|_| "the journal's push broke earlier".to_string())?;
        if let Some(reason) = &state.broken {
            return Err(reason.clone());
        }
        let result = self.push_locked(&mut state, close);
        if let Err(reason) = &result {
            state.broken = Some(reason.clone());
        }
        result
    }

    /// A push in the background, unless one is under way: records made since the last
    /// flush reach the cluster without anyone waiting for them.
    fn push_when_idle(&self) {
        let Ok(mut state) = self.state.try_lock() else { return };
        if state.broken.is_none() {
            if let Err(reason) = self.push_locked(&mut state, false) {
                state.broken = Some(reason);
            }
        }
    }

    /// Whether this run may start another node: its lock is held and no push failed.
    ///
    /// # Errors
    /// Why not, in the words of the push that would fail.
    pub fn check(&self) -> Result<(), String> {
        // `try_lock`: a push in progress holds the state for as long as it retries, and this
        // is asked on the dispatcher's thread; the hold's check below is what counts.
        if let Some(reason) = self.state.try_lock().ok().and_then(|s| s.broken.clone()) {
            return Err(reason);
        }
        self.hold.check().map_err(|e| e.to_string())
    }

    fn push_locked(&self, state: &mut MirrorState, close: bool) -> Result<(), String> {
        self.hold.check().map_err(|e| e.to_string())?;
        let bytes =
            std::fs::read(&self.path).map_err(|e| format!("cannot read {}: {e}", self.path.display()))?;
        let from = (state.sent as usize).min(bytes.len());
        let whole = bytes[from..].iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
        let new = std::str::from_utf8(&bytes[from..from + whole])
            .map_err(|e| format!("{} is not UTF-8: {e}", self.path.display()))?;
        if new.is_empty() && !close {
            return Ok(());
        }
        let limit = chunk_limit();
        let mut pieces = split_chunks(new, limit).into_iter().peekable();
        let mut first = true;
        while let Some(piece) = pieces.next() {
            if (!first || state.text.len() + piece.len() > limit) && !state.text.is_empty() {
                state.chunk += 1;
                state.text.clear();
                state.rv = None;
            }
            first = false;
            let mut text = state.text.clone();
            text.push_str(&piece);
            let closing = close && pieces.peek().is_none();
            let created = state.chunk == 0 && state.rv.is_none();
            let rv = self.write(state.chunk, &text, state.rv.as_deref(), closing)?;
            if created {
                self.hold.verify().map_err(|e| e.to_string())?;
            }
            state.text = text;
            state.rv = Some(rv);
            state.sent += piece.len() as u64;
        }
        Ok(())
    }

    /// One chunk written, retried over transport errors while the lease lasts.
    fn write(&self, index: usize, text: &str, rv: Option<&str>, close: bool) -> Result<String, String> {
        let remote = self.hold.remote();
        let mut notes = BTreeMap::from([(HOLDER.to_string(), self.hold.holder.clone())]);
        if close {
            notes.insert(CLOSED.into(), "true".into());
        }
        let mut wait = Duration::from_millis(50);
        let failing = Instant::now();
        let mut last;
        let what = || {
            format!(
                "run {}'s journal (ConfigMap {})",
                self.run,
                chunk_name(&remote.spec.name, &self.run, index)
            )
        };
        loop {
            let attempt = remote.write_chunk(&self.run, index, text, rv, notes.clone());
            match attempt {
                Ok(Ok(rv)) => return Ok(rv),
                Ok(Err(kube::Error::Api(s))) if matches!(s.code, 409 | 404) => {
                    // A write the server stored but whose answer was lost (a restart or a
                    // network cut after etcd committed) is refused when retried: our own
                    // write is there, unfenced, not another holder's.
                    if let Some(rv) = remote.own_chunk(&self.run, index, text, &self.hold.holder) {
                        return Ok(rv);
                    }
                    self.hold.lose(format!(
                        "run {}'s journal in the cluster was changed by another holder ({} {}): the rollout's \
                         lock was taken from this run: {LOST}",
                        self.run, s.code, s.reason
                    ));
                    return Err(self.hold.check().err().map(|e| e.to_string()).unwrap_or_default());
                }
                Ok(Err(kube::Error::Api(s))) if !matches!(s.code, 429 | 500 | 503 | 504) => {
                    return Err(crate::cluster::describe(
                        &kube::Error::Api(s),
                        "write",
                        &what(),
                        Some(&remote.spec.namespace),
                    ));
                }
                Ok(Err(e)) => {
                    last = crate::cluster::describe(&e, "write", &what(), Some(&remote.spec.namespace))
                }
                Err(e) => last = e.to_string(),
            }
            // The server is away (a restart, a network cut): try again while nobody else
            // can have taken the lock, and for one lease at most: a server that renews the
            // Lease but fails every journal write (etcd out of space answers 500s) would
            // otherwise hold the run here for ever, saying nothing.
            self.hold.check().map_err(|e| e.to_string())?;
            if failing.elapsed() >= remote.spec.lease {
                return Err(format!(
                    "run {}'s journal could not be written to the cluster for {}s ({last}): no further \
                     step starts here; `milepost resume` continues from what the cluster recorded",
                    self.run,
                    failing.elapsed().as_secs()
                ));
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(Duration::from_secs(1));
        }
    }
}

/// A copy of the cluster's runs of `state`, made now for one command, in a folder beside
/// `local` (the rollout's own folder, which a rollout on this machine may be writing):
/// what is read beside it (another environment's folder) is where it would be.
pub fn view(state: &ClusterState, local: &Path) -> Result<PathBuf, RemoteError> {
    let remote = Remote::shared(state, None)?;
    let beside = local.parent().unwrap_or(Path::new("."));
    let leaf = local.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let dir = views::make(beside, &leaf)
        .map_err(|source| RemoteError::Local { path: beside.to_path_buf(), source })?;
    remote.pull(&dir)?;
    Ok(dir)
}

/// Folders of the cluster's runs made for read-only commands, removed when the command ends.
pub mod views {
    use std::path::{Path, PathBuf};
    use std::sync::Mutex;

    static MADE: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    /// A new folder in `beside`, hidden from listings of rollout folders (a leading `.`).
    /// Folders a killed command left there (its pid gone) are removed first.
    pub fn make(beside: &Path, leaf: &str) -> std::io::Result<PathBuf> {
        for entry in std::fs::read_dir(beside).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let pid =
                name.strip_prefix(".view-").and_then(|rest| rest.split('-').next()?.parse::<u32>().ok());
            if pid.is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists()) {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
        let nanos =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let dir = beside.join(format!(".view-{}-{nanos}-{leaf}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        if let Ok(mut made) = MADE.lock() {
            made.push(dir.clone());
        }
        Ok(dir)
    }

    /// Removes them; called as the command ends.
    pub fn remove() {
        if let Ok(mut made) = MADE.lock() {
            for dir in made.drain(..) {
                let _ = std::fs::remove_dir_all(dir);
            }
        }
    }
}

/// Who holds the lock: user, host, process and command, as the Lease names them.
pub fn holder_identity(command: &str) -> String {
    format!("{}@{} pid {} (milepost {command})", local_user(), super::lock::hostname(), std::process::id())
}

/// Whether a Lease's holder is the process `pid` on `host` ([`holder_identity`]'s format).
pub fn holder_is(holder: &str, host: &str, pid: u32) -> bool {
    holder.contains(&format!("@{host} pid {pid} "))
}

/// The user this process runs as, from the system's user database (not `$USER`).
pub fn local_user() -> String {
    nix::unistd::User::from_uid(nix::unistd::getuid())
        .ok()
        .flatten()
        .map(|u| u.name)
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_cut_at_line_ends_and_keep_every_byte() {
        let text: String =
            (0..100).map(|i| format!("{{\"line\":{i},\"pad\":\"{}\"}}\n", "x".repeat(i % 37))).collect();
        for limit in [1, 40, 64, 200, 10_000] {
            let chunks = split_chunks(&text, limit);
            assert_eq!(chunks.concat(), text, "limit {limit}");
            for c in &chunks {
                assert!(c.ends_with('\n'));
                assert!(c.len() <= limit || c.matches('\n').count() == 1, "limit {limit}: {c:?}");
            }
        }
        assert_eq!(split_chunks("", 10), vec![String::new()]);
    }

    #[test]
    fn run_ids_that_could_leave_the_runs_folder_are_not_plain() {
        assert!(plain_run_id("20261130T001810123Z-4242"));
        for bad in ["", "..", "../x", "a/b", "a\0b", &"9".repeat(65)] {
            assert!(!plain_run_id(bad), "{bad:?}");
        }
    }
}
