//! MAML's few-shot sinusoid regression as a task: instance n is y = A_n·sin(x − φ_n) with
//! amplitude A_n ~ U[0.1, 5] and phase φ_n ~ U[0, π]; its K-shot support set (x ~ U[−5, 5]) is
//! the training batch of every inner step (the same K points each step, so [`Task::batched`] is
//! false), and a query set of the same sinusoid is its held-out batch. The model is an MLP
//! 1-40-40-1 (ReLU) with the squared-error loss (1/K) Σ_b (f(x_b) − y_b)². Data are drawn on the
//! CPU and uploaded: a few floats per instance. The model is the MLP of [`super::mlp`]; the
//! task's f64 reference (the waves, the regression loss on them) is [`mod@reference`].

pub mod reference;

use rand::Rng;

use super::mlp::{GpuMlp, Loss, MlpSpec};
use super::{
    BatchRef, Hvp, LossGrad, NamedTensor, Sample, Shard, Stream, Task, TaskFamily, TaskRng,
};
use crate::config::Config;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::matmul::Activation;
use crate::kernels::Batched;
use crate::params::ParamLayout;
use crate::{Error, Result};

/// `task.kind = "sinusoid"`: `task.hidden`, `task.activation`, K = `task.shots` support and as
/// many query points.
pub static FAMILY: TaskFamily = TaskFamily {
    name: "sinusoid",
    about: "MAML's few-shot sinusoid regression",
    hidden: &[40, 40],
    activation: Activation::Relu,
    check: |_| None,
    build,
    kernels: super::mlp::kernels,
};

fn build(gpu: &Gpu, cfg: &Config, sample: Sample, instances: usize) -> Result<Box<dyn Task>> {
    let mut rng = Stream::Instances.rng(cfg.seed, sample);
    let sc = SinusoidConfig {
        hidden: cfg.hidden()?,
        activation: cfg.activation()?,
        shots: cfg.task.shots,
        queries: cfg.task.shots,
        ..Default::default()
    };
    Ok(Box::new(SinusoidTask::new(gpu, &sc, instances, &mut rng)?))
}

/// The sinusoid family and its model.
#[derive(Clone, Debug, PartialEq)]
pub struct SinusoidConfig {
    /// Hidden widths of the MLP (inputs and outputs are 1).
    pub hidden: Vec<usize>,
    /// Activation of the hidden layers.
    pub activation: Activation,
    /// Support points K per instance (the training batch).
    pub shots: usize,
    /// Query points per instance (the held-out batch).
    pub queries: usize,
    /// Range of the amplitude A, drawn uniformly.
    pub amplitude: (f32, f32),
    /// Range of the phase φ, drawn uniformly.
    pub phase: (f32, f32),
    /// Range of the inputs x, drawn uniformly.
    pub x_range: (f32, f32),
}

impl Default for SinusoidConfig {
    /// MAML's setting: 1-40-40-1 ReLU, K = 10 shots, 10 query points, A ∈ [0.1, 5], φ ∈ [0, π],
    /// x ∈ [−5, 5].
    fn default() -> Self {
        Self {
            hidden: vec![40, 40],
            activation: Activation::Relu,
            shots: 10,
            queries: 10,
            amplitude: (0.1, 5.0),
            phase: (0.0, std::f32::consts::PI),
            x_range: (-5.0, 5.0),
        }
    }
}

impl SinusoidConfig {
    /// The model: widths 1, hidden…, 1, squared-error loss.
    pub fn spec(&self) -> Result<MlpSpec> {
        let mut widths = vec![1];
        widths.extend_from_slice(&self.hidden);
        widths.push(1);
        Ok(MlpSpec::new(&widths, self.activation)?.with_loss(Loss::Mse))
    }

    fn check(&self) -> Result<()> {
        if self.shots == 0 || self.queries == 0 {
            return Err(Error::invalid(
                "a sinusoid task needs at least one support and one query point",
            ));
        }
        for (what, (lo, hi)) in [
            ("amplitude", self.amplitude),
            ("phase", self.phase),
            ("x", self.x_range),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return Err(Error::invalid(format!(
                    "sinusoid {what} range [{lo}, {hi}] must be finite with low ≤ high"
                )));
            }
        }
        Ok(())
    }
}

/// Sampled sinusoids and their points, on the host.
#[derive(Clone, Debug, Default)]
struct Waves {
    amplitude: Vec<f32>,
    phase: Vec<f32>,
    support_x: Vec<f32>,
    support_y: Vec<f32>,
    query_x: Vec<f32>,
    query_y: Vec<f32>,
}

impl Waves {
    /// The first `drawn` instances' waves, `copies` times (copy c of instance n at c·drawn + n).
    fn tiled(&self, drawn: usize, (k, q): (usize, usize), copies: usize) -> Self {
        let tile = |v: &[f32], m: usize| v[..drawn * m].repeat(copies);
        Self {
            amplitude: tile(&self.amplitude, 1),
            phase: tile(&self.phase, 1),
            support_x: tile(&self.support_x, k),
            support_y: tile(&self.support_y, k),
            query_x: tile(&self.query_x, q),
            query_y: tile(&self.query_y, q),
        }
    }
}

/// N sinusoid regression instances, each with its own MLP parameters.
pub struct SinusoidTask {
    cfg: SinusoidConfig,
    spec: MlpSpec,
    /// Instances: `instances / drawn` copies of the `drawn` ones.
    instances: usize,
    drawn: usize,
    /// Where the drawn instances lie in the whole set ([`Task::set_shard`]).
    shard: Shard,
    waves: Waves,
    /// `[support x | support y | query x | query y]`, instance-major within each part.
    data: GpuBuffer,
    support: GpuMlp,
    query: GpuMlp,
}

impl SinusoidTask {
    /// N instances of the family `cfg`, drawn from `rng`.
    pub fn new(
        gpu: &Gpu,
        cfg: &SinusoidConfig,
        instances: usize,
        rng: &mut TaskRng,
    ) -> Result<Self> {
        cfg.check()?;
        let spec = cfg.spec()?;
        let (k, q) = (cfg.shots, cfg.queries);
        let mut task = Self {
            support: GpuMlp::new(gpu, &spec, instances, k)?,
            query: GpuMlp::new(gpu, &spec, instances, q)?,
            data: gpu.buffer("sinusoid data", 2 * instances * (k + q))?,
            cfg: cfg.clone(),
            spec,
            instances,
            drawn: instances,
            shard: Shard::whole(instances),
            waves: Waves::default(),
        };
        task.resample(gpu, rng)?;
        Ok(task)
    }

    /// The family.
    pub fn config(&self) -> &SinusoidConfig {
        &self.cfg
    }

    /// The model.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// Amplitude A_n of every instance.
    pub fn amplitudes(&self) -> &[f32] {
        &self.waves.amplitude
    }

    /// Phase φ_n of every instance.
    pub fn phases(&self) -> &[f32] {
        &self.waves.phase
    }

    /// The true function of instance `n` at `x`: A_n·sin(x − φ_n) (in f64).
    pub fn target(&self, n: usize, x: f64) -> Option<f64> {
        let a = f64::from(*self.waves.amplitude.get(n)?);
        let p = f64::from(*self.waves.phase.get(n)?);
        Some(a * (x - p).sin())
    }

    /// The points of instance `n` in `batch` (support set for `Train`, query set for
    /// `HeldOut`): (x, y), each K (or query-count) values.
    pub fn points(&self, n: usize, batch: BatchRef) -> Result<(&[f32], &[f32])> {
        if n >= self.instances {
            return Err(Error::invalid(format!(
                "instance {n} of a sinusoid task with {} instances",
                self.instances
            )));
        }
        let w = &self.waves;
        let (xs, ys, m) = match batch {
            BatchRef::Train(_) => (&w.support_x, &w.support_y, self.cfg.shots),
            BatchRef::HeldOut(_) => (&w.query_x, &w.query_y, self.cfg.queries),
        };
        Ok((&xs[n * m..(n + 1) * m], &ys[n * m..(n + 1) * m]))
    }

    /// The model's predictions at the points `xs` (e.g. a dense grid, for plotting fits) for
    /// every parameter block of `theta` (M blocks of P = `layout().size()` floats): `M × xs.len()`
    /// values, block after block. Runs one forward pass and waits for it.
    pub fn predict(&self, gpu: &Gpu, theta: &[f32], xs: &[f32]) -> Result<Vec<f32>> {
        let p = self.support.layout().size();
        if xs.is_empty() || theta.is_empty() || theta.len() % p != 0 {
            return Err(Error::invalid(format!(
                "predict needs at least one point and whole parameter blocks of {p} floats \
                 (got {} points, {} floats)",
                xs.len(),
                theta.len()
            )));
        }
        let m = theta.len() / p;
        let mlp = GpuMlp::new(gpu, &self.spec, m, xs.len())?;
        let gtheta = gpu.buffer_from("predict theta", theta)?;
        let x: Vec<f32> = (0..m).flat_map(|_| xs.iter().copied()).collect();
        let gx = gpu.buffer_from("predict x", &x)?;
        let mut rec = Recorder::new(gpu);
        mlp.record_forward(
            &mut rec,
            Batched::dense(&gtheta, p),
            Batched::dense(&gx, xs.len()),
        )?;
        rec.submit()?;
        let out = mlp
            .activations(self.spec.layers() - 1)
            .ok_or_else(|| Error::invalid("the model has no output layer"))?;
        gpu.read(out)
    }

    /// The points of every instance to the GPU.
    fn upload(&self, gpu: &Gpu) -> Result<()> {
        let w = &self.waves;
        let mut all = Vec::with_capacity(self.data.len());
        for part in [&w.support_x, &w.support_y, &w.query_x, &w.query_y] {
            all.extend_from_slice(part);
        }
        gpu.write(&self.data, 0, &all)
    }

    fn offsets(&self) -> [usize; 4] {
        let (n, k, q) = (self.instances, self.cfg.shots, self.cfg.queries);
        [0, n * k, 2 * n * k, 2 * n * k + n * q]
    }
}

fn draw(rng: &mut TaskRng, (lo, hi): (f32, f32)) -> f32 {
    rng.random_range(lo..=hi)
}

impl SinusoidTask {
    /// The model workspace and the x and y points of `batch`: the support set for training
    /// batches, the query set for held-out ones.
    fn set(&self, batch: BatchRef) -> (&GpuMlp, Batched<'_>, Batched<'_>) {
        let [sx, sy, qx, qy] = self.offsets();
        let (mlp, xo, yo, m) = match batch {
            BatchRef::Train(_) => (&self.support, sx, sy, self.cfg.shots),
            BatchRef::HeldOut(_) => (&self.query, qx, qy, self.cfg.queries),
        };
        let part = |off| Batched {
            buf: &self.data,
            off,
            batch_stride: m,
        };
        (mlp, part(xo), part(yo))
    }
}

impl Task for SinusoidTask {
    fn name(&self) -> String {
        let w: Vec<String> = self.spec.widths.iter().map(|w| w.to_string()).collect();
        format!(
            "sinusoid {} {:?} K={} N={}",
            w.join("-"),
            self.spec.activation,
            self.cfg.shots,
            self.instances
        )
        .to_lowercase()
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn layout(&self) -> &ParamLayout {
        self.support.layout()
    }

    fn resample(&mut self, gpu: &Gpu, rng: &mut TaskRng) -> Result<()> {
        let (n, k, q) = (self.drawn, self.cfg.shots, self.cfg.queries);
        let sh = self.shard;
        let mut w = Waves::default();
        // Every instance of the whole set is drawn; the shard's are kept.
        for i in 0..sh.total {
            let keep = (sh.first..sh.first + sh.count).contains(&i);
            let a = draw(rng, self.cfg.amplitude);
            let ph = draw(rng, self.cfg.phase);
            if keep {
                w.amplitude.push(a);
                w.phase.push(ph);
            }
            for (m, xs, ys) in [
                (k, &mut w.support_x, &mut w.support_y),
                (q, &mut w.query_x, &mut w.query_y),
            ] {
                for _ in 0..m {
                    let x = draw(rng, self.cfg.x_range);
                    if keep {
                        xs.push(x);
                        ys.push(reference::wave(a, ph, x) as f32);
                    }
                }
            }
        }
        self.waves = w.tiled(n, (k, q), self.instances / n);
        self.upload(gpu)
    }

    fn init_params(&self, rng: &mut TaskRng) -> Result<Vec<f32>> {
        let all = self.spec.init(rng, self.shard.total)?;
        Ok(self
            .shard
            .keep(&all, self.support.layout().size())
            .repeat(self.instances / self.drawn))
    }

    fn set_shard(&mut self, _gpu: &Gpu, shard: Shard) -> Result<()> {
        shard.check(&self.name(), self.drawn)?;
        self.shard = shard;
        Ok(())
    }

    /// Copies of the instances (each with its instance's wave and points): the data and the
    /// models' buffers grow to them (Hessian-vector workspaces allocated again where they were).
    fn set_copies(&mut self, gpu: &Gpu, copies: usize) -> Result<()> {
        let (n, k, q) = (
            super::copied(self.drawn, copies)?,
            self.cfg.shots,
            self.cfg.queries,
        );
        let hvp = self.support.has_hvp();
        self.support = GpuMlp::new(gpu, &self.spec, n, k)?;
        self.query = GpuMlp::new(gpu, &self.spec, n, q)?;
        if hvp {
            self.enable_hvp(gpu)?;
        }
        self.data = gpu.buffer("sinusoid data", 2 * n * (k + q))?;
        self.waves = self.waves.tiled(self.drawn, (k, q), copies);
        self.instances = n;
        self.upload(gpu)
    }

    fn record_loss_grad(&self, rec: &mut Recorder, at: LossGrad) -> Result<()> {
        let (mlp, x, y) = self.set(at.batch);
        mlp.record_loss_grad(rec, at.theta, x, y, at.grad, at.loss)
    }

    fn reference_loss_grad(
        &self,
        n: usize,
        theta: &[f64],
        batch: BatchRef,
    ) -> Result<(f64, Vec<f64>)> {
        let (x, y) = self.points(n, batch)?;
        reference::loss_grad((&self.spec, self.layout()), theta, (x, y))
    }

    fn enable_hvp(&mut self, gpu: &Gpu) -> Result<()> {
        self.support.enable_hvp(gpu)?;
        self.query.enable_hvp(gpu)
    }

    fn record_hvp(&self, rec: &mut Recorder, at: Hvp) -> Result<()> {
        let (mlp, x, y) = self.set(at.batch);
        mlp.record_hvp(rec, at.theta, at.v, x, y, at.out)
    }

    fn reference_hvp(
        &self,
        n: usize,
        theta: &[f64],
        v: &[f64],
        batch: BatchRef,
    ) -> Result<Vec<f64>> {
        let (x, y) = self.points(n, batch)?;
        reference::hvp((&self.spec, self.layout()), theta, v, (x, y))
    }

    fn export_batch(&self, batch: BatchRef) -> Result<Vec<NamedTensor>> {
        let n = self.instances;
        let w = &self.waves;
        let (xs, ys, m) = match batch {
            BatchRef::Train(_) => (&w.support_x, &w.support_y, self.cfg.shots),
            BatchRef::HeldOut(_) => (&w.query_x, &w.query_y, self.cfg.queries),
        };
        Ok(vec![
            ("x".into(), vec![n, m, 1], xs.clone()),
            ("y".into(), vec![n, m, 1], ys.clone()),
            ("amplitude".into(), vec![n], w.amplitude.clone()),
            ("phase".into(), vec![n], w.phase.clone()),
        ])
    }

    fn batched(&self) -> bool {
        false
    }

    fn scores_held_out(&self) -> bool {
        true
    }

    fn describe(&self) -> Vec<(String, String)> {
        let w: Vec<String> = self.spec.widths.iter().map(|w| w.to_string()).collect();
        let range = |(lo, hi): (f32, f32)| format!("[{lo},{hi}]");
        vec![
            ("task".into(), "sinusoid".into()),
            ("task.widths".into(), format!("[{}]", w.join(","))),
            (
                "task.activation".into(),
                format!("{:?}", self.spec.activation).to_lowercase(),
            ),
            ("task.shots".into(), self.cfg.shots.to_string()),
            ("task.queries".into(), self.cfg.queries.to_string()),
            ("task.amplitude".into(), range(self.cfg.amplitude)),
            ("task.phase".into(), range(self.cfg.phase)),
            ("task.x".into(), range(self.cfg.x_range)),
            (
                "task.loss".into(),
                "y = A sin(x - phase); loss (1/K) sum_b (f(x_b) - y_b)^2 over the K support \
                 points (train) or the query points (held-out); layer l: Z = H W + b"
                    .into(),
            ),
        ]
    }

    fn gpu_bytes(&self) -> u64 {
        self.support.bytes() + self.query.bytes() + self.data.bytes()
    }
}
