//! MLP image classification as a task: N instances of an MLP (own parameters), each trained on
//! its own batches of B images sampled on the GPU from a dataset (Fashion-MNIST, MNIST, or any
//! [`ImageDataset`]); a held-out split provides held-out batches.

use super::TaskRng;

use super::images::ImageBatches;
use super::{BatchRef, NamedTensor, Task};
use crate::data::ImageDataset;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::Batched;
use crate::models::{GpuMlp, Loss, MlpSpec};
use crate::params::ParamLayout;
use crate::reference::mlp::Targets;
use crate::{reference, Error, Result};

/// MLP classifiers on an image dataset.
pub struct MlpTask {
    spec: MlpSpec,
    data: ImageBatches,
    mlp: GpuMlp,
}

impl MlpTask {
    /// N instances of `spec` (a cross-entropy classifier) with `batch` rows per step, training on
    /// `train` and evaluating held-out batches on `held_out`.
    pub fn new(
        gpu: &Gpu,
        spec: &MlpSpec,
        instances: usize,
        batch: usize,
        train: ImageDataset,
        held_out: ImageDataset,
        seed: u32,
    ) -> Result<Self> {
        if spec.loss != Loss::CrossEntropy {
            return Err(Error::invalid(format!(
                "the MLP image-classification task needs the cross-entropy loss, not {}",
                spec.loss.name()
            )));
        }
        for (what, ds) in [("training", &train), ("held-out", &held_out)] {
            if ds.features() != spec.inputs() || ds.classes != spec.classes() {
                return Err(Error::invalid(format!(
                    "the {what} images have {} features and {} classes, the MLP expects {} and {}",
                    ds.features(),
                    ds.classes,
                    spec.inputs(),
                    spec.classes()
                )));
            }
        }
        Ok(Self {
            mlp: GpuMlp::new(gpu, spec, instances, batch)?,
            data: ImageBatches::new(gpu, instances, batch, train, held_out, seed)?,
            spec: spec.clone(),
        })
    }

    /// The model.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// Rows per batch.
    pub fn batch(&self) -> usize {
        self.data.batch()
    }

    /// The batch of instance `n` as the GPU samples it: inputs (B × F, in [0, 1]) and labels.
    pub fn host_batch(&self, n: usize, batch: BatchRef) -> (Vec<f32>, Vec<u32>) {
        self.data.host_batch(n, batch)
    }
}

impl Task for MlpTask {
    fn name(&self) -> String {
        let w: Vec<String> = self.spec.widths.iter().map(|w| w.to_string()).collect();
        format!(
            "mlp {} {:?} B={} N={}",
            w.join("-"),
            self.spec.activation,
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
        self.mlp.record_loss_grad(
            rec,
            theta,
            self.data.x(),
            self.data.y(),
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
        let (x, y) = self.host_batch(n, batch);
        let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        reference::mlp::loss_grad(&self.spec, self.mlp.layout(), theta, &x, &y, self.batch())
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
        self.mlp
            .record_hvp(rec, theta, v, self.data.x(), self.data.y(), out)
    }

    fn reference_hvp(
        &self,
        n: usize,
        theta: &[f64],
        v: &[f64],
        batch: BatchRef,
    ) -> Result<Vec<f64>> {
        let (x, y) = self.host_batch(n, batch);
        let x: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        reference::mlp::hvp_targets(
            &self.spec,
            self.mlp.layout(),
            theta,
            v,
            &x,
            Targets::Labels(&y),
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

    fn gpu_bytes(&self) -> u64 {
        self.mlp.bytes() + self.data.bytes()
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
            ("task".into(), "mlp".into()),
            ("task.widths".into(), format!("[{}]", w.join(","))),
            (
                "task.activation".into(),
                format!("{:?}", self.spec.activation).to_lowercase(),
            ),
            ("task.batch".into(), self.batch().to_string()),
            ("task.tied".into(), format!("[{}]", tied.join(","))),
            (
                "task.loss".into(),
                "mean softmax cross-entropy over the batch; layer l: Z = H W + b, W [in,out]"
                    .into(),
            ),
        ]
    }
}
