//! Optimizee models as batched GPU kernels: each instance has its own θ and its own data, and one
//! dispatch serves all instances.

pub mod mlp;
pub mod quadratic;

pub use mlp::{GpuMlp, Loss, MlpSpec};
pub use quadratic::{GpuQuadratic, Quadratics};
