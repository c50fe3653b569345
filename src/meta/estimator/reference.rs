//! f64 reference of the ES and PES estimates (`es.wgsl`): the same noise (the counter hash,
//! computed here in f64 from the same bits), every particle unrolled on its own by the
//! optimizers' f64 references, the estimate summed in f64.

use crate::optim::RefStep;
use crate::reference::meta::{LossGrad, Problem};
use crate::tasks::BatchRef;
use crate::{Error, Result};

use crate::kernels::gather::pcg;

/// z of pair `q` and meta-parameter `j` under `key` (before the learned-parameter mask).
pub fn noise(key: [u32; 2], q: u32, j: u32) -> f64 {
    let h1 = pcg(key[0] ^ pcg(key[1] ^ pcg(q ^ pcg(j))));
    let h2 = pcg(h1 ^ 0x9e37_79b9);
    let u1 = (f64::from(h1 >> 8) + 0.5) / 16_777_216.0;
    let u2 = f64::from(h2 >> 8) / 16_777_216.0;
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// One particle's state between unrolls: θ and the optimizer state of its N instances.
#[derive(Clone, Debug, PartialEq)]
pub struct ParticleState {
    /// θ, N × P.
    pub theta: Vec<f64>,
    /// Optimizer state, N × P × S (coordinate-major within an instance).
    pub state: Vec<f64>,
}

/// One unroll of the ES/PES reference.
pub struct EsUnroll<'a> {
    /// The unperturbed problem: φ, N instances, T, weights, offset; its `init` is θ0 of each
    /// instance (used by particles without a state yet).
    pub base: &'a Problem<'a>,
    /// Meta-parameter x = (φ, θ0-of-one-instance): θ0 is `base.init[..P]` when learned.
    pub theta0: &'a [f64],
    /// Perturbation scale σ.
    pub sigma: f64,
    /// Pairs P.
    pub pairs: usize,
    /// The unroll's key.
    pub key: [u32; 2],
    /// φ perturbed (learned).
    pub learn_phi: bool,
    /// θ0 perturbed (learned, and the unroll starts the episode).
    pub learn_theta: bool,
}

/// What the reference gives for one unroll.
#[derive(Clone, Debug)]
pub struct EsResult {
    /// ĝ over (φ, θ0).
    pub grad: Vec<f64>,
    /// L_r of every particle.
    pub totals: Vec<f64>,
    /// ξ after the unroll, P × M.
    pub xi: Vec<f64>,
    /// Every particle's state at the end of the unroll.
    pub states: Vec<ParticleState>,
}

/// Particle r's meta-loss over one unroll from `start` (its θ and state; `None`: θ0 and a zero
/// state), with φ `phi`, and the state it ends in.
fn particle(base: &Problem, phi: &[f64], start: &ParticleState) -> Result<(f64, ParticleState)> {
    let (n, np) = (base.instances, base.params);
    let s = base.opt.state_len();
    let mut total = 0.0;
    let mut end = ParticleState {
        theta: Vec::with_capacity(n * np),
        state: Vec::with_capacity(n * np * s),
    };
    let lg: &LossGrad = base.loss_grad;
    for i in 0..n {
        let mut theta = start.theta[i * np..(i + 1) * np].to_vec();
        let mut state = start.state[i * np * s..(i + 1) * np * s].to_vec();
        for t in 0..base.unroll {
            let (l, g) = lg(i, &theta, BatchRef::Train((base.offset + t) as u32))?;
            total += base.weights[t] * l / n as f64;
            let (u, next) = base.opt.reference().step(&RefStep {
                phi,
                g: &g,
                theta: &theta,
                state: &state,
                segments: base.segments,
                t: base.offset + t,
            });
            theta.iter_mut().zip(&u).for_each(|(a, b)| *a += b);
            state = next;
        }
        let fb = match base.final_batch {
            crate::meta::FinalBatch::Train => BatchRef::Train((base.offset + base.unroll) as u32),
            crate::meta::FinalBatch::HeldOut => {
                BatchRef::HeldOut((base.offset + base.unroll) as u32)
            }
        };
        let (l, _) = lg(i, &theta, fb)?;
        total += base.weights[base.unroll] * l / n as f64;
        end.theta.extend_from_slice(&theta);
        end.state.extend_from_slice(&state);
    }
    Ok((total, end))
}

/// The estimate of one unroll. `xi_prev` is the accumulated noise before it (P × M; empty: ES,
/// or PES at an episode's start), `states` every particle's state (empty: the episode starts,
/// from θ0 perturbed where learned, or `base.init`).
pub fn estimate(u: &EsUnroll, xi_prev: &[f64], states: &[ParticleState]) -> Result<EsResult> {
    let base = u.base;
    let (phi_len, np, n) = (base.phi.len(), base.params, base.instances);
    let m = phi_len + np;
    if u.theta0.len() != np || !(xi_prev.is_empty() || xi_prev.len() == u.pairs * m) {
        return Err(Error::invalid("ES reference: inconsistent sizes"));
    }
    let mut xi = vec![0.0; u.pairs * m];
    let mut totals = Vec::with_capacity(2 * u.pairs);
    let mut ends = Vec::with_capacity(2 * u.pairs);
    for q in 0..u.pairs {
        let z: Vec<f64> = (0..m)
            .map(|j| {
                let on = if j < phi_len {
                    u.learn_phi
                } else {
                    u.learn_theta
                };
                if on {
                    noise(u.key, q as u32, j as u32)
                } else {
                    0.0
                }
            })
            .collect();
        for j in 0..m {
            xi[q * m + j] = xi_prev.get(q * m + j).copied().unwrap_or(0.0) + z[j];
        }
        for sign in [1.0, -1.0] {
            let r = totals.len();
            let phi: Vec<f64> = (0..phi_len)
                .map(|j| base.phi[j] + sign * u.sigma * z[j])
                .collect();
            let start = match states.get(r) {
                Some(s) => s.clone(),
                None => ParticleState {
                    theta: (0..n * np)
                        .map(|i| {
                            let k = i % np;
                            if u.learn_theta {
                                u.theta0[k] + sign * u.sigma * z[phi_len + k]
                            } else {
                                base.init[i]
                            }
                        })
                        .collect(),
                    state: vec![0.0; n * np * base.opt.state_len()],
                },
            };
            let (l, end) = particle(base, &phi, &start)?;
            totals.push(l);
            ends.push(end);
        }
    }
    let grad = (0..m)
        .map(|j| {
            (0..u.pairs)
                .map(|q| xi[q * m + j] * (totals[2 * q] - totals[2 * q + 1]))
                .sum::<f64>()
                / (2.0 * u.pairs as f64 * u.sigma)
        })
        .collect();
    Ok(EsResult {
        grad,
        totals,
        xi,
        states: ends,
    })
}
