//! The f64 reference of an optimizer family, acting on the P coordinates of one instance:
//! the step (u, s') = f_φ(g, θ, s) and its exact vector-Jacobian product. Tests use it (the
//! meta-gradient reference, `reference::meta`, calls every family through this trait); the
//! GPU path never does.
//!
//! State is coordinate-major here: `state[j·S + k]` is state float k of coordinate j.

/// The inputs of one step of one instance.
#[derive(Clone, Copy, Debug)]
pub struct RefStep<'a> {
    /// φ.
    pub phi: &'a [f64],
    /// Gradient g (P).
    pub g: &'a [f64],
    /// Parameters θ (P).
    pub theta: &'a [f64],
    /// State s (P × S).
    pub state: &'a [f64],
    /// (offset, length) of each parameter tensor of the instance (per-tensor features).
    pub segments: &'a [(usize, usize)],
    /// Inner step number t.
    pub t: usize,
}

/// The inputs of the reverse of one step.
#[derive(Clone, Copy, Debug)]
pub struct RefVjp<'a> {
    /// Where the step was taken.
    pub at: RefStep<'a>,
    /// Cotangent ū of the update (P).
    pub u_bar: &'a [f64],
    /// Cotangent of the new state s' (P × S).
    pub state_bar: &'a [f64],
    /// Keep the gradient path (second-order mode): the state's cotangent flows through its g
    /// input too. In the detached modes a state that depends on g only gets cotangent 0.
    pub second_order: bool,
}

/// The cotangents of the step's inputs.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RefVjpOut {
    /// Of θ through the optimizer's θ input only (not the identity path θ' = θ + u) (P).
    pub theta_bar: Vec<f64>,
    /// Of g (P); meaningful where the family supports second-order mode.
    pub g_bar: Vec<f64>,
    /// Of the old state s (P × S).
    pub state_bar: Vec<f64>,
}

/// f64 reference of one optimizer family.
pub trait Reference {
    /// One step of all P coordinates of an instance: (u, s').
    fn step(&self, a: &RefStep) -> (Vec<f64>, Vec<f64>);

    /// The VJP of [`Reference::step`]; φ's cotangent is added to `phi_bar`.
    fn vjp(&self, a: &RefVjp, phi_bar: &mut [f64]) -> RefVjpOut;

    /// How far this step is from a point where the update is not smooth (a ReLU's
    /// pre-activation at 0): the smallest |pre-activation|; infinite for smooth families. Near
    /// such a point f32 and f64 arithmetic may take different sides, and the derivatives differ
    /// by a finite amount, so comparisons of meta-gradients avoid margins below about 1e-6.
    fn kink_margin(&self, a: &RefStep) -> f64 {
        let _ = a;
        f64::INFINITY
    }
}

/// A step that acts on each coordinate alone: `f(g, θ, s_j) → (u_j, s_j')`, S = `s` floats.
pub fn per_coordinate_step(
    a: &RefStep,
    s: usize,
    mut f: impl FnMut(f64, f64, &[f64]) -> (f64, Vec<f64>),
) -> (Vec<f64>, Vec<f64>) {
    let p = a.g.len();
    let mut u = Vec::with_capacity(p);
    let mut state = a.state.to_vec();
    for j in 0..p {
        let (uj, sj) = f(a.g[j], a.theta[j], &a.state[j * s..(j + 1) * s]);
        u.push(uj);
        state[j * s..(j + 1) * s].copy_from_slice(&sj);
    }
    (u, state)
}

/// One coordinate's cotangents, for [`per_coordinate_vjp`].
#[derive(Clone, Debug, Default)]
pub struct CoordVjp {
    /// Of θ through the θ input.
    pub theta_bar: f64,
    /// Of g.
    pub g_bar: f64,
    /// Of the coordinate's old state (S floats).
    pub state_bar: Vec<f64>,
}

/// The inputs of one coordinate's reverse step, for [`per_coordinate_vjp`].
#[derive(Clone, Copy, Debug)]
pub struct Coord<'a> {
    /// g_j.
    pub g: f64,
    /// θ_j.
    pub theta: f64,
    /// s_j (S floats).
    pub state: &'a [f64],
    /// ū_j.
    pub u_bar: f64,
    /// Cotangent of s_j' (S floats).
    pub state_bar: &'a [f64],
}

/// A VJP that acts on each coordinate alone, in coordinate order (φ̄ is accumulated in that
/// order): `f(coordinate) → its cotangents`.
pub fn per_coordinate_vjp(
    a: &RefVjp,
    s: usize,
    mut f: impl FnMut(&Coord) -> CoordVjp,
) -> RefVjpOut {
    let p = a.at.g.len();
    let mut out = RefVjpOut {
        theta_bar: Vec::with_capacity(p),
        g_bar: Vec::with_capacity(p),
        state_bar: vec![0.0; p * s],
    };
    for j in 0..p {
        let v = f(&Coord {
            g: a.at.g[j],
            theta: a.at.theta[j],
            state: &a.at.state[j * s..(j + 1) * s],
            u_bar: a.u_bar[j],
            state_bar: &a.state_bar[j * s..(j + 1) * s],
        });
        out.theta_bar.push(v.theta_bar);
        out.g_bar.push(v.g_bar);
        out.state_bar[j * s..(j + 1) * s].copy_from_slice(&v.state_bar);
    }
    out
}
