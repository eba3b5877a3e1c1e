//! Approvals: the decisions people make on a node's request for approval, and who they are.
//!
//! Decisions live apart from the runs, in an append-only store of their own, because they are
//! made while a rollout runs and holds the rollout's lock (`apply` waiting at a terminal): the
//! local store is `approvals.jsonl` beside `runs/` in the rollout folder, each line a
//! checksummed record like the journal's, appended under an flock of its own and synced.
//! [`ApprovalStore`] and [`Identity`] say nothing of files, so a cluster backend (a ConfigMap,
//! SelfSubjectReview for who is asking) can stand in; the CLI picks both in one place.
//!
//! What counts (docs/state.md §15): approvals of the request's run and node, made for the
//! definition the request was made for, one per person; one rejection ends it.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::history::{ApprovalRequest, History};
use super::journal::{decode_line, encode_line};
use crate::exec::approval::{Approvals, Evidence, Request, Standing, Verdict};
use crate::spec::Node;

/// The local store's file in a rollout folder.
pub const FILE: &str = "approvals.jsonl";

/// Who is deciding: a user and the groups they are in, as the system that keeps the state
/// knows them (never as an environment variable says: `USER=alice` approves nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

impl Identity {
    /// Whether this person may decide on `from` (user or group names; empty: anyone).
    pub fn may_decide(&self, from: &[String]) -> bool {
        from.is_empty() || from.iter().any(|f| *f == self.user || self.groups.contains(f))
    }
}

/// The user and groups of this process, from the OS user and group databases by the real
/// user id. A user or group without a name is `uid:N` / `gid:N`.
pub fn local_identity() -> Identity {
    use nix::unistd::{getgid, getgroups, getuid, Group, User};
    let uid = getuid();
    let user = User::from_uid(uid).ok().flatten().map_or_else(|| format!("uid:{uid}"), |u| u.name);
    let mut gids = getgroups().unwrap_or_default();
    gids.insert(0, getgid());
    let mut groups: Vec<String> = Vec::new();
    for gid in gids {
        let name = Group::from_gid(gid).ok().flatten().map_or_else(|| format!("gid:{gid}"), |g| g.name);
        if !groups.contains(&name) {
            groups.push(name);
        }
    }
    Identity { user, groups }
}

/// `approved` or `rejected`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Choice {
    Approved,
    Rejected,
}

impl std::fmt::Display for Choice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Choice::Approved => "approved",
            Choice::Rejected => "rejected",
        })
    }
}

/// One person's decision on one request, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub decision: Choice,
    /// The node whose request it answers.
    pub node: String,
    /// The run that made the request (with `node`, the request's identity).
    pub request: String,
    pub workflow: String,
    pub environment: String,
    pub user: String,
    pub groups: Vec<String>,
    pub at: String,
    /// The node's definition (as written) the request was made for: a decision answers it
    /// and no other.
    pub source_hash: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// What the gate's checks showed when the person decided.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub evidence: Vec<Evidence>,
}

/// Why the store could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ApprovalsError {
    /// The store could not be opened, locked, read, written or synced.
    #[error("cannot {action} the approvals {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    /// A line that is not a whole decision milepost wrote, before the last line.
    #[error(
        "the approvals {path} are damaged at line {line}: {reason}. milepost will not guess who decided: \
         restore the file, or move it away (every request then waits for its decisions again)"
    )]
    Damaged { path: PathBuf, line: usize, reason: String },
    /// The cluster that keeps the rollout's state could not be read or written.
    #[error("the approvals in the cluster: {0}")]
    Cluster(String),
}

/// Where decisions are kept. Appends only: nobody's decision is rewritten or lost.
pub trait ApprovalStore: Send + Sync {
    /// Every decision, oldest first.
    ///
    /// # Errors
    /// The store cannot be read, or holds something that is not a decision.
    fn decisions(&self) -> Result<Vec<Decision>, ApprovalsError>;

    /// Adds `decision`, durably, beside any made at the same moment by others.
    ///
    /// # Errors
    /// It could not be written; nothing of it counts then.
    fn add(&self, decision: &Decision) -> Result<(), ApprovalsError>;
}

/// The local store: `approvals.jsonl` in a rollout folder.
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(rollout_dir: &Path) -> Self {
        Self { path: rollout_dir.join(FILE) }
    }

    fn io(&self, action: &'static str) -> impl FnOnce(std::io::Error) -> ApprovalsError + '_ {
        move |source| ApprovalsError::Io { action, path: self.path.clone(), source }
    }
}

impl ApprovalStore for FileStore {
    fn decisions(&self) -> Result<Vec<Decision>, ApprovalsError> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(self.io("open")(e)),
        };
        // Shared: a decision being appended is read whole or not at all.
        file.lock_shared().map_err(self.io("lock"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(self.io("read"))?;
        parse(&self.path, &bytes)
    }

    fn add(&self, decision: &Decision) -> Result<(), ApprovalsError> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(self.io("create the folder of"))?;
        }
        let mut file =
            File::options().create(true).read(true).append(true).open(&self.path).map_err(self.io("open"))?;
        // Two people approving at once each append a whole line, one after the other.
        file.lock().map_err(self.io("lock"))?;
        // A torn last line (a crash mid-append, never acknowledged) is cut off first, or it
        // would be damage in the middle once this line follows it.
        let len = file.seek(SeekFrom::End(0)).map_err(self.io("read"))?;
        if len > 0 {
            let mut bytes = Vec::new();
            file.seek(SeekFrom::Start(0)).map_err(self.io("read"))?;
            file.read_to_end(&mut bytes).map_err(self.io("read"))?;
            if !bytes.ends_with(b"\n") {
                let whole = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |at| at + 1);
                file.set_len(whole as u64).map_err(self.io("repair"))?;
            }
        }
        file.write_all(&encode_line(decision)).map_err(self.io("write"))?;
        file.sync_data().map_err(self.io("sync"))?;
        Ok(())
    }
}

/// The cluster's store (`state "kubernetes"`): a ConfigMap `NAME.approvals` beside the
/// rollout's journals, appended with optimistic concurrency (docs/state.md §15).
pub struct ClusterStore {
    remote: Result<Arc<super::cluster::Remote>, String>,
}

impl ClusterStore {
    /// A store on `remote`; a connection that failed fails every read and write with its reason.
    pub fn new(remote: Result<Arc<super::cluster::Remote>, String>) -> Self {
        Self { remote }
    }

    fn remote(&self) -> Result<&Arc<super::cluster::Remote>, ApprovalsError> {
        self.remote.as_ref().map_err(|e| ApprovalsError::Cluster(e.clone()))
    }
}

impl ApprovalStore for ClusterStore {
    fn decisions(&self) -> Result<Vec<Decision>, ApprovalsError> {
        let remote = self.remote()?;
        let text = remote.approvals().map_err(|e| ApprovalsError::Cluster(e.to_string()))?;
        let name = format!("configmap {}/{}.approvals", remote.spec.namespace, remote.spec.name);
        parse(Path::new(&name), text.as_bytes())
    }

    fn add(&self, decision: &Decision) -> Result<(), ApprovalsError> {
        let line = String::from_utf8(encode_line(decision)).expect("JSON is UTF-8");
        self.remote()?.add_approval(&line).map_err(|e| ApprovalsError::Cluster(e.to_string()))
    }
}

/// Who the cluster says this client is: what an approval is recorded under when the state
/// is in a cluster, so a person approves as their Kubernetes identity, not their laptop's.
pub fn cluster_identity(remote: &super::cluster::Remote) -> Result<Identity, String> {
    let (user, groups) = remote.who_am_i().map_err(|e| e.to_string())?;
    Ok(Identity { user, groups })
}

/// The decisions of a store's bytes: a last line without its newline is a write a crash cut
/// short and is ignored; anything else that is not a whole, checksummed decision is damage.
fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Decision>, ApprovalsError> {
    let mut out = Vec::new();
    for (i, line) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        let Some(line) = line.strip_suffix(b"\n") else {
            // Torn, unless only its newline is missing (the checksum tells).
            if let Ok(decision) = decode_line(line, true) {
                out.push(decision);
            }
            break;
        };
        let decision = decode_line(line, true).map_err(|reason| ApprovalsError::Damaged {
            path: path.to_path_buf(),
            line: i + 1,
            reason,
        })?;
        out.push(printable(decision));
    }
    Ok(out)
}

/// `decision` with the control characters of what people wrote (note, user, groups) written
/// out as `\x1b`: `approve` refuses them, but anyone who can write the store (a hand edit,
/// a Kubernetes user name) can put an escape sequence there, and status, history, resume and
/// the reports print these to the terminals of whoever reads them. Lines and tabs of a note
/// are kept.
fn printable(mut decision: Decision) -> Decision {
    fn shown(text: &str, keep_lines: bool) -> String {
        let kept = |c: char| keep_lines && matches!(c, '\n' | '\t');
        if !text.chars().any(|c| c.is_control() && !kept(c)) {
            return text.to_string();
        }
        text.chars()
            .map(|c| if c.is_control() && !kept(c) { format!("\\x{:02x}", c as u32) } else { c.to_string() })
            .collect()
    }
    decision.note = decision.note.map(|n| shown(&n, true));
    decision.user = shown(&decision.user, false);
    for group in &mut decision.groups {
        *group = shown(group, false);
    }
    decision
}

/// Where `request` of `node` stands among `decisions`, for `required` distinct approvers
/// among `from`: only decisions on this request (its run and node) for its definition count,
/// each person once; one rejection ends it.
///
/// `from` is the node's rule as defined now: it is not part of the hash, so it may change
/// while a request stands, and "the current definition's rule applies to the standing
/// request" (docs/state.md §15). A decision by someone no longer among `from` (by the user
/// and groups recorded with it) does not count, or taking a person out of `from` would
/// leave their approval letting the node through.
pub fn tally(
    node: &str,
    request: &Request,
    required: u32,
    from: &[String],
    decisions: &[Decision],
) -> Verdict {
    let mut approved_by: Vec<String> = Vec::new();
    for d in decisions {
        if d.node != node || d.request != request.run_id || d.source_hash != request.source_hash {
            continue;
        }
        let who = Identity { user: d.user.clone(), groups: d.groups.clone() };
        if !who.may_decide(from) {
            continue;
        }
        match d.decision {
            Choice::Rejected => {
                return Verdict::Rejected { by: d.user.clone(), note: d.note.clone().unwrap_or_default() }
            }
            Choice::Approved if !approved_by.contains(&d.user) => approved_by.push(d.user.clone()),
            Choice::Approved => {}
        }
    }
    if approved_by.len() >= required as usize {
        Verdict::Approved { by: approved_by }
    } else {
        Verdict::Waiting { approved_by }
    }
}

/// The executor's view of approvals: the requests earlier runs left (from the history read
/// when the run began) and the store's decisions, read at every poll.
pub struct StoreApprovals {
    pub store: Arc<dyn ApprovalStore>,
    pending: std::collections::HashMap<String, ApprovalRequest>,
    /// Each node's evidence of checks its current attempt passed.
    evidence: std::collections::HashMap<String, Vec<Evidence>>,
}

impl StoreApprovals {
    pub fn new(store: Arc<dyn ApprovalStore>, history: &History) -> Self {
        let evidence = history
            .attempts
            .iter()
            .map(|(id, a)| (id.clone(), a.evidence.values().cloned().collect()))
            .collect();
        Self { store, pending: history.approvals.clone(), evidence }
    }
}

impl Approvals for StoreApprovals {
    fn standing(&self, node: &Node) -> Standing {
        let evidence = self.evidence.get(&node.id).cloned().unwrap_or_default();
        let Some(pending) = self.pending.get(&node.id) else {
            return Standing { request: None, notes: Vec::new(), evidence };
        };
        if pending.source_hash == node.source_hash {
            let request =
                Request { run_id: pending.run_id.clone(), source_hash: pending.source_hash.clone() };
            return Standing { request: Some(request), notes: Vec::new(), evidence };
        }
        // Asked for another definition: what was decided on it says nothing of this one.
        let decided: Vec<String> = self
            .store
            .decisions()
            .unwrap_or_default()
            .into_iter()
            .filter(|d| d.node == node.id && d.request == pending.run_id)
            .map(|d| format!("{} by {}", d.decision, d.user))
            .collect();
        let notes = vec![if decided.is_empty() {
            format!(
                "its request of run {} was for an older definition (its steps changed since); asking again",
                pending.run_id
            )
        } else {
            format!(
                "{} on its request of run {} do not count: that was for an older definition (its steps changed \
                 since); asking again",
                decided.join(", "),
                pending.run_id
            )
        }];
        Standing { request: None, notes, evidence }
    }

    fn verdict(&self, request: &Request, node: &Node) -> Result<Verdict, String> {
        let (required, from) = node.approval.as_ref().map_or((1, &[][..]), |a| (a.required, &a.from[..]));
        let decisions = self.store.decisions().map_err(|e| e.to_string())?;
        Ok(tally(&node.id, request, required, from, &decisions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(user: &str, choice: Choice, request: &str, hash: &str) -> Decision {
        Decision {
            decision: choice,
            node: "g".into(),
            request: request.into(),
            workflow: "w".into(),
            environment: "prod".into(),
            user: user.into(),
            groups: vec!["staff".into()],
            at: "t".into(),
            source_hash: hash.into(),
            note: (choice == Choice::Rejected).then(|| "no".into()),
            evidence: Vec::new(),
        }
    }

    fn request() -> Request {
        Request { run_id: "r1".into(), source_hash: "h1".into() }
    }

    /// Decisions as (user, choice, request, source hash).
    type Given<'a> = &'a [(&'a str, Choice, &'a str, &'a str)];

    #[test]
    fn only_distinct_people_on_this_request_and_definition_count() {
        use Choice::*;
        let table: &[(Given, u32, Verdict)] = &[
            (&[], 1, Verdict::Waiting { approved_by: vec![] }),
            (&[("alice", Approved, "r1", "h1")], 1, Verdict::Approved { by: vec!["alice".into()] }),
            // The same person twice is one approval.
            (
                &[("alice", Approved, "r1", "h1"), ("alice", Approved, "r1", "h1")],
                2,
                Verdict::Waiting { approved_by: vec!["alice".into()] },
            ),
            (
                &[("alice", Approved, "r1", "h1"), ("bob", Approved, "r1", "h1")],
                2,
                Verdict::Approved { by: vec!["alice".into(), "bob".into()] },
            ),
            // Another request's, or an older definition's, approval does not count.
            (&[("alice", Approved, "r0", "h1")], 1, Verdict::Waiting { approved_by: vec![] }),
            (&[("alice", Approved, "r1", "h0")], 1, Verdict::Waiting { approved_by: vec![] }),
            // One rejection ends it, whatever approvals came before.
            (
                &[("alice", Approved, "r1", "h1"), ("bob", Rejected, "r1", "h1")],
                1,
                Verdict::Rejected { by: "bob".into(), note: "no".into() },
            ),
        ];
        for (given, required, expected) in table {
            let decisions: Vec<Decision> = given.iter().map(|(u, c, r, h)| decision(u, *c, r, h)).collect();
            assert_eq!(&tally("g", &request(), *required, &[], &decisions), expected, "{given:?}");
        }
    }

    #[test]
    fn only_decisions_of_people_in_from_as_defined_now_count() {
        // `decision` records the groups ["staff"].
        let alice = decision("alice", Choice::Approved, "r1", "h1");
        let carol = decision("carol", Choice::Rejected, "r1", "h1");
        let waiting = Verdict::Waiting { approved_by: vec![] };
        assert_eq!(tally("g", &request(), 1, &["bob".into()], std::slice::from_ref(&alice)), waiting);
        assert_eq!(
            tally("g", &request(), 1, &["staff".into()], std::slice::from_ref(&alice)),
            Verdict::Approved { by: vec!["alice".into()] }
        );
        // A rejection by someone not among `from` does not end it either.
        assert_eq!(
            tally("g", &request(), 1, &["alice".into()], &[carol, alice]),
            Verdict::Approved { by: vec!["alice".into()] }
        );
    }

    #[test]
    fn identity_decides_by_user_or_group_and_anyone_without_from() {
        let me = Identity { user: "alice".into(), groups: vec!["sre-leads".into()] };
        assert!(me.may_decide(&[]));
        assert!(me.may_decide(&["alice".into()]));
        assert!(me.may_decide(&["bob".into(), "sre-leads".into()]));
        assert!(!me.may_decide(&["bob".into(), "dba".into()]));
    }

    #[test]
    fn the_local_identity_is_the_os_user_not_the_environment() {
        let me = local_identity();
        assert!(!me.user.is_empty() && !me.groups.is_empty(), "{me:?}");
        // What the user database says of this uid, whatever $USER claims.
        let uid = nix::unistd::getuid();
        if let Ok(Some(user)) = nix::unistd::User::from_uid(uid) {
            assert_eq!(me.user, user.name);
        }
    }

    #[test]
    fn concurrent_adds_are_all_kept_whole() {
        let dir = tempfile::tempdir().unwrap();
        let threads: Vec<_> = (0..16)
            .map(|i| {
                let dir = dir.path().to_path_buf();
                // A store each, as separate processes would have: the flock orders them.
                std::thread::spawn(move || {
                    FileStore::new(&dir)
                        .add(&decision(&format!("user{i}"), Choice::Approved, "r1", "h1"))
                        .unwrap()
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let all = FileStore::new(dir.path()).decisions().unwrap();
        let mut users: Vec<String> = all.iter().map(|d| d.user.clone()).collect();
        users.sort();
        users.dedup();
        assert_eq!(users.len(), 16, "{users:?}");
        assert_eq!(
            tally("g", &request(), 16, &[], &all),
            Verdict::Approved { by: all.iter().map(|d| d.user.clone()).collect() }
        );
    }

    #[test]
    fn a_torn_last_line_is_ignored_and_cut_before_the_next_add() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.add(&decision("alice", Choice::Approved, "r1", "h1")).unwrap();
        let path = dir.path().join(FILE);
        let whole = std::fs::read(&path).unwrap();
        let torn = encode_line(&decision("bob", Choice::Approved, "r1", "h1"));
        for cut in 1..torn.len() - 1 {
            let mut bytes = whole.clone();
            bytes.extend_from_slice(&torn[..cut]);
            std::fs::write(&path, &bytes).unwrap();
            let read = store.decisions().unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
            assert_eq!(read.len(), 1, "cut at {cut}");
        }
        store.add(&decision("carol", Choice::Approved, "r1", "h1")).unwrap();
        let users: Vec<String> = store.decisions().unwrap().into_iter().map(|d| d.user).collect();
        assert_eq!(users, ["alice", "carol"]);
    }

    #[test]
    fn control_characters_written_into_the_store_are_read_as_text() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        let mut hostile = decision("eve\u{1b}[2J", Choice::Rejected, "r1", "h1");
        hostile.note = Some("no\u{1b}]0;owned\u{7}\nsecond\tline".into());
        hostile.groups = vec!["g\u{1b}".into()];
        store.add(&hostile).unwrap();
        let read = store.decisions().unwrap();
        assert_eq!(read[0].user, "eve\\x1b[2J");
        assert_eq!(read[0].note.as_deref(), Some("no\\x1b]0;owned\\x07\nsecond\tline"));
        assert_eq!(read[0].groups, ["g\\x1b"]);
    }

    #[test]
    fn damage_before_the_last_line_is_an_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::new(dir.path());
        store.add(&decision("alice", Choice::Approved, "r1", "h1")).unwrap();
        store.add(&decision("bob", Choice::Approved, "r1", "h1")).unwrap();
        let path = dir.path().join(FILE);
        let text = std::fs::read_to_string(&path).unwrap().replacen("alice", "mallory", 1);
        std::fs::write(&path, text).unwrap();
        let err = store.decisions().unwrap_err();
        assert!(matches!(err, ApprovalsError::Damaged { line: 1, .. }), "{err}");
        assert!(err.to_string().contains("line 1") && err.to_string().contains(FILE), "{err}");
    }
}
