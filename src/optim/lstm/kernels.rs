//! Wrappers of `lstm.wgsl`: the forward and reverse kernels of the coordinatewise 2-layer
//! LSTM optimizer (H = 20).

use super::Lstm;
use crate::gpu::{Gpu, Recorder};
use crate::kernels::{check_region, u32_of};
use crate::optim::{Mode, StepArgs, VjpArgs};
use crate::{Error, Result};

/// Hidden units per layer (a constant of the WGSL).
pub const HIDDEN: usize = 20;
/// State floats per coordinate: h1, c1, h2, c2.
pub const STATE: usize = 4 * HIDDEN;
/// Meta-parameters: 12H² + 17H + 1.
pub const PHI_LEN: usize = 12 * HIDDEN * HIDDEN + 17 * HIDDEN + 1;
/// Floats staged per coordinate in the reverse kernel (37 vec4s).
const STAGE: usize = 148;
/// Coordinates per workgroup of the forward kernel (5 invocations each).
const STEP_TILE: u64 = 32;
/// Most workgroups of the forward kernel (each loops over tiles and stages φ once).
const STEP_GROUPS: u64 = 8192;
/// Bytes of the forward kernel's exchange of h1' and of the output's partial sums.
const STEP_BYTES: usize = 16 * 320;
/// Bytes of φ staged in workgroup memory (1286 vec4s).
const PHI_BYTES: usize = 16 * 1286;

crate::shader! {
    pub static SHADER = "lstm.wgsl";
    pub struct LstmParams {
        count: u32, groups: u32, phi_off: u32, accumulate: u32, w: f32, logp: f32, eps: f32, out_scale: f32,
        phi_block: u32, phi_stride: u32, _p0: u32, _p1: u32,
    }
    /// Forward step.
    pub LSTM_STEP = lstm_step(read slot_in, read g, read phi, write slot_out);
    /// Reverse step (vector-Jacobian product, gates recomputed).
    pub LSTM_VJP = lstm_vjp(read slot_in, read g, read phi, write tbar, write sbar, write partials);
    /// Reverse step that also writes ḡ, the gradient input's adjoint (second-order mode).
    pub LSTM_VJP_SO = lstm_vjp_so(read slot_in, read g, read phi, write tbar, write sbar, write partials, write gbar);
}

/// Shape of the reverse kernel on an adapter: coordinates per tile (its workgroups have 5 times
/// as many invocations) and whether φ is staged in workgroup memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct VjpShape {
    tile: usize,
    phi_in_wg: bool,
}

/// The first of (φ staged, tile) = (yes, 32), (yes, 16), (yes, 8), (no, 32), (no, 16), (no, 8)
/// whose workgroup memory, 4·148·tile bytes (+ 20 576 for φ), fits the adapter, and whose 5·tile
/// invocations do.
fn vjp_shape(gpu: &Gpu) -> Result<VjpShape> {
    let limits = gpu.limits();
    let bytes_limit = limits.max_compute_workgroup_storage_size as usize;
    let lanes_limit = (limits.max_compute_invocations_per_workgroup as usize)
        .min(limits.max_compute_workgroup_size_x as usize);
    let bytes = |s: &VjpShape| 4 * STAGE * s.tile + if s.phi_in_wg { PHI_BYTES } else { 0 };
    [
        (true, 32),
        (true, 16),
        (true, 8),
        (false, 32),
        (false, 16),
        (false, 8),
    ]
    .into_iter()
    .map(|(phi_in_wg, tile)| VjpShape { tile, phi_in_wg })
    .find(|s| bytes(s) <= bytes_limit && 5 * s.tile <= lanes_limit)
    .ok_or_else(|| {
        let need = 4 * STAGE * 8;
        Error::LimitExceeded {
            what: "workgroup memory of the LSTM reverse kernel".into(),
            value: need as u64,
            limit: bytes_limit as u64,
            limit_name: "max_compute_workgroup_storage_size",
            hint: format!(
                "use an adapter with at least {need} bytes of workgroup memory and 40 \
                     invocations per workgroup"
            ),
        }
    })
}

/// Coordinates per tile of the reverse kernel (its workgroups have 5 invocations per
/// coordinate), chosen from the adapter's workgroup memory: 4·148 bytes per coordinate, plus
/// 20 576 bytes where φ fits too.
pub fn vjp_workgroup(gpu: &Gpu) -> Result<usize> {
    Ok(vjp_shape(gpu)?.tile)
}

/// The specialisation constants that stage φ in workgroup memory, or read it from the buffer.
fn phi_constants(phi_in_wg: bool) -> [(&'static str, f64); 2] {
    if phi_in_wg {
        [("PHI_WG", 1.0), ("PHI_V4", (PHI_BYTES / 16) as f64)]
    } else {
        [("PHI_WG", 0.0), ("PHI_V4", 1.0)]
    }
}

fn params(count: usize, groups: usize, phi_off: usize, h: &Lstm) -> Result<LstmParams> {
    Ok(LstmParams {
        count: u32_of("count", count)?,
        groups: u32_of("groups", groups)?,
        phi_off: u32_of("offset", phi_off)?,
        accumulate: 0,
        w: 0.0,
        logp: h.p,
        eps: h.eps,
        out_scale: h.out_scale,
        ..Default::default()
    })
}

/// Record one step of the `count` coordinates: `slot_in` (θ, state) and `g` → `slot_out`.
pub fn step(rec: &mut Recorder, a: &StepArgs, hyper: &Lstm) -> Result<()> {
    let (count, phi) = (a.count, a.phi);
    let slot = count * (1 + STATE);
    check_region("lstm slot in", a.slot_in, 0, &[(slot, 1)])?;
    check_region("lstm slot out", a.slot_out, 0, &[(slot, 1)])?;
    check_region("lstm g", a.g, 0, &[(count, 1)])?;
    let groups = (count as u64).div_ceil(STEP_TILE).min(STEP_GROUPS);
    let mut p = params(count, groups as usize, phi.1, hyper)?;
    (p.phi_block, p.phi_stride) = a.phi_blocks("lstm", PHI_LEN)?;
    let limit = rec.gpu().limits().max_compute_workgroup_storage_size as usize;
    let staged = a.phi_blocks.is_none() && PHI_BYTES + STEP_BYTES <= limit;
    rec.dispatch(
        &LSTM_STEP,
        &phi_constants(staged),
        &[a.slot_in, a.g, phi.0, a.slot_out],
        &p,
        groups,
    )
}

/// Record the reverse of one step: θ̄ ← ū + w·g and s̄ ← old-state adjoint in place, φ̄ partial
/// sums of `groups` workgroups into `partials[wg·PHI_LEN + e]` (added when `accumulate`), and
/// in second-order mode ḡ.
pub fn vjp(rec: &mut Recorder, a: &VjpArgs, hyper: &Lstm) -> Result<()> {
    let (count, groups, phi) = (a.count, a.groups, a.phi);
    check_region("lstm slot", a.slot, 0, &[(count * (1 + STATE), 1)])?;
    check_region("lstm g", a.g, 0, &[(count, 1)])?;
    check_region("lstm phi", phi.0, phi.1, &[(PHI_LEN, 1)])?;
    check_region("lstm tbar", a.tbar, 0, &[(count, 1)])?;
    check_region("lstm sbar", a.sbar, 0, &[(count * STATE, 1)])?;
    check_region("lstm partials", a.partials, 0, &[(groups * PHI_LEN, 1)])?;
    let shape = vjp_shape(rec.gpu())?;
    let mut p = params(count, groups, phi.1, hyper)?;
    p.w = a.w;
    p.accumulate = u32::from(a.accumulate);
    let [c0, c1] = phi_constants(shape.phi_in_wg);
    let mut bind = vec![a.slot, a.g, phi.0, a.tbar, a.sbar, a.partials];
    let kernel = if a.mode == Mode::SecondOrder {
        let gbar = a.gbar()?;
        check_region("lstm gbar", gbar, 0, &[(count, 1)])?;
        bind.push(gbar);
        &LSTM_VJP_SO
    } else {
        &LSTM_VJP
    };
    rec.dispatch(
        kernel,
        &[("T", shape.tile as f64), c0, c1],
        &bind,
        &p,
        groups as u64,
    )
}
