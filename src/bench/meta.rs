//! Meta-training outer steps of the L2L LSTM optimizer on quadratics.

use std::io::Write;
use std::sync::Arc;

use rand::SeedableRng;

use super::{io, skip_limit, BenchOptions, MetaMeasurement, MetaRow, Row};
use crate::gpu::Gpu;
use crate::meta::Schedule;
use crate::Result;

/// Time outer steps of meta-training the L2L LSTM optimizer on 10-d quadratics: one warm-up
/// step, then the median of `repeats` steps.
pub fn measure_meta(
    gpu: &Arc<Gpu>,
    instances: usize,
    unroll: usize,
    schedule: Schedule,
    repeats: usize,
) -> Result<MetaMeasurement> {
    use crate::optim::lstm::Lstm;
    use crate::optim::Optimizer;
    use crate::tasks::QuadraticTask;
    let mut rng = crate::tasks::TaskRng::seed_from_u64(0);
    let task = QuadraticTask::new(gpu, 10, instances, &mut rng)?;
    let opt = Optimizer::new(Lstm::default());
    let mut tr = MetaMeasurement::trainer(gpu, Box::new(task), opt, unroll, schedule)?;
    let label = format!(
        "lstm quadratic d=10 T={unroll} N={instances} {}",
        schedule.name()
    );
    MetaMeasurement::time(label, &mut tr, unroll * instances, repeats, |tr| {
        tr.step().map(|_| ())
    })
}

/// The meta-training part of [`run`](super::run): store-all at several instance counts (T =
/// 20), then every-4 and √T at the largest count.
pub(super) fn run(gpu: &Arc<Gpu>, opts: &BenchOptions, out: &mut dyn Write) -> Result<Vec<Row>> {
    let repeats = opts.repeats;
    writeln!(
        out,
        "\nmeta-training outer steps (LSTM optimizer, truncated, T = 20; median of {repeats}; inner steps × instances per second)"
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:<44} {:>12} {:>18} {:>16}",
        "case", "ms/outer", "steps×inst/s", "held MiB"
    )
    .map_err(io)?;
    let counts: &[usize] = if opts.quick { &[1, 16] } else { &[1, 64, 1024] };
    let largest = counts.last().copied().unwrap_or(1);
    let mut cases: Vec<(usize, Schedule)> =
        counts.iter().map(|&n| (n, Schedule::StoreAll)).collect();
    cases.extend([Schedule::EveryK(4), Schedule::Sqrt].map(|s| (largest, s)));
    let mut rows = Vec::new();
    for (n, schedule) in cases {
        let m = match skip_limit(measure_meta(gpu, n, 20, schedule, repeats))? {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "N={n} {}: skipped: {e}", schedule.name()).map_err(io)?;
                continue;
            }
        };
        let held = (m.memory.checkpoints + m.memory.working) as f64 / (1 << 20) as f64;
        writeln!(
            out,
            "{:<44} {:>12.3} {:>18.0} {:>16.2}",
            m.label,
            m.step_seconds * 1e3,
            m.inner_steps_per_second,
            held
        )
        .map_err(io)?;
        rows.push(Row::Meta(MetaRow {
            case: m.label,
            step_seconds: m.step_seconds,
            inner_steps_x_instances_per_second: m.inner_steps_per_second,
            checkpoint_bytes: m.memory.checkpoints,
            slots: m.memory.slots,
            working_bytes: m.memory.working,
        }));
    }
    Ok(rows)
}
