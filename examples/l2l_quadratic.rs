//! Meta-train the L2L LSTM optimizer on 10-d quadratics and compare it with tuned SGD and Adam
//! on held-out quadratics. `cargo run --release --example l2l_quadratic -- [outer_steps] [instances] [meta_lr] [eval_instances] [seed] [grid_points]`
use std::sync::Arc;

use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::run::{l2l_quadratics, L2lConfig};

fn main() -> metalearn::Result<()> {
    let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
    let args: Vec<String> = std::env::args().collect();
    let arg = |i: usize| args.get(i).and_then(|s| s.parse::<f64>().ok());
    let mut cfg = L2lConfig::default();
    if let Some(v) = arg(1) {
        cfg.outer_steps = v as usize;
    }
    if let Some(v) = arg(2) {
        cfg.instances = v as usize;
    }
    if let Some(v) = arg(3) {
        cfg.meta_lr = v as f32;
    }
    if let Some(v) = arg(4) {
        cfg.eval_instances = v as usize;
    }
    if let Some(v) = arg(5) {
        cfg.seed = v as u64;
    }
    if let Some(v) = arg(6) {
        cfg.grid_points = v as usize;
    }
    let r = l2l_quadratics(&gpu, &cfg, false)?;
    let k = r.meta_losses.len();
    for i in (0..k).step_by((k / 20).max(1)) {
        let w = &r.meta_losses[i..(i + 5).min(k)];
        println!(
            "outer {i:>5}: meta-loss {:.4}",
            w.iter().sum::<f32>() / w.len() as f32
        );
    }
    println!(
        "skipped {}  train {:.1}s  {:.0} inner-steps×instances/s",
        r.skipped, r.train_seconds, r.throughput
    );
    for curve in &r.curves {
        let (name, c) = (&curve.name, &curve.train);
        println!(
            "{name:<24} t=0 {:.4}  t=20 {:.4}  t=50 {:.4}  t={} {:.4}",
            c[0],
            c[20.min(c.len() - 1)],
            c[50.min(c.len() - 1)],
            c.len() - 1,
            c[c.len() - 1]
        );
    }
    Ok(())
}
