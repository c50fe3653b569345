//! The LSTM language model read in chunks of documents: the model ([`spec`]: sizes, layout,
//! equations, initialisation) and its f64 reference over a chunk ([`mod@reference`]). The GPU
//! kernels and the task built on them come next to these files.

pub mod reference;
pub mod spec;

pub use spec::LmSpec;
