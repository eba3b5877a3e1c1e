//! One integration test binary: topic files below.

mod apply;
mod cli;
mod corpus;
mod examples;
mod fuzz;
mod plan;
mod report;
mod state;
mod support;
