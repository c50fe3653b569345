//! Apply an optimizer — learned (with a given φ) or hand-designed — to parameters the caller
//! owns, one step at a time, with the per-coordinate optimizer state kept on the GPU.
//!
//! Two levels:
//! - [`OptimizerRun::step`] records one update of a parameter buffer on the GPU from a gradient
//!   buffer on the GPU, for callers whose model runs on the GPU (any wgpu program: see
//!   [`GpuBuffer::raw`]);
//! - [`OptimizerRun::step_host`] updates a host slice from a host gradient (one upload, one
//!   submission, one readback), for callers whose model runs on the CPU.
//!
//! The run holds two slots of θ and state (the layout of [`Optimizer`]'s kernels) and swaps
//! them at every step: the parameters are copied into the current slot, the step writes the
//! other slot, and the new parameters are copied back. The inner step number t (Adam's bias
//! correction, the MLP optimizer's step embedding) counts the steps taken since construction or
//! the last [`OptimizerRun::reset`].
//!
//! Instances whose slot would exceed one buffer of the device are held in parts of
//! consecutive instances, a pair of slots and a workspace each, stepped one after the other:
//! the optimizers act on each instance alone, so the parts compute what one slot would.

use std::sync::Arc;

use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::optim::{Optimizer, StepArgs, Workspace};
use crate::params::ParamLayout;
use crate::tasks::Shard;
use crate::{Error, Result};

/// An optimizer applied to the caller's parameters: `instances` copies of `layout`, stepped
/// together, with the optimizer state on the GPU.
///
/// ```no_run
/// # fn main() -> metalearn::Result<()> {
/// use std::sync::Arc;
/// use metalearn::gpu::{Gpu, GpuOptions};
/// use metalearn::optim::{Optimizer, OptimizerRun};
/// use metalearn::params::ParamLayout;
///
/// let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
/// let opt = Optimizer::parse("adam")?;
/// let mut run = OptimizerRun::new(gpu, opt, &[], ParamLayout::flat(3)?, 1)?;
/// let mut theta = vec![1.0f32, -2.0, 0.5];
/// for _ in 0..100 {
///     // Gradient of ½‖θ‖², computed on the CPU.
///     let grad = theta.clone();
///     run.step_host(&mut theta, &grad)?;
/// }
/// # Ok(())
/// # }
/// ```
pub struct OptimizerRun {
    gpu: Arc<Gpu>,
    opt: Optimizer,
    layout: ParamLayout,
    instances: usize,
    count: usize,
    parts: Vec<Part>,
    phi: GpuBuffer,
    cur: usize,
    /// The gradient of the host path, or of one part where there are several (the largest).
    grad: Option<GpuBuffer>,
    t: usize,
}

/// Consecutive instances of a run with their own slots and workspace: coordinates
/// `offset..offset + count` of the caller's buffers.
struct Part {
    offset: usize,
    count: usize,
    ws: Workspace,
    slots: [GpuBuffer; 2],
}

impl std::fmt::Debug for OptimizerRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OptimizerRun")
            .field("optimizer", &self.opt)
            .field("instances", &self.instances)
            .field("parameters", &self.layout.size())
            .field("steps", &self.t)
            .finish()
    }
}

impl OptimizerRun {
    /// Apply `opt` with meta-parameters `phi` (`opt.phi_len()` floats; empty for hand-designed
    /// optimizers) to `instances` instances of `layout`, stored back to back (N · P floats).
    /// The optimizer state starts at zero.
    pub fn new(
        gpu: Arc<Gpu>,
        opt: Optimizer,
        phi: &[f32],
        layout: ParamLayout,
        instances: usize,
    ) -> Result<Self> {
        if instances == 0 {
            return Err(Error::invalid(
                "an optimizer run needs at least one instance",
            ));
        }
        let p = layout.size();
        if p == 0 {
            return Err(Error::invalid(
                "the parameter layout is empty: add at least one tensor (or use ParamLayout::flat)",
            ));
        }
        opt.check_phi(phi)?;
        let count = p.checked_mul(instances).ok_or_else(|| {
            Error::invalid(format!("{instances} instances of {p} parameters overflow"))
        })?;
        let parts = Self::split(&gpu, &opt, instances, p)?
            .into_iter()
            .map(|sh| {
                let count = sh.count * p;
                let slot_len = opt.slot_len(count);
                Ok(Part {
                    offset: sh.first * p,
                    count,
                    ws: opt.workspace(&gpu, &layout, sh.count, false)?,
                    slots: [
                        gpu.buffer("optimizer run slot a", slot_len)?,
                        gpu.buffer("optimizer run slot b", slot_len)?,
                    ],
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let phi_buf = gpu.buffer_from(
            "optimizer run phi",
            if phi.is_empty() { &[0.0] } else { phi },
        )?;
        let grad = match parts.len() {
            1 => None,
            _ => {
                let most = parts.iter().map(|q| q.count).max().unwrap_or(1);
                Some(gpu.buffer("optimizer run gradient", most)?)
            }
        };
        Ok(Self {
            gpu,
            opt,
            layout,
            instances,
            count,
            parts,
            phi: phi_buf,
            cur: 0,
            grad,
            t: 0,
        })
    }

    /// The fewest parts of consecutive instances whose slots each fit one buffer of `gpu`
    /// (one instance per part at most; its buffer then names the limit).
    fn split(gpu: &Gpu, opt: &Optimizer, instances: usize, p: usize) -> Result<Vec<Shard>> {
        let l = &gpu.props().limits;
        let limit = l.max_buffer_size.min(l.max_storage_buffer_binding_size);
        let bytes = |n: usize| opt.slot_len(n * p) as u64 * 4;
        let first = bytes(instances).div_ceil(limit.max(1)).max(1) as usize;
        let k = (first.min(instances)..=instances)
            .find(|&k| bytes(instances.div_ceil(k)) <= limit)
            .unwrap_or(instances);
        Shard::split(instances, k)
    }

    /// Shorthand for one instance of a single flat tensor of `len` parameters.
    pub fn flat(gpu: Arc<Gpu>, opt: Optimizer, phi: &[f32], len: usize) -> Result<Self> {
        Self::new(gpu, opt, phi, ParamLayout::flat(len)?, 1)
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &Optimizer {
        &self.opt
    }

    /// The layout of one instance.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// Instances N.
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// Floats of parameters (and of gradients) each step takes: N · P.
    pub fn coordinates(&self) -> usize {
        self.count
    }

    /// Steps taken since construction or the last [`reset`](Self::reset).
    pub fn steps_taken(&self) -> usize {
        self.t
    }

    /// The device the run lives on.
    pub fn gpu(&self) -> &Arc<Gpu> {
        &self.gpu
    }

    /// Bytes held on the GPU (slots, φ, workspaces, the gradient buffer of the host path or
    /// of the parts).
    pub fn bytes(&self) -> u64 {
        self.parts
            .iter()
            .map(|q| q.slots.iter().map(GpuBuffer::bytes).sum::<u64>() + q.ws.bytes())
            .sum::<u64>()
            + self.phi.bytes()
            + self.grad.as_ref().map_or(0, GpuBuffer::bytes)
    }

    /// Parts of consecutive instances the run is held in (1 where one slot of every instance
    /// fits one buffer of the device).
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Replace φ (takes effect from the next step; the state is kept).
    pub fn set_phi(&mut self, phi: &[f32]) -> Result<()> {
        self.opt.check_phi(phi)?;
        if phi.is_empty() {
            return Ok(());
        }
        self.gpu.write(&self.phi, 0, phi)
    }

    /// Zero the optimizer state and the step counter (to start on new parameters).
    pub fn reset(&mut self) -> Result<()> {
        for q in &self.parts {
            for s in &q.slots {
                self.gpu.fill(s, 0.0)?;
            }
        }
        self.cur = 0;
        self.t = 0;
        Ok(())
    }

    /// The optimizer state, `state_len() × N·P` floats, struct of arrays (state k of coordinate
    /// i at `k·N·P + i`). Blocks until submitted work has finished.
    pub fn state(&self) -> Result<Vec<f32>> {
        let k = self.opt.state_len();
        let mut out = vec![0.0; self.count * k];
        for q in &self.parts {
            let part = self
                .gpu
                .read_range(&q.slots[self.cur], q.count, q.count * k)?;
            for (j, rows) in part.chunks_exact(q.count.max(1)).enumerate() {
                let at = j * self.count + q.offset;
                out[at..at + q.count].copy_from_slice(rows);
            }
        }
        Ok(out)
    }

    /// Continue from `state` ([`state`](Self::state) of a run of the same optimizer and sizes)
    /// after `steps` steps.
    pub fn set_state(&mut self, state: &[f32], steps: usize) -> Result<()> {
        let k = self.opt.state_len();
        let len = self.count * k;
        if state.len() != len {
            return Err(Error::invalid(format!(
                "optimizer run: a state of {} values, this run's is {len}",
                state.len()
            )));
        }
        for q in &self.parts {
            for j in 0..k {
                let at = j * self.count + q.offset;
                let rows = &state[at..at + q.count];
                self.gpu
                    .write(&q.slots[self.cur], q.count * (1 + j), rows)?;
            }
        }
        self.t = steps;
        Ok(())
    }

    /// Record one step: `params` ← step(`params`, `grads`), both N · P floats on this run's
    /// device. Nothing runs until the recording is submitted; submit it before the next step,
    /// [`state`](Self::state) or [`step_host`](Self::step_host).
    pub fn step(
        &mut self,
        rec: &mut Recorder,
        params: &GpuBuffer,
        grads: &GpuBuffer,
    ) -> Result<()> {
        if !std::ptr::eq(rec.gpu(), self.gpu.as_ref()) {
            return Err(Error::invalid(
                "the recorder belongs to another device than this optimizer run",
            ));
        }
        self.check_len("parameter buffer", params.len())?;
        self.check_len("gradient buffer", grads.len())?;
        for q in &self.parts {
            let (cur, next) = (&q.slots[self.cur], &q.slots[1 - self.cur]);
            rec.copy(params, q.offset, cur, 0, q.count)?;
            let g = match &self.grad {
                Some(g) => {
                    rec.copy(grads, q.offset, g, 0, q.count)?;
                    g
                }
                None => grads,
            };
            self.record(rec, q, g)?;
            rec.copy(next, 0, params, q.offset, q.count)?;
        }
        self.cur = 1 - self.cur;
        self.t += 1;
        Ok(())
    }

    /// One step on host data: `params` ← step(`params`, `grads`), both N · P floats. Uploads
    /// both, runs the step and reads the parameters back (blocking).
    pub fn step_host(&mut self, params: &mut [f32], grads: &[f32]) -> Result<()> {
        self.check_len("parameter slice", params.len())?;
        self.check_len("gradient slice", grads.len())?;
        let g = match &self.grad {
            Some(g) => g.clone(),
            None => {
                let g = self.gpu.buffer("optimizer run gradient", self.count)?;
                self.grad = Some(g.clone());
                g
            }
        };
        let gpu = self.gpu.clone();
        for q in &self.parts {
            let range = q.offset..q.offset + q.count;
            gpu.write(&q.slots[self.cur], 0, &params[range.clone()])?;
            gpu.write(&g, 0, &grads[range.clone()])?;
            let mut rec = Recorder::new(&gpu);
            self.record(&mut rec, q, &g)?;
            rec.submit()?;
            let out: Vec<f32> = gpu.read_range(&q.slots[1 - self.cur], 0, q.count)?;
            params[range].copy_from_slice(&out);
        }
        self.cur = 1 - self.cur;
        self.t += 1;
        Ok(())
    }

    /// Record the step of part `q` from its current slot into the other, on gradient `g`.
    fn record(&self, rec: &mut Recorder, q: &Part, g: &GpuBuffer) -> Result<()> {
        self.opt.record_step(
            rec,
            &StepArgs {
                count: q.count,
                slot_in: &q.slots[self.cur],
                g,
                phi: (&self.phi, 0),
                phi_blocks: None,
                slot_out: &q.slots[1 - self.cur],
                t: self.t,
                ws: &q.ws,
            },
        )
    }

    fn check_len(&self, what: &str, len: usize) -> Result<()> {
        if len != self.count {
            return Err(Error::invalid(format!(
                "{what} has {len} floats, the optimizer run needs N·P = {} × {} = {}",
                self.instances,
                self.layout.size(),
                self.count
            )));
        }
        Ok(())
    }
}
