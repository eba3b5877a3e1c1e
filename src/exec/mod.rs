//! Execution: the dispatcher, node runs and step kinds. Emits [`events::ExecEvent`]s and
//! never prints; `ui` shows them and `state` records them.

pub mod dispatcher;
pub mod events;
pub mod node;
pub mod preflight;
pub mod step;

pub use dispatcher::{execute, ApplyOptions};
pub use events::{ExecEvent, Outcome, RunSummary, SkipReason};
