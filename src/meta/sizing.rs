//! What an unroll will allocate, known before it allocates anything: the checkpointing plan
//! and every buffer's size — the up-front memory estimate (`train --dry-run`) and the check
//! that a run fits the adapter.

use super::estimator::es::Particles;
use super::plan::{plan, slots_for_budget, Plan, Schedule};
use super::settings::{MemoryReport, MetaConfig};
use super::unroll::reptile_plan;
use crate::gpu::Gpu;
use crate::optim::{Mode, Optimizer};
use crate::Result;

/// What an unroll of `cfg` allocates, known before it allocates anything: the checkpointing
/// plan and the size of every buffer.
pub(crate) struct Sizing {
    pub(super) plan: Plan,
    /// Instances N, parameters P of one, unroll length T.
    n: usize,
    p: usize,
    t: usize,
    /// Floats of one checkpoint slot (θ and optimizer state of all instances).
    pub(super) slot_len: usize,
    /// Workgroups of the optimizer's reverse kernel (φ̄ partial sums).
    pub(super) groups: usize,
    phi_len: usize,
    state_len: usize,
    pub(super) second_order: bool,
    carry: bool,
    /// The particles' buffers (ES, PES).
    particles: Vec<(&'static str, u64)>,
}

impl Sizing {
    /// The plan and buffer sizes of `cfg` for `n` instances of `p` parameters under `opt`.
    pub(crate) fn new(
        gpu: &Gpu,
        n: usize,
        p: usize,
        opt: &Optimizer,
        cfg: &MetaConfig,
    ) -> Result<Self> {
        let t = cfg.unroll;
        let count = n.checked_mul(p).ok_or_else(|| {
            crate::Error::invalid(format!(
                "{n} instances × {p} parameters overflow the address space"
            ))
        })?;
        let slot_len = opt.slot_len(count);
        let plan = if cfg.mode == Mode::Reptile || cfg.estimator.particles().is_some() {
            reptile_plan(t)
        } else if let Some(budget) = cfg.memory_budget {
            let s = slots_for_budget(budget, slot_len as u64 * 4, t)?;
            plan(Schedule::Revolve(s), t)?
        } else {
            plan(cfg.schedule, t)?
        };
        Ok(Self {
            plan,
            n,
            p,
            t,
            slot_len,
            groups: opt.partial_groups(gpu, count)?,
            phi_len: opt.phi_len(),
            state_len: opt.state_len(),
            second_order: cfg.mode == Mode::SecondOrder,
            carry: cfg.episode > cfg.unroll,
            particles: cfg
                .estimator
                .particles()
                .map(|(es, persistent)| Particles::floats(&es, persistent, opt.phi_len() + p))
                .unwrap_or_default(),
        })
    }

    fn count(&self) -> usize {
        self.n * self.p
    }

    /// The working buffers (name, floats) besides the checkpoint slots.
    fn working(&self) -> Vec<(&'static str, u64)> {
        let c = self.count() as u64;
        let mut v = vec![
            ("gradient", c),
            ("theta adjoint", c),
            ("state adjoint", c * self.state_len as u64),
            ("phi partial sums", (self.groups * self.phi_len) as u64),
            ("losses", ((self.t + 1) * self.n) as u64),
            ("instance initialisations", c),
        ];
        if self.second_order {
            v.push(("gradient input adjoint", c));
            v.push(("Hessian-vector product", c));
        }
        if self.carry {
            v.push(("carried state", self.slot_len as u64));
        }
        v.extend_from_slice(&self.particles);
        v
    }

    /// The bytes the unroll holds, with the optimizer's workspace `ws_bytes` and the task's
    /// `task_bytes`.
    pub(crate) fn report(&self, ws_bytes: u64, task_bytes: u64) -> MemoryReport {
        let slot_bytes = self.slot_len as u64 * 4;
        MemoryReport {
            checkpoints: slot_bytes * self.plan.slots as u64,
            slots: self.plan.slots,
            slot_bytes,
            working: self.working().iter().map(|(_, f)| f * 4).sum::<u64>() + ws_bytes,
            task: task_bytes,
            chunks: 1,
        }
    }

    /// The run fits the adapter: every buffer within its size limits and, where the adapter
    /// reports its memory, everything together within it.
    pub(crate) fn check_fits(&self, gpu: &Gpu, ws_bytes: u64, task_bytes: u64) -> Result<()> {
        self.check_buffers(gpu)?;
        gpu.check_memory(self.report(ws_bytes, task_bytes).total())
    }

    /// Every buffer of the unroll within the adapter's buffer-size limits.
    fn check_buffers(&self, gpu: &Gpu) -> Result<()> {
        gpu.check_storage_size("checkpoint slot", self.slot_len as u64 * 4)?;
        for (name, floats) in self.working() {
            gpu.check_storage_size(name, floats * 4)?;
        }
        Ok(())
    }
}

/// The fewest chunks that `n` instances of `p` parameters must be split into (consecutive
/// shards as [`crate::tasks::Shard::split`] makes them, `cfg.memory_budget` shared among them)
/// for every buffer of each chunk's unroll to fit the adapter's buffer-size limits; the error
/// of one instance alone when even that does not fit.
pub(crate) fn chunks_needed(
    gpu: &Gpu,
    n: usize,
    p: usize,
    opt: &Optimizer,
    cfg: &MetaConfig,
) -> Result<usize> {
    let mut k = 1usize;
    loop {
        let largest = n.div_ceil(k);
        let mut part = cfg.clone();
        part.memory_budget = cfg.memory_budget.map(|b| b / k as u64);
        let fits = Sizing::new(gpu, largest, p, opt, &part).and_then(|s| s.check_buffers(gpu));
        match fits {
            Ok(()) => return Ok(k),
            Err(crate::Error::LimitExceeded { value, limit, .. }) if k < n && limit > 0 => {
                // Buffers grow with the instances of a chunk: jump to the estimate, at least
                // one more chunk.
                let estimate = (k as u128 * value as u128).div_ceil(limit as u128);
                k = (estimate.min(n as u128) as usize).max(k + 1);
            }
            Err(e) => return Err(e),
        }
    }
}
