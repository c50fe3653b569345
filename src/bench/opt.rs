//! One fused inner-optimizer step over many coordinates, against the bandwidth of a copy kernel.

use std::io::Write;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use super::{io, median, skip_limit, BenchOptions, OptRow, Row};
use crate::gpu::{Gpu, Recorder};
use crate::optim::Optimizer;
use crate::Result;

/// Result of timing one fused optimizer step over many coordinates.
#[derive(Clone, Debug)]
pub struct StepMeasurement {
    /// Case label.
    pub label: String,
    /// Coordinates updated per step.
    pub coordinates: usize,
    /// Median seconds of one step (all its dispatches).
    pub step_seconds: f64,
    /// Bytes every step must read and write (counted from the kernels' accesses).
    pub bytes_per_step: u64,
    /// bytes_per_step / step_seconds / 1e9.
    pub gb_per_second: f64,
}

/// Time `steps` inner-optimizer steps of `opt` over `params` coordinates (one instance whose
/// parameters are cut into `tensors` equal tensors), ping-ponging between two slots; the median
/// of `repeats` runs. The gradient is fixed (random), as the kernels do not care.
pub fn measure_optimizer_step(
    gpu: &Gpu,
    opt: &Optimizer,
    params: usize,
    tensors: usize,
    steps: usize,
    repeats: usize,
) -> Result<StepMeasurement> {
    use crate::optim::StepArgs;
    let mut layout = crate::params::ParamLayout::new();
    let per = params.div_ceil(tensors.max(1));
    let mut left = params;
    let mut k = 0;
    while left > 0 {
        let n = per.min(left);
        layout.add(&format!("t{k}"), &[n])?;
        left -= n;
        k += 1;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let phi = opt.init_phi(&mut rng);
    let phi_buf = gpu.buffer_from("bench phi", if phi.is_empty() { &[0.0] } else { &phi })?;
    let slot_len = opt.slot_len(params);
    let slots = [
        gpu.buffer("bench slot a", slot_len)?,
        gpu.buffer("bench slot b", slot_len)?,
    ];
    let g: Vec<f32> = (0..params).map(|_| rng.random_range(-1.0..1.0)).collect();
    let g = gpu.buffer_from("bench gradient", &g)?;
    let ws = opt.workspace(gpu, &layout, 1, false)?;
    let run = |n: usize| -> Result<f64> {
        let mut rec = Recorder::new(gpu);
        for t in 0..n {
            opt.record_step(
                &mut rec,
                &StepArgs {
                    count: params,
                    slot_in: &slots[t % 2],
                    g: &g,
                    phi: (&phi_buf, 0),
                    phi_blocks: None,
                    slot_out: &slots[(t + 1) % 2],
                    t,
                    ws: &ws,
                },
            )?;
        }
        let t0 = Instant::now();
        rec.submit()?;
        gpu.wait()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    run(2)?;
    let times: Vec<f64> = (0..repeats.max(1))
        .map(|_| run(steps))
        .collect::<Result<_>>()?;
    let step = median(times) / steps as f64;
    let s = opt.state_len() as u64;
    let c = params as u64;
    // Reads θ, g and the state and writes θ and the state; the MLP optimizer reads θ, g and
    // the state once more for its per-tensor normalisers.
    let mut bytes = 4 * c * ((2 + s) + (1 + s));
    if opt.name() == "mlp" {
        bytes += 4 * c * (2 + s);
    }
    Ok(StepMeasurement {
        label: format!("{} step, {} coordinates, {} tensors", opt.name(), params, k),
        coordinates: params,
        step_seconds: step,
        bytes_per_step: bytes,
        gb_per_second: bytes as f64 / step / 1e9,
    })
}

/// Copy bandwidth of a compute kernel (GB/s, read + write; vec4 per invocation) on buffers of
/// `floats` floats.
pub fn measure_copy_bandwidth(gpu: &Gpu, floats: usize, repeats: usize) -> Result<f64> {
    use crate::kernels::vec::{copy4, View};
    let floats = floats / 4 * 4;
    let a = gpu.buffer("copy a", floats)?;
    let b = gpu.buffer("copy b", floats)?;
    let run = |n: usize| -> Result<f64> {
        let mut rec = Recorder::new(gpu);
        for _ in 0..n {
            copy4(&mut rec, View::new(&a, 0), View::new(&b, 0), floats)?;
        }
        let t0 = Instant::now();
        rec.submit()?;
        gpu.wait()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    run(1)?;
    let times: Vec<f64> = (0..repeats.max(1))
        .map(|_| run(10))
        .collect::<Result<_>>()?;
    Ok(2.0 * 4.0 * floats as f64 * 10.0 / median(times) / 1e9)
}

/// The optimizer-step part of [`run`](super::run): Adam and the MLP optimizer on 2^20, 2^24
/// and 2^26 coordinates (2^18 with `quick`) in 16 tensors, against the copy kernel's bandwidth.
pub(super) fn run(gpu: &Gpu, opts: &BenchOptions, out: &mut dyn Write) -> Result<Vec<Row>> {
    let repeats = opts.repeats;
    let (sizes, largest): (&[usize], usize) = if opts.quick {
        (&[1 << 18], 1 << 18)
    } else {
        (&[1 << 20, 1 << 24, 1 << 26], 1 << 26)
    };
    // The copy reference moves as many bytes as the largest case's θ, so it runs at full speed.
    let copy = measure_copy_bandwidth(gpu, largest * 4, repeats)?;
    let mut rows = Vec::new();
    for &params in sizes {
        writeln!(
            out,
            "\nfused optimizer step, {params} coordinates in 16 tensors (median of {repeats} runs of 10 steps); copy-kernel bandwidth {copy:.1} GB/s"
        )
        .map_err(io)?;
        writeln!(
            out,
            "{:<44} {:>12} {:>14} {:>10} {:>12}",
            "case", "ms/step", "bytes/step", "GB/s", "of copy"
        )
        .map_err(io)?;
        let mut adam_time = None;
        for name in ["adam", "mlp"] {
            let o = Optimizer::parse(name)?;
            let m = match skip_limit(measure_optimizer_step(gpu, &o, params, 16, 10, repeats))? {
                Ok(m) => m,
                Err(e) => {
                    writeln!(out, "{name}: skipped: {e}").map_err(io)?;
                    continue;
                }
            };
            let ratio = adam_time
                .map(|a: f64| format!(", {:.2}× Adam's time", m.step_seconds / a))
                .unwrap_or_default();
            if name == "adam" {
                adam_time = Some(m.step_seconds);
            }
            writeln!(
                out,
                "{:<44} {:>12.3} {:>14} {:>10.1} {:>11.0}%{ratio}",
                m.label,
                m.step_seconds * 1e3,
                m.bytes_per_step,
                m.gb_per_second,
                100.0 * m.gb_per_second / copy
            )
            .map_err(io)?;
            rows.push(Row::Opt(OptRow {
                case: m.label,
                step_seconds: m.step_seconds,
                bytes_per_step: m.bytes_per_step,
                gb_per_second: m.gb_per_second,
                copy_gb_per_second: copy,
            }));
        }
    }
    Ok(rows)
}
