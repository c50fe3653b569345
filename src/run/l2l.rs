//! The default job of `cargo run --release`: meta-train as a config says (the embedded L2L
//! quadratic config, [`crate::config::DEFAULT_CONFIG`]), then compare the learned optimizer with
//! the config's hand-designed baselines, each at its best learning rate, on held-out instances
//! — the same tune-and-compare path as `metalearn eval` ([`super::evaluate_checkpoints`]), with
//! the trainer's state in memory instead of a checkpoint file.

use std::sync::Arc;
use std::time::Instant;

use super::checkpoint_of;
use super::eval::{evaluate_checkpoints, Candidate, EvalCurve};
use crate::config::Config;
use crate::gpu::Gpu;
use crate::meta::MetaTrainer;
use crate::tasks::{build_task, Sample};
use crate::{Error, Result};

/// The sizes of the default job that the command line may change; everything else comes from
/// the embedded config.
#[derive(Clone, Debug)]
pub struct L2lConfig {
    /// Instances per outer step (`task.instances`).
    pub instances: usize,
    /// Outer steps (unrolls) of meta-training (`meta.outer_steps`).
    pub outer_steps: usize,
    /// Meta-optimizer learning rate (`meta.lr`).
    pub meta_lr: f32,
    /// Held-out instances of the comparison (`eval.instances`).
    pub eval_instances: usize,
    /// Points of the log-spaced learning-rate grid the baselines are tuned on
    /// (`eval.grid_points`).
    pub grid_points: usize,
    /// Seed of every random draw (`seed`).
    pub seed: u64,
}

impl Default for L2lConfig {
    /// The embedded config's values.
    fn default() -> Self {
        Self::of(&Config::embedded_default().unwrap_or_default())
    }
}

impl L2lConfig {
    fn of(c: &Config) -> Self {
        Self {
            instances: c.task.instances,
            outer_steps: c.meta.outer_steps,
            meta_lr: c.meta.lr,
            eval_instances: c.eval.instances,
            grid_points: c.eval.grid_points,
            seed: c.seed,
        }
    }

    /// The default sizes for `gpu`: on a software adapter 8 instances, 150 outer steps, 128
    /// held-out instances and a 9-point grid, so the job ends in about two minutes on two CPU
    /// cores.
    pub fn for_gpu(gpu: &Gpu) -> Result<Self> {
        let mut c = Self::of(&Config::embedded_default()?);
        if gpu.props().is_software() {
            c.instances = 8;
            c.outer_steps = 150;
            c.eval_instances = 128;
            c.grid_points = 9;
        }
        Ok(c)
    }

    /// The embedded config with these sizes, checked.
    pub fn config(&self) -> Result<Config> {
        let mut c = Config::embedded_default()?;
        c.task.instances = self.instances;
        c.meta.outer_steps = self.outer_steps;
        c.meta.lr = self.meta_lr;
        c.eval.instances = self.eval_instances;
        c.eval.grid_points = self.grid_points;
        c.seed = self.seed;
        if self.outer_steps == 0 {
            return Err(Error::invalid(
                "the default job meta-trains before it compares: use --outer-steps 1 or more",
            ));
        }
        c.validate("the default job's settings")?;
        Ok(c)
    }
}

/// What [`train_and_compare`] found.
#[derive(Clone, Debug)]
pub struct Comparison {
    /// Meta-loss of each outer step.
    pub meta_losses: Vec<f32>,
    /// Outer steps skipped for a non-finite meta-loss or meta-gradient.
    pub skipped: usize,
    /// Held-out curves: the learned optimizer first, then each tuned baseline.
    pub curves: Vec<EvalCurve>,
    /// Learned φ.
    pub phi: Vec<f32>,
    /// Seconds of meta-training.
    pub train_seconds: f64,
    /// Inner steps × instances per second during meta-training (forward + backward + update).
    pub throughput: f64,
}

/// Meta-train for `cfg.meta.outer_steps` outer steps (nothing written to disk), then evaluate
/// the result, labelled `label`, against `cfg.eval.baselines` as `metalearn eval` does. With
/// `progress`, bars on stderr count the outer steps and then the baselines tuned.
pub fn train_and_compare(
    gpu: &Arc<Gpu>,
    cfg: &Config,
    label: &str,
    progress: bool,
) -> Result<Comparison> {
    let task = build_task(gpu, cfg, Sample::Train, cfg.task.instances)?;
    let mut tr = MetaTrainer::new(gpu.clone(), task, cfg.optimizer()?, cfg.meta_config()?)?;
    let t0 = Instant::now();
    let mut meta_losses = Vec::with_capacity(cfg.meta.outer_steps);
    let mut skipped = 0;
    let bar = crate::progress::ProgressBar::new(progress, cfg.meta.outer_steps as u64, 0)?;
    for i in 0..cfg.meta.outer_steps {
        let r = tr.step()?;
        meta_losses.push(r.meta_loss);
        skipped += usize::from(r.skipped.is_some());
        if let Some(bar) = &bar {
            bar.set_position(i as u64 + 1);
            bar.set_message(format!("meta-loss {:.4}", r.meta_loss));
        }
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let train_seconds = t0.elapsed().as_secs_f64();
    let candidate = Candidate {
        name: label.to_string(),
        checkpoint: checkpoint_of(&tr, cfg)?,
    };
    let curves = evaluate_checkpoints(gpu, cfg, &[candidate], progress)?;
    let inner = cfg.meta.outer_steps * cfg.meta.unroll * cfg.task.instances;
    Ok(Comparison {
        meta_losses,
        skipped,
        curves,
        phi: tr.phi()?,
        throughput: inner as f64 / train_seconds,
        train_seconds,
    })
}

/// The default job: the L2L LSTM optimizer meta-trained on quadratics, compared on held-out
/// quadratics with SGD, NAG, RMSprop and Adam at their best learning rates.
pub fn l2l_quadratics(gpu: &Arc<Gpu>, sizes: &L2lConfig, progress: bool) -> Result<Comparison> {
    train_and_compare(gpu, &sizes.config()?, "LSTM (learned)", progress)
}
