//! The GPU runtime: adapter choice, device properties, pipeline cache, buffers, the recorder
//! (many dispatches in one compute pass) and readback.

mod buffer;
mod context;
pub mod kernel;
mod recorder;

pub use buffer::GpuBuffer;
pub use context::{
    adapter_rank, parse_backends, DeviceProps, Gpu, GpuOptions, ENV_ADAPTER_NAME, ENV_BACKEND,
    MIN_BUFFER_CAP,
};
pub use kernel::{read, write, Access, Binding, Kernel, Shader, PRELUDE};
pub use recorder::{split_grid, Profiler, Recorder, ENV_PROFILE};
