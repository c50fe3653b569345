//! Batched optimizee models (MLP, quadratic) on the GPU against the f64 reference.

mod common;

use common::{assert_close, f64s, gpu, gpus, rng, uniform};
use metalearn::gpu::{Gpu, Recorder};
use metalearn::kernels::matmul::Activation;
use metalearn::kernels::sgd::sgd;
use metalearn::kernels::Batched;
use metalearn::tasks::mlp::reference as mlp_reference;
use metalearn::tasks::mlp::reference::Targets;
use metalearn::tasks::mlp::{GpuMlp, Loss, MlpSpec};
use metalearn::tasks::quadratic::reference as quadratic_reference;
use metalearn::tasks::quadratic::{GpuQuadratic, Quadratics};
use metalearn::Result;
use rand::Rng;

/// Forward, loss and backward of `instances` instances against the reference, with the parameter
/// blocks padded (stride = size + 3, offset 2) and gradients poisoned with NaN.
fn mlp_case(spec: &MlpSpec, instances: usize, batch: usize) -> Result<()> {
    for g in gpus() {
        mlp_case_on(g, spec, instances, batch)?;
    }
    Ok(())
}

fn mlp_case_on(g: &Gpu, spec: &MlpSpec, instances: usize, batch: usize) -> Result<()> {
    let mut r = rng(&format!("mlp {:?} N={instances} B={batch}", spec.widths));
    let layout = spec.layout()?;
    let (p, stride, off) = (layout.size(), layout.size() + 3, 2);
    let mut theta = uniform(&mut r, off + instances * stride, -0.6, 0.6);
    // Start from the model's own initialisation for the storages (padding stays random).
    let init = spec.init(&mut r, instances)?;
    for n in 0..instances {
        theta[off + n * stride..off + n * stride + p].copy_from_slice(&init[n * p..(n + 1) * p]);
    }
    let x = uniform(&mut r, instances * batch * spec.inputs(), -1.0, 1.0);
    // Targets: labels (cross-entropy) or values (squared error); `per_y` of them per instance.
    let labels: Vec<u32> = (0..instances * batch)
        .map(|_| r.random_range(0..spec.classes() as u32))
        .collect();
    let values = uniform(&mut r, instances * batch * spec.outputs(), -1.0, 1.0);
    let per_y = spec.targets_len(batch);
    let mlp = GpuMlp::new(g, spec, instances, batch)?;
    let gtheta = g.buffer_from("theta", &theta)?;
    let gx = g.buffer_from("x", &x)?;
    let gy = match spec.loss {
        Loss::CrossEntropy => g.buffer_from("labels", &labels)?,
        Loss::Mse => g.buffer_from("targets", &values)?,
    };
    let ggrad = g.buffer("grad", off + instances * stride)?;
    let gloss = g.buffer("loss", instances)?;
    g.fill(&ggrad, f32::NAN)?;
    g.fill(&gloss, f32::NAN)?;
    for l in 0..spec.layers() {
        g.fill(mlp.activations(l).expect("layer"), f32::NAN)?;
    }
    let th = Batched {
        buf: &gtheta,
        off,
        batch_stride: stride,
    };
    let xs = Batched::dense(&gx, batch * spec.inputs());
    let mut rec = Recorder::new(g);
    mlp.record_loss_grad(
        &mut rec,
        th,
        xs,
        Batched::dense(&gy, per_y),
        Batched {
            buf: &ggrad,
            off,
            batch_stride: stride,
        },
        metalearn::kernels::vec::View::new(&gloss, 0),
    )?;
    rec.submit()?;
    let grad: Vec<f32> = g.read(&ggrad)?;
    let loss: Vec<f32> = g.read(&gloss)?;
    let logits: Vec<f32> = g.read(mlp.activations(spec.layers() - 1).expect("logits"))?;
    let per_logits = batch * spec.classes();
    for n in 0..instances {
        let t = f64s(&theta[off + n * stride..off + n * stride + p]);
        let xi = f64s(&x[n * batch * spec.inputs()..(n + 1) * batch * spec.inputs()]);
        let vi = f64s(&values[n * per_y..(n + 1) * per_y]);
        let yi = match spec.loss {
            Loss::CrossEntropy => Targets::Labels(&labels[n * batch..(n + 1) * batch]),
            Loss::Mse => Targets::Values(&vi),
        };
        let zs = mlp_reference::forward(spec, &layout, &t, &xi, batch)?;
        let (l, gr) = mlp_reference::loss_grad_targets(spec, &layout, &t, &xi, yi, batch)?;
        let what = format!(
            "{:?} {:?} {} instance {n}",
            spec.widths,
            spec.activation,
            spec.loss.name()
        );
        assert_close(
            &format!("{what} logits"),
            &logits[n * per_logits..(n + 1) * per_logits],
            &zs[spec.layers() - 1],
            1e-4,
        );
        assert_close(&format!("{what} loss"), &[loss[n]], &[l], 1e-4);
        assert_close(
            &format!("{what} grad"),
            &grad[off + n * stride..off + n * stride + p],
            &gr,
            1e-4,
        );
    }
    Ok(())
}

#[test]
fn mlp_forward_backward_smoke() -> Result<()> {
    mlp_case(&MlpSpec::new(&[7, 5, 3], Activation::Sigmoid)?, 1, 4)?;
    mlp_case(&MlpSpec::new(&[13, 17, 9, 4], Activation::Relu)?, 3, 33)
}

#[test]
fn mlp_every_activation_and_awkward_sizes() -> Result<()> {
    mlp_case(&MlpSpec::new(&[20, 70, 10], Activation::Tanh)?, 2, 65)?;
    mlp_case(&MlpSpec::new(&[64, 20, 10], Activation::Sigmoid)?, 5, 128)?;
    mlp_case(&MlpSpec::new(&[3, 2], Activation::Identity)?, 2, 1)?;
    mlp_case(&MlpSpec::new(&[9, 33, 33, 65, 5], Activation::Relu)?, 2, 17)
}

#[test]
fn mlp_tied_weights_accumulate_into_one_storage() -> Result<()> {
    // 10 → 6 → 10: the decoder weight is the encoder weight transposed.
    let spec = MlpSpec::new(&[10, 6, 10], Activation::Tanh)?.with_tied(1, 0)?;
    assert_eq!(spec.layout()?.size(), 10 * 6 + 6 + 10);
    mlp_case(&spec, 3, 9)?;
    // A tie that is not the first writer of its storage in the backward order, with a layer between.
    let spec = MlpSpec::new(&[8, 5, 5, 8], Activation::Sigmoid)?.with_tied(2, 0)?;
    mlp_case(&spec, 2, 6)
}

#[test]
fn mlp_squared_error_loss() -> Result<()> {
    let mse =
        |w: &[usize], act| Ok::<_, metalearn::Error>(MlpSpec::new(w, act)?.with_loss(Loss::Mse));
    mlp_case(&mse(&[1, 8, 8, 1], Activation::Relu)?, 1, 5)?;
    mlp_case(&mse(&[1, 8, 8, 1], Activation::Relu)?, 3, 10)?;
    mlp_case(&mse(&[7, 5, 3], Activation::Sigmoid)?, 2, 300)?;
    // Tied autoencoder shape reconstructing 12 values.
    mlp_case(&mse(&[12, 5, 12], Activation::Tanh)?.with_tied(1, 0)?, 3, 7)
}

#[test]
fn quadratic_model_matches_reference() -> Result<()> {
    let g = gpu();
    let mut r = rng("quadratic model");
    let q = Quadratics::sample(&mut r, 10, 6)?;
    let theta = q.init(&mut r, 1.0)?;
    let gq = GpuQuadratic::upload(g, &q)?;
    let gtheta = g.buffer_from("theta", &theta)?;
    let (ggrad, gloss) = (g.buffer("grad", theta.len())?, g.buffer("loss", 6)?);
    g.fill(&ggrad, f32::NAN)?;
    g.fill(&gloss, f32::NAN)?;
    let mut rec = Recorder::new(g);
    gq.record_loss_grad(
        &mut rec,
        Batched::dense(&gtheta, 10),
        Batched::dense(&ggrad, 10),
        &gloss,
        0,
    )?;
    rec.submit()?;
    let (grad, loss): (Vec<f32>, Vec<f32>) = (g.read(&ggrad)?, g.read(&gloss)?);
    for n in 0..6 {
        let (w, y) = q.instance(n);
        let (l, gr) = quadratic_reference::loss_grad(
            10,
            &f64s(w),
            &f64s(y),
            &f64s(&theta[n * 10..(n + 1) * 10]),
        );
        assert_close("loss", &[loss[n]], &[l], 1e-5);
        assert_close("grad", &grad[n * 10..(n + 1) * 10], &gr, 1e-5);
    }
    Ok(())
}

/// A whole SGD training of quadratics recorded into one submission (no readback inside) follows
/// the f64 reference trajectory step by step, and its loss falls.
#[test]
fn sgd_training_in_one_submission_follows_the_reference() -> Result<()> {
    let g = gpu();
    let mut r = rng("sgd training");
    let (d, n, steps, lr) = (10, 4, 40, 0.01f32);
    let q = Quadratics::sample(&mut r, d, n)?;
    let theta0 = q.init(&mut r, 0.01)?;
    let gq = GpuQuadratic::upload(g, &q)?;
    let gtheta = g.buffer_from("theta", &theta0)?;
    let ggrad = g.buffer("grad", n * d)?;
    let glosses = g.buffer("losses", steps * n)?;
    g.fill(&glosses, f32::NAN)?;
    let mut rec = Recorder::new(g);
    for t in 0..steps {
        gq.record_loss_grad(
            &mut rec,
            Batched::dense(&gtheta, d),
            Batched::dense(&ggrad, d),
            &glosses,
            t * n,
        )?;
        sgd(&mut rec, &gtheta, 0, &ggrad, 0, n * d, lr)?;
    }
    assert_eq!(rec.dispatches(), 2 * steps);
    rec.submit()?;
    let losses: Vec<f32> = g.read(&glosses)?;
    for i in 0..n {
        let (w, y) = q.instance(i);
        let (w, y) = (f64s(w), f64s(y));
        let mut th = f64s(&theta0[i * d..(i + 1) * d]);
        let mut want = Vec::new();
        let mut got = Vec::new();
        for t in 0..steps {
            let (l, gr) = quadratic_reference::loss_grad(d, &w, &y, &th);
            want.push(l);
            got.push(losses[t * n + i]);
            for (p, gv) in th.iter_mut().zip(&gr) {
                *p -= f64::from(lr) * gv;
            }
        }
        assert_close(
            &format!("loss trajectory of instance {i}"),
            &got,
            &want,
            1e-4,
        );
        assert!(
            want[steps - 1] < want[0],
            "SGD did not reduce the loss of instance {i}"
        );
    }
    Ok(())
}

/// The MLP part of `metalearn sgd` on synthetic images: the training loss falls and the
/// held-out loss improves.
#[test]
fn demo_mlp_training_on_synthetic_data_learns() -> Result<()> {
    let g = gpu();
    let cfg = metalearn::demo::DemoConfig {
        mlp_instances: 2,
        mlp_steps: 30,
        mlp_batch: 32,
        synthetic: true,
        ..Default::default()
    };
    let run = metalearn::demo::train_mlps(g, &cfg)?;
    assert!(run.data.starts_with("synthetic"), "{}", run.data);
    assert_eq!(run.curve.len(), 30);
    let first: f64 = run.curve[..5].iter().sum();
    let last: f64 = run.curve[25..].iter().sum();
    assert!(
        last < 0.8 * first,
        "training loss did not fall: {:?}",
        run.curve
    );
    assert!(run.test_before_after.1 < run.test_before_after.0);
    Ok(())
}
