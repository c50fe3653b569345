//! The settings of meta-training ([`MetaConfig`] and its parts) and what the trainer reports:
//! a step ([`StepReport`], a skipped update's [`Skip`]), a meta-gradient ([`MetaGradient`]) and
//! the memory it holds ([`MemoryReport`]).

use super::estimator::Estimator;
use super::meta_optim::MetaAdam;
use super::plan::Schedule;
use crate::optim::Mode;
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
    /// How the meta-gradient is estimated: backprop (the checkpointed meta-backward), ES or
    /// PES.
    pub estimator: Estimator,
    /// Gradient paths of the meta-backward (backprop).
    pub mode: Mode,
    /// Checkpointing schedule.
    pub schedule: Schedule,
    /// A budget in bytes for the checkpoint slots: when set, it replaces `schedule` by Revolve
    /// with as many slots as fit (each slot holds θ and the optimizer state of all instances;
    /// batches are regenerated from their seeds and need no storage).
    pub memory_budget: Option<u64>,
    /// Chunks of the instances on each device (0: as few as make every buffer fit the
    /// adapter's buffer limits). The instances are split into consecutive shards, each meta-
    /// trained by a trainer of its own on the same device, their meta-gradients summed in f64
    /// in shard order ([`crate::dist::DataParallel`]); `memory_budget` is shared among them.
    pub chunks: usize,
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
            estimator: Estimator::Backprop,
            mode: Mode::Truncated,
            schedule: Schedule::StoreAll,
            memory_budget: None,
            chunks: 0,
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
    /// Trainers (chunks of the instances) the bytes are summed over; `slots` and
    /// `slot_bytes` are each one's (the largest slot).
    pub chunks: usize,
}

impl MemoryReport {
    /// Everything.
    pub fn total(&self) -> u64 {
        self.checkpoints + self.working + self.task
    }

    /// The memory of several trainers held at once (chunks of one set of instances): bytes
    /// summed, the most slots and the largest slot of any. `None` for no part.
    pub fn sum(parts: &[MemoryReport]) -> Option<MemoryReport> {
        let first = parts.first()?;
        Some(parts[1..].iter().fold(*first, |a, b| MemoryReport {
            checkpoints: a.checkpoints + b.checkpoints,
            slots: a.slots.max(b.slots),
            slot_bytes: a.slot_bytes.max(b.slot_bytes),
            working: a.working + b.working,
            task: a.task + b.task,
            chunks: a.chunks + b.chunks,
        }))
    }
}
