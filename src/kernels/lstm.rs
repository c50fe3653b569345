//! Wrapper of `shaders/lstm.wgsl`: the coordinatewise 2-layer LSTM optimizer (H = 20).

use bytemuck::{Pod, Zeroable};

use super::{check_region, u32_of};
use crate::gpu::{Access, Gpu, GpuBuffer, Kernel, Recorder, Shader};
use crate::Result;

/// Hidden units per layer (a constant of the WGSL).
pub const HIDDEN: usize = 20;
/// State floats per coordinate: h1, c1, h2, c2.
pub const STATE: usize = 4 * HIDDEN;
/// Meta-parameters: 12H² + 17H + 1.
pub const PHI_LEN: usize = 12 * HIDDEN * HIDDEN + 17 * HIDDEN + 1;
/// Floats staged per coordinate in the reverse kernel.
const STAGE: usize = 141;

/// Parameters of the LSTM kernels (mirrors `Params` in the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LstmParams {
    count: u32,
    groups: u32,
    phi_off: u32,
    accumulate: u32,
    w: f32,
    logp: f32,
    eps: f32,
    out_scale: f32,
}

const SIZE: usize = std::mem::size_of::<LstmParams>();

/// Forward step.
pub static LSTM_STEP: Kernel = Kernel {
    shader: Shader::Lstm,
    entry: "lstm_step",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    params_size: SIZE,
};

/// Reverse step (vector-Jacobian product, gates recomputed).
pub static LSTM_VJP: Kernel = Kernel {
    shader: Shader::Lstm,
    entry: "lstm_vjp",
    bindings: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params_size: SIZE,
};

/// Hyper-parameters of the LSTM optimizer that are not learned.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LstmHyper {
    /// LogAndSign p.
    pub p: f32,
    /// ε inside the logarithm.
    pub eps: f32,
    /// Output scale.
    pub out_scale: f32,
}

impl Default for LstmHyper {
    fn default() -> Self {
        Self {
            p: 10.0,
            eps: 1e-8,
            out_scale: 0.1,
        }
    }
}

/// Invocations per workgroup of the reverse kernel: the largest of 64, 32, 16, 8 whose workgroup
/// memory, 4·(WG·141 + 5141) bytes, fits the adapter.
pub fn vjp_workgroup(gpu: &Gpu) -> Result<usize> {
    super::tile_workgroup(gpu, STAGE, PHI_LEN, "LSTM")
}

fn params(count: usize, groups: usize, phi_off: usize, h: &LstmHyper) -> Result<LstmParams> {
    Ok(LstmParams {
        count: u32_of("count", count)?,
        groups: u32_of("groups", groups)?,
        phi_off: u32_of("offset", phi_off)?,
        accumulate: 0,
        w: 0.0,
        logp: h.p,
        eps: h.eps,
        out_scale: h.out_scale,
    })
}

/// Record one step of the `count` coordinates: `slot_in` (θ, state) and `g` → `slot_out`.
pub fn step(
    rec: &mut Recorder,
    count: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    phi: (&GpuBuffer, usize),
    slot_out: &GpuBuffer,
    hyper: &LstmHyper,
) -> Result<()> {
    let slot = count * (1 + STATE);
    check_region("lstm slot in", slot_in, 0, &[(slot, 1)])?;
    check_region("lstm slot out", slot_out, 0, &[(slot, 1)])?;
    check_region("lstm g", g, 0, &[(count, 1)])?;
    check_region("lstm phi", phi.0, phi.1, &[(PHI_LEN, 1)])?;
    let p = params(count, 0, phi.1, hyper)?;
    rec.dispatch(
        &LSTM_STEP,
        &[],
        &[slot_in, g, phi.0, slot_out],
        &p,
        (count as u64).div_ceil(64),
    )
}

/// Record the reverse of one step: θ̄ ← ū + w·g and s̄ ← old-state adjoint in place, φ̄ partial
/// sums of `groups` workgroups into `partials[wg·PHI_LEN + e]` (added when `accumulate`).
#[allow(clippy::too_many_arguments)]
pub fn vjp(
    rec: &mut Recorder,
    count: usize,
    groups: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    phi: (&GpuBuffer, usize),
    tbar: &GpuBuffer,
    sbar: &GpuBuffer,
    partials: &GpuBuffer,
    w: f32,
    accumulate: bool,
    hyper: &LstmHyper,
) -> Result<()> {
    check_region("lstm slot", slot_in, 0, &[(count * (1 + STATE), 1)])?;
    check_region("lstm g", g, 0, &[(count, 1)])?;
    check_region("lstm phi", phi.0, phi.1, &[(PHI_LEN, 1)])?;
    check_region("lstm tbar", tbar, 0, &[(count, 1)])?;
    check_region("lstm sbar", sbar, 0, &[(count * STATE, 1)])?;
    check_region("lstm partials", partials, 0, &[(groups * PHI_LEN, 1)])?;
    let wg = vjp_workgroup(rec.gpu())?;
    let mut p = params(count, groups, phi.1, hyper)?;
    p.w = w;
    p.accumulate = u32::from(accumulate);
    rec.dispatch(
        &LSTM_VJP,
        &[("WG", wg as f64)],
        &[slot_in, g, phi.0, tbar, sbar, partials],
        &p,
        groups as u64,
    )
}
