//! Benchmark workloads shared by `metalearn bench` and the criterion benches: timed after a
//! warm-up, wall clock around submit + device sync, median of several runs.

use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::matmul::Activation;
use crate::kernels::Batched;
use crate::models::{GpuMlp, MlpSpec};
use crate::Result;

/// One MLP forward + backward benchmark case.
#[derive(Clone, Debug)]
pub struct MlpCase {
    /// Layer widths.
    pub widths: Vec<usize>,
    /// Hidden activation.
    pub activation: Activation,
    /// Rows per instance.
    pub batch: usize,
    /// Task instances per dispatch.
    pub instances: usize,
}

impl MlpCase {
    /// Short label, e.g. `784-20-10 sigmoid B=128 N=16`.
    pub fn label(&self) -> String {
        let w: Vec<String> = self.widths.iter().map(|w| w.to_string()).collect();
        format!(
            "{} {:?} B={} N={}",
            w.join("-"),
            self.activation,
            self.batch,
            self.instances
        )
        .to_lowercase()
    }
}

/// Buffers of an MLP case, filled with synthetic inputs.
pub struct MlpWorkload {
    case: MlpCase,
    spec: MlpSpec,
    mlp: GpuMlp,
    theta: GpuBuffer,
    x: GpuBuffer,
    labels: GpuBuffer,
    grad: GpuBuffer,
    loss: GpuBuffer,
}

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

impl MlpWorkload {
    /// Allocate and fill the case's buffers.
    pub fn new(gpu: &Gpu, case: &MlpCase) -> Result<Self> {
        let spec = MlpSpec::new(&case.widths, case.activation)?;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mlp = GpuMlp::new(gpu, &spec, case.instances, case.batch)?;
        let theta = gpu.buffer_from("theta", &spec.init(&mut rng, case.instances)?)?;
        let xs: Vec<f32> = (0..case.instances * case.batch * spec.inputs())
            .map(|_| rng.random_range(0.0..1.0))
            .collect();
        let ys: Vec<u32> = (0..case.instances * case.batch)
            .map(|_| rng.random_range(0..spec.classes() as u32))
            .collect();
        Ok(Self {
            x: gpu.buffer_from("x", &xs)?,
            labels: gpu.buffer_from("labels", &ys)?,
            grad: gpu.buffer("grad", theta.len())?,
            loss: gpu.buffer("loss", case.instances)?,
            theta,
            mlp,
            spec,
            case: case.clone(),
        })
    }

    /// Record `steps` forward + backward passes of all instances.
    pub fn record(&self, rec: &mut Recorder, steps: usize) -> Result<()> {
        let p = self.mlp.layout().size();
        let (b, d) = (self.case.batch, self.spec.inputs());
        for _ in 0..steps {
            self.mlp.record_loss_grad(
                rec,
                Batched::dense(&self.theta, p),
                Batched::dense(&self.x, b * d),
                Batched::dense(&self.labels, b),
                Batched::dense(&self.grad, p),
                &self.loss,
                0,
            )?;
        }
        Ok(())
    }

    /// Record, submit and wait for `steps` steps; the wall-clock time of the whole.
    pub fn run(&self, gpu: &Gpu, steps: usize) -> Result<Duration> {
        let t = Instant::now();
        let mut rec = Recorder::new(gpu);
        self.record(&mut rec, steps)?;
        rec.submit()?;
        gpu.wait()?;
        Ok(t.elapsed())
    }

    /// One warm-up run, then the median of `repeats` runs of `steps` steps.
    pub fn measure(&self, gpu: &Gpu, steps: usize, repeats: usize) -> Result<Measurement> {
        self.run(gpu, steps.min(2))?;
        let mut times: Vec<f64> = (0..repeats.max(1))
            .map(|_| self.run(gpu, steps).map(|d| d.as_secs_f64()))
            .collect::<Result<_>>()?;
        times.sort_by(f64::total_cmp);
        let step = times[times.len() / 2] / steps as f64;
        let n = self.case.instances as f64;
        Ok(Measurement {
            label: self.case.label(),
            steps,
            step_seconds: step,
            instance_steps_per_second: n / step,
            gflops: n * self.spec.flops_fwd_bwd(self.case.batch) / step / 1e9,
        })
    }
}

/// The default MLP cases: the L2L MNIST model and a wider one, at several instance counts.
pub fn default_mlp_cases(quick: bool) -> Vec<MlpCase> {
    let mut v = Vec::new();
    let counts: &[usize] = if quick { &[1, 16] } else { &[1, 16, 128, 1024] };
    for widths in [vec![784, 20, 10], vec![784, 128, 128, 10]] {
        for &instances in counts {
            v.push(MlpCase {
                widths: widths.clone(),
                activation: Activation::Sigmoid,
                batch: 128,
                instances,
            });
        }
    }
    v
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

/// Time outer steps of meta-training the L2L LSTM optimizer on 10-d quadratics: one warm-up
/// step, then the median of `repeats` steps.
pub fn measure_meta(
    gpu: &std::sync::Arc<Gpu>,
    instances: usize,
    unroll: usize,
    schedule: crate::meta::Schedule,
    repeats: usize,
) -> Result<MetaMeasurement> {
    use crate::kernels::lstm::LstmHyper;
    use crate::meta::{MetaConfig, MetaTrainer};
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
        Optimizer::Lstm(LstmHyper::default()),
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
    opt: &crate::optim::Optimizer,
    params: usize,
    tensors: usize,
    steps: usize,
    repeats: usize,
) -> Result<StepMeasurement> {
    use crate::optim::Optimizer;
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
    let ws = opt.workspace(gpu, &layout, 1)?;
    let run = |n: usize| -> Result<f64> {
        let mut rec = Recorder::new(gpu);
        for t in 0..n {
            opt.record_step(
                &mut rec,
                &ws,
                params,
                &slots[t % 2],
                &g,
                (&phi_buf, 0),
                &slots[(t + 1) % 2],
                t,
            )?;
        }
        let t0 = Instant::now();
        rec.submit()?;
        gpu.wait()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    run(2)?;
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| run(steps))
        .collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    let step = times[times.len() / 2] / steps as f64;
    let s = opt.state_len() as u64;
    let c = params as u64;
    // Reads θ, g and the state and writes θ and the state; the MLP optimizer reads θ, g and
    // the state once more for its per-tensor normalisers.
    let mut bytes = 4 * c * ((2 + s) + (1 + s));
    if let Optimizer::Mlp(_) = opt {
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
    let floats = floats / 4 * 4;
    let a = gpu.buffer("copy a", floats)?;
    let b = gpu.buffer("copy b", floats)?;
    let run = |n: usize| -> Result<f64> {
        let mut rec = Recorder::new(gpu);
        for _ in 0..n {
            crate::kernels::vec::copy4(&mut rec, &a, 0, &b, 0, floats)?;
        }
        let t0 = Instant::now();
        rec.submit()?;
        gpu.wait()?;
        Ok(t0.elapsed().as_secs_f64())
    };
    run(1)?;
    let mut times: Vec<f64> = (0..repeats.max(1))
        .map(|_| run(10))
        .collect::<Result<_>>()?;
    times.sort_by(f64::total_cmp);
    Ok(2.0 * 4.0 * floats as f64 * 10.0 / times[times.len() / 2] / 1e9)
}

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
