//! The gated optimizer (`gated`): a keep gate, a write gate and a proposed update per coordinate
//! rewrite the medium-term part D = W − W_s of the weights (W_s, the static weights, where D
//! starts at 0): W' = W_s + f⊙(W − W_s) + i⊙ũ, after the gated optimizer of Ravi & Larochelle
//! (2017), the meta-learner of the dynamical language model. Equations in `gated.wgsl` and
//! docs/optimizers.md; state D and h per coordinate; φ (20 floats) shared by every coordinate.

use rand::{Rng, RngCore};

use super::reference::{per_coordinate_step, per_coordinate_vjp, CoordVjp};
use super::{
    groups_of, Family, Mode, Optimizer, RefStep, RefVjp, RefVjpOut, Reference, StepArgs, VjpArgs,
};
use crate::gpu::{Gpu, Kernel, Recorder};
use crate::kernels::{check_region, u32_of};
use crate::{Error, Result};

pub mod reference;

/// Length of φ: the 4×5 gate matrix.
pub const PHI_LEN: usize = reference::ROWS * reference::FEATURES;

crate::shader! {
    pub static SHADER = "gated.wgsl";
    pub struct GatedParams {
        count: u32, groups: u32, phi_off: u32, accumulate: u32, phi_block: u32, phi_stride: u32,
        _u0: u32, _u1: u32, w: f32, logp: f32, eps: f32, d_scale: f32, out_scale: f32,
        _f0: f32, _f1: f32, _f2: f32,
    }
    /// One step.
    pub GATED_STEP = gated_step(read slot_in, read g, read phi, write slot_out);
    /// The reverse of one step (first-order and truncated modes).
    pub GATED_VJP = gated_vjp(read slot_in, read g, read phi, write tbar, write sbar, write partials);
    /// The reverse with ḡ (second-order mode).
    pub GATED_VJP_SO = gated_vjp_so(read slot_in, read g, read phi, write tbar, write sbar, write partials, write gbar);
}

/// The gated optimizer's fixed hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GatedConfig {
    /// LogAndSign constant p (default 10).
    pub p: f64,
    /// Added to |g| inside the logarithm (default 1e-8).
    pub eps: f64,
    /// Scale of D in the features (default 0.01).
    pub d_scale: f64,
    /// Scale of the proposal: ũ = out_scale·tanh(z) (default 0.01).
    pub out_scale: f64,
}

impl Default for GatedConfig {
    fn default() -> Self {
        Self {
            p: 10.0,
            eps: 1e-8,
            d_scale: 0.01,
            out_scale: 0.01,
        }
    }
}

/// The gated optimizer family.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Gated {
    /// Its hyper-parameters.
    pub cfg: GatedConfig,
}

impl Gated {
    fn params(&self, count: usize, phi_off: usize) -> Result<GatedParams> {
        let c = &self.cfg;
        Ok(GatedParams {
            count: u32_of("count", count)?,
            phi_off: u32_of("offset", phi_off)?,
            logp: c.p as f32,
            eps: c.eps as f32,
            d_scale: c.d_scale as f32,
            out_scale: c.out_scale as f32,
            ..Default::default()
        })
    }
}

impl Family for Gated {
    fn name(&self) -> &'static str {
        "gated"
    }
    fn state_len(&self) -> usize {
        2
    }
    fn phi_len(&self) -> usize {
        PHI_LEN
    }
    /// Keep the medium-term part (f ≈ 0.98), write half of the proposal (i ≈ 0.5), propose a
    /// step against the gradient's sign (ũ ≈ −0.0096·sign g); small random weights elsewhere.
    fn init_phi(&self, rng: &mut dyn RngCore) -> Vec<f32> {
        let f = reference::FEATURES;
        let mut phi: Vec<f32> = (0..PHI_LEN)
            .map(|_| rng.random_range(-0.01..0.01))
            .collect();
        phi[f - 1] = 4.0;
        phi[f + f - 1] = 0.0;
        phi[2 * f + 1] = -2.0;
        phi
    }
    fn hyper(&self) -> Vec<(&'static str, String)> {
        let c = &self.cfg;
        vec![
            ("p", format!("{:e}", c.p)),
            ("eps", format!("{:e}", c.eps)),
            ("d_scale", format!("{:e}", c.d_scale)),
            ("out_scale", format!("{:e}", c.out_scale)),
        ]
    }
    fn with_step_scale(&self, scale: f32) -> Option<Optimizer> {
        Some(
            Self {
                cfg: GatedConfig {
                    out_scale: f64::from(scale),
                    ..self.cfg
                },
            }
            .into(),
        )
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

    fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()> {
        let count = a.count;
        check_region("gated slot in", a.slot_in, 0, &[(3 * count, 1)])?;
        check_region("gated slot out", a.slot_out, 0, &[(3 * count, 1)])?;
        check_region("gated g", a.g, 0, &[(count, 1)])?;
        let mut p = self.params(count, a.phi.1)?;
        (p.phi_block, p.phi_stride) = a.phi_blocks("gated", PHI_LEN)?;
        rec.dispatch(
            &GATED_STEP,
            &[],
            &[a.slot_in, a.g, a.phi.0, a.slot_out],
            &p,
            (count as u64).div_ceil(256),
        )
    }

    fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        let (count, groups, phi) = (a.count, a.groups, a.phi);
        check_region("gated slot", a.slot, 0, &[(3 * count, 1)])?;
        check_region("gated g", a.g, 0, &[(count, 1)])?;
        check_region("gated tbar", a.tbar, 0, &[(count, 1)])?;
        check_region("gated sbar", a.sbar, 0, &[(2 * count, 1)])?;
        check_region("gated phi", phi.0, phi.1, &[(PHI_LEN, 1)])?;
        check_region("gated partials", a.partials, 0, &[(groups * PHI_LEN, 1)])?;
        let p = GatedParams {
            groups: u32_of("groups", groups)?,
            accumulate: u32::from(a.accumulate),
            w: a.w,
            ..self.params(count, phi.1)?
        };
        let mut bufs = vec![a.slot, a.g, phi.0, a.tbar, a.sbar, a.partials];
        let kernel = if a.mode == Mode::SecondOrder {
            let gb = a.gbar()?;
            check_region("gated gbar", gb, 0, &[(count, 1)])?;
            if bufs.iter().any(|b| b.id == gb.id) {
                return Err(Error::invalid("gated vjp: ḡ must be a buffer of its own"));
            }
            bufs.push(gb);
            &GATED_VJP_SO
        } else {
            &GATED_VJP
        };
        rec.dispatch(kernel, &[], &bufs, &p, groups as u64)
    }
}

impl Reference for Gated {
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
        per_coordinate_step(a, 2, |g, _theta, s| {
            let (u, s2) = reference::gated_step(&self.cfg, a.phi, g, s);
            (u, s2.to_vec())
        })
    }
    fn vjp(&self, a: &RefVjp, phi_bar: &mut [f64]) -> RefVjpOut {
        per_coordinate_vjp(a, 2, |c| {
            let v = reference::gated_step_vjp(
                &self.cfg,
                a.at.phi,
                c.g,
                c.state,
                (c.u_bar, c.state_bar),
            );
            for (x, y) in phi_bar.iter_mut().zip(&v.phi_bar) {
                *x += y;
            }
            CoordVjp {
                theta_bar: 0.0,
                g_bar: v.g_bar,
                state_bar: v.state_bar.to_vec(),
            }
        })
    }
    fn kink_margin(&self, a: &RefStep) -> f64 {
        a.g.iter()
            .map(|&g| reference::feature_margin(&self.cfg, g))
            .fold(f64::INFINITY, f64::min)
    }
}
