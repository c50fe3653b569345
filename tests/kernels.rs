//! Every kernel against the f64 reference on fresh random inputs, outputs poisoned with NaN first.

mod common;

use common::{assert_close, assert_untouched, f64s, gpu, gpus, rng, uniform};
use metalearn::gpu::{Gpu, Recorder};
use metalearn::kernels::gather::{sample_index, GpuDataset};
use metalearn::kernels::matmul::{matmul, Activation, Epilogue, MatDims, MatView};
use metalearn::kernels::reduce::{reduce, Out, ReduceOp, ReduceStrategy, Reduction, Strided};
use metalearn::kernels::sgd::sgd;
use metalearn::kernels::vec::View;
use metalearn::kernels::Batched;
use metalearn::reference::{self, activate, activate_grad};
use metalearn::tasks::mlp::softmax::{mse, softmax_xent, LossDims};
use metalearn::tasks::quadratic::kernels::quadratic;
use metalearn::tasks::quadratic::reference as quadratic_reference;
use metalearn::{Error, Result};
use rand::Rng;

const ACTS: [Activation; 4] = Activation::ALL;

/// Stored shape of op(X) = rows×cols, transposed or not.
fn stored(rows: usize, cols: usize, trans: bool) -> (usize, usize) {
    if trans {
        (cols, rows)
    } else {
        (rows, cols)
    }
}

/// Extract instance `n`'s stored matrix from a padded batch layout.
fn extract(
    buf: &[f32],
    off: usize,
    bs: usize,
    ld: usize,
    r: usize,
    c: usize,
    n: usize,
) -> Vec<f64> {
    (0..r * c)
        .map(|i| f64::from(buf[off + n * bs + (i / c) * ld + i % c]))
        .collect()
}

enum Epi {
    Store,
    Accumulate,
    BiasAct(Activation),
    ActGrad(Activation),
}

/// One matmul case: padded, offset operands; C poisoned (or random for Accumulate). Returns C.
fn matmul_case(g: &Gpu, dims: MatDims, (ta, tb): (bool, bool), epi: Epi) -> Result<Vec<f32>> {
    let MatDims { m, n, k, batch } = dims;
    let mut r = rng(&format!("matmul {m}x{n}x{k} b{batch} ta{ta} tb{tb}"));
    let (ar, ac) = stored(m, k, ta);
    let (br, bc) = stored(k, n, tb);
    // Leading dimensions and strides larger than needed, and nonzero offsets.
    let (lda, ldb, ldc) = (ac + 3, bc + 1, n + 2);
    let (a_bs, b_bs, c_bs) = (ar * lda + 5, br * ldb + 2, m * ldc + 3);
    let (a_off, b_off, c_off) = (7, 1, 4);
    let a = uniform(&mut r, a_off + batch * a_bs, -1.0, 1.0);
    let b = uniform(&mut r, b_off + batch * b_bs, -1.0, 1.0);
    let e = uniform(&mut r, 3 + batch * (m * ldc + 3), 0.01, 0.99); // bias / activation outputs
    let c_init: Vec<f32> = match epi {
        Epi::Accumulate => uniform(&mut r, c_off + batch * c_bs, -1.0, 1.0),
        _ => vec![f32::NAN; c_off + batch * c_bs],
    };
    let (ga, gb, ge) = (
        g.buffer_from("a", &a)?,
        g.buffer_from("b", &b)?,
        g.buffer_from("e", &e)?,
    );
    let gc = g.buffer_from("c", &c_init)?;
    let mut rec = Recorder::new(g);
    let view = |buf, off, bs, ld, trans| MatView {
        buf,
        off,
        batch_stride: bs,
        ld,
        trans,
    };
    let cview = view(&gc, c_off, c_bs, ldc, false);
    let epilogue = match epi {
        Epi::Store => Epilogue::Store,
        Epi::Accumulate => Epilogue::Accumulate,
        Epi::BiasAct(act) => Epilogue::BiasAct {
            buf: &ge,
            off: 3,
            batch_stride: m * ldc + 3,
            act,
        },
        Epi::ActGrad(act) => Epilogue::ActGrad {
            h: view(&ge, 3, m * ldc + 3, ldc, false),
            act,
        },
    };
    matmul(
        &mut rec,
        MatDims::new(m, n, k, batch),
        view(&ga, a_off, a_bs, lda, ta),
        view(&gb, b_off, b_bs, ldb, tb),
        cview,
        epilogue,
    )?;
    rec.submit()?;
    let c: Vec<f32> = g.read(&gc)?;
    let mut written = Vec::new();
    for inst in 0..batch {
        let am = extract(&a, a_off, a_bs, lda, ar, ac, inst);
        let bm = extract(&b, b_off, b_bs, ldb, br, bc, inst);
        let mut want = reference::matmul(m, n, k, &am, ta, &bm, tb);
        for (idx, w) in want.iter_mut().enumerate() {
            let (i, j) = (idx / n, idx % n);
            let ev = |o: usize| f64::from(e[3 + inst * (m * ldc + 3) + o]);
            *w = match epi {
                Epi::Store => *w,
                Epi::Accumulate => *w + f64::from(c_init[c_off + inst * c_bs + i * ldc + j]),
                Epi::BiasAct(act) => activate(*w + ev(j), act),
                Epi::ActGrad(act) => {
                    // act' from the output h: invert h to the pre-activation where needed.
                    let h = ev(i * ldc + j);
                    let d = match act {
                        Activation::Sigmoid => h * (1.0 - h),
                        Activation::Tanh => 1.0 - h * h,
                        Activation::Relu => activate_grad(h, act),
                        Activation::Identity => 1.0,
                    };
                    *w * d
                }
            };
        }
        let got = extract(&c, c_off, c_bs, ldc, m, n, inst);
        let got32: Vec<f32> = got.iter().map(|&v| v as f32).collect();
        assert_close(
            &format!("matmul {m}x{n}x{k} ta={ta} tb={tb} inst {inst}"),
            &got32,
            &want,
            1e-4,
        );
        for i in 0..m {
            written.push((c_off + inst * c_bs + i * ldc, n));
        }
    }
    if !matches!(epi, Epi::Accumulate) {
        assert_untouched("matmul C", &c, &written);
    }
    Ok(c)
}

#[test]
fn matmul_three_forms_smoke() -> Result<()> {
    for g in gpus() {
        for (ta, tb) in [(false, false), (true, false), (false, true)] {
            matmul_case(g, MatDims::new(37, 21, 19, 2), (ta, tb), Epi::Store)?;
        }
    }
    Ok(())
}

#[test]
fn matmul_all_forms_and_awkward_sizes() -> Result<()> {
    for g in gpus() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for &(m, n, k, batch) in &[
                (1, 1, 1, 1),
                (70, 65, 130, 2),
                (3, 100, 33, 3),
                (128, 20, 200, 1),
                (65, 1, 17, 4),
                // 128×128 tiles (staged): partial tiles, K not a multiple of 8.
                (200, 257, 37, 2),
                (128, 128, 8, 1),
            ] {
                matmul_case(g, MatDims::new(m, n, k, batch), (ta, tb), Epi::Store)?;
            }
        }
    }
    Ok(())
}

#[test]
fn matmul_epilogues() -> Result<()> {
    for g in gpus() {
        matmul_case(
            g,
            MatDims::new(33, 18, 9, 3),
            (false, true),
            Epi::Accumulate,
        )?;
        matmul_case(
            g,
            MatDims::new(140, 133, 17, 2),
            (true, true),
            Epi::Accumulate,
        )?;
        for act in ACTS {
            matmul_case(
                g,
                MatDims::new(20, 35, 11, 2),
                (false, false),
                Epi::BiasAct(act),
            )?;
            matmul_case(
                g,
                MatDims::new(19, 12, 40, 2),
                (false, true),
                Epi::ActGrad(act),
            )?;
            matmul_case(
                g,
                MatDims::new(130, 140, 9, 1),
                (true, false),
                Epi::BiasAct(act),
            )?;
            matmul_case(
                g,
                MatDims::new(129, 131, 12, 1),
                (false, true),
                Epi::ActGrad(act),
            )?;
        }
    }
    Ok(())
}

#[test]
fn matmul_rejects_out_of_bounds_views() -> Result<()> {
    let g = gpu();
    let a = g.buffer("a", 10)?;
    let c = g.buffer("c", 100)?;
    let mut rec = Recorder::new(g);
    let err = matmul(
        &mut rec,
        MatDims::new(4, 4, 4, 1),
        MatView::dense(&a, 0, 4, 4),
        MatView::dense(&a, 0, 4, 4),
        MatView::dense(&c, 0, 4, 4),
        Epilogue::Store,
    );
    assert!(
        matches!(err, Err(Error::InvalidArgument(ref m)) if m.contains("matmul A")),
        "{err:?}"
    );
    assert_eq!(rec.dispatches(), 0);
    Ok(())
}

fn reduce_case(
    rows: usize,
    cols: usize,
    batch: usize,
    op: ReduceOp,
    strategy: ReduceStrategy,
    accumulate: bool,
) -> Result<()> {
    let g = gpu();
    let mut r = rng(&format!("reduce {rows}x{cols} b{batch}"));
    // Column-major input with padding between instances: element (n, r, c) at 2 + n·bs + r + c·rows.
    let bs = rows * cols + 3;
    let x = uniform(&mut r, 2 + batch * bs, -1.0, 1.0);
    let y0: Vec<f32> = if accumulate {
        uniform(&mut r, 1 + batch * (cols * 2 + 1), -1.0, 1.0)
    } else {
        vec![f32::NAN; 1 + batch * (cols * 2 + 1)]
    };
    let (gx, gy) = (g.buffer_from("x", &x)?, g.buffer_from("y", &y0)?);
    let mut rec = Recorder::new(g);
    let alpha = 0.5;
    reduce(
        &mut rec,
        Reduction {
            rows,
            cols,
            batch,
            op,
            alpha,
            accumulate,
            strategy,
        },
        Strided {
            buf: &gx,
            off: 2,
            batch_stride: bs,
            row_stride: 1,
            col_stride: rows,
        },
        Out {
            buf: &gy,
            off: 1,
            batch_stride: cols * 2 + 1,
            col_stride: 2,
        },
    )?;
    rec.submit()?;
    let y: Vec<f32> = g.read(&gy)?;
    let mut want = Vec::new();
    let mut got = Vec::new();
    let mut written = Vec::new();
    for n in 0..batch {
        for c in 0..cols {
            let s: f64 = (0..rows)
                .map(|rr| f64::from(x[2 + n * bs + rr + c * rows]))
                .map(|v| if op == ReduceOp::SumSquares { v * v } else { v })
                .sum();
            let o = 1 + n * (cols * 2 + 1) + c * 2;
            let base = if accumulate { f64::from(y0[o]) } else { 0.0 };
            want.push(base + f64::from(alpha) * s);
            got.push(y[o]);
            written.push((o, 1));
        }
    }
    assert_close(
        &format!("reduce {rows}x{cols}x{batch} {op:?} {strategy:?}"),
        &got,
        &want,
        1e-5,
    );
    if !accumulate {
        assert_untouched("reduce output", &y, &written);
    }
    Ok(())
}

#[test]
fn reduce_both_schedules_smoke() -> Result<()> {
    for strategy in [ReduceStrategy::Workgroup, ReduceStrategy::Thread] {
        for op in [ReduceOp::Sum, ReduceOp::SumSquares] {
            reduce_case(300, 7, 3, op, strategy, false)?;
            reduce_case(1, 1, 1, op, strategy, true)?;
            reduce_case(5000, 2, 2, op, strategy, true)?;
        }
    }
    Ok(())
}

/// More workgroups than one grid dimension allows: the grid is split over x and y.
#[test]
fn grid_beyond_one_dimension() -> Result<()> {
    let g = gpu();
    let max = g.limits().max_compute_workgroups_per_dimension as usize;
    let cols = max + 1234;
    let x: Vec<f32> = (0..2 * cols).map(|i| (i % 1000) as f32).collect();
    let (gx, gy) = (g.buffer_from("x", &x)?, g.buffer("y", cols)?);
    g.fill(&gy, f32::NAN)?;
    let mut rec = Recorder::new(g);
    // One workgroup per output: `cols` workgroups.
    reduce(
        &mut rec,
        Reduction {
            strategy: ReduceStrategy::Workgroup,
            ..Reduction::new(ReduceOp::Sum, 2, cols, 1)
        },
        Strided {
            buf: &gx,
            off: 0,
            batch_stride: 0,
            row_stride: cols,
            col_stride: 1,
        },
        Out {
            buf: &gy,
            off: 0,
            batch_stride: 0,
            col_stride: 1,
        },
    )?;
    rec.submit()?;
    let y: Vec<f32> = g.read(&gy)?;
    for (c, v) in y.iter().enumerate() {
        assert_eq!(*v, x[c] + x[cols + c], "output {c}");
    }
    Ok(())
}

/// The squared-error loss on strided, offset tensors (one workgroup per instance, more elements
/// than threads in the last case) against the reference; nothing outside the outputs is written.
#[test]
fn mse_loss_and_grad_smoke() -> Result<()> {
    let g = gpu();
    let mut r = rng("mse");
    for &(rows, outputs, batch) in &[(1, 1, 1), (5, 1, 3), (7, 3, 4), (300, 2, 2)] {
        let per = rows * outputs;
        // Instance n's tensors at offset 3 + n·(per + 2) (z), 1 + n·(per + 5) (targets).
        let (zs, ys) = (per + 2, per + 5);
        let z = uniform(&mut r, 3 + batch * zs, -4.0, 4.0);
        let y = uniform(&mut r, 1 + batch * ys, -4.0, 4.0);
        let (gz, gy) = (g.buffer_from("z", &z)?, g.buffer_from("targets", &y)?);
        for want_grad in [true, false] {
            let gd = g.buffer("dz", 2 + batch * per)?;
            let gloss = g.buffer("loss", batch + 2)?;
            g.fill(&gd, f32::NAN)?;
            g.fill(&gloss, f32::NAN)?;
            let mut rec = Recorder::new(g);
            mse(
                &mut rec,
                LossDims {
                    rows,
                    width: outputs,
                    batch,
                },
                Batched {
                    buf: &gz,
                    off: 3,
                    batch_stride: zs,
                },
                Batched {
                    buf: &gy,
                    off: 1,
                    batch_stride: ys,
                },
                Batched {
                    buf: &gd,
                    off: 2,
                    batch_stride: per,
                },
                want_grad,
                View::new(&gloss, 1),
            )?;
            rec.submit()?;
            let (dz, loss): (Vec<f32>, Vec<f32>) = (g.read(&gd)?, g.read(&gloss)?);
            for n in 0..batch {
                let (l, d) = reference::mse(
                    rows,
                    outputs,
                    &f64s(&z[3 + n * zs..3 + n * zs + per]),
                    &f64s(&y[1 + n * ys..1 + n * ys + per]),
                );
                assert_close("mse loss", &[loss[1 + n]], &[l], 1e-5);
                if want_grad {
                    assert_close("mse grad", &dz[2 + n * per..2 + (n + 1) * per], &d, 1e-5);
                }
            }
            assert!(
                loss[0].is_nan() && loss[batch + 1].is_nan(),
                "loss written out of place"
            );
            if want_grad {
                assert_untouched("mse grad", &dz, &[(2, batch * per)]);
            } else {
                assert!(
                    dz.iter().all(|v| v.is_nan()),
                    "gradient written without want_grad"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn softmax_xent_loss_and_grad_smoke() -> Result<()> {
    let g = gpu();
    let mut r = rng("softmax");
    for &(rows, classes, batch) in &[(1, 1, 1), (5, 3, 4), (300, 10, 2)] {
        let per = rows * classes;
        let z = uniform(&mut r, batch * per, -4.0, 4.0);
        let labels: Vec<u32> = (0..batch * rows)
            .map(|_| r.random_range(0..classes as u32))
            .collect();
        let (gz, gl) = (g.buffer_from("z", &z)?, g.buffer_from("labels", &labels)?);
        for want_grad in [true, false] {
            let gd = g.buffer("dz", batch * per)?;
            let gloss = g.buffer("loss", batch + 2)?;
            g.fill(&gd, f32::NAN)?;
            g.fill(&gloss, f32::NAN)?;
            let mut rec = Recorder::new(g);
            softmax_xent(
                &mut rec,
                LossDims {
                    rows,
                    width: classes,
                    batch,
                },
                Batched::dense(&gz, per),
                Batched::dense(&gl, rows),
                Batched::dense(&gd, per),
                want_grad,
                View::new(&gloss, 1),
            )?;
            rec.submit()?;
            let (dz, loss): (Vec<f32>, Vec<f32>) = (g.read(&gd)?, g.read(&gloss)?);
            for n in 0..batch {
                let (l, d) = reference::softmax_xent(
                    rows,
                    classes,
                    &f64s(&z[n * per..(n + 1) * per]),
                    &labels[n * rows..(n + 1) * rows],
                );
                assert_close("softmax loss", &[loss[1 + n]], &[l], 1e-5);
                if want_grad {
                    assert_close("softmax grad", &dz[n * per..(n + 1) * per], &d, 1e-5);
                }
            }
            assert!(
                loss[0].is_nan() && loss[batch + 1].is_nan(),
                "loss written out of place"
            );
            if !want_grad {
                assert!(
                    dz.iter().all(|v| v.is_nan()),
                    "gradient written without want_grad"
                );
            }
        }
    }
    Ok(())
}

#[test]
fn quadratic_loss_and_grad() -> Result<()> {
    let g = gpu();
    let mut r = rng("quadratic");
    for &(d, batch) in &[(1, 1), (10, 5), (65, 2), (300, 2)] {
        let data = uniform(&mut r, batch * (d * d + d), -1.0, 1.0);
        let tbs = d + 3;
        let theta = uniform(&mut r, 2 + batch * tbs, -1.0, 1.0);
        let (gdata, gtheta) = (
            g.buffer_from("data", &data)?,
            g.buffer_from("theta", &theta)?,
        );
        let (ggrad, gloss) = (g.buffer("grad", 1 + batch * tbs)?, g.buffer("loss", batch)?);
        g.fill(&ggrad, f32::NAN)?;
        g.fill(&gloss, f32::NAN)?;
        let mut rec = Recorder::new(g);
        quadratic(
            &mut rec,
            d,
            batch,
            Batched {
                buf: &gtheta,
                off: 2,
                batch_stride: tbs,
            },
            &gdata,
            Batched {
                buf: &ggrad,
                off: 1,
                batch_stride: tbs,
            },
            View::new(&gloss, 0),
        )?;
        rec.submit()?;
        let (grad, loss): (Vec<f32>, Vec<f32>) = (g.read(&ggrad)?, g.read(&gloss)?);
        let mut written = Vec::new();
        for n in 0..batch {
            let s = &data[n * (d * d + d)..(n + 1) * (d * d + d)];
            let (l, gr) = quadratic_reference::loss_grad(
                d,
                &f64s(&s[..d * d]),
                &f64s(&s[d * d..]),
                &f64s(&theta[2 + n * tbs..2 + n * tbs + d]),
            );
            assert_close("quadratic loss", &[loss[n]], &[l], 1e-5);
            assert_close(
                "quadratic grad",
                &grad[1 + n * tbs..1 + n * tbs + d],
                &gr,
                1e-5,
            );
            written.push((1 + n * tbs, d));
        }
        assert_untouched("quadratic grad", &grad, &written);
    }
    Ok(())
}

#[test]
fn sgd_update() -> Result<()> {
    let g = gpu();
    let mut r = rng("sgd");
    for count in [1usize, 1000, 70_001] {
        let theta = uniform(&mut r, count + 5, -1.0, 1.0);
        let grad = uniform(&mut r, count + 2, -1.0, 1.0);
        let (gt, gg) = (
            g.buffer_from("theta", &theta)?,
            g.buffer_from("grad", &grad)?,
        );
        let mut rec = Recorder::new(g);
        sgd(&mut rec, &gt, 3, &gg, 2, count, 0.25)?;
        rec.submit()?;
        let out: Vec<f32> = g.read(&gt)?;
        let want: Vec<f64> = (0..count)
            .map(|i| f64::from(theta[3 + i]) - 0.25 * f64::from(grad[2 + i]))
            .collect();
        assert_close("sgd", &out[3..3 + count], &want, 1e-6);
        assert_eq!(&out[..3], &theta[..3]);
        assert_eq!(&out[3 + count..], &theta[3 + count..]);
    }
    Ok(())
}

#[test]
fn gather_samples_the_counter_based_batch() -> Result<()> {
    let g = gpu();
    let mut r = rng("gather");
    let (count, w, h) = (37usize, 13usize, 1usize);
    let ds = metalearn::data::ImageDataset {
        count,
        width: w,
        height: h,
        pixels: (0..count * w * h).map(|_| r.random()).collect(),
        labels: (0..count).map(|_| r.random_range(0..10)).collect(),
        classes: 10,
    };
    let gds = GpuDataset::upload(g, &ds)?;
    let (rows, seed, step) = (5usize, r.random(), 9u32);
    let f = ds.features();
    // Three distinct instances, then the same three copied twice more (ES particles), then
    // three copies of the shard of instances 5..8 of a larger set.
    for (batch, period, first) in [(3usize, 3usize, 0usize), (9, 3, 0), (9, 3, 5)] {
        let (gx, gy) = (
            g.buffer("x", 4 + batch * rows * f)?,
            g.buffer("y", 1 + batch * rows)?,
        );
        g.fill(&gx, f32::NAN)?;
        let mut rec = Recorder::new(g);
        let views = (View::new(&gx, 4), View::new(&gy, 1));
        if batch == period {
            gds.record_batch(&mut rec, rows, batch, (seed, step), views)?;
        } else {
            let shape = (batch, period, first);
            gds.record_batch_copies(&mut rec, rows, shape, (seed, step), views)?;
        }
        rec.submit()?;
        let (x, y): (Vec<f32>, Vec<u32>) = (g.read(&gx)?, g.read(&gy)?);
        for n in 0..batch {
            for b in 0..rows {
                let drawn = (first + n % period) as u32;
                let idx = sample_index(seed, drawn, step, b as u32, count as u32) as usize;
                assert_eq!(y[1 + n * rows + b], u32::from(ds.labels[idx]));
                for j in 0..f {
                    let want = f32::from(ds.pixels[idx * f + j]) * (1.0 / 255.0);
                    assert_eq!(
                        x[4 + (n * rows + b) * f + j],
                        want,
                        "{batch} instances of {period} from {first}: instance {n} row {b} pixel {j}"
                    );
                }
            }
        }
        assert!(x[..4].iter().all(|v| v.is_nan()));
    }
    let e = gds
        .record_batch_copies(
            &mut Recorder::new(g),
            rows,
            (7, 3, 0),
            (seed, step),
            (
                View::new(&g.buffer("x", 7 * rows * f)?, 0),
                View::new(&g.buffer("y", 7 * rows)?, 0),
            ),
        )
        .expect_err("7 instances are not copies of 3")
        .to_string();
    assert!(e.contains("not copies of 3"), "{e}");
    Ok(())
}

#[test]
fn buffers_beyond_the_limits_are_refused() {
    let g = gpu();
    let max = g
        .limits()
        .max_storage_buffer_binding_size
        .min(g.limits().max_buffer_size);
    let too_many = (max / 4 + 1) as usize;
    match g.buffer("huge", too_many) {
        Err(Error::LimitExceeded {
            limit_name, value, ..
        }) => {
            assert!(limit_name.starts_with("max_"));
            assert_eq!(value, too_many as u64 * 4);
        }
        other => panic!("expected LimitExceeded, got {other:?}"),
    }
}
