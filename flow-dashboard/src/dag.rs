//! A run's DAG as SVG: one box per task (a mapped task is one box with a bar of its
//! children by state), in layers left to right by the longest path to each task, coloured
//! by state, each a link to its task run.

use std::fmt::Write as _;

use flow_runtime::Graph;

use crate::html::{esc, state_class};

/// What a task's box shows.
pub(crate) struct NodeView {
    /// Its state (for a mapped task, its children's as a whole).
    pub(crate) state: String,
    /// Its children by state (empty unless mapped).
    pub(crate) children: Vec<(String, u64)>,
    /// How many children needed more than one attempt.
    pub(crate) retried: u64,
}

const W: i64 = 190;
const H: i64 = 56;
const GAP_X: i64 = 56;
const GAP_Y: i64 = 18;
const PAD: i64 = 8;

/// Each node's layer (its longest path from a root) and row in the layer.
fn layout(graph: &Graph) -> Vec<(i64, i64)> {
    let edges = graph.task_edges();
    let mut layer = vec![0i64; graph.nodes.len()];
    // Nodes are in declaration order, a topological order: one pass.
    for to in 0..graph.nodes.len() {
        for &(from, t, _) in &edges {
            if t == to && from < to {
                layer[to] = layer[to].max(layer[from] + 1);
            }
        }
    }
    let mut rows = vec![0i64; graph.nodes.len() + 1];
    layer
        .iter()
        .map(|&l| {
            let idx = usize::try_from(l).unwrap_or(0);
            let row = rows[idx];
            rows[idx] += 1;
            (l, row)
        })
        .collect()
}

/// The SVG of `graph` with `views` (one per node), linking to run `run`'s task pages.
pub(crate) fn svg(graph: &Graph, run: &str, views: &[NodeView]) -> String {
    let at = layout(graph);
    let layers = at.iter().map(|(l, _)| l + 1).max().unwrap_or(1);
    let rows = at.iter().map(|(_, r)| r + 1).max().unwrap_or(1);
    let width = layers * (W + GAP_X) - GAP_X + 2 * PAD;
    let height = rows * (H + GAP_Y) - GAP_Y + 2 * PAD;
    let pos = |i: usize| {
        let (l, r) = at[i];
        (PAD + l * (W + GAP_X), PAD + r * (H + GAP_Y))
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<svg class=\"dag\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
         viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"the flow's tasks and how they depend on each other\">"
    );
    for (from, to, kind) in graph.task_edges() {
        let ((x1, y1), (x2, y2)) = (pos(from), pos(to));
        let (x1, y1, x2, y2) = (x1 + W, y1 + H / 2, x2, y2 + H / 2);
        let mid = (x2 - x1) / 2;
        let _ = write!(
            out,
            "<path class=\"edge {}\" d=\"M{x1},{y1} C{},{y1} {},{y2} {x2},{y2}\"/>",
            if kind == "after" || kind == "branch" {
                "dashed"
            } else {
                ""
            },
            x1 + mid,
            x2 - mid
        );
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        let (x, y) = pos(i);
        let view = views.get(i);
        let state = view.map_or("Pending", |v| v.state.as_str());
        let name = if node.mapped {
            format!("{} ×", node.name)
        } else {
            node.name.clone()
        };
        let _ = write!(
            out,
            "<a href=\"/runs/{run}/tasks/{i}\"><g class=\"node {cls}\" data-node=\"{i}\" data-state=\"{st}\">\
             <title>{title}</title><rect x=\"{x}\" y=\"{y}\" width=\"{W}\" height=\"{H}\" rx=\"7\"/>\
             <text class=\"name\" x=\"{tx}\" y=\"{ty}\">{name}</text>",
            cls = state_class(state),
            st = esc(state),
            title = esc(&format!("{} ({})", node.name, node.task.name)),
            tx = x + 10,
            ty = y + 22,
            name = esc(&truncate(&name, 24)),
        );
        let children = view.map(|v| v.children.as_slice()).unwrap_or(&[]);
        let total: u64 = children.iter().map(|(_, n)| n).sum();
        if node.mapped && total > 0 {
            let mut counts: Vec<String> = children.iter().map(|(s, n)| format!("{n} {s}")).collect();
            let retried = view.map_or(0, |v| v.retried);
            if retried > 0 {
                counts.push(format!("{retried} retried"));
            }
            let _ = write!(
                out,
                "<text class=\"sub\" x=\"{}\" y=\"{}\">{}</text>",
                x + 10,
                y + 38,
                esc(&truncate(&counts.join(" · "), 30))
            );
            // The bar: each state's share of the children.
            let (bx, by, bw) = (x + 10, y + H - 12, W - 20);
            let mut done = 0u64;
            for (s, n) in children {
                let from = bx + i64::try_from(done * u64::try_from(bw).unwrap_or(0) / total).unwrap_or(0);
                done += n;
                let to = bx + i64::try_from(done * u64::try_from(bw).unwrap_or(0) / total).unwrap_or(0);
                let _ = write!(
                    out,
                    "<rect class=\"bar {}\" x=\"{from}\" y=\"{by}\" width=\"{}\" height=\"5\"/>",
                    state_class(s),
                    (to - from).max(1)
                );
            }
        } else {
            let _ = write!(
                out,
                "<text class=\"sub\" x=\"{}\" y=\"{}\">{}</text>",
                x + 10,
                y + 42,
                esc(state)
            );
        }
        out.push_str("</g></a>");
    }
    out.push_str("</svg>");
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}
