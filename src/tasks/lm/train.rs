//! Training and evaluating the language model outside meta-training:
//!
//! - [`StaticTrainer`]: ordinary LM training of one set of weights shared by N streams of
//!   documents read side by side, truncated BPTT over chunks of L tokens with the state carried
//!   from chunk to chunk; the gradient is the mean over the N streams, and any optimizer of
//!   [`crate::optim`] (Adam by default) applies it.
//! - [`DynamicEval`]: dynamic evaluation (Krause et al. 2018): each of N streams has its own
//!   copy of the fast weights (the tensor groups it is given; the others are shared and fixed),
//!   starting at the static ones; every chunk is scored with the weights *before* it is learned
//!   from, then the [`Update`] (SGD or Krause's RMS rule with decay back to the static weights,
//!   or any optimizer — a learned one with its φ) steps the fast weights on that chunk's
//!   gradient.
//!
//! Both read chunks as [`TokenChunk`]s: `[N, L]` tokens, targets and document starts.

use std::sync::Arc;

use super::dynamic::{record_update, Update, UpdateArgs};
use super::model::{GpuLm, Parts};
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

/// What [`StaticTrainer::snapshot`] reads back and [`StaticTrainer::restore`] writes: the
/// weights, the optimizer's state (`state_len × P` floats) and steps, and the state every
/// stream carries into its next chunk.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerSnapshot {
    /// The weights.
    pub theta: Vec<f32>,
    /// The optimizer's state.
    pub opt_state: Vec<f32>,
    /// Optimizer steps taken.
    pub opt_steps: usize,
    /// The carried state of every stream.
    pub lm_state: Vec<f32>,
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

    /// Everything the next step depends on (read back).
    pub fn snapshot(&self) -> Result<TrainerSnapshot> {
        Ok(TrainerSnapshot {
            theta: self.weights()?,
            opt_state: self.run.state()?,
            opt_steps: self.run.steps_taken(),
            lm_state: self.gpu.read(self.states.pair().0)?,
        })
    }

    /// Continue from `s` (a [`StaticTrainer::snapshot`] of a trainer of the same model, streams
    /// and optimizer).
    pub fn restore(&mut self, s: &TrainerSnapshot) -> Result<()> {
        let want = self.states.bufs[0].len();
        if s.theta.len() != self.lm.layout().size() || s.lm_state.len() != want {
            return Err(Error::invalid(format!(
                "lm trainer: a snapshot of {} weights and {} state values, this trainer has {} and {want}",
                s.theta.len(),
                s.lm_state.len(),
                self.lm.layout().size()
            )));
        }
        self.run.set_state(&s.opt_state, s.opt_steps)?;
        self.gpu.write(&self.theta, 0, &s.theta)?;
        self.states.cur = 0;
        self.gpu.write(&self.states.bufs[0], 0, &s.lm_state)
    }
}

/// Dynamic evaluation of N streams; see the [module documentation](self).
pub struct DynamicEval {
    gpu: Arc<Gpu>,
    lm: GpuLm,
    fast: GpuBuffer,
    shared: Option<GpuBuffer>,
    statics: GpuBuffer,
    grads: GpuBuffer,
    losses: GpuBuffer,
    token_losses: GpuBuffer,
    states: States,
    updater: Option<Updater>,
}

/// What one chunk of [`DynamicEval`] computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    /// The streams' losses, then the update.
    Losses,
    /// Also every token's loss.
    TokenLosses,
    /// The gradient at the current weights, no update.
    Gradient,
}

/// An [`Update`] ready to record.
enum Updater {
    /// The SGD or RMS rule of `dynamic.wgsl` (the RMS rule's factors on the GPU).
    Rule {
        lr: f32,
        decay: f32,
        scales: Option<GpuBuffer>,
    },
    /// An optimizer's step, then the decay.
    Run { run: Box<OptimizerRun>, decay: f32 },
}

impl DynamicEval {
    /// Evaluate `streams` streams of chunks of `len` tokens from the static weights `theta`
    /// (one block of [`LmSpec::layout`]). The tensors of the groups `fast` names
    /// ([`LmSpec::split`]) are each stream's own copy, stepped by `update` after every chunk
    /// (`None`: static evaluation, the weights never change); the others are read from one
    /// shared copy and never change.
    pub fn new(
        gpu: Arc<Gpu>,
        (spec, theta): (&LmSpec, &[f32]),
        (streams, len): (usize, usize),
        fast: &[String],
        update: Option<Update>,
    ) -> Result<Self> {
        if fast.is_empty() {
            return Err(Error::invalid(
                "dynamic evaluation needs fast weights: name at least one tensor group (e.g. \
                 'lstm')",
            ));
        }
        let lm = GpuLm::split(&gpu, spec, fast, streams, len)?;
        let split = lm.parts().clone();
        let (theta_fast, theta_shared) = split.parts(theta)?;
        let pf = split.fast.size();
        let mut states = States::new(&gpu, streams * spec.state_len())?;
        states.zero(&gpu)?;
        let updater = match update {
            None => None,
            Some(update) => {
                update.check()?;
                Some(match update {
                    Update::Optimizer { opt, phi, decay } => Updater::Run {
                        run: Box::new(OptimizerRun::new(
                            gpu.clone(),
                            opt,
                            &phi,
                            split.fast.clone(),
                            streams,
                        )?),
                        decay,
                    },
                    Update::Rms {
                        lr,
                        decay,
                        eps,
                        rms,
                    } => {
                        if rms.len() != pf {
                            return Err(Error::invalid(format!(
                                "dynamic evaluation: a gradient RMS of {} values for {pf} fast \
                                 weights; gather it with the same fast groups",
                                rms.len()
                            )));
                        }
                        let scales = super::dynamic::rms_scales(&rms, eps, decay);
                        Updater::Rule {
                            lr,
                            decay,
                            scales: Some(gpu.buffer_from("lm rms factors", &scales)?),
                        }
                    }
                    Update::Sgd { lr, decay } => Updater::Rule {
                        lr,
                        decay,
                        scales: None,
                    },
                })
            }
        };
        Ok(Self {
            fast: gpu.buffer_from("lm fast weights", &theta_fast.repeat(streams))?,
            shared: if theta_shared.is_empty() {
                None
            } else {
                Some(gpu.buffer_from("lm shared weights", &theta_shared)?)
            },
            statics: gpu.buffer_from("lm static fast weights", &theta_fast)?,
            grads: gpu.buffer("lm gradients", streams * pf)?,
            losses: gpu.buffer("lm losses", streams)?,
            token_losses: gpu.buffer("lm token losses", streams * len)?,
            states,
            updater,
            lm,
            gpu,
        })
    }

    /// The model (its split: [`GpuLm::parts`]).
    pub fn model(&self) -> &GpuLm {
        &self.lm
    }

    /// Score `chunk` with the current weights (the loss of each stream, read back), then, with
    /// an update, step each stream's fast weights on the chunk's gradient.
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

    /// The root mean square of every fast coordinate's gradient over the streams and chunks
    /// of `chunks`, read at the current weights (which do not change) with the state carried:
    /// the statistics of Krause's RMS rule, gathered on training data.
    pub fn gradient_rms<'c>(
        &mut self,
        chunks: impl IntoIterator<Item = TokenChunk<'c>>,
    ) -> Result<Vec<f32>> {
        use crate::kernels::reduce::{reduce, Out, ReduceOp, Reduction, Strided};
        let (n, pf) = (self.lm.instances(), self.lm.layout().size());
        let acc = self.gpu.buffer("lm gradient squares", pf)?;
        let mut count = 0usize;
        let gpu = self.gpu.clone();
        for chunk in chunks {
            let mut rec = Recorder::new(&gpu);
            self.record_chunk(&mut rec, chunk, Pass::Gradient)?;
            let mut r = Reduction::new(ReduceOp::SumSquares, n, pf, 1);
            r.accumulate = count > 0;
            reduce(
                &mut rec,
                r,
                Strided {
                    buf: &self.grads,
                    off: 0,
                    batch_stride: 0,
                    row_stride: pf,
                    col_stride: 1,
                },
                Out {
                    buf: &acc,
                    off: 0,
                    batch_stride: 0,
                    col_stride: 1,
                },
            )?;
            rec.submit()?;
            self.states.swap();
            count += n;
        }
        if count == 0 {
            return Err(Error::invalid(
                "gradient statistics need at least one chunk",
            ));
        }
        let sums: Vec<f32> = self.gpu.read(&acc)?;
        Ok(sums
            .iter()
            .map(|&v| (f64::from(v) / count as f64).sqrt() as f32)
            .collect())
    }

    /// Score `chunk` (per token with `per_token`), then step the fast weights with the update,
    /// in one submission; the state carried.
    fn run_chunk(&mut self, chunk: TokenChunk, per_token: bool) -> Result<()> {
        let gpu = self.gpu.clone();
        let mut rec = Recorder::new(&gpu);
        let pass = if per_token {
            Pass::TokenLosses
        } else {
            Pass::Losses
        };
        self.record_chunk(&mut rec, chunk, pass)?;
        rec.submit()?;
        self.states.swap();
        Ok(())
    }

    /// Record one chunk's `pass` (the caller submits and then swaps the states).
    fn record_chunk(&mut self, rec: &mut Recorder, chunk: TokenChunk, pass: Pass) -> Result<()> {
        let (n, pf) = (self.lm.instances(), self.lm.layout().size());
        self.lm
            .upload_chunk(&self.gpu, chunk.tokens, chunk.targets, chunk.starts)?;
        let one = |buf| Batched {
            buf,
            off: 0,
            batch_stride: 0,
        };
        let weights = Parts {
            fast: Some(Batched::dense(&self.fast, pf)),
            shared: self.shared.as_ref().map(one),
        };
        let grads = Parts::fast(Batched::dense(&self.grads, pf));
        // The update is skipped when gathering gradients at fixed weights.
        let updater = match pass {
            Pass::Gradient => None,
            _ => self.updater.as_mut(),
        };
        let with_grad = pass == Pass::Gradient || updater.is_some();
        self.lm.record_parts(
            rec,
            weights,
            self.states.pair(),
            with_grad.then_some(&grads),
            View::new(&self.losses, 0),
        )?;
        if pass == Pass::TokenLosses {
            self.lm
                .record_token_losses(rec, View::new(&self.token_losses, 0))?;
        }
        let args = |scales| UpdateArgs {
            theta: Batched::dense(&self.fast, pf),
            grad: Batched::dense(&self.grads, pf),
            statics: (&self.statics, 0),
            scales,
            batch: n,
            count: pf,
        };
        match updater {
            None => {}
            Some(Updater::Rule { lr, decay, scales }) => {
                record_update(rec, &args(scales.as_ref()), *lr, *decay)?
            }
            Some(Updater::Run { run, decay }) => {
                run.step(rec, &self.fast, &self.grads)?;
                if *decay > 0.0 {
                    record_update(rec, &args(None), 0.0, *decay)?;
                }
            }
        }
        Ok(())
    }

    /// Start every stream from a zero state (the weights stay as they are).
    pub fn reset_state(&mut self) -> Result<()> {
        self.states.zero(&self.gpu)
    }

    /// The fast weights of every stream (read back), N blocks of the fast layout.
    pub fn weights(&self) -> Result<Vec<f32>> {
        self.gpu.read(&self.fast)
    }
}
