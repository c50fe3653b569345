//! ES and PES on the GPU (equations in `es.wgsl`'s header): the particles of an unroll are
//! 2P copies of the task's N instances, particle r's instances at r·N … r·N + N − 1, each
//! particle with its own φ (read by the optimizer per block of coordinates) and θ0. One
//! outer step records: perturb → the forward unroll of all particles in the same dispatches →
//! per-particle losses → the estimate (→ PES: keep the accumulated noise).

use super::EsConfig;
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::{check_region, u32_of};
use crate::optim::PhiBlocks;
use crate::Result;

crate::shader! {
    pub static SHADER = "es.wgsl";
    pub struct EsParams {
        m: u32, phi_len: u32, pairs: u32, instances: u32, params: u32, rows: u32, k0: u32, k1: u32,
        learn_phi: u32, learn_theta: u32, persistent: u32, reset: u32, sigma: f32, _f0: f32, _f1: f32, _f2: f32,
    }
    /// The particles' meta-parameters x ± σz.
    pub ES_PERTURB = es_perturb(read xmeta, write pert);
    /// Every particle's instances start from its θ0.
    pub ES_THETA = es_theta(read tpert, write theta);
    /// Per-particle weighted losses.
    pub ES_TOTALS = es_totals(read losses, read weights, write totals);
    /// The estimate ĝ.
    pub ES_GRAD = es_grad(write xi, read gtotals, write grad);
    /// PES: the accumulated noise after an outer step.
    pub ES_KEEP = es_keep(write xi);
}

/// The noise key of one unroll: `draw` (the outer step, from 1) of the run seeded `seed`.
pub fn key(seed: u64, draw: u64) -> [u32; 2] {
    let mut z = seed ^ draw.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    [z as u32, (z >> 32) as u32]
}

/// What one unroll's ES kernels need to know besides the buffers.
#[derive(Clone, Copy, Debug)]
pub struct Draw {
    /// The unroll's noise key ([`key`]).
    pub key: [u32; 2],
    /// φ is learned (perturbed).
    pub learn_phi: bool,
    /// θ0 is learned and this unroll starts from it (an episode's first).
    pub learn_theta: bool,
    /// The unroll starts an episode (PES forgets the accumulated noise).
    pub reset: bool,
}

/// The buffers of the particles: their meta-parameters, losses and (PES) accumulated noise.
pub struct Particles {
    cfg: EsConfig,
    persistent: bool,
    phi_len: usize,
    params: usize,
    instances: usize,
    pert: GpuBuffer,
    totals: GpuBuffer,
    xi: GpuBuffer,
}

impl Particles {
    /// The floats the particles hold on the GPU for `m` meta-parameters: R·M perturbed
    /// meta-parameters, R losses and (PES) P·M accumulated noise.
    pub fn floats(cfg: &EsConfig, persistent: bool, m: usize) -> Vec<(&'static str, u64)> {
        let (p, r, m) = (cfg.pairs as u64, 2 * cfg.pairs as u64, m as u64);
        vec![
            ("particle meta-parameters", r * m),
            ("particle losses", r),
            ("accumulated noise", if persistent { p * m } else { 1 }),
        ]
    }

    /// Buffers for 2·`cfg.pairs` particles of `instances` instances of `params` parameters
    /// each, with `phi_len` floats of φ (`cfg` as `MetaConfig::validate` accepts it).
    pub fn new(
        gpu: &Gpu,
        (cfg, persistent): (EsConfig, bool),
        phi_len: usize,
        params: usize,
        instances: usize,
    ) -> Result<Self> {
        let m = phi_len + params;
        u32_of("particle meta-parameters", 2 * cfg.pairs * m)?;
        let f = Self::floats(&cfg, persistent, m);
        Ok(Self {
            pert: gpu.buffer(f[0].0, f[0].1 as usize)?,
            totals: gpu.buffer(f[1].0, f[1].1 as usize)?,
            xi: gpu.buffer(f[2].0, f[2].1 as usize)?,
            cfg,
            persistent,
            phi_len,
            params,
            instances,
        })
    }

    /// Bytes of the particles' buffers.
    pub fn bytes(&self) -> u64 {
        self.pert.bytes() + self.totals.bytes() + self.xi.bytes()
    }

    /// Meta-parameters M = |φ| + P.
    fn m(&self) -> usize {
        self.phi_len + self.params
    }

    /// 2P.
    pub fn count(&self) -> usize {
        2 * self.cfg.pairs
    }

    /// Where the optimizer reads each particle's φ.
    pub fn phi(&self) -> ((&GpuBuffer, usize), PhiBlocks) {
        (
            (&self.pert, 0),
            PhiBlocks {
                block: self.instances * self.params,
                stride: self.m(),
            },
        )
    }

    /// The accumulated noise (PES), P × M.
    pub fn noise(&self) -> Option<&GpuBuffer> {
        self.persistent.then_some(&self.xi)
    }

    fn params(&self, d: &Draw, rows: usize) -> Result<EsParams> {
        Ok(EsParams {
            m: u32_of("meta-parameters", self.m())?,
            phi_len: u32_of("φ", self.phi_len)?,
            pairs: u32_of("pairs", self.cfg.pairs)?,
            instances: u32_of("instances", self.instances)?,
            params: u32_of("parameters", self.params)?,
            rows: u32_of("loss rows", rows)?,
            k0: d.key[0],
            k1: d.key[1],
            learn_phi: u32::from(d.learn_phi),
            learn_theta: u32::from(d.learn_theta),
            persistent: u32::from(self.persistent),
            reset: u32::from(d.reset),
            sigma: self.cfg.sigma,
            ..Default::default()
        })
    }

    /// The particles' meta-parameters from `meta` (φ then θ0).
    pub fn record_perturb(&self, rec: &mut Recorder, meta: &GpuBuffer, d: &Draw) -> Result<()> {
        check_region("ES meta-parameters", meta, 0, &[(self.m(), 1)])?;
        let p = self.params(d, 0)?;
        let n = (self.cfg.pairs * self.m()) as u64;
        rec.dispatch(&ES_PERTURB, &[], &[meta, &self.pert], &p, n.div_ceil(256))
    }

    /// θ of every particle's instances ← its θ0 (the first `count` floats of `theta`).
    pub fn record_theta0(&self, rec: &mut Recorder, theta: &GpuBuffer, d: &Draw) -> Result<()> {
        let c = self.count() * self.instances * self.params;
        check_region("ES initial θ", theta, 0, &[(c, 1)])?;
        let p = self.params(d, 0)?;
        rec.dispatch(
            &ES_THETA,
            &[],
            &[&self.pert, theta],
            &p,
            (c as u64).div_ceil(256),
        )
    }

    /// The estimate into `grad` (M floats) from the losses of the unroll (`weights.len()` rows
    /// of 2P·N), and with `keep` (an outer step of PES) the accumulated noise advanced.
    pub fn record_estimate(
        &self,
        rec: &mut Recorder,
        (losses, weights): (&GpuBuffer, &GpuBuffer),
        grad: &GpuBuffer,
        d: &Draw,
        keep: bool,
    ) -> Result<()> {
        let rows = weights.len();
        let r = self.count();
        check_region("ES losses", losses, 0, &[(rows * r * self.instances, 1)])?;
        check_region("ES estimate", grad, 0, &[(self.m(), 1)])?;
        let p = self.params(d, rows)?;
        rec.dispatch(
            &ES_TOTALS,
            &[],
            &[losses, weights, &self.totals],
            &p,
            (r as u64).div_ceil(64),
        )?;
        let m = self.m() as u64;
        rec.dispatch(
            &ES_GRAD,
            &[],
            &[&self.xi, &self.totals, grad],
            &p,
            m.div_ceil(256),
        )?;
        if keep && self.persistent {
            let n = self.cfg.pairs as u64 * m;
            rec.dispatch(&ES_KEEP, &[], &[&self.xi], &p, n.div_ceil(256))?;
        }
        Ok(())
    }
}
