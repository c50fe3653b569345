//! The MLP on the GPU: N instances of an [`MlpSpec`] in one dispatch per layer, forward,
//! backward and the exact Hessian-vector product (R-operator). Equations in [`super::spec`].

use std::collections::HashSet;

use super::rop::{self, RopLoss};
use super::softmax::{mse, softmax_xent, LossDims};
use super::spec::{Loss, MlpSpec};
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::matmul::{matmul, Epilogue, MatDims, MatView};
use crate::kernels::reduce::{reduce, Out, ReduceOp, Reduction, Strided};
use crate::kernels::vec::View;
use crate::kernels::Batched;
use crate::params::ParamLayout;
use crate::{Error, Result};

/// GPU workspace of an MLP for `instances` instances and `batch` rows each: activations of
/// every layer and two gradient buffers used in turn (and, once [`GpuMlp::enable_hvp`] has run,
/// the buffers of the Hessian-vector product).
#[derive(Debug)]
pub struct GpuMlp {
    spec: MlpSpec,
    layout: ParamLayout,
    instances: usize,
    batch: usize,
    acts: Vec<GpuBuffer>,
    dz: [GpuBuffer; 2],
    hvp: Option<HvpWorkspace>,
}

/// Buffers of [`GpuMlp::record_hvp`]: R(H) of every layer's output, and dZ, R(dZ) (two of each,
/// used in turn), dH and R(dH) of the R-backward pass.
#[derive(Debug)]
struct HvpWorkspace {
    rh: Vec<GpuBuffer>,
    dz: [GpuBuffer; 2],
    rdz: [GpuBuffer; 2],
    dh: GpuBuffer,
    rdh: GpuBuffer,
}

impl HvpWorkspace {
    fn buffers(&self) -> impl Iterator<Item = &GpuBuffer> {
        self.rh
            .iter()
            .chain(self.dz.iter())
            .chain(self.rdz.iter())
            .chain([&self.dh, &self.rdh])
    }
}

impl GpuMlp {
    /// Allocate the workspace.
    pub fn new(gpu: &Gpu, spec: &MlpSpec, instances: usize, batch: usize) -> Result<Self> {
        if instances == 0 || batch == 0 {
            return Err(Error::invalid(
                "an MLP needs at least one instance and one row",
            ));
        }
        let layout = spec.layout()?;
        let acts = (0..spec.layers())
            .map(|l| {
                gpu.buffer(
                    &format!("mlp activations {l}"),
                    instances * batch * spec.widths[l + 1],
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let widest = spec.widths[1..].iter().copied().max().unwrap_or(1);
        let dz = [
            gpu.buffer("mlp grad a", instances * batch * widest)?,
            gpu.buffer("mlp grad b", instances * batch * widest)?,
        ];
        Ok(Self {
            spec: spec.clone(),
            layout,
            instances,
            batch,
            acts,
            dz,
            hvp: None,
        })
    }

    /// Whether [`GpuMlp::enable_hvp`] has allocated its workspace.
    pub fn has_hvp(&self) -> bool {
        self.hvp.is_some()
    }

    /// Allocate the buffers of [`GpuMlp::record_hvp`] (once; later calls do nothing).
    pub fn enable_hvp(&mut self, gpu: &Gpu) -> Result<()> {
        if self.hvp.is_some() {
            return Ok(());
        }
        let (n, b, w) = (self.instances, self.batch, &self.spec.widths);
        let rh = (0..self.spec.layers())
            .map(|l| gpu.buffer(&format!("mlp R(activations) {l}"), n * b * w[l + 1]))
            .collect::<Result<Vec<_>>>()?;
        let widest = n * b * w[1..].iter().copied().max().unwrap_or(1);
        let buf = |name: &str| gpu.buffer(name, widest);
        self.hvp = Some(HvpWorkspace {
            rh,
            dz: [buf("mlp hvp dz a")?, buf("mlp hvp dz b")?],
            rdz: [buf("mlp hvp R(dz) a")?, buf("mlp hvp R(dz) b")?],
            dh: buf("mlp hvp dh")?,
            rdh: buf("mlp hvp R(dh)")?,
        });
        Ok(())
    }

    /// The model's shape.
    pub fn spec(&self) -> &MlpSpec {
        &self.spec
    }

    /// The parameter layout of one instance.
    pub fn layout(&self) -> &ParamLayout {
        &self.layout
    }

    /// Output of layer `l` for all instances, `[instances, batch, w_{l+1}]` (the last is the logits).
    pub fn activations(&self, l: usize) -> Option<&GpuBuffer> {
        self.acts.get(l)
    }

    /// Bytes of GPU memory the workspace holds.
    pub fn bytes(&self) -> u64 {
        self.acts
            .iter()
            .chain(self.dz.iter())
            .chain(self.hvp.iter().flat_map(HvpWorkspace::buffers))
            .map(GpuBuffer::bytes)
            .sum()
    }

    fn weight_view<'a>(&self, theta: Batched<'a>, l: usize) -> Result<MatView<'a>> {
        let e = self.layout.require(&MlpSpec::weight(l))?;
        // Stored [rows, cols] = logical shape, or its transpose for a transposed tie.
        let stored_cols = if e.transposed { e.shape[0] } else { e.shape[1] };
        Ok(MatView {
            buf: theta.buf,
            off: theta.off + e.offset,
            batch_stride: theta.batch_stride,
            ld: stored_cols,
            trans: e.transposed,
        })
    }

    fn input_view<'a>(&'a self, x: Batched<'a>, l: usize) -> MatView<'a> {
        if l == 0 {
            MatView {
                buf: x.buf,
                off: x.off,
                batch_stride: x.batch_stride,
                ld: self.spec.widths[0],
                trans: false,
            }
        } else {
            MatView::dense(&self.acts[l - 1], 0, self.batch, self.spec.widths[l])
        }
    }

    /// Record the forward pass: every layer's output from parameters `theta` (instance n's block
    /// at `theta.off + n·theta.batch_stride`) and inputs `x` (`[batch, w_0]` per instance).
    pub fn record_forward(&self, rec: &mut Recorder, theta: Batched, x: Batched) -> Result<()> {
        let (n, b, w) = (self.instances, self.batch, &self.spec.widths);
        for l in 0..self.spec.layers() {
            let bias = self.layout.require(&MlpSpec::bias(l))?;
            matmul(
                rec,
                MatDims::new(b, w[l + 1], w[l], n),
                self.input_view(x, l),
                self.weight_view(theta, l)?,
                MatView::dense(&self.acts[l], 0, b, w[l + 1]),
                Epilogue::BiasAct {
                    buf: theta.buf,
                    off: theta.off + bias.offset,
                    batch_stride: theta.batch_stride,
                    act: self.spec.activation_of(l),
                },
            )?;
        }
        Ok(())
    }

    /// Record the loss `loss[loss_off + n]` (the spec's [`Loss`]) of the last forward pass, and,
    /// when `want_grad`, the outputs' gradient for [`GpuMlp::record_backward`]. `targets` holds
    /// each instance's u32 labels (`[batch]`, cross-entropy) or f32 targets (`[batch, w_L]`,
    /// squared error); buffers are untyped 32-bit words, so either lives in a plain buffer.
    pub fn record_loss(
        &self,
        rec: &mut Recorder,
        targets: Batched,
        loss: &GpuBuffer,
        loss_off: usize,
        want_grad: bool,
    ) -> Result<()> {
        let (b, c) = (self.batch, self.spec.outputs());
        let last = self.spec.layers() - 1;
        let z = Batched::dense(&self.acts[last], b * c);
        let dz = Batched::dense(&self.dz[last % 2], b * c);
        let dims = LossDims {
            rows: b,
            width: c,
            batch: self.instances,
        };
        match self.spec.loss {
            Loss::CrossEntropy => softmax_xent(
                rec,
                dims,
                z,
                targets,
                dz,
                want_grad,
                View::new(loss, loss_off),
            ),
            Loss::Mse => mse(
                rec,
                dims,
                z,
                targets,
                dz,
                want_grad,
                View::new(loss, loss_off),
            ),
        }
    }

    /// Record Σ_k H_kᵀ·D_k over `terms` (H_k: `[batch, w_l]`, D_k: `[batch, w_{l+1}]`) into the
    /// storage of layer `l`'s weight in `out`, in the storage's orientation (its transpose, D_kᵀ·H_k,
    /// for a transposed tie). The storage's first contribution (tracked in `written`) stores,
    /// later ones accumulate.
    fn record_weight_grad(
        &self,
        rec: &mut Recorder,
        l: usize,
        terms: &[(MatView, MatView)],
        out: Batched,
        written: &mut HashSet<usize>,
    ) -> Result<()> {
        let (n, b, w) = (self.instances, self.batch, &self.spec.widths);
        let e = self.layout.require(&MlpSpec::weight(l))?;
        let mut epi = if written.insert(e.offset) {
            Epilogue::Store
        } else {
            Epilogue::Accumulate
        };
        let (rows, cols) = if e.transposed {
            (w[l + 1], w[l]) // storage [out, in]
        } else {
            (w[l], w[l + 1]) // storage [in, out]
        };
        let o = MatView {
            buf: out.buf,
            off: out.off + e.offset,
            batch_stride: out.batch_stride,
            ld: cols,
            trans: false,
        };
        for &(h, d) in terms {
            let (lhs, rhs) = if e.transposed { (d.t(), h) } else { (h.t(), d) };
            matmul(rec, MatDims::new(rows, cols, b, n), lhs, rhs, o, epi)?;
            epi = Epilogue::Accumulate;
        }
        Ok(())
    }

    /// Record the column sums over the batch rows of `dz` (`[batch, w_{l+1}]` per instance) into
    /// the storage of layer `l`'s bias in `out`: stored on its first contribution (tracked in
    /// `written`), accumulated after.
    fn record_bias_grad(
        &self,
        rec: &mut Recorder,
        l: usize,
        dz: &GpuBuffer,
        out: Batched,
        written: &mut HashSet<usize>,
    ) -> Result<()> {
        let (n, b, w) = (self.instances, self.batch, &self.spec.widths);
        let be = self.layout.require(&MlpSpec::bias(l))?;
        let first = written.insert(be.offset);
        reduce(
            rec,
            Reduction {
                accumulate: !first,
                ..Reduction::new(ReduceOp::Sum, b, w[l + 1], n)
            },
            Strided {
                buf: dz,
                off: 0,
                batch_stride: b * w[l + 1],
                row_stride: w[l + 1],
                col_stride: 1,
            },
            Out {
                buf: out.buf,
                off: out.off + be.offset,
                batch_stride: out.batch_stride,
                col_stride: 1,
            },
        )
    }

    /// Record the backward pass after [`GpuMlp::record_loss`] with `want_grad`: the gradient of
    /// every storage into `grad` (same layout as `theta`). Each storage is written by its first
    /// contribution and accumulated by later ones, so `grad` needs no clearing.
    pub fn record_backward(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        x: Batched,
        grad: Batched,
    ) -> Result<()> {
        let (n, b, w) = (self.instances, self.batch, &self.spec.widths);
        let mut written: HashSet<usize> = HashSet::new();
        for l in (0..self.spec.layers()).rev() {
            let dz = MatView::dense(&self.dz[l % 2], 0, b, w[l + 1]);
            let h = self.input_view(x, l);
            self.record_weight_grad(rec, l, &[(h, dz)], grad, &mut written)?;
            self.record_bias_grad(rec, l, &self.dz[l % 2], grad, &mut written)?;
            // Gradient of the layer's input, through the previous activation.
            if l > 0 {
                matmul(
                    rec,
                    MatDims::new(b, w[l], w[l + 1], n),
                    dz,
                    self.weight_view(theta, l)?.t(),
                    MatView::dense(&self.dz[(l - 1) % 2], 0, b, w[l]),
                    Epilogue::ActGrad {
                        h: MatView::dense(&self.acts[l - 1], 0, b, w[l]),
                        act: self.spec.activation,
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Forward, loss (into `loss[loss_off + n]`) and backward (into `grad`) in one go; `targets`
    /// as in [`GpuMlp::record_loss`].
    pub fn record_loss_grad(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        x: Batched,
        targets: Batched,
        grad: Batched,
        loss: View,
    ) -> Result<()> {
        self.record_forward(rec, theta, x)?;
        self.record_loss(rec, targets, loss.buf, loss.off, true)?;
        self.record_backward(rec, theta, x, grad)
    }

    /// Record the exact Hessian-vector product `out = H(θ)·v` of the loss on inputs `x` and
    /// `targets` (as in [`GpuMlp::record_loss_grad`]) for every instance, by the R-operator (the
    /// equations are those of [`super::reference::hvp_targets`]): the forward pass, the
    /// R-forward pass R(Z_l) = R(H_l)·W_l + H_l·V_l + v_b, R(H_{l+1}) = act'(H_{l+1}) ⊙ R(Z_l), the
    /// loss gradient and its R-operator, then the R-backward pass
    /// R(dW_l) = R(H_l)ᵀ·dZ_l + H_lᵀ·R(dZ_l), R(db_l) = Σ_rows R(dZ_l),
    /// R(dH_l) = R(dZ_l)·W_lᵀ + dZ_l·V_lᵀ and R(dZ_{l−1}) = R(dH_l) ⊙ act' + dH_l ⊙ act'' ⊙ R(Z_{l−1}).
    /// `v` and `out` have the layout of `theta`; each storage of `out` is written by its first
    /// contribution (tied weights accumulate), so `out` needs no clearing. Needs
    /// [`GpuMlp::enable_hvp`]. Overwrites the activations of the last forward pass (with the
    /// same values at θ).
    pub fn record_hvp(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        v: Batched,
        x: Batched,
        targets: Batched,
        out: Batched,
    ) -> Result<()> {
        let ws = self.hvp.as_ref().ok_or_else(|| {
            Error::invalid("the MLP's Hessian-vector product needs GpuMlp::enable_hvp first")
        })?;
        let (n, b, w) = (self.instances, self.batch, &self.spec.widths);
        let layers = self.spec.layers();
        self.record_forward(rec, theta, x)?;
        // R-forward.
        for l in 0..layers {
            let rz = MatView::dense(&ws.rh[l], 0, b, w[l + 1]);
            matmul(
                rec,
                MatDims::new(b, w[l + 1], w[l], n),
                self.input_view(x, l),
                self.weight_view(v, l)?,
                rz,
                Epilogue::Store,
            )?;
            if l > 0 {
                matmul(
                    rec,
                    MatDims::new(b, w[l + 1], w[l], n),
                    MatView::dense(&ws.rh[l - 1], 0, b, w[l]),
                    self.weight_view(theta, l)?,
                    rz,
                    Epilogue::Accumulate,
                )?;
            }
            let bias = self.layout.require(&MlpSpec::bias(l))?;
            rop::bias_act(
                rec,
                (n, b, w[l + 1]),
                &self.acts[l],
                Batched {
                    buf: v.buf,
                    off: v.off + bias.offset,
                    batch_stride: v.batch_stride,
                },
                &ws.rh[l],
                self.spec.activation_of(l),
            )?;
        }
        // The loss gradient and its R-operator.
        let last = layers - 1;
        let kind = match self.spec.loss {
            Loss::CrossEntropy => RopLoss::CrossEntropy,
            Loss::Mse => RopLoss::Mse,
        };
        rop::loss(
            rec,
            kind,
            (n, b, w[layers]),
            &self.acts[last],
            targets,
            &ws.rh[last],
            [&ws.dz[last % 2], &ws.rdz[last % 2]],
        )?;
        // R-backward.
        let mut written: HashSet<usize> = HashSet::new();
        for l in (0..layers).rev() {
            let dz = MatView::dense(&ws.dz[l % 2], 0, b, w[l + 1]);
            let rdz = MatView::dense(&ws.rdz[l % 2], 0, b, w[l + 1]);
            let h = self.input_view(x, l);
            // Storage [in, out] = R(H)ᵀ dZ + Hᵀ R(dZ) (or its transpose).
            let mut terms = vec![(h, rdz)];
            if l > 0 {
                terms.insert(0, (MatView::dense(&ws.rh[l - 1], 0, b, w[l]), dz));
            }
            self.record_weight_grad(rec, l, &terms, out, &mut written)?;
            self.record_bias_grad(rec, l, &ws.rdz[l % 2], out, &mut written)?;
            if l > 0 {
                let wt = self.weight_view(theta, l)?.t();
                let dh = MatView::dense(&ws.dh, 0, b, w[l]);
                let rdh = MatView::dense(&ws.rdh, 0, b, w[l]);
                matmul(
                    rec,
                    MatDims::new(b, w[l], w[l + 1], n),
                    dz,
                    wt,
                    dh,
                    Epilogue::Store,
                )?;
                matmul(
                    rec,
                    MatDims::new(b, w[l], w[l + 1], n),
                    rdz,
                    wt,
                    rdh,
                    Epilogue::Store,
                )?;
                let vt = self.weight_view(v, l)?.t();
                matmul(
                    rec,
                    MatDims::new(b, w[l], w[l + 1], n),
                    dz,
                    vt,
                    rdh,
                    Epilogue::Accumulate,
                )?;
                rop::act_back(
                    rec,
                    n * b * w[l],
                    [&ws.dh, &ws.rdh],
                    [&self.acts[l - 1], &ws.rh[l - 1]],
                    [&ws.dz[(l - 1) % 2], &ws.rdz[(l - 1) % 2]],
                    self.spec.activation,
                )?;
            }
        }
        Ok(())
    }
}
