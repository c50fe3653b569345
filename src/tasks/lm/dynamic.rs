//! Wrapper of `dynamic.wgsl`: the updates of dynamic evaluation (Krause et al. 2018) over the
//! fast weights of N streams — SGD, and the RMS rule with its per-coordinate gradient
//! statistics from the training set, each with the decay back to the static weights — and any
//! optimizer of [`crate::optim`] followed by that decay. Equations in the shader's header.

use crate::gpu::{GpuBuffer, Recorder};
use crate::kernels::{check_region, u32_of, Batched};
use crate::optim::Optimizer;
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "dynamic.wgsl";
    pub struct DynamicParams {
        batch: u32, count: u32, t_off: u32, t_bs: u32, g_off: u32, g_bs: u32, s_off: u32,
        scaled: u32, lr: f32, decay: f32, _p0: u32, _p1: u32,
    }
    /// θ_n ← θ_n − lr·pre·g_n + decay·rate·(θs − θ_n).
    pub LM_DYNAMIC_UPDATE = lm_dynamic_update(write theta, read grad, read statics, read scales);
}

/// Default ε of the RMS rule (added to the RMS of every coordinate's gradient).
pub const RMS_EPS: f32 = 1e-5;

/// How dynamic evaluation steps the fast weights on a chunk's gradient after scoring it.
#[derive(Clone, Debug)]
pub enum Update {
    /// θ ← θ − lr·g + decay·(θs − θ).
    Sgd {
        /// Learning rate.
        lr: f32,
        /// Decay rate λ back to the static weights θs.
        decay: f32,
    },
    /// Krause's RMS rule: θ ← θ − lr·g/(RMS + ε) + decay·min(RMS/mean RMS, 1/decay)·(θs − θ).
    Rms {
        /// Learning rate.
        lr: f32,
        /// Decay rate λ.
        decay: f32,
        /// ε.
        eps: f32,
        /// The RMS of every fast coordinate's gradient over training chunks
        /// ([`crate::tasks::lm::DynamicEval::gradient_rms`]).
        rms: Vec<f32>,
    },
    /// Any optimizer (a learned one with its φ), then θ ← θ + decay·(θs − θ).
    Optimizer {
        /// The optimizer, with its hyper-parameters.
        opt: Optimizer,
        /// φ of a learned optimizer (empty for a hand-designed one).
        phi: Vec<f32>,
        /// Decay rate λ.
        decay: f32,
    },
}

impl Update {
    /// The decay rate λ.
    pub fn decay(&self) -> f32 {
        match self {
            Update::Sgd { decay, .. }
            | Update::Rms { decay, .. }
            | Update::Optimizer { decay, .. } => *decay,
        }
    }

    /// Check the rates: finite, non-negative, a positive learning rate and ε.
    pub fn check(&self) -> Result<()> {
        let decay = self.decay();
        if !(decay.is_finite() && decay >= 0.0) {
            return Err(Error::invalid(format!(
                "dynamic evaluation: decay {decay} is not a non-negative number"
            )));
        }
        let lr = match self {
            Update::Sgd { lr, .. } => *lr,
            Update::Rms { lr, eps, rms, .. } => {
                if !(eps.is_finite() && *eps > 0.0) {
                    return Err(Error::invalid(format!(
                        "dynamic evaluation: RMS ε {eps} is not a positive number"
                    )));
                }
                if rms.iter().any(|v| !(v.is_finite() && *v >= 0.0)) {
                    return Err(Error::invalid(
                        "dynamic evaluation: the gradient RMS holds a negative or non-finite \
                         value; gather the statistics again",
                    ));
                }
                *lr
            }
            Update::Optimizer { .. } => return Ok(()),
        };
        if !(lr.is_finite() && lr > 0.0) {
            return Err(Error::invalid(format!(
                "dynamic evaluation: learning rate {lr} is not a positive number"
            )));
        }
        Ok(())
    }
}

/// The RMS rule's per-coordinate factors `[pre; rate]` (2·P): pre = 1/(rms + ε), rate =
/// min(rms / mean rms, 1/decay) (rate = rms / mean rms when decay = 0; a zero mean gives 0).
pub fn rms_scales(rms: &[f32], eps: f32, decay: f32) -> Vec<f32> {
    let mean = rms.iter().map(|&v| f64::from(v)).sum::<f64>() / rms.len().max(1) as f64;
    let cap = if decay > 0.0 {
        1.0 / f64::from(decay)
    } else {
        f64::INFINITY
    };
    let pre = rms.iter().map(|&v| 1.0 / (v + eps));
    let rate = rms.iter().map(|&v| {
        if mean > 0.0 {
            (f64::from(v) / mean).min(cap) as f32
        } else {
            0.0
        }
    });
    pre.chain(rate).collect()
}

/// The operands of [`record_update`]: the fast weights θ and their gradients g (N blocks of
/// `count`), the static values θs (one block) and, for the RMS rule, the factors of
/// [`rms_scales`].
#[derive(Clone, Copy, Debug)]
pub struct UpdateArgs<'a> {
    /// θ of every instance.
    pub theta: Batched<'a>,
    /// g of every instance.
    pub grad: Batched<'a>,
    /// θs at this offset of this buffer.
    pub statics: (&'a GpuBuffer, usize),
    /// `[pre; rate]` (2·count) from offset 0, or `None` for the SGD rule.
    pub scales: Option<&'a GpuBuffer>,
    /// Instances N.
    pub batch: usize,
    /// Coordinates per instance P.
    pub count: usize,
}

/// Record one update of the shader's equation with `lr` and `decay` (see the header).
pub fn record_update(rec: &mut Recorder, a: &UpdateArgs, lr: f32, decay: f32) -> Result<()> {
    let (n, p) = (a.batch, a.count);
    if a.theta.buf.id == a.grad.buf.id || a.theta.buf.id == a.statics.0.id {
        return Err(Error::invalid(
            "dynamic update: θ, its gradient and the static weights must be different buffers",
        ));
    }
    check_region(
        "dynamic θ",
        a.theta.buf,
        a.theta.off,
        &[(n, a.theta.batch_stride), (p, 1)],
    )?;
    check_region(
        "dynamic grad",
        a.grad.buf,
        a.grad.off,
        &[(n, a.grad.batch_stride), (p, 1)],
    )?;
    check_region("dynamic statics", a.statics.0, a.statics.1, &[(p, 1)])?;
    if a.theta.batch_stride < p && n > 1 {
        return Err(Error::invalid(
            "dynamic update: the instances' weights overlap",
        ));
    }
    let scales = match a.scales {
        Some(s) => {
            check_region("dynamic scales", s, 0, &[(2 * p, 1)])?;
            s
        }
        // Not read by the SGD rule; any buffer binds.
        None => a.statics.0,
    };
    let params = DynamicParams {
        batch: u32_of("instances", n)?,
        count: u32_of("coordinates", p)?,
        t_off: u32_of("offset", a.theta.off)?,
        t_bs: u32_of("stride", a.theta.batch_stride)?,
        g_off: u32_of("offset", a.grad.off)?,
        g_bs: u32_of("stride", a.grad.batch_stride)?,
        s_off: u32_of("offset", a.statics.1)?,
        scaled: u32::from(a.scales.is_some()),
        lr,
        decay,
        ..Default::default()
    };
    u32_of("coordinates of all instances", n * p)?;
    rec.dispatch(
        &LM_DYNAMIC_UPDATE,
        &[],
        &[a.theta.buf, a.grad.buf, a.statics.0, scales],
        &params,
        ((n * p) as u64).div_ceil(256),
    )
}
