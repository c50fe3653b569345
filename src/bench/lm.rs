//! The LSTM language model: tokens per second of static training (forward, truncated BPTT over
//! the chunk, mean gradient over the streams, Adam), of static evaluation (forward only) and of
//! dynamic evaluation (score, backward, SGD on every stream's own weights), on random tokens.
//!
//! FLOP model per token (multiply-adds counted as 2): forward = Σ_l 2·(n_l + H)·4H for the
//! LSTM layers (n_0 = E, n_l = H above) + 2·H·E for the projection when E ≠ H + 2·E·V for the
//! logits; the backward pass of a product costs twice its forward (the input and the weight
//! gradients), so training = 3 × forward. Element-wise work (gates, softmax) is not counted.

use std::io::Write;
use std::sync::Arc;

use rand::{Rng, SeedableRng};

use super::{io, median_seconds, skip_limit, BenchOptions, KernelRow, LmRow, Row};
use crate::gpu::Gpu;
use crate::optim::Optimizer;
use crate::tasks::lm::{DynamicEval, LmSpec, StaticTrainer, TokenChunk, Update};
use crate::Result;

/// FLOPs of the forward pass of one token.
pub fn lm_forward_flops(spec: &LmSpec) -> f64 {
    let (e, h, v) = (spec.embed as f64, spec.hidden as f64, spec.vocab as f64);
    let lstm: f64 = (0..spec.layers)
        .map(|l| 2.0 * (spec.input_width(l) as f64 + h) * 4.0 * h)
        .sum();
    let proj = if spec.has_projection() {
        2.0 * h * e
    } else {
        0.0
    };
    lstm + proj + 2.0 * e * v
}

/// One case of the LM benchmark: the model, N streams, chunks of L tokens.
#[derive(Clone, Copy, Debug)]
pub struct LmCase {
    /// The model.
    pub spec: LmSpec,
    /// Streams N read side by side.
    pub streams: usize,
    /// Tokens per chunk L.
    pub len: usize,
}

/// Seconds per chunk of the three workloads of `case`, medians of `repeats`, and the GPU time
/// of each kernel in one training step.
#[derive(Clone, Debug)]
pub struct LmMeasurement {
    /// Static training step.
    pub train: f64,
    /// Static evaluation (forward only).
    pub eval: f64,
    /// Dynamic evaluation with SGD.
    pub dynamic: f64,
    /// (entry point, dispatches, GPU seconds) in one training step, from GPU timestamps (empty
    /// where the adapter has none).
    pub train_kernels: Vec<(&'static str, u64, f64)>,
}

/// Time `case` on `gpu` on random tokens (document starts every 200 tokens or so).
pub fn measure_lm(gpu: &Arc<Gpu>, case: &LmCase, repeats: usize) -> Result<LmMeasurement> {
    let LmCase { spec, streams, len } = *case;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(5);
    let theta = spec.init(&mut rng, 1)?;
    let nl = streams * len;
    let v = spec.vocab as u32;
    let tokens: Vec<u32> = (0..nl).map(|_| rng.random_range(0..v)).collect();
    let targets: Vec<u32> = (0..nl).map(|_| rng.random_range(0..v)).collect();
    let starts: Vec<bool> = (0..nl).map(|_| rng.random_range(0..200) == 0).collect();
    let chunk = TokenChunk {
        tokens: &tokens,
        targets: &targets,
        starts: &starts,
    };
    let adam = Optimizer::parse("adam")?.with_lr(1e-3);
    let mut tr = StaticTrainer::new(gpu.clone(), (&spec, &theta), (streams, len), (adam, &[]))?;
    let train = median_seconds(repeats, || tr.step(chunk).map(|_| ()))?;
    let profiler = gpu.profiler();
    profiler.reset_gpu_time();
    profiler.set_gpu_timing(true);
    let timed = tr.step(chunk);
    profiler.set_gpu_timing(false);
    timed?;
    let train_kernels = profiler.gpu_time_report();
    drop(tr);
    // The LSTM layers fast (lm.fast's default), as the peer's dynamic evaluation.
    let fast = ["lstm".to_string()];
    let mut stat = DynamicEval::new(gpu.clone(), (&spec, &theta), (streams, len), &fast, None)?;
    let eval = median_seconds(repeats, || stat.chunk(chunk).map(|_| ()))?;
    drop(stat);
    let sgd = Update::Sgd {
        lr: 1e-3,
        decay: 0.0,
    };
    let mut dynamic = DynamicEval::new(
        gpu.clone(),
        (&spec, &theta),
        (streams, len),
        &fast,
        Some(sgd),
    )?;
    let dyn_s = median_seconds(repeats, || dynamic.chunk(chunk).map(|_| ()))?;
    Ok(LmMeasurement {
        train,
        eval,
        dynamic: dyn_s,
        train_kernels,
    })
}

/// The cases: the word-level model (V = 16 384, E = H = 512, 2 layers) at N = 32 and
/// 64 streams of 64 tokens on a GPU; a small byte-level model with `quick` or on a software
/// adapter.
pub fn lm_cases(quick: bool, software: bool) -> Result<Vec<LmCase>> {
    if quick || software {
        return Ok(vec![LmCase {
            spec: LmSpec::new(256, 32, 32, 1)?,
            streams: 4,
            len: 16,
        }]);
    }
    let spec = LmSpec::new(16_384, 512, 512, 2)?;
    Ok([32, 64]
        .into_iter()
        .map(|streams| LmCase {
            spec,
            streams,
            len: 64,
        })
        .collect())
}

/// The LM part of [`run`](super::run).
pub(super) fn run(gpu: &Arc<Gpu>, opts: &BenchOptions, out: &mut dyn Write) -> Result<Vec<Row>> {
    let repeats = opts.repeats;
    writeln!(
        out,
        "\nLSTM language model (tied embedding; median of {repeats}; tokens per second, GFLOP/s by the FLOP model)"
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:<44} {:>12} {:>10} {:>12} {:>12}",
        "case", "train tok/s", "GFLOP/s", "eval tok/s", "dyn tok/s"
    )
    .map_err(io)?;
    let mut rows = Vec::new();
    for case in lm_cases(opts.quick, gpu.props().is_software())? {
        let s = case.spec;
        let label = format!(
            "V={} E={} H={} layers={} N={} L={}",
            s.vocab, s.embed, s.hidden, s.layers, case.streams, case.len
        );
        let m = match skip_limit(measure_lm(gpu, &case, repeats))? {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "{label}: skipped: {e}").map_err(io)?;
                continue;
            }
        };
        let tokens = (case.streams * case.len) as f64;
        let flops = lm_forward_flops(&s);
        let row = LmRow {
            case: label,
            parameters: s.layout()?.size(),
            train_tokens_per_second: tokens / m.train,
            train_gflops: 3.0 * flops * tokens / m.train * 1e-9,
            eval_tokens_per_second: tokens / m.eval,
            eval_gflops: flops * tokens / m.eval * 1e-9,
            dynamic_tokens_per_second: tokens / m.dynamic,
            train_kernels: m
                .train_kernels
                .iter()
                .map(|&(k, c, s)| KernelRow {
                    kernel: k.to_string(),
                    dispatches: c,
                    seconds: s,
                })
                .collect(),
        };
        writeln!(
            out,
            "{:<44} {:>12.0} {:>10.1} {:>12.0} {:>12.0}",
            row.case,
            row.train_tokens_per_second,
            row.train_gflops,
            row.eval_tokens_per_second,
            row.dynamic_tokens_per_second
        )
        .map_err(io)?;
        let busy: f64 = row.train_kernels.iter().map(|k| k.seconds).sum();
        for k in row.train_kernels.iter().take(6) {
            writeln!(
                out,
                "    {:<20} {:>6} dispatches {:>9.3} ms  {:>5.1} % of the step's GPU time",
                k.kernel,
                k.dispatches,
                k.seconds * 1e3,
                100.0 * k.seconds / busy.max(1e-30)
            )
            .map_err(io)?;
        }
        rows.push(Row::Lm(row));
    }
    Ok(rows)
}
