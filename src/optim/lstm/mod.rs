//! The coordinatewise 2-layer LSTM learned optimizer of L2L (H = 20, LogAndSign inputs with
//! p = 10, output × 0.1). Equations and the φ layout in [`mod@reference`]'s header and in
//! `lstm.wgsl`'s; the kernels in [`kernels`].

use rand::{Rng, RngCore};

use super::reference::{per_coordinate_step, per_coordinate_vjp, CoordVjp};
use super::{groups_of, Family, RefStep, RefVjp, RefVjpOut, Reference, StepArgs, VjpArgs};
use crate::gpu::{Gpu, Kernel, Recorder};
use crate::Result;

pub mod kernels;
pub mod reference;

pub use kernels::{vjp_workgroup, HIDDEN, LSTM_STEP, LSTM_VJP, PHI_LEN, STATE};

/// The LSTM optimizer and its hyper-parameters that are not learned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Lstm {
    /// LogAndSign p.
    pub p: f32,
    /// ε inside the logarithm.
    pub eps: f32,
    /// Output scale.
    pub out_scale: f32,
}

impl Default for Lstm {
    fn default() -> Self {
        Self {
            p: 10.0,
            eps: 1e-8,
            out_scale: 0.1,
        }
    }
}

impl Lstm {
    /// The reference's configuration (H = [`HIDDEN`]).
    pub fn reference_config(&self) -> reference::LstmConfig {
        reference::LstmConfig {
            hidden: HIDDEN,
            p: f64::from(self.p),
            eps: f64::from(self.eps),
            out_scale: f64::from(self.out_scale),
        }
    }
}

/// Initial φ of an LSTM of `hidden` units, in φ order (layout in [`mod@reference`]): Wx1, Wh1
/// ~ U(±1/√H), b1 = 0 with forget-gate bias 1, Wx2, Wh2 ~ U(±1/√H), b2 likewise, wo
/// ~ U(±0.1/√H), bo = 0. The one initialisation of the GPU path and of the reference's tests.
pub fn init_phi(hidden: usize, rng: &mut dyn RngCore) -> Vec<f32> {
    let h = hidden;
    let bound = 1.0 / (h as f32).sqrt();
    let mut phi = Vec::with_capacity(12 * h * h + 17 * h + 1);
    let mut uniform = |n: usize, b: f32, phi: &mut Vec<f32>| {
        phi.extend((0..n).map(|_| rng.random_range(-b..b)));
    };
    let bias = |phi: &mut Vec<f32>| {
        phi.extend((0..4 * h).map(|r| if (h..2 * h).contains(&r) { 1.0 } else { 0.0 }))
    };
    uniform(4 * h * 2, bound, &mut phi);
    uniform(4 * h * h, bound, &mut phi);
    bias(&mut phi);
    uniform(4 * h * h, bound, &mut phi);
    uniform(4 * h * h, bound, &mut phi);
    bias(&mut phi);
    uniform(h, 0.1 * bound, &mut phi);
    phi.push(0.0);
    phi
}

impl Family for Lstm {
    fn name(&self) -> &'static str {
        "lstm"
    }
    fn state_len(&self) -> usize {
        STATE
    }
    fn phi_len(&self) -> usize {
        PHI_LEN
    }
    fn init_phi(&self, rng: &mut dyn RngCore) -> Vec<f32> {
        init_phi(HIDDEN, rng)
    }
    fn hyper(&self) -> Vec<(&'static str, String)> {
        vec![
            ("hidden", HIDDEN.to_string()),
            ("p", format!("{:e}", self.p)),
            ("eps", format!("{:e}", self.eps)),
            ("out_scale", format!("{:e}", self.out_scale)),
        ]
    }
    fn supports_second_order(&self) -> bool {
        true
    }
    fn kernels(&self) -> &'static [&'static Kernel] {
        kernels::SHADER.kernels
    }
    fn partial_groups(&self, gpu: &Gpu, count: usize) -> Result<usize> {
        Ok(groups_of(count, vjp_workgroup(gpu)?))
    }
    fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()> {
        kernels::step(rec, a, self)
    }
    fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        kernels::vjp(rec, a, self)
    }
}

impl Reference for Lstm {
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
        let cfg = self.reference_config();
        per_coordinate_step(a, STATE, |g, _, s| reference::lstm_step(&cfg, a.phi, g, s))
    }
    fn vjp(&self, a: &RefVjp, phi_bar: &mut [f64]) -> RefVjpOut {
        let cfg = self.reference_config();
        per_coordinate_vjp(a, STATE, |c| {
            let v = reference::lstm_step_vjp(&cfg, a.at.phi, c.g, c.state, c.u_bar, c.state_bar);
            for (x, y) in phi_bar.iter_mut().zip(&v.phi_bar) {
                *x += y;
            }
            CoordVjp {
                theta_bar: 0.0,
                g_bar: v.g_bar,
                state_bar: v.state_bar,
            }
        })
    }
}
