//! The PES paper's toy task: its kernels (f, ∇f, ∇²f·v) on random points against the f64
//! reference, outputs poisoned with NaN first and the padding between instances untouched.

mod common;

use common::{assert_close, f64s, gpu, rng, uniform};
use metalearn::gpu::Recorder;
use metalearn::kernels::vec::View;
use metalearn::kernels::Batched;
use metalearn::tasks::toy::{reference, ToyTask};
use metalearn::tasks::{BatchRef, Hvp, LossGrad, Task};
use metalearn::Result;
use rand::Rng;

#[test]
fn toy_kernels_match_the_reference_on_random_points() -> Result<()> {
    let g = gpu();
    let mut r = rng("pes toy kernels");
    let n = r.random_range(1..70);
    let task = ToyTask::new(n)?;
    let (stride, off) = (5, 3);
    let len = off + n * stride;
    let mut x = uniform(&mut r, len, -2.0, 2.0);
    for i in 0..n {
        x[off + i * stride + 1] = r.random_range(-5.0..120.0);
    }
    let v = uniform(&mut r, len, -1.0, 1.0);
    let (gx, gv) = (g.buffer_from("x", &x)?, g.buffer_from("v", &v)?);
    let (ggrad, gloss, ghv) = (
        g.buffer("grad", len)?,
        g.buffer("loss", n + 2)?,
        g.buffer("hv", len)?,
    );
    for b in [&ggrad, &gloss, &ghv] {
        g.fill(b, f32::NAN)?;
    }
    let block = |buf| Batched {
        buf,
        off,
        batch_stride: stride,
    };
    let mut rec = Recorder::new(g);
    task.record_loss_grad(
        &mut rec,
        LossGrad {
            theta: block(&gx),
            grad: block(&ggrad),
            loss: View::new(&gloss, 1),
            batch: BatchRef::Train(0),
        },
    )?;
    task.record_hvp(
        &mut rec,
        Hvp {
            theta: block(&gx),
            v: block(&gv),
            out: block(&ghv),
            batch: BatchRef::Train(0),
        },
    )?;
    rec.submit()?;
    let (grad, loss, hv): (Vec<f32>, Vec<f32>, Vec<f32>) =
        (g.read(&ggrad)?, g.read(&gloss)?, g.read(&ghv)?);
    for i in 0..n {
        let at = off + i * stride..off + i * stride + 2;
        let xi = f64s(&x[at.clone()]);
        let (l, gr) = reference::loss_grad(&xi);
        assert_close(&format!("f at {xi:?}"), &[loss[1 + i]], &[l], 1e-5);
        assert_close(&format!("∇f at {xi:?}"), &grad[at.clone()], &gr, 1e-4);
        let want = reference::hvp(&xi, &f64s(&v[at.clone()]));
        assert_close(&format!("∇²f·v at {xi:?}"), &hv[at], &want, 1e-4);
    }
    let inside = |j: usize| j >= off && (j - off) % stride < 2;
    for j in 0..len {
        assert!(
            inside(j) || (grad[j].is_nan() && hv[j].is_nan()),
            "padding {j} written"
        );
    }
    assert!(
        loss[0].is_nan() && loss[n + 1].is_nan(),
        "loss written out of place"
    );
    Ok(())
}
