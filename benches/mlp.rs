//! MLP forward + backward (batched over task instances) with criterion.
//! Each iteration records one step for all instances, submits, and waits for the device.
//! `cargo bench --bench mlp`; the same workloads run headless via `metalearn bench`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use metalearn::bench::{MlpCase, MlpWorkload};
use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::kernels::matmul::Activation;

fn mlp_fwd_bwd(c: &mut Criterion) {
    let gpu = match Gpu::new(&GpuOptions::default()) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("no GPU, skipping: {e}");
            return;
        }
    };
    let software = gpu.props().is_software();
    let counts: &[usize] = if software { &[1, 4] } else { &[1, 16, 256] };
    let mut group = c.benchmark_group("mlp_fwd_bwd");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(if software { 5 } else { 3 }));
    for widths in [vec![784, 20, 10], vec![784, 128, 10]] {
        for &instances in counts {
            let case = MlpCase {
                widths: widths.clone(),
                activation: Activation::Sigmoid,
                batch: 128,
                instances,
            };
            let w = match MlpWorkload::new(&gpu, &case) {
                Ok(w) => w,
                Err(e) => {
                    eprintln!("{}: skipped: {e}", case.label());
                    continue;
                }
            };
            group.throughput(Throughput::Elements(instances as u64));
            group.bench_function(case.label(), |b| {
                b.iter_custom(|iters| {
                    // One submission of `iters` steps; the clock stops after the device is idle.
                    w.run(&gpu, iters as usize)
                        .unwrap_or_else(|e| panic!("{e}"))
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, mlp_fwd_bwd);
criterion_main!(benches);
