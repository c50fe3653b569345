//! Exports hold where the trainer stands: an export taken inside an episode (a positive
//! `episode_offset`) carries the θ and optimizer state the unroll starts from, the batches of
//! the steps it runs, and its meta-gradient is the f64 reference's for that start; taking it
//! leaves the trainer's next step unchanged; a memory budget is named in the metadata; Reptile
//! is refused.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{f64s, shared_gpu};
use metalearn::meta::{export_outer_step, FinalBatch, LossWeights, MetaConfig, MetaTrainer};
use metalearn::optim::{Mode, Optimizer};
use metalearn::reference::{self, rel_err};
use metalearn::tasks::{BatchRef, QuadraticTask, Task, TaskRng};
use metalearn::Result;
use rand::SeedableRng;

const T: usize = 3;

fn task(mlp: bool, seed: u64) -> Result<Box<dyn Task>> {
    let gpu = shared_gpu();
    let mut r = TaskRng::seed_from_u64(seed);
    if !mlp {
        return Ok(Box::new(QuadraticTask::new(gpu, 3, 2, &mut r)?));
    }
    Ok(Box::new(common::small_classifier(&mut r)?))
}

fn config(opt: &Optimizer, mlp: bool) -> MetaConfig {
    MetaConfig {
        unroll: T,
        episode: 2 * T,
        mode: Mode::Truncated,
        weights: LossWeights::Given((0..=T).map(|t| 0.2 + 0.1 * t as f32).collect()),
        final_batch: if mlp {
            FinalBatch::HeldOut
        } else {
            FinalBatch::Train
        },
        learn_optimizer: opt.is_learned(),
        learn_init: true,
        seed: 11,
        ..Default::default()
    }
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("metalearn-export-{}-{name}", std::process::id()))
}

/// Every tensor of a safetensors file, and its metadata.
fn read(path: &PathBuf) -> (HashMap<String, Vec<f32>>, HashMap<String, String>) {
    let data = std::fs::read(path).expect("export written");
    let st = safetensors::SafeTensors::deserialize(&data).expect("valid file");
    let tensors = st
        .names()
        .into_iter()
        .map(|n| {
            let v = st.tensor(n).expect("tensor");
            let f: Vec<f32> = v
                .data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            (n.to_string(), f)
        })
        .collect();
    let (_, m) = safetensors::SafeTensors::read_metadata(&data).expect("header");
    (tensors, m.metadata().clone().unwrap_or_default())
}

#[test]
fn mid_episode_exports_hold_and_leave_the_trainer_unchanged() -> Result<()> {
    let gpu = shared_gpu();
    for mlp in [false, true] {
        for name in ["adam", "momentum", "lstm", "mlp"] {
            let opt = Optimizer::parse(name)?;
            let what = format!("{name} on {}", if mlp { "mlp" } else { "quadratic" });
            let cfg = config(&opt, mlp);
            let mut tr = MetaTrainer::new(gpu.clone(), task(mlp, 5)?, opt.clone(), cfg.clone())?;
            let mut twin = MetaTrainer::new(gpu.clone(), task(mlp, 5)?, opt.clone(), cfg)?;
            tr.step()?;
            twin.step()?;
            assert_eq!(tr.episode_offset(), T, "{what}");
            let path = temp(&format!("{name}-{mlp}.safetensors"));
            export_outer_step(&mut tr, &path)?;
            let (ts, meta) = read(&path);
            std::fs::remove_file(&path).ok();
            assert_eq!(meta["episode_offset"], T.to_string(), "{what}");
            // Taking the export does not disturb the episode: the next step is the twin's.
            let (a, b) = (tr.step()?, twin.step()?);
            assert_eq!(
                a.meta_loss.to_bits(),
                b.meta_loss.to_bits(),
                "{what}: next step"
            );
            // The batches are those of steps T … 2T.
            let task = twin.task();
            if task.batched() {
                let (_, _, x) = &task.export_batch(BatchRef::Train(T as u32))?[0];
                assert_eq!(&ts["batch.0.x"], x, "{what}: batch 0 is step T's");
            }
            // The meta-gradient is the reference's from the carried θ and state.
            let (n, p, s) = (task.instances(), task.layout().size(), opt.state_len());
            let c = n * p;
            let init = f64s(&ts["init"]);
            let init_state: Vec<f64> = match ts.get("init_state") {
                // [S, N, P] on the GPU, coordinate-major per instance in the reference.
                Some(st) => (0..c)
                    .flat_map(|i| (0..s).map(move |k| f64::from(st[k * c + i])))
                    .collect(),
                None => {
                    assert_eq!(s, 0, "{what}: init_state missing");
                    Vec::new()
                }
            };
            let phi = ts.get("phi").map(|v| f64s(v)).unwrap_or_default();
            let weights = f64s(&ts["weights"]);
            let loss_grad = |i: usize, th: &[f64], b| task.reference_loss_grad(i, th, b);
            let want = reference::meta::meta_gradient(&reference::meta::Problem {
                loss_grad: &loss_grad,
                instances: n,
                params: p,
                opt: &opt,
                phi: &phi,
                init: &init,
                init_state: &init_state,
                offset: T,
                segments: &task.layout().segments(),
                unroll: T,
                weights: &weights,
                final_batch: twin.config().final_batch,
                mode: Mode::Truncated,
            })?;
            let close = |q: &str, a: &[f32], b: &[f64]| {
                let e = rel_err(&f64s(a), b);
                assert!(e <= 1e-4, "{what}: {q} relative error {e:.2e}");
            };
            close("meta-loss", &ts["meta_loss"], &[want.meta_loss]);
            close("losses", &ts["losses"], &want.losses);
            close(
                "θ̄ per instance",
                &ts["grad.theta0_per_instance"],
                &want.theta0,
            );
            if opt.is_learned() {
                close("φ̄", &ts["grad.phi"], &want.phi);
            }
            // Only an episode's first unroll starts from θ0.
            assert!(ts["grad.theta0"].iter().all(|v| *v == 0.0), "{what}");
        }
    }
    Ok(())
}

#[test]
fn a_memory_budget_is_named_and_reptile_is_refused() -> Result<()> {
    let gpu = shared_gpu();
    let opt = Optimizer::parse("lstm")?;
    let cfg = MetaConfig {
        unroll: 8,
        episode: 0,
        weights: LossWeights::Uniform,
        memory_budget: Some(4 * 1024 * 1024),
        ..config(&opt, false)
    };
    let mut tr = MetaTrainer::new(gpu.clone(), task(false, 2)?, opt, cfg)?;
    let path = temp("budget.safetensors");
    export_outer_step(&mut tr, &path)?;
    let (_, meta) = read(&path);
    std::fs::remove_file(&path).ok();
    assert_eq!(meta["memory_budget"], (4 * 1024 * 1024).to_string());
    assert_eq!(
        meta["schedule"],
        format!("revolve-{}", tr.plan().slots),
        "the plan that ran"
    );
    let sgd = Optimizer::parse("sgd")?;
    let cfg = MetaConfig {
        mode: Mode::Reptile,
        episode: 0,
        learn_optimizer: false,
        ..config(&sgd, false)
    };
    let mut tr = MetaTrainer::new(gpu.clone(), task(false, 2)?, sgd, cfg)?;
    let e = export_outer_step(&mut tr, &temp("reptile.safetensors")).expect_err("refused");
    assert!(e.to_string().contains("Reptile"), "{e}");
    Ok(())
}
