//! Meta-train the L2L LSTM optimizer on random quadratics, then use it to fit a least-squares
//! model of your own, computed on the CPU, and compare it with SGD at its best learning rate.
//!
//! `cargo run --release --example train_and_apply -- [outer_steps] [out_dir]`
//!
//! Writes `train_and_apply.csv` and `train_and_apply.svg` (loss curves) to `out_dir` (default:
//! the system's temporary directory).
use std::sync::Arc;

use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::meta::MetaAdam;
use metalearn::meta::{MetaConfig, MetaTrainer};
use metalearn::optim::hand::Sgd;
use metalearn::optim::lstm::Lstm;
use metalearn::optim::{Optimizer, OptimizerRun};
use metalearn::tasks::QuadraticTask;
use metalearn::tasks::TaskRng;
use metalearn::{report, Result};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// The user's model: linear regression y ≈ X·w with loss (1/m)·‖X·w − y‖², gradient by hand.
struct LeastSquares {
    x: Vec<f32>,
    y: Vec<f32>,
    rows: usize,
    dim: usize,
}

impl LeastSquares {
    fn random(rows: usize, dim: usize, rng: &mut TaskRng) -> Self {
        let mut normal = || -> f32 { StandardNormal.sample(rng) };
        let x: Vec<f32> = (0..rows * dim).map(|_| normal()).collect();
        let w_true: Vec<f32> = (0..dim).map(|_| normal()).collect();
        let y = (0..rows)
            .map(|i| {
                let xi = &x[i * dim..(i + 1) * dim];
                xi.iter().zip(&w_true).map(|(a, b)| a * b).sum::<f32>() + 0.1 * normal()
            })
            .collect();
        Self { x, y, rows, dim }
    }

    /// Loss and gradient at `w`.
    fn loss_grad(&self, w: &[f32]) -> (f64, Vec<f32>) {
        let scale = 1.0 / self.rows as f32;
        let mut grad = vec![0.0f32; self.dim];
        let mut loss = 0.0f64;
        for i in 0..self.rows {
            let xi = &self.x[i * self.dim..(i + 1) * self.dim];
            let r = xi.iter().zip(w).map(|(a, b)| a * b).sum::<f32>() - self.y[i];
            loss += f64::from(scale * r * r);
            for (g, a) in grad.iter_mut().zip(xi) {
                *g += 2.0 * scale * r * a;
            }
        }
        (loss, grad)
    }
}

/// Fit `model` from `w0` for `steps` steps with `run`; the loss before each step and at the end.
fn fit(run: &mut OptimizerRun, model: &LeastSquares, w0: &[f32], steps: usize) -> Result<Vec<f64>> {
    let mut w = w0.to_vec();
    let mut curve = Vec::with_capacity(steps + 1);
    for _ in 0..steps {
        let (loss, grad) = model.loss_grad(&w);
        curve.push(loss);
        run.step_host(&mut w, &grad)?;
    }
    curve.push(model.loss_grad(&w).0);
    Ok(curve)
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let outer_steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
    let out_dir = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
    println!("device: {}", gpu.props().info.name);

    // 1. Meta-train the LSTM optimizer on 10-d quadratics ‖Wθ − y‖² (8 instances per step,
    //    episodes of 50 inner steps trained as truncated unrolls of 10).
    let dim = 10;
    let mut rng = TaskRng::seed_from_u64(0);
    let task = QuadraticTask::new(&gpu, dim, 8, &mut rng)?;
    let opt = Optimizer::new(Lstm::default());
    let cfg = MetaConfig {
        unroll: 10,
        episode: 50,
        meta_opt: MetaAdam::with_lr(1e-2),
        ..Default::default()
    };
    let mut trainer = MetaTrainer::new(gpu.clone(), Box::new(task), opt.clone(), cfg)?;
    for i in 0..outer_steps {
        let r = trainer.step()?;
        if i % 10 == 0 || i + 1 == outer_steps {
            println!("outer step {:>4}: meta-loss {:.4}", r.step, r.meta_loss);
        }
    }
    let phi = trainer.phi()?;

    // 2. Apply it to a model of our own, computed on the CPU.
    let model = LeastSquares::random(100, dim, &mut rng);
    let w0 = vec![0.0f32; dim];
    let steps = 100;
    let mut learned = OptimizerRun::flat(gpu.clone(), opt, &phi, dim)?;
    let lstm_curve = fit(&mut learned, &model, &w0, steps)?;

    // 3. SGD at the best learning rate of a small grid, through the same API.
    let mut best: Option<(f32, Vec<f64>)> = None;
    for lr in [3e-3f32, 3e-2, 3e-1] {
        let mut run = OptimizerRun::flat(gpu.clone(), Optimizer::new(Sgd { lr }), &[], dim)?;
        let c = fit(&mut run, &model, &w0, steps)?;
        let last = c[steps];
        if last.is_finite() && best.as_ref().is_none_or(|(_, b)| last < b[steps]) {
            best = Some((lr, c));
        }
    }
    let curves = match best {
        Some((lr, sgd)) => vec![
            ("LSTM (learned)".to_string(), lstm_curve),
            (format!("SGD lr={lr:.0e}"), sgd),
        ],
        None => vec![("LSTM (learned)".to_string(), lstm_curve)],
    };
    println!("\nleast-squares loss ({dim} weights, 100 rows):");
    for (name, c) in &curves {
        println!(
            "  {name:<16} t=0 {:.4}  t=10 {:.4}  t=50 {:.4}  t={steps} {:.4}",
            c[0], c[10], c[50], c[steps]
        );
    }
    let csv = out_dir.join("train_and_apply.csv");
    let svg = out_dir.join("train_and_apply.svg");
    report::write_csv(&csv, &curves)?;
    report::plot_svg(&svg, "Least squares on the CPU", "loss", &curves, true)?;
    println!(
        "\ncurves written to {} and {}",
        csv.display(),
        svg.display()
    );
    Ok(())
}
