//! Generated class-conditional images: a stand-in for Fashion-MNIST that needs no files.

use rand::{Rng, SeedableRng};

use super::ImageDataset;

/// A synthetic stand-in for Fashion-MNIST (used when no IDX files are found): 10 random
/// 28×28 prototypes, each example a prototype plus noise; returns (train, test) drawn from the
/// same prototypes.
pub fn synthetic_images(seed: u64, train: usize, test: usize) -> (ImageDataset, ImageDataset) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let f = 28 * 28;
    let protos: Vec<u8> = (0..10 * f).map(|_| rng.random()).collect();
    let mut draw = |count: usize| {
        let labels: Vec<u8> = (0..count).map(|_| rng.random_range(0..10)).collect();
        let pixels = labels
            .iter()
            .flat_map(|&l| {
                let p = &protos[l as usize * f..(l as usize + 1) * f];
                p.iter()
                    .map(|&v| (i32::from(v) + rng.random_range(-100..=100)).clamp(0, 255) as u8)
                    .collect::<Vec<_>>()
            })
            .collect();
        ImageDataset {
            count,
            width: 28,
            height: 28,
            pixels,
            labels,
            classes: 10,
        }
    };
    let a = draw(train);
    let b = draw(test);
    (a, b)
}
