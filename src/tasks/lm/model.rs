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
use super::spec::{LmOffsets, LmSpec};
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
    layout: ParamLayout,
    offsets: LmOffsets,
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
    /// The workspace of `instances` instances of `spec` reading chunks of `len` tokens.
    pub fn new(gpu: &Gpu, spec: &LmSpec, instances: usize, len: usize) -> Result<Self> {
        if instances == 0 || len == 0 {
            return Err(Error::invalid(
                "a language model needs at least one instance and chunks of at least one token",
            ));
        }
        let layout = spec.layout()?;
        let offsets = spec.offsets(&layout)?;
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
            layout,
            offsets,
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

    /// The parameter layout of one instance.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
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
        let words = kernels::chunk_words(&self.dims, tokens, targets, starts)?;
        gpu.write(&self.chunk, 0, &words)?;
        let words = kernels::chunk_words(&flat(&self.dims), tokens, targets, starts)?;
        gpu.write(&self.chunk_flat, 0, &words)
    }

    fn layer<'a>(&'a self, theta: Batched<'a>, l: usize) -> LayerRef<'a> {
        LayerRef {
            theta: (theta, self.layout.size()),
            wh_off: self.offsets.wh[l],
            work: (&self.work[l], self.regions),
            state: (2 * l * self.spec.hidden, self.spec.state_len()),
        }
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

    /// Record the chunk's loss of every instance (`loss[loss.off + n]`) at `theta` from the
    /// state in `states.0`, the state after the chunk into `states.1`, and, with `grad`, the
    /// gradient of the loss into it (every storage of the block written). `theta` may have
    /// instance stride 0 (one block of shared weights read by every instance); `grad` holds
    /// one block per instance.
    pub fn record(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        states: (&GpuBuffer, &GpuBuffer),
        grad: Option<Batched>,
        loss: View,
    ) -> Result<()> {
        let (d, o, s) = (&self.dims, &self.offsets, &self.spec);
        let (n, l_n, h_n, e_n, v_n) = (d.batch, d.len, s.hidden, s.embed, s.vocab);
        let block = self.layout.size();
        // Weights shared by the streams: every product runs over all N·L rows at once.
        let r = Rows::of(d, theta.batch_stride == 0);
        let m = r.m;
        kernels::embed(rec, d, (theta, block, o.emb), &self.chunk, &self.x0)?;
        for l in 0..s.layers {
            let (x, x_off, width) = self.input(l);
            matmul(
                rec,
                MatDims::new(m, 4 * h_n, width, r.batch),
                dense(x, x_off, m, width),
                param(theta, o.wx[l], 4 * h_n),
                dense(&self.work[l], self.regions.zx, m, 4 * h_n),
                Epilogue::BiasAct {
                    buf: theta.buf,
                    off: theta.off + o.b[l],
                    batch_stride: theta.batch_stride,
                    act: Activation::Identity,
                },
            )?;
            let layer = self.layer(theta, l);
            for t in 0..l_n {
                kernels::step(rec, d, &layer, &self.chunk, states, t)?;
            }
        }
        let top = &self.work[s.layers - 1];
        if let (Some((u, _)), Some(p)) = (&self.proj_io, o.proj) {
            matmul(
                rec,
                MatDims::new(m, e_n, h_n, r.batch),
                dense(top, self.regions.h, m, h_n),
                param(theta, p, e_n),
                dense(u, 0, m, e_n),
                Epilogue::Store,
            )?;
        }
        let u = self.u(m);
        matmul(
            rec,
            MatDims::new(m, v_n, e_n, r.batch),
            u,
            param(theta, o.emb, e_n).t(),
            dense(&self.logits, 0, m, v_n),
            Epilogue::BiasAct {
                buf: theta.buf,
                off: theta.off + o.out_b,
                batch_stride: theta.batch_stride,
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
            Some(g) => self.record_backward(rec, theta, g),
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

    fn record_backward(&self, rec: &mut Recorder, theta: Batched, grad: Batched) -> Result<()> {
        let (d, o, s) = (&self.dims, &self.offsets, &self.spec);
        let (h_n, e_n, v_n) = (s.hidden, s.embed, s.vocab);
        let block = self.layout.size();
        // One gradient block for all streams (stride 0): every product sums over the N·L rows.
        let joined = grad.batch_stride == 0;
        if joined && theta.batch_stride != 0 {
            return Err(Error::invalid(
                "lm: a gradient summed over the streams needs weights shared by them (instance \
                 stride 0)",
            ));
        }
        let r = Rows::of(d, joined);
        let (m, n) = (r.m, r.batch);
        let u = self.u(m);
        let dlogits = dense(&self.dlogits, 0, m, v_n);
        sum_rows(rec, (&self.dlogits, 0), (m, v_n, n), grad, o.out_b)?;
        // The output's share of the tied embedding's gradient; the input's is added below.
        matmul(
            rec,
            MatDims::new(v_n, e_n, m, n),
            dlogits.t(),
            u,
            param(grad, o.emb, e_n),
            Epilogue::Store,
        )?;
        let top = &self.work[s.layers - 1];
        let top_dha = dense(top, self.regions.dha, m, h_n);
        match (&self.proj_io, o.proj) {
            (Some((_, du)), Some(p)) => {
                let du_v = dense(du, 0, m, e_n);
                matmul(
                    rec,
                    MatDims::new(m, e_n, v_n, n),
                    dlogits,
                    param(theta, o.emb, e_n),
                    du_v,
                    Epilogue::Store,
                )?;
                matmul(
                    rec,
                    MatDims::new(h_n, e_n, m, n),
                    dense(top, self.regions.h, m, h_n).t(),
                    du_v,
                    param(grad, p, e_n),
                    Epilogue::Store,
                )?;
                matmul(
                    rec,
                    MatDims::new(m, h_n, e_n, n),
                    du_v,
                    param(theta, p, e_n).t(),
                    top_dha,
                    Epilogue::Store,
                )?;
            }
            _ => matmul(
                rec,
                MatDims::new(m, e_n, v_n, n),
                dlogits,
                param(theta, o.emb, e_n),
                top_dha,
                Epilogue::Store,
            )?,
        }
        for l in (0..s.layers).rev() {
            let layer = self.layer(theta, l);
            for t in (0..d.len).rev() {
                kernels::step_back(rec, d, &layer, &self.chunk, t)?;
            }
            let work = &self.work[l];
            let dz = dense(work, self.regions.dz, m, 4 * h_n);
            let (x, x_off, width) = self.input(l);
            matmul(
                rec,
                MatDims::new(width, 4 * h_n, m, n),
                dense(x, x_off, m, width).t(),
                dz,
                param(grad, o.wx[l], 4 * h_n),
                Epilogue::Store,
            )?;
            matmul(
                rec,
                MatDims::new(h_n, 4 * h_n, m, n),
                dense(work, self.regions.hp, m, h_n).t(),
                dz,
                param(grad, o.wh[l], 4 * h_n),
                Epilogue::Store,
            )?;
            sum_rows(rec, (work, self.regions.dz), (m, 4 * h_n, n), grad, o.b[l])?;
            let below = if l == 0 {
                dense(&self.dx0, 0, m, e_n)
            } else {
                dense(&self.work[l - 1], self.regions.dha, m, h_n)
            };
            matmul(
                rec,
                MatDims::new(m, width, 4 * h_n, n),
                dz,
                param(theta, o.wx[l], 4 * h_n).t(),
                below,
                Epilogue::Store,
            )?;
        }
        let (dims, chunk) = if joined {
            (flat(d), &self.chunk_flat)
        } else {
            (*d, &self.chunk)
        };
        kernels::embed_grad(rec, &dims, &self.dx0, chunk, (grad, block, o.emb), true)
    }
}
