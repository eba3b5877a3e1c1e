//! `milepost plan`: the schedule simulation and everything a dry run shows.
//!
//! Reads the validated workflow and the sealed graph; never touches a cluster or state.

pub mod build;
pub mod render;
pub mod risk;
pub mod simulate;

pub use build::{NodeStatus, Plan, PlanOptions};
pub use simulate::{cpm, simulate, Cpm, Limits, Schedule, Slot};
