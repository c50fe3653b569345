//! Runs driven by a [`Config`]: meta-training with periodic metrics, evaluation and checkpoints
//! (`metalearn train`, here), evaluating checkpoints against tuned baselines (`metalearn eval`,
//! [`eval`]), and the default job, which meta-trains and compares in one go ([`l2l`]).

pub mod eval;
pub mod l2l;
pub mod lm;
pub mod seeds;
pub mod signal;

pub use eval::{evaluate_checkpoints, load_checkpoint, Candidate, EvalCurve};
pub use l2l::{l2l_quadratics, train_and_compare, Comparison, L2lConfig};
pub use seeds::{evaluate_seeds, same_but_seed, seed_of, SeedCurve, SeedGroup};
pub use signal::{stop_on_signals, StopFlag};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde_json::json;

use crate::config::Config;
use crate::dist::{Collective, DataParallel};
use crate::gpu::Gpu;
use crate::meta::{evaluate_with_held_out, Checkpoint, MetaTrainer, RunDir, RunLock, TrainerState};
use crate::optim::Optimizer;
pub use crate::tasks::{build_task, Sample};
use crate::tasks::{Stream, Task};
use crate::{Error, Result};

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
    /// When set (by [`stop_on_signals`]'s handler, or by the caller), stop after the current
    /// outer step, write a checkpoint and return [`Error::Interrupted`].
    pub stop: Option<StopFlag>,
    /// Further devices that meta-train with the one passed to [`train`]: the instances of every
    /// outer step are split over all of them ([`crate::dist::DataParallel`]). Empty: one device.
    pub devices: Vec<Arc<Gpu>>,
}

/// What [`train`] did.
#[derive(Clone, Debug)]
pub struct TrainSummary {
    /// Outer steps taken in total (including those before a resume).
    pub steps: usize,
    /// Meta-loss of each outer step of this invocation.
    pub meta_losses: Vec<f32>,
    /// Outer steps skipped for a non-finite meta-loss or gradient (each also reported on
    /// stderr).
    pub skipped: usize,
    /// The last checkpoint written.
    pub checkpoint: Option<PathBuf>,
    /// Seconds of meta-training.
    pub seconds: f64,
}

/// The checkpoint of a trainer.
pub fn checkpoint_of(tr: &MetaTrainer, cfg: &Config) -> Result<Checkpoint> {
    checkpoint_with(tr.state()?, tr.optimizer(), cfg)
}

fn checkpoint_with(state: TrainerState, opt: &Optimizer, cfg: &Config) -> Result<Checkpoint> {
    Ok(Checkpoint {
        state,
        phi_len: opt.phi_len(),
        optimizer: opt.name().to_string(),
        config: cfg.to_toml()?,
        format: crate::meta::save::FORMAT_VERSION,
    })
}

/// Keys a resumed run may change: how long it runs, evaluation and output.
/// `c` without the keys a resumed run may change (`meta.outer_steps`, `meta.max_skipped`,
/// `[eval]`, `[output]`, `[dist]`): two configs describe the same training when these agree.
pub(crate) fn training_part(c: &Config) -> Config {
    let mut c = c.clone();
    c.meta.outer_steps = 0;
    c.meta.max_skipped = 0;
    c.eval = Default::default();
    c.output = Default::default();
    c.dist = Default::default();
    c
}

fn same_training(a: &Config, b: &Config) -> bool {
    training_part(a) == training_part(b)
}

/// The keys whose values differ between the configs `a` and `b`: `(key, a's value, b's value)`,
/// in key order (a key one of them lacks shows as `(unset)`).
pub fn config_differences(a: &Config, b: &Config) -> Result<Vec<(String, String, String)>> {
    fn flatten(
        prefix: &str,
        v: &toml::Value,
        out: &mut std::collections::BTreeMap<String, String>,
    ) {
        match v {
            toml::Value::Table(t) => {
                for (k, v) in t {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    flatten(&key, v, out);
                }
            }
            other => {
                out.insert(prefix.to_string(), other.to_string());
            }
        }
    }
    let table = |c: &Config| -> Result<std::collections::BTreeMap<String, String>> {
        let v: toml::Value = toml::from_str(&c.to_toml()?)
            .map_err(|e| Error::invalid(format!("config does not read back: {e}")))?;
        let mut out = std::collections::BTreeMap::new();
        flatten("", &v, &mut out);
        Ok(out)
    };
    let (ta, tb) = (table(a)?, table(b)?);
    let unset = || "(unset)".to_string();
    let mut keys: Vec<&String> = ta.keys().chain(tb.keys()).collect();
    keys.sort();
    keys.dedup();
    Ok(keys
        .into_iter()
        .filter(|k| ta.get(*k) != tb.get(*k))
        .map(|k| {
            let va = ta.get(k).cloned().unwrap_or_else(unset);
            let vb = tb.get(k).cloned().unwrap_or_else(unset);
            (k.clone(), va, vb)
        })
        .collect())
}

fn differences_text(d: &[(String, String, String)]) -> String {
    d.iter()
        .map(|(k, a, b)| format!("{k} = {a} in the run, {b} now"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Meta-train as `cfg` says, writing `metrics.jsonl`, periodic evaluations and checkpoints to
/// the run directory `cfg.output.dir`. A run directory that already holds checkpoints is only
/// continued with `resume` (never overwritten); one that holds metrics but no usable
/// checkpoint is refused. The directory is locked for the life of the run ([`RunDir::lock`]).
///
/// Every skipped meta-update is reported on stderr; `meta.max_skipped` consecutive ones stop
/// the run with [`Error::Diverged`], and no checkpoint is written after a skipped update (so
/// the newest checkpoint is the last good state) unless `meta.max_skipped` is 0. When
/// `opts.stop` is set, the run stops after the outer step in progress, writes a checkpoint and
/// returns [`Error::Interrupted`].
///
/// With `task.kind = "lm"` it trains the language model of `[lm]` instead
/// ([`lm::train_lm`]).
///
/// A run that fails in a directory it created, before it saved anything (a setting the task,
/// the optimizer or the checkpoint plan refuses once the GPU is open), removes the directory
/// again: a failed run leaves nothing behind.
pub fn train(gpu: &Arc<Gpu>, cfg: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    if cfg.task.kind == crate::config::LM_KIND {
        if !opts.devices.is_empty() {
            return Err(Error::invalid(
                "the language-model trainer (task.kind = \"lm\") runs on one device; pass one adapter",
            ));
        }
        return train_lm_summary(gpu, cfg, opts);
    }
    let net = collective(cfg)?;
    let root = net.as_ref().is_none_or(|n| n.rank() == 0);
    let path = Path::new(&cfg.output.dir);
    let fresh = !path.exists();
    let r = train_meta(gpu, cfg, opts, net);
    if r.is_err() && fresh && root {
        remove_if_nothing_saved(path);
    }
    r
}

/// The processes of the run (`dist.backend`): none besides this one, or MPI's ranks.
fn collective(cfg: &Config) -> Result<Option<Box<dyn Collective>>> {
    match cfg.dist.backend {
        crate::config::DistBackend::Local => Ok(None),
        #[cfg(feature = "mpi")]
        crate::config::DistBackend::Mpi => {
            let timeout = std::time::Duration::from_secs_f64(cfg.dist.timeout_s);
            Ok(Some(Box::new(crate::dist::mpi::Mpi::init(timeout)?)))
        }
        #[cfg(not(feature = "mpi"))]
        crate::config::DistBackend::Mpi => Err(Error::invalid(
            "dist.backend = \"mpi\" needs metalearn built with MPI: `cargo build --release --features mpi` (Debian: apt-get install libopenmpi-dev openmpi-bin libclang-dev), then run it under mpirun",
        )),
    }
}

/// What `metalearn train --dry-run` reports.
#[derive(Clone, Debug)]
pub struct DryRun {
    /// The GPU memory the run will hold, by purpose.
    pub memory: crate::meta::MemoryReport,
    /// Memory the adapter has, where it is known ([`Gpu::memory_available`]).
    pub available: Option<u64>,
}

/// Everything [`train`] checks before it writes anything, and the estimate of the memory the
/// run will hold ([`MetaTrainer::estimate`]); writes nothing and allocates only the task and
/// the optimizer's workspace. A run that cannot fit the adapter is an error naming the limit.
pub fn dry_run(gpu: &Arc<Gpu>, cfg: &Config) -> Result<DryRun> {
    if cfg.task.kind == crate::config::LM_KIND {
        return Err(Error::invalid(
            "train --dry-run estimates meta-training runs; the language-model trainer (task.kind = \"lm\") has no estimate yet: run it without --dry-run",
        ));
    }
    let build = |g: &Arc<Gpu>, n: usize| build_task(g, cfg, Sample::Train, n);
    let (opt, meta) = (cfg.optimizer()?, cfg.meta_config()?);
    let memory = crate::dist::estimate(gpu, cfg.task.instances, &build, &opt, &meta)?;
    Ok(DryRun {
        memory,
        available: gpu.memory_available(),
    })
}

/// Remove `dir` when it holds nothing a run saved: at most its lock file, its config and an
/// empty metrics file.
fn remove_if_nothing_saved(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let nothing = entries.flatten().all(|e| {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let empty = e.metadata().is_ok_and(|m| m.len() == 0);
        name == crate::meta::save::LOCK_FILE
            || name == "config.toml"
            || (name == "metrics.jsonl" && empty)
    });
    if nothing {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// What rank 0 (or the only process) opens before meta-training: the run directory, its lock,
/// the checkpoints it holds, the metrics file and the checkpoint to resume from.
struct Prepared {
    dir: RunDir,
    lock: RunLock,
    existing: Vec<(usize, PathBuf)>,
    metrics_path: PathBuf,
    resume_from: Option<Checkpoint>,
}

fn prepare(cfg: &Config, opts: &TrainOptions) -> Result<Prepared> {
    let dir = RunDir::create(Path::new(&cfg.output.dir), cfg.output.keep)?;
    let lock = dir.lock()?;
    if let Some(pid) = lock.stale() {
        eprintln!(
            "note: took over the stale lock file {} of process {pid}, which no longer holds it",
            lock.path().display()
        );
    }
    for f in dir.remove_temporaries()? {
        eprintln!(
            "note: removed {}, left by an interrupted write",
            f.display()
        );
    }
    let existing = dir.checkpoints()?;
    let metrics_path = dir.path().join("metrics.jsonl");
    let resume_from = if opts.resume {
        match dir.latest() {
            Ok(Some((ck, skipped))) => {
                for e in skipped {
                    eprintln!("skipping an unreadable checkpoint: {e}");
                }
                Some(ck)
            }
            Ok(None) => {
                refuse_orphan_metrics(&dir, &metrics_path, None)?;
                None
            }
            Err(e) => {
                refuse_orphan_metrics(&dir, &metrics_path, Some(e))?;
                None
            }
        }
    } else if let Some((_, p)) = existing.last() {
        return Err(Error::invalid(format!(
            "the run directory {} already holds checkpoints (newest {}); pass --resume to continue that run, or choose another directory with --out",
            dir.path().display(),
            p.display()
        )));
    } else {
        refuse_orphan_metrics(&dir, &metrics_path, None)?;
        None
    };
    if let Some(ck) = &resume_from {
        if ck.format != crate::meta::save::FORMAT_VERSION {
            return Err(Error::Checkpoint {
                path: dir.checkpoint_path(ck.state.step),
                problem: format!(
                    "is of format {}, written by an earlier version of metalearn that drew its random numbers differently; this version resumes format {} only",
                    ck.format,
                    crate::meta::save::FORMAT_VERSION
                ),
                hint: "evaluate it with metalearn eval, or start the run again in another directory".into(),
            });
        }
        let saved = Config::from_toml(&ck.config, "the checkpoint's config")?;
        let changed = config_differences(&saved, cfg)?;
        if !same_training(&saved, cfg) {
            let keys = config_differences(&training_part(&saved), &training_part(cfg))?;
            return Err(Error::invalid(format!(
                "the checkpoint in {} was trained with another setting ({}); resume with the same config (only meta.outer_steps, meta.max_skipped, [eval] and [output] may change), or start a new run in another directory",
                dir.path().display(),
                differences_text(&keys)
            )));
        }
        let noted: Vec<_> = changed
            .into_iter()
            .filter(|(k, _, _)| k != "output.dir")
            .collect();
        if !noted.is_empty() {
            eprintln!(
                "note: resuming with {}; config.toml of the run directory is updated to say so",
                differences_text(&noted)
            );
        }
    }
    if let Some(ck) = &resume_from {
        let name = cfg.optimizer()?.name().to_string();
        if ck.optimizer != name {
            return Err(Error::Checkpoint {
                path: dir.path().into(),
                problem: format!(
                    "holds optimizer '{}', the config asks for '{name}'",
                    ck.optimizer
                ),
                hint: "use the run's own config or another run directory".into(),
            });
        }
    }
    Ok(Prepared {
        dir,
        lock,
        existing,
        metrics_path,
        resume_from,
    })
}

fn train_meta(
    gpu: &Arc<Gpu>,
    cfg: &Config,
    opts: &TrainOptions,
    net: Option<Box<dyn Collective>>,
) -> Result<TrainSummary> {
    // Rank 0 opens the run directory and the checkpoint; the other ranks receive its outcome.
    let root = net.as_ref().is_none_or(|n| n.rank() == 0);
    let prepared = if root { Some(prepare(cfg, opts)) } else { None };
    let resume_from = match &net {
        None => None,
        Some(n) => share_resume(n.as_ref(), prepared.as_ref())?,
    };
    let Prepared {
        dir,
        lock,
        existing,
        metrics_path,
        resume_from: own,
    } = match prepared {
        Some(p) => p?,
        None => return train_peer(gpu, cfg, opts, net, resume_from),
    };
    let resume_from = own;
    let opt = cfg.optimizer()?;
    let mut gpus = vec![gpu.clone()];
    gpus.extend(opts.devices.iter().cloned());
    let build = |g: &Arc<Gpu>, n: usize| build_task(g, cfg, Sample::Train, n);
    let meta = cfg.meta_config()?;
    let mut dp = DataParallel::new_ranked(&gpus, cfg.task.instances, &build, opt, meta, net)?;
    if dp.devices() > gpus.len() {
        let m = dp.memory();
        eprintln!(
            "the instances run in {} chunks per device, one trainer each (largest checkpoint slot {}; meta.chunks = {}); {} of GPU memory in all",
            dp.devices() / gpus.len(),
            crate::report::bytes_text(m.slot_bytes),
            cfg.meta.chunks,
            crate::report::bytes_text(m.total())
        );
    }
    if let Some(ck) = &resume_from {
        dp.restore(&ck.state)?;
    }
    std::fs::write(dir.path().join("config.toml"), cfg.to_toml()?)
        .map_err(|e| Error::io(dir.path().join("config.toml"), e))?;
    if let Some(ck) = &resume_from {
        drop_metrics_after(&metrics_path, ck.state.step)?;
    }
    let mut metrics = crate::report::MetricsWriter::open(&metrics_path)?;
    let total = cfg.meta.outer_steps;
    let start = dp.first().steps_taken();
    let (end, mut summary) = span(cfg, opts, start);
    let bar = crate::progress::ProgressBar::new(opts.progress, total as u64, start as u64)?;
    let t0 = Instant::now();
    let held = if cfg.eval.every > 0 {
        let h = build_task(gpu, cfg, Sample::HeldOut, cfg.eval.instances)?;
        let init = h.init_params(&mut Stream::Init(0).rng(cfg.seed, Sample::HeldOut))?;
        Some((h, init))
    } else {
        None
    };
    let note = |msg: &str| match &bar {
        Some(b) => b.suspend(|| eprintln!("{msg}")),
        None => eprintln!("{msg}"),
    };
    let max_skipped = cfg.meta.max_skipped;
    let mut streak = 0usize;
    let mut last_save = Instant::now();
    let mut pending = false;
    for _ in start..end {
        let r = dp.step()?;
        summary.meta_losses.push(r.meta_loss);
        summary.skipped += usize::from(r.skipped.is_some());
        let step = r.step;
        metrics.write(&json!({
                "step": step,
                "meta_loss": r.meta_loss,
                "grad_norm": r.grad_norm,
                "skipped": r.skipped.map(|s| format!("{:?}", s.what)),
                "skip_cause": r.skipped.map(|s| s.describe()),
                "seconds": t0.elapsed().as_secs_f64(),
        }))?;
        match &r.skipped {
            Some(s) => {
                streak += 1;
                note(&format!(
                    "outer step {step}: meta-update skipped ({streak} in a row): {}",
                    s.describe()
                ));
                if max_skipped > 0 && streak >= max_skipped {
                    if let Some(b) = &bar {
                        b.abandon();
                    }
                    return Err(Error::Diverged {
                        skipped: streak,
                        first: step + 1 - streak,
                        last: step,
                        cause: s.describe(),
                        hint: diverged_hint(cfg, &dir)?,
                    });
                }
            }
            None => streak = 0,
        }
        if let Some(b) = &bar {
            b.set_position(step as u64);
            b.set_message(format!("meta-loss {:.4}", r.meta_loss));
        }
        if let Some((h, init)) = &held {
            if step % cfg.eval.every == 0 {
                let tr = dp.first();
                let init = initial_params(tr, h.as_ref(), init)?;
                let (c, q) = evaluate_with_held_out(
                    gpu,
                    h.as_ref(),
                    tr.optimizer(),
                    &tr.phi()?,
                    &init,
                    cfg.eval.steps,
                    h.scores_held_out(),
                )?;
                metrics.write(&json!({
                    "step": step,
                    "eval_final_loss": c.final_mean(),
                    "eval_final_held_out_loss": q.map(|q| q.final_mean()),
                }))?;
            }
        }
        let minutes = cfg.output.checkpoint_minutes;
        pending |= (cfg.output.checkpoint_every > 0 && step % cfg.output.checkpoint_every == 0)
            || (minutes > 0.0 && last_save.elapsed().as_secs_f64() >= 60.0 * minutes);
        // After a skipped update the state may hold non-finite carried θ: keep the last good
        // checkpoint and write the pending one after the next good update.
        let good = streak == 0 || max_skipped == 0;
        let interrupted = opts.stop.as_ref().is_some_and(StopFlag::is_set);
        // The other ranks save and stop with rank 0.
        agree(&dp, good && (pending || interrupted), interrupted)?;
        if good && (pending || interrupted) {
            summary.checkpoint =
                Some(dir.save(&checkpoint_with(dp.state()?, dp.first().optimizer(), cfg)?)?);
            last_save = Instant::now();
            pending = false;
        }
        if interrupted && step < end {
            if let Some(b) = &bar {
                b.abandon();
            }
            let saved = match (&summary.checkpoint, good) {
                (Some(p), true) => format!("checkpoint {} written", p.display()),
                _ => match dir.checkpoints()?.last() {
                    Some((_, p)) => format!(
                        "the last update was skipped, so no checkpoint was written; the newest is {}",
                        p.display()
                    ),
                    None => "no checkpoint was written (the last update was skipped)".into(),
                },
            };
            return Err(Error::Interrupted {
                step,
                saved,
                hint: format!(
                    "continue with `metalearn train --resume --out {}` and the same --config and --set options",
                    dir.path().display()
                ),
            });
        }
    }
    summary.steps = dp.first().steps_taken();
    summary.seconds = t0.elapsed().as_secs_f64();
    let mut last_save = false;
    if summary.steps > start || existing.is_empty() {
        if streak > 0 && max_skipped > 0 {
            note(&format!(
                "the last {streak} meta-updates were skipped: no checkpoint written after them"
            ));
        } else {
            last_save = !dir.checkpoint_path(summary.steps).exists();
        }
    }
    agree(&dp, last_save, false)?;
    if last_save {
        summary.checkpoint =
            Some(dir.save(&checkpoint_with(dp.state()?, dp.first().optimizer(), cfg)?)?);
    }
    if let Some(b) = bar {
        b.finish();
    }
    drop(lock);
    Ok(summary)
}

/// The last outer step this invocation takes from `start` (`opts.stop_after` of them at most)
/// and its summary so far.
fn span(cfg: &Config, opts: &TrainOptions, start: usize) -> (usize, TrainSummary) {
    let total = cfg.meta.outer_steps;
    let end = opts.stop_after.map_or(total, |k| total.min(start + k));
    let summary = TrainSummary {
        steps: start,
        meta_losses: Vec::new(),
        skipped: 0,
        checkpoint: None,
        seconds: 0.0,
    };
    (end, summary)
}

/// Rank 0's decision to save a checkpoint now (every rank takes part in the state's exchange)
/// and to stop, on every rank; without other ranks, `(save, stop)` itself.
fn agree(dp: &DataParallel, save: bool, stop: bool) -> Result<(bool, bool)> {
    let Some(n) = dp.collective() else {
        return Ok((save, stop));
    };
    let mut b = vec![u8::from(save), u8::from(stop)];
    n.broadcast(&mut b)?;
    Ok((b.first() == Some(&1), b.get(1) == Some(&1)))
}

/// Rank 0's outcome of [`prepare`] on every rank: the checkpoint to resume from, or the error
/// that stopped rank 0 (every rank returns it).
fn share_resume(
    n: &dyn Collective,
    prepared: Option<&Result<Prepared>>,
) -> Result<Option<Checkpoint>> {
    let mut msg = match prepared {
        Some(Ok(p)) => match &p.resume_from {
            Some(ck) => [vec![1u8], crate::meta::save::to_bytes(ck)?].concat(),
            None => vec![2],
        },
        Some(Err(e)) => [vec![0u8], e.to_string().into_bytes()].concat(),
        None => Vec::new(),
    };
    n.broadcast(&mut msg)?;
    match msg.split_first() {
        Some((1, ck)) => Ok(Some(crate::meta::save::from_bytes(
            ck,
            Path::new("rank 0's checkpoint"),
        )?)),
        Some((2, _)) => Ok(None),
        Some((0, e)) if prepared.is_none() => Err(Error::invalid(format!(
            "rank 0 stopped: {}",
            String::from_utf8_lossy(e)
        ))),
        Some((0, _)) => Ok(None),
        _ => Err(Error::invalid(
            "rank 0 sent no answer about the run directory",
        )),
    }
}

/// A rank other than 0: the same outer steps, exchanges and decisions, no files.
fn train_peer(
    gpu: &Arc<Gpu>,
    cfg: &Config,
    opts: &TrainOptions,
    net: Option<Box<dyn Collective>>,
    resume_from: Option<Checkpoint>,
) -> Result<TrainSummary> {
    let mut gpus = vec![gpu.clone()];
    gpus.extend(opts.devices.iter().cloned());
    let build = |g: &Arc<Gpu>, n: usize| build_task(g, cfg, Sample::Train, n);
    let (opt, meta) = (cfg.optimizer()?, cfg.meta_config()?);
    let mut dp = DataParallel::new_ranked(&gpus, cfg.task.instances, &build, opt, meta, net)?;
    if let Some(ck) = &resume_from {
        dp.restore(&ck.state)?;
    }
    let start = dp.first().steps_taken();
    let (end, mut summary) = span(cfg, opts, start);
    let t0 = Instant::now();
    let max_skipped = cfg.meta.max_skipped;
    let mut streak = 0usize;
    for _ in start..end {
        let r = dp.step()?;
        summary.meta_losses.push(r.meta_loss);
        summary.skipped += usize::from(r.skipped.is_some());
        let step = r.step;
        match &r.skipped {
            Some(s) => {
                streak += 1;
                if max_skipped > 0 && streak >= max_skipped {
                    return Err(Error::Diverged {
                        skipped: streak,
                        first: step + 1 - streak,
                        last: step,
                        cause: s.describe(),
                        hint: "see rank 0's output".into(),
                    });
                }
            }
            None => streak = 0,
        }
        let (save, stop) = agree(&dp, false, false)?;
        if save {
            dp.state()?;
        }
        if stop && step < end {
            return Err(Error::Interrupted {
                step,
                saved: "rank 0 writes the checkpoints".into(),
                hint: format!(
                    "continue with `mpirun … metalearn train --resume --out {}` and the same options",
                    cfg.output.dir
                ),
            });
        }
    }
    let (save, _) = agree(&dp, false, false)?;
    if save {
        dp.state()?;
    }
    summary.steps = dp.first().steps_taken();
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}

/// [`lm::train_lm`] for [`train`]: `steps` are its training steps, `meta_losses` its mean
/// training losses, `checkpoint` the model file.
fn train_lm_summary(gpu: &Arc<Gpu>, cfg: &Config, opts: &TrainOptions) -> Result<TrainSummary> {
    let s = lm::train_lm(gpu, cfg, opts)?;
    Ok(TrainSummary {
        steps: s.steps,
        meta_losses: s.losses.iter().map(|&l| l as f32).collect(),
        skipped: 0,
        checkpoint: Some(s.file),
        seconds: s.seconds,
    })
}

/// The fix of a diverged run: the likely causes given its settings, and where its last good
/// state is.
fn diverged_hint(cfg: &Config, dir: &RunDir) -> Result<String> {
    let mut causes = Vec::new();
    if cfg.meta.lr > 0.1 {
        causes.push(format!(
            "meta.lr = {} is large (the default is 0.01)",
            cfg.meta.lr
        ));
    }
    if cfg.meta.clip == 0.0 {
        causes.push("meta.clip = 0 disables clipping of the meta-gradient".to_string());
    }
    if causes.is_empty() {
        causes.push(format!(
            "meta.lr = {} may be too large for this task, or meta.clip = {} too loose",
            cfg.meta.lr, cfg.meta.clip
        ));
    }
    let last = match dir.checkpoints()?.last() {
        Some((_, p)) => format!(
            "the newest checkpoint, {}, holds the last good state",
            p.display()
        ),
        None => "no checkpoint was written".to_string(),
    };
    Ok(format!(
        "Likely: {}. Lower meta.lr (--set meta.lr=...) or clip the meta-gradient (--set meta.clip=1), and start again in another directory; {last}; meta.max_skipped = 0 never stops",
        causes.join("; ")
    ))
}

/// A run directory with metrics but no usable checkpoint cannot be continued: resuming would
/// append a second sequence of steps from 1 to the old metrics, so it is an error naming what
/// was found (`unreadable`: why the checkpoints could not be read). Without metrics: `Ok`, or
/// the error `unreadable`.
fn refuse_orphan_metrics(dir: &RunDir, metrics: &Path, unreadable: Option<Error>) -> Result<()> {
    let lines = std::fs::read_to_string(metrics)
        .map(|t| t.lines().filter(|l| !l.trim().is_empty()).count())
        .unwrap_or(0);
    if lines == 0 {
        return unreadable.map_or(Ok(()), Err);
    }
    let found = match &unreadable {
        Some(e) => format!("no readable checkpoint ({e})"),
        None => "no checkpoint".to_string(),
    };
    Err(Error::Checkpoint {
        path: dir.path().to_path_buf(),
        problem: format!(
            "the run directory holds {} ({lines} lines from an earlier run) but {found}, so there is nothing to continue from",
            metrics.display()
        ),
        hint: format!(
            "to start over, remove {} (or the whole directory), or train into another directory with --out",
            metrics.display()
        ),
    })
}

/// Keep only the metrics lines of outer steps up to `step` (those after it were written by a
/// run that stopped before its next checkpoint and are about to be recomputed).
pub(crate) fn drop_metrics_after(path: &Path, step: usize) -> Result<()> {
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
