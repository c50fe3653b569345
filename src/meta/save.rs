//! Checkpoint files of a meta-training run, and the run directory that keeps the newest ones.
//!
//! One safetensors file per checkpoint, `ckpt-<step>.safetensors`, holding
//! - tensors `phi` (φ of the learned optimizer, absent when it has none), `theta0` (the learned
//!   initialisation, or the initial draw when it is not learned), `meta_adam.m`, `meta_adam.v`
//!   (the meta-optimizer's moments) and, in the middle of an episode, `carry` (θ and optimizer
//!   state of every instance, carried to the next unroll), `task_state` (the state a task
//!   carries from step to step, e.g. the LSTM state of every `dynlm` document, at the start of
//!   the next unroll) and with PES `pes_noise` (every pair's accumulated perturbation);
//! - metadata: `format`, `step`, `episodes`, `offset`, `rng_pos` and `episode_rng_pos` (the
//!   positions of the run's ChaCha12 generator now and where the current episode was drawn: with
//!   the seed, the whole random state), `optimizer`, `config` (the run's TOML), for a run over
//!   several devices in the middle of an episode `shards` (each device's instances, whose
//!   carried states `carry` and `task_state` hold one after the other),
//!   and `checksum`: FNV-1a 64 over every tensor's bytes in name order, then over every other
//!   metadata entry as `key NUL value NUL` in key order — everything that is restored. (Files
//!   of format 2, the same layout from before the random streams were split, and of format 1,
//!   whose checksum covers the tensors only, are still read but not resumed.)
//!
//! Files are written to a temporary name, flushed to disk and renamed, so a crash leaves either
//! the previous set of checkpoints or the new one, never a partial file; older checkpoints are
//! removed only after the new one is in place.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::SafeTensors;

use super::tensor_file::{self, F32Tensor};

use super::trainer::TrainerState;
use crate::{Error, Result};

/// Format tag of checkpoint files.
pub const FORMAT: &str = "metalearn-checkpoint-3";

/// The version number of [`FORMAT`].
pub const FORMAT_VERSION: u32 = 3;

/// Format 2: the layout of format 3, written before each purpose drew from its own random
/// stream ([`crate::tasks::Stream`]); still read (for evaluation), but not resumed.
pub const FORMAT_2: &str = "metalearn-checkpoint-2";

/// Format 1, whose checksum covers the tensors only; still read, not resumed.
pub const FORMAT_1: &str = "metalearn-checkpoint-1";

fn format_tag(version: u32) -> Result<&'static str> {
    match version {
        1 => Ok(FORMAT_1),
        2 => Ok(FORMAT_2),
        FORMAT_VERSION => Ok(FORMAT),
        v => Err(Error::invalid(format!(
            "checkpoint format version {v} is unknown; this version writes 1, 2 or {FORMAT_VERSION}"
        ))),
    }
}

/// A checkpoint: the trainer's state and the configuration of its run.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// The trainer state.
    pub state: TrainerState,
    /// φ length (the first `phi_len` values of `state.meta_params`).
    pub phi_len: usize,
    /// Name of the inner optimizer.
    pub optimizer: String,
    /// The run's configuration (TOML).
    pub config: String,
    /// The format version it was read from or is to be written in: [`FORMAT_VERSION`] for the
    /// checkpoints of this version. Only those can be resumed; older ones drew the initial θ
    /// from the instances' random stream, so a resumed run would not continue the same way.
    pub format: u32,
}

impl Checkpoint {
    /// φ of the learned optimizer.
    pub fn phi(&self) -> &[f32] {
        &self.state.meta_params[..self.phi_len]
    }

    /// θ0 (learned initialisation).
    pub fn theta0(&self) -> &[f32] {
        &self.state.meta_params[self.phi_len..]
    }
}

/// Continue `hash` over every metadata entry but the checksum, in key order.
pub(crate) fn metadata_checksum<'a>(
    mut hash: u64,
    meta: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> u64 {
    let mut entries: Vec<(&String, &String)> =
        meta.into_iter().filter(|(k, _)| *k != "checksum").collect();
    entries.sort();
    for (k, v) in entries {
        hash = fnv1a(hash, k.as_bytes());
        hash = fnv1a(hash, &[0]);
        hash = fnv1a(hash, v.as_bytes());
        hash = fnv1a(hash, &[0]);
    }
    hash
}

/// Continue the FNV-1a 64 `hash` over `bytes`.
pub(crate) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The FNV-1a 64 offset basis (the hash of no bytes).
pub(crate) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn tensors_of(ck: &Checkpoint) -> Result<Vec<(String, Vec<f32>)>> {
    let s = &ck.state;
    if ck.phi_len > s.meta_params.len() || s.moments.len() != 2 * s.meta_params.len() {
        return Err(Error::invalid(format!(
            "inconsistent checkpoint: φ {} of {} meta-parameters, {} moments",
            ck.phi_len,
            s.meta_params.len(),
            s.moments.len()
        )));
    }
    let half = s.meta_params.len();
    let mut t = vec![
        ("theta0".to_string(), ck.theta0().to_vec()),
        ("meta_adam.m".to_string(), s.moments[..half].to_vec()),
        ("meta_adam.v".to_string(), s.moments[half..].to_vec()),
    ];
    if ck.phi_len > 0 {
        t.push(("phi".to_string(), ck.phi().to_vec()));
    }
    if let Some(c) = &s.carry {
        t.push(("carry".to_string(), c.clone()));
    }
    if let Some(x) = &s.task_state {
        t.push(("task_state".to_string(), x.clone()));
    }
    if let Some(x) = &s.noise {
        t.push(("pes_noise".to_string(), x.clone()));
    }
    t.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(t)
}

/// The bytes of a checkpoint file.
pub fn to_bytes(ck: &Checkpoint) -> Result<Vec<u8>> {
    let tensors = tensors_of(ck)?;
    let bytes: Vec<(String, Vec<u8>)> = tensors
        .iter()
        .map(|(n, v)| (n.clone(), bytemuck::cast_slice::<f32, u8>(v).to_vec()))
        .collect();
    let tag = format_tag(ck.format)?;
    let checksum = bytes.iter().fold(FNV_OFFSET, |h, (_, b)| fnv1a(h, b));
    let shapes: Vec<Vec<usize>> = tensors.iter().map(|(_, v)| vec![v.len()]).collect();
    let s = &ck.state;
    let mut meta: BTreeMap<String, String> = [
        ("format", tag.to_string()),
        ("step", s.step.to_string()),
        ("episodes", s.episodes.to_string()),
        ("offset", s.offset.to_string()),
        ("rng_pos", s.rng_pos.to_string()),
        ("episode_rng_pos", s.episode_rng_pos.to_string()),
        ("optimizer", ck.optimizer.clone()),
        ("config", ck.config.clone()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if !s.shards.is_empty() {
        let list: Vec<String> = s.shards.iter().map(usize::to_string).collect();
        meta.insert("shards".into(), list.join(","));
    }
    let checksum = if tag == FORMAT_1 {
        checksum
    } else {
        metadata_checksum(checksum, &meta)
    };
    meta.insert("checksum".into(), format!("{checksum:016x}"));
    let views: Vec<F32Tensor> = tensors
        .iter()
        .zip(&shapes)
        .map(|((name, v), shape)| (name.as_str(), shape.as_slice(), v.as_slice()))
        .collect();
    tensor_file::serialize(&views, &meta)
}

/// Parse checkpoint bytes; `path` names the file in errors.
pub fn from_bytes(data: &[u8], path: &Path) -> Result<Checkpoint> {
    let bad = |problem: String| {
        Error::Checkpoint {
        path: path.to_path_buf(),
        problem,
        hint: "the file is truncated or corrupt, or not a metalearn checkpoint; resume from an older checkpoint of the run directory or start a new run".into(),
    }
    };
    let meta = tensor_file::read_metadata(data, &bad)?;
    let meta = &meta;
    let get = |k: &str| tensor_file::required(meta, k, &bad);
    let format = get("format")?;
    let version = match format.as_str() {
        FORMAT => FORMAT_VERSION,
        FORMAT_2 => 2,
        FORMAT_1 => 1,
        _ => return Err(bad(format!("format '{format}', expected '{FORMAT}'"))),
    };
    let num128 = |k: &str| -> Result<u128> {
        let v = get(k)?;
        v.parse()
            .map_err(|_| bad(format!("metadata '{k}' = '{v}' is not a whole number")))
    };
    let num = |k: &str| -> Result<u64> {
        let v = get(k)?;
        v.parse()
            .map_err(|_| bad(format!("metadata '{k}' = '{v}' is not a whole number")))
    };
    let st = SafeTensors::deserialize(data)
        .map_err(|e| bad(format!("not a readable safetensors file ({e})")))?;
    let mut names: Vec<String> = st.names().into_iter().map(String::from).collect();
    names.sort();
    let (values, mut checksum) = tensor_file::read_flat(&st, &names, &bad)?;
    let mut tensors: HashMap<String, Vec<f32>> = names.iter().cloned().zip(values).collect();
    if version > 1 {
        checksum = metadata_checksum(checksum, meta);
    }
    let want = get("checksum")?;
    if *want != format!("{checksum:016x}") {
        return Err(bad(format!(
            "checksum mismatch (stored {want}, computed {checksum:016x}): the tensor data or the metadata is corrupt"
        )));
    }
    let mut take = |name: &str| {
        tensors
            .remove(name)
            .ok_or_else(|| bad(format!("tensor '{name}' is missing")))
    };
    let theta0 = take("theta0")?;
    let m = take("meta_adam.m")?;
    let v = take("meta_adam.v")?;
    let phi = tensors.remove("phi").unwrap_or_default();
    let carry = tensors.remove("carry");
    let noise = tensors.remove("pes_noise");
    let task_state = tensors.remove("task_state");
    let mut unknown: Vec<&String> = tensors.keys().collect();
    unknown.sort();
    if let Some(name) = unknown.first() {
        return Err(bad(format!(
            "tensor '{name}' is not one a checkpoint holds"
        )));
    }
    if m.len() != phi.len() + theta0.len() || v.len() != m.len() {
        return Err(bad(format!(
            "meta-optimizer moments of {} and {} values for {} meta-parameters",
            m.len(),
            v.len(),
            phi.len() + theta0.len()
        )));
    }
    let phi_len = phi.len();
    let mut meta_params = phi;
    meta_params.extend_from_slice(&theta0);
    let mut moments = m;
    moments.extend_from_slice(&v);
    let to_usize = |k: &str| -> Result<usize> {
        usize::try_from(num(k)?).map_err(|_| bad(format!("metadata '{k}' is too large")))
    };
    let shards = match meta.get("shards") {
        None => Vec::new(),
        Some(v) => v
            .split(',')
            .map(|x| x.parse::<usize>().ok().filter(|&n| n > 0))
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                bad(format!(
                    "metadata 'shards' = '{v}' is not a list of instance counts"
                ))
            })?,
    };
    Ok(Checkpoint {
        state: TrainerState {
            step: to_usize("step")?,
            episodes: num("episodes")?,
            rng_pos: num128("rng_pos")?,
            episode_rng_pos: num128("episode_rng_pos")?,
            offset: to_usize("offset")?,
            meta_params,
            moments,
            carry,
            noise,
            task_state,
            shards,
        },
        phi_len,
        optimizer: get("optimizer")?.clone(),
        config: get("config")?.clone(),
        format: version,
    })
}

/// Read a checkpoint file.
pub fn load(path: &Path) -> Result<Checkpoint> {
    let data = std::fs::read(path).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        problem: format!("cannot be read ({e})"),
        hint: "check the path; `metalearn train --resume` picks the newest checkpoint of the run directory".into(),
    })?;
    from_bytes(&data, path)
}

/// Write `data` to `path` through a temporary file in the same directory, flushed to disk, and
/// a rename, so a crash never leaves a partial file under the final name.
pub fn write_atomically(path: &Path, data: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let written = std::fs::File::create(&tmp).and_then(|mut f| {
        f.write_all(data)?;
        f.sync_all()
    });
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(&tmp, e));
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// A run directory: checkpoints `ckpt-<step>.safetensors`, the newest `keep` of them kept.
#[derive(Clone, Debug)]
pub struct RunDir {
    dir: PathBuf,
    keep: usize,
}

impl RunDir {
    /// The run directory `dir` (created when missing), keeping `keep` ≥ 1 checkpoints.
    pub fn create(dir: &Path, keep: usize) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
            keep: keep.max(1),
        })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Remove what an interrupted [`write_atomically`] left behind (`NAME.tmpPID` files); call
    /// it holding the directory's lock, so no writer is at work. Returns the files removed.
    pub fn remove_temporaries(&self) -> Result<Vec<PathBuf>> {
        let mut removed = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let leftover = name.rsplit_once(".tmp").is_some_and(|(stem, pid)| {
                !stem.is_empty() && !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
            });
            if leftover && entry.path().is_file() {
                std::fs::remove_file(entry.path()).map_err(|e| Error::io(entry.path(), e))?;
                removed.push(entry.path());
            }
        }
        removed.sort();
        Ok(removed)
    }

    /// File name of the checkpoint at outer step `step`.
    pub fn checkpoint_path(&self, step: usize) -> PathBuf {
        self.dir.join(format!("ckpt-{step:09}.safetensors"))
    }

    /// Checkpoints present, oldest first: (step, path).
    pub fn checkpoints(&self) -> Result<Vec<(usize, PathBuf)>> {
        let mut out = Vec::new();
        let entries = std::fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let step = name
                .strip_prefix("ckpt-")
                .and_then(|s| s.strip_suffix(".safetensors"))
                .and_then(|s| s.parse::<usize>().ok());
            if let Some(step) = step {
                out.push((step, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    /// The newest checkpoint that loads without error, with the errors of newer ones skipped
    /// (a corrupt newest file falls back to the one before it).
    pub fn latest(&self) -> Result<Option<(Checkpoint, Vec<Error>)>> {
        let mut skipped = Vec::new();
        for (_, path) in self.checkpoints()?.into_iter().rev() {
            match load(&path) {
                Ok(c) => return Ok(Some((c, skipped))),
                Err(e) => skipped.push(e),
            }
        }
        if let Some(e) = skipped.into_iter().next() {
            return Err(e);
        }
        Ok(None)
    }

    /// The lock file of the run directory.
    pub fn lock_path(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }

    /// Take the run directory's advisory lock (`run.lock`, holding this process's PID) for as
    /// long as the returned guard lives, so that a second process training into the same
    /// directory is refused with [`Error::Locked`] naming the holder. A lock file left by a
    /// process that no longer holds it (it crashed or was killed) is taken over; the guard's
    /// [`RunLock::stale`] then says whose it was. On unix the lock is `flock(2)`; elsewhere the
    /// file itself is the lock, and a stale one has to be removed by hand.
    pub fn lock(&self) -> Result<RunLock> {
        RunLock::acquire(&self.dir, &self.lock_path())
    }

    /// Write `ck` atomically, then remove all but the newest `keep` checkpoints.
    pub fn save(&self, ck: &Checkpoint) -> Result<PathBuf> {
        let path = self.checkpoint_path(ck.state.step);
        write_atomically(&path, &to_bytes(ck)?)?;
        let all = self.checkpoints()?;
        if all.len() > self.keep {
            for (_, old) in &all[..all.len() - self.keep] {
                std::fs::remove_file(old).map_err(|e| Error::io(old, e))?;
            }
        }
        Ok(path)
    }
}

/// Name of the lock file of a run directory.
pub const LOCK_FILE: &str = "run.lock";

/// The advisory lock of a run directory, held until dropped (see [`RunDir::lock`]); dropping
/// it removes the lock file.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    file: Option<std::fs::File>,
    stale: Option<String>,
}

impl RunLock {
    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// When a lock file was there but no process held it: the PID it named (as written, or
    /// "unknown" when it named none).
    pub fn stale(&self) -> Option<&str> {
        self.stale.as_deref()
    }

    fn locked(dir: &Path, lock: &Path, pid: String) -> Error {
        Error::Locked {
            dir: dir.to_path_buf(),
            lock: lock.to_path_buf(),
            pid,
            hint:
                "wait for that run to end (or stop it), or train into another directory with --out"
                    .into(),
        }
    }

    fn holder(text: &str) -> String {
        let t = text.trim();
        if t.is_empty() {
            "unknown".into()
        } else {
            t.chars().take(40).collect()
        }
    }

    #[cfg(unix)]
    fn acquire(dir: &Path, path: &Path) -> Result<Self> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::MetadataExt;
        use std::os::unix::io::AsRawFd;
        let io = |e| Error::io(path, e);
        // Another process may remove the file between our open and our flock (it was
        // releasing its lock): then the locked file is no longer the one at `path`; retry.
        for _ in 0..8 {
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)
                .map_err(io)?;
            // SAFETY: `file` owns a valid open descriptor for the duration of the call.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            let mut text = String::new();
            if r != 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                    let _ = file.read_to_string(&mut text);
                    return Err(Self::locked(dir, path, Self::holder(&text)));
                }
                return Err(io(e));
            }
            let same = match (file.metadata(), std::fs::metadata(path)) {
                (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
                _ => false,
            };
            if !same {
                continue;
            }
            file.read_to_string(&mut text).map_err(io)?;
            let stale = (!text.trim().is_empty()).then(|| Self::holder(&text));
            file.set_len(0).map_err(io)?;
            file.rewind().map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
            file.sync_all().map_err(io)?;
            return Ok(Self {
                path: path.to_path_buf(),
                file: Some(file),
                stale,
            });
        }
        Err(Error::invalid(format!(
            "the lock file {} kept changing while it was being locked; try again",
            path.display()
        )))
    }

    #[cfg(not(unix))]
    fn acquire(dir: &Path, path: &Path) -> Result<Self> {
        use std::io::Write;
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
        {
            Ok(mut file) => {
                writeln!(file, "{}", std::process::id()).map_err(|e| Error::io(path, e))?;
                Ok(Self {
                    path: path.to_path_buf(),
                    file: Some(file),
                    stale: None,
                })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let text = std::fs::read_to_string(path).unwrap_or_default();
                Err(Error::Locked {
                    dir: dir.to_path_buf(),
                    lock: path.to_path_buf(),
                    pid: Self::holder(&text),
                    hint:
                        "wait for that run to end, or remove the lock file if no such process runs"
                            .into(),
                })
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Remove the file while it is still locked, then close (and so unlock) it.
        let _ = std::fs::remove_file(&self.path);
        drop(self.file.take());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn sample(carry: bool) -> Checkpoint {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut r = |n: usize| (0..n).map(|_| rng.random::<f32>()).collect::<Vec<_>>();
        Checkpoint {
            state: TrainerState {
                step: 17,
                episodes: 4,
                rng_pos: 1234,
                episode_rng_pos: 1000,
                offset: if carry { 20 } else { 0 },
                meta_params: r(9),
                moments: r(18),
                carry: carry.then(|| r(12)),
                noise: carry.then(|| r(6)),
                task_state: carry.then(|| r(8)),
                shards: if carry { vec![5, 7] } else { Vec::new() },
            },
            phi_len: 4,
            optimizer: "linear".into(),
            config: "seed = 1\n".into(),
            format: FORMAT_VERSION,
        }
    }

    #[test]
    fn round_trip_is_exact() {
        for carry in [false, true] {
            let ck = sample(carry);
            let b = to_bytes(&ck).unwrap();
            assert_eq!(from_bytes(&b, Path::new("x")).unwrap(), ck);
        }
    }

    #[test]
    fn every_truncation_and_many_corruptions_are_errors() {
        let ck = sample(true);
        let b = to_bytes(&ck).unwrap();
        for len in 0..b.len() {
            let e = from_bytes(&b[..len], Path::new("x"));
            assert!(matches!(e, Err(Error::Checkpoint { .. })), "len {len}");
        }
        // Flip one bit at a time (every 7th byte): an error, or (in unused header padding) the
        // same checkpoint — never a silent change of a tensor or of the metadata.
        for i in (0..b.len()).step_by(7) {
            let mut c = b.clone();
            c[i] ^= 0x10;
            match from_bytes(&c, Path::new("x")) {
                Err(Error::Checkpoint { .. }) => {}
                Err(e) => panic!("byte {i}: unexpected error kind {e}"),
                Ok(got) => assert_eq!(got, ck, "byte {i} changed the checkpoint silently"),
            }
        }
    }

    /// Replace `from` by `to` (same length) in the header of `b`.
    fn edit_header(b: &[u8], from: &str, to: &str) -> Vec<u8> {
        assert_eq!(from.len(), to.len());
        let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
        let head = std::str::from_utf8(&b[8..8 + n]).unwrap();
        assert!(head.contains(from), "{from} not in the header");
        let mut out = b[..8].to_vec();
        out.extend_from_slice(head.replacen(from, to, 1).as_bytes());
        out.extend_from_slice(&b[8 + n..]);
        out
    }

    #[test]
    fn the_checksum_covers_the_restored_metadata() {
        let ck = sample(true);
        let b = to_bytes(&ck).unwrap();
        for (from, to) in [
            ("\"step\":\"17\"", "\"step\":\"18\""),
            ("\"offset\":\"20\"", "\"offset\":\"40\""),
            ("\"rng_pos\":\"1234\"", "\"rng_pos\":\"1235\""),
            ("\"optimizer\":\"linear\"", "\"optimizer\":\"lineas\""),
            ("seed = 1", "seed = 2"),
        ] {
            let e = from_bytes(&edit_header(&b, from, to), Path::new("x"));
            assert!(
                matches!(&e, Err(Error::Checkpoint { problem, .. }) if problem.contains("checksum")),
                "{from} → {to}: {e:?}"
            );
        }
    }

    #[test]
    fn older_formats_are_still_read_and_keep_their_version() {
        let mut ck = sample(true);
        let b3 = to_bytes(&ck).unwrap();
        for version in [1, 2] {
            ck.format = version;
            let b = to_bytes(&ck).unwrap();
            assert_ne!(b, b3);
            assert_eq!(from_bytes(&b, Path::new("x")).unwrap(), ck);
        }
        // A format-1 file made by hand: its checksum covers the tensors only.
        ck.format = 1;
        let tensors_only = tensors_of(&ck)
            .unwrap()
            .iter()
            .fold(FNV_OFFSET, |h, (_, v)| fnv1a(h, bytemuck::cast_slice(v)));
        let b1 = to_bytes(&ck).unwrap();
        let (_, header) = SafeTensors::read_metadata(&b1).unwrap();
        let stored = &header.metadata().as_ref().unwrap()["checksum"];
        assert_eq!(*stored, format!("{tensors_only:016x}"));
        ck.format = 4;
        assert!(to_bytes(&ck).is_err());
    }

    #[test]
    fn a_second_lock_of_a_run_directory_is_refused_with_the_holder_pid() {
        let dir = std::env::temp_dir().join(format!("metalearn-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rd = RunDir::create(&dir, 1).unwrap();
        let first = rd.lock().unwrap();
        assert_eq!(first.stale(), None);
        let text = std::fs::read_to_string(rd.lock_path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        let e = rd.lock().unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Locked { .. }), "{msg}");
        assert!(
            msg.contains(&format!("PID {}", std::process::id())) && msg.contains("--out"),
            "{msg}"
        );
        // The refused attempt left the holder's lock file as it was.
        assert_eq!(std::fs::read_to_string(rd.lock_path()).unwrap(), text);
        drop(first);
        assert!(!rd.lock_path().exists(), "the lock file outlived its lock");
        let again = rd.lock().unwrap();
        assert_eq!(again.stale(), None);
        drop(again);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[cfg(unix)]
    #[test]
    fn a_stale_lock_file_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("metalearn-stale-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rd = RunDir::create(&dir, 1).unwrap();
        // Left by a process that was killed: it names a PID but nobody holds it.
        std::fs::write(rd.lock_path(), "4000000\n").unwrap();
        let lock = rd.lock().unwrap();
        assert_eq!(lock.stale(), Some("4000000"));
        let text = std::fs::read_to_string(rd.lock_path()).unwrap();
        assert_eq!(text.trim(), std::process::id().to_string());
        assert!(matches!(rd.lock(), Err(Error::Locked { .. })));
        drop(lock);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn run_dir_keeps_the_newest_and_falls_back_past_a_corrupt_one() {
        let dir = std::env::temp_dir().join(format!("metalearn-rundir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let rd = RunDir::create(&dir, 2).unwrap();
        assert!(rd.latest().unwrap().is_none());
        let mut ck = sample(false);
        for step in [5, 10, 15] {
            ck.state.step = step;
            rd.save(&ck).unwrap();
        }
        let steps: Vec<usize> = rd.checkpoints().unwrap().iter().map(|c| c.0).collect();
        assert_eq!(steps, vec![10, 15]);
        std::fs::write(rd.checkpoint_path(15), b"garbage").unwrap();
        let (got, skipped) = rd.latest().unwrap().unwrap();
        assert_eq!(got.state.step, 10);
        assert_eq!(skipped.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
