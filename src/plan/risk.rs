//! Risk before a run: the probability that every node passes first time, and Monte Carlo
//! P50/P90 finish times over a documented duration model (docs/plan.md):
//!
//! - A node's budget (without buffer) is the team's median estimate; its work takes
//!   `budget × e^X`, X ~ Normal(0, 0.3²): right-skewed, one sigma about ±35%.
//! - With probability `1 − success-probability` an attempt fails; the fix and re-run cost
//!   `budget × U(0.25, 1.0)` more, and the re-run can fail again the same way.
//! - Each trial is scheduled by the same simulation as the plan. Seeded, so repeatable.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

use super::build::Plan;
use super::simulate::{simulate, Limits};
use crate::spec::NodeId;

pub const DEFAULT_TRIALS: u32 = 2000;
pub const DEFAULT_SEED: u64 = 2026;
const SIGMA: f64 = 0.3;
/// A node that keeps failing is capped, so one trial cannot run forever.
const MAX_ATTEMPTS: u32 = 20;

#[derive(Debug, Clone)]
pub struct Risk {
    /// Each node still to run and its success probability, in plan order.
    pub factors: Vec<(NodeId, f64)>,
    /// The product of the factors.
    pub first_time: f64,
    pub trials: u32,
    pub seed: u64,
    pub p50: Duration,
    pub p90: Duration,
    /// Share of trials that finished inside the deadline, when one was given.
    pub within_deadline: Option<f64>,
}

pub fn assess(plan: &Plan, trials: u32, seed: u64) -> Risk {
    let w = plan.workflow;
    let remaining: Vec<NodeId> =
        plan.graph.order().iter().copied().filter(|&n| !plan.durations[n].is_zero()).collect();
    let factors: Vec<(NodeId, f64)> =
        remaining.iter().map(|&n| (n, w.nodes[n].success_probability)).collect();
    let first_time = factors.iter().map(|(_, p)| p).product();
    let limits = Limits::of(w, plan.parallelism);
    let spread = LogNormal::new(0.0, SIGMA).expect("a positive sigma is a valid log-normal");
    let mut rng = StdRng::seed_from_u64(seed);
    let trials = trials.max(1);
    let mut finishes: Vec<Duration> = Vec::with_capacity(trials as usize);
    let mut durations = vec![Duration::ZERO; w.nodes.len()];
    for _ in 0..trials {
        for &n in &remaining {
            let node = &w.nodes[n];
            let base = node.budget.as_secs_f64();
            let mut secs = base * spread.sample(&mut rng);
            let mut attempts = 1;
            while attempts < MAX_ATTEMPTS && rng.random::<f64>() > node.success_probability {
                secs += base * rng.random_range(0.25..1.0);
                attempts += 1;
            }
            durations[n] = Duration::from_secs_f64(secs);
        }
        finishes.push(simulate(&plan.graph, &durations, &limits).finish);
    }
    finishes.sort();
    let pick = |q: f64| finishes[((finishes.len() as f64 - 1.0) * q).round() as usize];
    let within_deadline = plan
        .deadline
        .map(|d| finishes.iter().filter(|&&f| f <= d.window).count() as f64 / finishes.len() as f64);
    Risk { factors, first_time, trials, seed, p50: pick(0.5), p90: pick(0.9), within_deadline }
}
