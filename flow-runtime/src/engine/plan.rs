//! What the engine works out from a graph before it runs anything: each node's upstream
//! dependencies, who to notify when it ends, how many consumers read its results, and
//! whether its results are kept.

use std::sync::Arc;

use crate::graph::{Graph, Input, NodeId, NodeKind, Source};

/// An upstream reference whose state a task run's trigger looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum UpRef {
    /// The node's own state (a non-mapped task, or a mapped task read as a whole).
    Own(NodeId),
    /// Every child state of a mapped task (its own state when it did not expand).
    Children(NodeId),
}

/// The static facts about one node.
#[derive(Debug)]
pub(super) struct NodePlan {
    /// The node's name, shared by its task runs and its children's.
    pub(super) name: Arc<str>,
    /// Upstream states that decide the node's (or each child's) trigger, except zipped ones.
    pub(super) refs: Vec<UpRef>,
    /// Distinct mapped tasks this (mapped) node zips over.
    pub(super) zips: Vec<NodeId>,
    /// How many upstream events the node waits for before it is ready (non-mapped) or
    /// expands (mapped): one per distinct upstream that must be final, one per distinct
    /// zipped upstream that must have expanded.
    pub(super) waits: u32,
    /// Nodes to notify when this node is final.
    pub(super) notify_final: Vec<NodeId>,
    /// Mapped nodes that zip over this one: notified when it expands, and per child.
    pub(super) zip_consumers: Vec<NodeId>,
    /// How many reads of this node's own result the flow makes.
    pub(super) uses: u32,
    /// How many reads of each child's result the flow makes (zips and reduces).
    pub(super) child_uses: u32,
    /// Results are kept in the run record (keep_results, terminal, or output).
    pub(super) keep: bool,
    /// Nothing depends on this node (by data or ordering).
    pub(super) terminal: bool,
    /// Why the node cannot run, for a graph wired by hand in a way `flow!` never does.
    pub(super) invalid: Option<String>,
    /// The branch gates (of an `if` in the flow) the node runs after: a gate that skipped
    /// skips the node whatever its trigger options, since its branch was not taken.
    pub(super) gates: Vec<usize>,
}

/// Works out the plan of every node.
pub(super) fn plan(graph: &Graph, keep_results: bool) -> Vec<NodePlan> {
    let mut plans: Vec<NodePlan> = graph
        .nodes
        .iter()
        .map(|node| NodePlan {
            name: Arc::from(node.name.as_str()),
            refs: Vec::new(),
            zips: Vec::new(),
            waits: 0,
            notify_final: Vec::new(),
            zip_consumers: Vec::new(),
            uses: 0,
            child_uses: 0,
            keep: keep_results,
            terminal: true,
            invalid: None,
            gates: Vec::new(),
        })
        .collect();

    for (x, node) in graph.nodes.iter().enumerate() {
        let mut refs: Vec<UpRef> = Vec::new();
        let mut finals: Vec<usize> = Vec::new();
        let mut zips: Vec<NodeId> = Vec::new();
        let mut invalid: Option<String> = None;
        let mut has_mapped_input = false;
        let mut gates = Vec::new();
        let param = |i: usize| node.task.params.get(i).map_or("?", |p| p.name);

        for (i, input) in node.inputs.iter().enumerate() {
            let src = match input {
                Input::Value(src) => src,
                Input::FanOut(src, _) => {
                    has_mapped_input = true;
                    if !node.mapped {
                        invalid.get_or_insert_with(|| {
                            format!("input `{}` is mapped but task `{}` is not", param(i), node.name)
                        });
                    }
                    src
                }
                Input::Zip(m) => {
                    has_mapped_input = true;
                    let Some(up) = graph.nodes.get(m.index()) else {
                        invalid.get_or_insert_with(|| {
                            format!("input `{}` reads unknown task #{}", param(i), m.0)
                        });
                        continue;
                    };
                    if !node.mapped || !up.mapped {
                        invalid.get_or_insert_with(|| {
                            format!(
                                "input `{}` zips `{}` over `{}`, but both must be mapped",
                                param(i),
                                node.name,
                                up.name
                            )
                        });
                    }
                    plans[m.index()].child_uses += 1;
                    plans[m.index()].terminal = false;
                    if !zips.contains(m) {
                        zips.push(*m);
                    }
                    continue;
                }
            };
            visit(src, &mut |s| {
                let Some(r) = classify(graph, s) else {
                    if let Source::Node(id) | Source::Reduce(id, _) = s {
                        invalid.get_or_insert_with(|| {
                            format!("input `{}` reads unknown task #{}", param(i), id.0)
                        });
                    }
                    return;
                };
                match (s, r) {
                    (Source::Node(id), _) if graph.nodes[id.index()].mapped => {
                        invalid.get_or_insert_with(|| {
                            format!(
                                "input `{}` reads mapped task `{}` as a single value; reduce it or zip over it",
                                param(i),
                                graph.nodes[id.index()].name
                            )
                        });
                    }
                    (Source::Reduce(id, _), UpRef::Own(_)) => {
                        invalid.get_or_insert_with(|| {
                            format!(
                                "input `{}` reduces over `{}`, which is not mapped",
                                param(i),
                                graph.nodes[id.index()].name
                            )
                        });
                    }
                    _ => {}
                }
                let (UpRef::Own(id) | UpRef::Children(id)) = r;
                let plan = &mut plans[id.index()];
                plan.terminal = false;
                match r {
                    UpRef::Own(_) => plan.uses += 1,
                    UpRef::Children(_) => plan.child_uses += 1,
                }
                push_unique(&mut refs, r);
                push_unique(&mut finals, id.index());
            });
        }
        if node.mapped && !has_mapped_input && invalid.is_none() {
            invalid = Some(format!(
                "task `{}` is mapped but has no mapped input to map over",
                node.name
            ));
        }
        for a in &node.after {
            let Some(up) = graph.nodes.get(a.index()) else {
                invalid.get_or_insert_with(|| format!("`after` names unknown task #{}", a.0));
                continue;
            };
            plans[a.index()].terminal = false;
            if up.kind == NodeKind::Gate {
                push_unique(&mut gates, a.index());
            }
            push_unique(
                &mut refs,
                if up.mapped {
                    UpRef::Children(*a)
                } else {
                    UpRef::Own(*a)
                },
            );
            push_unique(&mut finals, a.index());
        }

        for &u in &finals {
            plans[u].notify_final.push(NodeId(x as u32));
        }
        for z in &zips {
            plans[z.index()].zip_consumers.push(NodeId(x as u32));
        }
        let plan = &mut plans[x];
        plan.waits = (finals.len() + zips.len()) as u32;
        plan.refs = refs;
        plan.zips = zips;
        plan.invalid = invalid;
        plan.gates = gates;
    }

    for plan in &mut plans {
        plan.keep |= plan.terminal;
    }
    if let Some(out) = &graph.output {
        visit(out, &mut |s| {
            if let Source::Node(id) | Source::Reduce(id, _) = s {
                if let Some(plan) = plans.get_mut(id.index()) {
                    plan.keep = true;
                }
            }
        });
    }
    plans
}

/// For a run on a cluster, per node: its results must come back to this process: a task
/// that runs here reads them (`local(consumer)`: a local task, a subflow, the gate or
/// merge of an `if`, a task that stores results and so hashes its inputs), or they are
/// the flow's output, or every result is kept (`keep_results`). The others stay where
/// they were made.
pub(super) fn needed_here(graph: &Graph, keep_results: bool, local: impl Fn(usize) -> bool) -> Vec<bool> {
    let mut here = vec![keep_results; graph.nodes.len()];
    let mut mark = |src: &Source| {
        visit(src, &mut |part| {
            if let Some(UpRef::Own(id) | UpRef::Children(id)) = classify(graph, part) {
                if let Some(h) = here.get_mut(id.index()) {
                    *h = true;
                }
            }
        })
    };
    for (x, node) in graph.nodes.iter().enumerate() {
        if !local(x) {
            continue;
        }
        for input in &node.inputs {
            match input {
                Input::Value(src) | Input::FanOut(src, _) => mark(src),
                Input::Zip(m) => mark(&Source::Node(*m)),
            }
        }
    }
    if let Some(out) = &graph.output {
        mark(out);
    }
    here
}

/// The upstream a value source reads (`None` for parameters, constants, gathers, the
/// branches of an `if` and unknown nodes). A reduce over a non-mapped node reads its own
/// result.
pub(super) fn classify(graph: &Graph, src: &Source) -> Option<UpRef> {
    match src {
        Source::Node(id) => graph.nodes.get(id.index()).map(|_| UpRef::Own(*id)),
        Source::Reduce(id, _) => graph.nodes.get(id.index()).map(|n| {
            if n.mapped {
                UpRef::Children(*id)
            } else {
                UpRef::Own(*id)
            }
        }),
        _ => None,
    }
}

/// Calls `f` on `src` and, for a gathered source or the branches of an `if`, on each
/// part (depth first). Every part is a read of its upstream: a merge reads each branch,
/// though only one of them has a value.
pub(super) fn visit<'a>(src: &'a Source, f: &mut impl FnMut(&'a Source)) {
    f(src);
    if let Source::Gather(parts, _) | Source::First(parts) = src {
        for p in parts {
            visit(p, f);
        }
    }
}

fn push_unique<T: PartialEq>(v: &mut Vec<T>, item: T) {
    if !v.contains(&item) {
        v.push(item);
    }
}
