//! Meta-training: the unroll, the checkpointed meta-backward, evaluation.

pub mod checkpoint;
pub mod eval;
pub mod export;
pub mod trainer;

pub use checkpoint::{Action, Plan, Schedule};
pub use eval::{evaluate, log_grid, tune_learning_rate, Curves};
pub use export::{export_outer_step, write_atomically, ExportSummary};
pub use trainer::{
    FinalBatch, LossWeights, MemoryReport, MetaConfig, MetaGradient, MetaTrainer, NonFinite,
    StepReport,
};
