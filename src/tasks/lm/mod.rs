//! The LSTM language model read in chunks of documents: the model ([`spec`]: sizes, layout,
//! equations, initialisation), its f64 reference over a chunk ([`mod@reference`]), its kernels
//! (`lm.wgsl`, [`kernels`]: embedding gather and gradient, the LSTM time step forward and
//! backward), the batched model on the GPU ([`model`]), and LM training and dynamic
//! evaluation on chunk streams ([`train`]), and the dynamical language model as a meta-training
//! task ([`meta`], `task.kind = "dynlm"`).

pub mod dynamic;
pub mod kernels;
pub mod meta;
pub mod model;
pub mod reference;
pub mod spec;
pub mod train;

pub use dynamic::Update;
pub use meta::DynLmTask;
pub use model::{GpuLm, Parts};
pub use spec::LmSpec;
pub use train::{DynamicEval, StaticTrainer, TokenChunk};
