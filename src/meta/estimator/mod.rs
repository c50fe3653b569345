//! Estimators of the meta-gradient: reverse mode through the unroll (`backprop`, the
//! checkpointed meta-backward of `src/meta/unroll.rs`, whose gradient paths `meta.mode` picks),
//! antithetic evolution strategies (`es`) and persistent evolution strategies (`pes`, Vicol,
//! Metz and Sohl-Dickstein 2021), both in [`es`] with their f64 reference in
//! [`mod@reference`].

pub mod es;
pub mod reference;

use crate::{Error, Result};

/// Settings of the evolution-strategies estimators.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EsConfig {
    /// Perturbation scale σ of every meta-parameter.
    pub sigma: f32,
    /// Antithetic pairs P (2P particles, each a copy of the task's instances).
    pub pairs: usize,
}

impl Default for EsConfig {
    fn default() -> Self {
        Self {
            sigma: 0.01,
            pairs: 8,
        }
    }
}

/// How the meta-gradient of an unroll is estimated.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Estimator {
    /// Reverse mode through the unroll (checkpointed, recomputed); `meta.mode` picks the
    /// gradient paths. Within an episode of several unrolls it is truncated backprop.
    #[default]
    Backprop,
    /// Antithetic ES: every unroll draws P fresh pairs ±σz of (φ, θ0) and runs them as 2P
    /// copies of the instances, forward only (memory O(1) in T): the gradient of the
    /// Gaussian-smoothed meta-loss of the unroll.
    Es(EsConfig),
    /// PES: ES whose particles keep their perturbed trajectories over an episode's unrolls and
    /// weight each unroll's losses by the sum of all their perturbations so far (reset when an
    /// episode starts): unbiased for the smoothed loss of the whole episode, where truncated
    /// backprop and per-unroll ES are biased.
    Pes(EsConfig),
}

impl Estimator {
    /// Every estimator's name, as `meta.estimator` spells it.
    pub const NAMES: [&'static str; 3] = ["backprop", "es", "pes"];

    /// The estimator named `name` with the ES settings `es` (ignored by backprop).
    pub fn parse(name: &str, es: EsConfig) -> Result<Self> {
        match name {
            "backprop" => Ok(Self::Backprop),
            "es" => Ok(Self::Es(es)),
            "pes" => Ok(Self::Pes(es)),
            _ => Err(Error::invalid(format!(
                "unknown estimator '{name}'; use one of {}",
                Self::NAMES.join(", ")
            ))),
        }
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Backprop => "backprop",
            Self::Es(_) => "es",
            Self::Pes(_) => "pes",
        }
    }

    /// The ES settings and whether the noise persists over an episode (PES); `None` for
    /// backprop.
    pub fn particles(&self) -> Option<(EsConfig, bool)> {
        match *self {
            Self::Backprop => None,
            Self::Es(c) => Some((c, false)),
            Self::Pes(c) => Some((c, true)),
        }
    }

    /// Copies of the task's instances the estimator runs (2P for ES and PES, 1 for backprop).
    pub fn copies(&self) -> usize {
        self.particles().map_or(1, |(c, _)| 2 * c.pairs)
    }
}
