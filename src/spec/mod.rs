//! Definitions: KDL text → spanned raw definitions → the validated [`Workflow`].
//!
//! Owns the definition language. Knows nothing of scheduling, running or state.

pub mod condition;
pub mod decode;
pub mod diagnostic;
pub mod environments;
pub mod format;
pub mod load;
pub mod metrics;
pub mod model;
pub mod raw;
pub mod source;
pub mod validate;
pub mod values;

pub use diagnostic::{Problem, SpecErrors};
pub use load::{load, parse_var, LoadOptions, Loaded};
pub use model::*;
