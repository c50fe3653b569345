//! The LSTM language model on the GPU against its f64 reference: loss, gradient of the whole
//! parameter block (tied embedding included) and the carried state of one chunk, for N
//! instances with their own parameters, document starts inside the chunk, with and without the
//! projection, on both matrix-product tiling modes. Parameter blocks are padded (stride P + 3,
//! offset 2), every output is poisoned with NaN first and the padding must stay NaN; a second
//! run gives the same bits.

mod common;

use common::{assert_close, assert_untouched, f64s, gpus, rng, uniform};
use metalearn::gpu::{Gpu, Recorder};
use metalearn::kernels::vec::View;
use metalearn::kernels::Batched;
use metalearn::tasks::lm::reference::{self, Chunk};
use metalearn::tasks::lm::{GpuLm, LmSpec};
use metalearn::tasks::TaskRng;
use metalearn::Result;
use rand::Rng;

fn lm_case(g: &Gpu, spec: LmSpec, n: usize, len: usize, r: &mut TaskRng) -> Result<()> {
    let lm = GpuLm::new(g, &spec, n, len)?;
    let p = lm.layout().size();
    let (stride, off) = (p + 3, 2);
    let s = spec.state_len();
    let v = spec.vocab as u32;
    let theta = uniform(r, off + n * stride, -0.5, 0.5);
    let state = uniform(r, n * s, -0.8, 0.8);
    let tokens: Vec<u32> = (0..n * len).map(|_| r.random_range(0..v)).collect();
    let targets: Vec<u32> = (0..n * len).map(|_| r.random_range(0..v)).collect();
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
    let mut rec = Recorder::new(g);
    lm.record(
        &mut rec,
        th,
        (&gstate, &gnext),
        Some(gr),
        View::new(&gloss, 1),
    )?;
    rec.submit()?;
    let (grad, loss, next) = (g.read(&ggrad)?, g.read(&gloss)?, g.read(&gnext)?);
    // The same recording again gives the same bits (no atomics, fixed summation orders).
    let mut rec = Recorder::new(g);
    lm.record(
        &mut rec,
        th,
        (&gstate, &gnext),
        Some(gr),
        View::new(&gloss, 1),
    )?;
    rec.submit()?;
    let again: Vec<u32> = g.read(&ggrad)?.iter().map(|v: &f32| v.to_bits()).collect();
    let bits: Vec<u32> = grad.iter().map(|v: &f32| v.to_bits()).collect();
    assert_eq!(again, bits);
    let layout = spec.layout()?;
    for i in 0..n {
        let t = f64s(&theta[off + i * stride..off + i * stride + p]);
        let st = f64s(&state[i * s..(i + 1) * s]);
        let rows = i * len..(i + 1) * len;
        let want = reference::loss_grad(
            &spec,
            &layout,
            &t,
            &st,
            Chunk {
                tokens: &tokens[rows.clone()],
                targets: &targets[rows.clone()],
                starts: &starts[rows],
            },
        )?;
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
