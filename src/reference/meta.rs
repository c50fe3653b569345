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
    /// Optimizer state at the start of the unroll, N × P × S (coordinate-major within an
    /// instance); empty for zeros (the start of an episode).
    pub init_state: &'a [f64],
    /// Inner steps already taken in the episode: step t of this unroll is step offset + t
    /// (its batch, and its step number for Adam's bias correction or a step embedding).
    pub offset: usize,
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
    /// The smallest [`Reference::kink_margin`](crate::optim::Reference::kink_margin) over the
    /// unroll's steps: below about 1e-6 an f32 computation may take the other side of a ReLU.
    pub kink_margin: f64,
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
        t: p.offset + t,
    });
    let next = theta.iter().zip(&u).map(|(a, b)| a + b).collect();
    (next, next_state)
}

fn check(p: &Problem) -> Result<()> {
    let state_len = p.instances * p.params * p.opt.state_len();
    if p.weights.len() != p.unroll + 1
        || p.init.len() != p.instances * p.params
        || !(p.init_state.is_empty() || p.init_state.len() == state_len)
    {
        return Err(Error::invalid("reference problem: inconsistent sizes"));
    }
    if p.phi.len() != p.opt.phi_len() {
        return Err(Error::invalid("reference problem: φ has the wrong length"));
    }
    Ok(())
}

/// Instance n's optimizer state at the start of the unroll.
fn initial_state(p: &Problem, n: usize) -> Vec<f64> {
    let len = p.params * p.opt.state_len();
    if p.init_state.is_empty() {
        vec![0.0; len]
    } else {
        p.init_state[n * len..(n + 1) * len].to_vec()
    }
}

fn final_ref(p: &Problem) -> BatchRef {
    match p.final_batch {
        FinalBatch::Train => BatchRef::Train((p.offset + p.unroll) as u32),
        FinalBatch::HeldOut => BatchRef::HeldOut((p.offset + p.unroll) as u32),
    }
}

/// The meta-loss with the optimizer's inputs taken from `frozen` where the mode detaches them
/// (g in first-order and truncated modes; θ in first-order mode), or from the trajectory itself
/// when `frozen` is None or the mode is second-order (the true meta-loss).
/// Returns M and the trajectory of optimizer inputs it saw.
pub fn surrogate_loss(p: &Problem, frozen: Option<&Trajectory>) -> Result<(f64, Trajectory)> {
    check(p)?;
    let np = p.params;
    let mut m = 0.0;
    let mut traj = Trajectory::default();
    for n in 0..p.instances {
        let mut theta = p.init[n * np..(n + 1) * np].to_vec();
        let mut state = initial_state(p, n);
        let (mut gs, mut ths) = (Vec::new(), Vec::new());
        for t in 0..p.unroll {
            let (l, g) = (p.loss_grad)(n, &theta, BatchRef::Train((p.offset + t) as u32))?;
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
        p.opt.check_second_order()?;
    }
    let (np, s_len, t_max) = (p.params, p.opt.state_len(), p.unroll);
    let inv_n = 1.0 / p.instances as f64;
    let mut phi_bar = vec![0.0; p.phi.len()];
    let mut theta0 = Vec::with_capacity(p.instances * np);
    let mut losses = vec![0.0; (t_max + 1) * p.instances];
    let mut m = 0.0;
    let mut kink_margin = f64::INFINITY;
    for n in 0..p.instances {
        // Forward, storing θ_t, s_t, g_t.
        let mut thetas = vec![p.init[n * np..(n + 1) * np].to_vec()];
        let mut states = vec![initial_state(p, n)];
        let mut grads = Vec::new();
        for t in 0..t_max {
            let (l, g) = (p.loss_grad)(n, &thetas[t], BatchRef::Train((p.offset + t) as u32))?;
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
            let at = RefStep {
                phi: p.phi,
                g,
                theta: th,
                state: st,
                segments: p.segments,
                t: p.offset + t,
            };
            kink_margin = kink_margin.min(p.opt.reference().kink_margin(&at));
            let v = p.opt.reference().vjp(
                &RefVjp {
                    at,
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
                let hv = hvp(n, th, &g_bar, BatchRef::Train((p.offset + t) as u32))?;
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
        kink_margin,
    })
}

#[cfg(test)]
#[path = "meta_tests.rs"]
mod tests;
