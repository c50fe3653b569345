//! Inner optimizers behind one interface: hand-designed (SGD, Adam) and learned (linear, LSTM).
//!
//! An optimizer acts on the C = N·P coordinates of all task instances at once. Its *slot* layout
//! is θ at `slot[0..C]` followed by `state_len()` floats of state per coordinate, struct of arrays
//! (`slot[C + k·C + i]`). φ (the learned meta-parameters, `phi_len()` floats) is shared by every
//! coordinate and read from a buffer at an offset. See `docs/optimizers.md` for the equations.

use rand::Rng;

pub mod apply;
pub use apply::OptimizerRun;

use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::hand::{self, AdamHyper};
use crate::kernels::linear;
use crate::kernels::lstm::{self, LstmHyper};
use crate::kernels::mlp_opt::{self, MlpOptHyper, MlpOptWorkspace};
use crate::kernels::vec::{self, View};
use crate::params::ParamLayout;
use crate::{Error, Result};

/// Which gradient paths the meta-backward keeps (see `docs/optimizers.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The optimizer's inputs (g_t and θ_t) are treated as constants: only the identity path
    /// θ_{t+1} = θ_t + u_t, the recurrent state and the loss terms are differentiated.
    FirstOrder,
    /// The θ input path is kept, the Hessian term through g_t is dropped (L2L's choice).
    Truncated,
    /// Every path: truncated plus the Hessian term H_t·ḡ_t through the optimizer's gradient
    /// input, by an exact Hessian-vector product of the model (with SGD inner steps and a
    /// learned initialisation: MAML). The meta-gradient is the true gradient of the meta-loss.
    SecondOrder,
    /// Reptile (learned initialisation only): the meta-gradient of θ0 is θ0 − mean_n θ_T,
    /// no backward pass.
    Reptile,
}

impl Mode {
    /// Parse `first-order`, `truncated`, `second-order` or `reptile`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "first-order" | "fo" => Ok(Self::FirstOrder),
            "truncated" => Ok(Self::Truncated),
            "second-order" | "so" => Ok(Self::SecondOrder),
            "reptile" => Ok(Self::Reptile),
            other => Err(Error::invalid(format!(
                "unknown meta-gradient mode '{other}'; use first-order, truncated, second-order or reptile"
            ))),
        }
    }

    /// True when the θ input path of the optimizer is differentiated (truncated and
    /// second-order modes).
    pub fn keeps_theta_path(&self) -> bool {
        matches!(self, Self::Truncated | Self::SecondOrder)
    }

    /// The name `parse` accepts.
    pub fn name(&self) -> &'static str {
        match self {
            Self::FirstOrder => "first-order",
            Self::Truncated => "truncated",
            Self::SecondOrder => "second-order",
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
    /// Heavy-ball momentum: m' = μ·m + g, u = −lr·m' (state m).
    Momentum {
        /// Learning rate.
        lr: f32,
        /// Momentum μ.
        mu: f32,
    },
    /// Nesterov momentum: m' = μ·m + g, u = −lr·(g + μ·m') (state m).
    Nag {
        /// Learning rate.
        lr: f32,
        /// Momentum μ.
        mu: f32,
    },
    /// RMSprop: v' = ρ·v + (1 − ρ)·g², u = −lr·g/(√v' + ε) (state v).
    RmsProp {
        /// Learning rate.
        lr: f32,
        /// Decay ρ.
        rho: f32,
        /// ε.
        eps: f32,
    },
    /// Learned: u = w0·g + w1·θ + b.
    Linear,
    /// Learned: coordinatewise 2-layer LSTM, 20 units, LogAndSign inputs (L2L).
    Lstm(LstmHyper),
    /// Learned: per-parameter MLP on normalised momentum features (learned_optimization's
    /// MLPLOpt).
    Mlp(MlpOptHyper),
}

/// Buffers an optimizer needs beyond its slots, for one layout and instance count.
#[derive(Debug, Default)]
pub struct Workspace {
    mlp: Option<MlpOptWorkspace>,
}

impl Workspace {
    /// Bytes held on the GPU.
    pub fn bytes(&self) -> u64 {
        self.mlp.as_ref().map_or(0, MlpOptWorkspace::bytes)
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
}

impl Optimizer {
    /// Parse `sgd`, `adam`, `linear` or `lstm` with default hyper-parameters.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "sgd" => Ok(Self::Sgd { lr: 0.01 }),
            "adam" => Ok(Self::Adam(AdamHyper::default())),
            "momentum" => Ok(Self::Momentum { lr: 0.01, mu: 0.9 }),
            "nag" => Ok(Self::Nag { lr: 0.01, mu: 0.9 }),
            "rmsprop" => Ok(Self::RmsProp {
                lr: 1e-3,
                rho: 0.99,
                eps: 1e-8,
            }),
            "linear" => Ok(Self::Linear),
            "lstm" => Ok(Self::Lstm(LstmHyper::default())),
            "mlp" => Ok(Self::Mlp(MlpOptHyper::default())),
            other => Err(Error::invalid(format!(
                "unknown optimizer '{other}'; use sgd, momentum, nag, rmsprop, adam, linear, lstm or mlp"
            ))),
        }
    }

    /// The same optimizer with learning rate `lr` (learned optimizers have none and are
    /// returned unchanged).
    pub fn with_lr(&self, lr: f32) -> Self {
        match self {
            Self::Sgd { .. } => Self::Sgd { lr },
            Self::Momentum { mu, .. } => Self::Momentum { lr, mu: *mu },
            Self::Nag { mu, .. } => Self::Nag { lr, mu: *mu },
            Self::RmsProp { rho, eps, .. } => Self::RmsProp {
                lr,
                rho: *rho,
                eps: *eps,
            },
            Self::Adam(h) => Self::Adam(AdamHyper { lr, ..*h }),
            learned => learned.clone(),
        }
    }

    /// Short name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Sgd { .. } => "sgd",
            Self::Adam(_) => "adam",
            Self::Momentum { .. } => "momentum",
            Self::Nag { .. } => "nag",
            Self::RmsProp { .. } => "rmsprop",
            Self::Linear => "linear",
            Self::Lstm(_) => "lstm",
            Self::Mlp(_) => "mlp",
        }
    }

    /// State floats per coordinate.
    pub fn state_len(&self) -> usize {
        match self {
            Self::Sgd { .. } | Self::Linear => 0,
            Self::Adam(_) => 2,
            Self::Momentum { .. } | Self::Nag { .. } | Self::RmsProp { .. } => 1,
            Self::Lstm(_) => lstm::STATE,
            Self::Mlp(_) => mlp_opt::STATE,
        }
    }

    /// Learned meta-parameters φ (0 for hand-designed optimizers).
    pub fn phi_len(&self) -> usize {
        match self {
            Self::Sgd { .. }
            | Self::Adam(_)
            | Self::Momentum { .. }
            | Self::Nag { .. }
            | Self::RmsProp { .. } => 0,
            Self::Linear => linear::PHI_LEN,
            Self::Lstm(_) => lstm::PHI_LEN,
            Self::Mlp(_) => mlp_opt::PHI_LEN,
        }
    }

    /// True when the reverse kernels give ḡ, the adjoint of the gradient input, so that
    /// second-order mode is available (sgd, momentum, nag, linear).
    pub fn supports_second_order(&self) -> bool {
        matches!(
            self,
            Self::Sgd { .. } | Self::Momentum { .. } | Self::Nag { .. } | Self::Linear
        )
    }

    /// An error unless [`Optimizer::supports_second_order`].
    pub fn check_second_order(&self) -> Result<()> {
        if self.supports_second_order() {
            Ok(())
        } else {
            Err(Error::invalid(format!(
                "second-order mode is not available for optimizer '{}': its reverse kernel does not give the adjoint of its gradient input; use sgd, momentum, nag or linear, or the truncated mode",
                self.name()
            )))
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
            Self::Sgd { .. }
            | Self::Adam(_)
            | Self::Momentum { .. }
            | Self::Nag { .. }
            | Self::RmsProp { .. } => Vec::new(),
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
            Self::Mlp(_) => {
                // Weights U(±1/√fan_in), biases 0; layout in docs/optimizers.md.
                let mut phi = vec![0.0; mlp_opt::PHI_LEN];
                for (start, rows, cols) in [(0, 32, 19), (640, 32, 32), (1696, 2, 32)] {
                    let b = 1.0 / (cols as f32).sqrt();
                    for v in &mut phi[start..start + rows * cols] {
                        *v = rng.random_range(-b..b);
                    }
                }
                phi
            }
        }
    }

    /// The buffers this optimizer needs for `instances` instances of `layout`.
    pub fn workspace(
        &self,
        gpu: &Gpu,
        layout: &ParamLayout,
        instances: usize,
    ) -> Result<Workspace> {
        Ok(Workspace {
            mlp: match self {
                Self::Mlp(_) => Some(MlpOptWorkspace::new(gpu, layout, instances)?),
                _ => None,
            },
        })
    }

    /// Floats of one slot for `count` coordinates.
    pub fn slot_len(&self, count: usize) -> usize {
        count * (1 + self.state_len())
    }

    /// Workgroups of the φ̄ partial sums of the reverse kernel for `count` coordinates.
    pub fn partial_groups(&self, gpu: &Gpu, count: usize) -> Result<usize> {
        const MAX_GROUPS: usize = 1024;
        Ok(match self {
            Self::Sgd { .. }
            | Self::Adam(_)
            | Self::Momentum { .. }
            | Self::Nag { .. }
            | Self::RmsProp { .. } => 0,
            Self::Linear => count.div_ceil(256).clamp(1, MAX_GROUPS),
            Self::Lstm(_) => {
                let wg = lstm::vjp_workgroup(gpu)?;
                count.div_ceil(wg).clamp(1, MAX_GROUPS)
            }
            Self::Mlp(_) => {
                let wg = mlp_opt::vjp_workgroup(gpu)?;
                count.div_ceil(wg).clamp(1, MAX_GROUPS)
            }
        })
    }

    /// Record inner step `t`: `slot_out` = step(`slot_in`, g).
    #[allow(clippy::too_many_arguments)]
    pub fn record_step(
        &self,
        rec: &mut Recorder,
        ws: &Workspace,
        count: usize,
        slot_in: &GpuBuffer,
        g: &GpuBuffer,
        phi: (&GpuBuffer, usize),
        slot_out: &GpuBuffer,
        t: usize,
    ) -> Result<()> {
        match self {
            Self::Sgd { lr } => vec::axpby(
                rec,
                1.0,
                View::new(slot_in, 0),
                -lr,
                View::new(g, 0),
                View::new(slot_out, 0),
                count,
            ),
            Self::Adam(h) => hand::adam(rec, count, slot_in, g, slot_out, h, t),
            Self::Momentum { lr, mu } => {
                hand::momentum(rec, count, slot_in, g, slot_out, *lr, *mu, false)
            }
            Self::Nag { lr, mu } => {
                hand::momentum(rec, count, slot_in, g, slot_out, *lr, *mu, true)
            }
            Self::RmsProp { lr, rho, eps } => {
                hand::rmsprop(rec, count, slot_in, g, slot_out, *lr, *rho, *eps)
            }
            Self::Linear => linear::step(rec, count, slot_in, g, phi, slot_out),
            Self::Lstm(h) => lstm::step(rec, count, slot_in, g, phi, slot_out, h),
            Self::Mlp(h) => mlp_ws(ws)?.record_step(rec, slot_in, g, phi, slot_out, h, t),
        }
    }

    /// Record the reverse of one inner step (see [`VjpArgs`]). Hand-designed optimizers have no
    /// φ and no θ input, and their state depends on g only, which the first-order and truncated
    /// modes detach: their reverse is θ̄ ← θ̄ + w·g. In second-order mode the g path is kept:
    /// ḡ is written to `a.gbar` (SGD: ḡ = −lr·ū; momentum and Nesterov also carry the
    /// momentum's adjoint in `a.sbar`; linear: ḡ = w0·ū), and optimizers without it are refused.
    pub fn record_vjp(&self, rec: &mut Recorder, ws: &Workspace, a: &VjpArgs) -> Result<()> {
        if a.mode == Mode::SecondOrder {
            self.check_second_order()?;
            let gbar = a.gbar.ok_or_else(|| {
                Error::invalid("second-order mode needs a buffer for ḡ (VjpArgs::gbar)")
            })?;
            match self {
                Self::Sgd { lr } => {
                    vec::axpby(
                        rec,
                        -lr,
                        View::new(a.tbar, 0),
                        0.0,
                        View::new(a.tbar, 0),
                        View::new(gbar, 0),
                        a.count,
                    )?;
                    return vec::axpy(rec, a.w, View::new(a.g, 0), View::new(a.tbar, 0), a.count);
                }
                Self::Momentum { lr, mu } | Self::Nag { lr, mu } => {
                    let nesterov = matches!(self, Self::Nag { .. });
                    return hand::momentum_vjp(
                        rec, a.count, a.g, a.tbar, a.sbar, gbar, *lr, *mu, a.w, nesterov,
                    );
                }
                _ => {}
            }
        }
        match self {
            Self::Sgd { .. }
            | Self::Adam(_)
            | Self::Momentum { .. }
            | Self::Nag { .. }
            | Self::RmsProp { .. } => {
                vec::axpy(rec, a.w, View::new(a.g, 0), View::new(a.tbar, 0), a.count)
            }
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
                a.mode.keeps_theta_path(),
                a.accumulate,
                a.gbar.filter(|_| a.mode == Mode::SecondOrder),
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
            Self::Mlp(h) => mlp_ws(ws)?.record_vjp(
                rec,
                a.slot,
                a.g,
                a.phi,
                a.tbar,
                a.partials,
                a.groups,
                h,
                a.t,
                a.w,
                a.mode.keeps_theta_path(),
                a.accumulate,
            ),
        }
    }
}

fn mlp_ws(ws: &Workspace) -> Result<&MlpOptWorkspace> {
    ws.mlp.as_ref().ok_or_else(|| {
        Error::invalid("the MLP optimizer needs its workspace (Optimizer::workspace)")
    })
}
