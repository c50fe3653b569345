//! Training and evaluating the LSTM language model of `[lm]` (`task.kind = "lm"`): ordinary
//! training with Adam on a document stream of the training split ([`train_lm`], what
//! `metalearn train` runs for such a config), the model file `lm.safetensors` of the run
//! directory ([`LmModel`]), and the evaluation of `metalearn eval` on the test split
//! ([`evaluate_lm`]): static, static with the state reset before every chunk and dynamic with
//! every updater of `[lm.dynamic]`, each with its perplexity and its loss by position in the
//! document; several seeds' evaluations side by side ([`LmSeeds`]).
//!
//! A run directory is never overwritten: a directory that holds `lm.safetensors` or
//! meta-training checkpoints is refused; an unfinished run ([`LM_CHECKPOINT`]) continues only
//! with `--resume`.

use std::path::{Path, PathBuf};

mod eval;
mod file;
mod resume;
mod seeds;
mod train;
use crate::config::{Config, LmConfig, LmCorpus, LmTokens};
use crate::data::text::{
    read_linux_doc, read_text_dir, read_wikitext, split_documents, ChunkArrays, DocumentStream,
    Splits, Vocab, WordOptions,
};
use crate::tasks::lm::{LmSpec, TokenChunk};
use crate::{Error, Result};
pub use eval::{evaluate_lm, LmEvaluation, LmMethod, LmScore, PositionBin, TunePoint};
pub use resume::{LmCheckpoint, LM_CHECKPOINT, LM_CHECKPOINT_FORMAT};
pub use seeds::{LmSeeds, MethodSeeds, LM_EVAL_JSON};
pub use train::{train_lm, LmTrainSummary};

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
        file::to_bytes(
            LM_FORMAT,
            (&self.config, &self.vocab, self.step),
            &[],
            &[("theta", &self.theta)],
        )
    }

    /// Parse [`LM_FILE`] bytes; `path` names the file in errors. Checks the format, the
    /// checksum, the config, the vocabulary and the weights' length against both.
    pub fn from_bytes(data: &[u8], path: &Path) -> Result<LmModel> {
        let hint = "the file is truncated or corrupt, or not a metalearn language model; train \
                    it again with metalearn train into a new run directory";
        let mut f = file::from_bytes(data, path, (LM_FORMAT, &["theta"]), hint)?;
        let model = LmModel {
            theta: f.tensors.remove("theta").unwrap_or_default(),
            config: f.config,
            vocab: f.vocab,
            step: f.step,
        };
        model.check(path, hint)?;
        Ok(model)
    }

    /// The weights against the config and the vocabulary.
    fn check(&self, path: &Path, hint: &str) -> Result<()> {
        let bad = |problem: String| Error::Checkpoint {
            path: path.to_path_buf(),
            problem,
            hint: hint.into(),
        };
        let want_bytes = matches!(self.config.lm.tokens, LmTokens::Bytes);
        let is_bytes = matches!(self.vocab.kind(), crate::data::text::VocabKind::Byte);
        if want_bytes != is_bytes {
            return Err(bad(format!(
                "its config says lm.tokens = '{:?}', its vocabulary is a {}",
                self.config.lm.tokens,
                self.vocab.describe()
            )
            .to_lowercase()));
        }
        let p = self.spec()?.layout()?.size();
        if self.theta.len() != p {
            return Err(bad(format!(
                "{} weights, the model of its config and vocabulary has {p}",
                self.theta.len()
            )));
        }
        Ok(())
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

/// The corpus of `[lm]` split (its directory for messages) and the vocabulary the model reads:
/// `vocab`, or the one `[lm]` builds on the training split. Used by the dynamical-LM task.
pub(crate) fn read_corpus_splits(
    lm: &LmConfig,
    vocab: Option<Vocab>,
) -> Result<(Splits, PathBuf, Vocab)> {
    let (splits, dir) = read_splits(lm)?;
    let vocab = match vocab {
        Some(v) => v,
        None => build_vocab(lm, &splits)?,
    };
    Ok((splits, dir, vocab))
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
