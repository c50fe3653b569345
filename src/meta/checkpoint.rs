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
//! (store-all); with `s = T` it is `T + 1`. For `T = 1000`: 64 slots (about
//! the `2 sqrt(T)` of [`Schedule::Sqrt`], which makes 1968) give 1935, 10
//! slots give 3893, 5 slots 7788.
//!
//! The planner evaluates `F` from these closed forms and picks each split
//! `j` by a binary search over the convex cost `j + F(l - j, s - 1) + F(j, s)`,
//! so planning is `O(T log T)` apart from emitting the actions. It uses the
//! fewest slots `s' <= s` that reach the optimum for `s`.

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
/// `plan(Schedule::Revolve(slots), steps)`, computed without building it.
///
/// Errors like [`plan`] when `steps` is 0 or `slots < min_slots(steps)`
/// (but not for very large counts).
pub fn revolve_forward_steps(steps: usize, slots: usize) -> Result<u64> {
    let slots = revolve_slots_checked(steps, slots)?;
    let table = RevolveTable::new(steps, slots);
    table
        .cost(steps + 1, slots)
        .ok_or_else(|| revolve_internal(steps, slots))
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

/// Checks `slots` against [`min_slots`] and caps it at `steps + 1`.
fn revolve_slots_checked(steps: usize, slots: usize) -> Result<usize> {
    let name = Schedule::Revolve(slots).name();
    if steps == 0 {
        return Err(Error::invalid(format!(
            "checkpoint plan ({name}): steps (T, the number of inner steps) must be at least 1, \
             got 0"
        )));
    }
    let min = min_slots(steps);
    if slots < min {
        return Err(Error::invalid(format!(
            "checkpoint plan ({name}): {slots} slot(s) cannot reverse T = {steps} step(s); the \
             minimum is {min} slots (an Advance never writes the slot it reads, so moving past a \
             kept state needs two more); use revolve-{min} or more"
        )));
    }
    Ok(slots.min(steps.saturating_add(1)))
}

fn revolve_internal(steps: usize, slots: usize) -> Error {
    Error::invalid(format!(
        "checkpoint plan (revolve-{slots}): internal error, no plan for T = {steps}"
    ))
}

/// Builds the `Revolve(slots)` plan (see the module docs).
fn revolve(steps: usize, slots: usize) -> Result<Plan> {
    let slots = revolve_slots_checked(steps, slots)?;
    let table = RevolveTable::new(steps, slots);
    let len = steps + 1;
    let best = table
        .cost(len, slots)
        .ok_or_else(|| revolve_internal(steps, slots))?;
    if best > MAX_REVOLVE_FORWARD_STEPS {
        return Err(Error::invalid(format!(
            "checkpoint plan (revolve-{slots}): T = {steps} steps with {slots} slots needs {best} \
             forward steps, more than the {MAX_REVOLVE_FORWARD_STEPS} this planner builds; use \
             more slots"
        )));
    }
    // The fewest slots that reach the same optimum (cost is nonincreasing in
    // the slot count, and `min_slots` always has a finite cost).
    let (mut lo, mut hi) = (min_slots(steps), slots);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if table.cost(len, mid) == Some(best) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let slots = lo;

    // Work items: reverse `len` steps starting at state `x`, held in `slot`,
    // with `slots` slots in all (the one holding `x` included). Reversing
    // "step T" is the Final.
    struct Item {
        x: usize,
        slot: usize,
        len: usize,
        slots: usize,
    }
    let mut b = Builder::new(steps);
    let mut stack = vec![Item {
        x: 0,
        slot: 0,
        len,
        slots,
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
        let j = table.split(len, slots);
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
            len: j,
            slots,
        });
        stack.push(Item {
            x: x + j,
            slot: cur,
            len: len - j,
            slots: slots - 1,
        });
    }

    let plan = Plan {
        steps,
        slots: b.next_slot,
        forward_steps: b.forward_steps,
        actions: b.actions,
    };
    if plan.forward_steps as u64 != best || plan.slots > slots {
        return Err(revolve_internal(steps, slots));
    }
    Ok(plan)
}

/// The optimal-cost function `F(l, s)` of the module docs for `l <= T + 1`
/// and `s <= max_slots`, from the breakpoints `M(s, r)`.
struct RevolveTable {
    /// `breaks[s]` = `M(s, 0), M(s, 1), …` up to the first value `>= T + 1`,
    /// for `s >= 3` (rows 0..3 are empty; slots 1 and 2 are special-cased).
    breaks: Vec<Vec<u64>>,
    /// `sums[s][r]` = `M(s, 0) + … + M(s, r - 1)` (`sums[s][0] = 0`).
    sums: Vec<Vec<u64>>,
}

impl RevolveTable {
    fn new(steps: usize, max_slots: usize) -> Self {
        let target = steps as u64 + 1;
        let mut breaks: Vec<Vec<u64>> = vec![Vec::new(); max_slots.max(2) + 1];
        let mut sums: Vec<Vec<u64>> = vec![Vec::new(); breaks.len()];
        for s in 3..=max_slots {
            let mut row = vec![1u64];
            while let Some(&last) = row.last() {
                if last >= target {
                    break;
                }
                let r = row.len();
                // M(s - 1, r): constant 1 (s - 1 = 1 never happens here) or 2
                // for two slots; otherwise from the previous row, which is at
                // least as long as this one (M grows with s); past its end
                // the value is >= target anyway.
                let below = if s == 3 {
                    2
                } else {
                    breaks[s - 1].get(r).copied().unwrap_or(target)
                };
                row.push(last + below);
            }
            let mut acc = 0u64;
            let mut prefix = Vec::with_capacity(row.len());
            for &m in &row {
                prefix.push(acc);
                acc += m;
            }
            breaks[s] = row;
            sums[s] = prefix;
        }
        RevolveTable { breaks, sums }
    }

    /// `F(len, slots)`: the fewest Advances that reverse `len` steps from a
    /// held state with `slots` slots; `None` if impossible (or out of the
    /// table's range).
    fn cost(&self, len: usize, slots: usize) -> Option<u64> {
        let l = len as u64;
        match slots {
            0 => None,
            1 => (len == 1).then_some(0),
            2 => (1..=2).contains(&len).then(|| l - 1),
            _ => {
                let row = self.breaks.get(slots)?;
                // r = min { r : M(slots, r) >= len }; the row ends at the
                // first value >= T + 1, so r is in range for len <= T + 1.
                let r = row.partition_point(|&m| m < l);
                if r == row.len() {
                    return None;
                }
                Some(r as u64 * l - self.sums[slots].get(r)?)
            }
        }
    }

    /// An optimal first checkpoint distance `j` (`1 <= j < len`) for
    /// `F(len, slots)`: the largest minimiser of
    /// `phi(j) = j + F(len - j, slots - 1) + F(j, slots)`, which is convex in
    /// `j` on the range where it is finite.
    fn split(&self, len: usize, slots: usize) -> usize {
        // Feasible j: F(len - j, slots - 1) finite.
        let lo = match slots {
            0..=2 => len - 1,
            3 => len.saturating_sub(2).max(1),
            _ => 1,
        };
        let hi = len - 1;
        let phi = |j: usize| -> u64 {
            match (self.cost(j, slots), self.cost(len - j, slots - 1)) {
                (Some(a), Some(b)) => j as u64 + a + b,
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
