//! Data-parallel meta-training over several devices of one process: the shards of a set of
//! instances are its instances, the summed meta-gradient is one device's, the exchanging step
//! on one device is the trainer's bit for bit, and a run resumes on its devices.

mod common;

use std::sync::Arc;

use common::{capped_gpu, expect_err, f64s, rng, shared_gpu};
use metalearn::dist::DataParallel;
use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::kernels::matmul::Activation;
use metalearn::meta::eval::Shards;
use metalearn::meta::{EsConfig, Estimator, LossWeights, MetaConfig, MetaTrainer};
use metalearn::optim::lstm::Lstm;
use metalearn::optim::{Mode, Optimizer};
use metalearn::reference::rel_err;
use metalearn::tasks::mlp::MlpSpec;
use metalearn::tasks::{
    BatchRef, MlpTask, Objective, QuadraticTask, Sample, Shard, SinusoidConfig, SinusoidTask,
    Stream, Task, TaskRng,
};
use metalearn::Result;
use rand::{Rng, SeedableRng};

/// Relative error allowed between φ of sharded and unsharded runs after a few meta-updates
/// (their meta-gradients agree within 1e-5; Adam's per-coordinate normalisation amplifies that).
const PHI_TOL: f64 = 3e-4;

type Build = dyn Fn(&Arc<Gpu>, usize) -> Result<Box<dyn Task>>;

/// A second device on the test adapter (its own queue and buffers).
fn second_gpu() -> Arc<Gpu> {
    static GPU: std::sync::OnceLock<Arc<Gpu>> = std::sync::OnceLock::new();
    GPU.get_or_init(|| Arc::new(Gpu::new(&GpuOptions::default()).unwrap_or_else(|e| panic!("{e}"))))
        .clone()
}

fn quadratics(seed: u64) -> Box<Build> {
    Box::new(move |g, n| {
        let mut r = TaskRng::seed_from_u64(seed);
        Ok(Box::new(QuadraticTask::new(g, 3, n, &mut r)?) as Box<dyn Task>)
    })
}

fn sinusoids(seed: u64) -> Box<Build> {
    Box::new(move |g, n| {
        let cfg = SinusoidConfig {
            hidden: vec![6],
            activation: Activation::Tanh,
            shots: 4,
            queries: 3,
            ..Default::default()
        };
        let mut r = TaskRng::seed_from_u64(seed);
        Ok(Box::new(SinusoidTask::new(g, &cfg, n, &mut r)?) as Box<dyn Task>)
    })
}

fn classifiers(seed: u64) -> Box<Build> {
    Box::new(move |g, n| {
        let spec = MlpSpec::new(&[9, 5, 10], Activation::Relu)?;
        let task = MlpTask::synthetic(g, (&spec, Objective::Classify), (n, 4), (40, 20), seed)?;
        Ok(Box::new(task) as Box<dyn Task>)
    })
}

fn lstm() -> Optimizer {
    Optimizer::new(Lstm {
        p: 2.0,
        out_scale: 0.5,
        ..Default::default()
    })
}

fn config(seed: u64, episode: usize) -> MetaConfig {
    MetaConfig {
        unroll: 3,
        episode,
        weights: LossWeights::Uniform,
        learn_optimizer: true,
        learn_init: true,
        seed,
        ..Default::default()
    }
}

/// The whole set's draws, shard by shard: every task family's data and initial θ of a shard
/// are the rows of a task of all the instances.
#[test]
fn the_shards_of_a_set_hold_its_instances() -> Result<()> {
    let mut r = rng("shards hold the instances");
    let g = shared_gpu();
    for (name, build) in [
        ("quadratic", quadratics(r.random())),
        ("sinusoid", sinusoids(r.random())),
        ("classifier", classifiers(r.random())),
    ] {
        let (total, seed): (usize, u64) = (7, r.random());
        let mut whole = build(g, total)?;
        whole.resample(g, &mut TaskRng::seed_from_u64(seed))?;
        let init = whole.init_params(&mut Stream::Init(3).rng(seed, Sample::Train))?;
        let p = whole.layout().size();
        let batch = BatchRef::Train(2);
        let want = whole.export_batch(batch)?;
        for sh in Shard::split(total, 3)? {
            let mut part = build(g, sh.count)?;
            part.set_shard(g, sh)?;
            part.resample(g, &mut TaskRng::seed_from_u64(seed))?;
            let got = part.export_batch(batch)?;
            for ((n, shape, w), (_, _, v)) in want.iter().zip(&got) {
                let per = shape[1..].iter().product::<usize>();
                assert_eq!(v, &sh.keep(w, per), "{name} {n} of {sh:?}");
            }
            let init_part = part.init_params(&mut Stream::Init(3).rng(seed, Sample::Train))?;
            assert_eq!(init_part, sh.keep(&init, p), "{name} initial θ of {sh:?}");
        }
        // A shard that does not fit the task is refused.
        let mut part = build(g, 2)?;
        let past = Shard {
            first: 6,
            count: 2,
            total,
        };
        expect_err(part.set_shard(g, past), &["does not fit"]);
    }
    Ok(())
}

#[test]
fn a_split_is_even_and_covers_the_set() -> Result<()> {
    let s = Shard::split(7, 3)?;
    let counts: Vec<usize> = s.iter().map(|s| s.count).collect();
    assert_eq!(counts, [3, 2, 2]);
    assert_eq!(s.iter().map(|s| s.first).collect::<Vec<_>>(), [0, 3, 5]);
    assert!(s.iter().all(|s| s.total == 7));
    for (t, k) in [(3, 4), (5, 0)] {
        expect_err(Shard::split(t, k), &["at least one instance"]);
    }
    Ok(())
}

/// The exchanging outer step (gradients read back, summed on the host, the update applied and
/// sent back) on one device gives the fused trainer's run bit for bit, across episodes.
#[test]
fn exchanging_on_one_device_is_the_trainer_bit_for_bit() -> Result<()> {
    let seed: u64 = rng("exchanging on one device").random();
    let g = shared_gpu();
    let build = quadratics(seed);
    let mut one = MetaTrainer::new(g.clone(), build(g, 4)?, lstm(), config(seed, 6))?;
    let mut dp = DataParallel::new(std::slice::from_ref(g), 4, &*build, lstm(), config(seed, 6))?;
    for step in 0..4 {
        let (a, b) = (one.step()?, dp.step_exchanging()?);
        assert_eq!(a, b, "outer step {step}");
        assert_eq!(one.state()?, dp.state()?, "state after outer step {step}");
    }
    Ok(())
}

/// Two devices (shards of 3 and 2 of 5 instances) against one device of all 5, for every
/// family and in truncated and second-order mode: the same meta-loss and meta-gradient up to
/// the order of the sums, and after three outer steps the same φ and θ0 up to the same.
#[test]
fn two_devices_meta_train_as_one_device_of_all_instances() -> Result<()> {
    let mut r = rng("two devices as one");
    let gpus = [shared_gpu().clone(), second_gpu()];
    for (name, build, mode) in [
        ("quadratic", quadratics(r.random()), Mode::SecondOrder),
        ("sinusoid", sinusoids(r.random()), Mode::Truncated),
        ("classifier", classifiers(r.random()), Mode::Truncated),
    ] {
        let seed: u64 = r.random();
        let cfg = MetaConfig {
            mode,
            ..config(seed, 6)
        };
        let g = &gpus[0];
        let mut one = MetaTrainer::new(g.clone(), build(g, 5)?, lstm(), cfg.clone())?;
        let mut dp = DataParallel::new(&gpus, 5, &*build, lstm(), cfg)?;
        assert_eq!(dp.devices(), 2);
        assert_eq!(one.phi()?, dp.first().phi()?, "{name}: φ at the start");
        assert_eq!(
            one.theta0()?,
            dp.first().theta0()?,
            "{name}: θ0 at the start"
        );
        for step in 1..=3 {
            let (a, b) = (one.step()?, dp.step()?);
            let what = format!("{name} outer step {step}");
            assert!(
                a.skipped.is_none() && b.skipped.is_none(),
                "{what}: skipped"
            );
            let e = rel_err(&[f64::from(b.meta_loss)], &[f64::from(a.meta_loss)]);
            assert!(
                e < 1e-5,
                "{what}: meta-loss {} vs {} ({e:.1e})",
                b.meta_loss,
                a.meta_loss
            );
            let (ga, gb) = (one.last_meta_gradient()?, dp.first().last_meta_gradient()?);
            let e = rel_err(&f64s(&gb), &f64s(&ga));
            assert!(e < 1e-5, "{what}: meta-gradient relative error {e:.1e}");
            // Adam's normalisation m/√v amplifies the rounding of meta-gradient coordinates
            // near zero: φ after three updates differs more than the meta-gradient (1.1e-4 for
            // METALEARN_TEST_SEED=14634743348617339502).
            let e = rel_err(&f64s(&dp.first().phi()?), &f64s(&one.phi()?));
            assert!(e < PHI_TOL, "{what}: φ relative error {e:.1e}");
            // Every device holds the first one's meta-parameters bit for bit.
            let other = dp.trainer(1).map(|t| t.phi()).transpose()?;
            assert_eq!(other, Some(dp.first().phi()?), "{what}: φ of device 1");
            let other = dp.trainer(1).map(|t| t.theta0()).transpose()?;
            assert_eq!(other, Some(dp.first().theta0()?), "{what}: θ0 of device 1");
        }
    }
    Ok(())
}

/// A state saved in the middle of an episode by two devices continues bit for bit on two
/// devices; one device, or another split, refuses it by name.
#[test]
fn a_data_parallel_run_resumes_mid_episode() -> Result<()> {
    let seed: u64 = rng("data-parallel resume").random();
    let gpus = [shared_gpu().clone(), second_gpu()];
    let build = quadratics(seed);
    let mut a = DataParallel::new(&gpus, 5, &*build, lstm(), config(seed, 9))?;
    a.step()?;
    let st = a.state()?;
    assert_eq!(st.offset, 3);
    assert_eq!(st.shards, [3, 2]);
    let mut b = DataParallel::new(&gpus, 5, &*build, lstm(), config(seed, 9))?;
    b.restore(&st)?;
    for step in 0..3 {
        assert_eq!(a.step()?, b.step()?, "outer step {step} after the restore");
    }
    assert_eq!(a.state()?, b.state()?);
    let mut one = MetaTrainer::new(
        gpus[0].clone(),
        build(&gpus[0], 5)?,
        lstm(),
        config(seed, 9),
    )?;
    expect_err(one.restore(&st), &["2 devices"]);
    let three = [gpus[0].clone(), gpus[1].clone(), gpus[0].clone()];
    let mut c = DataParallel::new(&three, 5, &*build, lstm(), config(seed, 9))?;
    expect_err(c.restore(&st), &["[3, 2]", "[2, 2, 1]"]);
    Ok(())
}

/// Settings a split cannot run are refused by name.
#[test]
fn impossible_splits_are_refused() -> Result<()> {
    let seed: u64 = rng("impossible splits").random();
    let gpus = [shared_gpu().clone(), second_gpu()];
    let build = quadratics(seed);
    expect_err(
        DataParallel::new(&gpus, 1, &*build, lstm(), config(seed, 3)),
        &["1 instances cannot be split over 2 devices"],
    );
    let es = MetaConfig {
        estimator: Estimator::Es(EsConfig::default()),
        ..config(seed, 3)
    };
    expect_err(
        DataParallel::new(&gpus, 4, &*build, lstm(), es),
        &["cannot be split across devices"],
    );
    expect_err(
        DataParallel::new(&[], 4, &*build, lstm(), config(seed, 3)),
        &["at least one device"],
    );
    Ok(())
}

/// Chunks of the instances on one device (meta.chunks = 3) meta-train as one trainer of all of
/// them, up to the order of the sums, for every family; each chunk holds a third of the slot.
#[test]
fn chunks_on_one_device_meta_train_as_one_trainer() -> Result<()> {
    let mut r = rng("chunks on one device");
    let g = shared_gpu();
    for (name, build) in [
        ("quadratic", quadratics(r.random())),
        ("sinusoid", sinusoids(r.random())),
        ("classifier", classifiers(r.random())),
    ] {
        let seed: u64 = r.random();
        let cfg = config(seed, 6);
        let mut one = MetaTrainer::new(g.clone(), build(g, 7)?, lstm(), cfg.clone())?;
        let chunked = MetaConfig { chunks: 3, ..cfg };
        let mut dp = DataParallel::new(std::slice::from_ref(g), 7, &*build, lstm(), chunked)?;
        assert_eq!(dp.devices(), 3, "{name}");
        let counts: Vec<usize> = dp.shards().iter().map(|s| s.count).collect();
        assert_eq!(counts, [3, 2, 2], "{name}");
        let (m, whole) = (dp.memory(), one.memory());
        assert_eq!(m.chunks, 3, "{name}");
        assert!(
            m.slot_bytes * 2 <= whole.slot_bytes,
            "{name}: {m:?} vs {whole:?}"
        );
        for step in 1..=3 {
            let (a, b) = (one.step()?, dp.step()?);
            let what = format!("{name} outer step {step}");
            assert!(a.skipped.is_none() && b.skipped.is_none(), "{what}");
            let (ga, gb) = (one.last_meta_gradient()?, dp.first().last_meta_gradient()?);
            let e = rel_err(&f64s(&gb), &f64s(&ga));
            assert!(e < 1e-5, "{what}: meta-gradient relative error {e:.1e}");
            let e = rel_err(&f64s(&dp.first().phi()?), &f64s(&one.phi()?));
            assert!(e < PHI_TOL, "{what}: φ relative error {e:.1e}");
            for k in 1..3 {
                let other = dp.trainer(k).map(|t| t.phi()).transpose()?;
                assert_eq!(other, Some(dp.first().phi()?), "{what}: φ of chunk {k}");
            }
        }
    }
    Ok(())
}

/// On a device whose buffers are too small for one checkpoint slot of every instance, the
/// default (meta.chunks = 0) splits them into as few chunks as fit, the estimate is the
/// chunks' memory, a memory budget is shared among the chunks, and the run meta-trains as one
/// trainer of all instances on a larger device; one chunk fewer forced is refused naming the limit.
#[test]
fn chunks_are_chosen_to_fit_the_buffer_limits() -> Result<()> {
    let seed: u64 = rng("chunks fit the limits").random();
    let g = shared_gpu();
    let build = quadratics(seed);
    let n = 256;
    let cfg = config(seed, 6);
    let mut one = MetaTrainer::new(g.clone(), build(g, n)?, lstm(), cfg.clone())?;
    let slot = one.memory().slot_bytes;
    let cap = slot * 3 / 5;
    let small = capped_gpu(cap)?;
    let mut dp = DataParallel::new(
        std::slice::from_ref(&small),
        n,
        &*build,
        lstm(),
        cfg.clone(),
    )?;
    let k = dp.devices();
    assert!(k >= 2, "a slot of {slot} bytes in buffers of {cap}");
    let m = dp.memory();
    assert_eq!(m.chunks, k);
    assert!(m.slot_bytes <= cap, "{m:?}");
    assert_eq!(
        m,
        metalearn::dist::estimate(&small, n, &*build, &lstm(), &cfg)?
    );
    for step in 1..=2 {
        dp.step()?;
        one.step()?;
        let e = rel_err(&f64s(&dp.first().phi()?), &f64s(&one.phi()?));
        assert!(e < PHI_TOL, "outer step {step}: φ relative error {e:.1e}");
    }
    // The fewest that fit: one chunk fewer is refused naming the buffer, one chunk names the slot.
    for (chunks, what) in [(1, "checkpoint slot"), (k - 1, "max_buffer_size")] {
        let forced = MetaConfig {
            chunks,
            ..cfg.clone()
        };
        expect_err(
            DataParallel::new(std::slice::from_ref(&small), n, &*build, lstm(), forced),
            &[what, "max_buffer_size"],
        );
    }
    // A budget of 8 slots of all instances is shared among the chunks: each plans several of its
    // own smaller slots and all of them together stay within it.
    let budget = MetaConfig {
        memory_budget: Some(slot * 8),
        ..cfg
    };
    let dp = DataParallel::new(std::slice::from_ref(&small), n, &*build, lstm(), budget)?;
    for c in 0..k {
        let plan = dp.trainer(c).map(|t| t.plan().slots);
        assert!(plan.is_some_and(|s| s >= 2), "chunk {c}: {plan:?}");
    }
    assert!(dp.memory().checkpoints <= slot * 8, "{:?}", dp.memory());
    Ok(())
}

/// A set evaluated as shards ([`Shards`]) is the set evaluated as one task: the same initial
/// parameters and, bit for bit, the same training and held-out curves and tuned learning rate,
/// whether in one shard or three, and one shard is the plain evaluation of a task so drawn.
#[test]
fn shards_evaluate_as_one_set() -> Result<()> {
    let mut r = rng("evaluation shards");
    let g = shared_gpu();
    let n = 7;
    let opt = lstm();
    let phi = opt.init_phi(&mut r);
    for (name, build) in [
        ("quadratic", quadratics(r.random())),
        ("sinusoid", sinusoids(r.random())),
        ("classifier", classifiers(r.random())),
    ] {
        let (draw, init_seed): (u64, u64) = (r.random(), r.random());
        let sets = [1, 3].map(|k| {
            Shards::build(
                g,
                (n, k),
                None,
                |count| build(g, count),
                || TaskRng::seed_from_u64(draw),
            )
        });
        let [one, three] = sets;
        let (one, three) = (one?, three?);
        assert_eq!((one.len(), three.len(), three.instances()), (1, 3, n));
        let init = one.init_params(|| TaskRng::seed_from_u64(init_seed))?;
        assert_eq!(
            three.init_params(|| TaskRng::seed_from_u64(init_seed))?,
            init,
            "{name}: initial parameters"
        );
        let held = name == "sinusoid";
        let (a, ha) = one.evaluate_with_held_out(g, &opt, &phi, &init, 4, held)?;
        let (b, hb) = three.evaluate_with_held_out(g, &opt, &phi, &init, 4, held)?;
        assert_eq!((a.instances, b.instances), (n, n), "{name}");
        assert_eq!(a.losses, b.losses, "{name}: training curves");
        assert_eq!(ha.is_some(), held, "{name}");
        assert_eq!(
            ha.map(|c| c.losses),
            hb.map(|c| c.losses),
            "{name}: held-out curves"
        );
        // One shard is a task of every instance drawn from the instance stream.
        let mut plain = build(g, n)?;
        plain.resample(g, &mut TaskRng::seed_from_u64(draw))?;
        let c = metalearn::meta::eval::evaluate(g, plain.as_ref(), &opt, &phi, &init, 4)?;
        assert_eq!(
            c.losses, a.losses,
            "{name}: one shard and a plain evaluation"
        );
        let sgd = |lr| Optimizer::from(metalearn::optim::hand::Sgd { lr });
        let grid = metalearn::meta::eval::log_grid(1e-3, 1e-1, 3);
        let (lr1, t1) = one.tune_learning_rate(g, sgd, &grid, &init, 3)?;
        let (lr3, t3) = three.tune_learning_rate(g, sgd, &grid, &init, 3)?;
        assert_eq!((lr1, &t1.losses), (lr3, &t3.losses), "{name}: tuning");
        expect_err(
            three.evaluate_with_held_out(g, &opt, &phi, &init[1..], 4, held),
            &["initial values", "N·P"],
        );
    }
    Ok(())
}

/// The fewest evaluation shards whose slots fit one buffer of the device.
#[test]
fn evaluation_shards_fit_the_buffer_limits() -> Result<()> {
    let floats = 4000;
    let small = capped_gpu(floats as u64 * 4 * 10)?;
    assert_eq!(Shards::needed(&small, 10, floats), 1);
    assert_eq!(Shards::needed(&small, 11, floats), 2);
    assert_eq!(Shards::needed(&small, 25, floats), 3);
    assert_eq!(Shards::needed(shared_gpu(), 25, floats), 1);
    // Not even one instance fits: one per shard; the evaluation then names the buffer.
    assert_eq!(Shards::needed(&small, 4, floats * 20), 4);
    Ok(())
}
