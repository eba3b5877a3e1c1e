//! milepost: a declarative workflow executor for infrastructure rollouts.
//!
//! Data flows one way: [`spec`] turns KDL files into a validated [`spec::Workflow`],
//! [`graph`] seals it into a DAG, [`plan`] simulates the schedule, and [`cli`] prints.

pub mod cli;
pub mod cluster;
pub mod exec;
pub mod files;
pub mod graph;
pub mod notify;
pub mod plan;
pub mod report;
pub mod rollback;
pub mod spec;
pub mod state;
pub mod template;
#[cfg(test)]
mod testing;
pub mod ui;
