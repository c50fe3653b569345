//! safetensors files with a fixed byte layout: the same tensors and metadata always give the
//! same bytes (metadata keys and tensors in name order, header padded with spaces to 8 bytes),
//! so checkpoints and exports of the same state are byte-identical and can be compared by hash.

use std::collections::{BTreeMap, HashMap};

use safetensors::{Dtype, SafeTensors};

use crate::{Error, Result};

/// One f32 tensor to write: name, shape and its values.
pub type F32Tensor<'a> = (&'a str, &'a [usize], &'a [f32]);

/// The safetensors bytes of `tensors` (f32) with `metadata`.
pub fn serialize(tensors: &[F32Tensor], metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    let mut sorted: Vec<&F32Tensor> = tensors.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    if sorted.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(Error::invalid("tensor file: two tensors share a name"));
    }
    let mut header = serde_json::Map::new();
    header.insert(
        "__metadata__".into(),
        serde_json::to_value(metadata).map_err(|e| Error::invalid(format!("tensor file: {e}")))?,
    );
    let mut offset = 0usize;
    for (name, shape, values) in &sorted {
        if shape.iter().product::<usize>() != values.len() {
            return Err(Error::invalid(format!(
                "tensor file: tensor '{name}' has {} values for shape {shape:?}",
                values.len()
            )));
        }
        let end = offset + 4 * values.len();
        header.insert(
            (*name).to_string(),
            serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [offset, end]}),
        );
        offset = end;
    }
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header))
        .map_err(|e| Error::invalid(format!("tensor file: {e}")))?;
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let mut out = Vec::with_capacity(8 + head.len() + offset);
    out.extend_from_slice(&(head.len() as u64).to_le_bytes());
    out.extend_from_slice(&head);
    for (_, _, values) in &sorted {
        out.extend_from_slice(bytemuck::cast_slice::<f32, u8>(values));
    }
    Ok(out)
}

/// The metadata of the safetensors bytes `data`; problems are reported through `bad` (which
/// names the file and the fix).
pub fn read_metadata(
    data: &[u8],
    bad: &impl Fn(String) -> Error,
) -> Result<HashMap<String, String>> {
    let (_, header) = SafeTensors::read_metadata(data)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    header
        .metadata()
        .clone()
        .ok_or_else(|| bad("no metadata".into()))
}

/// The value of metadata key `k`, or `bad`'s error naming the missing key.
pub fn required<'m>(
    meta: &'m HashMap<String, String>,
    k: &str,
    bad: &impl Fn(String) -> Error,
) -> Result<&'m String> {
    meta.get(k)
        .ok_or_else(|| bad(format!("metadata key '{k}' is missing")))
}

/// The flat F32 tensors `names` of `st`, in that order, and the FNV-1a 64 hash of their bytes
/// in that order (from the offset basis); `bad` words the error of a missing or malformed one.
pub fn read_flat(
    st: &SafeTensors,
    names: &[String],
    bad: &impl Fn(String) -> Error,
) -> Result<(Vec<Vec<f32>>, u64)> {
    let mut hash = crate::meta::save::FNV_OFFSET;
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let t = st
            .tensor(name)
            .map_err(|e| bad(format!("tensor '{name}': {e}")))?;
        if t.dtype() != Dtype::F32 || t.shape().len() != 1 {
            return Err(bad(format!(
                "tensor '{name}' is {:?} of shape {:?}, expected a flat F32 tensor",
                t.dtype(),
                t.shape()
            )));
        }
        hash = crate::meta::save::fnv1a(hash, t.data());
        out.push(
            t.data()
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        );
    }
    Ok((out, hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_gives_the_same_bytes_and_parses() {
        let meta = |order: &[(&str, &str)]| -> BTreeMap<String, String> {
            order
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let a = [1.0f32, 2.0, 3.0];
        let b = [4.0f32];
        let x = serialize(
            &[("b", &[1], &b), ("a", &[3], &a)],
            &meta(&[("z", "1"), ("k", "2")]),
        )
        .expect("serialize");
        let y = serialize(
            &[("a", &[3], &a), ("b", &[1], &b)],
            &meta(&[("k", "2"), ("z", "1")]),
        )
        .expect("serialize");
        assert_eq!(x, y);
        let st = safetensors::SafeTensors::deserialize(&x).expect("valid safetensors");
        let t = st.tensor("a").expect("a");
        assert_eq!(t.shape(), &[3]);
        let got: Vec<f32> = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(got, a);
        let (_, m) = safetensors::SafeTensors::read_metadata(&x).expect("header");
        let md = m.metadata().clone().expect("metadata");
        assert_eq!(md.get("z").map(String::as_str), Some("1"));
    }

    #[test]
    fn bad_shapes_and_duplicate_names_are_refused() {
        let a = [1.0f32, 2.0];
        let m = BTreeMap::new();
        assert!(serialize(&[("a", &[3], &a)], &m).is_err());
        assert!(serialize(&[("a", &[2], &a), ("a", &[2], &a)], &m).is_err());
    }
}
