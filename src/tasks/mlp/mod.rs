//! MLPs on images as a task: N instances of an MLP (own parameters), each trained on its own
//! batches of B images sampled on the GPU from a dataset (Fashion-MNIST, MNIST, synthetic images
//! or any [`ImageDataset`]); a held-out split provides held-out batches. Two objectives:
//!
//! - [`Objective::Classify`]: the labels are the targets, softmax cross-entropy loss.
//! - [`Objective::Reconstruct`]: the images are their own targets, squared-error loss
//!   (1/B) Σ_b Σ_k (f(x_b)_k − x_bk)². With [`MlpSpec::tied_autoencoder`] (d-h-d, decoder weight
//!   = encoder weight transposed, one storage that receives the sum of the gradients of both of
//!   its uses) this is the tied-weight autoencoder.
//!
//! The folder holds the model ([`spec`]: widths, activations, losses, tied layers and the
//! equations; [`model`]: the batched GPU forward, backward and Hessian-vector product), its
//! kernels ([`softmax`]: the losses, [`rop`]: the R-operator), the image batches ([`images`])
//! and the f64 reference ([`mod@reference`]).

pub mod family;
pub mod images;
pub mod model;
pub mod reference;
pub mod rop;
pub mod softmax;
pub mod spec;

pub use family::{AUTOENCODER, CLASSIFIER};
pub use images::ImageBatches;
pub use model::GpuMlp;
pub use spec::{Loss, MlpSpec};

use super::{BatchRef, Hvp, LossGrad, NamedTensor, Shard, Task, TaskRng};
use crate::data::ImageDataset;
use crate::gpu::{Gpu, Kernel, Recorder};
use crate::kernels::Batched;
use crate::params::ParamLayout;
use crate::{Error, Result};
use reference::Targets;

/// The kernels of the MLP model.
pub fn kernels() -> Vec<&'static Kernel> {
    [softmax::SHADER.kernels, rop::SHADER.kernels].concat()
}

/// What the MLP learns from an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Objective {
    /// Predict the label (cross-entropy loss).
    Classify,
    /// Reproduce the image (squared-error loss): an autoencoder.
    Reconstruct,
}

/// MLPs on an image dataset.
pub struct MlpTask {
    spec: MlpSpec,
    objective: Objective,
    data: ImageBatches,
    mlp: GpuMlp,
}

impl MlpTask {
    /// N classifiers `spec` (cross-entropy loss) with `batch` rows per step, training on `train`
    /// and evaluating held-out batches on `held_out`.
    pub fn new(
        gpu: &Gpu,
        spec: &MlpSpec,
        instances: usize,
        batch: usize,
        train: ImageDataset,
        held_out: ImageDataset,
        seed: u32,
    ) -> Result<Self> {
        Self::with_objective(
            gpu,
            (spec, Objective::Classify),
            (instances, batch),
            (train, held_out),
            seed,
        )
    }

    /// N instances of `spec` with `objective` on synthetic images
    /// ([`crate::data::synthetic_images`]: 28×28 prototypes plus noise) area-downsampled to s×s,
    /// s² = `spec.inputs()`: `counts` = (training, held-out) images drawn from `seed`.
    pub fn synthetic(
        gpu: &Gpu,
        (spec, objective): (&MlpSpec, Objective),
        (instances, batch): (usize, usize),
        counts: (usize, usize),
        seed: u64,
    ) -> Result<Self> {
        let side = (1..=28).find(|s| s * s == spec.inputs()).ok_or_else(|| {
            Error::invalid(format!(
                "synthetic images are square and at most 28×28: {} inputs is not s² for s ≤ 28",
                spec.inputs()
            ))
        })?;
        let (tr, te) = crate::data::synthetic_images(seed, counts.0, counts.1);
        let data = (tr.downsample(side)?, te.downsample(side)?);
        Self::with_objective(
            gpu,
            (spec, objective),
            (instances, batch),
            data,
            seed as u32,
        )
    }

    /// N instances of `spec` learning `objective` (an autoencoder: [`Objective::Reconstruct`],
    /// inputs = outputs = image features, squared-error loss, usually
    /// [`MlpSpec::tied_autoencoder`]) with `batch` images per step, training on `train` and
    /// evaluating held-out batches on `held_out`.
    pub fn with_objective(
        gpu: &Gpu,
        (spec, objective): (&MlpSpec, Objective),
        (instances, batch): (usize, usize),
        (train, held_out): (ImageDataset, ImageDataset),
        seed: u32,
    ) -> Result<Self> {
        let needs = match objective {
            Objective::Classify => Loss::CrossEntropy,
            Objective::Reconstruct => Loss::Mse,
        };
        if spec.loss != needs {
            return Err(Error::invalid(match objective {
                Objective::Classify => format!(
                    "the MLP image-classification task needs the cross-entropy loss, not {}",
                    spec.loss.name()
                ),
                Objective::Reconstruct => format!(
                    "an autoencoder needs the squared-error loss, not {}",
                    spec.loss.name()
                ),
            }));
        }
        for (what, ds) in [("training", &train), ("held-out", &held_out)] {
            match objective {
                Objective::Classify if ds.features() != spec.inputs() || ds.classes != spec.classes() => {
                    return Err(Error::invalid(format!(
                        "the {what} images have {} features and {} classes, the MLP expects {} and {}",
                        ds.features(),
                        ds.classes,
                        spec.inputs(),
                        spec.classes()
                    )))
                }
                Objective::Reconstruct
                    if ds.features() != spec.inputs() || ds.features() != spec.outputs() =>
                {
                    return Err(Error::invalid(format!(
                        "the {what} images have {} features, the autoencoder maps {} inputs to {} \
                         outputs",
                        ds.features(),
                        spec.inputs(),
                        spec.outputs()
                    )))
                }
                _ => {}
            }
        }
        Ok(Self {
            mlp: GpuMlp::new(gpu, spec, instances, batch)?,
            data: ImageBatches::new(gpu, instances, batch, train, held_out, seed)?,
            spec: spec.clone(),
            objective,
        })
    }

    /// The model.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// What the model learns.
    pub fn objective(&self) -> Objective {
        self.objective
    }

    /// Rows per batch.
    pub fn batch(&self) -> usize {
        self.data.batch()
    }

    /// The batch of instance `n` as the GPU samples it: inputs (B × F, in [0, 1]) and labels.
    pub fn host_batch(&self, n: usize, batch: BatchRef) -> (Vec<f32>, Vec<u32>) {
        self.data.host_batch(n, batch)
    }

    /// The targets of the model on the GPU: the labels or the images themselves.
    fn targets(&self) -> Batched<'_> {
        match self.objective {
            Objective::Classify => self.data.y(),
            Objective::Reconstruct => self.data.x(),
        }
    }

    /// Inputs of instance `n` at `batch` in f64, and its labels.
    fn host_f64(&self, n: usize, batch: BatchRef) -> (Vec<f64>, Vec<u32>) {
        let (x, y) = self.host_batch(n, batch);
        (x.iter().map(|&v| f64::from(v)).collect(), y)
    }

    fn reference_targets<'a>(&self, x: &'a [f64], y: &'a [u32]) -> Targets<'a> {
        match self.objective {
            Objective::Classify => Targets::Labels(y),
            Objective::Reconstruct => Targets::Values(x),
        }
    }

    /// `f(spec, layout, x, targets, batch size)` on instance `n`'s host copy of `batch`: the
    /// arguments every f64 reference of the model takes.
    fn on_reference_batch<R>(
        &self,
        n: usize,
        batch: BatchRef,
        f: impl FnOnce(&MlpSpec, &ParamLayout, &[f64], Targets, usize) -> Result<R>,
    ) -> Result<R> {
        let (x, y) = self.host_f64(n, batch);
        let targets = self.reference_targets(&x, &y);
        f(&self.spec, self.mlp.layout(), &x, targets, self.batch())
    }

    fn widths(&self) -> String {
        let w: Vec<String> = self.spec.widths.iter().map(|w| w.to_string()).collect();
        w.join("-")
    }
}

impl Task for MlpTask {
    fn name(&self) -> String {
        match self.objective {
            Objective::Classify => format!(
                "mlp {} {:?} B={} N={}",
                self.widths(),
                self.spec.activation,
                self.batch(),
                self.instances()
            ),
            Objective::Reconstruct => format!(
                "autoencoder {} {:?}{} B={} N={}",
                self.widths(),
                self.spec.activation,
                if self.spec.tied.is_empty() {
                    ""
                } else {
                    " tied"
                },
                self.batch(),
                self.instances()
            ),
        }
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
        let (drawn, shard) = (self.data.drawn(), self.data.shard());
        let all = self.spec.init(rng, shard.total)?;
        let kept = shard.keep(&all, self.mlp.layout().size());
        Ok(kept.repeat(self.instances() / drawn))
    }

    fn set_shard(&mut self, _gpu: &Gpu, shard: Shard) -> Result<()> {
        let name = self.name();
        self.data.set_shard(&name, shard)
    }

    /// Copies of the instances: the model's buffers and the batch buffers grow to them (the
    /// Hessian-vector workspace is allocated again where it was).
    fn set_copies(&mut self, gpu: &Gpu, copies: usize) -> Result<()> {
        self.data.set_copies(gpu, copies)?;
        let hvp = self.mlp.has_hvp();
        self.mlp = GpuMlp::new(gpu, &self.spec, self.data.instances(), self.data.batch())?;
        if hvp {
            self.mlp.enable_hvp(gpu)?;
        }
        Ok(())
    }

    fn record_loss_grad(&self, rec: &mut Recorder, at: LossGrad) -> Result<()> {
        self.data.record(rec, at.batch)?;
        let (x, y) = (self.data.x(), self.targets());
        self.mlp
            .record_loss_grad(rec, at.theta, x, y, at.grad, at.loss)
    }

    fn reference_loss_grad(
        &self,
        n: usize,
        theta: &[f64],
        batch: BatchRef,
    ) -> Result<(f64, Vec<f64>)> {
        self.on_reference_batch(n, batch, |spec, layout, x, targets, b| {
            reference::loss_grad_targets(spec, layout, theta, x, targets, b)
        })
    }

    fn enable_hvp(&mut self, gpu: &Gpu) -> Result<()> {
        self.mlp.enable_hvp(gpu)
    }

    fn record_hvp(&self, rec: &mut Recorder, at: Hvp) -> Result<()> {
        self.data.record(rec, at.batch)?;
        let (x, y) = (self.data.x(), self.targets());
        self.mlp.record_hvp(rec, at.theta, at.v, x, y, at.out)
    }

    fn reference_hvp(
        &self,
        n: usize,
        theta: &[f64],
        v: &[f64],
        batch: BatchRef,
    ) -> Result<Vec<f64>> {
        self.on_reference_batch(n, batch, |spec, layout, x, targets, b| {
            reference::hvp_targets(spec, layout, theta, v, x, targets, b)
        })
    }

    fn export_batch(&self, batch: BatchRef) -> Result<Vec<NamedTensor>> {
        let (n, b, f) = (self.instances(), self.batch(), self.spec.inputs());
        let (xs, ys) = self.data.host_batches(batch);
        Ok(vec![
            ("x".into(), vec![n, b, f], xs),
            ("labels".into(), vec![n, b], ys),
        ])
    }

    fn gpu_bytes(&self) -> u64 {
        self.mlp.bytes() + self.data.bytes()
    }

    fn describe(&self) -> Vec<(String, String)> {
        let tied: Vec<String> = self
            .spec
            .tied
            .iter()
            .map(|(l, s)| format!("[{l},{s}]"))
            .collect();
        let (task, loss) = match self.objective {
            Objective::Classify => (
                "mlp",
                "mean softmax cross-entropy over the batch; layer l: Z = H W + b, W [in,out]",
            ),
            Objective::Reconstruct => (
                "autoencoder",
                "reconstruction: (1/B) sum_b sum_k (f(x_b)_k - x_bk)^2, pixels in [0,1]; \
                 layer l: Z = H W + b, W [in,out]; tied [l,s]: l.w = s.w^T",
            ),
        };
        vec![
            ("task".into(), task.into()),
            (
                "task.widths".into(),
                format!("[{}]", self.widths().replace('-', ",")),
            ),
            (
                "task.activation".into(),
                format!("{:?}", self.spec.activation).to_lowercase(),
            ),
            ("task.batch".into(), self.batch().to_string()),
            ("task.tied".into(), format!("[{}]", tied.join(","))),
            ("task.loss".into(), loss.into()),
        ]
    }
}
