//! Named parameter tensors laid out in one flat f32 block per task instance.
//!
//! A [`ParamLayout`] lists the tensors of one model instance: each owns a contiguous range of the
//! instance's block (`offset .. offset + len`), row-major. A *tied* tensor owns no storage: it is
//! a second name for another tensor's storage, optionally read transposed (a decoder weight that is
//! the encoder weight transposed, a shared embedding). Gradients of every name that shares a
//! storage accumulate into that one storage, and the optimizer updates it once, since it walks the
//! flat block.
//!
//! N instances are stored back to back: instance n's block starts at `n · size()`; on the GPU
//! they form one buffer of N · size() floats (leading instance dimension).

use crate::{Error, Result};

/// One named tensor of a layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamEntry {
    /// Unique name, e.g. `l0.w`.
    pub name: String,
    /// Logical shape of this name (for a transposed tie, the transpose of the storage's shape).
    pub shape: Vec<usize>,
    /// Offset of the storage in the instance's block.
    pub offset: usize,
    /// Read the storage transposed (2-D ties only).
    pub transposed: bool,
    /// Index of the entry that owns the storage, for tied names.
    pub tied_to: Option<usize>,
}

impl ParamEntry {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True when this name owns its storage.
    pub fn owns_storage(&self) -> bool {
        self.tied_to.is_none()
    }
}

/// The table of named tensors of one model instance.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParamLayout {
    entries: Vec<ParamEntry>,
    size: usize,
}

impl ParamLayout {
    /// An empty layout.
    pub fn new() -> Self {
        Self::default()
    }

    /// A layout of one flat tensor named `params` of `len` floats (at least 1).
    pub fn flat(len: usize) -> Result<Self> {
        let mut l = Self::new();
        l.add("params", &[len])?;
        Ok(l)
    }

    /// Add a tensor with its own storage; returns its index.
    pub fn add(&mut self, name: &str, shape: &[usize]) -> Result<usize> {
        self.check_new_name(name)?;
        if shape.is_empty() || shape.contains(&0) {
            return Err(Error::invalid(format!(
                "parameter '{name}' has shape {shape:?}; every dimension must be at least 1"
            )));
        }
        let len: usize = shape.iter().product();
        self.entries.push(ParamEntry {
            name: name.into(),
            shape: shape.to_vec(),
            offset: self.size,
            transposed: false,
            tied_to: None,
        });
        self.size += len;
        Ok(self.entries.len() - 1)
    }

    /// Add `name` as a second name for the storage of `target` (read transposed when `transposed`,
    /// which needs a 2-D target). Ties to a tied name resolve to its owner.
    pub fn tie(&mut self, name: &str, target: &str, transposed: bool) -> Result<usize> {
        self.check_new_name(name)?;
        let ti = self.index(target).ok_or_else(|| {
            Error::invalid(format!("cannot tie '{name}': no parameter '{target}'"))
        })?;
        let t = &self.entries[ti];
        let owner = t.tied_to.unwrap_or(ti);
        let mut shape = t.shape.clone();
        let mut flip = t.transposed;
        if transposed {
            if shape.len() != 2 {
                return Err(Error::invalid(format!(
                    "cannot tie '{name}' transposed to '{target}' of shape {shape:?}: only 2-D tensors transpose"
                )));
            }
            shape.reverse();
            flip = !flip;
        }
        let offset = t.offset;
        self.entries.push(ParamEntry {
            name: name.into(),
            shape,
            offset,
            transposed: flip,
            tied_to: Some(owner),
        });
        Ok(self.entries.len() - 1)
    }

    fn check_new_name(&self, name: &str) -> Result<()> {
        if name.is_empty() {
            return Err(Error::invalid("parameter names cannot be empty"));
        }
        if self.index(name).is_some() {
            return Err(Error::invalid(format!(
                "parameter '{name}' is defined twice"
            )));
        }
        Ok(())
    }

    /// Index of a name.
    pub fn index(&self, name: &str) -> Option<usize> {
        self.entries.iter().position(|e| e.name == name)
    }

    /// The entry of a name.
    pub fn get(&self, name: &str) -> Option<&ParamEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The entry of a name, or an error naming it.
    pub fn require(&self, name: &str) -> Result<&ParamEntry> {
        self.get(name)
            .ok_or_else(|| Error::invalid(format!("no parameter named '{name}'")))
    }

    /// All entries, in the order they were added.
    pub fn entries(&self) -> &[ParamEntry] {
        &self.entries
    }

    /// Floats of storage per instance (tied names add none).
    pub fn size(&self) -> usize {
        self.size
    }

    /// The (offset, length) of every tensor that owns storage, in storage order (the
    /// per-tensor segments of one instance's parameters).
    pub fn segments(&self) -> Vec<(usize, usize)> {
        let mut v: Vec<(usize, usize)> = self
            .entries()
            .iter()
            .filter(|e| e.owns_storage())
            .map(|e| (e.offset, e.len()))
            .collect();
        v.sort_unstable();
        v
    }

    /// Offset of a name's storage in the whole buffer of instances, for instance `n`.
    pub fn offset_in(&self, name: &str, n: usize) -> Result<usize> {
        Ok(n * self.size + self.require(name)?.offset)
    }

    /// Read the logical tensor `name` of one instance's block (transposed ties read transposed),
    /// row-major.
    pub fn read<T: Copy>(&self, block: &[T], name: &str) -> Result<Vec<T>> {
        let e = self.require(name)?;
        if block.len() < self.size {
            return Err(Error::invalid(format!(
                "parameter block has {} elements, layout needs {}",
                block.len(),
                self.size
            )));
        }
        let s = &block[e.offset..e.offset + e.len()];
        if !e.transposed {
            return Ok(s.to_vec());
        }
        let (r, c) = (e.shape[0], e.shape[1]);
        // Logical [r, c] = storage [c, r] transposed.
        Ok((0..r * c).map(|i| s[(i % c) * r + i / c]).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_is_contiguous_and_ties_share_it() -> Result<()> {
        let mut l = ParamLayout::new();
        l.add("enc.w", &[3, 2])?;
        l.add("enc.b", &[2])?;
        l.tie("dec.w", "enc.w", true)?;
        l.add("dec.b", &[3])?;
        assert_eq!(l.size(), 6 + 2 + 3);
        let dec = l.require("dec.w")?;
        assert_eq!(
            (dec.offset, dec.shape.clone(), dec.transposed),
            (0, vec![2, 3], true)
        );
        assert_eq!(dec.tied_to, Some(0));
        assert_eq!(l.offset_in("dec.b", 2)?, 2 * 11 + 8);
        // enc.w = [[0,1],[2,3],[4,5]] → dec.w = its transpose.
        let block: Vec<f32> = (0..11).map(|i| i as f32).collect();
        assert_eq!(l.read(&block, "dec.w")?, vec![0.0, 2.0, 4.0, 1.0, 3.0, 5.0]);
        // A tie of a transposed tie, transposed again, reads the storage as it is.
        l.tie("again", "dec.w", true)?;
        assert_eq!(l.read(&block, "again")?, l.read(&block, "enc.w")?);
        Ok(())
    }

    #[test]
    fn bad_definitions_are_refused_with_the_name() {
        let mut l = ParamLayout::new();
        assert!(l.add("w", &[2, 2]).is_ok());
        let dup = l.add("w", &[1]).err().map(|e| e.to_string());
        assert!(dup.is_some_and(|m| m.contains("'w' is defined twice")));
        assert!(l.add("z", &[0, 3]).is_err());
        assert!(l.add("b", &[2]).is_ok());
        assert!(l.tie("bt", "b", true).is_err());
        assert!(l.tie("x", "missing", false).is_err());
    }
}
