//! Train a model of your own, computed on the CPU with hand-written gradients, with a learned
//! optimizer through `OptimizerRun::step_host`.
//!
//! The model is a 2-16-1 tanh network classifying points of the square by whether they lie in
//! a disc, described by a `ParamLayout` of four tensors (the MLP optimizer normalises its
//! features per tensor). The learned optimizer (`mlp`, the default, or `lstm`) is first
//! meta-trained briefly on random quadratics; Adam, through the same API, is the reference.
//!
//! `cargo run --release --example custom_model -- [mlp|lstm] [outer_steps] [out_dir]`
use std::sync::Arc;

use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::meta::MetaAdam;
use metalearn::meta::{MetaConfig, MetaTrainer};
use metalearn::optim::hand::Adam;
use metalearn::optim::{Optimizer, OptimizerRun};
use metalearn::params::ParamLayout;
use metalearn::tasks::QuadraticTask;
use metalearn::tasks::TaskRng;
use metalearn::{report, Error, Result};
use rand::{Rng, SeedableRng};

const HIDDEN: usize = 16;

/// Offsets of the model's tensors in its parameter block.
struct Net {
    w0: usize,
    b0: usize,
    w1: usize,
    b1: usize,
    layout: ParamLayout,
}

impl Net {
    fn new() -> Result<Self> {
        let mut layout = ParamLayout::new();
        layout.add("l0.w", &[2, HIDDEN])?;
        layout.add("l0.b", &[HIDDEN])?;
        layout.add("l1.w", &[HIDDEN, 1])?;
        layout.add("l1.b", &[1])?;
        let at = |name: &str| layout.require(name).map(|e| e.offset);
        Ok(Self {
            w0: at("l0.w")?,
            b0: at("l0.b")?,
            w1: at("l1.w")?,
            b1: at("l1.b")?,
            layout,
        })
    }

    fn init(&self, rng: &mut TaskRng) -> Vec<f32> {
        let mut p = vec![0.0f32; self.layout.size()];
        for v in &mut p[self.w0..self.w0 + 2 * HIDDEN] {
            *v = rng.random_range(-1.0..1.0);
        }
        for v in &mut p[self.w1..self.w1 + HIDDEN] {
            *v = rng.random_range(-0.25..0.25);
        }
        p
    }

    /// Mean binary cross-entropy over the points, its gradient, and the accuracy.
    fn loss_grad(&self, p: &[f32], xs: &[[f32; 2]], ys: &[f32]) -> (f64, Vec<f32>, f64) {
        let mut g = vec![0.0f32; p.len()];
        let (mut loss, mut correct) = (0.0f64, 0usize);
        let m = xs.len() as f32;
        for (x, &y) in xs.iter().zip(ys) {
            let mut h = [0.0f32; HIDDEN];
            for (j, hj) in h.iter_mut().enumerate() {
                let z = p[self.b0 + j] + x[0] * p[self.w0 + j] + x[1] * p[self.w0 + HIDDEN + j];
                *hj = z.tanh();
            }
            let z: f32 = p[self.b1] + (0..HIDDEN).map(|j| h[j] * p[self.w1 + j]).sum::<f32>();
            // BCE with logits: softplus(z) − y·z; ∂/∂z = σ(z) − y.
            loss += f64::from(z.max(0.0) + (-z.abs()).exp().ln_1p() - y * z);
            correct += usize::from((z > 0.0) == (y > 0.5));
            let dz = (1.0 / (1.0 + (-z).exp()) - y) / m;
            g[self.b1] += dz;
            for j in 0..HIDDEN {
                g[self.w1 + j] += dz * h[j];
                let dh = dz * p[self.w1 + j] * (1.0 - h[j] * h[j]);
                g[self.b0 + j] += dh;
                g[self.w0 + j] += dh * x[0];
                g[self.w0 + HIDDEN + j] += dh * x[1];
            }
        }
        (loss / xs.len() as f64, g, correct as f64 / xs.len() as f64)
    }
}

/// Train from `p0` for `steps` full-batch steps; the loss curve and the final accuracy.
fn train(
    run: &mut OptimizerRun,
    net: &Net,
    p0: &[f32],
    data: &(Vec<[f32; 2]>, Vec<f32>),
    steps: usize,
) -> Result<(Vec<f64>, f64)> {
    let mut p = p0.to_vec();
    let mut curve = Vec::with_capacity(steps + 1);
    for _ in 0..steps {
        let (loss, grad, _) = net.loss_grad(&p, &data.0, &data.1);
        curve.push(loss);
        run.step_host(&mut p, &grad)?;
    }
    let (loss, _, acc) = net.loss_grad(&p, &data.0, &data.1);
    curve.push(loss);
    Ok((curve, acc))
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let which = args.get(1).map_or("mlp", String::as_str);
    let outer_steps: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(40);
    let out_dir = args
        .get(3)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let opt = match which {
        "mlp" | "lstm" => Optimizer::parse(which)?,
        other => {
            return Err(Error::invalid(format!(
                "unknown learned optimizer '{other}'; use mlp or lstm"
            )))
        }
    };
    let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
    println!("device: {}", gpu.props().info.name);

    // Meta-train the learned optimizer on 10-d quadratics.
    let mut rng = TaskRng::seed_from_u64(0);
    let task = QuadraticTask::new(&gpu, 10, 8, &mut rng)?;
    let cfg = MetaConfig {
        unroll: 10,
        episode: 50,
        meta_opt: MetaAdam::with_lr(1e-2),
        ..Default::default()
    };
    let mut trainer = MetaTrainer::new(gpu.clone(), Box::new(task), opt.clone(), cfg)?;
    for _ in 0..outer_steps {
        let r = trainer.step()?;
        if r.step % 10 == 0 || r.step == outer_steps {
            println!("outer step {:>4}: meta-loss {:.4}", r.step, r.meta_loss);
        }
    }
    let phi = trainer.phi()?;

    // The user's data and model.
    let data: (Vec<[f32; 2]>, Vec<f32>) = (0..200)
        .map(|_| {
            let x = [
                rng.random_range(-1.0f32..1.0),
                rng.random_range(-1.0f32..1.0),
            ];
            let inside = x[0] * x[0] + x[1] * x[1] < 0.5;
            (x, if inside { 1.0 } else { 0.0 })
        })
        .unzip();
    let net = Net::new()?;
    let p0 = net.init(&mut rng);
    let steps = 200;
    let mut learned = OptimizerRun::new(gpu.clone(), opt.clone(), &phi, net.layout.clone(), 1)?;
    let (learned_curve, learned_acc) = train(&mut learned, &net, &p0, &data, steps)?;
    let adam = Optimizer::new(Adam {
        lr: 3e-2,
        ..Default::default()
    });
    let mut reference = OptimizerRun::new(gpu.clone(), adam, &[], net.layout.clone(), 1)?;
    let (adam_curve, adam_acc) = train(&mut reference, &net, &p0, &data, steps)?;

    println!("\n2-16-1 tanh network, disc vs square, 200 points, full batch:");
    let curves = vec![
        (format!("{} (learned)", opt.name()), learned_curve),
        ("Adam lr=3e-2".to_string(), adam_curve),
    ];
    for ((name, c), acc) in curves.iter().zip([learned_acc, adam_acc]) {
        println!(
            "  {name:<14} loss t=0 {:.4}  t=50 {:.4}  t={steps} {:.4}  accuracy {:.1}%",
            c[0],
            c[50],
            c[steps],
            100.0 * acc
        );
    }
    let svg = out_dir.join("custom_model.svg");
    report::plot_svg(
        &svg,
        "Disc classifier trained on the CPU",
        "cross-entropy",
        &curves,
        false,
    )?;
    println!("\nplot written to {}", svg.display());
    Ok(())
}
