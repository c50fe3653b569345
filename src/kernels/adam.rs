//! Wrapper of `shaders/adam.wgsl`: Adam as an inner optimizer.

use bytemuck::{Pod, Zeroable};

use super::{check_region, u32_of};
use crate::gpu::{Access, GpuBuffer, Kernel, Recorder, Shader};
use crate::Result;

/// Parameters of `adam_step` (mirrors `Params` in the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct AdamParams {
    count: u32,
    _p: [u32; 3],
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    c1: f32,
    c2: f32,
    _f: [f32; 2],
}

/// Inner Adam step.
pub static ADAM_STEP: Kernel = Kernel {
    shader: Shader::Adam,
    entry: "adam_step",
    bindings: &[Access::Read, Access::Read, Access::ReadWrite],
    params_size: std::mem::size_of::<AdamParams>(),
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

/// Record step `t` (0-based) of Adam on `count` coordinates: `slot_in` (θ, m, v) and `g` → `slot_out`.
pub fn step(
    rec: &mut Recorder,
    count: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    slot_out: &GpuBuffer,
    hyper: &AdamHyper,
    t: usize,
) -> Result<()> {
    check_region("adam slot in", slot_in, 0, &[(3 * count, 1)])?;
    check_region("adam slot out", slot_out, 0, &[(3 * count, 1)])?;
    check_region("adam g", g, 0, &[(count, 1)])?;
    let k = i32::try_from(t + 1).unwrap_or(i32::MAX);
    let p = AdamParams {
        count: u32_of("count", count)?,
        lr: hyper.lr,
        beta1: hyper.beta1,
        beta2: hyper.beta2,
        eps: hyper.eps,
        c1: 1.0 - hyper.beta1.powi(k),
        c2: 1.0 - hyper.beta2.powi(k),
        ..Default::default()
    };
    rec.dispatch(
        &ADAM_STEP,
        &[],
        &[slot_in, g, slot_out],
        &p,
        (count as u64).div_ceil(256),
    )
}
