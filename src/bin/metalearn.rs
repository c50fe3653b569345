//! The `metalearn` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use metalearn::bench::{
    default_mlp_cases, measure_copy_bandwidth, measure_meta, measure_optimizer_step,
    measure_unroll, run_w1, w1_instance_counts, MlpWorkload,
};
use metalearn::demo::{self, DemoConfig};
use metalearn::gpu::{parse_backends, Gpu, GpuOptions};
use metalearn::meta::Schedule;
use metalearn::optim::Optimizer;
use metalearn::run::{l2l_quadratics, L2lConfig};
use metalearn::{Error, Result};
use std::sync::Arc;

/// Meta-train learned optimizers and learned initialisations on any GPU (wgpu).
///
/// Without a command: meta-train the L2L coordinatewise LSTM optimizer on 10-d quadratics and
/// compare it with SGD, NAG, RMSprop and Adam (each at its best learning rate) on held-out quadratics.
#[derive(Parser, Debug)]
#[command(version, about, long_about)]
struct Cli {
    /// GPU backend(s) to consider: vulkan, gl, metal, dx12 (comma separated). Default: the
    /// WGPU_BACKEND environment variable, else all.
    #[arg(long, global = true)]
    backend: Option<String>,
    /// Pick the adapter whose name contains this text (case-insensitive). Default: the
    /// WGPU_ADAPTER_NAME environment variable, else the best adapter (hardware first).
    #[arg(long, global = true)]
    adapter: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Print the chosen adapter, its backend, limits and features.
    Info,
    /// Meta-train the L2L LSTM optimizer on quadratics; compare with tuned SGD, NAG, RMSprop and Adam (the
    /// default job).
    L2l {
        /// Outer steps (unrolls of T = 20 steps; episodes of 100 steps). Default: 1000, or 150
        /// on a software adapter.
        #[arg(long)]
        outer_steps: Option<usize>,
        /// Quadratic instances per outer step. Default: 128, or 8 on a software adapter.
        #[arg(long)]
        instances: Option<usize>,
        /// Meta-optimizer (Adam) learning rate.
        #[arg(long, default_value_t = 1e-2)]
        meta_lr: f32,
        /// Held-out instances of the comparison.
        #[arg(long)]
        eval_instances: Option<usize>,
        /// Seed of all random draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Meta-train as a TOML config says (default: the embedded L2L quadratic config); writes
    /// metrics.jsonl, periodic evaluations and checkpoints to the run directory.
    Train(TrainArgs),
    /// Evaluate a trained optimizer/initialisation against tuned baselines on held-out instances;
    /// writes loss curves (CSV, JSON) and a plot (SVG).
    Eval(EvalArgs),
    /// Write one outer step (inputs, losses, meta-loss, meta-gradients) to a safetensors file
    /// for an independent check (see docs/export.md).
    Export(ExportArgs),
    /// Train quadratics and MLPs with plain SGD on the GPU.
    Sgd {
        /// Directory holding Fashion-MNIST or MNIST IDX files (plain or .gz); an error if it
        /// holds none. Default: /usr/share/datasets/fashion-mnist, or synthetic images when that
        /// holds no dataset.
        #[arg(long)]
        data_dir: Option<String>,
        /// MLP instances (default: 64, or 4 on a software adapter).
        #[arg(long)]
        mlp_instances: Option<usize>,
        /// MLP training steps (default: 500, or 250 on a software adapter).
        #[arg(long)]
        mlp_steps: Option<usize>,
        /// Seed of all random draws.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Time MLP forward + backward passes and meta-training outer steps at several sizes and
    /// instance counts; report the memory each checkpoint schedule holds.
    Bench {
        /// Fewer, smaller cases.
        #[arg(long)]
        quick: bool,
        /// Run only one part: `mlp` (forward + backward), `meta` (meta-training steps), `opt`
        /// (fused optimizer steps vs copy bandwidth), `unroll` (a checkpointed T = 1000 unroll
        /// per schedule) or `w1` (L2L LSTM meta-training on 784-20-10 MLPs, the workload of
        /// the peer comparison in benches/peers/).
        #[arg(long)]
        only: Option<String>,
        /// W1 instance counts, comma separated (default: 1,16,256,1024 with `--only w1`, 1,16
        /// in the full run (none there on a software adapter), 1,4 with `--quick`).
        #[arg(long)]
        instances: Option<String>,
        /// Steps per timed run.
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Timed runs per case (the median is reported).
        #[arg(long, default_value_t = 5)]
        repeats: usize,
        /// Also write the results as JSON to this file.
        #[arg(long)]
        json: Option<PathBuf>,
    },
}

fn open_gpu(backend: &Option<String>, adapter: &Option<String>) -> Result<Gpu> {
    let backends = backend.as_deref().map(parse_backends).transpose()?;
    Gpu::new(&GpuOptions {
        backends,
        adapter_name: adapter.clone(),
        ..Default::default()
    })
}

fn bench(gpu: &Arc<Gpu>, b: BenchArgs) -> Result<()> {
    let BenchArgs {
        quick,
        only,
        instances,
        steps,
        repeats,
        json,
    } = b;
    let info = &gpu.props().info;
    let parts = ["mlp", "meta", "opt", "unroll", "w1"];
    let want = |part: &str| only.as_deref().is_none_or(|o| o == part);
    if let Some(o) = only.as_deref() {
        if !parts.contains(&o) {
            return Err(Error::invalid(format!(
                "unknown benchmark part '{o}'; use one of {}",
                parts.join(", ")
            )));
        }
    }
    let (mlp, meta) = (want("mlp"), want("meta"));
    let mut rows = Vec::new();
    if mlp {
        println!(
            "MLP forward + backward on {} ({:?}), median of {repeats} runs of {steps} steps",
            info.name, info.backend
        );
        println!(
            "{:<40} {:>12} {:>18} {:>10}",
            "case", "ms/step", "instance-steps/s", "GFLOP/s"
        );
        for case in default_mlp_cases(quick) {
            let m = match MlpWorkload::new(gpu, &case).and_then(|w| w.measure(gpu, steps, repeats))
            {
                Ok(m) => m,
                Err(e @ Error::LimitExceeded { .. }) => {
                    println!("{:<40} skipped: {e}", case.label());
                    continue;
                }
                Err(e) => return Err(e),
            };
            println!(
                "{:<40} {:>12.3} {:>18.0} {:>10.1}",
                m.label,
                m.step_seconds * 1e3,
                m.instance_steps_per_second,
                m.gflops
            );
            rows.push(format!(
            "    {{\"case\": \"{}\", \"steps\": {}, \"step_seconds\": {:e}, \"instance_steps_per_second\": {:.3}, \"gflops\": {:.3}}}",
            m.label, m.steps, m.step_seconds, m.instance_steps_per_second, m.gflops
        ));
        }
    }
    if meta {
        println!(
        "\nmeta-training outer steps (LSTM optimizer, truncated, T = 20; median of {repeats}; inner steps × instances per second)"
    );
        println!(
            "{:<44} {:>12} {:>18} {:>16}",
            "case", "ms/outer", "steps×inst/s", "held MiB"
        );
        let counts: &[usize] = if quick { &[1, 16] } else { &[1, 64, 1024] };
        let schedules = [Schedule::StoreAll, Schedule::EveryK(4), Schedule::Sqrt];
        let mut cases: Vec<(usize, Schedule)> =
            counts.iter().map(|&n| (n, Schedule::StoreAll)).collect();
        cases.extend(
            schedules[1..]
                .iter()
                .map(|&s| (*counts.last().unwrap_or(&1), s)),
        );
        for (n, schedule) in cases {
            let m = match measure_meta(gpu, n, 20, schedule, repeats) {
                Ok(m) => m,
                Err(e @ Error::LimitExceeded { .. }) => {
                    println!("N={n} {}: skipped: {e}", schedule.name());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let held = (m.memory.checkpoints + m.memory.working) as f64 / (1 << 20) as f64;
            println!(
                "{:<44} {:>12.3} {:>18.0} {:>16.2}",
                m.label,
                m.step_seconds * 1e3,
                m.inner_steps_per_second,
                held
            );
            rows.push(format!(
            "    {{\"case\": \"{}\", \"step_seconds\": {:e}, \"inner_steps_x_instances_per_second\": {:.3}, \"checkpoint_bytes\": {}, \"slots\": {}, \"working_bytes\": {}}}",
            m.label, m.step_seconds, m.inner_steps_per_second, m.memory.checkpoints, m.memory.slots, m.memory.working
        ));
        }
    }
    if want("opt") {
        let sizes: &[usize] = if quick {
            &[1 << 18]
        } else {
            &[1 << 20, 1 << 24, 1 << 26]
        };
        // The copy reference moves as many bytes as the largest case's θ, so it runs at full speed.
        let copy = measure_copy_bandwidth(gpu, sizes[sizes.len() - 1] * 4, repeats)?;
        for &params in sizes {
            println!("\nfused optimizer step, {params} coordinates in 16 tensors (median of {repeats} runs of 10 steps); copy-kernel bandwidth {copy:.1} GB/s");
            println!(
                "{:<44} {:>12} {:>14} {:>10} {:>12}",
                "case", "ms/step", "bytes/step", "GB/s", "of copy"
            );
            let mut adam_time = None;
            for opt in ["adam", "mlp"] {
                let o = Optimizer::parse(opt)?;
                let m = match measure_optimizer_step(gpu, &o, params, 16, 10, repeats) {
                    Ok(m) => m,
                    Err(e @ Error::LimitExceeded { .. }) => {
                        println!("{opt}: skipped: {e}");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                let ratio = adam_time
                    .map(|a: f64| format!(", {:.2}× Adam's time", m.step_seconds / a))
                    .unwrap_or_default();
                if opt == "adam" {
                    adam_time = Some(m.step_seconds);
                }
                println!(
                    "{:<44} {:>12.3} {:>14} {:>10.1} {:>11.0}%{ratio}",
                    m.label,
                    m.step_seconds * 1e3,
                    m.bytes_per_step,
                    m.gb_per_second,
                    100.0 * m.gb_per_second / copy
                );
                rows.push(format!(
                    "    {{\"case\": \"{}\", \"step_seconds\": {:e}, \"bytes_per_step\": {}, \"gb_per_second\": {:.3}, \"copy_gb_per_second\": {:.3}}}",
                    m.label, m.step_seconds, m.bytes_per_step, m.gb_per_second, copy
                ));
            }
        }
    }

    if want("unroll") {
        let (n, t) = if quick { (2, 50) } else { (64, 1000) };
        let k = (t as f64).sqrt().ceil() as usize;
        println!("\ncheckpointed unroll: MLP optimizer on {n} MLPs 784-20-10 ({} coordinates), T = {t}, one meta-gradient (median of {repeats})", n * 15910);
        println!(
            "{:<52} {:>12} {:>10} {:>14}",
            "schedule", "ms", "slots", "held MiB"
        );
        for schedule in [Schedule::StoreAll, Schedule::Sqrt, Schedule::Revolve(2 * k)] {
            let m = match measure_unroll(gpu, n, t, schedule, repeats) {
                Ok(m) => m,
                Err(e @ Error::LimitExceeded { .. }) => {
                    println!("{}: skipped: {e}", schedule.name());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let held = m.memory.total();
            println!(
                "{:<56} {:>12.1} {:>10} {:>14.1}",
                m.label,
                m.step_seconds * 1e3,
                m.memory.slots,
                held as f64 / (1 << 20) as f64
            );
            rows.push(format!(
                "    {{\"case\": \"{}\", \"seconds\": {:e}, \"slots\": {}, \"held_bytes\": {}}}",
                m.label, m.step_seconds, m.memory.slots, held
            ));
        }
    }
    if want("w1") {
        let software = gpu.props().is_software();
        let counts = w1_instance_counts(instances.as_deref(), only.is_some(), quick, software)?;
        if !counts.is_empty() {
            rows.extend(run_w1(gpu, &counts, repeats)?);
        }
    }
    if let Some(path) = json {
        let doc = format!(
            "{{\n  \"adapter\": \"{}\",\n  \"backend\": \"{:?}\",\n  \"workload\": \"metalearn bench\",\n  \"results\": [\n{}\n  ]\n}}\n",
            info.name.replace('"', "'"),
            info.backend,
            rows.join(",\n")
        );
        std::fs::write(&path, doc).map_err(|source| Error::Io { path, source })?;
    }
    Ok(())
}

/// Options of `metalearn bench`, as parsed.
struct BenchArgs {
    quick: bool,
    only: Option<String>,
    instances: Option<String>,
    steps: usize,
    repeats: usize,
    json: Option<PathBuf>,
}

fn l2l(gpu: Arc<Gpu>, sizes: &L2lConfig) -> Result<()> {
    let cfg = sizes.config()?;
    let info = &gpu.props().info;
    println!(
        "metalearn on {} ({:?})\nmeta-training the L2L LSTM optimizer on {}-d quadratics: {} instances, unroll {}, episodes of {} steps, {} outer steps",
        info.name,
        info.backend,
        cfg.task.dim,
        cfg.task.instances,
        cfg.meta.unroll,
        cfg.meta.episode,
        cfg.meta.outer_steps
    );
    let r = l2l_quadratics(&gpu, sizes)?;
    let k = r.meta_losses.len();
    let every = (k / 10).max(1);
    for i in (0..k).step_by(every) {
        let w = &r.meta_losses[i..(i + every).min(k)];
        println!(
            "  outer steps {i:>5}..{:<5} mean meta-loss {:.4}",
            i + w.len(),
            w.iter().sum::<f32>() / w.len() as f32
        );
    }
    println!(
        "meta-training: {:.1} s, {:.0} inner steps × instances per second, {} skipped updates",
        r.train_seconds, r.throughput, r.skipped
    );
    println!(
        "\nheld-out quadratics ({} instances), mean loss after t inner steps:",
        cfg.eval.instances
    );
    let marks: Vec<usize> = [0usize, 10, 20, 50, 100, 200]
        .into_iter()
        .filter(|&m| m <= cfg.eval.steps)
        .collect();
    print!("  {:<26}", "optimizer");
    for m in &marks {
        print!(" {:>10}", format!("t={m}"));
    }
    println!();
    for c in &r.curves {
        print!("  {:<26}", c.name);
        for &m in &marks {
            print!(" {:>10.4}", c.train[m]);
        }
        println!();
    }
    Ok(())
}

fn export(gpu: Arc<Gpu>, a: ExportArgs) -> Result<()> {
    use metalearn::meta::{export_outer_step, MetaConfig, MetaTrainer};
    use metalearn::optim::{Mode, Optimizer};
    use metalearn::tasks::{MlpTask, QuadraticTask, Task};
    use rand::{Rng, SeedableRng};
    let mut rng = metalearn::tasks::TaskRng::seed_from_u64(a.seed);
    let task: Box<dyn Task> = match a.task.as_str() {
        "quadratic" => Box::new(QuadraticTask::new(&gpu, 4, a.instances, &mut rng)?),
        "mlp" => {
            let (train, test) = metalearn::data::synthetic_images(a.seed, 200, 100);
            let (train, test) = (train.downsample(4)?, test.downsample(4)?);
            let spec = metalearn::tasks::mlp::MlpSpec::new(
                &[16, 8, 10],
                metalearn::kernels::matmul::Activation::Sigmoid,
            )?;
            Box::new(MlpTask::new(
                &gpu,
                &spec,
                a.instances,
                8,
                train,
                test,
                rng.random(),
            )?)
        }
        other => {
            return Err(Error::invalid(format!(
                "unknown task '{other}'; use quadratic or mlp"
            )))
        }
    };
    let opt = Optimizer::parse(&a.optimizer)?;
    let cfg = MetaConfig {
        unroll: a.unroll,
        mode: Mode::parse(&a.mode)?,
        learn_init: a.learn_init || !opt.is_learned(),
        learn_optimizer: opt.is_learned(),
        seed: a.seed,
        ..Default::default()
    };
    let mut tr = MetaTrainer::new(gpu, task, opt, cfg)?;
    let s = export_outer_step(&mut tr, &a.out)?;
    println!(
        "wrote {} ({} tensors, {} bytes): meta-loss {:.6}",
        a.out.display(),
        s.tensors,
        s.bytes,
        s.meta_loss
    );
    Ok(())
}

/// Options of `metalearn train`.
#[derive(clap::Args, Debug)]
struct TrainArgs {
    /// TOML config file (see docs/config.md and configs/). Default: the embedded L2L quadratic config.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override any config key: --set section.key=value (repeatable), e.g. --set meta.unroll=40.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Run directory (output.dir).
    #[arg(long)]
    out: Option<String>,
    /// Outer steps in total (meta.outer_steps).
    #[arg(long)]
    outer_steps: Option<usize>,
    /// Task instances per outer step (task.instances).
    #[arg(long)]
    instances: Option<usize>,
    /// Seed (seed).
    #[arg(long)]
    seed: Option<u64>,
    /// Continue from the newest checkpoint of the run directory (bit-identical to an
    /// uninterrupted run).
    #[arg(long)]
    resume: bool,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
}

/// Options of `metalearn eval`.
#[derive(clap::Args, Debug)]
struct EvalArgs {
    /// Checkpoint file, or a run directory (its newest checkpoint).
    checkpoint: PathBuf,
    /// More checkpoints or run directories to compare (e.g. another initialisation).
    #[arg(long)]
    compare: Vec<PathBuf>,
    /// Evaluate on the task of this config instead of the checkpoint's own (e.g. a wider MLP).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Override keys of the evaluation config: --set section.key=value (repeatable), e.g.
    /// --set task.hidden=[40] or --set eval.steps=200.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    set: Vec<String>,
    /// Inner steps (eval.steps).
    #[arg(long)]
    steps: Option<usize>,
    /// Held-out instances (eval.instances).
    #[arg(long)]
    instances: Option<usize>,
    /// Output directory for curves.csv, curves.json and curves.svg. Default: `eval` inside the
    /// checkpoint's run directory.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Log-scale y axis in the plot.
    #[arg(long)]
    log_y: bool,
}

fn train_cmd(open: impl Fn() -> Result<Arc<Gpu>>, a: TrainArgs) -> Result<()> {
    use metalearn::config::Config;
    let base = match &a.config {
        Some(p) => Config::from_file(p)?,
        None => Config::embedded_default()?,
    };
    let mut set = a.set.clone();
    if let Some(o) = &a.out {
        set.push(format!("output.dir={}", toml_string(o)));
    }
    if let Some(v) = a.outer_steps {
        set.push(format!("meta.outer_steps={v}"));
    }
    if let Some(v) = a.instances {
        set.push(format!("task.instances={v}"));
    }
    if let Some(v) = a.seed {
        set.push(format!("seed={v}"));
    }
    let cfg = base.with_overrides(&set)?;
    let gpu = open()?;
    let info = &gpu.props().info;
    println!(
        "meta-training {} with the '{}' optimizer on {} ({:?}); run directory {}",
        format!("{:?}", cfg.task.kind).to_lowercase(),
        cfg.optimizer.kind,
        info.name,
        info.backend,
        cfg.output.dir
    );
    let opts = metalearn::run::TrainOptions {
        resume: a.resume,
        progress: !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop_after: None,
        stop: Some(metalearn::run::stop_on_signals()?),
    };
    let s = metalearn::run::train(&gpu, &cfg, &opts)?;
    let last = s.meta_losses.last().copied().unwrap_or(f32::NAN);
    println!(
        "{} outer steps ({} in {:.1} s, {} skipped); last meta-loss {last:.5}",
        s.steps,
        s.meta_losses.len(),
        s.seconds,
        s.skipped
    );
    if let Some(c) = &s.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    println!(
        "metrics: {}/metrics.jsonl; evaluate with: metalearn eval {}",
        cfg.output.dir, cfg.output.dir
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

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn eval_cmd(open: impl Fn() -> Result<Arc<Gpu>>, a: EvalArgs) -> Result<()> {
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
    let out = match &a.out {
        Some(o) => o.clone(),
        None if a.checkpoint.is_dir() => a.checkpoint.join("eval"),
        None => a
            .checkpoint
            .parent()
            .map(|p| p.join("eval"))
            .unwrap_or_else(|| PathBuf::from("eval")),
    };
    std::fs::create_dir_all(&out).map_err(|e| Error::Io {
        path: out.clone(),
        source: e,
    })?;
    let gpu = open()?;
    let curves = evaluate_checkpoints(&gpu, &cfg, &cands)?;
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
#[derive(clap::Args, Debug)]
struct ExportArgs {
    /// Output file.
    #[arg(long)]
    out: PathBuf,
    /// Task family: quadratic or mlp (a small MLP on synthetic images).
    #[arg(long, default_value = "quadratic")]
    task: String,
    /// Inner optimizer: lstm, linear, sgd or adam.
    #[arg(long, default_value = "lstm")]
    optimizer: String,
    /// Meta-gradient mode: truncated, first-order or second-order.
    #[arg(long, default_value = "truncated")]
    mode: String,
    /// Unroll length T.
    #[arg(long, default_value_t = 7)]
    unroll: usize,
    /// Instances N.
    #[arg(long, default_value_t = 3)]
    instances: usize,
    /// Also learn (and differentiate) the initialisation.
    #[arg(long)]
    learn_init: bool,
    /// Seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn run(cli: Cli) -> Result<()> {
    let Cli {
        backend,
        adapter,
        command,
    } = cli;
    let open = || open_gpu(&backend, &adapter).map(Arc::new);
    // Configs and checkpoints are checked before a GPU is opened.
    match command {
        Some(Command::Train(a)) => return train_cmd(open, a),
        Some(Command::Eval(a)) => return eval_cmd(open, a),
        _ => {}
    }
    let gpu = open()?;
    match command {
        Some(Command::Info) => {
            print!("{}", gpu.props().describe());
            Ok(())
        }
        Some(Command::Bench {
            quick,
            only,
            instances,
            steps,
            repeats,
            json,
        }) => bench(
            &gpu,
            BenchArgs {
                quick,
                only,
                instances,
                steps,
                repeats,
                json,
            },
        ),
        Some(Command::Sgd {
            data_dir,
            mlp_instances,
            mlp_steps,
            seed,
        }) => {
            let d = DemoConfig::for_gpu(&gpu);
            let cfg = DemoConfig {
                data_dir,
                mlp_instances: mlp_instances.unwrap_or(d.mlp_instances),
                mlp_steps: mlp_steps.unwrap_or(d.mlp_steps),
                seed,
                ..d
            };
            demo::run(&gpu, &cfg, &mut std::io::stdout().lock())
        }
        Some(Command::L2l {
            outer_steps,
            instances,
            meta_lr,
            eval_instances,
            seed,
        }) => {
            let d = L2lConfig::for_gpu(&gpu)?;
            let cfg = L2lConfig {
                outer_steps: outer_steps.unwrap_or(d.outer_steps),
                instances: instances.unwrap_or(d.instances),
                eval_instances: eval_instances.unwrap_or(d.eval_instances),
                meta_lr,
                seed,
                ..d
            };
            l2l(gpu, &cfg)
        }
        Some(Command::Export(a)) => export(gpu, a),
        Some(Command::Train(_)) | Some(Command::Eval(_)) => Ok(()),
        None => l2l(gpu.clone(), &L2lConfig::for_gpu(&gpu)?),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}
