//! Kernel registry and pipeline cache.
//!
//! Every compute entry point is described once by a [`Kernel`]: its WGSL file, entry point, the
//! storage buffers it binds at `@group(0)` (in binding order, with their access), and the size of
//! its parameter struct, bound as `@group(1) @binding(0) var<uniform>` with a dynamic offset.
//! A unit test checks every description against the WGSL with naga.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::gpu::Gpu;
use crate::{Error, Result};

/// The shared WGSL prelude, prepended to every shader at pipeline creation: the flat
/// workgroup and invocation indices of a grid split over x and y.
pub const PRELUDE: &str = include_str!("prelude.wgsl");

/// The deterministic 256-wide workgroup tree reduction (`tree_sum_256` over the workgroup
/// array `tree_256`), added after [`PRELUDE`] for shaders built with
/// [`Shader::with_tree_reduction`].
pub const PRELUDE_TREE: &str = include_str!("prelude_tree.wgsl");

/// One WGSL file: its name (for errors and profiles) and its source, embedded by the module
/// that dispatches it (`include_str!`, beside the Rust wrapper). The runtime compiles it with
/// [`PRELUDE`] in front.
#[derive(Debug)]
pub struct Shader {
    /// File name, unique among the crate's shaders.
    pub name: &'static str,
    /// WGSL source without the prelude.
    pub source: &'static str,
    /// Whether [`PRELUDE_TREE`] is prepended too.
    pub tree_reduction: bool,
}

impl Shader {
    /// A shader named `name` with WGSL `source`.
    pub const fn new(name: &'static str, source: &'static str) -> Self {
        Self {
            name,
            source,
            tree_reduction: false,
        }
    }

    /// The same shader with the tree-reduction prelude ([`PRELUDE_TREE`]).
    pub const fn with_tree_reduction(mut self) -> Self {
        self.tree_reduction = true;
        self
    }

    /// The source the runtime compiles: [`PRELUDE`] (and [`PRELUDE_TREE`]) followed by the
    /// shader.
    pub fn full_source(&self) -> String {
        let tree = if self.tree_reduction {
            PRELUDE_TREE
        } else {
            ""
        };
        format!("{PRELUDE}\n{tree}\n{}", self.source)
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

/// One compute entry point and its binding contract.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Kernel {
    /// The WGSL file.
    pub shader: &'static Shader,
    /// Entry point name.
    pub entry: &'static str,
    /// Storage buffers at `@group(0) @binding(i)`, in order.
    pub bindings: &'static [Access],
    /// Size in bytes of the uniform parameter struct at `@group(1) @binding(0)`.
    pub params_size: usize,
}

impl Kernel {
    /// Entry point `entry` of `shader` with its storage bindings and parameter-struct size.
    pub const fn new(
        shader: &'static Shader,
        entry: &'static str,
        bindings: &'static [Access],
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
            .map(|(i, a)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: wgpu::BufferBindingType::Storage {
                        read_only: *a == Access::Read,
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
