//! Evaluation: run an inner optimizer (learned or hand-designed) for L steps on a task's
//! instances, forward only, the whole run in one submission; and a learning-rate grid search.

use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::vec::{self, View};
use crate::kernels::Batched;
use crate::optim::{Optimizer, StepArgs};
use crate::tasks::{BatchRef, LossGrad, Shard, Task, TaskRng};
use crate::{Error, Result};

/// Losses of every instance after each of `steps` inner steps: `(steps + 1) × N`, row t holding
/// ℓ_t = L(θ_t; batch t) (row 0 at the initial parameters).
pub struct Curves {
    /// Instances N.
    pub instances: usize,
    /// Row-major `(steps + 1) × N`.
    pub losses: Vec<f32>,
}

impl Curves {
    /// Mean over instances at each step.
    pub fn mean(&self) -> Vec<f64> {
        self.losses
            .chunks(self.instances)
            .map(|r| r.iter().map(|&v| f64::from(v)).sum::<f64>() / self.instances as f64)
            .collect()
    }

    /// Mean over instances after the last step.
    pub fn final_mean(&self) -> f64 {
        self.mean().last().copied().unwrap_or(f64::NAN)
    }
}

/// Run `opt` (with meta-parameters `phi`) for `steps` steps from `init` (N × P) on `task`.
pub fn evaluate(
    gpu: &Gpu,
    task: &dyn Task,
    opt: &Optimizer,
    phi: &[f32],
    init: &[f32],
    steps: usize,
) -> Result<Curves> {
    Ok(evaluate_with_held_out(gpu, task, opt, phi, init, steps, false)?.0)
}

/// As [`evaluate`], and when `held_out` also the loss of every θ_t on held-out batch t (the
/// query set of a few-shot task; a test batch of an image task), without affecting the run.
pub fn evaluate_with_held_out(
    gpu: &Gpu,
    task: &dyn Task,
    opt: &Optimizer,
    phi: &[f32],
    init: &[f32],
    steps: usize,
    held_out: bool,
) -> Result<(Curves, Option<Curves>)> {
    let n = task.instances();
    let p = task.layout().size();
    let c = n * p;
    if init.len() != c {
        return Err(Error::invalid(format!(
            "{} initial values given, the task needs N·P = {c}",
            init.len()
        )));
    }
    opt.check_phi(phi)?;
    let slot_len = opt.slot_len(c);
    let slots = [
        gpu.buffer("eval slot a", slot_len)?,
        gpu.buffer("eval slot b", slot_len)?,
    ];
    let phi_buf: GpuBuffer =
        gpu.buffer_from("eval phi", if phi.is_empty() { &[0.0] } else { phi })?;
    let g = gpu.buffer("eval gradient", c)?;
    let losses = gpu.buffer("eval losses", (steps + 1) * n)?;
    let held = if held_out {
        Some((
            gpu.buffer("eval held-out losses", (steps + 1) * n)?,
            gpu.buffer("eval held-out gradient", c)?,
        ))
    } else {
        None
    };
    gpu.write(&slots[0], 0, init)?;
    let mut rec = Recorder::new(gpu);
    if opt.state_len() > 0 {
        vec::fill(&mut rec, View::new(&slots[0], c), c * opt.state_len(), 0.0)?;
    }
    let grad = Batched::dense(&g, p);
    let ws = opt.workspace(gpu, task.layout(), n, false)?;
    for t in 0..=steps {
        let cur = &slots[t % 2];
        let theta = Batched {
            buf: cur,
            off: 0,
            batch_stride: p,
        };
        let loss = View::new(&losses, t * n);
        let batch = BatchRef::Train(t as u32);
        task.record_loss_grad(
            &mut rec,
            LossGrad {
                theta,
                grad,
                loss,
                batch,
            },
        )?;
        if let Some((hl, hg)) = &held {
            let at = LossGrad {
                theta,
                grad: Batched::dense(hg, p),
                loss: View::new(hl, t * n),
                batch: BatchRef::HeldOut(t as u32),
            };
            task.record_loss_grad(&mut rec, at)?;
        }
        if t < steps {
            opt.record_step(
                &mut rec,
                &StepArgs {
                    count: c,
                    slot_in: cur,
                    g: &g,
                    phi: (&phi_buf, 0),
                    phi_blocks: None,
                    slot_out: &slots[(t + 1) % 2],
                    t,
                    ws: &ws,
                },
            )?;
        }
    }
    rec.submit()?;
    let held = match &held {
        Some((hl, _)) => Some(Curves {
            instances: n,
            losses: gpu.read(hl)?,
        }),
        None => None,
    };
    Ok((
        Curves {
            instances: n,
            losses: gpu.read(&losses)?,
        },
        held,
    ))
}

/// Evaluate `make(lr)` for each learning rate of `grid` on `task` from `init`; return the
/// learning rate with the lowest mean final loss and its curves (L2L's tuning protocol).
pub fn tune_learning_rate(
    gpu: &Gpu,
    task: &dyn Task,
    make: impl Fn(f32) -> Optimizer,
    grid: &[f32],
    init: &[f32],
    steps: usize,
) -> Result<(f32, Curves)> {
    best_of(grid, |lr| evaluate(gpu, task, &make(lr), &[], init, steps))
}

/// The learning rate of `grid` whose curves `run(lr)` have the lowest finite mean final loss,
/// and those curves.
fn best_of(grid: &[f32], run: impl Fn(f32) -> Result<Curves>) -> Result<(f32, Curves)> {
    let mut best: Option<(f32, Curves)> = None;
    for &lr in grid {
        let c = run(lr)?;
        let f = c.final_mean();
        let better = match &best {
            None => f.is_finite(),
            Some((_, b)) => f.is_finite() && f < b.final_mean(),
        };
        if better {
            best = Some((lr, c));
        }
    }
    best.ok_or_else(|| Error::invalid("no learning rate of the grid gave a finite loss"))
}

/// A log-spaced grid from `lo` to `hi` with `k` points.
pub fn log_grid(lo: f32, hi: f32, k: usize) -> Vec<f32> {
    if k < 2 {
        return vec![lo];
    }
    (0..k)
        .map(|i| lo * (hi / lo).powf(i as f32 / (k - 1) as f32))
        .collect()
}

/// One set of task instances held as consecutive shards, one task each ([`Task::set_shard`]):
/// a set whose evaluation buffers would exceed the adapter's buffer limits as one task.
/// Evaluations run shard by shard and their curves are joined instance by instance, as one
/// task of every instance gives them.
pub struct Shards {
    parts: Vec<(Shard, Box<dyn Task>)>,
}

impl Shards {
    /// `n` instances in `k` shards ([`Shard::split`]): `build(count)` builds a task of `count`
    /// instances; each shard then draws the whole set's instances from a fresh `draw()` (the
    /// instance stream) and keeps its own, so that the shards together hold the instances of
    /// one task of all of them drawn so, whatever `k` ([`Task::resample`]). `whole`, a task of
    /// the `n` instances already built, serves when `k` is 1. Where the task of a shard exceeds
    /// the device's buffer limits itself, more shards are taken.
    pub fn build(
        gpu: &Gpu,
        (n, k): (usize, usize),
        whole: Option<Box<dyn Task>>,
        build: impl Fn(usize) -> Result<Box<dyn Task>>,
        draw: impl Fn() -> TaskRng,
    ) -> Result<Self> {
        let mut whole = whole.filter(|t| k == 1 && t.instances() == n);
        let mut k = k.max(1);
        // More shards where a shard's task exceeds the device's limits itself.
        loop {
            match Self::parts(gpu, (n, k), whole.take(), &build, &draw) {
                Err(Error::LimitExceeded { value, limit, .. }) if k < n && limit > 0 => {
                    let estimate = (k as u128 * value as u128).div_ceil(limit as u128);
                    k = (estimate.min(n as u128) as usize).max(k + 1);
                }
                other => return other,
            }
        }
    }

    fn parts(
        gpu: &Gpu,
        (n, k): (usize, usize),
        mut whole: Option<Box<dyn Task>>,
        build: &impl Fn(usize) -> Result<Box<dyn Task>>,
        draw: &impl Fn() -> TaskRng,
    ) -> Result<Self> {
        let mut parts = Vec::with_capacity(k);
        for sh in Shard::split(n, k)? {
            let mut t = match whole.take() {
                Some(t) => t,
                None => build(sh.count)?,
            };
            if !sh.is_whole() {
                t.set_shard(gpu, sh)?;
            }
            t.resample(gpu, &mut draw())?;
            parts.push((sh, t));
        }
        Ok(Self { parts })
    }

    /// The fewest shards of `n` instances for which an evaluation slot of `floats` floats per
    /// instance (θ and the optimizer's state, [`Optimizer::slot_len`] of one instance: the
    /// largest of the optimizers to evaluate) fits one buffer of `gpu`.
    pub fn needed(gpu: &Gpu, n: usize, floats: usize) -> usize {
        let l = &gpu.props().limits;
        let limit = l
            .max_buffer_size
            .min(l.max_storage_buffer_binding_size)
            .max(1);
        let most = (limit / (floats as u64 * 4).max(1)).max(1) as usize;
        n.div_ceil(most).clamp(1, n.max(1))
    }

    /// Shards.
    pub fn len(&self) -> usize {
        self.parts.len()
    }

    /// Always false: a set holds at least one shard.
    pub fn is_empty(&self) -> bool {
        self.parts.is_empty()
    }

    /// Instances of the whole set.
    pub fn instances(&self) -> usize {
        self.parts.iter().map(|(s, _)| s.count).sum()
    }

    /// The first shard's task: the family, its layout and what it scores.
    pub fn first(&self) -> &dyn Task {
        self.parts[0].1.as_ref()
    }

    /// The initial parameters of the whole set (N × P): each shard's from a fresh `rng()`.
    pub fn init_params(&self, rng: impl Fn() -> TaskRng) -> Result<Vec<f32>> {
        let mut v = Vec::new();
        for (_, t) in &self.parts {
            v.extend(t.init_params(&mut rng())?);
        }
        Ok(v)
    }

    /// [`evaluate_with_held_out`] of every shard from its rows of `init`, the curves joined.
    pub fn evaluate_with_held_out(
        &self,
        gpu: &Gpu,
        opt: &Optimizer,
        phi: &[f32],
        init: &[f32],
        steps: usize,
        held_out: bool,
    ) -> Result<(Curves, Option<Curves>)> {
        let p = self.first().layout().size();
        if init.len() != self.instances() * p {
            return Err(Error::invalid(format!(
                "{} initial values given, the {} instances need N·P = {}",
                init.len(),
                self.instances(),
                self.instances() * p
            )));
        }
        let mut runs = Vec::with_capacity(self.parts.len());
        for (sh, t) in &self.parts {
            let rows = &init[sh.first * p..(sh.first + sh.count) * p];
            runs.push(evaluate_with_held_out(
                gpu,
                t.as_ref(),
                opt,
                phi,
                rows,
                steps,
                held_out,
            )?);
        }
        let train: Vec<&Curves> = runs.iter().map(|r| &r.0).collect();
        let held: Option<Vec<&Curves>> = runs.iter().map(|r| r.1.as_ref()).collect();
        Ok((join(&train, steps), held.map(|h| join(&h, steps))))
    }

    /// [`tune_learning_rate`] over the whole set.
    pub fn tune_learning_rate(
        &self,
        gpu: &Gpu,
        make: impl Fn(f32) -> Optimizer,
        grid: &[f32],
        init: &[f32],
        steps: usize,
    ) -> Result<(f32, Curves)> {
        best_of(grid, |lr| {
            Ok(self
                .evaluate_with_held_out(gpu, &make(lr), &[], init, steps, false)?
                .0)
        })
    }
}

/// The curves of consecutive shards joined into the whole set's: row t of each in turn.
fn join(parts: &[&Curves], steps: usize) -> Curves {
    let n: usize = parts.iter().map(|c| c.instances).sum();
    let mut losses = Vec::with_capacity((steps + 1) * n);
    for t in 0..=steps {
        for c in parts {
            losses.extend_from_slice(&c.losses[t * c.instances..(t + 1) * c.instances]);
        }
    }
    Curves {
        instances: n,
        losses,
    }
}
