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
//! * [`Schedule::Revolve`]`(s)`: binomial (Revolve-style) checkpointing with
//!   at most `s` slots and the fewest forward steps any plan can have with
//!   `s` slots; see below.
//!
//! [`slots_for_budget`] turns a memory budget into a slot count for
//! `Revolve`, and [`min_slots`] is the fewest slots any plan can use.
//!
//! # Revolve in this model
//!
//! Classical Revolve (Griewank 1992) advances a working copy of the state in
//! place. Here an Advance never writes the slot it reads, so both states are
//! live while it runs: going one step forward from a kept state `x` needs 2
//! slots (`x` and `x + 1`), and going further needs 3 (`x` plus the two
//! states the sweep alternates between). The slot count of a plan is the
//! peak number of states held at once, counting both slots of every Advance.
//!
//! The [`Action::Final`] behaves exactly like the reversal of a virtual step
//! `T` that needs state `T` (it comes first, needs that state once, and the
//! state is useless afterwards), so the whole job is to reverse `l = T + 1`
//! steps starting from state 0. Let `F(l, s)` be the fewest Advances that
//! reverse `l` steps (`x + l - 1` down to `x`) starting from a held state `x`,
//! with `s` slots in all, the one holding `x` included. Nothing can recompute
//! `x`, so it stays held throughout; an optimal plan advances `j` steps to
//! `x + j`, keeps that as a checkpoint, reverses the upper `l - j` steps with
//! the other `s - 1` slots, then frees the checkpoint and reverses the lower
//! `j` steps with all `s` slots:
//!
//! ```text
//! F(1, s) = 0                                              (s >= 1)
//! F(l, s) = min over 1 <= j < l of  j + F(l - j, s - 1) + F(j, s)
//!           (j >= 2 passes through a third slot, so it needs s >= 3)
//! ```
//!
//! Hence `F(l, 1)` is infinite for `l >= 2` and `F(l, 2)` is finite only for
//! `l <= 2`: **a plan needs at least 2 slots for `T = 1` and 3 for `T >= 2`**
//! ([`min_slots`]); with 3 slots every `T` is possible (`F(l, 3)` grows like
//! `l^2 / 4`). The tests check this recursion against an exhaustive search
//! over all action sequences for `T <= 30`, `s <= 6`.
//!
//! `F(., s)` is convex in `l` and its increments are the sorted merge of
//! `1 +` its own increments (the `j` part) and the increments of
//! `F(., s - 1)`. Counting increments up to `r` gives the breakpoints
//! `M(s, r)`, the lengths where the cost of one more step rises from `r` to
//! `r + 1`:
//!
//! ```text
//! M(s, 0) = 1,  M(2, r) = 2 (r >= 1),  M(s, r) = M(s, r - 1) + M(s - 1, r)
//!         = C(s - 2 + r, s - 2) + C(s - 3 + r, s - 2)      (s >= 3)
//! F(l, s) = r l - (M(s, 0) + ... + M(s, r - 1)),  r = min { r : M(s, r) >= l }
//! ```
//!
//! (`C` is the binomial coefficient: `M(s, r) = beta(s - 2, r) +
//! beta(s - 2, r - 1)` with Griewank's `beta(c, r) = C(c + r, c)`.) A plan
//! for `T` steps with `s` slots therefore makes
//! `r (T + 1) - sum_{q < r} M(s, q) <= r T` forward steps, where `r` is the
//! smallest integer with `M(s, r) >= T + 1`. With `s >= T + 1` that is `T`
//! (store-all); with `s = T >= 3` it is `T + 1`. [`Schedule::Sqrt`] makes
//! `2T - ceil(T / k)` with `k = ceil(sqrt(T))`.
//!
//! Forward steps of `Revolve(s)`, and of `Sqrt` next to `Revolve` with as
//! many slots as `Sqrt` uses:
//!
//! ```text
//!    T     s=3    s=4    s=5    s=6    s=8   s=10   s=16   s=20 | Sqrt: slots  fwd | Revolve
//!   20     110     54     43     36     33     31     25     21 |           8   36 |      33
//!  100    2550    625    410    327    259    238    185    181 |          19  190 |     182
//! 1000  250500  20615   9828   6930   4884   4070   3052   2773 |          62 1968 |    1939
//! ```
//!
//! The planner evaluates `F` from these closed forms and picks each split
//! `j` by a binary search over the convex cost `j + F(l - j, s - 1) + F(j, s)`,
//! so planning takes about a millisecond for `T = 1000` (release build). It
//! uses the fewest slots `s' <= s` that reach the optimum for `s`. Plans
//! needing more than [`MAX_REVOLVE_FORWARD_STEPS`] forward steps (e.g.
//! `T = 20000` with 3 slots) are refused with a request for more slots.

mod every_k;
mod revolve;
mod validate;

#[cfg(test)]
mod revolve_tests;
#[cfg(test)]
mod tests;

pub use revolve::{min_slots, revolve_forward_steps, slots_for_budget, MAX_REVOLVE_FORWARD_STEPS};

use crate::{Error, Result};

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
    /// Binomial (Revolve-style) checkpointing with at most `s` slots: the
    /// fewest forward steps of any valid plan with `s` slots (see the module
    /// docs for the recursion and the counts).
    ///
    /// `s` must be at least [`min_slots`]`(T)`: 2 for `T = 1`, 3 otherwise.
    /// `s >= T + 1` gives the store-all plan (`T` forward steps); in general
    /// the plan uses the fewest slots `<= s` that reach the optimum for `s`.
    Revolve(usize),
}

impl Schedule {
    /// Parses a schedule name: `store-all`, `sqrt`, `every-<k>` (`k >= 1`,
    /// e.g. `every-4`) or `revolve-<s>` (`s >= 2`, e.g. `revolve-8`; whether
    /// `s` suffices depends on `T`, see [`min_slots`]). Numbers are decimal
    /// digits only. Surrounding whitespace is ignored.
    pub fn parse(s: &str) -> Result<Schedule> {
        const FORMS: &str = "valid forms: store-all, sqrt, every-<k> with k >= 1 (e.g. every-4), \
                             revolve-<s> with s >= 2 slots (e.g. revolve-8)";
        let text = s.trim();
        match text {
            "store-all" => return Ok(Schedule::StoreAll),
            "sqrt" => return Ok(Schedule::Sqrt),
            _ => {}
        }
        // (prefix, name of the number, its minimum, what the minimum means)
        let (digits, what, min, why, make): (_, _, _, _, fn(usize) -> Schedule) =
            if let Some(d) = text.strip_prefix("every-") {
                (d, "k", 1, "", Schedule::EveryK)
            } else if let Some(d) = text.strip_prefix("revolve-") {
                (
                    d,
                    "s",
                    2,
                    " (2 slots for T = 1, 3 for T >= 2)",
                    Schedule::Revolve,
                )
            } else {
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
            Ok(n) if n < min => Err(Error::invalid(format!(
                "checkpoint schedule '{s}': {what} must be at least {min}{why}; {FORMS}"
            ))),
            Ok(n) => Ok(make(n)),
            Err(_) => Err(Error::invalid(format!(
                "checkpoint schedule '{s}': {what} = {digits} is too large; {FORMS}"
            ))),
        }
    }

    /// The schedule's name, as accepted by [`Schedule::parse`]:
    /// `store-all`, `sqrt`, `every-<k>` or `revolve-<s>`.
    pub fn name(&self) -> String {
        match self {
            Schedule::StoreAll => "store-all".to_string(),
            Schedule::EveryK(k) => format!("every-{k}"),
            Schedule::Sqrt => "sqrt".to_string(),
            Schedule::Revolve(s) => format!("revolve-{s}"),
        }
    }

    /// The segment length this schedule uses for `steps` inner steps,
    /// clamped to `1..=steps`; `None` for [`Schedule::Revolve`], which has no
    /// fixed segments.
    fn segment_len(&self, steps: usize) -> Result<Option<usize>> {
        let k =
            match *self {
                Schedule::StoreAll => 1,
                Schedule::EveryK(0) => return Err(Error::invalid(
                    "checkpoint schedule every-0: k must be at least 1 (every-1 keeps every state)",
                )),
                Schedule::EveryK(k) => k,
                Schedule::Sqrt => every_k::ceil_sqrt(steps),
                Schedule::Revolve(_) => return Ok(None),
            };
        Ok(Some(k.clamp(1, steps.max(1))))
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
/// Errors with [`Error::InvalidArgument`] when `steps` is 0, the schedule
/// is `EveryK(0)`, or it is `Revolve(s)` with `s` below [`min_slots`] or so
/// few slots for `steps` that the plan would exceed
/// [`MAX_REVOLVE_FORWARD_STEPS`] forward steps. See [`Schedule`] and the
/// module docs for the slot and forward-step counts.
pub fn plan(schedule: Schedule, steps: usize) -> Result<Plan> {
    if steps == 0 {
        return Err(Error::invalid(format!(
            "checkpoint plan ({}): steps (T, the number of inner steps) must be at least 1, got 0",
            schedule.name()
        )));
    }
    match (schedule, schedule.segment_len(steps)?) {
        (Schedule::Revolve(slots), _) => revolve::revolve(steps, slots),
        (_, Some(k)) => Ok(every_k::every_k(steps, k)),
        (_, None) => Err(Error::invalid(format!(
            "checkpoint plan ({}): internal error, no segment length",
            schedule.name()
        ))),
    }
}
