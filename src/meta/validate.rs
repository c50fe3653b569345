//! The rules a [`MetaConfig`] follows, in one place: [`MetaTrainer::new`] applies them to the
//! settings it is given, and a config file's validation (`crate::config`) to its `[meta]`
//! section, naming the keys as the file does.
//!
//! [`MetaTrainer::new`]: super::MetaTrainer::new

use super::settings::MetaConfig;
use crate::optim::{Mode, Optimizer};
use crate::{Error, Result};

/// A broken rule: what is wrong, and how to fix it.
pub(crate) struct Problem {
    /// What is wrong, naming the settings involved.
    pub problem: String,
    /// How to fix it.
    pub hint: String,
}

impl MetaConfig {
    /// Check the settings against each other and against the inner optimizer `opt`: an unroll
    /// of at least one step; second-order mode only for an optimizer whose reverse gives the
    /// adjoint of its gradient input; something to meta-learn; Reptile learning the
    /// initialisation alone over whole episodes; episodes made of whole unrolls. The error
    /// names the fields involved and the fix.
    pub fn validate(&self, opt: &Optimizer) -> Result<()> {
        self.check(opt, "")
            .map_err(|p| Error::invalid(format!("{}; {}", p.problem, p.hint)))
    }

    /// The rules of [`MetaConfig::validate`]; `prefix` goes before the name of every setting
    /// (`"meta."` for the keys of a config file, `""` for the fields of [`MetaConfig`]).
    pub(crate) fn check(&self, opt: &Optimizer, prefix: &str) -> Result<(), Problem> {
        let p = prefix;
        let fail = |problem: String, hint: String| Err(Problem { problem, hint });
        let t = self.unroll;
        let name = opt.name();
        if t == 0 {
            return fail(
                format!("{p}unroll = 0: an unroll needs at least 1 inner step"),
                format!("set {p}unroll to the inner steps T of one unroll, e.g. 20"),
            );
        }
        if self.mode == Mode::SecondOrder && !opt.supports_second_order() {
            return fail(
                format!(
                    "{p}mode = second-order is not available for optimizer '{name}': its reverse \
                     kernel does not give the adjoint of its gradient input"
                ),
                format!(
                    "use optimizer {}, or {p}mode = truncated",
                    crate::optim::second_order_families()
                ),
            );
        }
        let learns_phi = self.learn_optimizer && opt.is_learned();
        if !learns_phi && !self.learn_init {
            return if opt.is_learned() {
                fail(
                    format!(
                        "nothing to meta-learn: {p}learn_optimizer and {p}learn_init are both false"
                    ),
                    format!(
                        "set {p}learn_optimizer = true to learn optimizer '{name}', or \
                         {p}learn_init = true to learn the initialisation"
                    ),
                )
            } else {
                fail(
                    format!(
                        "nothing to meta-learn: optimizer '{name}' has no learned parameters and \
                         {p}learn_init is false"
                    ),
                    format!(
                        "use a learned optimizer (lstm, linear, mlp) or set {p}learn_init = true"
                    ),
                )
            };
        }
        if self.mode == Mode::Reptile && !self.learn_init {
            return fail(
                format!(
                    "Reptile ({p}mode = reptile) learns the initialisation only, but \
                     {p}learn_init is false"
                ),
                format!("set {p}learn_init = true"),
            );
        }
        if self.mode == Mode::Reptile && learns_phi {
            return fail(
                format!(
                    "Reptile ({p}mode = reptile) learns the initialisation only, but optimizer \
                     '{name}' has learned parameters and {p}learn_optimizer is true"
                ),
                format!(
                    "use a hand-designed optimizer (sgd, momentum, nag, rmsprop, adam) or set \
                     {p}learn_optimizer = false"
                ),
            );
        }
        let e = self.episode;
        if e != 0 && (e < t || e % t != 0) {
            return fail(
                format!("{p}episode = {e} is not a multiple of {p}unroll = {t}"),
                "use a multiple of the unroll, or 0 for one unroll per episode".to_string(),
            );
        }
        if e > t && self.mode == Mode::Reptile {
            return fail(
                format!(
                    "Reptile ({p}mode = reptile) runs whole episodes, but {p}episode = {e} splits \
                     them into unrolls of {t} steps"
                ),
                format!("set {p}episode = 0 (one unroll per episode)"),
            );
        }
        if let Some((es, _)) = self.estimator.particles() {
            let est = self.estimator.name();
            if matches!(self.mode, Mode::SecondOrder | Mode::Reptile) {
                return fail(
                    format!(
                        "{p}estimator = {est} runs the unroll forward only, but {p}mode = {} \
                         picks the gradient paths of backprop",
                        self.mode.name()
                    ),
                    format!("leave {p}mode at truncated, or set {p}estimator = backprop"),
                );
            }
            if es.pairs == 0 {
                return fail(
                    format!(
                        "{p}pairs = 0: {p}estimator = {est} needs at least one antithetic pair"
                    ),
                    format!("set {p}pairs to the antithetic pairs per unroll, e.g. 8"),
                );
            }
            if !(es.sigma.is_finite() && es.sigma > 0.0) {
                return fail(
                    format!(
                        "{p}sigma = {}: the perturbation scale must be positive",
                        es.sigma
                    ),
                    format!("set {p}sigma to a small positive scale, e.g. 0.01"),
                );
            }
        }
        if self.mode != Mode::Reptile
            && self.memory_budget.is_none()
            && self.estimator == super::Estimator::Backprop
        {
            // The plan depends on the schedule and T only: a schedule that cannot reverse T
            // steps is refused here, before any buffer exists.
            if let Err(e) = super::plan::plan(self.schedule, t) {
                let why = match e {
                    Error::InvalidArgument(m) => m,
                    other => other.to_string(),
                };
                return fail(
                    format!("{p}schedule = {}: {why}", self.schedule.name()),
                    format!("choose another {p}schedule (store-all, sqrt, every-K, revolve-S)"),
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::{EsConfig, Estimator};
    use crate::optim::hand::Sgd;
    use crate::optim::linear::Linear;

    fn problem(cfg: MetaConfig, opt: &Optimizer, prefix: &str) -> String {
        match cfg.check(opt, prefix) {
            Ok(()) => panic!("accepted {cfg:?} with {}", opt.name()),
            Err(p) => format!("{}. {}", p.problem, p.hint),
        }
    }

    #[test]
    fn every_rule_names_its_settings_in_both_namings() {
        let sgd = Optimizer::new(Sgd { lr: 0.1 });
        let base = MetaConfig {
            unroll: 4,
            ..Default::default()
        };
        let cases = [
            (
                MetaConfig {
                    unroll: 0,
                    ..base.clone()
                },
                Optimizer::new(Linear),
                "unroll = 0",
            ),
            (base.clone(), sgd.clone(), "learn_init is false"),
            (
                MetaConfig {
                    learn_optimizer: false,
                    ..base.clone()
                },
                Optimizer::new(Linear),
                "learn_optimizer and ",
            ),
            (
                MetaConfig {
                    mode: Mode::Reptile,
                    ..base.clone()
                },
                Optimizer::new(Linear),
                "learn_init is false",
            ),
            (
                MetaConfig {
                    mode: Mode::Reptile,
                    learn_init: true,
                    ..base.clone()
                },
                Optimizer::new(Linear),
                "learn_optimizer is true",
            ),
            (
                MetaConfig {
                    episode: 6,
                    ..base.clone()
                },
                Optimizer::new(Linear),
                "episode = 6 is not a multiple of ",
            ),
            (
                MetaConfig {
                    mode: Mode::Reptile,
                    learn_init: true,
                    episode: 8,
                    ..base.clone()
                },
                sgd.clone(),
                "episode = 8 splits",
            ),
            (
                MetaConfig {
                    estimator: Estimator::Es(EsConfig::default()),
                    mode: Mode::SecondOrder,
                    ..base.clone()
                },
                Optimizer::new(Linear),
                "estimator = es runs the unroll forward only",
            ),
            (
                MetaConfig {
                    estimator: Estimator::Pes(EsConfig {
                        pairs: 0,
                        ..Default::default()
                    }),
                    ..base.clone()
                },
                Optimizer::new(Linear),
                "pairs = 0",
            ),
            (
                MetaConfig {
                    estimator: Estimator::Es(EsConfig {
                        sigma: -1.0,
                        ..Default::default()
                    }),
                    ..base.clone()
                },
                Optimizer::new(Linear),
                "sigma = -1",
            ),
        ];
        for (cfg, opt, want) in cases {
            let api = problem(cfg.clone(), &opt, "");
            assert!(api.contains(want), "{api}");
            let file = problem(cfg.clone(), &opt, "meta.");
            assert!(file.contains(&format!("meta.{want}")), "{file}");
            let e = cfg.validate(&opt).expect_err("refused").to_string();
            assert!(e.contains(want), "{e}");
        }
        let ok = MetaConfig {
            mode: Mode::Reptile,
            learn_init: true,
            episode: 4,
            ..base
        };
        assert!(ok.validate(&sgd).is_ok());
    }
}
