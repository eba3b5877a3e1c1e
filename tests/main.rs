//! One integration test binary: topic files below.

mod cli;
mod corpus;
mod examples;
mod fuzz;
mod plan;
mod support;
