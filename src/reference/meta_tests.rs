//! Tests of the meta-gradient reference: every optimizer and mode against finite differences
//! of its surrogate, second order against finite differences of the meta-loss.

use super::*;
use crate::optim::hand::{Adam, Momentum, Nag, RmsProp, Sgd};
use crate::optim::linear::Linear;
use crate::optim::lstm::Lstm;
use crate::optim::mlp::MlpOpt;
use crate::reference::{central_diff, rel_err};
use crate::tasks::quadratic::reference as quadratic;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// A family's φ (f32, as it initialises it) in f64.
fn f64s(v: Vec<f32>) -> Vec<f64> {
    v.into_iter().map(f64::from).collect()
}

/// The unroll of [`quad_problem`]'s two instances of 3 parameters (one tensor) over
/// `weights.len() − 1` steps in first-order mode, from offset 0 with a zero optimizer state.
fn quad_base<'a>(
    loss_grad: &'a LossGrad<'a>,
    opt: &'a Optimizer,
    phi: &'a [f64],
    init: &'a [f64],
    weights: &'a [f64],
) -> Problem<'a> {
    Problem {
        loss_grad,
        instances: 2,
        params: 3,
        opt,
        phi,
        init,
        init_state: &[],
        offset: 0,
        segments: &[(0, 3)],
        unroll: weights.len() - 1,
        weights,
        final_batch: FinalBatch::Train,
        mode: Mode::FirstOrder,
    }
}

/// Quadratic instances (d = 3, N = 2) as a CPU-only loss.
fn quad_problem(rng: &mut StdRng) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let d = 3;
    let w = (0..2)
        .map(|_| (0..d * d).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    let y = (0..2)
        .map(|_| (0..d).map(|_| rng.random_range(-1.0..1.0)).collect())
        .collect();
    (w, y)
}

fn check_fd(opt: Optimizer, mode: Mode, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed);
    let (w, y) = quad_problem(&mut rng);
    let loss_grad =
        |n: usize, th: &[f64], _b: BatchRef| Ok(quadratic::loss_grad(3, &w[n], &y[n], th));
    let phi: Vec<f64> = match opt.name() {
        "linear" => vec![-0.05, 0.02, 0.01],
        "lstm" => f64s(crate::optim::lstm::init_phi(20, &mut rng)),
        "mlp" => f64s(crate::optim::mlp::init_phi(&mut rng)),
        _ => Vec::new(),
    };
    let init: Vec<f64> = (0..6).map(|_| rng.random_range(-0.5..0.5)).collect();
    let weights = [0.0, 0.3, 0.2, 0.4, 0.1, 0.5];
    let base = Problem {
        segments: &[(0, 2), (2, 1)],
        mode,
        ..quad_base(&loss_grad, &opt, &phi, &init, &weights)
    };
    let r = meta_gradient(&base).expect("reference");
    let (m, frozen) = surrogate_loss(&base, None).expect("loss");
    assert!((m - r.meta_loss).abs() < 1e-12);
    // θ0 of each instance.
    let f_init = |x: &[f64]| {
        surrogate_loss(
            &Problem {
                init: x,
                ..base_copy(&base)
            },
            Some(&frozen),
        )
        .expect("loss")
        .0
    };
    let fd = central_diff(f_init, &init, 1e-6);
    let e = rel_err(&r.theta0, &fd);
    assert!(e < 1e-6, "{} {mode:?} θ0: {e}", opt.name());
    // φ (for the LSTM, a sample of entries from every block).
    if !phi.is_empty() {
        let idx: Vec<usize> = if phi.len() > 3 {
            (0..phi.len())
                .step_by(37)
                .chain([phi.len() - 21, phi.len() - 11, phi.len() - 2, phi.len() - 1])
                .collect()
        } else {
            (0..phi.len()).collect()
        };
        let mut fd = Vec::new();
        let mut an = Vec::new();
        for &i in &idx {
            let mut pp = phi.clone();
            let h = 1e-6;
            pp[i] = phi[i] + h;
            let fp = surrogate_loss(
                &Problem {
                    phi: &pp,
                    ..base_copy(&base)
                },
                Some(&frozen),
            )
            .expect("loss")
            .0;
            pp[i] = phi[i] - h;
            let fm = surrogate_loss(
                &Problem {
                    phi: &pp,
                    ..base_copy(&base)
                },
                Some(&frozen),
            )
            .expect("loss")
            .0;
            fd.push((fp - fm) / (2.0 * h));
            an.push(r.phi[i]);
        }
        let e = rel_err(&an, &fd);
        assert!(e < 1e-6, "{} {mode:?} φ: {e}", opt.name());
    }
}

fn base_copy<'a>(p: &Problem<'a>) -> Problem<'a> {
    Problem { ..*p }
}

#[test]
fn every_optimizer_and_mode_matches_finite_differences_of_its_surrogate() {
    let opts = [
        Optimizer::new(Linear),
        Optimizer::new(Lstm::default()),
        Optimizer::new(Sgd { lr: 0.05 }),
        Optimizer::new(Adam {
            lr: 0.05,
            ..Default::default()
        }),
        Optimizer::new(MlpOpt {
            eps: 1e-5,
            exp_mult: 0.5,
            step_mult: 0.1,
        }),
        Optimizer::new(Momentum { lr: 0.05, mu: 0.9 }),
        Optimizer::new(Nag { lr: 0.05, mu: 0.9 }),
        Optimizer::new(RmsProp {
            lr: 0.05,
            rho: 0.9,
            eps: 1e-8,
        }),
    ];
    for (i, opt) in opts.into_iter().enumerate() {
        for mode in [Mode::FirstOrder, Mode::Truncated] {
            check_fd(opt.clone(), mode, i as u64);
        }
    }
}

#[test]
fn truncated_and_first_order_differ_only_through_the_theta_input() {
    let mut rng = StdRng::seed_from_u64(3);
    let (w, y) = quad_problem(&mut rng);
    let loss_grad =
        |n: usize, th: &[f64], _b: BatchRef| Ok(quadratic::loss_grad(3, &w[n], &y[n], th));
    let init: Vec<f64> = (0..6).map(|_| rng.random_range(-0.5..0.5)).collect();
    let weights = [0.0, 0.5, 0.5, 1.0];
    let phi = [-0.05, 0.03, 0.0];
    let linear = Optimizer::new(Linear);
    let mk = |opt: &Optimizer, mode| Problem {
        loss_grad: &loss_grad,
        instances: 2,
        params: 3,
        opt: &linear,
        phi: if opt.is_learned() { &phi } else { &[] },
        init: &init,
        init_state: &[],
        offset: 0,
        segments: &[(0, 3)],
        unroll: 3,
        weights: &weights,
        final_batch: FinalBatch::Train,
        mode,
    };
    let a = meta_gradient(&mk(&linear, Mode::FirstOrder)).expect("ref");
    let b = meta_gradient(&mk(&linear, Mode::Truncated)).expect("ref");
    assert!(
        rel_err(&a.phi, &b.phi) > 1e-6,
        "the θ path must matter for the linear optimizer"
    );
    assert_eq!(a.meta_loss, b.meta_loss);
}

/// φ̄ and θ̄0 of a second-order problem against central differences of the meta-loss itself.
fn check_second_order_fd(base: &Problem, hvp: &LossHvp, tol: f64) {
    let r = meta_gradient_with_hvp(base, Some(hvp)).expect("reference");
    let (m, _) = surrogate_loss(base, None).expect("loss");
    assert!((m - r.meta_loss).abs() < 1e-12);
    let what = base.opt.name();
    let f_init = |x: &[f64]| {
        surrogate_loss(&Problem { init: x, ..*base }, None)
            .expect("loss")
            .0
    };
    let fd = central_diff(f_init, base.init, 1e-5);
    let e = rel_err(&r.theta0, &fd);
    assert!(e < tol, "{what} second-order θ0: {e:.2e}");
    if !base.phi.is_empty() {
        let idx: Vec<usize> = (0..base.phi.len())
            .step_by(base.phi.len() / 12 + 1)
            .collect();
        let fd: Vec<f64> = idx
            .iter()
            .map(|&i| {
                let at = |h: f64| {
                    let mut pp = base.phi.to_vec();
                    pp[i] += h;
                    surrogate_loss(&Problem { phi: &pp, ..*base }, None)
                        .expect("loss")
                        .0
                };
                (at(1e-5) - at(-1e-5)) / 2e-5
            })
            .collect();
        let an: Vec<f64> = idx.iter().map(|&i| r.phi[i]).collect();
        let e = rel_err(&an, &fd);
        assert!(e < tol, "{what} second-order φ: {e:.2e}");
    }
}

#[test]
fn second_order_matches_finite_differences_of_the_meta_loss_on_quadratics() {
    let opts = [
        Optimizer::new(Sgd { lr: 0.05 }),
        Optimizer::new(Momentum { lr: 0.05, mu: 0.9 }),
        Optimizer::new(Nag { lr: 0.05, mu: 0.9 }),
        Optimizer::new(Linear),
        Optimizer::new(Adam {
            lr: 0.05,
            ..Default::default()
        }),
        Optimizer::new(Lstm::default()),
        Optimizer::new(RmsProp {
            lr: 0.05,
            rho: 0.9,
            eps: 1e-8,
        }),
        Optimizer::new(MlpOpt {
            eps: 1e-5,
            exp_mult: 0.5,
            step_mult: 0.05,
        }),
    ];
    for (i, opt) in opts.into_iter().enumerate() {
        let mut rng = StdRng::seed_from_u64(100 + i as u64);
        let (w, y) = quad_problem(&mut rng);
        let loss_grad =
            |n: usize, th: &[f64], _b: BatchRef| Ok(quadratic::loss_grad(3, &w[n], &y[n], th));
        let hvp = |n: usize, _th: &[f64], v: &[f64], _b: BatchRef| Ok(quadratic::hvp(3, &w[n], v));
        let phi: Vec<f64> = match opt.name() {
            "linear" => vec![-0.05, 0.02, 0.01],
            "lstm" => {
                let mut phi = f64s(crate::optim::lstm::init_phi(20, &mut rng));
                let n = phi.len();
                for v in &mut phi[n - 21..n - 1] {
                    *v *= 20.0;
                }
                phi
            }
            "mlp" => f64s(crate::optim::mlp::init_phi(&mut rng)),
            _ => Vec::new(),
        };
        let init: Vec<f64> = (0..6).map(|_| rng.random_range(-0.5..0.5)).collect();
        let weights = [0.0, 0.3, 0.2, 0.4, 0.5];
        let base = Problem {
            mode: Mode::SecondOrder,
            ..quad_base(&loss_grad, &opt, &phi, &init, &weights)
        };
        check_second_order_fd(&base, &hvp, 1e-6);
        // The Hessian term matters: truncated mode differs.
        let tr = meta_gradient(&Problem {
            mode: Mode::Truncated,
            ..base
        })
        .expect("truncated");
        let so = meta_gradient_with_hvp(&base, Some(&hvp)).expect("second order");
        assert!(rel_err(&tr.theta0, &so.theta0) > 1e-4, "{}", opt.name());
    }
}

/// MAML: SGD from a learned initialisation on a small MLP regression, the meta-loss on a
/// held-out batch after the last step; and the linear optimizer on the same model.
#[test]
fn second_order_matches_finite_differences_of_the_meta_loss_on_an_mlp() {
    use crate::kernels::matmul::Activation;
    use crate::tasks::mlp::reference::{hvp_targets, loss_grad_targets, Targets};
    use crate::tasks::mlp::{Loss, MlpSpec};
    let mut rng = StdRng::seed_from_u64(7);
    for act in [Activation::Tanh, Activation::Sigmoid] {
        let spec = MlpSpec::new(&[1, 5, 4, 1], act)
            .expect("spec")
            .with_loss(Loss::Mse);
        let layout = spec.layout().expect("layout");
        let np = layout.size();
        let batch = 4;
        let draw = |rng: &mut StdRng| -> Vec<f64> {
            (0..batch).map(|_| rng.random_range(-1.0..1.0)).collect()
        };
        // Per instance: (support x, support y, query x, query y).
        let data: Vec<[Vec<f64>; 4]> = (0..2)
            .map(|_| {
                [
                    draw(&mut rng),
                    draw(&mut rng),
                    draw(&mut rng),
                    draw(&mut rng),
                ]
            })
            .collect();
        let pick = |n: usize, b: BatchRef| match b {
            BatchRef::Train(_) => (&data[n][0], &data[n][1]),
            BatchRef::HeldOut(_) => (&data[n][2], &data[n][3]),
        };
        let loss_grad = |n: usize, th: &[f64], b: BatchRef| {
            let (x, y) = pick(n, b);
            loss_grad_targets(&spec, &layout, th, x, Targets::Values(y), batch)
        };
        let hvp = |n: usize, th: &[f64], v: &[f64], b: BatchRef| {
            let (x, y) = pick(n, b);
            hvp_targets(&spec, &layout, th, v, x, Targets::Values(y), batch)
        };
        let theta0: Vec<f64> = (0..np).map(|_| rng.random_range(-1.0..1.0)).collect();
        let init: Vec<f64> = (0..2).flat_map(|_| theta0.iter().copied()).collect();
        let weights = [0.0, 0.0, 0.0, 1.0];
        for (opt, phi) in [
            (Optimizer::new(Sgd { lr: 0.3 }), vec![]),
            (Optimizer::new(Linear), vec![-0.3, 0.05, 0.01]),
        ] {
            let base = Problem {
                loss_grad: &loss_grad,
                instances: 2,
                params: np,
                opt: &opt,
                phi: &phi,
                init: &init,
                init_state: &[],
                offset: 0,
                segments: &[(0, np)],
                unroll: 3,
                weights: &weights,
                final_batch: FinalBatch::HeldOut,
                mode: Mode::SecondOrder,
            };
            check_second_order_fd(&base, &hvp, 1e-6);
        }
    }
}

#[test]
fn second_order_needs_the_hessian_vector_product() {
    let loss_grad = |_n: usize, th: &[f64], _b: BatchRef| Ok((0.0, th.to_vec()));
    let hvp = |_n: usize, _th: &[f64], v: &[f64], _b: BatchRef| Ok(v.to_vec());
    let opt = Optimizer::new(Sgd { lr: 0.1 });
    let p = Problem {
        loss_grad: &loss_grad,
        instances: 1,
        params: 2,
        opt: &opt,
        phi: &[],
        init: &[0.1, 0.2],
        init_state: &[],
        offset: 0,
        segments: &[(0, 2)],
        unroll: 1,
        weights: &[0.0, 1.0],
        final_batch: FinalBatch::Train,
        mode: Mode::SecondOrder,
    };
    assert!(meta_gradient_with_hvp(&p, Some(&hvp)).is_ok());
    let e = meta_gradient(&p).expect_err("no Hessian-vector product");
    assert!(e.to_string().contains("Hessian-vector product"), "{e}");
}
