//! Wrapper of `shaders/matmul.wgsl`: batched tiled C = epilogue(op(A)·op(B)).

use super::check_region;
use super::u32_of;
use crate::gpu::{GpuBuffer, Recorder};
use crate::{Error, Result};

crate::shader! {
    pub static SHADER = "matmul.wgsl";
    pub struct MatmulParams {
        m: u32, n: u32, k: u32, batch: u32, a_off: u32, a_bs: u32, lda: u32, b_off: u32,
        b_bs: u32, ldb: u32, c_off: u32, c_bs: u32, ldc: u32, e_off: u32, e_bs: u32, lde: u32,
        epi: u32, act: u32, accumulate: u32, _pad: u32,
    }
    /// The batched matrix-product kernel.
    pub MATMUL = matmul(read a, read b, write c, read e);
    /// The same product in 128×128 tiles of 8×8 outputs per thread (large products on GPUs).
    pub MATMUL_WIDE = matmul_wide(read a, read b, write c, read e);
}

/// Element-wise activation of a layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// f(x) = x
    Identity = 0,
    /// f(x) = 1 / (1 + e^−x)
    Sigmoid = 1,
    /// f(x) = max(x, 0)
    Relu = 2,
    /// f(x) = tanh x
    Tanh = 3,
}

impl Activation {
    /// Every activation.
    pub const ALL: [Self; 4] = [Self::Identity, Self::Sigmoid, Self::Relu, Self::Tanh];

    /// Parse `sigmoid`, `relu`, `tanh` or `identity`.
    pub fn parse(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "sigmoid" => Ok(Self::Sigmoid),
            "relu" => Ok(Self::Relu),
            "tanh" => Ok(Self::Tanh),
            "identity" | "linear" | "none" => Ok(Self::Identity),
            other => Err(Error::invalid(format!(
                "unknown activation '{other}'; use sigmoid, relu, tanh or identity"
            ))),
        }
    }
}

/// A batch of row-major matrices inside a buffer: matrix `n` starts at `off + n·batch_stride`,
/// its rows are `ld` elements apart. `trans` reads it transposed (op(X) = Xᵀ).
#[derive(Clone, Copy, Debug)]
pub struct MatView<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Element offset of instance 0.
    pub off: usize,
    /// Elements between instances.
    pub batch_stride: usize,
    /// Elements between rows of the stored matrix.
    pub ld: usize,
    /// Use the transpose of the stored matrix.
    pub trans: bool,
}

impl<'a> MatView<'a> {
    /// A dense, non-transposed batch of `rows × cols` matrices laid out one after another from `off`.
    pub fn dense(buf: &'a GpuBuffer, off: usize, rows: usize, cols: usize) -> Self {
        Self {
            buf,
            off,
            batch_stride: rows * cols,
            ld: cols,
            trans: false,
        }
    }

    /// The same view, transposed.
    pub fn t(self) -> Self {
        Self {
            trans: !self.trans,
            ..self
        }
    }
}

/// What happens to op(A)·op(B) before it is stored in C.
#[derive(Clone, Copy, Debug)]
pub enum Epilogue<'a> {
    /// C = acc
    Store,
    /// C = C + acc
    Accumulate,
    /// C = act(acc + `bias[j]`); bias of instance n at `off + n·batch_stride`.
    BiasAct {
        /// Buffer holding the bias.
        buf: &'a GpuBuffer,
        /// Offset of instance 0's bias.
        off: usize,
        /// Elements between instances.
        batch_stride: usize,
        /// Activation applied after the bias.
        act: Activation,
    },
    /// C = acc · act'(`h[i,j]`) where h is the activation's output, a batch of M×N matrices.
    ActGrad {
        /// Activation outputs h (same shape as C).
        h: MatView<'a>,
        /// The activation.
        act: Activation,
    },
}

/// Tile shape chosen for a problem: rows and columns per thread and the K step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TileConfig {
    /// Rows per thread (tile height 16·rm).
    pub rm: u32,
    /// Columns per thread (tile width 16·rn).
    pub rn: u32,
    /// K step.
    pub bk: u32,
}

impl TileConfig {
    /// Bytes of workgroup memory the tile needs.
    pub fn workgroup_bytes(&self) -> u32 {
        (16 * self.rm * self.bk + 16 * self.rn * self.bk) * 4
    }

    /// Largest tile useful for an M×N output that fits `workgroup_limit` bytes of workgroup memory.
    /// `staged` tiles (GPUs) are square; direct ones (CPU adapters) may be rectangular.
    pub fn choose(m: usize, n: usize, workgroup_limit: u32, staged: bool) -> Self {
        let per = |d: usize| if d >= 48 { 4 } else { 1 };
        // Staged tiles are square (1×1 or 4×4 per thread): rectangular ones trigger
        // pathological shader compile times on Mesa's GL driver (tens of seconds).
        let (rm, rn) = if staged {
            let r = per(m.min(n));
            (r, r)
        } else {
            (per(m), per(n))
        };
        for bk in [32, 16, 8, 4] {
            let t = Self { rm, rn, bk };
            if t.workgroup_bytes() <= workgroup_limit {
                return t;
            }
        }
        Self {
            rm: 1,
            rn: 1,
            bk: 4,
        }
    }
}

/// Sizes of a batched product: op(A) is m×k, op(B) k×n, for `batch` instances.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatDims {
    /// Rows of op(A) and C.
    pub m: usize,
    /// Columns of op(B) and C.
    pub n: usize,
    /// Columns of op(A), rows of op(B).
    pub k: usize,
    /// Instances.
    pub batch: usize,
}

impl MatDims {
    /// m×k times k×n for `batch` instances.
    pub const fn new(m: usize, n: usize, k: usize, batch: usize) -> Self {
        Self { m, n, k, batch }
    }
}

/// Rows and columns of the tiles of [`MATMUL_WIDE`], used when staged tiles are on, both M and
/// N reach it and the adapter has [`WIDE_BYTES`] of workgroup memory.
pub const WIDE_TILE: usize = 128;

/// Workgroup memory [`MATMUL_WIDE`] stages its operands in (two 128×16 f32 slices).
pub const WIDE_BYTES: u32 = 2 * 128 * 16 * 4;

/// Record `C_n = epilogue(op(A_n)·op(B_n))` for `batch` instances; op(A): m×k, op(B): k×n.
pub fn matmul(
    rec: &mut Recorder,
    dims: MatDims,
    a: MatView,
    b: MatView,
    c: MatView,
    epilogue: Epilogue,
) -> Result<()> {
    let MatDims { m, n, k, batch } = dims;
    if c.trans {
        return Err(Error::invalid("matmul: the output C cannot be transposed"));
    }
    if c.buf.id == a.buf.id || c.buf.id == b.buf.id {
        return Err(Error::invalid(
            "matmul: C must be a different buffer from A and B",
        ));
    }
    let region = |v: &MatView, rows: usize, cols: usize| {
        let (r, cc) = if v.trans { (cols, rows) } else { (rows, cols) };
        [(batch, v.batch_stride), (r, v.ld), (cc, 1)]
    };
    check_region("matmul A", a.buf, a.off, &region(&a, m, k))?;
    check_region("matmul B", b.buf, b.off, &region(&b, k, n))?;
    check_region("matmul C", c.buf, c.off, &region(&c, m, n))?;
    let mut p = MatmulParams {
        m: u32_of("matmul M", m)?,
        n: u32_of("matmul N", n)?,
        k: u32_of("matmul K", k)?,
        batch: u32_of("matmul batch", batch)?,
        a_off: u32_of("offset", a.off)?,
        a_bs: u32_of("stride", a.batch_stride)?,
        lda: u32_of("stride", a.ld)?,
        b_off: u32_of("offset", b.off)?,
        b_bs: u32_of("stride", b.batch_stride)?,
        ldb: u32_of("stride", b.ld)?,
        c_off: u32_of("offset", c.off)?,
        c_bs: u32_of("stride", c.batch_stride)?,
        ldc: u32_of("stride", c.ld)?,
        ..Default::default()
    };
    // Without an epilogue operand, bind A again (read-only) in its slot.
    let mut e_buf = a.buf;
    match epilogue {
        Epilogue::Store => {}
        Epilogue::Accumulate => p.accumulate = 1,
        Epilogue::BiasAct {
            buf,
            off,
            batch_stride,
            act,
        } => {
            check_region("matmul bias", buf, off, &[(batch, batch_stride), (n, 1)])?;
            p.epi = 1;
            p.act = act as u32;
            p.e_off = u32_of("offset", off)?;
            p.e_bs = u32_of("stride", batch_stride)?;
            e_buf = buf;
        }
        Epilogue::ActGrad { h, act } => {
            if h.trans {
                return Err(Error::invalid(
                    "matmul: activation outputs cannot be transposed",
                ));
            }
            check_region("matmul h", h.buf, h.off, &region(&h, m, n))?;
            p.epi = 2;
            p.act = act as u32;
            p.e_off = u32_of("offset", h.off)?;
            p.e_bs = u32_of("stride", h.batch_stride)?;
            p.lde = u32_of("stride", h.ld)?;
            e_buf = h.buf;
        }
    }
    if e_buf.id == c.buf.id {
        return Err(Error::invalid(
            "matmul: the epilogue operand must be a different buffer from C",
        ));
    }
    let staged = rec.gpu().props().staged_tiles;
    let shared = rec.gpu().limits().max_compute_workgroup_storage_size;
    if staged && m >= WIDE_TILE && n >= WIDE_TILE && shared >= WIDE_BYTES {
        let tiles = (m.div_ceil(WIDE_TILE) * n.div_ceil(WIDE_TILE)) as u64;
        let constants = [
            ("TRANS_A", f64::from(u8::from(a.trans))),
            ("TRANS_B", f64::from(u8::from(b.trans))),
        ];
        return rec.dispatch(
            &MATMUL_WIDE,
            &constants,
            &[a.buf, b.buf, c.buf, e_buf],
            &p,
            tiles * batch as u64,
        );
    }
    let t = TileConfig::choose(
        m,
        n,
        rec.gpu().limits().max_compute_workgroup_storage_size,
        staged,
    );
    let tiles = (m.div_ceil(16 * t.rm as usize) * n.div_ceil(16 * t.rn as usize)) as u64;
    let constants = [
        ("TRANS_A", f64::from(u8::from(a.trans))),
        ("TRANS_B", f64::from(u8::from(b.trans))),
        ("RM", f64::from(t.rm)),
        ("RN", f64::from(t.rn)),
        ("BK", f64::from(t.bk)),
        ("STAGED", f64::from(u8::from(staged))),
    ];
    rec.dispatch(
        &MATMUL,
        &constants,
        &[a.buf, b.buf, c.buf, e_buf],
        &p,
        tiles * batch as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_fit_the_workgroup_limit() {
        for limit in [4096u32, 16384, 32768, 49152] {
            for (m, n) in [(1, 1), (20, 784), (128, 20), (784, 20), (1000, 1000)] {
                let t = TileConfig::choose(m, n, limit, true);
                assert!(t.workgroup_bytes() <= limit, "{t:?} at {limit}");
            }
        }
        assert_eq!(TileConfig::choose(128, 128, 16384, true).bk, 32);
        assert_eq!(TileConfig::choose(128, 128, 8192, true).bk, 16);
        let direct = TileConfig::choose(128, 20, 16384, false);
        assert_eq!((direct.rm, direct.rn), (4, 1));
    }
}
