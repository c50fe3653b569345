//! W1: L2L meta-training of the LSTM optimizer on 784-20-10 MLPs, with its FLOP model.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use super::{io, median, skip_limit, BenchOptions, KernelRow, Row, Status, W1LimitRow, W1Row};
use crate::gpu::Gpu;
use crate::kernels::matmul::Activation;
use crate::tasks::mlp::MlpSpec;
use crate::{Error, Result};

/// The card's FP32 ceiling used for the W1 floor: vec4 FMA chains from WGSL, measured on the
/// NVIDIA H200 (see BENCHMARKS.md); FLOP/s.
pub const W1_PEAK_FLOPS: f64 = 44.5e12;

/// Layer widths of the W1 model (the L2L MNIST MLP).
pub const W1_WIDTHS: [usize; 3] = [784, 20, 10];

/// Rows per batch in W1.
pub const W1_BATCH: usize = 128;

/// Unroll length T of W1.
pub const W1_UNROLL: usize = 20;

/// Floating-point operations of the coordinatewise LSTM optimizer per coordinate and step.
///
/// Counted by hand from the WGSL of `src/optim/lstm/lstm.wgsl` (functions `features`, `pre1` /
/// `pre2` / `dot20`, `gates`, `out4` and `back`), with these unit costs:
///
/// | operation | FLOPs |
/// |---|---|
/// | multiply-add (`fma`, and every term of a matrix-vector product) | 2 |
/// | add, subtract, multiply, divide | 1 |
/// | `exp`, `log`, `tanh`, `abs` | 1 |
/// | each bound of a `clamp` | 1 (in the features; the ±15 clamp inside `tanh_` is not counted) |
/// | sigmoid σ(x) = 1 / (1 + exp(−x)) | 3 (exp, add, divide; the negation is free) |
///
/// Per hidden unit a cell costs [`CELL_FWD_UNIT`](Self::CELL_FWD_UNIT) (forward after the
/// pre-activations) and [`CELL_BWD_UNIT`](Self::CELL_BWD_UNIT) (backward); the features cost
/// [`FEATURES`](Self::FEATURES) per coordinate. A cell with `nx` inputs and H units adds
/// 2 · 4H · (nx + H) for its pre-activations and, in the backward, 2 · 4H · H for h̄ = Whᵀā and
/// 2 · 4H · nx for x̄ = Wxᵀā. Index arithmetic, loads, stores, `select`s and workgroup exchanges
/// are not counted. [`LstmFlops::new`] writes the sums out
/// term by term; a unit test checks them against a hand count at H = 20.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LstmFlops {
    /// `lstm_step`: features, both cells, the output u = s·(wo·h2' + bo) and θ' = θ + u.
    pub forward: f64,
    /// The reverse step as the first `lstm_vjp` kernel ran it: the forward recomputed, each
    /// cell's gates computed once more inside its backward, the cells' input and state adjoints
    /// (x̄ = Wx1ᵀā1 of layer 1 included), the φ̄ outer products and the glue (h̄2 += s·ū·wo,
    /// h̄1 += x̄2, θ̄ = ū + w·g). The current kernel (its header) computes layer 2's gates once,
    /// inside the reverse, and does not form x̄ of layer 1: it executes the layer-2 forward
    /// (2 · 4H · 2H + 15H) and 2 · 4H · 2 FLOPs less, 6 700 + 320 of the 41 994 counted at
    /// H = 20. [`W1Flops::executed`] still uses this count (BENCHMARKS.md says so).
    pub vjp: f64,
    /// The least backward an implementation that keeps the forward's activations needs: the
    /// cells' backward without recomputing the pre-activations or the gates, no x̄ for
    /// layer 1, the φ̄ outer products and the glue.
    pub backward_min: f64,
}

impl LstmFlops {
    /// FLOPs per hidden unit of a cell's forward after its pre-activations: three sigmoids
    /// (3 each), two `tanh` (1 each), c' = f·c + i·g̃ (a multiply-add and a multiply, 3) and
    /// h' = o·tanh(c') (1).
    pub const CELL_FWD_UNIT: f64 = 15.0;
    /// FLOPs per hidden unit of a cell's backward after its recomputed pre-activations (`gates`,
    /// then `back`): the gates again (three sigmoids and a `tanh`, 10), c' and tanh(c') (4), the
    /// output term (1), c̄ (5), the four ā entries (4 + 4 + 4 + 3) and c̄_old = c̄·f (1).
    pub const CELL_BWD_UNIT: f64 = 36.0;
    /// The part of [`CELL_BWD_UNIT`](Self::CELL_BWD_UNIT) the minimal count leaves out: the
    /// gates' recomputation (10). It keeps c' and tanh(c') (4), so it errs high by at most 4
    /// FLOPs per unit.
    pub const CELL_BWD_RECOMPUTE_UNIT: f64 = 10.0;
    /// FLOPs of the LogAndSign features per coordinate: x1 = clamp(log(|g| + ε) / p, −1, 1)
    /// (abs, add, log, divide, two bounds: 6) and x2 = clamp(g · eᵖ, −1, 1) (multiply, exp, two
    /// bounds: 4).
    pub const FEATURES: f64 = 10.0;

    /// The counts for H hidden units per layer.
    pub fn new(hidden: usize) -> Self {
        let h = hidden as f64;
        let g = 4.0 * h;
        // Pre-activations of a cell with nx inputs: 4H rows of (nx + H) multiply-adds.
        let pre = |nx: f64| 2.0 * g * (nx + h);
        let cell_fwd = |nx: f64| pre(nx) + Self::CELL_FWD_UNIT * h;
        // Output u = s·(wo·h2' + bo) and θ' = θ + u.
        let out = 2.0 * h + 2.0;
        let forward = Self::FEATURES + cell_fwd(2.0) + cell_fwd(h) + out;
        // Backward of one cell: gates, then h̄ (4H × H) and x̄ (4H × nx) products.
        let cell_bwd = |nx: f64, recompute: bool| {
            let unit = if recompute {
                Self::CELL_BWD_UNIT
            } else {
                Self::CELL_BWD_UNIT - Self::CELL_BWD_RECOMPUTE_UNIT
            };
            let gates = if recompute { pre(nx) } else { 0.0 };
            gates + unit * h + 2.0 * g * h + 2.0 * g * nx
        };
        // φ̄: Wx2, Wh2 (4H × H each), b2, wo, bo, Wx1 (4H × 2), Wh1, b1.
        let phi_bar = 2.0 * g * h * 3.0 + g + 2.0 * h + 1.0 + 2.0 * g * 2.0 + g;
        // h̄2 += s·ū·wo (and s·ū), h̄1 += x̄2, θ̄ = ū + w·g.
        let glue = 2.0 * h + 1.0 + h + 2.0;
        let vjp = (Self::FEATURES + cell_fwd(2.0) + cell_fwd(h))
            + cell_bwd(h, true)
            + cell_bwd(2.0, true)
            + phi_bar
            + glue;
        let backward_min =
            cell_bwd(h, false) + (cell_bwd(2.0, false) - 2.0 * g * 2.0) + phi_bar + glue;
        Self {
            forward,
            vjp,
            backward_min,
        }
    }
}

/// FLOPs of one W1 outer step (all N instances), from [`w1_flops`].
///
/// Two parts per instance: MLP passes and LSTM steps over its P coordinates. One MLP forward +
/// backward pass on B rows costs [`MlpSpec::flops_fwd_bwd`]: for each layer with n_in inputs
/// and n_out outputs, 2 · B · n_in · n_out (a multiply-add counts 2) for the forward product,
/// as much again for the weight gradient and for the input gradient, except that the first
/// layer has no input gradient; activations, softmax, loss and bias terms are not counted. The
/// LSTM costs per coordinate are [`LstmFlops`] (unit costs there).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct W1Flops {
    /// What our kernels execute: 2T + 1 MLP forward + backward passes per instance (T + 1 in the
    /// unroll, T recomputed in the store-all reverse), T LSTM steps and T LSTM VJPs per
    /// coordinate: N · ((2T + 1) · mlp + T · P · (forward + vjp)).
    pub executed: f64,
    /// What any implementation must do: T + 1 MLP forward + backward passes (g_t is also
    /// ∂ℓ_t/∂θ_t), T LSTM steps and T LSTM backwards without recomputation per coordinate:
    /// N · ((T + 1) · mlp + T · P · (forward + backward_min)).
    pub minimal: f64,
}

/// FLOP count of one outer step of W1-style meta-training: `instances` MLPs `spec` with
/// `batch` rows, the LSTM optimizer with `hidden` units, an unroll of `unroll` steps. The
/// meta-update (Adam over 5141 values) and the reductions are left out (< 0.01 %).
pub fn w1_flops(
    spec: &MlpSpec,
    batch: usize,
    hidden: usize,
    instances: usize,
    unroll: usize,
) -> Result<W1Flops> {
    let p = spec.layout()?.size() as f64;
    let mlp = spec.flops_fwd_bwd(batch);
    let l = LstmFlops::new(hidden);
    let (n, t) = (instances as f64, unroll as f64);
    Ok(W1Flops {
        executed: n * ((2.0 * t + 1.0) * mlp + t * p * (l.forward + l.vjp)),
        minimal: n * ((t + 1.0) * mlp + t * p * (l.forward + l.backward_min)),
    })
}

/// Result of timing W1 outer steps at one instance count.
#[derive(Clone, Debug)]
pub struct W1Measurement {
    /// Case label.
    pub label: String,
    /// Task instances N.
    pub instances: usize,
    /// Outer steps per timed run.
    pub outer_steps: usize,
    /// Timed runs (the median is reported).
    pub repeats: usize,
    /// Median seconds of one outer step (unroll, meta-backward, meta-update, status readback).
    pub step_seconds: f64,
    /// Inner steps × instances per second.
    pub inner_steps_per_second: f64,
    /// FLOPs of one outer step.
    pub flops: W1Flops,
    /// Executed FLOP/s over the median wall time.
    pub flops_per_second: f64,
    /// Sum of per-dispatch GPU times (timestamps) of one outer step over its median wall time;
    /// `None` where the device has no timestamps inside passes.
    pub gpu_busy: Option<f64>,
    /// GPU seconds per kernel entry point in one outer step, most expensive first (empty
    /// without timestamps).
    pub kernels: Vec<(&'static str, u64, f64)>,
    /// Bytes the trainer holds.
    pub memory: crate::meta::MemoryReport,
}

impl W1Measurement {
    /// Fraction of [`W1_PEAK_FLOPS`] the executed FLOPs reach.
    pub fn peak_fraction(&self) -> f64 {
        self.flops_per_second / W1_PEAK_FLOPS
    }

    /// The time the minimal FLOPs take at [`W1_PEAK_FLOPS`]: the floor of one outer step.
    pub fn floor_seconds(&self) -> f64 {
        self.flops.minimal / W1_PEAK_FLOPS
    }
}

/// Outer steps per timed run: enough for about half a second per run, from 1 to 5.
fn w1_steps_per_run(warm_up_seconds: f64) -> usize {
    if warm_up_seconds <= 0.0 {
        return 5;
    }
    ((0.5 / warm_up_seconds).ceil() as usize).clamp(1, 5)
}

/// The GPU memory W1 may hold from [`W1_BUDGET_FROM`] instances on, where store-all needs
/// more: the instances' checkpoints are then planned by Revolve within what is left of it after
/// the working buffers (a 24 GiB card's memory).
pub const W1_MEMORY: u64 = 24 << 30;

/// The instance count from which W1 is held within [`W1_MEMORY`]; below it W1 is store-all,
/// as the peers' comparison defines it.
pub const W1_BUDGET_FROM: usize = 1024;

/// Time W1: L2L meta-training of the LSTM optimizer (2 × 20, LogAndSign) on `instances` MLPs
/// 784-20-10 sigmoid (batch 128, synthetic images), T = 20, truncated, meta-Adam; store-all,
/// from [`W1_BUDGET_FROM`] instances on within [`W1_MEMORY`]; the instances in as many chunks as the
/// buffer limits need ([`DataParallel`](crate::dist::DataParallel)). One warm-up outer step
/// (with GPU timestamps where the device has them), then the median of `repeats` runs of a few
/// outer steps, wall clock up to the status readback.
pub fn measure_w1(gpu: &Arc<Gpu>, instances: usize, repeats: usize) -> Result<W1Measurement> {
    use crate::dist::{estimate, DataParallel};
    use crate::meta::MetaConfig;
    use crate::optim::lstm::{Lstm, HIDDEN};
    use crate::optim::Optimizer;
    let spec = MlpSpec::new(&W1_WIDTHS, Activation::Sigmoid)?;
    let build = |g: &Arc<Gpu>, n: usize| {
        Ok(Box::new(w1_task(g, W1_BATCH, n)?.1) as Box<dyn crate::tasks::Task>)
    };
    let mut cfg = MetaConfig {
        unroll: W1_UNROLL,
        ..Default::default()
    };
    let opt = Optimizer::new(Lstm::default());
    let all = estimate(gpu, instances, &build, &opt, &cfg)?;
    if instances >= W1_BUDGET_FROM && all.total() > W1_MEMORY {
        cfg.memory_budget = Some(W1_MEMORY.saturating_sub(all.working + all.task));
    }
    let mut tr = DataParallel::new(std::slice::from_ref(gpu), instances, &build, opt, cfg)?;
    gpu.profiler().reset_gpu_time();
    gpu.profiler().set_gpu_timing(true);
    let t0 = Instant::now();
    let warm = tr.step();
    gpu.profiler().set_gpu_timing(false);
    warm?;
    let warm_seconds = t0.elapsed().as_secs_f64();
    let kernels = gpu.profiler().gpu_time_report();
    let k = w1_steps_per_run(warm_seconds);
    let times: Vec<f64> = (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            for _ in 0..k {
                tr.step()?;
            }
            Ok(t.elapsed().as_secs_f64() / k as f64)
        })
        .collect::<Result<_>>()?;
    let runs = times.len();
    let step = median(times);
    let memory = tr.memory();
    let flops = w1_flops(&spec, W1_BATCH, HIDDEN, instances, W1_UNROLL)?;
    let gpu_seconds: f64 = kernels.iter().map(|k| k.2).sum();
    Ok(W1Measurement {
        label: label(instances, Some(&memory)),
        instances,
        outer_steps: k,
        repeats: runs,
        step_seconds: step,
        inner_steps_per_second: (W1_UNROLL * instances) as f64 / step,
        flops,
        flops_per_second: flops.executed / step,
        gpu_busy: (!kernels.is_empty()).then(|| gpu_seconds / step),
        kernels,
        memory,
    })
}

/// W1's model (784-20-10 sigmoid MLPs) on the synthetic images, `instances` of them with
/// `batch` rows per batch: the task of the W1, unroll and second-order benchmarks.
pub(super) fn w1_task(
    gpu: &Arc<Gpu>,
    batch: usize,
    instances: usize,
) -> Result<(MlpSpec, crate::tasks::MlpTask)> {
    let (train, test) = crate::data::synthetic_images(0, 2000, 500);
    let spec = MlpSpec::new(&W1_WIDTHS, Activation::Sigmoid)?;
    let task = crate::tasks::MlpTask::new(gpu, &spec, instances, batch, train, test, 7)?;
    Ok((spec, task))
}

/// Parse a comma-separated list of positive instance counts, e.g. `1,16,256`.
pub fn parse_instance_list(list: &str) -> Result<Vec<usize>> {
    list.split(',')
        .map(|v| {
            v.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    Error::invalid(format!(
                        "'{v}' in the instance list is not a positive integer"
                    ))
                })
        })
        .collect()
}

/// The W1 instance counts: `list` if given, else 1, 16, 256, 1024 when W1 runs alone, 1 and 16
/// inside the full benchmark, 1 and 4 with `quick`; none inside the full benchmark on a
/// `software` adapter (an outer step at N = 1 takes over a minute on lavapipe).
pub fn w1_instance_counts(
    list: Option<&[usize]>,
    alone: bool,
    quick: bool,
    software: bool,
) -> Vec<usize> {
    if let Some(list) = list {
        return list.to_vec();
    }
    match (quick, alone) {
        _ if software && !alone => Vec::new(),
        (true, _) => vec![1, 4],
        (false, true) => vec![1, 16, 256, 1024],
        (false, false) => vec![1, 16],
    }
}

/// The label of the W1 case with `instances` instances held as `memory` reports: store-all
/// (T + 1 slots), else Revolve with the slots of each chunk, and the chunks where more than one.
fn label(instances: usize, memory: Option<&crate::meta::MemoryReport>) -> String {
    let Some(memory) = memory else {
        return format!("w1 lstm on 784-20-10 MLPs B=128 T=20 N={instances} store-all");
    };
    let schedule = if memory.slots > W1_UNROLL {
        "store-all".to_string()
    } else {
        format!("revolve-{}", memory.slots)
    };
    let chunks = match memory.chunks {
        0 | 1 => String::new(),
        k => format!(" in {k} chunks"),
    };
    format!("w1 lstm on 784-20-10 MLPs B=128 T=20 N={instances} {schedule}{chunks}")
}

/// The W1 part of [`run`](super::run): W1 at each of [`w1_instance_counts`], a table and one
/// row per case (a case over the device's limits gives a [`W1LimitRow`]).
pub(super) fn run(gpu: &Arc<Gpu>, opts: &BenchOptions, out: &mut dyn Write) -> Result<Vec<Row>> {
    let counts = w1_instance_counts(
        opts.w1_instances.as_deref(),
        opts.only.is_some(),
        opts.quick,
        gpu.props().is_software(),
    );
    if counts.is_empty() {
        return Ok(Vec::new());
    }
    let repeats = opts.repeats;
    writeln!(
        out,
        "\nW1: L2L LSTM optimizer (2×20, LogAndSign) on 784-20-10 sigmoid MLPs, B = 128, T = 20, truncated, \
         store-all (from N = {W1_BUDGET_FROM}: Revolve where that exceeds {} GiB), meta-Adam; median of {repeats} runs; FLOP/s of the executed count, peak {:.1} TFLOP/s",
        W1_MEMORY >> 30,
        W1_PEAK_FLOPS / 1e12
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:<8} {:>12} {:>14} {:>10} {:>8} {:>9} {:>12} {:>12}",
        "N", "ms/outer", "steps×inst/s", "TFLOP/s", "of peak", "GPU busy", "floor ms", "held MiB"
    )
    .map_err(io)?;
    let mut rows = Vec::new();
    for n in counts {
        let m = match skip_limit(measure_w1(gpu, n, repeats))? {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "{n:<8} skipped: {e}").map_err(io)?;
                rows.push(Row::W1Limit(W1LimitRow {
                    case: label(n, None),
                    implementation: "metalearn".into(),
                    instances: n,
                    status: Status::Limit,
                    error: e.to_string(),
                }));
                continue;
            }
        };
        let busy = m
            .gpu_busy
            .map_or("n/a".to_string(), |b| format!("{:.0}%", 100.0 * b));
        writeln!(
            out,
            "{:<8} {:>12.2} {:>14.0} {:>10.3} {:>7.2}% {:>9} {:>12.2} {:>12.1}",
            n,
            m.step_seconds * 1e3,
            m.inner_steps_per_second,
            m.flops_per_second / 1e12,
            100.0 * m.peak_fraction(),
            busy,
            m.floor_seconds() * 1e3,
            m.memory.total() as f64 / (1 << 20) as f64
        )
        .map_err(io)?;
        if !m.label.ends_with("store-all") {
            let how = m.label.rsplit(&format!("N={n} ")[..]).next().unwrap_or("");
            writeln!(
                out,
                "         {how}: {} slots of {} per chunk",
                m.memory.slots,
                crate::report::bytes_text(m.memory.slot_bytes)
            )
            .map_err(io)?;
        }
        let top: Vec<String> = m
            .kernels
            .iter()
            .take(4)
            .map(|(k, c, s)| format!("{k} {:.1} ms ({c})", s * 1e3))
            .collect();
        if !top.is_empty() {
            writeln!(
                out,
                "         GPU time of one outer step by kernel: {}",
                top.join(", ")
            )
            .map_err(io)?;
        }
        rows.push(Row::W1(row(&m)));
    }
    Ok(rows)
}

/// The JSON row of a measured W1 case.
fn row(m: &W1Measurement) -> W1Row {
    W1Row {
        case: m.label.clone(),
        implementation: "metalearn".into(),
        instances: m.instances,
        status: Status::Ok,
        outer_steps_per_run: m.outer_steps,
        runs: m.repeats,
        step_seconds: m.step_seconds,
        inner_steps_x_instances_per_second: m.inner_steps_per_second,
        flops_executed: m.flops.executed,
        flops_minimal: m.flops.minimal,
        flops_per_second: m.flops_per_second,
        peak_fraction: m.peak_fraction(),
        floor_seconds: m.floor_seconds(),
        gpu_busy: m.gpu_busy,
        memory_bytes: m.memory.total(),
        checkpoint_bytes: m.memory.checkpoints,
        slots: m.memory.slots,
        working_bytes: m.memory.working,
        task_bytes: m.memory.task,
        kernels: m
            .kernels
            .iter()
            .map(|&(kernel, dispatches, seconds)| KernelRow {
                kernel: kernel.into(),
                dispatches,
                seconds,
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lstm_flops_match_a_hand_count() {
        let f = LstmFlops::new(20);
        // Forward: features 10; cell 1: 80·22 multiply-adds + 15·20; cell 2: 80·40 + 15·20;
        // output 2·20 + 2.
        assert_eq!(f.forward, 10.0 + (3520.0 + 300.0) + (6400.0 + 300.0) + 42.0);
        // VJP: forward recompute 10 530; cell 2 backward 6400 + 720 + 3200 + 3200; cell 1
        // backward 3520 + 720 + 3200 + 320; φ̄ 3·3200 + 80 + 41 + 320 + 80; glue 63.
        assert_eq!(
            f.vjp,
            10530.0 + 13520.0 + 7760.0 + (9600.0 + 80.0 + 41.0 + 320.0 + 80.0) + 63.0
        );
        assert_eq!(
            f.backward_min,
            (520.0 + 6400.0) + (520.0 + 3200.0) + 10121.0 + 63.0
        );
        // The estimates: ~10 kFLOP forward, ~40 kFLOP with backward and recompute.
        assert!((f.forward - 10e3).abs() < 1e3);
        assert!((f.forward + f.backward_min + f.forward - 40e3).abs() < 4e3);
    }

    #[test]
    fn w1_flops_scale_with_instances_and_unroll() {
        let spec = MlpSpec::new(&W1_WIDTHS, Activation::Sigmoid).expect("spec");
        let one = w1_flops(&spec, 128, 20, 1, 20).expect("flops");
        let many = w1_flops(&spec, 128, 20, 16, 20).expect("flops");
        assert!((many.executed / one.executed - 16.0).abs() < 1e-9);
        assert!(one.minimal < one.executed);
        let l = LstmFlops::new(20);
        let p = 15910.0;
        let mlp = spec.flops_fwd_bwd(128);
        assert_eq!(one.executed, 41.0 * mlp + 20.0 * p * (l.forward + l.vjp));
        assert_eq!(
            one.minimal,
            21.0 * mlp + 20.0 * p * (l.forward + l.backward_min)
        );
    }

    #[test]
    fn instance_lists_parse_or_default() {
        assert_eq!(
            parse_instance_list("1, 16,256").expect("list"),
            vec![1, 16, 256]
        );
        assert!(parse_instance_list("1,x").is_err());
        assert!(parse_instance_list("0").is_err());
        assert!(parse_instance_list("").is_err());
        assert_eq!(
            w1_instance_counts(Some(&[3, 5]), false, false, true),
            vec![3, 5]
        );
        assert_eq!(
            w1_instance_counts(None, true, false, true),
            vec![1, 16, 256, 1024]
        );
        assert_eq!(w1_instance_counts(None, false, true, false), vec![1, 4]);
        assert!(w1_instance_counts(None, false, false, true).is_empty());
    }

    #[test]
    fn steps_per_run_stays_between_one_and_five() {
        assert_eq!(w1_steps_per_run(10.0), 1);
        assert_eq!(w1_steps_per_run(0.2), 3);
        assert_eq!(w1_steps_per_run(0.001), 5);
        assert_eq!(w1_steps_per_run(0.0), 5);
    }
}
