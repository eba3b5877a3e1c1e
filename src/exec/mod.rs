//! Execution: the dispatcher, node runs and step kinds. Emits [`events::ExecEvent`]s and
//! never prints; `ui` shows them and `state` records them.

pub mod approval;
pub mod dispatcher;
pub mod events;
pub mod kubernetes;
pub mod log;
pub mod mask;
pub mod node;
pub mod orphans;
pub mod preflight;
pub mod step;

pub use dispatcher::{execute, ApplyOptions};

use std::sync::{Arc, Mutex};

/// Where the executor keeps its records. Written synchronously as events happen, and made
/// durable through [`Recorder::syncer`] before anything that depends on them starts; `exec`
/// defines it and `state` implements it, so execution never depends on the journal's format.
pub trait Recorder: Send {
    /// Writes what `event` says (to the OS: it survives a killed process, not yet a crash).
    ///
    /// # Errors
    /// A message naming what could not be written; the run stops cleanly on it.
    fn record(&mut self, event: &ExecEvent) -> Result<(), String>;

    /// Makes everything recorded so far durable from any thread, so the executor can wait
    /// for the disk without stopping the children it supervises. `None`: nothing to sync.
    fn syncer(&self) -> Option<Flush> {
        None
    }
}

pub type SharedRecorder = Arc<Mutex<dyn Recorder>>;

/// Flushes everything written so far to disk; blocking. See [`Recorder::syncer`].
pub type Flush = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Makes records durable with one flush at a time: callers that arrive while a flush runs
/// share the next one, so a fsync costs once per group of nodes that ended together rather
/// than once per node, and the blocking thread is woken once per group.
pub struct GroupSync {
    flush: Flush,
    /// Requests made so far, and whether a flush is running.
    state: Mutex<(u64, bool)>,
    /// The last request a finished flush covers, and the first failure (sticky: after a failed
    /// fsync the kernel may have dropped pages, so nothing written earlier is known durable).
    done: tokio::sync::watch::Sender<(u64, Option<String>)>,
}

pub type Syncer = Arc<GroupSync>;

impl GroupSync {
    pub fn new(flush: Flush) -> Self {
        Self { flush, state: Mutex::new((0, false)), done: tokio::sync::watch::Sender::new((0, None)) }
    }

    /// Waits until everything recorded before the call is on disk.
    pub async fn sync(&self) -> Result<(), String> {
        let broken = || "the journal sync broke earlier in this run".to_string();
        let mut done = self.done.subscribe();
        let mine = {
            let mut state = self.state.lock().map_err(|_| broken())?;
            state.0 += 1;
            state.0
        };
        loop {
            // Checked and decided under the lock the leader publishes under: no lost wake-up.
            let lead = {
                let mut state = self.state.lock().map_err(|_| broken())?;
                let (covered, failed) = done.borrow_and_update().clone();
                if let Some(reason) = failed {
                    return Err(reason);
                }
                if covered >= mine {
                    return Ok(());
                }
                if state.1 {
                    None
                } else {
                    state.1 = true;
                    Some(state.0)
                }
            };
            match lead {
                None => {
                    if done.changed().await.is_err() {
                        return Err(broken());
                    }
                }
                Some(target) => {
                    let flush = self.flush.clone();
                    let result = tokio::task::spawn_blocking(move || flush())
                        .await
                        .map_err(|e| format!("the journal sync did not finish: {e}"))
                        .and_then(|r| r);
                    let mut state = self.state.lock().map_err(|_| broken())?;
                    state.1 = false;
                    self.done.send_modify(|(covered, failed)| {
                        *covered = target;
                        if let Err(reason) = &result {
                            failed.get_or_insert_with(|| reason.clone());
                        }
                    });
                    return result;
                }
            }
        }
    }
}

/// The recorder's syncer, once per run.
pub fn syncer_of(recorder: &Option<SharedRecorder>) -> Option<Syncer> {
    let flush = recorder.as_ref().and_then(|r| r.lock().ok().and_then(|r| r.syncer()))?;
    Some(Arc::new(GroupSync::new(flush)))
}

/// Waits until what was recorded is on disk, on a blocking thread.
pub async fn sync(syncer: &Option<Syncer>) -> Result<(), String> {
    match syncer {
        Some(syncer) => syncer.sync().await,
        None => Ok(()),
    }
}

/// Records through `recorder` when there is one.
pub fn record(recorder: &Option<SharedRecorder>, event: &ExecEvent) -> Result<(), String> {
    match recorder {
        None => Ok(()),
        Some(r) => r.lock().map_err(|_| "the recorder broke earlier in this run".to_string())?.record(event),
    }
}
pub use events::{ExecEvent, Outcome, RunSummary, SkipReason};

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
    }

    #[test]
    fn callers_during_a_flush_share_the_next_one() {
        let flushes = Arc::new(AtomicUsize::new(0));
        let counted = flushes.clone();
        let group = Arc::new(GroupSync::new(Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(50));
            Ok(())
        })));
        runtime().block_on(async {
            let mut calls = tokio::task::JoinSet::new();
            for _ in 0..10 {
                let group = group.clone();
                calls.spawn(async move { group.sync().await });
            }
            while let Some(result) = calls.join_next().await {
                assert_eq!(result.unwrap(), Ok(()));
            }
        });
        // The first caller's flush, then one for the nine that asked while it ran.
        assert_eq!(flushes.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn a_failed_flush_fails_every_later_sync() {
        let first = Arc::new(AtomicUsize::new(0));
        let group = GroupSync::new(Arc::new(move || {
            if first.fetch_add(1, Ordering::SeqCst) == 0 {
                Err("EIO".to_string())
            } else {
                Ok(())
            }
        }));
        runtime().block_on(async {
            assert_eq!(group.sync().await, Err("EIO".to_string()));
            // A later fsync may succeed while the pages of the failed one are gone.
            assert_eq!(group.sync().await, Err("EIO".to_string()));
        });
    }
}
