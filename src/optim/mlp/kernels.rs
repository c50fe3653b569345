//! Wrappers of `mlp_opt.wgsl`: the per-tensor reductions, forward and reverse kernels of the
//! per-parameter MLP learned optimizer, and the workspace they share.

use super::{MlpOpt, FEATURES, PHI_LEN, STATE};
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::{check_region, u32_of};
use crate::optim::{Mode, StepArgs, VjpArgs, WorkspaceData};
use crate::params::ParamLayout;
use crate::{Error, Result};

/// Coordinates per chunk of the per-tensor reductions.
pub const CHUNK: usize = 4096;
const STAGE: usize = 98;

crate::shader! {
    pub static SHADER = "mlp_opt.wgsl";
    pub struct MlpOptParams {
        count: u32, per_instance: u32, chunks: u32, segments: u32, groups: u32, phi_off: u32, accumulate: u32, mode: u32,
        t: f32, eps: f32, exp_mult: f32, step_mult: f32, w: f32, phi_block: u32, phi_stride: u32, _f2: f32,
    }
    /// Per-chunk sums of squares of the features (mode 0) or of x_θ·aux (mode 1).
    pub MLPO_SUMS = mlpo_sums(read slot_in, read g, read tables: u32, read aux_in, write partials);
    /// Per-segment normalisers (mode 0) or dots (mode 1) from the chunk sums.
    pub MLPO_FINISH = mlpo_finish(read fin_tables: u32, read fin_partials, write fin_stats);
    /// Forward step.
    pub MLPO_STEP = mlpo_step(read slot_in, read g, read tables: u32, read stats, read phi, write slot_out);
    /// Reverse step: φ̄ partial sums, θ̄ (first-order) or the θ-feature adjoint (θ path).
    pub MLPO_VJP = mlpo_vjp(read slot_in, read g, read tables: u32, read stats, read phi, write tbar, write aux, write phi_partials);
    /// θ̄ with the θ path through the per-tensor normalisation.
    pub MLPO_THETA_BAR = mlpo_theta_bar(read slot_in, read g, read tables: u32, read stats, read aux_ro, write tbar2);
    /// θ̄, s̄ and ḡ of second-order mode through every feature's normalisation.
    pub MLPO_SO_BAR = mlpo_so_bar(read slot_in, read g, read tables: u32, read stats, read aux_ro, write tbar2, write sbar, write gbar);
}

/// Floats of `stats` per (instance, segment): 8 normalisers, the θ dot, 8 feature dots.
const STATS: usize = 17;

/// GPU buffers of the MLP optimizer for one layout and instance count.
#[derive(Debug)]
pub struct MlpOptWorkspace {
    tables: GpuBuffer,
    stats: GpuBuffer,
    partials: GpuBuffer,
    aux: GpuBuffer,
    per_instance: usize,
    instances: usize,
    chunks: usize,
    segments: usize,
}

impl MlpOptWorkspace {
    /// Tables and scratch for `instances` instances of `layout`; the feature adjoints of
    /// second-order mode take 8 floats per coordinate instead of 1.
    pub fn new(
        gpu: &Gpu,
        layout: &ParamLayout,
        instances: usize,
        second_order: bool,
    ) -> Result<Self> {
        let p = layout.size();
        let segs = layout.segments();
        if segs.iter().map(|s| s.1).sum::<usize>() != p {
            return Err(Error::invalid(
                "the layout's tensors do not cover its storage",
            ));
        }
        let mut seg_of = vec![0u32; p];
        let mut chunks: Vec<u32> = Vec::new();
        let mut seg_table: Vec<u32> = Vec::new();
        for (k, &(off, len)) in segs.iter().enumerate() {
            for s in &mut seg_of[off..off + len] {
                *s = k as u32;
            }
            let first = chunks.len() / 3;
            let mut o = 0;
            while o < len {
                let l = (len - o).min(CHUNK);
                chunks.extend([u32_of("offset", off + o)?, u32_of("length", l)?, k as u32]);
                o += l;
            }
            seg_table.extend([
                u32_of("chunk", first)?,
                u32_of("chunks", chunks.len() / 3 - first)?,
                u32_of("length", len)?,
            ]);
        }
        let q = chunks.len() / 3;
        let mut tables = seg_of;
        tables.extend(chunks);
        tables.extend(seg_table);
        let count = instances * p;
        Ok(Self {
            tables: gpu.buffer_from("mlp optimizer tables", &tables)?,
            stats: gpu.buffer("mlp optimizer stats", instances * segs.len() * STATS)?,
            partials: gpu.buffer("mlp optimizer chunk sums", instances * q * FEATURES)?,
            aux: gpu.buffer(
                "mlp optimizer feature adjoints",
                count * if second_order { FEATURES } else { 1 },
            )?,
            per_instance: p,
            instances,
            chunks: q,
            segments: segs.len(),
        })
    }

    fn params(&self, hyper: &MlpOpt, t: usize, phi_off: usize) -> Result<MlpOptParams> {
        Ok(MlpOptParams {
            count: u32_of("coordinates", self.instances * self.per_instance)?,
            per_instance: u32_of("parameters", self.per_instance)?,
            chunks: u32_of("chunks", self.chunks)?,
            segments: u32_of("segments", self.segments)?,
            phi_off: u32_of("offset", phi_off)?,
            t: t as f32,
            eps: hyper.eps,
            exp_mult: hyper.exp_mult,
            step_mult: hyper.step_mult,
            ..Default::default()
        })
    }

    /// Record the per-tensor normalisers of the features at (slot, g).
    fn record_stats(
        &self,
        rec: &mut Recorder,
        p: &MlpOptParams,
        slot: &GpuBuffer,
        g: &GpuBuffer,
    ) -> Result<()> {
        let mut p0 = *p;
        p0.mode = 0;
        let groups = (self.instances * self.chunks) as u64;
        rec.dispatch(
            &MLPO_SUMS,
            &[],
            &[slot, g, &self.tables, g, &self.partials],
            &p0,
            groups,
        )?;
        rec.dispatch(
            &MLPO_FINISH,
            &[],
            &[&self.tables, &self.partials, &self.stats],
            &p0,
            ((self.instances * self.segments) as u64).div_ceil(64),
        )
    }

    fn check(&self, slot: &GpuBuffer, g: &GpuBuffer) -> Result<()> {
        let c = self.instances * self.per_instance;
        check_region("mlp optimizer slot", slot, 0, &[(c * (1 + STATE), 1)])?;
        check_region("mlp optimizer g", g, 0, &[(c, 1)])
    }

    /// Record step `a.t`: `a.slot_out` = step(`a.slot_in`, g).
    pub fn record_step(&self, rec: &mut Recorder, a: &StepArgs, hyper: &MlpOpt) -> Result<()> {
        let (slot_in, g, phi, slot_out) = (a.slot_in, a.g, a.phi, a.slot_out);
        self.check(slot_in, g)?;
        let mut p = self.params(hyper, a.t, phi.1)?;
        (p.phi_block, p.phi_stride) = a.phi_blocks("mlp optimizer", PHI_LEN)?;
        self.record_stats(rec, &p, slot_in, g)?;
        let c = (self.instances * self.per_instance) as u64;
        rec.dispatch(
            &MLPO_STEP,
            &[],
            &[slot_in, g, &self.tables, &self.stats, phi.0, slot_out],
            &p,
            c.div_ceil(64),
        )
    }

    /// Record the reverse of step `a.t` (see the WGSL header): without the θ path (first-order),
    /// with it (truncated), or with every path (second-order: also s̄ and ḡ).
    pub fn record_vjp(&self, rec: &mut Recorder, a: &VjpArgs, hyper: &MlpOpt) -> Result<()> {
        let (slot, g, phi, tbar, partials, groups) =
            (a.slot, a.g, a.phi, a.tbar, a.partials, a.groups);
        let mode = match a.mode {
            Mode::SecondOrder => 2,
            m if m.keeps_theta_path() => 1,
            _ => 0,
        };
        self.check(slot, g)?;
        check_region("mlp optimizer phi", phi.0, phi.1, &[(PHI_LEN, 1)])?;
        let c = self.instances * self.per_instance;
        check_region("mlp optimizer tbar", tbar, 0, &[(c, 1)])?;
        check_region(
            "mlp optimizer partials",
            partials,
            0,
            &[(groups * PHI_LEN, 1)],
        )?;
        let gbar = if mode == 2 {
            let gbar = a.gbar()?;
            check_region("mlp optimizer sbar", a.sbar, 0, &[(c * STATE, 1)])?;
            check_region("mlp optimizer gbar", gbar, 0, &[(c, 1)])?;
            check_region(
                "mlp optimizer feature adjoints",
                &self.aux,
                0,
                &[(c * FEATURES, 1)],
            )
            .map_err(|_| {
                Error::invalid("the mlp optimizer's workspace was made without second-order mode")
            })?;
            Some(gbar)
        } else {
            None
        };
        let mut p = self.params(hyper, a.t, phi.1)?;
        self.record_stats(rec, &p, slot, g)?;
        p.groups = u32_of("groups", groups)?;
        p.accumulate = u32::from(a.accumulate);
        p.w = a.w;
        p.mode = mode;
        let wg = vjp_workgroup(rec.gpu())?;
        rec.dispatch(
            &MLPO_VJP,
            &[("WG", wg as f64)],
            &[
                slot,
                g,
                &self.tables,
                &self.stats,
                phi.0,
                tbar,
                &self.aux,
                partials,
            ],
            &p,
            groups as u64,
        )?;
        if mode == 0 {
            return Ok(());
        }
        rec.dispatch(
            &MLPO_SUMS,
            &[],
            &[slot, g, &self.tables, &self.aux, &self.partials],
            &p,
            (self.instances * self.chunks) as u64,
        )?;
        rec.dispatch(
            &MLPO_FINISH,
            &[],
            &[&self.tables, &self.partials, &self.stats],
            &p,
            ((self.instances * self.segments) as u64).div_ceil(64),
        )?;
        let common = [slot, g, &self.tables, &self.stats, &self.aux, tbar];
        match gbar {
            Some(gbar) => rec.dispatch(
                &MLPO_SO_BAR,
                &[],
                &[&common[..], &[a.sbar, gbar]].concat(),
                &p,
                (c as u64).div_ceil(256),
            ),
            None => rec.dispatch(&MLPO_THETA_BAR, &[], &common, &p, (c as u64).div_ceil(256)),
        }
    }
}

/// Invocations per workgroup of the reverse kernel: the largest of 64, 32, 16, 8 whose workgroup
/// memory, 4·(WG·98 + 1762) bytes, fits the adapter.
pub fn vjp_workgroup(gpu: &Gpu) -> Result<usize> {
    crate::kernels::tile_workgroup(gpu, STAGE, PHI_LEN, "MLP-optimizer")
}

impl WorkspaceData for MlpOptWorkspace {
    fn bytes(&self) -> u64 {
        self.tables.bytes() + self.stats.bytes() + self.partials.bytes() + self.aux.bytes()
    }
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}
