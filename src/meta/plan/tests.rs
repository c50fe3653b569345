//! Tests of store-all, every-k and √T plans, of [`Plan::validate`] and of schedule names.

use super::every_k::ceil_sqrt;
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
