//! The meta-trainer: one outer step = meta-forward (unroll of T inner steps of N instances),
//! checkpointed meta-backward into φ (the learned optimizer) and θ0 (the learned
//! initialisation), reductions, meta-loss and the Adam meta-update — all recorded into one
//! submission; the CPU waits only for the final status readback.

use std::sync::Arc;

use super::meta_optim::{self, status, MetaAdam, MetaAdamBuffers};
use super::plan::{Plan, Schedule};
use super::unroll::{Io, Unroll};
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::optim::{Mode, Optimizer, Workspace};
use crate::tasks::{Sample, Stream, Task, TaskRng};
use crate::{Error, Result};

/// Weights w_t of the meta-loss M = Σ_{t=0}^{T} w_t · mean_n ℓ_t.
#[derive(Clone, Debug, PartialEq)]
pub enum LossWeights {
    /// w_0 = 0, w_t = 1/T for t = 1..T: the mean loss after each update (L2L, up to scale).
    Uniform,
    /// w_T = 1 only: the loss after the last update (MAML).
    Last,
    /// Given weights, T + 1 of them.
    Given(Vec<f32>),
}

impl LossWeights {
    /// The T + 1 weights.
    pub fn resolve(&self, t: usize) -> Result<Vec<f32>> {
        Ok(match self {
            Self::Uniform => (0..=t)
                .map(|i| if i == 0 { 0.0 } else { 1.0 / t as f32 })
                .collect(),
            Self::Last => (0..=t).map(|i| if i == t { 1.0 } else { 0.0 }).collect(),
            Self::Given(w) => {
                if w.len() != t + 1 {
                    return Err(Error::invalid(format!(
                        "{} meta-loss weights given for an unroll of {t} steps; give T + 1 = {}",
                        w.len(),
                        t + 1
                    )));
                }
                w.clone()
            }
        })
    }
}

/// The batch of the final term w_T·ℓ_T.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinalBatch {
    /// The next training batch.
    Train,
    /// A held-out batch (the MAML query set).
    HeldOut,
}

/// Settings of meta-training.
#[derive(Clone, Debug, PartialEq)]
pub struct MetaConfig {
    /// Inner steps T per unroll.
    pub unroll: usize,
    /// Inner steps per episode, a multiple of `unroll` (0: one unroll per episode). An episode
    /// of L steps is trained as L/T truncated unrolls: θ and the optimizer state carry from one
    /// unroll to the next, φ is updated after each, and instances are resampled when a new
    /// episode starts (L2L's scheme).
    pub episode: usize,
    /// Gradient paths of the meta-backward.
    pub mode: Mode,
    /// Checkpointing schedule.
    pub schedule: Schedule,
    /// A budget in bytes for the checkpoint slots: when set, it replaces `schedule` by Revolve
    /// with as many slots as fit (each slot holds θ and the optimizer state of all instances;
    /// batches are regenerated from their seeds and need no storage).
    pub memory_budget: Option<u64>,
    /// Meta-loss weights.
    pub weights: LossWeights,
    /// Batch of the final loss term.
    pub final_batch: FinalBatch,
    /// Learn the optimizer's φ.
    pub learn_optimizer: bool,
    /// Learn the initialisation θ0 (shared by all instances).
    pub learn_init: bool,
    /// The Adam meta-optimizer.
    pub meta_opt: MetaAdam,
    /// Seed of task sampling and initialisations.
    pub seed: u64,
}

impl Default for MetaConfig {
    fn default() -> Self {
        Self {
            unroll: 20,
            episode: 0,
            mode: Mode::Truncated,
            schedule: Schedule::StoreAll,
            memory_budget: None,
            weights: LossWeights::Uniform,
            final_batch: FinalBatch::Train,
            learn_optimizer: true,
            learn_init: false,
            meta_opt: MetaAdam::default(),
            seed: 0,
        }
    }
}

/// Which quantity was not finite when an update was skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NonFinite {
    /// The meta-loss.
    MetaLoss,
    /// The meta-gradient.
    MetaGradient,
    /// Both.
    Both,
}

/// Why an outer step's update was skipped: what the GPU's status word says (the meta-loss
/// and the squared meta-gradient norm), and what the step's losses and meta-gradient show when
/// they are read back after the skip.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Skip {
    /// Which of the meta-loss and the meta-gradient norm was not finite.
    pub what: NonFinite,
    /// The first inner step t of the unroll (0 ≤ t ≤ T) at which the loss ℓ_t of some
    /// instance is not finite, and how many of the N instances it is for.
    pub loss_step: Option<(usize, usize)>,
    /// Inner steps of the episode taken before this unroll (so ℓ_t belongs to episode step
    /// `offset + t`).
    pub offset: usize,
    /// Instances N.
    pub instances: usize,
    /// Some component of φ̄ (the learned optimizer's meta-gradient) is not finite.
    pub phi_bar: bool,
    /// Some component of θ̄0 (the learned initialisation's meta-gradient) is not finite.
    pub theta0_bar: bool,
}

impl Skip {
    /// One sentence naming what went non-finite.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if matches!(self.what, NonFinite::MetaLoss | NonFinite::Both) {
            parts.push(match self.loss_step {
                Some((t, k)) => format!(
                    "the meta-loss is not finite: the loss of inner step {t} of the unroll (step {} of the episode) is not finite for {k} of {} instances",
                    self.offset + t,
                    self.instances
                ),
                None => "the meta-loss overflowed (every inner loss is finite)".to_string(),
            });
        }
        if matches!(self.what, NonFinite::MetaGradient | NonFinite::Both) {
            parts.push(match (self.phi_bar, self.theta0_bar) {
                (true, true) => "φ̄ and θ̄0 hold non-finite values".to_string(),
                (true, false) => "φ̄ holds non-finite values".to_string(),
                (false, true) => "θ̄0 holds non-finite values".to_string(),
                (false, false) => {
                    "the squared meta-gradient norm overflowed (every component of φ̄ and θ̄0 is finite)"
                        .to_string()
                }
            });
        }
        parts.join("; ")
    }
}

/// What one outer step reports.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepReport {
    /// Outer step number (from 1).
    pub step: usize,
    /// Meta-loss M.
    pub meta_loss: f32,
    /// Norm of the meta-gradient before clipping.
    pub grad_norm: f32,
    /// Set when the update was skipped (φ, θ0 and the meta-optimizer's moments are unchanged).
    pub skipped: Option<Skip>,
}

/// A meta-gradient read back for inspection (tests, export).
#[derive(Clone, Debug, PartialEq)]
pub struct MetaGradient {
    /// Meta-loss M.
    pub meta_loss: f32,
    /// ∂M/∂φ.
    pub phi: Vec<f32>,
    /// ∂M/∂θ0 (the sum over instances of each instance's θ̄_0; zeros unless the init is learned).
    pub theta0: Vec<f32>,
    /// Per-instance θ̄_0 (N × P).
    pub theta0_per_instance: Vec<f32>,
    /// Losses ℓ_t of every instance, (T + 1) × N.
    pub losses: Vec<f32>,
}

/// Bytes held by the trainer's GPU buffers, by purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryReport {
    /// Checkpoint slots (θ and optimizer state), `slots × slot_bytes`.
    pub checkpoints: u64,
    /// Number of slots.
    pub slots: usize,
    /// Bytes of one slot.
    pub slot_bytes: u64,
    /// Adjoints, gradient, partial sums, losses and the optimizer's workspace.
    pub working: u64,
    /// The task's data, batches and model activations.
    pub task: u64,
}

impl MemoryReport {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.checkpoints + self.working + self.task
    }
}

/// Meta-trains an optimizer and/or an initialisation on a task family.
pub struct MetaTrainer {
    gpu: Arc<Gpu>,
    task: Box<dyn Task>,
    opt: Optimizer,
    ws: Workspace,
    cfg: MetaConfig,
    unroll: Unroll,
    meta_params: GpuBuffer,
    moments: GpuBuffer,
    status: GpuBuffer,
    init: GpuBuffer,
    carry: Option<GpuBuffer>,
    offset: usize,
    step: usize,
    episodes: u64,
    rng: TaskRng,
    episode_rng_pos: u128,
}

/// Everything that changes during meta-training, enough to continue bit for bit: see
/// [`MetaTrainer::state`] and [`MetaTrainer::restore`].
#[derive(Clone, Debug, PartialEq)]
pub struct TrainerState {
    /// Outer steps taken.
    pub step: usize,
    /// Episodes started.
    pub episodes: u64,
    /// Position (in 32-bit words) of the run's instance stream ([`Stream::Instances`]): with
    /// the seed and `episodes` (which names the initial-θ stream of each episode), the whole
    /// random state.
    pub rng_pos: u128,
    /// Position of the instance stream where the current episode's instances were drawn.
    pub episode_rng_pos: u128,
    /// Inner steps already taken in the current episode.
    pub offset: usize,
    /// φ followed by θ0.
    pub meta_params: Vec<f32>,
    /// The meta-optimizer's first and second moments.
    pub moments: Vec<f32>,
    /// θ and optimizer state carried to the next unroll of the episode (when `offset > 0`).
    pub carry: Option<Vec<f32>>,
}

impl MetaTrainer {
    /// Build a trainer; φ is initialised by the optimizer and θ0 from the task's distribution
    /// (instance 0's draw), both from the [`Stream::Meta`] stream of `cfg.seed`; the instances
    /// of each episode come from the [`Stream::Instances`] stream and their initial θ from the
    /// episode's [`Stream::Init`] stream.
    pub fn new(
        gpu: Arc<Gpu>,
        mut task: Box<dyn Task>,
        opt: Optimizer,
        cfg: MetaConfig,
    ) -> Result<Self> {
        cfg.validate(&opt)?;
        if task.instances() == 0 || task.layout().size() == 0 {
            return Err(Error::invalid(format!(
                "the task {} has no instance or no parameter to train; use at least one instance",
                task.name()
            )));
        }
        let unroll = Unroll::new(&gpu, task.as_mut(), &opt, &cfg)?;
        let n = task.instances();
        let p = unroll.params();
        let slot_len = opt.slot_len(unroll.count());
        let phi_len = opt.phi_len();
        // Independent streams (see `Stream`): the instances of every episode from `rng`, φ and
        // the starting θ0 from the meta stream, each episode's initial θ from its own stream.
        let rng = Stream::Instances.rng(cfg.seed, Sample::Train);
        let init_theta = task.init_params(&mut Stream::Init(0).rng(cfg.seed, Sample::Train))?;
        let mut meta_rng = Stream::Meta.rng(cfg.seed, Sample::Train);
        let mut meta0 = opt.init_phi(&mut meta_rng);
        let theta0 = task.init_params(&mut meta_rng)?;
        meta0.extend_from_slice(&theta0[..p]);
        Ok(Self {
            moments: gpu.buffer("meta-optimizer moments", 2 * (phi_len + p))?,
            status: gpu.buffer("status", status::LEN)?,
            init: gpu.buffer_from("instance initialisations", &init_theta)?,
            carry: if cfg.episode > cfg.unroll {
                Some(gpu.buffer("carried state", slot_len)?)
            } else {
                None
            },
            offset: 0,
            episodes: 0,
            meta_params: gpu.buffer_from("meta-parameters", &meta0)?,
            ws: opt.workspace(&gpu, task.layout(), n)?,
            unroll,
            gpu,
            task,
            opt,
            cfg,
            step: 0,
            episode_rng_pos: rng.get_word_pos(),
            rng,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &MetaConfig {
        &self.cfg
    }

    /// The inner optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    /// The task family.
    pub fn task(&self) -> &dyn Task {
        self.task.as_ref()
    }

    /// The checkpointing plan of one unroll.
    pub fn plan(&self) -> &Plan {
        self.unroll.plan()
    }

    /// Outer steps taken.
    pub fn steps_taken(&self) -> usize {
        self.step
    }

    /// Bytes held on the GPU, by purpose.
    pub fn memory(&self) -> MemoryReport {
        self.unroll.memory(&self.ws, self.task.as_ref())
    }

    /// Current φ.
    pub fn phi(&self) -> Result<Vec<f32>> {
        let v: Vec<f32> = self.gpu.read(&self.meta_params)?;
        Ok(v[..self.opt.phi_len()].to_vec())
    }

    /// Current learned initialisation θ0 (P floats).
    pub fn theta0(&self) -> Result<Vec<f32>> {
        let v: Vec<f32> = self.gpu.read(&self.meta_params)?;
        Ok(v[self.opt.phi_len()..].to_vec())
    }

    /// Replace φ.
    pub fn set_phi(&mut self, phi: &[f32]) -> Result<()> {
        self.opt.check_phi(phi)?;
        self.gpu.write(&self.meta_params, 0, phi)
    }

    /// Replace the learned initialisation θ0.
    pub fn set_theta0(&mut self, theta0: &[f32]) -> Result<()> {
        if theta0.len() != self.unroll.params() {
            return Err(Error::invalid(format!(
                "θ0 has {} values, the task needs {}",
                theta0.len(),
                self.unroll.params()
            )));
        }
        self.gpu
            .write(&self.meta_params, self.opt.phi_len(), theta0)
    }

    /// Replace the per-instance initial parameters used when θ0 is not learned (N × P).
    pub fn set_instance_init(&mut self, theta: &[f32]) -> Result<()> {
        if theta.len() != self.unroll.count() {
            return Err(Error::invalid(format!(
                "{} initial values given, the task needs N·P = {}",
                theta.len(),
                self.unroll.count()
            )));
        }
        self.gpu.write(&self.init, 0, theta)
    }

    /// The per-instance initial parameters used when θ0 is not learned.
    pub fn instance_init(&self) -> Result<Vec<f32>> {
        self.gpu.read(&self.init)
    }

    /// The meta-loss weights w_0 … w_T.
    pub fn weights(&self) -> &[f32] {
        self.unroll.weights()
    }

    /// Draw the instances of the next episode (number `self.episodes`, from 0) and, unless θ0
    /// is learned, their initial θ from that episode's own stream.
    fn resample(&mut self) -> Result<()> {
        self.episode_rng_pos = self.rng.get_word_pos();
        self.task.resample(&self.gpu, &mut self.rng)?;
        if !self.cfg.learn_init {
            let mut rng = Stream::Init(self.episodes).rng(self.cfg.seed, Sample::Train);
            let init = self.task.init_params(&mut rng)?;
            self.gpu.write(&self.init, 0, &init)?;
        }
        self.episodes += 1;
        Ok(())
    }

    /// The state that changes during meta-training (read back from the GPU).
    pub fn state(&self) -> Result<TrainerState> {
        let carry = match (&self.carry, self.offset) {
            (Some(c), o) if o > 0 => Some(self.gpu.read(c)?),
            _ => None,
        };
        Ok(TrainerState {
            step: self.step,
            episodes: self.episodes,
            rng_pos: self.rng.get_word_pos(),
            episode_rng_pos: self.episode_rng_pos,
            offset: self.offset,
            meta_params: self.gpu.read(&self.meta_params)?,
            moments: self.gpu.read(&self.moments)?,
            carry,
        })
    }

    /// Continue from `state` (taken from a trainer of the same task, optimizer and config): the
    /// following outer steps are bit-identical to those of the trainer it was taken from.
    pub fn restore(&mut self, state: &TrainerState) -> Result<()> {
        let want = |what: &str, got: usize, need: usize| {
            if got == need {
                Ok(())
            } else {
                Err(Error::invalid(format!(
                    "the saved {what} has {got} values, this trainer needs {need}: the state belongs to another optimizer or model shape"
                )))
            }
        };
        let phi_len = self.opt.phi_len();
        want(
            "φ and θ0",
            state.meta_params.len(),
            phi_len + self.unroll.params(),
        )?;
        want(
            "meta-optimizer state",
            state.moments.len(),
            2 * (phi_len + self.unroll.params()),
        )?;
        let t = self.cfg.unroll;
        let mid_episode = state.offset > 0;
        if mid_episode {
            if state.offset % t != 0 || state.offset >= self.cfg.episode || state.episodes == 0 {
                return Err(Error::invalid(format!(
                    "the saved episode offset {} (after {} episodes) does not fit episodes of {} steps in unrolls of {t}",
                    state.offset, state.episodes, self.cfg.episode
                )));
            }
            match (&self.carry, &state.carry) {
                (Some(c), Some(v)) => want("carried state", v.len(), c.len())?,
                _ => {
                    return Err(Error::invalid(
                        "the state is in the middle of an episode but holds no carried state",
                    ))
                }
            }
        }
        self.gpu.write(&self.meta_params, 0, &state.meta_params)?;
        self.gpu.write(&self.moments, 0, &state.moments)?;
        self.step = state.step;
        self.episodes = state.episodes;
        self.offset = state.offset;
        self.episode_rng_pos = state.episode_rng_pos;
        if mid_episode {
            // Redraw the current episode's instances from where the generator stood when they
            // were first drawn, then put back the carried θ and optimizer state.
            self.rng.set_word_pos(state.episode_rng_pos);
            self.episodes = state.episodes - 1;
            self.resample()?;
            self.episodes = state.episodes;
            if self.rng.get_word_pos() != state.rng_pos {
                return Err(Error::invalid(format!(
                    "redrawing the current episode moved the generator to {}, the saved state says {}: the state belongs to another task",
                    self.rng.get_word_pos(),
                    state.rng_pos
                )));
            }
            if let (Some(c), Some(v)) = (&self.carry, &state.carry) {
                self.gpu.write(c, 0, v)?;
            }
        }
        self.rng.set_word_pos(state.rng_pos);
        Ok(())
    }

    fn io(&self, carry_out: bool) -> Io<'_> {
        Io {
            task: self.task.as_ref(),
            opt: &self.opt,
            ws: &self.ws,
            cfg: &self.cfg,
            meta_params: &self.meta_params,
            status: &self.status,
            init: &self.init,
            carry: self.carry.as_ref(),
            carry_out,
            offset: self.offset,
        }
    }

    /// Record the unroll and its reverse; leaves the meta-gradient in the unroll's
    /// `meta_grad` and the meta-loss in `status`. With `carry_out`, the state the unroll ends
    /// in is kept for the next unroll of the episode (an outer step); without, the episode is
    /// left as it was (an inspection: [`MetaTrainer::meta_gradient`]).
    fn record_meta_gradient(&self, rec: &mut Recorder, carry_out: bool) -> Result<()> {
        self.unroll.record(rec, &self.io(carry_out))
    }

    fn record_outer_step(&mut self) -> Result<Recorder<'_>> {
        if self.offset == 0 {
            self.resample()?;
        }
        self.step += 1;
        let mut rec = Recorder::new(&self.gpu);
        self.record_meta_gradient(&mut rec, true)?;
        meta_optim::meta_adam(
            &mut rec,
            MetaAdamBuffers {
                grad: self.unroll.meta_grad(),
                params: &self.meta_params,
                moments: &self.moments,
                status: &self.status,
            },
            self.opt.phi_len() + self.unroll.params(),
            self.step,
            &self.cfg.meta_opt,
        )?;
        Ok(rec)
    }

    /// The report of the outer step just taken from its status word; after a skip, the losses
    /// and the meta-gradient are read back to say which went non-finite (`offset`: where the
    /// unroll started in its episode).
    fn report(&self, st: &[f32], offset: usize) -> Result<StepReport> {
        let what = match st[status::SKIPPED] as u32 {
            0 => None,
            1 => Some(NonFinite::MetaLoss),
            2 => Some(NonFinite::MetaGradient),
            _ => Some(NonFinite::Both),
        };
        let skipped = match what {
            None => None,
            Some(what) => Some(self.diagnose(what, offset)?),
        };
        Ok(StepReport {
            step: self.step,
            meta_loss: st[status::LOSS],
            grad_norm: st[status::GRAD_NORM2].sqrt(),
            skipped,
        })
    }

    fn diagnose(&self, what: NonFinite, offset: usize) -> Result<Skip> {
        let n = self.task.instances();
        let losses: Vec<f32> = self.gpu.read(self.unroll.losses())?;
        let loss_step = losses.chunks(n.max(1)).enumerate().find_map(|(t, row)| {
            let k = row.iter().filter(|v| !v.is_finite()).count();
            (k > 0).then_some((t, k))
        });
        let grad: Vec<f32> = self.gpu.read(self.unroll.meta_grad())?;
        let (phi, theta0) = grad.split_at(self.opt.phi_len().min(grad.len()));
        let bad = |v: &[f32]| v.iter().any(|x| !x.is_finite());
        Ok(Skip {
            what,
            loss_step,
            offset,
            instances: n,
            phi_bar: bad(phi),
            theta0_bar: bad(theta0),
        })
    }

    /// One outer step on freshly sampled instances, blocking until its status is read back.
    pub fn step(&mut self) -> Result<StepReport> {
        let offset = self.submit_outer_step()?;
        let st: Vec<f32> = self.gpu.read(&self.status)?;
        self.report(&st, offset)
    }

    /// One outer step; the returned future resolves when its status has been read back (the
    /// future polls the device without blocking the executor).
    pub async fn step_async(&mut self) -> Result<StepReport> {
        let offset = self.submit_outer_step()?;
        let st: Vec<f32> = self.gpu.read_async(&self.status, 0, status::LEN).await?;
        self.report(&st, offset)
    }

    /// Record and submit one outer step; returns the episode offset its unroll started at.
    fn submit_outer_step(&mut self) -> Result<usize> {
        let started = self.offset;
        self.record_outer_step()?.submit()?;
        let t = self.cfg.unroll;
        self.offset = if self.carry.is_some() && self.offset + t < self.cfg.episode {
            self.offset + t
        } else {
            0
        };
        Ok(started)
    }

    /// Inner steps already taken in the current episode (where the next unroll starts).
    pub fn episode_offset(&self) -> usize {
        self.offset
    }

    /// The meta-gradient at the current φ and θ0 on the current instances (no resampling, no
    /// update), read back in full.
    pub fn meta_gradient(&mut self) -> Result<MetaGradient> {
        let mut rec = Recorder::new(&self.gpu);
        self.record_meta_gradient(&mut rec, false)?;
        rec.submit()?;
        let st: Vec<f32> = self.gpu.read(&self.status)?;
        let mg: Vec<f32> = self.gpu.read(self.unroll.meta_grad())?;
        let phi_len = self.opt.phi_len();
        let per_instance = if self.cfg.mode == Mode::Reptile {
            Vec::new()
        } else {
            self.gpu.read(self.unroll.theta_adjoint())?
        };
        Ok(MetaGradient {
            meta_loss: st[status::LOSS],
            phi: mg[..phi_len].to_vec(),
            theta0: mg[phi_len..].to_vec(),
            theta0_per_instance: per_instance,
            losses: self.gpu.read(self.unroll.losses())?,
        })
    }

    /// Losses ℓ_t of every instance in the last outer step, (T + 1) × N.
    pub fn last_losses(&self) -> Result<Vec<f32>> {
        self.gpu.read(self.unroll.losses())
    }
}
