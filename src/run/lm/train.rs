//! LM training runs ([`train_lm`]): Adam on N streams of the training documents, validation,
//! checkpoints every `output.checkpoint_every` steps and on a stop signal, and resumption.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use serde_json::json;

use super::eval::{score, Scoring};
use super::resume::{training_part, LmCheckpoint, LM_CHECKPOINT};
use super::{chunks_of, read_data, spec_of, token_chunk, LmMethod, LmModel, LM_FILE, VALID_SALT};
use crate::config::{Config, LM_KIND};
use crate::data::text::DocumentStream;
use crate::gpu::Gpu;
use crate::meta::{write_atomically, RunDir};
use crate::optim::Optimizer;
use crate::run::{StopFlag, TrainOptions};
use crate::tasks::lm::StaticTrainer;
use crate::tasks::TaskRng;
use crate::{Error, Result};

/// What [`train_lm`] did.
#[derive(Clone, Debug)]
pub struct LmTrainSummary {
    /// Steps taken in total (including those before a resume).
    pub steps: usize,
    /// Mean training loss of every step of this invocation.
    pub losses: Vec<f64>,
    /// (step, validation perplexity) of every evaluation of this invocation.
    pub valid: Vec<(usize, f64)>,
    /// The model file written, or the checkpoint when the run stopped early (`stop_after`).
    pub file: PathBuf,
    /// True when the run reached `lm.steps` and wrote its model.
    pub finished: bool,
    /// Seconds of training (evaluations included).
    pub seconds: f64,
}

/// The checkpoint of `dir` to resume, checked against `cfg`: the same training, steps left.
fn checkpoint_to_resume(dir: &RunDir, cfg: &Config) -> Result<LmCheckpoint> {
    let path = dir.path().join(LM_CHECKPOINT);
    if !path.exists() {
        return Err(Error::invalid(format!(
            "{} holds no LM checkpoint to resume ({LM_CHECKPOINT}); train without --resume to start the run",
            dir.path().display()
        )));
    }
    let ck = LmCheckpoint::load(&path)?;
    if training_part(&ck.config) != training_part(cfg) {
        let keys: Vec<String> = crate::run::config_differences(&ck.config, cfg)?
            .into_iter()
            .map(|(k, a, b)| format!("{k}: {a} → {b}"))
            .collect();
        return Err(Error::invalid(format!(
            "the checkpoint of {} was trained with another config ({}); resume with the run's own config (only lm.steps, lm.eval_every, lm.eval_chunks, the evaluation keys and [output] may change)",
            dir.path().display(),
            keys.join("; ")
        )));
    }
    if ck.step >= cfg.lm.steps {
        return Err(Error::invalid(format!(
            "the checkpoint of {} is at step {} of lm.steps = {}: nothing is left to train; raise lm.steps",
            dir.path().display(),
            ck.step,
            cfg.lm.steps
        )));
    }
    Ok(ck)
}

/// Train the language model `cfg.lm` describes: read and split the corpus, build the
/// vocabulary on the training split, run `lm.steps` Adam steps on N streams of training
/// documents, validate every `lm.eval_every` steps and at the end, and write `config.toml`,
/// `metrics.jsonl` and [`LM_FILE`] into the run directory `cfg.output.dir`. A checkpoint
/// ([`LM_CHECKPOINT`]) is written every `output.checkpoint_every` steps and when `opts.stop`
/// is set (the run then returns [`Error::Interrupted`]); `opts.resume` continues from it
/// bit-identically. Refuses a directory that holds a model, an unfinished run (without
/// `--resume`) or meta-training checkpoints. `opts.stop_after` stops after that many steps of
/// this invocation with a checkpoint, as a kill after it would.
pub fn train_lm(gpu: &Arc<Gpu>, cfg: &Config, opts: &TrainOptions) -> Result<LmTrainSummary> {
    if cfg.task.kind != LM_KIND {
        return Err(Error::invalid(format!(
            "train_lm needs task.kind = \"{LM_KIND}\", got '{}'; use run::train",
            cfg.task.kind
        )));
    }
    let dir = RunDir::create(Path::new(&cfg.output.dir), cfg.output.keep)?;
    let file = dir.path().join(LM_FILE);
    let ckpt_path = dir.path().join(LM_CHECKPOINT);
    if file.exists() {
        return Err(Error::invalid(format!(
            "the run directory {} already holds a trained language model ({}); choose another directory with --out, or remove the file to train again",
            dir.path().display(),
            file.display()
        )));
    }
    if let Some((_, p)) = dir.checkpoints()?.last() {
        return Err(Error::invalid(format!(
            "the run directory {} holds meta-training checkpoints (newest {}); choose another directory with --out",
            dir.path().display(),
            p.display()
        )));
    }
    let resumed = if opts.resume {
        Some(checkpoint_to_resume(&dir, cfg)?)
    } else {
        if ckpt_path.exists() {
            return Err(Error::invalid(format!(
                "the run directory {} holds an unfinished language-model run ({LM_CHECKPOINT}); continue it with --resume, or choose another directory with --out",
                dir.path().display()
            )));
        }
        None
    };
    let lm = &cfg.lm;
    let (splits, vocab) = read_data(lm)?;
    let spec = spec_of(lm, &vocab)?;
    let layout = spec.layout()?;
    eprintln!(
        "language model: V = {}, E = {}, H = {}, {} layer(s), {} parameters; {} streams × {} tokens per step",
        spec.vocab,
        spec.embed,
        spec.hidden,
        spec.layers,
        layout.size(),
        lm.streams,
        lm.chunk
    );
    let mut rng = TaskRng::seed_from_u64(cfg.seed);
    let theta0 = spec.init(&mut rng, 1)?;
    let mut train =
        DocumentStream::from_documents(&splits.train, &vocab, lm.streams, lm.chunk, cfg.seed)?;
    let valid = chunks_of(
        &splits.valid,
        &vocab,
        (lm, lm.eval_chunks, cfg.seed ^ VALID_SALT),
    )?;
    let adam = Optimizer::parse("adam")?.with_lr(lm.lr);
    let mut tr = StaticTrainer::new(
        gpu.clone(),
        (&spec, &theta0),
        (lm.streams, lm.chunk),
        (adam, &[]),
    )?;
    let config_path = dir.path().join("config.toml");
    let metrics_path = dir.path().join("metrics.jsonl");
    let start = match &resumed {
        Some(ck) => {
            ck.vocab.check_matches(&vocab)?;
            tr.restore(&ck.state)?;
            for _ in 0..ck.step {
                train.next_chunk();
            }
            crate::run::drop_metrics_after(&metrics_path, ck.step)?;
            eprintln!(
                "resuming {} at step {} of {}",
                dir.path().display(),
                ck.step,
                lm.steps
            );
            ck.step
        }
        None => {
            // A run that stopped before its first checkpoint left lines about to be recomputed.
            write_atomically(&metrics_path, b"")?;
            0
        }
    };
    write_atomically(&config_path, cfg.to_toml()?.as_bytes())?;
    let mut metrics = crate::report::MetricsWriter::open(&metrics_path)?;
    let end = opts
        .stop_after
        .map_or(lm.steps, |k| (start + k).min(lm.steps));
    let bar = crate::progress::ProgressBar::new(opts.progress, lm.steps as u64, start as u64)?;
    let tokens_per_step = (lm.streams * lm.chunk) as f64;
    let t0 = Instant::now();
    let mut summary = LmTrainSummary {
        steps: start,
        losses: Vec::with_capacity(end - start),
        valid: Vec::new(),
        file: file.clone(),
        finished: false,
        seconds: 0.0,
    };
    let validate = |tr: &StaticTrainer,
                    step: usize,
                    metrics: &mut crate::report::MetricsWriter|
     -> Result<f64> {
        let theta = tr.weights()?;
        let s = score(
            gpu,
            (&spec, &theta),
            (lm, &valid),
            Scoring::Static,
            LmMethod::Static,
        )?;
        metrics.write(&json!({
            "step": step,
            "valid_loss": s.loss,
            "valid_perplexity": s.perplexity,
        }))?;
        Ok(s.perplexity)
    };
    let save = |tr: &StaticTrainer, step: usize| -> Result<()> {
        let ck = LmCheckpoint {
            config: cfg.clone(),
            vocab: vocab.clone(),
            step,
            state: tr.snapshot()?,
        };
        write_atomically(&ckpt_path, &ck.to_bytes()?)
    };
    for step in start + 1..=end {
        let chunk = train.next_chunk().arrays();
        let loss = tr.step(token_chunk(&chunk))?;
        summary.losses.push(loss);
        let seconds = t0.elapsed().as_secs_f64();
        let tokens_per_s = (step - start) as f64 * tokens_per_step / seconds.max(1e-9);
        metrics.write(&json!({
            "step": step,
            "loss": loss,
            "perplexity": loss.exp(),
            "tokens_per_s": tokens_per_s,
            "seconds": seconds,
        }))?;
        if let Some(b) = &bar {
            b.set_position(step as u64);
            b.set_message(format!(
                "loss {loss:.4}, perplexity {:.1}, {tokens_per_s:.0} tokens/s",
                loss.exp()
            ));
        }
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "the training loss is {loss} at step {step}; lower lm.lr (now {})",
                lm.lr
            )));
        }
        if lm.eval_every > 0 && step % lm.eval_every == 0 && step < lm.steps {
            let ppl = validate(&tr, step, &mut metrics)?;
            summary.valid.push((step, ppl));
        }
        let every = cfg.output.checkpoint_every;
        let interrupted = opts.stop.as_ref().is_some_and(StopFlag::is_set);
        if step < lm.steps && (interrupted || step == end || (every > 0 && step % every == 0)) {
            save(&tr, step)?;
        }
        if interrupted && step < lm.steps {
            if let Some(b) = &bar {
                b.abandon();
            }
            return Err(Error::Interrupted {
                step,
                saved: format!("checkpoint {} written", ckpt_path.display()),
                hint: format!(
                    "continue with `metalearn train --resume --out {}` and the same --config and --set options",
                    dir.path().display()
                ),
            });
        }
    }
    summary.steps = end;
    summary.seconds = t0.elapsed().as_secs_f64();
    if end < lm.steps {
        summary.file = ckpt_path;
        return Ok(summary);
    }
    let ppl = validate(&tr, end, &mut metrics)?;
    summary.valid.push((end, ppl));
    if let Some(b) = bar {
        b.finish();
    }
    let model = LmModel {
        config: cfg.clone(),
        vocab,
        step: end,
        theta: tr.weights()?,
    };
    write_atomically(&file, &model.to_bytes()?)?;
    // The model supersedes the checkpoint.
    if ckpt_path.exists() {
        std::fs::remove_file(&ckpt_path).map_err(|e| Error::io(&ckpt_path, e))?;
    }
    summary.finished = true;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}
