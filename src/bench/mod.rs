//! Benchmark workloads shared by `metalearn bench` and the criterion benches: timed after a
//! warm-up, wall clock around submit + device sync, median of several runs.
//!
//! One file per workload: [`mlp`](MlpWorkload) (forward + backward), `meta` (meta-training
//! outer steps), `opt` (a fused optimizer step against copy bandwidth), `unroll` (a long
//! checkpointed unroll per schedule), `w1` (the peer-comparison workload and its FLOP model),
//! `so` (second-order against truncated mode, every optimizer) and `lm` (the LSTM language model: training, evaluation, dynamic evaluation). [`run`] runs the parts
//! `metalearn bench` asks for, prints their tables and returns one [`Row`] per case; the rows
//! are the schema of `metalearn bench --json` ([`Report`]).

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use crate::gpu::Gpu;
use crate::{Error, Result};

mod lm;
mod meta;
mod mlp;
mod opt;
mod so;
mod unroll;
mod w1;

pub use lm::{lm_cases, lm_forward_flops, measure_lm, LmCase, LmMeasurement};
pub use meta::measure_meta;
pub use mlp::{default_mlp_cases, MlpCase, MlpWorkload};
pub use opt::{measure_copy_bandwidth, measure_optimizer_step, StepMeasurement};
pub use unroll::measure_unroll;
pub use w1::{
    measure_w1, parse_instance_list, w1_flops, w1_instance_counts, LstmFlops, W1Flops,
    W1Measurement, W1_BATCH, W1_BUDGET_FROM, W1_MEMORY, W1_PEAK_FLOPS, W1_UNROLL, W1_WIDTHS,
};

/// Result of a timed case.
#[derive(Clone, Debug)]
pub struct Measurement {
    /// Case label.
    pub label: String,
    /// Steps (forward + backward of all instances) per timed run.
    pub steps: usize,
    /// Median seconds of one step.
    pub step_seconds: f64,
    /// Instance-steps per second (forward + backward of one instance on one batch).
    pub instance_steps_per_second: f64,
    /// Achieved GFLOP/s (multiply-adds counted as 2).
    pub gflops: f64,
}

/// Run `f` once to warm up, then `repeats` times; the median of their seconds.
fn median_seconds(repeats: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f().map(|_| t.elapsed().as_secs_f64())
        })
        .collect::<Result<_>>()?;
    Ok(median(times))
}

/// The median of `times` (the upper one of an even count); 0 when empty.
fn median(mut times: Vec<f64>) -> f64 {
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).copied().unwrap_or(0.0)
}

/// Result of timing meta-training outer steps.
#[derive(Clone, Debug)]
pub struct MetaMeasurement {
    /// Case label.
    pub label: String,
    /// Median seconds of one outer step (unroll, meta-backward, meta-update, status readback).
    pub step_seconds: f64,
    /// Inner steps × instances per second.
    pub inner_steps_per_second: f64,
    /// Bytes the trainer holds.
    pub memory: crate::meta::MemoryReport,
}

impl MetaMeasurement {
    /// `f` on `trainer` timed at the median of `repeats` runs, each `inner` inner steps ×
    /// instances.
    pub(crate) fn time(
        label: String,
        trainer: &mut crate::meta::MetaTrainer,
        inner: usize,
        repeats: usize,
        mut f: impl FnMut(&mut crate::meta::MetaTrainer) -> Result<()>,
    ) -> Result<Self> {
        let step = median_seconds(repeats, || f(trainer))?;
        Ok(Self::of(label, step, inner, trainer))
    }

    /// A trainer of `opt` on `task` with unrolls of `unroll` steps under `schedule` (the other
    /// settings at their defaults), as the meta benchmarks time it.
    pub(crate) fn trainer(
        gpu: &Arc<Gpu>,
        task: Box<dyn crate::tasks::Task>,
        opt: crate::optim::Optimizer,
        unroll: usize,
        schedule: crate::meta::Schedule,
    ) -> Result<crate::meta::MetaTrainer> {
        let cfg = crate::meta::MetaConfig {
            unroll,
            schedule,
            ..Default::default()
        };
        crate::meta::MetaTrainer::new(gpu.clone(), task, opt, cfg)
    }

    /// The measurement of `trainer`'s outer steps of `inner` inner steps × instances each, timed
    /// at a median of `step_seconds`.
    pub fn of(
        label: String,
        step_seconds: f64,
        inner: usize,
        trainer: &crate::meta::MetaTrainer,
    ) -> Self {
        Self {
            label,
            step_seconds,
            inner_steps_per_second: inner as f64 / step_seconds,
            memory: trainer.memory(),
        }
    }
}

/// A part of the benchmark, as `metalearn bench --only` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// MLP forward + backward passes ([`MlpWorkload`]).
    Mlp,
    /// Meta-training outer steps ([`measure_meta`]).
    Meta,
    /// Fused optimizer steps against copy bandwidth ([`measure_optimizer_step`]).
    Opt,
    /// A checkpointed unroll per schedule ([`measure_unroll`]).
    Unroll,
    /// L2L LSTM meta-training on 784-20-10 MLPs ([`measure_w1`]).
    W1,
    /// Every optimizer in truncated and second-order mode on W1's model.
    So,
    /// The LSTM language model: training, evaluation, dynamic evaluation ([`measure_lm`]).
    Lm,
}

impl Part {
    /// Every part, in the order [`run`] runs them.
    pub const ALL: [Part; 7] = [
        Part::Mlp,
        Part::Meta,
        Part::Opt,
        Part::Unroll,
        Part::W1,
        Part::So,
        Part::Lm,
    ];

    /// The name `--only` takes.
    pub fn name(self) -> &'static str {
        match self {
            Part::Mlp => "mlp",
            Part::Meta => "meta",
            Part::Opt => "opt",
            Part::Unroll => "unroll",
            Part::W1 => "w1",
            Part::So => "so",
            Part::Lm => "lm",
        }
    }

    /// The part called `name`.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|p| p.name()).collect();
                Error::invalid(format!(
                    "unknown benchmark part '{name}'; use one of {}",
                    names.join(", ")
                ))
            })
    }
}

/// What [`run`] measures.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Fewer, smaller cases.
    pub quick: bool,
    /// Run only this part; every part when `None`.
    pub only: Option<Part>,
    /// W1 instance counts; `None` for the defaults of [`w1_instance_counts`].
    pub w1_instances: Option<Vec<usize>>,
    /// Steps per timed run of the MLP cases (at least 1).
    pub steps: usize,
    /// Timed runs per case (the median is reported).
    pub repeats: usize,
}

impl BenchOptions {
    /// Check the options before anything runs: at least one step per timed run, one timed run
    /// per case, one instance per W1 case.
    pub fn validate(&self) -> Result<()> {
        if self.steps == 0 || self.repeats == 0 {
            return Err(Error::invalid(format!(
                "bench needs at least one step per timed run and one timed run per case (got \
                 --steps {} --repeats {}); use e.g. --steps 20 --repeats 5",
                self.steps, self.repeats
            )));
        }
        if self.w1_instances.as_ref().is_some_and(|v| v.contains(&0)) {
            return Err(Error::invalid(
                "bench --instances lists 0; every W1 case needs at least one instance",
            ));
        }
        Ok(())
    }
}

impl Default for BenchOptions {
    /// Every part at full size, 20 steps per MLP run, 5 runs per case.
    fn default() -> Self {
        Self {
            quick: false,
            only: None,
            w1_instances: None,
            steps: 20,
            repeats: 5,
        }
    }
}

/// Run the parts `opts` asks for, printing a table per part to `out` as cases finish; one
/// [`Row`] per case. A case beyond the device's limits is reported as skipped (in W1, as a row
/// with `"status": "limit"`); any other error ends the run.
pub fn run(gpu: &Arc<Gpu>, opts: &BenchOptions, out: &mut dyn Write) -> Result<Report> {
    opts.validate()?;
    let info = &gpu.props().info;
    let mut results = Vec::new();
    for part in Part::ALL {
        if opts.only.is_some_and(|o| o != part) {
            continue;
        }
        results.extend(match part {
            Part::Mlp => mlp::run(gpu, opts, out)?,
            Part::Meta => meta::run(gpu, opts, out)?,
            Part::Opt => opt::run(gpu, opts, out)?,
            Part::Unroll => unroll::run(gpu, opts, out)?,
            Part::W1 => w1::run(gpu, opts, out)?,
            Part::So => so::run(gpu, opts, out)?,
            Part::Lm => lm::run(gpu, opts, out)?,
        });
    }
    Ok(Report {
        adapter: info.name.clone(),
        backend: format!("{:?}", info.backend),
        workload: "metalearn bench".into(),
        results,
    })
}

/// An error writing the tables.
fn io(e: std::io::Error) -> Error {
    Error::io("<bench output>", e)
}

/// `Ok(Err(e))` for a case beyond the device's limits (reported as skipped), `Err(e)` for
/// every other error.
fn skip_limit<T>(r: Result<T>) -> Result<std::result::Result<T, Error>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(e @ Error::LimitExceeded { .. }) => Ok(Err(e)),
        Err(e) => Err(e),
    }
}

/// The document `metalearn bench --json` writes.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Adapter name.
    pub adapter: String,
    /// Backend, e.g. `Vulkan`.
    pub backend: String,
    /// Always `metalearn bench` (the peer scripts write their own name).
    pub workload: String,
    /// One row per case, in the order run.
    pub results: Vec<Row>,
}

impl Report {
    /// The report as indented JSON.
    pub fn to_json(&self) -> Result<String> {
        serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid(format!("cannot encode the benchmark report: {e}")))
    }

    /// Write the report as JSON to `path` (through a temporary file and a rename).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let mut text = self.to_json()?;
        text.push('\n');
        crate::meta::write_atomically(path, text.as_bytes())
    }
}

/// One case of the report; the fields depend on the workload (serialised without a tag).
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Row {
    /// An MLP forward + backward case.
    Mlp(MlpRow),
    /// A meta-training case.
    Meta(MetaRow),
    /// A fused optimizer step.
    Opt(OptRow),
    /// A checkpointed unroll.
    Unroll(UnrollRow),
    /// A W1 case.
    W1(W1Row),
    /// A W1 case beyond the device's limits.
    W1Limit(W1LimitRow),
    /// A language-model case.
    Lm(LmRow),
}

/// A row of [`Part::Lm`].
#[derive(Clone, Debug, Serialize)]
pub struct LmRow {
    /// Case label (sizes).
    pub case: String,
    /// Parameters of the model.
    pub parameters: usize,
    /// Tokens per second of static training.
    pub train_tokens_per_second: f64,
    /// GFLOP/s of static training by the FLOP model of [`lm_forward_flops`] (× 3).
    pub train_gflops: f64,
    /// Tokens per second of static evaluation (forward only).
    pub eval_tokens_per_second: f64,
    /// GFLOP/s of static evaluation.
    pub eval_gflops: f64,
    /// Tokens per second of dynamic evaluation with SGD.
    pub dynamic_tokens_per_second: f64,
    /// GPU time per kernel of one training step (metalearn only; empty without timestamps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub train_kernels: Vec<KernelRow>,
}

/// A row of [`Part::Mlp`].
#[derive(Clone, Debug, Serialize)]
pub struct MlpRow {
    /// Case label.
    pub case: String,
    /// Steps per timed run.
    pub steps: usize,
    /// Median seconds of one step.
    pub step_seconds: f64,
    /// Instance-steps per second.
    pub instance_steps_per_second: f64,
    /// Achieved GFLOP/s (multiply-adds counted as 2).
    pub gflops: f64,
}

/// A row of [`Part::Meta`].
#[derive(Clone, Debug, Serialize)]
pub struct MetaRow {
    /// Case label.
    pub case: String,
    /// Median seconds of one outer step.
    pub step_seconds: f64,
    /// Inner steps × instances per second.
    pub inner_steps_x_instances_per_second: f64,
    /// Bytes of the checkpoint slots.
    pub checkpoint_bytes: u64,
    /// Number of checkpoint slots.
    pub slots: usize,
    /// Bytes of the adjoints, gradients, partial sums and workspace.
    pub working_bytes: u64,
}

/// A row of [`Part::Opt`].
#[derive(Clone, Debug, Serialize)]
pub struct OptRow {
    /// Case label.
    pub case: String,
    /// Median seconds of one step.
    pub step_seconds: f64,
    /// Bytes every step must read and write.
    pub bytes_per_step: u64,
    /// Achieved GB/s.
    pub gb_per_second: f64,
    /// GB/s of the copy kernel on as many bytes as the largest case's θ.
    pub copy_gb_per_second: f64,
}

/// A row of [`Part::Unroll`].
#[derive(Clone, Debug, Serialize)]
pub struct UnrollRow {
    /// Case label.
    pub case: String,
    /// Median seconds of one meta-gradient.
    pub seconds: f64,
    /// Number of checkpoint slots.
    pub slots: usize,
    /// Every byte the trainer holds.
    pub held_bytes: u64,
}

/// Whether a W1 case ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Measured.
    Ok,
    /// Beyond the device's limits; not run.
    Limit,
}

/// A row of [`Part::W1`], in the schema the peer scripts (`benches/peers/`) also write.
#[derive(Clone, Debug, Serialize)]
pub struct W1Row {
    /// Case label.
    pub case: String,
    /// Always `metalearn` (the peers write `pytorch`, `jax`, …).
    pub implementation: String,
    /// Task instances N.
    pub instances: usize,
    /// [`Status::Ok`].
    pub status: Status,
    /// Outer steps per timed run.
    pub outer_steps_per_run: usize,
    /// Timed runs.
    pub runs: usize,
    /// Median seconds of one outer step.
    pub step_seconds: f64,
    /// Inner steps × instances per second.
    pub inner_steps_x_instances_per_second: f64,
    /// [`W1Flops::executed`].
    pub flops_executed: f64,
    /// [`W1Flops::minimal`].
    pub flops_minimal: f64,
    /// Executed FLOPs per second.
    pub flops_per_second: f64,
    /// [`W1Measurement::peak_fraction`].
    pub peak_fraction: f64,
    /// [`W1Measurement::floor_seconds`].
    pub floor_seconds: f64,
    /// [`W1Measurement::gpu_busy`]; `null` without GPU timestamps.
    pub gpu_busy: Option<f64>,
    /// Every byte the trainer holds.
    pub memory_bytes: u64,
    /// Bytes of the checkpoint slots.
    pub checkpoint_bytes: u64,
    /// Number of checkpoint slots.
    pub slots: usize,
    /// Bytes of the adjoints, gradients, partial sums and workspace.
    pub working_bytes: u64,
    /// Bytes of the task's data, batches and activations.
    pub task_bytes: u64,
    /// GPU time per kernel entry point in one outer step, most expensive first.
    pub kernels: Vec<KernelRow>,
}

/// GPU time of one kernel entry point in a [`W1Row`].
#[derive(Clone, Debug, Serialize)]
pub struct KernelRow {
    /// Entry point.
    pub kernel: String,
    /// Dispatches in one outer step.
    pub dispatches: u64,
    /// GPU seconds of those dispatches.
    pub seconds: f64,
}

/// A W1 case beyond the device's limits.
#[derive(Clone, Debug, Serialize)]
pub struct W1LimitRow {
    /// Case label.
    pub case: String,
    /// Always `metalearn`.
    pub implementation: String,
    /// Task instances N.
    pub instances: usize,
    /// [`Status::Limit`].
    pub status: Status,
    /// The limit error.
    pub error: String,
}

#[cfg(test)]
mod tests;
