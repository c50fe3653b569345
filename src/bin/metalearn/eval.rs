//! `metalearn eval` of meta-training runs (a language-model run goes to [`super::lm`]).

use std::path::PathBuf;
use std::sync::Arc;

use metalearn::gpu::Gpu;
use metalearn::{Error, Result};

use super::lm::{is_lm_eval, is_lm_run, lm_eval_cmd, lm_seeds_cmd};
use super::EvalArgs;

pub(crate) fn eval_cmd(open: impl Fn() -> Result<Arc<Gpu>>, a: EvalArgs) -> Result<()> {
    if is_lm_eval(&a.checkpoint) {
        return lm_seeds_cmd(a);
    }
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
    let title = format!(
        "{} task, {} held-out instances",
        format!("{:?}", cfg.task.kind).to_lowercase(),
        cfg.eval.instances
    );
    let mut paths = vec![a.checkpoint.clone()];
    paths.extend(a.compare.iter().cloned());
    let groups = seed_groups(&paths, cands.clone())?;
    if distinct_seeds(&groups)? > 1 {
        let gpu = open()?;
        return eval_seeds(&gpu, &cfg, &groups, &out, (&title, a.log_y));
    }
    let gpu = open()?;
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let curves = evaluate_checkpoints(&gpu, &cfg, &cands, progress)?;
    let steps = cfg.eval.steps;
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
    let marks = marks_of(steps);
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

/// The steps the table shows: 1, 10, L/2 and L.
fn marks_of(steps: usize) -> Vec<usize> {
    let mut marks: Vec<usize> = [1, 10, steps / 2, steps]
        .into_iter()
        .filter(|&t| t <= steps)
        .collect();
    marks.sort_unstable();
    marks.dedup();
    marks
}

/// The runs `paths` (with their candidates, in the same order) grouped by config: runs whose
/// configs differ only in the seed (and output, evaluation) are one group, labelled by the
/// first run's directory name without a trailing seed suffix (`_s1`, `-seed2`).
fn seed_groups(
    paths: &[PathBuf],
    cands: Vec<metalearn::run::Candidate>,
) -> Result<Vec<metalearn::run::SeedGroup>> {
    use metalearn::config::Config;
    use metalearn::run::{same_but_seed, SeedGroup};
    let mut groups: Vec<(Config, SeedGroup)> = Vec::new();
    for (path, c) in paths.iter().zip(cands) {
        let cfg = Config::from_toml(
            &c.checkpoint.config,
            &format!("{} (its config)", path.display()),
        )?;
        match groups.iter_mut().find(|(g, _)| same_but_seed(g, &cfg)) {
            Some((_, g)) => g.runs.push(c.checkpoint),
            None => {
                let name = format!("{} ({})", c.checkpoint.optimizer, run_label(path));
                groups.push((
                    cfg,
                    SeedGroup {
                        name,
                        runs: vec![c.checkpoint],
                    },
                ));
            }
        }
    }
    Ok(groups.into_iter().map(|(_, g)| g).collect())
}

fn distinct_seeds(groups: &[metalearn::run::SeedGroup]) -> Result<usize> {
    let mut s = Vec::new();
    for g in groups {
        for ck in &g.runs {
            s.push(metalearn::run::seed_of(ck)?);
        }
    }
    s.sort_unstable();
    s.dedup();
    Ok(s.len())
}

/// A run directory's (or checkpoint's) name without a trailing seed suffix.
fn run_label(path: &std::path::Path) -> String {
    let dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent()
    };
    let name = dir
        .and_then(|d| d.file_name())
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    let digits = name.trim_end_matches(|c: char| c.is_ascii_digit());
    if digits.len() == name.len() {
        return name;
    }
    for suffix in ["_seed", "-seed", ".seed", "_s", "-s", ".s"] {
        if let Some(stem) = digits.strip_suffix(suffix) {
            if !stem.is_empty() {
                return stem.to_string();
            }
        }
    }
    name
}

/// Per curve: its name, its spread over the seeds and every seed's curve.
type SeedRows = [(String, metalearn::report::Spread, Vec<(u64, Vec<f64>)>)];

/// `metalearn eval` over several seeds: every curve as mean ± standard deviation in the table,
/// mean, std, min, max and every seed's curve in the CSV and JSON, min–max bands in the plots.
fn eval_seeds(
    gpu: &Arc<Gpu>,
    cfg: &metalearn::config::Config,
    groups: &[metalearn::run::SeedGroup],
    out: &std::path::Path,
    (title, log_y): (&str, bool),
) -> Result<()> {
    use metalearn::report::{plot_svg_bands, write_csv, write_json, Spread};
    let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let curves = metalearn::run::evaluate_seeds(gpu, cfg, groups, progress)?;
    let label = |c: &metalearn::run::SeedCurve| {
        if c.learning_rates.is_empty() {
            c.name.clone()
        } else {
            let lrs: Vec<String> = c
                .learning_rates
                .iter()
                .map(|l| format!("{l:.1e}"))
                .collect();
            format!("{} (lr {})", c.name, lrs.join(", "))
        }
    };
    let files = |stem: &str, what: &str, spreads: &SeedRows| {
        let mut cols: Vec<(String, Vec<f64>)> = Vec::new();
        for (name, s, per_seed) in spreads {
            cols.push((format!("{name} mean"), s.mean.clone()));
            cols.push((format!("{name} std"), s.std.clone()));
            cols.push((format!("{name} min"), s.min.clone()));
            cols.push((format!("{name} max"), s.max.clone()));
            for (seed, v) in per_seed {
                cols.push((format!("{name} seed={seed}"), v.clone()));
            }
        }
        write_csv(out.join(format!("{stem}.csv")), &cols)?;
        write_json(out.join(format!("{stem}.json")), &cols)?;
        let means: Vec<(String, Vec<f64>)> = spreads
            .iter()
            .map(|(n, s, _)| (n.clone(), s.mean.clone()))
            .collect();
        let bands: Vec<(Vec<f64>, Vec<f64>)> = spreads
            .iter()
            .map(|(_, s, _)| (s.min.clone(), s.max.clone()))
            .collect();
        plot_svg_bands(
            out.join(format!("{stem}.svg")),
            what,
            "mean loss",
            &means,
            &bands,
            log_y,
        )
    };
    let with_seeds = |c: &metalearn::run::SeedCurve, v: &[Vec<f64>]| -> Vec<(u64, Vec<f64>)> {
        c.seeds.iter().copied().zip(v.iter().cloned()).collect()
    };
    let mut train = Vec::new();
    let mut held = Vec::new();
    for c in &curves {
        train.push((c.name.clone(), c.train_spread()?, with_seeds(c, &c.train)));
        if let (Some(s), Some(h)) = (c.held_out_spread()?, &c.held_out) {
            held.push((c.name.clone(), s, with_seeds(c, h)));
        }
    }
    files("curves", title, &train)?;
    if !held.is_empty() {
        files("held_out", &format!("{title}: query-set loss"), &held)?;
    }
    let seeds_doc: Vec<serde_json::Value> = curves
        .iter()
        .map(|c| serde_json::json!({"name": c.name, "seeds": c.seeds, "learning_rates": c.learning_rates}))
        .collect();
    let text = serde_json::to_string_pretty(&serde_json::json!({ "curves": seeds_doc }))
        .map_err(|e| Error::invalid(format!("cannot encode the seeds as JSON: {e}")))?;
    metalearn::meta::write_atomically(&out.join("seeds.json"), text.as_bytes())?;
    let mut seeds: Vec<u64> = curves
        .iter()
        .flat_map(|c| c.seeds.iter().copied())
        .collect();
    seeds.sort_unstable();
    seeds.dedup();
    let seeds: Vec<String> = seeds.iter().map(u64::to_string).collect();
    let marks = marks_of(cfg.eval.steps);
    println!(
        "{title}; mean loss after t steps, mean ± standard deviation over seeds {}",
        seeds.join(", ")
    );
    let header: String = marks
        .iter()
        .map(|t| format!("{:>20}", format!("t={t}")))
        .collect();
    println!("{:<44} {header}", "optimizer");
    let row = |s: &Spread| -> String {
        marks
            .iter()
            .map(|&t| {
                format!(
                    "{:>20}",
                    format!("{} ± {}", cell(s.mean[t]).trim(), cell(s.std[t]).trim())
                )
            })
            .collect()
    };
    for (c, (name, s, _)) in curves.iter().zip(&train) {
        let row_name = format!("{} [{} seeds]", label(c), c.seeds.len());
        println!("{row_name:<44} {}", row(s));
        if let Some((_, h, _)) = held.iter().find(|(n, _, _)| n == name) {
            println!("{:<44} {}", "  held-out (query) loss", row(h));
        }
    }
    println!(
        "curves and plots (mean, std, min, max, every seed; learning rates in seeds.json): {}",
        out.display()
    );
    Ok(())
}

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
