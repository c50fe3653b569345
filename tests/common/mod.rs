//! Shared helpers of the GPU tests: one device per test binary, fresh random inputs (seed printed
//! so a failure can be replayed with METALEARN_TEST_SEED), and the comparison against the f64
//! reference.
#![allow(dead_code)]

pub mod temp;

use std::sync::{Arc, OnceLock};

use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::reference::rel_err;
use metalearn::tasks::TaskRng;
use rand::{Rng, SeedableRng};

/// The device of this test binary. With METALEARN_EXPECT_BACKEND set (CI), the adapter's backend
/// must be that one, so a run meant for GL cannot silently test Vulkan.
pub fn gpu() -> &'static Gpu {
    shared_gpu().as_ref()
}

/// The device of this test binary, shareable with owners that keep an `Arc<Gpu>`.
pub fn shared_gpu() -> &'static Arc<Gpu> {
    static GPU: OnceLock<Arc<Gpu>> = OnceLock::new();
    GPU.get_or_init(|| {
        let g = Gpu::new(&GpuOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let info = &g.props().info;
        eprintln!("GPU tests on {} ({:?})", info.name, info.backend);
        if let Ok(want) = std::env::var("METALEARN_EXPECT_BACKEND") {
            let got = format!("{:?}", info.backend).to_ascii_lowercase();
            assert_eq!(
                got,
                want.to_ascii_lowercase(),
                "tests ran on the wrong backend"
            );
        }
        Arc::new(g)
    })
}

/// A device on the test adapter whose buffers (and storage bindings) hold at most `bytes`: a
/// smaller card's limits, for the paths that split what does not fit one buffer.
pub fn capped_gpu(bytes: u64) -> metalearn::Result<Arc<Gpu>> {
    let first = shared_gpu().props();
    Ok(Arc::new(Gpu::new(&GpuOptions {
        adapter_name: Some(first.info.name.clone()),
        backends: Some(first.info.backend.into()),
        max_buffer_bytes: Some(bytes),
        ..Default::default()
    })?))
}

/// The same adapter opened with the other matrix-product tiling mode (staged in workgroup
/// memory vs direct loads), so both code paths are tested on every adapter.
pub fn gpu_other_tiling() -> &'static Gpu {
    static GPU: OnceLock<Gpu> = OnceLock::new();
    GPU.get_or_init(|| {
        let first = gpu();
        let opts = GpuOptions {
            staged_tiles: Some(!first.props().staged_tiles),
            adapter_name: Some(first.props().info.name.clone()),
            backends: Some(first.props().info.backend.into()),
            ..Default::default()
        };
        Gpu::new(&opts).unwrap_or_else(|e| panic!("{e}"))
    })
}

/// Both tiling modes of the test adapter.
pub fn gpus() -> [&'static Gpu; 2] {
    [gpu(), gpu_other_tiling()]
}

/// A fresh random generator; its seed is printed (and taken from METALEARN_TEST_SEED if set).
pub fn rng(test: &str) -> TaskRng {
    let seed = std::env::var("METALEARN_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| rand::rng().random());
    eprintln!("{test}: METALEARN_TEST_SEED={seed}");
    TaskRng::seed_from_u64(seed)
}

/// `count` random tokens of a vocabulary of `v`.
pub fn random_tokens(r: &mut TaskRng, count: usize, v: usize) -> Vec<u32> {
    (0..count).map(|_| r.random_range(0..v as u32)).collect()
}

/// `n` uniform values in [lo, hi).
pub fn uniform(rng: &mut TaskRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// Widen to f64.
pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| f64::from(x)).collect()
}

/// The error of `r`, which must be one, after checking that it names every one of `needles`.
pub fn expect_err<T>(r: metalearn::Result<T>, needles: &[&str]) -> String {
    let s = match r {
        Ok(_) => panic!("accepted where an error naming {needles:?} was expected"),
        Err(e) => e.to_string(),
    };
    for n in needles {
        assert!(s.contains(n), "'{n}' not in: {s}");
    }
    s
}

/// Assert that `got` (f32 from the GPU) matches `want` (f64 reference) within relative error `tol`
/// (max abs difference over max abs reference); any NaN or infinity fails.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], tol: f64) {
    let e = rel_err(&f64s(got), want);
    assert!(
        e <= tol,
        "{what}: relative error {e:.3e} > {tol:.1e}\n got[..8]  {:?}\n want[..8] {:?}",
        &got[..got.len().min(8)],
        &want[..want.len().min(8)]
    );
}

/// Assert that every element outside `[off, off + len)` ranges is still NaN (nothing written
/// outside the region a kernel owns).
pub fn assert_untouched(what: &str, buf: &[f32], written: &[(usize, usize)]) {
    let mut mask = vec![false; buf.len()];
    for &(off, len) in written {
        for m in &mut mask[off..off + len] {
            *m = true;
        }
    }
    for (i, (v, w)) in buf.iter().zip(mask).enumerate() {
        if !w {
            assert!(
                v.is_nan(),
                "{what}: element {i} outside the output was overwritten with {v}"
            );
        }
    }
}

/// Scale the LSTM optimizer's output weights by 20 (its initialisation makes updates, and so
/// every path through them, tiny), so that meta-gradient tests see them; other optimizers are
/// left as they are.
pub fn amplify_lstm(tr: &mut metalearn::meta::MetaTrainer) -> metalearn::Result<()> {
    if tr.optimizer().name() != "lstm" {
        return Ok(());
    }
    let mut phi = tr.phi()?;
    let n = phi.len();
    for v in &mut phi[n - 21..n - 1] {
        *v *= 20.0;
    }
    tr.set_phi(&phi)
}

/// `count` random single-row images of `width` pixels with labels below `classes`.
pub fn random_images(
    r: &mut TaskRng,
    count: usize,
    width: usize,
    classes: usize,
) -> metalearn::data::ImageDataset {
    metalearn::data::ImageDataset {
        count,
        width,
        height: 1,
        pixels: (0..count * width).map(|_| r.random()).collect(),
        labels: (0..count)
            .map(|_| r.random_range(0..classes as u8))
            .collect(),
        classes,
    }
}

/// The small MLP classifier of the meta-gradient tests: 6-5-3 tanh, 2 instances, batches of 4,
/// on 40 random training and 20 held-out images.
pub fn small_classifier(r: &mut TaskRng) -> metalearn::Result<metalearn::tasks::MlpTask> {
    let (train, test) = (random_images(r, 40, 6, 3), random_images(r, 20, 6, 3));
    let spec = metalearn::tasks::mlp::MlpSpec::new(
        &[6, 5, 3],
        metalearn::kernels::matmul::Activation::Tanh,
    )?;
    metalearn::tasks::MlpTask::new(shared_gpu(), &spec, 2, 4, train, test, r.random())
}

/// How [`with_reference`] sets up the f64 reference problem of a trainer: its first `instances`
/// instances from `init` (N × P) at episode offset `offset`, over `unroll` steps with `weights`
/// and `final_batch`, in `mode`.
#[derive(Clone, Copy)]
pub struct RefSetup<'a> {
    pub instances: usize,
    pub init: &'a [f64],
    pub offset: usize,
    pub unroll: usize,
    pub weights: &'a [f64],
    pub final_batch: metalearn::meta::FinalBatch,
    pub mode: metalearn::optim::Mode,
}

/// `f(problem, hvp)` on the reference problem of `tr`'s task, optimizer and current φ as `s`
/// says, with the task's Hessian-vector product.
pub fn with_reference<R>(
    tr: &metalearn::meta::MetaTrainer,
    s: RefSetup,
    f: impl FnOnce(
        &metalearn::reference::meta::Problem,
        &metalearn::reference::meta::LossHvp,
    ) -> metalearn::Result<R>,
) -> metalearn::Result<R> {
    let task = tr.task();
    let phi = f64s(&tr.phi()?);
    let opt = tr.optimizer().clone();
    let loss_grad = |i: usize, th: &[f64], b| task.reference_loss_grad(i, th, b);
    let hvp = |i: usize, th: &[f64], v: &[f64], b| task.reference_hvp(i, th, v, b);
    let segments = task.layout().segments();
    let problem = metalearn::reference::meta::Problem {
        loss_grad: &loss_grad,
        instances: s.instances,
        params: task.layout().size(),
        opt: &opt,
        phi: &phi,
        init: s.init,
        init_state: &[],
        offset: s.offset,
        segments: &segments,
        unroll: s.unroll,
        weights: s.weights,
        final_batch: s.final_batch,
        mode: s.mode,
    };
    f(&problem, &hvp)
}

/// The trainer's θ0 for each of `n` instances (N × P).
pub fn theta0_of(tr: &metalearn::meta::MetaTrainer, n: usize) -> metalearn::Result<Vec<f64>> {
    let theta0 = f64s(&tr.theta0()?);
    Ok((0..n).flat_map(|_| theta0.iter().copied()).collect())
}
