//! Evaluation over seeds: runs of one config that differ only in their seed are one *group*;
//! each seed's runs are evaluated on that seed's held-out (and tuning) instances, and every
//! curve — each group's, each tuned baseline's — is then known per seed and summarised by its
//! spread (`metalearn eval RUN --compare …` when runs share a config).

use std::sync::Arc;

use super::eval::{evaluate_checkpoints, Candidate};
use crate::config::Config;
use crate::gpu::Gpu;
use crate::meta::Checkpoint;
use crate::report::{spread, Spread};
use crate::{Error, Result};

/// Runs of one config that differ only in their seed.
#[derive(Clone, Debug)]
pub struct SeedGroup {
    /// Label in tables and plots.
    pub name: String,
    /// The runs' checkpoints (one per seed).
    pub runs: Vec<Checkpoint>,
}

/// One curve of an evaluation over seeds: its values per seed.
#[derive(Clone, Debug)]
pub struct SeedCurve {
    /// Label: a group's, or a baseline's optimizer.
    pub name: String,
    /// The seeds, in the order of the curves.
    pub seeds: Vec<u64>,
    /// Mean loss over instances at θ_0 … θ_L, one curve per seed.
    pub train: Vec<Vec<f64>>,
    /// Mean held-out (query-set) loss, one curve per seed, for few-shot tasks.
    pub held_out: Option<Vec<Vec<f64>>>,
    /// For a baseline, its tuned learning rate per seed.
    pub learning_rates: Vec<f32>,
}

impl SeedCurve {
    /// The spread of the training-loss curves over the seeds.
    pub fn train_spread(&self) -> Result<Spread> {
        spread(&self.train)
    }

    /// The spread of the held-out curves over the seeds, for few-shot tasks.
    pub fn held_out_spread(&self) -> Result<Option<Spread>> {
        self.held_out.as_deref().map(spread).transpose()
    }
}

/// The seed of a checkpoint's run (from the config it stores).
pub fn seed_of(ck: &Checkpoint) -> Result<u64> {
    Ok(Config::from_toml(&ck.config, "the checkpoint's config")?.seed)
}

/// True when the configs `a` and `b` describe the same run but for the seed, the output and
/// the evaluation settings (what makes runs one [`SeedGroup`]).
pub fn same_but_seed(a: &Config, b: &Config) -> bool {
    let unseeded = |c: &Config| Config {
        seed: 0,
        ..super::training_part(c)
    };
    unseeded(a) == unseeded(b)
}

/// Evaluate `groups` over their seeds as [`evaluate_checkpoints`] does for one: for every seed
/// s of any run, `cfg` with `seed = s` decides the held-out and tuning instances, that seed's
/// run of each group is evaluated on them, and the baselines are tuned and evaluated on them.
/// The result: one [`SeedCurve`] per group (in order, over the seeds it has), then one per
/// baseline of `cfg.eval.baselines` (over every seed).
pub fn evaluate_seeds(
    gpu: &Arc<Gpu>,
    cfg: &Config,
    groups: &[SeedGroup],
    progress: bool,
) -> Result<Vec<SeedCurve>> {
    let mut runs: Vec<Vec<(u64, &Checkpoint)>> = Vec::with_capacity(groups.len());
    for g in groups {
        let mut v = Vec::with_capacity(g.runs.len());
        for ck in &g.runs {
            let s = seed_of(ck)?;
            if v.iter().any(|(t, _)| *t == s) {
                return Err(Error::invalid(format!(
                    "two runs of '{}' have seed {s}: give each seed once",
                    g.name
                )));
            }
            v.push((s, ck));
        }
        if v.is_empty() {
            return Err(Error::invalid(format!("group '{}' has no run", g.name)));
        }
        runs.push(v);
    }
    let mut seeds: Vec<u64> = runs.iter().flatten().map(|(s, _)| *s).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let curve = |name: &str| SeedCurve {
        name: name.to_string(),
        seeds: Vec::new(),
        train: Vec::new(),
        held_out: None,
        learning_rates: Vec::new(),
    };
    let mut out: Vec<SeedCurve> = groups.iter().map(|g| curve(&g.name)).collect();
    out.extend(cfg.eval.baselines.iter().map(|b| curve(b)));
    for &s in &seeds {
        let mut c = cfg.clone();
        c.seed = s;
        // This seed's run of each group that has one, and where its curve goes.
        let (slots, cands): (Vec<usize>, Vec<Candidate>) = runs
            .iter()
            .enumerate()
            .filter_map(|(k, v)| {
                let (_, ck) = v.iter().find(|(t, _)| *t == s)?;
                Some((
                    k,
                    Candidate {
                        name: groups[k].name.clone(),
                        checkpoint: (*ck).clone(),
                    },
                ))
            })
            .unzip();
        let curves = evaluate_checkpoints(gpu, &c, &cands, progress)?;
        let targets = slots.into_iter().chain(groups.len()..out.len());
        for (k, e) in targets.zip(curves) {
            let o = &mut out[k];
            o.seeds.push(s);
            o.train.push(e.train);
            if let Some(h) = e.held_out {
                o.held_out.get_or_insert_with(Vec::new).push(h);
            }
            if let Some(lr) = e.learning_rate {
                o.learning_rates.push(lr);
            }
        }
    }
    Ok(out)
}
