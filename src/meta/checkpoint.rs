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
                Schedule::Sqrt => ceil_sqrt(steps),
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
        (Schedule::Revolve(slots), _) => revolve(steps, slots),
        (_, Some(k)) => Ok(every_k(steps, k)),
        (_, None) => Err(Error::invalid(format!(
            "checkpoint plan ({}): internal error, no segment length",
            schedule.name()
        ))),
    }
}

/// The fewest slots any valid plan for a `steps`-step unroll can use:
/// 2 for `steps <= 1` (state 0 and state 1), 3 otherwise.
///
/// With 2 slots, once state 2 has been computed from state 1 (into the slot
/// that held state 0, the only other slot), state 0 is lost and step 0 can
/// never be reversed; keeping state 0 instead leaves no slot to advance
/// past state 1. Three slots suffice for every `T` (see the module docs).
pub fn min_slots(steps: usize) -> usize {
    if steps <= 1 {
        2
    } else {
        3
    }
}

/// The number of forward steps (Advance actions) of the optimal plan with at
/// most `slots` slots for a `steps`-step unroll, i.e. of
/// `plan(Schedule::Revolve(slots), steps)`, computed in closed form without
/// building the plan (so also for counts above
/// [`MAX_REVOLVE_FORWARD_STEPS`]).
///
/// Errors with [`Error::InvalidArgument`] when `steps` is 0, when
/// `slots < min_slots(steps)`, or when the count does not fit in a `u64`.
pub fn revolve_forward_steps(steps: usize, slots: usize) -> Result<u64> {
    let (len, slots) = revolve_args(steps, slots)?;
    revolve_cost(len, slots).ok_or_else(|| {
        Error::invalid(format!(
            "checkpoint plan (revolve-{slots}): the forward-step count for T = {steps} does not \
             fit in 64 bits; use more slots"
        ))
    })
}

/// The largest number of forward steps [`plan`] builds a `Revolve` plan
/// for; fewer slots than that needs are rejected (each forward step is one
/// [`Action`] in memory, and such a plan would take very long to run).
pub const MAX_REVOLVE_FORWARD_STEPS: u64 = 1 << 26;

/// How many slots fit in a memory budget of `budget_bytes`, for states of
/// `slot_bytes` bytes each and a `steps`-step unroll: `budget_bytes /
/// slot_bytes`, capped at `steps + 1` (store-all; more slots never help).
/// Pass the result to [`Schedule::Revolve`].
///
/// Errors with [`Error::InvalidArgument`] when `steps` or `slot_bytes` is 0,
/// or when the budget does not hold [`min_slots`]`(steps)` slots; that
/// message names the budget, the bytes of one state and the minimum slot
/// count.
pub fn slots_for_budget(budget_bytes: u64, slot_bytes: u64, steps: usize) -> Result<usize> {
    if steps == 0 {
        return Err(Error::invalid(
            "checkpoint memory budget: steps (T, the number of inner steps) must be at least 1, \
             got 0",
        ));
    }
    if slot_bytes == 0 {
        return Err(Error::invalid(
            "checkpoint memory budget: the bytes of one state (slot) must be at least 1, got 0",
        ));
    }
    let min = min_slots(steps);
    let fit = budget_bytes / slot_bytes;
    if fit < min as u64 {
        let needed = slot_bytes.saturating_mul(min as u64);
        return Err(Error::invalid(format!(
            "checkpoint memory budget of {budget_bytes} bytes holds {fit} state slot(s) of \
             {slot_bytes} bytes each, but reversing T = {steps} step(s) needs at least {min} \
             slots ({needed} bytes); raise the budget to at least {needed} bytes, or train fewer \
             instances at once so that one state (slot) is smaller"
        )));
    }
    let cap = steps.saturating_add(1);
    Ok(usize::try_from(fit).map_or(cap, |fit| fit.min(cap)))
}

/// Checks the `Revolve` arguments; returns `(T + 1, slots)` with `slots`
/// capped at `T + 1`, as `u64`s.
fn revolve_args(steps: usize, slots: usize) -> Result<(u64, u64)> {
    let name = Schedule::Revolve(slots).name();
    if steps == 0 {
        return Err(Error::invalid(format!(
            "checkpoint plan ({name}): steps (T, the number of inner steps) must be at least 1, \
             got 0"
        )));
    }
    let min = min_slots(steps);
    if slots < min {
        let why = if steps == 1 {
            "one for state 0 and one for state 1"
        } else {
            "state 0 stays held until step 0 is reversed, and an Advance never writes the slot \
             it reads, so going past state 1 needs two more"
        };
        return Err(Error::invalid(format!(
            "checkpoint plan ({name}): {slots} slot(s) cannot reverse T = {steps} step(s); the \
             minimum is {min} slots ({why}); use revolve-{min} or more"
        )));
    }
    let Some(len) = (steps as u64).checked_add(1) else {
        return Err(Error::invalid(format!(
            "checkpoint plan ({name}): T = {steps} steps is too many"
        )));
    };
    Ok((len, (slots as u64).min(len)))
}

/// `F(len, slots)` of the module docs: the fewest Advances that reverse
/// `len` steps starting from a held state, with `slots` slots in all (the
/// one holding that state included). `None` if impossible (or if the count
/// overflows a `u64`).
fn revolve_cost(len: u64, slots: u64) -> Option<u64> {
    if len == 0 {
        return None;
    }
    match slots {
        0 => None,
        1 => (len == 1).then_some(0),
        2 => (len <= 2).then(|| len - 1),
        // M(slots, 1) = slots >= len: r = 1.
        _ if slots >= len => Some(len - 1),
        // M(3, r) = 2r + 1, so r = ceil((len - 1) / 2) and
        // M(3, 0) + … + M(3, r - 1) = r^2.
        3 => {
            let r = (len - 1).div_ceil(2);
            r.checked_mul(len - r)
        }
        _ => {
            // M(s, r) = a(r) + a(r - 1) with a(r) = C(s - 2 + r, r), and
            // a(r) = a(r - 1) (s - 2 + r) / r exactly.
            let c = u128::from(slots - 2);
            let len = u128::from(len);
            let (mut a_prev, mut sum, mut r) = (1u128, 1u128, 1u128);
            loop {
                let a = a_prev.checked_mul(c + r)? / r;
                let m = a + a_prev;
                if m >= len {
                    return u64::try_from(r.checked_mul(len)? - sum).ok();
                }
                sum += m;
                a_prev = a;
                r += 1;
            }
        }
    }
}

/// An optimal first checkpoint distance `j` (`1 <= j < len`) for
/// `F(len, slots)`: the largest minimiser of
/// `phi(j) = j + F(len - j, slots - 1) + F(j, slots)`, which is convex in
/// `j` on the range where it is finite (both terms are convex).
fn revolve_split(len: u64, slots: u64) -> u64 {
    // Feasible j: F(len - j, slots - 1) finite.
    let lo = match slots {
        0..=2 => len - 1,
        3 => len.saturating_sub(2).max(1),
        _ => 1,
    };
    let hi = len - 1;
    let phi = |j: u64| -> u64 {
        match (revolve_cost(j, slots), revolve_cost(len - j, slots - 1)) {
            (Some(a), Some(b)) => j.saturating_add(a).saturating_add(b),
            _ => u64::MAX,
        }
    };
    // Smallest j in [lo, hi] with j == hi or phi(j + 1) > phi(j).
    let (mut a, mut b) = (lo, hi);
    while a < b {
        let mid = a + (b - a) / 2;
        if phi(mid + 1) > phi(mid) {
            b = mid;
        } else {
            a = mid + 1;
        }
    }
    a
}

/// Builds the `Revolve(slots)` plan (see the module docs).
fn revolve(steps: usize, slots: usize) -> Result<Plan> {
    let (len, max_slots) = revolve_args(steps, slots)?;
    let internal = || {
        Error::invalid(format!(
            "checkpoint plan (revolve-{slots}): internal error planning T = {steps}"
        ))
    };
    let best = revolve_cost(len, max_slots);
    let best = match best {
        Some(best) if best <= MAX_REVOLVE_FORWARD_STEPS => best,
        _ => {
            let count = best.map_or_else(|| "more than 2^64".to_string(), |b| b.to_string());
            return Err(Error::invalid(format!(
                "checkpoint plan (revolve-{slots}): T = {steps} steps with {max_slots} slots \
                 needs {count} forward steps, more than the {MAX_REVOLVE_FORWARD_STEPS} this \
                 planner builds; use more slots"
            )));
        }
    };
    // The fewest slots that reach the same optimum (the cost never rises
    // with more slots, and `min_slots` always has a finite cost).
    let (mut lo, mut hi) = (min_slots(steps) as u64, max_slots);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if revolve_cost(len, mid) == Some(best) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let use_slots = lo;

    // Work items: reverse `len` steps starting at state `x`, held in `slot`,
    // with `slots` slots in all (the one holding `x` included). Reversing
    // "step T" is the Final.
    struct Item {
        x: usize,
        slot: usize,
        len: u64,
        slots: u64,
    }
    let mut b = Builder::new(steps);
    let mut stack = vec![Item {
        x: 0,
        slot: 0,
        len,
        slots: use_slots,
    }];
    while let Some(Item {
        x,
        slot,
        len,
        slots,
    }) = stack.pop()
    {
        if len == 1 {
            b.actions.push(if x == steps {
                Action::Final { slot }
            } else {
                Action::Reverse { step: x, slot }
            });
            b.free(slot);
            continue;
        }
        // j < len <= T + 1 - x, so it fits a usize.
        let j = usize::try_from(revolve_split(len, slots)).map_err(|_| internal())?;
        let mut cur = slot;
        for t in x..x + j {
            let to = b.advance(t, cur);
            if cur != slot {
                b.free(cur);
            }
            cur = to;
        }
        // The lower part runs after the upper part (a stack: pushed first).
        stack.push(Item {
            x,
            slot,
            len: j as u64,
            slots,
        });
        stack.push(Item {
            x: x + j,
            slot: cur,
            len: len - j as u64,
            slots: slots - 1,
        });
    }

    let plan = Plan {
        steps,
        slots: b.next_slot,
        forward_steps: b.forward_steps,
        actions: b.actions,
    };
    if plan.forward_steps as u64 != best || plan.slots as u64 > use_slots {
        return Err(internal());
    }
    Ok(plan)
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
            Schedule::Revolve(2),
            Schedule::Revolve(3),
            Schedule::Revolve(64),
        ] {
            assert_eq!(Schedule::parse(&s.name()).unwrap(), s);
        }
        assert_eq!(Schedule::StoreAll.name(), "store-all");
        assert_eq!(Schedule::EveryK(4).name(), "every-4");
        assert_eq!(Schedule::Sqrt.name(), "sqrt");
        assert_eq!(Schedule::parse(" every-8\n").unwrap(), Schedule::EveryK(8));
        assert_eq!(Schedule::Revolve(10).name(), "revolve-10");
        assert_eq!(
            Schedule::parse("\trevolve-12 ").unwrap(),
            Schedule::Revolve(12)
        );
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
            "revolve",
            "revolve-",
            "revolve-0",
            "revolve-1",
            "revolve-x",
            "revolve--3",
            "revolve-3.0",
            "Revolve-3",
            "revolve-99999999999999999999999",
        ] {
            let e = match Schedule::parse(bad) {
                Ok(s) => panic!("'{bad}' parsed as {s:?}"),
                Err(e) => e,
            };
            assert!(matches!(e, Error::InvalidArgument(_)));
            let e = e.to_string();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
            for form in ["store-all", "sqrt", "every-<k>", "revolve-<s>"] {
                assert!(e.contains(form), "{e}");
            }
        }
    }

    #[test]
    fn parse_revolve_minimum_is_explained() {
        for bad in ["revolve-0", "revolve-1"] {
            let e = Schedule::parse(bad).unwrap_err().to_string();
            assert!(e.contains("s must be at least 2"), "{e}");
            assert!(e.contains("3 for T >= 2"), "{e}");
        }
        let e = Schedule::parse("every-0").unwrap_err().to_string();
        assert!(e.contains("k must be at least 1"), "{e}");
        let e = Schedule::parse("revolve-99999999999999999999999")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("s = 99999999999999999999999 is too large"),
            "{e}"
        );
    }

    // ---- Revolve ----------------------------------------------------------

    /// A fast hasher for the exhaustive search's `u64` keys.
    #[derive(Default)]
    struct KeyHasher(u64);

    impl std::hash::Hasher for KeyHasher {
        fn finish(&self) -> u64 {
            self.0
        }
        fn write(&mut self, bytes: &[u8]) {
            for &b in bytes {
                self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        fn write_u64(&mut self, x: u64) {
            let z = (x ^ self.0).wrapping_mul(0x9e37_79b9_7f4a_7c15);
            self.0 = z ^ (z >> 29);
        }
    }

    type KeySet = std::collections::HashSet<u64, std::hash::BuildHasherDefault<KeyHasher>>;

    /// The true minimum number of Advances over ALL valid action sequences
    /// for `steps` inner steps and at most `slots` slots (`None`: no valid
    /// plan exists), by breadth-first search over the simulated slot
    /// contents. It knows nothing of the Revolve recursion.
    ///
    /// A search node is the set of states held in some slot (a bitmask; which
    /// slot holds which state does not matter, since slots are
    /// interchangeable) and `pending`: `T + 1` while the Final is due,
    /// otherwise `k` when step `k - 1` is the next to reverse, 0 when done.
    /// The state needed next is `pending - 1`. Every edge is one Advance (BFS
    /// depth = forward steps). Reductions, each of which keeps the optimum:
    ///
    /// * the Final and every Reverse are done as soon as their state is held:
    ///   they cost nothing and change no slot, so delaying them never helps;
    /// * after them, states `>= pending` are dropped from the set: later
    ///   actions only need smaller states, which cannot be computed from
    ///   larger ones, and a slot holding a useless state is as good as a free
    ///   one (an Advance may overwrite anything);
    /// * an Advance writes a free slot if there is one, and otherwise
    ///   overwrites one held state other than the one it reads. (Overwriting
    ///   a held state while a free slot exists leaves a subset of what
    ///   writing the free slot leaves, and any plan that works from a subset
    ///   also works from the superset, treating the extra state as junk.)
    ///   Advances that produce a state already held or beyond the needed one
    ///   are skipped (the latter is useless, the former at best a no-op), and
    ///   state 0 is never overwritten (nothing can recompute it, so step 0
    ///   could never be reversed).
    fn exhaustive_min_forward(steps: usize, slots: usize) -> Option<usize> {
        assert!((1..=40).contains(&steps));
        // Reverse everything that is ready and drop the states no longer
        // needed.
        let settle = |held: u64, mut pending: usize| -> (u64, usize) {
            while pending > 0 && held & (1 << (pending - 1)) != 0 {
                pending -= 1;
            }
            (held & ((1u64 << pending) - 1), pending)
        };
        let key = |held: u64, pending: usize| held | (pending as u64) << 48;

        let start = settle(1, steps + 1);
        let mut seen = KeySet::default();
        seen.insert(key(start.0, start.1));
        let mut frontier = vec![start];
        let mut next = Vec::new();
        let mut depth = 0;
        while !frontier.is_empty() {
            depth += 1;
            for &(held, pending) in &frontier {
                let need = pending - 1;
                let full = held.count_ones() as usize >= slots;
                let mut t_bits = held;
                while t_bits != 0 {
                    let t = t_bits.trailing_zeros() as usize;
                    t_bits &= t_bits - 1;
                    let new = 1u64 << (t + 1);
                    if t + 1 > need || held & new != 0 {
                        continue;
                    }
                    // Bits of the states this Advance may overwrite.
                    let mut w_bits = if full { held & !(1 << t) & !1 } else { 0 };
                    loop {
                        let after = if full {
                            if w_bits == 0 {
                                break;
                            }
                            let w = w_bits & w_bits.wrapping_neg();
                            w_bits &= w_bits - 1;
                            (held & !w) | new
                        } else {
                            held | new
                        };
                        let (h, p) = settle(after, pending);
                        if p == 0 {
                            return Some(depth);
                        }
                        if seen.insert(key(h, p)) {
                            next.push((h, p));
                        }
                        if !full {
                            break;
                        }
                    }
                }
            }
            std::mem::swap(&mut frontier, &mut next);
            next.clear();
        }
        None
    }

    /// The Revolve recursion of the module docs evaluated directly (memoised
    /// over all splits `j`), independent of the closed forms the planner
    /// uses. `None` = impossible.
    fn recursion_table(max_len: usize, max_slots: usize) -> Vec<Vec<Option<u64>>> {
        let mut f = vec![vec![None; max_slots + 1]; max_len + 1];
        for row in f.iter_mut().skip(1).take(1) {
            for cell in row.iter_mut().skip(1) {
                *cell = Some(0);
            }
        }
        for l in 2..=max_len {
            for s in 2..=max_slots {
                let mut best: Option<u64> = None;
                for j in 1..l {
                    if j >= 2 && s < 3 {
                        break;
                    }
                    if let (Some(a), Some(b)) = (f[l - j][s - 1], f[j][s]) {
                        let c = j as u64 + a + b;
                        best = Some(best.map_or(c, |x| x.min(c)));
                    }
                }
                f[l][s] = best;
            }
        }
        f
    }

    /// Checks a Revolve plan: valid, within `slots`, the expected count.
    fn check_revolve(steps: usize, slots: usize, forward: u64) -> Plan {
        let p = plan(Schedule::Revolve(slots), steps)
            .unwrap_or_else(|e| panic!("T={steps} s={slots}: {e}"));
        p.validate()
            .unwrap_or_else(|e| panic!("T={steps} s={slots}: {e}"));
        assert!(p.slots <= slots, "T={steps} s={slots}: {} slots", p.slots);
        assert_eq!(p.forward_steps as u64, forward, "T={steps} s={slots}");
        assert_eq!(
            revolve_forward_steps(steps, slots).unwrap(),
            forward,
            "T={steps} s={slots}"
        );
        assert_eq!(p.actions.len(), p.forward_steps + steps + 1);
        p
    }

    #[test]
    fn revolve_is_optimal_against_exhaustive_search() {
        for slots in 1..=6 {
            for steps in 1..=30 {
                match exhaustive_min_forward(steps, slots) {
                    None => {
                        assert!(slots < min_slots(steps), "T={steps} s={slots}");
                        let e = plan(Schedule::Revolve(slots), steps).unwrap_err();
                        assert!(matches!(e, Error::InvalidArgument(_)));
                    }
                    Some(best) => {
                        assert!(slots >= min_slots(steps), "T={steps} s={slots}");
                        check_revolve(steps, slots, best as u64);
                    }
                }
            }
        }
        // The store-all end: s >= T + 1 needs exactly T forward steps.
        for steps in 1..=9 {
            assert_eq!(exhaustive_min_forward(steps, steps + 1), Some(steps));
            assert_eq!(exhaustive_min_forward(steps, steps + 3), Some(steps));
        }
    }

    #[test]
    fn closed_forms_match_the_recursion() {
        let (max_len, max_slots) = (400, 16);
        let f = recursion_table(max_len, max_slots);
        for (l, row) in f.iter().enumerate().skip(1) {
            for (s, &want) in row.iter().enumerate() {
                assert_eq!(revolve_cost(l as u64, s as u64), want, "F({l}, {s})");
            }
        }
        // split() picks a minimiser of the recursion's right-hand side.
        for l in 2..=max_len {
            for s in 2..=max_slots {
                let Some(want) = f[l][s] else { continue };
                let j = revolve_split(l as u64, s as u64) as usize;
                assert!((1..l).contains(&j), "l={l} s={s} j={j}");
                let got = f[l - j][s - 1].map(|a| a + f[j][s].unwrap() + j as u64);
                assert_eq!(got, Some(want), "l={l} s={s} j={j}");
            }
        }
        // Plans follow the recursion's optimum; split() picks a minimiser.
        for steps in 1..=150 {
            let min = min_slots(steps);
            for slots in (min..=16).chain([steps, steps + 1, steps + 5]) {
                if slots < min {
                    continue;
                }
                let want = f[steps + 1][slots.min(max_slots)];
                if slots <= max_slots {
                    let want = want.unwrap_or_else(|| panic!("T={steps} s={slots}"));
                    check_revolve(steps, slots, want);
                } else if slots > steps {
                    check_revolve(steps, slots, steps as u64);
                }
            }
        }
    }

    #[test]
    fn revolve_counts_and_slots() {
        // Store-all at s >= T + 1, T + 1 forward steps at s = T (T >= 3).
        for steps in 1..=60 {
            for slots in [steps + 1, steps + 2, 10 * steps, usize::MAX] {
                let p = check_revolve(steps, slots, steps as u64);
                assert_eq!(p.slots, steps + 1);
                assert_eq!(p, plan(Schedule::StoreAll, steps).unwrap());
            }
            if steps >= 3 {
                check_revolve(steps, steps, steps as u64 + 1);
            }
        }
        // Three slots: F(l, 3) = (l - 1) + F(l - 2, 3), about l^2 / 4.
        let mut f3 = vec![0u64, 0, 1];
        for l in 3..=200 {
            f3.push((l as u64 - 1) + f3[l - 2]);
        }
        for steps in 2..=199 {
            check_revolve(steps, 3, f3[steps + 1]);
        }
        // The documented examples.
        let counts: Vec<(usize, usize, u64)> = vec![
            (20, 3, 110),
            (20, 5, 43),
            (20, 8, 33),
            (20, 21, 20),
            (100, 5, 410),
            (100, 10, 238),
            (100, 19, 182),
            (1000, 5, 9828),
            (1000, 10, 4070),
            (1000, 62, 1939),
            (1000, 64, 1937),
        ];
        for (steps, slots, want) in counts {
            assert_eq!(
                revolve_forward_steps(steps, slots).unwrap(),
                want,
                "T={steps} s={slots}"
            );
        }
        // Deterministic, and never more than s slots: at most s buffers
        // are touched.
        let a = plan(Schedule::Revolve(7), 77).unwrap();
        assert_eq!(a, plan(Schedule::Revolve(7), 77).unwrap());
        assert!(a.actions.iter().all(|act| match *act {
            Action::Advance { from, to, .. } => from < 7 && to < 7,
            Action::Final { slot } | Action::Reverse { slot, .. } => slot < 7,
        }));
    }

    /// `M(s, r)` from the binomial closed form of the module docs.
    fn breakpoint(slots: u64, r: u64) -> u64 {
        fn choose(n: u64, k: u64) -> u64 {
            if k > n {
                return 0;
            }
            let k = k.min(n - k);
            let c = (0..k).fold(1u128, |acc, i| acc * u128::from(n - i) / u128::from(i + 1));
            u64::try_from(c).unwrap_or(u64::MAX)
        }
        if r == 0 {
            return 1;
        }
        choose(slots - 2 + r, slots - 2) + choose(slots - 3 + r, slots - 2)
    }

    /// `F(len, slots)` from the breakpoints `M(s, r)` of the module docs.
    fn cost_from_breakpoints(len: u64, slots: u64) -> u64 {
        let r = (0..).find(|&r| breakpoint(slots, r) >= len).unwrap();
        r * len - (0..r).map(|q| breakpoint(slots, q)).sum::<u64>()
    }

    #[test]
    fn cost_matches_the_binomial_breakpoints() {
        for s in 3..=40u64 {
            let mut lens: Vec<u64> = (1..=5000).step_by(7).collect();
            for r in 0..6 {
                let m = breakpoint(s, r);
                if m < 100_000 {
                    lens.extend([m.max(2) - 1, m, m + 1]);
                }
            }
            for len in lens {
                assert_eq!(
                    revolve_cost(len, s),
                    Some(cost_from_breakpoints(len, s)),
                    "F({len}, {s})"
                );
            }
        }
        // M(s, r) = M(s, r - 1) + M(s - 1, r), with M(2, r) = 2.
        for s in 3..=30u64 {
            for r in 1..=12 {
                let below = if s == 3 { 2 } else { breakpoint(s - 1, r) };
                assert_eq!(breakpoint(s, r), breakpoint(s, r - 1) + below);
            }
        }
        // Huge arguments neither panic nor allocate.
        assert!(revolve_forward_steps(usize::MAX, 3).is_err());
        assert!(revolve_forward_steps(usize::MAX, usize::MAX).is_err());
        assert_eq!(
            revolve_forward_steps(usize::MAX - 1, usize::MAX).unwrap(),
            u64::MAX - 1
        );
        let big = revolve_forward_steps(1_000_000_000, 20).unwrap();
        assert_eq!(big, cost_from_breakpoints(1_000_000_001, 20));
        assert!(plan(Schedule::Revolve(20), 1_000_000_000).is_err());
        assert!(plan(Schedule::Revolve(usize::MAX), usize::MAX).is_err());
    }

    #[test]
    fn revolve_for_a_thousand_steps_is_fast_and_within_the_bound() {
        let steps = 1000;
        let sqrt = plan(Schedule::Sqrt, steps).unwrap();
        for slots in [5, 10, 2 * ceil_sqrt(steps), sqrt.slots] {
            let start = std::time::Instant::now();
            let p = plan(Schedule::Revolve(slots), steps).unwrap();
            let took = start.elapsed();
            // Generous for debug builds; about a millisecond in release.
            assert!(took.as_secs_f64() < 2.0, "s={slots}: {took:?}");
            p.validate().unwrap();
            assert!(p.slots <= slots);
            // r = min { r : M(s, r) >= T + 1 }; forward steps are
            // r (T + 1) - sum_{q < r} M(s, q) <= r T.
            let s = slots as u64;
            let r = (1..)
                .find(|&r| breakpoint(s, r) > steps as u64)
                .unwrap_or(0);
            let sum: u64 = (0..r).map(|q| breakpoint(s, q)).sum();
            let fwd = p.forward_steps as u64;
            assert_eq!(fwd, r * (steps as u64 + 1) - sum, "s={slots}");
            assert!(fwd <= r * steps as u64, "s={slots}");
            if slots >= sqrt.slots {
                // No worse than the sqrt schedule with as many slots.
                assert!(fwd < sqrt.forward_steps as u64, "s={slots}");
                assert!(fwd <= 2 * steps as u64 - steps.div_ceil(ceil_sqrt(steps)) as u64);
            }
        }
        let big = plan(Schedule::Revolve(12), 4000).unwrap();
        big.validate().unwrap();
        assert!(big.slots <= 12);
    }

    #[test]
    fn revolve_rejects_too_few_slots() {
        for (steps, slots, min) in [(1, 0, 2), (1, 1, 2), (2, 2, 3), (50, 1, 3), (50, 2, 3)] {
            let e = plan(Schedule::Revolve(slots), steps).unwrap_err();
            assert!(matches!(e, Error::InvalidArgument(_)));
            let e = e.to_string();
            assert!(e.contains(&format!("revolve-{slots}")), "{e}");
            assert!(e.contains(&format!("the minimum is {min} slots")), "{e}");
            assert!(e.contains(&format!("T = {steps}")), "{e}");
            assert!(revolve_forward_steps(steps, slots).is_err());
        }
        let e = plan(Schedule::Revolve(5), 0).unwrap_err().to_string();
        assert!(e.contains("got 0"), "{e}");
        // T = 1 with 2 slots: A(0, 0 -> 1), F(1), R(0 @ 0).
        let p = check_revolve(1, 2, 1);
        assert_eq!(
            p.actions,
            vec![
                Action::Advance {
                    step: 0,
                    from: 0,
                    to: 1
                },
                Action::Final { slot: 1 },
                Action::Reverse { step: 0, slot: 0 },
            ]
        );
        // Too slow a plan is refused with a hint rather than built.
        let e = plan(Schedule::Revolve(3), 20_000).unwrap_err().to_string();
        assert!(e.contains("use more slots"), "{e}");
        assert_eq!(
            revolve_forward_steps(20_000, 3).unwrap(),
            revolve_forward_steps(19_998, 3).unwrap() + 20_000
        );
    }

    #[test]
    fn slots_for_budget_fits_and_caps() {
        assert_eq!(slots_for_budget(1000, 100, 50).unwrap(), 10);
        assert_eq!(slots_for_budget(1099, 100, 50).unwrap(), 10);
        assert_eq!(slots_for_budget(300, 100, 50).unwrap(), 3);
        assert_eq!(slots_for_budget(200, 100, 1).unwrap(), 2);
        // Capped at T + 1: more slots never help.
        assert_eq!(slots_for_budget(1 << 40, 100, 50).unwrap(), 51);
        assert_eq!(slots_for_budget(u64::MAX, 1, 7).unwrap(), 8);
        let s = slots_for_budget(5000, 160, 300).unwrap();
        assert_eq!(s, 31);
        check_revolve(300, s, revolve_forward_steps(300, s).unwrap());
    }

    #[test]
    fn slots_for_budget_errors_name_the_numbers() {
        let e = slots_for_budget(250, 100, 50).unwrap_err();
        assert!(matches!(e, Error::InvalidArgument(_)));
        let e = e.to_string();
        for part in [
            "budget of 250 bytes",
            "100 bytes each",
            "at least 3 slots",
            "300 bytes",
            "fewer instances",
        ] {
            assert!(e.contains(part), "{part}: {e}");
        }
        let e = slots_for_budget(150, 100, 1).unwrap_err().to_string();
        assert!(e.contains("at least 2 slots"), "{e}");
        let e = slots_for_budget(1000, 0, 5).unwrap_err().to_string();
        assert!(e.contains("bytes of one state"), "{e}");
        let e = slots_for_budget(1000, 10, 0).unwrap_err().to_string();
        assert!(e.contains("got 0"), "{e}");
        let e = slots_for_budget(u64::MAX, u64::MAX, 9)
            .unwrap_err()
            .to_string();
        assert!(e.contains(&format!("{} bytes", u64::MAX)), "{e}");
    }
}
