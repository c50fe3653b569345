//! ES and PES: the GPU estimate against the f64 reference with the same noise (every learned
//! optimizer, which then reads φ per particle, and a hand-designed one learning θ0 only), over
//! the unrolls of PES episodes; both converge to the true gradient as the pairs grow; PES's
//! accumulated noise goes through checkpoints and a resumed run is bit-identical.

mod common;

use common::{f64s, rng, shared_gpu, theta0_of, with_reference, RefSetup};
use metalearn::gpu::Recorder;
use metalearn::kernels::matmul::Activation;
use metalearn::meta::estimator::es::{key, Draw, Particles};
use metalearn::meta::estimator::reference::noise;
use metalearn::meta::estimator::reference::{estimate, EsResult, EsUnroll, ParticleState};
use metalearn::meta::{
    save, Checkpoint, EsConfig, Estimator, FinalBatch, LossWeights, MetaAdam, MetaConfig,
    MetaTrainer,
};
use metalearn::optim::hand::{Momentum, Sgd};
use metalearn::optim::linear::Linear;
use metalearn::optim::lstm::Lstm;
use metalearn::optim::mlp::MlpOpt;
use metalearn::optim::{Mode, Optimizer};
use metalearn::reference::{self, rel_err};
use metalearn::tasks::{QuadraticTask, SinusoidConfig, SinusoidTask, Task, TaskRng};
use metalearn::Result;
use rand::{Rng, SeedableRng};

const WEIGHTS: [f32; 4] = [0.1, 0.2, 0.3, 0.4];

fn trainer(
    opt: &Optimizer,
    estimator: Estimator,
    episode: usize,
    seed: u64,
) -> Result<MetaTrainer> {
    trainer_lr(opt, estimator, episode, seed, 0.0)
}

/// The tasks of these tests: 3-d quadratics (θ0 set to a fixed point) or a small MLP
/// classifier on random images (θ0 drawn), both with two instances.
#[derive(Clone, Copy, Debug)]
enum Family {
    Quadratic,
    Mlp,
    Sinusoid,
}

fn task(family: Family, seed: u64) -> Result<Box<dyn Task>> {
    let mut r = TaskRng::seed_from_u64(seed);
    Ok(match family {
        Family::Quadratic => Box::new(QuadraticTask::new(shared_gpu(), 3, 2, &mut r)?),
        Family::Mlp => Box::new(common::small_classifier(&mut r)?),
        Family::Sinusoid => {
            let cfg = SinusoidConfig {
                hidden: vec![6],
                activation: Activation::Tanh,
                shots: 4,
                queries: 3,
                ..Default::default()
            };
            Box::new(SinusoidTask::new(shared_gpu(), &cfg, 2, &mut r)?)
        }
    })
}

fn trainer_lr(
    opt: &Optimizer,
    estimator: Estimator,
    episode: usize,
    seed: u64,
    lr: f32,
) -> Result<MetaTrainer> {
    trainer_of(Family::Quadratic, opt, estimator, (episode, seed, lr))
}

fn trainer_of(
    family: Family,
    opt: &Optimizer,
    estimator: Estimator,
    (episode, seed, lr): (usize, u64, f32),
) -> Result<MetaTrainer> {
    let mut tr = MetaTrainer::new(
        shared_gpu().clone(),
        task(family, seed)?,
        opt.clone(),
        MetaConfig {
            unroll: WEIGHTS.len() - 1,
            episode,
            estimator,
            weights: LossWeights::Given(WEIGHTS.to_vec()),
            final_batch: FinalBatch::Train,
            learn_optimizer: opt.is_learned(),
            learn_init: true,
            // Backprop (the truncated-backprop baseline) exact within each unroll.
            mode: if estimator == Estimator::Backprop {
                Mode::SecondOrder
            } else {
                Mode::Truncated
            },
            // lr = 0: outer steps leave φ and θ0 as they are (the reference follows the point).
            meta_opt: MetaAdam::with_lr(lr),
            seed,
            ..Default::default()
        },
    )?;
    if let Family::Quadratic = family {
        tr.set_theta0(&[0.5, -0.4, 0.3])?;
    }
    Ok(tr)
}

/// The reference estimate of the trainer's unroll at episode offset `offset` (outer step
/// `draw`, on the instances the task holds) from the noise `xi` and particle `states` the
/// previous unrolls left (empty at an episode's start).
fn reference_of(
    tr: &MetaTrainer,
    es: EsConfig,
    (draw, offset): (u64, usize),
    xi: &[f64],
    states: &[ParticleState],
) -> Result<EsResult> {
    let task = tr.task();
    let n = task.instances() / (2 * es.pairs);
    let theta0 = f64s(&tr.theta0()?);
    let init = theta0_of(tr, n)?;
    let weights = f64s(tr.weights());
    let setup = RefSetup {
        instances: n,
        init: &init,
        offset,
        unroll: tr.config().unroll,
        weights: &weights,
        final_batch: tr.config().final_batch,
        mode: Mode::Truncated,
    };
    let learn_phi = tr.optimizer().is_learned();
    with_reference(tr, setup, |base, _| {
        estimate(
            &EsUnroll {
                base,
                theta0: &theta0,
                sigma: f64::from(es.sigma),
                pairs: es.pairs,
                key: key(tr.config().seed, draw),
                learn_phi,
                learn_theta: offset == 0,
            },
            xi,
            states,
        )
    })
}

fn learned_and_hand() -> Vec<Optimizer> {
    vec![
        Optimizer::new(Linear),
        Optimizer::new(Lstm::default()),
        Optimizer::new(MlpOpt::default()),
        Optimizer::new(Momentum { lr: 0.05, mu: 0.9 }),
    ]
}

/// ES on one unroll and PES over the three unrolls of an episode: each outer step's estimate
/// (φ̄ and θ̄0) against the reference's with the same noise, the reference following the
/// particles' states and accumulated noise from unroll to unroll.
#[test]
fn es_and_pes_match_the_reference() -> Result<()> {
    let mut r = rng("es and pes");
    for opt in learned_and_hand() {
        check_family(Family::Quadratic, &opt, &mut r)?;
    }
    Ok(())
}

/// The same on an MLP classifier (every particle's instances gather their copy's batches), for
/// the learned optimizers that act on any model.
#[test]
fn es_and_pes_on_an_mlp_task_match_the_reference() -> Result<()> {
    let mut r = rng("es and pes mlp");
    for opt in [Optimizer::new(Linear), Optimizer::new(MlpOpt::default())] {
        check_family(Family::Mlp, &opt, &mut r)?;
    }
    Ok(())
}

/// The same on sinusoid regression, learning the initialisation under SGD and momentum
/// (ES-MAML: each particle's instances see their copy's wave and points).
#[test]
fn es_and_pes_on_sinusoids_match_the_reference() -> Result<()> {
    let mut r = rng("es and pes sinusoid");
    for opt in [
        Optimizer::new(Sgd { lr: 0.05 }),
        Optimizer::new(Momentum { lr: 0.05, mu: 0.9 }),
    ] {
        check_family(Family::Sinusoid, &opt, &mut r)?;
    }
    Ok(())
}

fn check_family(family: Family, opt: &Optimizer, r: &mut TaskRng) -> Result<()> {
    let es = EsConfig {
        sigma: 0.05,
        pairs: 3,
    };
    {
        for (estimator, episode) in [(Estimator::Es(es), 0), (Estimator::Pes(es), 9)] {
            let seed: u64 = r.random();
            let mut tr = trainer_of(family, opt, estimator, (episode, seed, 0.0))?;
            let (mut xi, mut states) = (Vec::new(), Vec::new());
            let unrolls = if episode == 0 { 2 } else { 4 };
            for k in 0..unrolls {
                // Each outer step's estimate, against the reference on the instances the step
                // drew (the task holds them until the next episode starts).
                let offset = tr.episode_offset();
                tr.step()?;
                if offset == 0 {
                    xi.clear();
                    states.clear();
                }
                let got = f64s(&tr.last_meta_gradient()?);
                let want = reference_of(&tr, es, (k as u64 + 1, offset), &xi, &states)?;
                let e = rel_err(&got, &want.grad);
                assert!(
                    e < 1e-4,
                    "{family:?} {} {} unroll {k} (offset {offset}): estimate off by {e:.2e}\n got  {:?}\n want {:?}",
                    opt.name(),
                    estimator.name(),
                    &got[..got.len().min(6)],
                    &want.grad[..want.grad.len().min(6)]
                );
                if matches!(estimator, Estimator::Pes(_)) {
                    xi = want.xi;
                    states = want.states;
                }
            }
        }
    }
    Ok(())
}

/// ‖a − b‖ / ‖b‖.
fn l2_err(a: &[f64], b: &[f64]) -> f64 {
    let d: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    (d / b.iter().map(|y| y * y).sum::<f64>()).sqrt()
}

/// Cosine similarity.
fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

/// The sum of the estimates of one episode's outer steps (φ and θ0 held fixed), and the
/// trainer, whose task still holds the episode's instances.
fn episode_sum(
    opt: &Optimizer,
    estimator: Estimator,
    episode: usize,
    seed: u64,
) -> Result<(Vec<f64>, MetaTrainer)> {
    let mut tr = trainer(opt, estimator, episode, seed)?;
    let mut sum = vec![0.0; opt.phi_len() + 3];
    for _ in 0..episode / (WEIGHTS.len() - 1) {
        tr.step()?;
        for (s, g) in sum.iter_mut().zip(f64s(&tr.last_meta_gradient()?)) {
            *s += g;
        }
    }
    Ok((sum, tr))
}

/// The true gradient of the episode's loss — the sum of its unrolls' meta-losses, i.e. one
/// unroll of the whole episode whose loss weights add up where unrolls meet — with respect to
/// (φ, θ0), by the f64 reference in second-order mode.
fn episode_gradient(tr: &MetaTrainer, episode: usize) -> Result<Vec<f64>> {
    let task = tr.task();
    let t = WEIGHTS.len() - 1;
    let copies = tr.config().estimator.copies();
    let (n, p) = (task.instances() / copies, task.layout().size());
    let mut weights = vec![0.0; episode + 1];
    for k in 0..episode / t {
        for (i, w) in WEIGHTS.iter().enumerate() {
            weights[k * t + i] += f64::from(*w);
        }
    }
    let init = theta0_of(tr, n)?;
    let setup = RefSetup {
        instances: n,
        init: &init,
        offset: 0,
        unroll: episode,
        weights: &weights,
        final_batch: FinalBatch::Train,
        mode: Mode::SecondOrder,
    };
    let want = with_reference(tr, setup, |problem, hvp| {
        reference::meta::meta_gradient_with_hvp(problem, Some(hvp))
    })?;
    let mut g = want.phi;
    g.extend((0..p).map(|j| (0..n).map(|i| want.theta0[i * p + j]).sum::<f64>()));
    Ok(g)
}

/// ES (one unroll) and PES (an episode of three unrolls, its estimates summed) approach the
/// true gradient of what they estimate as the pairs grow: cosine ≥ 0.99 at 4096 pairs, and
/// closer (relative L2 distance) than at 16 pairs. Truncated backprop over the same episode,
/// exact within each unroll, misses the effect of θ0 and φ on later unrolls through the carried
/// state: PES at 4096 pairs is within 10 % of the true gradient and at least 3 times closer.
#[test]
fn es_and_pes_converge_to_the_true_gradient() -> Result<()> {
    let mut r = rng("es pes convergence");
    let seed: u64 = r.random();
    let opt = Optimizer::new(Linear);
    let t = WEIGHTS.len() - 1;
    let (tbptt, tr) = episode_sum(&opt, Estimator::Backprop, 3 * t, seed)?;
    let tbptt_truth = episode_gradient(&tr, 3 * t)?;
    let tbptt_err = l2_err(&tbptt, &tbptt_truth);
    for (name, episode) in [("es", t), ("pes", 3 * t)] {
        let mut at16 = None;
        for pairs in [16, 4096] {
            let es = EsConfig { sigma: 1e-3, pairs };
            let estimator = Estimator::parse(name, es)?;
            let (sum, tr) = episode_sum(&opt, estimator, episode, seed)?;
            let truth = episode_gradient(&tr, episode)?;
            let (cos, err) = (cosine(&sum, &truth), l2_err(&sum, &truth));
            eprintln!(
                "{name}, {pairs} pairs: cosine {cos:.5}, error {err:.3e} (truncated backprop over \
                 the episode: error {tbptt_err:.3e})"
            );
            match at16 {
                None => at16 = Some(err),
                Some(e16) => {
                    assert!(cos >= 0.99, "{name} with {pairs} pairs: cosine {cos}");
                    assert!(
                        err < e16,
                        "{name}: error {err} at {pairs} pairs, {e16} at 16"
                    );
                    if name == "pes" {
                        assert!(
                            err < 0.1 && 3.0 * err < tbptt_err,
                            "PES error {err} against truncated backprop's {tbptt_err}"
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

/// PES in the middle of an episode: the state (with every pair's accumulated noise) written
/// to a checkpoint file's bytes and read back resumes bit for bit; an ES trainer refuses it.
#[test]
fn pes_resumes_bit_identically_through_a_checkpoint() -> Result<()> {
    let mut r = rng("pes resume");
    let seed: u64 = r.random();
    let opt = Optimizer::new(Lstm::default());
    let es = EsConfig {
        sigma: 0.01,
        pairs: 2,
    };
    let make = |estimator| trainer_lr(&opt, estimator, 9, seed, 1e-3);
    let mut whole = make(Estimator::Pes(es))?;
    for _ in 0..5 {
        whole.step()?;
    }
    let mut first = make(Estimator::Pes(es))?;
    for _ in 0..2 {
        first.step()?;
    }
    let state = first.state()?;
    assert_eq!(state.offset, 6, "two unrolls of 3 into an episode of 9");
    let noise = state
        .noise
        .as_ref()
        .expect("PES keeps its noise mid-episode");
    assert_eq!(noise.len(), es.pairs * (opt.phi_len() + 3));
    assert!(
        noise.iter().any(|v| *v != 0.0),
        "the accumulated noise is not all zero"
    );
    let ck = Checkpoint {
        state,
        phi_len: opt.phi_len(),
        optimizer: opt.name().into(),
        config: String::new(),
        format: save::FORMAT_VERSION,
    };
    let back = save::from_bytes(
        &save::to_bytes(&ck)?,
        std::path::Path::new("pes.safetensors"),
    )?;
    assert_eq!(back.state, ck.state);
    let mut resumed = make(Estimator::Pes(es))?;
    resumed.restore(&back.state)?;
    for _ in 0..3 {
        resumed.step()?;
    }
    assert_eq!(
        resumed.state()?,
        whole.state()?,
        "resumed PES differs from the whole run"
    );
    assert_eq!(resumed.last_meta_gradient()?, whole.last_meta_gradient()?);
    let e = make(Estimator::Es(es))?
        .restore(&back.state)
        .expect_err("an ES trainer refuses PES noise")
        .to_string();
    assert!(e.contains("not PES"), "{e}");
    Ok(())
}

/// The ES kernels on fresh random inputs, their outputs poisoned with NaN first, against the
/// f64 formulas of `es.wgsl`'s header: the particles' meta-parameters, their initial θ, the
/// per-particle losses through the estimate, and PES's accumulated noise over two unrolls (the
/// second continuing the episode, θ0 no longer perturbed).
#[test]
fn es_kernels_match_their_formulas_on_poisoned_outputs() -> Result<()> {
    let mut r = rng("es kernels");
    let gpu = shared_gpu();
    let (pairs, phi_len, params, n, rows) = (3, 4, 2, 2, 4);
    let (m, parts) = (phi_len + params, 2 * pairs);
    let cfg = EsConfig {
        sigma: r.random_range(0.01..0.5),
        pairs,
    };
    let sigma = f64::from(cfg.sigma);
    let es = Particles::new(gpu, (cfg, true), phi_len, params, n)?;
    let x: Vec<f32> = (0..m).map(|_| r.random_range(-1.0..1.0)).collect();
    let xbuf = gpu.buffer_from("x", &x)?;
    let theta = gpu.buffer("theta", parts * n * params)?;
    let grad = gpu.buffer("grad", m)?;
    let mut xi_want = vec![0.0f64; pairs * m];
    for (k, (learn_theta, reset)) in [(true, true), (false, false)].into_iter().enumerate() {
        let d = Draw {
            key: [r.random(), r.random()],
            learn_phi: true,
            learn_theta,
            reset,
        };
        let losses: Vec<f32> = (0..rows * parts * n)
            .map(|_| r.random_range(0.0..2.0))
            .collect();
        let weights: Vec<f32> = (0..rows).map(|_| r.random_range(0.0..1.0)).collect();
        let (lbuf, wbuf) = (
            gpu.buffer_from("l", &losses)?,
            gpu.buffer_from("w", &weights)?,
        );
        let ((pert, _), _) = es.phi();
        gpu.fill(pert, f32::NAN)?;
        gpu.fill(&theta, f32::NAN)?;
        gpu.fill(&grad, f32::NAN)?;
        let mut rec = Recorder::new(gpu);
        es.record_perturb(&mut rec, &xbuf, &d)?;
        es.record_theta0(&mut rec, &theta, &d)?;
        es.record_estimate(&mut rec, (&lbuf, &wbuf), &grad, &d, true)?;
        rec.submit()?;
        let z = |q: usize, j: usize| {
            if j < phi_len || learn_theta {
                noise(d.key, q as u32, j as u32)
            } else {
                0.0
            }
        };
        let mut pert_want = vec![0.0; parts * m];
        for q in 0..pairs {
            for j in 0..m {
                let v = f64::from(x[j]);
                pert_want[2 * q * m + j] = v + sigma * z(q, j);
                pert_want[(2 * q + 1) * m + j] = v - sigma * z(q, j);
                xi_want[q * m + j] = if reset { 0.0 } else { xi_want[q * m + j] } + z(q, j);
            }
        }
        let what = format!("unroll {k}");
        let close = |name: &str, got: &[f32], want: &[f64], tol: f64| {
            let e = rel_err(&f64s(got), want);
            assert!(e < tol, "{what}: {name} off by {e:.2e}");
        };
        close("particles", &gpu.read(pert)?, &pert_want, 1e-6);
        let theta_want: Vec<f64> = (0..parts * n * params)
            .map(|i| pert_want[(i / (n * params)) * m + phi_len + i % params])
            .collect();
        close("initial θ", &gpu.read(&theta)?, &theta_want, 1e-6);
        let noise_buf = es.noise().expect("PES keeps noise");
        close("accumulated noise", &gpu.read(noise_buf)?, &xi_want, 1e-5);
        let totals: Vec<f64> = (0..parts)
            .map(|p| {
                (0..rows)
                    .map(|t| {
                        let row: f64 = (0..n)
                            .map(|i| f64::from(losses[t * parts * n + p * n + i]))
                            .sum();
                        f64::from(weights[t]) * row
                    })
                    .sum::<f64>()
                    / n as f64
            })
            .collect();
        let grad_want: Vec<f64> = (0..m)
            .map(|j| {
                (0..pairs)
                    .map(|q| xi_want[q * m + j] * (totals[2 * q] - totals[2 * q + 1]))
                    .sum::<f64>()
                    / (2.0 * pairs as f64 * sigma)
            })
            .collect();
        close("estimate", &gpu.read(&grad)?, &grad_want, 1e-4);
    }
    Ok(())
}
