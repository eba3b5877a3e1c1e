//! The dependency graph as DOT, Mermaid or JSON, for `milepost graph`.

use std::collections::BTreeSet;
use std::fmt::Write;

use serde::Serialize;

use super::PlanGraph;
use crate::spec::values::human;
use crate::spec::{NodeKind, Workflow};

/// Graphviz: phases as clusters, gates as hexagons, the critical path in bold.
pub fn dot(workflow: &Workflow, graph: &PlanGraph) -> String {
    let (_, critical) = graph.critical_path(|n| workflow.nodes[n].planned);
    let on_path = |a: usize, b: usize| critical.windows(2).any(|w| w[0] == a && w[1] == b);
    let mut out = String::new();
    let _ = writeln!(out, "digraph {:?} {{", workflow.id);
    let _ = writeln!(out, "  rankdir=LR;\n  node [shape=box, style=rounded, fontname=\"Helvetica\"];");
    for (p, phase) in workflow.phases.iter().enumerate() {
        let _ = writeln!(out, "  subgraph cluster_{p} {{");
        let title = phase.title.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
        let _ = writeln!(out, "    label={:?};", format!("{}{title}", phase.id));
        for &n in phase.modules.iter().chain(&phase.gate) {
            let _ = writeln!(out, "    {};", dot_node(workflow, n));
        }
        let _ = writeln!(out, "  }}");
    }
    for (n, node) in workflow.nodes.iter().enumerate() {
        if node.phase.is_none() {
            let _ = writeln!(out, "  {};", dot_node(workflow, n));
        }
    }
    for (a, b) in workflow.edges() {
        let style = if on_path(a, b) { " [penwidth=2.5, color=\"#c0392b\"]" } else { "" };
        let _ = writeln!(out, "  {:?} -> {:?}{style};", workflow.nodes[a].id, workflow.nodes[b].id);
    }
    out.push_str("}\n");
    out
}

fn dot_node(workflow: &Workflow, n: usize) -> String {
    let node = &workflow.nodes[n];
    let label = format!("{}\\n{}", node.label(), human(node.planned));
    let shape = match node.kind {
        NodeKind::Module => "",
        NodeKind::Gate => ", shape=hexagon",
    };
    format!("{:?} [label=\"{label}\"{shape}]", node.id)
}

/// A Mermaid flowchart that renders in GitHub and GitLab markdown.
pub fn mermaid(workflow: &Workflow, graph: &PlanGraph) -> String {
    let (_, critical) = graph.critical_path(|n| workflow.nodes[n].planned);
    let mut out = String::from("flowchart LR\n");
    let shape = |n: usize| {
        let node = &workflow.nodes[n];
        let label = format!("{}<br/>{}", node.label(), human(node.planned));
        match node.kind {
            NodeKind::Module => format!("n{n}[\"{label}\"]"),
            NodeKind::Gate => format!("n{n}{{{{\"{label}\"}}}}"),
        }
    };
    for phase in &workflow.phases {
        let title = phase.title.as_deref().map(|t| format!(" {t}")).unwrap_or_default();
        let _ = writeln!(out, "  subgraph phase_{}[\"{}{title}\"]", sanitize(&phase.id), phase.id);
        for &n in phase.modules.iter().chain(&phase.gate) {
            let _ = writeln!(out, "    {}", shape(n));
        }
        out.push_str("  end\n");
    }
    for (n, node) in workflow.nodes.iter().enumerate() {
        if node.phase.is_none() {
            let _ = writeln!(out, "  {}", shape(n));
        }
    }
    let mut critical_edges = Vec::new();
    for (i, (a, b)) in workflow.edges().enumerate() {
        let _ = writeln!(out, "  n{a} --> n{b}");
        if critical.windows(2).any(|w| w[0] == a && w[1] == b) {
            critical_edges.push(i.to_string());
        }
    }
    if !critical_edges.is_empty() {
        let _ = writeln!(out, "  linkStyle {} stroke:#c0392b,stroke-width:3px", critical_edges.join(","));
    }
    out
}

fn sanitize(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect()
}

/// Graphs up to this many nodes list each node's transitive dependencies in JSON.
pub const UPSTREAM_LIMIT: usize = 2000;

#[derive(Serialize)]
struct JsonGraph<'a> {
    workflow: &'a str,
    nodes: Vec<JsonNode<'a>>,
    edges: Vec<[&'a str; 2]>,
    order: Vec<&'a str>,
    critical_path: Vec<&'a str>,
    critical_path_secs: u64,
}

#[derive(Serialize)]
struct JsonNode<'a> {
    id: &'a str,
    kind: NodeKind,
    number: Option<u32>,
    title: &'a str,
    phase: Option<&'a str>,
    budget_secs: u64,
    planned_secs: u64,
    deps: Vec<&'a str>,
    /// Every node this one transitively waits for: two nodes are independent when neither
    /// lists the other here. Left out for graphs above [`UPSTREAM_LIMIT`] nodes.
    #[serde(skip_serializing_if = "Option::is_none")]
    upstream: Option<Vec<&'a str>>,
}

/// The graph for machines: nodes, edges, order, transitive dependencies, critical path.
pub fn json(workflow: &Workflow, graph: &PlanGraph) -> String {
    let name = |n: usize| workflow.nodes[n].id.as_str();
    // Transitive sets grow with the square of the graph; past this size only direct deps are listed.
    let upstream: Option<Vec<BTreeSet<usize>>> = (workflow.nodes.len() <= UPSTREAM_LIMIT).then(|| {
        let mut up = vec![BTreeSet::new(); workflow.nodes.len()];
        for &n in graph.order() {
            let mut mine = BTreeSet::new();
            for d in graph.deps(n) {
                mine.insert(d);
                mine.extend(up[d].iter().copied());
            }
            up[n] = mine;
        }
        up
    });
    let (length, critical) = graph.critical_path(|n| workflow.nodes[n].planned);
    let out = JsonGraph {
        workflow: &workflow.id,
        nodes: workflow
            .nodes
            .iter()
            .enumerate()
            .map(|(n, node)| JsonNode {
                id: &node.id,
                kind: node.kind,
                number: node.number,
                title: &node.title,
                phase: workflow.phase_of(n).map(|p| p.id.as_str()),
                budget_secs: node.budget.as_secs(),
                planned_secs: node.planned.as_secs(),
                deps: node.deps.iter().map(|&d| name(d)).collect(),
                upstream: upstream.as_ref().map(|up| {
                    graph.order().iter().copied().filter(|u| up[n].contains(u)).map(name).collect()
                }),
            })
            .collect(),
        edges: workflow.edges().map(|(a, b)| [name(a), name(b)]).collect(),
        order: graph.order().iter().map(|&n| name(n)).collect(),
        critical_path: critical.iter().map(|&n| name(n)).collect(),
        critical_path_secs: length.as_secs(),
    };
    serde_json::to_string_pretty(&out).expect("plain data always serializes") + "\n"
}
