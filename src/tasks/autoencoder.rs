//! A tied-weight autoencoder as a task: an MLP d-h-d (e.g. 64-32-64 on 8×8 images) whose decoder
//! weight is the encoder weight transposed (`l1.w = l0.wᵀ`, one storage), trained to reconstruct
//! its input with the squared-error loss (1/B) Σ_b Σ_k (f(x_b)_k − x_bk)². The hidden activation
//! is the spec's (sigmoid or tanh are the usual choices), the output is linear. Batches of B
//! images per instance are sampled on the GPU as in [`super::MlpTask`]; the tied storage receives
//! the sum of the gradients of both of its uses.

use super::TaskRng;

use super::images::ImageBatches;
use super::{BatchRef, NamedTensor, Task};
use crate::data::ImageDataset;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::matmul::Activation;
use crate::kernels::Batched;
use crate::models::{GpuMlp, Loss, MlpSpec};
use crate::params::ParamLayout;
use crate::reference::mlp::Targets;
use crate::{reference, Error, Result};

/// Autoencoders of images with tied weights.
pub struct AutoencoderTask {
    spec: MlpSpec,
    data: ImageBatches,
    mlp: GpuMlp,
}

impl AutoencoderTask {
    /// The model d-`hidden`-d with `l1.w = l0.wᵀ`, the given hidden activation and the
    /// squared-error loss.
    pub fn tied_spec(features: usize, hidden: usize, activation: Activation) -> Result<MlpSpec> {
        Ok(MlpSpec::new(&[features, hidden, features], activation)?
            .with_tied(1, 0)?
            .with_loss(Loss::Mse))
    }

    /// N instances of `spec` (inputs = outputs = image features, squared-error loss; usually
    /// [`AutoencoderTask::tied_spec`]) with `batch` images per step, training on `train` and
    /// evaluating held-out batches on `held_out`.
    pub fn new(
        gpu: &Gpu,
        spec: &MlpSpec,
        instances: usize,
        batch: usize,
        train: ImageDataset,
        held_out: ImageDataset,
        seed: u32,
    ) -> Result<Self> {
        if spec.loss != Loss::Mse {
            return Err(Error::invalid(format!(
                "an autoencoder needs the squared-error loss, not {}",
                spec.loss.name()
            )));
        }
        for (what, ds) in [("training", &train), ("held-out", &held_out)] {
            if ds.features() != spec.inputs() || ds.features() != spec.outputs() {
                return Err(Error::invalid(format!(
                    "the {what} images have {} features, the autoencoder maps {} inputs to {} \
                     outputs",
                    ds.features(),
                    spec.inputs(),
                    spec.outputs()
                )));
            }
        }
        Ok(Self {
            mlp: GpuMlp::new(gpu, spec, instances, batch)?,
            data: ImageBatches::new(gpu, instances, batch, train, held_out, seed)?,
            spec: spec.clone(),
        })
    }

    /// N instances of `spec` on synthetic images ([`crate::demo::synthetic_images`]: 28×28
    /// prototypes plus noise) area-downsampled to s×s, s² = `spec.inputs()`: `train` training and
    /// `held_out` held-out images drawn from `seed`.
    pub fn synthetic(
        gpu: &Gpu,
        spec: &MlpSpec,
        instances: usize,
        batch: usize,
        (train, held_out): (usize, usize),
        seed: u64,
    ) -> Result<Self> {
        let side = (1..=28).find(|s| s * s == spec.inputs()).ok_or_else(|| {
            Error::invalid(format!(
                "synthetic images are square and at most 28×28: {} inputs is not s² for s ≤ 28",
                spec.inputs()
            ))
        })?;
        let (tr, te) = crate::demo::synthetic_images(seed, train, held_out);
        let (tr, te) = (tr.downsample(side)?, te.downsample(side)?);
        Self::new(gpu, spec, instances, batch, tr, te, seed as u32)
    }

    /// The model.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// Rows per batch.
    pub fn batch(&self) -> usize {
        self.data.batch()
    }

    /// The images of instance `n` in `batch` as the GPU samples them (B × F, in [0, 1]); they
    /// are also the targets.
    pub fn host_batch(&self, n: usize, batch: BatchRef) -> Vec<f32> {
        self.data.host_batch(n, batch).0
    }
}

impl Task for AutoencoderTask {
    fn name(&self) -> String {
        let w: Vec<String> = self.spec.widths.iter().map(|w| w.to_string()).collect();
        format!(
            "autoencoder {} {:?}{} B={} N={}",
            w.join("-"),
            self.spec.activation,
            if self.spec.tied.is_empty() {
                ""
            } else {
                " tied"
            },
            self.batch(),
            self.instances()
        )
        .to_lowercase()
    }

    fn instances(&self) -> usize {
        self.data.instances()
    }

    fn layout(&self) -> &ParamLayout {
        self.mlp.layout()
    }

    fn resample(&mut self, _gpu: &Gpu, rng: &mut TaskRng) -> Result<()> {
        self.data.resample(rng);
        Ok(())
    }

    fn init_params(&self, rng: &mut TaskRng) -> Result<Vec<f32>> {
        self.spec.init(rng, self.instances())
    }

    fn record_loss_grad(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        grad: Batched,
        loss: &GpuBuffer,
        loss_off: usize,
        batch: BatchRef,
    ) -> Result<()> {
        self.data.record(rec, batch)?;
        let x = self.data.x();
        self.mlp.record_loss_grad(
            rec,
            theta,
            x,
            x,
            grad,
            crate::kernels::vec::View::new(loss, loss_off),
        )
    }

    fn reference_loss_grad(
        &self,
        n: usize,
        theta: &[f64],
        batch: BatchRef,
    ) -> Result<(f64, Vec<f64>)> {
        let x: Vec<f64> = self
            .host_batch(n, batch)
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        reference::mlp::loss_grad_targets(
            &self.spec,
            self.mlp.layout(),
            theta,
            &x,
            Targets::Values(&x),
            self.batch(),
        )
    }

    fn enable_hvp(&mut self, gpu: &Gpu) -> Result<()> {
        self.mlp.enable_hvp(gpu)
    }

    fn record_hvp(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        v: Batched,
        out: Batched,
        batch: BatchRef,
    ) -> Result<()> {
        self.data.record(rec, batch)?;
        let x = self.data.x();
        self.mlp.record_hvp(rec, theta, v, x, x, out)
    }

    fn reference_hvp(
        &self,
        n: usize,
        theta: &[f64],
        v: &[f64],
        batch: BatchRef,
    ) -> Result<Vec<f64>> {
        let x: Vec<f64> = self
            .host_batch(n, batch)
            .iter()
            .map(|&v| f64::from(v))
            .collect();
        reference::mlp::hvp_targets(
            &self.spec,
            self.mlp.layout(),
            theta,
            v,
            &x,
            Targets::Values(&x),
            self.batch(),
        )
    }

    fn export_batch(&self, batch: BatchRef) -> Result<Vec<NamedTensor>> {
        let (n, b, f) = (self.instances(), self.batch(), self.spec.inputs());
        let (xs, ys) = self.data.host_batches(batch);
        Ok(vec![
            ("x".into(), vec![n, b, f], xs),
            ("labels".into(), vec![n, b], ys),
        ])
    }

    fn describe(&self) -> Vec<(String, String)> {
        let w: Vec<String> = self.spec.widths.iter().map(|w| w.to_string()).collect();
        let tied: Vec<String> = self
            .spec
            .tied
            .iter()
            .map(|(l, s)| format!("[{l},{s}]"))
            .collect();
        vec![
            ("task".into(), "autoencoder".into()),
            ("task.widths".into(), format!("[{}]", w.join(","))),
            (
                "task.activation".into(),
                format!("{:?}", self.spec.activation).to_lowercase(),
            ),
            ("task.batch".into(), self.batch().to_string()),
            ("task.tied".into(), format!("[{}]", tied.join(","))),
            (
                "task.loss".into(),
                "reconstruction: (1/B) sum_b sum_k (f(x_b)_k - x_bk)^2, pixels in [0,1]; \
                 layer l: Z = H W + b, W [in,out]; tied [l,s]: l.w = s.w^T"
                    .into(),
            ),
        ]
    }

    fn gpu_bytes(&self) -> u64 {
        self.mlp.bytes() + self.data.bytes()
    }
}
