//! [`Plan::validate`]: the executor contract checked by simulating the slot contents.

use super::{Action, Plan};
use crate::{Error, Result};
use std::collections::HashMap;

impl Plan {
    /// Checks the executor contract by simulating the slot contents.
    ///
    /// Starting from slot 0 holding state 0 (every other slot empty), it
    /// checks that each `Advance` reads a slot holding exactly state `step`
    /// (`step < T`) and writes a different slot; that exactly one `Final`
    /// reads a slot holding state `T` before any `Reverse`; that the reverses
    /// come for `T - 1, …, 0`, each exactly once, each on a slot holding that
    /// state at that moment; and that `slots` is one more than the largest
    /// slot index used and `forward_steps` the number of `Advance`s.
    pub fn validate(&self) -> Result<()> {
        let steps = self.steps;
        let fail =
            |msg: String| Error::invalid(format!("invalid checkpoint plan (T = {steps}): {msg}"));
        if steps == 0 {
            return Err(fail("steps (T) must be at least 1".to_string()));
        }

        let max_slot = self
            .actions
            .iter()
            .map(|a| match *a {
                Action::Advance { from, to, .. } => from.max(to),
                Action::Final { slot } | Action::Reverse { slot, .. } => slot,
            })
            .max()
            .unwrap_or(0);
        if max_slot.checked_add(1) != Some(self.slots) {
            return Err(fail(format!(
                "slots is {} but the largest slot index used is {max_slot} (slots must be {})",
                self.slots,
                max_slot.saturating_add(1)
            )));
        }

        // Slot -> state it holds; a map, so that a bogus huge slot index
        // cannot make the simulation allocate.
        let mut held: HashMap<usize, usize> = HashMap::new();
        held.insert(0, 0);
        let describe = |state: Option<&usize>| match state {
            Some(s) => format!("state {s}"),
            None => "nothing".to_string(),
        };
        let mut final_seen = false;
        let mut reversed = vec![false; steps];
        // The next step to reverse; None once step 0 is reversed.
        let mut next_reverse = Some(steps - 1);
        let mut advances = 0usize;

        for (i, action) in self.actions.iter().enumerate() {
            let at = |msg: String| fail(format!("action {i} ({action:?}): {msg}"));
            match *action {
                Action::Advance { step, from, to } => {
                    if from == to {
                        return Err(at("reads and writes the same slot (from == to)".into()));
                    }
                    if step >= steps {
                        return Err(at(format!("there is no step {step}; steps are 0..{steps}")));
                    }
                    if held.get(&from) != Some(&step) {
                        return Err(at(format!(
                            "slot {from} holds {}, not state {step}",
                            describe(held.get(&from))
                        )));
                    }
                    held.insert(to, step + 1);
                    advances += 1;
                }
                Action::Final { slot } => {
                    if final_seen {
                        return Err(at("a second Final; there must be exactly one".into()));
                    }
                    if held.get(&slot) != Some(&steps) {
                        return Err(at(format!(
                            "slot {slot} holds {}, not the final state {steps}",
                            describe(held.get(&slot))
                        )));
                    }
                    final_seen = true;
                }
                Action::Reverse { step, slot } => {
                    if !final_seen {
                        return Err(at(
                            "Reverse before the Final (the adjoint is not seeded)".into()
                        ));
                    }
                    if step >= steps {
                        return Err(at(format!("there is no step {step}; steps are 0..{steps}")));
                    }
                    if reversed[step] {
                        return Err(at(format!("step {step} is reversed twice")));
                    }
                    match next_reverse {
                        Some(expected) if expected == step => {}
                        Some(expected) => {
                            return Err(at(format!(
                                "out of order: step {expected} must be reversed next"
                            )))
                        }
                        None => return Err(at("every step is already reversed".into())),
                    }
                    if held.get(&slot) != Some(&step) {
                        return Err(at(format!(
                            "slot {slot} holds {}, not state {step}",
                            describe(held.get(&slot))
                        )));
                    }
                    reversed[step] = true;
                    next_reverse = step.checked_sub(1);
                }
            }
        }

        if !final_seen {
            return Err(fail("no Final action".to_string()));
        }
        if let Some(missing) = next_reverse {
            return Err(fail(format!(
                "steps {missing} down to 0 are never reversed"
            )));
        }
        if advances != self.forward_steps {
            return Err(fail(format!(
                "forward_steps is {} but the plan has {advances} Advance actions",
                self.forward_steps
            )));
        }
        Ok(())
    }
}
