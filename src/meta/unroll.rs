//! The executor of one unroll: it replays a checkpointing [`Plan`] on the GPU — the forward
//! steps, the final loss term, the reverse steps (with the Hessian-vector product in
//! second-order mode) — and the reductions into the meta-gradient, the meta-loss and the
//! gradient norm. It only records; the caller submits and waits.

use super::estimator::es::{self, Draw, Particles};
use super::meta_optim::{self, status};
use super::plan::{Action, Plan};
use super::settings::{FinalBatch, MemoryReport, MetaConfig};
use super::sizing::Sizing;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::reduce::{reduce, Out, ReduceOp, ReduceStrategy, Reduction, Strided};
use crate::kernels::vec::{self, View};
use crate::kernels::Batched;
use crate::optim::{Mode, Optimizer, StepArgs, VjpArgs, Workspace};
use crate::tasks::{BatchRef, Hvp, LossGrad, Task};
use crate::Result;

/// What an unroll reads and writes besides its own buffers.
pub(crate) struct Io<'a> {
    /// The task family (current instances and batches).
    pub task: &'a dyn Task,
    /// The inner optimizer.
    pub opt: &'a Optimizer,
    /// The optimizer's workspace.
    pub ws: &'a Workspace,
    /// The settings of meta-training.
    pub cfg: &'a MetaConfig,
    /// φ followed by θ0.
    pub meta_params: &'a GpuBuffer,
    /// The status slots ([`status`]): receives the meta-loss and the squared gradient norm.
    pub status: &'a GpuBuffer,
    /// The per-instance initial parameters used when θ0 is not learned (N × P).
    pub init: &'a GpuBuffer,
    /// θ and optimizer state carried from one unroll of an episode to the next.
    pub carry: Option<&'a GpuBuffer>,
    /// Whether the final state is written to `carry` for the next unroll (an outer step), or
    /// the carried state left as it was (an inspection of the meta-gradient).
    pub carry_out: bool,
    /// Inner steps already taken in the current episode.
    pub offset: usize,
    /// The outer step this unroll belongs to (from 1): it names the noise of ES and PES.
    pub draw: u64,
}

/// The buffers of second-order mode: ḡ (the adjoint of the optimizer's gradient input) and
/// H·ḡ, C floats each.
struct SecondOrderBuffers {
    gbar: GpuBuffer,
    hv: GpuBuffer,
}

/// The GPU buffers of one unroll and its reverse, and the plan that drives them.
pub(crate) struct Unroll {
    plan: Plan,
    weights: Vec<f32>,
    params: usize,
    count: usize,
    groups: usize,
    slots: Vec<GpuBuffer>,
    g: GpuBuffer,
    tbar: GpuBuffer,
    sbar: GpuBuffer,
    partials: GpuBuffer,
    second_order: Option<SecondOrderBuffers>,
    losses: GpuBuffer,
    weights_buf: GpuBuffer,
    meta_grad: GpuBuffer,
    /// ES and PES: the particles (the task's instances are their copies).
    particles: Option<Particles>,
}

impl Unroll {
    /// Allocate the buffers of `size` (checked to fit first, with the optimizer's workspace of
    /// `ws_bytes`); in second-order mode the task's Hessian-vector product is enabled too.
    pub(crate) fn new(
        gpu: &Gpu,
        task: &mut dyn Task,
        opt: &Optimizer,
        cfg: &MetaConfig,
        ws_bytes: u64,
    ) -> Result<Self> {
        let n = task.instances();
        let p = task.layout().size();
        let size = Sizing::new(gpu, n, p, opt, cfg)?;
        // The optimizer's support of second-order mode is checked by `MetaConfig::validate`.
        if size.second_order {
            task.enable_hvp(gpu)?;
        }
        size.check_fits(gpu, ws_bytes, task.gpu_bytes())?;
        let t = cfg.unroll;
        let weights = cfg.weights.resolve(t)?;
        let count = n * p;
        let second_order = if size.second_order {
            Some(SecondOrderBuffers {
                gbar: gpu.buffer("gradient input adjoint", count)?,
                hv: gpu.buffer("Hessian-vector product", count)?,
            })
        } else {
            None
        };
        let slots = (0..size.plan.slots)
            .map(|i| gpu.buffer(&format!("checkpoint slot {i}"), size.slot_len))
            .collect::<Result<Vec<_>>>()?;
        let phi_len = opt.phi_len();
        let particles = match cfg.estimator.particles() {
            Some(es) => {
                let copies = cfg.estimator.copies();
                if n % copies != 0 {
                    return Err(crate::Error::invalid(format!(
                        "{n} instances are not {copies} copies of the task's instances: call \
                         Task::set_copies before building the unroll"
                    )));
                }
                Some(Particles::new(gpu, es, phi_len, p, n / copies)?)
            }
            None => None,
        };
        Ok(Self {
            particles,
            g: gpu.buffer("gradient", count)?,
            tbar: gpu.buffer("theta adjoint", count)?,
            sbar: gpu.buffer("state adjoint", count * opt.state_len())?,
            partials: gpu.buffer("phi partial sums", size.groups * phi_len)?,
            second_order,
            losses: gpu.buffer("losses", (t + 1) * n)?,
            weights_buf: gpu.buffer_from("meta-loss weights", &weights)?,
            meta_grad: gpu.buffer("meta-gradient", phi_len + p)?,
            groups: size.groups,
            plan: size.plan,
            weights,
            params: p,
            count,
            slots,
        })
    }

    /// The checkpointing plan.
    pub(crate) fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The meta-loss weights w_0 … w_T.
    pub(crate) fn weights(&self) -> &[f32] {
        &self.weights
    }

    /// P, the parameters of one instance.
    pub(crate) fn params(&self) -> usize {
        self.params
    }

    /// N·P, the parameters of all instances.
    pub(crate) fn count(&self) -> usize {
        self.count
    }

    /// The meta-gradient: φ̄ followed by θ̄0.
    pub(crate) fn meta_grad(&self) -> &GpuBuffer {
        &self.meta_grad
    }

    /// The per-instance θ̄_0 (N × P) after the reverse.
    pub(crate) fn theta_adjoint(&self) -> &GpuBuffer {
        &self.tbar
    }

    /// Losses ℓ_t of every instance, (T + 1) × N.
    pub(crate) fn losses(&self) -> &GpuBuffer {
        &self.losses
    }

    /// Bytes held on the GPU: these buffers (and the trainer's initialisations and carried
    /// state, as [`Sizing`] counts them), the optimizer's workspace `ws` and the task.
    pub(crate) fn memory(&self, ws: &Workspace, task: &dyn Task, carry: bool) -> MemoryReport {
        let slot_bytes = self.slots.first().map_or(0, GpuBuffer::bytes);
        let working = [
            &self.g,
            &self.tbar,
            &self.sbar,
            &self.partials,
            &self.losses,
        ]
        .iter()
        .map(|b| b.bytes())
        .sum::<u64>()
            + ws.bytes()
            + self.count as u64 * 4
            + if carry { slot_bytes } else { 0 }
            + self
                .second_order
                .as_ref()
                .map_or(0, |so| so.gbar.bytes() + so.hv.bytes())
            + self.particles.as_ref().map_or(0, Particles::bytes);
        MemoryReport {
            checkpoints: slot_bytes * self.slots.len() as u64,
            slots: self.slots.len(),
            slot_bytes,
            working,
            task: task.gpu_bytes(),
            chunks: 1,
        }
    }

    /// The particles of ES and PES.
    pub(crate) fn particles(&self) -> Option<&Particles> {
        self.particles.as_ref()
    }

    /// The noise of this unroll's particles.
    fn draw(io: &Io) -> Draw {
        Draw {
            key: es::key(io.cfg.seed, io.draw),
            learn_phi: io.cfg.learn_optimizer && io.opt.is_learned(),
            learn_theta: io.cfg.learn_init && io.offset == 0,
            reset: io.offset == 0,
        }
    }

    /// Record the unroll and its reverse; leaves the meta-gradient in [`Unroll::meta_grad`]
    /// and the meta-loss and squared gradient norm in `io.status`. ES and PES run the
    /// particles forward instead and estimate the meta-gradient from their losses.
    pub(crate) fn record(&self, rec: &mut Recorder, io: &Io) -> Result<()> {
        let draw = Self::draw(io);
        if let Some(es) = &self.particles {
            es.record_perturb(rec, io.meta_params, &draw)?;
        }
        self.record_initial_state(rec, io)?;
        // An ES plan (two slots, forward only) has no reverse steps.
        let mut reversed = false;
        for a in &self.plan.actions {
            match *a {
                Action::Advance { step, from, to } => {
                    self.record_advance(rec, io, step, from, to)?
                }
                Action::Final { slot } => self.record_final(rec, io, slot)?,
                Action::Reverse { step, slot } => {
                    self.record_reverse(rec, io, step, slot, reversed)?;
                    reversed = true;
                }
            }
        }
        if let Some(es) = &self.particles {
            let losses = (&self.losses, &self.weights_buf);
            es.record_estimate(rec, losses, &self.meta_grad, &draw, io.carry_out)?;
        } else {
            self.record_phi_bar(rec, io, reversed)?;
            self.record_theta0_bar(rec, io)?;
        }
        self.record_meta_loss_and_norm(rec, io)
    }

    /// The meta-loss (over every instance: with particles, their mean) and ‖meta-gradient‖²
    /// into the status slots.
    fn record_meta_loss_and_norm(&self, rec: &mut Recorder, io: &Io) -> Result<()> {
        meta_optim::meta_loss(
            rec,
            &self.losses,
            &self.weights_buf,
            io.status,
            io.cfg.unroll + 1,
            io.task.instances(),
        )?;
        self.record_grad_norm(rec, io)
    }

    fn theta(&self, slot: usize) -> Batched<'_> {
        Batched {
            buf: &self.slots[slot],
            off: 0,
            batch_stride: self.params,
        }
    }

    /// The loss and gradient at the parameters in `slot` on `batch`: the gradient into the
    /// gradient buffer, the losses from `loss_off`.
    fn loss_grad(&self, slot: usize, loss_off: usize, batch: BatchRef) -> LossGrad<'_> {
        LossGrad {
            theta: self.theta(slot),
            grad: Batched::dense(&self.g, self.params),
            loss: View::new(&self.losses, loss_off),
            batch,
        }
    }

    /// The training batch of inner step `step` of this unroll.
    fn batch(io: &Io, step: usize) -> BatchRef {
        BatchRef::Train((io.offset + step) as u32)
    }

    /// State 0 into slot 0: θ0 broadcast to every instance (learned) or the instances' own
    /// draws, with a zero optimizer state; or, inside an episode, the state the previous unroll
    /// ended in.
    fn record_initial_state(&self, rec: &mut Recorder, io: &Io) -> Result<()> {
        let (n, p, c) = (io.task.instances(), self.params, self.count);
        let s = io.opt.state_len();
        match (io.carry, io.offset == 0) {
            (Some(carry), false) => rec.copy(carry, 0, &self.slots[0], 0, carry.len()),
            _ => {
                if let (Some(es), true) = (&self.particles, io.cfg.learn_init) {
                    es.record_theta0(rec, &self.slots[0], &Self::draw(io))?;
                } else if io.cfg.learn_init {
                    vec::broadcast(
                        rec,
                        View::new(io.meta_params, io.opt.phi_len()),
                        Batched::dense(&self.slots[0], p),
                        p,
                        n,
                    )?;
                } else {
                    rec.copy(io.init, 0, &self.slots[0], 0, c)?;
                }
                if s > 0 {
                    vec::fill(rec, View::new(&self.slots[0], c), c * s, 0.0)?;
                }
                Ok(())
            }
        }
    }

    /// [`Action::Advance`]: the loss and gradient at state `step` (slot `from`), then the
    /// optimizer's step into slot `to`.
    fn record_advance(
        &self,
        rec: &mut Recorder,
        io: &Io,
        step: usize,
        from: usize,
        to: usize,
    ) -> Result<()> {
        let n = io.task.instances();
        let at = self.loss_grad(from, step * n, Self::batch(io, step));
        io.task.record_loss_grad(rec, at)?;
        let (phi, phi_blocks) = match &self.particles {
            Some(es) => {
                let (phi, blocks) = es.phi();
                (phi, Some(blocks))
            }
            None => ((io.meta_params, 0), None),
        };
        io.opt.record_step(
            rec,
            &StepArgs {
                count: self.count,
                slot_in: &self.slots[from],
                g: &self.g,
                phi,
                phi_blocks,
                slot_out: &self.slots[to],
                t: io.offset + step,
                ws: io.ws,
            },
        )
    }

    /// [`Action::Final`]: the loss and gradient at state T (in `slot`), the carried state of
    /// an episode, and the adjoint's seed θ̄_T = w_T·g_T / N, s̄_T = 0 (Reptile has none).
    fn record_final(&self, rec: &mut Recorder, io: &Io, slot: usize) -> Result<()> {
        let (n, c, t) = (io.task.instances(), self.count, io.cfg.unroll);
        let s = io.opt.state_len();
        let final_batch = match io.cfg.final_batch {
            FinalBatch::Train => Self::batch(io, t),
            FinalBatch::HeldOut => BatchRef::HeldOut((io.offset + t) as u32),
        };
        io.task
            .record_loss_grad(rec, self.loss_grad(slot, t * n, final_batch))?;
        if let (Some(carry), true) = (io.carry, io.carry_out) {
            rec.copy(&self.slots[slot], 0, carry, 0, carry.len())?;
        }
        if io.cfg.mode == Mode::Reptile || self.particles.is_some() {
            return Ok(());
        }
        let w = self.weights[t] * (1.0 / n as f32);
        vec::axpby(
            rec,
            w,
            View::new(&self.g, 0),
            0.0,
            View::new(&self.g, 0),
            View::new(&self.tbar, 0),
            c,
        )?;
        if s > 0 {
            vec::fill(rec, View::new(&self.sbar, 0), c * s, 0.0)?;
        }
        Ok(())
    }

    /// [`Action::Reverse`]: the gradient at state `step` (in `slot`) recomputed, the
    /// optimizer's reverse (φ̄ partials accumulated after the first reverse), and in
    /// second-order mode θ̄_t += H_t·ḡ_t, the Hessian at θ_t on step t's batch.
    fn record_reverse(
        &self,
        rec: &mut Recorder,
        io: &Io,
        step: usize,
        slot: usize,
        accumulate: bool,
    ) -> Result<()> {
        let (n, p, c) = (io.task.instances(), self.params, self.count);
        let at = self.loss_grad(slot, step * n, Self::batch(io, step));
        io.task.record_loss_grad(rec, at)?;
        io.opt.record_vjp(
            rec,
            &VjpArgs {
                count: c,
                slot: &self.slots[slot],
                g: &self.g,
                phi: (io.meta_params, 0),
                tbar: &self.tbar,
                sbar: &self.sbar,
                partials: &self.partials,
                groups: self.groups,
                w: self.weights[step] * (1.0 / n as f32),
                t: io.offset + step,
                mode: io.cfg.mode,
                accumulate,
                gbar: self.second_order.as_ref().map(|so| &so.gbar),
                ws: io.ws,
            },
        )?;
        if let Some(so) = &self.second_order {
            let at = Hvp {
                theta: self.theta(slot),
                v: Batched::dense(&so.gbar, p),
                out: Batched::dense(&so.hv, p),
                batch: Self::batch(io, step),
            };
            io.task.record_hvp(rec, at)?;
            vec::axpy(rec, 1.0, View::new(&so.hv, 0), View::new(&self.tbar, 0), c)?;
        }
        Ok(())
    }

    /// φ̄ = Σ over workgroups of the partial sums (zero when φ is not learned or no step was
    /// reversed).
    fn record_phi_bar(&self, rec: &mut Recorder, io: &Io, reversed: bool) -> Result<()> {
        let phi_len = io.opt.phi_len();
        if phi_len == 0 {
            return Ok(());
        }
        if io.cfg.learn_optimizer && self.groups > 0 && reversed {
            reduce(
                rec,
                Reduction::new(ReduceOp::Sum, self.groups, phi_len, 1),
                Strided {
                    buf: &self.partials,
                    off: 0,
                    batch_stride: 0,
                    row_stride: phi_len,
                    col_stride: 1,
                },
                Out {
                    buf: &self.meta_grad,
                    off: 0,
                    batch_stride: 0,
                    col_stride: 1,
                },
            )
        } else {
            vec::fill(rec, View::new(&self.meta_grad, 0), phi_len, 0.0)
        }
    }

    /// θ̄0 = Σ_n θ̄_0^(n) (Reptile: θ0 − mean_n θ_T^(n)); only an episode's first unroll starts
    /// from θ0, the others (and runs that do not learn θ0) give zero.
    fn record_theta0_bar(&self, rec: &mut Recorder, io: &Io) -> Result<()> {
        let (n, p) = (io.task.instances(), self.params);
        let phi_len = io.opt.phi_len();
        if !(io.cfg.learn_init && io.offset == 0) {
            return vec::fill(rec, View::new(&self.meta_grad, phi_len), p, 0.0);
        }
        let reptile = io.cfg.mode == Mode::Reptile;
        let (src, alpha) = if reptile {
            (
                &self.slots[reptile_last_slot(io.cfg.unroll)],
                -(1.0 / n as f32),
            )
        } else {
            (&self.tbar, 1.0)
        };
        reduce(
            rec,
            Reduction {
                alpha,
                ..Reduction::new(ReduceOp::Sum, n, p, 1)
            },
            Strided {
                buf: src,
                off: 0,
                batch_stride: 0,
                row_stride: p,
                col_stride: 1,
            },
            Out {
                buf: &self.meta_grad,
                off: phi_len,
                batch_stride: 0,
                col_stride: 1,
            },
        )?;
        if reptile {
            vec::axpy(
                rec,
                1.0,
                View::new(io.meta_params, phi_len),
                View::new(&self.meta_grad, phi_len),
                p,
            )?;
        }
        Ok(())
    }

    /// ‖meta-gradient‖² into the status slot [`status::GRAD_NORM2`].
    pub(super) fn record_grad_norm(&self, rec: &mut Recorder, io: &Io) -> Result<()> {
        reduce(
            rec,
            Reduction {
                strategy: ReduceStrategy::Workgroup,
                ..Reduction::new(ReduceOp::SumSquares, io.opt.phi_len() + self.params, 1, 1)
            },
            Strided {
                buf: &self.meta_grad,
                off: 0,
                batch_stride: 0,
                row_stride: 1,
                col_stride: 0,
            },
            Out {
                buf: io.status,
                off: status::GRAD_NORM2,
                batch_stride: 0,
                col_stride: 0,
            },
        )
    }
}

/// Reptile needs no reversal: advance through two slots in turn, evaluate the last state.
pub(super) fn reptile_plan(t: usize) -> Plan {
    let mut actions: Vec<Action> = (0..t)
        .map(|s| Action::Advance {
            step: s,
            from: s % 2,
            to: (s + 1) % 2,
        })
        .collect();
    actions.push(Action::Final {
        slot: reptile_last_slot(t),
    });
    Plan {
        steps: t,
        actions,
        slots: 2,
        forward_steps: t,
    }
}

/// The slot that holds state T in [`reptile_plan`].
fn reptile_last_slot(t: usize) -> usize {
    t % 2
}
