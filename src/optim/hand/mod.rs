//! Hand-designed inner optimizers: SGD, heavy-ball momentum, Nesterov momentum (NAG), RMSprop
//! and Adam. Equations in `hand.wgsl`'s header and in [`mod@reference`]; SGD's step is the
//! element-wise `vec::axpby`.

use super::reference::{per_coordinate_step, per_coordinate_vjp, Coord, CoordVjp};
use super::{
    detached_vjp, Family, Optimizer, RefStep, RefVjp, RefVjpOut, Reference, StepArgs, VjpArgs,
};
use crate::gpu::{Kernel, Recorder};
use crate::kernels::{check_region, u32_of, vec};
use crate::{Error, Result};

pub mod reference;

crate::shader! {
    pub static SHADER = "hand.wgsl";
    pub struct HandParams {
        count: u32, _p0: u32, _p1: u32, _p2: u32, lr: f32, beta1: f32, beta2: f32, eps: f32,
        c1: f32, c2: f32, w: f32, _f1: f32,
    }
    /// Inner Adam step.
    pub ADAM_STEP = adam_step(read slot_in, read g, write slot_out);
    /// Inner heavy-ball momentum step.
    pub MOMENTUM_STEP = momentum_step(read slot_in, read g, write slot_out);
    /// Inner Nesterov momentum step.
    pub NAG_STEP = nag_step(read slot_in, read g, write slot_out);
    /// Inner RMSprop step.
    pub RMSPROP_STEP = rmsprop_step(read slot_in, read g, write slot_out);
    /// Reverse of a heavy-ball momentum step with the gradient path (second-order mode).
    pub MOMENTUM_VJP = momentum_vjp(read gv, write tbar, write sbar, write gbar);
    /// Reverse of a Nesterov momentum step with the gradient path (second-order mode).
    pub NAG_VJP = nag_vjp(read gv, write tbar, write sbar, write gbar);
    /// Reverse of an RMSprop step with the gradient path (second-order mode).
    pub RMSPROP_VJP = rmsprop_vjp(read gv, write tbar, write sbar, write gbar, read slot_old);
    /// Reverse of an Adam step with the gradient path (second-order mode).
    pub ADAM_VJP = adam_vjp(read gv, write tbar, write sbar, write gbar, read slot_old);
}

/// Record a step kernel with `state` floats of state per coordinate.
fn record(
    rec: &mut Recorder,
    kernel: &'static Kernel,
    state: usize,
    a: &StepArgs,
    p: HandParams,
) -> Result<()> {
    let len = (1 + state) * a.count;
    check_region("optimizer slot in", a.slot_in, 0, &[(len, 1)])?;
    check_region("optimizer slot out", a.slot_out, 0, &[(len, 1)])?;
    check_region("optimizer g", a.g, 0, &[(a.count, 1)])?;
    let p = HandParams {
        count: u32_of("count", a.count)?,
        ..p
    };
    rec.dispatch(
        kernel,
        &[],
        &[a.slot_in, a.g, a.slot_out],
        &p,
        (a.count as u64).div_ceil(256),
    )
}

/// Record the reverse of a step with the gradient path kept (second-order mode), in place on
/// `tbar` (ū → θ̄ = ū + w·g) and `sbar` (s̄' → s̄, `state` floats per coordinate), writing the
/// gradient input's adjoint ḡ. Momentum kernels do not read the old state (`reads_slot` false);
/// RMSprop and Adam do.
fn record_so_vjp(
    rec: &mut Recorder,
    a: &VjpArgs,
    (kernel, state, reads_slot): (&'static Kernel, usize, bool),
    p: HandParams,
) -> Result<()> {
    let gbar = a.gbar()?;
    let c = a.count;
    for (what, b, len) in [
        ("optimizer g", a.g, c),
        ("optimizer tbar", a.tbar, c),
        ("optimizer sbar", a.sbar, c * state),
        ("optimizer gbar", gbar, c),
    ] {
        check_region(what, b, 0, &[(len, 1)])?;
    }
    if a.tbar.id == a.sbar.id || a.tbar.id == gbar.id || a.sbar.id == gbar.id {
        return Err(Error::invalid(
            "optimizer reverse: θ̄, s̄ and ḡ must be different buffers",
        ));
    }
    let p = HandParams {
        count: u32_of("count", c)?,
        w: a.w,
        ..p
    };
    let mut bind = vec![a.g, a.tbar, a.sbar, gbar];
    if reads_slot {
        check_region("optimizer slot", a.slot, 0, &[((1 + state) * c, 1)])?;
        bind.push(a.slot);
    }
    rec.dispatch(kernel, &[], &bind, &p, (c as u64).div_ceil(256))
}

/// The reference VJP of a hand-designed family with `s` floats of state: its state depends on g
/// only, so in the detached modes nothing flows into g or the state; in second-order mode
/// `f(coordinate) → (ḡ, s̄)`.
fn so_vjp(a: &RefVjp, s: usize, mut f: impl FnMut(&Coord) -> (f64, Vec<f64>)) -> RefVjpOut {
    per_coordinate_vjp(a, s, |c| {
        if !a.second_order {
            return CoordVjp {
                state_bar: vec![0.0; s],
                ..Default::default()
            };
        }
        let (g_bar, state_bar) = f(c);
        CoordVjp {
            theta_bar: 0.0,
            g_bar,
            state_bar,
        }
    })
}

fn lr_hyper(lr: f32) -> (&'static str, String) {
    ("lr", format!("{lr:e}"))
}

/// SGD: u = −lr·g.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
}

impl Default for Sgd {
    fn default() -> Self {
        Self { lr: 0.01 }
    }
}

/// The kernels the family dispatches.
pub static MOMENTUM_KERNELS: &[&Kernel] = &[&MOMENTUM_STEP, &NAG_STEP, &MOMENTUM_VJP, &NAG_VJP];
/// The kernels the family dispatches.
pub static RMSPROP_KERNELS: &[&Kernel] = &[&RMSPROP_STEP, &RMSPROP_VJP];
/// The kernels the family dispatches.
pub static ADAM_KERNELS: &[&Kernel] = &[&ADAM_STEP, &ADAM_VJP];

impl Family for Sgd {
    fn name(&self) -> &'static str {
        "sgd"
    }
    fn state_len(&self) -> usize {
        0
    }
    fn hyper(&self) -> Vec<(&'static str, String)> {
        vec![lr_hyper(self.lr)]
    }
    fn with_lr(&self, lr: f32) -> Option<Optimizer> {
        Some(Self { lr }.into())
    }
    fn supports_second_order(&self) -> bool {
        true
    }
    fn kernels(&self) -> &'static [&'static Kernel] {
        &[]
    }
    fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()> {
        vec::axpby(
            rec,
            1.0,
            vec::View::new(a.slot_in, 0),
            -self.lr,
            vec::View::new(a.g, 0),
            vec::View::new(a.slot_out, 0),
            a.count,
        )
    }
    /// Second-order: ḡ = −lr·ū, then θ̄ = ū + w·g.
    fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
        if a.mode == super::Mode::SecondOrder {
            let gbar = a.gbar()?;
            vec::axpby(
                rec,
                -self.lr,
                vec::View::new(a.tbar, 0),
                0.0,
                vec::View::new(a.tbar, 0),
                vec::View::new(gbar, 0),
                a.count,
            )?;
        }
        detached_vjp(rec, a)
    }
}

impl Reference for Sgd {
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
        let lr = f64::from(self.lr);
        per_coordinate_step(a, 0, |g, _, _| (reference::sgd_step(lr, g), Vec::new()))
    }
    fn vjp(&self, a: &RefVjp, _phi_bar: &mut [f64]) -> RefVjpOut {
        let lr = f64::from(self.lr);
        per_coordinate_vjp(a, 0, |c| CoordVjp {
            g_bar: -lr * c.u_bar,
            ..Default::default()
        })
    }
}

/// Heavy-ball momentum: m' = μ·m + g, u = −lr·m' (state m).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Momentum {
    /// Learning rate.
    pub lr: f32,
    /// Momentum μ.
    pub mu: f32,
}

impl Default for Momentum {
    fn default() -> Self {
        Self { lr: 0.01, mu: 0.9 }
    }
}

/// Nesterov momentum: m' = μ·m + g, u = −lr·(g + μ·m') (state m).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Nag {
    /// Learning rate.
    pub lr: f32,
    /// Momentum μ.
    pub mu: f32,
}

impl Default for Nag {
    fn default() -> Self {
        Self { lr: 0.01, mu: 0.9 }
    }
}

/// The GPU side of the hand-designed families with state: the step kernel, the reverse kernel
/// of second-order mode (and whether it reads the old state) and the hyper-parameters besides
/// lr; each type has `params(t)`, its kernels' parameters at step t.
macro_rules! stateful_family {
    ($ty:ident, $name:literal, $state:literal, $kernels:ident, $step:ident, ($vjp:ident, $reads:literal),
     [$($key:literal: $field:ident),*]) => {
        impl Family for $ty {
            fn name(&self) -> &'static str {
                $name
            }
            fn state_len(&self) -> usize {
                $state
            }
            fn hyper(&self) -> Vec<(&'static str, String)> {
                vec![lr_hyper(self.lr), $(($key, format!("{:e}", self.$field))),*]
            }
            fn with_lr(&self, lr: f32) -> Option<Optimizer> {
                Some(Self { lr, ..*self }.into())
            }
            fn supports_second_order(&self) -> bool {
                true
            }
            fn kernels(&self) -> &'static [&'static Kernel] {
                $kernels
            }
            fn record_step(&self, rec: &mut Recorder, a: &StepArgs) -> Result<()> {
                record(rec, &$step, $state, a, self.params(a.t))
            }
            fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs) -> Result<()> {
                if a.mode != super::Mode::SecondOrder {
                    return detached_vjp(rec, a);
                }
                record_so_vjp(rec, a, (&$vjp, $state, $reads), self.params(a.t))
            }
        }
    };
}

/// The two momentum families differ only in `nesterov`.
macro_rules! momentum_family {
    ($ty:ident, $name:literal, $nesterov:literal, $kernel:ident, $vjp:ident) => {
        stateful_family!($ty, $name, 1, MOMENTUM_KERNELS, $kernel, ($vjp, false), ["mu": mu]);

        impl $ty {
            fn params(&self, _t: usize) -> HandParams {
                HandParams {
                    lr: self.lr,
                    beta1: self.mu,
                    ..Default::default()
                }
            }
        }

        impl Reference for $ty {
            fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
                let (lr, mu) = (f64::from(self.lr), f64::from(self.mu));
                per_coordinate_step(a, 1, |g, _, s| {
                    reference::momentum_step(lr, mu, $nesterov, g, s[0])
                })
            }
            fn vjp(&self, a: &RefVjp, _phi_bar: &mut [f64]) -> RefVjpOut {
                let (lr, mu) = (f64::from(self.lr), f64::from(self.mu));
                so_vjp(a, 1, |c| {
                    let (g_bar, m_bar) =
                        reference::momentum_step_vjp(lr, mu, $nesterov, c.u_bar, c.state_bar[0]);
                    (g_bar, vec![m_bar])
                })
            }
        }
    };
}

momentum_family!(Momentum, "momentum", false, MOMENTUM_STEP, MOMENTUM_VJP);
momentum_family!(Nag, "nag", true, NAG_STEP, NAG_VJP);

/// RMSprop: v' = ρ·v + (1 − ρ)·g², u = −lr·g/(√v' + ε) (state v).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsProp {
    /// Learning rate.
    pub lr: f32,
    /// Decay ρ.
    pub rho: f32,
    /// ε.
    pub eps: f32,
}

impl Default for RmsProp {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            rho: 0.99,
            eps: 1e-8,
        }
    }
}

stateful_family!(RmsProp, "rmsprop", 1, RMSPROP_KERNELS, RMSPROP_STEP, (RMSPROP_VJP, true),
    ["rho": rho, "eps": eps]);

impl RmsProp {
    fn params(&self, _t: usize) -> HandParams {
        HandParams {
            lr: self.lr,
            beta2: self.rho,
            eps: self.eps,
            ..Default::default()
        }
    }
}

impl Reference for RmsProp {
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
        let (lr, rho, eps) = (f64::from(self.lr), f64::from(self.rho), f64::from(self.eps));
        per_coordinate_step(a, 1, |g, _, s| {
            reference::rmsprop_step(lr, rho, eps, g, s[0])
        })
    }
    fn vjp(&self, a: &RefVjp, _phi_bar: &mut [f64]) -> RefVjpOut {
        let (lr, rho, eps) = (f64::from(self.lr), f64::from(self.rho), f64::from(self.eps));
        so_vjp(a, 1, |c| {
            let (g_bar, v_bar) =
                reference::rmsprop_step_vjp(lr, rho, eps, c.g, c.state[0], c.u_bar, c.state_bar[0]);
            (g_bar, vec![v_bar])
        })
    }
}

/// Adam (state m, v).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// β1.
    pub beta1: f32,
    /// β2.
    pub beta2: f32,
    /// ε.
    pub eps: f32,
}

impl Default for Adam {
    fn default() -> Self {
        Self {
            lr: 1e-3,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

impl Adam {
    /// The kernels' parameters at step `t` (0-based): bias corrections c1 = 1 − β1^(t+1),
    /// c2 = 1 − β2^(t+1).
    fn params(&self, t: usize) -> HandParams {
        let k = i32::try_from(t + 1).unwrap_or(i32::MAX);
        HandParams {
            lr: self.lr,
            beta1: self.beta1,
            beta2: self.beta2,
            eps: self.eps,
            c1: 1.0 - self.beta1.powi(k),
            c2: 1.0 - self.beta2.powi(k),
            ..Default::default()
        }
    }

    fn reference_config(&self) -> reference::AdamConfig {
        reference::AdamConfig {
            lr: f64::from(self.lr),
            beta1: f64::from(self.beta1),
            beta2: f64::from(self.beta2),
            eps: f64::from(self.eps),
        }
    }
}

stateful_family!(Adam, "adam", 2, ADAM_KERNELS, ADAM_STEP, (ADAM_VJP, true),
    ["beta1": beta1, "beta2": beta2, "eps": eps]);

impl Reference for Adam {
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>) {
        let cfg = self.reference_config();
        per_coordinate_step(a, 2, |g, _, s| {
            let (u, s) = reference::adam_step(&cfg, g, [s[0], s[1]], a.t);
            (u, s.to_vec())
        })
    }
    fn vjp(&self, a: &RefVjp, _phi_bar: &mut [f64]) -> RefVjpOut {
        let cfg = self.reference_config();
        so_vjp(a, 2, |c| {
            let (g_bar, s) = reference::adam_step_vjp(
                &cfg,
                c.g,
                [c.state[0], c.state[1]],
                a.at.t,
                c.u_bar,
                [c.state_bar[0], c.state_bar[1]],
            );
            (g_bar, s.to_vec())
        })
    }
}
