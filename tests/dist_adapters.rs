//! Data-parallel meta-training over two different adapters of one process (on the CI machine:
//! lavapipe through Vulkan and llvmpipe through GL), through the library and through a run.

use std::sync::Arc;

use metalearn::config::Config;
use metalearn::dist::DataParallel;
use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::meta::{LossWeights, MetaConfig, MetaTrainer};
use metalearn::optim::lstm::Lstm;
use metalearn::optim::Optimizer;
use metalearn::reference::rel_err;
use metalearn::run::{train, TrainOptions};
use metalearn::tasks::{QuadraticTask, Task, TaskRng};
use metalearn::Result;
use rand::SeedableRng;

/// Every adapter, or `None` (with the reason printed) where the machine has one only; where
/// the CI sets METALEARN_EXPECT_BACKEND, two are required.
fn two_adapters() -> Result<Option<Vec<Arc<Gpu>>>> {
    let listed = Gpu::adapters(&GpuOptions::default())?;
    if listed.len() < 2 {
        let why = format!("one adapter only ({listed:?})");
        if std::env::var("METALEARN_EXPECT_BACKEND").is_ok() {
            panic!("two adapters expected: {why}");
        }
        eprintln!("skipped: {why}");
        return Ok(None);
    }
    let gpus = Gpu::open_many(&GpuOptions::default(), "0,1")?;
    for g in &gpus {
        let i = &g.props().info;
        eprintln!("device: {} ({:?})", i.name, i.backend);
    }
    Ok(Some(gpus.into_iter().map(Arc::new).collect()))
}

/// One test (wgpu's GL context is shared by the threads of a process: one thread uses it).
#[test]
fn two_adapters_meta_train_as_one_device() -> Result<()> {
    let Some(gpus) = two_adapters()? else {
        return Ok(());
    };
    library(&gpus)?;
    run(&gpus)
}

/// The library's data-parallel trainer against one device of all the instances.
fn library(gpus: &[Arc<Gpu>]) -> Result<()> {
    let seed = 11;
    let build = move |g: &Arc<Gpu>, n: usize| -> Result<Box<dyn Task>> {
        let mut r = TaskRng::seed_from_u64(seed);
        Ok(Box::new(QuadraticTask::new(g, 4, n, &mut r)?) as Box<dyn Task>)
    };
    let opt = Optimizer::new(Lstm::default());
    let cfg = MetaConfig {
        unroll: 4,
        episode: 8,
        weights: LossWeights::Uniform,
        learn_optimizer: true,
        learn_init: true,
        seed,
        ..Default::default()
    };
    let mut one = MetaTrainer::new(
        gpus[0].clone(),
        build(&gpus[0], 6)?,
        opt.clone(),
        cfg.clone(),
    )?;
    let mut dp = DataParallel::new(gpus, 6, &build, opt, cfg)?;
    for step in 1..=3 {
        let (a, b) = (one.step()?, dp.step()?);
        let e = rel_err(&[f64::from(b.meta_loss)], &[f64::from(a.meta_loss)]);
        assert!(
            e < 1e-5,
            "outer step {step}: meta-loss {} vs {}",
            b.meta_loss,
            a.meta_loss
        );
        let f = |v: Vec<f32>| v.into_iter().map(f64::from).collect::<Vec<_>>();
        let e = rel_err(
            &f(dp.first().last_meta_gradient()?),
            &f(one.last_meta_gradient()?),
        );
        assert!(
            e < 1e-5,
            "outer step {step}: meta-gradient relative error {e:.1e}"
        );
        let e = rel_err(&f(dp.first().phi()?), &f(one.phi()?));
        assert!(e < 1e-4, "outer step {step}: φ relative error {e:.1e}");
        let other = dp.trainer(1).map(|t| t.phi()).transpose()?;
        assert_eq!(other, Some(dp.first().phi()?), "φ of the second adapter");
    }
    Ok(())
}

/// `train` with a second device: the run's metrics are one device's up to the order of sums,
/// its checkpoint resumes on the same devices.
fn run(gpus: &[Arc<Gpu>]) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("metalearn-dist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cfg_in = |sub: &str, steps: usize| -> Result<Config> {
        Config::embedded_default()?.with_overrides(&[
            format!("output.dir=\"{}\"", dir.join(sub).display()),
            format!("meta.outer_steps={steps}"),
            "task.instances=5".into(),
            "meta.unroll=5".into(),
            "meta.episode=10".into(),
            "eval.every=0".into(),
        ])
    };
    let quiet = TrainOptions::default();
    let one = train(&gpus[0], &cfg_in("one", 4)?, &quiet)?;
    let two_opts = TrainOptions {
        devices: vec![gpus[1].clone()],
        ..TrainOptions::default()
    };
    let two = train(&gpus[0], &cfg_in("two", 4)?, &two_opts)?;
    assert_eq!(one.meta_losses.len(), two.meta_losses.len());
    for (k, (a, b)) in one.meta_losses.iter().zip(&two.meta_losses).enumerate() {
        let e = rel_err(&[f64::from(*b)], &[f64::from(*a)]);
        assert!(e < 1e-4, "outer step {}: meta-loss {b} vs {a}", k + 1);
    }
    // Stopped mid-episode and resumed on the same two devices: the same as without the stop.
    let stop = TrainOptions {
        stop_after: Some(3),
        ..two_opts.clone()
    };
    let first = train(&gpus[0], &cfg_in("resumed", 4)?, &stop)?;
    assert_eq!(first.steps, 3);
    // On one device the mid-episode checkpoint of two is refused by name, and kept.
    let e = train(
        &gpus[0],
        &cfg_in("resumed", 4)?,
        &TrainOptions {
            resume: true,
            ..TrainOptions::default()
        },
    )
    .err()
    .map(|e| e.to_string())
    .unwrap_or_default();
    assert!(e.contains("2 devices"), "{e}");
    let rest = TrainOptions {
        resume: true,
        ..two_opts.clone()
    };
    let second = train(&gpus[0], &cfg_in("resumed", 4)?, &rest)?;
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(
        [first.meta_losses, second.meta_losses].concat(),
        two.meta_losses,
        "a resumed two-device run differs from the uninterrupted one"
    );
    Ok(())
}
