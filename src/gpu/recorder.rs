//! The recorder: many dispatches (and copies) into one compute pass, one submission.
//!
//! Parameters of every dispatch go into one uniform buffer, one 256-byte slot each, bound with a
//! dynamic offset; storage bind groups are created once per distinct (pipeline, buffers) and
//! reused. Consecutive dispatches share one compute pass; a copy closes the pass and the next
//! dispatch opens another.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytemuck::Pod;

use crate::gpu::kernel::{Kernel, Pipeline, PARAMS_SLOT};
use crate::gpu::{Gpu, GpuBuffer};
use crate::{Error, Result};

enum Op {
    Dispatch {
        pipeline: Arc<Pipeline>,
        bind_group: usize,
        params_offset: u32,
        grid: [u32; 2],
    },
    Copy {
        src: wgpu::Buffer,
        src_offset: u64,
        dst: wgpu::Buffer,
        dst_offset: u64,
        bytes: u64,
    },
}

/// Environment variable that turns on per-kernel profiling: every dispatch is submitted and
/// waited for on its own, and its wall time added to [`Profiler::profile_report`]. For diagnosis only: it
/// serialises the device.
pub const ENV_PROFILE: &str = "METALEARN_PROFILE";

type ProfileTable = Mutex<HashMap<&'static str, (u64, f64)>>;

fn sorted(table: &ProfileTable) -> Vec<(&'static str, u64, f64)> {
    let mut v: Vec<_> = table
        .lock()
        .map(|t| t.iter().map(|(k, (n, s))| (*k, *n, *s)).collect())
        .unwrap_or_default();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

fn add(table: &ProfileTable, name: &'static str, seconds: f64) {
    if let Ok(mut t) = table.lock() {
        let e = t.entry(name).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += seconds;
    }
}

/// Per-kernel timing of one device ([`Gpu::profiler`]): GPU timestamps switched on and off at
/// run time, and wall-clock profiling under [`ENV_PROFILE`] (read when the device is opened).
#[derive(Debug, Default)]
pub struct Profiler {
    wall: bool,
    gpu_timing: AtomicBool,
    wall_table: ProfileTable,
    gpu_table: ProfileTable,
}

impl Profiler {
    /// A profiler with wall-clock profiling on when [`ENV_PROFILE`] is set (not empty, not 0).
    pub(crate) fn from_env() -> Self {
        Self {
            wall: std::env::var(ENV_PROFILE).is_ok_and(|v| !v.is_empty() && v != "0"),
            ..Self::default()
        }
    }

    /// Per-kernel wall time collected under `METALEARN_PROFILE=1`: (entry point, dispatches,
    /// seconds), most expensive first.
    pub fn profile_report(&self) -> Vec<(&'static str, u64, f64)> {
        sorted(&self.wall_table)
    }

    /// Turn GPU timestamps on or off for this device. While on (and where the device has
    /// `TIMESTAMP_QUERY_INSIDE_PASSES`), every submission writes a timestamp at the start of
    /// each compute pass and after each dispatch, waits for the device and adds each dispatch's
    /// GPU time (from the previous timestamp to its own, so barriers between dispatches count)
    /// to [`Profiler::gpu_time_report`]. The dispatches still run in one submission; only the
    /// wait at the end is added. Submissions of more than 4095 dispatches and passes are not
    /// timed.
    pub fn set_gpu_timing(&self, on: bool) {
        self.gpu_timing.store(on, Ordering::SeqCst);
    }

    /// Per-kernel GPU time collected while [`Profiler::set_gpu_timing`] is on: (entry point,
    /// dispatches, seconds), most expensive first.
    pub fn gpu_time_report(&self) -> Vec<(&'static str, u64, f64)> {
        sorted(&self.gpu_table)
    }

    /// Forget the GPU times collected so far.
    pub fn reset_gpu_time(&self) {
        if let Ok(mut t) = self.gpu_table.lock() {
            t.clear();
        }
    }
}

/// Split `workgroups` over x and y so that neither exceeds `max_per_dim`.
/// Kernels recover the linear index as `wid.x + wid.y * nwg.x` and skip indices past the end.
pub fn split_grid(workgroups: u64, max_per_dim: u32) -> Result<[u32; 2]> {
    let max = u64::from(max_per_dim.max(1));
    if workgroups == 0 {
        return Ok([0, 0]);
    }
    let x = workgroups.min(max);
    let y = workgroups.div_ceil(x);
    if y > max {
        return Err(Error::LimitExceeded {
            what: "workgroups in one dispatch".into(),
            value: workgroups,
            limit: max * max,
            limit_name: "max_compute_workgroups_per_dimension (squared)",
            hint: "use fewer task instances or smaller tensors per dispatch".into(),
        });
    }
    Ok([x as u32, y as u32])
}

/// Records dispatches and copies, then submits them as one command buffer.
pub struct Recorder<'g> {
    gpu: &'g Gpu,
    params: Vec<u8>,
    ops: Vec<Op>,
    bind_groups: Vec<wgpu::BindGroup>,
    bind_group_index: HashMap<(u64, Vec<u64>), usize>,
    dispatches: usize,
}

impl<'g> Recorder<'g> {
    /// An empty recording on `gpu`.
    pub fn new(gpu: &'g Gpu) -> Self {
        Self {
            gpu,
            params: Vec::new(),
            ops: Vec::new(),
            bind_groups: Vec::new(),
            bind_group_index: HashMap::new(),
            dispatches: 0,
        }
    }

    /// The device this recorder records for.
    pub fn gpu(&self) -> &'g Gpu {
        self.gpu
    }

    /// Number of dispatches recorded.
    pub fn dispatches(&self) -> usize {
        self.dispatches
    }

    /// Record one dispatch of `kernel` (specialised by `constants`) over `workgroups` workgroups,
    /// binding `buffers` at `@group(0)` in order and `params` at `@group(1)`.
    pub fn dispatch<P: Pod>(
        &mut self,
        kernel: &'static Kernel,
        constants: &[(&'static str, f64)],
        buffers: &[&GpuBuffer],
        params: &P,
        workgroups: u64,
    ) -> Result<()> {
        if std::mem::size_of::<P>() != kernel.params_size {
            return Err(Error::invalid(format!(
                "kernel '{}' takes {} bytes of parameters, got {}",
                kernel.entry,
                kernel.params_size,
                std::mem::size_of::<P>()
            )));
        }
        if buffers.len() != kernel.bindings.len() {
            return Err(Error::invalid(format!(
                "kernel '{}' binds {} buffers, got {}",
                kernel.entry,
                kernel.bindings.len(),
                buffers.len()
            )));
        }
        let grid = split_grid(
            workgroups,
            self.gpu.limits().max_compute_workgroups_per_dimension,
        )?;
        if workgroups == 0 {
            return Ok(());
        }
        let pipeline = self.gpu.pipeline(kernel, constants)?;
        let key = (
            pipeline.id,
            buffers.iter().map(|b| b.id).collect::<Vec<_>>(),
        );
        let bind_group = match self.bind_group_index.get(&key) {
            Some(&i) => i,
            None => {
                let entries: Vec<wgpu::BindGroupEntry> = buffers
                    .iter()
                    .enumerate()
                    .map(|(i, b)| wgpu::BindGroupEntry {
                        binding: i as u32,
                        resource: b.buffer.as_entire_binding(),
                    })
                    .collect();
                let bg = self
                    .gpu
                    .device
                    .create_bind_group(&wgpu::BindGroupDescriptor {
                        label: Some(kernel.entry),
                        layout: &pipeline.layout0,
                        entries: &entries,
                    });
                self.bind_groups.push(bg);
                let i = self.bind_groups.len() - 1;
                self.bind_group_index.insert(key, i);
                i
            }
        };
        let params_offset = u32::try_from(self.params.len())
            .map_err(|_| Error::invalid("too many dispatches in one recording"))?;
        self.params.extend_from_slice(bytemuck::bytes_of(params));
        self.params.resize(
            self.params.len() + PARAMS_SLOT as usize - std::mem::size_of::<P>(),
            0,
        );
        self.ops.push(Op::Dispatch {
            pipeline,
            bind_group,
            params_offset,
            grid,
        });
        self.dispatches += 1;
        Ok(())
    }

    /// Record a copy of `len` elements from `src[src_offset..]` to `dst[dst_offset..]`.
    pub fn copy(
        &mut self,
        src: &GpuBuffer,
        src_offset: usize,
        dst: &GpuBuffer,
        dst_offset: usize,
        len: usize,
    ) -> Result<()> {
        if src_offset + len > src.len() || dst_offset + len > dst.len() {
            return Err(Error::invalid(format!(
                "copy of {len} elements from {src_offset} (of {}) to {dst_offset} (of {}) is out of bounds",
                src.len(),
                dst.len()
            )));
        }
        if src.id == dst.id {
            return Err(Error::invalid("copy within one buffer is not allowed"));
        }
        if len > 0 {
            self.ops.push(Op::Copy {
                src: src.buffer.clone(),
                src_offset: src_offset as u64 * 4,
                dst: dst.buffer.clone(),
                dst_offset: dst_offset as u64 * 4,
                bytes: len as u64 * 4,
            });
        }
        Ok(())
    }

    /// Encode `ops`: copies as they come, each run of consecutive dispatches in one compute pass.
    ///
    /// With `stamps`, a timestamp is written at the start of each pass and after each dispatch,
    /// at consecutive indices from 0; the entry points of the dispatches are returned in order.
    fn encode(
        &self,
        enc: &mut wgpu::CommandEncoder,
        ops: &[Op],
        params_bg: Option<&wgpu::BindGroup>,
        stamps: Option<&wgpu::QuerySet>,
    ) -> Vec<Option<&'static str>> {
        let mut names = Vec::new();
        let mut i = 0;
        while i < ops.len() {
            match &ops[i] {
                Op::Copy {
                    src,
                    src_offset,
                    dst,
                    dst_offset,
                    bytes,
                } => {
                    enc.copy_buffer_to_buffer(src, *src_offset, dst, *dst_offset, *bytes);
                    i += 1;
                }
                Op::Dispatch { .. } => {
                    let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("metalearn pass"),
                        timestamp_writes: None,
                    });
                    if let Some(q) = stamps {
                        pass.write_timestamp(q, names.len() as u32);
                        names.push(None);
                    }
                    while let Some(Op::Dispatch {
                        pipeline,
                        bind_group,
                        params_offset,
                        grid,
                    }) = ops.get(i)
                    {
                        pass.set_pipeline(&pipeline.pipeline);
                        pass.set_bind_group(0, &self.bind_groups[*bind_group], &[]);
                        pass.set_bind_group(1, params_bg, &[*params_offset]);
                        pass.dispatch_workgroups(grid[0], grid[1], 1);
                        if let Some(q) = stamps {
                            pass.write_timestamp(q, names.len() as u32);
                            names.push(Some(pipeline.entry));
                        }
                        i += 1;
                    }
                }
            }
        }
        names
    }

    /// Timestamps to write for `ops`, when GPU timing is on and the device can: one per pass
    /// start and one per dispatch.
    fn stamp_count(&self) -> Option<u32> {
        let features = self.gpu.props().features;
        if !self.gpu.profiler().gpu_timing.load(Ordering::SeqCst)
            || !features.contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
        {
            return None;
        }
        let mut n = 0usize;
        let mut in_pass = false;
        for op in &self.ops {
            match op {
                Op::Dispatch { .. } => {
                    n += if in_pass { 1 } else { 2 };
                    in_pass = true;
                }
                Op::Copy { .. } => in_pass = false,
            }
        }
        u32::try_from(n)
            .ok()
            .filter(|&n| n > 0 && n < wgpu::QUERY_SET_MAX_QUERIES)
    }

    /// Encode everything recorded and submit it. Does not wait.
    pub fn submit(self) -> Result<()> {
        let gpu = self.gpu;
        let dev = &gpu.device;
        let params_buf = if self.params.is_empty() {
            None
        } else {
            let b = dev.create_buffer(&wgpu::BufferDescriptor {
                label: Some("dispatch params"),
                size: self.params.len() as u64,
                usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            });
            gpu.queue.write_buffer(&b, 0, &self.params);
            Some(b)
        };
        let params_bg = match &params_buf {
            Some(b) => Some(dev.create_bind_group(&wgpu::BindGroupDescriptor {
                label: Some("dispatch params"),
                layout: &gpu.params_layout()?,
                entries: &[wgpu::BindGroupEntry {
                    binding: 0,
                    resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                        buffer: b,
                        offset: 0,
                        size: wgpu::BufferSize::new(PARAMS_SLOT),
                    }),
                }],
            })),
            None => None,
        };
        if gpu.profiler().wall {
            for i in 0..self.ops.len() {
                let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("metalearn profiled op"),
                });
                self.encode(&mut enc, &self.ops[i..=i], params_bg.as_ref(), None);
                let name = match &self.ops[i] {
                    Op::Copy { .. } => "copy",
                    Op::Dispatch { pipeline, .. } => pipeline.entry,
                };
                let t = Instant::now();
                gpu.queue.submit([enc.finish()]);
                gpu.wait()?;
                add(&gpu.profiler().wall_table, name, t.elapsed().as_secs_f64());
            }
            return gpu.check_errors();
        }
        let mut enc = dev.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("metalearn recording"),
        });
        let Some(count) = self.stamp_count() else {
            self.encode(&mut enc, &self.ops, params_bg.as_ref(), None);
            gpu.queue.submit([enc.finish()]);
            return gpu.check_errors();
        };
        let query = dev.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("metalearn timestamps"),
            ty: wgpu::QueryType::Timestamp,
            count,
        });
        let bytes = u64::from(count) * 8;
        let resolve = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps resolve"),
            size: bytes,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = dev.create_buffer(&wgpu::BufferDescriptor {
            label: Some("timestamps readback"),
            size: bytes,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let names = self.encode(&mut enc, &self.ops, params_bg.as_ref(), Some(&query));
        enc.resolve_query_set(&query, 0..count, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, bytes);
        gpu.queue.submit([enc.finish()]);
        staging.map_async(wgpu::MapMode::Read, .., |_| {});
        gpu.wait()?;
        let ticks: Vec<u64> = {
            let view = staging
                .slice(..)
                .get_mapped_range()
                .map_err(|e| Error::Readback(e.to_string()))?;
            bytemuck::pod_collect_to_vec(&view)
        };
        staging.unmap();
        let period = f64::from(gpu.queue.get_timestamp_period()) * 1e-9;
        if let Ok(mut tab) = gpu.profiler().gpu_table.lock() {
            for (k, name) in names.iter().enumerate() {
                if let (Some(name), Some(&prev)) =
                    (name, k.checked_sub(1).and_then(|j| ticks.get(j)))
                {
                    let e = tab.entry(name).or_insert((0, 0.0));
                    e.0 += 1;
                    e.1 += ticks[k].saturating_sub(prev) as f64 * period;
                }
            }
        }
        gpu.check_errors()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_split_covers_every_workgroup_within_limits() {
        for (n, max) in [
            (1u64, 65535u32),
            (65535, 65535),
            (65536, 65535),
            (10_000_000, 65535),
            (7, 3),
        ] {
            let [x, y] = split_grid(n, max).expect("fits");
            assert!(x <= max && y <= max);
            assert!(u64::from(x) * u64::from(y) >= n);
            // No whole row of workgroups is wasted.
            assert!(u64::from(x) * u64::from(y - 1) < n);
        }
        assert!(split_grid(65535u64 * 65535 + 1, 65535).is_err());
    }
}
