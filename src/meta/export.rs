//! Export of one outer step: everything an independent implementation needs to recompute the
//! meta-loss and the meta-gradients, in one safetensors file (names in `docs/export.md`).

use std::collections::BTreeMap;
use std::path::Path;

use super::save::write_atomically;
use super::tensor_file::{self, F32Tensor};
use super::trainer::{FinalBatch, MetaTrainer};
use crate::tasks::{BatchRef, NamedTensor};
use crate::Result;

/// Format tag written in the metadata.
pub const FORMAT: &str = "metalearn-export-1";

/// What [`export_outer_step`] wrote.
#[derive(Clone, Debug)]
pub struct ExportSummary {
    /// Meta-loss M.
    pub meta_loss: f32,
    /// Tensors written.
    pub tensors: usize,
    /// Bytes of the file.
    pub bytes: u64,
}

fn json_list(v: &[f32]) -> String {
    let s: Vec<String> = v.iter().map(|x| format!("{x:e}")).collect();
    format!("[{}]", s.join(","))
}

/// Compute the meta-gradient of one outer step on the trainer's current instances (no update)
/// and write it, with its inputs, to `path` (written to a temporary file, then renamed).
pub fn export_outer_step(tr: &mut MetaTrainer, path: &Path) -> Result<ExportSummary> {
    let mg = tr.meta_gradient()?;
    let cfg = tr.config().clone();
    let (t, n) = (cfg.unroll, tr.task().instances());
    let layout = tr.task().layout().clone();
    let p = layout.size();
    let phi = tr.phi()?;
    let init: Vec<f32> = if cfg.learn_init {
        let th = tr.theta0()?;
        (0..n).flat_map(|_| th.iter().copied()).collect()
    } else {
        tr.instance_init()?
    };
    let mut tensors: Vec<NamedTensor> = vec![
        ("init".into(), vec![n, p], init),
        ("weights".into(), vec![t + 1], tr.weights().to_vec()),
        ("losses".into(), vec![t + 1, n], mg.losses.clone()),
        ("meta_loss".into(), vec![1], vec![mg.meta_loss]),
        ("grad.theta0".into(), vec![p], mg.theta0.clone()),
        (
            "grad.theta0_per_instance".into(),
            vec![n, p],
            mg.theta0_per_instance.clone(),
        ),
    ];
    if !phi.is_empty() {
        tensors.push(("phi".into(), vec![phi.len()], phi));
        tensors.push(("grad.phi".into(), vec![mg.phi.len()], mg.phi.clone()));
    }
    if cfg.learn_init {
        tensors.push(("theta0".into(), vec![p], tr.theta0()?));
    }
    let task = tr.task();
    if task.batched() {
        for s in 0..t {
            for (name, shape, v) in task.export_batch(BatchRef::Train(s as u32))? {
                tensors.push((format!("batch.{s}.{name}"), shape, v));
            }
        }
        let fin = match cfg.final_batch {
            FinalBatch::Train => BatchRef::Train(t as u32),
            FinalBatch::HeldOut => BatchRef::HeldOut(t as u32),
        };
        for (name, shape, v) in task.export_batch(fin)? {
            tensors.push((format!("batch.{t}.{name}"), shape, v));
        }
    } else {
        for (name, shape, v) in task.export_batch(BatchRef::Train(0))? {
            tensors.push((format!("task.{name}"), shape, v));
        }
    }
    let mut meta: BTreeMap<String, String> = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        meta.insert(k.to_string(), v);
    };
    put("format", FORMAT.into());
    put("instances", n.to_string());
    put("params", p.to_string());
    put("unroll", t.to_string());
    put("mode", cfg.mode.name().into());
    put("schedule", cfg.schedule.name());
    put(
        "final_batch",
        format!("{:?}", cfg.final_batch).to_lowercase(),
    );
    put("learn_init", cfg.learn_init.to_string());
    put("learn_optimizer", cfg.learn_optimizer.to_string());
    put("episode_offset", tr.episode_offset().to_string());
    put("weights", json_list(tr.weights()));
    let opt = tr.optimizer();
    put("optimizer", opt.name().into());
    for (k, v) in opt.hyper() {
        put(&format!("optimizer.{k}"), v);
    }
    let entries: Vec<String> = layout
        .entries()
        .iter()
        .map(|e| {
            let shape: Vec<String> = e.shape.iter().map(|d| d.to_string()).collect();
            format!(
                "{{\"name\":\"{}\",\"shape\":[{}],\"offset\":{},\"transposed\":{},\"tied\":{}}}",
                e.name,
                shape.join(","),
                e.offset,
                e.transposed,
                e.tied_to.is_some()
            )
        })
        .collect();
    put("layout", format!("[{}]", entries.join(",")));
    for (k, v) in task.describe() {
        put(&k, v);
    }
    let views: Vec<F32Tensor> = tensors
        .iter()
        .map(|(name, shape, v)| (name.as_str(), shape.as_slice(), v.as_slice()))
        .collect();
    let count = views.len();
    let data = tensor_file::serialize(&views, &meta)?;
    write_atomically(path, &data)?;
    Ok(ExportSummary {
        meta_loss: mg.meta_loss,
        tensors: count,
        bytes: data.len() as u64,
    })
}
