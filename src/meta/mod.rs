//! Meta-training: the unroll, the checkpointed meta-backward, evaluation.

pub mod estimator;
pub mod eval;
pub mod export;
pub mod meta_optim;
pub mod plan;
pub mod save;
pub mod settings;
mod sizing;
pub mod tensor_file;
pub mod trainer;
mod unroll;
mod validate;

pub use estimator::{EsConfig, Estimator};
pub use eval::{evaluate, evaluate_with_held_out, log_grid, tune_learning_rate, Curves};
pub use export::{
    export_first_outer_step, export_outer_step, ExportOptions, ExportSummary, ExportTask,
};
pub use meta_optim::MetaAdam;
pub use plan::{Action, Plan, Schedule};
pub use save::{write_atomically, Checkpoint, RunDir, RunLock};
pub use settings::{
    FinalBatch, LossWeights, MemoryReport, MetaConfig, MetaGradient, NonFinite, Skip, StepReport,
};
pub(crate) use sizing::chunks_needed;
pub use trainer::{MetaTrainer, TrainerState};
