//! The LSTM language model read in chunks of documents: the model ([`spec`]: sizes, layout,
//! equations, initialisation), its f64 reference over a chunk ([`mod@reference`]), its kernels
//! (`lm.wgsl`, [`kernels`]: embedding gather and gradient, the LSTM time step forward and
//! backward), the batched model on the GPU ([`model`]), and LM training and dynamic
//! evaluation on chunk streams ([`train`]). The task that reads documents through it joins the
//! task registry with the document stream.

pub mod dynamic;
pub mod kernels;
pub mod model;
pub mod reference;
pub mod spec;
pub mod train;

pub use dynamic::Update;
pub use model::{GpuLm, Parts};
pub use spec::LmSpec;
pub use train::{DynamicEval, StaticTrainer, TokenChunk};
