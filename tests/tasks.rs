//! The sinusoid and tied-autoencoder tasks: their GPU loss and gradient against the f64
//! reference, the reference against finite differences (and, for the tie, against the two
//! untied uses), and the meta-gradient of a whole unroll on each against the reference.

mod common;

use common::{assert_close, f64s, gpu, rng, shared_gpu, uniform};
use metalearn::gpu::Recorder;
use metalearn::kernels::matmul::Activation;
use metalearn::kernels::vec::View;
use metalearn::kernels::Batched;
use metalearn::meta::{FinalBatch, LossWeights, MetaConfig, MetaTrainer, Schedule};
use metalearn::optim::hand::Sgd;
use metalearn::optim::linear::Linear;
use metalearn::optim::{Mode, Optimizer};
use metalearn::reference::{self, central_diff, rel_err};
use metalearn::tasks::mlp::reference as mlp_reference;
use metalearn::tasks::mlp::reference::Targets;
use metalearn::tasks::mlp::MlpSpec;
use metalearn::tasks::TaskRng;
use metalearn::tasks::{
    BatchRef, LossGrad, MlpTask, Objective, SinusoidConfig, SinusoidTask, Task,
};
use metalearn::Result;
use rand::Rng;

fn small_sinusoids(shots: usize, queries: usize, activation: Activation) -> SinusoidConfig {
    SinusoidConfig {
        hidden: vec![8, 8],
        activation,
        shots,
        queries,
        ..Default::default()
    }
}

/// Loss and gradient of every instance of `task` on `batch` at parameters drawn from the task's
/// initialisation, recorded into padded blocks (stride P + 3, offset 2) of NaN-poisoned buffers,
/// against the task's reference. Returns θ and the gradient (both padded as recorded).
fn task_case(task: &dyn Task, r: &mut TaskRng, batch: BatchRef) -> Result<(Vec<f32>, Vec<f32>)> {
    let g = gpu();
    let (n, p) = (task.instances(), task.layout().size());
    let (stride, off) = (p + 3, 2);
    let init = task.init_params(r)?;
    let mut theta = uniform(r, off + n * stride, -0.5, 0.5);
    for i in 0..n {
        theta[off + i * stride..off + i * stride + p].copy_from_slice(&init[i * p..(i + 1) * p]);
    }
    let gtheta = g.buffer_from("theta", &theta)?;
    let ggrad = g.buffer("grad", off + n * stride)?;
    let gloss = g.buffer("loss", n + 1)?;
    g.fill(&ggrad, f32::NAN)?;
    g.fill(&gloss, f32::NAN)?;
    let block = |buf| Batched {
        buf,
        off,
        batch_stride: stride,
    };
    let mut rec = Recorder::new(g);
    let at = LossGrad {
        theta: block(&gtheta),
        grad: block(&ggrad),
        loss: View::new(&gloss, 1),
        batch,
    };
    task.record_loss_grad(&mut rec, at)?;
    rec.submit()?;
    let (grad, loss): (Vec<f32>, Vec<f32>) = (g.read(&ggrad)?, g.read(&gloss)?);
    assert!(
        loss[0].is_nan(),
        "{}: loss written out of place",
        task.name()
    );
    for i in 0..n {
        let t = f64s(&theta[off + i * stride..off + i * stride + p]);
        let (l, gr) = task.reference_loss_grad(i, &t, batch)?;
        let what = format!("{} {batch:?} instance {i}", task.name());
        assert_close(&format!("{what} loss"), &[loss[1 + i]], &[l], 1e-4);
        assert_close(
            &format!("{what} grad"),
            &grad[off + i * stride..off + i * stride + p],
            &gr,
            1e-4,
        );
    }
    // Padding between and around the blocks is never written.
    for (j, v) in grad.iter().enumerate() {
        let inside = j >= off && (j - off) % stride < p && (j - off) / stride < n;
        assert!(
            inside || v.is_nan(),
            "{}: grad[{j}] = {v} written",
            task.name()
        );
    }
    Ok((theta, grad))
}

/// The task's reference gradient against central differences of its reference loss.
fn reference_fd_case(task: &dyn Task, r: &mut TaskRng, batch: BatchRef) -> Result<()> {
    let p = task.layout().size();
    let theta = f64s(&task.init_params(r)?);
    for i in 0..task.instances() {
        let t = &theta[i * p..(i + 1) * p];
        let (_, g) = task.reference_loss_grad(i, t, batch)?;
        let f = |x: &[f64]| {
            task.reference_loss_grad(i, x, batch)
                .map_or(f64::NAN, |v| v.0)
        };
        let fd = central_diff(f, t, 1e-6);
        let e = rel_err(&g, &fd);
        assert!(
            e < 1e-6,
            "{} {batch:?} instance {i}: relative error {e:.2e}",
            task.name()
        );
    }
    Ok(())
}

#[test]
fn sinusoid_data_follow_the_family() -> Result<()> {
    let mut r = rng("sinusoid data");
    let cfg = small_sinusoids(5, 9, Activation::Relu);
    let mut task = SinusoidTask::new(gpu(), &cfg, 4, &mut r)?;
    assert!(!task.batched());
    let before = task.export_batch(BatchRef::Train(0))?;
    for n in 0..4 {
        let (a, ph) = (task.amplitudes()[n], task.phases()[n]);
        assert!((0.1..=5.0).contains(&a), "amplitude {a}");
        assert!((0.0..=std::f32::consts::PI).contains(&ph), "phase {ph}");
        for (batch, m) in [(BatchRef::Train(0), 5), (BatchRef::HeldOut(0), 9)] {
            let (x, y) = task.points(n, batch)?;
            assert_eq!((x.len(), y.len()), (m, m));
            for (&xv, &yv) in x.iter().zip(y) {
                assert!((-5.0..=5.0).contains(&xv), "x {xv}");
                let want = task.target(n, f64::from(xv)).unwrap_or(f64::NAN);
                assert!((f64::from(yv) - want).abs() < 1e-5, "y {yv} vs {want}");
            }
        }
        // The support set is the same at every step; the query set too.
        assert_eq!(
            task.points(n, BatchRef::Train(0))?,
            task.points(n, BatchRef::Train(3))?
        );
    }
    task.resample(gpu(), &mut r)?;
    let after = task.export_batch(BatchRef::Train(0))?;
    assert_eq!(before.len(), after.len());
    assert_ne!(before[0].2, after[0].2, "resample kept the support points");
    assert_eq!(after[0].1, vec![4, 5, 1]);
    Ok(())
}

#[test]
fn sinusoid_gpu_matches_reference() -> Result<()> {
    let mut r = rng("sinusoid gpu");
    for (n, shots, queries) in [(1, 5, 5), (3, 5, 11), (2, 10, 300)] {
        let cfg = small_sinusoids(shots, queries, Activation::Relu);
        let mut task = SinusoidTask::new(gpu(), &cfg, n, &mut r)?;
        for batch in [BatchRef::Train(0), BatchRef::HeldOut(2)] {
            task_case(&task, &mut r, batch)?;
        }
        // New sinusoids are uploaded by resample.
        task.resample(gpu(), &mut r)?;
        task_case(&task, &mut r, BatchRef::Train(1))?;
    }
    // The default MAML model.
    let task = SinusoidTask::new(gpu(), &SinusoidConfig::default(), 2, &mut r)?;
    task_case(&task, &mut r, BatchRef::Train(0))?;
    Ok(())
}

#[test]
fn sinusoid_reference_matches_finite_differences() -> Result<()> {
    let mut r = rng("sinusoid fd");
    let task = SinusoidTask::new(gpu(), &small_sinusoids(5, 7, Activation::Tanh), 2, &mut r)?;
    reference_fd_case(&task, &mut r, BatchRef::Train(0))?;
    reference_fd_case(&task, &mut r, BatchRef::HeldOut(0))
}

#[test]
fn sinusoid_predictions_on_a_grid_match_the_reference_forward() -> Result<()> {
    let mut r = rng("sinusoid predict");
    let task = SinusoidTask::new(gpu(), &small_sinusoids(5, 5, Activation::Relu), 3, &mut r)?;
    let theta = task.init_params(&mut r)?;
    let grid: Vec<f32> = (0..101).map(|i| -5.0 + 0.1 * i as f32).collect();
    let got = task.predict(gpu(), &theta, &grid)?;
    let p = task.layout().size();
    assert_eq!(got.len(), 3 * grid.len());
    for n in 0..3 {
        let zs = mlp_reference::forward(
            task.spec(),
            task.layout(),
            &f64s(&theta[n * p..(n + 1) * p]),
            &f64s(&grid),
            grid.len(),
        )?;
        let out = &got[n * grid.len()..(n + 1) * grid.len()];
        assert_close("predictions", out, &zs[task.spec().layers() - 1], 1e-4);
    }
    assert!(task.predict(gpu(), &theta[1..], &grid).is_err());
    Ok(())
}

fn autoencoder(
    side: usize,
    hidden: usize,
    act: Activation,
    n: usize,
    batch: usize,
    seed: u64,
) -> Result<MlpTask> {
    let spec = MlpSpec::tied_autoencoder(side * side, hidden, act)?;
    MlpTask::synthetic(
        gpu(),
        (&spec, Objective::Reconstruct),
        (n, batch),
        (64, 32),
        seed,
    )
}

#[test]
fn autoencoder_gpu_matches_reference() -> Result<()> {
    let mut r = rng("autoencoder gpu");
    for (side, hidden, act, n, batch) in [
        (4, 6, Activation::Tanh, 1, 5),
        (8, 32, Activation::Sigmoid, 3, 9),
        (5, 7, Activation::Tanh, 2, 3),
    ] {
        let task = autoencoder(side, hidden, act, n, batch, r.random())?;
        let p = task.layout().size();
        assert_eq!(
            p,
            side * side * hidden + hidden + side * side,
            "one tied storage"
        );
        for batch in [BatchRef::Train(0), BatchRef::Train(1), BatchRef::HeldOut(0)] {
            task_case(&task, &mut r, batch)?;
        }
    }
    Ok(())
}

/// The tied storage's gradient, on the GPU and in the reference, is the sum of the gradients of
/// its two uses in the untied model (decoder weight = encoder weight transposed, as a copy);
/// the reference also matches finite differences.
#[test]
fn autoencoder_tied_gradient_is_the_sum_of_both_uses() -> Result<()> {
    let mut r = rng("autoencoder tie");
    let (d, h, batch) = (16, 6, 5);
    let task = autoencoder(4, h, Activation::Sigmoid, 2, batch, r.random())?;
    reference_fd_case(&task, &mut r, BatchRef::Train(0))?;
    reference_fd_case(&task, &mut r, BatchRef::HeldOut(1))?;
    // The GPU's tied gradient against the tied reference (blocks of stride P + 3 at offset 2).
    let (theta, grad) = task_case(&task, &mut r, BatchRef::Train(0))?;
    let (lt, p) = (task.layout(), task.layout().size());
    let untied = MlpSpec::new(&[d, h, d], Activation::Sigmoid)?.with_loss(task.spec().loss);
    let lu = untied.layout()?;
    for i in 0..2 {
        let t = f64s(&theta[2 + i * (p + 3)..2 + i * (p + 3) + p]);
        let mut tu = vec![0.0; lu.size()];
        for name in ["l0.w", "l0.b", "l1.b"] {
            let (v, e) = (lt.read(&t, name)?, lu.require(name)?);
            tu[e.offset..e.offset + e.len()].copy_from_slice(&v);
        }
        let w1 = lt.read(&t, "l1.w")?; // the tie's logical [h, d] view
        let e1 = lu.require("l1.w")?;
        tu[e1.offset..e1.offset + h * d].copy_from_slice(&w1);
        let x = f64s(&task.host_batch(i, BatchRef::Train(0)).0);
        let (lu_loss, gu) =
            mlp_reference::loss_grad_targets(&untied, &lu, &tu, &x, Targets::Values(&x), batch)?;
        let (lt_loss, gt) = task.reference_loss_grad(i, &t, BatchRef::Train(0))?;
        assert!((lu_loss - lt_loss).abs() <= 1e-12 * lu_loss.abs());
        let e0 = lu.require("l0.w")?;
        let summed: Vec<f64> = (0..d * h)
            .map(|k| gu[e0.offset + k] + gu[e1.offset + (k % h) * d + k / h])
            .collect();
        let et = lt.require("l0.w")?;
        let e = rel_err(&gt[et.offset..et.offset + d * h], &summed);
        assert!(e < 1e-12, "reference tie: relative error {e:.2e}");
        let at = 2 + i * (p + 3) + et.offset;
        assert_close("GPU tie vs both uses", &grad[at..at + d * h], &summed, 1e-4);
    }
    Ok(())
}

/// Meta-gradient of `tr` (θ0 shared, so per-instance inits are θ0) against the reference.
fn meta_case(tr: &mut MetaTrainer, opt: &Optimizer, mode: Mode) -> Result<()> {
    let got = tr.meta_gradient()?;
    let phi = f64s(&tr.phi()?);
    let theta0 = f64s(&tr.theta0()?);
    let task = tr.task();
    let (n, p) = (task.instances(), task.layout().size());
    let init: Vec<f64> = (0..n).flat_map(|_| theta0.iter().copied()).collect();
    let weights = f64s(tr.weights());
    let loss_grad = |i: usize, th: &[f64], b| task.reference_loss_grad(i, th, b);
    let want = reference::meta::meta_gradient(&reference::meta::Problem {
        loss_grad: &loss_grad,
        instances: n,
        params: p,
        opt,
        phi: &phi,
        init: &init,
        init_state: &[],
        offset: 0,
        segments: &task.layout().segments(),
        unroll: tr.config().unroll,
        weights: &weights,
        final_batch: tr.config().final_batch,
        mode,
    })?;
    let what = format!("{} {} {mode:?}", task.name(), opt.name());
    let close = |name: &str, a: &[f32], b: &[f64]| {
        let e = rel_err(&f64s(a), b);
        assert!(
            e <= 1e-4,
            "{what}: {name} relative error {e:.2e}\n got  {:?}\n want {:?}",
            &a[..a.len().min(6)],
            &b[..b.len().min(6)]
        );
    };
    close("meta-loss", &[got.meta_loss], &[want.meta_loss]);
    close("losses", &got.losses, &want.losses);
    close("θ̄0 per instance", &got.theta0_per_instance, &want.theta0);
    let summed: Vec<f64> = (0..p)
        .map(|j| (0..n).map(|i| want.theta0[i * p + j]).sum())
        .collect();
    close("θ̄0", &got.theta0, &summed);
    if opt.is_learned() {
        close("φ̄", &got.phi, &want.phi);
    }
    Ok(())
}

/// MAML on sinusoids: SGD inner steps on the K-shot support set from a learned initialisation,
/// the meta-loss on the query set after the last step.
#[test]
fn sinusoid_maml_meta_gradient_matches_reference() -> Result<()> {
    let mut r = rng("sinusoid maml");
    let opt = Optimizer::new(Sgd { lr: 0.05 });
    for mode in [Mode::FirstOrder, Mode::Truncated] {
        let cfg = MetaConfig {
            unroll: 3,
            mode,
            schedule: Schedule::StoreAll,
            weights: LossWeights::Last,
            final_batch: FinalBatch::HeldOut,
            learn_optimizer: false,
            learn_init: true,
            seed: r.random(),
            ..Default::default()
        };
        let task = SinusoidTask::new(gpu(), &small_sinusoids(5, 5, Activation::Relu), 2, &mut r)?;
        let mut tr = MetaTrainer::new(shared_gpu().clone(), Box::new(task), opt.clone(), cfg)?;
        meta_case(&mut tr, &opt, mode)?;
    }
    Ok(())
}

/// A learned (linear) optimizer training tied autoencoders: φ̄ and θ̄0 against the reference.
#[test]
fn autoencoder_linear_optimizer_meta_gradient_matches_reference() -> Result<()> {
    let mut r = rng("autoencoder linear");
    let opt = Optimizer::new(Linear);
    for (mode, schedule) in [
        (Mode::Truncated, Schedule::StoreAll),
        (Mode::FirstOrder, Schedule::EveryK(2)),
    ] {
        let task = autoencoder(4, 5, Activation::Tanh, 2, 4, r.random())?;
        let cfg = MetaConfig {
            unroll: 3,
            mode,
            schedule,
            weights: LossWeights::Given(vec![0.2, 0.3, 0.4, 0.5]),
            final_batch: FinalBatch::HeldOut,
            learn_optimizer: true,
            learn_init: true,
            seed: r.random(),
            ..Default::default()
        };
        let mut tr = MetaTrainer::new(shared_gpu().clone(), Box::new(task), opt.clone(), cfg)?;
        meta_case(&mut tr, &opt, mode)?;
    }
    Ok(())
}
