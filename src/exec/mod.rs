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
}

pub type SharedRecorder = Arc<Mutex<dyn Recorder>>;

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
