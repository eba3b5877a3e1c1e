//! Where a rollout's state lives. One state root (`.milepost` beside the workflow, or
//! `--state-dir`) holds one folder per workflow and environment, and they share nothing:
//!
//! ```text
//! .milepost/<workflow>/<environment>/     lock, runs/ (docs/state.md §1)
//! ```
//!
//! A workflow without environments keeps its state under [`NO_ENVIRONMENT`]. A root in the
//! layout before environments (`.milepost/runs/…`) is migrated on first use: each run moves
//! to its workflow's `default` folder ([`migrate`]).

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::format::Record;
use super::journal;
pub use crate::spec::NO_ENVIRONMENT;

/// The name of the file, in a rollout's folder, listing runs that the migration from the
/// layout before environments moved to other folders: a run that names one of them as
/// its previous run is not missing one.
pub const MOVED_RUNS: &str = "moved-runs";

/// The state root: `explicit` (`--state-dir`), else `.milepost` in `workflow_dir`.
pub fn root(explicit: Option<&Path>, workflow_dir: &Path) -> PathBuf {
    explicit.map_or_else(|| workflow_dir.join(".milepost"), Path::to_path_buf)
}

/// The folder of one workflow's rollouts in one environment.
pub fn rollout_dir(root: &Path, workflow: &str, environment: &str) -> PathBuf {
    root.join(folder_name(workflow)).join(folder_name(environment))
}

/// A workflow id as a folder name: itself when it is a plain word, else its plain part and
/// a hash of the whole (an id is any string: `../x` must not leave the root).
fn folder_name(id: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let starts_plain = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric());
    // `runs` and `lock` at the root are the layout before environments and its lock.
    // Compared without case: on macOS and Windows `Runs` is the folder `runs`.
    let reserved = matches!(id.to_ascii_lowercase().as_str(), "runs" | "lock");
    if starts_plain && !reserved && id.len() <= 64 && id.chars().all(plain) {
        return id.to_string();
    }
    let kept: String = id.chars().filter(|c| plain(*c)).take(40).collect();
    let hash: String = Sha256::digest(id.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("_{kept}-{hash}")
}

/// What the newest run in a root was: where, of which workflow file, in which environment.
#[derive(Debug, Clone)]
pub struct LastRun {
    /// The run's id: newer runs have greater ids.
    pub run_id: String,
    pub dir: PathBuf,
    pub workflow_file: PathBuf,
    pub environment: Option<String>,
}

/// The newest run among every rollout folder of `root` (run ids begin with their UTC start),
/// of `environment` when given.
pub fn last_run(root: &Path, environment: Option<&str>) -> Option<LastRun> {
    let mut newest: Option<(String, PathBuf)> = None;
    for workflow in subdirs(root) {
        for env_dir in subdirs(&workflow) {
            if let Some(run) = super::history::run_dirs(&env_dir).pop() {
                let name = run.file_name()?.to_string_lossy().into_owned();
                if newest.as_ref().is_none_or(|(n, _)| *n < name) {
                    let wanted = environment.is_none_or(|e| env_dir.file_name().is_some_and(|f| f == e));
                    if wanted {
                        newest = Some((name, run));
                    }
                }
            }
        }
    }
    let (run_id, run) = newest?;
    let records = journal::read(&run.join("journal.jsonl")).ok()?;
    match records.first()? {
        Record::RunStart { workflow_file, environment, .. } => Some(LastRun {
            run_id,
            dir: run.parent()?.parent()?.to_path_buf(),
            workflow_file: PathBuf::from(workflow_file),
            environment: environment.clone(),
        }),
        _ => None,
    }
}

/// The cluster the newest run of `workflow` in `rollout_dir` that connected to one talked to.
/// Reads journals newest first and stops at the first that says; a journal it cannot read
/// says nothing here (the commands that read the history name it).
pub fn recorded_cluster(rollout_dir: &Path, workflow: &str) -> Option<super::format::ClusterIdentity> {
    super::history::run_dirs(rollout_dir).iter().rev().find_map(|run| {
        match journal::read(&run.join("journal.jsonl")).ok()?.into_iter().next()? {
            Record::RunStart { cluster, workflow: w, .. } if w == workflow => cluster,
            _ => None,
        }
    })
}

/// The state roots (`.milepost` folders) in `dir` and below it, at most `depth` folders down,
/// passing over hidden folders, `target` and `node_modules`: where `resume` without a
/// workflow looks when there is no root here. `None` when the tree is too large to search
/// whole (a partial answer could name an older rollout as the newest).
pub fn roots_below(dir: &Path, depth: usize) -> Option<Vec<PathBuf>> {
    const MAX_ENTRIES: usize = 200_000;
    const MAX_FOLDERS: usize = 5_000;
    let mut roots = Vec::new();
    let (mut entries_seen, mut folders_seen) = (0, 0);
    let mut stack = vec![(dir.to_path_buf(), 0)];
    while let Some((folder, level)) = stack.pop() {
        folders_seen += 1;
        if folders_seen > MAX_FOLDERS {
            return None;
        }
        let Ok(entries) = std::fs::read_dir(&folder) else { continue };
        for entry in entries.filter_map(Result::ok) {
            entries_seen += 1;
            if entries_seen > MAX_ENTRIES {
                return None;
            }
            // No symlinks followed: a loop cannot hold the search.
            if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name == ".milepost" {
                roots.push(entry.path());
            } else if level < depth && !name.starts_with('.') && name != "target" && name != "node_modules" {
                stack.push((entry.path(), level + 1));
            }
        }
    }
    roots.sort();
    Some(roots)
}

/// The folders in `dir` whose names do not start with `.`, in name order.
pub(crate) fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

#[derive(Debug, thiserror::Error)]
pub enum MigrateError {
    #[error("{0}")]
    Locked(String),
    #[error("cannot move the runs of {root} to the layout with environments: {reason}")]
    Failed { root: PathBuf, reason: String },
}

/// Moves the runs of a root in the layout before environments (`<root>/runs/<id>`) to
/// `<root>/<workflow>/default/runs/<id>`, under the root's lock (the lock an older milepost
/// takes): a root without `runs/` is left alone. A run whose workflow cannot be read stops the
/// migration before anything moves: it is named, never guessed. Returns how many runs moved.
pub fn migrate(root: &Path) -> Result<usize, MigrateError> {
    let legacy = root.join("runs");
    if !legacy.is_dir() {
        return Ok(0);
    }
    let failed = |reason: String| MigrateError::Failed { root: root.to_path_buf(), reason };
    let _lock = lock_root(root)?;
    if !legacy.is_dir() {
        return Ok(0); // another milepost migrated it while this one waited
    }
    // Every run is read before anything moves: one that cannot be read stops it all.
    let mut moves = Vec::new();
    for run in super::history::run_dirs(root) {
        let journal = run.join("journal.jsonl");
        let records = journal::read(&journal).map_err(|e| failed(format!("{e} (nothing was moved)")))?;
        let Some(Record::RunStart { workflow, run_id, .. }) = records.first() else {
            return Err(failed(format!(
                "{} does not start with run-start (nothing was moved)",
                journal.display()
            )));
        };
        moves.push((run.clone(), workflow.clone(), run_id.clone()));
    }
    // Each workflow's chain of runs will skip the runs of the others: said before any run
    // moves, and added to what an earlier migration said, so a migration cut short (a full
    // disk, a run moved by hand) leaves every chain readable.
    let mut workflows: Vec<&String> = moves.iter().map(|(_, w, _)| w).collect();
    workflows.sort();
    workflows.dedup();
    for workflow in workflows {
        let dir = rollout_dir(root, workflow, NO_ENVIRONMENT);
        let mut listed = moved_runs(&dir);
        listed.extend(moves.iter().filter(|(_, w, _)| w != workflow).map(|(_, _, id)| id.clone()));
        listed.sort();
        listed.dedup();
        if !listed.is_empty() {
            std::fs::create_dir_all(&dir).map_err(|e| failed(format!("{}: {e}", dir.display())))?;
            let list = dir.join(MOVED_RUNS);
            crate::files::write_atomically(&list, (listed.join("\n") + "\n").as_bytes())
                .map_err(|e| failed(format!("{}: {e}", list.display())))?;
        }
    }
    if let Some((run, workflow, _)) = moves.iter().find(|(run, workflow, _)| {
        let target = rollout_dir(root, workflow, NO_ENVIRONMENT).join("runs");
        target.join(run.file_name().expect("a run folder has a name")).exists()
    }) {
        return Err(failed(format!(
            "{} is also in {} (nothing was moved): remove one of the two copies",
            run.display(),
            rollout_dir(root, workflow, NO_ENVIRONMENT).join("runs").display()
        )));
    }
    for (run, workflow, _) in &moves {
        let target = rollout_dir(root, workflow, NO_ENVIRONMENT).join("runs");
        std::fs::create_dir_all(&target).map_err(|e| failed(format!("{}: {e}", target.display())))?;
        let moved = target.join(run.file_name().expect("a run folder has a name"));
        std::fs::rename(run, &moved)
            .map_err(|e| failed(format!("{} → {}: {e}", run.display(), moved.display())))?;
    }
    // What is left are folders being created when an older milepost died: never runs. They
    // are kept aside, beside what earlier migrations kept.
    let aside = root.join(".runs-before-environments");
    if let Ok(left) = std::fs::read_dir(&legacy) {
        for entry in left.filter_map(Result::ok) {
            std::fs::create_dir_all(&aside).map_err(|e| failed(format!("{}: {e}", aside.display())))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let free =
                (0..).map(|i| if i == 0 { aside.join(&name) } else { aside.join(format!("{name}-{i}")) });
            let target = free.take(1000).find(|p| !p.exists()).unwrap_or_else(|| aside.join(&name));
            std::fs::rename(entry.path(), &target)
                .map_err(|e| failed(format!("{} → {}: {e}", entry.path().display(), target.display())))?;
        }
    }
    std::fs::remove_dir(&legacy).map_err(|e| failed(format!("{}: {e}", legacy.display())))?;
    Ok(moves.len())
}

/// The root's lock, which an older milepost holds while it runs in the layout before
/// environments. Another migration holds it for moments: waited for, briefly.
fn lock_root(root: &Path) -> Result<super::lock::StateLock, MigrateError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match super::lock::acquire(root, "migrate") {
            Ok(lock) => return Ok(lock),
            Err(super::lock::LockError::Held { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(50))
            }
            Err(e) => {
                return Err(MigrateError::Locked(format!(
                    "{e}. The runs in {} are in the layout before environments: an older milepost may be \
                     running there; when it is done, any command moves them",
                    root.join("runs").display()
                )))
            }
        }
    }
}

/// The run ids the migration moved away from `rollout_dir` ([`MOVED_RUNS`]).
pub fn moved_runs(rollout_dir: &Path) -> Vec<String> {
    std::fs::read_to_string(rollout_dir.join(MOVED_RUNS))
        .map(|text| text.lines().map(String::from).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_names_stay_inside_the_root_and_apart() {
        for id in ["..", ".", "../x", "a/b", "/etc", "", ".hidden", "a\0b", "ü", "x\\y"] {
            let name = folder_name(id);
            assert!(
                !name.is_empty() && !name.contains(['/', '\\', '\0']) && !name.starts_with('.'),
                "{id:?} → {name}"
            );
        }
        assert_eq!(folder_name("phase-2"), "phase-2");
        assert!(folder_name("runs").starts_with("_runs-") && folder_name("lock").starts_with("_lock-"));
        assert_ne!(folder_name("a/b"), folder_name("a_b"));
        assert_ne!(folder_name("a/b"), folder_name("a:b"));
    }
}
