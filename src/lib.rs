//! metalearn: meta-train learned optimizers and learned initialisations on any GPU through wgpu.
//!
//! The CPU plans, the GPU computes: model forward/backward passes and optimizer updates are WGSL
//! compute kernels batched over many task instances; the host records whole sequences of them into
//! long compute passes. Every kernel has an `f64` CPU reference in [`mod@reference`](mod@reference).
#![warn(missing_docs)]

pub mod error;
pub use error::{Error, Result};

pub mod config;
pub mod data;
pub mod dist;
pub mod gpu;
pub mod kernels;
pub mod meta;
pub mod optim;
pub mod params;
mod progress;
pub mod reference;
pub mod report;
pub mod run;
pub mod tasks;

pub mod bench;
pub mod demo;
