//! The LSTM language model on the GPU against its f64 reference: loss, gradient of the whole
//! parameter block (tied embedding included) and the carried state of one chunk, for N
//! instances with their own parameters, document starts inside the chunk, with and without the
//! projection, on both matrix-product tiling modes. Parameter blocks are padded (stride P + 3,
//! offset 2), every output is poisoned with NaN first and the padding must stay NaN; a second
//! run gives the same bits.

mod common;

use common::{assert_close, assert_untouched, f64s, gpus, random_tokens, rng, uniform};
use metalearn::gpu::{Gpu, Recorder};
use metalearn::kernels::vec::View;
use metalearn::kernels::Batched;
use metalearn::tasks::lm::reference::{self, Chunk};
use metalearn::tasks::lm::{GpuLm, LmSpec};
use metalearn::tasks::TaskRng;
use metalearn::Result;
use rand::Rng;

/// The f64 reference of stream `i` of a `[N, len]` chunk at parameters `theta` from `state`.
fn stream_reference(
    (spec, layout): (&LmSpec, &metalearn::params::ParamLayout),
    (theta, state): (&[f64], &[f64]),
    (tokens, targets, starts): (&[u32], &[u32], &[bool]),
    (i, len): (usize, usize),
) -> Result<reference::ChunkOut> {
    let rows = i * len..(i + 1) * len;
    reference::loss_grad(
        spec,
        layout,
        theta,
        state,
        Chunk {
            tokens: &tokens[rows.clone()],
            targets: &targets[rows.clone()],
            starts: &starts[rows],
        },
    )
}

fn lm_case(g: &Gpu, spec: LmSpec, n: usize, len: usize, r: &mut TaskRng) -> Result<()> {
    let lm = GpuLm::new(g, &spec, n, len)?;
    let p = lm.layout().size();
    let (stride, off) = (p + 3, 2);
    let s = spec.state_len();
    let theta = uniform(r, off + n * stride, -0.5, 0.5);
    let state = uniform(r, n * s, -0.8, 0.8);
    let tokens = random_tokens(r, n * len, spec.vocab);
    let targets = random_tokens(r, n * len, spec.vocab);
    // Instance 0 starts a document at token 0, the others somewhere inside the chunk.
    let starts: Vec<bool> = (0..n * len).map(|i| i % len == (i / len) % len).collect();
    let gtheta = g.buffer_from("theta", &theta)?;
    let gstate = g.buffer_from("state", &state)?;
    let gnext = g.buffer("next state", n * s)?;
    let ggrad = g.buffer("grad", off + n * stride)?;
    let gloss = g.buffer("loss", n + 1)?;
    for b in [&gnext, &ggrad, &gloss] {
        g.fill(b, f32::NAN)?;
    }
    lm.upload_chunk(g, &tokens, &targets, &starts)?;
    let th = Batched {
        buf: &gtheta,
        off,
        batch_stride: stride,
    };
    let gr = Batched {
        buf: &ggrad,
        off,
        batch_stride: stride,
    };
    let run = || -> Result<()> {
        let mut rec = Recorder::new(g);
        let loss = View::new(&gloss, 1);
        lm.record(&mut rec, th, (&gstate, &gnext), Some(gr), loss)?;
        rec.submit()
    };
    run()?;
    let (grad, loss, next) = (g.read(&ggrad)?, g.read(&gloss)?, g.read(&gnext)?);
    // The same recording again gives the same bits (no atomics, fixed summation orders).
    run()?;
    let again: Vec<u32> = g.read(&ggrad)?.iter().map(|v: &f32| v.to_bits()).collect();
    let bits: Vec<u32> = grad.iter().map(|v: &f32| v.to_bits()).collect();
    assert_eq!(again, bits);
    let layout = spec.layout()?;
    for i in 0..n {
        let t = f64s(&theta[off + i * stride..off + i * stride + p]);
        let st = f64s(&state[i * s..(i + 1) * s]);
        let arrays = (&tokens[..], &targets[..], &starts[..]);
        let want = stream_reference((&spec, &layout), (&t, &st), arrays, (i, len))?;
        let what = format!("{spec:?} N={n} L={len} instance {i}");
        assert_close(
            &format!("{what} loss"),
            &loss[1 + i..2 + i],
            &[want.loss],
            1e-5,
        );
        assert_close(
            &format!("{what} grad"),
            &grad[off + i * stride..off + i * stride + p],
            &want.grad,
            1e-4,
        );
        assert_close(
            &format!("{what} state"),
            &next[i * s..(i + 1) * s],
            &want.state,
            1e-5,
        );
    }
    let blocks: Vec<(usize, usize)> = (0..n).map(|i| (off + i * stride, p)).collect();
    assert_untouched("lm grad padding", &grad, &blocks);
    assert_untouched("lm loss", &loss, &[(1, n)]);
    Ok(())
}

#[test]
fn lm_chunk_matches_reference_smoke() -> Result<()> {
    let mut r = rng("lm_chunk_matches_reference_smoke");
    for g in gpus() {
        lm_case(g, LmSpec::new(11, 3, 4, 2)?, 3, 5, &mut r)?;
    }
    Ok(())
}

#[test]
fn lm_without_projection_awkward_sizes_and_one_instance() -> Result<()> {
    let mut r = rng("lm_without_projection_awkward_sizes_and_one_instance");
    let g = gpus()[0];
    lm_case(g, LmSpec::new(37, 6, 6, 1)?, 1, 7, &mut r)?;
    lm_case(g, LmSpec::new(300, 5, 9, 2)?, 2, 1, &mut r)?;
    lm_case(g, LmSpec::new(19, 17, 70, 1)?, 2, 3, &mut r)?;
    Ok(())
}

#[test]
fn lm_bad_chunks_are_refused() -> Result<()> {
    let g = gpus()[0];
    let lm = GpuLm::new(g, &LmSpec::new(5, 2, 3, 1)?, 2, 3)?;
    let ok = vec![1u32; 6];
    let starts = vec![false; 6];
    assert!(lm.upload_chunk(g, &ok, &ok, &starts).is_ok());
    assert!(lm.upload_chunk(g, &ok[..5], &ok, &starts).is_err());
    let mut bad = ok.clone();
    bad[4] = 5;
    assert!(lm.upload_chunk(g, &bad, &ok, &starts).is_err());
    assert!(GpuLm::new(g, &LmSpec::new(5, 2, 3, 1)?, 0, 3).is_err());
    Ok(())
}

/// Shared weights (instance stride 0): every stream reads one block and gets its own gradient,
/// or all streams add into one.
#[test]
fn lm_shared_weights_give_each_stream_its_gradient() -> Result<()> {
    let mut r = rng("lm_shared_weights_give_each_stream_its_gradient");
    let g = gpus()[0];
    let (spec, n, len) = (LmSpec::new(13, 4, 5, 2)?, 3, 4);
    let lm = GpuLm::new(g, &spec, n, len)?;
    let p = lm.layout().size();
    let theta = uniform(&mut r, p, -0.5, 0.5);
    let tokens = random_tokens(&mut r, n * len, 13);
    let targets = random_tokens(&mut r, n * len, 13);
    let starts = vec![false; n * len];
    let state = vec![0.0f32; n * spec.state_len()];
    let gtheta = g.buffer_from("theta", &theta)?;
    let (gs, gn) = (g.buffer_from("s", &state)?, g.buffer("n", state.len())?);
    let ggrad = g.buffer("grad", n * p)?;
    let gloss = g.buffer("loss", n)?;
    g.fill(&ggrad, f32::NAN)?;
    lm.upload_chunk(g, &tokens, &targets, &starts)?;
    let mut rec = Recorder::new(g);
    let shared = Batched {
        buf: &gtheta,
        off: 0,
        batch_stride: 0,
    };
    let grad = Batched::dense(&ggrad, p);
    lm.record(
        &mut rec,
        shared,
        (&gs, &gn),
        Some(grad),
        View::new(&gloss, 0),
    )?;
    rec.submit()?;
    let grads = g.read(&ggrad)?;
    // Shared weights and one gradient block (stride 0): the products run over all N·L rows
    // and the gradient is the sum of the streams'.
    let gsum = g.buffer("summed grad", p + 2)?;
    g.fill(&gsum, f32::NAN)?;
    let summed = Batched {
        buf: &gsum,
        off: 1,
        batch_stride: 0,
    };
    let mut rec = Recorder::new(g);
    lm.record(
        &mut rec,
        shared,
        (&gs, &gn),
        Some(summed),
        View::new(&gloss, 0),
    )?;
    rec.submit()?;
    let sum = g.read(&gsum)?;
    let layout = spec.layout()?;
    let mut want_sum = vec![0.0; p];
    for i in 0..n {
        let (th, zero) = (f64s(&theta), vec![0.0; spec.state_len()]);
        let arrays = (&tokens[..], &targets[..], &starts[..]);
        let want = stream_reference((&spec, &layout), (&th, &zero), arrays, (i, len))?;
        assert_close("shared grad", &grads[i * p..(i + 1) * p], &want.grad, 1e-4);
        for (w, v) in want_sum.iter_mut().zip(&want.grad) {
            *w += v;
        }
    }
    assert_close("summed grad", &sum[1..1 + p], &want_sum, 1e-4);
    assert_untouched("summed grad padding", &sum, &[(1, p)]);
    // A summed gradient of per-stream weights is refused.
    let per_stream = g.buffer_from("own weights", &theta.repeat(n))?;
    let own = Batched::dense(&per_stream, p);
    let mut rec = Recorder::new(g);
    let e = lm
        .record(
            &mut rec,
            own,
            (&gs, &gn),
            Some(summed),
            View::new(&gloss, 0),
        )
        .expect_err("a summed gradient of per-stream weights was accepted")
        .to_string();
    assert!(e.contains("summed over the streams"), "{e}");
    Ok(())
}

/// One step of static training with SGD is θ − lr · (mean over streams of the gradients).
#[test]
fn lm_static_training_step_is_the_mean_gradient_step() -> Result<()> {
    use metalearn::optim::Optimizer;
    use metalearn::tasks::lm::{StaticTrainer, TokenChunk};
    let mut r = rng("lm_static_training_step_is_the_mean_gradient_step");
    let (spec, n, len) = (LmSpec::new(9, 3, 3, 1)?, 2, 5);
    let p = spec.layout()?.size();
    let theta = uniform(&mut r, p, -0.5, 0.5);
    let tokens = random_tokens(&mut r, n * len, 9);
    let targets = random_tokens(&mut r, n * len, 9);
    let starts: Vec<bool> = (0..n * len).map(|i| i == 2).collect();
    let lr = 0.3f32;
    let mut tr = StaticTrainer::new(
        common::shared_gpu().clone(),
        (&spec, &theta),
        (n, len),
        (Optimizer::parse("sgd")?.with_lr(lr), &[]),
    )?;
    let chunk = TokenChunk {
        tokens: &tokens,
        targets: &targets,
        starts: &starts,
    };
    let loss = tr.step(chunk)?;
    let layout = spec.layout()?;
    let th = f64s(&theta);
    let mut mean_grad = vec![0.0; p];
    let mut mean_loss = 0.0;
    for i in 0..n {
        let zero = vec![0.0; spec.state_len()];
        let arrays = (&tokens[..], &targets[..], &starts[..]);
        let out = stream_reference((&spec, &layout), (&th, &zero), arrays, (i, len))?;
        mean_loss += out.loss / n as f64;
        for (m, g) in mean_grad.iter_mut().zip(&out.grad) {
            *m += g / n as f64;
        }
    }
    assert!(
        (loss - mean_loss).abs() <= 1e-5 * mean_loss.abs(),
        "{loss} vs {mean_loss}"
    );
    let want: Vec<f64> = th
        .iter()
        .zip(&mean_grad)
        .map(|(t, g)| t - f64::from(lr) * g)
        .collect();
    assert_close("weights after one step", &tr.weights()?, &want, 1e-5);
    Ok(())
}

/// A repeated random sequence: static training learns it, and dynamic evaluation with SGD
/// lowers the loss of the later repetitions below the static model's, while the first chunk is
/// scored before any update (equal to static evaluation).
#[test]
fn lm_training_learns_and_dynamic_evaluation_adapts() -> Result<()> {
    use metalearn::optim::Optimizer;
    use metalearn::tasks::lm::{DynamicEval, StaticTrainer, TokenChunk};
    let mut r = rng("lm_training_learns_and_dynamic_evaluation_adapts");
    let gpu = common::shared_gpu().clone();
    let (spec, n, len) = (LmSpec::new(16, 8, 16, 1)?, 2, 8);
    let theta0 = spec.init(&mut r, 1)?;
    // Training data: each stream cycles through the tokens in order.
    let cycle = |n: usize, k: usize| -> (Vec<u32>, Vec<u32>) {
        let t: Vec<u32> = (0..n * len)
            .map(|i| ((i % len + k * len) % 16) as u32)
            .collect();
        let y = t.iter().map(|v| (v + 1) % 16).collect();
        (t, y)
    };
    let starts = vec![false; n * len];
    let mut tr = StaticTrainer::new(
        gpu.clone(),
        (&spec, &theta0),
        (n, len),
        (Optimizer::parse("adam")?.with_lr(0.02), &[]),
    )?;
    let mut first = 0.0;
    let mut last = 0.0;
    for k in 0..150 {
        let (t, y) = cycle(n, k);
        let l = tr.step(TokenChunk {
            tokens: &t,
            targets: &y,
            starts: &starts,
        })?;
        if k == 0 {
            first = l;
        }
        last = l;
    }
    eprintln!("static training: loss {first:.3} → {last:.3}");
    assert!(
        last < 0.3 * first,
        "training did not learn the cycle: {first} → {last}"
    );
    // Evaluation on a new random sequence, repeated: dynamic SGD adapts to it.
    let theta = tr.weights()?;
    let seq: Vec<u32> = (0..len + 1).map(|_| r.random_range(0..16)).collect();
    let rep_t: Vec<u32> = (0..n).flat_map(|_| seq[..len].to_vec()).collect();
    let rep_y: Vec<u32> = (0..n).flat_map(|_| seq[1..].to_vec()).collect();
    let chunk = TokenChunk {
        tokens: &rep_t,
        targets: &rep_y,
        starts: &starts,
    };
    let all = ["all".to_string()];
    let mut stat = DynamicEval::new(gpu.clone(), (&spec, &theta), (n, len), &all, None)?;
    let sgd = metalearn::tasks::lm::Update::Sgd {
        lr: 0.5,
        decay: 0.0,
    };
    let mut dynamic = DynamicEval::new(gpu, (&spec, &theta), (n, len), &all, Some(sgd))?;
    let (mut s_last, mut d_last) = (0.0, 0.0);
    for k in 0..16 {
        let s = stat.chunk(chunk)?;
        let d = dynamic.chunk(chunk)?;
        if k == 0 {
            assert_eq!(s, d, "the first chunk is scored before any update");
        }
        s_last = s.iter().sum::<f32>() / n as f32;
        d_last = d.iter().sum::<f32>() / n as f32;
    }
    eprintln!("after 16 repetitions: static {s_last:.3}, dynamic {d_last:.3}");
    assert!(
        d_last < 0.5 * s_last,
        "dynamic {d_last} not below static {s_last}"
    );
    Ok(())
}

/// Per-token losses average to the per-stream losses, and `reset_state` starts the streams
/// again: the same chunk after a reset scores as it did first, bit for bit.
#[test]
fn token_losses_average_to_stream_losses_and_reset_restarts() -> Result<()> {
    use metalearn::tasks::lm::{DynamicEval, TokenChunk};
    let mut r = rng("token_losses_average_to_stream_losses_and_reset_restarts");
    let gpu = common::shared_gpu().clone();
    let (spec, n, len) = (LmSpec::new(16, 8, 12, 2)?, 3, 5);
    let theta = spec.init(&mut r, 1)?;
    let t = random_tokens(&mut r, n * len, 16);
    let y = random_tokens(&mut r, n * len, 16);
    let starts: Vec<bool> = (0..n * len).map(|i| i == 2).collect();
    let chunk = TokenChunk {
        tokens: &t,
        targets: &y,
        starts: &starts,
    };
    let lstm = ["lstm".to_string()];
    let mut ev = DynamicEval::new(gpu.clone(), (&spec, &theta), (n, len), &lstm, None)?;
    let mut by_stream = DynamicEval::new(gpu, (&spec, &theta), (n, len), &lstm, None)?;
    let tokens = ev.chunk_token_losses(chunk)?;
    let streams = by_stream.chunk(chunk)?;
    assert_eq!(tokens.len(), n * len);
    for (k, s) in streams.iter().enumerate() {
        let m = tokens[k * len..(k + 1) * len].iter().sum::<f32>() / len as f32;
        assert!(
            (m - s).abs() < 1e-5 * s.abs().max(1.0),
            "stream {k}: {m} vs {s}"
        );
    }
    let second = ev.chunk_token_losses(chunk)?;
    assert_ne!(
        second, tokens,
        "the carried state changes the second chunk's scores"
    );
    ev.reset_state()?;
    assert_eq!(ev.chunk_token_losses(chunk)?, tokens);
    Ok(())
}

/// A split model: the tensors of the fast groups one block per instance, the others one shared
/// block. Loss, state, the fast gradient of every instance and the shared gradient summed over
/// the instances against the reference of each instance's joined parameters, for several
/// splits (with and without the shared gradient), padded and poisoned blocks.
#[test]
fn lm_split_fast_and_shared_parts_match_reference() -> Result<()> {
    use metalearn::tasks::lm::model::Parts;
    let mut r = rng("lm_split_fast_and_shared_parts_match_reference");
    let (spec, n, len) = (LmSpec::new(17, 4, 6, 2)?, 3, 5);
    let layout = spec.layout()?;
    let s = spec.state_len();
    for (groups, shared_grad) in [
        (&["lstm"][..], true),
        (&["lstm"][..], false),
        (&["lstm1"][..], false),
        (&["emb", "lstm0.wh"][..], true),
        (&["proj", "out.b"][..], true),
        (&["lstm0.b"][..], false),
    ] {
        let groups: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
        for g in gpus() {
            let lm = GpuLm::split(g, &spec, &groups, n, len)?;
            let split = lm.parts().clone();
            let (pf, ps) = (split.fast.size(), split.shared.size());
            let (stride, off) = (pf + 2, 1);
            let fast = uniform(&mut r, off + n * stride, -0.5, 0.5);
            let shared = uniform(&mut r, ps + 1, -0.5, 0.5);
            let state = uniform(&mut r, n * s, -0.8, 0.8);
            let tokens = random_tokens(&mut r, n * len, spec.vocab);
            let targets = random_tokens(&mut r, n * len, spec.vocab);
            let starts: Vec<bool> = (0..n * len)
                .map(|i| i % len == 3 * (i / len) % len)
                .collect();
            let (gf, gsh) = (
                g.buffer_from("fast", &fast)?,
                g.buffer_from("shared", &shared)?,
            );
            let gstate = g.buffer_from("state", &state)?;
            let gnext = g.buffer("next state", n * s)?;
            let gfg = g.buffer("fast grad", off + n * stride)?;
            let gsg = g.buffer("shared grad", ps + 2)?;
            let gloss = g.buffer("loss", n)?;
            for b in [&gnext, &gfg, &gsg, &gloss] {
                g.fill(b, f32::NAN)?;
            }
            lm.upload_chunk(g, &tokens, &targets, &starts)?;
            let w = Parts {
                fast: Some(Batched {
                    buf: &gf,
                    off,
                    batch_stride: stride,
                }),
                shared: Some(Batched {
                    buf: &gsh,
                    off: 1,
                    batch_stride: 0,
                }),
            };
            let grads = Parts {
                fast: Some(Batched {
                    buf: &gfg,
                    off,
                    batch_stride: stride,
                }),
                shared: shared_grad.then_some(Batched {
                    buf: &gsg,
                    off: 1,
                    batch_stride: 0,
                }),
            };
            let mut rec = Recorder::new(g);
            lm.record_parts(
                &mut rec,
                w,
                (&gstate, &gnext),
                Some(&grads),
                View::new(&gloss, 0),
            )?;
            rec.submit()?;
            let (fg, sg) = (g.read(&gfg)?, g.read(&gsg)?);
            let (loss, next) = (g.read(&gloss)?, g.read(&gnext)?);
            let mut want_shared = vec![0.0f64; ps];
            for i in 0..n {
                let mine = &fast[off + i * stride..off + i * stride + pf];
                let full = split.join(mine, &shared[1..])?;
                let st = f64s(&state[i * s..(i + 1) * s]);
                let arrays = (&tokens[..], &targets[..], &starts[..]);
                let want =
                    stream_reference((&spec, &layout), (&f64s(&full), &st), arrays, (i, len))?;
                let (wf, ws) = split.parts(&want.grad)?;
                let what = format!("{groups:?} instance {i}");
                assert_close(&format!("{what} loss"), &loss[i..i + 1], &[want.loss], 1e-5);
                assert_close(
                    &format!("{what} state"),
                    &next[i * s..(i + 1) * s],
                    &want.state,
                    1e-5,
                );
                let got = &fg[off + i * stride..off + i * stride + pf];
                assert_close(&format!("{what} fast grad"), got, &wf, 1e-4);
                want_shared.iter_mut().zip(&ws).for_each(|(a, b)| *a += b);
            }
            let blocks: Vec<(usize, usize)> = (0..n).map(|i| (off + i * stride, pf)).collect();
            assert_untouched("fast grad padding", &fg, &blocks);
            if shared_grad {
                assert_close(
                    &format!("{groups:?} shared grad"),
                    &sg[1..1 + ps],
                    &want_shared,
                    1e-4,
                );
                assert_untouched("shared grad padding", &sg, &[(1, ps)]);
            } else {
                assert_untouched("shared grad not asked for", &sg, &[]);
            }
        }
    }
    // Groups that name no tensor are refused by name.
    let e = GpuLm::split(gpus()[0], &spec, &["lstm7".to_string()], n, len)
        .expect_err("a group naming no tensor was accepted")
        .to_string();
    assert!(e.contains("'lstm7' names no tensor"), "{e}");
    Ok(())
}
