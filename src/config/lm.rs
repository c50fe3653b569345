//! `[lm]`: the LSTM language model trained and evaluated by `metalearn train` and `metalearn
//! eval` when `task.kind = "lm"` (ordinary LM training with Adam), and the model and corpus of
//! the dynamical language model meta-trained when `task.kind = "dynlm"`. `docs/config.md`
//! documents every key.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{check_range, err, Config};
use crate::data::text::{SplitFractions, LINUX_DOC_DIR};
use crate::Result;

/// The `task.kind` that selects the language model of `[lm]`.
pub const LM_KIND: &str = "lm";

/// The `task.kind` of meta-training on the language model of `[lm]`: the dynamical language
/// model ([`crate::tasks::lm::meta`]).
pub const DYNLM_KIND: &str = "dynlm";

/// Where the documents come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LmCorpus {
    /// The reST sources of the Linux documentation (`read_linux_doc`).
    LinuxDoc,
    /// Every text file under a directory (`read_text_dir`).
    Dir,
    /// The WikiText token files of a directory, with their own split (`read_wikitext`).
    Wikitext,
}

/// The tokenizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LmTokens {
    /// A word vocabulary of the `vocab` most frequent training words, `<unk>` and `<eos>`.
    Words,
    /// The 256 byte values.
    Bytes,
}

/// One updater's grid of dynamic evaluation (`[lm.dynamic] name = { lr = [...], decay = [...] }`):
/// every (lr, decay) pair is scored on validation chunks and the best one on the test split.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicGrid {
    /// Learning rates (empty for the learned optimizer of `lm.learned`, which has none).
    #[serde(default)]
    pub lr: Vec<f32>,
    /// Decay rates λ back to the static weights (default `[0]`).
    #[serde(default = "no_decay")]
    pub decay: Vec<f32>,
}

fn no_decay() -> Vec<f32> {
    vec![0.0]
}

impl DynamicGrid {
    /// The grid of one learning rate and no decay.
    pub fn one(lr: f32) -> Self {
        Self {
            lr: vec![lr],
            decay: no_decay(),
        }
    }

    /// Every (lr, decay) pair, lr-major (lr `None` for a grid without learning rates).
    pub fn points(&self) -> Vec<(Option<f32>, f32)> {
        let lrs: Vec<Option<f32>> = if self.lr.is_empty() {
            vec![None]
        } else {
            self.lr.iter().map(|&v| Some(v)).collect()
        };
        lrs.iter()
            .flat_map(|&lr| self.decay.iter().map(move |&d| (lr, d)))
            .collect()
    }
}

/// The name in `[lm.dynamic]` of the learned optimizer read from `lm.learned`.
pub const LEARNED_UPDATER: &str = "learned";

/// `[lm]`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LmConfig {
    /// linux-doc, dir or wikitext.
    pub corpus: LmCorpus,
    /// The corpus directory (default [`LINUX_DOC_DIR`] for linux-doc; required otherwise).
    pub path: Option<String>,
    /// words or bytes.
    pub tokens: LmTokens,
    /// Words of a word vocabulary (without `<unk>` and `<eos>`).
    pub vocab: usize,
    /// Embedding width E.
    pub embed: usize,
    /// Hidden width H of every LSTM layer.
    pub hidden: usize,
    /// LSTM layers.
    pub layers: usize,
    /// Tokens per chunk L (the truncated-BPTT length).
    pub chunk: usize,
    /// Streams N read side by side (the batch).
    pub streams: usize,
    /// Training chunks (Adam steps).
    pub steps: usize,
    /// Adam learning rate.
    pub lr: f32,
    /// Validate every this many steps (0: at the end only).
    pub eval_every: usize,
    /// Chunks of the validation and test streams per evaluation.
    pub eval_chunks: usize,
    /// Tensor groups of the fast weights, each stream's own copy in dynamic evaluation
    /// (`emb`, `out.b`, `proj`, `lstm`, `lstm<l>`, `lstm<l>.wx|wh|b` or `all`).
    pub fast: Vec<String>,
    /// The updaters of dynamic evaluation by name — `sgd`, `rms` (Krause's RMS rule), any
    /// hand-designed optimizer, or `learned` (the optimizer of `lm.learned`) — each with its
    /// grid of learning rates and decay rates, tuned on the validation split.
    pub dynamic: BTreeMap<String, DynamicGrid>,
    /// Validation chunks scored per grid point when a grid has more than one point.
    pub tune_chunks: usize,
    /// Training chunks whose gradients give the RMS rule's statistics.
    pub rms_chunks: usize,
    /// ε of the RMS rule.
    pub rms_eps: f32,
    /// A meta-training run directory or checkpoint whose learned optimizer (and φ) is the
    /// updater `learned`.
    pub learned: Option<String>,
    /// Fractions of documents in train, valid and test (not used by wikitext, which keeps its
    /// files' split).
    pub split: [f64; 3],
    /// Meta-training (`task.kind = "dynlm"`): an LM run directory or `lm.safetensors` whose
    /// trained weights are the static weights W_s (and whose vocabulary the task reads); unset,
    /// the static weights are drawn from the seed.
    pub static_model: Option<String>,
}

impl Default for LmConfig {
    fn default() -> Self {
        Self {
            corpus: LmCorpus::LinuxDoc,
            path: None,
            tokens: LmTokens::Words,
            vocab: crate::data::text::DEFAULT_WORD_VOCAB,
            embed: 512,
            hidden: 512,
            layers: 2,
            chunk: 64,
            streams: 32,
            steps: 1000,
            lr: 1e-3,
            eval_every: 0,
            eval_chunks: 50,
            fast: vec!["lstm".to_string()],
            dynamic: [
                ("sgd".to_string(), DynamicGrid::one(0.01)),
                ("rms".to_string(), DynamicGrid::one(1e-4)),
            ]
            .into_iter()
            .collect(),
            tune_chunks: 20,
            rms_chunks: 20,
            rms_eps: crate::tasks::lm::dynamic::RMS_EPS,
            learned: None,
            split: [0.90, 0.05, 0.05],
            static_model: None,
        }
    }
}

/// Largest vocabulary, width, chunk length or stream count accepted.
const MAX_SIZE: usize = 1 << 20;
/// Largest logits tensor N·L·V accepted, in floats: 2 GiB, the largest storage binding an
/// adapter offers.
const MAX_LOGITS: usize = 1 << 29;

impl LmConfig {
    /// The corpus directory: `path`, or the Linux documentation's for linux-doc.
    pub fn corpus_dir(&self) -> Option<String> {
        match (&self.path, self.corpus) {
            (Some(p), _) => Some(p.clone()),
            (None, LmCorpus::LinuxDoc) => Some(LINUX_DOC_DIR.to_string()),
            (None, _) => None,
        }
    }

    /// Tokens of the vocabulary the model reads: `vocab` words + `<unk>`, `<eos>`, or 256 bytes.
    pub fn vocab_len(&self) -> usize {
        match self.tokens {
            LmTokens::Words => self.vocab + 2,
            LmTokens::Bytes => 256,
        }
    }

    /// The split fractions.
    pub fn fractions(&self) -> SplitFractions {
        let [train, valid, test] = self.split;
        SplitFractions { train, valid, test }
    }
}

impl Config {
    /// The checks of `[lm]`'s corpus and model shared by LM runs and dynamical-LM
    /// meta-training (`task.kind = "dynlm"`), for `streams` documents read side by side.
    pub(crate) fn validate_lm_model(&self, origin: &str, streams: usize) -> Result<()> {
        let range = |key: &str, v, lo, hi| check_range(origin, &format!("lm.{key}"), v, lo, hi);
        let l = &self.lm;
        range("vocab", l.vocab, 2, MAX_SIZE)?;
        range("embed", l.embed, 1, 1 << 14)?;
        range("hidden", l.hidden, 1, 1 << 14)?;
        range("layers", l.layers, 1, 64)?;
        range("chunk", l.chunk, 1, 1 << 16)?;
        let logits = streams
            .saturating_mul(l.chunk)
            .saturating_mul(l.vocab_len());
        if logits > MAX_LOGITS {
            return Err(err(
                origin,
                format!(
                    "streams × lm.chunk × vocabulary = {} × {} × {} = {logits} logits per chunk, beyond the {MAX_LOGITS} (2 GiB) any adapter can bind",
                    streams,
                    l.chunk,
                    l.vocab_len()
                ),
                "use fewer streams, shorter chunks or a smaller vocabulary",
            ));
        }
        l.fractions().check().map_err(|_| {
            err(
                origin,
                format!(
                    "lm.split = {:?} is not three non-negative fractions summing to 1",
                    l.split
                ),
                "use e.g. split = [0.9, 0.05, 0.05]",
            )
        })?;
        if l.corpus_dir().is_none() {
            return Err(err(
                origin,
                format!("lm.corpus = '{:?}' needs lm.path", l.corpus).to_lowercase(),
                "set lm.path to the corpus directory",
            ));
        }
        if matches!(&l.path, Some(p) if p.trim().is_empty()) {
            return Err(err(
                origin,
                "lm.path is empty",
                "name the corpus directory, or remove lm.path for linux-doc's default",
            ));
        }
        if self.lm.fast.is_empty() || self.lm.fast.iter().any(|g| g.trim().is_empty()) {
            return Err(err(
                origin,
                format!("lm.fast = {:?} names no tensor group", self.lm.fast),
                format!(
                    "use e.g. fast = [\"lstm\"]; groups: {}",
                    crate::tasks::lm::spec::FAST_GROUPS
                ),
            ));
        }
        Ok(())
    }

    /// The checks of a `task.kind = "lm"` config: `[lm]` in range, `[output]` usable. The
    /// sections of meta-training (`[optimizer]`, `[meta]`, `[eval]`) are not read by LM runs.
    pub(crate) fn validate_lm(&self, origin: &str) -> Result<()> {
        self.validate_lm_model(origin, self.lm.streams)?;
        let range = |key: &str, v, lo, hi| check_range(origin, &format!("lm.{key}"), v, lo, hi);
        let l = &self.lm;
        range("streams", l.streams, 1, 1 << 16)?;
        range("steps", l.steps, 1, 1 << 40)?;
        range("eval_chunks", l.eval_chunks, 1, MAX_SIZE)?;
        range("tune_chunks", l.tune_chunks, 1, MAX_SIZE)?;
        range("rms_chunks", l.rms_chunks, 1, MAX_SIZE)?;
        for (key, v) in [("lr", l.lr), ("rms_eps", l.rms_eps)] {
            if !(v.is_finite() && v > 0.0) {
                return Err(err(
                    origin,
                    format!("lm.{key} = {v} is not a positive number"),
                    "use e.g. lr = 0.001, rms_eps = 1e-5",
                ));
            }
        }
        self.validate_dynamic(origin)?;
        check_range(origin, "output.keep", self.output.keep, 1, 1 << 20)?;
        if self.output.dir.trim().is_empty() {
            return Err(err(origin, "output.dir is empty", "name a run directory"));
        }
        Ok(())
    }
}

impl Config {
    /// The checks of `[lm.dynamic]` (`lm.fast` is checked with the model).
    fn validate_dynamic(&self, origin: &str) -> Result<()> {
        let l = &self.lm;
        if l.dynamic.len() > 64 {
            return Err(err(
                origin,
                format!("[lm.dynamic] names {} updaters", l.dynamic.len()),
                "evaluate at most 64 updaters in one run",
            ));
        }
        for (name, grid) in &l.dynamic {
            let key = format!("lm.dynamic.{name}");
            let points = grid.lr.len().max(1) * grid.decay.len();
            if grid.decay.is_empty() || points > 256 {
                return Err(err(
                    origin,
                    format!("{key} is a grid of {points} points"),
                    "give 1 to 256 (lr, decay) points, e.g. { lr = [0.01, 0.03], decay = [0.0] }",
                ));
            }
            for &v in &grid.lr {
                if !(v.is_finite() && v > 0.0) {
                    return Err(err(
                        origin,
                        format!("{key}.lr holds {v}, not a positive number"),
                        "use learning rates such as 0.01",
                    ));
                }
            }
            for &v in &grid.decay {
                if !(v.is_finite() && (0.0..=1.0).contains(&v)) {
                    return Err(err(
                        origin,
                        format!("{key}.decay holds {v}, not a rate from 0 to 1"),
                        "use decay rates such as 0.0 or 0.01",
                    ));
                }
            }
            let learned = name == LEARNED_UPDATER;
            if learned {
                if l.learned.is_none() {
                    return Err(err(
                        origin,
                        format!("{key} needs lm.learned"),
                        "set lm.learned to a meta-training run directory or checkpoint",
                    ));
                }
                if !grid.lr.is_empty() {
                    return Err(err(
                        origin,
                        format!("{key}.lr is set, but a learned optimizer has no learning rate"),
                        "remove lr from the learned updater's grid (decay may stay)",
                    ));
                }
                continue;
            }
            if grid.lr.is_empty() {
                return Err(err(
                    origin,
                    format!("{key} has no learning rate"),
                    format!("give {key} = {{ lr = [0.01] }}"),
                ));
            }
            if name == "rms" || name == "sgd" {
                continue;
            }
            match crate::optim::Optimizer::parse(name) {
                Ok(o) if !o.is_learned() => {}
                Ok(_) => {
                    return Err(err(
                        origin,
                        format!("{key}: '{name}' is a learned optimizer; its φ comes from a meta-training run"),
                        "set lm.learned to that run and name the updater 'learned'",
                    ))
                }
                Err(_) => {
                    return Err(err(
                        origin,
                        format!("{key}: '{name}' is not an updater"),
                        "use sgd, rms, learned or a hand-designed optimizer (momentum, nag, rmsprop, adam)",
                    ))
                }
            }
        }
        if matches!(&l.learned, Some(p) if p.trim().is_empty()) {
            return Err(err(
                origin,
                "lm.learned is empty",
                "name a meta-training run directory or checkpoint, or remove the key",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use crate::Error;

    fn lm(extra: &[&str]) -> crate::Result<Config> {
        let mut set = vec!["task.kind=lm".to_string()];
        set.extend(extra.iter().map(|s| s.to_string()));
        Config::default().with_overrides(&set)
    }

    #[test]
    fn lm_defaults_are_valid_and_round_trip() {
        let c = lm(&[]).unwrap();
        assert_eq!(c.lm.vocab_len(), 16386);
        let back = Config::from_toml(&c.to_toml().unwrap(), "round trip").unwrap();
        assert_eq!(c, back);
        let c = lm(&["lm.tokens=bytes", "lm.corpus=dir", "lm.path=/tmp/x"]).unwrap();
        assert_eq!(c.lm.vocab_len(), 256);
    }

    #[test]
    fn bad_lm_keys_are_named() {
        for (bad, needle) in [
            ("lm.vocab=1", "lm.vocab = 1"),
            ("lm.chunk=0", "lm.chunk = 0"),
            ("lm.streams=0", "lm.streams"),
            ("lm.steps=0", "lm.steps"),
            ("lm.layers=0", "lm.layers"),
            ("lm.lr=0", "lm.lr"),
            ("lm.rms_eps=-1", "lm.rms_eps"),
            ("lm.fast=[]", "lm.fast"),
            ("lm.tune_chunks=0", "lm.tune_chunks"),
            ("lm.dynamic={sgd={lr=[-1.0]}}", "lm.dynamic.sgd.lr"),
            (
                "lm.dynamic={rms={lr=[0.1],decay=[2.0]}}",
                "lm.dynamic.rms.decay",
            ),
            ("lm.dynamic={sgd={decay=[0.0]}}", "no learning rate"),
            ("lm.dynamic={lstm={lr=[0.1]}}", "learned optimizer"),
            ("lm.dynamic={books={lr=[0.1]}}", "not an updater"),
            ("lm.dynamic={learned={decay=[0.0]}}", "needs lm.learned"),
            ("lm.dynamic={sgd={lr=[0.1],rate=[1]}}", "unknown"),
            ("lm.split=[0.5, 0.5, 0.5]", "lm.split"),
            ("lm.corpus=dir", "needs lm.path"),
            ("lm.corpus=books", "corpus"),
            ("lm.tokens=chars", "tokens"),
            ("lm.unknown=1", "unknown"),
            ("lm.streams=65536", "logits"),
        ] {
            match lm(&[bad]) {
                Err(Error::Config { problem, .. }) => {
                    assert!(problem.contains(needle), "{bad}: {problem}")
                }
                other => panic!("{bad}: expected a config error, got {other:?}"),
            }
        }
    }
}
