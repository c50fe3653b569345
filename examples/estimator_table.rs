//! Truncated backprop, ES and PES on the L2L quadratics with the LSTM optimizer (10-d, unrolls
//! of T = 20 in episodes of 100):
//! 1. the quality of each estimate of one episode's gradient at the initial φ — the sum of the
//!    episode's five unroll estimates (φ held fixed) against the true gradient of the episode's
//!    loss (backprop through the whole episode in second-order mode): cosine and norm ratio;
//! 2. meta-training for the same wall-clock time each (the GPU is the bottleneck: every outer
//!    step waits for its status), then the mean loss of 100 steps on held-out quadratics.
//!
//! Each over `seeds` seeds (instances, initial θ and noise are the seed's). Prints a Markdown
//! table and writes it to `out/table.md`.
//!
//! `cargo run --release --example estimator_table -- [seconds] [seeds] [instances] [pairs] [sigma] [out]`

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::meta::{
    evaluate, EsConfig, Estimator, LossWeights, MetaAdam, MetaConfig, MetaTrainer,
};
use metalearn::optim::lstm::Lstm;
use metalearn::optim::{Mode, Optimizer};
use metalearn::tasks::{QuadraticTask, Sample, Stream, Task, TaskRng};
use metalearn::Result;
use rand::SeedableRng;

const T: usize = 20;
const EPISODE: usize = 100;

fn trainer(
    gpu: &Arc<Gpu>,
    estimator: Estimator,
    (unroll, mode, weights): (usize, Mode, LossWeights),
    (seed, instances, lr): (u64, usize, f32),
) -> Result<MetaTrainer> {
    let mut r = TaskRng::seed_from_u64(seed ^ 0x5eed);
    let task = QuadraticTask::new(gpu, 10, instances, &mut r)?;
    MetaTrainer::new(
        gpu.clone(),
        Box::new(task),
        Optimizer::new(Lstm::default()),
        MetaConfig {
            unroll,
            episode: EPISODE,
            estimator,
            mode,
            weights,
            learn_optimizer: true,
            meta_opt: MetaAdam::with_lr(lr),
            seed,
            ..Default::default()
        },
    )
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// Sum of the estimates over one episode's outer steps, φ held fixed.
fn episode_estimate(tr: &mut MetaTrainer) -> Result<Vec<f64>> {
    let mut sum = vec![0.0; tr.optimizer().phi_len()];
    for _ in 0..EPISODE / tr.config().unroll {
        tr.step()?;
        for (s, g) in sum.iter_mut().zip(tr.last_meta_gradient()?) {
            *s += f64::from(g);
        }
    }
    Ok(sum)
}

/// Mean and standard deviation.
fn stats(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n).sqrt(),
    )
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize, d: f64| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let seconds = arg(1, 15.0);
    let seeds = arg(2, 3.0) as u64;
    let instances = arg(3, 128.0) as usize;
    let es = EsConfig {
        pairs: arg(4, 8.0) as usize,
        sigma: arg(5, 0.01) as f32,
    };
    let out = std::path::PathBuf::from(args.get(6).map_or("runs/estimators", String::as_str));
    std::fs::create_dir_all(&out).map_err(|e| metalearn::Error::io(&out, e))?;
    let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
    let estimators = [
        ("truncated backprop", Estimator::Backprop),
        ("ES", Estimator::Es(es)),
        ("PES", Estimator::Pes(es)),
    ];
    let per_unroll = (T, Mode::Truncated, LossWeights::Uniform);
    // The episode's loss: the five unrolls' uniform weights 1/T at every step after the first.
    let whole: Vec<f32> = (0..=EPISODE)
        .map(|t| if t == 0 { 0.0 } else { 1.0 / T as f32 })
        .collect();
    let mut truth = Vec::new();
    for seed in 0..seeds {
        let mut tr = trainer(
            &gpu,
            Estimator::Backprop,
            (
                EPISODE,
                Mode::SecondOrder,
                LossWeights::Given(whole.clone()),
            ),
            (seed, instances, 0.0),
        )?;
        tr.step()?;
        truth.push(
            tr.last_meta_gradient()?
                .iter()
                .map(|&v| f64::from(v))
                .collect::<Vec<f64>>(),
        );
    }
    let mut held_task = QuadraticTask::new(
        &gpu,
        10,
        512,
        &mut Stream::Instances.rng(12345, Sample::HeldOut),
    )?;
    held_task.resample(&gpu, &mut Stream::Instances.rng(12345, Sample::HeldOut))?;
    let held_init = held_task.init_params(&mut Stream::Init(0).rng(12345, Sample::HeldOut))?;
    let mut table = format!(
        "adapter: {}; L2L quadratics (d = 10, {instances} instances), LSTM optimizer, unrolls of {T} in \
         episodes of {EPISODE}; ES/PES: {} pairs, σ = {}; {seconds} s of meta-training each; {seeds} seeds \
         (mean ± std)\n\n\
         | estimator | cosine to the episode gradient | norm ratio | ms / outer step | outer steps | held-out mean loss (100 steps) | held-out final loss |\n\
         |---|---|---|---|---|---|---|\n",
        gpu.props().info.name, es.pairs, es.sigma
    );
    for (name, estimator) in estimators {
        let (mut cos, mut ratio, mut ms, mut steps, mut mean_loss, mut final_loss) =
            (vec![], vec![], vec![], vec![], vec![], vec![]);
        for seed in 0..seeds {
            let g = &truth[seed as usize];
            let mut tr = trainer(&gpu, estimator, per_unroll.clone(), (seed, instances, 0.0))?;
            let est = episode_estimate(&mut tr)?;
            let dot: f64 = est.iter().zip(g).map(|(a, b)| a * b).sum();
            cos.push(dot / (norm(&est) * norm(g)));
            ratio.push(norm(&est) / norm(g));
            let mut tr = trainer(&gpu, estimator, per_unroll.clone(), (seed, instances, 0.01))?;
            let t0 = Instant::now();
            let mut k = 0usize;
            while t0.elapsed().as_secs_f64() < seconds {
                tr.step()?;
                k += 1;
            }
            ms.push(1e3 * t0.elapsed().as_secs_f64() / k as f64);
            steps.push(k as f64);
            let curves = evaluate(
                &gpu,
                &held_task,
                tr.optimizer(),
                &tr.phi()?,
                &held_init,
                100,
            )?;
            let m = curves.mean();
            mean_loss.push(m[1..].iter().sum::<f64>() / (m.len() - 1) as f64);
            final_loss.push(curves.final_mean());
            eprintln!(
                "{name} seed {seed}: {k} outer steps, held-out final {:.4}",
                curves.final_mean()
            );
        }
        let f = |v: &[f64], p: usize| {
            let (m, s) = stats(v);
            format!("{m:.p$} ± {s:.p$}")
        };
        writeln!(
            table,
            "| {name} | {} | {} | {} | {} | {} | {} |",
            f(&cos, 3),
            f(&ratio, 3),
            f(&ms, 2),
            f(&steps, 0),
            f(&mean_loss, 3),
            f(&final_loss, 3)
        )
        .ok();
    }
    let path = out.join("table.md");
    std::fs::write(&path, &table).map_err(|e| metalearn::Error::io(&path, e))?;
    print!("{table}");
    Ok(())
}
