//! Data-parallel meta-training over several devices of one process, and over chunks of the
//! instances on one device.
//!
//! The N instances of an outer step are split into consecutive shards, one per device
//! ([`Shard::split`]); every device holds a [`MetaTrainer`] whose task keeps its shard of the
//! whole set's draws ([`Task::set_shard`]), so the devices together meta-train on exactly the
//! instances one device of N would. One outer step:
//!
//! 1. every device records and submits its unroll and reverse (no waits in between: the
//!    devices run at once);
//! 2. each device's meta-gradient g_r (φ̄ then θ̄0, the mean over its n_r instances) and
//!    meta-loss M_r are read back and summed on the host in device order, in f64:
//!    g = Σ_r (n_r / N)·g_r, M = Σ_r (n_r / N)·M_r — the mean over all N instances;
//! 3. the first device takes g and M, computes ‖g‖² and applies the meta-update (clipping, the
//!    non-finite guard, Adam); the new φ and θ0 are read back and written to every other device.
//!
//! The first device alone holds the meta-optimizer's moments, so every device continues from
//! the same meta-parameters bit for bit, whatever its hardware. With one device the outer step
//! is [`MetaTrainer::step`] itself. Against one device of N instances the meta-gradient differs
//! only by the order of the sums over instances (each shard's in its own reductions, then the
//! host's weighted sum): a few units of f32 rounding, not bit for bit.
//!
//! Chunks (`meta.chunks`, [`MetaConfig::chunks`]): each device's share is split again into K
//! consecutive shards, each meta-trained by a trainer of its own on that device, exactly as if
//! the device appeared K times; K = 0 picks the fewest chunks that make every buffer of a
//! chunk's unroll fit the adapter's buffer-size limits (so a checkpoint slot larger than one
//! buffer is no refusal), the same on every rank (the largest any rank needs). A memory budget
//! is shared among a device's chunks.
//!
//! Across processes (MPI ranks, [`Collective`]) each process runs this over its own devices;
//! the shards are those of all the ranks' devices in rank order, every rank's f64 sum is
//! gathered at rank 0 and added there in rank order, rank 0 updates and broadcasts the
//! meta-parameters and the status. With one device per rank that is the arithmetic of one
//! process with as many devices, bit for bit.

#[cfg(feature = "mpi")]
pub mod mpi;

use std::sync::Arc;

use crate::gpu::Gpu;
use crate::meta::{MemoryReport, MetaConfig, MetaTrainer, StepReport, TrainerState};
use crate::optim::Optimizer;
use crate::tasks::{Shard, Task};
use crate::{Error, Result};

/// The rank of this process among the MPI processes of its host, from the launcher's
/// environment (OpenMPI, MPICH, PMI), without initialising MPI: which of the host's adapters a
/// rank takes.
pub fn local_rank_from_env() -> Option<usize> {
    [
        "OMPI_COMM_WORLD_LOCAL_RANK",
        "MPI_LOCALRANKID",
        "PMI_LOCAL_RANK",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

/// Builds a task of `count` instances on a device: `(gpu, count)`.
pub type BuildTask<'a> = dyn Fn(&Arc<Gpu>, usize) -> Result<Box<dyn Task>> + 'a;

/// Data exchanged between the processes of one run, rank 0 the root. Every rank calls the
/// same operations in the same order; an operation that does not complete within the
/// implementation's timeout ends the run with an error naming it (a rank died or hangs).
pub trait Collective {
    /// This process's rank.
    fn rank(&self) -> usize;
    /// Processes.
    fn size(&self) -> usize;
    /// Every rank's `bytes` in rank order at the root; `None` on the other ranks.
    fn gather(&self, bytes: &[u8]) -> Result<Option<Vec<Vec<u8>>>>;
    /// The root's `bytes` on every rank (the others' are replaced).
    fn broadcast(&self, bytes: &mut Vec<u8>) -> Result<()>;
}

/// Meta-training of one set of instances split over several devices (and processes).
pub struct DataParallel {
    replicas: Vec<MetaTrainer>,
    shards: Vec<Shard>,
    /// Instances of every device of every rank, in rank then device order.
    counts: Vec<usize>,
    net: Option<Box<dyn Collective>>,
}

fn f64_bytes(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn bytes_f64(b: &[u8]) -> Vec<f64> {
    b.chunks_exact(8)
        .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect()
}

fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Every rank's `v`, in rank order, on every rank.
fn every_rank(n: &dyn Collective, v: u64) -> Result<Vec<u64>> {
    let mut all = n
        .gather(&v.to_le_bytes())?
        .map(|v| v.concat())
        .unwrap_or_default();
    n.broadcast(&mut all)?;
    Ok(all
        .chunks_exact(8)
        .map(|c| u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
        .collect())
}

/// The largest of every rank's `k` (this process's alone without a collective).
fn agree_max(net: Option<&dyn Collective>, k: usize) -> Result<usize> {
    Ok(match net {
        None => k,
        Some(n) => every_rank(n, k as u64)?
            .into_iter()
            .fold(k, |a, b| a.max(b as usize)),
    })
}

/// A task built for a shard, kept for reuse.
type Probe = Option<(Shard, Box<dyn Task>)>;

/// The chunks of each device's share (`cfg.chunks`, or when 0 the fewest that make every buffer
/// of the task and of the unroll fit, agreed by every rank), and the task of `first` (the first
/// shard of this rank without chunks) when it was built to learn the size of an instance: kept
/// for reuse when one chunk is enough.
fn choose_chunks(
    gpu: &Arc<Gpu>,
    first: Shard,
    task: &BuildTask,
    opt: &Optimizer,
    cfg: &MetaConfig,
    net: Option<&dyn Collective>,
) -> Result<(usize, Probe)> {
    // ES and PES draw their particles' noise per trainer: one chunk.
    if cfg.chunks > 0 || cfg.estimator.copies() > 1 {
        return Ok((cfg.chunks.max(1), None));
    }
    // The task's own buffers grow with its instances too: the fewest chunks whose largest
    // task can be built, then those whose unroll's buffers fit.
    let mut k = 1usize;
    let t = loop {
        let n = first.count.div_ceil(k);
        match task(gpu, n) {
            Ok(t) => break t,
            Err(Error::LimitExceeded { value, limit, .. }) if n > 1 && limit > 0 => {
                let estimate = (k as u128 * value as u128).div_ceil(limit as u128);
                k = (estimate.min(first.count as u128) as usize).max(k + 1);
            }
            Err(e) => return Err(e),
        }
    };
    let k = k.max(crate::meta::chunks_needed(
        gpu,
        first.count,
        t.layout().size(),
        opt,
        cfg,
    )?);
    if k > 1 {
        // Before any chunk is built: k chunks of the largest one's memory must fit the device
        // where it reports its memory.
        let mut part = cfg.clone();
        part.memory_budget = cfg.memory_budget.map(|b| b / k as u64);
        let largest = first.count.div_ceil(k);
        let mut t = match t.instances() == largest {
            true => t,
            false => task(gpu, largest)?,
        };
        let one = MetaTrainer::estimate(gpu, t.as_mut(), opt, &part)?;
        gpu.check_memory(one.total().saturating_mul(k as u64))?;
        return Ok((agree_max(net, k)?, None));
    }
    Ok((agree_max(net, k)?, Some((first, t))))
}

/// The task of shard `sh` on `gpu`: `probe` when it was built for it, else a new one.
fn shard_task(
    gpu: &Arc<Gpu>,
    sh: Shard,
    task: &BuildTask,
    probe: &mut Probe,
) -> Result<Box<dyn Task>> {
    let mut t = match probe.take() {
        Some((p, t)) if p == sh => t,
        _ => task(gpu, sh.count)?,
    };
    if t.instances() != sh.count {
        return Err(Error::invalid(format!(
            "the task built for a shard of {} instances has {}",
            sh.count,
            t.instances()
        )));
    }
    if !sh.is_whole() {
        t.set_shard(gpu, sh)?;
    }
    Ok(t)
}

/// The GPU memory that meta-training `instances` of `task` on `gpu` will hold, in as many
/// chunks as [`DataParallel`] would split them into ([`MetaTrainer::estimate`] of each chunk,
/// summed), and an error naming the limit when a chunk cannot fit.
pub fn estimate(
    gpu: &Arc<Gpu>,
    instances: usize,
    task: &BuildTask,
    opt: &Optimizer,
    cfg: &MetaConfig,
) -> Result<MemoryReport> {
    let (chunks, mut probe) = choose_chunks(gpu, Shard::whole(instances), task, opt, cfg, None)?;
    let mut part = cfg.clone();
    part.memory_budget = cfg.memory_budget.map(|b| b / chunks as u64);
    let mut parts = Vec::with_capacity(chunks);
    for sh in Shard::split(instances, chunks)? {
        let mut t = shard_task(gpu, sh, task, &mut probe)?;
        parts.push(MetaTrainer::estimate(gpu, t.as_mut(), opt, &part)?);
    }
    MemoryReport::sum(&parts).ok_or_else(|| Error::invalid("no instance to meta-train"))
}

impl DataParallel {
    /// Split `instances` over `gpus` (in order; a device may appear twice) and build a trainer
    /// on each: `task(gpu, count)` builds a task of `count` instances on `gpu` (its draws are
    /// replaced by the shard's, see [`Task::set_shard`]). φ and θ0 start as the first device's
    /// (those of one device of `instances`).
    pub fn new(
        gpus: &[Arc<Gpu>],
        instances: usize,
        task: &BuildTask,
        opt: Optimizer,
        cfg: MetaConfig,
    ) -> Result<Self> {
        Self::new_ranked(gpus, instances, task, opt, cfg, None)
    }

    /// [`DataParallel::new`] for one rank of several processes: `instances` are split over the
    /// devices of every rank (each rank passes as many), this rank's `gpus` take their shards.
    /// Every rank calls it at once; φ and θ0 start as rank 0's first device's.
    pub fn new_ranked(
        gpus: &[Arc<Gpu>],
        instances: usize,
        task: &BuildTask,
        opt: Optimizer,
        cfg: MetaConfig,
        net: Option<Box<dyn Collective>>,
    ) -> Result<Self> {
        if gpus.is_empty() {
            return Err(Error::invalid(
                "data-parallel meta-training needs at least one device",
            ));
        }
        let (rank, size) = net.as_ref().map_or((0, 1), |n| (n.rank(), n.size()));
        // Every rank must hold as many devices: each learns the others' count.
        if let Some(n) = &net {
            let counts = every_rank(n.as_ref(), gpus.len() as u64)?;
            if counts.iter().any(|&c| c != gpus.len() as u64) {
                return Err(Error::invalid(format!(
                    "the ranks hold {counts:?} devices each; every rank must hold as many (the same --adapters on every rank)"
                )));
            }
        }
        let local = gpus.len();
        let split = |chunks: usize| Shard::split(instances, local * size * chunks);
        let first = split(1)?[rank * local];
        let (chunks, mut probe) = choose_chunks(&gpus[0], first, task, &opt, &cfg, net.as_deref())?;
        if local * size * chunks > 1 && cfg.estimator.copies() > 1 {
            return Err(Error::invalid(format!(
                "meta.estimator = {} cannot be split across devices or chunks yet (its \
                 particles' noise is drawn per device); use meta.estimator = \"backprop\", one \
                 device and meta.chunks = 1",
                cfg.estimator.name()
            )));
        }
        let all = split(chunks)?;
        let counts = all.iter().map(|s| s.count).collect();
        let per_rank = local * chunks;
        let shards = all[rank * per_rank..(rank + 1) * per_rank].to_vec();
        let mut part = cfg.clone();
        part.memory_budget = cfg.memory_budget.map(|b| b / chunks as u64);
        let mut replicas = Vec::with_capacity(per_rank);
        for (j, sh) in shards.iter().enumerate() {
            let gpu = &gpus[j / chunks];
            let t = shard_task(gpu, *sh, task, &mut probe)?;
            replicas.push(MetaTrainer::new(gpu.clone(), t, opt.clone(), part.clone())?);
        }
        let mut dp = Self {
            replicas,
            shards,
            counts,
            net,
        };
        let mut start = f32_bytes(&dp.replicas[0].state()?.meta_params);
        if let Some(n) = &dp.net {
            n.broadcast(&mut start)?;
        }
        let start = bytes_f32(&start);
        let from = usize::from(dp.is_root());
        for t in &mut dp.replicas[from..] {
            t.write_meta_params(&start)?;
        }
        Ok(dp)
    }

    /// Whether this process is rank 0 (or the only one): the one that updates, writes metrics
    /// and checkpoints.
    pub fn is_root(&self) -> bool {
        self.net.as_ref().is_none_or(|n| n.rank() == 0)
    }

    /// The collective of a run over several processes.
    pub fn collective(&self) -> Option<&dyn Collective> {
        self.net.as_deref()
    }

    /// Trainers of this process (a device's chunks count one each), in shard order.
    pub fn devices(&self) -> usize {
        self.replicas.len()
    }

    /// The GPU memory of this process's trainers together ([`MemoryReport::sum`]).
    pub fn memory(&self) -> MemoryReport {
        let parts: Vec<MemoryReport> = self.replicas.iter().map(MetaTrainer::memory).collect();
        MemoryReport::sum(&parts).unwrap_or_else(|| self.replicas[0].memory())
    }

    /// The shards of this process's trainers.
    pub fn shards(&self) -> &[Shard] {
        &self.shards
    }

    /// The first device's trainer: φ, θ0, the optimizer, the configuration and the step count
    /// are every device's.
    pub fn first(&self) -> &MetaTrainer {
        &self.replicas[0]
    }

    /// The trainer of device `r`.
    pub fn trainer(&self, r: usize) -> Option<&MetaTrainer> {
        self.replicas.get(r)
    }

    /// Set φ on every device.
    pub fn set_phi(&mut self, phi: &[f32]) -> Result<()> {
        self.replicas.iter_mut().try_for_each(|t| t.set_phi(phi))
    }

    /// Set θ0 on every device.
    pub fn set_theta0(&mut self, theta0: &[f32]) -> Result<()> {
        self.replicas
            .iter_mut()
            .try_for_each(|t| t.set_theta0(theta0))
    }

    /// One outer step over every device (see the module's description), blocking until the
    /// update is read back. With one device in one process, [`MetaTrainer::step`].
    pub fn step(&mut self) -> Result<StepReport> {
        if self.replicas.len() == 1 && self.net.is_none() {
            return self.replicas[0].step();
        }
        self.step_exchanging()
    }

    /// The outer step of several devices (submit every unroll, sum the meta-gradients on the
    /// host, update on the first device, send the meta-parameters to the others), also with one
    /// device, where it gives [`MetaTrainer::step`]'s update bit for bit.
    pub fn step_exchanging(&mut self) -> Result<StepReport> {
        let mut offset = 0;
        for t in &mut self.replicas {
            offset = t.submit_gradient()?;
        }
        // This process's weighted sum, the meta-loss last.
        let mut sum: Vec<f64> = Vec::new();
        for (t, sh) in self.replicas.iter().zip(&self.shards) {
            let (mut g, l) = t.read_gradient()?;
            g.push(l);
            let w = sh.count as f64 / sh.total as f64;
            if sum.is_empty() {
                sum = vec![0.0; g.len()];
            }
            for (s, v) in sum.iter_mut().zip(&g) {
                *s += w * f64::from(*v);
            }
        }
        let total = match &self.net {
            None => Some(sum),
            Some(n) => n.gather(&f64_bytes(&sum))?.map(|parts| {
                let mut t = vec![0.0f64; sum.len()];
                for part in parts {
                    for (a, b) in t.iter_mut().zip(bytes_f64(&part)) {
                        *a += b;
                    }
                }
                t
            }),
        };
        // The root updates on its first device; the status and the new meta-parameters go to
        // every other device.
        let mut update = Vec::new();
        let mut grad_loss: Option<(Vec<f32>, f32)> = None;
        if let Some(total) = total {
            let loss = total.last().copied().unwrap_or(f64::NAN) as f32;
            let grad: Vec<f32> = total[..total.len().saturating_sub(1)]
                .iter()
                .map(|&v| v as f32)
                .collect();
            self.replicas[0].submit_update(&grad, loss, true)?;
            let (status, meta_params) = self.replicas[0].read_update()?;
            update = f32_bytes(&[status, meta_params].concat());
            grad_loss = Some((grad, loss));
        }
        if let Some(n) = &self.net {
            n.broadcast(&mut update)?;
        }
        let update = bytes_f32(&update);
        let len = crate::meta::meta_optim::status::LEN.min(update.len());
        let (status, meta_params) = update.split_at(len);
        let from = usize::from(grad_loss.is_some());
        for t in &mut self.replicas[from..] {
            t.submit_update(&[], 0.0, false)?;
            t.write_meta_params(meta_params)?;
        }
        self.replicas[0].report_status(status, offset)
    }

    /// The state to continue from: the first device's, with every device's carried state in
    /// shard order (of every rank, at rank 0) in the middle of an episode, and the shards'
    /// counts in [`TrainerState::shards`]. Every rank calls it at once; only rank 0's is whole.
    pub fn state(&self) -> Result<TrainerState> {
        let mut st = self.replicas[0].state()?;
        if self.counts.len() == 1 || st.offset == 0 {
            return Ok(st);
        }
        // Several devices run backprop only (no PES noise to carry).
        let (mut carry, mut task) = (Vec::new(), Vec::new());
        for t in &self.replicas {
            let s = t.state()?;
            carry.extend(s.carry.unwrap_or_default());
            task.extend(s.task_state.unwrap_or_default());
        }
        if let Some(n) = &self.net {
            for v in [&mut carry, &mut task] {
                if let Some(parts) = n.gather(&f32_bytes(v))? {
                    *v = parts.iter().flat_map(|p| bytes_f32(p)).collect();
                }
            }
        }
        st.carry = Some(carry);
        st.task_state = (!task.is_empty()).then_some(task);
        st.shards = self.counts.clone();
        Ok(st)
    }

    /// Continue from `state` ([`DataParallel::state`] or [`MetaTrainer::state`] of the same
    /// task, optimizer and config). In the middle of an episode it must have been saved by as
    /// many devices holding the same shards.
    pub fn restore(&mut self, state: &TrainerState) -> Result<()> {
        if state.offset == 0 || self.counts.len() == 1 {
            return self.replicas.iter_mut().try_for_each(|t| t.restore(state));
        }
        if state.shards != self.counts {
            return Err(Error::invalid(format!(
                "the state was saved in the middle of an episode by {} with instances {:?}; this run splits them {:?}: resume on the same devices, or from a checkpoint at an episode's start",
                match state.shards.len() {
                    0 => "one device".to_string(),
                    k => format!("{k} devices"),
                },
                state.shards,
                self.counts
            )));
        }
        let total: usize = self.counts.iter().sum();
        // Each instance's rows of a state saved for all of them.
        let per_instance = |what: &str, v: &[f32]| {
            if total == 0 || v.len() % total != 0 {
                return Err(Error::invalid(format!(
                    "the saved {what} has {} values, not a whole number per instance of {total}",
                    v.len()
                )));
            }
            Ok(v.len() / total)
        };
        let carry = state.carry.as_deref().unwrap_or_default();
        let per = per_instance("carried state", carry)?;
        let task = state.task_state.as_deref();
        let per_task = match task {
            Some(v) => per_instance("task state", v)?,
            None => 0,
        };
        for (t, sh) in self.replicas.iter_mut().zip(&self.shards) {
            let rows =
                |v: &[f32], per: usize| v[sh.first * per..(sh.first + sh.count) * per].to_vec();
            let mut part = state.clone();
            part.shards = Vec::new();
            part.carry = Some(rows(carry, per));
            part.task_state = task.map(|v| rows(v, per_task));
            t.restore(&part)?;
        }
        Ok(())
    }
}
