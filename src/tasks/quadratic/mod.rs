//! The L2L quadratic family as a task: f(θ) = ‖Wθ − y‖², fresh W, y ~ N(0, 1) per instance at
//! every `resample`, θ₀ ~ N(0, init_std²). It has no batches: every step sees the same function.
//! The folder holds the instances and their GPU form ([`model`]), the loss/gradient and
//! Hessian-vector kernels ([`kernels`], `quadratic.wgsl`) and the f64 reference
//! ([`mod@reference`]).

pub mod kernels;
pub mod model;
pub mod reference;

pub use model::{GpuQuadratic, Quadratics, DEFAULT_DIM};

use super::{
    BatchRef, Hvp, LossGrad, NamedTensor, Sample, Shard, Stream, Task, TaskFamily, TaskRng,
};
use crate::config::Config;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::matmul::Activation;
use crate::params::ParamLayout;
use crate::Result;

/// `task.kind = "quadratic"`: d = `task.dim`.
pub static FAMILY: TaskFamily = TaskFamily {
    name: "quadratic",
    about: "L2L quadratics f(θ) = ‖Wθ − y‖², W, y ~ N(0, 1)",
    hidden: &[],
    activation: Activation::Identity,
    check: |t| {
        (t.dim > kernels::MAX_DIM).then(|| {
            (
                format!(
                    "task.dim = {} is beyond the quadratic kernel's largest dimension, {}",
                    t.dim,
                    kernels::MAX_DIM
                ),
                format!("use task.dim = {} or less", kernels::MAX_DIM),
            )
        })
    },
    build,
    kernels: || vec![&kernels::QUADRATIC, &kernels::QUADRATIC_HVP],
};

fn build(gpu: &Gpu, cfg: &Config, sample: Sample, instances: usize) -> Result<Box<dyn Task>> {
    let mut rng = Stream::Instances.rng(cfg.seed, sample);
    Ok(Box::new(QuadraticTask::new(
        gpu,
        cfg.task.dim,
        instances,
        &mut rng,
    )?))
}

/// Quadratic instances of dimension d.
pub struct QuadraticTask {
    /// The instances as the GPU holds them (`copies` copies of the drawn ones).
    q: Quadratics,
    copies: usize,
    shard: Shard,
    gpu_q: GpuQuadratic,
    layout: ParamLayout,
    init_std: f32,
}

impl QuadraticTask {
    /// N instances of dimension `dim`, drawn from `rng`.
    pub fn new(gpu: &Gpu, dim: usize, instances: usize, rng: &mut TaskRng) -> Result<Self> {
        let q = Quadratics::sample(rng, dim, instances)?;
        let mut layout = ParamLayout::new();
        layout.add("theta", &[dim])?;
        Ok(Self {
            gpu_q: GpuQuadratic::upload(gpu, &q)?,
            shard: Shard::whole(instances),
            q,
            copies: 1,
            layout,
            init_std: 0.01,
        })
    }

    /// The instances' W and y.
    pub fn quadratics(&self) -> &Quadratics {
        &self.q
    }

    fn data_buffer(&self) -> &GpuBuffer {
        self.gpu_q.data()
    }
}

impl Task for QuadraticTask {
    fn name(&self) -> String {
        format!("quadratic d={} N={}", self.q.dim, self.q.instances)
    }

    fn instances(&self) -> usize {
        self.q.instances
    }

    fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    fn resample(&mut self, gpu: &Gpu, rng: &mut TaskRng) -> Result<()> {
        let (d, sh) = (self.q.dim, self.shard);
        let all = Quadratics::sample(rng, d, sh.total)?;
        let drawn = Quadratics {
            dim: d,
            instances: sh.count,
            data: sh.keep(&all.data, d * d + d),
        };
        self.q = drawn.tiled(self.copies);
        gpu.write(self.data_buffer(), 0, &self.q.data)
    }

    fn init_params(&self, rng: &mut TaskRng) -> Result<Vec<f32>> {
        // The initial draws of the whole set (`init` reads only the counts), the shard's kept.
        let all = Quadratics {
            dim: self.q.dim,
            instances: self.shard.total,
            data: Vec::new(),
        };
        let drawn = self.shard.keep(&all.init(rng, self.init_std)?, self.q.dim);
        Ok(drawn.repeat(self.copies))
    }

    fn set_shard(&mut self, _gpu: &Gpu, shard: Shard) -> Result<()> {
        shard.check(&self.name(), self.q.instances / self.copies)?;
        self.shard = shard;
        Ok(())
    }

    fn set_copies(&mut self, gpu: &Gpu, copies: usize) -> Result<()> {
        let drawn = self.q.instances / self.copies;
        super::copied(drawn, copies)?;
        let d = self.q.dim;
        let base = Quadratics {
            dim: d,
            instances: drawn,
            data: self.q.data[..drawn * (d * d + d)].to_vec(),
        };
        self.q = base.tiled(copies);
        self.copies = copies;
        self.gpu_q = GpuQuadratic::upload(gpu, &self.q)?;
        Ok(())
    }

    fn record_loss_grad(&self, rec: &mut Recorder, at: LossGrad) -> Result<()> {
        let LossGrad {
            theta, grad, loss, ..
        } = at;
        self.gpu_q
            .record_loss_grad(rec, theta, grad, loss.buf, loss.off)
    }

    fn reference_loss_grad(
        &self,
        n: usize,
        theta: &[f64],
        _batch: BatchRef,
    ) -> Result<(f64, Vec<f64>)> {
        let (w, y) = self.q.instance(n);
        let w: Vec<f64> = w.iter().map(|&v| f64::from(v)).collect();
        let y: Vec<f64> = y.iter().map(|&v| f64::from(v)).collect();
        Ok(reference::loss_grad(self.q.dim, &w, &y, theta))
    }

    fn enable_hvp(&mut self, _gpu: &Gpu) -> Result<()> {
        Ok(())
    }

    fn record_hvp(&self, rec: &mut Recorder, at: Hvp) -> Result<()> {
        self.gpu_q.record_hvp(rec, at.v, at.out)
    }

    fn reference_hvp(
        &self,
        n: usize,
        _theta: &[f64],
        v: &[f64],
        _batch: BatchRef,
    ) -> Result<Vec<f64>> {
        let (w, _) = self.q.instance(n);
        let w: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
        Ok(reference::hvp(self.q.dim, &w, v))
    }

    fn export_batch(&self, _batch: BatchRef) -> Result<Vec<NamedTensor>> {
        let (n, d) = (self.q.instances, self.q.dim);
        let mut w = Vec::with_capacity(n * d * d);
        let mut y = Vec::with_capacity(n * d);
        for i in 0..n {
            let (wi, yi) = self.q.instance(i);
            w.extend_from_slice(wi);
            y.extend_from_slice(yi);
        }
        Ok(vec![
            ("W".into(), vec![n, d, d], w),
            ("y".into(), vec![n, d], y),
        ])
    }

    fn batched(&self) -> bool {
        false
    }

    fn gpu_bytes(&self) -> u64 {
        self.gpu_q.data().bytes()
    }

    fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("task".into(), "quadratic".into()),
            ("task.dim".into(), self.q.dim.to_string()),
            (
                "task.loss".into(),
                "sum_i (W theta - y)_i^2 per instance; W [N,d,d] row-major, y [N,d]".into(),
            ),
        ]
    }
}
