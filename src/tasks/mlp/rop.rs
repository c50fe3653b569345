//! Wrapper of `shaders/mlp_rop.wgsl`: the element-wise parts of the MLP's Hessian-vector product
//! (bias and activation of the R-forward pass, the loss's R-operator, and the R-backward step
//! through an activation). The matrix products run on [`crate::kernels::matmul`].

use crate::gpu::{GpuBuffer, Recorder};
use crate::kernels::matmul::Activation;
use crate::kernels::{check_region, u32_of, Batched};
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "mlp_rop.wgsl";
    pub struct RopParams {
        count: u32, rows: u32, cols: u32, batch: u32, e_off: u32, e_bs: u32, act: u32, _pad: u32,
    }
    /// R(H) = act'(h) ⊙ (R(Z) + v_b), in place.
    pub ROP_BIAS_ACT = rop_bias_act(read h, read vb, write rz);
    /// dZ and R(dZ) of the layer below from dH, R(dH), h and R(h).
    pub ROP_ACT_BACK = rop_act_back(read dh, read rdh, read hb, read rh, write dz, write rdz);
    /// Softmax cross-entropy: dZ and R(dZ).
    pub ROP_XENT = rop_xent(read z, read labels: u32, read rzl, write dzl, write rdzl);
    /// Squared error: dZ and R(dZ).
    pub ROP_MSE = rop_mse(read z, read targets, read rzl, write dzl, write rdzl);
}

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
