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
    if starts_plain && id.len() <= 64 && id.chars().all(plain) {
        return id.to_string();
    }
    let kept: String = id.chars().filter(|c| plain(*c)).take(40).collect();
    let hash: String = Sha256::digest(id.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect();
    format!("_{kept}-{hash}")
}

/// What the newest run in a root was: where, of which workflow file, in which environment.
#[derive(Debug, Clone)]
pub struct LastRun {
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
    let (_, run) = newest?;
    let records = journal::read(&run.join("journal.jsonl")).ok()?;
    match records.first()? {
        Record::RunStart { workflow_file, environment, .. } => Some(LastRun {
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

fn subdirs(dir: &Path) -> Vec<PathBuf> {
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
    let _lock = super::lock::acquire(root, "migrate").map_err(|e| MigrateError::Locked(e.to_string()))?;
    if !legacy.is_dir() {
        return Ok(0); // another milepost migrated it while this one waited
    }
    let mut moves = Vec::new();
    for run in super::history::run_dirs(root) {
        let journal = run.join("journal.jsonl");
        let records = journal::read(&journal)
            .map_err(|e| failed(format!("{e}; fix or remove {} and run again", run.display())))?;
        let Some(Record::RunStart { workflow, run_id, .. }) = records.first() else {
            return Err(failed(format!("{} does not start with run-start", journal.display())));
        };
        moves.push((run.clone(), workflow.clone(), run_id.clone()));
    }
    for (run, workflow, _) in &moves {
        let target = rollout_dir(root, workflow, NO_ENVIRONMENT).join("runs");
        std::fs::create_dir_all(&target).map_err(|e| failed(format!("{}: {e}", target.display())))?;
        let moved = target.join(run.file_name().expect("a run folder has a name"));
        std::fs::rename(run, &moved)
            .map_err(|e| failed(format!("{} → {}: {e}", run.display(), moved.display())))?;
    }
    // Each workflow's chain of runs now skips the runs of the others.
    let mut workflows: Vec<&String> = moves.iter().map(|(_, w, _)| w).collect();
    workflows.sort();
    workflows.dedup();
    for workflow in workflows {
        let others: Vec<&str> =
            moves.iter().filter(|(_, w, _)| w != workflow).map(|(_, _, id)| id.as_str()).collect();
        if !others.is_empty() {
            let list = rollout_dir(root, workflow, NO_ENVIRONMENT).join(MOVED_RUNS);
            crate::files::write_atomically(&list, (others.join("\n") + "\n").as_bytes())
                .map_err(|e| failed(format!("{}: {e}", list.display())))?;
        }
    }
    // What is left are folders being created when an older milepost died: never runs.
    if std::fs::remove_dir(&legacy).is_err() {
        let aside = root.join(".runs-before-environments");
        std::fs::rename(&legacy, &aside).map_err(|e| failed(format!("{}: {e}", legacy.display())))?;
    }
    Ok(moves.len())
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
        assert_ne!(folder_name("a/b"), folder_name("a_b"));
        assert_ne!(folder_name("a/b"), folder_name("a:b"));
    }
}
