//! Execution: the dispatcher, node runs and step kinds. Emits [`events::ExecEvent`]s and
//! never prints; `ui` shows them and `state` records them.

pub mod dispatcher;
pub mod events;
pub mod kubernetes;
pub mod node;
pub mod preflight;
pub mod step;

pub use dispatcher::{execute, ApplyOptions};

use std::sync::{Arc, Mutex};

/// Where the executor makes its records durable. Called synchronously, before anything that
/// depends on the event starts; `exec` defines it and `state` implements it, so execution
/// never depends on the journal's format.
pub trait Recorder: Send {
    /// Writes what `event` says; with `durable`, it is on disk when this returns.
    ///
    /// # Errors
    /// A message naming what could not be written; the run stops cleanly on it.
    fn record(&mut self, event: &ExecEvent, durable: bool) -> Result<(), String>;

    /// Makes everything recorded so far durable from any thread, so the executor can wait
    /// for the disk without stopping the children it supervises. `None`: nothing to sync.
    fn syncer(&self) -> Option<Syncer> {
        None
    }
}

pub type SharedRecorder = Arc<Mutex<dyn Recorder>>;

/// See [`Recorder::syncer`].
pub type Syncer = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// The recorder's syncer, once per run.
pub fn syncer_of(recorder: &Option<SharedRecorder>) -> Option<Syncer> {
    recorder.as_ref().and_then(|r| r.lock().ok().and_then(|r| r.syncer()))
}

/// Waits until what was recorded is on disk, on a blocking thread.
pub async fn sync(syncer: &Option<Syncer>) -> Result<(), String> {
    let Some(syncer) = syncer.clone() else { return Ok(()) };
    tokio::task::spawn_blocking(move || syncer())
        .await
        .map_err(|e| format!("the journal sync did not finish: {e}"))?
}

/// Records through `recorder` when there is one.
pub fn record(recorder: &Option<SharedRecorder>, event: &ExecEvent, durable: bool) -> Result<(), String> {
    match recorder {
        None => Ok(()),
        Some(r) => {
            r.lock().map_err(|_| "the recorder broke earlier in this run".to_string())?.record(event, durable)
        }
    }
}
pub use events::{ExecEvent, Outcome, RunSummary, SkipReason};
