//! Export of one outer step: everything an independent implementation needs to recompute the
//! meta-loss and the meta-gradients, in one safetensors file (names in `docs/export.md`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use rand::{Rng, SeedableRng};

use super::save::write_atomically;
use super::settings::{FinalBatch, MetaConfig};
use super::tensor_file::{self, F32Tensor};
use super::trainer::MetaTrainer;
use crate::gpu::Gpu;
use crate::kernels::matmul::Activation;
use crate::meta::Schedule;
use crate::optim::{Mode, Optimizer};
use crate::tasks::mlp::MlpSpec;
use crate::tasks::{BatchRef, MlpTask, NamedTensor, QuadraticTask, Task, TaskRng};
use crate::{Error, Result};

/// Format tag written in the metadata.
pub const FORMAT: &str = "metalearn-export-1";

/// What [`export_outer_step`] wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// Meta-loss M.
    pub meta_loss: f32,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of the file.
    pub bytes: u64,
}

fn json_list(v: &[f32]) -> String {
    let s: Vec<String> = v.iter().map(|x| format!("{x:e}")).collect();
    format!("[{}]", s.join(","))
}

/// Compute the meta-gradient of one outer step on the trainer's current instances (no update)
/// and write it, with its inputs, to `path` (written to a temporary file, then renamed).
///
/// Inside an episode (`episode_offset` > 0) the unroll starts from the state carried from the
/// previous one: `init` is the carried θ, `init_state` the carried optimizer state, and the
/// batches are those of steps offset … offset + T.
pub fn export_outer_step(tr: &mut MetaTrainer, path: &Path) -> Result<ExportSummary> {
    let cfg = tr.config().clone();
    if cfg.mode == Mode::Reptile {
        return Err(Error::invalid(
            "export covers the first-order, truncated and second-order modes: Reptile has no backward pass to check; export with --mode first-order instead",
        ));
    }
    let (t, n) = (cfg.unroll, tr.task().instances());
    let layout = tr.task().layout().clone();
    let p = layout.size();
    let off = tr.episode_offset();
    let s_len = tr.optimizer().state_len();
    // Read before the unroll runs: it leaves the state it ends in for the next unroll.
    let carry = if off > 0 { tr.state()?.carry } else { None };
    let mg = tr.meta_gradient()?;
    let phi = tr.phi()?;
    let init: Vec<f32> = match &carry {
        Some(c) => c[..n * p].to_vec(),
        None if cfg.learn_init => {
            let th = tr.theta0()?;
            (0..n).flat_map(|_| th.iter().copied()).collect()
        }
        None => tr.instance_init()?,
    };
    let mut tensors: Vec<NamedTensor> = vec![
        ("init".into(), vec![n, p], init),
        ("weights".into(), vec![t + 1], tr.weights().to_vec()),
        ("losses".into(), vec![t + 1, n], mg.losses.clone()),
        ("meta_loss".into(), vec![1], vec![mg.meta_loss]),
        ("grad.theta0".into(), vec![p], mg.theta0.clone()),
        (
            "grad.theta0_per_instance".into(),
            vec![n, p],
            mg.theta0_per_instance.clone(),
        ),
    ];
    if let (Some(c), true) = (&carry, s_len > 0) {
        tensors.push(("init_state".into(), vec![s_len, n, p], c[n * p..].to_vec()));
    }
    if !phi.is_empty() {
        tensors.push(("phi".into(), vec![phi.len()], phi));
        tensors.push(("grad.phi".into(), vec![mg.phi.len()], mg.phi.clone()));
    }
    if cfg.learn_init {
        tensors.push(("theta0".into(), vec![p], tr.theta0()?));
    }
    let task = tr.task();
    if task.batched() {
        for s in 0..t {
            for (name, shape, v) in task.export_batch(BatchRef::Train((off + s) as u32))? {
                tensors.push((format!("batch.{s}.{name}"), shape, v));
            }
        }
        let fin = match cfg.final_batch {
            FinalBatch::Train => BatchRef::Train((off + t) as u32),
            FinalBatch::HeldOut => BatchRef::HeldOut((off + t) as u32),
        };
        for (name, shape, v) in task.export_batch(fin)? {
            tensors.push((format!("batch.{t}.{name}"), shape, v));
        }
    } else {
        for (name, shape, v) in task.export_batch(BatchRef::Train(0))? {
            tensors.push((format!("task.{name}"), shape, v));
        }
    }
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        meta.insert(k.to_string(), v);
    };
    put("format", FORMAT.into());
    put("instances", n.to_string());
    put("params", p.to_string());
    put("unroll", t.to_string());
    put("mode", cfg.mode.name().into());
    // The plan that ran: a memory budget replaces the schedule by Revolve.
    match cfg.memory_budget {
        Some(b) => {
            put("schedule", Schedule::Revolve(tr.plan().slots).name());
            put("memory_budget", b.to_string());
        }
        None => put("schedule", cfg.schedule.name()),
    }
    put(
        "final_batch",
        format!("{:?}", cfg.final_batch).to_lowercase(),
    );
    put("learn_init", cfg.learn_init.to_string());
    put("learn_optimizer", cfg.learn_optimizer.to_string());
    put("episode_offset", tr.episode_offset().to_string());
    put("weights", json_list(tr.weights()));
    let opt = tr.optimizer();
    put("optimizer", opt.name().into());
    for (k, v) in opt.hyper() {
        put(&format!("optimizer.{k}"), v);
    }
    let entries: Vec<String> = layout
        .entries()
        .iter()
        .map(|e| {
            let shape: Vec<String> = e.shape.iter().map(|d| d.to_string()).collect();
            format!(
                "{{\"name\":\"{}\",\"shape\":[{}],\"offset\":{},\"transposed\":{},\"tied\":{}}}",
                e.name,
                shape.join(","),
                e.offset,
                e.transposed,
                e.tied_to.is_some()
            )
        })
        .collect();
    put("layout", format!("[{}]", entries.join(",")));
    for (k, v) in task.describe() {
        put(&k, v);
    }
    let views: Vec<F32Tensor> = tensors
        .iter()
        .map(|(name, shape, v)| (name.as_str(), shape.as_slice(), v.as_slice()))
        .collect();
    let count = views.len();
    let data = tensor_file::serialize(&views, &meta)?;
    write_atomically(path, &data)?;
    Ok(ExportSummary {
        meta_loss: mg.meta_loss,
        tensors: count,
        bytes: data.len() as u64,
    })
}

/// The task family of an [`ExportOptions`] run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportTask {
    /// 4-d quadratics ‖Wθ − y‖².
    Quadratic,
    /// A 16-8-10 sigmoid MLP on synthetic images downsampled to 4 × 4, batches of 8 rows.
    Mlp,
}

impl ExportTask {
    /// Parse `quadratic` or `mlp`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "quadratic" => Ok(Self::Quadratic),
            "mlp" => Ok(Self::Mlp),
            other => Err(Error::invalid(format!(
                "unknown task '{other}'; use quadratic or mlp"
            ))),
        }
    }
}

/// A small meta-training setting for [`export_first_outer_step`] (`metalearn export`).
#[derive(Clone, Debug)]
pub struct ExportOptions {
    /// Task family.
    pub task: ExportTask,
    /// Inner optimizer, by its registry name (`lstm`, `linear`, `sgd`, `adam`, …).
    pub optimizer: String,
    /// Meta-gradient mode (not Reptile: it has no backward pass to check).
    pub mode: Mode,
    /// Unroll length T.
    pub unroll: usize,
    /// Task instances N.
    pub instances: usize,
    /// Also learn (and differentiate) the initialisation; always on for an optimizer without
    /// learned parameters.
    pub learn_init: bool,
    /// Seed of the task draws, the data and the trainer.
    pub seed: u64,
}

impl Default for ExportOptions {
    /// The defaults of `metalearn export`: the LSTM optimizer on 3 quadratics, truncated,
    /// T = 7, seed 0.
    fn default() -> Self {
        Self {
            task: ExportTask::Quadratic,
            optimizer: "lstm".into(),
            mode: Mode::Truncated,
            unroll: 7,
            instances: 3,
            learn_init: false,
            seed: 0,
        }
    }
}

impl ExportOptions {
    /// Check the sizes and the optimizer before anything is allocated: at least one instance
    /// and one inner step, at most [`MAX_EXPORT_VALUES`] values per stored step, a registered
    /// optimizer.
    pub fn validate(&self) -> Result<()> {
        if self.instances == 0 || self.unroll == 0 {
            return Err(Error::invalid(format!(
                "an export needs at least one instance and one inner step (got --instances {} \
                 --unroll {}); use e.g. --instances 3 --unroll 7",
                self.instances, self.unroll
            )));
        }
        let values = (self.instances as u128) * (self.unroll as u128 + 1);
        if values > MAX_EXPORT_VALUES as u128 {
            return Err(Error::invalid(format!(
                "an export of {} instances × {} inner steps stores every step of every instance \
                 ({values} steps in all, more than {MAX_EXPORT_VALUES}); an export is for checking \
                 a meta-gradient: use a few instances and a short unroll",
                self.instances, self.unroll
            )));
        }
        Optimizer::parse(&self.optimizer).map(|_| ())
    }
}

/// Most instance-steps (instances × (unroll + 1)) an export stores: every one is written to
/// the file with its batch, so this keeps files and memory small.
pub const MAX_EXPORT_VALUES: usize = 1 << 20;

/// Build a fresh trainer for `opts` and write its first outer step to `path` with
/// [`export_outer_step`].
pub fn export_first_outer_step(
    gpu: Arc<Gpu>,
    opts: &ExportOptions,
    path: &Path,
) -> Result<ExportSummary> {
    opts.validate()?;
    let mut rng = TaskRng::seed_from_u64(opts.seed);
    let task: Box<dyn Task> = match opts.task {
        ExportTask::Quadratic => Box::new(QuadraticTask::new(&gpu, 4, opts.instances, &mut rng)?),
        ExportTask::Mlp => {
            let (train, test) = crate::data::synthetic_images(opts.seed, 200, 100);
            let (train, test) = (train.downsample(4)?, test.downsample(4)?);
            let spec = MlpSpec::new(&[16, 8, 10], Activation::Sigmoid)?;
            let seed = rng.random();
            Box::new(MlpTask::new(
                &gpu,
                &spec,
                opts.instances,
                8,
                train,
                test,
                seed,
            )?)
        }
    };
    let opt = Optimizer::parse(&opts.optimizer)?;
    let cfg = MetaConfig {
        unroll: opts.unroll,
        mode: opts.mode,
        learn_init: opts.learn_init || !opt.is_learned(),
        learn_optimizer: opt.is_learned(),
        seed: opts.seed,
        ..Default::default()
    };
    let mut tr = MetaTrainer::new(gpu, task, opt, cfg)?;
    export_outer_step(&mut tr, path)
}
