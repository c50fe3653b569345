//! A learned learning-rate schedule: SGD, θ' = θ − lr_t·g, with the rate interpolated over a
//! horizon of H steps between two learned log-rates, lr_t = e^{φ0}·(H − t)/H + e^{φ1}·t/H (the
//! toy of "Unbiased Gradient Estimation in Unrolled Computation Graphs with Persistent
//! Evolution Strategies", Vicol, Metz and Sohl-Dickstein 2021). Its kernels are those of the
//! linear optimizer (`linear.wgsl`, kind 1): an update linear in g whose coefficient φ makes.

use rand::RngCore;

use super::linear::{self, Coefficients};
use super::reference::{per_coordinate_step, per_coordinate_vjp, CoordVjp};
use super::{
    groups_of, Family, Optimizer, RefStep, RefVjp, RefVjpOut, Reference, StepArgs, VjpArgs,
};
use crate::gpu::{Gpu, Kernel, Recorder};
use crate::Result;

pub mod reference;

/// The schedule over `horizon` steps (H; the episode's length in a run).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Schedule {
    /// H.
    pub horizon: f32,
}

impl Default for Schedule {
    fn default() -> Self {
        Self { horizon: 100.0 }
    }
}

impl Schedule {
    fn coefficients(&self) -> Coefficients {
        Coefficients::Schedule {
            horizon: self.horizon,
        }
    }
}

impl Family for Schedule {
    fn name(&self) -> &'static str {
        "schedule"
    }
    fn state_len(&self) -> usize {
        0
    }
    fn phi_len(&self) -> usize {
        2
    }
    /// lr = 0.01 at both ends (the PES toy's start).
    fn init_phi(&self, _rng: &mut dyn RngCore) -> Vec<f32> {
        vec![0.01f32.ln(); 2]
    }
    fn hyper(&self) -> Vec<(&'static str, String)> {
        vec![("horizon", format!("{:e}", self.horizon))]
    }
    fn for_episode(&self, steps: usize) -> Option<Optimizer> {
        Some(
            Self {
                horizon: steps as f32,
            }
            .into(),
        )
    }
    fn supports_second_order(&self) -> bool {
        true
    }
    fn kernels(&self) -> &'static [&'static Kernel] {
        linear::SHADER.kernels
    }
    fn partial_groups(&self, _gpu: &Gpu, count: usize) -> Result<usize> {
        Ok(groups_of(count, 256))
    }
    /// θ' = θ − lr_t·g.
    fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()> {
        linear::record_step(rec, a, self.coefficients())
    }
    /// θ̄ ← ū + w·g in place (θ' depends on θ through the identity only), φ̄ partial sums; in
    /// second-order mode ḡ = −lr_t·ū.
    fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        linear::record_vjp(rec, a, self.coefficients())
    }
}

impl Reference for Schedule {
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
        let h = f64::from(self.horizon);
        per_coordinate_step(a, 0, |g, _, _| {
            (reference::schedule_step(a.phi, h, a.t, g), Vec::new())
        })
    }
    fn vjp(&self, a: &RefVjp, phi_bar: &mut [f64]) -> RefVjpOut {
        let h = f64::from(self.horizon);
        per_coordinate_vjp(a, 0, |c| {
            let v = reference::schedule_step_vjp(a.at.phi, h, a.at.t, c.g, c.u_bar);
            for (x, y) in phi_bar.iter_mut().zip(v.phi_bar) {
                *x += y;
            }
            CoordVjp {
                theta_bar: 0.0,
                g_bar: v.g_bar,
                state_bar: Vec::new(),
            }
        })
    }
}
