//! The evaluation of an LSTM language model on the test split ([`evaluate_lm`]): static, static
//! with the state reset before every chunk, and dynamic with every updater of `[lm.dynamic]`
//! (SGD, Krause's RMS rule, any hand-designed optimizer, a learned one), each tuned on the
//! validation split, with its perplexity and its loss by position in the document.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use super::{
    chunks_of, read_data, token_chunk, LmModel, POSITION_BIN, STATS_SALT, TEST_SALT, VALID_SALT,
};
use crate::config::{Config, LmConfig, LEARNED_UPDATER};
use crate::data::text::ChunkArrays;
use crate::gpu::Gpu;
use crate::meta::write_atomically;
use crate::optim::Optimizer;
use crate::tasks::lm::{DynamicEval, LmSpec, Update};
use crate::{Error, Result};

/// How a chunk's state and weights are handled in an evaluation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LmMethod {
    /// The trained weights, the state carried from chunk to chunk.
    Static,
    /// The trained weights, the state zeroed before every chunk: the model sees at most one
    /// chunk of context.
    StaticReset,
    /// Dynamic evaluation (Krause et al. 2018) with the updater of `[lm.dynamic]` this names:
    /// each stream's copy of the fast weights stepped on every chunk's gradient after scoring
    /// it, its (lr, decay) tuned on the validation split.
    Dynamic(String),
}

impl LmMethod {
    /// Its name in tables and files: `static`, `static-reset`, `dynamic-<updater>`.
    pub fn name(&self) -> String {
        match self {
            LmMethod::Static => "static".into(),
            LmMethod::StaticReset => "static-reset".into(),
            LmMethod::Dynamic(u) => format!("dynamic-{u}"),
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

/// One point of a dynamic updater's grid, scored on validation chunks.
#[derive(Clone, Debug, PartialEq)]
pub struct TunePoint {
    /// Learning rate (`None` for a learned optimizer).
    pub lr: Option<f32>,
    /// Decay rate λ.
    pub decay: f32,
    /// Validation perplexity.
    pub valid_perplexity: f64,
}

/// The result of one evaluation method.
#[derive(Clone, Debug, PartialEq)]
pub struct LmScore {
    /// The method.
    pub method: LmMethod,
    /// The updater's learning rate and decay used on the test split (dynamic methods).
    pub chosen: Option<(Option<f32>, f32)>,
    /// Every grid point scored on the validation split (empty when the grid has one point).
    pub tuning: Vec<TunePoint>,
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
    /// The loss of every scored token of the first stream, in reading order (chunk by chunk).
    pub first_stream: Vec<f32>,
}

/// How one run of chunks treats the weights and the state.
pub(super) enum Scoring {
    /// Static weights, the state carried.
    Static,
    /// Static weights, the state zeroed before every chunk.
    Reset,
    /// The fast weights updated after every chunk.
    Dynamic(Update),
}

/// Score `chunks` from a zero state; the fast weights are `lm.fast`'s groups.
pub(super) fn score(
    gpu: &Arc<Gpu>,
    (spec, theta): (&LmSpec, &[f32]),
    (lm, chunks): (&LmConfig, &[ChunkArrays]),
    how: Scoring,
    method: LmMethod,
) -> Result<LmScore> {
    let reset = matches!(how, Scoring::Reset);
    let update = match how {
        Scoring::Dynamic(u) => Some(u),
        _ => None,
    };
    let mut ev = DynamicEval::new(
        gpu.clone(),
        (spec, theta),
        (lm.streams, lm.chunk),
        &lm.fast,
        update,
    )?;
    let mut sum = 0.0f64;
    let mut count = 0u64;
    let mut bins: BTreeMap<u32, (f64, u64)> = BTreeMap::new();
    let mut first_stream = Vec::with_capacity(chunks.len() * lm.chunk);
    for c in chunks {
        if reset {
            ev.reset_state()?;
        }
        let losses = ev.chunk_token_losses(token_chunk(c))?;
        first_stream.extend(losses.iter().take(lm.chunk));
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
        chosen: None,
        tuning: Vec::new(),
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
        first_stream,
    })
}

/// What the updaters of `[lm.dynamic]` are built from: the RMS rule's statistics and the
/// learned optimizer of `lm.learned`, each loaded when an updater needs it.
struct Updaters {
    rms: Option<Vec<f32>>,
    learned: Option<(Optimizer, Vec<f32>)>,
}

impl Updaters {
    fn make(&self, lm: &LmConfig, name: &str, (lr, decay): (Option<f32>, f32)) -> Result<Update> {
        let missing = |what: &str| Error::invalid(format!("the {what} of '{name}' was not loaded"));
        Ok(match name {
            "sgd" => Update::Sgd {
                lr: lr.ok_or_else(|| missing("learning rate"))?,
                decay,
            },
            "rms" => Update::Rms {
                lr: lr.ok_or_else(|| missing("learning rate"))?,
                decay,
                eps: lm.rms_eps,
                rms: self
                    .rms
                    .clone()
                    .ok_or_else(|| missing("gradient statistics"))?,
            },
            LEARNED_UPDATER => {
                let (opt, phi) = self.learned.clone().ok_or_else(|| missing("optimizer"))?;
                Update::Optimizer { opt, phi, decay }
            }
            other => Update::Optimizer {
                opt: Optimizer::parse(other)?.with_lr(lr.ok_or_else(|| missing("learning rate"))?),
                phi: Vec::new(),
                decay,
            },
        })
    }
}

/// The learned optimizer and φ of the meta-training run or checkpoint `path`.
fn load_learned(path: &Path) -> Result<(Optimizer, Vec<f32>)> {
    let ckpt = crate::run::eval::load_checkpoint(path)?;
    let saved = Config::from_toml(&ckpt.config, &path.display().to_string())?;
    let opt = saved.optimizer()?;
    if !opt.is_learned() {
        return Err(Error::invalid(format!(
            "lm.learned = {}: its optimizer '{}' is hand-designed; name a run of a learned optimizer, or evaluate '{}' under [lm.dynamic] with a learning rate",
            path.display(),
            opt.name(),
            opt.name()
        )));
    }
    opt.check_phi(ckpt.phi())?;
    Ok((opt, ckpt.phi().to_vec()))
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
    /// The fast tensor groups of the dynamic methods.
    pub fast: Vec<String>,
    /// Fast weights per stream.
    pub fast_weights: usize,
    /// Validation chunks per tuning point.
    pub tune_chunks: usize,
    /// One score per method: static, static-reset, then every updater of `[lm.dynamic]`.
    pub scores: Vec<LmScore>,
    /// The tokens the first stream predicts, in reading order: the position of the input in
    /// its document (0 at the start of a document) and the text of the target token.
    pub first_stream: Vec<(u32, String)>,
    /// True when the tokens are words (shown with a space between them), false for bytes.
    pub word_tokens: bool,
}

/// Evaluate `model` on the test split of the corpus `cfg.lm` names: static, with the state
/// reset at every chunk, and dynamically with every updater of `[lm.dynamic]`, over the same
/// `lm.eval_chunks` chunks of N streams of the test documents (each method from a zero state).
/// An updater whose grid has more than one (lr, decay) point is tuned first on
/// `lm.tune_chunks` chunks of the validation split (the lowest validation perplexity is used);
/// the RMS rule's statistics come from `lm.rms_chunks` chunks of the training split. The
/// model's sizes come from its own config; the data and evaluation keys from `cfg`. The
/// vocabulary built from the corpus's training split must be the model's.
pub fn evaluate_lm(gpu: &Arc<Gpu>, model: &LmModel, cfg: &Config) -> Result<LmEvaluation> {
    let lm = &cfg.lm;
    let mut data_lm = lm.clone();
    data_lm.tokens = model.config.lm.tokens;
    data_lm.vocab = model.config.lm.vocab;
    let (splits, vocab) = read_data(&data_lm)?;
    vocab.check_matches(&model.vocab)?;
    let spec = model.spec()?;
    let fast_weights = spec.split(&lm.fast)?.fast.size();
    let theta = &model.theta[..];
    let chunks = chunks_of(
        &splits.test,
        &vocab,
        (lm, lm.eval_chunks, cfg.seed ^ TEST_SALT),
    )?;
    let mut scores = vec![
        score(
            gpu,
            (&spec, theta),
            (lm, &chunks),
            Scoring::Static,
            LmMethod::Static,
        )?,
        score(
            gpu,
            (&spec, theta),
            (lm, &chunks),
            Scoring::Reset,
            LmMethod::StaticReset,
        )?,
    ];
    let mut updaters = Updaters {
        rms: None,
        learned: None,
    };
    if lm.dynamic.contains_key("rms") {
        let train = chunks_of(
            &splits.train,
            &vocab,
            (lm, lm.rms_chunks, cfg.seed ^ STATS_SALT),
        )?;
        let mut ev = DynamicEval::new(
            gpu.clone(),
            (&spec, theta),
            (lm.streams, lm.chunk),
            &lm.fast,
            None,
        )?;
        updaters.rms = Some(ev.gradient_rms(train.iter().map(token_chunk))?);
    }
    if lm.dynamic.contains_key(LEARNED_UPDATER) {
        let path = lm.learned.as_deref().ok_or_else(|| {
            Error::invalid("the updater 'learned' needs lm.learned (a meta-training run)")
        })?;
        updaters.learned = Some(load_learned(Path::new(path))?);
    }
    let tune = chunks_of(
        &splits.valid,
        &vocab,
        (lm, lm.tune_chunks, cfg.seed ^ VALID_SALT),
    )?;
    for (name, grid) in &lm.dynamic {
        let points = grid.points();
        let mut tuning = Vec::new();
        let mut best = points[0];
        if points.len() > 1 {
            let mut best_ppl = f64::INFINITY;
            for &pt in &points {
                let u = updaters.make(lm, name, pt)?;
                let m = LmMethod::Dynamic(name.clone());
                let s = score(gpu, (&spec, theta), (lm, &tune), Scoring::Dynamic(u), m)?;
                // A diverged point (NaN) is never chosen.
                if s.perplexity < best_ppl {
                    (best, best_ppl) = (pt, s.perplexity);
                }
                tuning.push(TunePoint {
                    lr: pt.0,
                    decay: pt.1,
                    valid_perplexity: s.perplexity,
                });
            }
        }
        let u = updaters.make(lm, name, best)?;
        let m = LmMethod::Dynamic(name.clone());
        let mut s = score(gpu, (&spec, theta), (lm, &chunks), Scoring::Dynamic(u), m)?;
        s.chosen = Some(best);
        s.tuning = tuning;
        scores.push(s);
    }
    Ok(LmEvaluation {
        step: model.step,
        documents: splits.test.len(),
        chunks: chunks.len(),
        streams: lm.streams,
        chunk: lm.chunk,
        fast: lm.fast.clone(),
        fast_weights,
        tune_chunks: tune.len(),
        scores,
        word_tokens: model.config.lm.tokens == crate::config::LmTokens::Words,
        first_stream: chunks
            .iter()
            .flat_map(|c| {
                let l = lm.chunk;
                c.positions[..l]
                    .iter()
                    .zip(&c.targets[..l])
                    .map(|(&p, &t)| (p, vocab.decode(&[t])))
            })
            .collect(),
    })
}

impl LmEvaluation {
    /// The table printed by `metalearn eval`: one line per method.
    pub fn table(&self) -> String {
        let mut s = format!(
            "test split: {} documents, {} chunks of {} streams × {} tokens; model after {} steps; fast weights {:?} ({} per stream)\n{:<18} {:>10} {:>10} {:>11} {:>10} {:>8}\n",
            self.documents, self.chunks, self.streams, self.chunk, self.step, self.fast,
            self.fast_weights, "method", "tokens", "loss", "perplexity", "lr", "decay"
        );
        for sc in &self.scores {
            let (lr, decay) = match sc.chosen {
                Some((lr, d)) => (
                    lr.map_or("-".into(), |v| format!("{v:.3e}")),
                    format!("{d}"),
                ),
                None => ("".into(), "".into()),
            };
            s.push_str(&format!(
                "{:<18} {:>10} {:>10.4} {:>11.3} {:>10} {:>8}\n",
                sc.method.name(),
                sc.tokens,
                sc.loss,
                sc.perplexity,
                lr,
                decay
            ));
        }
        let tuned: Vec<&LmScore> = self
            .scores
            .iter()
            .filter(|s| !s.tuning.is_empty())
            .collect();
        if !tuned.is_empty() {
            s.push_str(&format!(
                "tuned on {} validation chunks (validation perplexity per lr, decay):\n",
                self.tune_chunks
            ));
            for sc in tuned {
                let pts: Vec<String> = sc
                    .tuning
                    .iter()
                    .map(|t| {
                        let lr = t.lr.map_or("-".into(), |v| format!("{v:.1e}"));
                        format!("{lr}/{}: {:.3}", t.decay, t.valid_perplexity)
                    })
                    .collect();
                s.push_str(&format!("  {}: {}\n", sc.method.name(), pts.join(", ")));
            }
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
                    "lr": sc.chosen.and_then(|c| c.0),
                    "decay": sc.chosen.map(|c| c.1),
                    "tuning": sc.tuning.iter().map(|t| json!({
                        "lr": t.lr,
                        "decay": t.decay,
                        "valid_perplexity": t.valid_perplexity,
                    })).collect::<Vec<_>>(),
                    "tokens": sc.tokens,
                    "loss": sc.loss,
                    "perplexity": sc.perplexity,
                    "curve": sc.curve.iter().map(|b| json!({
                        "from": b.from,
                        "to": b.from + POSITION_BIN - 1,
                        "tokens": b.tokens,
                        "mean_loss": b.mean_loss,
                    })).collect::<Vec<_>>(),
                    "first_stream_losses": sc.first_stream,
                })
            })
            .collect();
        json!({
            "format": "metalearn-lm-eval-2",
            "split": "test",
            "step": self.step,
            "documents": self.documents,
            "chunks": self.chunks,
            "streams": self.streams,
            "chunk": self.chunk,
            "fast": self.fast,
            "fast_weights": self.fast_weights,
            "tune_chunks": self.tune_chunks,
            "position_bin": POSITION_BIN,
            "first_stream_positions": self.first_stream.iter().map(|t| t.0).collect::<Vec<_>>(),
            "first_stream_tokens": self.first_stream.iter().map(|t| &t.1).collect::<Vec<_>>(),
            "methods": methods,
        })
    }

    /// `lm_tokens.html`: the first stream's text once per dynamic method, each token coloured
    /// by d = (static's loss − the method's loss) on it: blue where the method finds it cheaper
    /// (d > 0), red where dearer, the colour's strength min(|d|, 2)/2; the title of a token
    /// gives both losses. A rule marks where a new document begins. Classes `c` (cheaper),
    /// `d` (dearer) and `e` (equal) say the sign.
    pub fn tokens_html(&self) -> String {
        let esc = |t: &str| {
            t.replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
                .replace('"', "&quot;")
        };
        // Words are shown with a space between them; bytes as they are, spaces and line
        // breaks included.
        let (sep, wrap) = if self.word_tokens {
            (" ", "normal")
        } else {
            ("", "pre-wrap")
        };
        let mut s = format!(
            "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>loss by token</title>\n<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.7}}p{{white-space:{wrap}}}span{{border-radius:2px}}hr{{border:0;border-top:2px solid #888}}</style></head><body>\n",
        );
        s.push_str(&format!(
            "<h1>Loss by token: static minus method</h1>\n<p>The first of {} test streams, {} tokens; blue: the method predicts the token better than the static model, red: worse (full colour at 2 nats). Hover a token for both losses.</p>\n",
            self.streams,
            self.first_stream.len()
        ));
        let Some(stat) = self.scores.iter().find(|sc| sc.method == LmMethod::Static) else {
            return s + "</body></html>\n";
        };
        for sc in &self.scores {
            if !matches!(sc.method, LmMethod::Dynamic(_)) {
                continue;
            }
            let name = esc(&sc.method.name());
            s.push_str(&format!(
                "<h2>{name} (test perplexity {:.2}; static {:.2})</h2>\n<p>",
                sc.perplexity, stat.perplexity
            ));
            let tokens = self.first_stream.iter().zip(&stat.first_stream);
            for (((pos, text), &ls), &lm) in tokens.zip(&sc.first_stream) {
                if *pos == 0 {
                    s.push_str("</p><hr><p>");
                }
                let d = f64::from(ls) - f64::from(lm);
                let a = (d.abs().min(2.0) / 2.0 * 0.8 * 1000.0).round() / 1000.0;
                let (class, rgb) = if d > 0.0 {
                    ("c", "40,90,230")
                } else if d < 0.0 {
                    ("d", "220,40,40")
                } else {
                    ("e", "0,0,0")
                };
                s.push_str(&format!(
                    "<span class=\"{class}\" style=\"background:rgba({rgb},{a})\" title=\"static {ls:.3}, {name} {lm:.3}\">{}</span>{sep}",
                    esc(text)
                ));
            }
            s.push_str("</p>\n");
        }
        s + "</body></html>\n"
    }

    /// Write `lm_eval.csv`, `lm_eval.json`, `lm_tokens.html` and the curves' plot
    /// `lm_eval.svg` (with the `cli` feature) into `dir` (created if absent), atomically.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_atomically(&dir.join("lm_eval.csv"), self.csv().as_bytes())?;
        write_atomically(&dir.join("lm_tokens.html"), self.tokens_html().as_bytes())?;
        let json = serde_json::to_string_pretty(&self.json())
            .map_err(|e| Error::invalid(format!("lm_eval.json cannot be written: {e}")))?;
        write_atomically(&dir.join("lm_eval.json"), json.as_bytes())?;
        // The curves over the bins every method has, one line per method.
        let bins = self.scores.iter().map(|s| s.curve.len()).min().unwrap_or(0);
        let curves: Vec<(String, Vec<f64>)> = self
            .scores
            .iter()
            .map(|s| {
                let c = s.curve.iter().take(bins).map(|b| b.mean_loss).collect();
                (s.method.name(), c)
            })
            .collect();
        if bins == 0 {
            return Ok(());
        }
        match crate::report::plot_svg(
            dir.join("lm_eval.svg"),
            &format!("mean loss by position in the document (bins of {POSITION_BIN} tokens)"),
            "nats per token",
            &curves,
            false,
        ) {
            Err(Error::MissingFeature { .. }) => Ok(()),
            other => other,
        }
    }
}
