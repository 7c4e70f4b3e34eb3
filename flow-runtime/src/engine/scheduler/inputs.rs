//! Reading a task run's inputs: values from parameters, constants and upstream results,
//! each read counted so a result is released after its last consumer; why an input has no
//! value.

use super::*;

impl Scheduler {
    /// Reads a value source. With `consume`, the read counts as one of the upstream's
    /// consumers (the last one moves the value out).
    pub(super) fn eval(&mut self, s: &Static, src: &Source, consume: bool) -> Result<Data, Missing> {
        match src {
            Source::Param(i) => self
                .params
                .get(*i)
                .cloned()
                .map(Data::local)
                .ok_or(Missing::Unknown),
            Source::Const(v, _) => Ok(Data::local(Arc::clone(v))),
            Source::Node(_) | Source::Reduce(..) => match plan::classify(&s.graph, src) {
                None => Err(Missing::Unknown),
                Some(UpRef::Own(id)) => {
                    let n = id.index();
                    let keep = s.plans[n].keep;
                    let rt = &mut self.nodes[n];
                    let v = if consume {
                        take_use(&mut rt.result, &mut rt.uses, keep)
                    } else {
                        rt.result.clone()
                    };
                    v.ok_or(Missing::Up(UpId::own(n)))
                }
                Some(UpRef::Children(id)) => {
                    let m = id.index();
                    let keep = s.plans[m].keep;
                    let rt = &mut self.nodes[m];
                    if !rt.expanded {
                        return Err(Missing::Up(UpId::own(m)));
                    }
                    let values = rt
                        .children
                        .iter_mut()
                        .filter_map(|c| {
                            if consume {
                                take_use(&mut c.result, &mut c.uses, keep)
                            } else {
                                c.result.clone()
                            }
                        })
                        .collect();
                    match src {
                        Source::Reduce(_, collect) => {
                            let pack = packer(&s.graph, m);
                            Data::collect(values, *collect, |_| pack).map_err(Missing::Unreadable)
                        }
                        _ => Err(Missing::Unknown),
                    }
                }
            },
            Source::Gather(parts, collect) => {
                let mut values = Vec::with_capacity(parts.len());
                let mut missing = None;
                for part in parts {
                    match self.eval(s, part, consume) {
                        Ok(v) => values.push(v),
                        Err(m) => {
                            missing.get_or_insert(m);
                        }
                    }
                }
                match missing {
                    Some(m) => Err(m),
                    None => Data::collect(values, *collect, |k| match parts.get(k) {
                        Some(Source::Node(id)) => packer(&s.graph, id.index()),
                        _ => None,
                    })
                    .map_err(Missing::Unreadable),
                }
            }
            Source::First(parts) => {
                // Every part is read, so each counts as one of its upstream's consumers;
                // the first part with a value is the branch that ran.
                let mut found = None;
                let mut missing: Option<Missing> = None;
                for part in parts {
                    match self.eval(s, part, consume) {
                        Ok(v) => {
                            found.get_or_insert(v);
                        }
                        Err(m) => {
                            if missing
                                .as_ref()
                                .is_none_or(|old| self.why_rank(s, &m) < self.why_rank(s, old))
                            {
                                missing = Some(m);
                            }
                        }
                    }
                }
                match found {
                    Some(v) => Ok(v),
                    None => Err(missing.unwrap_or(Missing::Unknown)),
                }
            }
        }
    }

    /// How well a missing branch value explains a merge without a value, best first: a
    /// branch that ran and failed, then a skip inside a branch that ran, then a branch
    /// that was not taken (its gate skipped).
    pub(super) fn why_rank(&self, s: &Static, missing: &Missing) -> u8 {
        match *missing {
            Missing::Up(u) if self.state_of(u).is_skipped() => {
                if s.graph.nodes[u.node].kind == NodeKind::Gate {
                    2
                } else {
                    1
                }
            }
            _ => 0,
        }
    }

    /// Gives up the reads node `x`'s whole inputs (`Value` and `FanOut`) would have made.
    pub(super) fn release_sources(&mut self, s: &Static, x: usize) {
        for input in &s.graph.nodes[x].inputs {
            let (Input::Value(src) | Input::FanOut(src, _)) = input else {
                continue;
            };
            plan::visit(src, &mut |part| match plan::classify(&s.graph, part) {
                Some(UpRef::Own(id)) => {
                    let n = id.index();
                    let rt = &mut self.nodes[n];
                    drop_use(&mut rt.result, &mut rt.uses, s.plans[n].keep);
                }
                Some(UpRef::Children(id)) => {
                    let m = id.index();
                    let keep = s.plans[m].keep;
                    for c in &mut self.nodes[m].children {
                        drop_use(&mut c.result, &mut c.uses, keep);
                    }
                }
                None => {}
            });
        }
    }

    /// The state of a task run whose input `i` has no value.
    pub(super) fn missing_state(&self, s: &Static, x: usize, i: usize, missing: Missing) -> State {
        let input = param_name(s, x, i);
        match missing {
            Missing::Up(u) => {
                let state = self.state_of(u);
                let message = if s.graph.nodes[x].kind == NodeKind::Merge {
                    let what = if s.graph.nodes[u.node].kind == NodeKind::Gate {
                        "no branch of the `if` ran"
                    } else if state.is_skipped() {
                        "no branch of the `if` gave a value"
                    } else {
                        "the branch of the `if` that ran gave no value"
                    };
                    format!("{what}: `{}` ended {}", s.name(u), state.name())
                } else {
                    format!(
                        "input `{input}` has no value because `{}` ended {}; a task that must run after \
                         a failure or skip should depend on it with an ordering-only dependency \
                         (`.after(..)`) instead of taking its result",
                        s.name(u),
                        state.name(),
                    )
                };
                if state.is_skipped() {
                    State::Skipped { message }
                } else {
                    State::TriggerFailed { message }
                }
            }
            Missing::Unknown => State::Failed {
                message: format!("input `{input}` reads a parameter or task the flow does not have"),
            },
            Missing::Unreadable(e) => State::Failed {
                message: format!("input `{input}` cannot be read: {e}"),
            },
            Missing::Released => State::Failed {
                message: format!("input `{input}` was released before this task run read it (engine bug)"),
            },
        }
    }
}

/// Takes one read of a result: moved out on the last read (unless kept), cloned otherwise.
pub(super) fn take_use(slot: &mut Option<Data>, uses: &mut u32, keep: bool) -> Option<Data> {
    *uses = uses.saturating_sub(1);
    if *uses == 0 && !keep {
        slot.take()
    } else {
        slot.clone()
    }
}

/// Gives up one read of a result without reading it.
pub(super) fn drop_use(slot: &mut Option<Data>, uses: &mut u32, keep: bool) {
    *uses = uses.saturating_sub(1);
    if *uses == 0 && !keep {
        *slot = None;
    }
}

/// An input of a task run of node `x`, as its attempt takes it: a value here, or, for a
/// task that runs on a cluster, the data in whatever form it is (what the cluster holds
/// stays there).
#[inline]
pub(super) fn input_value(s: &Static, x: usize, d: Data) -> Result<Value, DataError> {
    if s.raw_inputs.get(x).copied().unwrap_or(false) {
        Ok(d.into_raw())
    } else {
        d.into_local()
    }
}

/// How a result of node `n` (each child's, for a mapped node) is written in the wire
/// format, for a backend that builds a list out of results (a reduce on a cluster).
fn packer(graph: &crate::graph::Graph, n: usize) -> Option<crate::task::EncodeFn> {
    graph.nodes.get(n)?.task.codec.map(|c| c.pack_output)
}

pub(super) fn param_name(s: &Static, x: usize, i: usize) -> &'static str {
    s.graph.nodes[x].task.params.get(i).map_or("?", |p| p.name)
}

/// What input `i` of mapped task `x` maps over: the upstream task, parameter or constant
/// (the task's parameter name when it is something else).
pub(super) fn mapped_over(s: &Static, x: usize, i: usize) -> &str {
    let source = match s.graph.nodes[x].inputs.get(i) {
        Some(Input::Zip(m)) => return s.plans.get(m.index()).map_or("?", |p| &p.name),
        Some(Input::FanOut(src, _)) => src,
        _ => return param_name(s, x, i),
    };
    match source {
        Source::Node(id) | Source::Reduce(id, _) => s.plans.get(id.index()).map_or("?", |p| &p.name),
        Source::Param(p) => s.graph.params.get(*p).map_or("?", |p| p.name),
        Source::Const(_, text) => text,
        Source::Gather(..) | Source::First(..) => param_name(s, x, i),
    }
}
