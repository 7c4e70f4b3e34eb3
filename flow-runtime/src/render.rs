//! Printing a graph: Graphviz DOT and Mermaid.

use crate::graph::Graph;

/// The graph in Graphviz DOT.
pub(crate) fn to_dot(graph: &Graph) -> String {
    let _ = graph;
    String::new()
}

/// The graph as a Mermaid flowchart.
pub(crate) fn to_mermaid(graph: &Graph) -> String {
    let _ = graph;
    String::new()
}
