//! Wrapper of `shaders/gather.wgsl`: a dataset held on the GPU as bytes, and per-instance batches
//! sampled from it by a counter-based hash (reproducible for recomputation, no host round trip).

use super::{check_region, u32_of};
use crate::data::ImageDataset;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::vec::View;
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "gather.wgsl";
    pub struct GatherParams {
        rows: u32, features: u32, batch: u32, count: u32, seed: u32, step: u32, x_off: u32, y_off: u32,
        period: u32, first: u32, _p1: u32, _p2: u32,
    }
    /// The batch-gathering kernel.
    pub GATHER = gather(read images: u32, read labels: u32, write x, write y: u32);
}

/// The hash used to sample batches (and the noise of ES): the same function as `pcg` in the
/// WGSL prelude.
pub fn pcg(v: u32) -> u32 {
    let s = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277_803_737);
    (w >> 22) ^ w
}

/// Index of the example drawn for instance `n`, row `b`, at inner step `step`.
pub fn sample_index(seed: u32, n: u32, step: u32, b: u32, count: u32) -> u32 {
    pcg(pcg(pcg(pcg(seed) ^ n) ^ step) ^ b) % count
}

/// An image dataset on the GPU: pixels as packed bytes (4 per u32), labels as u32.
#[derive(Clone, Debug)]
pub struct GpuDataset {
    images: GpuBuffer,
    labels: GpuBuffer,
    count: usize,
    features: usize,
    classes: usize,
}

impl GpuDataset {
    /// Upload `ds` (one byte per pixel: 60 000 Fashion-MNIST images take 47 MB).
    pub fn upload(gpu: &Gpu, ds: &ImageDataset) -> Result<Self> {
        let f = ds.features();
        if ds.count == 0 || f == 0 {
            return Err(Error::invalid("cannot upload an empty dataset"));
        }
        u32_of("dataset bytes", ds.count * f)?;
        let mut words = vec![0u32; (ds.pixels.len()).div_ceil(4)];
        for (i, &v) in ds.pixels.iter().enumerate() {
            words[i / 4] |= u32::from(v) << (8 * (i % 4));
        }
        let labels: Vec<u32> = ds.labels.iter().map(|&l| u32::from(l)).collect();
        Ok(Self {
            images: gpu.buffer_from("dataset images", &words)?,
            labels: gpu.buffer_from("dataset labels", &labels)?,
            count: ds.count,
            features: f,
            classes: ds.classes,
        })
    }

    /// Bytes held on the GPU.
    pub fn bytes(&self) -> u64 {
        self.images.bytes() + self.labels.bytes()
    }

    /// Number of examples.
    pub fn count(&self) -> usize {
        self.count
    }

    /// Features (pixels) per example.
    pub fn features(&self) -> usize {
        self.features
    }

    /// Number of classes.
    pub fn classes(&self) -> usize {
        self.classes
    }

    /// Record the gathering of a batch of `rows` examples for each of `batch` instances at inner
    /// step `step` of the stream `seed`: `x[x.off + (n·rows + b)·F + f]` (f32 in [0, 1]) and
    /// `y[y.off + n·rows + b]`.
    pub fn record_batch(
        &self,
        rec: &mut Recorder,
        rows: usize,
        batch: usize,
        seed_step: (u32, u32),
        (x, y): (View, View),
    ) -> Result<()> {
        self.record_batch_copies(rec, rows, (batch, batch, 0), seed_step, (x, y))
    }

    /// [`GpuDataset::record_batch`] for `batch` instances that are copies of the first `period`,
    /// which are instances `first..first + period` of a larger set (a shard, see
    /// [`crate::tasks::Shard`]): instance n draws the rows of instance first + n mod `period`.
    pub fn record_batch_copies(
        &self,
        rec: &mut Recorder,
        rows: usize,
        (batch, period, first): (usize, usize, usize),
        (seed, step): (u32, u32),
        (x, y): (View, View),
    ) -> Result<()> {
        if period == 0 || batch % period != 0 {
            return Err(Error::invalid(format!(
                "{batch} instances are not copies of {period}"
            )));
        }
        let (View { buf: x, off: x_off }, View { buf: y, off: y_off }) = (x, y);
        check_region("gather x", x, x_off, &[(batch * rows * self.features, 1)])?;
        check_region("gather y", y, y_off, &[(batch * rows, 1)])?;
        let p = GatherParams {
            rows: u32_of("rows", rows)?,
            features: u32_of("features", self.features)?,
            batch: u32_of("batch", batch)?,
            count: u32_of("count", self.count)?,
            seed,
            step,
            x_off: u32_of("offset", x_off)?,
            y_off: u32_of("offset", y_off)?,
            period: u32_of("distinct instances", period)?,
            first: u32_of("first instance", first)?,
            ..Default::default()
        };
        let total = (batch * rows * self.features) as u64;
        rec.dispatch(
            &GATHER,
            &[],
            &[&self.images, &self.labels, x, y],
            &p,
            total.div_ceil(256),
        )
    }
}
