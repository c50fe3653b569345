//! The `metalearn` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use metalearn::bench::{parse_instance_list, BenchOptions, Part};
use metalearn::demo::{self, DemoConfig};
use metalearn::gpu::{parse_backends, Gpu, GpuOptions};
use metalearn::run::{l2l_quadratics, L2lConfig};
use metalearn::Result;
use std::sync::Arc;

mod eval;
mod lm;
use eval::eval_cmd;
use lm::lm_train_cmd;

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
    Info {
        /// List every compute-capable adapter, best first, with the indices `train --adapters`
        /// takes.
        #[arg(long)]
        adapters: bool,
    },
    /// Meta-train the L2L LSTM optimizer on quadratics; compare with tuned SGD, NAG, RMSprop and Adam (the
    /// default job).
    #[command(allow_negative_numbers = true)]
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
    Bench(BenchArgs),
}

/// Options of `metalearn bench`.
#[derive(clap::Args, Debug)]
struct BenchArgs {
    /// Fewer, smaller cases.
    #[arg(long)]
    quick: bool,
    /// Run only one part: `mlp` (forward + backward), `meta` (meta-training steps), `opt`
    /// (fused optimizer steps vs copy bandwidth), `unroll` (a checkpointed T = 1000 unroll
    /// per schedule), `w1` (L2L LSTM meta-training on 784-20-10 MLPs, the workload of the
    /// peer comparison in benches/peers/), `so` (every optimizer in truncated and second-order
    /// mode on W1's model) or `lm` (the LSTM language model).
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
}

fn open_gpu(backend: &Option<String>, adapter: &Option<String>) -> Result<Gpu> {
    let backends = backend.as_deref().map(parse_backends).transpose()?;
    Gpu::new(&GpuOptions {
        backends,
        adapter_name: adapter.clone(),
        ..Default::default()
    })
}

fn bench(open: impl Fn() -> Result<Arc<Gpu>>, a: BenchArgs) -> Result<()> {
    let opts = BenchOptions {
        quick: a.quick,
        only: a.only.as_deref().map(Part::parse).transpose()?,
        w1_instances: a
            .instances
            .as_deref()
            .map(parse_instance_list)
            .transpose()?,
        steps: a.steps,
        repeats: a.repeats,
    };
    opts.validate()?;
    let gpu = open()?;
    let report = metalearn::bench::run(&gpu, &opts, &mut std::io::stdout().lock())?;
    if let Some(path) = a.json {
        report.write_json(&path)?;
    }
    Ok(())
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
    let r = l2l_quadratics(
        &gpu,
        sizes,
        std::io::IsTerminal::is_terminal(&std::io::stderr()),
    )?;
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

fn export(open: impl Fn() -> Result<Arc<Gpu>>, a: ExportArgs) -> Result<()> {
    use metalearn::meta::{export_first_outer_step, ExportOptions, ExportTask};
    use metalearn::optim::Mode;
    let opts = ExportOptions {
        task: ExportTask::parse(&a.task)?,
        optimizer: a.optimizer,
        mode: Mode::parse(&a.mode)?,
        unroll: a.unroll,
        instances: a.instances,
        learn_init: a.learn_init,
        seed: a.seed,
    };
    opts.validate()?;
    let s = export_first_outer_step(open()?, &opts, &a.out)?;
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
    /// Check the run and print the GPU memory it will hold; write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Meta-train on several adapters at once, the instances of every outer step split over
    /// them: `all`, indices into `metalearn info --adapters`' list (`0,2`; `0,0` opens two
    /// devices on adapter 0) or parts of adapter names (`h200,a100`). Default: one adapter
    /// (--adapter).
    #[arg(long, value_name = "all|0,2|NAME,…")]
    adapters: Option<String>,
}

/// Options of `metalearn eval`.
#[derive(clap::Args, Debug)]
struct EvalArgs {
    /// Checkpoint file, or a run directory (its newest checkpoint).
    checkpoint: PathBuf,
    /// More checkpoints or run directories to compare (e.g. another initialisation):
    /// `--compare A B …` or `--compare A --compare B`.
    #[arg(long, num_args = 1.., value_name = "RUN")]
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

fn train_cmd(
    open: impl Fn() -> Result<Arc<Gpu>>,
    open_many: impl Fn(&str) -> Result<Vec<Arc<Gpu>>>,
    a: TrainArgs,
) -> Result<()> {
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
    let mpi = cfg.dist.backend == metalearn::config::DistBackend::Mpi;
    let (gpu, devices) = match &a.adapters {
        None => (open()?, Vec::new()),
        // Under MPI each rank takes one of the adapters, by its rank on the host.
        Some(sel) if mpi => {
            let mut all = open_many(sel)?;
            let k = metalearn::dist::local_rank_from_env().unwrap_or(0) % all.len().max(1);
            if all.is_empty() {
                return Err(metalearn::Error::invalid(format!(
                    "--adapters '{sel}' names no adapter"
                )));
            }
            (all.swap_remove(k), Vec::new())
        }
        Some(sel) => {
            let mut all = open_many(sel)?.into_iter();
            let first = all.next().ok_or_else(|| {
                metalearn::Error::invalid(format!("--adapters '{sel}' names no adapter"))
            })?;
            (first, all.collect())
        }
    };
    if a.dry_run && !devices.is_empty() {
        return Err(metalearn::Error::invalid(
            "train --dry-run estimates one device's memory: run it with --adapter (each device of \
             --adapters holds its share of the instances)",
        ));
    }
    if a.dry_run {
        let d = metalearn::run::dry_run(&gpu, &cfg)?;
        print!(
            "{}",
            metalearn::report::dry_run_text(&d, &gpu.props().info.name)
        );
        return Ok(());
    }
    if cfg.task.kind == metalearn::config::LM_KIND {
        if !devices.is_empty() {
            return Err(metalearn::Error::invalid(
                "the language-model trainer (task.kind = \"lm\") runs on one device; use --adapter",
            ));
        }
        return lm_train_cmd(&gpu, &cfg, &a);
    }
    let names: Vec<String> = std::iter::once(&gpu)
        .chain(&devices)
        .map(|g| {
            let i = &g.props().info;
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    println!(
        "meta-training {} with the '{}' optimizer on {}; run directory {}",
        format!("{:?}", cfg.task.kind).to_lowercase(),
        cfg.optimizer.kind,
        names.join(" + "),
        cfg.output.dir
    );
    let opts = metalearn::run::TrainOptions {
        resume: a.resume,
        progress: !a.quiet && std::io::IsTerminal::is_terminal(&std::io::stderr()),
        stop_after: None,
        stop: Some(metalearn::run::stop_on_signals()?),
        devices,
    };
    let s = metalearn::run::train(&gpu, &cfg, &opts)?;
    match s.meta_losses.last() {
        Some(last) => println!(
            "{} outer steps ({} in {:.1} s, {} skipped); last meta-loss {last:.5}",
            s.steps,
            s.meta_losses.len(),
            s.seconds,
            s.skipped
        ),
        None => println!(
            "{} outer steps: the run had already reached meta.outer_steps, no step ran (raise it with --outer-steps)",
            s.steps
        ),
    }
    if let Some(c) = &s.checkpoint {
        println!("checkpoint: {}", c.display());
    }
    if !mpi || metalearn::dist::local_rank_from_env().is_none() || s.checkpoint.is_some() {
        println!(
            "metrics: {}/metrics.jsonl; evaluate with: metalearn eval {}",
            cfg.output.dir, cfg.output.dir
        );
    }
    Ok(())
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
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
    let options = || -> Result<GpuOptions> {
        Ok(GpuOptions {
            backends: backend.as_deref().map(parse_backends).transpose()?,
            ..Default::default()
        })
    };
    let open_many = |sel: &str| -> Result<Vec<Arc<Gpu>>> {
        Ok(Gpu::open_many(&options()?, sel)?
            .into_iter()
            .map(Arc::new)
            .collect())
    };
    // Options, configs and checkpoints are checked before a GPU is opened.
    match command {
        Some(Command::Info { adapters: true }) => {
            for (k, a) in Gpu::adapters(&options()?)?.iter().enumerate() {
                println!("{k}: {a}");
            }
            return Ok(());
        }
        Some(Command::Train(a)) => return train_cmd(open, open_many, a),
        Some(Command::Eval(a)) => return eval_cmd(open, a),
        Some(Command::Bench(a)) => return bench(open, a),
        Some(Command::Export(a)) => return export(open, a),
        _ => {}
    }
    let gpu = open()?;
    match command {
        Some(Command::Info { .. }) => {
            print!("{}", gpu.props().describe());
            Ok(())
        }
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
        Some(Command::Train(_) | Command::Eval(_) | Command::Bench(_) | Command::Export(_)) => {
            Ok(())
        }
        None => l2l(gpu.clone(), &L2lConfig::for_gpu(&gpu)?),
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(
                e.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                let _ = e.print();
                return ExitCode::SUCCESS;
            }
            // One `error:` line naming the flag and the value, then where the usage is.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("invalid command line");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            let _ = writeln!(
                std::io::stderr(),
                "error: {first}\nsee `metalearn --help` or `metalearn <command> --help`"
            );
            return ExitCode::FAILURE;
        }
    };
    private_runtime_dir();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Mesa's EGL probe (run by wgpu when it enumerates GL adapters) prints "XDG_RUNTIME_DIR is
/// invalid or not set" on headless machines. Without a usable runtime directory, point it at a
/// private one (`metalearn-runtime-UID`, mode 0700, under the temporary directory), before any
/// thread starts.
fn private_runtime_dir() {
    let usable =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_dir());
    if usable {
        return;
    }
    #[cfg(unix)]
    let owner = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").map_or(0, |m| m.uid())
    };
    #[cfg(not(unix))]
    let owner = 0;
    let dir = std::env::temp_dir().join(format!("metalearn-runtime-{owner}"));
    if std::fs::create_dir_all(&dir).is_err() {
        return;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
    }
    std::env::set_var("XDG_RUNTIME_DIR", &dir);
}
