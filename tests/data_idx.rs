//! Integration tests for the IDX reader and the image data sets, on small generated files.

mod common;

use common::temp::TempDir;
use std::io::Write;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;
use metalearn::data::{
    load_idx_pair, load_mnist_like, read_idx, ImageDataset, Split, DEFAULT_FASHION_MNIST_DIR,
};
use metalearn::Error;

/// The bytes of an IDX file: header with `type_code` and `dims`, then `data` as given (which
/// may deliberately disagree with `dims`).
fn idx_bytes(type_code: u8, dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, type_code, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(data);
    out
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) -> PathBuf {
    std::fs::write(path, bytes).unwrap();
    path.to_path_buf()
}

/// Writes a u8 IDX file, gzip-compressed if `gz`.
fn write_idx(path: &Path, dims: &[u32], data: &[u8], gz: bool) -> PathBuf {
    let bytes = idx_bytes(0x08, dims, data);
    write(path, &if gz { gzip(&bytes) } else { bytes })
}

/// Asserts a `Data` error whose message contains every one of `needles`.
fn assert_data_error(result: metalearn::Result<impl std::fmt::Debug>, needles: &[&str]) {
    match result {
        Err(e @ Error::Data { .. }) => {
            let msg = e.to_string();
            for n in needles {
                assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
            }
        }
        other => panic!("expected Error::Data containing {needles:?}, got {other:?}"),
    }
}

fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i * 37 % 256) as u8).collect()
}

#[test]
fn round_trip_plain_and_gz() {
    let dir = TempDir::new("roundtrip");
    let data = pattern(2 * 3 * 4);
    for gz in [false, true] {
        let path = write_idx(&dir.path(&format!("a{gz}")), &[2, 3, 4], &data, gz);
        let arr = read_idx(&path).unwrap();
        assert_eq!(arr.dims, vec![2, 3, 4]);
        assert_eq!(arr.data, data);
    }
}

#[test]
fn gz_detected_by_content_not_name() {
    let dir = TempDir::new("gzname");
    let data = pattern(5);
    // Compressed without `.gz`, and plain with `.gz`: both read correctly.
    let a = write_idx(&dir.path("compressed"), &[5], &data, true);
    let b = write_idx(&dir.path("plain.gz"), &[5], &data, false);
    assert_eq!(read_idx(&a).unwrap().data, data);
    assert_eq!(read_idx(&b).unwrap().data, data);
}

#[test]
fn pair_loading() {
    let dir = TempDir::new("pair");
    let pixels = pattern(3 * 2 * 4);
    let images = write_idx(&dir.path("img"), &[3, 2, 4], &pixels, false);
    let labels = write_idx(&dir.path("lab.gz"), &[3], &[7, 0, 9], true);
    let ds = load_idx_pair(&images, &labels).unwrap();
    assert_eq!((ds.count, ds.height, ds.width, ds.classes), (3, 2, 4, 10));
    assert_eq!(ds.features(), 8);
    assert_eq!(ds.pixels, pixels);
    assert_eq!(ds.labels, vec![7, 0, 9]);
    assert_eq!(ds.image(1), &pixels[8..16]);

    let first = ds.take(2);
    assert_eq!((first.count, first.labels.as_slice()), (2, &[7, 0][..]));
    assert_eq!(first.pixels, pixels[..16]);
    assert_eq!(ds.take(99), ds);
}

#[test]
fn mnist_like_dir() {
    let dir = TempDir::new("mnistlike");
    // Train split plain, test split gzip, as Debian ships it.
    write_idx(
        &dir.path("train-images-idx3-ubyte"),
        &[4, 3, 3],
        &pattern(36),
        false,
    );
    write_idx(
        &dir.path("train-labels-idx1-ubyte"),
        &[4],
        &[1, 2, 3, 4],
        false,
    );
    write_idx(
        &dir.path("t10k-images-idx3-ubyte.gz"),
        &[2, 3, 3],
        &pattern(18),
        true,
    );
    write_idx(&dir.path("t10k-labels-idx1-ubyte.gz"), &[2], &[5, 6], true);

    let train = load_mnist_like(&dir.0, Split::Train).unwrap();
    assert_eq!(
        (train.count, train.labels.as_slice()),
        (4, &[1, 2, 3, 4][..])
    );
    let test = load_mnist_like(&dir.0, Split::Test).unwrap();
    assert_eq!((test.count, test.width, test.height), (2, 3, 3));
    assert_eq!(test.pixels, pattern(18));
}

#[test]
fn mnist_like_missing_files_lists_names_and_fix() {
    let dir = TempDir::new("mnistempty");
    let result = load_mnist_like(&dir.0, Split::Test);
    assert_data_error(
        result,
        &[
            "t10k-images-idx3-ubyte",
            "t10k-images-idx3-ubyte.gz",
            "t10k-labels-idx1-ubyte.gz",
            "apt-get install dataset-fashion-mnist",
        ],
    );
    let result = load_mnist_like(&dir.path("nonexistent"), Split::Train);
    assert_data_error(result, &["does not exist", "train-labels-idx1-ubyte"]);
}

#[test]
fn truncated_data() {
    let dir = TempDir::new("trunc");
    let path = write(&dir.path("t"), &idx_bytes(0x08, &[2, 5], &pattern(7)));
    assert_data_error(read_idx(&path), &["truncated", "need 10 bytes", "found 7"]);
    // Truncated inside the dimension sizes.
    let mut bytes = idx_bytes(0x08, &[2, 5], &[]);
    bytes.truncate(6);
    let path = write(&dir.path("h"), &bytes);
    assert_data_error(read_idx(&path), &["truncated header"]);
}

#[test]
fn wrong_magic() {
    let dir = TempDir::new("magic");
    let mut bytes = idx_bytes(0x08, &[3], &[1, 2, 3]);
    bytes[0] = 0x50;
    let path = write(&dir.path("m"), &bytes);
    assert_data_error(read_idx(&path), &["wrong magic", "50 00 08 01"]);
    let path = write(&dir.path("short"), &[0, 0]);
    assert_data_error(read_idx(&path), &["too short"]);
}

#[test]
fn unsupported_type() {
    let dir = TempDir::new("type");
    let path = write(&dir.path("f"), &idx_bytes(0x0D, &[1], &[0; 4]));
    assert_data_error(read_idx(&path), &["unsupported IDX type code 0x0d", "f32"]);
}

#[test]
fn zero_and_absurd_dims() {
    let dir = TempDir::new("dims");
    let path = write(&dir.path("z"), &idx_bytes(0x08, &[], &[1, 2]));
    assert_data_error(read_idx(&path), &["zero dimensions"]);
    let path = write(&dir.path("z1"), &idx_bytes(0x08, &[3, 0], &[]));
    assert_data_error(read_idx(&path), &["dimension 1", "is zero"]);
    // 2^32-1 cubed overflows usize; 65536^2 is 4 GiB: both refused before allocating.
    let path = write(&dir.path("o"), &idx_bytes(0x08, &[u32::MAX; 3], &[1]));
    assert_data_error(read_idx(&path), &["1 GiB limit"]);
    let path = write(&dir.path("big"), &idx_bytes(0x08, &[65536, 65536], &[1]));
    assert_data_error(read_idx(&path), &["1 GiB limit"]);
}

#[test]
fn trailing_bytes() {
    let dir = TempDir::new("trail");
    let path = write(&dir.path("t"), &idx_bytes(0x08, &[2, 2], &pattern(7)));
    assert_data_error(read_idx(&path), &["3 trailing bytes", "4 data bytes"]);
}

#[test]
fn mismatched_counts() {
    let dir = TempDir::new("counts");
    let images = write_idx(&dir.path("i"), &[3, 2, 2], &pattern(12), false);
    let labels = write_idx(&dir.path("l"), &[2], &[1, 2], false);
    assert_data_error(load_idx_pair(&images, &labels), &["2 labels but 3 images"]);
    // Wrong ranks: labels as images, images as labels.
    assert_data_error(
        load_idx_pair(&labels, &labels),
        &["expected a 3-D image array"],
    );
    assert_data_error(
        load_idx_pair(&images, &images),
        &["expected a 1-D label array"],
    );
}

#[test]
fn bad_label() {
    let dir = TempDir::new("label");
    let images = write_idx(&dir.path("i"), &[3, 1, 1], &[0, 1, 2], false);
    let labels = write_idx(&dir.path("l"), &[3], &[9, 3, 12], false);
    assert_data_error(
        load_idx_pair(&images, &labels),
        &["label 12 of image 2", "out of range"],
    );
}

#[test]
fn corrupt_gzip() {
    let dir = TempDir::new("gz");
    let good = gzip(&idx_bytes(0x08, &[64], &pattern(64)));
    // Damage the deflate payload (past the 10-byte gzip header).
    let mut bad = good.clone();
    for b in &mut bad[12..20] {
        *b ^= 0xa5;
    }
    let path = write(&dir.path("bad.gz"), &bad);
    assert_data_error(read_idx(&path), &["corrupt gzip stream"]);
    // A stream cut off in the middle.
    let path = write(&dir.path("cut.gz"), &good[..good.len() / 2]);
    assert_data_error(read_idx(&path), &["corrupt gzip stream"]);
}

#[test]
fn missing_file() {
    let dir = TempDir::new("missing");
    let path = dir.path("absent-idx1-ubyte");
    match read_idx(&path) {
        Err(e @ Error::Io { .. }) => {
            let Error::Io { path: p, source } = &e else {
                unreachable!()
            };
            assert_eq!(p, &path);
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound);
            let msg = e.to_string();
            assert!(msg.contains("absent-idx1-ubyte"), "{msg}");
            if !Path::new(DEFAULT_FASHION_MNIST_DIR).is_dir() {
                assert!(
                    msg.contains("apt-get install dataset-fashion-mnist"),
                    "{msg}"
                );
            }
        }
        other => panic!("expected Error::Io, got {other:?}"),
    }
}

fn one_image(width: usize, height: usize, pixels: Vec<u8>) -> ImageDataset {
    ImageDataset {
        count: 1,
        width,
        height,
        pixels,
        labels: vec![3],
        classes: 10,
    }
}

#[test]
fn downsample_exact_average_4_to_2() {
    // Each 2x2 block averages exactly: e.g. top-left (0 + 4 + 16 + 20) / 4 = 10.
    let src = one_image(4, 4, (0..16).map(|i| 4 * i).collect());
    let out = src.downsample(2).unwrap();
    assert_eq!((out.width, out.height, out.count), (2, 2, 1));
    assert_eq!(out.pixels, vec![10, 18, 42, 50]);
    assert_eq!(out.labels, vec![3]);
}

#[test]
fn downsample_fractional_3_to_2() {
    // 3 -> 2: each output pixel spans 1.5 source pixels per axis. Output 0 covers source 0
    // fully and half of source 1; output 1 covers half of source 1 and all of source 2. In
    // halves the axis weights are [2, 1, 0] and [0, 1, 2]; a 2D weight is their product and
    // every output's weights sum to 3 * 3 = 9. For the source
    //     a b c     9 18 27
    //     d e f  = 36 45 54
    //     g h i    63 72 81
    // top-left     = (4a + 2b + 2d + e) / 9 = (36 + 36 + 72 + 45) / 9   = 189 / 9 = 21,
    // top-right    = (2b + 4c + e + 2f) / 9 = (36 + 108 + 45 + 108) / 9 = 297 / 9 = 33,
    // bottom-left  = (2d + e + 4g + 2h) / 9 = (72 + 45 + 252 + 144) / 9 = 513 / 9 = 57,
    // bottom-right = (e + 2f + 2h + 4i) / 9 = (45 + 108 + 144 + 324) / 9 = 621 / 9 = 69.
    let src = one_image(3, 3, vec![9, 18, 27, 36, 45, 54, 63, 72, 81]);
    assert_eq!(src.downsample(2).unwrap().pixels, vec![21, 33, 57, 69]);

    // Rounding: a lone corner a = 200 gives 4 * 200 / 9 = 88.9 -> 89 top-left, 0 elsewhere;
    // a lone centre e = 200 gives 200 / 9 = 22.2 -> 22 in all four outputs.
    let corner = one_image(3, 3, vec![200, 0, 0, 0, 0, 0, 0, 0, 0]);
    assert_eq!(corner.downsample(2).unwrap().pixels, vec![89, 0, 0, 0]);
    let centre = one_image(3, 3, vec![0, 0, 0, 0, 200, 0, 0, 0, 0]);
    assert_eq!(centre.downsample(2).unwrap().pixels, vec![22; 4]);
}

#[test]
fn downsample_constant_stays_constant_28_to_8() {
    for c in [0u8, 1, 127, 128, 254, 255] {
        let src = one_image(28, 28, vec![c; 28 * 28]);
        let out = src.downsample(8).unwrap();
        assert_eq!(out.pixels, vec![c; 64], "constant {c}");
    }
    // Identity when the size is unchanged.
    let src = one_image(28, 28, pattern(28 * 28));
    assert_eq!(src.downsample(28).unwrap(), src);
}

#[test]
fn downsample_rejects_bad_size() {
    let src = one_image(4, 4, vec![0; 16]);
    for size in [0, 5] {
        match src.downsample(size) {
            Err(Error::InvalidArgument(msg)) => assert!(msg.contains("downsample size"), "{msg}"),
            other => panic!("expected InvalidArgument for size {size}, got {other:?}"),
        }
    }
}

#[test]
fn real_fashion_mnist_test_split() {
    let dir = Path::new(DEFAULT_FASHION_MNIST_DIR);
    if !dir.is_dir() {
        eprintln!(
            "skipping: {DEFAULT_FASHION_MNIST_DIR} is absent (apt-get install dataset-fashion-mnist)"
        );
        return;
    }
    let ds = load_mnist_like(dir, Split::Test).unwrap();
    assert_eq!((ds.count, ds.height, ds.width), (10000, 28, 28));
    assert_eq!(ds.pixels.len(), 10000 * 28 * 28);
    assert!(ds.labels.iter().all(|&l| l < 10));
    let small = ds.take(100).downsample(8).unwrap();
    assert_eq!((small.count, small.features()), (100, 64));
}
