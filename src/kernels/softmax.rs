//! Wrapper of `shaders/softmax.wgsl`: the per-instance output losses (softmax cross-entropy,
//! squared error) and their gradients.

use bytemuck::{Pod, Zeroable};

use super::{check_region, u32_of, Batched};
use crate::gpu::{Access, GpuBuffer, Kernel, Recorder, Shader};
use crate::{Error, Result};

/// Parameters of `softmax_xent` and `mse` (mirrors `Params` in the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct SoftmaxParams {
    rows: u32,
    classes: u32,
    batch: u32,
    want_grad: u32,
    z_off: u32,
    z_bs: u32,
    y_off: u32,
    y_bs: u32,
    d_off: u32,
    d_bs: u32,
    l_off: u32,
    _pad: u32,
}

/// The fused softmax cross-entropy kernel.
pub static SOFTMAX_XENT: Kernel = Kernel {
    shader: Shader::Softmax,
    entry: "softmax_xent",
    bindings: &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params_size: std::mem::size_of::<SoftmaxParams>(),
};

/// The squared-error loss kernel.
pub static MSE: Kernel = Kernel {
    shader: Shader::Softmax,
    entry: "mse",
    bindings: &[
        Access::Read,
        Access::Read,
        Access::ReadWrite,
        Access::ReadWrite,
    ],
    params_size: std::mem::size_of::<SoftmaxParams>(),
};

/// Record the mean softmax cross-entropy of `rows` rows of `classes` logits for `batch` instances:
/// `loss[loss_off + n]`, and, when `want_grad`, its gradient with respect to the logits into `dz`
/// (same layout as the logits).
#[allow(clippy::too_many_arguments)]
pub fn softmax_xent(
    rec: &mut Recorder,
    rows: usize,
    classes: usize,
    batch: usize,
    logits: Batched,
    labels: Batched,
    dz: Batched,
    want_grad: bool,
    loss: &GpuBuffer,
    loss_off: usize,
) -> Result<()> {
    if classes == 0 || rows == 0 {
        return Err(Error::invalid(
            "softmax_xent needs at least one row and one class",
        ));
    }
    let dense = [(batch, logits.batch_stride), (rows * classes, 1)];
    check_region("softmax logits", logits.buf, logits.off, &dense)?;
    check_region(
        "softmax labels",
        labels.buf,
        labels.off,
        &[(batch, labels.batch_stride), (rows, 1)],
    )?;
    check_region(
        "softmax grad",
        dz.buf,
        dz.off,
        &[(batch, dz.batch_stride), (rows * classes, 1)],
    )?;
    check_region("softmax loss", loss, loss_off, &[(batch, 1)])?;
    if dz.buf.id == loss.id {
        return Err(Error::invalid(
            "softmax_xent: grad and loss must be different buffers",
        ));
    }
    let p = SoftmaxParams {
        rows: u32_of("rows", rows)?,
        classes: u32_of("classes", classes)?,
        batch: u32_of("batch", batch)?,
        want_grad: u32::from(want_grad),
        z_off: u32_of("offset", logits.off)?,
        z_bs: u32_of("stride", logits.batch_stride)?,
        y_off: u32_of("offset", labels.off)?,
        y_bs: u32_of("stride", labels.batch_stride)?,
        d_off: u32_of("offset", dz.off)?,
        d_bs: u32_of("stride", dz.batch_stride)?,
        l_off: u32_of("offset", loss_off)?,
        _pad: 0,
    };
    rec.dispatch(
        &SOFTMAX_XENT,
        &[],
        &[logits.buf, labels.buf, dz.buf, loss],
        &p,
        batch as u64,
    )
}

/// Record the squared-error loss of `rows` rows of `outputs` values for `batch` instances:
/// `loss[loss_off + n] = (1/rows) Σ_b Σ_k (z_bk − y_bk)²` (squared error summed over the outputs,
/// mean over the rows), and, when `want_grad`, its gradient `2 (z − y) / rows` into `dz` (same
/// layout as `z`). The targets `y` are f32, laid out as the outputs.
#[allow(clippy::too_many_arguments)]
pub fn mse(
    rec: &mut Recorder,
    rows: usize,
    outputs: usize,
    batch: usize,
    z: Batched,
    targets: Batched,
    dz: Batched,
    want_grad: bool,
    loss: &GpuBuffer,
    loss_off: usize,
) -> Result<()> {
    if outputs == 0 || rows == 0 {
        return Err(Error::invalid("mse needs at least one row and one output"));
    }
    let per = rows * outputs;
    check_region(
        "mse outputs",
        z.buf,
        z.off,
        &[(batch, z.batch_stride), (per, 1)],
    )?;
    check_region(
        "mse targets",
        targets.buf,
        targets.off,
        &[(batch, targets.batch_stride), (per, 1)],
    )?;
    check_region(
        "mse grad",
        dz.buf,
        dz.off,
        &[(batch, dz.batch_stride), (per, 1)],
    )?;
    check_region("mse loss", loss, loss_off, &[(batch, 1)])?;
    if dz.buf.id == loss.id {
        return Err(Error::invalid(
            "mse: grad and loss must be different buffers",
        ));
    }
    let p = SoftmaxParams {
        rows: u32_of("rows", rows)?,
        classes: u32_of("outputs", outputs)?,
        batch: u32_of("batch", batch)?,
        want_grad: u32::from(want_grad),
        z_off: u32_of("offset", z.off)?,
        z_bs: u32_of("stride", z.batch_stride)?,
        y_off: u32_of("offset", targets.off)?,
        y_bs: u32_of("stride", targets.batch_stride)?,
        d_off: u32_of("offset", dz.off)?,
        d_bs: u32_of("stride", dz.batch_stride)?,
        l_off: u32_of("offset", loss_off)?,
        _pad: 0,
    };
    rec.dispatch(
        &MSE,
        &[],
        &[z.buf, targets.buf, dz.buf, loss],
        &p,
        batch as u64,
    )
}
