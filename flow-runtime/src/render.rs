//! Printing a graph: Graphviz DOT and Mermaid.
//!
//! One node per task, labelled with its binding (and `= task` when the task's name
//! differs; `task.map` for a mapped task, drawn with its own shape), one node per flow
//! parameter and per constant, and one edge per value a task reads, labelled with how it
//! reads it: `data`, `mapped` (fan-out or zip), `unmapped` (the same value for every
//! child), `reduce` (all children's results), `gathered` (part of a tuple or array), or
//! `after` (ordering only, dashed).
//!
//! An `if` shows as decisions: each branch's gate is a diamond labelled `if flag` or
//! `else flag`, reading its `condition`; the tasks of the branch hang off it with
//! `after` edges, and the merge of an `if`'s value reads each branch's gate (`branch`,
//! dashed) and value (`data`).

use std::fmt::Write as _;

use crate::graph::{Graph, Input, NodeKind, Source};

/// Where an edge starts.
#[derive(Clone, Copy, PartialEq, Eq)]
enum From {
    Param(usize),
    Const(usize),
    Task(usize),
}

/// One edge: from, to (a task), its kind.
struct Edge {
    from: From,
    to: usize,
    kind: &'static str,
}

/// The nodes and edges both formats print, in a deterministic order.
struct Layout {
    consts: Vec<&'static str>,
    edges: Vec<Edge>,
}

fn layout(graph: &Graph) -> Layout {
    let mut consts = Vec::new();
    let mut edges = Vec::new();
    for (to, node) in graph.nodes.iter().enumerate() {
        // A gate reads its condition; its other input is the condition's text, shown in
        // its label.
        let gate = node.kind == NodeKind::Gate;
        let shown = if gate { 1 } else { node.inputs.len() };
        for input in node.inputs.iter().take(shown) {
            match input {
                Input::Value(src) if gate => source_edges(src, to, "condition", &mut consts, &mut edges),
                Input::Value(src) => {
                    let kind = if node.mapped { "unmapped" } else { "data" };
                    source_edges(src, to, kind, &mut consts, &mut edges);
                }
                Input::FanOut(src, _) => source_edges(src, to, "mapped", &mut consts, &mut edges),
                Input::Zip(m) => edges.push(Edge {
                    from: From::Task(m.index()),
                    to,
                    kind: "mapped",
                }),
            }
        }
        for a in &node.after {
            edges.push(Edge {
                from: From::Task(a.index()),
                to,
                kind: "after",
            });
        }
    }
    Layout { consts, edges }
}

/// The edges between tasks: (from node, to node, kind), as the formats draw them.
pub(crate) fn task_edges(graph: &Graph) -> Vec<(usize, usize, &'static str)> {
    let mut out: Vec<(usize, usize, &'static str)> = Vec::new();
    for e in layout(graph).edges {
        if let From::Task(from) = e.from {
            if !out.iter().any(|&(f, t, _)| f == from && t == e.to) {
                out.push((from, e.to, e.kind));
            }
        }
    }
    out
}

fn source_edges(
    src: &Source,
    to: usize,
    kind: &'static str,
    consts: &mut Vec<&'static str>,
    edges: &mut Vec<Edge>,
) {
    let from = match src {
        Source::Node(id) => From::Task(id.index()),
        Source::Param(i) => From::Param(*i),
        Source::Const(_, text) => {
            consts.push(text);
            From::Const(consts.len() - 1)
        }
        Source::Reduce(id, _) => {
            let kind = if kind == "gathered" { kind } else { "reduce" };
            edges.push(Edge {
                from: From::Task(id.index()),
                to,
                kind,
            });
            return;
        }
        Source::Gather(parts, _) => {
            for p in parts {
                source_edges(p, to, "gathered", consts, edges);
            }
            return;
        }
        Source::First(parts) => {
            // Each branch of an `if`: its gate, then its value.
            for p in parts {
                match p {
                    Source::Gather(gated, _) if gated.len() == 2 => {
                        source_edges(&gated[0], to, "branch", consts, edges);
                        source_edges(&gated[1], to, kind, consts, edges);
                    }
                    other => source_edges(other, to, kind, consts, edges),
                }
            }
            return;
        }
    };
    edges.push(Edge { from, to, kind });
}

fn task_label(graph: &Graph, x: usize) -> String {
    let node = &graph.nodes[x];
    if node.kind == NodeKind::Gate || (node.kind == NodeKind::Merge && node.name.starts_with("merge ")) {
        return node.name.clone();
    }
    let task = if node.mapped {
        format!("{}.map", node.task.name)
    } else {
        node.task.name.to_owned()
    };
    if node.name == node.task.name {
        task
    } else {
        format!("{} = {task}", node.name)
    }
}

fn param_label(graph: &Graph, i: usize) -> String {
    match graph.params.get(i) {
        Some(p) => format!("{}: {}", p.name, p.ty),
        None => format!("param #{i}"),
    }
}

fn dot_id(from: From) -> String {
    match from {
        From::Param(i) => format!("p{i}"),
        From::Const(i) => format!("c{i}"),
        From::Task(i) => format!("t{i}"),
    }
}

fn dot_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// The graph in Graphviz DOT.
pub(crate) fn to_dot(graph: &Graph) -> String {
    let l = layout(graph);
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", dot_escape(graph.name));
    out.push_str("    node [fontname=\"Helvetica\"];\n");
    out.push_str("    edge [fontname=\"Helvetica\", fontsize=10];\n");
    for i in 0..graph.params.len() {
        let _ = writeln!(
            out,
            "    p{i} [label=\"{}\", shape=parallelogram];",
            dot_escape(&param_label(graph, i))
        );
    }
    for (i, text) in l.consts.iter().enumerate() {
        let _ = writeln!(out, "    c{i} [label=\"{}\", shape=plaintext];", dot_escape(text));
    }
    for (x, node) in graph.nodes.iter().enumerate() {
        let shape = if node.kind == NodeKind::Gate {
            "shape=diamond"
        } else if node.kind == NodeKind::Merge {
            "shape=oval"
        } else if node.mapped {
            "shape=box3d, style=bold"
        } else {
            "shape=box, style=rounded"
        };
        let _ = writeln!(
            out,
            "    t{x} [label=\"{}\", {shape}];",
            dot_escape(&task_label(graph, x))
        );
    }
    for e in &l.edges {
        let style = if is_dashed(e.kind) { ", style=dashed" } else { "" };
        let _ = writeln!(
            out,
            "    {} -> t{} [label=\"{}\"{style}];",
            dot_id(e.from),
            e.to,
            e.kind
        );
    }
    out.push_str("}\n");
    out
}

/// Ordering edges: `after`, and a gate's edge to the merge of its `if`.
fn is_dashed(kind: &str) -> bool {
    kind == "after" || kind == "branch"
}

fn mermaid_escape(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', " ")
}

/// The graph as a Mermaid flowchart.
pub(crate) fn to_mermaid(graph: &Graph) -> String {
    let l = layout(graph);
    let mut out = String::from("flowchart TD\n");
    for i in 0..graph.params.len() {
        let _ = writeln!(out, "    p{i}[/\"{}\"/]", mermaid_escape(&param_label(graph, i)));
    }
    for (i, text) in l.consts.iter().enumerate() {
        let _ = writeln!(out, "    c{i}>\"{}\"]", mermaid_escape(text));
    }
    for (x, node) in graph.nodes.iter().enumerate() {
        let label = mermaid_escape(&task_label(graph, x));
        if node.kind == NodeKind::Gate {
            let _ = writeln!(out, "    t{x}{{\"{label}\"}}");
        } else if node.kind == NodeKind::Merge {
            let _ = writeln!(out, "    t{x}([\"{label}\"])");
        } else if node.mapped {
            let _ = writeln!(out, "    t{x}[[\"{label}\"]]");
        } else {
            let _ = writeln!(out, "    t{x}(\"{label}\")");
        }
    }
    for e in &l.edges {
        let arrow = if is_dashed(e.kind) { "-.->" } else { "-->" };
        let _ = writeln!(out, "    {} {arrow}|{}| t{}", dot_id(e.from), e.kind, e.to);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::context::TaskContext;
    use crate::error::TaskError;
    use crate::graph::{Node, NodeId, ParamSpec};
    use crate::task::{TaskBody, TaskDef, TaskOptions, TaskParam};
    use crate::value::{self, Value};

    fn body(_: Vec<Value>, _: &TaskContext) -> Result<Value, TaskError> {
        Ok(value::value(()))
    }

    fn split(_: Value) -> Vec<Value> {
        Vec::new()
    }

    fn collect(_: Vec<Value>) -> Value {
        value::value(())
    }

    const fn def(name: &'static str, params: &'static [TaskParam]) -> TaskDef {
        TaskDef {
            name,
            key: name,
            options: TaskOptions::DEFAULT,
            params,
            output: "()",
            body: TaskBody::Sync(body),
            codec: None,
        }
    }

    static DOWNLOAD: TaskDef = def(
        "download",
        &[TaskParam {
            name: "path",
            ty: "String",
        }],
    );
    static CLEAN: TaskDef = def(
        "clean",
        &[
            TaskParam {
                name: "chunk",
                ty: "Trips",
            },
            TaskParam {
                name: "factor",
                ty: "f64",
            },
        ],
    );
    static BEST: TaskDef = def(
        "best",
        &[TaskParam {
            name: "chunk",
            ty: "Trips",
        }],
    );
    static REPORT: TaskDef = def(
        "report",
        &[
            TaskParam {
                name: "all",
                ty: "Vec<Trip>",
            },
            TaskParam {
                name: "pair",
                ty: "(String, u32)",
            },
        ],
    );
    static NOTIFY: TaskDef = def("notify", &[]);

    fn graph() -> Graph {
        let node = |name: &str, task: &'static TaskDef, mapped, inputs, after| Node {
            name: name.to_owned(),
            task,
            options: task.options,
            mapped,
            inputs,
            after,
            kind: crate::graph::NodeKind::Call,
        };
        Graph {
            name: "riders",
            description: "",
            nodes: vec![
                node(
                    "chunks",
                    &DOWNLOAD,
                    false,
                    vec![Input::Value(Source::Param(0))],
                    vec![],
                ),
                node(
                    "clean",
                    &CLEAN,
                    true,
                    vec![
                        Input::FanOut(Source::Node(NodeId(0)), split),
                        Input::Value(Source::Const(value::value(2.0f64), "2.0")),
                    ],
                    vec![],
                ),
                node("best", &BEST, true, vec![Input::Zip(NodeId(1))], vec![]),
                node(
                    "report",
                    &REPORT,
                    false,
                    vec![
                        Input::Value(Source::Reduce(NodeId(2), collect)),
                        Input::Value(Source::Gather(
                            vec![Source::Param(0), Source::Node(NodeId(0))],
                            collect,
                        )),
                    ],
                    vec![],
                ),
                node("notify", &NOTIFY, false, vec![], vec![NodeId(3)]),
            ],
            params: vec![ParamSpec {
                name: "path",
                ty: "String",
                default: Some(Arc::new(String::new())),
                from_json: |_| Err(String::new()),
                to_json: |_| serde_json::Value::Null,
            }],
            output: None,
        }
    }

    #[test]
    fn dot() {
        let expected = r#"digraph "riders" {
    node [fontname="Helvetica"];
    edge [fontname="Helvetica", fontsize=10];
    p0 [label="path: String", shape=parallelogram];
    c0 [label="2.0", shape=plaintext];
    t0 [label="chunks = download", shape=box, style=rounded];
    t1 [label="clean.map", shape=box3d, style=bold];
    t2 [label="best.map", shape=box3d, style=bold];
    t3 [label="report", shape=box, style=rounded];
    t4 [label="notify", shape=box, style=rounded];
    p0 -> t0 [label="data"];
    t0 -> t1 [label="mapped"];
    c0 -> t1 [label="unmapped"];
    t1 -> t2 [label="mapped"];
    t2 -> t3 [label="reduce"];
    p0 -> t3 [label="gathered"];
    t0 -> t3 [label="gathered"];
    t3 -> t4 [label="after", style=dashed];
}
"#;
        assert_eq!(to_dot(&graph()), expected);
    }

    #[test]
    fn mermaid() {
        let expected = r#"flowchart TD
    p0[/"path: String"/]
    c0>"2.0"]
    t0("chunks = download")
    t1[["clean.map"]]
    t2[["best.map"]]
    t3("report")
    t4("notify")
    p0 -->|data| t0
    t0 -->|mapped| t1
    c0 -->|unmapped| t1
    t1 -->|mapped| t2
    t2 -->|reduce| t3
    p0 -->|gathered| t3
    t0 -->|gathered| t3
    t3 -.->|after| t4
"#;
        assert_eq!(to_mermaid(&graph()), expected);
    }

    #[test]
    fn escapes_quotes() {
        let mut g = graph();
        g.nodes[1].inputs[1] = Input::Value(Source::Const(value::value("a\"b"), "\"a\\\"b\""));
        assert!(to_dot(&g).contains(r#"c0 [label="\"a\\\"b\"", shape=plaintext];"#));
        assert!(to_mermaid(&g).contains(r##"c0>"#quot;a\#quot;b#quot;"]"##));
    }
}
