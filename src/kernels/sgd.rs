//! Wrapper of `shaders/sgd.wgsl`: θ ← θ − lr·g over a flat range.

use super::{check_region, u32_of};
use crate::gpu::{GpuBuffer, Recorder};
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "sgd.wgsl";
    pub struct SgdParams {
        count: u32, t_off: u32, g_off: u32, _pad: u32, lr: f32, _p0: u32, _p1: u32, _p2: u32,
    }
    /// The SGD update kernel.
    pub SGD = sgd(write theta, read grad);
}

/// Record `theta[t_off + i] -= lr · grad[g_off + i]` for `i < count`.
pub fn sgd(
    rec: &mut Recorder,
    theta: &GpuBuffer,
    t_off: usize,
    grad: &GpuBuffer,
    g_off: usize,
    count: usize,
    lr: f32,
) -> Result<()> {
    if theta.id == grad.id {
        return Err(Error::invalid(
            "sgd: theta and grad must be different buffers",
        ));
    }
    check_region("sgd theta", theta, t_off, &[(count, 1)])?;
    check_region("sgd grad", grad, g_off, &[(count, 1)])?;
    let p = SgdParams {
        count: u32_of("count", count)?,
        t_off: u32_of("offset", t_off)?,
        g_off: u32_of("offset", g_off)?,
        _pad: 0,
        lr,
        ..Default::default()
    };
    rec.dispatch(&SGD, &[], &[theta, grad], &p, (count as u64).div_ceil(256))
}
