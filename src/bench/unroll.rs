//! One meta-gradient of a long checkpointed unroll, per checkpoint schedule.

use std::io::Write;
use std::sync::Arc;

use super::{io, skip_limit, BenchOptions, MetaMeasurement, Row, UnrollRow};
use crate::gpu::Gpu;
use crate::meta::Schedule;
use crate::Result;

/// Time one meta-gradient (forward unroll + checkpointed reverse) of `unroll` steps for
/// `schedule`, with the MLP optimizer on `instances` 784-20-10 sigmoid MLPs (batch 128,
/// synthetic images; 15 910 parameters each): the median of `repeats`, and the bytes held.
pub fn measure_unroll(
    gpu: &Arc<Gpu>,
    instances: usize,
    unroll: usize,
    schedule: Schedule,
    repeats: usize,
) -> Result<MetaMeasurement> {
    use crate::optim::Optimizer;
    let (_, task) = super::w1::w1_task(gpu, super::W1_BATCH, instances)?;
    let opt = Optimizer::parse("mlp")?;
    let mut tr = MetaMeasurement::trainer(gpu, Box::new(task), opt, unroll, schedule)?;
    let label = format!(
        "mlp-opt on 784-20-10 MLPs N={instances} T={unroll} {}",
        schedule.name()
    );
    MetaMeasurement::time(label, &mut tr, unroll * instances, repeats, |tr| {
        tr.meta_gradient().map(|_| ())
    })
}

/// The unroll part of [`run`](super::run): one meta-gradient of T = 1000 steps (50 with
/// `quick`) under store-all, √T and Revolve with 2√T slots.
pub(super) fn run(gpu: &Arc<Gpu>, opts: &BenchOptions, out: &mut dyn Write) -> Result<Vec<Row>> {
    let repeats = opts.repeats;
    let (n, t) = if opts.quick { (2, 50) } else { (64, 1000) };
    let k = (t as f64).sqrt().ceil() as usize;
    writeln!(
        out,
        "\ncheckpointed unroll: MLP optimizer on {n} MLPs 784-20-10 ({} coordinates), T = {t}, one meta-gradient (median of {repeats})",
        n * 15910
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:<52} {:>12} {:>10} {:>14}",
        "schedule", "ms", "slots", "held MiB"
    )
    .map_err(io)?;
    let mut rows = Vec::new();
    for schedule in [Schedule::StoreAll, Schedule::Sqrt, Schedule::Revolve(2 * k)] {
        let m = match skip_limit(measure_unroll(gpu, n, t, schedule, repeats))? {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "{}: skipped: {e}", schedule.name()).map_err(io)?;
                continue;
            }
        };
        let held = m.memory.total();
        writeln!(
            out,
            "{:<56} {:>12.1} {:>10} {:>14.1}",
            m.label,
            m.step_seconds * 1e3,
            m.memory.slots,
            held as f64 / (1 << 20) as f64
        )
        .map_err(io)?;
        rows.push(Row::Unroll(UnrollRow {
            case: m.label,
            seconds: m.step_seconds,
            slots: m.memory.slots,
            held_bytes: held,
        }));
    }
    Ok(rows)
}
