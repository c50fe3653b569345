//! MLP image classification as a task: N instances of an MLP (own parameters), each trained on
//! its own batches of B images sampled on the GPU from a dataset (Fashion-MNIST, MNIST, or any
//! [`ImageDataset`]); a held-out split provides held-out batches.

use rand::rngs::StdRng;
use rand::Rng;

use super::{BatchRef, NamedTensor, Task};
use crate::data::ImageDataset;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::gather::{sample_index, GpuDataset};
use crate::kernels::Batched;
use crate::models::{GpuMlp, MlpSpec};
use crate::params::ParamLayout;
use crate::{reference, Error, Result};

/// Salt of the held-out batch stream.
const HELD_OUT_SALT: u32 = 0x68bc_21eb;

/// MLP classifiers on an image dataset.
pub struct MlpTask {
    spec: MlpSpec,
    batch: usize,
    train: (ImageDataset, GpuDataset),
    held_out: (ImageDataset, GpuDataset),
    mlp: GpuMlp,
    x: GpuBuffer,
    y: GpuBuffer,
    seed: u32,
}

impl MlpTask {
    /// N instances of `spec` with `batch` rows per step, training on `train` and evaluating
    /// held-out batches on `held_out`.
    pub fn new(
        gpu: &Gpu,
        spec: &MlpSpec,
        instances: usize,
        batch: usize,
        train: ImageDataset,
        held_out: ImageDataset,
        seed: u32,
    ) -> Result<Self> {
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
        let gt = GpuDataset::upload(gpu, &train)?;
        let gh = GpuDataset::upload(gpu, &held_out)?;
        Ok(Self {
            mlp: GpuMlp::new(gpu, spec, instances, batch)?,
            x: gpu.buffer("task x", instances * batch * spec.inputs())?,
            y: gpu.buffer("task y", instances * batch)?,
            spec: spec.clone(),
            batch,
            train: (train, gt),
            held_out: (held_out, gh),
            seed,
        })
    }

    /// The model.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// Rows per batch.
    pub fn batch(&self) -> usize {
        self.batch
    }

    fn source(&self, batch: BatchRef) -> (&ImageDataset, &GpuDataset, u32, u32) {
        match batch {
            BatchRef::Train(t) => (&self.train.0, &self.train.1, self.seed, t),
            BatchRef::HeldOut(t) => (
                &self.held_out.0,
                &self.held_out.1,
                self.seed ^ HELD_OUT_SALT,
                t,
            ),
        }
    }

    /// The batch of instance `n` as the GPU samples it: inputs (B × F, in [0, 1]) and labels.
    pub fn host_batch(&self, n: usize, batch: BatchRef) -> (Vec<f32>, Vec<u32>) {
        let (ds, _, seed, step) = self.source(batch);
        let f = ds.features();
        let mut x = Vec::with_capacity(self.batch * f);
        let mut y = Vec::with_capacity(self.batch);
        for b in 0..self.batch {
            let idx = sample_index(seed, n as u32, step, b as u32, ds.count as u32) as usize;
            x.extend(
                ds.pixels[idx * f..(idx + 1) * f]
                    .iter()
                    .map(|&v| f32::from(v) * (1.0 / 255.0)),
            );
            y.push(u32::from(ds.labels[idx]));
        }
        (x, y)
    }
}

impl Task for MlpTask {
    fn name(&self) -> String {
        let w: Vec<String> = self.spec.widths.iter().map(|w| w.to_string()).collect();
        format!(
            "mlp {} {:?} B={} N={}",
            w.join("-"),
            self.spec.activation,
            self.batch,
            self.instances()
        )
        .to_lowercase()
    }

    fn instances(&self) -> usize {
        self.x.len() / (self.batch * self.spec.inputs())
    }

    fn layout(&self) -> &ParamLayout {
        self.mlp.layout()
    }

    fn resample(&mut self, _gpu: &Gpu, rng: &mut StdRng) -> Result<()> {
        self.seed = rng.random();
        Ok(())
    }

    fn init_params(&self, rng: &mut StdRng) -> Result<Vec<f32>> {
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
        let (_, gds, seed, step) = self.source(batch);
        let n = self.instances();
        gds.record_batch(rec, self.batch, n, seed, step, &self.x, 0, &self.y, 0)?;
        self.mlp.record_loss_grad(
            rec,
            theta,
            Batched::dense(&self.x, self.batch * self.spec.inputs()),
            Batched::dense(&self.y, self.batch),
            grad,
            loss,
            loss_off,
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
        reference::mlp::loss_grad(&self.spec, self.mlp.layout(), theta, &x, &y, self.batch)
    }

    fn export_batch(&self, batch: BatchRef) -> Result<Vec<NamedTensor>> {
        let n = self.instances();
        let f = self.spec.inputs();
        let mut xs = Vec::with_capacity(n * self.batch * f);
        let mut ys = Vec::with_capacity(n * self.batch);
        for i in 0..n {
            let (x, y) = self.host_batch(i, batch);
            xs.extend(x);
            ys.extend(y.iter().map(|&v| v as f32));
        }
        Ok(vec![
            ("x".into(), vec![n, self.batch, f], xs),
            ("labels".into(), vec![n, self.batch], ys),
        ])
    }

    fn gpu_bytes(&self) -> u64 {
        self.mlp.bytes()
            + self.x.bytes()
            + self.y.bytes()
            + self.train.1.bytes()
            + self.held_out.1.bytes()
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
            ("task.batch".into(), self.batch.to_string()),
            ("task.tied".into(), format!("[{}]", tied.join(","))),
            (
                "task.loss".into(),
                "mean softmax cross-entropy over the batch; layer l: Z = H W + b, W [in,out]"
                    .into(),
            ),
        ]
    }
}
