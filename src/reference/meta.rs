//! f64 reference of a whole unrolled meta-gradient: store everything, then reverse.
//!
//! For instance n (all instances share φ), t = 0 … T−1:
//!     (ℓ_t, g_t) = loss and gradient at θ_t on batch t;  (u_t, s_{t+1}) = f_φ(g_t, θ_t, s_t)
//!     θ_{t+1} = θ_t + u_t;   final (ℓ_T, g_T) on the final batch
//!     M = Σ_n Σ_t w_t ℓ_t^(n) / N
//! Reverse: θ̄_T = (w_T/N)·g_T, s̄_T = 0; for t = T−1 … 0 per coordinate, with ū = θ̄_{t+1}:
//!     (ḡ, θ̄_in, s̄_t, Δφ̄) = VJP of f_φ at (g_t, θ_t, s_t) with cotangents (ū, s̄_{t+1})
//!     θ̄_t = ū + (w_t/N)·g_t + θ̄_in (truncated and second-order modes)
//!           + H_t·ḡ (second-order mode: the Hessian-vector product at θ_t on batch t)
//! In second-order mode the optimizer state's cotangent also flows through its g input (the
//! hand-designed optimizers' state depends on g only, so the detached modes leave it at 0), and
//! the result is the exact gradient of the meta-loss itself.
//! A detached mode is the exact gradient of a surrogate in which the detached optimizer inputs
//! (g_t; and θ_t in first-order mode) are frozen at their values along the unperturbed
//! trajectory: [`surrogate_loss`] evaluates it, for finite differences.

use crate::meta::FinalBatch;
use crate::optim::{Mode, Optimizer, RefStep, RefVjp};
use crate::tasks::BatchRef;
use crate::{Error, Result};

/// Loss and gradient of instance n at θ on a batch.
pub type LossGrad<'a> = dyn Fn(usize, &[f64], BatchRef) -> Result<(f64, Vec<f64>)> + 'a;

/// Hessian-vector product H·v of instance n's loss at θ on a batch: (n, θ, v, batch).
pub type LossHvp<'a> = dyn Fn(usize, &[f64], &[f64], BatchRef) -> Result<Vec<f64>> + 'a;

/// One meta-gradient problem.
pub struct Problem<'a> {
    /// Loss and gradient of each instance.
    pub loss_grad: &'a LossGrad<'a>,
    /// Instances N.
    pub instances: usize,
    /// Parameters per instance P.
    pub params: usize,
    /// The inner optimizer.
    pub opt: &'a Optimizer,
    /// φ (empty for hand-designed optimizers).
    pub phi: &'a [f64],
    /// θ_0 of every instance, N × P.
    pub init: &'a [f64],
    /// (offset, length) of each parameter tensor of an instance (the per-tensor normalisation
    /// of the MLP optimizer).
    pub segments: &'a [(usize, usize)],
    /// T.
    pub unroll: usize,
    /// w_0 … w_T.
    pub weights: &'a [f64],
    /// Batch of the final term.
    pub final_batch: FinalBatch,
    /// Gradient paths.
    pub mode: Mode,
}

/// The reference's answer.
#[derive(Clone, Debug)]
pub struct RefMeta {
    /// M.
    pub meta_loss: f64,
    /// ∂M/∂φ.
    pub phi: Vec<f64>,
    /// ∂M/∂θ_0 of every instance (N × P).
    pub theta0: Vec<f64>,
    /// ℓ_t of every instance, (T + 1) × N.
    pub losses: Vec<f64>,
}

/// The optimizer inputs seen along a trajectory, per instance and step: g_t and θ_t (each P).
#[derive(Clone, Debug, Default)]
pub struct Trajectory {
    /// `g[n][t]`
    pub g: Vec<Vec<Vec<f64>>>,
    /// `θ[n][t]`
    pub theta: Vec<Vec<Vec<f64>>>,
}

/// One inner step of all P coordinates of an instance: θ_{t+1} = θ + u and the new state, with
/// the optimizer fed (g_in, θ_in).
fn advance(
    p: &Problem,
    theta: &[f64],
    state: &[f64],
    g_in: &[f64],
    theta_in: &[f64],
    t: usize,
) -> (Vec<f64>, Vec<f64>) {
    let (u, next_state) = p.opt.reference().step(&RefStep {
        phi: p.phi,
        g: g_in,
        theta: theta_in,
        state,
        segments: p.segments,
        t,
    });
    let next = theta.iter().zip(&u).map(|(a, b)| a + b).collect();
    (next, next_state)
}

fn check(p: &Problem) -> Result<()> {
    if p.weights.len() != p.unroll + 1 || p.init.len() != p.instances * p.params {
        return Err(Error::invalid("reference problem: inconsistent sizes"));
    }
    if p.phi.len() != p.opt.phi_len() {
        return Err(Error::invalid("reference problem: φ has the wrong length"));
    }
    Ok(())
}

fn final_ref(p: &Problem) -> BatchRef {
    match p.final_batch {
        FinalBatch::Train => BatchRef::Train(p.unroll as u32),
        FinalBatch::HeldOut => BatchRef::HeldOut(p.unroll as u32),
    }
}

/// The meta-loss with the optimizer's inputs taken from `frozen` where the mode detaches them
/// (g in first-order and truncated modes; θ in first-order mode), or from the trajectory itself
/// when `frozen` is None or the mode is second-order (the true meta-loss).
/// Returns M and the trajectory of optimizer inputs it saw.
pub fn surrogate_loss(p: &Problem, frozen: Option<&Trajectory>) -> Result<(f64, Trajectory)> {
    check(p)?;
    let (np, s_len) = (p.params, p.opt.state_len());
    let mut m = 0.0;
    let mut traj = Trajectory::default();
    for n in 0..p.instances {
        let mut theta = p.init[n * np..(n + 1) * np].to_vec();
        let mut state = vec![0.0; np * s_len];
        let (mut gs, mut ths) = (Vec::new(), Vec::new());
        for t in 0..p.unroll {
            let (l, g) = (p.loss_grad)(n, &theta, BatchRef::Train(t as u32))?;
            m += p.weights[t] * l / p.instances as f64;
            let frozen = frozen.filter(|_| p.mode != Mode::SecondOrder);
            let g_in = frozen.map_or(&g, |f| &f.g[n][t]);
            let th_in = match (frozen, p.mode) {
                (Some(f), Mode::FirstOrder) => f.theta[n][t].clone(),
                _ => theta.clone(),
            };
            let (next, next_state) = advance(p, &theta, &state, g_in, &th_in, t);
            state = next_state;
            gs.push(g);
            ths.push(theta);
            theta = next;
        }
        let (l, _) = (p.loss_grad)(n, &theta, final_ref(p))?;
        m += p.weights[p.unroll] * l / p.instances as f64;
        traj.g.push(gs);
        traj.theta.push(ths);
    }
    Ok((m, traj))
}

/// The meta-gradient by storing the whole unroll and reversing it (first-order and truncated
/// modes; second-order mode needs [`meta_gradient_with_hvp`]).
pub fn meta_gradient(p: &Problem) -> Result<RefMeta> {
    meta_gradient_with_hvp(p, None)
}

/// The meta-gradient by storing the whole unroll and reversing it; `hvp` gives the loss's
/// Hessian-vector products, which second-order mode needs. Second-order mode covers sgd,
/// momentum, nag, adam, linear and lstm (the optimizers whose reference VJP gives ḡ).
pub fn meta_gradient_with_hvp(p: &Problem, hvp: Option<&LossHvp>) -> Result<RefMeta> {
    check(p)?;
    if p.mode == Mode::Reptile {
        return Err(Error::invalid(
            "the reference covers the first-order, truncated and second-order modes",
        ));
    }
    let second = p.mode == Mode::SecondOrder;
    if second {
        if hvp.is_none() {
            return Err(Error::invalid(
                "the second-order reference meta-gradient needs the loss's Hessian-vector product",
            ));
        }
        if !p.opt.reference().gives_g_bar() {
            return Err(Error::invalid(format!(
                "second-order mode is not available for optimizer '{}' in the reference: its VJP does not give the gradient input's cotangent",
                p.opt.name()
            )));
        }
    }
    let (np, s_len, t_max) = (p.params, p.opt.state_len(), p.unroll);
    let inv_n = 1.0 / p.instances as f64;
    let mut phi_bar = vec![0.0; p.phi.len()];
    let mut theta0 = Vec::with_capacity(p.instances * np);
    let mut losses = vec![0.0; (t_max + 1) * p.instances];
    let mut m = 0.0;
    for n in 0..p.instances {
        // Forward, storing θ_t, s_t, g_t.
        let mut thetas = vec![p.init[n * np..(n + 1) * np].to_vec()];
        let mut states = vec![vec![0.0; np * s_len]];
        let mut grads = Vec::new();
        for t in 0..t_max {
            let (l, g) = (p.loss_grad)(n, &thetas[t], BatchRef::Train(t as u32))?;
            losses[t * p.instances + n] = l;
            m += p.weights[t] * l * inv_n;
            let (next, next_state) = advance(p, &thetas[t], &states[t], &g, &thetas[t], t);
            grads.push(g);
            thetas.push(next);
            states.push(next_state);
        }
        let (l, g_final) = (p.loss_grad)(n, &thetas[t_max], final_ref(p))?;
        losses[t_max * p.instances + n] = l;
        m += p.weights[t_max] * l * inv_n;
        // Reverse.
        let mut tbar: Vec<f64> = g_final
            .iter()
            .map(|g| p.weights[t_max] * inv_n * g)
            .collect();
        let mut sbar = vec![0.0; np * s_len];
        for t in (0..t_max).rev() {
            let (th, st, g) = (&thetas[t], &states[t], &grads[t]);
            let v = p.opt.reference().vjp(
                &RefVjp {
                    at: RefStep {
                        phi: p.phi,
                        g,
                        theta: th,
                        state: st,
                        segments: p.segments,
                        t,
                    },
                    u_bar: &tbar,
                    state_bar: &sbar,
                    second_order: second,
                },
                &mut phi_bar,
            );
            let keep = p.mode.keeps_theta_path();
            for j in 0..np {
                let path = if keep { v.theta_bar[j] } else { 0.0 };
                tbar[j] = tbar[j] + p.weights[t] * inv_n * g[j] + path;
            }
            sbar = v.state_bar;
            let g_bar = v.g_bar;
            if let (true, Some(hvp)) = (second, hvp) {
                let hv = hvp(n, th, &g_bar, BatchRef::Train(t as u32))?;
                for (a, b) in tbar.iter_mut().zip(&hv) {
                    *a += b;
                }
            }
        }
        theta0.extend(tbar);
    }
    Ok(RefMeta {
        meta_loss: m,
        phi: phi_bar,
        theta0,
        losses,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::optim::hand::{Adam, Momentum, Nag, RmsProp, Sgd};
    use crate::optim::linear::Linear;
    use crate::optim::lstm::Lstm;
    use crate::optim::mlp::MlpOpt;
    use crate::reference::{central_diff, quadratic, rel_err};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// A family's φ (f32, as it initialises it) in f64.
    fn f64s(v: Vec<f32>) -> Vec<f64> {
        v.into_iter().map(f64::from).collect()
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
            loss_grad: &loss_grad,
            instances: 2,
            params: 3,
            opt: &opt,
            phi: &phi,
            init: &init,
            segments: &[(0, 2), (2, 1)],
            unroll: 5,
            weights: &weights,
            final_batch: FinalBatch::Train,
            mode,
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
        ];
        for (i, opt) in opts.into_iter().enumerate() {
            let mut rng = StdRng::seed_from_u64(100 + i as u64);
            let (w, y) = quad_problem(&mut rng);
            let loss_grad =
                |n: usize, th: &[f64], _b: BatchRef| Ok(quadratic::loss_grad(3, &w[n], &y[n], th));
            let hvp =
                |n: usize, _th: &[f64], v: &[f64], _b: BatchRef| Ok(quadratic::hvp(3, &w[n], v));
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
                _ => Vec::new(),
            };
            let init: Vec<f64> = (0..6).map(|_| rng.random_range(-0.5..0.5)).collect();
            let weights = [0.0, 0.3, 0.2, 0.4, 0.5];
            let base = Problem {
                loss_grad: &loss_grad,
                instances: 2,
                params: 3,
                opt: &opt,
                phi: &phi,
                init: &init,
                segments: &[(0, 3)],
                unroll: 4,
                weights: &weights,
                final_batch: FinalBatch::Train,
                mode: Mode::SecondOrder,
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
        use crate::models::mlp::{Loss, MlpSpec};
        use crate::reference::mlp::{hvp_targets, loss_grad_targets, Targets};
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
    fn second_order_refuses_optimizers_without_a_gradient_cotangent() {
        let loss_grad = |_n: usize, th: &[f64], _b: BatchRef| Ok((0.0, th.to_vec()));
        let hvp = |_n: usize, _th: &[f64], v: &[f64], _b: BatchRef| Ok(v.to_vec());
        let opt = Optimizer::new(RmsProp {
            lr: 0.1,
            rho: 0.9,
            eps: 1e-8,
        });
        let p = Problem {
            loss_grad: &loss_grad,
            instances: 1,
            params: 2,
            opt: &opt,
            phi: &[],
            init: &[0.1, 0.2],
            segments: &[(0, 2)],
            unroll: 1,
            weights: &[0.0, 1.0],
            final_batch: FinalBatch::Train,
            mode: Mode::SecondOrder,
        };
        let e = meta_gradient_with_hvp(&p, Some(&hvp)).expect_err("refused");
        assert!(e.to_string().contains("rmsprop"), "{e}");
        assert!(meta_gradient(&Problem {
            opt: &Optimizer::new(Sgd { lr: 0.1 }),
            ..p
        })
        .is_err());
    }
}
