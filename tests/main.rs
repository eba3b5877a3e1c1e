//! One integration test binary: topic files below.

mod apply;
mod cli;
mod corpus;
mod examples;
mod fake_api;
mod fuzz;
mod hostile;
mod kubernetes;
mod plan;
mod report;
mod state;
mod support;
