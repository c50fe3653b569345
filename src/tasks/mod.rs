//! Task families: each samples N instances (own θ₀, own data) and records the loss and gradient
//! of all of them in one go, with an f64 reference of the same for testing.

pub mod autoencoder;
pub mod images;
pub mod mlp;
pub mod quadratic;
pub mod sinusoid;

use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::Batched;
use crate::params::ParamLayout;
use crate::{Error, Result};

pub use autoencoder::AutoencoderTask;
pub use images::ImageBatches;
pub use mlp::MlpTask;
pub use quadratic::QuadraticTask;
pub use sinusoid::{SinusoidConfig, SinusoidTask};

/// The random generator tasks draw from: ChaCha12, the generator behind `rand::rngs::StdRng`
/// (same stream for the same seed), used directly because its position can be saved and
/// restored (see [`crate::meta::TrainerState`]).
pub type TaskRng = rand_chacha::ChaCha12Rng;

/// Which batch a loss is computed on. Batches are a pure function of (seed of the outer step,
/// instance, step), so a recomputed step sees exactly the data of the first computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchRef {
    /// The training batch of inner step t.
    Train(u32),
    /// A batch from the held-out split (or held-out stream), numbered t.
    HeldOut(u32),
}

/// A named tensor of exported data: (name, shape, values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// A family of tasks with N instances batched on the GPU.
pub trait Task: Send + Sync {
    /// A short description.
    fn name(&self) -> String;

    /// Number of instances N.
    fn instances(&self) -> usize;

    /// Parameter layout of one instance (P = `layout().size()` floats).
    fn layout(&self) -> &ParamLayout;

    /// Draw new instances or batches for the next outer step (queued uploads, no wait).
    fn resample(&mut self, gpu: &Gpu, rng: &mut TaskRng) -> Result<()>;

    /// Initial parameters of every instance, `N × P`, drawn from the family's distribution.
    fn init_params(&self, rng: &mut TaskRng) -> Result<Vec<f32>>;

    /// Record the loss (`loss[loss_off + n]`) and gradient of every instance at `theta`.
    fn record_loss_grad(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        grad: Batched,
        loss: &GpuBuffer,
        loss_off: usize,
        batch: BatchRef,
    ) -> Result<()>;

    /// f64 reference of the loss and gradient of instance `n` at `theta` on `batch`.
    fn reference_loss_grad(
        &self,
        n: usize,
        theta: &[f64],
        batch: BatchRef,
    ) -> Result<(f64, Vec<f64>)>;

    /// Allocate what [`Task::record_hvp`] needs. Tasks without a Hessian-vector product return
    /// an error naming the task (second-order mode is then unavailable).
    fn enable_hvp(&mut self, _gpu: &Gpu) -> Result<()> {
        Err(no_hvp(&self.name()))
    }

    /// Record the exact Hessian-vector product `out = ∇²L(θ; batch)·v` of every instance (`v`
    /// and `out` laid out as `theta`; `out` must not alias `theta` or `v`). Needs
    /// [`Task::enable_hvp`]. May overwrite the task's model activations and gradient buffers.
    fn record_hvp(
        &self,
        _rec: &mut Recorder,
        _theta: Batched,
        _v: Batched,
        _out: Batched,
        _batch: BatchRef,
    ) -> Result<()> {
        Err(no_hvp(&self.name()))
    }

    /// f64 reference of the Hessian-vector product of instance `n` at `theta` along `v`.
    fn reference_hvp(
        &self,
        _n: usize,
        _theta: &[f64],
        _v: &[f64],
        _batch: BatchRef,
    ) -> Result<Vec<f64>> {
        Err(no_hvp(&self.name()))
    }

    /// The data instance inputs at `batch`, for export (all instances).
    fn export_batch(&self, batch: BatchRef) -> Result<Vec<NamedTensor>>;

    /// True when different steps see different data (false: every step sees the same function).
    fn batched(&self) -> bool {
        true
    }

    /// Description of the task for exported files: key/value pairs.
    fn describe(&self) -> Vec<(String, String)>;

    /// Bytes of GPU memory the task holds (data, batches, activations of its model).
    fn gpu_bytes(&self) -> u64;
}

/// The error of the Hessian-vector product methods of tasks that have none.
fn no_hvp(task: &str) -> Error {
    Error::invalid(format!(
        "second-order mode is not available for task {task}: it has no Hessian-vector product"
    ))
}
