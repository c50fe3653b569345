//! Training and evaluating the language model outside meta-training:
//!
//! - [`StaticTrainer`]: ordinary LM training of one set of weights shared by N streams of
//!   documents read side by side, truncated BPTT over chunks of L tokens with the state carried
//!   from chunk to chunk; the gradient is the mean over the N streams, and any optimizer of
//!   [`crate::optim`] (Adam by default) applies it.
//! - [`DynamicEval`]: dynamic evaluation (Krause et al. 2018): each of N streams has its own
//!   fast copy of the weights, starting at the static ones; every chunk is scored with the
//!   weights *before* it is learned from, then the updater (SGD, or any optimizer — a learned
//!   one with its φ) steps the fast weights on that chunk's gradient.
//!
//! Both read chunks as [`TokenChunk`]s: `[N, L]` tokens, targets and document starts.

use std::sync::Arc;

use super::model::GpuLm;
use super::spec::LmSpec;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::vec;
use crate::kernels::vec::View;
use crate::kernels::Batched;
use crate::optim::{Optimizer, OptimizerRun};
use crate::params::ParamLayout;
use crate::{Error, Result};

/// One chunk of N streams: `[N, L]` input tokens, next-token targets and document starts.
#[derive(Clone, Copy, Debug)]
pub struct TokenChunk<'a> {
    /// Input tokens.
    pub tokens: &'a [u32],
    /// Targets (the next tokens).
    pub targets: &'a [u32],
    /// A document starts at this token (the state is reset before it).
    pub starts: &'a [bool],
}

/// The carried state of N streams, double-buffered: a chunk reads one and writes the other.
#[derive(Debug)]
struct States {
    bufs: [GpuBuffer; 2],
    cur: usize,
}

impl States {
    fn new(gpu: &Gpu, len: usize) -> Result<Self> {
        Ok(Self {
            bufs: [
                gpu.buffer("lm state a", len)?,
                gpu.buffer("lm state b", len)?,
            ],
            cur: 0,
        })
    }

    fn pair(&self) -> (&GpuBuffer, &GpuBuffer) {
        (&self.bufs[self.cur], &self.bufs[1 - self.cur])
    }

    fn swap(&mut self) {
        self.cur = 1 - self.cur;
    }

    fn zero(&mut self, gpu: &Gpu) -> Result<()> {
        self.cur = 0;
        gpu.fill(&self.bufs[0], 0.0)
    }
}

/// The model of `streams` streams of chunks of `len` tokens, for parameters `theta` of one
/// block of `spec`.
fn model_for(
    gpu: &Gpu,
    spec: &LmSpec,
    theta: &[f32],
    (streams, len): (usize, usize),
) -> Result<GpuLm> {
    let lm = GpuLm::new(gpu, spec, streams, len)?;
    if theta.len() != lm.layout().size() {
        return Err(Error::invalid(format!(
            "the model has {} parameters, {} were given",
            lm.layout().size(),
            theta.len()
        )));
    }
    Ok(lm)
}

fn mean(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len().max(1) as f64
}

/// LM training of shared weights on N streams; see the [module documentation](self).
pub struct StaticTrainer {
    gpu: Arc<Gpu>,
    lm: GpuLm,
    theta: GpuBuffer,
    grads: GpuBuffer,
    grad: GpuBuffer,
    losses: GpuBuffer,
    states: States,
    run: OptimizerRun,
}

impl StaticTrainer {
    /// Train `theta` (one parameter block of `spec`) with `opt` (a hand-designed optimizer, or
    /// a learned one with `phi`) on `streams` streams read in chunks of `len` tokens.
    pub fn new(
        gpu: Arc<Gpu>,
        (spec, theta): (&LmSpec, &[f32]),
        (streams, len): (usize, usize),
        (opt, phi): (Optimizer, &[f32]),
    ) -> Result<Self> {
        let lm = model_for(&gpu, spec, theta, (streams, len))?;
        let p = lm.layout().size();
        let mut states = States::new(&gpu, streams * spec.state_len())?;
        states.zero(&gpu)?;
        Ok(Self {
            run: OptimizerRun::new(gpu.clone(), opt, phi, ParamLayout::flat(p)?, 1)?,
            theta: gpu.buffer_from("lm static weights", theta)?,
            grads: gpu.buffer("lm gradient summed over the streams", p)?,
            grad: gpu.buffer("lm gradient", p)?,
            losses: gpu.buffer("lm losses", streams)?,
            states,
            lm,
            gpu,
        })
    }

    /// The model.
    pub fn model(&self) -> &GpuLm {
        &self.lm
    }

    /// One training step on `chunk`: the loss of every stream at the current weights, the mean
    /// gradient, one optimizer step, the state carried. Returns the mean loss (read back).
    pub fn step(&mut self, chunk: TokenChunk) -> Result<f64> {
        let (n, p) = (self.lm.instances(), self.lm.layout().size());
        self.lm
            .upload_chunk(&self.gpu, chunk.tokens, chunk.targets, chunk.starts)?;
        let mut rec = Recorder::new(&self.gpu);
        self.lm.record(
            &mut rec,
            Batched {
                buf: &self.theta,
                off: 0,
                batch_stride: 0,
            },
            self.states.pair(),
            Some(Batched {
                buf: &self.grads,
                off: 0,
                batch_stride: 0,
            }),
            View::new(&self.losses, 0),
        )?;
        // The sum over the streams of their mean losses' gradients, to the mean.
        let (sum, avg) = (View::new(&self.grads, 0), View::new(&self.grad, 0));
        vec::axpby(&mut rec, 1.0 / n as f32, sum, 0.0, sum, avg, p)?;
        self.run.step(&mut rec, &self.theta, &self.grad)?;
        rec.submit()?;
        self.states.swap();
        Ok(mean(&self.gpu.read(&self.losses)?))
    }

    /// Start every stream from a zero state (a new pass over the data).
    pub fn reset_state(&mut self) -> Result<()> {
        self.states.zero(&self.gpu)
    }

    /// The current weights (read back).
    pub fn weights(&self) -> Result<Vec<f32>> {
        self.gpu.read(&self.theta)
    }
}

/// Dynamic evaluation of N streams; see the [module documentation](self).
pub struct DynamicEval {
    gpu: Arc<Gpu>,
    lm: GpuLm,
    fast: GpuBuffer,
    grads: GpuBuffer,
    losses: GpuBuffer,
    token_losses: GpuBuffer,
    states: States,
    run: Option<OptimizerRun>,
}

impl DynamicEval {
    /// Evaluate `streams` streams of chunks of `len` tokens, each from its own copy of the
    /// static weights `theta`, updated after every chunk by `updater` (an optimizer and its
    /// φ; `None`: static evaluation, the weights never change).
    pub fn new(
        gpu: Arc<Gpu>,
        (spec, theta): (&LmSpec, &[f32]),
        (streams, len): (usize, usize),
        updater: Option<(Optimizer, &[f32])>,
    ) -> Result<Self> {
        let lm = model_for(&gpu, spec, theta, (streams, len))?;
        let layout = lm.layout().clone();
        let mut states = States::new(&gpu, streams * spec.state_len())?;
        states.zero(&gpu)?;
        let run = match updater {
            Some((opt, phi)) => Some(OptimizerRun::new(
                gpu.clone(),
                opt,
                phi,
                layout.clone(),
                streams,
            )?),
            None => None,
        };
        Ok(Self {
            fast: gpu.buffer_from("lm fast weights", &theta.repeat(streams))?,
            grads: gpu.buffer("lm gradients", streams * layout.size())?,
            losses: gpu.buffer("lm losses", streams)?,
            token_losses: gpu.buffer("lm token losses", streams * len)?,
            states,
            run,
            lm,
            gpu,
        })
    }

    /// Score `chunk` with the current weights (the loss of each stream, read back), then, with
    /// an updater, step each stream's weights on the chunk's gradient.
    pub fn chunk(&mut self, chunk: TokenChunk) -> Result<Vec<f32>> {
        self.run_chunk(chunk, false)?;
        self.gpu.read(&self.losses)
    }

    /// As [`DynamicEval::chunk`], but returns the loss of every token, `[N, L]` (scored with
    /// the weights before the update).
    pub fn chunk_token_losses(&mut self, chunk: TokenChunk) -> Result<Vec<f32>> {
        self.run_chunk(chunk, true)?;
        self.gpu.read(&self.token_losses)
    }

    fn run_chunk(&mut self, chunk: TokenChunk, per_token: bool) -> Result<()> {
        let p = self.lm.layout().size();
        self.lm
            .upload_chunk(&self.gpu, chunk.tokens, chunk.targets, chunk.starts)?;
        let mut rec = Recorder::new(&self.gpu);
        let grad = self.run.as_ref().map(|_| Batched::dense(&self.grads, p));
        self.lm.record(
            &mut rec,
            Batched::dense(&self.fast, p),
            self.states.pair(),
            grad,
            View::new(&self.losses, 0),
        )?;
        if per_token {
            self.lm
                .record_token_losses(&mut rec, View::new(&self.token_losses, 0))?;
        }
        if let Some(run) = &mut self.run {
            run.step(&mut rec, &self.fast, &self.grads)?;
        }
        rec.submit()?;
        self.states.swap();
        Ok(())
    }

    /// Start every stream from a zero state (the weights stay as they are).
    pub fn reset_state(&mut self) -> Result<()> {
        self.states.zero(&self.gpu)
    }

    /// The fast weights of every stream (read back), N blocks.
    pub fn weights(&self) -> Result<Vec<f32>> {
        self.gpu.read(&self.fast)
    }
}
