//! The language-model commands: `metalearn train` and `metalearn eval` of a config with
//! `task.kind = "lm"` and of its run directory.

use std::sync::Arc;

use metalearn::gpu::Gpu;
use metalearn::{Error, Result};

use super::eval::eval_dir;
use super::{EvalArgs, TrainArgs};

/// `metalearn train` of a language-model config (`task.kind = "lm"`).
pub(crate) fn lm_train_cmd(
    gpu: &Arc<Gpu>,
    cfg: &metalearn::config::Config,
    a: &TrainArgs,
) -> Result<()> {
    let info = &gpu.props().info;
    println!(
        "training the language model of [lm] on {} ({:?}); run directory {}",
        info.name, info.backend, cfg.output.dir
    );
    let opts = metalearn::run::TrainOptions {
        resume: a.resume,
        progress: !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop_after: None,
        stop: Some(metalearn::run::stop_on_signals()?),
        devices: Vec::new(),
    };
    let s = metalearn::run::lm::train_lm(gpu, cfg, &opts)?;
    let last = s.losses.last().copied().unwrap_or(f64::NAN);
    let ppl = s.valid.last().map_or(f64::NAN, |v| v.1);
    println!(
        "{} steps in {:.1} s; last training loss {last:.4}; validation perplexity {ppl:.3}",
        s.steps, s.seconds
    );
    println!("model: {}", s.file.display());
    if !s.finished {
        println!("(stopped early: that is the run's checkpoint; continue with --resume)");
    }
    println!(
        "metrics: {}/metrics.jsonl; evaluate with: metalearn eval {}",
        cfg.output.dir, cfg.output.dir
    );
    Ok(())
}

/// True when `path` names a language-model run: a directory holding `lm.safetensors`, or that
/// file.
pub(crate) fn is_lm_run(path: &std::path::Path) -> bool {
    use metalearn::run::lm::LM_FILE;
    if path.is_dir() {
        path.join(LM_FILE).exists()
    } else {
        path.file_name().is_some_and(|f| f == LM_FILE)
    }
}

/// True when `path` is a directory written by `metalearn eval` of a language-model run.
pub(crate) fn is_lm_eval(path: &std::path::Path) -> bool {
    path.join(metalearn::run::lm::LM_EVAL_JSON).exists()
}

/// `metalearn eval DIR --compare DIR…` of LM evaluation directories (one per seed): each
/// method's perplexity as mean ± std and the per-position gain over static evaluation, in
/// `lm_seeds.md`, `lm_seeds.json`, `lm_gain.csv` and `lm_gain.svg` of `--out` (default: the
/// first directory).
pub(crate) fn lm_seeds_cmd(a: EvalArgs) -> Result<()> {
    use metalearn::run::lm::LmSeeds;
    if a.config.is_some() || !a.set.is_empty() || a.steps.is_some() || a.instances.is_some() {
        return Err(Error::invalid(
            "LM evaluation directories are compared as they are: only --compare and --out apply",
        ));
    }
    let mut dirs = vec![a.checkpoint.clone()];
    dirs.extend(a.compare.iter().cloned());
    if let Some(d) = dirs.iter().find(|d| !is_lm_eval(d)) {
        return Err(Error::invalid(format!(
            "{} holds no {}: compare directories written by metalearn eval of language-model runs",
            d.display(),
            metalearn::run::lm::LM_EVAL_JSON
        )));
    }
    let seeds = LmSeeds::read(&dirs)?;
    print!("{}", seeds.table());
    let out = a.out.clone().unwrap_or_else(|| a.checkpoint.clone());
    seeds.write(&out)?;
    println!(
        "per-position gain over static: {} and {}",
        out.join("lm_gain.csv").display(),
        out.join("lm_gain.svg").display()
    );
    Ok(())
}

/// `metalearn eval` of a language-model run: static, state-reset and dynamic evaluation with
/// every updater of `[lm.dynamic]` (tuned on the validation split) on the test split; a table on stdout, `lm_eval.csv` and `lm_eval.json` in the output directory.
pub(crate) fn lm_eval_cmd(open: impl Fn() -> Result<Arc<Gpu>>, a: EvalArgs) -> Result<()> {
    use metalearn::run::lm::{evaluate_lm, LmModel};
    if !a.compare.is_empty() || a.steps.is_some() || a.instances.is_some() {
        return Err(Error::invalid(
            "--compare, --steps and --instances are for meta-training runs; a language-model run takes --set lm.eval_chunks=K, --set 'lm.dynamic={sgd={lr=[0.01,0.03]}}' and --out",
        ));
    }
    let model = LmModel::load(&a.checkpoint)?;
    let base = match &a.config {
        Some(p) => metalearn::config::Config::from_file(p)?,
        None => model.config.clone(),
    };
    let cfg = base.with_overrides(&a.set)?;
    let out = eval_dir(a.out.as_deref(), &a.checkpoint);
    let gpu = open()?;
    let ev = evaluate_lm(&gpu, &model, &cfg)?;
    print!("{}", ev.table());
    ev.write(&out)?;
    println!(
        "curves by position: {} and {}; token by token: {}",
        out.join("lm_eval.csv").display(),
        out.join("lm_eval.json").display(),
        out.join("lm_tokens.html").display()
    );
    Ok(())
}
