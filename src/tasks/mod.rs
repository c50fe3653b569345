//! Task families: each samples N instances (own θ₀, own data) and records the loss and gradient
//! of all of them in one go, with an f64 reference of the same for testing. Each family lives in
//! its own folder with its model, its kernels and its reference, and is named in [`REGISTRY`]:
//! adding a task is one folder and one line there.

pub mod lm;
pub mod mlp;
pub mod quadratic;
pub mod sinusoid;
pub mod toy;

use crate::config::{Config, TaskConfig};
use crate::gpu::{Gpu, Kernel, Recorder};
use crate::kernels::matmul::Activation;
use crate::kernels::vec::View;
use crate::kernels::Batched;
use crate::params::ParamLayout;
use crate::{Error, Result};

pub use mlp::{ImageBatches, MlpTask, Objective};
pub use quadratic::QuadraticTask;
pub use sinusoid::{SinusoidConfig, SinusoidTask};

/// Every task family `task.kind` can name.
pub static REGISTRY: &[&TaskFamily] = &[
    &quadratic::FAMILY,
    &mlp::CLASSIFIER,
    &sinusoid::FAMILY,
    &mlp::AUTOENCODER,
    &toy::FAMILY,
    &lm::meta::FAMILY,
];

/// Builds `instances` instances of a family as a config describes it, from a draw.
pub type BuildTask = fn(&Gpu, &Config, Sample, usize) -> Result<Box<dyn Task>>;

/// A task family as a run configuration names it.
#[derive(Debug)]
pub struct TaskFamily {
    /// Its `task.kind`.
    pub name: &'static str,
    /// One line saying what it is.
    pub about: &'static str,
    /// Hidden widths of its model when `task.hidden` is not given (empty: no model widths).
    pub hidden: &'static [usize],
    /// Hidden activation of its model when `task.activation` is not given.
    pub activation: Activation,
    /// A `[task]` setting the family cannot work with: (problem, fix), checked with the config.
    pub check: fn(&TaskConfig) -> Option<(String, String)>,
    /// `instances` instances of the family as `cfg` describes it, from the draw `sample`.
    pub build: BuildTask,
    /// The kernels of its model.
    pub kernels: fn() -> Vec<&'static Kernel>,
}

/// The family `task.kind = name` names.
pub fn family(name: &str) -> Result<&'static TaskFamily> {
    REGISTRY
        .iter()
        .copied()
        .find(|f| f.name == name)
        .ok_or_else(|| {
            let names: Vec<&str> = REGISTRY.iter().map(|f| f.name).collect();
            Error::invalid(format!(
                "unknown task '{name}': the task families are {}",
                names.join(", ")
            ))
        })
}

/// `instances` instances of the task family `cfg` configures, from the draw `sample`.
pub fn build_task(
    gpu: &Gpu,
    cfg: &Config,
    sample: Sample,
    instances: usize,
) -> Result<Box<dyn Task>> {
    (family(&cfg.task.kind)?.build)(gpu, cfg, sample, instances)
}

/// The model kernels of every registered family, and of the language model, each once.
pub fn kernels() -> Vec<&'static Kernel> {
    let mut v: Vec<&'static Kernel> = Vec::new();
    let families = REGISTRY.iter().map(|f| (f.kernels)());
    let lm_kernels = [
        lm::kernels::SHADER.kernels.to_vec(),
        lm::dynamic::SHADER.kernels.to_vec(),
    ];
    for ks in families.chain(lm_kernels) {
        for k in ks {
            if !v.iter().any(|x| std::ptr::eq(*x, k)) {
                v.push(k);
            }
        }
    }
    v
}

/// Which instances a task is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sample {
    /// The meta-training family (training split of image data).
    Train,
    /// Instances for tuning baselines: the training family, another seed.
    Tune,
    /// Held-out instances: another seed; image tasks train on the test split's images.
    HeldOut,
}

impl Sample {
    /// What is mixed into the run's seed for this draw.
    pub fn salt(self) -> u64 {
        match self {
            Sample::Train => 0,
            Sample::Tune => 0x7475_6e65,
            Sample::HeldOut => 0x6576_616c,
        }
    }
}

/// The random generator tasks draw from: ChaCha12, the generator behind `rand::rngs::StdRng`
/// (same stream for the same seed), used directly because its position can be saved and
/// restored (see [`crate::meta::TrainerState`]) and because it has independent streams
/// ([`Stream`]).
pub type TaskRng = rand_chacha::ChaCha12Rng;

/// What a random stream is drawn for. Every purpose has its own ChaCha12 stream: the key comes
/// from the run's seed and the draw's [`Sample::salt`], the stream id from the purpose, so the
/// numbers one purpose draws never repeat, shift or depend on those another purpose draws
/// (drawing more instances never changes the initial θ, and the reverse).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Task instances and their data: the quadratics' W and y, the sinusoids' amplitudes,
    /// phases and points, the seeds of image batches — one episode after the other (stream 0,
    /// the stream a task is built from; its position is saved in checkpoints).
    Instances,
    /// Initial parameters θ of the instances of episode `e` (episodes count from 0; a task
    /// that is not meta-trained, as in an evaluation, uses episode 0). Each episode has a
    /// stream of its own, so nothing needs saving to redraw it.
    Init(u64),
    /// Initial meta-parameters: φ of a learned optimizer, then the starting point of a learned
    /// initialisation θ0.
    Meta,
}

impl Stream {
    /// The ChaCha stream id: 0 for instances, 1 for meta-parameters, 2⁶³ + e for the initial θ
    /// of episode e.
    pub fn id(self) -> u64 {
        match self {
            Stream::Instances => 0,
            Stream::Meta => 1,
            Stream::Init(e) => (1 << 63) | (e & !(1 << 63)),
        }
    }

    /// The generator of this purpose for the draw `sample` of a run seeded `seed`, at the
    /// start of its stream.
    pub fn rng(self, seed: u64, sample: Sample) -> TaskRng {
        use rand::SeedableRng;
        let mut rng = TaskRng::seed_from_u64(seed ^ sample.salt());
        rng.set_stream(self.id());
        rng
    }
}

/// Which batch a loss is computed on. Batches are a pure function of (seed of the outer step,
/// instance, step), so a recomputed step sees exactly the data of the first computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchRef {
    /// The training batch of inner step t.
    Train(u32),
    /// A batch from the held-out split (or held-out stream), numbered t.
    HeldOut(u32),
}

/// Where [`Task::record_loss_grad`] reads and writes: the parameters and the gradient of every
/// instance, instance n's loss at `loss.off + n`, and the batch.
#[derive(Clone, Copy, Debug)]
pub struct LossGrad<'a> {
    /// Parameters of every instance.
    pub theta: Batched<'a>,
    /// Gradient of every instance, laid out as `theta`.
    pub grad: Batched<'a>,
    /// Where the losses go.
    pub loss: View<'a>,
    /// Which batch.
    pub batch: BatchRef,
}

/// Where [`Task::record_hvp`] reads and writes: `out = ∇²L(θ; batch)·v`.
#[derive(Clone, Copy, Debug)]
pub struct Hvp<'a> {
    /// Parameters of every instance.
    pub theta: Batched<'a>,
    /// The direction, laid out as `theta`.
    pub v: Batched<'a>,
    /// The product, laid out as `theta` (no alias of `theta` or `v`).
    pub out: Batched<'a>,
    /// Which batch.
    pub batch: BatchRef,
}

/// A named tensor of exported data: (name, shape, values).
pub type NamedTensor = (String, Vec<usize>, Vec<f32>);

/// The instances of `copies` copies of `drawn` ones ([`Task::set_copies`]), or an error for no
/// copy or an overflow.
pub fn copied(drawn: usize, copies: usize) -> Result<usize> {
    match drawn.checked_mul(copies) {
        Some(n) if copies > 0 => Ok(n),
        _ => Err(Error::invalid(format!(
            "{copies} copies of {drawn} instances: a task needs at least one copy, and no more \
             instances than the address space holds"
        ))),
    }
}

/// Instances `first..first + count` of a set of `total`: the part of one set of task instances
/// that one device (or one MPI rank) holds in data-parallel meta-training ([`Task::set_shard`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// Index of the shard's first instance in the whole set.
    pub first: usize,
    /// Instances in the shard.
    pub count: usize,
    /// Instances in the whole set.
    pub total: usize,
}

impl Shard {
    /// The whole set of `n` instances as one shard.
    pub fn whole(n: usize) -> Self {
        Self {
            first: 0,
            count: n,
            total: n,
        }
    }

    /// `total` instances split into `parts` consecutive shards as even as possible (the first
    /// `total mod parts` shards hold one more); an error for no part or more parts than
    /// instances.
    pub fn split(total: usize, parts: usize) -> Result<Vec<Self>> {
        if parts == 0 || parts > total {
            return Err(Error::invalid(format!(
                "{total} instances cannot be split over {parts} devices: every device needs at \
                 least one instance; use more instances (task.instances), fewer devices or fewer chunks (meta.chunks)"
            )));
        }
        let (base, extra) = (total / parts, total % parts);
        let mut first = 0;
        Ok((0..parts)
            .map(|r| {
                let count = base + usize::from(r < extra);
                let s = Self {
                    first,
                    count,
                    total,
                };
                first += count;
                s
            })
            .collect())
    }

    /// The shard's rows of `all` (the whole set's values, `per` per instance).
    pub fn keep<T: Clone>(&self, all: &[T], per: usize) -> Vec<T> {
        all[self.first * per..(self.first + self.count) * per].to_vec()
    }

    /// Whether the shard is the whole set.
    pub fn is_whole(&self) -> bool {
        self.count == self.total
    }

    /// An error unless `drawn` (the task's distinct instances) is the shard's count and the
    /// shard lies inside its set.
    pub fn check(&self, task: &str, drawn: usize) -> Result<()> {
        if self.count != drawn || self.count == 0 || self.first + self.count > self.total {
            return Err(Error::invalid(format!(
                "the shard of instances {}..{} of {} does not fit the task {task} with {drawn} \
                 distinct instances: build the task with the shard's count of instances, before \
                 any copies",
                self.first,
                self.first + self.count,
                self.total
            )));
        }
        Ok(())
    }
}

/// A family of tasks with N instances batched on the GPU.
pub trait Task: Send + Sync {
    /// A short description.
    fn name(&self) -> String;

    /// Number of instances N.
    fn instances(&self) -> usize;

    /// Parameter layout of one instance (P = `layout().size()` floats).
    fn layout(&self) -> &ParamLayout;

    /// Draw new instances or batches for the next outer step (queued uploads, no wait).
    fn resample(&mut self, gpu: &Gpu, rng: &mut TaskRng) -> Result<()>;

    /// Run `copies` copies of every instance (the particles of an evolution-strategies
    /// estimate): afterwards [`Task::instances`] counts `copies · N`, and copy c of instance n
    /// is instance c·N + n, with n's problem, data, batches and initial draw. Families that
    /// cannot copy their instances return an error naming the family.
    fn set_copies(&mut self, _gpu: &Gpu, _copies: usize) -> Result<()> {
        Err(Error::invalid(format!(
            "the task {} cannot run copies of its instances, which the evolution-strategies \
             estimators need; use task.kind = quadratic, mlp, autoencoder, sinusoid or pes_toy, or \
             meta.estimator = backprop",
            self.name()
        )))
    }

    /// Hold the instances of `shard` (data-parallel meta-training, see [`crate::dist`]): the
    /// task was built with `shard.count` instances and no copies; afterwards every draw
    /// ([`Task::resample`], [`Task::init_params`]) and every batch is that of the whole set of
    /// `shard.total` instances, of which only the shard's are kept, so the shards of one set
    /// hold exactly the instances a task of `shard.total` would. Families that cannot return an
    /// error naming the family.
    fn set_shard(&mut self, _gpu: &Gpu, _shard: Shard) -> Result<()> {
        Err(Error::invalid(format!(
            "the task {} cannot split its instances across devices; use task.kind = quadratic, \
             mlp, autoencoder, sinusoid or pes_toy, or one device",
            self.name()
        )))
    }

    /// Floats per instance of the state the task carries from one inner step to the next
    /// that is not a parameter: a language model's hidden state, which chunk k leaves for
    /// chunk k + 1. It enters step k's loss as an input detached from the meta-gradient
    /// (truncated BPTT), is kept for every step of the episode (so a recomputed step reads and
    /// writes exactly what it did the first time) and is saved with checkpoints taken in the
    /// middle of an episode. 0 for none.
    fn carried_len(&self) -> usize {
        0
    }

    /// The carried state of every instance before episode step `step` (N × [`Task::carried_len`],
    /// read back); empty for a task that carries none.
    fn carried_state(&self, _gpu: &Gpu, _step: usize) -> Result<Vec<f32>> {
        Ok(Vec::new())
    }

    /// Set the carried state before episode step `step` (continuing an episode from a
    /// checkpoint, after [`Task::resample`] redrew it).
    fn set_carried_state(&mut self, _gpu: &Gpu, _step: usize, values: &[f32]) -> Result<()> {
        if values.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "the task {} carries no state from step to step, but {} values were given: the \
                 checkpoint belongs to another task",
                self.name(),
                values.len()
            )))
        }
    }

    /// Initial parameters of every instance, `N × P`, drawn from the family's distribution.
    /// Callers pass the [`Stream::Init`] generator, never the one the instances were drawn
    /// from (the draws would then repeat the instances' numbers).
    fn init_params(&self, rng: &mut TaskRng) -> Result<Vec<f32>>;

    /// Record the loss (`at.loss.off + n`) and gradient of every instance at `at.theta` on
    /// `at.batch`.
    fn record_loss_grad(&self, rec: &mut Recorder, at: LossGrad) -> Result<()>;

    /// f64 reference of the loss and gradient of instance `n` at `theta` on `batch`.
    fn reference_loss_grad(
        &self,
        n: usize,
        theta: &[f64],
        batch: BatchRef,
    ) -> Result<(f64, Vec<f64>)>;

    /// Allocate what [`Task::record_hvp`] needs. Tasks without a Hessian-vector product return
    /// an error naming the task (second-order mode is then unavailable).
    fn enable_hvp(&mut self, _gpu: &Gpu) -> Result<()> {
        Err(no_hvp(&self.name()))
    }

    /// Record the exact Hessian-vector product `at.out = ∇²L(θ; batch)·v` of every instance
    /// (`v` and `out` laid out as `theta`; `out` must not alias `theta` or `v`). Needs
    /// [`Task::enable_hvp`]. May overwrite the task's model activations and gradient buffers.
    fn record_hvp(&self, _rec: &mut Recorder, _at: Hvp) -> Result<()> {
        Err(no_hvp(&self.name()))
    }

    /// f64 reference of the Hessian-vector product of instance `n` at `theta` along `v`.
    fn reference_hvp(
        &self,
        _n: usize,
        _theta: &[f64],
        _v: &[f64],
        _batch: BatchRef,
    ) -> Result<Vec<f64>> {
        Err(no_hvp(&self.name()))
    }

    /// The data instance inputs at `batch`, for export (all instances).
    fn export_batch(&self, batch: BatchRef) -> Result<Vec<NamedTensor>>;

    /// True when different steps see different data (false: every step sees the same function).
    fn batched(&self) -> bool {
        true
    }

    /// True when the task is scored on its held-out batches after training on its training
    /// batches (few-shot learning: support and query sets); evaluations then report both.
    fn scores_held_out(&self) -> bool {
        false
    }

    /// Description of the task for exported files: key/value pairs.
    fn describe(&self) -> Vec<(String, String)>;

    /// Bytes of GPU memory the task holds (data, batches, activations of its model).
    fn gpu_bytes(&self) -> u64;
}

/// The error of the Hessian-vector product methods of tasks that have none.
fn no_hvp(task: &str) -> Error {
    Error::invalid(format!(
        "second-order mode is not available for task {task}: it has no Hessian-vector product"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names_are_unique_and_unknown_names_list_them() {
        for (i, f) in REGISTRY.iter().enumerate() {
            assert!(
                REGISTRY[i + 1..].iter().all(|g| g.name != f.name),
                "{}",
                f.name
            );
            assert!(std::ptr::eq(family(f.name).unwrap(), *f));
        }
        let e = family("cnn").unwrap_err().to_string();
        for f in REGISTRY {
            assert!(e.contains(f.name), "{e}");
        }
    }

    #[test]
    fn family_checks_run_with_the_config() {
        let mut c = Config::default();
        c.task.kind = "autoencoder".into();
        c.task.hidden = Some(vec![]);
        let e = c.validate("test").unwrap_err().to_string();
        assert!(e.contains("code layer"), "{e}");
        c.task.kind = "mlp".into();
        assert!(c.validate("test").is_ok());
        assert_eq!(c.hidden().unwrap(), Vec::<usize>::new());
        c.task.hidden = None;
        assert_eq!(c.hidden().unwrap(), vec![20]);
        c.task.kind = "sinusoid".into();
        assert_eq!(c.activation().unwrap(), Activation::Relu);
    }
}
