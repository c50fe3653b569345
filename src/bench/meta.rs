//! Meta-training outer steps of the L2L LSTM optimizer on quadratics.

use rand::SeedableRng;

use super::{median_seconds, MetaMeasurement};
use crate::gpu::Gpu;
use crate::Result;

/// Time outer steps of meta-training the L2L LSTM optimizer on 10-d quadratics: one warm-up
/// step, then the median of `repeats` steps.
pub fn measure_meta(
    gpu: &std::sync::Arc<Gpu>,
    instances: usize,
    unroll: usize,
    schedule: crate::meta::Schedule,
    repeats: usize,
) -> Result<MetaMeasurement> {
    use crate::meta::{MetaConfig, MetaTrainer};
    use crate::optim::lstm::Lstm;
    use crate::optim::Optimizer;
    use crate::tasks::QuadraticTask;
    let mut rng = crate::tasks::TaskRng::seed_from_u64(0);
    let task = QuadraticTask::new(gpu, 10, instances, &mut rng)?;
    let cfg = MetaConfig {
        unroll,
        schedule,
        ..Default::default()
    };
    let mut tr = MetaTrainer::new(
        gpu.clone(),
        Box::new(task),
        Optimizer::new(Lstm::default()),
        cfg,
    )?;
    let step = median_seconds(repeats, || tr.step().map(|_| ()))?;
    Ok(MetaMeasurement {
        label: format!(
            "lstm quadratic d=10 T={unroll} N={instances} {}",
            schedule.name()
        ),
        step_seconds: step,
        inner_steps_per_second: (unroll * instances) as f64 / step,
        memory: tr.memory(),
    })
}
