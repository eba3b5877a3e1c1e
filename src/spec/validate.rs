//! Raw definitions → [`Workflow`]: cross-file checks (ids, `after`, phases, gates,
//! resources, cycles), defaults, and template rendering. Each check adds problems and goes
//! on, so one run reports every mistake it can see.

use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};

use super::condition::{Condition, ConditionError, OUTCOMES};
use super::diagnostic::{did_you_mean, Problem, Problems};
use super::metrics::{self, RunFacts};
use super::model::*;
use super::raw::*;
use super::source::{Location, SourceMap, Spanned};
use crate::template::{Renderer, Scope, TemplateError, Text};

/// Defaults where a definition is silent. Documented in docs/definitions.md.
pub const DEFAULT_PARALLELISM: u32 = 4;
pub const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_secs(120);
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
pub const DEFAULT_BACKOFF: Duration = Duration::from_secs(2);
const DEFAULT_SHELL: &[&str] = &["sh", "-c"];
const HTTP_METHODS: &[&str] = &["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"];

/// Inputs beside the definition files.
#[derive(Debug, Default, Clone)]
pub struct Inputs {
    /// The environment's and then `--var`/`--vars-file` values; they override the
    /// workflow's `vars`.
    pub vars: BTreeMap<String, String>,
    /// The command line's values that differ from the workflow's and environment's.
    pub var_overrides: BTreeMap<String, String>,
    /// Secret values by environment variable name. `None` reads the process environment.
    pub env: Option<BTreeMap<String, String>>,
    /// The environment selected (`--env`), an index into the raw workflow's environments;
    /// its settings are already laid over the workflow's.
    pub environment: Option<usize>,
}

/// Builds the validated workflow, or adds to `problems` and returns `None`.
pub fn resolve(
    raw: RawWorkflow,
    file: PathBuf,
    nodes: Vec<RawNode>,
    inputs: &Inputs,
    sources: &SourceMap,
    problems: &mut Problems,
) -> Option<Workflow> {
    let before = problems.len();
    let ids = check_ids(&nodes, sources, problems);
    let resources = resources(&raw, sources, problems);
    let (phases, phase_of) = phases(&raw, &nodes, &ids, problems);
    let mut deps = dependencies(&nodes, &ids, &phases, problems);
    check_cycles(&nodes, &mut deps, problems);
    let environments = super::environments::check(&raw, &phases, sources, problems);
    let state = super::environments::state_of(&raw, inputs.environment);

    let vars = vars(&raw, inputs);
    let var_overrides = inputs.var_overrides.clone();
    let (secrets, secret_values) = secrets(&raw, inputs);
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    let workflow_scope = serde_json::json!({ "id": raw.id.value, "dir": dir });
    let base_scope = Renderer::scope(&vars, &secret_values, &workflow_scope);
    let mut renderer = Renderer::new();
    let known_resources: Vec<&str> = raw.resources.iter().map(|r| r.name.value.as_str()).collect();

    // The values every environment starts from: part of what each node is (promotion).
    let definition_defaults = {
        let mut h = Sha256::new();
        h.update(
            serde_json::to_vec(&(
                &raw.shell.as_ref().map(|s| &s.value),
                &raw.vars.iter().map(|(k, v)| (&k.value, &v.value)).collect::<Vec<_>>(),
            ))
            .expect("strings serialize"),
        );
        h.finalize()
    };
    let workflow_overrun = raw.on_overrun.as_ref().map(|o| o.value).unwrap_or_default();
    let workflow_on_failure = raw.on_failure.as_ref().map(|o| o.value).unwrap_or_default();
    let names: Vec<String> = nodes.iter().map(|n| n.id.value.clone()).collect();
    let mut built = Vec::with_capacity(nodes.len());
    for (index, node) in nodes.into_iter().enumerate() {
        // A gate checks its phase: whether it runs cannot hang on how a module of it ended.
        let gate_vars_only = (node.kind == NodeKind::Gate).then_some("a gate");
        let conditions = Conditions {
            ids: &ids,
            names: &names,
            deps: &deps,
            vars: &vars,
            node: index,
            vars_only: gate_vars_only,
        };
        let when = node.when.as_ref().and_then(|w| conditions.check(w, &mut renderer, problems));
        let mut cx = NodeCx {
            conditions,
            renderer: &mut renderer,
            problems,
            rendered_earlier: Vec::new(),
            node: &node.id.value,
            files_read: Sha256::new(),
            files_by_values: false,
        };
        let mut scope = base_scope.clone();
        scope.insert("dir", &node.dir);
        scope.insert(
            "module",
            &serde_json::json!({ "id": node.id.value, "number": node.number.as_ref().map(|n| n.value) }),
        );
        let install = cx.steps(&node.install, &node.dir, &scope, Stage::Install);
        cx.conditions.vars_only = None;
        let validate = cx.steps(&node.validate, &node.dir, &scope, Stage::Validate);
        // Rendered after install and validate: an `apply` of what a template wrote is found.
        let files_read = std::mem::replace(&mut cx.files_read, Sha256::new());
        // Undo and handler steps run in runs of their own, where no outcome of this rollout is.
        cx.conditions.vars_only = Some("a rollback or on-failure step");
        let rollback = cx.steps(&node.rollback, &node.dir, &scope, Stage::Install);
        let handler = cx.steps(&node.handler, &node.dir, &scope, Stage::Install);
        cx.files_read = files_read;
        let files_by_values = cx.files_by_values;
        let source_hash = source_hash(&node, cx.files_read, &definition_defaults);
        check_node(&node, problems);
        let uses = node
            .uses
            .iter()
            .filter_map(|u| match known_resources.iter().position(|r| *r == u.value) {
                Some(i) => Some(i),
                None => {
                    problems.at(
                        Problem::UnknownResource { node: node.id.value.clone(), name: u.value.clone() },
                        u.at(),
                    );
                    None
                }
            })
            .collect();
        let approval = approval(&node, &raw, inputs.environment, problems);
        let budget = node.budget.as_ref().map(|b| b.value).unwrap_or_default();
        let buffer = node.buffer.as_ref().map(|b| b.value);
        built.push(Node {
            title: node.title.map(|t| t.value).unwrap_or_else(|| node.id.value.clone()),
            id: node.id.value,
            kind: node.kind,
            number: node.number.map(|n| n.value),
            description: node.description.map(|d| d.value),
            budget,
            buffer,
            planned: buffer.map_or(budget, |b| b.grow(budget)),
            success_probability: node.probability.map_or(1.0, |p| p.value),
            domain: node.domain.map(|d| d.value),
            phase: phase_of.get(&index).copied(),
            deps: deps[index].clone(),
            uses,
            on_overrun: node.on_overrun.map_or(workflow_overrun, |o| o.value),
            when,
            install,
            validate,
            rollback,
            rollback_budget: node.rollback_budget.map_or(budget, |b| b.value),
            on_failure: node.on_failure.map_or(workflow_on_failure, |o| o.value),
            handler,
            approval,
            dir: node.dir,
            source_hash,
            files_by_values,
        });
    }

    // `finally` steps run from the workflow's folder, with its values. Their conditions read
    // vars (node outcomes are not what a `finally` run sees).
    let finally = {
        let conditions = Conditions::vars_only(&ids, &names, &deps, &vars, "a finally step");
        let mut cx = NodeCx::workflow_level(conditions, &mut renderer, problems, "finally");
        let mut scope = base_scope.clone();
        scope.insert("dir", &dir);
        cx.steps(&raw.finally, &dir, &scope, Stage::Install)
    };
    let notify = {
        let conditions = Conditions::vars_only(&ids, &names, &deps, &vars, "a notification");
        let mut cx = NodeCx::workflow_level(conditions, &mut renderer, problems, "notify");
        let scope = base_scope.clone();
        let mut out: Vec<(&RawNotify, Notify)> = Vec::new();
        for raw_notify in &raw.notify {
            let Some(n) = notification(&mut cx, raw_notify, &scope, &dir) else { continue };
            // Two blocks for one name or one URL would tell an endpoint of an event twice,
            // from two senders, in no set order: each endpoint has one block, listing all
            // the events it asks for.
            let same = out.iter().find(|(_, o)| o.name == n.name || o.url.exec == n.url.exec);
            if let Some((first, o)) = same {
                let first_at = sources.describe(first.name.at());
                let problem = if o.name == n.name {
                    Problem::Duplicate { kind: "notify block", id: n.name.clone(), first: first_at }
                } else {
                    Problem::BadValue {
                        what: format!("notify `{}`", n.name),
                        reason: format!("has the URL of notify `{}` ({first_at})", o.name),
                        help: "one block per endpoint: list all the events it is told of in one `events`"
                            .into(),
                    }
                };
                cx.problems.at(problem, raw_notify.name.at());
                continue;
            }
            out.push((raw_notify, n));
        }
        out.into_iter().map(|(_, n)| n).collect::<Vec<_>>()
    };
    let domains: Vec<&str> = built.iter().filter_map(|n| n.domain.as_deref()).collect();
    let ids: Vec<&str> = built.iter().map(|n| n.id.as_str()).collect();
    let facts = RunFacts::sample(domains, ids);
    for metric in &raw.metrics {
        if let Err(reason) = metrics::evaluate(&mut renderer, &metric.formula.value, &facts) {
            problems.at(Problem::BadMetric { metric: metric.id.value.clone(), reason }, metric.formula.at());
        }
    }

    if problems.len() > before {
        return None;
    }
    Some(Workflow {
        id: raw.id.value,
        title: raw.title.map(|t| t.value).unwrap_or_default(),
        dir,
        file,
        parallelism: raw.parallelism.map_or(DEFAULT_PARALLELISM, |p| p.value),
        shell: raw
            .shell
            .map(|s| s.value.split_whitespace().map(String::from).collect())
            .unwrap_or_else(|| DEFAULT_SHELL.iter().map(|s| s.to_string()).collect()),
        on_overrun: workflow_overrun,
        on_failure: workflow_on_failure,
        finally,
        notify,
        vars,
        var_overrides,
        secrets,
        resources,
        phases,
        nodes: built,
        metrics: raw
            .metrics
            .into_iter()
            .map(|m| Metric { id: m.id.value, formula: m.formula.value, target: m.target.map(|t| t.value) })
            .collect(),
        kubernetes: raw
            .kubernetes
            .map(|k| Kubernetes {
                context: k.context.map(|c| c.value),
                namespace: k.namespace.map(|n| n.value),
            })
            .unwrap_or_default(),
        environments,
        environment: inputs.environment,
        state,
    })
}

/// Module and gate ids share one namespace, since `after` can name either.
fn check_ids(nodes: &[RawNode], sources: &SourceMap, problems: &mut Problems) -> HashMap<String, NodeId> {
    let mut ids: HashMap<String, NodeId> = HashMap::with_capacity(nodes.len());
    for (i, node) in nodes.iter().enumerate() {
        if let Some(&first) = ids.get(&node.id.value) {
            let problem = Problem::Duplicate {
                kind: node.kind.noun(),
                id: node.id.value.clone(),
                first: sources.describe(nodes[first].id.at()),
            };
            problems.at(problem, node.id.at());
        } else {
            ids.insert(node.id.value.clone(), i);
        }
    }
    ids
}

fn resources(raw: &RawWorkflow, sources: &SourceMap, problems: &mut Problems) -> Vec<Resource> {
    let mut out: Vec<Resource> = Vec::new();
    for (i, r) in raw.resources.iter().enumerate() {
        if let Some(first) = raw.resources[..i].iter().find(|o| o.name.value == r.name.value) {
            let first = sources.describe(first.name.at());
            let problem = Problem::Duplicate { kind: "resource", id: r.name.value.clone(), first };
            problems.at(problem, r.name.at());
            continue;
        }
        out.push(Resource { name: r.name.value.clone(), limit: r.limit.value });
    }
    out
}

/// How many unknown names get a "did you mean": each costs a comparison with every id, so
/// 10 000 unknown names among 10 000 ids took 21 s before this cap.
const MAX_SUGGESTIONS: usize = 20;

fn suggest(
    name: &str,
    ids: &HashMap<String, NodeId>,
    nodes: &[RawNode],
    kind: Option<NodeKind>,
    asked: &mut usize,
) -> Option<String> {
    *asked += 1;
    if *asked > MAX_SUGGESTIONS {
        return None;
    }
    let candidates = ids.keys().filter(|k| kind.is_none_or(|kind| nodes[ids[*k]].kind == kind));
    did_you_mean(name, candidates.map(String::as_str)).map(String::from)
}

/// Phases with their members resolved, and the phase of each node.
fn phases(
    raw: &RawWorkflow,
    nodes: &[RawNode],
    ids: &HashMap<String, NodeId>,
    problems: &mut Problems,
) -> (Vec<Phase>, HashMap<NodeId, usize>) {
    let mut phases: Vec<Phase> = Vec::new();
    let mut phase_of: HashMap<NodeId, usize> = HashMap::new();
    let mut named_badly = false;
    let mut asked = 0;
    for raw_phase in &raw.phases {
        let phase_id = raw_phase.id.value.clone();
        if phases.iter().any(|p| p.id == phase_id) {
            problems.at(Problem::DuplicatePhase { phase: phase_id }, raw_phase.id.at());
            continue;
        }
        let index = phases.len();
        let mut modules = Vec::new();
        for name in &raw_phase.modules {
            match ids.get(&name.value).copied().filter(|&i| nodes[i].kind == NodeKind::Module) {
                None if ids.contains_key(&name.value) => {
                    let problem = Problem::BadValue {
                        what: format!("`{}`", name.value),
                        reason: "is a gate, not a module".into(),
                        help: format!("name it as the phase's gate instead: gate {}", name.value),
                    };
                    problems.at(problem, name.at());
                }
                None => {
                    let problem = Problem::UnknownPhaseModule {
                        phase: phase_id.clone(),
                        name: name.value.clone(),
                        suggestion: suggest(&name.value, ids, nodes, Some(NodeKind::Module), &mut asked),
                    };
                    problems.at(problem, name.at());
                }
                Some(m) => match phase_of.get(&m) {
                    Some(&other) => {
                        let problem = Problem::ModuleInTwoPhases {
                            module: name.value.clone(),
                            first: phases.get(other).map_or_else(|| phase_id.clone(), |p| p.id.clone()),
                            second: phase_id.clone(),
                        };
                        problems.at(problem, name.at());
                    }
                    None => {
                        phase_of.insert(m, index);
                        modules.push(m);
                    }
                },
            }
        }
        let mut gate = None;
        if let Some(name) = &raw_phase.gate {
            match ids.get(&name.value).copied().filter(|&i| nodes[i].kind == NodeKind::Gate) {
                None if ids.contains_key(&name.value) => {
                    named_badly = true;
                    let problem = Problem::BadValue {
                        what: format!("`{}`", name.value),
                        reason: "is a module, not a gate".into(),
                        help: format!("list it with the phase's modules instead: modules {}", name.value),
                    };
                    problems.at(problem, name.at());
                }
                None => {
                    named_badly = true;
                    let problem = Problem::UnknownPhaseGate {
                        phase: phase_id.clone(),
                        name: name.value.clone(),
                        suggestion: suggest(&name.value, ids, nodes, Some(NodeKind::Gate), &mut asked),
                    };
                    problems.at(problem, name.at());
                }
                Some(g) => match phase_of.get(&g) {
                    Some(&other) => {
                        let problem = Problem::GateInTwoPhases {
                            gate: name.value.clone(),
                            first: phases[other].id.clone(),
                            second: phase_id.clone(),
                        };
                        problems.at(problem, name.at());
                    }
                    None => {
                        if raw_phase.modules.is_empty() {
                            let problem = Problem::GateWithoutModules {
                                phase: phase_id.clone(),
                                gate: name.value.clone(),
                            };
                            problems.at(problem, raw_phase.id.at());
                        }
                        phase_of.insert(g, index);
                        gate = Some(g);
                    }
                },
            }
        }
        phases.push(Phase {
            id: phase_id,
            title: raw_phase.title.as_ref().map(|t| t.value.clone()),
            modules,
            gate,
        });
    }
    // A gate that a phase tried to name (misspelt, or the wrong kind) is already reported.
    for (i, node) in nodes.iter().enumerate() {
        let first_with_id = ids.get(&node.id.value) == Some(&i);
        if node.kind == NodeKind::Gate
            && !phase_of.contains_key(&i)
            && !named_badly
            && !node.flawed
            && first_with_id
        {
            problems.at(Problem::OrphanGate { gate: node.id.value.clone() }, node.id.at());
        }
    }
    (phases, phase_of)
}

/// Each node's dependencies, with where each edge was written (for cycle reports).
struct Deps {
    of: Vec<Vec<NodeId>>,
    written_at: HashMap<(NodeId, NodeId), Location>,
}

impl std::ops::Index<usize> for Deps {
    type Output = Vec<NodeId>;
    fn index(&self, i: usize) -> &Vec<NodeId> {
        &self.of[i]
    }
}

impl std::ops::IndexMut<usize> for Deps {
    fn index_mut(&mut self, i: usize) -> &mut Vec<NodeId> {
        &mut self.of[i]
    }
}

fn dependencies(
    nodes: &[RawNode],
    ids: &HashMap<String, NodeId>,
    phases: &[Phase],
    problems: &mut Problems,
) -> Deps {
    let mut deps = Deps { of: vec![Vec::new(); nodes.len()], written_at: HashMap::new() };
    let mut asked = 0;
    for (i, node) in nodes.iter().enumerate() {
        for after in &node.after {
            match ids.get(&after.value) {
                Some(&d) => {
                    if !deps[i].contains(&d) {
                        deps[i].push(d);
                        deps.written_at.insert((d, i), after.at());
                    }
                }
                None => {
                    let problem = Problem::UnknownAfter {
                        node: node.id.value.clone(),
                        missing: after.value.clone(),
                        suggestion: suggest(&after.value, ids, nodes, None, &mut asked),
                    };
                    problems.at(problem, after.at());
                }
            }
        }
    }
    for phase in phases {
        if let Some(gate) = phase.gate {
            for &m in &phase.modules {
                if !deps[gate].contains(&m) {
                    deps[gate].push(m);
                    deps.written_at.insert((m, gate), nodes[gate].id.at());
                }
            }
        }
    }
    deps
}

/// Reports every cycle, each named in order, and removes one edge of each so later checks
/// see a DAG.
fn check_cycles(nodes: &[RawNode], deps: &mut Deps, problems: &mut Problems) {
    let mut graph: DiGraph<(), ()> = DiGraph::with_capacity(nodes.len(), nodes.len() * 3);
    for _ in nodes {
        graph.add_node(());
    }
    for (i, ds) in deps.of.iter().enumerate() {
        for &d in ds {
            graph.add_edge(NodeIndex::new(d), NodeIndex::new(i), ());
        }
    }
    for scc in petgraph::algo::tarjan_scc(&graph) {
        let start = *scc.iter().min().expect("tarjan never yields an empty component");
        let self_loop = graph.contains_edge(start, start);
        if scc.len() == 1 && !self_loop {
            continue;
        }
        let cycle = shortest_cycle(&graph, start, &scc);
        let names: Vec<String> = cycle.iter().map(|n| nodes[n.index()].id.value.clone()).collect();
        let (from, to) = (cycle[cycle.len() - 2].index(), cycle[cycle.len() - 1].index());
        let at = deps.written_at.get(&(from, to)).copied().unwrap_or_else(|| nodes[to].id.at());
        problems.labelled(
            Problem::Cycle { cycle: names },
            at,
            format!("`{}` waits for `{}` here", nodes[to].id.value, nodes[from].id.value),
        );
        deps[to].retain(|&d| d != from);
    }
}

/// The shortest way from `start` back to itself inside one strongly connected component:
/// `[start, …, start]`.
fn shortest_cycle(graph: &DiGraph<(), ()>, start: NodeIndex, scc: &[NodeIndex]) -> Vec<NodeIndex> {
    let inside: std::collections::HashSet<NodeIndex> = scc.iter().copied().collect();
    let mut came_from: HashMap<NodeIndex, NodeIndex> = HashMap::new();
    let mut queue = std::collections::VecDeque::from([start]);
    while let Some(n) = queue.pop_front() {
        for next in graph.neighbors(n) {
            if !inside.contains(&next) {
                continue;
            }
            if next == start {
                let mut walk = vec![n];
                let mut cur = n;
                while cur != start {
                    cur = came_from[&cur];
                    walk.push(cur);
                }
                walk.reverse();
                walk.push(start);
                return walk;
            }
            if let std::collections::hash_map::Entry::Vacant(e) = came_from.entry(next) {
                e.insert(n);
                queue.push_back(next);
            }
        }
    }
    vec![start, start]
}

fn vars(raw: &RawWorkflow, inputs: &Inputs) -> BTreeMap<String, String> {
    let mut vars: BTreeMap<String, String> =
        raw.vars.iter().map(|(k, v)| (k.value.clone(), v.value.clone())).collect();
    vars.extend(inputs.vars.clone());
    vars
}

/// The `approval` that applies in the selected environment: one naming it, else one naming
/// none. Every line's environment must be declared, and two lines may not cover the same one.
fn approval(
    node: &RawNode,
    raw: &RawWorkflow,
    selected: Option<usize>,
    problems: &mut Problems,
) -> Option<Approval> {
    let declared: Vec<&str> = raw.environments.iter().map(|e| e.name.value.as_str()).collect();
    let mut seen: Vec<Option<&str>> = Vec::new();
    for a in &node.approvals {
        let env = a.environment.as_ref().map(|e| e.value.as_str());
        if let Some(e) = &a.environment {
            if !declared.contains(&e.value.as_str()) {
                problems.at(
                    Problem::UnknownEnvironment {
                        name: e.value.clone(),
                        from: format!("the approval of `{}`", node.id.value),
                        suggestion: did_you_mean(&e.value, declared.iter().copied()).map(String::from),
                        declared: declared.iter().map(|d| d.to_string()).collect(),
                    },
                    e.at(),
                );
                continue;
            }
        }
        if seen.contains(&env) {
            let what = match env {
                Some(e) => format!("environment `{e}`"),
                None => "every environment".into(),
            };
            problems.at(
                Problem::BadValue {
                    what: format!("a second `approval` of `{}` for {what}", node.id.value),
                    reason: "would leave which one counts to chance".into(),
                    help: "write one `approval` line per environment (and at most one without `environment`)"
                        .into(),
                },
                a.at,
            );
        }
        seen.push(env);
    }
    let selected = selected.map(|i| raw.environments[i].name.value.as_str());
    let applies = |a: &&RawApproval| a.environment.as_ref().map(|e| e.value.as_str()) == selected;
    let chosen = node
        .approvals
        .iter()
        .find(|a| selected.is_some() && applies(a))
        .or_else(|| node.approvals.iter().find(|a| a.environment.is_none()))?;
    Some(Approval {
        required: chosen.required.as_ref().map_or(1, |r| r.value),
        from: chosen.from.iter().map(|f| f.value.clone()).collect(),
    })
}

/// Secrets as declared, and their values for rendering. An unset secret renders as an empty
/// marker; `apply` refuses to start while any is unset.
fn secrets(raw: &RawWorkflow, inputs: &Inputs) -> (Vec<Secret>, BTreeMap<String, String>) {
    let mut declared = Vec::new();
    let mut values = BTreeMap::new();
    for s in &raw.secrets {
        let value = match &inputs.env {
            Some(env) => env.get(&s.env.value).cloned(),
            None => std::env::var(&s.env.value).ok(),
        };
        declared.push(Secret { name: s.name.value.clone(), env: s.env.value.clone(), set: value.is_some() });
        values.insert(s.name.value.clone(), value.unwrap_or_else(|| format!("<unset ${}>", s.env.value)));
    }
    (declared, values)
}

/// A `notify` block: its URL rendered (secrets allowed, masked where shown), its events
/// known, its body template read and tried on a sample event.
fn notification(cx: &mut NodeCx, raw: &RawNotify, scope: &Scope, dir: &Path) -> Option<Notify> {
    let url = cx.text(raw.url.as_ref()?, scope)?;
    // Anything but an http(s) URL with a host fails every try at run time, each costing the
    // rollout's end wait: said here instead. An unset secret (`<unset $VAR>`) is preflight's
    // to report, at `apply`; `validate` without the secrets passes.
    if !url.exec.contains("<unset $") {
        let uri = url.exec.parse::<ureq::http::Uri>().ok();
        let web = uri.as_ref().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some_and(|h| !h.is_empty())
        });
        if !web {
            cx.problems.at(
                Problem::BadValue {
                    what: format!("url `{}`", url.shown),
                    reason: "is not an http(s) URL".into(),
                    help: "a webhook's URL: `https://host/path`".into(),
                },
                raw.url.as_ref()?.at(),
            );
            return None;
        }
    }
    let mut events = Vec::new();
    for e in &raw.events {
        match NotifyEvent::ALL.iter().find(|(name, _)| *name == e.value) {
            Some((_, event)) => events.push(*event),
            None => {
                let names = NotifyEvent::ALL.iter().map(|(n, _)| *n);
                cx.problems.at(
                    Problem::BadValue {
                        what: format!("event `{}`", e.value),
                        reason: "is not an event milepost sends".into(),
                        help: match did_you_mean(&e.value, names.clone()) {
                            Some(near) => format!("did you mean `{near}`?"),
                            None => format!("events: {}", names.collect::<Vec<_>>().join(", ")),
                        },
                    },
                    e.at(),
                );
            }
        }
    }
    if raw.events.is_empty() {
        events = vec![NotifyEvent::RunEnd, NotifyEvent::GateFailed, NotifyEvent::StepFailed];
    }
    let template = match &raw.template {
        None => None,
        Some(path) => {
            let file = dir.join(&path.value);
            let text = match super::source::read_text(&file) {
                Ok(text) => text,
                Err(e) => {
                    cx.problems.at(e.into_problem(super::source::display_path(&file)), path.at());
                    return None;
                }
            };
            if let Err(reason) = crate::notify::render(&text, &crate::notify::Message::sample()) {
                cx.problems.at(Problem::Template { reason }, path.at());
                return None;
            }
            Some(text)
        }
    };
    Some(Notify { name: raw.name.value.clone(), url, events, template })
}

/// [`Node::source_hash`]: the node's install and validate blocks as written, the files its
/// steps render as written, and the workflow's shell and vars defaults.
fn source_hash(node: &RawNode, files_read: Sha256, defaults: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(node.fingerprint);
    h.update(files_read.finalize());
    h.update(defaults);
    h.finalize().iter().take(16).map(|b| format!("{b:02x}")).collect()
}

fn check_node(node: &RawNode, problems: &mut Problems) {
    if let Some(budget) = &node.budget {
        if budget.value.is_zero() {
            problems.at(Problem::NonPositiveBudget { node: node.id.value.clone() }, budget.at());
        }
    }
    if let Some(p) = &node.probability {
        if !(0.0..=1.0).contains(&p.value) {
            problems.at(Problem::ProbabilityOutOfRange { value: p.value }, p.at());
        }
    }
    if node.install.is_empty() && node.validate.is_empty() && !node.flawed {
        problems.at(Problem::NoSteps { node: node.id.value.clone() }, node.id.at());
    }
    let mut seen: Vec<&str> = Vec::new();
    for raw in node.install.iter().chain(&node.validate) {
        if seen.contains(&raw.name.value.as_str()) {
            let problem =
                Problem::DuplicateStep { node: node.id.value.clone(), step: raw.name.value.clone() };
            problems.at(problem, raw.name.at());
        }
        seen.push(&raw.name.value);
    }
}

/// What a node's conditions are checked against.
struct Conditions<'a> {
    ids: &'a HashMap<String, NodeId>,
    names: &'a [String],
    deps: &'a Deps,
    vars: &'a BTreeMap<String, String>,
    /// The node whose condition (or whose step's) it is.
    node: NodeId,
    /// Conditions here read vars only, and why: outcomes are not what these steps see.
    vars_only: Option<&'static str>,
}

impl<'a> Conditions<'a> {
    /// For what is not a node's own (`finally`, `notify`): conditions read vars only.
    fn vars_only(
        ids: &'a HashMap<String, NodeId>,
        names: &'a [String],
        deps: &'a Deps,
        vars: &'a BTreeMap<String, String>,
        what: &'static str,
    ) -> Self {
        Conditions { ids, names, deps, vars, node: usize::MAX, vars_only: Some(what) }
    }
}

impl<'a> NodeCx<'a> {
    /// Rendering for the workflow's own steps and settings, named `what` in messages.
    fn workflow_level(
        conditions: Conditions<'a>,
        renderer: &'a mut Renderer,
        problems: &'a mut Problems,
        what: &'a str,
    ) -> Self {
        NodeCx {
            conditions,
            renderer,
            problems,
            rendered_earlier: Vec::new(),
            node: what,
            files_read: Sha256::new(),
            files_by_values: false,
        }
    }
}

impl Conditions<'_> {
    /// Whether `target` ends before `self.node` starts: it is upstream of it.
    fn upstream(&self, target: NodeId) -> bool {
        let mut seen = vec![false; self.names.len()];
        let mut stack = vec![self.node];
        while let Some(n) = stack.pop() {
            for &d in &self.deps[n] {
                if d == target {
                    return true;
                }
                if !std::mem::replace(&mut seen[d], true) {
                    stack.push(d);
                }
            }
        }
        false
    }

    /// The checked condition, decided now when it reads vars only; `None` after reporting.
    fn check(
        &self,
        raw: &Spanned<String>,
        renderer: &mut Renderer,
        problems: &mut Problems,
    ) -> Option<Condition> {
        let node = self.names.get(self.node).map_or("finally", String::as_str);
        let report = |problems: &mut Problems, reason: String, help: String| {
            problems.at(Problem::Condition { reason, help }, raw.at());
        };
        let mut condition = match Condition::parse(&raw.value) {
            Ok(c) => c,
            Err(ConditionError::Form { reason }) => {
                let text = raw.value.trim();
                let help = if reason.contains("bare") {
                    format!("a condition is a tera expression in braces: \"{{{{ {text} }}}}\"")
                } else {
                    "a condition is one tera expression in braces: \"{{ vars.profile == 'prod' }}\"".into()
                };
                report(problems, format!("`{text}` {reason}"), help);
                return None;
            }
            Err(ConditionError::BadReference { found }) => {
                let help = format!(
                    "a condition reads a node's outcome: nodes.<id>.outcome == 'failed' (one of {})",
                    OUTCOMES.join(", ")
                );
                report(problems, format!("reads `{found}`"), help);
                return None;
            }
            Err(other) => unreachable!("parsing reports form and references only: {other:?}"),
        };
        if let (Some(what), Some(id)) = (self.vars_only, condition.reads.first()) {
            let help = format!("a condition of {what} reads vars only; put what depends on `{id}` in a module with `after {id}`");
            report(problems, format!("of {what} reads the outcome of `{id}`"), help);
            return None;
        }
        let mut ok = true;
        for id in &condition.reads {
            match self.ids.get(id) {
                None => {
                    let help = match did_you_mean(id, self.names.iter().map(String::as_str)) {
                        Some(near) => format!("did you mean `{near}`?"),
                        None => "name a module or gate this one runs after".into(),
                    };
                    report(problems, format!("reads the outcome of `{id}`, which is not defined"), help);
                    ok = false;
                }
                Some(&d) if d == self.node => {
                    let help = "a node's outcome is known after it ends; name a node it runs after".into();
                    report(problems, format!("of `{node}` reads its own outcome"), help);
                    ok = false;
                }
                Some(&d) if !self.upstream(d) => {
                    let help = format!(
                        "add `after {id}` to `{node}`: an outcome is known only for nodes that end before this one starts"
                    );
                    report(
                        problems,
                        format!("reads the outcome of `{id}`, which `{node}` does not run after"),
                        help,
                    );
                    ok = false;
                }
                Some(_) => {}
            }
        }
        if !ok {
            return None;
        }
        // Every outcome it could see, so a mistake shows now and not mid-rollout.
        let trials: &[&'static str] = if condition.reads.is_empty() { &["pending"] } else { OUTCOMES };
        let mut value = None;
        for &outcome in trials {
            match condition.evaluate(renderer, self.vars, &|_| outcome) {
                Ok(v) => value = Some(v),
                Err(ConditionError::Template(TemplateError::Undefined { name })) => {
                    let mut known: Vec<String> = self.vars.keys().map(|k| format!("vars.{k}")).collect();
                    known.extend(condition.reads.iter().map(|r| format!("nodes.{r}.outcome")));
                    let problem = Problem::UndefinedVariable { name: name.clone(), known };
                    problems.labelled(problem, raw.at(), format!("`{name}` is used here"));
                    return None;
                }
                Err(ConditionError::Template(TemplateError::Invalid { reason })) => {
                    problems.at(Problem::Template { reason }, raw.at());
                    return None;
                }
                Err(ConditionError::Template(TemplateError::TooCostly { reason, help })) => {
                    problems.at(Problem::TemplateLimit { reason, help }, raw.at());
                    return None;
                }
                Err(ConditionError::NotBoolean { found }) => {
                    let help = "compare to get a boolean: {{ vars.profile == 'prod' }}; vars are strings, so {{ vars.flag }} alone is not one (write {{ vars.flag == 'true' }})".into();
                    report(problems, format!("gives {found}, not true or false"), help);
                    return None;
                }
                Err(other) => unreachable!("evaluation fails in tera or on the type only: {other:?}"),
            }
        }
        if condition.reads.is_empty() {
            condition.known = value;
        }
        Some(condition)
    }
}

/// Rendering context for one node's steps.
struct NodeCx<'a> {
    conditions: Conditions<'a>,
    renderer: &'a mut Renderer,
    problems: &'a mut Problems,
    /// Files written by this node's `template` steps so far.
    rendered_earlier: Vec<PathBuf>,
    /// The node's id, for messages.
    node: &'a str,
    /// The files its steps render, as written: part of its source hash.
    files_read: Sha256,
    /// Whether a path of a file it renders is chosen by values.
    files_by_values: bool,
}

impl NodeCx<'_> {
    fn text(&mut self, value: &Spanned<String>, scope: &Scope) -> Option<Text> {
        match self.renderer.render(&value.value, scope) {
            Ok(text) => Some(text),
            Err(TemplateError::Undefined { name }) => {
                let problem = Problem::UndefinedVariable { name: name.clone(), known: scope.known_names() };
                self.problems.labelled(problem, value.at(), format!("`{name}` is used here"));
                None
            }
            Err(TemplateError::Invalid { reason }) => {
                self.problems.at(Problem::Template { reason }, value.at());
                None
            }
            Err(TemplateError::TooCostly { reason, help }) => {
                self.problems.at(Problem::TemplateLimit { reason, help }, value.at());
                None
            }
        }
    }

    fn opt_text(&mut self, value: &Option<Spanned<String>>, scope: &Scope) -> Option<Option<Text>> {
        match value {
            None => Some(None),
            Some(v) => self.text(v, scope).map(Some),
        }
    }

    /// A value that is shown and stored as it is (paths, namespaces, resources), so it must
    /// not carry a secret.
    fn public_text(&mut self, value: &Spanned<String>, scope: &Scope, what: &str) -> Option<Text> {
        let text = self.text(value, scope)?;
        if text.exec != text.shown {
            let problem = Problem::BadValue {
                what: format!("the {what}"),
                reason: "uses a secret".into(),
                help: "secrets belong in commands, URLs, bodies and env values, where they are masked".into(),
            };
            self.problems.at(problem, value.at());
            return None;
        }
        Some(text)
    }

    fn opt_public(
        &mut self,
        value: &Option<Spanned<String>>,
        scope: &Scope,
        what: &str,
    ) -> Option<Option<Text>> {
        match value {
            None => Some(None),
            Some(v) => self.public_text(v, scope, what).map(Some),
        }
    }

    /// Adds a rendered file's text, as written, to the node's source hash. A path chosen by
    /// values (`t/{{ vars.flavor }}.conf`) names another file in each environment, so the
    /// node differs between them and no environment can vouch for another's: noted, so
    /// promotion can say why.
    fn read_as_written(&mut self, path: &Spanned<String>, text: &str) {
        self.files_read.update((path.value.len() as u64).to_le_bytes());
        self.files_read.update(path.value.as_bytes());
        self.files_read.update((text.len() as u64).to_le_bytes());
        self.files_read.update(text.as_bytes());
        if path.value.contains("vars") || path.value.contains("secrets") {
            self.files_by_values = true;
        }
    }

    /// A path relative to the node's file; with `must_exist`, a missing file is a problem.
    fn path(
        &mut self,
        value: &Spanned<String>,
        dir: &Path,
        scope: &Scope,
        what: &str,
        must_exist: bool,
    ) -> Option<PathBuf> {
        let text = self.public_text(value, scope, what)?;
        let path = dir.join(&text.exec);
        if must_exist && !path.exists() {
            let problem =
                Problem::MissingFile { what: what.to_string(), path: super::source::display_path(&path) };
            self.problems.at(problem, value.at());
            return None;
        }
        Some(path)
    }

    /// Every manifest under `path`, rendered and parsed now, so a template or YAML mistake
    /// is a definition error that names the manifest's own file and line.
    fn manifests(&mut self, path: &Path, at: &Spanned<String>, scope: &Scope) -> Option<Vec<Manifest>> {
        let files = match crate::cluster::manifest::files(path) {
            Ok(files) => files,
            Err(e) => {
                let problem = Problem::Unreadable { path: path.display().to_string(), reason: e.to_string() };
                self.problems.at(problem, at.at());
                return None;
            }
        };
        let mut manifests = Vec::with_capacity(files.len());
        let mut ok = true;
        let mut objects = 0;
        for file in files {
            let content = match super::source::read_text(&file) {
                Ok(content) => content,
                Err(e) => {
                    let problem = e.into_problem(super::source::display_path(&file));
                    self.problems.at(problem, at.at());
                    ok = false;
                    continue;
                }
            };
            self.read_as_written(at, &content);
            let Some(text) = self.text(&Spanned::new(content, at.file, at.span), scope) else {
                ok = false;
                continue;
            };
            let parsed = crate::cluster::manifest::parse(&file, &text.exec);
            objects += parsed.as_ref().map_or(0, Vec::len);
            if let Err(e) = parsed {
                let problem = Problem::BadManifest {
                    file: super::source::display_path(&e.file),
                    line: e.line,
                    column: e.column,
                    reason: e.reason,
                };
                self.problems.at(problem, at.at());
                ok = false;
                continue;
            }
            manifests.push(Manifest { file, text });
        }
        if ok && objects == 0 {
            let problem = Problem::BadValue {
                what: "the manifest path".into(),
                reason: format!("`{}` holds no Kubernetes object", super::source::display_path(path)),
                help: "an apply step applies *.yaml, *.yml and *.json files with apiVersion, kind and metadata.name"
                    .into(),
            };
            self.problems.at(problem, at.at());
            return None;
        }
        ok.then_some(manifests)
    }

    fn steps(&mut self, raw: &[RawStep], dir: &Path, scope: &Scope, stage: Stage) -> Vec<Step> {
        let mut steps: Vec<Step> = Vec::with_capacity(raw.len());
        for r in raw {
            // A manifest may be the output of an earlier `template` step of the same node.
            let rendered: Vec<PathBuf> = steps
                .iter()
                .filter_map(|s| match &s.kind {
                    StepKind::Template { dest, .. } => Some(dest.clone()),
                    _ => None,
                })
                .chain(self.rendered_earlier.iter().cloned())
                .collect();
            if let Some(step) = self.step(r, dir, scope, stage, &rendered) {
                steps.push(step);
            }
        }
        self.rendered_earlier.extend(steps.iter().filter_map(|s| match &s.kind {
            StepKind::Template { dest, .. } => Some(dest.clone()),
            _ => None,
        }));
        steps
    }

    fn step(
        &mut self,
        raw: &RawStep,
        dir: &Path,
        scope: &Scope,
        stage: Stage,
        rendered: &[PathBuf],
    ) -> Option<Step> {
        let when = match &raw.when {
            Some(w) => Some(self.conditions.check(w, self.renderer, self.problems)?),
            None => None,
        };
        let kind = match &raw.kind {
            RawStepKind::Run { command: command_at, shell, cwd, env } => {
                let command = self.text(command_at, scope);
                // The two renders differ exactly when a secret's value is in the text.
                if command.as_ref().is_some_and(|c| c.exec != c.shown) {
                    let problem = Problem::SecretInCommand {
                        node: self.node.to_string(),
                        step: raw.name.value.clone(),
                    };
                    self.problems.warn(problem, command_at.at());
                }
                let cwd = match cwd {
                    Some(c) => self.path(c, dir, scope, "working directory", false),
                    None => Some(dir.to_path_buf()),
                };
                let mut rendered_env = Vec::new();
                for (k, v) in env {
                    rendered_env.push((k.value.clone(), self.text(v, scope)?));
                }
                StepKind::Run {
                    command: command?,
                    shell: shell.as_ref().map(|s| s.value.split_whitespace().map(String::from).collect()),
                    cwd: cwd?,
                    env: rendered_env,
                }
            }
            RawStepKind::Http { url, method, expect, body } => {
                let url_text = self.text(url, scope);
                let body = self.opt_text(body, scope);
                let method = method.as_ref().map_or(Some("GET".to_string()), |m| {
                    let upper = m.value.to_uppercase();
                    if HTTP_METHODS.contains(&upper.as_str()) {
                        Some(upper)
                    } else {
                        let problem = Problem::BadValue {
                            what: "`method`".into(),
                            reason: format!("`{}` is not an HTTP method", m.value),
                            help: format!("one of: {}", HTTP_METHODS.join(", ")),
                        };
                        self.problems.at(problem, m.at());
                        None
                    }
                });
                let url_text = url_text?;
                if !(url_text.exec.starts_with("http://") || url_text.exec.starts_with("https://")) {
                    let problem = Problem::BadValue {
                        what: "the URL".into(),
                        reason: format!("`{}` does not start with http:// or https://", url_text.shown),
                        help: "write the full URL, e.g. \"https://ingress.example.internal/healthz\"".into(),
                    };
                    self.problems.at(problem, url.at());
                    return None;
                }
                StepKind::Http {
                    method: method?,
                    url: url_text,
                    expect: expect.as_ref().map_or(200, |e| e.value),
                    body: body?,
                }
            }
            RawStepKind::Tcp { address } => {
                let text = self.text(address, scope)?;
                let port_ok = text
                    .exec
                    .rsplit_once(':')
                    .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
                if !port_ok {
                    let problem = Problem::BadValue {
                        what: "the address".into(),
                        reason: format!("`{}` is not host:port", text.shown),
                        help: "for example \"postgres.db.svc:5432\" or \"127.0.0.1:8080\"".into(),
                    };
                    self.problems.at(problem, address.at());
                    return None;
                }
                StepKind::Tcp { address: text }
            }
            RawStepKind::Template { source: source_at, dest } => {
                let source = self.path(source_at, dir, scope, "template", true);
                let dest = self.path(dest, dir, scope, "destination", false);
                let source = source?;
                // Rendered now, so an undefined variable in the file is a definition error too.
                let content = match super::source::read_text(&source) {
                    Ok(text) => {
                        self.read_as_written(source_at, &text);
                        self.text(&Spanned::new(text, source_at.file, source_at.span), scope)?
                    }
                    Err(e) => {
                        let problem = e.into_problem(super::source::display_path(&source));
                        self.problems.at(problem, source_at.at());
                        return None;
                    }
                };
                StepKind::Template { source, dest: dest?, content }
            }
            RawStepKind::Apply { path: path_at, namespace, force } => {
                let produced =
                    // The manifest itself, or a folder a template step writes into.
                    self.path(path_at, dir, scope, "manifest", false)
                        .filter(|p| rendered.iter().any(|dest| dest == p || dest.starts_with(p)));
                let namespace = self.opt_public(namespace, scope, "namespace");
                let (path, manifests) = match produced {
                    Some(p) => (p, Vec::new()),
                    None => {
                        let path = self.path(path_at, dir, scope, "manifest", true)?;
                        let manifests = self.manifests(&path, path_at, scope)?;
                        (path, manifests)
                    }
                };
                StepKind::Apply { path, namespace: namespace?.map(|n| n.exec), force: *force, manifests }
            }
            RawStepKind::Wait { resource, namespace, condition, until } => {
                let resource_text = self.public_text(resource, scope, "resource");
                let namespace = self.opt_public(namespace, scope, "namespace");
                let until = match (condition, until) {
                    (Some(c), None) => Some(WaitFor::Condition(c.value.clone())),
                    (None, None) => Some(WaitFor::Rollout),
                    (None, Some(u)) => match u.value.as_str() {
                        "rollout" => Some(WaitFor::Rollout),
                        "deleted" => Some(WaitFor::Deleted),
                        other => {
                            let problem = Problem::BadValue {
                                what: "`until`".into(),
                                reason: format!("must be `rollout` or `deleted`, found `{other}`"),
                                help: "for a condition, write condition=Available instead".into(),
                            };
                            self.problems.at(problem, u.at());
                            None
                        }
                    },
                    (Some(_), Some(u)) => {
                        let problem = Problem::BadValue {
                            what: "`until`".into(),
                            reason: "cannot be combined with `condition`".into(),
                            help: "keep one: condition=Ready, until=rollout or until=deleted".into(),
                        };
                        self.problems.at(problem, u.at());
                        None
                    }
                };
                let resource_text = resource_text?;
                if !resource_text.exec.contains('/') {
                    let problem = Problem::BadValue {
                        what: "the resource".into(),
                        reason: format!("`{}` is not kind/name", resource_text.shown),
                        help: "for example \"deployment/istiod\"".into(),
                    };
                    self.problems.at(problem, resource.at());
                    return None;
                }
                StepKind::Wait {
                    resource: resource_text.exec,
                    namespace: namespace?.map(|n| n.exec),
                    until: until?,
                }
            }
        };
        // Validate steps poll, so they need an end; http, tcp and wait poll wherever they are.
        let probe = stage == Stage::Validate
            || matches!(kind, StepKind::Http { .. } | StepKind::Tcp { .. } | StepKind::Wait { .. });
        Some(Step {
            name: raw.name.value.clone(),
            timeout: raw.timeout.as_ref().map(|t| t.value).or(probe.then_some(DEFAULT_PROBE_TIMEOUT)),
            retries: raw.retries.as_ref().map_or(0, |r| r.value),
            backoff: raw.backoff.as_ref().map_or(DEFAULT_BACKOFF, |b| b.value),
            interval: raw.interval.as_ref().map_or(DEFAULT_INTERVAL, |i| i.value),
            when,
            kind,
        })
    }
}
