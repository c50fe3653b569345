//! Wrapper of `shaders/quadratic.wgsl`: loss ‖Wθ − y‖² and gradient 2Wᵀ(Wθ − y) per instance.

use crate::gpu::{GpuBuffer, Recorder};
use crate::kernels::vec::View;
use crate::kernels::{check_region, u32_of, Batched};
use crate::{Error, Result};

/// Largest dimension the fused kernel supports (its residual lives in workgroup memory).
pub const MAX_DIM: usize = 1024;

crate::shader! {
    pub static SHADER = "quadratic.wgsl";
    pub struct QuadraticParams {
        d: u32, batch: u32, t_off: u32, t_bs: u32, g_off: u32, g_bs: u32, l_off: u32, _pad: u32,
    }
    /// The fused quadratic loss-and-gradient kernel.
    pub QUADRATIC = quadratic(read theta, read data, write grad, write loss);
    /// The quadratic Hessian-vector product kernel.
    pub QUADRATIC_HVP = quadratic_hvp(read theta, read data, write hv);
}

/// The dimension is one the fused kernels support and `data` holds `batch` instances' W and y.
fn check_data(d: usize, batch: usize, data: &GpuBuffer) -> Result<()> {
    if d == 0 || d > MAX_DIM {
        return Err(Error::invalid(format!(
            "quadratic dimension {d} is outside 1..={MAX_DIM} supported by the fused kernel"
        )));
    }
    check_region(
        "quadratic data",
        data,
        0,
        &[(batch, d * d + d), (d * d + d, 1)],
    )
}

/// The kernels' parameters: the input at (t_off, t_bs), the output at (g_off, g_bs), losses from
/// `l_off`.
fn params(
    d: usize,
    batch: usize,
    (input, out): (Batched, Batched),
    l_off: usize,
) -> Result<QuadraticParams> {
    let (t_off, t_bs) = input.offsets("quadratic input")?;
    let (g_off, g_bs) = out.offsets("quadratic output")?;
    Ok(QuadraticParams {
        d: u32_of("dim", d)?,
        batch: u32_of("batch", batch)?,
        t_off,
        t_bs,
        g_off,
        g_bs,
        l_off: u32_of("loss offset", l_off)?,
        _pad: 0,
    })
}

/// Record the Hessian-vector product `out = 2 Wᵀ(W v)` of `batch` quadratics of dimension `d`
/// (`data` as in [`quadratic`]).
pub fn quadratic_hvp(
    rec: &mut Recorder,
    d: usize,
    batch: usize,
    v: Batched,
    data: &GpuBuffer,
    out: Batched,
) -> Result<()> {
    check_data(d, batch, data)?;
    check_region(
        "quadratic v",
        v.buf,
        v.off,
        &[(batch, v.batch_stride), (d, 1)],
    )?;
    check_region(
        "quadratic hvp",
        out.buf,
        out.off,
        &[(batch, out.batch_stride), (d, 1)],
    )?;
    if out.buf.id == v.buf.id || out.buf.id == data.id {
        return Err(Error::invalid(
            "quadratic_hvp: the output must be a different buffer from v and the data",
        ));
    }
    let p = params(d, batch, (v, out), 0)?;
    rec.dispatch(
        &QUADRATIC_HVP,
        &[],
        &[v.buf, data, out.buf],
        &p,
        batch as u64,
    )
}

/// Record loss and gradient of `batch` quadratics of dimension `d` (losses at `loss.off + n`). `data` holds, per instance,
/// W (d×d, row-major) then y (d): stride d² + d.
pub fn quadratic(
    rec: &mut Recorder,
    d: usize,
    batch: usize,
    theta: Batched,
    data: &GpuBuffer,
    grad: Batched,
    loss: View,
) -> Result<()> {
    let View {
        buf: loss,
        off: loss_off,
    } = loss;
    check_data(d, batch, data)?;
    check_region(
        "quadratic theta",
        theta.buf,
        theta.off,
        &[(batch, theta.batch_stride), (d, 1)],
    )?;
    check_region(
        "quadratic grad",
        grad.buf,
        grad.off,
        &[(batch, grad.batch_stride), (d, 1)],
    )?;
    check_region("quadratic loss", loss, loss_off, &[(batch, 1)])?;
    if grad.buf.id == loss.id {
        return Err(Error::invalid(
            "quadratic: grad and loss must be different buffers",
        ));
    }
    let p = params(d, batch, (theta, grad), loss_off)?;
    rec.dispatch(
        &QUADRATIC,
        &[],
        &[theta.buf, data, grad.buf, loss],
        &p,
        batch as u64,
    )
}
