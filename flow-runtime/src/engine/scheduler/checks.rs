//! Whether a task run runs: upstream skips, untaken branches and triggers, decided once
//! for a task run, a mapped task as a whole and each child.

use super::*;

impl Scheduler {
    /// Whether a task run of node `x` runs, given its upstream states `ups`, in Prefect's
    /// order: an upstream skip skips it (`skip_on_upstream_skip`), a branch of an `if`
    /// that was not taken skips it whatever its options, then its trigger decides (when
    /// `ups` decide it). `None`: it runs, if its inputs have values. A failed trigger
    /// names the offending states among `listed`. `ups` is read once.
    pub(super) fn decide<'a, L>(
        &'a self,
        s: &Static,
        x: usize,
        ups: impl Iterator<Item = (UpId, &'a State)>,
        listed: impl FnOnce() -> L,
        trigger_decided: bool,
    ) -> Option<State>
    where
        L: Iterator<Item = (UpId, &'a State)>,
    {
        let options = &s.graph.nodes[x].options;
        let tally = Tally::of(ups);
        if options.skip_on_upstream_skip {
            if let Some(u) = tally.skipped {
                return Some(skipped_by(s, u));
            }
        }
        if let Some(state) = self.untaken_branch(s, x) {
            return Some(state);
        }
        if trigger_decided && !tally.passes(options.trigger) {
            return Some(State::TriggerFailed {
                message: trigger_message(s, options.trigger, listed()),
            });
        }
        None
    }

    /// `Skipped` when node `x` is in a branch of an `if` that was not taken (one of its
    /// gates skipped), whatever its trigger options.
    pub(super) fn untaken_branch(&self, s: &Static, x: usize) -> Option<State> {
        let gate = *s.plans[x]
            .gates
            .iter()
            .find(|&&g| self.nodes[g].state.is_skipped())?;
        Some(skipped_by(s, UpId::own(gate)))
    }

    pub(super) fn ref_states<'a>(&'a self, refs: &'a [UpRef]) -> RefStates<'a> {
        RefStates {
            nodes: &self.nodes,
            refs: refs.iter(),
            children: None,
        }
    }

    pub(super) fn state_of(&self, u: UpId) -> &State {
        let node = &self.nodes[u.node];
        match u.index {
            Some(i) => &node.children[i as usize].state,
            None => &node.state,
        }
    }
}

/// What a trigger needs of a run's upstream states, read in one pass.
pub(super) struct Tally {
    /// The first upstream that was skipped.
    skipped: Option<UpId>,
    seen: bool,
    all_successful: bool,
    all_failed: bool,
    any_successful: bool,
    any_failed: bool,
}

impl Tally {
    pub(super) fn of<'a>(ups: impl Iterator<Item = (UpId, &'a State)>) -> Self {
        let mut t = Tally {
            skipped: None,
            seen: false,
            all_successful: true,
            all_failed: true,
            any_successful: false,
            any_failed: false,
        };
        for (u, st) in ups {
            t.seen = true;
            if st.is_skipped() {
                t.skipped.get_or_insert(u);
            }
            let (ok, failed) = (st.is_successful(), st.is_failed());
            t.all_successful &= ok;
            t.all_failed &= failed;
            t.any_successful |= ok;
            t.any_failed |= failed;
        }
        t
    }

    /// As [`Trigger::passes`] over the same states.
    pub(super) fn passes(&self, trigger: Trigger) -> bool {
        match trigger {
            Trigger::AllFinished => true,
            Trigger::AllSuccessful => self.all_successful,
            Trigger::AllFailed => self.all_failed,
            Trigger::AnySuccessful => !self.seen || self.any_successful,
            Trigger::AnyFailed => !self.seen || self.any_failed,
        }
    }
}

/// The states of some upstream references, a mapped task's reference flattened into its
/// children (or its own state when it did not expand).
pub(super) struct RefStates<'a> {
    nodes: &'a [NodeRun],
    refs: slice::Iter<'a, UpRef>,
    children: Option<(usize, std::iter::Enumerate<slice::Iter<'a, ChildRun>>)>,
}

impl<'a> Iterator for RefStates<'a> {
    type Item = (UpId, &'a State);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((m, it)) = &mut self.children {
                if let Some((i, c)) = it.next() {
                    return Some((UpId::child(*m, i), &c.state));
                }
                self.children = None;
            }
            match *self.refs.next()? {
                UpRef::Own(id) => {
                    let x = id.index();
                    return Some((UpId::own(x), &self.nodes[x].state));
                }
                UpRef::Children(id) => {
                    let m = id.index();
                    let node = &self.nodes[m];
                    if node.expanded {
                        self.children = Some((m, node.children.iter().enumerate()));
                    } else {
                        return Some((UpId::own(m), &node.state));
                    }
                }
            }
        }
    }
}

pub(super) fn skipped_by(s: &Static, u: UpId) -> State {
    State::Skipped {
        message: format!("upstream `{}` was skipped", s.name(u)),
    }
}

/// "trigger `all_successful` did not pass (not every upstream task succeeded): `t1` ended Failed".
pub(super) fn trigger_message<'a>(
    s: &Static,
    trigger: Trigger,
    ups: impl Iterator<Item = (UpId, &'a State)>,
) -> String {
    let (why, offends): (&str, fn(&State) -> bool) = match trigger {
        Trigger::AllSuccessful => ("not every upstream task succeeded", |st| !st.is_successful()),
        Trigger::AllFailed => ("not every upstream task failed", |st| !st.is_failed()),
        Trigger::AnySuccessful => ("no upstream task succeeded", |_| true),
        Trigger::AnyFailed => ("no upstream task failed", |_| true),
        Trigger::AllFinished => ("an upstream task did not finish", |st| !st.is_finished()),
    };
    let mut message = format!("trigger `{trigger}` did not pass ({why}): ");
    for (shown, (u, st)) in ups.filter(|(_, st)| offends(st)).enumerate() {
        if shown == LISTED {
            message.push_str(", and more");
            break;
        }
        if shown > 0 {
            message.push_str(", ");
        }
        let _ = write!(message, "`{}` ended {}", s.name(u), st.name());
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_decides_every_trigger_as_the_trigger_itself_does() {
        let states = [
            State::Success,
            State::Cached,
            State::Failed { message: "x".into() },
            State::TriggerFailed { message: "x".into() },
            State::TimedOut { message: "x".into() },
            State::Skipped { message: "x".into() },
            State::Mapped { children: 2 },
        ];
        let triggers = [
            Trigger::AllSuccessful,
            Trigger::AllFinished,
            Trigger::AnySuccessful,
            Trigger::AnyFailed,
            Trigger::AllFailed,
        ];
        // Every sequence of up to three upstream states.
        let mut sequences: Vec<Vec<&State>> = vec![Vec::new()];
        for _ in 0..3 {
            let longer: Vec<Vec<&State>> = sequences
                .iter()
                .filter(|s| s.len() == sequences.last().map_or(0, Vec::len))
                .flat_map(|s| {
                    states.iter().map(move |st| {
                        let mut next = s.clone();
                        next.push(st);
                        next
                    })
                })
                .collect();
            sequences.extend(longer);
        }
        assert_eq!(sequences.len(), 1 + 7 + 49 + 343);
        for seq in &sequences {
            let ups = seq.iter().enumerate().map(|(i, st)| (UpId::own(i), *st));
            let tally = Tally::of(ups);
            for t in triggers {
                assert_eq!(tally.passes(t), t.passes(seq.iter().copied()), "{t} over {seq:?}");
            }
            let first_skipped = seq.iter().position(|st| st.is_skipped()).map(UpId::own);
            assert_eq!(tally.skipped, first_skipped);
        }
    }
}
