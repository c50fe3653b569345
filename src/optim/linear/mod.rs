//! The linear learned optimizer u = w0·g + w1·θ + b, φ = (w0, w1, b): the smallest learned
//! optimizer, and the template of a new family (this folder: `mod.rs` with the [`Family`]
//! impl and the kernel wrappers, `linear.wgsl`, `reference.rs`).

use rand::RngCore;

use super::reference::{per_coordinate_step, per_coordinate_vjp, CoordVjp};
use super::{groups_of, Family, Mode, RefStep, RefVjp, RefVjpOut, Reference, StepArgs, VjpArgs};
use crate::gpu::{Gpu, Kernel, Recorder};
use crate::kernels::{check_region, u32_of};
use crate::{Error, Result};

pub mod reference;

/// Meta-parameters of the linear optimizer: (w0, w1, b).
pub const PHI_LEN: usize = 3;

crate::shader! {
    pub static SHADER = "linear.wgsl";
    pub struct LinearParams {
        count: u32, groups: u32, phi_off: u32, accumulate: u32, theta_path: u32, phi_block: u32, phi_stride: u32, kind: u32,
        w: f32, t: f32, horizon: f32, _f2: f32,
    }
    /// Forward step.
    pub LINEAR_STEP = linear_step(read slot_in, read g, read phi, write slot_out);
    /// Reverse step (vector-Jacobian product).
    pub LINEAR_VJP = linear_vjp(read slot_in, read g, read phi, write tbar, write partials);
    /// Reverse step that also writes the gradient input's adjoint ḡ = w0·ū (second-order mode).
    pub LINEAR_VJP_SO = linear_vjp_so(read slot_in, read g, read phi, write tbar, write partials, write gbar);
}

/// The linear learned optimizer (no fixed hyper-parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Linear;

impl Family for Linear {
    fn name(&self) -> &'static str {
        "linear"
    }
    fn state_len(&self) -> usize {
        0
    }
    fn phi_len(&self) -> usize {
        PHI_LEN
    }
    /// (−0.01, 0, 0): SGD with learning rate 0.01.
    fn init_phi(&self, _rng: &mut dyn RngCore) -> Vec<f32> {
        vec![-0.01, 0.0, 0.0]
    }
    fn hyper(&self) -> Vec<(&'static str, String)> {
        Vec::new()
    }
    fn supports_second_order(&self) -> bool {
        true
    }
    fn kernels(&self) -> &'static [&'static Kernel] {
        SHADER.kernels
    }
    fn partial_groups(&self, _gpu: &Gpu, count: usize) -> Result<usize> {
        Ok(groups_of(count, 256))
    }

    /// θ' = θ + w0·g + w1·θ + b for the `count` coordinates.
    fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()> {
        record_step(rec, a, Coefficients::Linear)
    }

    /// θ̄ ← ū + w·g (+ w1·ū with the θ path) in place, and the φ̄ partial sums of `groups`
    /// workgroups into `partials[wg·3 + k]` (added when `accumulate`). In second-order mode
    /// also ḡ = w0·ū, the adjoint of the gradient input.
    fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        record_vjp(rec, a, Coefficients::Linear)
    }
}

/// How `linear.wgsl` makes the coefficients c of u = c0·g + c1·θ + c2 from φ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Coefficients {
    /// c = φ = (w0, w1, b): the linear optimizer.
    Linear,
    /// c = (−lr_t, 0, 0), lr_t = e^{φ0}(H − t)/H + e^{φ1}·t/H: a learned learning-rate schedule
    /// over `horizon` H steps.
    Schedule {
        /// H.
        horizon: f32,
    },
}

impl Coefficients {
    /// Floats of φ.
    pub fn phi_len(self) -> usize {
        match self {
            Self::Linear => PHI_LEN,
            Self::Schedule { .. } => 2,
        }
    }

    fn params(self, count: usize, phi_off: usize, t: usize) -> Result<LinearParams> {
        let (kind, horizon) = match self {
            Self::Linear => (0, 0.0),
            Self::Schedule { horizon } => (1, horizon),
        };
        Ok(LinearParams {
            count: u32_of("count", count)?,
            phi_off: u32_of("offset", phi_off)?,
            kind,
            t: t as f32,
            horizon,
            ..Default::default()
        })
    }
}

/// Record one step of the `count` coordinates with the coefficients `c` makes.
pub(crate) fn record_step(rec: &mut Recorder, a: &StepArgs, c: Coefficients) -> Result<()> {
    let (count, phi) = (a.count, a.phi);
    check_region("linear slot in", a.slot_in, 0, &[(count, 1)])?;
    check_region("linear slot out", a.slot_out, 0, &[(count, 1)])?;
    check_region("linear g", a.g, 0, &[(count, 1)])?;
    let mut p = c.params(count, phi.1, a.t)?;
    (p.phi_block, p.phi_stride) = a.phi_blocks("linear", c.phi_len())?;
    rec.dispatch(
        &LINEAR_STEP,
        &[],
        &[a.slot_in, a.g, phi.0, a.slot_out],
        &p,
        (count as u64).div_ceil(256),
    )
}

/// Record the reverse of one step (see `linear.wgsl`) with the coefficients `c` makes.
pub(crate) fn record_vjp(rec: &mut Recorder, a: &VjpArgs, c: Coefficients) -> Result<()> {
    let (count, groups, phi) = (a.count, a.groups, a.phi);
    let len = c.phi_len();
    check_region("linear slot", a.slot, 0, &[(count, 1)])?;
    check_region("linear g", a.g, 0, &[(count, 1)])?;
    check_region("linear tbar", a.tbar, 0, &[(count, 1)])?;
    check_region("linear phi", phi.0, phi.1, &[(len, 1)])?;
    check_region("linear partials", a.partials, 0, &[(groups * len, 1)])?;
    let p = LinearParams {
        groups: u32_of("groups", groups)?,
        accumulate: u32::from(a.accumulate),
        theta_path: u32::from(a.mode.keeps_theta_path()),
        w: a.w,
        ..c.params(count, phi.1, a.t)?
    };
    if a.mode != Mode::SecondOrder {
        return rec.dispatch(
            &LINEAR_VJP,
            &[],
            &[a.slot, a.g, phi.0, a.tbar, a.partials],
            &p,
            groups as u64,
        );
    }
    let gb = a.gbar()?;
    check_region("linear gbar", gb, 0, &[(count, 1)])?;
    if [a.slot.id, a.g.id, phi.0.id, a.tbar.id, a.partials.id].contains(&gb.id) {
        return Err(Error::invalid("linear vjp: ḡ must be a buffer of its own"));
    }
    rec.dispatch(
        &LINEAR_VJP_SO,
        &[],
        &[a.slot, a.g, phi.0, a.tbar, a.partials, gb],
        &p,
        groups as u64,
    )
}

impl Reference for Linear {
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
        per_coordinate_step(a, 0, |g, theta, _| {
            (reference::linear_step(a.phi, g, theta), Vec::new())
        })
    }
    fn vjp(&self, a: &RefVjp, phi_bar: &mut [f64]) -> RefVjpOut {
        per_coordinate_vjp(a, 0, |c| {
            let v = reference::linear_step_vjp(a.at.phi, c.g, c.theta, c.u_bar);
            for (x, y) in phi_bar.iter_mut().zip(v.phi_bar) {
                *x += y;
            }
            CoordVjp {
                theta_bar: v.theta_bar,
                g_bar: v.g_bar,
                state_bar: Vec::new(),
            }
        })
    }
}
