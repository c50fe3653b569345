//! Data sets: images (the IDX format of MNIST and Fashion-MNIST, generated images, resampling)
//! and text corpora for language models ([`text`]).

pub mod idx;
pub mod synthetic;
pub mod text;

use std::path::{Path, PathBuf};

pub use idx::{parse_idx, read_idx, IdxArray};
pub use synthetic::synthetic_images;

use crate::{Error, Result};

/// Where the Debian package `dataset-fashion-mnist` installs Fashion-MNIST.
pub const DEFAULT_FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";

/// Number of classes in MNIST and Fashion-MNIST.
pub const NUM_CLASSES: usize = 10;

const MNIST_HINT: &str = "Install the Debian package with `apt-get install dataset-fashion-mnist` \
     (it fills /usr/share/datasets/fashion-mnist) or point at a directory holding MNIST/Fashion-MNIST IDX files";

/// Which part of a data set to load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split (`train-*` files; 60000 images in MNIST).
    Train,
    /// The test split (`t10k-*` files; 10000 images in MNIST).
    Test,
}

impl Split {
    /// The file-name prefix of this split: `train` or `t10k`.
    pub fn prefix(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "t10k",
        }
    }
}

/// Labelled greyscale images held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageDataset {
    /// Number of images.
    pub count: usize,
    /// Image width in pixels (columns).
    pub width: usize,
    /// Image height in pixels (rows).
    pub height: usize,
    /// All pixels, `count * height * width`, image after image, each row-major.
    pub pixels: Vec<u8>,
    /// One label per image, each below `classes`.
    pub labels: Vec<u8>,
    /// Number of classes (10 for MNIST-like data).
    pub classes: usize,
}

impl ImageDataset {
    /// Pixels per image: `width * height`.
    pub fn features(&self) -> usize {
        self.width * self.height
    }

    /// The pixels of image `i`, row-major. Panics if `i >= count`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.features();
        &self.pixels[i * n..(i + 1) * n]
    }

    /// The first `n` images (all of them if `n >= count`). Panics if `pixels` or `labels` is
    /// shorter than `count` says.
    pub fn take(&self, n: usize) -> ImageDataset {
        let count = n.min(self.count);
        ImageDataset {
            count,
            pixels: self.pixels[..count * self.features()].to_vec(),
            labels: self.labels[..count].to_vec(),
            ..*self
        }
    }

    /// Resamples every image to `size`×`size` by area averaging.
    ///
    /// Each output pixel is the area-weighted mean of the source pixels its footprint covers,
    /// with fractional weights where the scale is not an integer (28 → 8 covers 3.5 source pixels
    /// per output pixel along each axis), rounded to the nearest value (halves up). The
    /// arithmetic is exact: weights are integers in units of 1/`size` of a source pixel.
    ///
    /// Errors with [`Error::InvalidArgument`] if `size` is 0 or larger than the width or
    /// height, or if the pixel buffer does not match `count`, `width` and `height`.
    pub fn downsample(&self, size: usize) -> Result<ImageDataset> {
        if size == 0 || size > self.width || size > self.height {
            return Err(Error::invalid(format!(
                "downsample size {size} must be between 1 and the image size {}x{}",
                self.width, self.height
            )));
        }
        if self.pixels.len() != self.count * self.features() || self.labels.len() != self.count {
            return Err(Error::invalid(format!(
                "inconsistent data set: {} pixels and {} labels for {} images of {}x{}",
                self.pixels.len(),
                self.labels.len(),
                self.count,
                self.width,
                self.height
            )));
        }
        let rows = box_weights(self.height, size);
        let cols = box_weights(self.width, size);
        // Weights along an axis of length n sum to n per output pixel.
        let total = (self.height * self.width) as u64;
        let mut pixels = Vec::with_capacity(self.count * size * size);
        for i in 0..self.count {
            let image = self.image(i);
            for row in &rows {
                for col in &cols {
                    let sum: u64 = row
                        .iter()
                        .map(|&(y, wy)| {
                            let line = &image[y * self.width..(y + 1) * self.width];
                            wy * col
                                .iter()
                                .map(|&(x, wx)| u64::from(line[x]) * wx)
                                .sum::<u64>()
                        })
                        .sum();
                    // sum <= 255 * total, so the rounded mean fits in a u8.
                    pixels.push(((sum + total / 2) / total) as u8);
                }
            }
        }
        Ok(ImageDataset {
            width: size,
            height: size,
            pixels,
            labels: self.labels.clone(),
            ..*self
        })
    }
}

/// For each of `m` output cells over `n` source cells, the source indices it overlaps and the
/// overlap length in units of 1/`m` of a source cell. Output `o` spans `[o*n, (o+1)*n)` and
/// source `i` spans `[i*m, (i+1)*m)` in those units.
fn box_weights(n: usize, m: usize) -> Vec<Vec<(usize, u64)>> {
    (0..m)
        .map(|o| {
            let (lo, hi) = (o * n, (o + 1) * n);
            (lo / m..hi.div_ceil(m))
                .filter_map(|i| {
                    let overlap = hi.min((i + 1) * m).saturating_sub(lo.max(i * m));
                    (overlap > 0).then_some((i, overlap as u64))
                })
                .collect()
        })
        .collect()
}

/// Loads an image file and a label file in IDX format into a data set.
///
/// The images must be 3-D (count, rows, cols), the labels 1-D (count) with the same count, and
/// every label below [`NUM_CLASSES`]; otherwise this returns [`Error::Data`]. Either file may be
/// gzip-compressed.
pub fn load_idx_pair(images: &Path, labels: &Path) -> Result<ImageDataset> {
    let img = read_idx(images)?;
    let lab = read_idx(labels)?;
    let &[count, height, width] = img.dims.as_slice() else {
        return Err(Error::Data {
            path: images.to_path_buf(),
            problem: format!(
                "expected a 3-D image array (count, rows, cols), found dimensions {:?}",
                img.dims
            ),
            hint: "Pass an images file (idx3-ubyte) as the first argument".into(),
        });
    };
    let &[label_count] = lab.dims.as_slice() else {
        return Err(Error::Data {
            path: labels.to_path_buf(),
            problem: format!(
                "expected a 1-D label array (count), found dimensions {:?}",
                lab.dims
            ),
            hint: "Pass a labels file (idx1-ubyte) as the second argument".into(),
        });
    };
    if label_count != count {
        return Err(Error::Data {
            path: labels.to_path_buf(),
            problem: format!(
                "{label_count} labels but {count} images in {}",
                images.display()
            ),
            hint: "The image and label files belong to different splits or data sets".into(),
        });
    }
    if let Some((i, &label)) = lab
        .data
        .iter()
        .enumerate()
        .find(|&(_, &l)| usize::from(l) >= NUM_CLASSES)
    {
        return Err(Error::Data {
            path: labels.to_path_buf(),
            problem: format!("label {label} of image {i} is out of range 0..{NUM_CLASSES}"),
            hint: "Only 10-class data sets such as MNIST and Fashion-MNIST are supported".into(),
        });
    }
    Ok(ImageDataset {
        count,
        width,
        height,
        pixels: img.data,
        labels: lab.data,
        classes: NUM_CLASSES,
    })
}

/// Loads a split of MNIST or Fashion-MNIST from `dir`, which holds the standard files
/// `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte` and
/// `t10k-labels-idx1-ubyte`, each plain or with a `.gz` suffix (plain preferred when both exist).
///
/// [`DEFAULT_FASHION_MNIST_DIR`] is where the Debian package `dataset-fashion-mnist` puts them.
pub fn load_mnist_like(dir: &Path, split: Split) -> Result<ImageDataset> {
    let prefix = split.prefix();
    let mut tried = Vec::new();
    let mut find = |stem: String| {
        let gz = format!("{stem}.gz");
        let found = [&stem, &gz]
            .into_iter()
            .map(|name| dir.join(name))
            .find(|p| p.is_file());
        if found.is_none() {
            tried.extend([stem, gz]);
        }
        found
    };
    let images = find(format!("{prefix}-images-idx3-ubyte"));
    let labels = find(format!("{prefix}-labels-idx1-ubyte"));
    match (images, labels) {
        (Some(images), Some(labels)) => load_idx_pair(&images, &labels),
        _ => Err(missing_files_error(dir, &tried)),
    }
}

fn missing_files_error(dir: &Path, tried: &[String]) -> Error {
    let problem = if dir.is_dir() {
        format!("no MNIST-format files found; tried {}", tried.join(", "))
    } else {
        format!("directory does not exist; looked for {}", tried.join(", "))
    };
    Error::Data {
        path: PathBuf::from(dir),
        problem,
        hint: MNIST_HINT.into(),
    }
}
