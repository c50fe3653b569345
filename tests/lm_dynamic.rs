//! Dynamic evaluation's updates against their f64 formulas: the update kernel (SGD and RMS
//! rules, the decay alone) on fresh random inputs with padding poisoned, the RMS rule's
//! factors, the gradient statistics of training chunks against the reference's gradients, and
//! one chunk of `DynamicEval` with each update (SGD, RMS, an optimizer then decay) against the
//! reference gradient of the fast weights.

mod common;

use common::{assert_close, assert_untouched, f64s, random_tokens, rng, uniform};
use metalearn::gpu::Recorder;
use metalearn::kernels::Batched;
use metalearn::optim::Optimizer;
use metalearn::tasks::lm::dynamic::{record_update, rms_scales, UpdateArgs};
use metalearn::tasks::lm::reference::{self, Chunk};
use metalearn::tasks::lm::{DynamicEval, LmSpec, TokenChunk, Update};
use metalearn::tasks::TaskRng;
use metalearn::Result;

/// The three terms of the shader's equation in f64 for each coordinate of one instance: θ,
/// the decay step and the gradient step.
fn terms(
    t: &[f64],
    g: &[f64],
    s: &[f64],
    scales: Option<&[f64]>,
    lr: f64,
    decay: f64,
) -> Vec<[f64; 3]> {
    let p = t.len();
    (0..p)
        .map(|i| {
            let (pre, rate) = scales.map_or((1.0, 1.0), |sc| (sc[i], sc[p + i]));
            let g = if lr != 0.0 { lr * pre * g[i] } else { 0.0 };
            [t[i], decay * rate * (s[i] - t[i]), -g]
        })
        .collect()
}

/// The shader's equation in f64 for one instance.
fn formula(
    t: &[f64],
    g: &[f64],
    s: &[f64],
    scales: Option<&[f64]>,
    lr: f64,
    decay: f64,
) -> Vec<f64> {
    terms(t, g, s, scales, lr, decay)
        .iter()
        .map(|[a, b, c]| a + b + c)
        .collect()
}

#[test]
fn dynamic_update_kernel_matches_its_formula() -> Result<()> {
    let mut r = rng("dynamic_update_kernel_matches_its_formula");
    let g = common::gpu();
    for (n, p) in [(1usize, 1usize), (3, 257), (2, 1000)] {
        let (stride, off) = (p + 3, 2);
        for (scaled, lr, decay) in [
            (false, 0.1f32, 0.0f32),
            (false, 0.05, 0.2),
            (true, 0.01, 0.3),
            (true, 0.0, 0.5),
        ] {
            let theta = uniform(&mut r, off + n * stride, -1.0, 1.0);
            let grad = uniform(&mut r, n * p + 1, -2.0, 2.0);
            let statics = uniform(&mut r, p + 4, -1.0, 1.0);
            let scales: Vec<f32> = uniform(&mut r, 2 * p, 0.1, 3.0);
            // Padding between the instances' blocks poisoned: it must stay NaN.
            let mut poisoned = theta.clone();
            for (k, v) in poisoned.iter_mut().enumerate() {
                if k < off || (k - off) % stride >= p {
                    *v = f32::NAN;
                }
            }
            let gt = g.buffer_from("theta", &poisoned)?;
            let gg = g.buffer_from("grad", &grad)?;
            let gs = g.buffer_from("statics", &statics)?;
            let gsc = g.buffer_from("scales", &scales)?;
            let args = UpdateArgs {
                theta: Batched {
                    buf: &gt,
                    off,
                    batch_stride: stride,
                },
                grad: Batched {
                    buf: &gg,
                    off: 1,
                    batch_stride: p,
                },
                statics: (&gs, 4),
                scales: scaled.then_some(&gsc),
                batch: n,
                count: p,
            };
            let mut rec = Recorder::new(g);
            record_update(&mut rec, &args, lr, decay)?;
            rec.submit()?;
            let got: Vec<f32> = g.read(&gt)?;
            let sc = f64s(&scales);
            for i in 0..n {
                let at = off + i * stride;
                let parts = terms(
                    &f64s(&theta[at..at + p]),
                    &f64s(&grad[1 + i * p..1 + (i + 1) * p]),
                    &f64s(&statics[4..4 + p]),
                    scaled.then_some(&sc[..]),
                    f64::from(lr),
                    f64::from(decay),
                );
                // θ + step may cancel: each coordinate is held to a few f32 roundings of its
                // terms' sizes, not of the result's.
                let want: Vec<f64> = parts.iter().map(|[a, b, c]| a + b + c).collect();
                let size: Vec<f64> = parts
                    .iter()
                    .map(|v| v.iter().map(|x| x.abs()).sum())
                    .collect();
                for (k, ((&a, &b), &m)) in got[at..at + p].iter().zip(&want).zip(&size).enumerate()
                {
                    let e = (f64::from(a) - b).abs();
                    assert!(
                        e <= 4.0 * f64::from(f32::EPSILON) * m,
                        "n={n} p={p} scaled={scaled} lr={lr} instance {i} coordinate {k}: got {a}, want {b} (error {e:.2e}, terms of size {m:.2e})"
                    );
                }
            }
            let blocks: Vec<(usize, usize)> = (0..n).map(|i| (off + i * stride, p)).collect();
            assert_untouched("dynamic update padding", &got, &blocks);
        }
    }
    Ok(())
}

#[test]
fn rms_factors_are_the_inverse_rms_and_the_capped_relative_rms() {
    let rms = [0.5f32, 1.0, 4.5, 0.0];
    let s = rms_scales(&rms, 1e-3, 0.5);
    let mean = 1.5f64;
    for (i, &v) in rms.iter().enumerate() {
        assert!((f64::from(s[i]) - 1.0 / (f64::from(v) + 1e-3)).abs() < 1e-4 * s[i] as f64);
        let want = (f64::from(v) / mean).min(2.0);
        assert!(
            (f64::from(s[4 + i]) - want).abs() < 1e-6,
            "{i}: {} vs {want}",
            s[4 + i]
        );
    }
    // 4.5 / 1.5 = 3 is capped at 1 / decay = 2.
    assert_eq!(s[6], 2.0);
    // No decay: no cap.
    assert!((rms_scales(&rms, 1e-3, 0.0)[6] - 3.0).abs() < 1e-6);
}

/// `k` chunks of N streams: tokens, targets, starts.
type Chunks = Vec<(Vec<u32>, Vec<u32>, Vec<bool>)>;

fn chunks(r: &mut TaskRng, k: usize, n: usize, len: usize, v: usize) -> Chunks {
    (0..k)
        .map(|c| {
            let starts = (0..n * len)
                .map(|i| c == 0 && i % len == 0 || i == len + 2)
                .collect();
            (
                random_tokens(r, n * len, v),
                random_tokens(r, n * len, v),
                starts,
            )
        })
        .collect()
}

fn token_chunk(c: &(Vec<u32>, Vec<u32>, Vec<bool>)) -> TokenChunk<'_> {
    TokenChunk {
        tokens: &c.0,
        targets: &c.1,
        starts: &c.2,
    }
}

/// The reference over the chunks at fixed weights `theta`, state carried: every stream's
/// gradient of every chunk.
fn reference_grads(
    spec: &LmSpec,
    theta: &[f64],
    cs: &Chunks,
    n: usize,
    len: usize,
) -> Result<Vec<Vec<Vec<f64>>>> {
    let layout = spec.layout()?;
    let mut states = vec![vec![0.0; spec.state_len()]; n];
    let mut out = Vec::new();
    for c in cs {
        let mut per = Vec::new();
        for (i, state) in states.iter_mut().enumerate() {
            let rows = i * len..(i + 1) * len;
            let o = reference::loss_grad(
                spec,
                &layout,
                theta,
                state,
                Chunk {
                    tokens: &c.0[rows.clone()],
                    targets: &c.1[rows.clone()],
                    starts: &c.2[rows],
                },
            )?;
            *state = o.state;
            per.push(o.grad);
        }
        out.push(per);
    }
    Ok(out)
}

#[test]
fn gradient_rms_matches_the_reference_gradients() -> Result<()> {
    let mut r = rng("gradient_rms_matches_the_reference_gradients");
    let gpu = common::shared_gpu().clone();
    let (spec, n, len) = (LmSpec::new(13, 4, 6, 2)?, 3, 5);
    let theta = spec.init(&mut r, 1)?;
    let cs = chunks(&mut r, 3, n, len, 13);
    let fast = ["lstm".to_string(), "out.b".to_string()];
    let split = spec.split(&fast)?;
    let mut ev = DynamicEval::new(gpu, (&spec, &theta), (n, len), &fast, None)?;
    let got = ev.gradient_rms(cs.iter().map(token_chunk))?;
    let grads = reference_grads(&spec, &f64s(&theta), &cs, n, len)?;
    let mut sq = vec![0.0; split.fast.size()];
    for g in grads.iter().flatten() {
        let (gf, _) = split.parts(g)?;
        sq.iter_mut().zip(&gf).for_each(|(a, b)| *a += b * b);
    }
    let want: Vec<f64> = sq.iter().map(|v| (v / (3 * n) as f64).sqrt()).collect();
    assert_close("gradient rms", &got, &want, 1e-4);
    // The weights did not move.
    assert_eq!(ev.weights()?, split.parts(&theta)?.0.repeat(n));
    Ok(())
}

/// One chunk of dynamic evaluation with each update: the fast weights after it against the
/// f64 update of the reference gradient; the shared weights never change the scores' inputs.
#[test]
fn one_chunk_of_each_update_matches_the_reference() -> Result<()> {
    let mut r = rng("one_chunk_of_each_update_matches_the_reference");
    let gpu = common::shared_gpu().clone();
    let (spec, n, len) = (LmSpec::new(11, 5, 4, 1)?, 2, 6);
    let theta = spec.init(&mut r, 1)?;
    let cs = chunks(&mut r, 1, n, len, 11);
    let fast = ["lstm".to_string()];
    let split = spec.split(&fast)?;
    let (tf, _) = split.parts(&f64s(&theta))?;
    let grads = reference_grads(&spec, &f64s(&theta), &cs, n, len)?;
    let pf = split.fast.size();
    let rms: Vec<f32> = uniform(&mut r, pf, 0.05, 0.5);
    let sc = f64s(&rms_scales(&rms, 1e-4, 0.1));
    let sgd = Optimizer::parse("sgd")?.with_lr(0.3);
    type Want<'a> = Box<dyn Fn(&[f64]) -> Vec<f64> + 'a>;
    let cases: Vec<(Update, Want)> = vec![
        (
            Update::Sgd {
                lr: 0.2,
                decay: 0.1,
            },
            Box::new(|g: &[f64]| formula(&tf, g, &tf, None, 0.2, 0.1)),
        ),
        (
            Update::Rms {
                lr: 0.01,
                decay: 0.1,
                eps: 1e-4,
                rms: rms.clone(),
            },
            Box::new(|g: &[f64]| formula(&tf, g, &tf, Some(&sc), 0.01, 0.1)),
        ),
        (
            Update::Optimizer {
                opt: sgd,
                phi: Vec::new(),
                decay: 0.25,
            },
            // The optimizer's step, then the decay on the updated weights.
            Box::new(|g: &[f64]| {
                let stepped = formula(&tf, g, &tf, None, 0.3, 0.0);
                formula(&stepped, g, &tf, None, 0.0, 0.25)
            }),
        ),
    ];
    for (update, want) in cases {
        let what = format!("{update:?}").chars().take(40).collect::<String>();
        let mut ev = DynamicEval::new(gpu.clone(), (&spec, &theta), (n, len), &fast, Some(update))?;
        ev.chunk(token_chunk(&cs[0]))?;
        let w = ev.weights()?;
        for i in 0..n {
            let (gf, _) = split.parts(&grads[0][i])?;
            assert_close(
                &format!("{what} stream {i}"),
                &w[i * pf..(i + 1) * pf],
                &want(&gf),
                1e-5,
            );
        }
    }
    // An RMS of the wrong length and a bad rate are refused.
    let bad = Update::Rms {
        lr: 0.01,
        decay: 0.0,
        eps: 1e-4,
        rms: vec![1.0; pf + 1],
    };
    assert!(DynamicEval::new(gpu.clone(), (&spec, &theta), (n, len), &fast, Some(bad)).is_err());
    let bad = Update::Sgd {
        lr: f32::NAN,
        decay: 0.0,
    };
    assert!(DynamicEval::new(gpu.clone(), (&spec, &theta), (n, len), &fast, Some(bad)).is_err());
    assert!(DynamicEval::new(gpu, (&spec, &theta), (n, len), &[], None).is_err());
    Ok(())
}
