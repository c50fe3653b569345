//! Wrapper of `shaders/mlp_rop.wgsl`: the element-wise parts of the MLP's Hessian-vector product
//! (bias and activation of the R-forward pass, the loss's R-operator, and the R-backward step
//! through an activation). The matrix products run on [`crate::kernels::matmul`].

use bytemuck::{Pod, Zeroable};

use crate::gpu::Access::{Read as R, ReadWrite as W};
use crate::gpu::{GpuBuffer, Kernel, Recorder, Shader};
use crate::kernels::matmul::Activation;
use crate::kernels::{check_region, u32_of, Batched};
use crate::{Error, Result};

/// Parameters of the R-operator kernels (mirrors `Params` in the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct RopParams {
    count: u32,
    rows: u32,
    cols: u32,
    batch: u32,
    e_off: u32,
    e_bs: u32,
    act: u32,
    _pad: u32,
}

const SIZE: usize = std::mem::size_of::<RopParams>();

/// `mlp_rop.wgsl`.
pub static SHADER: Shader = Shader::new("mlp_rop.wgsl", include_str!("mlp_rop.wgsl"));

/// R(H) = act'(h) ⊙ (R(Z) + v_b), in place.
pub static ROP_BIAS_ACT: Kernel = Kernel::new(&SHADER, "rop_bias_act", &[R, R, W], SIZE);
/// dZ and R(dZ) of the layer below from dH, R(dH), h and R(h).
pub static ROP_ACT_BACK: Kernel = Kernel::new(&SHADER, "rop_act_back", &[R, R, R, R, W, W], SIZE);
/// Softmax cross-entropy: dZ and R(dZ).
pub static ROP_XENT: Kernel = Kernel::new(&SHADER, "rop_xent", &[R, R, R, W, W], SIZE);
/// Squared error: dZ and R(dZ).
pub static ROP_MSE: Kernel = Kernel::new(&SHADER, "rop_mse", &[R, R, R, W, W], SIZE);

fn groups(count: usize) -> u64 {
    (count as u64).div_ceil(256)
}

fn distinct(what: &str, bufs: &[&GpuBuffer], written: &[&GpuBuffer]) -> Result<()> {
    for w in written {
        if bufs.iter().filter(|b| b.id == w.id).count() > 1 {
            return Err(Error::invalid(format!(
                "{what}: an output buffer is also bound as another operand"
            )));
        }
    }
    Ok(())
}

/// Record `rz[i] = act'(h[i]) · (rz[i] + vb[n][j])` over dense `[batch, rows, cols]` tensors `h`
/// and `rz` (from offset 0); `vb` is the bias block of the direction, instance n at
/// `vb.off + n·vb.batch_stride`.
pub fn bias_act(
    rec: &mut Recorder,
    (batch, rows, cols): (usize, usize, usize),
    h: &GpuBuffer,
    vb: Batched,
    rz: &GpuBuffer,
    act: Activation,
) -> Result<()> {
    let count = batch * rows * cols;
    check_region("rop h", h, 0, &[(count, 1)])?;
    check_region("rop rz", rz, 0, &[(count, 1)])?;
    check_region(
        "rop bias",
        vb.buf,
        vb.off,
        &[(batch, vb.batch_stride), (cols, 1)],
    )?;
    distinct("rop_bias_act", &[h, vb.buf, rz], &[rz])?;
    let p = RopParams {
        count: u32_of("count", count)?,
        rows: u32_of("rows", rows)?,
        cols: u32_of("cols", cols)?,
        batch: u32_of("batch", batch)?,
        e_off: u32_of("offset", vb.off)?,
        e_bs: u32_of("stride", vb.batch_stride)?,
        act: act as u32,
        _pad: 0,
    };
    rec.dispatch(&ROP_BIAS_ACT, &[], &[h, vb.buf, rz], &p, groups(count))
}

/// Record `dz = dh ⊙ act'(h)` and `rdz = rdh ⊙ act'(h) + dh ⊙ a2(h) ⊙ rh` over the first
/// `count` elements of each buffer (see the WGSL header for a2).
pub fn act_back(
    rec: &mut Recorder,
    count: usize,
    [dh, rdh]: [&GpuBuffer; 2],
    [h, rh]: [&GpuBuffer; 2],
    [dz, rdz]: [&GpuBuffer; 2],
    act: Activation,
) -> Result<()> {
    for (what, b) in [
        ("rop dh", dh),
        ("rop rdh", rdh),
        ("rop h", h),
        ("rop rh", rh),
        ("rop dz", dz),
        ("rop rdz", rdz),
    ] {
        check_region(what, b, 0, &[(count, 1)])?;
    }
    distinct("rop_act_back", &[dh, rdh, h, rh, dz, rdz], &[dz, rdz])?;
    let p = RopParams {
        count: u32_of("count", count)?,
        act: act as u32,
        ..Default::default()
    };
    rec.dispatch(
        &ROP_ACT_BACK,
        &[],
        &[dh, rdh, h, rh, dz, rdz],
        &p,
        groups(count),
    )
}

/// The loss whose R-operator [`loss`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopLoss {
    /// Mean softmax cross-entropy; targets are u32 labels, `[rows]` per instance.
    CrossEntropy,
    /// Squared error summed over outputs, mean over rows; targets f32, `[rows, cols]` per instance.
    Mse,
}

/// Record the loss gradient `dz` and its R-operator `rdz` with respect to the dense
/// `[batch, rows, cols]` outputs `z` (from offset 0) along `rz` (same layout), for the
/// instances' `targets`.
pub fn loss(
    rec: &mut Recorder,
    kind: RopLoss,
    (batch, rows, cols): (usize, usize, usize),
    z: &GpuBuffer,
    targets: Batched,
    rz: &GpuBuffer,
    [dz, rdz]: [&GpuBuffer; 2],
) -> Result<()> {
    if rows == 0 || cols == 0 {
        return Err(Error::invalid(
            "the loss R-operator needs at least one row and one output",
        ));
    }
    let count = batch * rows * cols;
    for (what, b) in [
        ("rop z", z),
        ("rop rz", rz),
        ("rop dz", dz),
        ("rop rdz", rdz),
    ] {
        check_region(what, b, 0, &[(count, 1)])?;
    }
    let per = match kind {
        RopLoss::CrossEntropy => rows,
        RopLoss::Mse => rows * cols,
    };
    check_region(
        "rop targets",
        targets.buf,
        targets.off,
        &[(batch, targets.batch_stride), (per, 1)],
    )?;
    distinct("rop loss", &[z, targets.buf, rz, dz, rdz], &[dz, rdz])?;
    let p = RopParams {
        count: u32_of("count", count)?,
        rows: u32_of("rows", rows)?,
        cols: u32_of("cols", cols)?,
        batch: u32_of("batch", batch)?,
        e_off: u32_of("offset", targets.off)?,
        e_bs: u32_of("stride", targets.batch_stride)?,
        ..Default::default()
    };
    let (kernel, threads) = match kind {
        RopLoss::CrossEntropy => (&ROP_XENT, batch * rows),
        RopLoss::Mse => (&ROP_MSE, count),
    };
    rec.dispatch(
        kernel,
        &[],
        &[z, targets.buf, rz, dz, rdz],
        &p,
        groups(threads),
    )
}
