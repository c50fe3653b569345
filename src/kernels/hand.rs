//! Wrapper of `shaders/hand.wgsl`: hand-designed inner optimizers (Adam, momentum, Nesterov,
//! RMSprop).

use bytemuck::{Pod, Zeroable};

use super::{check_region, u32_of};
use crate::gpu::{Access, GpuBuffer, Kernel, Recorder, Shader};
use crate::Result;

/// Parameters of the hand-designed optimizer kernels (mirrors `Params` in the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct HandParams {
    count: u32,
    _p: [u32; 3],
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
    w: f32,
    _f: f32,
}

const BINDINGS: &[Access] = &[Access::Read, Access::Read, Access::ReadWrite];
const SIZE: usize = std::mem::size_of::<HandParams>();

/// `hand.wgsl`.
pub static SHADER: Shader = Shader::new("hand.wgsl", include_str!("hand.wgsl"));

/// Inner Adam step.
pub static ADAM_STEP: Kernel = Kernel {
    shader: &SHADER,
    entry: "adam_step",
    bindings: BINDINGS,
    params_size: SIZE,
};
/// Inner heavy-ball momentum step.
pub static MOMENTUM_STEP: Kernel = Kernel {
    shader: &SHADER,
    entry: "momentum_step",
    bindings: BINDINGS,
    params_size: SIZE,
};
/// Inner Nesterov momentum step.
pub static NAG_STEP: Kernel = Kernel {
    shader: &SHADER,
    entry: "nag_step",
    bindings: BINDINGS,
    params_size: SIZE,
};
/// Inner RMSprop step.
pub static RMSPROP_STEP: Kernel = Kernel {
    shader: &SHADER,
    entry: "rmsprop_step",
    bindings: BINDINGS,
    params_size: SIZE,
};

const VJP_BINDINGS: &[Access] = &[
    Access::Read,
    Access::ReadWrite,
    Access::ReadWrite,
    Access::ReadWrite,
];

/// Reverse of a heavy-ball momentum step with the gradient path (second-order mode).
pub static MOMENTUM_VJP: Kernel = Kernel {
    shader: &SHADER,
    entry: "momentum_vjp",
    bindings: VJP_BINDINGS,
    params_size: SIZE,
};
/// Reverse of a Nesterov momentum step with the gradient path (second-order mode).
pub static NAG_VJP: Kernel = Kernel {
    shader: &SHADER,
    entry: "nag_vjp",
    bindings: VJP_BINDINGS,
    params_size: SIZE,
};

/// Adam hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamHyper {
    /// Learning rate.
    pub lr: f32,
    /// β1.
    pub beta1: f32,
    /// β2.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
}

impl Default for AdamHyper {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn record(
    rec: &mut Recorder,
    kernel: &'static Kernel,
    state: usize,
    count: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    slot_out: &GpuBuffer,
    p: HandParams,
) -> Result<()> {
    let len = (1 + state) * count;
    check_region("optimizer slot in", slot_in, 0, &[(len, 1)])?;
    check_region("optimizer slot out", slot_out, 0, &[(len, 1)])?;
    check_region("optimizer g", g, 0, &[(count, 1)])?;
    let p = HandParams {
        count: u32_of("count", count)?,
        ..p
    };
    rec.dispatch(
        kernel,
        &[],
        &[slot_in, g, slot_out],
        &p,
        (count as u64).div_ceil(256),
    )
}

/// Record Adam step `t` (0-based) on `count` coordinates: `slot_in` (θ, m, v) and `g` → `slot_out`.
pub fn adam(
    rec: &mut Recorder,
    count: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    slot_out: &GpuBuffer,
    hyper: &AdamHyper,
    t: usize,
) -> Result<()> {
    let k = i32::try_from(t + 1).unwrap_or(i32::MAX);
    let p = HandParams {
        lr: hyper.lr,
        beta1: hyper.beta1,
        beta2: hyper.beta2,
        eps: hyper.eps,
        c1: 1.0 - hyper.beta1.powi(k),
        c2: 1.0 - hyper.beta2.powi(k),
        ..Default::default()
    };
    record(rec, &ADAM_STEP, 2, count, slot_in, g, slot_out, p)
}

/// Record a heavy-ball (`nesterov = false`) or Nesterov momentum step with learning rate `lr`
/// and momentum `mu`: `slot_in` (θ, m) → `slot_out`.
#[allow(clippy::too_many_arguments)]
pub fn momentum(
    rec: &mut Recorder,
    count: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    slot_out: &GpuBuffer,
    lr: f32,
    mu: f32,
    nesterov: bool,
) -> Result<()> {
    let p = HandParams {
        lr,
        beta1: mu,
        ..Default::default()
    };
    let k = if nesterov { &NAG_STEP } else { &MOMENTUM_STEP };
    record(rec, k, 1, count, slot_in, g, slot_out, p)
}

/// Record an RMSprop step: `slot_in` (θ, v) → `slot_out`.
#[allow(clippy::too_many_arguments)]
pub fn rmsprop(
    rec: &mut Recorder,
    count: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    slot_out: &GpuBuffer,
    lr: f32,
    rho: f32,
    eps: f32,
) -> Result<()> {
    let p = HandParams {
        lr,
        beta2: rho,
        eps,
        ..Default::default()
    };
    record(rec, &RMSPROP_STEP, 1, count, slot_in, g, slot_out, p)
}

/// Record the reverse of a heavy-ball (`nesterov = false`) or Nesterov momentum step with the
/// gradient path kept (second-order mode), in place on `tbar` (ū → θ̄ = ū + w·g) and `sbar`
/// (m̄' → m̄), writing the gradient input's adjoint ḡ into `gbar`; all `count` long.
#[allow(clippy::too_many_arguments)]
pub fn momentum_vjp(
    rec: &mut Recorder,
    count: usize,
    g: &GpuBuffer,
    tbar: &GpuBuffer,
    sbar: &GpuBuffer,
    gbar: &GpuBuffer,
    lr: f32,
    mu: f32,
    w: f32,
    nesterov: bool,
) -> Result<()> {
    for (what, b) in [
        ("momentum g", g),
        ("momentum tbar", tbar),
        ("momentum sbar", sbar),
        ("momentum gbar", gbar),
    ] {
        check_region(what, b, 0, &[(count, 1)])?;
    }
    if tbar.id == sbar.id || tbar.id == gbar.id || sbar.id == gbar.id {
        return Err(crate::Error::invalid(
            "momentum_vjp: θ̄, m̄ and ḡ must be different buffers",
        ));
    }
    let p = HandParams {
        count: u32_of("count", count)?,
        lr,
        beta1: mu,
        w,
        ..Default::default()
    };
    let k = if nesterov { &NAG_VJP } else { &MOMENTUM_VJP };
    rec.dispatch(
        k,
        &[],
        &[g, tbar, sbar, gbar],
        &p,
        (count as u64).div_ceil(256),
    )
}
