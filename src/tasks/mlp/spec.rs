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

use rand::Rng;

use crate::kernels::matmul::Activation;
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

    /// The tied-weight autoencoder d-`hidden`-d (d = `features`): `l1.w = l0.wᵀ` (one storage),
    /// the given hidden activation, a linear output and the squared-error loss.
    pub fn tied_autoencoder(
        features: usize,
        hidden: usize,
        activation: Activation,
    ) -> Result<Self> {
        Ok(Self::new(&[features, hidden, features], activation)?
            .with_tied(1, 0)?
            .with_loss(Loss::Mse))
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
