//! The `metalearn` command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use metalearn::bench::{default_mlp_cases, MlpWorkload};
use metalearn::demo::{self, DemoConfig};
use metalearn::gpu::{parse_backends, Gpu, GpuOptions};
use metalearn::{Error, Result};

/// Meta-train learned optimizers and learned initialisations on any GPU (wgpu).
///
/// Without a command: train batches of quadratic and MLP instances with SGD on the GPU and print
/// their loss curves.
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
    /// Train quadratics and MLPs with SGD on the GPU (the default job).
    Demo {
        /// Directory holding Fashion-MNIST or MNIST IDX files (plain or .gz).
        #[arg(long, default_value = metalearn::data::DEFAULT_FASHION_MNIST_DIR)]
        data_dir: String,
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
    /// Time MLP forward + backward passes at several sizes and instance counts.
    Bench {
        /// Fewer, smaller cases.
        #[arg(long)]
        quick: bool,
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

fn open_gpu(cli: &Cli) -> Result<Gpu> {
    let backends = cli.backend.as_deref().map(parse_backends).transpose()?;
    Gpu::new(&GpuOptions {
        backends,
        adapter_name: cli.adapter.clone(),
        ..Default::default()
    })
}

fn bench(
    gpu: &Gpu,
    quick: bool,
    steps: usize,
    repeats: usize,
    json: Option<PathBuf>,
) -> Result<()> {
    let info = &gpu.props().info;
    println!(
        "MLP forward + backward on {} ({:?}), median of {repeats} runs of {steps} steps",
        info.name, info.backend
    );
    println!(
        "{:<40} {:>12} {:>18} {:>10}",
        "case", "ms/step", "instance-steps/s", "GFLOP/s"
    );
    let mut rows = Vec::new();
    for case in default_mlp_cases(quick) {
        let m = match MlpWorkload::new(gpu, &case).and_then(|w| w.measure(gpu, steps, repeats)) {
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
    if let Some(path) = json {
        let doc = format!(
            "{{\n  \"adapter\": \"{}\",\n  \"backend\": \"{:?}\",\n  \"workload\": \"mlp_fwd_bwd\",\n  \"results\": [\n{}\n  ]\n}}\n",
            info.name.replace('"', "'"),
            info.backend,
            rows.join(",\n")
        );
        std::fs::write(&path, doc).map_err(|source| Error::Io { path, source })?;
    }
    Ok(())
}

fn run(cli: Cli) -> Result<()> {
    let gpu = open_gpu(&cli)?;
    match cli.command {
        Some(Command::Info) => {
            print!("{}", gpu.props().describe());
            Ok(())
        }
        Some(Command::Bench {
            quick,
            steps,
            repeats,
            json,
        }) => bench(&gpu, quick, steps, repeats, json),
        Some(Command::Demo {
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
        None => demo::run(
            &gpu,
            &DemoConfig::for_gpu(&gpu),
            &mut std::io::stdout().lock(),
        ),
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
