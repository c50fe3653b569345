//! Per-instance image batches sampled on the GPU for the image tasks ([`super::MlpTask`], both
//! objectives): a training and a held-out [`ImageDataset`] held on the GPU, and
//! for each instance n, step t and row b an example index drawn by a counter-based hash of
//! (seed, n, t, b) (see `shaders/gather.wgsl`), so a recomputed step sees the same images.

use rand::Rng;

use crate::data::ImageDataset;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::gather::{sample_index, GpuDataset};
use crate::kernels::vec::View;
use crate::kernels::Batched;
use crate::tasks::{BatchRef, Shard, TaskRng};
use crate::{Error, Result};

/// Salt of the held-out batch stream.
const HELD_OUT_SALT: u32 = 0x68bc_21eb;

/// Batches of B images per instance from a training and a held-out dataset, gathered on the GPU
/// into `x` (`[N, B, F]` f32 pixels in [0, 1]) and `y` (`[N, B]` u32 labels).
pub struct ImageBatches {
    /// Instances: copies of the first `drawn`, which draw their own batches.
    instances: usize,
    drawn: usize,
    /// Where the drawn instances lie in the whole set (their batch streams are its).
    shard: Shard,
    batch: usize,
    train: (ImageDataset, GpuDataset),
    held_out: (ImageDataset, GpuDataset),
    x: GpuBuffer,
    y: GpuBuffer,
    seed: u32,
}

impl ImageBatches {
    /// Upload both datasets (which must have the same number of features) and allocate the batch
    /// buffers of `instances` instances with `batch` rows each.
    pub fn new(
        gpu: &Gpu,
        instances: usize,
        batch: usize,
        train: ImageDataset,
        held_out: ImageDataset,
        seed: u32,
    ) -> Result<Self> {
        if instances == 0 || batch == 0 {
            return Err(Error::invalid(
                "image batches need at least one instance and one row",
            ));
        }
        if train.features() != held_out.features() {
            return Err(Error::invalid(format!(
                "the training images have {} features, the held-out images {}",
                train.features(),
                held_out.features()
            )));
        }
        let gt = GpuDataset::upload(gpu, &train)?;
        let gh = GpuDataset::upload(gpu, &held_out)?;
        Ok(Self {
            x: gpu.buffer("task x", instances * batch * train.features())?,
            y: gpu.buffer("task y", instances * batch)?,
            instances,
            drawn: instances,
            shard: Shard::whole(instances),
            batch,
            train: (train, gt),
            held_out: (held_out, gh),
            seed,
        })
    }

    /// Instances N.
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// Run `copies` copies of the instances drawn (copy c of instance n is instance c·N + n, with
    /// n's batches): the batch buffers grow to the copies.
    pub fn set_copies(&mut self, gpu: &Gpu, copies: usize) -> Result<()> {
        let n = crate::tasks::copied(self.drawn, copies)?;
        self.x = gpu.buffer("task x", n * self.batch * self.features())?;
        self.y = gpu.buffer("task y", n * self.batch)?;
        self.instances = n;
        Ok(())
    }

    /// Hold the shard `shard` of a larger set: instance n draws the batches of instance
    /// `shard.first + n` of the set (before any copies).
    pub fn set_shard(&mut self, task: &str, shard: Shard) -> Result<()> {
        shard.check(task, self.drawn)?;
        if self.instances != self.drawn {
            return Err(Error::invalid(
                "set the shard of image batches before their copies",
            ));
        }
        self.shard = shard;
        Ok(())
    }

    /// The shard of the whole set the instances are.
    pub fn shard(&self) -> Shard {
        self.shard
    }

    /// Distinct instances (each copy's).
    pub fn drawn(&self) -> usize {
        self.drawn
    }

    /// Rows per batch B.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Features (pixels) per image F.
    pub fn features(&self) -> usize {
        self.train.0.features()
    }

    /// The training images.
    pub fn train(&self) -> &ImageDataset {
        &self.train.0
    }

    /// The held-out images.
    pub fn held_out(&self) -> &ImageDataset {
        &self.held_out.0
    }

    /// The gathered inputs, `[N, B, F]`: instance n's batch starts at `n·B·F`.
    pub fn x(&self) -> Batched<'_> {
        Batched::dense(&self.x, self.batch * self.features())
    }

    /// The gathered labels, `[N, B]` (u32).
    pub fn y(&self) -> Batched<'_> {
        Batched::dense(&self.y, self.batch)
    }

    /// Draw a new seed for the batch streams of the next outer step.
    pub fn resample(&mut self, rng: &mut TaskRng) {
        self.seed = rng.random();
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

    /// Record the gathering of `batch` for every instance into [`ImageBatches::x`] and
    /// [`ImageBatches::y`].
    pub fn record(&self, rec: &mut Recorder, batch: BatchRef) -> Result<()> {
        let (_, gds, seed, step) = self.source(batch);
        gds.record_batch_copies(
            rec,
            self.batch,
            (self.instances, self.drawn, self.shard.first),
            (seed, step),
            (View::new(&self.x, 0), View::new(&self.y, 0)),
        )
    }

    /// The batch of instance `n` as the GPU gathers it: inputs (B × F, in [0, 1]) and labels.
    pub fn host_batch(&self, n: usize, batch: BatchRef) -> (Vec<f32>, Vec<u32>) {
        let (ds, _, seed, step) = self.source(batch);
        let f = ds.features();
        let mut x = Vec::with_capacity(self.batch * f);
        let mut y = Vec::with_capacity(self.batch);
        for b in 0..self.batch {
            let n = (self.shard.first + n % self.drawn) as u32;
            let idx = sample_index(seed, n, step, b as u32, ds.count as u32) as usize;
            x.extend(
                ds.pixels[idx * f..(idx + 1) * f]
                    .iter()
                    .map(|&v| f32::from(v) * (1.0 / 255.0)),
            );
            y.push(u32::from(ds.labels[idx]));
        }
        (x, y)
    }

    /// The batch of every instance: inputs `[N, B, F]` and labels `[N, B]` (as f32).
    pub fn host_batches(&self, batch: BatchRef) -> (Vec<f32>, Vec<f32>) {
        let (n, f) = (self.instances, self.features());
        let mut xs = Vec::with_capacity(n * self.batch * f);
        let mut ys = Vec::with_capacity(n * self.batch);
        for i in 0..n {
            let (x, y) = self.host_batch(i, batch);
            xs.extend(x);
            ys.extend(y.iter().map(|&v| v as f32));
        }
        (xs, ys)
    }

    /// Bytes of GPU memory held: both datasets and the batch buffers.
    pub fn bytes(&self) -> u64 {
        self.x.bytes() + self.y.bytes() + self.train.1.bytes() + self.held_out.1.bytes()
    }
}
