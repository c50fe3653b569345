//! Wrapper of `shaders/sgd.wgsl`: θ ← θ − lr·g over a flat range.

use bytemuck::{Pod, Zeroable};

use super::{check_region, u32_of};
use crate::gpu::Access::{Read as R, ReadWrite as W};
use crate::gpu::{GpuBuffer, Kernel, Recorder, Shader};
use crate::{Error, Result};

/// Parameters of `sgd` (mirrors `Params` in the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SgdParams {
    count: u32,
    t_off: u32,
    g_off: u32,
    _pad: u32,
    lr: f32,
    _p: [u32; 3],
}

/// `sgd.wgsl`.
pub static SHADER: Shader = Shader::new("sgd.wgsl", include_str!("sgd.wgsl"));

/// The SGD update kernel.
pub static SGD: Kernel = Kernel::new(&SHADER, "sgd", &[W, R], std::mem::size_of::<SgdParams>());

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
        _p: [0; 3],
    };
    rec.dispatch(&SGD, &[], &[theta, grad], &p, (count as u64).div_ceil(256))
}
