//! Wrapper of `shaders/softmax.wgsl`: the per-instance output losses (softmax cross-entropy,
//! squared error) and their gradients.

use crate::gpu::{Kernel, Recorder};
use crate::kernels::vec::View;
use crate::kernels::{check_region, u32_of, Batched};
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "softmax.wgsl", tree_reduction;
    pub struct SoftmaxParams {
        rows: u32, classes: u32, batch: u32, want_grad: u32, z_off: u32, z_bs: u32, y_off: u32, y_bs: u32,
        d_off: u32, d_bs: u32, l_off: u32, _pad: u32,
    }
    /// The fused softmax cross-entropy kernel.
    pub SOFTMAX_XENT = softmax_xent(read logits, read labels: u32, write dz, write loss);
    /// The squared-error loss kernel.
    pub MSE = mse(read logits, read targets, write dz, write loss);
}

/// Sizes of a batched loss: `rows` rows of `width` values (classes or outputs) per instance,
/// for `batch` instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LossDims {
    /// Rows per instance.
    pub rows: usize,
    /// Values per row (classes of the cross-entropy, outputs of the squared error).
    pub width: usize,
    /// Instances.
    pub batch: usize,
}

/// Record the mean softmax cross-entropy of `rows` rows of `width` logits for `batch` instances:
/// `loss[loss.off + n]`, and, when `want_grad`, its gradient with respect to the logits into `dz`
/// (same layout as the logits).
pub fn softmax_xent(
    rec: &mut Recorder,
    dims: LossDims,
    logits: Batched,
    labels: Batched,
    dz: Batched,
    want_grad: bool,
    loss: View,
) -> Result<()> {
    record_loss(
        rec,
        (&SOFTMAX_XENT, "softmax", "class", ["logits", "labels"]),
        dims,
        1,
        [logits, labels, dz],
        want_grad,
        loss,
    )
}

/// Record the squared-error loss of `rows` rows of `width` outputs for `batch` instances:
/// `loss[loss.off + n] = (1/rows) Σ_b Σ_k (z_bk − y_bk)²` (squared error summed over the outputs,
/// mean over the rows), and, when `want_grad`, its gradient `2 (z − y) / rows` into `dz` (same
/// layout as `z`). The targets `y` are f32, laid out as the outputs.
pub fn mse(
    rec: &mut Recorder,
    dims: LossDims,
    z: Batched,
    targets: Batched,
    dz: Batched,
    want_grad: bool,
    loss: View,
) -> Result<()> {
    record_loss(
        rec,
        (&MSE, "mse", "output", ["outputs", "targets"]),
        dims,
        dims.width,
        [z, targets, dz],
        want_grad,
        loss,
    )
}

/// A loss kernel, its short name, what one column is, and the nouns of its inputs.
type LossNames = (
    &'static Kernel,
    &'static str,
    &'static str,
    [&'static str; 2],
);

/// The shared body of both losses: bounds checks, parameters and the dispatch (one workgroup
/// per instance). `names` = (kernel, the loss's short name, what one column is, the nouns of z and
/// of the targets), which errors use; `[z, targets, dz]`.
fn record_loss(
    rec: &mut Recorder,
    (kernel, short, column, [z_noun, t_noun]): LossNames,
    LossDims { rows, width, batch }: LossDims,
    targets_per_row: usize,
    [z, targets, dz]: [Batched; 3],
    want_grad: bool,
    View {
        buf: loss,
        off: loss_off,
    }: View,
) -> Result<()> {
    let kernel_name = kernel.entry;
    let [z_name, t_name, d_name, l_name] =
        [z_noun, t_noun, "grad", "loss"].map(|noun| format!("{short} {noun}"));
    if width == 0 || rows == 0 {
        return Err(Error::invalid(format!(
            "{kernel_name} needs at least one row and one {column}"
        )));
    }
    let per = rows * width;
    check_region(&z_name, z.buf, z.off, &[(batch, z.batch_stride), (per, 1)])?;
    check_region(
        &t_name,
        targets.buf,
        targets.off,
        &[(batch, targets.batch_stride), (rows * targets_per_row, 1)],
    )?;
    check_region(
        &d_name,
        dz.buf,
        dz.off,
        &[(batch, dz.batch_stride), (per, 1)],
    )?;
    check_region(&l_name, loss, loss_off, &[(batch, 1)])?;
    if dz.buf.id == loss.id {
        return Err(Error::invalid(format!(
            "{kernel_name}: grad and loss must be different buffers"
        )));
    }
    let p = SoftmaxParams {
        rows: u32_of("rows", rows)?,
        classes: u32_of(column, width)?,
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
        kernel,
        &[],
        &[z.buf, targets.buf, dz.buf, loss],
        &p,
        batch as u64,
    )
}
