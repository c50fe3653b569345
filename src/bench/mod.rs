//! Benchmark workloads shared by `metalearn bench` and the criterion benches: timed after a
//! warm-up, wall clock around submit + device sync, median of several runs.
//!
//! One file per workload: [`mlp`](MlpWorkload) (forward + backward), `meta` (meta-training
//! outer steps), `opt` (a fused optimizer step against copy bandwidth), `unroll` (a long
//! checkpointed unroll per schedule) and `w1` (the peer-comparison workload and its FLOP model).
//! A language-model workload goes in `lm.rs` beside them.

use std::time::Instant;

use crate::Result;

mod meta;
mod mlp;
mod opt;
mod unroll;
mod w1;

pub use meta::measure_meta;
pub use mlp::{default_mlp_cases, MlpCase, MlpWorkload};
pub use opt::{measure_copy_bandwidth, measure_optimizer_step, StepMeasurement};
pub use unroll::measure_unroll;
pub use w1::{
    measure_w1, run_w1, w1_flops, w1_instance_counts, LstmFlops, W1Flops, W1Measurement, W1_BATCH,
    W1_PEAK_FLOPS, W1_UNROLL, W1_WIDTHS,
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
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            f().map(|_| t.elapsed().as_secs_f64())
        })
        .collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
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
