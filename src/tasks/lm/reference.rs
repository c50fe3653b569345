//! f64 reference of the LSTM language model over one chunk: the loss, its gradient with respect
//! to the instance's parameter block (truncated BPTT inside the chunk), the per-token losses and
//! the state carried to the next chunk. Equations in [`super::spec`]. One instance at a time,
//! dense loops, written for clarity; checked against finite differences in its tests.

use super::spec::{LmOffsets as Offsets, LmSpec};
use crate::params::ParamLayout;
use crate::{Error, Result};

/// One chunk of L tokens of one instance.
#[derive(Clone, Copy, Debug)]
pub struct Chunk<'a> {
    /// Input tokens x_0 … x_{L−1}.
    pub tokens: &'a [u32],
    /// Next tokens y_0 … y_{L−1} (the targets).
    pub targets: &'a [u32],
    /// `starts[t]`: a document starts at token t (the state before it is zero).
    pub starts: &'a [bool],
}

/// What [`loss_grad`] computes.
#[derive(Clone, Debug)]
pub struct ChunkOut {
    /// Mean cross-entropy over the chunk.
    pub loss: f64,
    /// Cross-entropy of each token.
    pub token_losses: Vec<f64>,
    /// Gradient of `loss` with respect to the parameter block (tied names summed into their
    /// storage); empty from [`forward`].
    pub grad: Vec<f64>,
    /// The state after the last token (h, c of every layer), carried to the next chunk.
    pub state: Vec<f64>,
}

/// Values of one layer at one token, kept for the backward pass.
#[derive(Clone, Debug, Default)]
struct Cell {
    input: Vec<f64>,
    h_prev: Vec<f64>,
    c_prev: Vec<f64>,
    /// i, f, g, o after their nonlinearities, H each.
    gates: Vec<f64>,
    tanh_c: Vec<f64>,
    h: Vec<f64>,
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn check(
    spec: &LmSpec,
    layout: &ParamLayout,
    theta: &[f64],
    state: &[f64],
    c: &Chunk,
) -> Result<()> {
    let l = c.tokens.len();
    if l == 0 || c.targets.len() != l || c.starts.len() != l {
        return Err(Error::invalid(format!(
            "a chunk needs as many targets and document-start flags as tokens, and at least one \
             token (got {} tokens, {} targets, {} flags)",
            l,
            c.targets.len(),
            c.starts.len()
        )));
    }
    if let Some(&t) = c
        .tokens
        .iter()
        .chain(c.targets)
        .find(|&&t| t as usize >= spec.vocab)
    {
        return Err(Error::invalid(format!(
            "token {t} is outside the vocabulary of {} tokens",
            spec.vocab
        )));
    }
    if theta.len() != layout.size() || state.len() != spec.state_len() {
        return Err(Error::invalid(format!(
            "the model needs {} parameters and {} state values, got {} and {}",
            layout.size(),
            spec.state_len(),
            theta.len(),
            state.len()
        )));
    }
    Ok(())
}

/// Forward pass: per-token cells of every layer, the top outputs u_t and softmax p_t.
struct Forward {
    cells: Vec<Vec<Cell>>,
    u: Vec<Vec<f64>>,
    probs: Vec<Vec<f64>>,
    token_losses: Vec<f64>,
    state: Vec<f64>,
}

fn run_forward(spec: &LmSpec, o: &Offsets, theta: &[f64], state0: &[f64], c: &Chunk) -> Forward {
    let (v_n, e_n, h_n) = (spec.vocab, spec.embed, spec.hidden);
    let mut state = state0.to_vec();
    let mut f = Forward {
        cells: Vec::new(),
        u: Vec::new(),
        probs: Vec::new(),
        token_losses: Vec::new(),
        state: Vec::new(),
    };
    for t in 0..c.tokens.len() {
        if c.starts[t] {
            state.iter_mut().for_each(|s| *s = 0.0);
        }
        let x = c.tokens[t] as usize;
        let mut input: Vec<f64> = theta[o.emb + x * e_n..o.emb + (x + 1) * e_n].to_vec();
        let mut cells = Vec::with_capacity(spec.layers);
        for l in 0..spec.layers {
            let n_in = spec.input_width(l);
            let (hs, cs) = (l * 2 * h_n, l * 2 * h_n + h_n);
            let h_prev = state[hs..hs + h_n].to_vec();
            let c_prev = state[cs..cs + h_n].to_vec();
            let mut z: Vec<f64> = theta[o.b[l]..o.b[l] + 4 * h_n].to_vec();
            for (k, zk) in z.iter_mut().enumerate() {
                for (i, xi) in input.iter().enumerate().take(n_in) {
                    *zk += xi * theta[o.wx[l] + i * 4 * h_n + k];
                }
                for (j, hj) in h_prev.iter().enumerate() {
                    *zk += hj * theta[o.wh[l] + j * 4 * h_n + k];
                }
            }
            let mut gates = vec![0.0; 4 * h_n];
            for j in 0..h_n {
                gates[j] = sigmoid(z[j]);
                gates[h_n + j] = sigmoid(z[h_n + j]);
                gates[2 * h_n + j] = z[2 * h_n + j].tanh();
                gates[3 * h_n + j] = sigmoid(z[3 * h_n + j]);
            }
            let mut cell_c = vec![0.0; h_n];
            let mut tanh_c = vec![0.0; h_n];
            let mut h = vec![0.0; h_n];
            for j in 0..h_n {
                cell_c[j] = gates[h_n + j] * c_prev[j] + gates[j] * gates[2 * h_n + j];
                tanh_c[j] = cell_c[j].tanh();
                h[j] = gates[3 * h_n + j] * tanh_c[j];
            }
            state[hs..hs + h_n].copy_from_slice(&h);
            state[cs..cs + h_n].copy_from_slice(&cell_c);
            cells.push(Cell {
                input: std::mem::take(&mut input),
                h_prev,
                c_prev,
                gates,
                tanh_c,
                h: h.clone(),
            });
            input = h;
        }
        let u = match o.proj {
            Some(p) => (0..e_n)
                .map(|e| (0..h_n).map(|j| input[j] * theta[p + j * e_n + e]).sum())
                .collect(),
            None => input,
        };
        let logits: Vec<f64> = (0..v_n)
            .map(|v| {
                theta[o.out_b + v]
                    + (0..e_n)
                        .map(|e| u[e] * theta[o.emb + v * e_n + e])
                        .sum::<f64>()
            })
            .collect();
        let m = logits.iter().fold(f64::NEG_INFINITY, |a, &b| a.max(b));
        let lse = m + logits.iter().map(|s| (s - m).exp()).sum::<f64>().ln();
        f.token_losses.push(lse - logits[c.targets[t] as usize]);
        f.probs
            .push(logits.iter().map(|s| (s - lse).exp()).collect());
        f.u.push(u);
        f.cells.push(cells);
    }
    f.state = state;
    f
}

/// Loss, per-token losses and carried state of one chunk, without the gradient.
pub fn forward(
    spec: &LmSpec,
    layout: &ParamLayout,
    theta: &[f64],
    state: &[f64],
    chunk: Chunk,
) -> Result<ChunkOut> {
    check(spec, layout, theta, state, &chunk)?;
    let f = run_forward(spec, &spec.offsets(layout)?, theta, state, &chunk);
    let loss = f.token_losses.iter().sum::<f64>() / chunk.tokens.len() as f64;
    Ok(ChunkOut {
        loss,
        token_losses: f.token_losses,
        grad: Vec::new(),
        state: f.state,
    })
}

/// Loss, gradient, per-token losses and carried state of one chunk from `state`.
pub fn loss_grad(
    spec: &LmSpec,
    layout: &ParamLayout,
    theta: &[f64],
    state: &[f64],
    chunk: Chunk,
) -> Result<ChunkOut> {
    check(spec, layout, theta, state, &chunk)?;
    let o = spec.offsets(layout)?;
    let f = run_forward(spec, &o, theta, state, &chunk);
    let (v_n, e_n, h_n) = (spec.vocab, spec.embed, spec.hidden);
    let len = chunk.tokens.len();
    let inv_l = 1.0 / len as f64;
    let mut grad = vec![0.0; theta.len()];
    // Adjoints of the state entering token t + 1, per layer.
    let mut dh_next = vec![vec![0.0; h_n]; spec.layers];
    let mut dc_next = vec![vec![0.0; h_n]; spec.layers];
    for t in (0..len).rev() {
        // Output: ds = (p − onehot(y)) / L.
        let mut ds = f.probs[t].clone();
        ds[chunk.targets[t] as usize] -= 1.0;
        ds.iter_mut().for_each(|v| *v *= inv_l);
        let mut du = vec![0.0; e_n];
        for v in 0..v_n {
            grad[o.out_b + v] += ds[v];
            for e in 0..e_n {
                grad[o.emb + v * e_n + e] += ds[v] * f.u[t][e];
                du[e] += ds[v] * theta[o.emb + v * e_n + e];
            }
        }
        let top = &f.cells[t][spec.layers - 1];
        let mut dh_above = match o.proj {
            Some(p) => {
                let mut dh = vec![0.0; h_n];
                for j in 0..h_n {
                    for e in 0..e_n {
                        grad[p + j * e_n + e] += top.h[j] * du[e];
                        dh[j] += theta[p + j * e_n + e] * du[e];
                    }
                }
                dh
            }
            None => du,
        };
        for l in (0..spec.layers).rev() {
            let cell = &f.cells[t][l];
            let n_in = spec.input_width(l);
            let g = &cell.gates;
            let mut dz = vec![0.0; 4 * h_n];
            let mut dc_prev = vec![0.0; h_n];
            for j in 0..h_n {
                let dh = dh_above[j] + dh_next[l][j];
                let (i, fg, gg, og) = (g[j], g[h_n + j], g[2 * h_n + j], g[3 * h_n + j]);
                let dc = dc_next[l][j] + dh * og * (1.0 - cell.tanh_c[j] * cell.tanh_c[j]);
                dz[j] = dc * gg * i * (1.0 - i);
                dz[h_n + j] = dc * cell.c_prev[j] * fg * (1.0 - fg);
                dz[2 * h_n + j] = dc * i * (1.0 - gg * gg);
                dz[3 * h_n + j] = dh * cell.tanh_c[j] * og * (1.0 - og);
                dc_prev[j] = dc * fg;
            }
            let mut dx = vec![0.0; n_in];
            let mut dh_prev = vec![0.0; h_n];
            for (k, &dzk) in dz.iter().enumerate() {
                grad[o.b[l] + k] += dzk;
                for i in 0..n_in {
                    grad[o.wx[l] + i * 4 * h_n + k] += cell.input[i] * dzk;
                    dx[i] += theta[o.wx[l] + i * 4 * h_n + k] * dzk;
                }
                for j in 0..h_n {
                    grad[o.wh[l] + j * 4 * h_n + k] += cell.h_prev[j] * dzk;
                    dh_prev[j] += theta[o.wh[l] + j * 4 * h_n + k] * dzk;
                }
            }
            if chunk.starts[t] {
                // The state entering t was reset: nothing flows into token t − 1.
                dh_prev.iter_mut().for_each(|v| *v = 0.0);
                dc_prev.iter_mut().for_each(|v| *v = 0.0);
            }
            dh_next[l] = dh_prev;
            dc_next[l] = dc_prev;
            dh_above = dx;
        }
        let x = chunk.tokens[t] as usize;
        for e in 0..e_n {
            grad[o.emb + x * e_n + e] += dh_above[e];
        }
    }
    let loss = f.token_losses.iter().sum::<f64>() * inv_l;
    Ok(ChunkOut {
        loss,
        token_losses: f.token_losses,
        grad,
        state: f.state,
    })
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::reference::{central_diff, rel_err};

    type Rng64 = rand_chacha::ChaCha12Rng;

    /// A random instance: layout, θ, carried state, tokens, targets, a document start in the
    /// middle.
    struct Case {
        layout: ParamLayout,
        theta: Vec<f64>,
        state: Vec<f64>,
        tokens: Vec<u32>,
        targets: Vec<u32>,
        starts: Vec<bool>,
    }

    impl Case {
        fn chunk(&self) -> Chunk<'_> {
            Chunk {
                tokens: &self.tokens,
                targets: &self.targets,
                starts: &self.starts,
            }
        }
    }

    fn case(spec: LmSpec, len: usize, r: &mut Rng64) -> Case {
        let layout = spec.layout().unwrap();
        let v = spec.vocab as u32;
        Case {
            theta: (0..layout.size())
                .map(|_| r.random_range(-0.6..0.6))
                .collect(),
            state: (0..spec.state_len())
                .map(|_| r.random_range(-0.8..0.8))
                .collect(),
            tokens: (0..len).map(|_| r.random_range(0..v)).collect(),
            targets: (0..len).map(|_| r.random_range(0..v)).collect(),
            starts: (0..len).map(|t| t == len / 2).collect(),
            layout,
        }
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let mut r = Rng64::seed_from_u64(11);
        for spec in [
            LmSpec::new(7, 3, 4, 2).unwrap(),
            LmSpec::new(5, 4, 4, 1).unwrap(),
        ] {
            let c = case(spec, 6, &mut r);
            let (layout, theta, state) = (&c.layout, &c.theta, &c.state);
            let chunk = c.chunk();
            let out = loss_grad(&spec, layout, theta, state, chunk).unwrap();
            let fd = central_diff(
                |th| forward(&spec, layout, th, state, chunk).unwrap().loss,
                theta,
                1e-5,
            );
            let err = rel_err(&out.grad, &fd);
            assert!(err < 1e-7, "{spec:?}: relative error {err:e}");
            let fwd = forward(&spec, layout, theta, state, chunk).unwrap();
            assert_eq!(fwd.loss.to_bits(), out.loss.to_bits());
            assert_eq!(fwd.state, out.state);
        }
    }

    #[test]
    fn the_tied_embedding_receives_both_uses() {
        // Every input token is 0: rows v ≠ 0 of the embedding are used by the output only and
        // must still receive its gradient (the sum of both uses is checked by finite
        // differences above).
        let spec = LmSpec::new(6, 3, 3, 1).unwrap();
        let mut r = Rng64::seed_from_u64(2);
        let c = case(spec, 4, &mut r);
        let tokens = vec![0u32; 4];
        let chunk = Chunk {
            tokens: &tokens,
            targets: &c.targets,
            starts: &c.starts,
        };
        let out = loss_grad(&spec, &c.layout, &c.theta, &c.state, chunk).unwrap();
        let emb = c.layout.require("emb").unwrap().offset;
        for v in 1..6 {
            let row = &out.grad[emb + v * 3..emb + v * 3 + 3];
            assert!(
                row.iter().any(|g| *g != 0.0),
                "row {v} got no output gradient"
            );
        }
    }

    #[test]
    fn a_chunk_is_two_half_chunks_with_the_state_carried() {
        let spec = LmSpec::new(7, 3, 4, 2).unwrap();
        let mut r = Rng64::seed_from_u64(5);
        let mut c = case(spec, 8, &mut r);
        c.starts[6] = true;
        let whole = forward(&spec, &c.layout, &c.theta, &c.state, c.chunk()).unwrap();
        let half = |s: &[f64], a: usize, b: usize| {
            forward(
                &spec,
                &c.layout,
                &c.theta,
                s,
                Chunk {
                    tokens: &c.tokens[a..b],
                    targets: &c.targets[a..b],
                    starts: &c.starts[a..b],
                },
            )
            .unwrap()
        };
        let first = half(&c.state, 0, 3);
        let second = half(&first.state, 3, 8);
        let joined: Vec<f64> = first
            .token_losses
            .iter()
            .chain(&second.token_losses)
            .copied()
            .collect();
        assert_eq!(joined, whole.token_losses);
        assert_eq!(second.state, whole.state);
    }

    #[test]
    fn a_document_start_forgets_the_carried_state() {
        let spec = LmSpec::new(5, 2, 3, 2).unwrap();
        let mut r = Rng64::seed_from_u64(8);
        let c = case(spec, 5, &mut r);
        let starts = vec![true, false, false, false, false];
        let chunk = Chunk {
            tokens: &c.tokens,
            targets: &c.targets,
            starts: &starts,
        };
        let a = loss_grad(&spec, &c.layout, &c.theta, &c.state, chunk).unwrap();
        let zero = vec![0.0; spec.state_len()];
        let b = loss_grad(&spec, &c.layout, &c.theta, &zero, chunk).unwrap();
        assert_eq!(a.loss, b.loss);
        assert_eq!(a.grad, b.grad);
    }

    #[test]
    fn bad_chunks_are_refused() {
        let spec = LmSpec::new(5, 2, 3, 1).unwrap();
        let layout = spec.layout().unwrap();
        let theta = vec![0.0; layout.size()];
        let state = vec![0.0; spec.state_len()];
        let bad = [
            (vec![1u32, 2], vec![1u32], vec![false, false]),
            (vec![1, 9], vec![1, 2], vec![false, false]),
            (vec![], vec![], vec![]),
        ];
        for (tokens, targets, starts) in &bad {
            let c = Chunk {
                tokens,
                targets,
                starts,
            };
            assert!(loss_grad(&spec, &layout, &theta, &state, c).is_err());
        }
        assert!(LmSpec::new(1, 2, 3, 1).is_err());
        assert!(LmSpec::new(5, 2, 3, 0).is_err());
    }

    #[test]
    fn init_gives_every_instance_its_own_draw_and_the_forget_bias() {
        let spec = LmSpec::new(9, 4, 3, 2).unwrap();
        let layout = spec.layout().unwrap();
        let mut r = Rng64::seed_from_u64(1);
        let all = spec.init(&mut r, 2).unwrap();
        let p = layout.size();
        assert_eq!(all.len(), 2 * p);
        assert_ne!(all[..p], all[p..]);
        let b = layout.require("lstm1.b").unwrap().offset;
        assert_eq!(
            &all[b..b + 12],
            &[0., 0., 0., 1., 1., 1., 0., 0., 0., 0., 0., 0.]
        );
    }
}
