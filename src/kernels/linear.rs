//! Wrapper of `shaders/linear.wgsl`: the linear learned optimizer u = w0·g + w1·θ + b.

use bytemuck::{Pod, Zeroable};

use super::{check_region, u32_of};
use crate::gpu::{Access, GpuBuffer, Kernel, Recorder, Shader};
use crate::{Error, Result};

/// Meta-parameters of the linear optimizer: (w0, w1, b).
pub const PHI_LEN: usize = 3;

/// Parameters of the linear kernels (mirrors `Params` in the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct LinearParams {
    count: u32,
    groups: u32,
    phi_off: u32,
    accumulate: u32,
    theta_path: u32,
    _p: [u32; 3],
    w: f32,
    _f: [f32; 3],
}

const SIZE: usize = std::mem::size_of::<LinearParams>();

/// `linear.wgsl`.
pub static SHADER: Shader = Shader::new("linear.wgsl", include_str!("linear.wgsl"));

/// Forward step.
pub static LINEAR_STEP: Kernel = Kernel {
    shader: &SHADER,
    entry: "linear_step",
    bindings: &[Access::Read, Access::Read, Access::Read, Access::ReadWrite],
    params_size: SIZE,
};

/// Reverse step (vector-Jacobian product).
pub static LINEAR_VJP: Kernel = Kernel {
    shader: &SHADER,
    entry: "linear_vjp",
    bindings: &[
        Access::Read,
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params_size: SIZE,
};

/// Reverse step that also writes the gradient input's adjoint ḡ = w0·ū (second-order mode).
pub static LINEAR_VJP_SO: Kernel = Kernel {
    shader: &SHADER,
    entry: "linear_vjp_so",
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

/// Record θ' = θ + w0·g + w1·θ + b for the `count` coordinates in `slot_in` → `slot_out`.
pub fn step(
    rec: &mut Recorder,
    count: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    phi: (&GpuBuffer, usize),
    slot_out: &GpuBuffer,
) -> Result<()> {
    check_region("linear slot in", slot_in, 0, &[(count, 1)])?;
    check_region("linear slot out", slot_out, 0, &[(count, 1)])?;
    check_region("linear g", g, 0, &[(count, 1)])?;
    check_region("linear phi", phi.0, phi.1, &[(PHI_LEN, 1)])?;
    let p = LinearParams {
        count: u32_of("count", count)?,
        phi_off: u32_of("offset", phi.1)?,
        ..Default::default()
    };
    rec.dispatch(
        &LINEAR_STEP,
        &[],
        &[slot_in, g, phi.0, slot_out],
        &p,
        (count as u64).div_ceil(256),
    )
}

/// Record the reverse of one step: θ̄ ← ū + w·g (+ w1·ū with `theta_path`) in place, and the
/// φ̄ partial sums of `groups` workgroups into `partials[wg·3 + k]` (added when `accumulate`).
/// With `gbar` (second-order mode), also ḡ = w0·ū, the adjoint of the gradient input.
#[allow(clippy::too_many_arguments)]
pub fn vjp(
    rec: &mut Recorder,
    count: usize,
    groups: usize,
    slot_in: &GpuBuffer,
    g: &GpuBuffer,
    phi: (&GpuBuffer, usize),
    tbar: &GpuBuffer,
    partials: &GpuBuffer,
    w: f32,
    theta_path: bool,
    accumulate: bool,
    gbar: Option<&GpuBuffer>,
) -> Result<()> {
    check_region("linear slot", slot_in, 0, &[(count, 1)])?;
    check_region("linear g", g, 0, &[(count, 1)])?;
    check_region("linear tbar", tbar, 0, &[(count, 1)])?;
    check_region("linear phi", phi.0, phi.1, &[(PHI_LEN, 1)])?;
    check_region("linear partials", partials, 0, &[(groups * PHI_LEN, 1)])?;
    let p = LinearParams {
        count: u32_of("count", count)?,
        groups: u32_of("groups", groups)?,
        phi_off: u32_of("offset", phi.1)?,
        accumulate: u32::from(accumulate),
        theta_path: u32::from(theta_path),
        w,
        ..Default::default()
    };
    match gbar {
        None => rec.dispatch(
            &LINEAR_VJP,
            &[],
            &[slot_in, g, phi.0, tbar, partials],
            &p,
            groups as u64,
        ),
        Some(gb) => {
            check_region("linear gbar", gb, 0, &[(count, 1)])?;
            if [slot_in.id, g.id, phi.0.id, tbar.id, partials.id].contains(&gb.id) {
                return Err(Error::invalid("linear vjp: ḡ must be a buffer of its own"));
            }
            rec.dispatch(
                &LINEAR_VJP_SO,
                &[],
                &[slot_in, g, phi.0, tbar, partials, gb],
                &p,
                groups as u64,
            )
        }
    }
}
