//! One rollout per state directory: an OS lock on the state directory itself, which dies
//! with its holder (a killed milepost never leaves a stale lock) and cannot be unlinked from
//! under the holder the way a lock file can. The file `lock` names the holder for messages.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct StateLock {
    _dir: File,
    /// The cluster's lock, for a rollout whose state is in a cluster (docs/state.md §13).
    pub cluster: Option<std::sync::Arc<super::cluster::Hold>>,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{dir} is in use by another rollout ({holder}); wait for it to finish, or use another --state-dir"
    )]
    Held { dir: PathBuf, holder: String },
    /// The state directory could not be created, opened or locked.
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub fn acquire(state_dir: &Path, command: &str) -> Result<StateLock, LockError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| LockError::Io { path, source }
    };
    std::fs::create_dir_all(state_dir).map_err(io(state_dir))?;
    let dir = File::open(state_dir).map_err(io(state_dir))?;
    let holder_file = state_dir.join("lock");
    match dir.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let holder = std::fs::read_to_string(&holder_file).unwrap_or_default();
            let holder = holder.trim();
            let holder = if holder.is_empty() { "holder unknown".to_string() } else { holder.to_string() };
            return Err(LockError::Held { dir: state_dir.to_path_buf(), holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(state_dir)(e)),
    }
    let who = format!(
        "`milepost {command}`, pid {} on {}, since {}",
        std::process::id(),
        hostname(),
        super::format::now()
    );
    // Replaced whole, so a reader never sees half a name. Only for messages: on a full disk
    // the lock still holds, and the journal's own write says what is wrong.
    let partial = state_dir.join(".lock.partial");
    let named = File::create(&partial)
        .and_then(|mut f| f.write_all(who.as_bytes()))
        .and_then(|()| std::fs::rename(&partial, &holder_file));
    if named.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    Ok(StateLock { _dir: dir, cluster: None })
}

/// The pid of the process that holds the state directory's lock now, if any, from the
/// kernel's table of locks (`/proc/locks`): asked without taking the lock, which would make
/// a rollout starting that instant fail, and exact where a pid or a name could mislead.
pub fn holder(state_dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(state_dir).ok()?;
    // Linux's dev_t layout (glibc's gnu_dev_major/minor), as /proc/locks prints it.
    let dev = meta.dev();
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    // `1: FLOCK  ADVISORY  WRITE 12345 fd:01:1234567 0 EOF`
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let at = fields.iter().position(|f| *f == "FLOCK")?;
        let (pid, file) = (fields.get(at + 3)?, fields.get(at + 4)?);
        (*file == wanted).then(|| pid.parse().ok()).flatten()
    })
}

pub fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "?".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_with_the_first_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = acquire(dir.path(), "apply").unwrap();
        let err = acquire(dir.path(), "resume").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("`milepost apply`") && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        drop(first);
        assert!(acquire(dir.path(), "resume").is_ok(), "the lock goes with its holder");
    }

    #[test]
    fn removing_the_lock_file_does_not_release_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let _first = acquire(dir.path(), "apply").unwrap();
        std::fs::remove_file(dir.path().join("lock")).unwrap();
        let err = acquire(dir.path(), "resume").unwrap_err();
        assert!(matches!(err, LockError::Held { .. }), "{err}");
    }

    #[test]
    fn the_holder_is_read_from_the_kernel() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(holder(dir.path()), None);
        let held = acquire(dir.path(), "apply").unwrap();
        assert_eq!(holder(dir.path()), Some(std::process::id()));
        drop(held);
        assert_eq!(holder(dir.path()), None);
    }
}
