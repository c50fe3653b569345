//! Wrapper of `shaders/reduce.wgsl`: deterministic strided sums (bias gradients, losses).

use super::{check_region, u32_of};
use crate::gpu::{GpuBuffer, Recorder};
use crate::Result;

crate::shader! {
    pub static SHADER = "reduce.wgsl", tree_reduction;
    pub struct ReduceParams {
        rows: u32, cols: u32, batch: u32, op: u32, i_off: u32, i_bs: u32, i_rs: u32, i_cs: u32,
        o_off: u32, o_bs: u32, o_cs: u32, accumulate: u32, alpha: f32, _p0: u32, _p1: u32, _p2: u32,
    }
    /// One workgroup per output (long rows).
    pub REDUCE_WG = reduce_wg(read x, write y);
    /// One thread per output (many short rows).
    pub REDUCE_THREAD = reduce_thread(read x, write y);
}

/// The function summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    /// Σ x
    Sum = 0,
    /// Σ x²
    SumSquares = 1,
}

/// How the reduction is spread over invocations (both give bit-identical results run to run).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceStrategy {
    /// Pick by shape.
    Auto,
    /// One 256-thread workgroup per output, tree-summed.
    Workgroup,
    /// One thread per output, summed in order.
    Thread,
}

/// What a reduction computes: `y[n, c] (+)= alpha · Σ_{r < rows} f(x[n, r, c])` for `batch`
/// instances and `cols` columns, f given by `op`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Reduction {
    /// Length of the summed axis.
    pub rows: usize,
    /// Columns (outputs per instance).
    pub cols: usize,
    /// Instances.
    pub batch: usize,
    /// The function summed.
    pub op: ReduceOp,
    /// Scale of the sum.
    pub alpha: f32,
    /// Add to the output instead of overwriting it.
    pub accumulate: bool,
    /// How the work is spread over invocations.
    pub strategy: ReduceStrategy,
}

impl Reduction {
    /// `y[n, c] = Σ_{r < rows} f(x[n, r, c])`: `alpha` 1, overwriting, [`ReduceStrategy::Auto`].
    pub fn new(op: ReduceOp, rows: usize, cols: usize, batch: usize) -> Self {
        Self {
            rows,
            cols,
            batch,
            op,
            alpha: 1.0,
            accumulate: false,
            strategy: ReduceStrategy::Auto,
        }
    }
}

/// Input of a reduction: element (n, r, c) at `off + n·batch_stride + r·row_stride + c·col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Strided<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Offset of element (0, 0, 0).
    pub off: usize,
    /// Elements between instances.
    pub batch_stride: usize,
    /// Elements between rows (the summed axis).
    pub row_stride: usize,
    /// Elements between columns.
    pub col_stride: usize,
}

/// Output of a reduction: element (n, c) at `off + n·batch_stride + c·col_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Out<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Offset of element (0, 0).
    pub off: usize,
    /// Elements between instances.
    pub batch_stride: usize,
    /// Elements between columns.
    pub col_stride: usize,
}

/// Record the reduction `r` of `x` into `y` (see [`Reduction`]).
pub fn reduce(rec: &mut Recorder, r: Reduction, x: Strided, y: Out) -> Result<()> {
    let Reduction {
        rows,
        cols,
        batch,
        op,
        alpha,
        accumulate,
        strategy,
    } = r;
    check_region(
        "reduce input",
        x.buf,
        x.off,
        &[
            (batch, x.batch_stride),
            (rows, x.row_stride),
            (cols, x.col_stride),
        ],
    )?;
    check_region(
        "reduce output",
        y.buf,
        y.off,
        &[(batch, y.batch_stride), (cols, y.col_stride)],
    )?;
    let outputs = batch as u64 * cols as u64;
    let p = ReduceParams {
        rows: u32_of("reduce rows", rows)?,
        cols: u32_of("reduce cols", cols)?,
        batch: u32_of("reduce batch", batch)?,
        op: op as u32,
        i_off: u32_of("offset", x.off)?,
        i_bs: u32_of("stride", x.batch_stride)?,
        i_rs: u32_of("stride", x.row_stride)?,
        i_cs: u32_of("stride", x.col_stride)?,
        o_off: u32_of("offset", y.off)?,
        o_bs: u32_of("stride", y.batch_stride)?,
        o_cs: u32_of("stride", y.col_stride)?,
        accumulate: u32::from(accumulate),
        alpha,
        ..Default::default()
    };
    let per_thread = match strategy {
        ReduceStrategy::Thread => true,
        ReduceStrategy::Workgroup => false,
        ReduceStrategy::Auto => rows <= 2048 && outputs >= 1024,
    };
    if per_thread {
        rec.dispatch(
            &REDUCE_THREAD,
            &[],
            &[x.buf, y.buf],
            &p,
            outputs.div_ceil(256),
        )
    } else {
        rec.dispatch(&REDUCE_WG, &[], &[x.buf, y.buf], &p, outputs)
    }
}
