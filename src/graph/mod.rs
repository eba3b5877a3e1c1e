//! The sealed DAG of a validated workflow: topological order, reachability, critical path.
//!
//! Built once from a [`Workflow`] (which `spec` already proved acyclic) and never changed.

pub mod render;

use std::time::Duration;

use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::spec::{NodeId, Workflow};

/// Dependencies point from the node that runs first to the node that waits for it.
#[derive(Debug)]
pub struct PlanGraph {
    graph: DiGraph<NodeId, ()>,
    order: Vec<NodeId>,
}

impl PlanGraph {
    pub fn new(workflow: &Workflow) -> Self {
        Self::from_edges(workflow.nodes.len(), workflow.edges())
            .expect("spec::validate rejects every cycle before a graph is built")
    }

    /// A graph of `n` nodes from `(before, after)` edges; `None` when they form a cycle.
    /// For generated graphs (tests, benchmarks); workflows go through [`PlanGraph::new`].
    pub fn from_edges(n: usize, edges: impl IntoIterator<Item = (NodeId, NodeId)>) -> Option<Self> {
        let mut graph = DiGraph::with_capacity(n, n * 3);
        for i in 0..n {
            graph.add_node(i);
        }
        for (before, after) in edges {
            graph.add_edge(NodeIndex::new(before), NodeIndex::new(after), ());
        }
        let order = petgraph::algo::toposort(&graph, None).ok()?.into_iter().map(NodeIndex::index).collect();
        Some(Self { graph, order })
    }

    pub fn len(&self) -> usize {
        self.graph.node_count()
    }

    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }

    /// Every node after all of its dependencies.
    pub fn order(&self) -> &[NodeId] {
        &self.order
    }

    pub fn edge_count(&self) -> usize {
        self.graph.edge_count()
    }

    pub fn deps(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.graph.edges_directed(NodeIndex::new(node), Direction::Incoming).map(|e| e.source().index())
    }

    pub fn dependents(&self, node: NodeId) -> impl Iterator<Item = NodeId> + '_ {
        self.graph.edges_directed(NodeIndex::new(node), Direction::Outgoing).map(|e| e.target().index())
    }

    /// Whether `to` transitively waits for `from`.
    pub fn has_path(&self, from: NodeId, to: NodeId) -> bool {
        from != to
            && petgraph::algo::has_path_connecting(
                &self.graph,
                NodeIndex::new(from),
                NodeIndex::new(to),
                None,
            )
    }

    /// Every node that transitively waits for one of `roots`, roots included, in topological order.
    pub fn downstream(&self, roots: &[NodeId]) -> Vec<NodeId> {
        let mut marked = vec![false; self.len()];
        for &r in roots {
            marked[r] = true;
        }
        for &n in &self.order {
            if !marked[n] && self.deps(n).any(|d| marked[d]) {
                marked[n] = true;
            }
        }
        self.order.iter().copied().filter(|&n| marked[n]).collect()
    }

    /// For each node, the longest path from its start to the end of the workflow, its own
    /// weight included: the priority of a ready node and the basis of slack.
    pub fn tails(&self, weight: impl Fn(NodeId) -> Duration) -> Vec<Duration> {
        let mut tail = vec![Duration::ZERO; self.len()];
        for &n in self.order.iter().rev() {
            let longest_after = self.dependents(n).map(|d| tail[d]).max().unwrap_or_default();
            tail[n] = weight(n) + longest_after;
        }
        tail
    }

    /// The chain of nodes whose durations add up to the longest path, and its length.
    pub fn critical_path(&self, weight: impl Fn(NodeId) -> Duration) -> (Duration, Vec<NodeId>) {
        let tails = self.tails(&weight);
        let Some(&first) = self
            .order
            .iter()
            .filter(|&&n| self.deps(n).next().is_none())
            .max_by(|&&a, &&b| tails[a].cmp(&tails[b]).then(b.cmp(&a)))
        else {
            return (Duration::ZERO, Vec::new());
        };
        let mut path = vec![first];
        let mut current = first;
        // Follow the dependent whose tail continues this one exactly; ties go to the lower id.
        while let Some(next) =
            self.dependents(current).filter(|&d| tails[d] + weight(current) == tails[current]).min()
        {
            path.push(next);
            current = next;
        }
        (tails[first], path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::workflow_from;

    #[test]
    fn critical_path_follows_the_longest_chain() {
        let w = workflow_from(
            r#"workflow w { parallelism 2 }
            module a { budget "1h"; install { run x "true" } }
            module b { budget "3h"; after a; install { run x "true" } }
            module c { budget "1h"; after a; install { run x "true" } }
            module d { budget "1h"; after b c; install { run x "true" } }"#,
        );
        let g = PlanGraph::new(&w);
        let (length, path) = g.critical_path(|n| w.nodes[n].planned);
        let names: Vec<&str> = path.iter().map(|&n| w.nodes[n].id.as_str()).collect();
        assert_eq!(names, ["a", "b", "d"]);
        assert_eq!(length, Duration::from_secs(5 * 3600));
        assert!(g.has_path(w.node("a").unwrap(), w.node("d").unwrap()));
        assert!(!g.has_path(w.node("b").unwrap(), w.node("c").unwrap()));
        let down: Vec<&str> =
            g.downstream(&[w.node("c").unwrap()]).iter().map(|&n| w.nodes[n].id.as_str()).collect();
        assert_eq!(down, ["c", "d"]);
    }
}
