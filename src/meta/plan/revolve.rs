//! Binomial (Revolve) checkpointing: the cost recursion in closed form, the optimal split, the
//! plan builder, and how many slots a memory budget holds.

use super::every_k::Builder;
use super::{Action, Plan, Schedule};
use crate::{Error, Result};

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

/// The largest number of forward steps [`plan`](super::plan()) builds a `Revolve` plan
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
pub(super) fn revolve_cost(len: u64, slots: u64) -> Option<u64> {
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
pub(super) fn revolve_split(len: u64, slots: u64) -> u64 {
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
pub(super) fn revolve(steps: usize, slots: usize) -> Result<Plan> {
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
