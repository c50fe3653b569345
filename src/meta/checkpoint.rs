//! Checkpoint planning for the reversal of a meta-learning unroll.
//!
//! An unroll has `T` inner steps. *State `t`* (`t = 0..=T`) is the inner
//! model's parameters and optimizer state after `t` steps. To differentiate
//! the final loss with respect to the meta-parameters, the inner steps are
//! reversed from `T - 1` down to `0`, and reversing step `t` needs state `t`.
//! Keeping every state costs `T + 1` state buffers; checkpointing keeps only
//! some of them and recomputes the others when the reversal needs them.
//!
//! This module is pure CPU planning: [`plan`] turns a [`Schedule`] and `T`
//! into a [`Plan`], a flat list of [`Action`]s that the GPU executor replays
//! in order. No GPU work happens here.
//!
//! # Executor contract
//!
//! The executor owns [`Plan::slots`] state buffers ("slots"), numbered
//! `0..slots`, each large enough to hold one full state. Before the first
//! action, **slot 0 holds state 0**; the contents of every other slot are
//! irrelevant. The executor then performs the actions in order:
//!
//! * [`Action::Advance`] `{ step, from, to }`: run inner step `step`, reading
//!   slot `from` (which holds state `step`) and writing state `step + 1` into
//!   slot `to`, overwriting whatever `to` held. `from != to` always, so the
//!   step never needs to update a buffer in place; `from` is left unchanged.
//! * [`Action::Final`] `{ slot }`: evaluate the meta (final) loss at state `T`,
//!   held in `slot`, and seed the adjoint from it. It occurs exactly once,
//!   right after state `T` is first produced and before any reversal.
//! * [`Action::Reverse`] `{ step, slot }`: reverse inner step `step`, reading
//!   state `step` from `slot` and propagating the adjoint from state
//!   `step + 1` to state `step` (accumulating the meta-gradient). The
//!   reverses come for `step = T - 1, T - 2, …, 0`, each exactly once, in
//!   that order. `slot` is only read; the plan may reuse it afterwards.
//!
//! Every plan produced by [`plan`] satisfies these rules, and
//! [`Plan::validate`] checks them by simulating the slot contents, so a
//! hand-made or deserialised plan can be checked before it is run.
//! Planning is deterministic: the same schedule and `T` give the same plan.
//!
//! # Schedules
//!
//! * [`Schedule::StoreAll`]: `T + 1` slots, `T` forward steps.
//! * [`Schedule::EveryK`]`(k)`: states `0, k, 2k, …` below `T` are kept as
//!   checkpoints during an initial sweep; the reversal then walks the
//!   segments `[s, min(s + k, T))` from last to first, recomputes each
//!   segment's interior from its checkpoint into scratch slots and reverses
//!   the segment. Forward steps: `2T - ceil(T / k)`. Slots: see
//!   [`Schedule::EveryK`] for the exact count, which never exceeds
//!   `ceil(T / k) + k`.
//! * [`Schedule::Sqrt`]: `EveryK(ceil(sqrt(T)))`, about `2 sqrt(T)` slots.

use crate::{Error, Result};
use std::cmp::Reverse as MinFirst;
use std::collections::{BinaryHeap, HashMap};

/// One action of a checkpointing plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Compute state `step + 1` from state `step`: read slot `from` (which
    /// holds state `step`), write slot `to` (`from != to`).
    Advance {
        /// The inner step to run; it reads state `step`.
        step: usize,
        /// Slot holding state `step`; only read.
        from: usize,
        /// Slot that receives state `step + 1`; its old content is lost.
        to: usize,
    },
    /// Evaluate the final loss at state `T` held in `slot` and seed the
    /// adjoint (exactly once, after state `T` is first reached, before any
    /// [`Action::Reverse`]).
    Final {
        /// Slot holding state `T`.
        slot: usize,
    },
    /// Reverse step `step` using state `step` held in `slot`.
    Reverse {
        /// The inner step to reverse (`T - 1` first, `0` last).
        step: usize,
        /// Slot holding state `step`; only read.
        slot: usize,
    },
}

/// How states are kept for the reversal of an unroll.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// Keep every state: `T + 1` slots, `T` forward steps.
    StoreAll,
    /// Keep every k-th state (`0, k, 2k, …`); recompute each segment from its
    /// checkpoint during the reversal, storing the segment's states.
    ///
    /// `k` must be at least 1; `k >= T` gives a single segment. Forward steps:
    /// `2T - m` where `m = ceil(T / k)` is the number of checkpoints.
    ///
    /// Slots, exactly (with `k` clamped to `T`, and `L = T - (m - 1) k`, the
    /// length of the last segment, `1 <= L <= k`):
    ///
    /// ```text
    /// slots = max( m + 1 + [L > 1],          // initial sweep: all checkpoints, state T-1, state T
    ///              m - 1 + L,                // reversing the last segment
    ///              m + k - 2  if m >= 2 )    // reversing the last full segment
    /// ```
    ///
    /// where `[L > 1]` is 1 if `L > 1` and 0 otherwise. This is the peak
    /// number of states that are live at once under this schedule, so no
    /// plan with these recomputations can use fewer; it never exceeds
    /// `m + k` (`m` checkpoint slots, `k - 1` segment slots and 1 extra).
    /// `EveryK(1)` is the same plan as [`Schedule::StoreAll`].
    EveryK(usize),
    /// [`Schedule::EveryK`] with `k = ceil(sqrt(T))`.
    Sqrt,
}

impl Schedule {
    /// Parses a schedule name: `store-all`, `sqrt` or `every-<k>` (`k >= 1`,
    /// decimal digits only, e.g. `every-4`). Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Schedule> {
        const FORMS: &str = "valid forms: store-all, sqrt, every-<k> with k >= 1 (e.g. every-4)";
        let text = s.trim();
        match text {
            "store-all" => Ok(Schedule::StoreAll),
            "sqrt" => Ok(Schedule::Sqrt),
            _ => {
                let Some(digits) = text.strip_prefix("every-") else {
                    return Err(Error::invalid(format!(
                        "unknown checkpoint schedule '{s}'; {FORMS}"
                    )));
                };
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(Error::invalid(format!(
                        "checkpoint schedule '{s}': '{digits}' is not a whole number; {FORMS}"
                    )));
                }
                match digits.parse::<usize>() {
                    Ok(0) => Err(Error::invalid(format!(
                        "checkpoint schedule '{s}': k must be at least 1; {FORMS}"
                    ))),
                    Ok(k) => Ok(Schedule::EveryK(k)),
                    Err(_) => Err(Error::invalid(format!(
                        "checkpoint schedule '{s}': k = {digits} is too large; {FORMS}"
                    ))),
                }
            }
        }
    }

    /// The schedule's name, as accepted by [`Schedule::parse`]:
    /// `store-all`, `sqrt` or `every-<k>`.
    pub fn name(&self) -> String {
        match self {
            Schedule::StoreAll => "store-all".to_string(),
            Schedule::EveryK(k) => format!("every-{k}"),
            Schedule::Sqrt => "sqrt".to_string(),
        }
    }

    /// The segment length this schedule uses for `steps` inner steps,
    /// clamped to `1..=steps`.
    fn segment_len(&self, steps: usize) -> Result<usize> {
        let k =
            match *self {
                Schedule::StoreAll => 1,
                Schedule::EveryK(0) => return Err(Error::invalid(
                    "checkpoint schedule every-0: k must be at least 1 (every-1 keeps every state)",
                )),
                Schedule::EveryK(k) => k,
                Schedule::Sqrt => ceil_sqrt(steps),
            };
        Ok(k.clamp(1, steps.max(1)))
    }
}

/// A checkpointing plan: the actions the executor replays, and what they need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// Number of inner steps `T` of the unroll.
    pub steps: usize,
    /// The actions, in execution order (see the module docs for the contract).
    pub actions: Vec<Action>,
    /// Number of distinct slots used; slot indices are `0..slots`.
    pub slots: usize,
    /// Number of [`Action::Advance`] actions (initial sweep + recomputation).
    pub forward_steps: usize,
}

/// Plans the reversal of a `steps`-step unroll under `schedule`.
///
/// Errors with [`Error::InvalidArgument`] when `steps` is 0 or the schedule
/// is `EveryK(0)`. See [`Schedule`] for the slot and forward-step counts.
pub fn plan(schedule: Schedule, steps: usize) -> Result<Plan> {
    if steps == 0 {
        return Err(Error::invalid(format!(
            "checkpoint plan ({}): steps (T, the number of inner steps) must be at least 1, got 0",
            schedule.name()
        )));
    }
    let k = schedule.segment_len(steps)?;
    Ok(every_k(steps, k))
}

/// Builds the `EveryK(k)` plan, `1 <= k <= steps`.
fn every_k(steps: usize, k: usize) -> Plan {
    let checkpoints = steps.div_ceil(k);
    let mut b = Builder::new(steps);

    // Initial sweep: states that are multiples of k (below T) stay in their
    // slots as checkpoints; every other state is freed once its successor
    // exists. State T is freed right after the Final.
    let mut checkpoint_slot = vec![0usize; checkpoints];
    let mut cur = 0;
    for t in 0..steps {
        let to = b.advance(t, cur);
        if t % k != 0 {
            b.free(cur);
        }
        let next = t + 1;
        if next == steps {
            b.actions.push(Action::Final { slot: to });
            b.free(to);
        } else if next % k == 0 {
            checkpoint_slot[next / k] = to;
        }
        cur = to;
    }

    // Reversal, segment by segment from the last: recompute the interior
    // states s+1..e-1 from the checkpoint s, then reverse e-1 down to s.
    let mut segment = Vec::with_capacity(k);
    for (c, &start_slot) in checkpoint_slot.iter().enumerate().rev() {
        let start = c * k;
        let end = (start + k).min(steps);
        segment.clear();
        segment.push(start_slot);
        let mut cur = start_slot;
        for t in start..end - 1 {
            cur = b.advance(t, cur);
            segment.push(cur);
        }
        for (t, &slot) in (start..end).zip(segment.iter()).rev() {
            b.actions.push(Action::Reverse { step: t, slot });
            b.free(slot);
        }
    }

    Plan {
        steps,
        slots: b.next_slot,
        forward_steps: b.forward_steps,
        actions: b.actions,
    }
}

/// Emits actions while handing out slots, always the lowest free index, so
/// that the number of slots equals the peak number of live states.
struct Builder {
    actions: Vec<Action>,
    /// Freed slots below `next_slot`.
    free: BinaryHeap<MinFirst<usize>>,
    /// Slots `next_slot..` have never been used.
    next_slot: usize,
    forward_steps: usize,
}

impl Builder {
    fn new(steps: usize) -> Self {
        Builder {
            actions: Vec::with_capacity(2 * steps + 1),
            free: BinaryHeap::new(),
            next_slot: 1, // slot 0 holds state 0
            forward_steps: 0,
        }
    }

    fn alloc(&mut self) -> usize {
        match self.free.pop() {
            Some(MinFirst(slot)) => slot,
            None => {
                self.next_slot += 1;
                self.next_slot - 1
            }
        }
    }

    fn free(&mut self, slot: usize) {
        self.free.push(MinFirst(slot));
    }

    /// Emits `Advance { step, from, to }` into a fresh slot and returns `to`.
    /// `from` is live, so it is never handed out as `to`.
    fn advance(&mut self, step: usize, from: usize) -> usize {
        let to = self.alloc();
        self.actions.push(Action::Advance { step, from, to });
        self.forward_steps += 1;
        to
    }
}

/// `ceil(sqrt(n))`.
fn ceil_sqrt(n: usize) -> usize {
    let r = n.isqrt();
    if r * r == n {
        r
    } else {
        r + 1
    }
}

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

#[cfg(test)]
mod tests {
    use super::*;

    /// The exact slot count documented on [`Schedule::EveryK`].
    fn every_k_slots(steps: usize, k: usize) -> usize {
        let k = k.min(steps);
        let m = steps.div_ceil(k);
        let last = steps - (m - 1) * k;
        let sweep = if last == 1 { m + 1 } else { m + 2 };
        let mut reversal = m - 1 + last;
        if m >= 2 {
            reversal = reversal.max(m + k - 2);
        }
        sweep.max(reversal)
    }

    fn err_text(p: &Plan) -> String {
        match p.validate() {
            Ok(()) => panic!("validate accepted a broken plan: {p:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn every_schedule_is_valid_with_the_documented_counts() {
        for steps in 1..=40usize {
            let mut ks: Vec<usize> = (1..=8).collect();
            ks.extend([steps, steps + 1, steps + 7, usize::MAX]);
            ks.push(ceil_sqrt(steps));
            for &k in &ks {
                let p = plan(Schedule::EveryK(k), steps).unwrap();
                p.validate()
                    .unwrap_or_else(|e| panic!("T={steps} k={k}: {e}"));
                let m = steps.div_ceil(k);
                assert_eq!(p.steps, steps);
                assert_eq!(p.forward_steps, 2 * steps - m, "T={steps} k={k}");
                assert_eq!(p.slots, every_k_slots(steps, k), "T={steps} k={k}");
                // The brief's bound: m checkpoints + (k - 1) segment slots + 1.
                assert!(p.slots <= m + k.min(steps), "T={steps} k={k}: {}", p.slots);
                assert_eq!(
                    p,
                    plan(Schedule::EveryK(k), steps).unwrap(),
                    "deterministic"
                );
            }

            let all = plan(Schedule::StoreAll, steps).unwrap();
            all.validate().unwrap();
            assert_eq!(all.slots, steps + 1);
            assert_eq!(all.forward_steps, steps);
            assert_eq!(all, plan(Schedule::EveryK(1), steps).unwrap());

            let sqrt = plan(Schedule::Sqrt, steps).unwrap();
            sqrt.validate().unwrap();
            assert_eq!(
                sqrt,
                plan(Schedule::EveryK(ceil_sqrt(steps)), steps).unwrap()
            );
        }
    }

    #[test]
    fn k_at_least_t_is_one_segment() {
        for steps in 1..=12 {
            let one = plan(Schedule::EveryK(steps), steps).unwrap();
            for k in [steps + 1, 3 * steps, usize::MAX] {
                assert_eq!(plan(Schedule::EveryK(k), steps).unwrap(), one);
            }
            assert_eq!(one.forward_steps, 2 * steps - 1);
        }
    }

    #[test]
    fn ceil_sqrt_values() {
        let got: Vec<usize> = [1, 2, 4, 5, 9, 10, 16, 17, 100, 101]
            .iter()
            .map(|&n| ceil_sqrt(n))
            .collect();
        assert_eq!(got, [1, 2, 2, 3, 3, 4, 4, 5, 10, 11]);
    }

    #[test]
    fn every_2_of_4_is_the_expected_plan() {
        use Action::*;
        let p = plan(Schedule::EveryK(2), 4).unwrap();
        let expected = vec![
            Advance {
                step: 0,
                from: 0,
                to: 1,
            },
            Advance {
                step: 1,
                from: 1,
                to: 2,
            },
            Advance {
                step: 2,
                from: 2,
                to: 1,
            },
            Advance {
                step: 3,
                from: 1,
                to: 3,
            },
            Final { slot: 3 },
            Advance {
                step: 2,
                from: 2,
                to: 1,
            },
            Reverse { step: 3, slot: 1 },
            Reverse { step: 2, slot: 2 },
            Advance {
                step: 0,
                from: 0,
                to: 1,
            },
            Reverse { step: 1, slot: 1 },
            Reverse { step: 0, slot: 0 },
        ];
        assert_eq!(p.actions, expected);
        assert_eq!((p.slots, p.forward_steps), (4, 6));
    }

    #[test]
    fn bad_arguments_are_rejected() {
        for s in [Schedule::StoreAll, Schedule::Sqrt, Schedule::EveryK(3)] {
            let e = plan(s, 0).unwrap_err().to_string();
            assert!(e.contains("steps (T"), "{e}");
            assert!(e.contains("got 0"), "{e}");
        }
        let e = plan(Schedule::EveryK(0), 5).unwrap_err().to_string();
        assert!(
            e.contains("every-0") && e.contains("k must be at least 1"),
            "{e}"
        );
        assert!(matches!(
            plan(Schedule::EveryK(0), 5),
            Err(Error::InvalidArgument(_))
        ));
    }

    /// StoreAll with T = 3: A(0,0→1) A(1,1→2) A(2,2→3) F(3) R(2@2) R(1@1) R(0@0).
    fn store_all_3() -> Plan {
        let p = plan(Schedule::StoreAll, 3).unwrap();
        p.validate().unwrap();
        p
    }

    #[test]
    fn rejects_reverse_out_of_order() {
        let mut p = store_all_3();
        p.actions.swap(4, 5);
        assert!(err_text(&p).contains("out of order"));
    }

    #[test]
    fn rejects_reverse_on_wrong_state() {
        let mut p = store_all_3();
        p.actions[5] = Action::Reverse { step: 1, slot: 2 };
        let e = err_text(&p);
        assert!(e.contains("slot 2 holds state 2, not state 1"), "{e}");

        // A slot overwritten by a later Advance no longer holds its old state.
        let mut p = plan(Schedule::EveryK(2), 4).unwrap();
        p.actions[6] = Action::Reverse { step: 3, slot: 3 };
        let e = err_text(&p);
        assert!(e.contains("slot 3 holds state 4, not state 3"), "{e}");
    }

    #[test]
    fn rejects_missing_final() {
        let mut p = store_all_3();
        p.actions.remove(3);
        assert!(err_text(&p).contains("before the Final"));
        // Without any Reverse either, the missing Final is reported at the end.
        p.actions.truncate(3);
        let e = err_text(&p);
        assert!(e.contains("no Final"), "{e}");
    }

    #[test]
    fn rejects_reverse_before_final() {
        let mut p = store_all_3();
        p.actions.swap(3, 4);
        assert!(err_text(&p).contains("before the Final"));
    }

    #[test]
    fn rejects_advance_in_place() {
        let mut p = store_all_3();
        p.actions[1] = Action::Advance {
            step: 1,
            from: 1,
            to: 1,
        };
        assert!(err_text(&p).contains("from == to"));
    }

    #[test]
    fn rejects_step_reversed_twice() {
        let mut p = store_all_3();
        p.actions.insert(5, Action::Reverse { step: 2, slot: 2 });
        assert!(err_text(&p).contains("step 2 is reversed twice"));
        let mut p = store_all_3();
        p.actions.push(Action::Reverse { step: 0, slot: 0 });
        assert!(err_text(&p).contains("reversed twice"));
    }

    #[test]
    fn rejects_other_breakage() {
        let mut p = store_all_3();
        p.actions.pop();
        assert!(err_text(&p).contains("steps 0 down to 0 are never reversed"));

        let mut p = store_all_3();
        p.actions.insert(4, Action::Final { slot: 3 });
        assert!(err_text(&p).contains("second Final"));

        let mut p = store_all_3();
        p.actions[3] = Action::Final { slot: 2 };
        assert!(err_text(&p).contains("not the final state 3"));

        let mut p = store_all_3();
        p.actions[1] = Action::Advance {
            step: 1,
            from: 0,
            to: 2,
        };
        assert!(err_text(&p).contains("slot 0 holds state 0, not state 1"));

        let mut p = store_all_3();
        p.actions[2] = Action::Advance {
            step: 3,
            from: 2,
            to: 3,
        };
        assert!(err_text(&p).contains("there is no step 3"));

        let mut p = store_all_3();
        p.slots = 5;
        assert!(err_text(&p).contains("slots is 5"));

        let mut p = store_all_3();
        p.forward_steps = 4;
        assert!(err_text(&p).contains("forward_steps is 4"));

        let mut p = store_all_3();
        p.actions[0] = Action::Advance {
            step: 0,
            from: 0,
            to: usize::MAX,
        };
        assert!(err_text(&p).contains("largest slot index"));

        let p = Plan {
            steps: 0,
            actions: vec![],
            slots: 1,
            forward_steps: 0,
        };
        assert!(err_text(&p).contains("at least 1"));
    }

    #[test]
    fn parse_name_round_trip() {
        for s in [
            Schedule::StoreAll,
            Schedule::Sqrt,
            Schedule::EveryK(1),
            Schedule::EveryK(4),
            Schedule::EveryK(123),
        ] {
            assert_eq!(Schedule::parse(&s.name()).unwrap(), s);
        }
        assert_eq!(Schedule::StoreAll.name(), "store-all");
        assert_eq!(Schedule::EveryK(4).name(), "every-4");
        assert_eq!(Schedule::Sqrt.name(), "sqrt");
        assert_eq!(Schedule::parse(" every-8\n").unwrap(), Schedule::EveryK(8));
    }

    #[test]
    fn parse_errors_name_the_text_and_the_valid_forms() {
        for bad in [
            "",
            "store_all",
            "SQRT",
            "every",
            "every-",
            "every-0",
            "every-x",
            "every--3",
            "every-+4",
            "every-4.5",
            "every-k:4",
            "every-99999999999999999999999",
        ] {
            let e = match Schedule::parse(bad) {
                Ok(s) => panic!("'{bad}' parsed as {s:?}"),
                Err(e) => e,
            };
            assert!(matches!(e, Error::InvalidArgument(_)));
            let e = e.to_string();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
            for form in ["store-all", "sqrt", "every-<k>"] {
                assert!(e.contains(form), "{e}");
            }
        }
    }
}
