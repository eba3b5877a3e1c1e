//! Definitions as written: every user value spanned, names not yet resolved, templates
//! not yet rendered. Built by [`super::decode`], consumed by [`super::validate`].

use std::path::PathBuf;
use std::time::Duration;

use super::model::StateBackend;
use super::source::{Location, Spanned};
use super::values::Percent;

/// Everything one KDL file defined.
#[derive(Debug, Default)]
pub struct RawFile {
    pub workflows: Vec<RawWorkflow>,
    pub nodes: Vec<RawNode>,
}

#[derive(Debug)]
pub struct RawWorkflow {
    pub id: Spanned<String>,
    pub title: Option<Spanned<String>>,
    pub includes: Vec<Spanned<String>>,
    pub parallelism: Option<Spanned<u32>>,
    pub shell: Option<Spanned<String>>,
    pub on_overrun: Option<Spanned<OnOverrun>>,
    pub vars: Vec<(Spanned<String>, Spanned<String>)>,
    pub secrets: Vec<RawSecret>,
    pub resources: Vec<RawResource>,
    pub phases: Vec<RawPhase>,
    pub metrics: Vec<RawMetric>,
    pub kubernetes: Option<RawKubernetes>,
    pub environments: Vec<RawEnvironment>,
    pub on_failure: Option<Spanned<OnFailure>>,
    /// Steps run after an `apply` or `resume`, whatever its outcome (`finally { … }`).
    pub finally: Vec<RawStep>,
    pub notify: Vec<RawNotify>,
    /// Where the rollout's state lives (`state "kubernetes" …`); `None`: the local folder.
    pub state: Option<Spanned<StateBackend>>,
}

/// A webhook told of a rollout's events: `notify slack { url "{{ secrets.hook }}"; events … }`.
#[derive(Debug)]
pub struct RawNotify {
    pub name: Spanned<String>,
    pub url: Option<Spanned<String>>,
    pub events: Vec<Spanned<String>>,
    /// A tera template file for the body; default: Slack-compatible `{"text": …}`.
    pub template: Option<Spanned<String>>,
}

/// One place the workflow rolls out to (`environment staging { … }`): what makes it itself.
/// Every setting overrides the workflow's own for runs with `--env` naming it.
#[derive(Debug)]
pub struct RawEnvironment {
    pub name: Spanned<String>,
    pub kubernetes: Option<RawKubernetes>,
    pub vars: Vec<(Spanned<String>, Spanned<String>)>,
    /// Files of `name "value"` lines, relative to the workflow file, applied before `vars`.
    pub vars_files: Vec<Spanned<String>>,
    /// Where this environment's secrets come from: `secret vault_token env="PROD_VAULT_TOKEN"`.
    pub secrets: Vec<RawSecret>,
    pub parallelism: Option<Spanned<u32>>,
    pub deadline: Option<Spanned<Duration>>,
    pub on_overrun: Option<Spanned<OnOverrun>>,
    pub requires: Option<RawRequirement>,
    /// This environment's state backend, over the workflow's.
    pub state: Option<Spanned<StateBackend>>,
}

/// Promotion: `requires staging phase="2A"` — another environment must have passed this
/// phase (or, without `phase`, the whole workflow) with the same definition first.
#[derive(Debug)]
pub struct RawRequirement {
    pub environment: Spanned<String>,
    pub phase: Option<Spanned<String>>,
}

/// A secret variable: read from the environment, masked everywhere it is shown.
#[derive(Debug)]
pub struct RawSecret {
    pub name: Spanned<String>,
    pub env: Spanned<String>,
}

/// A shared resource with a concurrency limit (`resource cluster-api limit=1`).
#[derive(Debug)]
pub struct RawResource {
    pub name: Spanned<String>,
    pub limit: Spanned<u32>,
}

#[derive(Debug)]
pub struct RawPhase {
    pub id: Spanned<String>,
    pub title: Option<Spanned<String>>,
    pub modules: Vec<Spanned<String>>,
    pub gate: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct RawMetric {
    pub id: Spanned<String>,
    pub formula: Spanned<String>,
    pub target: Option<Spanned<f64>>,
}

#[derive(Debug, Default)]
pub struct RawKubernetes {
    pub context: Option<Spanned<String>>,
    pub namespace: Option<Spanned<String>>,
}

/// What a budget overrun does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnOverrun {
    #[default]
    Warn,
    Fail,
}

/// What a failure does to what the failed node (a gate: its phase) installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OnFailure {
    /// Leave it for a resume.
    #[default]
    Stop,
    /// Run its `rollback` steps: a module's own; a gate's phase's modules, dependents first.
    Rollback,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NodeKind {
    Module,
    Gate,
}

impl NodeKind {
    pub fn noun(self) -> &'static str {
        match self {
            NodeKind::Module => "module",
            NodeKind::Gate => "gate",
        }
    }
}

/// A module or a gate, as written.
#[derive(Debug)]
pub struct RawNode {
    pub kind: NodeKind,
    pub id: Spanned<String>,
    /// The directory of the file that defines it; relative paths start here.
    pub dir: PathBuf,
    pub number: Option<Spanned<u32>>,
    pub title: Option<Spanned<String>>,
    pub description: Option<Spanned<String>>,
    pub budget: Option<Spanned<Duration>>,
    pub buffer: Option<Spanned<Percent>>,
    pub probability: Option<Spanned<f64>>,
    pub domain: Option<Spanned<String>>,
    pub after: Vec<Spanned<String>>,
    pub uses: Vec<Spanned<String>>,
    pub on_overrun: Option<Spanned<OnOverrun>>,
    /// `when "{{ … }}"`: the condition under which it runs.
    pub when: Option<Spanned<String>>,
    pub install: Vec<RawStep>,
    pub validate: Vec<RawStep>,
    /// Decoding reported problems inside this node, so checks that would only repeat them
    /// (no steps, no phase) stay quiet.
    pub flawed: bool,
    /// Its install and validate blocks as written, hashed: the start of its source hash.
    pub fingerprint: [u8; 32],
    /// What undoes it (`rollback budget="5m" { … }`).
    pub rollback: Vec<RawStep>,
    pub rollback_budget: Option<Spanned<Duration>>,
    pub on_failure: Option<Spanned<OnFailure>>,
    /// Steps run when it fails, before any rollback: diagnostics (`on-failure { … }`).
    pub handler: Vec<RawStep>,
    /// `approval required=2 from="sre-leads" "alice" environment="prod"` lines.
    pub approvals: Vec<RawApproval>,
}

/// One `approval` line of a module or gate, values checked one by one; which environment it
/// names is checked against the workflow's in `validate`.
#[derive(Debug)]
pub struct RawApproval {
    /// Where `approval` was written.
    pub at: Location,
    /// How many distinct people must approve; `None`: 1.
    pub required: Option<Spanned<u32>>,
    /// User or group names; empty: anyone who can write the rollout's state.
    pub from: Vec<Spanned<String>>,
    /// The environment it applies to; `None`: every one.
    pub environment: Option<Spanned<String>>,
}

#[derive(Debug)]
pub struct RawStep {
    pub name: Spanned<String>,
    /// The step node's name, e.g. where `run` was written.
    pub at: Location,
    pub kind: RawStepKind,
    pub timeout: Option<Spanned<Duration>>,
    pub retries: Option<Spanned<u32>>,
    pub backoff: Option<Spanned<Duration>>,
    pub interval: Option<Spanned<Duration>>,
    /// `when="{{ … }}"`: the condition under which it runs.
    pub when: Option<Spanned<String>>,
}

#[derive(Debug)]
pub enum RawStepKind {
    Run {
        command: Spanned<String>,
        shell: Option<Spanned<String>>,
        cwd: Option<Spanned<String>>,
        env: Vec<(Spanned<String>, Spanned<String>)>,
    },
    Http {
        url: Spanned<String>,
        method: Option<Spanned<String>>,
        expect: Option<Spanned<u16>>,
        body: Option<Spanned<String>>,
    },
    Tcp {
        address: Spanned<String>,
    },
    Template {
        source: Spanned<String>,
        dest: Spanned<String>,
    },
    Apply {
        path: Spanned<String>,
        namespace: Option<Spanned<String>>,
        force: bool,
    },
    Wait {
        resource: Spanned<String>,
        namespace: Option<Spanned<String>>,
        condition: Option<Spanned<String>>,
        until: Option<Spanned<String>>,
    },
}
