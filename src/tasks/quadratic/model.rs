//! The L2L quadratic task family: f(θ) = ‖Wθ − y‖², W ∈ ℝ^{d×d}, y ∈ ℝ^d, W, y ~ N(0, 1) per
//! instance (d = 10 by default), θ₀ ~ N(0, 0.01²).

use rand::Rng;
use rand_distr::{Distribution, Normal};

use super::kernels::{quadratic, quadratic_hvp, MAX_DIM};
use crate::gpu::{Gpu, GpuBuffer, Recorder};
use crate::kernels::Batched;
use crate::{Error, Result};

/// Default dimension (L2L).
pub const DEFAULT_DIM: usize = 10;

/// A batch of quadratic instances: per instance W (d×d row-major) then y (d).
#[derive(Clone, Debug, PartialEq)]
pub struct Quadratics {
    /// Dimension d.
    pub dim: usize,
    /// Number of instances.
    pub instances: usize,
    /// `instances × (d² + d)` floats.
    pub data: Vec<f32>,
}

impl Quadratics {
    /// Draw `instances` quadratics of dimension `dim` with W, y ~ N(0, 1).
    pub fn sample(rng: &mut impl Rng, dim: usize, instances: usize) -> Result<Self> {
        if dim == 0 || dim > MAX_DIM {
            return Err(Error::invalid(format!(
                "quadratic dimension {dim} is outside 1..={MAX_DIM}"
            )));
        }
        if instances == 0 {
            return Err(Error::invalid(
                "a quadratic task needs at least one instance",
            ));
        }
        let normal = Normal::new(0.0f32, 1.0).map_err(|e| Error::invalid(e.to_string()))?;
        let data = (0..instances * (dim * dim + dim))
            .map(|_| normal.sample(rng))
            .collect();
        Ok(Self {
            dim,
            instances,
            data,
        })
    }

    /// Initial parameters θ₀ ~ N(0, std²) for every instance (`instances × d`).
    pub fn init(&self, rng: &mut impl Rng, std: f32) -> Result<Vec<f32>> {
        let normal = Normal::new(0.0f32, std).map_err(|e| Error::invalid(e.to_string()))?;
        Ok((0..self.instances * self.dim)
            .map(|_| normal.sample(rng))
            .collect())
    }

    /// `copies` copies of the instances, copy c of instance n at c·N + n.
    pub fn tiled(&self, copies: usize) -> Self {
        Self {
            dim: self.dim,
            instances: self.instances * copies,
            data: self.data.repeat(copies),
        }
    }

    /// (W, y) of instance n.
    pub fn instance(&self, n: usize) -> (&[f32], &[f32]) {
        let d = self.dim;
        let s = &self.data[n * (d * d + d)..(n + 1) * (d * d + d)];
        s.split_at(d * d)
    }
}

/// Quadratic instances on the GPU.
#[derive(Debug)]
pub struct GpuQuadratic {
    dim: usize,
    instances: usize,
    data: GpuBuffer,
}

impl GpuQuadratic {
    /// Upload the instances' W and y.
    pub fn upload(gpu: &Gpu, q: &Quadratics) -> Result<Self> {
        Ok(Self {
            dim: q.dim,
            instances: q.instances,
            data: gpu.buffer_from("quadratic data", &q.data)?,
        })
    }

    /// Dimension d.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of instances.
    pub fn instances(&self) -> usize {
        self.instances
    }

    /// The buffer of W and y (instances × (d² + d)).
    pub fn data(&self) -> &GpuBuffer {
        &self.data
    }

    /// Record loss `loss[loss_off + n]` and gradient `grad` at parameters `theta`.
    pub fn record_loss_grad(
        &self,
        rec: &mut Recorder,
        theta: Batched,
        grad: Batched,
        loss: &GpuBuffer,
        loss_off: usize,
    ) -> Result<()> {
        quadratic(
            rec,
            self.dim,
            self.instances,
            theta,
            &self.data,
            grad,
            crate::kernels::vec::View::new(loss, loss_off),
        )
    }

    /// Record the Hessian-vector product `out = 2 Wᵀ(W v)` of every instance (the Hessian does
    /// not depend on θ).
    pub fn record_hvp(&self, rec: &mut Recorder, v: Batched, out: Batched) -> Result<()> {
        quadratic_hvp(rec, self.dim, self.instances, v, &self.data, out)
    }
}
