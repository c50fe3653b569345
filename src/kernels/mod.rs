//! Rust wrappers of the WGSL kernels: one module per file in `shaders/`, each holding the kernel
//! descriptions, the parameter struct mirrored from the WGSL, and a typed `record` function that
//! checks every index the kernel will touch before it is recorded.

pub mod gather;
pub mod hand;
pub mod linear;
pub mod lstm;
pub mod matmul;
/// The meta-loss and meta-Adam kernels (defined in [`crate::meta::meta_optim`]).
pub use crate::meta::meta_optim as meta;
pub mod mlp_opt;
pub mod mlp_rop;
pub mod quadratic;
pub mod reduce;
pub mod sgd;
pub mod softmax;
pub mod vec;

use crate::gpu::{GpuBuffer, Kernel};
use crate::{Error, Result};

/// Every kernel metalearn dispatches (checked against the WGSL by a naga test).
pub fn all() -> Vec<&'static Kernel> {
    vec![
        &matmul::MATMUL,
        &reduce::REDUCE_WG,
        &reduce::REDUCE_THREAD,
        &softmax::SOFTMAX_XENT,
        &softmax::MSE,
        &quadratic::QUADRATIC,
        &quadratic::QUADRATIC_HVP,
        &sgd::SGD,
        &gather::GATHER,
        &vec::FILL,
        &vec::AXPY,
        &vec::AXPBY,
        &vec::BROADCAST,
        &vec::COPY4,
        &linear::LINEAR_STEP,
        &linear::LINEAR_VJP,
        &linear::LINEAR_VJP_SO,
        &lstm::LSTM_STEP,
        &lstm::LSTM_VJP,
        &hand::ADAM_STEP,
        &hand::MOMENTUM_STEP,
        &hand::NAG_STEP,
        &hand::RMSPROP_STEP,
        &hand::MOMENTUM_VJP,
        &hand::NAG_VJP,
        &meta::META_LOSS,
        &meta::META_ADAM,
        &mlp_opt::MLPO_SUMS,
        &mlp_opt::MLPO_FINISH,
        &mlp_opt::MLPO_STEP,
        &mlp_opt::MLPO_VJP,
        &mlp_opt::MLPO_THETA_BAR,
        &mlp_rop::ROP_BIAS_ACT,
        &mlp_rop::ROP_ACT_BACK,
        &mlp_rop::ROP_XENT,
        &mlp_rop::ROP_MSE,
    ]
}

/// A batch of tensors in a buffer: instance n's tensor starts at `off + n·batch_stride`.
#[derive(Clone, Copy, Debug)]
pub struct Batched<'a> {
    /// The buffer.
    pub buf: &'a GpuBuffer,
    /// Offset of instance 0.
    pub off: usize,
    /// Elements between instances.
    pub batch_stride: usize,
}

impl<'a> Batched<'a> {
    /// Tensors of `len` elements stored back to back from offset 0.
    pub fn dense(buf: &'a GpuBuffer, len: usize) -> Self {
        Self {
            buf,
            off: 0,
            batch_stride: len,
        }
    }
}

/// Invocations per workgroup of a tiled reverse kernel (one coordinate per invocation, `stage`
/// floats staged per coordinate, `acc` floats of φ̄ accumulators): the largest of 64, 32, 16, 8
/// whose workgroup memory, 4·(WG·stage + acc) bytes, fits the adapter.
pub(crate) fn tile_workgroup(
    gpu: &crate::gpu::Gpu,
    stage: usize,
    acc: usize,
    what: &str,
) -> Result<usize> {
    let limit = gpu.limits().max_compute_workgroup_storage_size as usize;
    [64usize, 32, 16, 8]
        .into_iter()
        .find(|wg| 4 * (wg * stage + acc) <= limit)
        .ok_or(Error::LimitExceeded {
            what: format!("workgroup memory of the {what} reverse kernel"),
            value: (4 * (8 * stage + acc)) as u64,
            limit: limit as u64,
            limit_name: "max_compute_workgroup_storage_size",
            hint: format!(
                "use an adapter with at least {} bytes of workgroup memory",
                4 * (8 * stage + acc)
            ),
        })
}

/// Convert a host index or size to the u32 the kernels use.
pub(crate) fn u32_of(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::LimitExceeded {
        what: what.to_string(),
        value: v as u64,
        limit: u64::from(u32::MAX),
        limit_name: "32-bit kernel index",
        hint: "use fewer task instances or smaller tensors".into(),
    })
}

/// Check that the strided region `off + Σ (extent_i − 1)·stride_i` stays inside `buf`.
/// Empty regions (any extent 0) are always in bounds.
pub(crate) fn check_region(
    what: &str,
    buf: &GpuBuffer,
    off: usize,
    dims: &[(usize, usize)],
) -> Result<()> {
    if dims.iter().any(|&(extent, _)| extent == 0) {
        return Ok(());
    }
    let last = dims
        .iter()
        .try_fold(off, |acc, &(extent, stride)| {
            (extent - 1)
                .checked_mul(stride)
                .and_then(|x| acc.checked_add(x))
        })
        .ok_or_else(|| Error::invalid(format!("{what}: index overflows")))?;
    if last >= buf.len() {
        return Err(Error::invalid(format!(
            "{what}: reaches element {last} of a buffer of {} elements",
            buf.len()
        )));
    }
    u32_of(what, last)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gpu::{Access, Shader};

    fn validate(shader: Shader) -> (naga::Module, naga::valid::ModuleInfo) {
        let src = shader.source();
        let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| {
            panic!("{}: {}", shader.file_name(), e.emit_to_string(src));
        });
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", shader.file_name()));
        (module, info)
    }

    /// Every `.wgsl` file in `shaders/` is known to [`Shader`] and validates with naga.
    #[test]
    fn every_wgsl_file_validates() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .expect("shaders/ exists")
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".wgsl"))
            .collect();
        files.sort();
        let mut known: Vec<String> = Shader::ALL.iter().map(|s| s.file_name().into()).collect();
        known.sort();
        assert_eq!(files, known, "shaders/ and Shader::ALL disagree");
        for s in Shader::ALL {
            let on_disk = std::fs::read_to_string(dir.join(s.file_name())).expect("readable");
            assert_eq!(
                on_disk,
                s.source(),
                "{} embedded copy is stale",
                s.file_name()
            );
            validate(*s);
        }
    }

    /// Every entry point has a `Kernel` description, and its bindings match the WGSL exactly:
    /// storage buffers at group 0 in order with the declared access, the parameter struct at
    /// group 1 binding 0 as a uniform of `params_size` bytes.
    #[test]
    fn kernel_bindings_match_wgsl() {
        let kernels = all();
        for s in Shader::ALL {
            let (module, info) = validate(*s);
            for (ei, ep) in module.entry_points.iter().enumerate() {
                let k = kernels
                    .iter()
                    .find(|k| k.shader == *s && k.entry == ep.name)
                    .unwrap_or_else(|| panic!("{}::{} has no Kernel", s.file_name(), ep.name));
                let fi = info.get_entry_point(ei);
                let mut storage = Vec::new();
                let mut params = None;
                for (h, var) in module.global_variables.iter() {
                    if fi[h].is_empty() {
                        continue;
                    }
                    let Some(binding) = &var.binding else {
                        continue;
                    };
                    match var.space {
                        naga::AddressSpace::Storage { access } => {
                            assert_eq!(binding.group, 0, "{}: storage outside group 0", k.entry);
                            let a = if access.contains(naga::StorageAccess::STORE) {
                                Access::ReadWrite
                            } else {
                                Access::Read
                            };
                            storage.push((binding.binding, a));
                        }
                        naga::AddressSpace::Uniform => {
                            assert_eq!((binding.group, binding.binding), (1, 0), "{}", k.entry);
                            params = Some(module.types[var.ty].inner.size(module.to_ctx()));
                        }
                        other => panic!("{}: unexpected address space {other:?}", k.entry),
                    }
                }
                storage.sort_by_key(|s| s.0);
                let expected: Vec<(u32, Access)> = k
                    .bindings
                    .iter()
                    .enumerate()
                    .map(|(i, a)| (i as u32, *a))
                    .collect();
                assert_eq!(storage, expected, "{}: storage bindings", k.entry);
                assert_eq!(
                    params,
                    Some(k.params_size as u32),
                    "{}: params size",
                    k.entry
                );
            }
        }
        for k in kernels {
            let (module, _) = validate(k.shader);
            assert!(
                module.entry_points.iter().any(|e| e.name == k.entry),
                "{} names a missing entry point",
                k.entry
            );
        }
    }
}
