//! Run configurations: one TOML document (embedded default, a file, or both) with every key
//! overridable by `--set section.key=value`, checked for unknown keys, wrong types and values out
//! of range before anything runs. A config fully determines a run together with its seed, and
//! is stored inside every checkpoint.
//!
//! ```toml
//! seed = 0
//! [task]        # what is learned on: quadratic | mlp | sinusoid | autoencoder
//! [optimizer]   # the inner optimizer: lstm | linear | mlp (learned) or sgd | momentum | nag | rmsprop | adam
//! [meta]        # unroll, episodes, mode, checkpointing, meta-optimizer, what is learned
//! [eval]        # periodic and final evaluation on held-out instances
//! [output]      # run directory, checkpoint period, checkpoints kept
//! [lm]          # the language model of task.kind = "lm": corpus, tokens, sizes, training, evaluation
//! ```
//! `configs/` holds one file per reproduced experiment; `docs/config.md` documents every key.

use serde::{Deserialize, Serialize};

use crate::kernels::matmul::Activation;
use crate::meta::{EsConfig, Estimator, FinalBatch, LossWeights, MetaAdam, MetaConfig, Schedule};
use crate::optim::{Mode, Optimizer};
use crate::{Error, Result};

mod lm;
mod parse;
pub use lm::{DynamicGrid, LmConfig, LmCorpus, LmTokens, DYNLM_KIND, LEARNED_UPDATER, LM_KIND};

/// The embedded default: the L2L coordinatewise LSTM on 10-d quadratics.
pub const DEFAULT_CONFIG: &str = include_str!("../configs/l2l_quadratic.toml");

/// A whole run configuration.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Seed of every random draw of the run.
    pub seed: u64,
    /// The task family.
    pub task: TaskConfig,
    /// The inner optimizer.
    pub optimizer: OptimizerConfig,
    /// Meta-training.
    pub meta: MetaSection,
    /// Evaluation.
    pub eval: EvalConfig,
    /// Outputs.
    pub output: OutputConfig,
    /// The language model of `task.kind = "lm"`.
    pub lm: LmConfig,
    /// How the run spreads over processes.
    pub dist: DistConfig,
}

/// `[dist]`: data-parallel meta-training across processes (see docs/distributed.md; the
/// devices of one process are chosen with `metalearn train --adapters`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DistConfig {
    /// `local`: this process only; `mpi`: one rank of an `mpirun` job (the `mpi` feature).
    pub backend: DistBackend,
    /// Seconds a rank waits for the others in one exchange before it ends the job with an
    /// error (a rank died or hangs).
    pub timeout_s: f64,
}

impl Default for DistConfig {
    fn default() -> Self {
        Self {
            backend: DistBackend::Local,
            timeout_s: 600.0,
        }
    }
}

/// `dist.backend`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DistBackend {
    /// One process.
    Local,
    /// The ranks of an MPI job split the instances.
    Mpi,
}

/// Image data sources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataKind {
    /// Fashion-MNIST IDX files (`data_dir`, default the Debian package's directory).
    FashionMnist,
    /// MNIST IDX files in `data_dir`.
    Mnist,
    /// Generated class-conditional images (no files needed).
    Synthetic,
}

/// `[task]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskConfig {
    /// Family: a name of [`crate::tasks::REGISTRY`] (quadratic, mlp, sinusoid, autoencoder).
    pub kind: String,
    /// Instances N trained side by side in every outer step.
    pub instances: usize,
    /// Dimension of the quadratics.
    pub dim: usize,
    /// Image source of `mlp` and `autoencoder`.
    pub data: DataKind,
    /// Directory of the IDX files (default: /usr/share/datasets/fashion-mnist for Fashion-MNIST).
    pub data_dir: Option<String>,
    /// Images are down-sampled to `image_size`×`image_size` (28: unchanged; 8: learned_optimization's 8×8).
    pub image_size: usize,
    /// Hidden widths (default: `[20]` for mlp, `[40, 40]` for sinusoid, `[32]` for autoencoder).
    pub hidden: Option<Vec<usize>>,
    /// Hidden activation: sigmoid, relu, tanh or identity (default: sigmoid; relu for sinusoid).
    pub activation: Option<String>,
    /// Rows per batch (mlp, autoencoder).
    pub batch: usize,
    /// Support points K of a sinusoid task (the query set has as many).
    pub shots: usize,
}

/// `[optimizer]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// lstm, linear, mlp, schedule, sgd, momentum, nag, rmsprop or adam.
    pub kind: String,
    /// Learning rate of a hand-designed optimizer (its default when absent).
    pub lr: Option<f32>,
    /// Largest step of a learned optimizer's proposal, per coordinate (`gated`: out_scale, the
    /// family's default when absent).
    pub step_scale: Option<f32>,
}

/// `[meta]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetaSection {
    /// Outer steps (meta-updates).
    pub outer_steps: usize,
    /// Inner steps T per unroll.
    pub unroll: usize,
    /// Inner steps per episode, a multiple of `unroll` (0: one unroll per episode).
    pub episode: usize,
    /// Estimator of the meta-gradient: backprop, es or pes.
    pub estimator: String,
    /// ES and PES: perturbation scale σ.
    pub sigma: f32,
    /// ES and PES: antithetic pairs (2 × pairs copies of the task's instances).
    pub pairs: usize,
    /// first-order, truncated, second-order or reptile (backprop's gradient paths).
    pub mode: String,
    /// store-all, every-K, sqrt or revolve-S.
    pub schedule: String,
    /// A budget for checkpoint slots in MiB (replaces `schedule` by Revolve with as many slots as fit).
    pub memory_budget_mib: Option<f64>,
    /// Chunks of the instances on each device, meta-trained one trainer each and their
    /// meta-gradients summed (0: as few as make every buffer fit the adapter's limits).
    pub chunks: usize,
    /// Meta-loss weights: uniform (mean loss after each update), last (loss after the last
    /// update) or initial (loss at θ0 only: joint pre-training of the initialisation).
    pub weights: String,
    /// Batch of the final loss term: train or held-out.
    pub final_batch: String,
    /// Learn the optimizer's parameters φ.
    pub learn_optimizer: bool,
    /// Learn the initialisation θ0.
    pub learn_init: bool,
    /// Meta-optimizer (Adam) learning rate.
    pub lr: f32,
    /// Meta-gradient norm clip (0: none).
    pub clip: f32,
    /// Stop with an error after this many consecutive skipped (non-finite) meta-updates (0:
    /// never stop).
    pub max_skipped: usize,
}

/// `[eval]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    /// Evaluate every this many outer steps during training (0: only at the end).
    pub every: usize,
    /// Held-out instances.
    pub instances: usize,
    /// Inner steps of an evaluation run.
    pub steps: usize,
    /// Learning rates tried per baseline (a log grid over `lr_range`).
    pub grid_points: usize,
    /// Smallest and largest learning rate of the baselines' grid.
    pub lr_range: [f32; 2],
    /// Hand-designed baselines tuned and compared: sgd, nag, rmsprop, adam, momentum.
    pub baselines: Vec<String>,
}

/// `[output]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Run directory: checkpoints, metrics.jsonl, eval curves and plots.
    pub dir: String,
    /// Write a checkpoint every this many outer steps (0: only at the end).
    pub checkpoint_every: usize,
    /// Also write a checkpoint when this many minutes have passed since the last one (0: off).
    pub checkpoint_minutes: f64,
    /// Checkpoints kept (the newest ones).
    pub keep: usize,
}

impl Default for TaskConfig {
    fn default() -> Self {
        Self {
            kind: "quadratic".into(),
            instances: 128,
            dim: 10,
            data: DataKind::FashionMnist,
            data_dir: None,
            image_size: 28,
            hidden: None,
            activation: None,
            batch: 128,
            shots: 10,
        }
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: "lstm".into(),
            lr: None,
            step_scale: None,
        }
    }
}

impl Default for MetaSection {
    fn default() -> Self {
        Self {
            outer_steps: 1000,
            unroll: 20,
            episode: 100,
            estimator: "backprop".into(),
            sigma: EsConfig::default().sigma,
            pairs: EsConfig::default().pairs,
            mode: "truncated".into(),
            schedule: "store-all".into(),
            memory_budget_mib: None,
            chunks: 0,
            weights: "uniform".into(),
            final_batch: "train".into(),
            learn_optimizer: true,
            learn_init: false,
            lr: 1e-2,
            clip: 1.0,
            max_skipped: 10,
        }
    }
}

impl Default for EvalConfig {
    fn default() -> Self {
        Self {
            every: 0,
            instances: 512,
            steps: 100,
            grid_points: 17,
            lr_range: [1e-4, 1.0],
            baselines: ["sgd", "nag", "rmsprop", "adam"].map(String::from).to_vec(),
        }
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            dir: "runs/default".into(),
            checkpoint_every: 100,
            checkpoint_minutes: 0.0,
            keep: 3,
        }
    }
}

/// Largest instance count accepted (larger runs exceed any adapter's buffers long before).
pub const MAX_INSTANCES: usize = 1 << 20;
/// Largest unroll or evaluation length accepted.
pub const MAX_STEPS: usize = 1 << 20;

fn err(origin: &str, problem: impl Into<String>, hint: impl Into<String>) -> Error {
    Error::Config {
        origin: origin.into(),
        problem: problem.into(),
        hint: hint.into(),
    }
}

/// `key = v` must lie in lo ..= hi.
fn check_range(origin: &str, key: &str, v: usize, lo: usize, hi: usize) -> Result<()> {
    if v < lo || v > hi {
        Err(err(
            origin,
            format!("{key} = {v} is out of range"),
            format!("use a value from {lo} to {hi}"),
        ))
    } else {
        Ok(())
    }
}

impl Config {
    /// Check every value's range and the combinations the engine rejects.
    pub fn validate(&self, origin: &str) -> Result<()> {
        let t = self.dist.timeout_s;
        if !(t.is_finite() && t > 0.0) {
            return Err(err(
                origin,
                format!("dist.timeout_s = {t} is not a positive number of seconds"),
                "use e.g. dist.timeout_s = 600 (longer than an outer step and an evaluation)",
            ));
        }
        if self.task.kind == LM_KIND {
            return self.validate_lm(origin);
        }
        let range = |key: &str, v, lo, hi| check_range(origin, key, v, lo, hi);
        let t = &self.task;
        range("task.instances", t.instances, 1, MAX_INSTANCES)?;
        range("task.dim", t.dim, 1, 1 << 16)?;
        range("task.batch", t.batch, 1, 1 << 16)?;
        range("task.shots", t.shots, 1, 1 << 16)?;
        range("task.image_size", t.image_size, 1, 28)?;
        let family = crate::tasks::family(&t.kind).map_err(|e| {
            err(
                origin,
                format!("task.kind: {e}"),
                "see docs/config.md for the keys of each family",
            )
        })?;
        if let Some((problem, hint)) = (family.check)(t) {
            return Err(err(origin, problem, hint));
        }
        if t.kind == DYNLM_KIND {
            self.validate_lm_model(origin, t.instances)?;
        }
        if let Some(h) = &t.hidden {
            for &w in h {
                range("task.hidden width", w, 1, 1 << 14)?;
            }
        }
        if let Some(a) = &t.activation {
            parse_activation(a).map_err(|_| {
                err(
                    origin,
                    format!("task.activation = '{a}' is unknown"),
                    "use sigmoid, relu, tanh or identity",
                )
            })?;
        }
        let opt = self
            .optimizer()
            .map_err(|e| err(origin, format!("optimizer.kind: {e}"), "see docs/config.md"))?;
        if let Some(lr) = self.optimizer.lr {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(err(
                    origin,
                    format!("optimizer.lr = {lr} is not a positive number"),
                    "use e.g. lr = 0.01",
                ));
            }
        }
        let m = &self.meta;
        range("meta.unroll", m.unroll, 1, MAX_STEPS)?;
        range("meta.outer_steps", m.outer_steps, 0, 1 << 40)?;
        // Every chunk needs an instance; 0 picks the count.
        range("meta.chunks", m.chunks, 0, self.task.instances)?;
        if !(m.lr.is_finite() && m.lr > 0.0) {
            return Err(err(
                origin,
                format!("meta.lr = {} is not a positive number", m.lr),
                "use e.g. lr = 0.01",
            ));
        }
        if !(m.clip.is_finite() && m.clip >= 0.0) {
            return Err(err(
                origin,
                format!("meta.clip = {} must be ≥ 0", m.clip),
                "use 0 for no clipping",
            ));
        }
        if let Some(b) = m.memory_budget_mib {
            if !(b.is_finite() && b > 0.0) {
                return Err(err(
                    origin,
                    format!("meta.memory_budget_mib = {b} is not a positive number"),
                    "give the budget in MiB, e.g. 512",
                ));
            }
        }
        let mc = self
            .meta_config()
            .map_err(|e| err(origin, e.to_string(), "see docs/config.md"))?;
        mc.check(&opt, "meta.")
            .map_err(|p| err(origin, p.problem, p.hint))?;
        let e = &self.eval;
        range("eval.instances", e.instances, 1, MAX_INSTANCES)?;
        range("eval.steps", e.steps, 1, MAX_STEPS)?;
        range("eval.grid_points", e.grid_points, 1, 1000)?;
        let [lo, hi] = e.lr_range;
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return Err(err(
                origin,
                format!(
                    "eval.lr_range = [{lo}, {hi}] is not an increasing pair of positive numbers"
                ),
                "use e.g. lr_range = [1e-4, 1.0]",
            ));
        }
        for b in &e.baselines {
            let o = Optimizer::parse(b).map_err(|x| {
                err(
                    origin,
                    format!("eval.baselines: {x}"),
                    "list hand-designed optimizers only",
                )
            })?;
            if o.is_learned() {
                return Err(err(
                    origin,
                    format!("eval.baselines lists the learned optimizer '{b}'"),
                    "list hand-designed optimizers: sgd, momentum, nag, rmsprop, adam",
                ));
            }
        }
        range("output.keep", self.output.keep, 1, 1 << 20)?;
        let minutes = self.output.checkpoint_minutes;
        if !(minutes.is_finite() && minutes >= 0.0) {
            return Err(err(
                origin,
                format!("output.checkpoint_minutes = {minutes} must be a number ≥ 0"),
                "use e.g. checkpoint_minutes = 30, or 0 for no time-based checkpoints",
            ));
        }
        if self.output.dir.trim().is_empty() {
            return Err(err(origin, "output.dir is empty", "name a run directory"));
        }
        Ok(())
    }

    /// The inner optimizer.
    pub fn optimizer(&self) -> Result<Optimizer> {
        let mut o = Optimizer::parse(&self.optimizer.kind)?;
        if let Some(lr) = self.optimizer.lr {
            if o.is_learned() {
                return Err(Error::invalid(format!(
                    "optimizer.lr is set but '{}' is learned and has no learning rate; remove optimizer.lr",
                    o.name()
                )));
            }
            o = o.with_lr(lr);
        }
        if let Some(scale) = self.optimizer.step_scale {
            if !(scale.is_finite() && scale > 0.0 && scale <= 1.0) {
                return Err(Error::invalid(format!(
                    "optimizer.step_scale = {scale} is out of range; use a number in (0, 1]"
                )));
            }
            o = o.with_step_scale(scale).ok_or_else(|| {
                Error::invalid(format!(
                    "optimizer.step_scale is set but '{}' has no step scale (only gated has one); remove optimizer.step_scale",
                    o.name()
                ))
            })?;
        }
        // A learned schedule spans the run's episodes (one unroll when there are none).
        let episode = if self.meta.episode > 0 {
            self.meta.episode
        } else {
            self.meta.unroll
        };
        Ok(o.for_episode(episode))
    }

    /// The engine's settings.
    pub fn meta_config(&self) -> Result<MetaConfig> {
        let m = &self.meta;
        let weights = match m.weights.as_str() {
            "uniform" => LossWeights::Uniform,
            "last" => LossWeights::Last,
            "initial" => LossWeights::Given(
                (0..=m.unroll)
                    .map(|t| if t == 0 { 1.0 } else { 0.0 })
                    .collect(),
            ),
            w => {
                return Err(Error::invalid(format!(
                    "meta.weights = '{w}' is unknown; use uniform, last or initial"
                )))
            }
        };
        let final_batch = match m.final_batch.as_str() {
            "train" => FinalBatch::Train,
            "held-out" => FinalBatch::HeldOut,
            f => {
                return Err(Error::invalid(format!(
                    "meta.final_batch = '{f}' is unknown; use train or held-out"
                )))
            }
        };
        let mut meta_opt = MetaAdam::with_lr(m.lr);
        meta_opt.clip = m.clip;
        Ok(MetaConfig {
            unroll: m.unroll,
            episode: m.episode,
            estimator: Estimator::parse(
                &m.estimator,
                EsConfig {
                    sigma: m.sigma,
                    pairs: m.pairs,
                },
            )
            .map_err(|_| {
                Error::invalid(format!(
                    "meta.estimator = '{}' is unknown; use one of {}",
                    m.estimator,
                    Estimator::NAMES.join(", ")
                ))
            })?,
            mode: Mode::parse(&m.mode)?,
            schedule: Schedule::parse(&m.schedule)?,
            memory_budget: m
                .memory_budget_mib
                .map(|b| (b * 1024.0 * 1024.0).round() as u64),
            chunks: m.chunks,
            weights,
            final_batch,
            learn_optimizer: m.learn_optimizer,
            learn_init: m.learn_init,
            meta_opt,
            seed: self.seed,
        })
    }

    /// Hidden widths, with the family's default.
    pub fn hidden(&self) -> Result<Vec<usize>> {
        match &self.task.hidden {
            Some(h) => Ok(h.clone()),
            None => Ok(crate::tasks::family(&self.task.kind)?.hidden.to_vec()),
        }
    }

    /// Hidden activation, with the family's default.
    pub fn activation(&self) -> Result<Activation> {
        match &self.task.activation {
            Some(a) => parse_activation(a),
            None => Ok(crate::tasks::family(&self.task.kind)?.activation),
        }
    }
}

/// Parse an activation name.
pub fn parse_activation(s: &str) -> Result<Activation> {
    match s {
        "sigmoid" => Ok(Activation::Sigmoid),
        "relu" => Ok(Activation::Relu),
        "tanh" => Ok(Activation::Tanh),
        "identity" => Ok(Activation::Identity),
        other => Err(Error::invalid(format!(
            "unknown activation '{other}'; use sigmoid, relu, tanh or identity"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_default_parses_and_round_trips() {
        let c = Config::embedded_default().unwrap();
        let back = Config::from_toml(&c.to_toml().unwrap(), "round trip").unwrap();
        assert_eq!(c, back);
        assert_eq!(c.task.kind, "quadratic");
        assert_eq!(c.optimizer().unwrap().name(), "lstm");
    }

    #[test]
    fn estimator_keys_and_the_schedule_horizon_come_from_the_config() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let c = Config::from_file(&dir.join("pes_toy.toml")).unwrap();
        let m = c.meta_config().unwrap();
        let es = crate::meta::EsConfig {
            sigma: 1.0,
            pairs: 50,
        };
        assert_eq!(m.estimator, Estimator::Pes(es));
        assert_eq!(
            c.optimizer().unwrap().hyper(),
            vec![("horizon", format!("{:e}", 100.0f32))]
        );
        let c = c
            .with_overrides(&["meta.estimator=es".into(), "meta.episode=0".into()])
            .unwrap();
        assert_eq!(c.meta_config().unwrap().estimator, Estimator::Es(es));
        assert_eq!(
            c.optimizer().unwrap().hyper()[0].1,
            format!("{:e}", 10.0f32)
        );
        let e = c
            .with_overrides(&["meta.estimator=evolution".into()])
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("meta.estimator = 'evolution' is unknown; use one of backprop, es, pes"),
            "{e}"
        );
    }

    #[test]
    fn step_scale_sets_the_gated_proposal_and_is_refused_elsewhere() {
        let c = Config::default()
            .with_overrides(&[
                "optimizer.kind=gated".into(),
                "optimizer.step_scale=0.0005".into(),
            ])
            .unwrap();
        let hyper = c.optimizer().unwrap().hyper();
        assert!(
            hyper.contains(&("out_scale", format!("{:e}", f64::from(5e-4f32)))),
            "{hyper:?}"
        );
        assert_ne!(
            c.optimizer().unwrap(),
            Config::default()
                .with_overrides(&["optimizer.kind=gated".into()])
                .unwrap()
                .optimizer()
                .unwrap()
        );
        // The message of `set` on `base`, refused when overridden or when the optimizer is built.
        let refused = |base: &Config, set: &str| match base
            .with_overrides(&[set.into()])
            .and_then(|c| c.optimizer())
        {
            Ok(_) => panic!("{set} was accepted"),
            Err(e) => e.to_string(),
        };
        for set in [
            "optimizer.step_scale=0",
            "optimizer.step_scale=2",
            "optimizer.step_scale=nan",
        ] {
            let msg = refused(&c, set);
            assert!(msg.contains("out of range"), "{set}: {msg}");
        }
        let msg = refused(&Config::default(), "optimizer.step_scale=0.001");
        assert!(
            msg.contains("'lstm' has no step scale (only gated has one)"),
            "{msg}"
        );
    }

    #[test]
    fn every_shipped_config_is_valid() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut n = 0;
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "toml") {
                let c = Config::from_file(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
                c.meta_config().unwrap();
                n += 1;
            }
        }
        assert!(n >= 6, "{n} configs found");
    }

    #[test]
    fn overrides_change_values_and_types_are_checked() {
        let c = Config::default();
        let o = c
            .with_overrides(&[
                "meta.unroll=40".into(),
                "meta.episode=200".into(),
                "task.kind=mlp".into(),
                "task.hidden=[40]".into(),
                "seed=7".into(),
            ])
            .unwrap();
        assert_eq!(o.meta.unroll, 40);
        assert_eq!(o.task.kind, "mlp");
        assert_eq!(o.hidden().unwrap(), vec![40]);
        assert_eq!(o.seed, 7);
        for bad in [
            "meta.unrol=4",
            "meta.unroll=-1",
            "meta.unroll=abc",
            "meta.unroll=0",
            "task.kind=cnn",
            "nosection.key=1",
            "meta",
            "a.b.c=1",
            "meta.lr=0",
            "meta.episode=30",
            "optimizer.kind=foo",
            "task.activation=swish",
            "eval.baselines=[\"lstm\"]",
            "meta.max_skipped=-1",
            "output.checkpoint_minutes=-1",
            "output.checkpoint_minutes=nan",
        ] {
            let e = c.with_overrides(&[bad.to_string()]);
            assert!(
                matches!(e, Err(Error::Config { .. })),
                "{bad}: expected a config error, got {e:?}"
            );
        }
    }

    #[test]
    fn unknown_keys_and_syntax_errors_name_the_problem() {
        let e = Config::from_toml("[meta]\nunrol = 3\n", "x.toml").unwrap_err();
        let s = e.to_string();
        assert!(s.contains("x.toml") && s.contains("unrol"), "{s}");
        let e = Config::from_toml("[meta]\nunroll = \"ten\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("unroll"), "{e}");
        let e = Config::from_toml("[meta\nunroll = 3\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
        let e = Config::from_toml("[optimizer]\nkind = \"sgd\"\n", "x.toml").unwrap_err();
        assert!(e.to_string().contains("nothing to meta-learn"), "{e}");
    }

    #[test]
    fn override_errors_name_the_key_not_a_line_of_the_merged_config() {
        let base = Config::embedded_default().unwrap();
        for (set, key) in [
            ("task.dim=abc", "`task.dim = \"abc\"`"),
            ("meta.bogus=1", "`meta.bogus = 1`"),
            ("seed=x", "`seed = \"x\"`"),
        ] {
            let e = base
                .with_overrides(&[set.to_string()])
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{set}: {e}");
            assert!(!e.contains("line "), "{set}: {e}");
        }
    }
}
