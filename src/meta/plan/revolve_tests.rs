//! Tests of Revolve: optimality against an exhaustive search, the closed forms, budgets.

use super::every_k::ceil_sqrt;
use super::revolve::{revolve_cost, revolve_split};
use super::*;

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
