//! Adapter choice, device creation, and the device's properties read once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use crate::gpu::kernel::PipelineCache;
use crate::{Error, Result};

/// Environment variable naming the backend(s) to consider (`vulkan`, `gl`, `metal`, `dx12`, comma separated).
pub const ENV_BACKEND: &str = "WGPU_BACKEND";
/// Environment variable with a case-insensitive substring of the adapter name to pick.
pub const ENV_ADAPTER_NAME: &str = "WGPU_ADAPTER_NAME";

/// How to choose the GPU adapter. Options set here take precedence over the environment.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// Backends to consider. `None`: read `WGPU_BACKEND`, else Vulkan, Metal, DX12 and GL.
    pub backends: Option<wgpu::Backends>,
    /// Case-insensitive substring of the adapter name. `None`: read `WGPU_ADAPTER_NAME`.
    pub adapter_name: Option<String>,
    /// Stage matrix-product tiles in workgroup memory. `None`: yes on hardware adapters, no on
    /// CPU adapters (where workgroup memory is ordinary cache and barriers are costly).
    pub staged_tiles: Option<bool>,
    /// Open the device with buffers (and storage bindings) of at most this many bytes, below
    /// the adapter's own limits: a smaller GPU's limits on a larger one (tests of chunking, a
    /// run sized for another card), at least [`MIN_BUFFER_CAP`]. `None`: read
    /// `METALEARN_MAX_BUFFER_MIB`, else the adapter's.
    pub max_buffer_bytes: Option<u64>,
}

/// The smallest buffer-size cap [`GpuOptions::max_buffer_bytes`] takes (smaller ones are
/// raised to it).
pub const MIN_BUFFER_CAP: u64 = 64 << 10;

/// The buffer-size cap of `opts`, else of `METALEARN_MAX_BUFFER_MIB` (MiB, at least 1).
fn max_buffer_bytes(opts: &GpuOptions) -> Result<Option<u64>> {
    if let Some(b) = opts.max_buffer_bytes {
        return Ok(Some(b));
    }
    let Ok(v) = std::env::var("METALEARN_MAX_BUFFER_MIB") else {
        return Ok(None);
    };
    match v.trim().parse::<u64>() {
        Ok(mib) if mib >= 1 => Ok(Some(mib.saturating_mul(1 << 20))),
        _ => Err(Error::invalid(format!(
            "METALEARN_MAX_BUFFER_MIB = '{v}' is not a whole number of MiB ≥ 1; unset it for the adapter's own limits"
        ))),
    }
}

/// What metalearn knows about the open device: read once at start-up.
#[derive(Clone, Debug)]
pub struct DeviceProps {
    /// Adapter description (name, backend, driver, device type).
    pub info: wgpu::AdapterInfo,
    /// The limits the device was opened with (the adapter's own, buffer sizes capped by
    /// [`GpuOptions::max_buffer_bytes`]).
    pub limits: wgpu::Limits,
    /// Features enabled on the device.
    pub features: wgpu::Features,
    /// Matrix-product tiles are staged in workgroup memory (see [`GpuOptions::staged_tiles`]).
    pub staged_tiles: bool,
}

impl DeviceProps {
    /// True for CPU (software) adapters such as lavapipe and llvmpipe.
    pub fn is_software(&self) -> bool {
        self.info.device_type == wgpu::DeviceType::Cpu || is_software_name(&self.info.name)
    }

    /// Multi-line human-readable description, as printed by `metalearn info`.
    pub fn describe(&self) -> String {
        let i = &self.info;
        let l = &self.limits;
        let mut s = String::new();
        s += &format!("adapter:  {}\n", i.name);
        s += &format!("backend:  {:?}\n", i.backend);
        s += &format!("type:     {:?}\n", i.device_type);
        s += &format!("driver:   {} {}\n", i.driver, i.driver_info);
        s += &format!("vendor:   0x{:04x}  device: 0x{:04x}\n", i.vendor, i.device);
        s += &format!(
            "tiles:    {}\n",
            if self.staged_tiles {
                "staged in workgroup memory"
            } else {
                "direct loads"
            }
        );
        s += "limits:\n";
        let rows: [(&str, u64); 12] = [
            ("max_buffer_size", l.max_buffer_size),
            (
                "max_storage_buffer_binding_size",
                l.max_storage_buffer_binding_size,
            ),
            (
                "max_storage_buffers_per_shader_stage",
                l.max_storage_buffers_per_shader_stage.into(),
            ),
            (
                "max_uniform_buffer_binding_size",
                l.max_uniform_buffer_binding_size,
            ),
            (
                "max_compute_workgroup_storage_size",
                l.max_compute_workgroup_storage_size.into(),
            ),
            (
                "max_compute_invocations_per_workgroup",
                l.max_compute_invocations_per_workgroup.into(),
            ),
            (
                "max_compute_workgroup_size_x",
                l.max_compute_workgroup_size_x.into(),
            ),
            (
                "max_compute_workgroups_per_dimension",
                l.max_compute_workgroups_per_dimension.into(),
            ),
            ("max_bind_groups", l.max_bind_groups.into()),
            (
                "max_dynamic_uniform_buffers_per_pipeline_layout",
                l.max_dynamic_uniform_buffers_per_pipeline_layout.into(),
            ),
            (
                "min_uniform_buffer_offset_alignment",
                l.min_uniform_buffer_offset_alignment.into(),
            ),
            ("max_immediate_size", l.max_immediate_size.into()),
        ];
        for (k, v) in rows {
            s += &format!("  {k:<48} {v}\n");
        }
        s += "features:\n";
        let mut names: Vec<String> = self
            .features
            .iter_names()
            .map(|(n, _)| n.to_string())
            .collect();
        names.sort();
        for n in names {
            s += &format!("  {n}\n");
        }
        s
    }
}

/// An open GPU device with its queue, properties, pipeline cache and error sink.
///
/// One `Gpu` serves any number of threads; pipelines are created once and cached.
pub struct Gpu {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    props: DeviceProps,
    errors: Arc<Mutex<Vec<String>>>,
    pub(crate) pipelines: PipelineCache,
    pub(crate) staging: Mutex<Vec<wgpu::Buffer>>,
    next_id: AtomicU64,
    profiler: super::recorder::Profiler,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.props.info.name)
            .field("backend", &self.props.info.backend)
            .finish()
    }
}

/// Backends metalearn uses when neither the options nor `WGPU_BACKEND` say otherwise.
fn native_backends() -> wgpu::Backends {
    wgpu::Backends::VULKAN | wgpu::Backends::METAL | wgpu::Backends::DX12 | wgpu::Backends::GL
}

fn is_software_name(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.contains("llvmpipe") || n.contains("lavapipe") || n.contains("swiftshader")
}

/// Preference order of an adapter: lower is better. Hardware first (native APIs before GL),
/// then software Vulkan/Metal/DX12 (lavapipe), then software GL (llvmpipe).
pub fn adapter_rank(info: &wgpu::AdapterInfo) -> u8 {
    let software = info.device_type == wgpu::DeviceType::Cpu || is_software_name(&info.name);
    let gl = info.backend == wgpu::Backend::Gl;
    match (software, gl) {
        (false, false) => match info.device_type {
            wgpu::DeviceType::DiscreteGpu => 0,
            wgpu::DeviceType::IntegratedGpu => 1,
            _ => 2,
        },
        (false, true) => 3,
        (true, false) => 4,
        (true, true) => 5,
    }
}

/// Parse a backend list such as `vulkan,gl` (the names wgpu accepts in `WGPU_BACKEND`).
pub fn parse_backends(s: &str) -> Result<wgpu::Backends> {
    let mut b = wgpu::Backends::empty();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        b |= match part.to_ascii_lowercase().as_str() {
            "vulkan" | "vk" => wgpu::Backends::VULKAN,
            "gl" | "gles" | "opengl" => wgpu::Backends::GL,
            "metal" | "mtl" => wgpu::Backends::METAL,
            "dx12" | "d3d12" => wgpu::Backends::DX12,
            "all" | "primary" => native_backends(),
            other => {
                return Err(Error::invalid(format!(
                    "unknown backend '{other}'; use one or more of vulkan, gl, metal, dx12 (comma separated)"
                )))
            }
        };
    }
    if b.is_empty() {
        return Err(Error::invalid(
            "empty backend list; use one or more of vulkan, gl, metal, dx12",
        ));
    }
    Ok(b)
}

fn backends_of(opts: &GpuOptions) -> Result<wgpu::Backends> {
    Ok(match opts.backends {
        Some(b) => b,
        None => match std::env::var(ENV_BACKEND) {
            Ok(s) if !s.trim().is_empty() => parse_backends(&s)?,
            _ => native_backends(),
        },
    })
}

/// Every compute-capable adapter of `backends`, best first (see [`adapter_rank`]), and a
/// description of every adapter found.
async fn compute_adapters(backends: wgpu::Backends) -> (Vec<wgpu::Adapter>, Vec<String>) {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let adapters = instance.enumerate_adapters(backends).await;
    let found: Vec<String> = adapters
        .iter()
        .map(|a| {
            let i = a.get_info();
            format!("{} ({:?})", i.name, i.backend)
        })
        .collect();
    let mut all: Vec<wgpu::Adapter> = adapters
        .into_iter()
        .filter(|a| {
            a.get_downlevel_capabilities()
                .flags
                .contains(wgpu::DownlevelFlags::COMPUTE_SHADERS)
        })
        .collect();
    all.sort_by_key(|a| adapter_rank(&a.get_info()));
    (all, found)
}

/// The adapters `selection` names (see [`Gpu::open_many`]) out of `all`.
fn select_adapters(all: &[wgpu::Adapter], selection: &str) -> Result<Vec<wgpu::Adapter>> {
    let listed = || {
        all.iter()
            .enumerate()
            .map(|(k, a)| {
                let i = a.get_info();
                format!("{k}: {} ({:?})", i.name, i.backend)
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sel = selection.trim();
    if all.is_empty() {
        return Err(Error::NoAdapter {
            reason: "no compute-capable adapter".into(),
            hint: "install a GPU driver with Vulkan support, or Mesa's software drivers \
                   (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`)"
                .into(),
        });
    }
    if sel.eq_ignore_ascii_case("all") {
        return Ok(all.to_vec());
    }
    let items: Vec<&str> = sel.split(',').map(str::trim).collect();
    if items.iter().any(|s| s.is_empty()) {
        return Err(Error::invalid(format!(
            "--adapters '{selection}' has an empty entry; write all, indices (0,2) or names (the adapters: {})",
            listed()
        )));
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let a = match item.parse::<usize>() {
            Ok(k) => all.get(k).ok_or_else(|| {
                Error::invalid(format!(
                    "--adapters: there is no adapter {k} (the adapters: {})",
                    listed()
                ))
            })?,
            Err(_) => {
                let f = item.to_ascii_lowercase();
                all.iter()
                    .find(|a| a.get_info().name.to_ascii_lowercase().contains(&f))
                    .ok_or_else(|| {
                        Error::invalid(format!(
                            "--adapters: no adapter's name contains '{item}' (the adapters: {})",
                            listed()
                        ))
                    })?
            }
        };
        out.push(a.clone());
    }
    Ok(out)
}

impl Gpu {
    /// Open the best adapter (see [`adapter_rank`]), blocking.
    pub fn new(opts: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::new_async(opts))
    }

    /// Open the best adapter (see [`adapter_rank`]).
    pub async fn new_async(opts: &GpuOptions) -> Result<Self> {
        let backends = backends_of(opts)?;
        let name_filter = match &opts.adapter_name {
            Some(n) => Some(n.clone()),
            None => std::env::var(ENV_ADAPTER_NAME)
                .ok()
                .filter(|s| !s.trim().is_empty()),
        };
        let (all, found) = compute_adapters(backends).await;
        let candidates: Vec<wgpu::Adapter> = all
            .into_iter()
            .filter(|a| match &name_filter {
                Some(f) => a
                    .get_info()
                    .name
                    .to_ascii_lowercase()
                    .contains(&f.to_ascii_lowercase()),
                None => true,
            })
            .collect();
        let Some(adapter) = candidates.into_iter().next() else {
            let reason = match (&name_filter, found.is_empty()) {
                (_, true) => format!("no adapter found on backends {backends:?}"),
                (Some(f), false) => format!(
                    "no compute-capable adapter matches the name '{f}' (found: {})",
                    found.join(", ")
                ),
                (None, false) => {
                    format!("no compute-capable adapter (found: {})", found.join(", "))
                }
            };
            return Err(Error::NoAdapter {
                reason,
                hint: "Install a GPU driver with Vulkan support, or Mesa's software drivers \
                       (Debian/Ubuntu: `apt-get install mesa-vulkan-drivers libvulkan1`); \
                       set WGPU_BACKEND=gl to try OpenGL (llvmpipe); unset WGPU_ADAPTER_NAME \
                       or fix its value if it names no adapter"
                    .into(),
            });
        };
        Self::from_adapter(adapter, opts).await
    }

    /// Open one device per entry of `selection` (`--adapters`): `all` (every compute-capable
    /// adapter), indices into [`Gpu::adapters`]' list (`0,2`; an index may repeat: two devices
    /// on one adapter), or case-insensitive substrings of adapter names (`h200,a100`), blocking.
    /// The backends are those of `opts` (else `WGPU_BACKEND`, else every native one).
    pub fn open_many(opts: &GpuOptions, selection: &str) -> Result<Vec<Gpu>> {
        pollster::block_on(async {
            let (all, _) = compute_adapters(backends_of(opts)?).await;
            let picked = select_adapters(&all, selection)?;
            let mut out = Vec::with_capacity(picked.len());
            for a in picked {
                out.push(Self::from_adapter(a, opts).await?);
            }
            Ok(out)
        })
    }

    /// The compute-capable adapters of `opts`' backends, best first (the indices of
    /// [`Gpu::open_many`]): name and backend of each.
    pub fn adapters(opts: &GpuOptions) -> Result<Vec<String>> {
        pollster::block_on(async {
            let (all, _) = compute_adapters(backends_of(opts)?).await;
            Ok(all
                .iter()
                .map(|a| {
                    let i = a.get_info();
                    format!("{} ({:?})", i.name, i.backend)
                })
                .collect())
        })
    }

    /// Open a device on the given adapter with the adapter's own limits.
    pub async fn from_adapter(adapter: wgpu::Adapter, opts: &GpuOptions) -> Result<Self> {
        let info = adapter.get_info();
        let wanted = wgpu::Features::TIMESTAMP_QUERY
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS
            | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES
            | wgpu::Features::SUBGROUP
            | wgpu::Features::SHADER_F16;
        let features = adapter.features() & wanted;
        let mut limits = adapter.limits();
        if let Some(cap) = max_buffer_bytes(opts)? {
            // The device's own small buffers (dispatch parameters, staging) need some room.
            let cap = cap.max(MIN_BUFFER_CAP) & !3;
            limits.max_buffer_size = limits.max_buffer_size.min(cap);
            limits.max_storage_buffer_binding_size =
                limits.max_storage_buffer_binding_size.min(cap);
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("metalearn"),
                required_features: features,
                required_limits: limits.clone(),
                ..Default::default()
            })
            .await
            .map_err(|source| Error::RequestDevice {
                adapter: info.name.clone(),
                source,
            })?;
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        Ok(Self {
            device,
            queue,
            props: DeviceProps {
                staged_tiles: opts.staged_tiles.unwrap_or(
                    info.device_type != wgpu::DeviceType::Cpu && !is_software_name(&info.name),
                ),
                info,
                limits,
                features,
            },
            errors,
            pipelines: PipelineCache::default(),
            staging: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            profiler: super::recorder::Profiler::from_env(),
        })
    }

    /// The device's per-kernel timing (GPU timestamps, wall-clock profiling).
    pub fn profiler(&self) -> &super::recorder::Profiler {
        &self.profiler
    }

    /// The device's properties.
    pub fn props(&self) -> &DeviceProps {
        &self.props
    }

    /// The device's limits.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.props.limits
    }

    /// The raw wgpu device, for embedding metalearn in a larger wgpu program.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }

    /// The raw wgpu queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Return the first GPU error reported since the last call (validation error, out of memory,
    /// device lost), if any, as `Err`.
    pub fn check_errors(&self) -> Result<()> {
        let mut v = self
            .errors
            .lock()
            .map_err(|_| Error::Gpu("error sink poisoned".into()))?;
        if v.is_empty() {
            return Ok(());
        }
        let msg = v.join("\n");
        v.clear();
        Err(Error::Gpu(msg))
    }

    /// Block until all submitted work has finished.
    pub fn wait(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")))?;
        self.check_errors()
    }

    /// Bytes the adapter can hold, where that is known: a software adapter (lavapipe,
    /// llvmpipe) allocates from host memory, so the host's available memory (`MemAvailable` in
    /// /proc/meminfo); `None` for hardware adapters, whose memory size wgpu does not report.
    pub fn memory_available(&self) -> Option<u64> {
        if !self.props.is_software() {
            return None;
        }
        let info = std::fs::read_to_string("/proc/meminfo").ok()?;
        let line = info.lines().find(|l| l.starts_with("MemAvailable:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib.saturating_mul(1024))
    }

    /// Check that buffers of `bytes` in all fit the memory the adapter has, where that is known
    /// ([`Gpu::memory_available`]).
    pub fn check_memory(&self, bytes: u64) -> Result<()> {
        match self.memory_available() {
            Some(avail) if bytes > avail => Err(Error::LimitExceeded {
                what: "memory the run's GPU buffers need in bytes".into(),
                value: bytes,
                limit: avail,
                limit_name: "memory available to the (software) adapter",
                hint: "use fewer task instances, a shorter unroll, fewer checkpoint slots (meta.schedule = \"sqrt\" or \"revolve-K\", or meta.memory_budget_mib), or a smaller model; `metalearn train --dry-run` prints the estimate".into(),
            }),
            _ => Ok(()),
        }
    }

    /// Check that `bytes` fits one storage binding and one buffer; `what` names the buffer in the error.
    pub fn check_storage_size(&self, what: &str, bytes: u64) -> Result<()> {
        let l = &self.props.limits;
        let hint =
            "use fewer task instances, a shorter unroll, a smaller model or batch, or a GPU with larger limits";
        for (limit, limit_name) in [
            (l.max_buffer_size, "max_buffer_size"),
            (
                l.max_storage_buffer_binding_size,
                "max_storage_buffer_binding_size",
            ),
        ] {
            if bytes > limit {
                return Err(Error::LimitExceeded {
                    what: format!("buffer '{what}' size in bytes"),
                    value: bytes,
                    limit,
                    limit_name,
                    hint: hint.into(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, ty: wgpu::DeviceType, backend: wgpu::Backend) -> wgpu::AdapterInfo {
        let mut i = wgpu::AdapterInfo::new(ty, backend);
        i.name = name.into();
        i
    }

    #[test]
    fn ranking_prefers_hardware_then_software_vulkan_then_gl() {
        use wgpu::{Backend as B, DeviceType as D};
        let mut v = [
            info("llvmpipe (LLVM 15.0.6, 256 bits)", D::Other, B::Gl),
            info("llvmpipe (LLVM 15.0.6, 256 bits)", D::Cpu, B::Vulkan),
            info("NVIDIA H200", D::DiscreteGpu, B::Gl),
            info("NVIDIA H200", D::DiscreteGpu, B::Vulkan),
        ];
        v.sort_by_key(adapter_rank);
        assert_eq!(
            (v[0].backend, v[0].device_type),
            (B::Vulkan, D::DiscreteGpu)
        );
        assert_eq!((v[1].backend, v[1].device_type), (B::Gl, D::DiscreteGpu));
        assert_eq!((v[2].backend, v[2].device_type), (B::Vulkan, D::Cpu));
        assert_eq!(v[3].backend, B::Gl);
    }

    #[test]
    fn backend_names_parse_and_bad_ones_are_named() {
        assert_eq!(
            parse_backends("vulkan, gl").ok(),
            Some(wgpu::Backends::VULKAN | wgpu::Backends::GL)
        );
        let e = parse_backends("vulkna").err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("vulkna") && m.contains("vulkan, gl")));
    }
}
