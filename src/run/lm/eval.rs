//! The evaluation of an LSTM language model on the test split ([`evaluate_lm`]): static,
//! dynamic (SGD on every chunk's gradient) and static with the state reset before every chunk,
//! each with its perplexity and its loss by position in the document.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::{chunks_of, read_data, token_chunk, LmModel, POSITION_BIN, TEST_SALT};
use crate::config::{Config, LmConfig};
use crate::data::text::ChunkArrays;
use crate::gpu::Gpu;
use crate::meta::write_atomically;
use crate::optim::Optimizer;
use crate::tasks::lm::{DynamicEval, LmSpec};
use crate::{Error, Result};

/// How a chunk's state and weights are handled in an evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LmMethod {
    /// The trained weights, the state carried from chunk to chunk.
    Static,
    /// Each stream's copy of the weights stepped by SGD at `lm.dynamic_lr` on every chunk's
    /// gradient after scoring it (Krause et al. 2018, plain SGD).
    Dynamic,
    /// The trained weights, the state zeroed before every chunk: the model sees at most one
    /// chunk of context.
    StaticReset,
}

impl LmMethod {
    /// Every method, in table order.
    pub const ALL: [LmMethod; 3] = [LmMethod::Static, LmMethod::Dynamic, LmMethod::StaticReset];

    /// Its name in tables and files.
    pub fn name(self) -> &'static str {
        match self {
            LmMethod::Static => "static",
            LmMethod::Dynamic => "dynamic",
            LmMethod::StaticReset => "static-reset",
        }
    }
}

/// One bin of a loss-by-position curve.
#[derive(Clone, Debug, PartialEq)]
pub struct PositionBin {
    /// First position of the bin (a multiple of [`POSITION_BIN`]).
    pub from: u32,
    /// Tokens scored at positions `from .. from + POSITION_BIN`.
    pub tokens: u64,
    /// Their mean loss (nats).
    pub mean_loss: f64,
}

/// The result of one evaluation method.
#[derive(Clone, Debug, PartialEq)]
pub struct LmScore {
    /// The method.
    pub method: LmMethod,
    /// Tokens scored.
    pub tokens: u64,
    /// Mean loss per token (nats).
    pub loss: f64,
    /// exp(loss).
    pub perplexity: f64,
    /// Mean loss by position of the scored token's input in its document (position 0: the
    /// end-of-document marker before it, predicting its first token), in bins of
    /// [`POSITION_BIN`]; bins with no token are left out.
    pub curve: Vec<PositionBin>,
}

/// Score `chunks` with `method` from a zero state.
pub(super) fn score(
    gpu: &Arc<Gpu>,
    (spec, theta): (&LmSpec, &[f32]),
    (lm, chunks): (&LmConfig, &[ChunkArrays]),
    method: LmMethod,
) -> Result<LmScore> {
    let updater = match method {
        LmMethod::Dynamic => Some(Optimizer::parse("sgd")?.with_lr(lm.dynamic_lr)),
        _ => None,
    };
    let mut ev = DynamicEval::new(
        gpu.clone(),
        (spec, theta),
        (lm.streams, lm.chunk),
        updater.map(|o| (o, &[][..])),
    )?;
    let mut sum = 0.0f64;
    let mut count = 0u64;
    let mut bins: BTreeMap<u32, (f64, u64)> = BTreeMap::new();
    for c in chunks {
        if method == LmMethod::StaticReset {
            ev.reset_state()?;
        }
        let losses = ev.chunk_token_losses(token_chunk(c))?;
        for (&l, &p) in losses.iter().zip(&c.positions) {
            let l = f64::from(l);
            sum += l;
            count += 1;
            let b = bins.entry(p / POSITION_BIN).or_insert((0.0, 0));
            b.0 += l;
            b.1 += 1;
        }
    }
    let loss = sum / count.max(1) as f64;
    Ok(LmScore {
        method,
        tokens: count,
        loss,
        perplexity: loss.exp(),
        curve: bins
            .into_iter()
            .map(|(b, (s, n))| PositionBin {
                from: b * POSITION_BIN,
                tokens: n,
                mean_loss: s / n as f64,
            })
            .collect(),
    })
}

/// What [`evaluate_lm`] measured.
#[derive(Clone, Debug)]
pub struct LmEvaluation {
    /// Training steps of the model.
    pub step: usize,
    /// Test documents.
    pub documents: usize,
    /// Chunks scored per method.
    pub chunks: usize,
    /// Streams N and tokens per chunk L.
    pub streams: usize,
    /// Tokens per chunk L.
    pub chunk: usize,
    /// SGD learning rate of the dynamic method.
    pub dynamic_lr: f32,
    /// One score per method of [`LmMethod::ALL`].
    pub scores: Vec<LmScore>,
}

/// Evaluate `model` on the test split of the corpus `cfg.lm` names, with every method of
/// [`LmMethod::ALL`] over the same `lm.eval_chunks` chunks of N streams of the test documents
/// (each method from a zero state). The model's sizes come from its own config; the data and
/// evaluation keys (`lm.corpus`, `path`, `split`, `streams`, `chunk`, `eval_chunks`,
/// `dynamic_lr`, `seed`) from `cfg`. The vocabulary built from the corpus's training split
/// must be the model's.
pub fn evaluate_lm(gpu: &Arc<Gpu>, model: &LmModel, cfg: &Config) -> Result<LmEvaluation> {
    let lm = &cfg.lm;
    let mut data_lm = lm.clone();
    data_lm.tokens = model.config.lm.tokens;
    data_lm.vocab = model.config.lm.vocab;
    let (splits, vocab) = read_data(&data_lm)?;
    vocab.check_matches(&model.vocab)?;
    let spec = model.spec()?;
    let chunks = chunks_of(
        &splits.test,
        &vocab,
        (lm, lm.eval_chunks, cfg.seed ^ TEST_SALT),
    )?;
    let scores = LmMethod::ALL
        .iter()
        .map(|&m| score(gpu, (&spec, &model.theta), (lm, &chunks), m))
        .collect::<Result<Vec<_>>>()?;
    Ok(LmEvaluation {
        step: model.step,
        documents: splits.test.len(),
        chunks: chunks.len(),
        streams: lm.streams,
        chunk: lm.chunk,
        dynamic_lr: lm.dynamic_lr,
        scores,
    })
}

impl LmEvaluation {
    /// The table printed by `metalearn eval`: one line per method.
    pub fn table(&self) -> String {
        let mut s = format!(
            "test split: {} documents, {} chunks of {} streams × {} tokens; model after {} steps\n{:<14} {:>12} {:>12} {:>12}\n",
            self.documents, self.chunks, self.streams, self.chunk, self.step,
            "method", "tokens", "loss", "perplexity"
        );
        for sc in &self.scores {
            s.push_str(&format!(
                "{:<14} {:>12} {:>12.4} {:>12.3}\n",
                sc.method.name(),
                sc.tokens,
                sc.loss,
                sc.perplexity
            ));
        }
        s
    }

    /// `lm_eval.csv`: `method,from,to,tokens,mean_loss,perplexity`, a row `all` per method
    /// (from = to = empty) and one per position bin (positions `from ..= to`).
    pub fn csv(&self) -> String {
        let mut s = String::from("method,from,to,tokens,mean_loss,perplexity\n");
        for sc in &self.scores {
            s.push_str(&format!(
                "{},,,{},{},{}\n",
                sc.method.name(),
                sc.tokens,
                sc.loss,
                sc.perplexity
            ));
            for b in &sc.curve {
                s.push_str(&format!(
                    "{},{},{},{},{},{}\n",
                    sc.method.name(),
                    b.from,
                    b.from + POSITION_BIN - 1,
                    b.tokens,
                    b.mean_loss,
                    b.mean_loss.exp()
                ));
            }
        }
        s
    }

    /// `lm_eval.json`: the settings and, per method, the perplexity and the curve.
    pub fn json(&self) -> serde_json::Value {
        let methods: Vec<serde_json::Value> = self
            .scores
            .iter()
            .map(|sc| {
                json!({
                    "method": sc.method.name(),
                    "tokens": sc.tokens,
                    "loss": sc.loss,
                    "perplexity": sc.perplexity,
                    "curve": sc.curve.iter().map(|b| json!({
                        "from": b.from,
                        "to": b.from + POSITION_BIN - 1,
                        "tokens": b.tokens,
                        "mean_loss": b.mean_loss,
                    })).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "format": "metalearn-lm-eval-1",
            "split": "test",
            "step": self.step,
            "documents": self.documents,
            "chunks": self.chunks,
            "streams": self.streams,
            "chunk": self.chunk,
            "dynamic_lr": self.dynamic_lr,
            "position_bin": POSITION_BIN,
            "methods": methods,
        })
    }

    /// Write `lm_eval.csv` and `lm_eval.json` into `dir` (created if absent), atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_atomically(&dir.join("lm_eval.csv"), self.csv().as_bytes())?;
        let json = serde_json::to_string_pretty(&self.json())
            .map_err(|e| Error::invalid(format!("lm_eval.json cannot be written: {e}")))?;
        write_atomically(&dir.join("lm_eval.json"), json.as_bytes())
    }
}
