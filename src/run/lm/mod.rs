//! Training and evaluating the LSTM language model of `[lm]` (`task.kind = "lm"`): ordinary
//! training with Adam on a document stream of the training split ([`train_lm`], what
//! `metalearn train` runs for such a config), the model file `lm.safetensors` of the run
//! directory ([`LmModel`]), and the evaluation of `metalearn eval` on the test split
//! ([`evaluate_lm`]): static, dynamic (SGD on every chunk's gradient) and static with the state
//! reset before every chunk, each with its perplexity and its loss by position in the document.
//!
//! A run directory is never overwritten: a directory that holds `lm.safetensors` or
//! meta-training checkpoints is refused. Resuming an LM run is not there yet.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rand::SeedableRng;
use safetensors::{Dtype, SafeTensors};
use serde_json::json;

use super::TrainOptions;

mod eval;
mod seeds;
use crate::config::{Config, LmConfig, LmCorpus, LmTokens, LM_KIND};
use crate::data::text::{
    read_linux_doc, read_text_dir, read_wikitext, split_documents, ChunkArrays, DocumentStream,
    Splits, Vocab, WordOptions,
};
use crate::gpu::Gpu;
use crate::meta::save::{fnv1a, metadata_checksum, FNV_OFFSET};
use crate::meta::{tensor_file, write_atomically, RunDir};
use crate::optim::Optimizer;
use crate::tasks::lm::{LmSpec, StaticTrainer, TokenChunk};
use crate::tasks::TaskRng;
use crate::{Error, Result};
pub use eval::{evaluate_lm, LmEvaluation, LmMethod, LmScore, PositionBin, TunePoint};
use eval::{score, Scoring};
pub use seeds::{LmSeeds, MethodSeeds, LM_EVAL_JSON};

/// The model file of an LM run directory.
pub const LM_FILE: &str = "lm.safetensors";

/// Format tag of [`LM_FILE`].
pub const LM_FORMAT: &str = "metalearn-lm-1";

/// Positions per bin of the loss-by-position curves.
pub const POSITION_BIN: u32 = 32;

/// Seed salts of the validation and test streams (the training stream uses the seed itself).
const VALID_SALT: u64 = 0x7661_6c69_6400_0001;
const TEST_SALT: u64 = 0x7465_7374_0000_0001;
/// Seed salt of the training chunks whose gradients give the RMS rule's statistics.
const STATS_SALT: u64 = 0x7374_6174_7300_0001;

/// A trained language model: its config, vocabulary, the steps it was trained for and its
/// weights (one parameter block of [`LmSpec::layout`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LmModel {
    /// The run's config (`task.kind = "lm"`).
    pub config: Config,
    /// The vocabulary the model reads.
    pub vocab: Vocab,
    /// Training steps taken.
    pub step: usize,
    /// The weights.
    pub theta: Vec<f32>,
}

impl LmModel {
    /// The model's sizes: the vocabulary's and `[lm]`'s widths.
    pub fn spec(&self) -> Result<LmSpec> {
        spec_of(&self.config.lm, &self.vocab)
    }

    /// The bytes of [`LM_FILE`]: tensor `theta`; metadata `format`, `step`, `config` (TOML),
    /// `vocab` (the vocabulary's text form) and `checksum` (FNV-1a 64 of the tensor bytes, then
    /// of every other metadata entry as `key NUL value NUL` in key order).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let bytes = bytemuck::cast_slice::<f32, u8>(&self.theta);
        let mut meta: BTreeMap<String, String> = [
            ("format", LM_FORMAT.to_string()),
            ("step", self.step.to_string()),
            ("config", self.config.to_toml()?),
            ("vocab", self.vocab.to_text()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let checksum = metadata_checksum(fnv1a(FNV_OFFSET, bytes), &meta);
        meta.insert("checksum".into(), format!("{checksum:016x}"));
        let shape = [self.theta.len()];
        tensor_file::serialize(&[("theta", &shape, &self.theta)], &meta)
    }

    /// Parse [`LM_FILE`] bytes; `path` names the file in errors. Checks the format, the
    /// checksum, the config, the vocabulary and the weights' length against both.
    pub fn from_bytes(data: &[u8], path: &Path) -> Result<LmModel> {
        let bad = |problem: String| Error::Checkpoint {
            path: path.to_path_buf(),
            problem,
            hint: "the file is truncated or corrupt, or not a metalearn language model; train \
                   it again with metalearn train into a new run directory"
                .into(),
        };
        let st = SafeTensors::deserialize(data)
            .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
        let meta = tensor_file::read_metadata(data, &bad)?;
        let meta = &meta;
        let get = |k: &str| tensor_file::required(meta, k, &bad);
        let format = get("format")?;
        if format != LM_FORMAT {
            return Err(bad(format!("format '{format}', expected '{LM_FORMAT}'")));
        }
        let names = st.names();
        if names.len() != 1 {
            return Err(bad(format!(
                "{} tensors, expected the one tensor 'theta'",
                names.len()
            )));
        }
        let t = st
            .tensor("theta")
            .map_err(|e| bad(format!("tensor 'theta': {e}")))?;
        if t.dtype() != Dtype::F32 || t.shape().len() != 1 {
            return Err(bad(format!(
                "tensor 'theta' is {:?} of shape {:?}, expected a flat F32 tensor",
                t.dtype(),
                t.shape()
            )));
        }
        let checksum = metadata_checksum(fnv1a(FNV_OFFSET, t.data()), meta);
        let want = get("checksum")?;
        if *want != format!("{checksum:016x}") {
            return Err(bad(format!(
                "checksum mismatch (stored {want}, computed {checksum:016x}): the weights or the metadata are corrupt"
            )));
        }
        let theta: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let step_text = get("step")?;
        let step = step_text.parse().map_err(|_| {
            bad(format!(
                "metadata 'step' = '{step_text}' is not a whole number"
            ))
        })?;
        let config =
            Config::from_toml(get("config")?, &format!("{} (its config)", path.display()))?;
        if config.task.kind != LM_KIND {
            return Err(bad(format!(
                "its config has task.kind = '{}', not '{LM_KIND}'",
                config.task.kind
            )));
        }
        let vocab = Vocab::parse(get("vocab")?)
            .map_err(|e| bad(format!("its vocabulary does not parse: {e}")))?;
        let model = LmModel {
            config,
            vocab,
            step,
            theta,
        };
        let want_bytes = matches!(model.config.lm.tokens, LmTokens::Bytes);
        let is_bytes = matches!(model.vocab.kind(), crate::data::text::VocabKind::Byte);
        if want_bytes != is_bytes {
            return Err(bad(format!(
                "its config says lm.tokens = '{:?}', its vocabulary is a {}",
                model.config.lm.tokens,
                model.vocab.describe()
            )
            .to_lowercase()));
        }
        let p = model.spec()?.layout()?.size();
        if model.theta.len() != p {
            return Err(bad(format!(
                "{} weights, the model of its config and vocabulary has {p}",
                model.theta.len()
            )));
        }
        Ok(model)
    }

    /// Read [`LM_FILE`], or the one in a run directory.
    pub fn load(path: &Path) -> Result<LmModel> {
        let file = if path.is_dir() {
            path.join(LM_FILE)
        } else {
            path.to_path_buf()
        };
        let data = std::fs::read(&file).map_err(|e| Error::Checkpoint {
            path: file.clone(),
            problem: format!("cannot be read ({e})"),
            hint: "name an LM run directory (metalearn train with task.kind = \"lm\" writes \
                   lm.safetensors into it) or the file itself"
                .into(),
        })?;
        Self::from_bytes(&data, &file)
    }
}

fn spec_of(lm: &LmConfig, vocab: &Vocab) -> Result<LmSpec> {
    LmSpec::new(vocab.len(), lm.embed, lm.hidden, lm.layers)
}

/// The corpus of `[lm]`, read and split (the split summary is printed on stderr by
/// [`read_data`]).
fn read_splits(lm: &LmConfig) -> Result<(Splits, PathBuf)> {
    let dir = PathBuf::from(lm.corpus_dir().ok_or_else(|| Error::Config {
        origin: "[lm]".into(),
        problem: "lm.path is not set".into(),
        hint: "set lm.path to the corpus directory".into(),
    })?);
    let corpus = match lm.corpus {
        LmCorpus::LinuxDoc => read_linux_doc(&dir)?,
        LmCorpus::Dir => read_text_dir(&dir)?,
        LmCorpus::Wikitext => return Ok((read_wikitext(&dir)?, dir)),
    };
    eprintln!("{}", corpus.summary());
    Ok((split_documents(corpus.documents, lm.fractions())?, dir))
}

/// The vocabulary `[lm]` builds on the training split.
fn build_vocab(lm: &LmConfig, splits: &Splits) -> Result<Vocab> {
    match lm.tokens {
        LmTokens::Bytes => Ok(Vocab::bytes()),
        LmTokens::Words => Vocab::build_words(
            &splits.train,
            &WordOptions {
                size: lm.vocab,
                ..WordOptions::default()
            },
        ),
    }
}

/// The corpus of `[lm]` split, with the vocabulary of its training split; every split must
/// hold a document.
fn read_data(lm: &LmConfig) -> Result<(Splits, Vocab)> {
    let (splits, dir) = read_splits(lm)?;
    for (name, docs) in [
        ("train", &splits.train),
        ("valid", &splits.valid),
        ("test", &splits.test),
    ] {
        if docs.is_empty() {
            return Err(Error::Data {
                path: dir,
                problem: format!(
                    "the {name} split holds no document ({} train, {} valid, {} test)",
                    splits.train.len(),
                    splits.valid.len(),
                    splits.test.len()
                ),
                hint:
                    "add documents to the corpus, or give that split a larger share with lm.split"
                        .into(),
            });
        }
    }
    let vocab = build_vocab(lm, &splits)?;
    eprint!("{}", splits.summary(&vocab));
    Ok((splits, vocab))
}

/// `count` chunks of a stream of `docs` (N streams of L tokens from `lm`).
fn chunks_of(
    docs: &[crate::data::text::Document],
    vocab: &Vocab,
    (lm, count, seed): (&LmConfig, usize, u64),
) -> Result<Vec<ChunkArrays>> {
    let mut s = DocumentStream::from_documents(docs, vocab, lm.streams, lm.chunk, seed)?;
    Ok((0..count).map(|_| s.next_chunk().arrays()).collect())
}

fn token_chunk(a: &ChunkArrays) -> TokenChunk<'_> {
    TokenChunk {
        tokens: &a.inputs,
        targets: &a.targets,
        starts: &a.starts,
    }
}

/// What [`train_lm`] did.
#[derive(Clone, Debug)]
pub struct LmTrainSummary {
    /// Steps taken.
    pub steps: usize,
    /// Mean training loss of every step.
    pub losses: Vec<f64>,
    /// (step, validation perplexity) of every evaluation.
    pub valid: Vec<(usize, f64)>,
    /// The model file written.
    pub file: PathBuf,
    /// Seconds of training (evaluations included).
    pub seconds: f64,
}

/// Train the language model `cfg.lm` describes: read and split the corpus, build the
/// vocabulary on the training split, run `lm.steps` Adam steps on N streams of training
/// documents, validate every `lm.eval_every` steps and at the end, and write `config.toml`,
/// `metrics.jsonl` and [`LM_FILE`] into the run directory `cfg.output.dir`. Refuses a directory
/// that already holds a model or meta-training checkpoints, and `opts.resume` (not there yet
/// for LM runs); `opts.stop_after` ends the run early (the model is written as trained so far).
pub fn train_lm(gpu: &Arc<Gpu>, cfg: &Config, opts: &TrainOptions) -> Result<LmTrainSummary> {
    if cfg.task.kind != LM_KIND {
        return Err(Error::invalid(format!(
            "train_lm needs task.kind = \"{LM_KIND}\", got '{}'; use run::train",
            cfg.task.kind
        )));
    }
    let dir = RunDir::create(Path::new(&cfg.output.dir), cfg.output.keep)?;
    let file = dir.path().join(LM_FILE);
    if opts.resume {
        return Err(Error::invalid(format!(
            "resuming a language-model run is not supported yet; train into a new run directory with --out (run directory {})",
            dir.path().display()
        )));
    }
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
    write_atomically(&config_path, cfg.to_toml()?.as_bytes())?;
    let metrics_path = dir.path().join("metrics.jsonl");
    // A run that stopped before writing its model left lines that are about to be recomputed.
    write_atomically(&metrics_path, b"")?;
    let mut metrics = crate::report::MetricsWriter::open(&metrics_path)?;
    let end = opts.stop_after.map_or(lm.steps, |k| k.min(lm.steps));
    let bar = crate::progress::ProgressBar::new(opts.progress, lm.steps as u64, 0)?;
    let tokens_per_step = (lm.streams * lm.chunk) as f64;
    let t0 = Instant::now();
    let mut summary = LmTrainSummary {
        steps: 0,
        losses: Vec::with_capacity(end),
        valid: Vec::new(),
        file: file.clone(),
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
    for step in 1..=end {
        let chunk = train.next_chunk().arrays();
        let loss = tr.step(token_chunk(&chunk))?;
        summary.losses.push(loss);
        let seconds = t0.elapsed().as_secs_f64();
        metrics.write(&json!({
            "step": step,
            "loss": loss,
            "perplexity": loss.exp(),
            "tokens_per_s": step as f64 * tokens_per_step / seconds.max(1e-9),
            "seconds": seconds,
        }))?;
        if let Some(b) = &bar {
            b.set_position(step as u64);
            b.set_message(format!("loss {loss:.4}"));
        }
        if !loss.is_finite() {
            return Err(Error::invalid(format!(
                "the training loss is {loss} at step {step}; lower lm.lr (now {})",
                lm.lr
            )));
        }
        if lm.eval_every > 0 && step % lm.eval_every == 0 && step < end {
            let ppl = validate(&tr, step, &mut metrics)?;
            summary.valid.push((step, ppl));
        }
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
    summary.steps = end;
    summary.seconds = t0.elapsed().as_secs_f64();
    Ok(summary)
}
