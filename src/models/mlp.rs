//! MLP: any list of layer widths, one hidden activation, and a loss on the last layer's outputs
//! ([`Loss`]: softmax cross-entropy for classification, squared error for regression).
//!
//! Layer l (0 ≤ l < L) maps width w_l to w_{l+1}: Z_l = H_l · W_l + b_l, H_{l+1} = act(Z_l) for
//! hidden layers, and the last layer's Z is the logits. Parameters `l{l}.w` (shape [w_l, w_{l+1}],
//! row-major: inputs × outputs) and `l{l}.b` ([w_{l+1}]). A layer may reuse the transposed weight
//! of an earlier layer (tied weights): its `l{l}.w` is then a tie, not a storage.
//!
//! Losses, mean over the B rows: cross-entropy ℓ = (1/B) Σ_b (log Σ_k exp z_bk − z_b,y_b) with
//! integer labels y_b; squared error ℓ = (1/B) Σ_b Σ_k (z_bk − y_bk)² with f32 targets y_bk.
//!
//! Backward: dZ_{L−1} = (softmax − onehot)/B (cross-entropy) or 2(Z − Y)/B (squared error); dW_l = H_lᵀ dZ_l; db_l = Σ_rows dZ_l;
//! dZ_{l−1} = (dZ_l W_lᵀ) ⊙ act'(H_l). Gradients of names sharing a storage accumulate into it.

use std::collections::HashSet;

use rand::Rng;

use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::matmul::{matmul, Activation, Epilogue, MatDims, MatView};
use crate::kernels::mlp_rop::{self, RopLoss};
use crate::kernels::reduce::{reduce, Out, ReduceOp, Reduction, Strided};
use crate::kernels::softmax::{mse, softmax_xent, LossDims};
use crate::kernels::vec::View;
use crate::kernels::Batched;
use crate::params::ParamLayout;
use crate::{Error, Result};

/// The loss on the last layer's outputs z (B rows of w_L values per instance).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Loss {
    /// Mean softmax cross-entropy over the rows; targets are u32 class labels, one per row.
    #[default]
    CrossEntropy,
    /// (1/B) Σ_b Σ_k (z_bk − y_bk)²: squared error summed over the outputs, mean over the rows
    /// (for one output, the usual mean squared error); targets are f32, `[B, w_L]`.
    Mse,
}

impl Loss {
    /// Parse `cross-entropy` (or `xent`, `ce`) or `mse`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "cross-entropy" | "xent" | "ce" => Ok(Self::CrossEntropy),
            "mse" => Ok(Self::Mse),
            other => Err(Error::invalid(format!(
                "unknown loss '{other}'; use cross-entropy or mse"
            ))),
        }
    }

    /// The name `parse` accepts.
    pub fn name(self) -> &'static str {
        match self {
            Self::CrossEntropy => "cross-entropy",
            Self::Mse => "mse",
        }
    }

    /// Target values per row for `outputs` outputs: 1 label, or `outputs` f32 values.
    pub fn targets_per_row(self, outputs: usize) -> usize {
        match self {
            Self::CrossEntropy => 1,
            Self::Mse => outputs,
        }
    }
}

/// Shape of an MLP and its loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlpSpec {
    /// Widths w_0 (inputs) … w_L (classes).
    pub widths: Vec<usize>,
    /// Activation of the hidden layers.
    pub activation: Activation,
    /// Tied weights: (layer, source) means `l{layer}.w` = `l{source}.w`ᵀ, source < layer.
    pub tied: Vec<(usize, usize)>,
    /// The loss on the outputs (cross-entropy unless set by [`MlpSpec::with_loss`]).
    pub loss: Loss,
}

impl MlpSpec {
    /// An MLP with the given widths (at least inputs and classes) and hidden activation.
    pub fn new(widths: &[usize], activation: Activation) -> Result<Self> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(Error::invalid(format!(
                "MLP widths {widths:?}: need at least an input and an output width, all ≥ 1"
            )));
        }
        Ok(Self {
            widths: widths.to_vec(),
            activation,
            tied: Vec::new(),
            loss: Loss::CrossEntropy,
        })
    }

    /// Use `loss` on the outputs.
    pub fn with_loss(mut self, loss: Loss) -> Self {
        self.loss = loss;
        self
    }

    /// Make layer `layer`'s weight the transpose of layer `source`'s weight.
    pub fn with_tied(mut self, layer: usize, source: usize) -> Result<Self> {
        let w = &self.widths;
        if source >= layer || layer >= self.layers() {
            return Err(Error::invalid(format!(
                "cannot tie layer {layer} to layer {source}: need source < layer < {}",
                self.layers()
            )));
        }
        if w[layer] != w[source + 1] || w[layer + 1] != w[source] {
            return Err(Error::invalid(format!(
                "cannot tie layer {layer} ({}→{}) to the transpose of layer {source} ({}→{})",
                w[layer],
                w[layer + 1],
                w[source],
                w[source + 1]
            )));
        }
        if self.tied.iter().any(|&(l, _)| l == layer) {
            return Err(Error::invalid(format!("layer {layer} is tied twice")));
        }
        self.tied.push((layer, source));
        Ok(self)
    }

    /// Number of layers L.
    pub fn layers(&self) -> usize {
        self.widths.len() - 1
    }

    /// Input width w_0.
    pub fn inputs(&self) -> usize {
        self.widths[0]
    }

    /// Number of classes w_L.
    pub fn classes(&self) -> usize {
        self.widths[self.layers()]
    }

    /// Number of outputs w_L (the same as [`MlpSpec::classes`]).
    pub fn outputs(&self) -> usize {
        self.widths[self.layers()]
    }

    /// Target values per instance for `batch` rows: `batch` labels (cross-entropy) or
    /// `batch · w_L` values (squared error).
    pub fn targets_len(&self, batch: usize) -> usize {
        batch * self.loss.targets_per_row(self.outputs())
    }

    /// Activation applied after layer `l` (identity for the output layer).
    pub fn activation_of(&self, l: usize) -> Activation {
        if l + 1 == self.layers() {
            Activation::Identity
        } else {
            self.activation
        }
    }

    /// Name of layer l's weight.
    pub fn weight(l: usize) -> String {
        format!("l{l}.w")
    }

    /// Name of layer l's bias.
    pub fn bias(l: usize) -> String {
        format!("l{l}.b")
    }

    /// The parameter layout: `l{l}.w`, `l{l}.b` for each layer in order.
    pub fn layout(&self) -> Result<ParamLayout> {
        let mut p = ParamLayout::new();
        for l in 0..self.layers() {
            match self.tied.iter().find(|&&(t, _)| t == l) {
                Some(&(_, s)) => p.tie(&Self::weight(l), &Self::weight(s), true)?,
                None => p.add(&Self::weight(l), &[self.widths[l], self.widths[l + 1]])?,
            };
            p.add(&Self::bias(l), &[self.widths[l + 1]])?;
        }
        Ok(p)
    }

    /// Initial parameters of `instances` instances: every owned weight and bias drawn from
    /// U(−1/√fan_in, 1/√fan_in), as PyTorch's `nn.Linear` does.
    pub fn init(&self, rng: &mut impl Rng, instances: usize) -> Result<Vec<f32>> {
        let layout = self.layout()?;
        let mut out = vec![0.0f32; instances * layout.size()];
        for block in out.chunks_mut(layout.size()) {
            for l in 0..self.layers() {
                let bound = 1.0 / (self.widths[l] as f32).sqrt();
                for name in [Self::weight(l), Self::bias(l)] {
                    let e = layout.require(&name)?;
                    if e.owns_storage() {
                        for v in &mut block[e.offset..e.offset + e.len()] {
                            *v = rng.random_range(-bound..bound);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Floating-point operations of one forward + backward pass of one instance on `batch` rows
    /// (multiply-adds counted as 2; the input layer's input gradient is not computed).
    pub fn flops_fwd_bwd(&self, batch: usize) -> f64 {
        (0..self.layers())
            .map(|l| {
                let mm = 2.0 * (batch * self.widths[l] * self.widths[l + 1]) as f64;
                mm * if l == 0 { 2.0 } else { 3.0 }
            })
            .sum()
    }
}

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
    /// equations are those of [`crate::reference::mlp::hvp_targets`]): the forward pass, the
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
            mlp_rop::bias_act(
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
        mlp_rop::loss(
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
                mlp_rop::act_back(
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
