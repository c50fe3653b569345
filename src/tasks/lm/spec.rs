//! The LSTM language model: an embedding, one or more LSTM layers and a softmax output tied to
//! the embedding, read in chunks of L tokens with the hidden state carried from chunk to chunk.
//!
//! Token x_t (0 ≤ x_t < V) is embedded as e_t = E(x_t), row x_t of `emb` ([V, E]). Layer l (input width
//! n_0 = E, n_l = H above) with state (h, c) computes, gate order i, f, g, o:
//!
//! ```text
//! z = x·Wx + h_prev·Wh + b        (lstm{l}.wx [n_l, 4H], lstm{l}.wh [H, 4H], lstm{l}.b [4H])
//! i = σ(z_i)  f = σ(z_f)  g = tanh(z_g)  o = σ(z_o)
//! c = f ⊙ c_prev + i ⊙ g          h = o ⊙ tanh(c)
//! ```
//!
//! The top layer's h_t is projected to the embedding width when E ≠ H (u_t = h_t·P, `proj`
//! [H, E]; u_t = h_t otherwise), and the logits are s_t = u_t·Eᵀ + b_out: the output weight
//! `out.w` ([E, V]) is a transposed tie of `emb`, one storage that receives the sum of the
//! gradients of both uses. The loss of a chunk is the mean cross-entropy
//! ℓ = (1/L) Σ_t (log Σ_v exp s_tv − s_t,y_t) with y_t the next token.
//!
//! The state before the first token of a document is zero: a chunk says at which tokens a new
//! document starts, and the state is reset there. Back-propagation runs through the chunk only
//! (truncated BPTT): the state carried in is a constant of the chunk's loss.
//!
//! State layout of one instance: for each layer, h then c (H each): 2·layers·H floats.

use rand::Rng;

use crate::params::ParamLayout;
use crate::{Error, Result};

/// Where the named tensors of the model lie: offsets in a parameter block of
/// [`LmSpec::layout`] (`T = usize`), or their part and offset in a split model ([`At`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LmOffsets<T = usize> {
    /// `emb` (and its tie `out.w`).
    pub emb: T,
    /// `lstm{l}.wx` of every layer.
    pub wx: Vec<T>,
    /// `lstm{l}.wh` of every layer.
    pub wh: Vec<T>,
    /// `lstm{l}.b` of every layer.
    pub b: Vec<T>,
    /// `proj`, when E ≠ H.
    pub proj: Option<T>,
    /// `out.b`.
    pub out_b: T,
}

/// The two parts of a split model's parameters ([`LmSplit`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// "Fast" weights: one copy per instance (updated while a document is read).
    Fast,
    /// "Static" weights: one copy shared by every instance.
    Shared,
}

/// A tensor's place in a split model: its part and its offset in that part's block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct At {
    /// The part.
    pub part: Part,
    /// Offset in the part's block.
    pub off: usize,
}

/// The model's parameters split into fast tensors (one block per instance) and shared ones
/// (one block for all), from a list of tensor groups ([`LmSpec::split`]).
#[derive(Clone, Debug, PartialEq)]
pub struct LmSplit {
    /// The layout of one instance's fast block.
    pub fast: ParamLayout,
    /// The layout of the shared block.
    pub shared: ParamLayout,
    /// Where each tensor lies.
    pub at: LmOffsets<At>,
    full: ParamLayout,
}

/// The tensor groups [`LmSpec::split`] accepts, as a hint.
pub const FAST_GROUPS: &str = "'all', 'emb' (the embedding and its tied output weight), \
     'out.b', 'proj', 'lstm' (every layer), 'lstm<l>' (layer l) or 'lstm<l>.wx|wh|b' (one tensor)";

/// True when tensor `name` belongs to group `g` (see [`FAST_GROUPS`]).
fn in_group(name: &str, g: &str) -> bool {
    g == "all"
        || name == g
        || name.starts_with(&format!("{g}."))
        || (g == "lstm" && name.starts_with("lstm"))
}

impl LmSplit {
    /// The fast and shared blocks of a full parameter block of [`LmSpec::layout`].
    pub fn parts<T: Copy + Default>(&self, full: &[T]) -> Result<(Vec<T>, Vec<T>)> {
        if full.len() != self.full.size() {
            return Err(Error::invalid(format!(
                "lm split: a parameter block has {} values, {} were given",
                self.full.size(),
                full.len()
            )));
        }
        let mut fast = vec![T::default(); self.fast.size()];
        let mut shared = vec![T::default(); self.shared.size()];
        for e in self.full.entries().iter().filter(|e| e.owns_storage()) {
            let (dst, to) = self.place(&e.name, &mut fast, &mut shared)?;
            dst[to..to + e.len()].copy_from_slice(&full[e.offset..e.offset + e.len()]);
        }
        Ok((fast, shared))
    }

    /// The full parameter block of a fast and a shared block (the inverse of
    /// [`LmSplit::parts`]).
    pub fn join<T: Copy + Default>(&self, fast: &[T], shared: &[T]) -> Result<Vec<T>> {
        if fast.len() != self.fast.size() || shared.len() != self.shared.size() {
            return Err(Error::invalid(format!(
                "lm split: blocks of {} fast and {} shared values, {} and {} were given",
                self.fast.size(),
                self.shared.size(),
                fast.len(),
                shared.len()
            )));
        }
        let mut full = vec![T::default(); self.full.size()];
        for e in self.full.entries().iter().filter(|e| e.owns_storage()) {
            let (layout, src) = if self.fast.get(&e.name).is_some() {
                (&self.fast, fast)
            } else {
                (&self.shared, shared)
            };
            let from = layout.require(&e.name)?.offset;
            full[e.offset..e.offset + e.len()].copy_from_slice(&src[from..from + e.len()]);
        }
        Ok(full)
    }

    fn place<'b, T>(
        &self,
        name: &str,
        fast: &'b mut [T],
        shared: &'b mut [T],
    ) -> Result<(&'b mut [T], usize)> {
        match self.fast.get(name) {
            Some(e) => Ok((fast, e.offset)),
            None => Ok((shared, self.shared.require(name)?.offset)),
        }
    }
}

/// Sizes of the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LmSpec {
    /// Vocabulary size V.
    pub vocab: usize,
    /// Embedding width E.
    pub embed: usize,
    /// Hidden width H of every LSTM layer.
    pub hidden: usize,
    /// Number of LSTM layers.
    pub layers: usize,
}

impl LmSpec {
    /// A model of `vocab` tokens, embedding width `embed`, `layers` LSTM layers of `hidden`
    /// units.
    pub fn new(vocab: usize, embed: usize, hidden: usize, layers: usize) -> Result<Self> {
        if vocab < 2 || embed == 0 || hidden == 0 || layers == 0 {
            return Err(Error::invalid(format!(
                "a language model needs at least 2 tokens, and positive embedding width, hidden \
                 width and layer count (got V = {vocab}, E = {embed}, H = {hidden}, layers = \
                 {layers})"
            )));
        }
        Ok(Self {
            vocab,
            embed,
            hidden,
            layers,
        })
    }

    /// True when the top layer is projected to the embedding width (E ≠ H).
    pub fn has_projection(&self) -> bool {
        self.embed != self.hidden
    }

    /// Input width of layer `l`.
    pub fn input_width(&self, l: usize) -> usize {
        if l == 0 {
            self.embed
        } else {
            self.hidden
        }
    }

    /// Floats of carried state per instance: h and c of every layer.
    pub fn state_len(&self) -> usize {
        2 * self.layers * self.hidden
    }

    /// The parameter layout: `emb`, then `lstm{l}.wx`, `lstm{l}.wh`, `lstm{l}.b` per layer,
    /// `proj` when E ≠ H, `out.b`, and `out.w` tied to `emb` transposed.
    pub fn layout(&self) -> Result<ParamLayout> {
        let (v, e, h) = (self.vocab, self.embed, self.hidden);
        let mut p = ParamLayout::new();
        p.add("emb", &[v, e])?;
        for l in 0..self.layers {
            p.add(&format!("lstm{l}.wx"), &[self.input_width(l), 4 * h])?;
            p.add(&format!("lstm{l}.wh"), &[h, 4 * h])?;
            p.add(&format!("lstm{l}.b"), &[4 * h])?;
        }
        if self.has_projection() {
            p.add("proj", &[h, e])?;
        }
        p.add("out.b", &[v])?;
        p.tie("out.w", "emb", true)?;
        Ok(p)
    }

    /// Where each tensor of `layout` (this spec's [`LmSpec::layout`]) starts.
    pub fn offsets(&self, layout: &ParamLayout) -> Result<LmOffsets> {
        self.offsets_by(|name| layout.require(name).map(|e| e.offset))
    }

    /// The table of every named tensor's place, `at(name)` each.
    fn offsets_by<T>(&self, at: impl Fn(&str) -> Result<T>) -> Result<LmOffsets<T>> {
        let per = |what: &str| -> Result<Vec<T>> {
            (0..self.layers)
                .map(|l| at(&format!("lstm{l}.{what}")))
                .collect()
        };
        Ok(LmOffsets {
            emb: at("emb")?,
            wx: per("wx")?,
            wh: per("wh")?,
            b: per("b")?,
            proj: if self.has_projection() {
                Some(at("proj")?)
            } else {
                None
            },
            out_b: at("out.b")?,
        })
    }

    /// The model split into fast tensors, those of the groups `fast` names (see
    /// [`FAST_GROUPS`]; the tied output weight goes with `emb`), and shared ones. Every group
    /// must name a tensor of this model.
    pub fn split(&self, fast: &[String]) -> Result<LmSplit> {
        let full = self.layout()?;
        for g in fast {
            if !full
                .entries()
                .iter()
                .any(|e| e.owns_storage() && in_group(&e.name, g))
            {
                return Err(Error::invalid(format!(
                    "'{g}' names no tensor of this model ({} layer(s), {}); use {FAST_GROUPS}",
                    self.layers,
                    if self.has_projection() {
                        "with a projection"
                    } else {
                        "no projection: E = H"
                    }
                )));
            }
        }
        let is_fast = |name: &str| fast.iter().any(|g| in_group(name, g));
        let (mut fl, mut sl) = (ParamLayout::new(), ParamLayout::new());
        for e in full.entries() {
            match e.tied_to {
                None => {
                    let to = if is_fast(&e.name) { &mut fl } else { &mut sl };
                    to.add(&e.name, &e.shape)?;
                }
                Some(t) => {
                    let target = &full.entries()[t].name;
                    let to = if is_fast(target) { &mut fl } else { &mut sl };
                    to.tie(&e.name, target, e.transposed)?;
                }
            }
        }
        let at = self.offsets_by(|name| match fl.get(name) {
            Some(e) => Ok(At {
                part: Part::Fast,
                off: e.offset,
            }),
            None => sl.require(name).map(|e| At {
                part: Part::Shared,
                off: e.offset,
            }),
        })?;
        Ok(LmSplit {
            fast: fl,
            shared: sl,
            at,
            full,
        })
    }

    /// Initial parameters of `instances` instances: the embedding U(−0.1, 0.1), the LSTM and
    /// projection weights U(−1/√H, 1/√H), biases 0 except the forget gate's 1.
    pub fn init(&self, rng: &mut impl Rng, instances: usize) -> Result<Vec<f32>> {
        let layout = self.layout()?;
        let h = self.hidden;
        let k = 1.0 / (h as f32).sqrt();
        let mut all = vec![0.0f32; layout.size() * instances];
        for one in all.chunks_mut(layout.size()) {
            for e in layout.entries().iter().filter(|e| e.owns_storage()) {
                let block = &mut one[e.offset..e.offset + e.len()];
                if e.name.ends_with(".b") {
                    if e.name.starts_with("lstm") {
                        block[h..2 * h].fill(1.0);
                    }
                    continue;
                }
                let r = if e.name == "emb" { 0.1 } else { k };
                block.iter_mut().for_each(|v| *v = rng.random_range(-r..r));
            }
        }
        Ok(all)
    }
}
