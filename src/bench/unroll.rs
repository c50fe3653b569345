//! One meta-gradient of a long checkpointed unroll, per checkpoint schedule.

use super::{median_seconds, MetaMeasurement};
use crate::gpu::Gpu;
use crate::Result;

/// Time one meta-gradient (forward unroll + checkpointed reverse) of `unroll` steps for
/// `schedule`, with the MLP optimizer on `instances` 784-20-10 sigmoid MLPs (batch 128,
/// synthetic images; 15 910 parameters each): the median of `repeats`, and the bytes held.
pub fn measure_unroll(
    gpu: &std::sync::Arc<Gpu>,
    instances: usize,
    unroll: usize,
    schedule: crate::meta::Schedule,
    repeats: usize,
) -> Result<MetaMeasurement> {
    use crate::kernels::matmul::Activation;
    use crate::meta::{MetaConfig, MetaTrainer};
    use crate::models::MlpSpec;
    use crate::optim::Optimizer;
    use crate::tasks::MlpTask;
    let (train, test) = crate::demo::synthetic_images(0, 2000, 500);
    let spec = MlpSpec::new(&[784, 20, 10], Activation::Sigmoid)?;
    let task = MlpTask::new(gpu, &spec, instances, 128, train, test, 7)?;
    let cfg = MetaConfig {
        unroll,
        schedule,
        ..Default::default()
    };
    let opt = Optimizer::parse("mlp")?;
    let mut tr = MetaTrainer::new(gpu.clone(), Box::new(task), opt, cfg)?;
    let step = median_seconds(repeats, || tr.meta_gradient().map(|_| ()))?;
    Ok(MetaMeasurement {
        label: format!(
            "mlp-opt on 784-20-10 MLPs N={instances} T={unroll} {}",
            schedule.name()
        ),
        step_seconds: step,
        inner_steps_per_second: (unroll * instances) as f64 / step,
        memory: tr.memory(),
    })
}
