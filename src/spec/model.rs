//! The validated workflow: names resolved, includes expanded, templates rendered.
//! Only [`super::load`] builds one; everything after `spec` reads it and nothing changes it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

pub use super::condition::Condition;
pub use super::raw::{NodeKind, OnFailure, OnOverrun};
use super::values::Percent;
use crate::template::Text;

/// Index of a module or gate in [`Workflow::nodes`].
pub type NodeId = usize;

#[derive(Debug, Clone, Serialize)]
pub struct Workflow {
    pub id: String,
    pub title: String,
    /// The workflow file, as given.
    pub file: PathBuf,
    /// The directory holding the workflow file: the default home of the state directory.
    pub dir: PathBuf,
    pub parallelism: u32,
    /// The shell that runs `run` commands, split into words; the command is appended.
    pub shell: Vec<String>,
    pub on_overrun: OnOverrun,
    /// The default of every node's `on-failure`.
    pub on_failure: OnFailure,
    /// Steps run after an `apply` or `resume` ends, whatever its outcome but an interruption:
    /// cleanup, a last notification. Their failures are reported, never in place of the
    /// rollout's.
    pub finally: Vec<Step>,
    /// Webhooks told of the rollout's events.
    pub notify: Vec<Notify>,
    pub vars: BTreeMap<String, String>,
    /// The `--var`/`--vars-file` values that differ from the file's defaults.
    pub var_overrides: BTreeMap<String, String>,
    pub secrets: Vec<Secret>,
    pub resources: Vec<Resource>,
    pub phases: Vec<Phase>,
    pub nodes: Vec<Node>,
    pub metrics: Vec<Metric>,
    pub kubernetes: Kubernetes,
    /// The environments it declares (`environment staging { … }`), in order.
    pub environments: Vec<Environment>,
    /// Index into [`Workflow::environments`] of the one this load is for (`--env`), whose
    /// settings are applied; `None` when none was named.
    pub environment: Option<usize>,
    /// Where the state of this load's rollout lives: the environment's `state`, else the
    /// workflow's (docs/state.md §13). `None`: only the local folder.
    pub state: Option<ClusterState>,
}

/// `state "kubernetes" …` or `state "local"`, as declared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum StateBackend {
    Local,
    Kubernetes(ClusterState),
}

/// A rollout whose journals and lock live in a Kubernetes cluster: a Lease named `name` in
/// `namespace`, and ConfigMaps labelled with it (docs/state.md §13).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClusterState {
    pub namespace: String,
    /// The rollout's name in the cluster, with the environment's added when the workflow's
    /// one declaration serves every environment.
    pub name: String,
    /// The kubeconfig context; default: the workflow's (environment's) `kubernetes` context.
    pub context: Option<String>,
    /// How long the lock outlives its holder's last renewal.
    #[serde(serialize_with = "secs")]
    pub lease: Duration,
}

/// The name of the state folder of a workflow that declares no environments.
pub const NO_ENVIRONMENT: &str = "default";

impl Workflow {
    /// The environment this load is for.
    pub fn environment(&self) -> Option<&Environment> {
        self.environment.map(|e| &self.environments[e])
    }

    /// The environment's name, or [`NO_ENVIRONMENT`] for a workflow that declares none.
    pub fn environment_name(&self) -> &str {
        self.environment().map_or(NO_ENVIRONMENT, |e| e.name.as_str())
    }

    /// The declared environments' names.
    pub fn environment_names(&self) -> Vec<&str> {
        self.environments.iter().map(|e| e.name.as_str()).collect()
    }

    /// The values of the declared secrets that are set, to mask wherever output is shown.
    pub fn secret_values(&self) -> Vec<String> {
        self.secrets.iter().filter_map(|s| std::env::var(&s.env).ok()).filter(|v| !v.is_empty()).collect()
    }

    pub fn node(&self, id: &str) -> Option<NodeId> {
        self.nodes.iter().position(|n| n.id == id)
    }

    pub fn modules(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.kind == NodeKind::Module)
    }

    pub fn gates(&self) -> impl Iterator<Item = &Node> {
        self.nodes.iter().filter(|n| n.kind == NodeKind::Gate)
    }

    /// Every dependency edge, `(before, after)`.
    pub fn edges(&self) -> impl Iterator<Item = (NodeId, NodeId)> + '_ {
        self.nodes.iter().enumerate().flat_map(|(i, n)| n.deps.iter().map(move |&d| (d, i)))
    }

    pub fn phase_of(&self, node: NodeId) -> Option<&Phase> {
        self.nodes[node].phase.map(|p| &self.phases[p])
    }
}

/// A webhook and the events it is told of.
#[derive(Debug, Clone, Serialize)]
pub struct Notify {
    pub name: String,
    /// Usually a secret: `shown` masks it.
    pub url: Text,
    pub events: Vec<NotifyEvent>,
    /// The body's tera template, as written; `None`: `{"text": "…"}` (Slack, Mattermost,
    /// Rocket.Chat and most chat webhooks read it).
    pub template: Option<String>,
}

/// What a notification is sent for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum NotifyEvent {
    RunStart,
    RunEnd,
    GatePassed,
    GateFailed,
    StepFailed,
    Overrun,
    /// The projected finish passed the rollout's deadline (see `notify` in definitions.md).
    ProjectedPastDeadline,
    /// A module or gate asks for approval.
    ApprovalNeeded,
}

impl NotifyEvent {
    pub const ALL: &'static [(&'static str, NotifyEvent)] = &[
        ("run-start", NotifyEvent::RunStart),
        ("run-end", NotifyEvent::RunEnd),
        ("gate-passed", NotifyEvent::GatePassed),
        ("gate-failed", NotifyEvent::GateFailed),
        ("step-failed", NotifyEvent::StepFailed),
        ("overrun", NotifyEvent::Overrun),
        ("projected-past-deadline", NotifyEvent::ProjectedPastDeadline),
        ("approval-needed", NotifyEvent::ApprovalNeeded),
    ];
}

/// One place the workflow rolls out to. Its vars, secrets' sources, Kubernetes context,
/// parallelism and overrun policy are applied at load; what is kept here is what commands
/// read later.
#[derive(Debug, Clone, Serialize)]
pub struct Environment {
    pub name: String,
    /// The end of its maintenance window, as a duration from the start: `--deadline`'s default.
    #[serde(serialize_with = "opt_secs")]
    pub deadline: Option<Duration>,
    pub requires: Option<Requirement>,
    /// Where its state lives, for reading it from another environment's commands.
    #[serde(skip)]
    pub state: Option<ClusterState>,
}

/// Promotion: what another environment must have passed, with the same definition, first.
#[derive(Debug, Clone, Serialize)]
pub struct Requirement {
    pub environment: String,
    /// Index into [`Workflow::phases`]; `None`: the whole workflow.
    pub phase: Option<usize>,
}

/// A secret variable, read from the environment at load time.
#[derive(Debug, Clone, Serialize)]
pub struct Secret {
    pub name: String,
    pub env: String,
    /// Whether the environment variable was set when the workflow loaded.
    pub set: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resource {
    pub name: String,
    pub limit: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub id: String,
    pub title: Option<String>,
    pub modules: Vec<NodeId>,
    pub gate: Option<NodeId>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub id: String,
    pub formula: String,
    pub target: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Kubernetes {
    pub context: Option<String>,
    pub namespace: Option<String>,
}

/// A module or a gate: a node of the DAG.
#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub id: String,
    pub kind: NodeKind,
    pub number: Option<u32>,
    pub title: String,
    pub description: Option<String>,
    #[serde(serialize_with = "secs")]
    pub budget: Duration,
    #[serde(serialize_with = "percent")]
    pub buffer: Option<Percent>,
    /// Budget plus buffer: the duration `plan` schedules and `apply` burns against.
    #[serde(serialize_with = "secs")]
    pub planned: Duration,
    pub success_probability: f64,
    pub domain: Option<String>,
    /// Index into [`Workflow::phases`].
    pub phase: Option<usize>,
    /// What this node waits for: its `after` list, and for a gate, its phase's modules.
    pub deps: Vec<NodeId>,
    /// Indexes into [`Workflow::resources`].
    pub uses: Vec<usize>,
    pub on_overrun: OnOverrun,
    /// `when "{{ … }}"`: it runs only when this holds; skipped otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
    pub install: Vec<Step>,
    pub validate: Vec<Step>,
    /// What undoes it: run by `milepost rollback`, or after a failure with
    /// `on-failure "rollback"`. Not part of its hash: a changed rollback re-installs nothing.
    pub rollback: Vec<Step>,
    /// The time its rollback is planned to take (default: its budget).
    #[serde(serialize_with = "secs")]
    pub rollback_budget: Duration,
    pub on_failure: OnFailure,
    /// Steps run when it fails, before any rollback: diagnostics (`on-failure { … }`).
    pub handler: Vec<Step>,
    /// The approval it needs in this load's environment (`approval …`): a gate asks after
    /// its checks passed, a module before its first install step. Not part of any hash: who
    /// may approve changes nothing that ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    /// The directory of the defining file; relative paths in steps start here.
    pub dir: PathBuf,
    /// What it installs and validates as written, before any environment's values: its
    /// steps, the files they render, the workflow's shell and vars defaults. The same in
    /// every environment, so staging's pass can vouch for production (promotion).
    #[serde(skip)]
    pub source_hash: String,
    /// A file one of its steps renders is chosen by values (`t/{{ vars.flavor }}.conf`): its
    /// source hash then differs between environments.
    #[serde(skip)]
    pub files_by_values: bool,
}

impl Node {
    pub fn steps(&self) -> impl Iterator<Item = (Stage, &Step)> {
        let install = self.install.iter().map(|s| (Stage::Install, s));
        install.chain(self.validate.iter().map(|s| (Stage::Validate, s)))
    }

    /// Its `when` was decided false at load: it never runs.
    pub fn skipped_at_load(&self) -> bool {
        self.when.as_ref().is_some_and(|w| w.known == Some(false))
    }

    /// `#7 k8s-infra` for modules with a number, the id otherwise.
    pub fn label(&self) -> String {
        match self.number {
            Some(n) => format!("#{n} {}", self.id),
            None => self.id.clone(),
        }
    }
}

/// People who must say yes before a node goes on (GitHub environments' required reviewers,
/// Spinnaker's manual judgment, Argo's `suspend`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// How many distinct people must approve (at least 1).
    pub required: u32,
    /// User or group names, any of whom may decide; empty: anyone who can write the
    /// rollout's state.
    pub from: Vec<String>,
}

impl Approval {
    /// Who may decide, for messages: "one of sre-leads, alice", "2 distinct people of …",
    /// "anyone who can write the rollout's state".
    pub fn who(&self) -> String {
        let people = if self.from.is_empty() {
            "anyone who can write the rollout's state".to_string()
        } else {
            self.from.join(", ")
        };
        match (self.required, self.from.is_empty()) {
            (1, true) => people,
            (1, false) => format!("one of {people}"),
            (n, true) => format!("{n} distinct people who can write the rollout's state"),
            (n, false) => format!("{n} distinct people of {people}"),
        }
    }
}

/// Install steps run once (with retries); validate steps poll until they pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    Install,
    Validate,
}

#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub name: String,
    #[serde(flatten)]
    pub kind: StepKind,
    #[serde(serialize_with = "opt_secs")]
    pub timeout: Option<Duration>,
    pub retries: u32,
    #[serde(serialize_with = "secs")]
    pub backoff: Duration,
    #[serde(serialize_with = "secs")]
    pub interval: Duration,
    /// `when="{{ … }}"`: it runs only when this holds. Absent from the hash of a step
    /// without one, so those hash as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<Condition>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum StepKind {
    Run {
        command: Text,
        shell: Option<Vec<String>>,
        cwd: PathBuf,
        env: Vec<(String, Text)>,
    },
    Http {
        method: String,
        url: Text,
        expect: u16,
        body: Option<Text>,
    },
    Tcp {
        address: Text,
    },
    /// `content` is the source file rendered at load time; the step writes it to `dest`.
    Template {
        source: PathBuf,
        dest: PathBuf,
        content: Text,
    },
    Apply {
        path: PathBuf,
        namespace: Option<String>,
        force: bool,
        /// Every manifest file under `path`, rendered at load time (so a changed manifest
        /// changes the step's hash); empty when an earlier `template` step writes `path`,
        /// which is then read when the step runs.
        manifests: Vec<Manifest>,
    },
    Wait {
        resource: String,
        namespace: Option<String>,
        until: WaitFor,
    },
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::Run { .. } => "run",
            StepKind::Http { .. } => "http",
            StepKind::Tcp { .. } => "tcp",
            StepKind::Template { .. } => "template",
            StepKind::Apply { .. } => "apply",
            StepKind::Wait { .. } => "wait",
        }
    }

    /// The one line that tells a person what the step does, secrets masked.
    pub fn summary(&self) -> String {
        match self {
            StepKind::Run { command, .. } => command.shown.clone(),
            StepKind::Http { method, url, expect, .. } => format!("{method} {url} → {expect}"),
            StepKind::Tcp { address } => format!("connect {address}"),
            StepKind::Template { source, dest, .. } => format!("{} → {}", source.display(), dest.display()),
            StepKind::Apply { path, namespace, .. } => match namespace {
                Some(ns) => format!("apply {} -n {ns}", path.display()),
                None => format!("apply {}", path.display()),
            },
            StepKind::Wait { resource, namespace, until } => {
                let ns = namespace.as_ref().map(|n| format!(" -n {n}")).unwrap_or_default();
                format!("wait {resource}{ns} until {until}")
            }
        }
    }

    /// Kubernetes steps need a cluster connection.
    pub fn is_kubernetes(&self) -> bool {
        matches!(self, StepKind::Apply { .. } | StepKind::Wait { .. })
    }
}

/// One manifest file, rendered.
#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub file: PathBuf,
    pub text: Text,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "until", content = "condition")]
pub enum WaitFor {
    Condition(String),
    Rollout,
    Deleted,
}

impl std::fmt::Display for WaitFor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WaitFor::Condition(c) => write!(f, "condition={c}"),
            WaitFor::Rollout => f.write_str("rollout complete"),
            WaitFor::Deleted => f.write_str("deleted"),
        }
    }
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

fn opt_secs<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs()),
        None => s.serialize_none(),
    }
}

fn percent<S: serde::Serializer>(p: &Option<Percent>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.serialize_some(&p.0),
        None => s.serialize_none(),
    }
}
