//! The bias of truncated backprop, after "Unbiased Gradient Estimation in Unrolled Computation
//! Graphs with Persistent Evolution Strategies" (Vicol, Metz and Sohl-Dickstein 2021): a
//! learning-rate schedule lr_t = e^{φ0}(T − t)/T + e^{φ1}·t/T of T = 100 SGD steps on the 2-d
//! toy f from x = (1, 1) (task `pes_toy`, optimizer `schedule`), meta-trained by
//! - truncated backprop: unrolls of K = 10 in episodes of 100, exact within each unroll;
//! - PES: the same truncations, 100 particles (50 antithetic pairs), σ = 1;
//! - ES over the whole episode: one unroll of 100, 100 particles, σ = 1;
//!
//! all with Adam (lr 0.01, β = (0.99, 0.999), no clipping) from lr = 0.01 at both ends. After
//! every `every` outer steps the whole-episode objective — the mean of f after each of the 100
//! updates — is computed in f64 at the current φ, and the optimum of the objective is found by
//! a grid search over (φ0, φ1). Writes `objective.csv` (one column per estimator and seed),
//! `pes_toy.svg` (mean over seeds, band from the smallest to the largest) and `summary.txt`.
//!
//! `cargo run --release --example pes_toy -- [outer_steps] [seeds] [out_dir] [every]`

use std::fmt::Write as _;
use std::sync::Arc;

use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::meta::{
    EsConfig, Estimator, LossWeights, MetaAdam, MetaConfig, MetaTrainer, Schedule as Checkpoints,
};
use metalearn::optim::hand::Adam;
use metalearn::optim::schedule::Schedule;
use metalearn::optim::{Mode, Optimizer};
use metalearn::report::{plot_svg_bands, spread, write_csv};
use metalearn::tasks::toy::{reference, ToyTask};
use metalearn::Result;

/// Inner steps of an episode (the schedule's horizon).
const T: usize = 100;
/// Truncation length.
const K: usize = 10;

/// The whole-episode objective at φ: the mean of f after each of the T updates from (1, 1).
fn objective(phi: [f64; 2]) -> f64 {
    let mut x = vec![1.0, 1.0];
    let mut total = 0.0;
    for t in 0..T {
        let (_, g) = reference::loss_grad(&x);
        let lr = phi[0].exp() * (T - t) as f64 / T as f64 + phi[1].exp() * t as f64 / T as f64;
        for (xi, gi) in x.iter_mut().zip(&g) {
            *xi -= lr * gi;
        }
        total += reference::loss(&x);
    }
    total / T as f64
}

/// The smallest objective on a grid of (φ0, φ1) ∈ [−8, 3]², step 0.02, and where.
fn grid_optimum() -> (f64, [f64; 2]) {
    let axis: Vec<f64> = (0..=550).map(|i| -8.0 + 0.02 * i as f64).collect();
    let mut best = (f64::INFINITY, [0.0, 0.0]);
    for &a in &axis {
        for &b in &axis {
            let v = objective([a, b]);
            if v < best.0 {
                best = (v, [a, b]);
            }
        }
    }
    best
}

fn trainer(gpu: &Arc<Gpu>, estimator: Estimator, seed: u64) -> Result<MetaTrainer> {
    let (unroll, mode) = match estimator {
        Estimator::Backprop => (K, Mode::SecondOrder),
        Estimator::Pes(_) => (K, Mode::Truncated),
        Estimator::Es(_) => (T, Mode::Truncated),
    };
    MetaTrainer::new(
        gpu.clone(),
        Box::new(ToyTask::new(1)?),
        Optimizer::new(Schedule { horizon: T as f32 }),
        MetaConfig {
            unroll,
            episode: T,
            estimator,
            mode,
            schedule: Checkpoints::StoreAll,
            weights: LossWeights::Uniform,
            learn_optimizer: true,
            learn_init: false,
            meta_opt: MetaAdam {
                adam: Adam {
                    lr: 0.01,
                    beta1: 0.99,
                    beta2: 0.999,
                    eps: 1e-8,
                },
                clip: 0.0,
            },
            seed,
            ..Default::default()
        },
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let outer: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3000);
    let seeds: u64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let out = std::path::PathBuf::from(args.get(3).map_or("runs/pes_toy", String::as_str));
    let every: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(10);
    std::fs::create_dir_all(&out).map_err(|e| metalearn::Error::io(&out, e))?;
    let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
    let es = EsConfig {
        sigma: 1.0,
        pairs: 50,
    };
    let estimators = [
        ("truncated backprop (K = 10)", Estimator::Backprop),
        ("PES (K = 10)", Estimator::Pes(es)),
        ("ES (whole episode)", Estimator::Es(es)),
    ];
    let (best, at) = grid_optimum();
    let mut summary = format!(
        "adapter: {}\ngrid optimum of the objective: {best:.4} at φ = ({:.2}, {:.2}) \
         (lr {:.3} → {:.3}); start: {:.4} at φ = (ln 0.01, ln 0.01)\n",
        gpu.props().info.name,
        at[0],
        at[1],
        at[0].exp(),
        at[1].exp(),
        objective([0.01f64.ln(); 2]),
    );
    let (mut columns, mut curves, mut bands) = (Vec::new(), Vec::new(), Vec::new());
    for (name, estimator) in estimators {
        let mut runs = Vec::new();
        for seed in 0..seeds {
            let t0 = std::time::Instant::now();
            let mut tr = trainer(&gpu, estimator, seed)?;
            let mut curve = Vec::new();
            for step in 0..=outer {
                if step % every == 0 {
                    let phi = tr.phi()?;
                    curve.push(objective([f64::from(phi[0]), f64::from(phi[1])]));
                }
                if step < outer {
                    tr.step()?;
                }
            }
            let phi = tr.phi()?;
            let last = curve.last().copied().unwrap_or(f64::NAN);
            writeln!(
                summary,
                "{name}, seed {seed}: objective {last:.4} at φ = ({:.3}, {:.3}) after {outer} \
                 outer steps ({:.1} s)",
                phi[0],
                phi[1],
                t0.elapsed().as_secs_f64()
            )
            .ok();
            columns.push((format!("{name} seed {seed}"), curve.clone()));
            runs.push(curve);
        }
        let s = spread(&runs)?;
        let n = runs.len() as f64;
        let last = |v: &[f64]| v.last().copied().unwrap_or(f64::NAN);
        writeln!(
            summary,
            "{name}: final objective {:.4} ± {:.4} (mean ± std over {n} seeds; min {:.4}, max {:.4})",
            last(&s.mean),
            last(&s.std),
            last(&s.min),
            last(&s.max)
        )
        .ok();
        curves.push((name.to_string(), s.mean.clone()));
        bands.push((s.min, s.max));
    }
    curves.push(("grid optimum".to_string(), vec![best; curves[0].1.len()]));
    write_csv(out.join("objective.csv"), &columns)?;
    plot_svg_bands(
        out.join("pes_toy.svg"),
        &format!("PES toy: whole-episode objective every {every} outer steps"),
        "mean f over the 100 steps",
        &curves,
        &bands,
        true,
    )?;
    let path = out.join("summary.txt");
    std::fs::write(&path, &summary).map_err(|e| metalearn::Error::io(&path, e))?;
    print!("{summary}");
    Ok(())
}
