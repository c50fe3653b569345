//! The meta-trainer: one outer step = meta-forward (unroll of T inner steps of N instances),
//! checkpointed meta-backward into φ (the learned optimizer) and θ0 (the learned
//! initialisation), reductions, meta-loss and the Adam meta-update — all recorded into one
//! submission; the CPU waits only for the final status readback.

use std::sync::Arc;

use super::meta_optim::{self, status, MetaAdamBuffers};
use super::plan::Plan;
use super::settings::{MemoryReport, MetaConfig, MetaGradient, NonFinite, Skip, StepReport};
use super::sizing::Sizing;
use super::unroll::{Io, Unroll};
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::optim::{Mode, Optimizer, Workspace};
use crate::tasks::{Sample, Stream, Task, TaskRng};
use crate::{Error, Result};

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
    /// PES: every pair's accumulated noise in the current episode (when `offset > 0`).
    pub noise: Option<Vec<f32>>,
    /// The task's carried state before the episode's next step ([`Task::carried_len`] per
    /// instance; when `offset > 0` and the task carries one).
    pub task_state: Option<Vec<f32>>,
    /// Data-parallel runs ([`crate::dist::DataParallel`]) in the middle of an episode: the
    /// instances of each device, whose carried states `carry` holds one after the other; empty
    /// for one device.
    pub shards: Vec<usize>,
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
        copy_instances(&gpu, task.as_mut(), &cfg)?;
        let n = task.instances();
        let ws = opt.workspace(&gpu, task.layout(), n, cfg.mode == Mode::SecondOrder)?;
        let unroll = Unroll::new(&gpu, task.as_mut(), &opt, &cfg, ws.bytes())?;
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
            ws,
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

    /// The GPU memory a trainer of `opt` on `task` under `cfg` will hold, computed before its
    /// unroll is allocated (only the optimizer's small workspace is, and in second-order mode
    /// the task's Hessian-vector product buffers), and an error naming the limit when a buffer
    /// or the whole run cannot fit the adapter ([`Gpu::check_memory`]). [`MetaTrainer::new`]
    /// makes the same check before it allocates.
    pub fn estimate(
        gpu: &Gpu,
        task: &mut dyn Task,
        opt: &Optimizer,
        cfg: &MetaConfig,
    ) -> Result<MemoryReport> {
        cfg.validate(opt)?;
        if cfg.mode == Mode::SecondOrder {
            task.enable_hvp(gpu)?;
        }
        copy_instances(gpu, task, cfg)?;
        let n = task.instances();
        let ws = opt.workspace(gpu, task.layout(), n, cfg.mode == Mode::SecondOrder)?;
        let size = Sizing::new(gpu, n, task.layout().size(), opt, cfg)?;
        size.check_fits(gpu, ws.bytes(), task.gpu_bytes())?;
        Ok(size.report(ws.bytes(), task.gpu_bytes()))
    }

    /// Bytes held on the GPU, by purpose.
    pub fn memory(&self) -> MemoryReport {
        self.unroll
            .memory(&self.ws, self.task.as_ref(), self.carry.is_some())
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

    /// PES: every pair's accumulated noise on the GPU.
    fn noise(&self) -> Option<&GpuBuffer> {
        self.unroll.particles().and_then(|p| p.noise())
    }

    /// The state that changes during meta-training (read back from the GPU).
    pub fn state(&self) -> Result<TrainerState> {
        let carry = match (&self.carry, self.offset) {
            (Some(c), o) if o > 0 => Some(self.gpu.read(c)?),
            _ => None,
        };
        let noise = match (self.noise(), self.offset) {
            (Some(x), o) if o > 0 => Some(self.gpu.read(x)?),
            _ => None,
        };
        let task_state = if self.offset > 0 && self.task.carried_len() > 0 {
            Some(self.task.carried_state(&self.gpu, self.offset)?)
        } else {
            None
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
            noise,
            task_state,
            shards: Vec::new(),
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
        if mid_episode && !state.shards.is_empty() {
            return Err(Error::invalid(format!(
                "the state was saved in the middle of an episode by {} devices (instances {:?}); resume it on as many devices, or from a checkpoint at an episode's start",
                state.shards.len(),
                state.shards
            )));
        }
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
            match (self.noise(), &state.noise) {
                (Some(x), Some(v)) => want("accumulated PES noise", v.len(), x.len())?,
                (None, None) => {}
                (Some(_), None) => {
                    return Err(Error::invalid(
                        "the state is in the middle of a PES episode but holds no accumulated \
                         noise: it was saved by a run with another estimator",
                    ))
                }
                (None, Some(_)) => {
                    return Err(Error::invalid(
                        "the state holds accumulated PES noise, but this trainer's estimator is \
                         not PES",
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
            if let (Some(x), Some(v)) = (self.noise(), &state.noise) {
                self.gpu.write(x, 0, v)?;
            }
            match (&state.task_state, self.task.carried_len()) {
                (None, 0) => {}
                (Some(v), _) => self.task.set_carried_state(&self.gpu, state.offset, v)?,
                (None, _) => {
                    return Err(Error::invalid(format!(
                        "the state is in the middle of an episode of {}, which carries state \
                         from step to step, but holds none: it was saved by another task",
                        self.task.name()
                    )))
                }
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
            // An outer step has counted itself already; an inspection sees the next one's noise.
            draw: self.step as u64 + u64::from(!carry_out),
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
        self.record_meta_update(&mut rec)?;
        Ok(rec)
    }

    /// The Adam meta-update of step `self.step` from the meta-gradient in the unroll's buffer.
    fn record_meta_update(&self, rec: &mut Recorder) -> Result<()> {
        meta_optim::meta_adam(
            rec,
            MetaAdamBuffers {
                grad: self.unroll.meta_grad(),
                params: &self.meta_params,
                moments: &self.moments,
                status: &self.status,
            },
            self.opt.phi_len() + self.unroll.params(),
            self.step,
            &self.cfg.meta_opt,
        )
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
        self.advance();
        Ok(started)
    }

    /// Where the next unroll starts once an outer step has been submitted.
    fn advance(&mut self) {
        let t = self.cfg.unroll;
        self.offset = if self.carry.is_some() && self.offset + t < self.cfg.episode {
            self.offset + t
        } else {
            0
        };
    }

    /// Data-parallel, first half of an outer step: draw the episode's instances where one
    /// starts, record and submit the unroll and its reverse (the meta-gradient of this
    /// trainer's instances, no update). Returns the episode offset the unroll starts at.
    pub(crate) fn submit_gradient(&mut self) -> Result<usize> {
        if self.offset == 0 {
            self.resample()?;
        }
        self.step += 1;
        let mut rec = Recorder::new(&self.gpu);
        self.record_meta_gradient(&mut rec, true)?;
        rec.submit()?;
        Ok(self.offset)
    }

    /// The meta-gradient (φ̄ then θ̄0) and meta-loss [`MetaTrainer::submit_gradient`] left.
    pub(crate) fn read_gradient(&self) -> Result<(Vec<f32>, f32)> {
        let st: Vec<f32> = self.gpu.read(&self.status)?;
        Ok((self.gpu.read(self.unroll.meta_grad())?, st[status::LOSS]))
    }

    /// Data-parallel, second half: put the meta-gradient and meta-loss of every instance (summed
    /// over the devices) in place of this trainer's, take its norm and apply the meta-update
    /// (`update`) or leave the meta-parameters as they are (a device that receives them from
    /// the one that updates). The episode moves on either way.
    pub(crate) fn submit_update(&mut self, grad: &[f32], loss: f32, update: bool) -> Result<()> {
        if update {
            self.gpu.write(self.unroll.meta_grad(), 0, grad)?;
            self.gpu.write(&self.status, status::LOSS, &[loss])?;
            let mut rec = Recorder::new(&self.gpu);
            self.unroll.record_grad_norm(&mut rec, &self.io(true))?;
            self.record_meta_update(&mut rec)?;
            rec.submit()?;
        }
        self.advance();
        Ok(())
    }

    /// Data-parallel: the status slots of the last update and the meta-parameters (φ then θ0).
    pub(crate) fn read_update(&self) -> Result<(Vec<f32>, Vec<f32>)> {
        Ok((
            self.gpu.read(&self.status)?,
            self.gpu.read(&self.meta_params)?,
        ))
    }

    /// Data-parallel: take the meta-parameters the updating device computed.
    pub(crate) fn write_meta_params(&mut self, meta_params: &[f32]) -> Result<()> {
        self.gpu.write(&self.meta_params, 0, meta_params)
    }

    /// Data-parallel: the step report from status slots (read back from the updating device).
    pub(crate) fn report_status(&self, st: &[f32], offset: usize) -> Result<StepReport> {
        self.report(st, offset)
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
        let per_instance = if self.cfg.mode == Mode::Reptile || self.unroll.particles().is_some() {
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

    /// The meta-gradient (or ES/PES estimate) the last outer step applied, before clipping:
    /// φ̄ followed by θ̄0.
    pub fn last_meta_gradient(&self) -> Result<Vec<f32>> {
        self.gpu.read(self.unroll.meta_grad())
    }

    /// Losses ℓ_t of every instance in the last outer step, (T + 1) × N.
    pub fn last_losses(&self) -> Result<Vec<f32>> {
        self.gpu.read(self.unroll.losses())
    }
}

/// ES and PES run their particles as copies of the task's instances.
fn copy_instances(gpu: &Gpu, task: &mut dyn Task, cfg: &MetaConfig) -> Result<()> {
    match cfg.estimator.copies() {
        1 => Ok(()),
        copies => task.set_copies(gpu, copies),
    }
}
