//! `metalearn eval` of meta-training runs (a language-model run goes to [`super::lm`]).

use std::path::PathBuf;
use std::sync::Arc;

use metalearn::gpu::Gpu;
use metalearn::{Error, Result};

use super::lm::{is_lm_run, lm_eval_cmd};
use super::EvalArgs;

pub(crate) fn eval_cmd(open: impl Fn() -> Result<Arc<Gpu>>, a: EvalArgs) -> Result<()> {
    if is_lm_run(&a.checkpoint) {
        return lm_eval_cmd(open, a);
    }
    use metalearn::config::Config;
    use metalearn::run::{evaluate_checkpoints, load_checkpoint, Candidate};
    let label = |p: &std::path::Path| {
        p.file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| p.display().to_string())
    };
    let main = load_checkpoint(&a.checkpoint)?;
    let own = Config::from_toml(
        &main.config,
        &format!("{} (its config)", a.checkpoint.display()),
    )?;
    let base = match &a.config {
        Some(p) => Config::from_file(p)?,
        None => own,
    };
    let mut set = a.set.clone();
    if let Some(v) = a.steps {
        set.push(format!("eval.steps={v}"));
    }
    if let Some(v) = a.instances {
        set.push(format!("eval.instances={v}"));
    }
    let cfg = base.with_overrides(&set)?;
    let mut cands = vec![Candidate {
        name: format!(
            "{} ({}, step {})",
            main.optimizer,
            label(&a.checkpoint),
            main.state.step
        ),
        checkpoint: main,
    }];
    for c in &a.compare {
        let ck = load_checkpoint(c)?;
        cands.push(Candidate {
            name: format!("{} ({}, step {})", ck.optimizer, label(c), ck.state.step),
            checkpoint: ck,
        });
    }
    let out = eval_dir(a.out.as_deref(), &a.checkpoint);
    std::fs::create_dir_all(&out).map_err(|e| Error::Io {
        path: out.clone(),
        source: e,
    })?;
    let gpu = open()?;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let curves = evaluate_checkpoints(&gpu, &cfg, &cands, progress)?;
    let steps = cfg.eval.steps;
    let title = format!(
        "{} task, {} held-out instances",
        format!("{:?}", cfg.task.kind).to_lowercase(),
        cfg.eval.instances
    );
    let train: Vec<(String, Vec<f64>)> = curves
        .iter()
        .map(|c| (c.name.clone(), c.train.clone()))
        .collect();
    metalearn::report::write_csv(out.join("curves.csv"), &train)?;
    metalearn::report::write_json(out.join("curves.json"), &train)?;
    metalearn::report::plot_svg(out.join("curves.svg"), &title, "mean loss", &train, a.log_y)?;
    let held: Vec<(String, Vec<f64>)> = curves
        .iter()
        .filter_map(|c| c.held_out.clone().map(|h| (c.name.clone(), h)))
        .collect();
    if !held.is_empty() {
        metalearn::report::write_csv(out.join("held_out.csv"), &held)?;
        metalearn::report::write_json(out.join("held_out.json"), &held)?;
        metalearn::report::plot_svg(
            out.join("held_out.svg"),
            &format!("{title}: query-set loss"),
            "mean held-out loss",
            &held,
            a.log_y,
        )?;
    }
    let marks: Vec<usize> = [1, 10, steps / 2, steps]
        .into_iter()
        .filter(|&t| t <= steps)
        .collect();
    let mut marks = marks;
    marks.sort_unstable();
    marks.dedup();
    let header: Vec<String> = marks.iter().map(|t| format!("t={t}")).collect();
    println!("{title}; mean loss after t steps");
    println!(
        "{:<40} {}",
        "optimizer",
        header
            .iter()
            .map(|h| format!("{h:>11}"))
            .collect::<String>()
    );
    for c in &curves {
        let row: String = marks.iter().map(|&t| cell(c.train[t])).collect();
        println!("{:<40} {row}", c.name);
        if let Some(h) = &c.held_out {
            let row: String = marks.iter().map(|&t| cell(h[t])).collect();
            println!("{:<40} {row}", "  held-out (query) loss");
        }
    }
    println!("curves and plot: {}", out.display());
    Ok(())
}

/// Options of `metalearn export`.
/// A table cell: fixed point, or scientific for values too large or small for it.
fn cell(v: f64) -> String {
    if v.is_finite() && (v == 0.0 || (1e-3..1e5).contains(&v.abs())) {
        format!("{v:>11.4}")
    } else {
        format!("{v:>11.3e}")
    }
}

/// Where `eval` writes: `--out`, else `eval/` inside the run directory or beside the checkpoint.
pub(crate) fn eval_dir(out: Option<&std::path::Path>, checkpoint: &std::path::Path) -> PathBuf {
    match out {
        Some(o) => o.to_path_buf(),
        None if checkpoint.is_dir() => checkpoint.join("eval"),
        None => checkpoint
            .parent()
            .map(|p| p.join("eval"))
            .unwrap_or_else(|| PathBuf::from("eval")),
    }
}
