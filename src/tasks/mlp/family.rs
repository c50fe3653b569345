//! The MLP families as a run configuration names them: `mlp` (classifiers) and `autoencoder`
//! (tied-weight autoencoders), both on the images `task.data` names.

use std::path::PathBuf;

use super::{MlpSpec, MlpTask, Objective};
use crate::config::{Config, DataKind};
use crate::data::{self, ImageDataset, Split};
use crate::gpu::Gpu;
use crate::kernels::matmul::Activation;
use crate::tasks::{Sample, Task, TaskFamily};
use crate::{Error, Result};

/// `task.kind = "mlp"`: classifiers F-`task.hidden`-classes on `task.data`, `task.batch` rows.
pub static CLASSIFIER: TaskFamily = TaskFamily {
    name: "mlp",
    about: "MLP image classifiers (softmax cross-entropy) on an image data set",
    hidden: &[20],
    activation: Activation::Sigmoid,
    check: |_| None,
    build: |gpu, cfg, sample, instances| build(gpu, cfg, sample, instances, Objective::Classify),
    kernels: super::kernels,
};

/// `task.kind = "autoencoder"`: F-h-F with the decoder weight tied to the encoder's, h the first
/// of `task.hidden`, on `task.data`.
pub static AUTOENCODER: TaskFamily = TaskFamily {
    name: "autoencoder",
    about: "an autoencoder whose decoder weight is the encoder weight transposed (tied), on images",
    hidden: &[32],
    activation: Activation::Sigmoid,
    check: |t| match &t.hidden {
        Some(h) if h.is_empty() => Some((
            "task.hidden = [] leaves the autoencoder without a code layer".into(),
            "give one hidden width, e.g. hidden = [32]".into(),
        )),
        _ => None,
    },
    build: |gpu, cfg, sample, instances| build(gpu, cfg, sample, instances, Objective::Reconstruct),
    kernels: super::kernels,
};

fn build(
    gpu: &Gpu,
    cfg: &Config,
    sample: Sample,
    instances: usize,
    objective: Objective,
) -> Result<Box<dyn Task>> {
    let seed = cfg.seed ^ sample.salt();
    let (train, test) = images(cfg)?;
    let hidden = cfg.hidden()?;
    let act = cfg.activation()?;
    let spec = match objective {
        Objective::Classify => {
            let mut widths = vec![train.features()];
            widths.extend(&hidden);
            widths.push(train.classes);
            MlpSpec::new(&widths, act)?
        }
        Objective::Reconstruct => {
            let code = hidden.first().copied().unwrap_or(32);
            MlpSpec::tied_autoencoder(train.features(), code, act)?
        }
    };
    // Held-out instances train on the test split's images (and are scored on them).
    let (a, b) = match sample {
        Sample::HeldOut => (test.clone(), test),
        _ => (train, test),
    };
    Ok(Box::new(MlpTask::with_objective(
        gpu,
        (&spec, objective),
        (instances, cfg.task.batch),
        (a, b),
        seed as u32,
    )?))
}

/// The (training, test) images `task.data` names, down-sampled to `task.image_size`.
fn images(cfg: &Config) -> Result<(ImageDataset, ImageDataset)> {
    let t = &cfg.task;
    let (train, test) = match t.data {
        DataKind::Synthetic => data::synthetic_images(cfg.seed ^ 0x696d_6167, 6000, 1000),
        DataKind::FashionMnist | DataKind::Mnist => {
            let dir = match (&t.data_dir, t.data) {
                (Some(d), _) => PathBuf::from(d),
                (None, DataKind::FashionMnist) => PathBuf::from(data::DEFAULT_FASHION_MNIST_DIR),
                (None, _) => {
                    return Err(Error::Config {
                        origin: "task.data_dir".into(),
                        problem: "data = \"mnist\" needs the directory of the MNIST IDX files"
                            .into(),
                        hint: "set task.data_dir (e.g. --set task.data_dir=/path/to/mnist)".into(),
                    })
                }
            };
            (
                data::load_mnist_like(&dir, Split::Train)?,
                data::load_mnist_like(&dir, Split::Test)?,
            )
        }
    };
    if t.image_size < train.width {
        Ok((
            train.downsample(t.image_size)?,
            test.downsample(t.image_size)?,
        ))
    } else {
        Ok((train, test))
    }
}
