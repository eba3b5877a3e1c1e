//! The plan for machines. Schema documented in docs/plan.md; `schema_version` changes only
//! when a field changes meaning or goes away.

use serde::Serialize;

use super::super::build::{NodeStatus, Plan};
use super::super::risk::Risk;
use crate::spec::values::human;
use crate::spec::{NodeKind, Step};

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Serialize)]
struct JsonPlan<'a> {
    schema_version: u32,
    workflow: &'a str,
    title: &'a str,
    parallelism: u32,
    start: Option<String>,
    nodes: Vec<JsonNode<'a>>,
    phases: Vec<JsonPhase<'a>>,
    totals: JsonTotals,
    critical_path: Vec<&'a str>,
    parallel_groups: Vec<Vec<&'a str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deadline: Option<JsonDeadline<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    risk: Option<JsonRisk<'a>>,
}

#[derive(Serialize)]
struct JsonNode<'a> {
    id: &'a str,
    kind: NodeKind,
    number: Option<u32>,
    title: &'a str,
    phase: Option<&'a str>,
    #[serde(flatten)]
    status: &'a NodeStatus,
    budget_secs: u64,
    buffer: Option<f64>,
    planned_secs: u64,
    planned_ms: u64,
    duration_source: &'a str,
    start_secs: u64,
    end_secs: u64,
    start_at: Option<String>,
    end_at: Option<String>,
    slack_secs: u64,
    critical: bool,
    lane: u32,
    deps: Vec<&'a str>,
    /// Its `when`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    when: Option<JsonWhen<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    steps: Option<JsonSteps<'a>>,
}

#[derive(Serialize)]
struct JsonWhen<'a> {
    /// As written.
    text: &'a str,
    /// Decided at load (it reads vars only); `null`: decided when the node would start.
    value: Option<bool>,
}

#[derive(Serialize)]
struct JsonSteps<'a> {
    install: &'a [Step],
    validate: &'a [Step],
}

#[derive(Serialize)]
struct JsonPhase<'a> {
    id: &'a str,
    title: Option<&'a str>,
    start_secs: Option<u64>,
    end_secs: Option<u64>,
    span_secs: Option<u64>,
}

#[derive(Serialize)]
struct JsonTotals {
    finish_secs: u64,
    /// The finish to the millisecond: calibrated durations are measured, not whole seconds.
    finish_ms: u64,
    finish: String,
    sequential_secs: u64,
    sequential: String,
    modules_secs: u64,
    gates_secs: u64,
    saving_secs: u64,
    saving: String,
    critical_path_secs: u64,
}

#[derive(Serialize)]
struct JsonDeadline<'a> {
    window_secs: u64,
    fits: bool,
    first_late: Option<&'a str>,
    overrun_secs: u64,
}

#[derive(Serialize)]
struct JsonRisk<'a> {
    first_time_probability: f64,
    factors: Vec<(&'a str, f64)>,
    trials: u32,
    seed: u64,
    p50_secs: u64,
    p90_secs: u64,
    within_deadline: Option<f64>,
}

pub fn render(plan: &Plan, risk: Option<&Risk>, with_steps: bool) -> String {
    let w = plan.workflow;
    let name = |n: usize| w.nodes[n].id.as_str();
    let clock = |offset| plan.clock(offset).map(|c| c.strftime("%Y-%m-%dT%H:%M:%S").to_string());
    let t = &plan.totals;
    let out = JsonPlan {
        schema_version: SCHEMA_VERSION,
        workflow: &w.id,
        title: &w.title,
        parallelism: plan.parallelism,
        start: plan.start.map(|s| s.strftime("%Y-%m-%dT%H:%M:%S").to_string()),
        nodes: plan
            .graph
            .order()
            .iter()
            .map(|&n| {
                let node = &w.nodes[n];
                let slot = plan.schedule.slots[n];
                JsonNode {
                    id: &node.id,
                    kind: node.kind,
                    number: node.number,
                    title: &node.title,
                    phase: w.phase_of(n).map(|p| p.id.as_str()),
                    status: &plan.status[n],
                    budget_secs: node.budget.as_secs(),
                    buffer: node.buffer.map(|b| b.0),
                    planned_secs: plan.durations[n].as_secs(),
                    planned_ms: plan.durations[n].as_millis() as u64,
                    duration_source: plan.sources[n],
                    start_secs: slot.start.as_secs(),
                    end_secs: slot.end.as_secs(),
                    start_at: clock(slot.start),
                    end_at: clock(slot.end),
                    slack_secs: plan.cpm.slack[n].as_secs(),
                    critical: plan.is_critical(n),
                    lane: slot.lane,
                    deps: node.deps.iter().map(|&d| name(d)).collect(),
                    when: node.when.as_ref().map(|w| JsonWhen { text: &w.text, value: w.known }),
                    steps: with_steps
                        .then_some(JsonSteps { install: &node.install, validate: &node.validate }),
                }
            })
            .collect(),
        phases: w
            .phases
            .iter()
            .zip(&plan.phases)
            .map(|(ph, span)| JsonPhase {
                id: &ph.id,
                title: ph.title.as_deref(),
                start_secs: span.map(|s| s.start.as_secs()),
                end_secs: span.map(|s| s.end.as_secs()),
                span_secs: span.map(|s| (s.end - s.start).as_secs()),
            })
            .collect(),
        totals: JsonTotals {
            finish_secs: t.finish.as_secs(),
            finish_ms: t.finish.as_millis() as u64,
            finish: human(t.finish),
            sequential_secs: t.sequential.as_secs(),
            sequential: human(t.sequential),
            modules_secs: t.modules.as_secs(),
            gates_secs: t.gates.as_secs(),
            saving_secs: t.saving.as_secs(),
            saving: human(t.saving),
            critical_path_secs: plan.cpm.length.as_secs(),
        },
        critical_path: plan.cpm.path.iter().map(|&n| name(n)).collect(),
        parallel_groups: plan.overlaps().iter().map(|g| g.iter().map(|&n| name(n)).collect()).collect(),
        deadline: plan.deadline.map(|d| JsonDeadline {
            window_secs: d.window.as_secs(),
            fits: d.first_late.is_none(),
            first_late: d.first_late.map(name),
            overrun_secs: d.overrun.as_secs(),
        }),
        risk: risk.map(|r| JsonRisk {
            first_time_probability: r.first_time,
            factors: r.factors.iter().map(|&(n, p)| (name(n), p)).collect(),
            trials: r.trials,
            seed: r.seed,
            p50_secs: r.p50.as_secs(),
            p90_secs: r.p90.as_secs(),
            within_deadline: r.within_deadline,
        }),
    };
    serde_json::to_string_pretty(&out).expect("plain data always serializes") + "\n"
}
