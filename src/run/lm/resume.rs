//! The training checkpoint of an LM run ([`LM_CHECKPOINT`]): the weights, the optimizer's state
//! and the state carried by every stream after a step, so that `metalearn train --resume`
//! continues bit-identically (the training stream is drawn again up to the step).

use std::path::Path;

use super::file;
use crate::config::Config;
use crate::data::text::Vocab;
use crate::tasks::lm::train::TrainerSnapshot;
use crate::{Error, Result};

/// The checkpoint file of an unfinished LM run, in its run directory.
pub const LM_CHECKPOINT: &str = "lm-checkpoint.safetensors";

/// Format tag of [`LM_CHECKPOINT`].
pub const LM_CHECKPOINT_FORMAT: &str = "metalearn-lm-checkpoint-1";

/// An LM run after `step` training steps.
#[derive(Clone, Debug, PartialEq)]
pub struct LmCheckpoint {
    /// The run's config.
    pub config: Config,
    /// Its vocabulary.
    pub vocab: Vocab,
    /// Training steps taken.
    pub step: usize,
    /// The trainer's state.
    pub state: TrainerSnapshot,
}

const HINT: &str = "the checkpoint is truncated or corrupt; remove it and train again into a new \
                    run directory";

impl LmCheckpoint {
    /// The bytes of [`LM_CHECKPOINT`]: tensors `theta`, `opt_state`, `lm_state`; metadata as
    /// the model file's (see `file.rs`) and `opt_steps`.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let s = &self.state;
        file::to_bytes(
            LM_CHECKPOINT_FORMAT,
            (&self.config, &self.vocab, self.step),
            &[("opt_steps", s.opt_steps.to_string())],
            &[
                ("theta", &s.theta),
                ("opt_state", &s.opt_state),
                ("lm_state", &s.lm_state),
            ],
        )
    }

    /// Parse [`LM_CHECKPOINT`] bytes; `path` names the file in errors.
    pub fn from_bytes(data: &[u8], path: &Path) -> Result<Self> {
        let names = ["theta", "opt_state", "lm_state"];
        let mut f = file::from_bytes(data, path, (LM_CHECKPOINT_FORMAT, &names), HINT)?;
        let bad = |problem: String| Error::Checkpoint {
            path: path.to_path_buf(),
            problem,
            hint: HINT.into(),
        };
        let text = f
            .meta
            .get("opt_steps")
            .ok_or_else(|| bad("metadata key 'opt_steps' is missing".into()))?;
        let opt_steps = text.parse().map_err(|_| {
            bad(format!(
                "metadata 'opt_steps' = '{text}' is not a whole number"
            ))
        })?;
        let mut take = |n: &str| f.tensors.remove(n).unwrap_or_default();
        let state = TrainerSnapshot {
            theta: take("theta"),
            opt_state: take("opt_state"),
            opt_steps,
            lm_state: take("lm_state"),
        };
        Ok(Self {
            config: f.config,
            vocab: f.vocab,
            step: f.step,
            state,
        })
    }

    /// Read the checkpoint file `path`.
    pub fn load(path: &Path) -> Result<Self> {
        let data = std::fs::read(path).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            problem: format!("cannot be read ({e})"),
            hint: "an LM run writes it every output.checkpoint_every steps and when stopped; \
                   train without --resume to start the run"
                .into(),
        })?;
        Self::from_bytes(&data, path)
    }
}

/// `c` without the keys a resumed LM run may change: its length (`lm.steps`), validation
/// (`lm.eval_every`, `lm.eval_chunks`), the evaluation keys of `metalearn eval` and `[output]`.
pub(super) fn training_part(c: &Config) -> Config {
    let mut c = c.clone();
    let d = crate::config::LmConfig::default();
    c.lm.steps = 0;
    c.lm.eval_every = 0;
    c.lm.eval_chunks = 0;
    c.lm.fast = d.fast;
    c.lm.dynamic = d.dynamic;
    c.lm.tune_chunks = d.tune_chunks;
    c.lm.rms_chunks = d.rms_chunks;
    c.lm.rms_eps = d.rms_eps;
    c.lm.learned = d.learned;
    c.output = Default::default();
    c
}
