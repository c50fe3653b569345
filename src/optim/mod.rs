//! Inner optimizers behind one trait, [`Family`], and a registry of them.
//!
//! An optimizer acts on the C = N·P coordinates of all task instances at once. Its *slot* layout
//! is θ at `slot[0..C]` followed by `state_len()` floats of state per coordinate, struct of arrays
//! (`slot[C + k·C + i]`). φ (the learned meta-parameters, `phi_len()` floats) is shared by every
//! coordinate and read from a buffer at an offset. See `docs/optimizers.md` for the equations.
//!
//! Each family lives in its own folder with its WGSL, its Rust wrapper and its f64 reference:
//! [`hand`] (SGD, momentum, Nesterov, RMSprop, Adam), [`lstm`], [`mlp`], [`linear`]. A new
//! family is one folder implementing [`Family`] (GPU) and [`Reference`] (f64), plus one line
//! in [`REGISTRY`].

use std::any::Any;
use std::sync::Arc;

use rand::RngCore;

pub mod apply;
pub mod gated;
pub mod hand;
pub mod linear;
pub mod lstm;
pub mod mlp;
mod mode;
pub mod reference;
pub mod schedule;

pub use apply::OptimizerRun;
pub use mode::Mode;
pub use reference::{RefStep, RefVjp, RefVjpOut, Reference};

use crate::gpu::{Gpu, GpuBuffer, Kernel, Recorder};
use crate::kernels::vec;
use crate::params::ParamLayout;
use crate::{Error, Result};

/// Builds a family's optimizer with its default hyper-parameters.
pub type MakeOptimizer = fn() -> Optimizer;

/// Every optimizer family by name, with its default hyper-parameters. `Optimizer::parse` and
/// the configuration's `optimizer.kind` read this table; a new family is one line here.
pub const REGISTRY: &[(&str, MakeOptimizer)] = &[
    ("sgd", || hand::Sgd::default().into()),
    ("momentum", || hand::Momentum::default().into()),
    ("nag", || hand::Nag::default().into()),
    ("rmsprop", || hand::RmsProp::default().into()),
    ("adam", || hand::Adam::default().into()),
    ("lstm", || lstm::Lstm::default().into()),
    ("mlp", || mlp::MlpOpt::default().into()),
    ("schedule", || schedule::Schedule::default().into()),
    ("linear", || linear::Linear.into()),
    ("gated", || gated::Gated::default().into()),
];

/// The kernels of every registered family (checked against the WGSL by a naga test).
pub fn kernels() -> Vec<&'static Kernel> {
    let mut out: Vec<&'static Kernel> = Vec::new();
    for (_, make) in REGISTRY {
        for k in make().family().kernels() {
            if !out.iter().any(|o| std::ptr::eq(*o, *k)) {
                out.push(k);
            }
        }
    }
    out
}

/// Everything the forward kernel of one step needs.
pub struct StepArgs<'a> {
    /// Coordinates C.
    pub count: usize,
    /// Slot holding θ_t and s_t.
    pub slot_in: &'a GpuBuffer,
    /// Model gradient g_t.
    pub g: &'a GpuBuffer,
    /// φ (buffer, offset).
    pub phi: (&'a GpuBuffer, usize),
    /// φ per block of coordinates (the particles of an evolution-strategies estimate); `None`:
    /// every coordinate reads φ at `phi.1`.
    pub phi_blocks: Option<PhiBlocks>,
    /// Slot receiving θ_{t+1} and s_{t+1}.
    pub slot_out: &'a GpuBuffer,
    /// Inner step number t (absolute within the episode).
    pub t: usize,
    /// The family's workspace ([`Family::workspace`]).
    pub ws: &'a Workspace,
}

/// φ per block of coordinates: coordinates `[k·block, (k + 1)·block)` read their φ at
/// `phi.1 + k·stride`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PhiBlocks {
    /// Coordinates that share one φ (a whole number of instances).
    pub block: usize,
    /// Floats from one block's φ to the next.
    pub stride: usize,
}

impl StepArgs<'_> {
    /// Check that φ (`phi_len` floats, or one per block) lies inside its buffer, and give the
    /// (block, stride) the kernels read: (0, 0) when every coordinate shares φ.
    pub fn phi_blocks(&self, family: &str, phi_len: usize) -> Result<(u32, u32)> {
        let (buf, off) = self.phi;
        match self.phi_blocks {
            None => {
                crate::kernels::check_region(&format!("{family} phi"), buf, off, &[(phi_len, 1)])?;
                Ok((0, 0))
            }
            Some(b) => {
                if b.block == 0 || self.count % b.block != 0 || b.stride < phi_len {
                    return Err(Error::invalid(format!(
                        "{family}: φ blocks of {} coordinates {} floats apart do not divide {}                          coordinates with {phi_len} floats of φ each",
                        b.block, b.stride, self.count
                    )));
                }
                let blocks = self.count / b.block;
                crate::kernels::check_region(
                    &format!("{family} phi blocks"),
                    buf,
                    off,
                    &[(phi_len, 1), (blocks, b.stride)],
                )?;
                Ok((
                    crate::kernels::u32_of("φ block", b.block)?,
                    crate::kernels::u32_of("φ stride", b.stride)?,
                ))
            }
        }
    }
}

/// Everything the reverse kernel of one step needs.
pub struct VjpArgs<'a> {
    /// Coordinates C.
    pub count: usize,
    /// Slot holding θ_t and s_t.
    pub slot: &'a GpuBuffer,
    /// Model gradient g_t.
    pub g: &'a GpuBuffer,
    /// φ (buffer, offset).
    pub phi: (&'a GpuBuffer, usize),
    /// θ̄ (in: adjoint of θ_{t+1}; out: of θ_t).
    pub tbar: &'a GpuBuffer,
    /// s̄ (in: adjoint of s_{t+1}; out: of s_t).
    pub sbar: &'a GpuBuffer,
    /// φ̄ partial sums, `partial_groups × phi_len`.
    pub partials: &'a GpuBuffer,
    /// Workgroups of the φ̄ partial sums.
    pub groups: usize,
    /// Meta-loss weight of ℓ_t (already divided by N).
    pub w: f32,
    /// Inner step number t (absolute within the episode).
    pub t: usize,
    /// Gradient paths.
    pub mode: Mode,
    /// Add to the partial sums (false on the first reversed step).
    pub accumulate: bool,
    /// Second-order mode: receives ḡ, the adjoint of the gradient input g_t (C floats), to
    /// which the caller applies the Hessian. Required in second-order mode, ignored otherwise.
    pub gbar: Option<&'a GpuBuffer>,
    /// The family's workspace ([`Family::workspace`]).
    pub ws: &'a Workspace,
}

impl VjpArgs<'_> {
    /// The ḡ buffer of second-order mode, or an error naming what is missing.
    pub fn gbar(&self) -> Result<&GpuBuffer> {
        self.gbar
            .ok_or_else(|| Error::invalid("second-order mode needs a buffer for ḡ (VjpArgs::gbar)"))
    }
}

/// Buffers a family keeps beyond its slots for one layout and instance count.
pub trait WorkspaceData: Any + Send + Sync + std::fmt::Debug {
    /// Bytes held on the GPU.
    fn bytes(&self) -> u64;
    /// For the family to get its own type back.
    fn as_any(&self) -> &dyn Any;
}

/// An optimizer's workspace: nothing, or the family's own [`WorkspaceData`].
#[derive(Debug, Default)]
pub struct Workspace(Option<Box<dyn WorkspaceData>>);

impl Workspace {
    /// A workspace holding `data`.
    pub fn new(data: impl WorkspaceData) -> Self {
        Self(Some(Box::new(data)))
    }

    /// Bytes held on the GPU.
    pub fn bytes(&self) -> u64 {
        self.0.as_ref().map_or(0, |d| d.bytes())
    }

    /// The family's data, or an error naming `family` when the workspace is of another kind.
    pub fn get<T: 'static>(&self, family: &str) -> Result<&T> {
        self.0
            .as_ref()
            .and_then(|d| d.as_any().downcast_ref::<T>())
            .ok_or_else(|| {
                Error::invalid(format!(
                    "optimizer '{family}' needs its workspace (Optimizer::workspace)"
                ))
            })
    }
}

/// One optimizer family: its state and φ layout and its GPU kernels; its f64 reference is the
/// supertrait [`Reference`].
///
/// Hand-designed families have no φ and no θ input; their state depends on g only, which the
/// first-order and truncated modes detach, so their default reverse is θ̄ ← θ̄ + w·g.
pub trait Family: Reference + Any + Send + Sync + std::fmt::Debug {
    /// Short name, as in [`REGISTRY`].
    fn name(&self) -> &'static str;

    /// State floats per coordinate.
    fn state_len(&self) -> usize;

    /// Learned meta-parameters φ (0 for hand-designed optimizers).
    fn phi_len(&self) -> usize {
        0
    }

    /// Initial φ (`phi_len()` floats).
    fn init_phi(&self, _rng: &mut dyn RngCore) -> Vec<f32> {
        Vec::new()
    }

    /// The family set for episodes of `steps` inner steps, where its update depends on the
    /// episode's length (a learned schedule); `None` where it does not.
    fn for_episode(&self, _steps: usize) -> Option<Optimizer> {
        None
    }

    /// Fixed hyper-parameters by name, formatted for export metadata (`optimizer.<name>`).
    fn hyper(&self) -> Vec<(&'static str, String)>;

    /// The same optimizer with learning rate `lr`, for families that have one.
    fn with_lr(&self, _lr: f32) -> Option<Optimizer> {
        None
    }

    /// The same optimizer whose proposal steps at most `scale` per coordinate, for families
    /// that have such a scale.
    fn with_step_scale(&self, _scale: f32) -> Option<Optimizer> {
        None
    }

    /// True when [`Family::record_vjp`] gives ḡ, the adjoint of the gradient input, so that
    /// second-order mode is available.
    fn supports_second_order(&self) -> bool {
        false
    }

    /// Every kernel the family dispatches.
    fn kernels(&self) -> &'static [&'static Kernel];

    /// The buffers the family needs for `instances` instances of a layout, with the reverse of
    /// second-order mode when `so`.
    fn workspace(
        &self,
        _: &Gpu,
        _: &ParamLayout,
        _instances: usize,
        _so: bool,
    ) -> Result<Workspace> {
        Ok(Workspace::default())
    }

    /// Workgroups of the φ̄ partial sums of the reverse kernel for `count` coordinates.
    fn partial_groups(&self, _gpu: &Gpu, _count: usize) -> Result<usize> {
        Ok(0)
    }

    /// Record inner step `a.t`: `a.slot_out` = step(`a.slot_in`, g).
    fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()>;

    /// Record the reverse of one inner step (see [`VjpArgs`]); second-order mode is only asked
    /// of families that [`Family::supports_second_order`].
    fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        detached_vjp(rec, a)
    }
}

/// The reverse of a step whose state depends on g only, in the modes that detach g (first-order
/// and truncated): the state gets no adjoint and θ̄ ← ū + w·g (the meta-loss term w_t ∇ℓ_t).
pub fn detached_vjp(rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
    vec::axpy(
        rec,
        a.w,
        vec::View::new(a.g, 0),
        vec::View::new(a.tbar, 0),
        a.count,
    )
}

/// An inner optimizer: a shared handle to a [`Family`] with its hyper-parameters.
#[derive(Clone)]
pub struct Optimizer(Arc<dyn Family>);

impl<F: Family + 'static> From<F> for Optimizer {
    fn from(f: F) -> Self {
        Self(Arc::new(f))
    }
}

impl std::fmt::Debug for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl PartialEq for Optimizer {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name() && self.0.hyper() == other.0.hyper()
    }
}

impl Optimizer {
    /// An optimizer of family `f`.
    pub fn new(f: impl Family + 'static) -> Self {
        f.into()
    }

    /// The registered family `name` with its default hyper-parameters.
    pub fn parse(name: &str) -> Result<Self> {
        REGISTRY
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, make)| make())
            .ok_or_else(|| {
                let names: Vec<&str> = REGISTRY.iter().map(|(n, _)| *n).collect();
                Error::invalid(format!(
                    "unknown optimizer '{name}'; use one of {}",
                    names.join(", ")
                ))
            })
    }

    /// The family.
    pub fn family(&self) -> &dyn Family {
        self.0.as_ref()
    }

    /// The concrete family, when it is an `F`.
    pub fn downcast<F: Family + 'static>(&self) -> Option<&F> {
        (self.0.as_ref() as &dyn Any).downcast_ref::<F>()
    }

    /// The same optimizer with learning rate `lr` (learned optimizers have none and are
    /// returned unchanged).
    pub fn with_lr(&self, lr: f32) -> Self {
        self.0.with_lr(lr).unwrap_or_else(|| self.clone())
    }

    /// The same optimizer with the largest proposal `scale` ([`Family::with_step_scale`]);
    /// `None` for a family without one.
    pub fn with_step_scale(&self, scale: f32) -> Option<Self> {
        self.0.with_step_scale(scale)
    }

    /// The optimizer for episodes of `steps` inner steps ([`Family::for_episode`]; itself
    /// where its update does not depend on the episode's length).
    pub fn for_episode(&self, steps: usize) -> Self {
        self.0.for_episode(steps).unwrap_or_else(|| self.clone())
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        self.0.name()
    }

    /// Fixed hyper-parameters by name (see [`Family::hyper`]).
    pub fn hyper(&self) -> Vec<(&'static str, String)> {
        self.0.hyper()
    }

    /// State floats per coordinate.
    pub fn state_len(&self) -> usize {
        self.0.state_len()
    }

    /// Learned meta-parameters φ (0 for hand-designed optimizers).
    pub fn phi_len(&self) -> usize {
        self.0.phi_len()
    }

    /// `phi` has the length this optimizer's φ has.
    pub fn check_phi(&self, phi: &[f32]) -> Result<()> {
        if phi.len() != self.phi_len() {
            return Err(Error::invalid(format!(
                "φ has {} values, optimizer '{}' needs {}",
                phi.len(),
                self.name(),
                self.phi_len()
            )));
        }
        Ok(())
    }

    /// True when second-order mode is available (the reverse kernels give ḡ).
    pub fn supports_second_order(&self) -> bool {
        self.0.supports_second_order()
    }

    /// An error unless [`Optimizer::supports_second_order`].
    pub fn check_second_order(&self) -> Result<()> {
        if self.supports_second_order() {
            return Ok(());
        }
        Err(Error::invalid(format!(
            "second-order mode is not available for optimizer '{}': its reverse kernel does not give the adjoint of its gradient input; use {}, or the truncated mode",
            self.name(),
            second_order_families()
        )))
    }

    /// True for optimizers with φ.
    pub fn is_learned(&self) -> bool {
        self.phi_len() > 0
    }

    /// Initial φ (see each family's documentation in `docs/optimizers.md`).
    pub fn init_phi(&self, rng: &mut impl RngCore) -> Vec<f32> {
        self.0.init_phi(rng)
    }

    /// The buffers this optimizer needs for `n` instances of `layout`, with the reverse of
    /// second-order mode when `so` (forward-only callers pass false).
    pub fn workspace(
        &self,
        gpu: &Gpu,
        layout: &ParamLayout,
        n: usize,
        so: bool,
    ) -> Result<Workspace> {
        self.0.workspace(gpu, layout, n, so)
    }

    /// Floats of one slot for `count` coordinates.
    pub fn slot_len(&self, count: usize) -> usize {
        count * (1 + self.state_len())
    }

    /// Workgroups of the φ̄ partial sums of the reverse kernel for `count` coordinates.
    pub fn partial_groups(&self, gpu: &Gpu, count: usize) -> Result<usize> {
        self.0.partial_groups(gpu, count)
    }

    /// Record one inner step (see [`StepArgs`]).
    pub fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()> {
        self.0.record_step(rec, a)
    }

    /// Record the reverse of one inner step (see [`VjpArgs`]); second-order mode is refused
    /// for families without the gradient path.
    pub fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        if a.mode == Mode::SecondOrder {
            self.check_second_order()?;
            a.gbar()?;
        }
        self.0.record_vjp(rec, a)
    }

    /// The family's f64 reference.
    pub fn reference(&self) -> &dyn Reference {
        self.0.as_ref()
    }
}

/// The registered families with second-order mode, as "a, b or c".
pub fn second_order_families() -> String {
    let able: Vec<&str> = REGISTRY
        .iter()
        .filter(|(_, make)| make().supports_second_order())
        .map(|(n, _)| *n)
        .collect();
    or_list(&able)
}

/// "a, b, c or d".
fn or_list(names: &[&str]) -> String {
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => (*last).to_string(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// Workgroups of φ̄ partial sums for `count` coordinates in workgroups of `wg` coordinates.
pub(crate) fn groups_of(count: usize, wg: usize) -> usize {
    const MAX_GROUPS: usize = 1024;
    count.div_ceil(wg).clamp(1, MAX_GROUPS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_registered_family_parses_by_its_name() {
        for (name, make) in REGISTRY {
            let o = Optimizer::parse(name).expect("registered");
            assert_eq!(o.name(), *name);
            assert_eq!(o, make());
            assert_eq!(o.is_learned(), o.phi_len() > 0);
        }
        let e = Optimizer::parse("nope").expect_err("unknown").to_string();
        assert!(
            e.contains("nope") && e.contains("lstm") && e.contains("sgd"),
            "{e}"
        );
    }
}
