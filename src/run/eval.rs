//! Evaluation of checkpoints against tuned baselines on held-out instances (`metalearn eval`,
//! and the comparison of the default job).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::Config;
use crate::gpu::Gpu;
use crate::meta::eval::Shards;
use crate::meta::{log_grid, save, Checkpoint, RunDir};
use crate::optim::Optimizer;
use crate::tasks::{build_task, Sample, Stream, Task};
use crate::{Error, Result};

/// One curve of an evaluation.
#[derive(Clone, Debug)]
pub struct EvalCurve {
    /// Label (optimizer, learning rate, initialisation).
    pub name: String,
    /// Mean loss over instances at θ_0 … θ_L on the steps' batches.
    pub train: Vec<f64>,
    /// Mean held-out loss (query set) at θ_0 … θ_L, for few-shot tasks.
    pub held_out: Option<Vec<f64>>,
    /// A baseline's tuned learning rate (`None` for a checkpoint).
    pub learning_rate: Option<f32>,
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
/// `cfg.eval.steps` steps. With `progress`, a bar on stderr counts the baselines tuned.
pub fn evaluate_checkpoints(
    gpu: &Arc<Gpu>,
    cfg: &Config,
    candidates: &[Candidate],
    progress: bool,
) -> Result<Vec<EvalCurve>> {
    let n = cfg.eval.instances;
    let steps = cfg.eval.steps;
    // A task of every instance, or where its own buffers exceed the device's limits one of a
    // single instance: the layout and what it scores.
    let (whole, probe) = match build_task(gpu, cfg, Sample::HeldOut, n) {
        Ok(t) => (Some(t), None),
        Err(Error::LimitExceeded { .. }) if n > 1 => {
            (None, Some(build_task(gpu, cfg, Sample::HeldOut, 1)?))
        }
        Err(e) => return Err(e),
    };
    let first = whole
        .as_deref()
        .or(probe.as_deref())
        .ok_or_else(|| Error::invalid("no task"))?;
    let few_shot = first.scores_held_out();
    let p = first.layout().size();
    drop(probe);
    let mut learned = Vec::with_capacity(candidates.len());
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
        learned.push((c, opt, saved.meta.learn_init));
    }
    let mut baselines = Vec::with_capacity(cfg.eval.baselines.len());
    for b in &cfg.eval.baselines {
        let base = Optimizer::parse(b)?;
        if base.is_learned() {
            return Err(Error::invalid(format!(
                "eval.baselines lists the learned optimizer '{b}'; list hand-designed ones"
            )));
        }
        baselines.push((b, base));
    }
    // The instances are evaluated in as many shards as make the largest optimizer's slot fit
    // one buffer.
    let floats = learned
        .iter()
        .map(|(_, o, _)| o)
        .chain(baselines.iter().map(|(_, o)| o))
        .map(|o| o.slot_len(p))
        .max()
        .unwrap_or(p);
    let held = shards(gpu, cfg, Sample::HeldOut, n, floats, whole)?;
    let family_init = held.init_params(|| Stream::Init(0).rng(cfg.seed, Sample::HeldOut))?;
    let mut out = Vec::new();
    for (c, opt, learn_init) in learned {
        let init = if learn_init {
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
        let (tc, q) =
            held.evaluate_with_held_out(gpu, &opt, c.checkpoint.phi(), &init, steps, few_shot)?;
        out.push(EvalCurve {
            name: c.name.clone(),
            train: tc.mean(),
            held_out: q.map(|q| q.mean()),
            learning_rate: None,
        });
    }
    if !baselines.is_empty() {
        // Four times as many tuning instances as held-out ones, so that a learning rate at the
        // edge of divergence on a family's rare stiff instances is caught while tuning.
        let tune = shards(gpu, cfg, Sample::Tune, 4 * n, floats, None)?;
        let tune_init = tune.init_params(|| Stream::Init(0).rng(cfg.seed, Sample::Tune))?;
        let [lo, hi] = cfg.eval.lr_range;
        let grid = log_grid(lo, hi, cfg.eval.grid_points);
        let bar = crate::progress::ProgressBar::counting(
            progress,
            baselines.len() as u64,
            0,
            "baselines tuned",
        )?;
        for (i, (b, base)) in baselines.iter().enumerate() {
            if let Some(bar) = &bar {
                bar.set_message(format!("tuning {b} over {} learning rates", grid.len()));
                bar.set_position(i as u64);
            }
            let make = |lr: f32| base.with_lr(lr);
            let (lr, _) = tune.tune_learning_rate(gpu, make, &grid, &tune_init, steps)?;
            let (tc, q) =
                held.evaluate_with_held_out(gpu, &make(lr), &[], &family_init, steps, few_shot)?;
            out.push(EvalCurve {
                name: format!("{b} lr={lr:.2e}"),
                train: tc.mean(),
                held_out: q.map(|q| q.mean()),
                learning_rate: Some(lr),
            });
        }
        if let Some(bar) = &bar {
            bar.set_position(baselines.len() as u64);
            bar.finish_and_clear();
        }
    }
    Ok(out)
}

/// `n` instances of `sample` in as many shards as an evaluation slot of `floats` floats per
/// instance needs ([`Shards::needed`]); `whole`, a task of all of them already built, serves
/// when one shard is enough.
fn shards(
    gpu: &Gpu,
    cfg: &Config,
    sample: Sample,
    n: usize,
    floats: usize,
    whole: Option<Box<dyn Task>>,
) -> Result<Shards> {
    Shards::build(
        gpu,
        (n, Shards::needed(gpu, n, floats)),
        whole,
        |count| build_task(gpu, cfg, sample, count),
        || Stream::Instances.rng(cfg.seed, sample),
    )
}

/// Load a checkpoint: a file, or the newest readable one of a run directory. Newer
/// checkpoints of the directory that cannot be read are named on stderr with the reason, and
/// so is the step of the one loaded in their place.
pub fn load_checkpoint(path: &Path) -> Result<Checkpoint> {
    if path.is_dir() {
        let rd = RunDir::create(path, 1)?;
        match rd.latest()? {
            Some((c, skipped)) => {
                for e in &skipped {
                    eprintln!("skipping an unreadable checkpoint: {e}");
                }
                if !skipped.is_empty() {
                    eprintln!(
                        "using the newest readable checkpoint of {}: {} (outer step {})",
                        path.display(),
                        rd.checkpoint_path(c.state.step).display(),
                        c.state.step
                    );
                }
                Ok(c)
            }
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
