//! MLP forward + backward passes batched over task instances.

use std::io::Write;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};

use super::{io, median, skip_limit, BenchOptions, Measurement, MlpRow, Row};
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::matmul::Activation;
use crate::kernels::Batched;
use crate::tasks::mlp::{GpuMlp, MlpSpec};
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
                crate::kernels::vec::View::new(&self.loss, 0),
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
        let times: Vec<f64> = (0..repeats.max(1))
            .map(|_| self.run(gpu, steps).map(|d| d.as_secs_f64()))
            .collect::<Result<_>>()?;
        let step = median(times) / steps as f64;
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

/// The MLP part of [`run`](super::run): every case of [`default_mlp_cases`].
pub(super) fn run(gpu: &Gpu, opts: &BenchOptions, out: &mut dyn Write) -> Result<Vec<Row>> {
    let (steps, repeats) = (opts.steps, opts.repeats);
    let info = &gpu.props().info;
    writeln!(
        out,
        "MLP forward + backward on {} ({:?}), median of {repeats} runs of {steps} steps",
        info.name, info.backend
    )
    .map_err(io)?;
    writeln!(
        out,
        "{:<40} {:>12} {:>18} {:>10}",
        "case", "ms/step", "instance-steps/s", "GFLOP/s"
    )
    .map_err(io)?;
    let mut rows = Vec::new();
    for case in default_mlp_cases(opts.quick) {
        let measured =
            skip_limit(MlpWorkload::new(gpu, &case).and_then(|w| w.measure(gpu, steps, repeats)))?;
        let m = match measured {
            Ok(m) => m,
            Err(e) => {
                writeln!(out, "{:<40} skipped: {e}", case.label()).map_err(io)?;
                continue;
            }
        };
        writeln!(
            out,
            "{:<40} {:>12.3} {:>18.0} {:>10.1}",
            m.label,
            m.step_seconds * 1e3,
            m.instance_steps_per_second,
            m.gflops
        )
        .map_err(io)?;
        rows.push(Row::Mlp(MlpRow {
            case: m.label,
            steps: m.steps,
            step_seconds: m.step_seconds,
            instance_steps_per_second: m.instance_steps_per_second,
            gflops: m.gflops,
        }));
    }
    Ok(rows)
}
