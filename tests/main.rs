//! One integration test binary: topic files below.

mod apply;
mod approvals;
mod cli;
mod cluster_state;
mod conditions;
mod corpus;
mod crash;
mod environments;
mod examples;
mod fake_api;
mod fmt;
mod fuzz;
mod hostile;
mod kube_contract;
mod kubernetes;
mod notify;
mod plan;
mod readme;
mod report;
mod rollback;
mod schemas;
mod state;
mod steps;
mod support;
mod trust;
