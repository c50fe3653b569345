//! The cost of second-order mode: outer steps of every registered optimizer on W1's model
//! (784-20-10 sigmoid MLPs, B = 128, T = 20), truncated and second-order side by side.

use std::io::Write;
use std::sync::Arc;

use super::{io, skip_limit, BenchOptions, MetaMeasurement, MetaRow, Row};
use super::{W1_BATCH, W1_UNROLL};
use crate::gpu::Gpu;
use crate::meta::{MetaConfig, MetaTrainer, Schedule};
use crate::optim::{Mode, Optimizer, REGISTRY};
use crate::Result;

/// Sizes of one case: batch rows, unroll length, instances.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    batch: usize,
    unroll: usize,
    instances: usize,
}

/// W1's sizes at 16 instances; with `--quick` or on a software adapter, small batches, short
/// unrolls and 2 instances.
fn sizes(opts: &BenchOptions, gpu: &Gpu) -> Sizes {
    if opts.quick || gpu.props().is_software() {
        Sizes {
            batch: 16,
            unroll: 4,
            instances: 2,
        }
    } else {
        Sizes {
            batch: W1_BATCH,
            unroll: W1_UNROLL,
            instances: 16,
        }
    }
}

/// Time outer steps of `opt` in `mode` (store-all, θ0 learned, φ too where there is one).
fn measure(
    gpu: &Arc<Gpu>,
    s: Sizes,
    opt: &Optimizer,
    mode: Mode,
    repeats: usize,
) -> Result<MetaMeasurement> {
    let (_, task) = super::w1::w1_task(gpu, s.batch, s.instances)?;
    let cfg = MetaConfig {
        unroll: s.unroll,
        mode,
        schedule: Schedule::StoreAll,
        learn_init: true,
        ..Default::default()
    };
    let mut tr = MetaTrainer::new(gpu.clone(), Box::new(task), opt.clone(), cfg)?;
    let label = format!(
        "so {} {} 784-20-10 B={} T={} N={}",
        opt.name(),
        mode.name(),
        s.batch,
        s.unroll,
        s.instances
    );
    MetaMeasurement::time(label, &mut tr, s.unroll * s.instances, repeats, |tr| {
        tr.step().map(|_| ())
    })
}

fn row(m: &MetaMeasurement) -> Row {
    Row::Meta(MetaRow {
        case: m.label.clone(),
        step_seconds: m.step_seconds,
        inner_steps_x_instances_per_second: m.inner_steps_per_second,
        checkpoint_bytes: m.memory.checkpoints,
        slots: m.memory.slots,
        working_bytes: m.memory.working,
    })
}

fn held_mib(m: &MetaMeasurement) -> f64 {
    (m.memory.checkpoints + m.memory.working) as f64 / (1 << 20) as f64
}

/// The second-order part of [`run`](super::run): every registered optimizer, truncated then
/// second-order, and their ratio.
pub(super) fn run(gpu: &Arc<Gpu>, opts: &BenchOptions, out: &mut dyn Write) -> Result<Vec<Row>> {
    let s = sizes(opts, gpu);
    let repeats = opts.repeats;
    writeln!(
        out,
        "\nsecond-order vs truncated: 784-20-10 sigmoid MLPs, B = {}, T = {}, N = {}, store-all, θ0 \
         (and φ) learned; median of {repeats} outer steps",
        s.batch,
        s.unroll,
        s.instances
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:<10} {:>14} {:>14} {:>8} {:>14} {:>14}",
        "optimizer", "truncated ms", "second ms", "ratio", "trunc MiB", "second MiB"
    )
    .map_err(io)?;
    let mut rows = Vec::new();
    for (name, make) in REGISTRY {
        let opt = make();
        let mut pair = Vec::with_capacity(2);
        for mode in [Mode::Truncated, Mode::SecondOrder] {
            match skip_limit(measure(gpu, s, &opt, mode, repeats))? {
                Ok(m) => pair.push(m),
                Err(e) => writeln!(out, "{name} {}: skipped: {e}", mode.name()).map_err(io)?,
            }
        }
        if let [t, so] = &pair[..] {
            writeln!(
                out,
                "{:<10} {:>14.3} {:>14.3} {:>8.2} {:>14.2} {:>14.2}",
                name,
                t.step_seconds * 1e3,
                so.step_seconds * 1e3,
                so.step_seconds / t.step_seconds,
                held_mib(t),
                held_mib(so)
            )
            .map_err(io)?;
        }
        rows.extend(pair.iter().map(row));
    }
    Ok(rows)
}
