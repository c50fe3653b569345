//! `OptimizerRun`: applying an optimizer to the caller's own parameters.
//!
//! - The GPU-buffer API reproduces `meta::evaluate` bit for bit (same losses at every step) for
//!   SGD, Adam, the LSTM and the MLP optimizer.
//! - The host API follows the f64 reference of each optimizer step (θ and state) on random
//!   gradients, for several instances of a two-tensor layout.
//! - Instances beyond one buffer of the device are held in parts that step as one slot.
//! - Shape mismatches are errors.

mod common;

use common::{assert_close, capped_gpu, f64s, gpu_other_tiling, rng, shared_gpu, uniform};
use metalearn::gpu::Recorder;
use metalearn::kernels::vec::View;
use metalearn::kernels::Batched;
use metalearn::meta::evaluate;
use metalearn::optim::gated::Gated;
use metalearn::optim::hand::{Adam, Sgd};
use metalearn::optim::lstm::Lstm;
use metalearn::optim::mlp::MlpOpt;
use metalearn::optim::{Optimizer, OptimizerRun, RefStep};
use metalearn::params::ParamLayout;
use metalearn::tasks::{BatchRef, LossGrad, QuadraticTask, Task};
use metalearn::Result;
use rand::Rng;

fn optimizers() -> Vec<Optimizer> {
    vec![
        Optimizer::new(Sgd { lr: 0.002 }),
        Optimizer::new(Adam {
            lr: 0.01,
            ..Default::default()
        }),
        Optimizer::new(Lstm::default()),
        Optimizer::new(MlpOpt::default()),
        Optimizer::new(Gated::default()),
    ]
}

#[test]
fn gpu_steps_reproduce_evaluate_bitwise() -> Result<()> {
    let gpu = shared_gpu();
    let mut r = rng("gpu_steps_reproduce_evaluate_bitwise");
    let (n, steps) = (3, 6);
    let task = QuadraticTask::new(gpu, 10, n, &mut r)?;
    let p = task.layout().size();
    let init = task.init_params(&mut r)?;
    for opt in optimizers() {
        let phi = opt.init_phi(&mut r);
        let want = evaluate(gpu, &task, &opt, &phi, &init, steps)?;
        let mut run = OptimizerRun::new(gpu.clone(), opt.clone(), &phi, task.layout().clone(), n)?;
        let params = gpu.buffer_from("params", &init)?;
        let grads = gpu.buffer("grads", n * p)?;
        let losses = gpu.buffer("losses", (steps + 1) * n)?;
        gpu.fill(&grads, f32::NAN)?;
        gpu.fill(&losses, f32::NAN)?;
        let mut rec = Recorder::new(gpu);
        for t in 0..=steps {
            let at = LossGrad {
                theta: Batched::dense(&params, p),
                grad: Batched::dense(&grads, p),
                loss: View::new(&losses, t * n),
                batch: BatchRef::Train(t as u32),
            };
            task.record_loss_grad(&mut rec, at)?;
            if t < steps {
                run.step(&mut rec, &params, &grads)?;
            }
        }
        rec.submit()?;
        let got: Vec<f32> = gpu.read(&losses)?;
        assert_eq!(run.steps_taken(), steps);
        assert_eq!(got.len(), want.losses.len());
        for (i, (a, b)) in got.iter().zip(&want.losses).enumerate() {
            assert_eq!(
                a.to_bits(),
                b.to_bits(),
                "{}: loss {i} (step {}, instance {}) is {a}, evaluate gives {b}",
                opt.name(),
                i / n,
                i % n
            );
        }
        // The hand-designed optimizers descend (the learned ones run with an untrained φ).
        let (first, last) = (want.mean()[0], want.final_mean());
        assert!(
            opt.is_learned() || last < first,
            "{}: {first} → {last}",
            opt.name()
        );
    }
    Ok(())
}

/// f64 reference of `steps` steps of `opt` on N instances of `layout` from θ with gradients
/// `grads[k]`: θ after each step and the final state (struct of arrays, like `state()`).
fn reference_run(
    opt: &Optimizer,
    phi: &[f32],
    layout: &ParamLayout,
    n: usize,
    theta0: &[f32],
    grads: &[Vec<f32>],
) -> (Vec<Vec<f64>>, Vec<f64>) {
    let p = layout.size();
    let c = n * p;
    let s = opt.state_len();
    let phi = f64s(phi);
    let mut theta = f64s(theta0);
    let mut state = vec![0.0f64; s * c];
    let mut out = Vec::new();
    for (t, g) in grads.iter().enumerate() {
        let g = f64s(g);
        let segs = layout.segments();
        for inst in 0..n {
            let r = inst * p..(inst + 1) * p;
            // Coordinate-major state of this instance.
            let si: Vec<f64> = (0..p)
                .flat_map(|j| (0..s).map(move |k| (j, k)))
                .map(|(j, k)| state[k * c + inst * p + j])
                .collect();
            let (u, ns) = opt.reference().step(&RefStep {
                phi: &phi,
                g: &g[r.clone()],
                theta: &theta[r],
                state: &si,
                segments: &segs,
                t,
            });
            for j in 0..p {
                theta[inst * p + j] += u[j];
                for k in 0..s {
                    state[k * c + inst * p + j] = ns[j * s + k];
                }
            }
        }
        out.push(theta.clone());
    }
    (out, state)
}

#[test]
fn host_steps_follow_the_f64_reference() -> Result<()> {
    let gpu = shared_gpu();
    let mut r = rng("host_steps_follow_the_f64_reference");
    let mut layout = ParamLayout::new();
    layout.add("w", &[3, 4])?;
    layout.add("b", &[5])?;
    let (n, steps) = (2, 5);
    let c = n * layout.size();
    for opt in optimizers() {
        let phi = opt.init_phi(&mut r);
        let theta0 = uniform(&mut r, c, -1.0, 1.0);
        let grads: Vec<Vec<f32>> = (0..steps)
            .map(|_| {
                let scale = 10f32.powf(r.random_range(-2.0..1.0));
                uniform(&mut r, c, -scale, scale)
            })
            .collect();
        let (want, want_state) = reference_run(&opt, &phi, &layout, n, &theta0, &grads);
        let mut run = OptimizerRun::new(gpu.clone(), opt.clone(), &phi, layout.clone(), n)?;
        assert_eq!(run.coordinates(), c);
        let mut theta = theta0.clone();
        for (k, g) in grads.iter().enumerate() {
            run.step_host(&mut theta, g)?;
            assert_close(
                &format!("{} θ after step {}", opt.name(), k + 1),
                &theta,
                &want[k],
                1e-5,
            );
        }
        if opt.state_len() > 0 {
            assert_close(
                &format!("{} state", opt.name()),
                &run.state()?,
                &want_state,
                1e-5,
            );
        }
        // After a reset the run starts over: the same first step as a fresh run.
        run.reset()?;
        let mut again = theta0.clone();
        run.step_host(&mut again, &grads[0])?;
        assert_close(
            &format!("{} after reset", opt.name()),
            &again,
            &want[0],
            1e-5,
        );
        assert_eq!(run.steps_taken(), 1);
    }
    Ok(())
}

#[test]
fn host_and_gpu_steps_agree_bitwise() -> Result<()> {
    let gpu = shared_gpu();
    let mut r = rng("host_and_gpu_steps_agree_bitwise");
    let len = 37;
    for opt in optimizers() {
        let phi = opt.init_phi(&mut r);
        let theta0 = uniform(&mut r, len, -1.0, 1.0);
        let grads: Vec<Vec<f32>> = (0..4).map(|_| uniform(&mut r, len, -1.0, 1.0)).collect();
        let mut host = OptimizerRun::flat(gpu.clone(), opt.clone(), &phi, len)?;
        let mut dev = OptimizerRun::flat(gpu.clone(), opt.clone(), &phi, len)?;
        let mut theta = theta0.clone();
        let params = gpu.buffer_from("params", &theta0)?;
        let gbuf = gpu.buffer("grads", len)?;
        for g in &grads {
            host.step_host(&mut theta, g)?;
            gpu.write(&gbuf, 0, g)?;
            let mut rec = Recorder::new(gpu);
            dev.step(&mut rec, &params, &gbuf)?;
            rec.submit()?;
            let got: Vec<f32> = gpu.read(&params)?;
            let same = got
                .iter()
                .zip(&theta)
                .all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(
                same,
                "{}: host {:?} vs GPU {:?}",
                opt.name(),
                &theta[..4],
                &got[..4]
            );
        }
    }
    Ok(())
}

#[test]
fn mismatched_shapes_are_errors() -> Result<()> {
    let gpu = shared_gpu();
    let lstm = Optimizer::new(Lstm::default());
    let sgd = Optimizer::new(Sgd { lr: 0.1 });
    // φ of the wrong length, no instance, an empty layout.
    assert!(OptimizerRun::flat(gpu.clone(), lstm.clone(), &[0.0; 3], 4).is_err());
    assert!(OptimizerRun::flat(gpu.clone(), sgd.clone(), &[1.0], 4).is_err());
    assert!(OptimizerRun::new(gpu.clone(), sgd.clone(), &[], ParamLayout::flat(4)?, 0).is_err());
    assert!(OptimizerRun::new(gpu.clone(), sgd.clone(), &[], ParamLayout::new(), 1).is_err());
    assert!(ParamLayout::flat(0).is_err());

    let mut run = OptimizerRun::new(gpu.clone(), sgd.clone(), &[], ParamLayout::flat(4)?, 2)?;
    let mut theta = vec![1.0f32; 8];
    let e = run
        .step_host(&mut theta, &[0.0; 7])
        .err()
        .map(|e| e.to_string());
    assert!(e.is_some_and(|m| m.contains("gradient slice has 7 floats") && m.contains("= 8")));
    assert!(run.step_host(&mut theta[..4], &[0.0; 8]).is_err());
    assert!(run.set_phi(&[0.5]).is_err());
    // Nothing moved.
    assert_eq!(theta, vec![1.0f32; 8]);
    assert_eq!(run.steps_taken(), 0);

    let params = gpu.buffer("params", 8)?;
    let short = gpu.buffer("short", 5)?;
    let mut rec = Recorder::new(gpu);
    assert!(run.step(&mut rec, &short, &params).is_err());
    assert!(run.step(&mut rec, &params, &short).is_err());
    assert_eq!(rec.dispatches(), 0);
    // A recorder of another device.
    let other = gpu_other_tiling();
    let mut rec_other = Recorder::new(other);
    assert!(run.step(&mut rec_other, &params, &params).is_err());
    assert_eq!(run.steps_taken(), 0);
    Ok(())
}

/// On a device whose buffers hold fewer instances' slots than the run has, the instances are
/// held in parts: every optimizer's parameters (GPU and host paths) and state are bit for bit
/// those of one slot on an uncapped device, and a state set on the parts reads back as given.
#[test]
fn runs_beyond_one_buffer_step_in_parts_as_one_slot() -> Result<()> {
    let gpu = shared_gpu();
    let mut r = rng("optimizer runs in parts");
    let mut layout = ParamLayout::new();
    layout.add("w", &[40, 50])?;
    layout.add("b", &[50])?;
    let (n, p) = (7, layout.size());
    for opt in optimizers() {
        let name = opt.name();
        // Slots of two instances per buffer (four parts: 2, 2, 2, 1), where the caller's
        // buffers of all seven fit.
        let cap = (opt.slot_len(2 * p).max(n * p) * 4) as u64;
        let per = (cap / (opt.slot_len(p) as u64 * 4)) as usize;
        let want = n.div_ceil(per);
        assert!(want > 1 || opt.state_len() == 0, "{name}: {want} parts");
        let small = capped_gpu(cap)?;
        let phi = opt.init_phi(&mut r);
        let theta0 = uniform(&mut r, n * p, -1.0, 1.0);
        let grads: Vec<Vec<f32>> = (0..4).map(|_| uniform(&mut r, n * p, -1.0, 1.0)).collect();
        let mut one = OptimizerRun::new(gpu.clone(), opt.clone(), &phi, layout.clone(), n)?;
        let mut parts = OptimizerRun::new(small.clone(), opt.clone(), &phi, layout.clone(), n)?;
        let mut host = OptimizerRun::new(small.clone(), opt.clone(), &phi, layout.clone(), n)?;
        assert_eq!((one.parts(), parts.parts()), (1, want), "{name}");
        let (pa, ga) = (
            gpu.buffer_from("params", &theta0)?,
            gpu.buffer("grads", n * p)?,
        );
        let (pb, gb) = (
            small.buffer_from("params", &theta0)?,
            small.buffer("grads", n * p)?,
        );
        let mut theta = theta0.clone();
        for (k, g) in grads.iter().enumerate() {
            for (dev, run, params, gbuf) in
                [(gpu, &mut one, &pa, &ga), (&small, &mut parts, &pb, &gb)]
            {
                dev.write(gbuf, 0, g)?;
                let mut rec = Recorder::new(dev);
                run.step(&mut rec, params, gbuf)?;
                rec.submit()?;
            }
            host.step_host(&mut theta, g)?;
            let (a, b): (Vec<f32>, Vec<f32>) = (gpu.read(&pa)?, small.read(&pb)?);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&b), bits(&a), "{name}: step {k}, parts vs one slot");
            assert_eq!(
                bits(&theta),
                bits(&a),
                "{name}: step {k}, host parts vs one slot"
            );
            let (sa, sb) = (one.state()?, parts.state()?);
            assert_eq!(bits(&sb), bits(&sa), "{name}: step {k}, state");
            assert_eq!(sa.len(), opt.state_len() * n * p, "{name}");
        }
        let state = uniform(&mut r, opt.state_len() * n * p, -1.0, 1.0);
        parts.set_state(&state, 9)?;
        assert_eq!(parts.state()?, state, "{name}: a state set on the parts");
        assert_eq!(parts.steps_taken(), 9, "{name}");
    }
    Ok(())
}
