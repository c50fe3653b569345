//! The generic kernels (matrix product, reductions, element-wise vector operations, batch
//! gathering) and the checks every kernel wrapper shares. Each module holds its WGSL file
//! beside it, the kernel descriptions, the parameter struct mirrored from the WGSL, and typed
//! `record` functions that check every index the kernel will touch before it is recorded.
//! The kernels of an optimizer family or a task live in its own folder.

pub mod gather;
pub mod matmul;
pub mod reduce;
pub mod sgd;
pub mod vec;

use crate::gpu::{GpuBuffer, Kernel};
use crate::{Error, Result};

/// Every kernel metalearn dispatches: these generic ones, the model kernels of the tasks and
/// those of every registered optimizer family (checked against the WGSL by a naga test).
pub fn all() -> Vec<&'static Kernel> {
    let mut v = [
        matmul::SHADER.kernels,
        reduce::SHADER.kernels,
        sgd::SHADER.kernels,
        gather::SHADER.kernels,
        vec::SHADER.kernels,
        crate::meta::meta_optim::SHADER.kernels,
        crate::meta::estimator::es::SHADER.kernels,
    ]
    .concat();
    v.extend(crate::tasks::kernels());
    v.extend(crate::optim::kernels());
    v
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

    /// (offset, batch stride) as the u32s of a kernel's parameters, or an error naming
    /// `what` when one does not fit.
    pub fn offsets(&self, what: &str) -> Result<(u32, u32)> {
        Ok((
            u32_of(&format!("{what} offset"), self.off)?,
            u32_of(&format!("{what} stride"), self.batch_stride)?,
        ))
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
    use crate::gpu::kernel::PRELUDE_TREE;
    use crate::gpu::{Access, Shader, PRELUDE};

    fn validate(shader: &Shader) -> (naga::Module, naga::valid::ModuleInfo) {
        let src = shader.full_source();
        let module = naga::front::wgsl::parse_str(&src).unwrap_or_else(|e| {
            panic!("{}: {}", shader.name, e.emit_to_string(&src));
        });
        let info = naga::valid::Validator::new(
            naga::valid::ValidationFlags::all(),
            naga::valid::Capabilities::empty(),
        )
        .validate(&module)
        .unwrap_or_else(|e| panic!("{}: {e:?}", shader.name));
        (module, info)
    }

    /// The shaders of every kernel, once each.
    fn shaders() -> Vec<&'static Shader> {
        let mut out: Vec<&'static Shader> = Vec::new();
        for k in all() {
            if !out.iter().any(|s| s.name == k.shader.name) {
                out.push(k.shader);
            }
        }
        out
    }

    fn wgsl_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
        for e in std::fs::read_dir(dir)
            .expect("readable directory")
            .flatten()
        {
            let path = e.path();
            if path.is_dir() {
                wgsl_files(&path, out);
            } else if path.extension().is_some_and(|x| x == "wgsl") {
                out.push(path);
            }
        }
    }

    /// Every `.wgsl` file under `src/` is the shader of some kernel (the prelude aside), its
    /// embedded copy is current, names are unique, and it validates with naga together with
    /// the prelude.
    #[test]
    fn every_wgsl_file_validates_with_the_prelude() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut files = Vec::new();
        wgsl_files(&src, &mut files);
        let prelude = src.join("gpu").join("prelude.wgsl");
        assert_eq!(
            std::fs::read_to_string(&prelude).expect("prelude readable"),
            PRELUDE
        );
        let prelude_tree = src.join("gpu").join("prelude_tree.wgsl");
        assert_eq!(
            std::fs::read_to_string(&prelude_tree).expect("prelude readable"),
            PRELUDE_TREE
        );
        files.retain(|f| *f != prelude && *f != prelude_tree);
        let known = shaders();
        let mut names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().expect("file").to_string_lossy().into_owned())
            .collect();
        names.sort();
        let mut dedup = names.clone();
        dedup.dedup();
        assert_eq!(names, dedup, "two .wgsl files share a name");
        let mut known_names: Vec<String> = known.iter().map(|s| s.name.to_string()).collect();
        known_names.sort();
        assert_eq!(
            names, known_names,
            "the .wgsl files and the kernels' shaders disagree"
        );
        for s in &known {
            let path = files
                .iter()
                .find(|f| f.file_name().is_some_and(|n| n == s.name))
                .expect("listed above");
            let on_disk = std::fs::read_to_string(path).expect("readable");
            assert_eq!(on_disk, s.source, "{} embedded copy is stale", s.name);
            validate(s);
        }
    }

    /// Every entry point has a `Kernel` description listed by its shader, and uses exactly the
    /// storage bindings it declares (names, binding numbers, access), the parameter struct at
    /// group 1 binding 0 as a uniform of `params_size` bytes; no two kernels of a shader
    /// declare one name differently.
    #[test]
    fn kernel_bindings_match_wgsl() {
        let kernels = all();
        for k in &kernels {
            assert!(
                k.shader.kernels.iter().any(|o| std::ptr::eq(*o, *k)),
                "{} is missing from the kernel list of {}",
                k.entry,
                k.shader.name
            );
        }
        for s in shaders() {
            for k in s.kernels {
                assert!(
                    kernels.iter().any(|o| std::ptr::eq(*o, *k)),
                    "{}::{} is missing from kernels::all()",
                    s.name,
                    k.entry
                );
            }
            let declared = s.declared_bindings();
            for (i, (bi, b)) in declared.iter().enumerate() {
                assert!(
                    !declared[..i].iter().any(|(_, d)| d.name == b.name),
                    "{}: binding {} declared twice, once at {bi}",
                    s.name,
                    b.name
                );
            }
            let (module, info) = validate(s);
            for (ei, ep) in module.entry_points.iter().enumerate() {
                let k = kernels
                    .iter()
                    .find(|k| k.shader == s && k.entry == ep.name)
                    .unwrap_or_else(|| panic!("{}::{} has no Kernel", s.name, ep.name));
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
                            let name = var.name.clone().unwrap_or_default();
                            storage.push((binding.binding, name, a));
                        }
                        naga::AddressSpace::Uniform => {
                            assert_eq!((binding.group, binding.binding), (1, 0), "{}", k.entry);
                            params = Some(module.types[var.ty].inner.size(module.to_ctx()));
                        }
                        other => panic!("{}: unexpected address space {other:?}", k.entry),
                    }
                }
                storage.sort_by_key(|s| s.0);
                let expected: Vec<(u32, String, Access)> = (0u32..)
                    .zip(k.bindings.iter())
                    .map(|(i, b)| (i, b.name.to_string(), b.access))
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
