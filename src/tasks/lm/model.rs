//! The LSTM language model on the GPU: N instances (each its own parameter block) read one chunk
//! of L tokens each; the forward pass, the mean cross-entropy per instance, the gradient by
//! truncated BPTT inside the chunk, and the state carried to the next chunk. Equations in
//! [`super::spec`]; the reference is [`super::reference::loss_grad`].
//!
//! Per layer the input projection of the whole chunk is one matrix product, then one dispatch
//! per time step runs the recurrent product and the cell ([`super::kernels::step`]); backward,
//! one dispatch per time step gives ∂ℓ/∂z, and the weight gradients of the whole chunk are
//! matrix products again.

use super::kernels::{self, ChunkDims, LayerRef, LayerWork};
use super::spec::{At, LmSpec, LmSplit, Part};
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::matmul::{matmul, Activation, Epilogue, MatDims, MatView};
use crate::kernels::reduce::{reduce, Out, ReduceOp, Reduction, Strided};
use crate::kernels::vec::View;
use crate::kernels::Batched;
use crate::params::ParamLayout;
use crate::tasks::mlp::softmax::{softmax_xent, LossDims};
use crate::{Error, Result};

/// Workspace of the model for N instances and chunks of L tokens.
#[derive(Debug)]
pub struct GpuLm {
    spec: LmSpec,
    split: LmSplit,
    dims: ChunkDims,
    regions: LayerWork,
    work: Vec<GpuBuffer>,
    x0: GpuBuffer,
    dx0: GpuBuffer,
    /// Projected top outputs and their gradient (E ≠ H only).
    proj_io: Option<(GpuBuffer, GpuBuffer)>,
    logits: GpuBuffer,
    dlogits: GpuBuffer,
    chunk: GpuBuffer,
    /// The chunk indexed as one stream of N·L tokens (the embedding gradient summed over the
    /// streams).
    chunk_flat: GpuBuffer,
}

/// `d` as one stream of N·L tokens.
fn flat(d: &ChunkDims) -> ChunkDims {
    ChunkDims {
        batch: 1,
        len: d.batch * d.len,
        ..*d
    }
}

/// How the rows of the `[N, L, ·]` sequences enter a product: as N matrices of L rows each
/// (each stream its own weights or its own gradient), or, when every stream reads the same
/// weights (and, backward, adds into one gradient), as one matrix of N·L rows.
#[derive(Clone, Copy, Debug)]
struct Rows {
    /// Rows per product.
    m: usize,
    /// Products.
    batch: usize,
}

impl Rows {
    fn of(d: &ChunkDims, joined: bool) -> Self {
        if joined {
            Self {
                m: d.batch * d.len,
                batch: 1,
            }
        } else {
            Self {
                m: d.len,
                batch: d.batch,
            }
        }
    }
}

/// A dense batch of `rows × cols` matrices at `off` of `buf`.
fn dense(buf: &GpuBuffer, off: usize, rows: usize, cols: usize) -> MatView<'_> {
    MatView::dense(buf, off, rows, cols)
}

/// The `rows × cols` tensor at `off` of every instance's block.
fn param(b: Batched<'_>, off: usize, cols: usize) -> MatView<'_> {
    MatView {
        buf: b.buf,
        off: b.off + off,
        batch_stride: b.batch_stride,
        ld: cols,
        trans: false,
    }
}

/// A model's parameters, or their gradients, by part ([`Part`]): the fast block of every
/// instance and the shared block (instance stride 0). A part that holds no tensor may be
/// absent; in gradients, an absent part is not computed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Parts<'a> {
    /// The fast blocks.
    pub fast: Option<Batched<'a>>,
    /// The shared block.
    pub shared: Option<Batched<'a>>,
}

impl<'a> Parts<'a> {
    /// Only fast blocks (the whole model, for [`GpuLm::new`]).
    pub fn fast(b: Batched<'a>) -> Self {
        Self {
            fast: Some(b),
            shared: None,
        }
    }

    /// The blocks of `part`.
    pub fn get(&self, part: Part) -> Option<Batched<'a>> {
        match part {
            Part::Fast => self.fast,
            Part::Shared => self.shared,
        }
    }
}

/// Record `grad_n[off + c] = Σ_r x[n, r, c]` for the dense `[N, rows, cols]` tensor at
/// `x.1` of `x.0` (a bias gradient from the gradient of its outputs).
fn sum_rows(
    rec: &mut Recorder,
    x: (&GpuBuffer, usize),
    (rows, cols, n): (usize, usize, usize),
    grad: Batched,
    off: usize,
) -> Result<()> {
    reduce(
        rec,
        Reduction::new(ReduceOp::Sum, rows, cols, n),
        Strided {
            buf: x.0,
            off: x.1,
            batch_stride: rows * cols,
            row_stride: cols,
            col_stride: 1,
        },
        Out {
            buf: grad.buf,
            off: grad.off + off,
            batch_stride: grad.batch_stride,
            col_stride: 1,
        },
    )
}

impl GpuLm {
    /// The workspace of `instances` instances of `spec` reading chunks of `len` tokens, every
    /// tensor in the fast part (each instance its own block of [`LmSpec::layout`], or one
    /// block read by all at instance stride 0).
    pub fn new(gpu: &Gpu, spec: &LmSpec, instances: usize, len: usize) -> Result<Self> {
        Self::split(gpu, spec, &["all".to_string()], instances, len)
    }

    /// As [`GpuLm::new`], with the tensors of the groups `fast` names fast and the others
    /// shared ([`LmSpec::split`]).
    pub fn split(
        gpu: &Gpu,
        spec: &LmSpec,
        fast: &[String],
        instances: usize,
        len: usize,
    ) -> Result<Self> {
        if instances == 0 || len == 0 {
            return Err(Error::invalid(
                "a language model needs at least one instance and chunks of at least one token",
            ));
        }
        let split = spec.split(fast)?;
        let dims = ChunkDims {
            batch: instances,
            len,
            vocab: spec.vocab,
            embed: spec.embed,
            hidden: spec.hidden,
        };
        let regions = LayerWork::packed(&dims);
        let nle = instances * len * spec.embed;
        let nlv = instances * len * spec.vocab;
        let work = (0..spec.layers)
            .map(|l| gpu.buffer(&format!("lm work {l}"), regions.len))
            .collect::<Result<Vec<_>>>()?;
        let proj_io = if spec.has_projection() {
            Some((gpu.buffer("lm u", nle)?, gpu.buffer("lm du", nle)?))
        } else {
            None
        };
        Ok(Self {
            spec: *spec,
            split,
            dims,
            regions,
            work,
            x0: gpu.buffer("lm x0", nle)?,
            dx0: gpu.buffer("lm dx0", nle)?,
            proj_io,
            logits: gpu.buffer("lm logits", nlv)?,
            dlogits: gpu.buffer("lm dlogits", nlv)?,
            chunk: gpu.buffer("lm chunk", dims.chunk_len())?,
            chunk_flat: gpu.buffer("lm chunk, one stream", flat(&dims).chunk_len())?,
        })
    }

    /// The layout of one instance's fast block (with every tensor fast, [`LmSpec::layout`]).
    pub fn layout(&self) -> &ParamLayout {
        &self.split.fast
    }

    /// The split of the parameters into fast and shared tensors.
    pub fn parts(&self) -> &LmSplit {
        &self.split
    }

    /// The model.
    pub fn spec(&self) -> &LmSpec {
        &self.spec
    }

    /// Instances N read side by side.
    pub fn instances(&self) -> usize {
        self.dims.batch
    }

    /// Tokens per chunk L.
    pub fn chunk_len(&self) -> usize {
        self.dims.len
    }

    /// Bytes of GPU memory held.
    pub fn bytes(&self) -> u64 {
        let mut b = self.x0.bytes() + self.dx0.bytes() + self.logits.bytes();
        b += self.dlogits.bytes() + self.chunk.bytes();
        b += self.work.iter().map(GpuBuffer::bytes).sum::<u64>();
        if let Some((u, du)) = &self.proj_io {
            b += u.bytes() + du.bytes();
        }
        b
    }

    /// Upload the chunk every instance reads next: `tokens`, `targets` and `starts` (a
    /// document starts at that token), each `[N, L]`.
    pub fn upload_chunk(
        &self,
        gpu: &Gpu,
        tokens: &[u32],
        targets: &[u32],
        starts: &[bool],
    ) -> Result<()> {
        let words = self.chunk_block(tokens, targets, starts)?;
        let (a, b) = words.split_at(self.dims.chunk_len());
        gpu.write(&self.chunk, 0, a)?;
        gpu.write(&self.chunk_flat, 0, b)
    }

    /// The words of one chunk as the model reads it ([`GpuLm::chunk_block_len`] of them): the
    /// chunk as N streams, then as one stream of N·L tokens; see [`GpuLm::upload_chunk`].
    pub fn chunk_block(
        &self,
        tokens: &[u32],
        targets: &[u32],
        starts: &[bool],
    ) -> Result<Vec<u32>> {
        let mut words = kernels::chunk_words(&self.dims, tokens, targets, starts)?;
        words.extend(kernels::chunk_words(
            &flat(&self.dims),
            tokens,
            targets,
            starts,
        )?);
        Ok(words)
    }

    /// Words of one [`GpuLm::chunk_block`].
    pub fn chunk_block_len(&self) -> usize {
        self.dims.chunk_len() + flat(&self.dims).chunk_len()
    }

    /// Record copies of the chunk block at `src[off..]` (words of [`GpuLm::chunk_block`],
    /// stored on the GPU) into the chunk the following records read: a chunk chosen inside a
    /// recording, where [`GpuLm::upload_chunk`]'s queued write would land before every dispatch.
    pub fn record_chunk_from(&self, rec: &mut Recorder, src: &GpuBuffer, off: usize) -> Result<()> {
        let a = self.dims.chunk_len();
        rec.copy(src, off, &self.chunk, 0, a)?;
        rec.copy(
            src,
            off + a,
            &self.chunk_flat,
            0,
            flat(&self.dims).chunk_len(),
        )
    }

    /// Floats of one block of `part`.
    fn part_len(&self, part: Part) -> usize {
        match part {
            Part::Fast => self.split.fast.size(),
            Part::Shared => self.split.shared.size(),
        }
    }

    /// The blocks of the part that holds the tensor at `at`.
    fn src<'a>(&self, w: &Parts<'a>, at: At) -> Result<Batched<'a>> {
        w.get(at.part).ok_or_else(|| {
            Error::invalid(format!(
                "lm: the {:?} part of the weights holds tensors but none was given",
                at.part
            ))
        })
    }

    /// Check the parts given against the split: weights for each part that holds tensors, a
    /// shared part at instance stride 0, and a gradient summed over the instances (stride 0)
    /// only for weights they share.
    fn check_parts(&self, w: &Parts, grad: Option<&Parts>) -> Result<()> {
        for part in [Part::Fast, Part::Shared] {
            let given = w.get(part);
            if self.part_len(part) > 0 && given.is_none() {
                return Err(Error::invalid(format!(
                    "lm: the {part:?} part holds {} weights but none were given",
                    self.part_len(part)
                )));
            }
            let shared_ok = |b: Option<Batched>| b.is_none_or(|b| b.batch_stride == 0);
            if part == Part::Shared
                && !(shared_ok(given) && shared_ok(grad.and_then(|g| g.get(part))))
            {
                return Err(Error::invalid(
                    "lm: shared weights and their gradient are one block for all instances \
                     (instance stride 0)",
                ));
            }
            if let (Some(g), Some(t)) = (grad.and_then(|g| g.get(part)), given) {
                if g.batch_stride == 0 && t.batch_stride != 0 {
                    return Err(Error::invalid(
                        "lm: a gradient summed over the streams needs weights shared by them \
                         (instance stride 0)",
                    ));
                }
            }
        }
        Ok(())
    }

    fn layer<'a>(&'a self, w: &Parts<'a>, l: usize) -> Result<LayerRef<'a>> {
        let wh = self.split.at.wh[l];
        Ok(LayerRef {
            theta: (self.src(w, wh)?, self.part_len(wh.part)),
            wh_off: wh.off,
            work: (&self.work[l], self.regions),
            state: (2 * l * self.spec.hidden, self.spec.state_len()),
        })
    }

    /// The top outputs u_t (projected when E ≠ H) as matrices of `rows` rows.
    fn u(&self, rows: usize) -> MatView<'_> {
        match &self.proj_io {
            Some((u, _)) => dense(u, 0, rows, self.spec.embed),
            None => dense(
                &self.work[self.spec.layers - 1],
                self.regions.h,
                rows,
                self.spec.hidden,
            ),
        }
    }

    /// Input sequence of layer `l`: (buffer, offset, width).
    fn input(&self, l: usize) -> (&GpuBuffer, usize, usize) {
        if l == 0 {
            (&self.x0, 0, self.spec.embed)
        } else {
            (&self.work[l - 1], self.regions.h, self.spec.hidden)
        }
    }

    /// [`GpuLm::record_parts`] of a model whose tensors are all fast ([`GpuLm::new`]): `theta`
    /// and `grad` each one block per instance, or one block for all at instance stride 0.
    pub fn record(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        states: (&GpuBuffer, &GpuBuffer),
        grad: Option<Batched>,
        loss: View,
    ) -> Result<()> {
        self.record_parts(
            rec,
            Parts::fast(theta),
            states,
            grad.map(Parts::fast).as_ref(),
            loss,
        )
    }

    /// Record the chunk's loss of every instance (`loss[loss.off + n]`) at the weights `w`
    /// from the state in `states.0`, the state after the chunk into `states.1`, and, with
    /// `grad`, the gradient of the loss with respect to the parts it holds (every storage of
    /// those blocks written; the products that only serve an absent part are not recorded).
    /// A product whose weights every instance shares runs over all N·L rows at once; a
    /// gradient block at instance stride 0 receives the sum over the instances.
    pub fn record_parts(
        &self,
        rec: &mut Recorder,
        w: Parts,
        states: (&GpuBuffer, &GpuBuffer),
        grad: Option<&Parts>,
        loss: View,
    ) -> Result<()> {
        self.check_parts(&w, grad)?;
        let (d, o, s) = (&self.dims, &self.split.at, &self.spec);
        let (n, l_n, h_n, e_n, v_n) = (d.batch, d.len, s.hidden, s.embed, s.vocab);
        let rows = |shared: bool| Rows::of(d, shared);
        let emb = self.src(&w, o.emb)?;
        kernels::embed(
            rec,
            d,
            (emb, self.part_len(o.emb.part), o.emb.off),
            &self.chunk,
            &self.x0,
        )?;
        for l in 0..s.layers {
            let (x, x_off, width) = self.input(l);
            let (wx, b) = (self.src(&w, o.wx[l])?, self.src(&w, o.b[l])?);
            let r = rows(wx.batch_stride == 0 && b.batch_stride == 0);
            matmul(
                rec,
                MatDims::new(r.m, 4 * h_n, width, r.batch),
                dense(x, x_off, r.m, width),
                param(wx, o.wx[l].off, 4 * h_n),
                dense(&self.work[l], self.regions.zx, r.m, 4 * h_n),
                Epilogue::BiasAct {
                    buf: b.buf,
                    off: b.off + o.b[l].off,
                    batch_stride: b.batch_stride,
                    act: Activation::Identity,
                },
            )?;
            let layer = self.layer(&w, l)?;
            for t in 0..l_n {
                kernels::step(rec, d, &layer, &self.chunk, states, t)?;
            }
        }
        let top = &self.work[s.layers - 1];
        if let (Some((u, _)), Some(p)) = (&self.proj_io, o.proj) {
            let pw = self.src(&w, p)?;
            let r = rows(pw.batch_stride == 0);
            matmul(
                rec,
                MatDims::new(r.m, e_n, h_n, r.batch),
                dense(top, self.regions.h, r.m, h_n),
                param(pw, p.off, e_n),
                dense(u, 0, r.m, e_n),
                Epilogue::Store,
            )?;
        }
        let out_b = self.src(&w, o.out_b)?;
        let r = rows(emb.batch_stride == 0 && out_b.batch_stride == 0);
        matmul(
            rec,
            MatDims::new(r.m, v_n, e_n, r.batch),
            self.u(r.m),
            param(emb, o.emb.off, e_n).t(),
            dense(&self.logits, 0, r.m, v_n),
            Epilogue::BiasAct {
                buf: out_b.buf,
                off: out_b.off + o.out_b.off,
                batch_stride: out_b.batch_stride,
                act: Activation::Identity,
            },
        )?;
        softmax_xent(
            rec,
            LossDims {
                rows: l_n,
                width: v_n,
                batch: n,
            },
            Batched::dense(&self.logits, l_n * v_n),
            Batched {
                buf: &self.chunk,
                off: n * l_n,
                batch_stride: l_n,
            },
            Batched::dense(&self.dlogits, l_n * v_n),
            grad.is_some(),
            loss,
        )?;
        match grad {
            Some(g) => self.record_backward(rec, &w, g),
            None => Ok(()),
        }
    }

    /// Record the cross-entropy of every token of the chunk whose logits the last
    /// [`GpuLm::record`] left: `out[out.off + n·L + t]` = log Σ_v exp s_tv − s_t,y_t for stream n
    /// and token t (`[N, L]`; their mean over t is `record`'s loss of stream n). Record it after
    /// `record` in the same submission.
    pub fn record_token_losses(&self, rec: &mut Recorder, out: View) -> Result<()> {
        let (n, l_n, v_n) = (self.dims.batch, self.dims.len, self.spec.vocab);
        softmax_xent(
            rec,
            LossDims {
                rows: 1,
                width: v_n,
                batch: n * l_n,
            },
            Batched::dense(&self.logits, v_n),
            Batched {
                buf: &self.chunk,
                off: n * l_n,
                batch_stride: 1,
            },
            Batched::dense(&self.dlogits, v_n),
            false,
            out,
        )
    }

    fn record_backward(&self, rec: &mut Recorder, w: &Parts, g: &Parts) -> Result<()> {
        let (d, o, s) = (&self.dims, &self.split.at, &self.spec);
        let (h_n, e_n, v_n) = (s.hidden, s.embed, s.vocab);
        let rows = |shared: bool| Rows::of(d, shared);
        // The gradient block of the tensor at `at`, when its part is asked for.
        let want = |at: At| g.get(at.part);
        let needs_layer =
            |l: usize| want(o.wx[l]).is_some() || want(o.wh[l]).is_some() || want(o.b[l]).is_some();
        let emb_grad = want(o.emb);
        // The lowest layer the backward pass must reach.
        let lowest = if emb_grad.is_some() {
            0
        } else {
            (0..s.layers).find(|&l| needs_layer(l)).unwrap_or(s.layers)
        };
        let dlogits = |m| dense(&self.dlogits, 0, m, v_n);
        if let Some(gb) = want(o.out_b) {
            let r = rows(gb.batch_stride == 0);
            sum_rows(
                rec,
                (&self.dlogits, 0),
                (r.m, v_n, r.batch),
                gb,
                o.out_b.off,
            )?;
        }
        // The output's share of the tied embedding's gradient; the input's is added below.
        if let Some(ge) = emb_grad {
            let r = rows(ge.batch_stride == 0);
            matmul(
                rec,
                MatDims::new(v_n, e_n, r.m, r.batch),
                dlogits(r.m).t(),
                self.u(r.m),
                param(ge, o.emb.off, e_n),
                Epilogue::Store,
            )?;
        }
        let proj_grad = o.proj.and_then(|p| want(p).map(|gp| (p, gp)));
        if lowest == s.layers && proj_grad.is_none() {
            return Ok(());
        }
        let emb = self.src(w, o.emb)?;
        let re = rows(emb.batch_stride == 0);
        let top = &self.work[s.layers - 1];
        let top_dha = |m| dense(top, self.regions.dha, m, h_n);
        // ∂ℓ/∂u = dS·E: the gradient of the top layer's outputs, or of the projected ones.
        let du = |m| match &self.proj_io {
            Some((_, du)) => dense(du, 0, m, e_n),
            None => top_dha(m),
        };
        matmul(
            rec,
            MatDims::new(re.m, e_n, v_n, re.batch),
            dlogits(re.m),
            param(emb, o.emb.off, e_n),
            du(re.m),
            Epilogue::Store,
        )?;
        if let Some(p) = o.proj {
            if let Some((p, gp)) = proj_grad {
                let r = rows(gp.batch_stride == 0);
                matmul(
                    rec,
                    MatDims::new(h_n, e_n, r.m, r.batch),
                    dense(top, self.regions.h, r.m, h_n).t(),
                    du(r.m),
                    param(gp, p.off, e_n),
                    Epilogue::Store,
                )?;
            }
            let pw = self.src(w, p)?;
            let r = rows(pw.batch_stride == 0);
            matmul(
                rec,
                MatDims::new(r.m, h_n, e_n, r.batch),
                du(r.m),
                param(pw, p.off, e_n).t(),
                top_dha(r.m),
                Epilogue::Store,
            )?;
        }
        for l in (lowest..s.layers).rev() {
            let layer = self.layer(w, l)?;
            for t in (0..d.len).rev() {
                kernels::step_back(rec, d, &layer, &self.chunk, t)?;
            }
            let work = &self.work[l];
            let dz = |m| dense(work, self.regions.dz, m, 4 * h_n);
            let (x, x_off, width) = self.input(l);
            // The weight gradients X·dZ and H_prev·dZ of the chunk.
            let inputs = [
                (o.wx[l], (x, x_off, width)),
                (o.wh[l], (work, self.regions.hp, h_n)),
            ];
            for (at, (src, src_off, w)) in inputs {
                if let Some(g) = want(at) {
                    let r = rows(g.batch_stride == 0);
                    matmul(
                        rec,
                        MatDims::new(w, 4 * h_n, r.m, r.batch),
                        dense(src, src_off, r.m, w).t(),
                        dz(r.m),
                        param(g, at.off, 4 * h_n),
                        Epilogue::Store,
                    )?;
                }
            }
            if let Some(gb) = want(o.b[l]) {
                let r = rows(gb.batch_stride == 0);
                let dims = (r.m, 4 * h_n, r.batch);
                sum_rows(rec, (work, self.regions.dz), dims, gb, o.b[l].off)?;
            }
            if l == lowest && emb_grad.is_none() {
                continue;
            }
            let wx = self.src(w, o.wx[l])?;
            let r = rows(wx.batch_stride == 0);
            let below = if l == 0 {
                dense(&self.dx0, 0, r.m, e_n)
            } else {
                dense(&self.work[l - 1], self.regions.dha, r.m, h_n)
            };
            matmul(
                rec,
                MatDims::new(r.m, width, 4 * h_n, r.batch),
                dz(r.m),
                param(wx, o.wx[l].off, 4 * h_n).t(),
                below,
                Epilogue::Store,
            )?;
        }
        if let Some(ge) = emb_grad {
            let (dims, chunk) = if ge.batch_stride == 0 {
                (flat(d), &self.chunk_flat)
            } else {
                (*d, &self.chunk)
            };
            let block = self.part_len(o.emb.part);
            kernels::embed_grad(rec, &dims, &self.dx0, chunk, (ge, block, o.emb.off), true)?;
        }
        Ok(())
    }
}
