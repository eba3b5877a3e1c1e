//! One rollout per state directory: an OS lock on `lock`, which dies with its holder, so a
//! killed milepost never leaves a stale lock. The file also names the holder for the message.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Holds the lock until dropped.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error(
        "{dir} is in use by another rollout ({holder}); wait for it to finish, or use another --state-dir"
    )]
    Held { dir: PathBuf, holder: String },
    /// The lock file could not be opened.
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub fn acquire(state_dir: &Path, command: &str) -> Result<StateLock, LockError> {
    let path = state_dir.join("lock");
    let io = |source| LockError::Io { path: path.clone(), source };
    std::fs::create_dir_all(state_dir).map_err(io)?;
    let mut file =
        File::options().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() { "holder unknown".to_string() } else { holder.to_string() };
            return Err(LockError::Held { dir: state_dir.to_path_buf(), holder });
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
    }
    let host =
        nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_else(|_| "?".into());
    let who =
        format!("`milepost {command}`, pid {} on {host}, since {}", std::process::id(), super::format::now());
    file.set_len(0).map_err(io)?;
    file.rewind().map_err(io)?;
    file.write_all(who.as_bytes()).map_err(io)?;
    Ok(StateLock { _file: file })
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
}
