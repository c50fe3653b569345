//! Wrapper of `shaders/vec.wgsl`: fill, axpy, axpby and broadcast over ranges of flat buffers.

use bytemuck::{Pod, Zeroable};

use super::{check_region, u32_of};
use crate::gpu::{Access, GpuBuffer, Kernel, Recorder, Shader};
use crate::{Error, Result};

/// Parameters of the vector kernels (mirrors `Params` in the WGSL).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, Pod, Zeroable)]
pub struct VecParams {
    count: u32,
    batch: u32,
    xo: u32,
    yo: u32,
    zo: u32,
    ys: u32,
    a: f32,
    b: f32,
}

const SIZE: usize = std::mem::size_of::<VecParams>();

/// `vec.wgsl`.
pub static SHADER: Shader = Shader::new("vec.wgsl", include_str!("vec.wgsl"));

/// y = a
pub static FILL: Kernel = Kernel::new(&SHADER, "fill", &[Access::ReadWrite], SIZE);
/// y += a·x
pub static AXPY: Kernel = Kernel::new(&SHADER, "axpy", &[Access::Read, Access::ReadWrite], SIZE);
/// z = a·x + b·y
pub static AXPBY: Kernel = Kernel::new(
    &SHADER,
    "axpby",
    &[Access::Read, Access::Read, Access::ReadWrite],
    SIZE,
);
/// `y[n] = x` for every instance n
pub static BROADCAST: Kernel = Kernel::new(
    &SHADER,
    "broadcast",
    &[Access::Read, Access::ReadWrite],
    SIZE,
);

/// y = x, one vec4 per invocation.
pub static COPY4: Kernel = Kernel::new(&SHADER, "copy4", &[Access::Read, Access::ReadWrite], SIZE);

/// Record `y[yo + i] = x[xo + i]` for `i < count` with a compute kernel (vec4 loads and stores;
/// `count`, `xo` and `yo` must be multiples of 4).
pub fn copy4(
    rec: &mut Recorder,
    x: &GpuBuffer,
    xo: usize,
    y: &GpuBuffer,
    yo: usize,
    count: usize,
) -> Result<()> {
    if count % 4 != 0 || xo % 4 != 0 || yo % 4 != 0 || x.id == y.id {
        return Err(Error::invalid(
            "copy4: count and offsets must be multiples of 4, buffers distinct",
        ));
    }
    check_region("copy4 x", x, xo, &[(count, 1)])?;
    check_region("copy4 y", y, yo, &[(count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        xo: u32_of("offset", xo)?,
        yo: u32_of("offset", yo)?,
        ..Default::default()
    };
    rec.dispatch(&COPY4, &[], &[x, y], &p, groups(count / 4))
}

fn groups(count: usize) -> u64 {
    (count as u64).div_ceil(256)
}

/// Record `y[yo + i] = a` for `i < count`.
pub fn fill(rec: &mut Recorder, y: &GpuBuffer, yo: usize, count: usize, a: f32) -> Result<()> {
    check_region("fill", y, yo, &[(count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        yo: u32_of("offset", yo)?,
        a,
        ..Default::default()
    };
    rec.dispatch(&FILL, &[], &[y], &p, groups(count))
}

/// Record `y[yo + i] += a · x[xo + i]` for `i < count`.
pub fn axpy(
    rec: &mut Recorder,
    a: f32,
    x: &GpuBuffer,
    xo: usize,
    y: &GpuBuffer,
    yo: usize,
    count: usize,
) -> Result<()> {
    if x.id == y.id {
        return Err(Error::invalid("axpy: x and y must be different buffers"));
    }
    check_region("axpy x", x, xo, &[(count, 1)])?;
    check_region("axpy y", y, yo, &[(count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        xo: u32_of("offset", xo)?,
        yo: u32_of("offset", yo)?,
        a,
        ..Default::default()
    };
    rec.dispatch(&AXPY, &[], &[x, y], &p, groups(count))
}

/// Record `z[zo + i] = a · x[xo + i] + b · y[yo + i]` for `i < count`.
#[allow(clippy::too_many_arguments)]
pub fn axpby(
    rec: &mut Recorder,
    a: f32,
    x: (&GpuBuffer, usize),
    b: f32,
    y: (&GpuBuffer, usize),
    z: (&GpuBuffer, usize),
    count: usize,
) -> Result<()> {
    if z.0.id == x.0.id || z.0.id == y.0.id {
        return Err(Error::invalid("axpby: z must differ from x and y"));
    }
    check_region("axpby x", x.0, x.1, &[(count, 1)])?;
    check_region("axpby y", y.0, y.1, &[(count, 1)])?;
    check_region("axpby z", z.0, z.1, &[(count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        xo: u32_of("offset", x.1)?,
        yo: u32_of("offset", y.1)?,
        zo: u32_of("offset", z.1)?,
        a,
        b,
        ..Default::default()
    };
    rec.dispatch(&AXPBY, &[], &[x.0, y.0, z.0], &p, groups(count))
}

/// Record `y[yo + n·ys + i] = x[xo + i]` for `i < count`, `n < batch`.
#[allow(clippy::too_many_arguments)]
pub fn broadcast(
    rec: &mut Recorder,
    x: &GpuBuffer,
    xo: usize,
    y: &GpuBuffer,
    yo: usize,
    ys: usize,
    count: usize,
    batch: usize,
) -> Result<()> {
    if x.id == y.id {
        return Err(Error::invalid(
            "broadcast: x and y must be different buffers",
        ));
    }
    check_region("broadcast x", x, xo, &[(count, 1)])?;
    check_region("broadcast y", y, yo, &[(batch, ys), (count, 1)])?;
    let p = VecParams {
        count: u32_of("count", count)?,
        batch: u32_of("batch", batch)?,
        xo: u32_of("offset", xo)?,
        yo: u32_of("offset", yo)?,
        ys: u32_of("stride", ys)?,
        ..Default::default()
    };
    rec.dispatch(&BROADCAST, &[], &[x, y], &p, groups(count * batch))
}
