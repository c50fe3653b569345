//! The one error type of metalearn. Every variant names the problem and, where there is one, the fix.

use std::path::PathBuf;

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in metalearn.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No GPU adapter matched the request.
    #[error("no usable GPU adapter: {reason}. {hint}")]
    NoAdapter {
        /// What was looked for and what was found.
        reason: String,
        /// How to fix it.
        hint: String,
    },

    /// The adapter refused to create a device.
    #[error("could not open the GPU device on adapter '{adapter}': {source}")]
    RequestDevice {
        /// Adapter name.
        adapter: String,
        /// The underlying error.
        #[source]
        source: wgpu::RequestDeviceError,
    },

    /// A size exceeds what the adapter allows.
    #[error("{what} is {value}, beyond this adapter's limit of {limit} ({limit_name}); {hint}")]
    LimitExceeded {
        /// What was too large.
        what: String,
        /// Its size.
        value: u64,
        /// The limit.
        limit: u64,
        /// Name of the wgpu limit.
        limit_name: &'static str,
        /// How to fix it.
        hint: String,
    },

    /// A shader failed to compile or a pipeline failed validation.
    #[error("shader '{shader}' (entry '{entry}') failed: {message}")]
    Shader {
        /// Shader file name.
        shader: &'static str,
        /// Entry point.
        entry: &'static str,
        /// The compiler's or validator's message.
        message: String,
    },

    /// The GPU reported an error (validation, out of memory, device lost).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// Reading a buffer back from the GPU failed.
    #[error("GPU readback failed: {0}")]
    Readback(String),

    /// Arguments given to a library call are inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// A data file is missing, truncated or malformed.
    #[error("data file {path}: {problem}. {hint}")]
    Data {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        hint: String,
    },

    /// A configuration is malformed: an unknown key, a wrong type or a value out of range.
    #[error("config {origin}: {problem}. {hint}")]
    Config {
        /// Where the configuration came from (a file, the embedded default, a flag).
        origin: String,
        /// What is wrong.
        problem: String,
        /// How to fix it.
        hint: String,
    },

    /// A checkpoint file is missing, truncated, corrupt or belongs to another setting.
    #[error("checkpoint {path}: {problem}. {hint}")]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// How to fix it.
        hint: String,
    },

    /// A function needs a cargo feature this build of metalearn leaves out.
    #[error(
        "{what} needs metalearn's `{feature}` feature, which this build leaves out; enable it \
         (it is on by default): metalearn = {{ version = \"0.1\", features = [\"{feature}\"] }}"
    )]
    MissingFeature {
        /// What was asked for.
        what: String,
        /// The feature it needs.
        feature: &'static str,
    },

    /// Meta-training stopped because too many consecutive meta-updates were skipped.
    #[error("meta-training diverged: the last {skipped} meta-updates (outer steps {first} to {last}) were all skipped; the last: {cause}. {hint}")]
    Diverged {
        /// Consecutive skipped updates.
        skipped: usize,
        /// First outer step of the run of skips.
        first: usize,
        /// Last outer step of the run of skips.
        last: usize,
        /// What went non-finite at the last one.
        cause: String,
        /// The likely causes and the fix.
        hint: String,
    },

    /// Meta-training was interrupted (SIGINT, SIGTERM or a stop flag) after an outer step.
    #[error("interrupted after outer step {step}; {saved}. {hint}")]
    Interrupted {
        /// Outer steps taken.
        step: usize,
        /// Which checkpoint holds the run now.
        saved: String,
        /// How to continue.
        hint: String,
    },

    /// A run directory is in use by another process.
    #[error("run directory {dir} is in use by another metalearn process (PID {pid}, lock file {lock}). {hint}")]
    Locked {
        /// The run directory.
        dir: PathBuf,
        /// The lock file.
        lock: PathBuf,
        /// The PID written in the lock file by its holder ("unknown" if unreadable).
        pid: String,
        /// How to fix it.
        hint: String,
    },

    /// An I/O error with the path it happened on.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for [`Error::InvalidArgument`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }

    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
