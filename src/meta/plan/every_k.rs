//! Store-all, every-k and √T plans (store-all is every-1, √T is every-⌈√T⌉), and the
//! [`Builder`] that hands out slots while actions are emitted.

use super::{Action, Plan};
use std::cmp::Reverse as MinFirst;
use std::collections::BinaryHeap;

/// Builds the `EveryK(k)` plan, `1 <= k <= steps`.
pub(super) fn every_k(steps: usize, k: usize) -> Plan {
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
pub(super) struct Builder {
    pub(super) actions: Vec<Action>,
    /// Freed slots below `next_slot`.
    free: BinaryHeap<MinFirst<usize>>,
    /// Slots `next_slot..` have never been used.
    pub(super) next_slot: usize,
    pub(super) forward_steps: usize,
}

impl Builder {
    pub(super) fn new(steps: usize) -> Self {
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

    pub(super) fn free(&mut self, slot: usize) {
        self.free.push(MinFirst(slot));
    }

    /// Emits `Advance { step, from, to }` into a fresh slot and returns `to`.
    /// `from` is live, so it is never handed out as `to`.
    pub(super) fn advance(&mut self, step: usize, from: usize) -> usize {
        let to = self.alloc();
        self.actions.push(Action::Advance { step, from, to });
        self.forward_steps += 1;
        to
    }
}

/// `ceil(sqrt(n))`.
pub(super) fn ceil_sqrt(n: usize) -> usize {
    let r = n.isqrt();
    if r * r == n {
        r
    } else {
        r + 1
    }
}
