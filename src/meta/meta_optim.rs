//! The meta-optimizer: wrappers of `meta.wgsl`, the weighted meta-loss and the Adam
//! meta-update with clipping and the non-finite guard, and the status slots they share.

use crate::gpu::{GpuBuffer, Recorder};
use crate::kernels::{check_region, u32_of};
use crate::optim::hand::Adam;
use crate::Result;

crate::shader! {
    pub static SHADER = "meta.wgsl", tree_reduction;
    pub struct MetaParams {
        count: u32, rows: u32, cols: u32, _p0: u32, lr: f32, beta1: f32, beta2: f32, eps: f32,
        c1: f32, c2: f32, clip: f32, _f0: f32,
    }
    /// Weighted meta-loss.
    pub META_LOSS = meta_loss(read losses, read weights, write status);
    /// Adam meta-optimizer update with clipping and the non-finite guard.
    pub META_ADAM = meta_adam(read grad, write params, write moments, write astatus);
}

/// Status slots written on the GPU and read back once per outer step.
pub mod status {
    /// Meta-loss M.
    pub const LOSS: usize = 0;
    /// Squared norm of the meta-gradient.
    pub const GRAD_NORM2: usize = 1;
    /// 1·[M not finite] + 2·[gradient not finite]; the update was skipped when nonzero.
    pub const SKIPPED: usize = 2;
    /// Number of status slots.
    pub const LEN: usize = 4;
}

/// Record `status[0] = Σ_t Σ_n w[t]·ℓ[t·N + n] / N` for `rows` = T + 1 steps and `cols` = N.
pub fn meta_loss(
    rec: &mut Recorder,
    losses: &GpuBuffer,
    weights: &GpuBuffer,
    status_buf: &GpuBuffer,
    rows: usize,
    cols: usize,
) -> Result<()> {
    check_region("meta losses", losses, 0, &[(rows * cols, 1)])?;
    check_region("meta weights", weights, 0, &[(rows, 1)])?;
    check_region("meta status", status_buf, 0, &[(status::LEN, 1)])?;
    let p = MetaParams {
        rows: u32_of("rows", rows)?,
        cols: u32_of("cols", cols)?,
        ..Default::default()
    };
    rec.dispatch(&META_LOSS, &[], &[losses, weights, status_buf], &p, 1)
}

/// Settings of the Adam meta-optimizer: Adam's hyper-parameters and the clipping norm.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MetaAdam {
    /// Learning rate, β1, β2, ε.
    pub adam: Adam,
    /// Clip the meta-gradient to this norm (≤ 0: no clipping).
    pub clip: f32,
}

impl Default for MetaAdam {
    fn default() -> Self {
        Self {
            adam: Adam::default(),
            clip: 1.0,
        }
    }
}

impl MetaAdam {
    /// Defaults with learning rate `lr`.
    pub fn with_lr(lr: f32) -> Self {
        let mut m = Self::default();
        m.adam.lr = lr;
        m
    }
}

/// The buffers one meta-Adam update reads and writes.
#[derive(Clone, Copy, Debug)]
pub struct MetaAdamBuffers<'a> {
    /// The meta-gradient (read).
    pub grad: &'a GpuBuffer,
    /// The meta-parameters, updated in place.
    pub params: &'a GpuBuffer,
    /// First moments followed by second moments, updated in place.
    pub moments: &'a GpuBuffer,
    /// The status slots ([`status`]): reads the meta-loss and the gradient norm, writes
    /// [`status::SKIPPED`].
    pub status: &'a GpuBuffer,
}

/// Record the update of `count` meta-parameters at outer step `k` (from 1).
pub fn meta_adam(
    rec: &mut Recorder,
    b: MetaAdamBuffers,
    count: usize,
    k: usize,
    cfg: &MetaAdam,
) -> Result<()> {
    check_region("meta grad", b.grad, 0, &[(count, 1)])?;
    check_region("meta params", b.params, 0, &[(count, 1)])?;
    check_region("meta moments", b.moments, 0, &[(2 * count, 1)])?;
    check_region("meta status", b.status, 0, &[(status::LEN, 1)])?;
    let k = i32::try_from(k.max(1)).unwrap_or(i32::MAX);
    let p = MetaParams {
        count: u32_of("count", count)?,
        lr: cfg.adam.lr,
        beta1: cfg.adam.beta1,
        beta2: cfg.adam.beta2,
        eps: cfg.adam.eps,
        c1: 1.0 - cfg.adam.beta1.powi(k),
        c2: 1.0 - cfg.adam.beta2.powi(k),
        clip: cfg.clip,
        ..Default::default()
    };
    rec.dispatch(
        &META_ADAM,
        &[],
        &[b.grad, b.params, b.moments, b.status],
        &p,
        (count as u64).div_ceil(256).max(1),
    )
}
