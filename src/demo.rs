//! `metalearn sgd`: train batches of quadratic and MLP instances with plain SGD on the GPU, each
//! whole training recorded into one submission, and report the loss curves read back once at
//! the end.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use rand::{Rng, SeedableRng};

use crate::data::{
    load_mnist_like, synthetic_images, ImageDataset, Split, DEFAULT_FASHION_MNIST_DIR,
};
use crate::gpu::{Gpu, Recorder};
use crate::kernels::gather::GpuDataset;
use crate::kernels::matmul::Activation;
use crate::kernels::sgd::sgd;
use crate::kernels::vec::View;
use crate::kernels::Batched;
use crate::tasks::mlp::{GpuMlp, MlpSpec};
use crate::tasks::quadratic::{GpuQuadratic, Quadratics, DEFAULT_DIM};
use crate::{Error, Result};

/// Settings of the demo.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Quadratic instances.
    pub quad_instances: usize,
    /// Quadratic steps.
    pub quad_steps: usize,
    /// Quadratic SGD learning rate.
    pub quad_lr: f32,
    /// MLP instances.
    pub mlp_instances: usize,
    /// MLP steps.
    pub mlp_steps: usize,
    /// MLP batch rows.
    pub mlp_batch: usize,
    /// MLP SGD learning rate.
    pub mlp_lr: f32,
    /// Directory of the IDX files (Fashion-MNIST or MNIST). `None`: Debian's Fashion-MNIST
    /// directory ([`DEFAULT_FASHION_MNIST_DIR`]), with synthetic images in its place (announced
    /// on stderr and named in the output) when it holds no dataset. A directory given here
    /// must hold the files: anything else is an error.
    pub data_dir: Option<String>,
    /// Train the MLPs on synthetic images (no files read; `data_dir` is ignored).
    pub synthetic: bool,
    /// Seed of everything random.
    pub seed: u64,
}

impl Default for DemoConfig {
    fn default() -> Self {
        Self {
            quad_instances: 128,
            quad_steps: 100,
            quad_lr: 0.01,
            mlp_instances: 64,
            mlp_steps: 500,
            mlp_batch: 128,
            mlp_lr: 0.5,
            data_dir: None,
            synthetic: false,
            seed: 0,
        }
    }
}

impl DemoConfig {
    /// Check the sizes and learning rates before anything runs.
    pub fn validate(&self) -> Result<()> {
        let sizes = [
            ("quadratic instances", self.quad_instances),
            ("quadratic steps", self.quad_steps),
            ("MLP instances (--mlp-instances)", self.mlp_instances),
            ("MLP steps (--mlp-steps)", self.mlp_steps),
            ("MLP batch rows", self.mlp_batch),
        ];
        if let Some((what, _)) = sizes.iter().find(|(_, v)| *v == 0) {
            return Err(Error::invalid(format!("{what} must be at least 1")));
        }
        for (what, lr) in [("quadratic", self.quad_lr), ("MLP", self.mlp_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                return Err(Error::invalid(format!(
                    "the {what} SGD learning rate {lr} is not a positive number"
                )));
            }
        }
        Ok(())
    }

    /// The default sizes for `gpu`: on a software adapter (lavapipe, llvmpipe) the MLP part trains
    /// 4 instances for 250 steps instead of 64 for 500, so the demo ends in well under a minute.
    pub fn for_gpu(gpu: &Gpu) -> Self {
        let mut c = Self::default();
        if gpu.props().is_software() {
            c.mlp_instances = 4;
            c.mlp_steps = 250;
        }
        c
    }
}

/// Mean over instances of each step's loss; `losses` is `[steps, instances]`.
pub fn mean_curve(losses: &[f32], instances: usize) -> Vec<f64> {
    losses
        .chunks(instances)
        .map(|s| s.iter().map(|&v| f64::from(v)).sum::<f64>() / instances as f64)
        .collect()
}

fn print_curve(out: &mut impl Write, curve: &[f64], every: usize) -> Result<()> {
    let io = |e| Error::Io {
        path: "<stdout>".into(),
        source: e,
    };
    for (t, l) in curve.iter().enumerate() {
        if t % every == 0 || t + 1 == curve.len() {
            writeln!(out, "  step {t:>4}  mean loss {l:.5}").map_err(io)?;
        }
    }
    Ok(())
}

/// Quadratics trained with SGD; returns the mean loss curve.
pub fn train_quadratics(gpu: &Gpu, cfg: &DemoConfig) -> Result<Vec<f64>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let (d, n, steps) = (DEFAULT_DIM, cfg.quad_instances, cfg.quad_steps);
    let q = Quadratics::sample(&mut rng, d, n)?;
    let gq = GpuQuadratic::upload(gpu, &q)?;
    let theta = gpu.buffer_from("theta", &q.init(&mut rng, 0.01)?)?;
    let grad = gpu.buffer("grad", n * d)?;
    let losses = gpu.buffer("losses", steps * n)?;
    let mut rec = Recorder::new(gpu);
    for t in 0..steps {
        gq.record_loss_grad(
            &mut rec,
            Batched::dense(&theta, d),
            Batched::dense(&grad, d),
            &losses,
            t * n,
        )?;
        sgd(&mut rec, &theta, 0, &grad, 0, n * d, cfg.quad_lr)?;
    }
    rec.submit()?;
    Ok(mean_curve(&gpu.read(&losses)?, n))
}

/// Result of the MLP part.
pub struct MlpRun {
    /// Where the data came from.
    pub data: String,
    /// Mean training loss per step.
    pub curve: Vec<f64>,
    /// Mean held-out loss before and after training.
    pub test_before_after: (f64, f64),
}

/// The images of the MLP part: (training split, test split, where they came from).
pub struct DemoImages {
    /// Training images.
    pub train: ImageDataset,
    /// Held-out images.
    pub test: ImageDataset,
    /// Where they came from, for the output.
    pub source: String,
}

/// The images `cfg` names: the IDX files of an explicit `data_dir` (an error when they are
/// missing or malformed), synthetic images, or those of the default directory with the
/// synthetic fallback (announced on stderr).
pub fn demo_images(cfg: &DemoConfig) -> Result<DemoImages> {
    let load = |dir: &Path| -> Result<DemoImages> {
        Ok(DemoImages {
            train: load_mnist_like(dir, Split::Train)?,
            test: load_mnist_like(dir, Split::Test)?,
            source: format!("IDX files in {}", dir.display()),
        })
    };
    let synthetic = |source: String| {
        let (train, test) = synthetic_images(cfg.seed, 6000, 1000);
        DemoImages {
            train,
            test,
            source,
        }
    };
    if cfg.synthetic {
        return Ok(synthetic("synthetic images".into()));
    }
    match &cfg.data_dir {
        Some(dir) => load(Path::new(dir)),
        None => load(Path::new(DEFAULT_FASHION_MNIST_DIR)).or_else(|e| {
            eprintln!(
                "note: no dataset in the default directory ({e}); the MLPs train on synthetic images instead (install dataset-fashion-mnist, or give --data-dir)"
            );
            Ok(synthetic(format!(
                "synthetic images (fallback: no dataset in {DEFAULT_FASHION_MNIST_DIR})"
            )))
        }),
    }
}

/// 784-20-10 sigmoid MLPs (the L2L MNIST setting) trained with SGD on Fashion-MNIST (or
/// synthetic images, see [`demo_images`]), each instance from its own initialisation and its
/// own batches.
pub fn train_mlps(gpu: &Gpu, cfg: &DemoConfig) -> Result<MlpRun> {
    train_mlps_on(gpu, cfg, demo_images(cfg)?)
}

/// [`train_mlps`] on images already loaded.
pub fn train_mlps_on(gpu: &Gpu, cfg: &DemoConfig, images: DemoImages) -> Result<MlpRun> {
    let DemoImages {
        train,
        test,
        source: data,
    } = images;
    let (n, b, steps) = (cfg.mlp_instances, cfg.mlp_batch, cfg.mlp_steps);
    let spec = MlpSpec::new(&[train.features(), 20, train.classes], Activation::Sigmoid)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(cfg.seed);
    let p = spec.layout()?.size();
    let (gtrain, gtest) = (
        GpuDataset::upload(gpu, &train)?,
        GpuDataset::upload(gpu, &test)?,
    );
    let mlp = GpuMlp::new(gpu, &spec, n, b)?;
    let theta = gpu.buffer_from("theta", &spec.init(&mut rng, n)?)?;
    let grad = gpu.buffer("grad", n * p)?;
    let x = gpu.buffer("x", n * b * spec.inputs())?;
    let y = gpu.buffer("y", n * b)?;
    let losses = gpu.buffer("losses", steps * n)?;
    let test_losses = gpu.buffer("test losses", 2 * n)?;
    let seed = rng.random::<u32>();
    let th = Batched::dense(&theta, p);
    let xs = Batched::dense(&x, b * spec.inputs());
    let ys = Batched::dense(&y, b);
    let mut rec = Recorder::new(gpu);
    let eval = |rec: &mut Recorder, slot: usize| -> Result<()> {
        gtest.record_batch(
            rec,
            b,
            n,
            (seed ^ 0x5eed, slot as u32),
            (View::new(&x, 0), View::new(&y, 0)),
        )?;
        mlp.record_forward(rec, th, xs)?;
        mlp.record_loss(rec, ys, &test_losses, slot * n, false)
    };
    eval(&mut rec, 0)?;
    for t in 0..steps {
        gtrain.record_batch(
            &mut rec,
            b,
            n,
            (seed, t as u32),
            (View::new(&x, 0), View::new(&y, 0)),
        )?;
        mlp.record_loss_grad(
            &mut rec,
            th,
            xs,
            ys,
            Batched::dense(&grad, p),
            crate::kernels::vec::View::new(&losses, t * n),
        )?;
        sgd(&mut rec, &theta, 0, &grad, 0, n * p, cfg.mlp_lr)?;
    }
    eval(&mut rec, 1)?;
    rec.submit()?;
    let tl = mean_curve(&gpu.read(&test_losses)?, n);
    Ok(MlpRun {
        data,
        curve: mean_curve(&gpu.read(&losses)?, n),
        test_before_after: (tl[0], tl[1]),
    })
}

/// Run both parts and print what happened.
pub fn run(gpu: &Gpu, cfg: &DemoConfig, out: &mut impl Write) -> Result<()> {
    cfg.validate()?;
    let io = |e| Error::Io {
        path: "<stdout>".into(),
        source: e,
    };
    // The data first: a wrong --data-dir is reported before anything trains.
    let images = demo_images(cfg)?;
    let info = &gpu.props().info;
    writeln!(out, "metalearn on {} ({:?})", info.name, info.backend).map_err(io)?;
    let t = Instant::now();
    let curve = train_quadratics(gpu, cfg)?;
    writeln!(
        out,
        "\n{} quadratics ‖Wθ − y‖², d = 10, SGD lr {}, {} steps in one submission ({:.2} s):",
        cfg.quad_instances,
        cfg.quad_lr,
        cfg.quad_steps,
        t.elapsed().as_secs_f64()
    )
    .map_err(io)?;
    print_curve(out, &curve, (cfg.quad_steps / 10).max(1))?;
    let t = Instant::now();
    let run = train_mlps_on(gpu, cfg, images)?;
    writeln!(
        out,
        "\n{} MLPs 784-20-10 sigmoid, batch {}, SGD lr {}, {} steps in one submission ({:.2} s)\n  data: {}",
        cfg.mlp_instances,
        cfg.mlp_batch,
        cfg.mlp_lr,
        cfg.mlp_steps,
        t.elapsed().as_secs_f64(),
        run.data
    )
    .map_err(io)?;
    print_curve(out, &run.curve, (cfg.mlp_steps / 10).max(1))?;
    writeln!(
        out,
        "  held-out batch loss: {:.5} before → {:.5} after training",
        run.test_before_after.0, run.test_before_after.1
    )
    .map_err(io)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_data_directory_must_hold_the_dataset() {
        let empty = std::env::temp_dir().join(format!("metalearn-demo-{}", std::process::id()));
        std::fs::create_dir_all(&empty).unwrap();
        for (dir, problem) in [
            ("/nonexistent/metalearn-demo".to_string(), "does not exist"),
            (empty.display().to_string(), "no MNIST-format files"),
        ] {
            let cfg = DemoConfig {
                data_dir: Some(dir.clone()),
                ..Default::default()
            };
            match demo_images(&cfg) {
                Err(e @ Error::Data { .. }) => {
                    let s = e.to_string();
                    assert!(s.contains(&dir) && s.contains(problem), "{s}");
                }
                Err(e) => panic!("{dir}: unexpected error {e}"),
                Ok(i) => panic!("{dir}: fell back to {}", i.source),
            }
        }
        std::fs::remove_dir_all(&empty).unwrap();
        // The default directory falls back, and says so in the output.
        let images = demo_images(&DemoConfig::default()).unwrap();
        let installed = Path::new(DEFAULT_FASHION_MNIST_DIR).is_dir();
        assert!(
            images.source.contains(DEFAULT_FASHION_MNIST_DIR),
            "{}",
            images.source
        );
        if !installed {
            assert!(images.source.starts_with("synthetic images (fallback"));
        }
    }
}
