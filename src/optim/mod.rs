//! Inner optimizers behind one interface: hand-designed (SGD, Adam) and learned (linear, LSTM).
//!
//! An optimizer acts on the C = N·P coordinates of all task instances at once. Its *slot* layout
//! is θ at `slot[0..C]` followed by `state_len()` floats of state per coordinate, struct of arrays
//! (`slot[C + k·C + i]`). φ (the learned meta-parameters, `phi_len()` floats) is shared by every
//! coordinate and read from a buffer at an offset. See `docs/optimizers.md` for the equations.

use rand::Rng;

use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::adam::{self, AdamHyper};
use crate::kernels::lstm::{self, LstmHyper};
use crate::kernels::{linear, vec};
use crate::{Error, Result};

/// Which gradient paths the meta-backward keeps (see `docs/optimizers.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The optimizer's inputs (g_t and θ_t) are treated as constants: only the identity path
    /// θ_{t+1} = θ_t + u_t, the recurrent state and the loss terms are differentiated.
    FirstOrder,
    /// The θ input path is kept, the Hessian term through g_t is dropped (L2L's choice).
    Truncated,
    /// Reptile (learned initialisation only): the meta-gradient of θ0 is θ0 − mean_n θ_T,
    /// no backward pass.
    Reptile,
}

impl Mode {
    /// Parse `first-order`, `truncated` or `reptile`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "first-order" | "fo" => Ok(Self::FirstOrder),
            "truncated" => Ok(Self::Truncated),
            "reptile" => Ok(Self::Reptile),
            other => Err(Error::invalid(format!(
                "unknown meta-gradient mode '{other}'; use first-order, truncated or reptile"
            ))),
        }
    }

    /// The name `parse` accepts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FirstOrder => "first-order",
            Self::Truncated => "truncated",
            Self::Reptile => "reptile",
        }
    }
}

/// An inner optimizer and its fixed hyper-parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    /// u = −lr·g.
    Sgd {
        /// Learning rate.
        lr: f32,
    },
    /// Adam (state m, v).
    Adam(AdamHyper),
    /// Learned: u = w0·g + w1·θ + b.
    Linear,
    /// Learned: coordinatewise 2-layer LSTM, 20 units, LogAndSign inputs (L2L).
    Lstm(LstmHyper),
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
    /// Gradient paths.
    pub mode: Mode,
    /// Add to the partial sums (false on the first reversed step).
    pub accumulate: bool,
}

impl Optimizer {
    /// Parse `sgd`, `adam`, `linear` or `lstm` with default hyper-parameters.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "sgd" => Ok(Self::Sgd { lr: 0.01 }),
            "adam" => Ok(Self::Adam(AdamHyper::default())),
            "linear" => Ok(Self::Linear),
            "lstm" => Ok(Self::Lstm(LstmHyper::default())),
            other => Err(Error::invalid(format!(
                "unknown optimizer '{other}'; use sgd, adam, linear or lstm"
            ))),
        }
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd { .. } => "sgd",
            Self::Adam(_) => "adam",
            Self::Linear => "linear",
            Self::Lstm(_) => "lstm",
        }
    }

    /// State floats per coordinate.
    pub fn state_len(&self) -> usize {
        match self {
            Self::Sgd { .. } | Self::Linear => 0,
            Self::Adam(_) => 2,
            Self::Lstm(_) => lstm::STATE,
        }
    }

    /// Learned meta-parameters φ (0 for hand-designed optimizers).
    pub fn phi_len(&self) -> usize {
        match self {
            Self::Sgd { .. } | Self::Adam(_) => 0,
            Self::Linear => linear::PHI_LEN,
            Self::Lstm(_) => lstm::PHI_LEN,
        }
    }

    /// True for optimizers with φ.
    pub fn is_learned(&self) -> bool {
        self.phi_len() > 0
    }

    /// Initial φ: linear (−0.01, 0, 0), i.e. SGD with learning rate 0.01; LSTM as in
    /// `docs/optimizers.md` (uniform ±1/√H weights, forget-gate bias 1, output weights ±0.1/√H).
    pub fn init_phi(&self, rng: &mut impl Rng) -> Vec<f32> {
        match self {
            Self::Sgd { .. } | Self::Adam(_) => Vec::new(),
            Self::Linear => vec![-0.01, 0.0, 0.0],
            Self::Lstm(_) => {
                let h = lstm::HIDDEN;
                let bound = 1.0 / (h as f32).sqrt();
                let mut phi = Vec::with_capacity(lstm::PHI_LEN);
                let mut uniform = |n: usize, b: f32, phi: &mut Vec<f32>| {
                    phi.extend((0..n).map(|_| rng.random_range(-b..b)));
                };
                let bias = |phi: &mut Vec<f32>| {
                    phi.extend((0..4 * h).map(|r| if (h..2 * h).contains(&r) { 1.0 } else { 0.0 }))
                };
                uniform(4 * h * 2, bound, &mut phi);
                uniform(4 * h * h, bound, &mut phi);
                bias(&mut phi);
                uniform(4 * h * h, bound, &mut phi);
                uniform(4 * h * h, bound, &mut phi);
                bias(&mut phi);
                uniform(h, 0.1 * bound, &mut phi);
                phi.push(0.0);
                phi
            }
        }
    }

    /// Floats of one slot for `count` coordinates.
    pub fn slot_len(&self, count: usize) -> usize {
        count * (1 + self.state_len())
    }

    /// Workgroups of the φ̄ partial sums of the reverse kernel for `count` coordinates.
    pub fn partial_groups(&self, gpu: &Gpu, count: usize) -> Result<usize> {
        const MAX_GROUPS: usize = 1024;
        Ok(match self {
            Self::Sgd { .. } | Self::Adam(_) => 0,
            Self::Linear => count.div_ceil(256).clamp(1, MAX_GROUPS),
            Self::Lstm(_) => {
                let wg = lstm::vjp_workgroup(gpu)?;
                count.div_ceil(wg).clamp(1, MAX_GROUPS)
            }
        })
    }

    /// Record inner step `t`: `slot_out` = step(`slot_in`, g).
    #[allow(clippy::too_many_arguments)]
    pub fn record_step(
        &self,
        rec: &mut Recorder,
        count: usize,
        slot_in: &GpuBuffer,
        g: &GpuBuffer,
        phi: (&GpuBuffer, usize),
        slot_out: &GpuBuffer,
        t: usize,
    ) -> Result<()> {
        match self {
            Self::Sgd { lr } => {
                vec::axpby(rec, 1.0, (slot_in, 0), -lr, (g, 0), (slot_out, 0), count)
            }
            Self::Adam(h) => adam::step(rec, count, slot_in, g, slot_out, h, t),
            Self::Linear => linear::step(rec, count, slot_in, g, phi, slot_out),
            Self::Lstm(h) => lstm::step(rec, count, slot_in, g, phi, slot_out, h),
        }
    }

    /// Record the reverse of one inner step (see [`VjpArgs`]). Hand-designed optimizers have no
    /// φ and no θ input, and their state depends on g only, which the first-order and truncated
    /// modes detach: their reverse is θ̄ ← θ̄ + w·g.
    pub fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        match self {
            Self::Sgd { .. } | Self::Adam(_) => vec::axpy(rec, a.w, a.g, 0, a.tbar, 0, a.count),
            Self::Linear => linear::vjp(
                rec,
                a.count,
                a.groups,
                a.slot,
                a.g,
                a.phi,
                a.tbar,
                a.partials,
                a.w,
                a.mode == Mode::Truncated,
                a.accumulate,
            ),
            Self::Lstm(h) => lstm::vjp(
                rec,
                a.count,
                a.groups,
                a.slot,
                a.g,
                a.phi,
                a.tbar,
                a.sbar,
                a.partials,
                a.w,
                a.accumulate,
                h,
            ),
        }
    }
}
