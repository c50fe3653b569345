//! Wrapper of `shaders/softmax.wgsl`: softmax cross-entropy loss and its gradient.

use bytemuck::{Pod, Zeroable};

use super::{check_region, u32_of, Batched};
use crate::gpu::{Access, GpuBuffer, Kernel, Recorder, Shader};
use crate::{Error, Result};

/// Parameters of `softmax_xent` (mirrors `Params` in the WGSL).
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
