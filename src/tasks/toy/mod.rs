//! `task.kind = "pes_toy"`: the 2-d problem on which the PES paper (Vicol, Metz and
//! Sohl-Dickstein 2021) shows truncated backprop's bias when tuning a learning-rate schedule,
//! f(x) = √(x0² + 5) − √5 + sin²(x1)·e^{−5x0²} + ¼|x1 − 100| from x = (1, 1). Every instance is
//! the same problem (nothing is drawn); the kernels (`toy.wgsl`) give f, ∇f and ∇²f·v, and
//! [`mod@reference`] their f64 form.

pub mod reference;

use super::{BatchRef, Hvp, LossGrad, NamedTensor, Sample, Task, TaskFamily, TaskRng};
use crate::config::Config;
use crate::gpu::{Gpu, Kernel, Recorder};
use crate::kernels::matmul::Activation;
use crate::kernels::{check_region, u32_of, Batched};
use crate::params::ParamLayout;
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "toy.wgsl";
    pub struct ToyParams {
        batch: u32, t_off: u32, t_bs: u32, g_off: u32, g_bs: u32, o_off: u32, o_bs: u32, _pad: u32,
    }
    /// f and ∇f of every instance.
    pub TOY_LOSS_GRAD = toy_loss_grad(read theta, write grad, write loss);
    /// ∇²f·v of every instance.
    pub TOY_HVP = toy_hvp(read theta, read v, write hv);
}

/// `task.kind = "pes_toy"`.
pub static FAMILY: TaskFamily = TaskFamily {
    name: "pes_toy",
    about: "the PES paper's 2-d toy f(x) = √(x0² + 5) − √5 + sin²(x1)·e^(−5x0²) + |x1 − 100|/4 from x = (1, 1)",
    hidden: &[],
    activation: Activation::Identity,
    check: |_| None,
    build,
    kernels: || SHADER.kernels.to_vec(),
};

fn build(_gpu: &Gpu, _cfg: &Config, _sample: Sample, instances: usize) -> Result<Box<dyn Task>> {
    Ok(Box::new(ToyTask::new(instances)?))
}

/// N copies of the toy problem.
pub struct ToyTask {
    /// Instances: `copies` copies of the `drawn` ones.
    instances: usize,
    drawn: usize,
    layout: ParamLayout,
}

impl ToyTask {
    /// `instances` instances.
    pub fn new(instances: usize) -> Result<Self> {
        if instances == 0 {
            return Err(Error::invalid("the toy task needs at least one instance"));
        }
        let mut layout = ParamLayout::new();
        layout.add("x", &[2])?;
        Ok(Self {
            instances,
            drawn: instances,
            layout,
        })
    }

    /// Record `kernel` over every instance: θ and a second pair of floats per instance (the
    /// gradient written, or v read) as `Batched`, and `out` (`out_len` floats per instance: the
    /// loss, or ∇²f·v); the three are distinct buffers.
    fn record(
        &self,
        rec: &mut Recorder,
        kernel: &'static Kernel,
        (theta, second): (Batched, Batched),
        (out, out_len): (Batched, usize),
    ) -> Result<()> {
        let n = self.instances;
        for (what, b, len) in [
            ("toy θ", theta, 2),
            ("toy input", second, 2),
            ("toy output", out, out_len),
        ] {
            check_region(what, b.buf, b.off, &[(n, b.batch_stride), (len, 1)])?;
        }
        let ids = [theta.buf.id, second.buf.id, out.buf.id];
        if ids[0] == ids[1] || ids[0] == ids[2] || ids[1] == ids[2] {
            return Err(Error::invalid(format!(
                "{}: θ, its second input or output and the output need buffers of their own",
                kernel.entry
            )));
        }
        let ((t_off, t_bs), (g_off, g_bs)) = (theta.offsets("θ")?, second.offsets("input")?);
        let (o_off, o_bs) = out.offsets("output")?;
        let p = ToyParams {
            batch: u32_of("instances", n)?,
            t_off,
            t_bs,
            g_off,
            g_bs,
            o_off,
            o_bs,
            _pad: 0,
        };
        rec.dispatch(
            kernel,
            &[],
            &[theta.buf, second.buf, out.buf],
            &p,
            (n as u64).div_ceil(64),
        )
    }
}

impl Task for ToyTask {
    fn name(&self) -> String {
        format!("pes_toy N={}", self.instances)
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    fn resample(&mut self, _gpu: &Gpu, _rng: &mut TaskRng) -> Result<()> {
        Ok(())
    }

    /// Every instance is the same problem: copies are more instances.
    fn set_copies(&mut self, _gpu: &Gpu, copies: usize) -> Result<()> {
        self.instances = super::copied(self.drawn, copies)?;
        Ok(())
    }

    /// Every instance is the same problem: a shard is its count of them.
    fn set_shard(&mut self, _gpu: &Gpu, shard: super::Shard) -> Result<()> {
        shard.check(&self.name(), self.drawn)
    }

    /// x = (1, 1) for every instance (the paper's start; nothing is drawn).
    fn init_params(&self, _rng: &mut TaskRng) -> Result<Vec<f32>> {
        Ok(vec![1.0; 2 * self.instances])
    }

    fn record_loss_grad(&self, rec: &mut Recorder, at: LossGrad) -> Result<()> {
        let loss = Batched {
            buf: at.loss.buf,
            off: at.loss.off,
            batch_stride: 1,
        };
        self.record(rec, &TOY_LOSS_GRAD, (at.theta, at.grad), (loss, 1))
    }

    fn reference_loss_grad(
        &self,
        _n: usize,
        theta: &[f64],
        _batch: BatchRef,
    ) -> Result<(f64, Vec<f64>)> {
        Ok(reference::loss_grad(theta))
    }

    fn enable_hvp(&mut self, _gpu: &Gpu) -> Result<()> {
        Ok(())
    }

    fn record_hvp(&self, rec: &mut Recorder, at: Hvp) -> Result<()> {
        self.record(rec, &TOY_HVP, (at.theta, at.v), (at.out, 2))
    }

    fn reference_hvp(
        &self,
        _n: usize,
        theta: &[f64],
        v: &[f64],
        _batch: BatchRef,
    ) -> Result<Vec<f64>> {
        Ok(reference::hvp(theta, v))
    }

    fn export_batch(&self, _batch: BatchRef) -> Result<Vec<NamedTensor>> {
        Ok(Vec::new())
    }

    fn batched(&self) -> bool {
        false
    }

    fn describe(&self) -> Vec<(String, String)> {
        vec![
            ("task".into(), "pes_toy".into()),
            (
                "task.loss".into(),
                "sqrt(x0^2 + 5) - sqrt(5) + sin(x1)^2 exp(-5 x0^2) + |x1 - 100|/4".into(),
            ),
        ]
    }

    fn gpu_bytes(&self) -> u64 {
        0
    }
}
