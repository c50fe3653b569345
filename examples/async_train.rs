//! Meta-train the L2L LSTM optimizer with `MetaTrainer::step_async`, interleaving other work on
//! the same thread: while the GPU runs an outer step, the executor polls a second future that
//! does CPU work in small slices (here: a Monte-Carlo estimate of π), and a metrics log is written
//! as reports arrive.
//!
//! `cargo run --release --example async_train -- [outer_steps] [out_dir]`
use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::meta::MetaAdam;
use metalearn::meta::{MetaConfig, MetaTrainer};
use metalearn::optim::lstm::Lstm;
use metalearn::optim::Optimizer;
use metalearn::report::MetricsWriter;
use metalearn::tasks::QuadraticTask;
use metalearn::tasks::TaskRng;
use metalearn::Result;
use rand::{Rng, SeedableRng};

/// A future that is pending once: lets the executor poll the other futures of a `join`.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let outer_steps: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(40);
    let out_dir = args
        .get(2)
        .map(std::path::PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
    println!("device: {}", gpu.props().info.name);
    let mut rng = TaskRng::seed_from_u64(0);
    let task = QuadraticTask::new(&gpu, 10, 8, &mut rng)?;
    let cfg = MetaConfig {
        unroll: 10,
        episode: 50,
        meta_opt: MetaAdam::with_lr(1e-2),
        ..Default::default()
    };
    let opt = Optimizer::new(Lstm::default());
    let mut trainer = MetaTrainer::new(gpu.clone(), Box::new(task), opt, cfg)?;
    let metrics_path = out_dir.join("async_train.jsonl");
    let mut metrics = MetricsWriter::open(&metrics_path)?;

    // Work slices done by the CPU future while training runs; read by the training future.
    let slices = Cell::new(0usize);
    let done = Cell::new(false);

    let training = async {
        for _ in 0..outer_steps {
            let before = slices.get();
            let r = trainer.step_async().await?;
            let during = slices.get() - before;
            metrics.write(&serde_json::json!({
                "step": r.step,
                "meta_loss": r.meta_loss,
                "grad_norm": r.grad_norm,
                "cpu_slices_during_step": during,
            }))?;
            if r.step % 10 == 0 || r.step == outer_steps {
                println!(
                    "outer step {:>4}: meta-loss {:.4}  ({during} CPU slices ran meanwhile)",
                    r.step, r.meta_loss
                );
            }
        }
        done.set(true);
        trainer.phi()
    };

    // Other work on the same thread until training ends: a Monte-Carlo estimate of π, 1000
    // samples per slice.
    let other_work = async {
        let mut rng = TaskRng::seed_from_u64(1);
        let (mut inside, mut total) = (0u64, 0u64);
        while !done.get() {
            for _ in 0..1000 {
                let (x, y): (f64, f64) = (rng.random(), rng.random());
                inside += u64::from(x * x + y * y <= 1.0);
            }
            total += 1000;
            slices.set(slices.get() + 1);
            YieldNow(false).await;
        }
        4.0 * inside as f64 / total.max(1) as f64
    };

    let (phi, pi) = futures::executor::block_on(async { futures::join!(training, other_work) });
    let phi = phi?;
    println!(
        "\nmeta-trained φ ({} values); meanwhile, on the same thread, {} slices of other work \
         estimated π ≈ {pi:.4}",
        phi.len(),
        slices.get()
    );
    println!("metrics appended to {}", metrics_path.display());
    Ok(())
}
