//! Kernel registry and pipeline cache.
//!
//! Every compute entry point is described once by a [`Kernel`]: its WGSL file, entry point, the
//! storage buffers it binds at `@group(0)` (in binding order, with their WGSL names, element
//! types and access), and the size of its parameter struct, bound as
//! `@group(1) @binding(0) var<uniform> p: Params` with a dynamic offset. The WGSL files hold
//! only the kernels' code: the runtime writes the declarations of `Params` (from the Rust
//! struct, see [`shader!`](crate::shader)) and of every binding (from the kernels'
//! descriptions) in front of it, so the two sides cannot disagree. A unit test validates every
//! shader with naga and checks that each entry point uses exactly the bindings it declares.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::gpu::Gpu;
use crate::{Error, Result};

/// The shared WGSL prelude, prepended to every shader at pipeline creation: the flat
/// workgroup and invocation indices of a grid split over x and y.
pub const PRELUDE: &str = include_str!("prelude.wgsl");

/// The deterministic 256-wide workgroup tree reduction (`tree_sum_256` over the workgroup
/// array `tree_256`), added after [`PRELUDE`] for shaders built with
/// [`Shader::tree_reduction`].
pub const PRELUDE_TREE: &str = include_str!("prelude_tree.wgsl");

/// One WGSL file: its name (for errors and profiles), its source (embedded by the module that
/// dispatches it, `include_str!`, beside the Rust wrapper), the WGSL declaration of its
/// parameter struct and its kernels. The runtime compiles [`Shader::full_source`].
#[derive(Debug)]
pub struct Shader {
    /// File name, unique among the crate's shaders.
    pub name: &'static str,
    /// WGSL source of the kernels, without any declaration of `Params` or of a binding.
    pub source: &'static str,
    /// `struct Params { … }` (the `WGSL` constant of a [`shader!`](crate::shader) parameter
    /// struct).
    pub params: &'static str,
    /// The entry points of the file; their bindings are declared from these.
    pub kernels: &'static [&'static Kernel],
    /// Whether [`PRELUDE_TREE`] is prepended too.
    pub tree_reduction: bool,
}

impl Shader {
    /// The shader `name` with WGSL `source`, parameter struct `params` and entry points
    /// `kernels`.
    pub const fn new(
        name: &'static str,
        source: &'static str,
        params: &'static str,
        kernels: &'static [&'static Kernel],
    ) -> Self {
        Self {
            name,
            source,
            params,
            kernels,
            tree_reduction: false,
        }
    }

    /// The same shader with the tree-reduction prelude ([`PRELUDE_TREE`]).
    pub const fn tree_reduction(mut self) -> Self {
        self.tree_reduction = true;
        self
    }

    /// The storage bindings of all the kernels, each name once, in first use: `(binding
    /// index, binding)`. A name that two kernels declare differently is listed twice, and the
    /// WGSL then fails to compile with a redefinition (the naga test names it).
    pub fn declared_bindings(&self) -> Vec<(u32, Binding)> {
        let mut out: Vec<(u32, Binding)> = Vec::new();
        for k in self.kernels {
            for (i, b) in (0u32..).zip(k.bindings.iter()) {
                if !out.iter().any(|(j, d)| *j == i && d == b) {
                    out.push((i, *b));
                }
            }
        }
        out
    }

    /// The source the runtime compiles: [`PRELUDE`] (and [`PRELUDE_TREE`]), the parameter
    /// struct and its uniform, the storage bindings, then the shader.
    pub fn full_source(&self) -> String {
        let tree = if self.tree_reduction {
            PRELUDE_TREE
        } else {
            ""
        };
        let mut decl = String::new();
        for (i, b) in self.declared_bindings() {
            let access = match b.access {
                Access::Read => "read",
                Access::ReadWrite => "read_write",
            };
            decl.push_str(&format!(
                "@group(0) @binding({i}) var<storage, {access}> {}: array<{}>;\n",
                b.name, b.elem
            ));
        }
        format!(
            "{PRELUDE}\n{tree}\n{}\n@group(1) @binding(0) var<uniform> p: Params;\n{decl}\n{}",
            self.params, self.source
        )
    }
}

impl PartialEq for Shader {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Shader {}

impl std::hash::Hash for Shader {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// Access of a storage binding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// `var<storage, read>`
    Read,
    /// `var<storage, read_write>`
    ReadWrite,
}

/// One storage binding of a kernel: `var<storage, access> name: array<elem>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Binding {
    /// The WGSL name the kernel's code uses.
    pub name: &'static str,
    /// Read-only or read-write.
    pub access: Access,
    /// Element type of the array (`f32` unless [`Binding::of`] says otherwise).
    pub elem: &'static str,
}

impl Binding {
    /// The same binding with elements of WGSL type `elem` (`u32`, `vec4<f32>`, …).
    pub const fn of(mut self, elem: &'static str) -> Self {
        self.elem = elem;
        self
    }
}

/// A read-only `array<f32>` binding named `name`.
pub const fn read(name: &'static str) -> Binding {
    Binding {
        name,
        access: Access::Read,
        elem: "f32",
    }
}

/// A read-write `array<f32>` binding named `name`.
pub const fn write(name: &'static str) -> Binding {
    Binding {
        name,
        access: Access::ReadWrite,
        elem: "f32",
    }
}

/// One compute entry point and its binding contract.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// The WGSL file.
    pub shader: &'static Shader,
    /// Entry point name.
    pub entry: &'static str,
    /// Storage buffers at `@group(0) @binding(i)`, in order.
    pub bindings: &'static [Binding],
    /// Size in bytes of the uniform parameter struct at `@group(1) @binding(0)`.
    pub params_size: usize,
}

impl Kernel {
    /// Entry point `entry` of `shader` with its storage bindings and parameter-struct size.
    pub const fn new(
        shader: &'static Shader,
        entry: &'static str,
        bindings: &'static [Binding],
        params_size: usize,
    ) -> Self {
        Self {
            shader,
            entry,
            bindings,
            params_size,
        }
    }
}

/// Declares one shader and everything the runtime needs to know of it, once:
///
/// ```ignore
/// metalearn::shader! {
///     pub static SHADER = "vec.wgsl";
///     pub struct VecParams { count: u32, xo: u32, yo: u32, a: f32 }
///     /// y += a·x
///     pub AXPY = axpy(read x, write y);
///     /// y = x, one vec4 per invocation.
///     pub COPY4 = copy4(read x4: vec4<f32>, write y4: vec4<f32>);
/// }
/// ```
///
/// defines the [`Shader`] static (its WGSL file embedded with `include_str!` beside the
/// invoking module; `pub static SHADER = "reduce.wgsl", tree_reduction;` adds
/// [`PRELUDE_TREE`]), the `#[repr(C)]` parameter struct (`Clone, Copy, Debug, Default, Pod,
/// Zeroable`, u32/f32 fields written as in WGSL) with `const WGSL: &str`, its declaration as
/// `struct Params` for the shader, and one [`Kernel`] static per entry point with its storage
/// bindings in binding order: `read NAME` or `write NAME` (read-write), `: TYPE` for an element
/// type other than `f32`. The shader and the struct are documented by the macro (file name).
#[macro_export]
macro_rules! shader {
    (
        $(#[$smeta:meta])* $svis:vis static $shader:ident = $file:literal $(, $tree:ident)?;
        $(#[$pmeta:meta])* $pvis:vis struct $params:ident { $($field:ident: $fty:ident),* $(,)? }
        $(
            $(#[$kmeta:meta])* $kvis:vis $kernel:ident =
                $entry:ident($($access:ident $bind:ident $(: $elem:ty)?),* $(,)?);
        )*
    ) => {
        #[doc = concat!("Parameters of the `", $file, "` kernels (`struct Params` in the WGSL).")]
        $(#[$pmeta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $pvis struct $params {
            $($field: $fty,)*
        }

        impl $params {
            /// The WGSL declaration of this struct, as `struct Params`.
            pub const WGSL: &'static str = concat!(
                "struct Params {",
                $(" ", stringify!($field), ": ", stringify!($fty), ",",)*
                " }\n"
            );
        }

        #[doc = concat!("`", $file, "`.")]
        $(#[$smeta])*
        $svis static $shader: $crate::gpu::Shader = $crate::gpu::Shader::new(
            $file,
            include_str!($file),
            $params::WGSL,
            &[$(&$kernel),*],
        )$(.$tree())?;

        $(
            $(#[$kmeta])*
            $kvis static $kernel: $crate::gpu::Kernel = $crate::gpu::Kernel::new(
                &$shader,
                stringify!($entry),
                &[$($crate::gpu::$access(stringify!($bind))$(.of(stringify!($elem)))?),*],
                std::mem::size_of::<$params>(),
            );
        )*
    };
}

/// Largest parameter struct any kernel may have; also the stride of parameter slots.
pub const PARAMS_SLOT: u64 = 256;

/// A compiled pipeline with its group-0 layout.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout0: wgpu::BindGroupLayout,
    /// Entry point name (for profiles).
    pub entry: &'static str,
    /// Unique id, used to key bind-group caches.
    pub id: u64,
}

type PipelineKey = (&'static str, &'static str, Vec<(&'static str, u64)>);

/// Pipelines keyed by (kernel, specialisation constants), created once.
#[derive(Default)]
pub(crate) struct PipelineCache {
    modules: Mutex<HashMap<&'static str, wgpu::ShaderModule>>,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    params_layout: Mutex<Option<wgpu::BindGroupLayout>>,
}

fn lock_err<T>(_: T) -> Error {
    Error::Gpu("pipeline cache lock poisoned".into())
}

impl Gpu {
    /// The shared layout of `@group(1)`: one uniform buffer with a dynamic offset.
    pub(crate) fn params_layout(&self) -> Result<wgpu::BindGroupLayout> {
        let mut slot = self.pipelines.params_layout.lock().map_err(lock_err)?;
        if let Some(l) = slot.as_ref() {
            return Ok(l.clone());
        }
        let l = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some("metalearn params"),
                entries: &[wgpu::BindGroupLayoutEntry {
                    binding: 0,
                    visibility: wgpu::ShaderStages::COMPUTE,
                    ty: wgpu::BindingType::Buffer {
                        ty: wgpu::BufferBindingType::Uniform,
                        has_dynamic_offset: true,
                        min_binding_size: None,
                    },
                    count: None,
                }],
            });
        *slot = Some(l.clone());
        Ok(l)
    }

    /// The pipeline of `kernel` specialised with `constants` (WGSL `override`s), created on first use.
    pub(crate) fn pipeline(
        &self,
        kernel: &'static Kernel,
        constants: &[(&'static str, f64)],
    ) -> Result<Arc<Pipeline>> {
        let key: PipelineKey = (
            kernel.shader.name,
            kernel.entry,
            constants.iter().map(|(k, v)| (*k, v.to_bits())).collect(),
        );
        if let Some(p) = self.pipelines.pipelines.lock().map_err(lock_err)?.get(&key) {
            return Ok(p.clone());
        }
        let params_layout = self.params_layout()?;
        let shader_err = |message: String| Error::Shader {
            shader: kernel.shader.name,
            entry: kernel.entry,
            message,
        };
        if kernel.params_size as u64 > PARAMS_SLOT {
            return Err(shader_err(format!(
                "parameter struct of {} bytes exceeds the {PARAMS_SLOT}-byte slot",
                kernel.params_size
            )));
        }
        let dev = &self.device;
        let internal = dev.push_error_scope(wgpu::ErrorFilter::Internal);
        let validation = dev.push_error_scope(wgpu::ErrorFilter::Validation);
        let module = {
            let mut modules = self.pipelines.modules.lock().map_err(lock_err)?;
            modules
                .entry(kernel.shader.name)
                .or_insert_with(|| {
                    dev.create_shader_module(wgpu::ShaderModuleDescriptor {
                        label: Some(kernel.shader.name),
                        source: wgpu::ShaderSource::Wgsl(kernel.shader.full_source().into()),
                    })
                })
                .clone()
        };
        let entries: Vec<wgpu::BindGroupLayoutEntry> = kernel
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: b.access == Access::Read,
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect();
        let layout0 = dev.create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
            label: Some(kernel.entry),
            entries: &entries,
        });
        let layout = dev.create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
            label: Some(kernel.entry),
            bind_group_layouts: &[Some(&layout0), Some(&params_layout)],
            immediate_size: 0,
        });
        let pipeline = dev.create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
            label: Some(kernel.entry),
            layout: Some(&layout),
            module: &module,
            entry_point: Some(kernel.entry),
            compilation_options: wgpu::PipelineCompilationOptions {
                constants,
                // Every kernel writes its workgroup memory before reading it.
                zero_initialize_workgroup_memory: false,
            },
            cache: None,
        });
        let v = pollster::block_on(validation.pop());
        let i = pollster::block_on(internal.pop());
        if let Some(e) = v.or(i) {
            // A failed shader module stays failed: drop it so a later call reports the error again.
            if let Ok(mut m) = self.pipelines.modules.lock() {
                m.remove(kernel.shader.name);
            }
            return Err(shader_err(e.to_string()));
        }
        let p = Arc::new(Pipeline {
            pipeline,
            layout0,
            entry: kernel.entry,
            id: self.next_id(),
        });
        self.pipelines
            .pipelines
            .lock()
            .map_err(lock_err)?
            .insert(key, p.clone());
        Ok(p)
    }
}
