//! The per-parameter MLP learned optimizer (after learned_optimization's MLPLOpt): momenta at
//! five time scales and an RMS accumulator as features, normalised per parameter tensor, with
//! a step embedding, into an MLP 19-32-32-2 that gives direction and log-magnitude. Equations
//! in [`mod@reference`]'s header and in `mlp_opt.wgsl`'s; the φ layout below is the one both the
//! reference and the kernels read.

use rand::{Rng, RngCore};

use super::{
    groups_of, Family, RefStep, RefVjp, RefVjpOut, Reference, StepArgs, VjpArgs, Workspace,
};
use crate::gpu::{Gpu, Kernel, Recorder};
use crate::params::ParamLayout;
use crate::Result;

pub mod kernels;
pub mod reference;

pub use kernels::{
    vjp_workgroup, MlpOptWorkspace, CHUNK, MLPO_FINISH, MLPO_STEP, MLPO_SUMS, MLPO_THETA_BAR,
    MLPO_VJP,
};

/// Decays of the five momenta.
pub const DECAYS: [f64; 5] = [0.1, 0.5, 0.9, 0.99, 0.999];
/// Decay of the second-moment (RMS) accumulator.
pub const RMS_DECAY: f64 = 0.999;
/// Time scales of the step embedding.
pub const TIMESCALES: [f64; 11] = [
    1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0, 30000.0, 100000.0,
];
/// Normalised features per coordinate.
pub const FEATURES: usize = 8;
/// MLP inputs: the normalised features and the step embedding.
pub const INPUTS: usize = FEATURES + TIMESCALES.len();
/// Hidden units of each of the two hidden layers.
pub const HIDDEN: usize = 32;
/// State floats per coordinate.
pub const STATE: usize = 6;
/// φ length.
pub const PHI_LEN: usize = HIDDEN * INPUTS + HIDDEN + HIDDEN * HIDDEN + HIDDEN + 2 * HIDDEN + 2;

/// Offset of W1 (HIDDEN × INPUTS) in φ; then b1 (HIDDEN), W2 (HIDDEN × HIDDEN), b2 (HIDDEN),
/// W3 (2 × HIDDEN), b3 (2), row-major.
pub const W1: usize = 0;
/// Offset of b1.
pub const B1: usize = W1 + HIDDEN * INPUTS;
/// Offset of W2.
pub const W2: usize = B1 + HIDDEN;
/// Offset of b2.
pub const B2: usize = W2 + HIDDEN * HIDDEN;
/// Offset of W3.
pub const W3: usize = B2 + HIDDEN;
/// Offset of b3.
pub const B3: usize = W3 + 2 * HIDDEN;

/// The MLP optimizer and its hyper-parameters that are not learned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MlpOpt {
    /// ε of the per-tensor normalisation.
    pub eps: f32,
    /// α in u = o0·exp(α·o1)·β.
    pub exp_mult: f32,
    /// β in u = o0·exp(α·o1)·β.
    pub step_mult: f32,
}

impl Default for MlpOpt {
    fn default() -> Self {
        Self {
            eps: 1e-5,
            exp_mult: 1e-3,
            step_mult: 1e-3,
        }
    }
}

impl MlpOpt {
    /// The reference's configuration.
    pub fn reference_config(&self) -> reference::MlpOptConfig {
        reference::MlpOptConfig {
            eps: f64::from(self.eps),
            exp_mult: f64::from(self.exp_mult),
            step_mult: f64::from(self.step_mult),
        }
    }
}

/// Initial φ: every weight ~ U(±1/√fan_in), biases 0 (the one initialisation of the GPU path
/// and of the reference's tests).
pub fn init_phi(rng: &mut dyn RngCore) -> Vec<f32> {
    let mut phi = vec![0.0; PHI_LEN];
    for (start, rows, cols) in [(W1, HIDDEN, INPUTS), (W2, HIDDEN, HIDDEN), (W3, 2, HIDDEN)] {
        let b = 1.0 / (cols as f32).sqrt();
        for v in &mut phi[start..start + rows * cols] {
            *v = rng.random_range(-b..b);
        }
    }
    phi
}

impl Family for MlpOpt {
    fn name(&self) -> &'static str {
        "mlp"
    }
    fn state_len(&self) -> usize {
        STATE
    }
    fn phi_len(&self) -> usize {
        PHI_LEN
    }
    fn init_phi(&self, rng: &mut dyn RngCore) -> Vec<f32> {
        init_phi(rng)
    }
    fn hyper(&self) -> Vec<(&'static str, String)> {
        vec![
            ("eps", format!("{:e}", self.eps)),
            ("exp_mult", format!("{:e}", self.exp_mult)),
            ("step_mult", format!("{:e}", self.step_mult)),
        ]
    }
    fn kernels(&self) -> &'static [&'static Kernel] {
        kernels::SHADER.kernels
    }
    fn supports_second_order(&self) -> bool {
        true
    }
    fn workspace(&self, gpu: &Gpu, layout: &ParamLayout, n: usize, so: bool) -> Result<Workspace> {
        Ok(Workspace::new(MlpOptWorkspace::new(gpu, layout, n, so)?))
    }
    fn partial_groups(&self, gpu: &Gpu, count: usize) -> Result<usize> {
        Ok(groups_of(count, vjp_workgroup(gpu)?))
    }
    fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()> {
        a.ws.get::<MlpOptWorkspace>(self.name())?
            .record_step(rec, a, self)
    }
    fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        a.ws.get::<MlpOptWorkspace>(self.name())?
            .record_vjp(rec, a, self)
    }
}

/// Acts on all P coordinates of an instance at once (per-tensor normalisation). The momenta
/// depend on g only: the detached modes give them cotangent 0.
impl Reference for MlpOpt {
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
        reference::mlpo_step(&self.reference_config(), a)
    }
    fn kink_margin(&self, a: &RefStep) -> f64 {
        reference::mlpo_kink_margin(&self.reference_config(), a)
    }
    fn vjp(&self, a: &RefVjp, phi_bar: &mut [f64]) -> RefVjpOut {
        let v = reference::mlpo_step_vjp(
            &self.reference_config(),
            &a.at,
            a.u_bar,
            a.state_bar,
            a.second_order,
        );
        for (x, y) in phi_bar.iter_mut().zip(&v.phi_bar) {
            *x += y;
        }
        RefVjpOut {
            theta_bar: v.theta_bar,
            g_bar: v.g_bar,
            state_bar: v.state_bar,
        }
    }
}
