//! Wrapper of `lm.wgsl`: the embedding gather and its deterministic scatter-add gradient, and the
//! LSTM time step forward and backward with the recurrent product fused (layouts in the shader's
//! header).

use crate::gpu::{GpuBuffer, Recorder};
use crate::kernels::{check_region, u32_of, Batched};
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "lm.wgsl";
    pub struct LmParams {
        batch: u32, len: u32, hidden: u32, t: u32, th_off: u32, th_bs: u32, wh_off: u32, s_bs: u32,
        s_off: u32, emb_off: u32, width: u32, vocab: u32, zx: u32, g: u32, c: u32, h: u32,
        hp: u32, cp: u32, dha: u32, dz: u32, dcp: u32, accumulate: u32, _p0: u32, _p1: u32,
    }
    /// Embedding gather.
    pub LM_EMBED = lm_embed(read theta, read chunk: u32, write x_out);
    /// One LSTM time step of one layer, forward.
    pub LM_STEP = lm_step(read theta, read chunk: u32, read state_in, write work, write state_out);
    /// One LSTM time step of one layer, backward.
    pub LM_STEP_BACK = lm_step_back(read theta, read chunk: u32, write bwork);
    /// Embedding gradient of the input path.
    pub LM_EMBED_GRAD = lm_embed_grad(read dx, read chunk: u32, write grad);
}

/// Sizes of one chunk of the batched model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChunkDims {
    /// Instances N.
    pub batch: usize,
    /// Tokens per chunk L.
    pub len: usize,
    /// Vocabulary V.
    pub vocab: usize,
    /// Embedding width E.
    pub embed: usize,
    /// Hidden width H.
    pub hidden: usize,
}

impl ChunkDims {
    /// u32 values of the chunk buffer: tokens, targets, starts, order ([N, L] each) and seg
    /// ([N, L + 1]).
    pub fn chunk_len(&self) -> usize {
        self.batch * (5 * self.len + 1)
    }

    fn base(&self) -> Result<LmParams> {
        Ok(LmParams {
            batch: u32_of("lm instances", self.batch)?,
            len: u32_of("lm chunk length", self.len)?,
            hidden: u32_of("lm hidden width", self.hidden)?,
            width: u32_of("lm embedding width", self.embed)?,
            vocab: u32_of("lm vocabulary", self.vocab)?,
            ..Default::default()
        })
    }

    fn check_chunk(&self, chunk: &GpuBuffer) -> Result<()> {
        check_region("lm chunk", chunk, 0, &[(self.chunk_len(), 1)])
    }
}

/// Where a layer's regions lie in its work buffer (element offsets of instance 0; instance
/// strides L·4H for ZX, G, DZ and L·H for the others).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerWork {
    /// X·Wx + b.
    pub zx: usize,
    /// Gates after their nonlinearities.
    pub g: usize,
    /// c_t.
    pub c: usize,
    /// h_t.
    pub h: usize,
    /// h_{t−1} as used.
    pub hp: usize,
    /// c_{t−1} as used.
    pub cp: usize,
    /// ∂ℓ/∂h_t from above.
    pub dha: usize,
    /// ∂ℓ/∂z_t.
    pub dz: usize,
    /// ∂ℓ/∂c_{t−1}.
    pub dcp: usize,
    /// Elements of the whole work buffer.
    pub len: usize,
}

impl LayerWork {
    /// Regions packed back to back for `d`.
    pub fn packed(d: &ChunkDims) -> Self {
        let wide = d.batch * d.len * 4 * d.hidden;
        let narrow = d.batch * d.len * d.hidden;
        let mut at = 0;
        let mut take = |n: usize| {
            let o = at;
            at += n;
            o
        };
        let (zx, g, c, h, hp, cp, dha, dz, dcp) = (
            take(wide),
            take(wide),
            take(narrow),
            take(narrow),
            take(narrow),
            take(narrow),
            take(narrow),
            take(wide),
            take(narrow),
        );
        Self {
            zx,
            g,
            c,
            h,
            hp,
            cp,
            dha,
            dz,
            dcp,
            len: at,
        }
    }

    fn into_params(self, p: &mut LmParams) -> Result<()> {
        let f = |v: usize| u32_of("lm work offset", v);
        p.zx = f(self.zx)?;
        p.g = f(self.g)?;
        p.c = f(self.c)?;
        p.h = f(self.h)?;
        p.hp = f(self.hp)?;
        p.cp = f(self.cp)?;
        p.dha = f(self.dha)?;
        p.dz = f(self.dz)?;
        p.dcp = f(self.dcp)?;
        f(self.len).map(|_| ())
    }
}

fn groups(count: usize) -> u64 {
    (count as u64).div_ceil(256)
}

/// The (offset, stride) of a parameter-shaped buffer of `batch` instances, checked: instances
/// `block` or more floats apart, or 0 apart (one block) for parameters that are only read
/// (`shared`) or when there is one instance.
fn block_params(
    p: &mut LmParams,
    batch: usize,
    (what, b, block): (&str, Batched, usize),
    shared: bool,
) -> Result<()> {
    check_region(what, b.buf, b.off, &[(batch, b.batch_stride), (block, 1)])?;
    p.th_off = u32_of("offset", b.off)?;
    p.th_bs = u32_of("stride", b.batch_stride)?;
    let one_block = b.batch_stride == 0 && (shared || batch == 1);
    if b.batch_stride < block && !one_block {
        return Err(Error::invalid(format!(
            "{what}: instances are {} floats apart, a parameter block has {block}",
            b.batch_stride
        )));
    }
    Ok(())
}

/// Record `x[n, t, :] = θ_n[emb_off + tok[n,t]·E ..]`: the embedded tokens of the chunk, dense
/// `[N, L, E]` from offset 0 of `x`. `block` is the parameter block's size.
pub fn embed(
    rec: &mut Recorder,
    d: &ChunkDims,
    (theta, block, emb_off): (Batched, usize, usize),
    chunk: &GpuBuffer,
    x: &GpuBuffer,
) -> Result<()> {
    d.check_chunk(chunk)?;
    check_region("lm embedded", x, 0, &[(d.batch * d.len * d.embed, 1)])?;
    let mut p = d.base()?;
    block_params(&mut p, d.batch, ("lm theta", theta, block), true)?;
    p.emb_off = u32_of("offset", emb_off)?;
    rec.dispatch(
        &LM_EMBED,
        &[],
        &[theta.buf, chunk, x],
        &p,
        groups(d.batch * d.len * d.embed),
    )
}

/// One layer of the batched model for [`step`] and [`step_back`]: its parameters (`wh_off`
/// of `lstm{l}.wh` in the block), its work buffer and where its state lies in an instance's
/// state (`s_off`, `s_bs` floats per instance).
#[derive(Clone, Copy, Debug)]
pub struct LayerRef<'a> {
    /// Parameters of every instance, and the block size.
    pub theta: (Batched<'a>, usize),
    /// Offset of `lstm{l}.wh` in the block.
    pub wh_off: usize,
    /// The layer's work buffer and its regions.
    pub work: (&'a GpuBuffer, LayerWork),
    /// (offset of this layer's h in an instance's state, floats of state per instance).
    pub state: (usize, usize),
}

impl LayerRef<'_> {
    fn params(&self, d: &ChunkDims, t: usize) -> Result<LmParams> {
        let (theta, block) = self.theta;
        let (work, regions) = self.work;
        check_region("lm work", work, 0, &[(regions.len, 1)])?;
        if t >= d.len {
            return Err(Error::invalid(format!(
                "lm: time step {t} is outside a chunk of {} tokens",
                d.len
            )));
        }
        if self.wh_off + 4 * d.hidden * d.hidden > block {
            return Err(Error::invalid(
                "lm: the recurrent weight lies outside the block",
            ));
        }
        let mut p = d.base()?;
        block_params(&mut p, d.batch, ("lm theta", theta, block), true)?;
        regions.into_params(&mut p)?;
        p.t = u32_of("time step", t)?;
        p.wh_off = u32_of("offset", self.wh_off)?;
        p.s_off = u32_of("offset", self.state.0)?;
        p.s_bs = u32_of("stride", self.state.1)?;
        Ok(p)
    }

    fn check_state(&self, d: &ChunkDims, what: &str, s: &GpuBuffer) -> Result<()> {
        let (off, stride) = self.state;
        if off + 2 * d.hidden > stride {
            return Err(Error::invalid(
                "lm: the layer's state lies outside the state",
            ));
        }
        check_region(what, s, 0, &[(d.batch, stride), (1, 1)])
    }
}

/// Record time step `t` of `layer` forward: reads ZX at t, the state (`state_in`, when t = 0)
/// or the layer's h, c at t − 1; writes G, C, H, HP, CP at t, and `state_out` at t = L − 1.
pub fn step(
    rec: &mut Recorder,
    d: &ChunkDims,
    layer: &LayerRef,
    chunk: &GpuBuffer,
    (state_in, state_out): (&GpuBuffer, &GpuBuffer),
    t: usize,
) -> Result<()> {
    let p = layer.params(d, t)?;
    d.check_chunk(chunk)?;
    layer.check_state(d, "lm state in", state_in)?;
    layer.check_state(d, "lm state out", state_out)?;
    if state_in.id == state_out.id {
        return Err(Error::invalid(
            "lm: the state read and the state written must be different buffers",
        ));
    }
    rec.dispatch(
        &LM_STEP,
        &[],
        &[layer.theta.0.buf, chunk, state_in, layer.work.0, state_out],
        &p,
        groups(d.batch * d.hidden),
    )
}

/// Record time step `t` of `layer` backward (steps run from L − 1 down to 0): reads DHA, G, C,
/// CP at t and DZ, DCP at t + 1; writes DZ and DCP at t.
pub fn step_back(
    rec: &mut Recorder,
    d: &ChunkDims,
    layer: &LayerRef,
    chunk: &GpuBuffer,
    t: usize,
) -> Result<()> {
    let p = layer.params(d, t)?;
    d.check_chunk(chunk)?;
    rec.dispatch(
        &LM_STEP_BACK,
        &[],
        &[layer.theta.0.buf, chunk, layer.work.0],
        &p,
        groups(d.batch * d.hidden),
    )
}

/// Record `grad_n[emb_off + v·E + e] (+)= Σ_{t: tok[n,t] = v} dx[n,t,e]` (`dx` dense
/// `[N, L, E]`), adding to the gradient when `accumulate`.
pub fn embed_grad(
    rec: &mut Recorder,
    d: &ChunkDims,
    dx: &GpuBuffer,
    chunk: &GpuBuffer,
    (grad, block, emb_off): (Batched, usize, usize),
    accumulate: bool,
) -> Result<()> {
    d.check_chunk(chunk)?;
    check_region(
        "lm embedded gradient",
        dx,
        0,
        &[(d.batch * d.len * d.embed, 1)],
    )?;
    if emb_off + d.vocab * d.embed > block {
        return Err(Error::invalid("lm: the embedding lies outside the block"));
    }
    let mut p = d.base()?;
    block_params(&mut p, d.batch, ("lm grad", grad, block), false)?;
    p.emb_off = u32_of("offset", emb_off)?;
    p.accumulate = u32::from(accumulate);
    rec.dispatch(
        &LM_EMBED_GRAD,
        &[],
        &[dx, chunk, grad.buf],
        &p,
        groups(d.batch * d.len * d.embed),
    )
}

/// The chunk buffer's contents for `tokens`, `targets` and `starts` (each `[N, L]`): the three
/// arrays, then the positions of each instance sorted by token (stable) and the segment starts
/// of its distinct tokens, padded with L (see `lm.wgsl`).
pub fn chunk_words(
    d: &ChunkDims,
    tokens: &[u32],
    targets: &[u32],
    starts: &[bool],
) -> Result<Vec<u32>> {
    let nl = d.batch * d.len;
    if tokens.len() != nl || targets.len() != nl || starts.len() != nl {
        return Err(Error::invalid(format!(
            "lm: a chunk of {} instances × {} tokens needs {nl} tokens, targets and flags, got {}, {} and {}",
            d.batch,
            d.len,
            tokens.len(),
            targets.len(),
            starts.len()
        )));
    }
    if let Some(&t) = tokens
        .iter()
        .chain(targets)
        .find(|&&t| t as usize >= d.vocab)
    {
        return Err(Error::invalid(format!(
            "lm: token {t} is outside the vocabulary of {} tokens",
            d.vocab
        )));
    }
    let mut w = Vec::with_capacity(d.chunk_len());
    w.extend_from_slice(tokens);
    w.extend_from_slice(targets);
    w.extend(starts.iter().map(|&s| u32::from(s)));
    let mut segs = Vec::with_capacity(d.batch * (d.len + 1));
    for n in 0..d.batch {
        let row = &tokens[n * d.len..(n + 1) * d.len];
        let mut order: Vec<u32> = (0..d.len as u32).collect();
        order.sort_by_key(|&t| row[t as usize]);
        let mut seg = Vec::with_capacity(d.len + 1);
        for (k, &t) in order.iter().enumerate() {
            if k == 0 || row[order[k - 1] as usize] != row[t as usize] {
                seg.push(k as u32);
            }
        }
        seg.resize(d.len + 1, d.len as u32);
        w.extend_from_slice(&order);
        segs.extend_from_slice(&seg);
    }
    w.extend_from_slice(&segs);
    Ok(w)
}
