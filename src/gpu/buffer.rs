//! Storage buffers of 4-byte words (f32 or u32), uploads, and readback through staging buffers.

use bytemuck::Pod;

use crate::gpu::Gpu;
use crate::{Error, Result};

/// A storage buffer of `len` 4-byte elements (f32 or u32), usable by every kernel and by copies.
#[derive(Clone, Debug)]
pub struct GpuBuffer {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) id: u64,
    len: usize,
}

impl GpuBuffer {
    /// Number of 4-byte elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no element.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Size in bytes.
    pub fn bytes(&self) -> u64 {
        self.len as u64 * 4
    }

    /// The raw wgpu buffer, for embedding in a larger wgpu program.
    pub fn raw(&self) -> &wgpu::Buffer {
        &self.buffer
    }
}

fn check_word<T: Pod>() -> Result<()> {
    if std::mem::size_of::<T>() != 4 {
        return Err(Error::invalid(format!(
            "GPU buffers hold 4-byte elements, got {}-byte {}",
            std::mem::size_of::<T>(),
            std::any::type_name::<T>()
        )));
    }
    Ok(())
}

impl Gpu {
    /// A zero-filled storage buffer of `len` 4-byte elements. Sizes are checked against the
    /// adapter's limits first.
    pub fn buffer(&self, label: &str, len: usize) -> Result<GpuBuffer> {
        // Zero-length bindings are invalid: keep at least one element.
        let bytes = (len.max(1) as u64) * 4;
        self.check_storage_size(label, bytes)?;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Ok(GpuBuffer {
            buffer,
            id: self.next_id(),
            len,
        })
    }

    /// A storage buffer holding `data`.
    pub fn buffer_from<T: Pod>(&self, label: &str, data: &[T]) -> Result<GpuBuffer> {
        check_word::<T>()?;
        let b = self.buffer(label, data.len())?;
        self.write(&b, 0, data)?;
        Ok(b)
    }

    /// Write `data` into `buf` starting at element `offset` (queued; takes effect before the
    /// next submission).
    pub fn write<T: Pod>(&self, buf: &GpuBuffer, offset: usize, data: &[T]) -> Result<()> {
        check_word::<T>()?;
        if offset + data.len() > buf.len {
            return Err(Error::invalid(format!(
                "write of {} elements at {offset} overruns a buffer of {}",
                data.len(),
                buf.len
            )));
        }
        if !data.is_empty() {
            self.queue
                .write_buffer(&buf.buffer, offset as u64 * 4, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// Fill the whole buffer with one f32 value (e.g. NaN to poison outputs before a test).
    pub fn fill(&self, buf: &GpuBuffer, value: f32) -> Result<()> {
        self.write(buf, 0, &vec![value; buf.len])
    }

    /// Read a whole buffer back, blocking until the GPU has finished all submitted work.
    pub fn read<T: Pod>(&self, buf: &GpuBuffer) -> Result<Vec<T>> {
        self.read_range(buf, 0, buf.len)
    }

    /// Read `len` elements from element `offset`, blocking.
    pub fn read_range<T: Pod>(&self, buf: &GpuBuffer, offset: usize, len: usize) -> Result<Vec<T>> {
        pollster::block_on(self.read_impl(buf, offset, len, true))
    }

    /// Read `len` elements from element `offset`, asynchronously: the future polls the device
    /// (without blocking) until the copy is mapped, yielding to the executor in between.
    pub async fn read_async<T: Pod>(
        &self,
        buf: &GpuBuffer,
        offset: usize,
        len: usize,
    ) -> Result<Vec<T>> {
        self.read_impl(buf, offset, len, false).await
    }

    async fn read_impl<T: Pod>(
        &self,
        buf: &GpuBuffer,
        offset: usize,
        len: usize,
        blocking: bool,
    ) -> Result<Vec<T>> {
        check_word::<T>()?;
        if offset + len > buf.len {
            return Err(Error::invalid(format!(
                "read of {len} elements at {offset} overruns a buffer of {}",
                buf.len
            )));
        }
        if len == 0 {
            return Ok(Vec::new());
        }
        let bytes = len as u64 * 4;
        let staging = self.take_staging(bytes);
        let mut enc = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        enc.copy_buffer_to_buffer(&buf.buffer, offset as u64 * 4, &staging, 0, bytes);
        self.queue.submit([enc.finish()]);
        let (tx, mut rx) = futures::channel::oneshot::channel();
        staging.map_async(wgpu::MapMode::Read, ..bytes, move |r| {
            let _ = tx.send(r);
        });
        if blocking {
            self.wait()?;
        }
        // Drive the device without blocking the executor: poll, and yield until the mapping
        // callback has fired (at once after a blocking wait).
        let mapped = futures::future::poll_fn(|cx| {
            if let Err(e) = self.device.poll(wgpu::PollType::Poll) {
                return std::task::Poll::Ready(Err(Error::Gpu(format!("device poll failed: {e}"))));
            }
            match rx.try_recv() {
                Ok(Some(r)) => std::task::Poll::Ready(Ok(r)),
                Ok(None) => {
                    cx.waker().wake_by_ref();
                    std::task::Poll::Pending
                }
                Err(_) => {
                    std::task::Poll::Ready(Err(Error::Readback("mapping callback dropped".into())))
                }
            }
        })
        .await?;
        self.check_errors()?;
        mapped.map_err(|e| Error::Readback(e.to_string()))?;
        let out = {
            let view = staging
                .get_mapped_range(..bytes)
                .map_err(|e| Error::Readback(e.to_string()))?;
            bytemuck::cast_slice::<u8, T>(&view).to_vec()
        };
        staging.unmap();
        self.return_staging(staging);
        Ok(out)
    }

    fn take_staging(&self, bytes: u64) -> wgpu::Buffer {
        if let Ok(mut pool) = self.staging.lock() {
            if let Some(i) = pool.iter().position(|b| b.size() >= bytes) {
                return pool.swap_remove(i);
            }
        }
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("staging"),
            // Pooled sizes are powers of two, within the device's largest buffer.
            size: bytes
                .next_power_of_two()
                .max(256)
                .min(self.props().limits.max_buffer_size & !3)
                .max(bytes),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    fn return_staging(&self, b: wgpu::Buffer) {
        if let Ok(mut pool) = self.staging.lock() {
            if pool.len() < 8 {
                pool.push(b);
            }
        }
    }
}
