//! Runs driven by a [`Config`]: building the task family, meta-training with periodic metrics,
//! evaluation and checkpoints (`metalearn train`), and evaluating a checkpoint against tuned
//! baselines with curves and a plot (`metalearn eval`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use serde_json::json;

use crate::config::{Config, DataKind, TaskKind};
use crate::data::{self, ImageDataset, Split};
use crate::gpu::Gpu;
use crate::meta::{
    evaluate_with_held_out, log_grid, save, tune_learning_rate, Checkpoint, MetaTrainer, RunDir,
};
use crate::models::MlpSpec;
use crate::optim::Optimizer;
use crate::tasks::{
    AutoencoderTask, MlpTask, QuadraticTask, SinusoidConfig, SinusoidTask, Task, TaskRng,
};
use crate::{Error, Result};

/// Which instances a task is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// The meta-training family (training split of image data).
    Train,
    /// Instances for tuning baselines: the training family, another seed.
    Tune,
    /// Held-out instances: another seed; image tasks train on the test split's images.
    HeldOut,
}

impl Sample {
    fn salt(self) -> u64 {
        match self {
            Sample::Train => 0,
            Sample::Tune => 0x7475_6e65,
            Sample::HeldOut => 0x6576_616c,
        }
    }
}

fn images(cfg: &Config) -> Result<(ImageDataset, ImageDataset)> {
    let t = &cfg.task;
    let (train, test) = match t.data {
        DataKind::Synthetic => crate::demo::synthetic_images(cfg.seed ^ 0x696d_6167, 6000, 1000),
        DataKind::FashionMnist | DataKind::Mnist => {
            let dir = match (&t.data_dir, t.data) {
                (Some(d), _) => PathBuf::from(d),
                (None, DataKind::FashionMnist) => PathBuf::from(data::DEFAULT_FASHION_MNIST_DIR),
                (None, _) => {
                    return Err(Error::Config {
                        origin: "task.data_dir".into(),
                        problem: "data = \"mnist\" needs the directory of the MNIST IDX files"
                            .into(),
                        hint: "set task.data_dir (e.g. --set task.data_dir=/path/to/mnist)".into(),
                    })
                }
            };
            (
                data::load_mnist_like(&dir, Split::Train)?,
                data::load_mnist_like(&dir, Split::Test)?,
            )
        }
    };
    if t.image_size < train.width {
        Ok((
            train.downsample(t.image_size)?,
            test.downsample(t.image_size)?,
        ))
    } else {
        Ok((train, test))
    }
}

/// Build `instances` instances of the configured task family.
pub fn build_task(
    gpu: &Gpu,
    cfg: &Config,
    sample: Sample,
    instances: usize,
) -> Result<Box<dyn Task>> {
    let seed = cfg.seed ^ sample.salt();
    let mut rng = TaskRng::seed_from_u64(seed);
    let hidden = cfg.hidden();
    let act = cfg.activation()?;
    Ok(match cfg.task.kind {
        TaskKind::Quadratic => {
            Box::new(QuadraticTask::new(gpu, cfg.task.dim, instances, &mut rng)?)
        }
        TaskKind::Mlp => {
            let (train, test) = images(cfg)?;
            let mut widths = vec![train.features()];
            widths.extend(&hidden);
            widths.push(train.classes);
            let spec = MlpSpec::new(&widths, act)?;
            // Held-out instances train on the test split's images (and are scored on them).
            let (a, b) = match sample {
                Sample::HeldOut => (test.clone(), test),
                _ => (train, test),
            };
            Box::new(MlpTask::new(
                gpu,
                &spec,
                instances,
                cfg.task.batch,
                a,
                b,
                seed as u32,
            )?)
        }
        TaskKind::Sinusoid => {
            let sc = SinusoidConfig {
                hidden,
                activation: act,
                shots: cfg.task.shots,
                queries: cfg.task.shots,
                ..Default::default()
            };
            Box::new(SinusoidTask::new(gpu, &sc, instances, &mut rng)?)
        }
        TaskKind::Autoencoder => {
            let (train, test) = images(cfg)?;
            let code = hidden.first().copied().unwrap_or(32);
            let spec = AutoencoderTask::tied_spec(train.features(), code, act)?;
            let (a, b) = match sample {
                Sample::HeldOut => (test.clone(), test),
                _ => (train, test),
            };
            Box::new(AutoencoderTask::new(
                gpu,
                &spec,
                instances,
                cfg.task.batch,
                a,
                b,
                seed as u32,
            )?)
        }
    })
}

/// Options of [`train`].
#[derive(Clone, Debug, Default)]
pub struct TrainOptions {
    /// Continue from the newest checkpoint of the run directory.
    pub resume: bool,
    /// Show a progress bar (on a terminal; only with the `cli` feature, ignored without it).
    pub progress: bool,
    /// Stop after this many outer steps of this invocation (the config's total still counts
    /// for the schedule of checkpoints); for tests of resumption.
    pub stop_after: Option<usize>,
}

/// What [`train`] did.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Outer steps taken in total (including those before a resume).
    pub steps: usize,
    /// Meta-loss of each outer step of this invocation.
    pub meta_losses: Vec<f32>,
    /// Outer steps skipped for a non-finite meta-loss or gradient.
    pub skipped: usize,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Seconds of meta-training.
    pub seconds: f64,
}

/// The checkpoint of a trainer.
pub fn checkpoint_of(tr: &MetaTrainer, cfg: &Config) -> Result<Checkpoint> {
    Ok(Checkpoint {
        state: tr.state()?,
        phi_len: tr.optimizer().phi_len(),
        optimizer: tr.optimizer().name().to_string(),
        config: cfg.to_toml()?,
    })
}

/// Keys a resumed run may change: how long it runs, evaluation and output.
fn same_training(a: &Config, b: &Config) -> bool {
    let strip = |c: &Config| {
        let mut c = c.clone();
        c.meta.outer_steps = 0;
        c.eval = Default::default();
        c.output = Default::default();
        c
    };
    strip(a) == strip(b)
}

/// Meta-train as `cfg` says, writing `metrics.jsonl`, periodic evaluations and checkpoints to
/// the run directory `cfg.output.dir`. A run directory that already holds checkpoints is only
/// continued with `resume` (never overwritten).
pub fn train(gpu: &Arc<Gpu>, cfg: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    let dir = RunDir::create(Path::new(&cfg.output.dir), cfg.output.keep)?;
    let existing = dir.checkpoints()?;
    let resume_from = if opts.resume {
        match dir.latest()? {
            Some((ck, skipped)) => {
                for e in skipped {
                    eprintln!("skipping an unreadable checkpoint: {e}");
                }
                Some(ck)
            }
            None => None,
        }
    } else if let Some((_, p)) = existing.last() {
        return Err(Error::invalid(format!(
            "the run directory {} already holds checkpoints (newest {}); pass --resume to continue that run, or choose another directory with --out",
            dir.path().display(),
            p.display()
        )));
    } else {
        None
    };
    if let Some(ck) = &resume_from {
        let saved = Config::from_toml(&ck.config, "the checkpoint's config")?;
        if !same_training(&saved, cfg) {
            return Err(Error::invalid(format!(
                "the checkpoint in {} was trained with another task, optimizer or meta-training setting; resume with the same config (only meta.outer_steps, [eval] and [output] may change), or start a new run in another directory",
                dir.path().display()
            )));
        }
    }
    let task = build_task(gpu, cfg, Sample::Train, cfg.task.instances)?;
    let opt = cfg.optimizer()?;
    let mut tr = MetaTrainer::new(gpu.clone(), task, opt, cfg.meta_config()?)?;
    if let Some(ck) = &resume_from {
        if ck.optimizer != tr.optimizer().name() {
            return Err(Error::Checkpoint {
                path: dir.path().into(),
                problem: format!(
                    "holds optimizer '{}', the config asks for '{}'",
                    ck.optimizer,
                    tr.optimizer().name()
                ),
                hint: "use the run's own config or another run directory".into(),
            });
        }
        tr.restore(&ck.state)?;
    }
    std::fs::write(dir.path().join("config.toml"), cfg.to_toml()?)
        .map_err(|e| Error::io(dir.path().join("config.toml"), e))?;
    let metrics_path = dir.path().join("metrics.jsonl");
    if let Some(ck) = &resume_from {
        drop_metrics_after(&metrics_path, ck.state.step)?;
    }
    let mut metrics = crate::report::MetricsWriter::open(&metrics_path)?;
    let total = cfg.meta.outer_steps;
    let start = tr.steps_taken();
    let end = match opts.stop_after {
        Some(k) => total.min(start + k),
        None => total,
    };
    let bar = crate::progress::ProgressBar::new(opts.progress, total as u64, start as u64)?;
    let t0 = Instant::now();
    let mut summary = TrainSummary {
        steps: start,
        meta_losses: Vec::new(),
        skipped: 0,
        checkpoint: None,
        seconds: 0.0,
    };
    let held = if cfg.eval.every > 0 {
        let h = build_task(gpu, cfg, Sample::HeldOut, cfg.eval.instances)?;
        let mut rng = TaskRng::seed_from_u64(cfg.seed ^ Sample::HeldOut.salt());
        let init = h.init_params(&mut rng)?;
        Some((h, init))
    } else {
        None
    };
    for _ in start..end {
        let r = tr.step()?;
        summary.meta_losses.push(r.meta_loss);
        summary.skipped += usize::from(r.skipped.is_some());
        let step = r.step;
        metrics.write(&json!({
                "step": step,
                "meta_loss": r.meta_loss,
                "grad_norm": r.grad_norm,
                "skipped": r.skipped.map(|s| format!("{s:?}")),
                "seconds": t0.elapsed().as_secs_f64(),
        }))?;
        if let Some(b) = &bar {
            b.set_position(step as u64);
            b.set_message(format!("meta-loss {:.4}", r.meta_loss));
        }
        if let Some((h, init)) = &held {
            if step % cfg.eval.every == 0 {
                let init = initial_params(&tr, h.as_ref(), init)?;
                let (c, q) = evaluate_with_held_out(
                    gpu,
                    h.as_ref(),
                    tr.optimizer(),
                    &tr.phi()?,
                    &init,
                    cfg.eval.steps,
                    cfg.task.kind == TaskKind::Sinusoid,
                )?;
                metrics.write(&json!({
                    "step": step,
                    "eval_final_loss": c.final_mean(),
                    "eval_final_held_out_loss": q.map(|q| q.final_mean()),
                }))?;
            }
        }
        if cfg.output.checkpoint_every > 0 && step % cfg.output.checkpoint_every == 0 {
            summary.checkpoint = Some(dir.save(&checkpoint_of(&tr, cfg)?)?);
        }
    }
    summary.steps = tr.steps_taken();
    summary.seconds = t0.elapsed().as_secs_f64();
    if summary.steps > start || existing.is_empty() {
        let last = dir.checkpoint_path(summary.steps);
        if !last.exists() {
            summary.checkpoint = Some(dir.save(&checkpoint_of(&tr, cfg)?)?);
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    Ok(summary)
}

/// Keep only the metrics lines of outer steps up to `step` (those after it were written by a
/// run that stopped before its next checkpoint and are about to be recomputed).
fn drop_metrics_after(path: &Path, step: usize) -> Result<()> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v.get("step").and_then(|s| s.as_u64()))
                .is_some_and(|s| s <= step as u64)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    crate::meta::write_atomically(path, kept.as_bytes())
}

/// θ0 of every instance: the learned initialisation when learned, else the family's draw.
fn initial_params(tr: &MetaTrainer, task: &dyn Task, family: &[f32]) -> Result<Vec<f32>> {
    if tr.config().learn_init {
        let t0 = tr.theta0()?;
        Ok(t0.repeat(task.instances()))
    } else {
        Ok(family.to_vec())
    }
}

/// One curve of an evaluation.
#[derive(Clone, Debug)]
pub struct EvalCurve {
    /// Label (optimizer, learning rate, initialisation).
    pub name: String,
    /// Mean loss over instances at θ_0 … θ_L on the steps' batches.
    pub train: Vec<f64>,
    /// Mean held-out loss (query set) at θ_0 … θ_L, for few-shot tasks.
    pub held_out: Option<Vec<f64>>,
}

/// A checkpoint to evaluate: its file and a label.
#[derive(Clone, Debug)]
pub struct Candidate {
    /// Label in tables and plots.
    pub name: String,
    /// The checkpoint.
    pub checkpoint: Checkpoint,
}

/// Evaluate checkpoints (their optimizer with φ, from their θ0 when it was learned) and the
/// configured baselines (each at its best learning rate on 4 × `eval.instances` tuning
/// instances of the training family) on `cfg.eval.instances` held-out instances of the task `cfg` describes, for
/// `cfg.eval.steps` steps.
pub fn evaluate_checkpoints(
    gpu: &Arc<Gpu>,
    cfg: &Config,
    candidates: &[Candidate],
) -> Result<Vec<EvalCurve>> {
    let n = cfg.eval.instances;
    let steps = cfg.eval.steps;
    let few_shot = cfg.task.kind == TaskKind::Sinusoid;
    let held = build_task(gpu, cfg, Sample::HeldOut, n)?;
    let mut rng = TaskRng::seed_from_u64(cfg.seed ^ Sample::HeldOut.salt() ^ 1);
    let family_init = held.init_params(&mut rng)?;
    let p = held.layout().size();
    let mut out = Vec::new();
    for c in candidates {
        let saved = Config::from_toml(&c.checkpoint.config, &c.name)?;
        let opt = saved.optimizer()?;
        if opt.phi_len() != c.checkpoint.phi_len {
            return Err(Error::Checkpoint {
                path: PathBuf::from(&c.name),
                problem: format!(
                    "holds {} optimizer values, its optimizer '{}' needs {}",
                    c.checkpoint.phi_len,
                    opt.name(),
                    opt.phi_len()
                ),
                hint: "the file does not match its own config; use another checkpoint".into(),
            });
        }
        let init = if saved.meta.learn_init {
            let t0 = c.checkpoint.theta0();
            if t0.len() != p {
                return Err(Error::invalid(format!(
                    "{}: its learned initialisation has {} parameters, the evaluated model has {p}; evaluate it on the model it was trained for",
                    c.name,
                    t0.len()
                )));
            }
            t0.repeat(n)
        } else {
            family_init.clone()
        };
        let (tc, q) = evaluate_with_held_out(
            gpu,
            held.as_ref(),
            &opt,
            c.checkpoint.phi(),
            &init,
            steps,
            few_shot,
        )?;
        out.push(EvalCurve {
            name: c.name.clone(),
            train: tc.mean(),
            held_out: q.map(|q| q.mean()),
        });
    }
    if !cfg.eval.baselines.is_empty() {
        // Four times as many tuning instances as held-out ones, so that a learning rate at the
        // edge of divergence on a family's rare stiff instances is caught while tuning.
        let tune = build_task(gpu, cfg, Sample::Tune, 4 * n)?;
        let mut trng = TaskRng::seed_from_u64(cfg.seed ^ Sample::Tune.salt() ^ 1);
        let tune_init = tune.init_params(&mut trng)?;
        let [lo, hi] = cfg.eval.lr_range;
        let grid = log_grid(lo, hi, cfg.eval.grid_points);
        for b in &cfg.eval.baselines {
            let base = Optimizer::parse(b)?;
            if base.is_learned() {
                return Err(Error::invalid(format!(
                    "eval.baselines lists the learned optimizer '{b}'; list hand-designed ones"
                )));
            }
            let make = |lr: f32| base.with_lr(lr);
            let (lr, _) = tune_learning_rate(gpu, tune.as_ref(), make, &grid, &tune_init, steps)?;
            let (tc, q) = evaluate_with_held_out(
                gpu,
                held.as_ref(),
                &make(lr),
                &[],
                &family_init,
                steps,
                few_shot,
            )?;
            out.push(EvalCurve {
                name: format!("{b} lr={lr:.2e}"),
                train: tc.mean(),
                held_out: q.map(|q| q.mean()),
            });
        }
    }
    Ok(out)
}

/// Load a checkpoint: a file, or the newest readable one of a run directory.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    if path.is_dir() {
        let rd = RunDir::create(path, 1)?;
        match rd.latest()? {
            Some((c, _)) => Ok(c),
            None => Err(Error::Checkpoint {
                path: path.into(),
                problem: "the directory holds no checkpoint".into(),
                hint: "train first (metalearn train --out DIR), or name a checkpoint file".into(),
            }),
        }
    } else {
        save::load(path)
    }
}
