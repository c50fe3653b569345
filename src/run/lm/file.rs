//! The safetensors files of an LM run, one reader and writer for both: the model
//! ([`super::LM_FILE`]: tensor `theta`) and the training checkpoint ([`super::LM_CHECKPOINT`]:
//! `theta`, the optimizer's state `opt_state` and the carried state `lm_state`). Metadata:
//! `format`, `step`, `config` (TOML), `vocab` (the vocabulary's text form), entries of the file
//! kind, and `checksum` (FNV-1a 64 of the tensors' bytes in name order, then of every other
//! metadata entry as `key NUL value NUL` in key order).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::SafeTensors;

use crate::config::{Config, LM_KIND};
use crate::data::text::Vocab;
use crate::meta::save::{fnv1a, metadata_checksum, FNV_OFFSET};
use crate::meta::tensor_file;
use crate::{Error, Result};

/// An LM file's contents.
pub(super) struct LmFile {
    pub config: Config,
    pub vocab: Vocab,
    pub step: usize,
    pub meta: HashMap<String, String>,
    pub tensors: BTreeMap<String, Vec<f32>>,
}

/// The bytes of an LM file of `format` with `tensors` (flat) and the `extra` metadata.
pub(super) fn to_bytes(
    format: &str,
    (config, vocab, step): (&Config, &Vocab, usize),
    extra: &[(&str, String)],
    tensors: &[(&str, &[f32])],
) -> Result<Vec<u8>> {
    let mut meta: BTreeMap<String, String> = [
        ("format", format.to_string()),
        ("step", step.to_string()),
        ("config", config.to_toml()?),
        ("vocab", vocab.to_text()),
    ]
    .into_iter()
    .chain(extra.iter().map(|(k, v)| (*k, v.clone())))
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let mut sorted: Vec<&(&str, &[f32])> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let hash = sorted.iter().fold(FNV_OFFSET, |h, (_, t)| {
        fnv1a(h, bytemuck::cast_slice::<f32, u8>(t))
    });
    let checksum = metadata_checksum(hash, &meta);
    meta.insert("checksum".into(), format!("{checksum:016x}"));
    let shapes: Vec<[usize; 1]> = tensors.iter().map(|(_, t)| [t.len()]).collect();
    let named: Vec<tensor_file::F32Tensor> = tensors
        .iter()
        .zip(&shapes)
        .map(|((n, t), s)| (*n, &s[..], *t))
        .collect();
    tensor_file::serialize(&named, &meta)
}

/// Parse an LM file of `format` holding exactly the tensors `names`; `path` names it in
/// errors, `hint` says what to do about a bad one.
pub(super) fn from_bytes(
    data: &[u8],
    path: &Path,
    (format, names): (&str, &[&str]),
    hint: &str,
) -> Result<LmFile> {
    let bad = |problem: String| Error::Checkpoint {
        path: path.to_path_buf(),
        problem,
        hint: hint.into(),
    };
    let st = SafeTensors::deserialize(data)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    let meta = tensor_file::read_metadata(data, &bad)?;
    let get = |k: &str| tensor_file::required(&meta, k, &bad);
    let found = get("format")?;
    if found != format {
        return Err(bad(format!("format '{found}', expected '{format}'")));
    }
    let mut have: Vec<String> = st.names().iter().map(|s| s.to_string()).collect();
    have.sort();
    let mut want: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    want.sort();
    if have != want {
        return Err(bad(format!("tensors {have:?}, expected {want:?}")));
    }
    let (values, hash) = tensor_file::read_flat(&st, &want, &bad)?;
    let tensors: BTreeMap<String, Vec<f32>> = want.iter().cloned().zip(values).collect();
    let checksum = metadata_checksum(hash, &meta);
    let stored = get("checksum")?;
    if *stored != format!("{checksum:016x}") {
        return Err(bad(format!(
            "checksum mismatch (stored {stored}, computed {checksum:016x}): the tensors or the metadata are corrupt"
        )));
    }
    let step_text = get("step")?;
    let step = step_text.parse().map_err(|_| {
        bad(format!(
            "metadata 'step' = '{step_text}' is not a whole number"
        ))
    })?;
    let config = Config::from_toml(get("config")?, &format!("{} (its config)", path.display()))?;
    if config.task.kind != LM_KIND {
        return Err(bad(format!(
            "its config has task.kind = '{}', not '{LM_KIND}'",
            config.task.kind
        )));
    }
    let vocab = Vocab::parse(get("vocab")?)
        .map_err(|e| bad(format!("its vocabulary does not parse: {e}")))?;
    Ok(LmFile {
        config,
        vocab,
        step,
        meta,
        tensors,
    })
}
