//! Commands against a rollout whose state is in a cluster (`state "kubernetes"`, docs/state.md
//! §13): the lock taken as a Lease and the runs pulled into the local working copy; read-only
//! commands reading a fresh copy of their own; `unlock --force`; `state push`/`pull`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::{Args, Subcommand};

use super::{exit, CliError, Cx};
use crate::spec::{ClusterState, Workflow};
use crate::state::cluster::{self, Hold, Remote, RemoteError};
use crate::ui::errln;

/// Commands that take the rollout's lock and so work in its working copy.
const LOCKING: &[&str] = &["apply", "resume", "verify", "rollback", "unlock", "state push", "state pull"];

fn connect(workflow: &Workflow, state: &ClusterState) -> Result<Arc<Remote>, CliError> {
    Remote::shared(state, workflow.kubernetes.context.as_deref()).map_err(state_error)
}

fn state_error(e: RemoteError) -> CliError {
    match e {
        held @ RemoteError::Held { .. } => CliError::Locked { message: held.to_string() },
        RemoteError::Connect(message) => CliError::Preflight { message },
        other => CliError::State { message: other.to_string() },
    }
}

/// The folder a command reads and writes the rollout's state in. A locking command works
/// in the rollout folder, pulled when it takes the lock; any other reads a copy of the
/// cluster's runs made now, in a folder of its own, so it never rewrites a journal a
/// rollout on this machine is writing.
pub fn folder(workflow: &Workflow, local: PathBuf, command: &str) -> Result<PathBuf, CliError> {
    let Some(state) = &workflow.state else { return Ok(local) };
    if LOCKING.contains(&command) {
        return Ok(local);
    }
    cluster::view(state, &local).map_err(state_error)
}

/// After the local lock: the cluster's lock, and the cluster's runs in the working copy.
/// Runs only here that were pushed once and are gone from the cluster now are moved aside;
/// runs never pushed (local state from before `state "kubernetes"`) stop it: `state push`
/// them first, or they would silently stop counting.
pub fn take(workflow: &Workflow, dir: &Path, command: &str) -> Result<Option<Arc<Hold>>, CliError> {
    let Some(state) = &workflow.state else { return Ok(None) };
    let remote = connect(workflow, state)?;
    let hold = remote.acquire(&cluster::holder_identity(command)).map_err(state_error)?;
    settle_working_copy(&remote, dir, command)?;
    Ok(Some(hold))
}

fn settle_working_copy(remote: &Remote, dir: &Path, command: &str) -> Result<(), CliError> {
    let only_here = remote.pull(dir).map_err(state_error)?;
    // A run killed between its folder's creation and its first push (the mark is written
    // just before it) holds its run-start alone: nothing of it ran, so it goes aside like a
    // pushed one instead of stopping every locking command on this machine.
    let started_only = |id: &String| {
        crate::state::journal::read(&dir.join("runs").join(id).join("journal.jsonl"))
            .is_ok_and(|r| matches!(r.as_slice(), [crate::state::format::Record::RunStart { .. }]))
    };
    let (pushed, never): (Vec<String>, Vec<String>) = only_here
        .into_iter()
        .partition(|id| dir.join("runs").join(id).join(cluster::PUSHED_MARK).exists() || started_only(id));
    if !never.is_empty() && command != "state push" {
        return Err(CliError::State {
            message: format!(
                "{} has {} run(s) that are not in the cluster ({}): local state from before `state \
                 \"kubernetes\"`. Upload them with `milepost state push <workflow>`, or move them away \
                 to start afresh in the cluster",
                dir.display(),
                never.len(),
                never.join(", ")
            ),
        });
    }
    if !pushed.is_empty() {
        let aside = dir.join(".not-in-cluster");
        for id in &pushed {
            let from = dir.join("runs").join(id);
            std::fs::create_dir_all(&aside)
                .and_then(|()| std::fs::rename(&from, aside.join(id)))
                .map_err(|source| CliError::Io { action: "move aside", path: from.clone(), source })?;
        }
        errln!(
            "warning: {} run(s) of this working copy are no longer in the cluster (deleted there?): moved to {}",
            pushed.len(),
            aside.display()
        );
    }
    Ok(())
}

/// The flush that pushes a run's journal, for the journal recorder; `None` without a cluster.
pub fn mirror(
    lock: &crate::state::lock::StateLock,
    run_dir: &Path,
    run_id: &str,
) -> Option<Arc<cluster::Mirror>> {
    let hold = lock.cluster.clone()?;
    let _ = std::fs::write(run_dir.join(cluster::PUSHED_MARK), "");
    let mirror = Arc::new(cluster::Mirror::new(hold.clone(), run_id, &run_dir.join("journal.jsonl")));
    hold.follow(&mirror);
    Some(mirror)
}

#[derive(Debug, Args)]
pub struct UnlockArgs {
    #[command(flatten)]
    state: super::state::StateArgs,
    /// Take the lock from a holder whose lease has not expired (a machine that is gone for
    /// good). Its open runs are fenced: nothing it writes later is accepted.
    #[arg(long)]
    force: bool,
    /// The state root (default: .milepost beside the workflow).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// `milepost unlock`: who holds the lock; with `--force`, the lock is taken from them and
/// that is journaled in their run.
pub fn unlock(cx: &Cx, args: &UnlockArgs) -> Result<u8, CliError> {
    let (dir, workflow) = super::state::target(&args.state, args.state_dir.as_deref(), "unlock")?;
    let Some(state) = &workflow.state else {
        let holder = crate::state::lock::holder(&dir);
        let message = match holder {
            Some(pid) => format!(
                "{} is locked by process {pid} on this machine, which is running: a local lock ends with \
                 its holder; stop that process (kill {pid}) rather than unlock",
                dir.display()
            ),
            None => format!("{} is not locked: a local lock ends with its holder", dir.display()),
        };
        errln!("{message}");
        return Ok(if holder.is_some() { exit::LOCKED } else { exit::SUCCESS });
    };
    let remote = connect(&workflow, state)?;
    let p = cx.err;
    match remote.holder().map_err(state_error)? {
        None => {
            errln!("the rollout's lock (Lease {}/{}) is free", state.namespace, state.name);
            if !args.force {
                return Ok(exit::SUCCESS);
            }
        }
        Some((holder, until)) if !args.force => {
            errln!(
                "{} the rollout's lock (Lease {}/{}) is held by {holder} until {until}; if that holder \
                 is gone for good, `milepost unlock --force` takes it (its open runs are fenced)",
                p.red("error:"),
                state.namespace,
                state.name
            );
            return Ok(exit::LOCKED);
        }
        Some(_) => {}
    }
    let by = cluster::holder_identity("unlock --force");
    let previous = remote.break_lock(&by).map_err(state_error)?;
    match previous {
        Some(holder) => errln!(
            "took the rollout's lock from {holder}; its open runs end with a `lock-broken` record naming {by}"
        ),
        None => errln!("the rollout's lock is free; open runs of a holder that is gone were fenced"),
    }
    Ok(exit::SUCCESS)
}

#[derive(Debug, Args)]
pub struct StateCommand {
    #[command(subcommand)]
    action: StateAction,
}

#[derive(Debug, Subcommand)]
enum StateAction {
    /// Upload the local runs of a rollout to its cluster state (`state "kubernetes"`).
    Push(StateMoveArgs),
    /// Download a rollout's runs from its cluster state into the local folder.
    Pull(StateMoveArgs),
}

#[derive(Debug, Args)]
struct StateMoveArgs {
    #[command(flatten)]
    definitions: super::DefinitionArgs,
    /// The state root (default: .milepost beside the workflow).
    #[arg(long, value_name = "DIR")]
    state_dir: Option<PathBuf>,
}

/// `milepost state push|pull`: moves runs between the local folder and the cluster, under
/// both locks, never overwriting a run that differs.
pub fn state(_cx: &Cx, args: &StateCommand) -> Result<u8, CliError> {
    let (moving, command) = match &args.action {
        StateAction::Push(a) => (a, "state push"),
        StateAction::Pull(a) => (a, "state pull"),
    };
    let workflow = moving.definitions.load()?.workflow;
    let Some(state) = workflow.state.clone() else {
        return Err(CliError::Usage {
            message: format!(
                "{} keeps its state in the local folder (no `state \"kubernetes\" …`{}): there is \
                 nothing to {}",
                workflow.id,
                workflow.environment().map(|e| format!(" for environment `{}`", e.name)).unwrap_or_default(),
                command.trim_start_matches("state ")
            ),
        });
    };
    let dir = super::rollout_dir(&workflow, moving.state_dir.as_deref(), command)?;
    let local_lock = super::apply::take_local_lock(&dir, command)?;
    let remote = connect(&workflow, &state)?;
    let hold = remote.acquire(&cluster::holder_identity(command)).map_err(state_error)?;
    let in_cluster = remote.runs().map_err(state_error)?;
    let mut moved = 0;
    if command == "state push" {
        for run_dir in crate::state::history::run_dirs(&dir) {
            let id = run_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let journal = run_dir.join("journal.jsonl");
            let text = std::fs::read(&journal).map_err(|source| CliError::Io {
                action: "read",
                path: journal.clone(),
                source,
            })?;
            // Damage is found here, not after it was copied to every machine.
            crate::state::journal::read(&journal).map_err(|e| CliError::State { message: e.to_string() })?;
            match in_cluster.get(&id) {
                Some(there) if there.text.as_bytes() == text => continue,
                Some(_) => {
                    return Err(CliError::State {
                        message: format!(
                            "run {id} is in the cluster with other content than in {}: nothing was \
                             overwritten; compare them and remove one copy",
                            journal.display()
                        ),
                    })
                }
                None => {}
            }
            let mirror = cluster::Mirror::new(hold.clone(), &id, &journal);
            mirror.push(true).map_err(|message| CliError::State { message })?;
            let _ = std::fs::write(run_dir.join(cluster::PUSHED_MARK), "");
            moved += 1;
        }
        errln!("pushed {moved} run(s) to Lease {}/{}'s state", state.namespace, state.name);
    } else {
        // Never overwritten either: a local journal with something the cluster's lacks. One
        // the cluster's continues (pulled while the rollout ran) is brought up to date.
        for (id, there) in &in_cluster {
            let journal = dir.join("runs").join(id).join("journal.jsonl");
            if let Ok(here) = std::fs::read(&journal) {
                if !there.text.as_bytes().starts_with(&here) {
                    return Err(CliError::State {
                        message: format!(
                            "run {id} is in {} with other content than in the cluster: nothing was \
                             overwritten; compare them and remove one copy",
                            journal.display()
                        ),
                    });
                }
            }
        }
        let before = crate::state::history::run_dirs(&dir).len();
        remote.pull(&dir).map_err(state_error)?;
        moved = crate::state::history::run_dirs(&dir).len() - before;
        errln!("pulled {} run(s) into {} ({moved} new)", in_cluster.len(), dir.display());
    }
    drop(hold);
    drop(local_lock);
    Ok(exit::SUCCESS)
}
