//! Wrapper of `shaders/vec.wgsl`: fill, axpy, axpby and broadcast over ranges of flat buffers.

use super::{check_region, u32_of, Batched};
use crate::gpu::{GpuBuffer, Recorder};
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "vec.wgsl";
    pub struct VecParams {
        count: u32, batch: u32, xo: u32, yo: u32, zo: u32, ys: u32, a: f32, b: f32,
    }
    /// y = a
    pub FILL = fill(write fill_y);
    /// y += a·x
    pub AXPY = axpy(read x, write y);
    /// z = a·x + b·y
    pub AXPBY = axpby(read x, read yin, write z);
    /// `y[n] = x` for every instance n
    pub BROADCAST = broadcast(read x, write y);
    /// y = x, one vec4 per invocation.
    pub COPY4 = copy4(read x4: vec4<f32>, write y4: vec4<f32>);
}

/// The elements of a flat buffer from `off` on (how many is the kernel's `count`).
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Offset of the first element.
    pub off: usize,
}

impl<'a> View<'a> {
    /// The elements of `buf` from `off` on.
    pub fn new(buf: &'a GpuBuffer, off: usize) -> Self {
        Self { buf, off }
    }
}

/// Record `y[i] = x[i]` for `i < count` with a compute kernel (vec4 loads and stores; `count` and
/// both offsets must be multiples of 4).
pub fn copy4(rec: &mut Recorder, x: View, y: View, count: usize) -> Result<()> {
    if count % 4 != 0 || x.off % 4 != 0 || y.off % 4 != 0 || x.buf.id == y.buf.id {
        return Err(Error::invalid(
            "copy4: count and offsets must be multiples of 4, buffers distinct",
        ));
    }
    check_region("copy4 x", x.buf, x.off, &[(count, 1)])?;
    check_region("copy4 y", y.buf, y.off, &[(count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        xo: u32_of("offset", x.off)?,
        yo: u32_of("offset", y.off)?,
        ..Default::default()
    };
    rec.dispatch(&COPY4, &[], &[x.buf, y.buf], &p, groups(count / 4))
}

fn groups(count: usize) -> u64 {
    (count as u64).div_ceil(256)
}

/// Record `y[i] = a` for `i < count`.
pub fn fill(rec: &mut Recorder, y: View, count: usize, a: f32) -> Result<()> {
    check_region("fill", y.buf, y.off, &[(count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        yo: u32_of("offset", y.off)?,
        a,
        ..Default::default()
    };
    rec.dispatch(&FILL, &[], &[y.buf], &p, groups(count))
}

/// Record `y[i] += a · x[i]` for `i < count`.
pub fn axpy(rec: &mut Recorder, a: f32, x: View, y: View, count: usize) -> Result<()> {
    if x.buf.id == y.buf.id {
        return Err(Error::invalid("axpy: x and y must be different buffers"));
    }
    check_region("axpy x", x.buf, x.off, &[(count, 1)])?;
    check_region("axpy y", y.buf, y.off, &[(count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        xo: u32_of("offset", x.off)?,
        yo: u32_of("offset", y.off)?,
        a,
        ..Default::default()
    };
    rec.dispatch(&AXPY, &[], &[x.buf, y.buf], &p, groups(count))
}

/// Record `z[i] = a · x[i] + b · y[i]` for `i < count`.
pub fn axpby(
    rec: &mut Recorder,
    a: f32,
    x: View,
    b: f32,
    y: View,
    z: View,
    count: usize,
) -> Result<()> {
    if z.buf.id == x.buf.id || z.buf.id == y.buf.id {
        return Err(Error::invalid("axpby: z must differ from x and y"));
    }
    check_region("axpby x", x.buf, x.off, &[(count, 1)])?;
    check_region("axpby y", y.buf, y.off, &[(count, 1)])?;
    check_region("axpby z", z.buf, z.off, &[(count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        xo: u32_of("offset", x.off)?,
        yo: u32_of("offset", y.off)?,
        zo: u32_of("offset", z.off)?,
        a,
        b,
        ..Default::default()
    };
    rec.dispatch(&AXPBY, &[], &[x.buf, y.buf, z.buf], &p, groups(count))
}

/// Record `y[n][i] = x[i]` for `i < count`, `n < batch` (instance n of `y` starts at
/// `y.off + n·y.batch_stride`).
pub fn broadcast(
    rec: &mut Recorder,
    x: View,
    y: Batched,
    count: usize,
    batch: usize,
) -> Result<()> {
    if x.buf.id == y.buf.id {
        return Err(Error::invalid(
            "broadcast: x and y must be different buffers",
        ));
    }
    check_region("broadcast x", x.buf, x.off, &[(count, 1)])?;
    check_region(
        "broadcast y",
        y.buf,
        y.off,
        &[(batch, y.batch_stride), (count, 1)],
    )?;
    let p = VecParams {
        count: u32_of("count", count)?,
        batch: u32_of("batch", batch)?,
        xo: u32_of("offset", x.off)?,
        yo: u32_of("offset", y.off)?,
        ys: u32_of("stride", y.batch_stride)?,
        ..Default::default()
    };
    rec.dispatch(&BROADCAST, &[], &[x.buf, y.buf], &p, groups(count * batch))
}
