//! The dynamical language model as a meta-training task (`task.kind = "dynlm"`, after Wolf,
//! Chaumond & Delangue 2018): each instance reads one document in chunks of L tokens, and the
//! inner optimizer (the meta-learner) rewrites the instance's fast weights after every chunk.
//!
//! - **Instances** are documents read side by side. An episode starts every instance at the
//!   start of a document drawn from the split (training documents for meta-training, validation
//!   documents for tuning baselines, test documents held out) and reads its first
//!   `chunks · L + 1` ids: the document's leading end-of-document id, then its tokens. Only
//!   documents at least that long take part (the number is reported by [`Task::describe`]).
//! - **θ** of an instance is the fast part of the model (`lm.fast`, default the LSTM layers);
//!   the other tensors (embedding, output bias) are shared by all instances and fixed. Every
//!   instance starts from the static weights W_s: a trained LM (`lm.static_model`) or a draw
//!   from the seed. With `meta.learn_init` θ0 is learned as well, from W_s.
//! - **Step k** of an episode scores chunk k with the weights θ_k (the mean cross-entropy of its
//!   L tokens, before the chunk is learned from) and gives the gradient by BPTT inside the
//!   chunk; the meta-loss is the weighted sum of those losses, as for every task.
//! - **The hidden state** carried from chunk k to chunk k + 1 is task state
//!   ([`Task::carried_len`]): one buffer per step of the episode, so a step recomputed from a
//!   checkpoint reads the same state and writes the same next state. It is an input of the
//!   chunk's loss, detached from the meta-gradient (truncated BPTT across chunks).
//! - A batch `HeldOut(k)` is chunk k as well: a document is its own held-out data, each chunk
//!   scored before it is learned from.

use rand::{Rng, SeedableRng};

use super::model::{GpuLm, Parts};
use super::spec::LmSpec;
use crate::config::{Config, TaskConfig};
use crate::gpu::{Gpu, GpuBuffer, Kernel, Recorder};
use crate::kernels::matmul::Activation;
use crate::kernels::Batched;
use crate::params::ParamLayout;
use crate::run::lm::{read_corpus_splits, LmModel};
use crate::tasks::{
    BatchRef, LossGrad, NamedTensor, Sample, Shard, Stream, Task, TaskFamily, TaskRng,
};
use crate::{Error, Result};

/// The registry entry of the dynamical language model.
pub static FAMILY: TaskFamily = TaskFamily {
    name: crate::config::DYNLM_KIND,
    about: "the dynamical language model: documents read in chunks, fast LSTM weights \
            rewritten by the optimizer after every chunk ([lm] describes model and corpus)",
    hidden: &[],
    activation: Activation::Identity,
    check: no_task_check,
    build,
    kernels,
};

fn no_task_check(_: &TaskConfig) -> Option<(String, String)> {
    None
}

fn kernels() -> Vec<&'static Kernel> {
    super::kernels::SHADER.kernels.to_vec()
}

/// Salt of the seed that draws the static weights when no trained model is given.
const STATIC_SALT: u64 = 0x7374_6174_6963_0001;

/// The dynamical LM task; see the [module documentation](self).
pub struct DynLmTask {
    lm: GpuLm,
    spec: LmSpec,
    full: ParamLayout,
    /// The static fast weights W_s (one block of the fast layout).
    statics: Vec<f32>,
    /// The shared weights, on the host (for the reference) and on the GPU.
    shared_host: Vec<f32>,
    shared: Option<GpuBuffer>,
    /// The documents that take part: their first `chunks · L + 1` ids, the leading
    /// end-of-document id first.
    docs: Vec<Vec<u32>>,
    /// Documents of the split before the length filter.
    split_docs: usize,
    /// Which split the documents come from.
    split_name: &'static str,
    chunks: usize,
    len: usize,
    /// The chunk blocks of the current episode, `chunks` of [`GpuLm::chunk_block_len`] words.
    words: GpuBuffer,
    /// The carried state before each chunk k (`chunks + 1` buffers of N·S floats).
    states: Vec<GpuBuffer>,
    /// The document of each instance in the current episode.
    picked: Vec<usize>,
    shard: Shard,
    /// The reference's carried states by (instance, step).
    ref_states: std::sync::Mutex<std::collections::BTreeMap<(usize, usize), Vec<f64>>>,
}

/// The static weights, the model and its vocabulary's size as `cfg` names them: a trained LM
/// (whose sizes must be `[lm]`'s) or a draw from the seed.
fn static_weights(cfg: &Config) -> Result<(LmSpec, Vec<f32>, Option<crate::data::text::Vocab>)> {
    let l = &cfg.lm;
    match &l.static_model {
        Some(path) => {
            let model = LmModel::load(std::path::Path::new(path))?;
            let m = &model.config.lm;
            let mismatch = [
                ("embed", m.embed, l.embed),
                ("hidden", m.hidden, l.hidden),
                ("layers", m.layers, l.layers),
                ("vocab", model.vocab.len(), l.vocab_len()),
            ]
            .into_iter()
            .find(|(_, a, b)| a != b);
            let tokens_differ = m.tokens != l.tokens;
            if tokens_differ || mismatch.is_some() {
                let what = match mismatch {
                    Some((key, a, b)) if !tokens_differ => format!(
                        "lm.{key} gives {b} where the model has {a}{}",
                        if key == "vocab" {
                            " tokens in its vocabulary"
                        } else {
                            ""
                        }
                    ),
                    _ => format!("lm.tokens = {:?}, the model reads {:?}", l.tokens, m.tokens)
                        .to_lowercase(),
                };
                return Err(Error::Config {
                    origin: "[lm]".into(),
                    problem: format!("lm.static_model = '{path}' does not fit [lm]: {what}"),
                    hint: "give [lm] the model's sizes (its run directory's config.toml), or \
                           unset lm.static_model"
                        .into(),
                });
            }
            let spec = model.spec()?;
            Ok((spec, model.theta, Some(model.vocab)))
        }
        None => {
            let spec = LmSpec::new(l.vocab_len(), l.embed, l.hidden, l.layers)?;
            let mut rng = TaskRng::seed_from_u64(cfg.seed ^ STATIC_SALT);
            Ok((spec, spec.init(&mut rng, 1)?, None))
        }
    }
}

/// What [`build`] reads before it builds a task: the static weights and the documents of one
/// split, encoded.
struct Prepared {
    spec: LmSpec,
    theta: Vec<f32>,
    ids: Vec<Vec<u32>>,
    eos: u32,
    split_name: &'static str,
    dir: std::path::PathBuf,
}

/// [`Prepared`] of `cfg` and `sample`, kept for the next build of the same `[lm]`, seed, split
/// and static model file (the chunks of one run, the evaluation sets of one `metalearn eval`),
/// so that the corpus and the model are read once.
fn prepared(cfg: &Config, sample: Sample) -> Result<std::sync::Arc<Prepared>> {
    type Kept = Vec<(String, std::sync::Arc<Prepared>)>;
    static KEPT: std::sync::Mutex<Kept> = std::sync::Mutex::new(Vec::new());
    let stamp = cfg.lm.static_model.as_ref().map(|p| {
        let p = std::path::Path::new(p);
        [p.to_path_buf(), p.join("lm.safetensors")].map(|f| {
            std::fs::metadata(f)
                .ok()
                .map(|m| (m.len(), m.modified().ok()))
        })
    });
    let key = format!("{:?} {} {sample:?} {stamp:?}", cfg.lm, cfg.seed);
    if let Ok(kept) = KEPT.lock() {
        if let Some((_, p)) = kept.iter().find(|(k, _)| *k == key) {
            return Ok(p.clone());
        }
    }
    let (spec, theta, vocab) = static_weights(cfg)?;
    let (splits, dir, vocab) = read_corpus_splits(&cfg.lm, vocab)?;
    let (docs, split_name) = match sample {
        Sample::Train => (&splits.train, "train"),
        Sample::Tune => (&splits.valid, "valid"),
        Sample::HeldOut => (&splits.test, "test"),
    };
    let p = std::sync::Arc::new(Prepared {
        spec,
        theta,
        ids: docs.iter().map(|d| vocab.encode(&d.text)).collect(),
        eos: vocab.eos(),
        split_name,
        dir,
    });
    if let Ok(mut kept) = KEPT.lock() {
        // The newest three: a run's training set, an evaluation's tuning and held-out sets.
        if kept.len() >= 3 {
            kept.remove(0);
        }
        kept.push((key, p.clone()));
    }
    Ok(p)
}

fn build(gpu: &Gpu, cfg: &Config, sample: Sample, instances: usize) -> Result<Box<dyn Task>> {
    let prep = prepared(cfg, sample)?;
    let Prepared {
        spec,
        theta,
        ids,
        eos,
        split_name,
        dir,
    } = prep.as_ref();
    let m = &cfg.meta;
    let episode = if m.episode > 0 { m.episode } else { m.unroll };
    let chunks = episode.max(cfg.eval.steps) + 1;
    let task = DynLmTask::new(
        gpu,
        (spec, theta),
        (&cfg.lm.fast, instances, cfg.lm.chunk, chunks),
        (ids.clone(), *eos, split_name),
        &mut Stream::Instances.rng(cfg.seed, sample),
    )
    .map_err(|e| match e {
        Error::InvalidArgument(problem) => Error::Data {
            path: dir.clone(),
            problem,
            hint: "use shorter episodes (meta.episode, meta.unroll), fewer evaluation steps \
                   (eval.steps) or shorter chunks (lm.chunk), or a corpus of longer documents"
                .into(),
        },
        e => e,
    })?;
    Ok(Box::new(task))
}

impl DynLmTask {
    /// `instances` instances of the model `spec` with static weights `theta` (one block of
    /// [`LmSpec::layout`]), the groups `fast` per instance, reading `chunks` chunks of `len`
    /// tokens per episode from the documents `docs` (token ids, without a marker; `eos` the
    /// end-of-document id; `split_name` names them in messages), the first episode's documents
    /// drawn from `rng`. Errors if no document is long enough for an episode.
    pub fn new(
        gpu: &Gpu,
        (spec, theta): (&LmSpec, &[f32]),
        (fast, instances, len, chunks): (&[String], usize, usize, usize),
        (docs, eos, split_name): (Vec<Vec<u32>>, u32, &'static str),
        rng: &mut TaskRng,
    ) -> Result<Self> {
        let lm = GpuLm::split(gpu, spec, fast, instances, len)?;
        let full = spec.layout()?;
        if theta.len() != full.size() {
            return Err(Error::invalid(format!(
                "the model has {} parameters, {} static weights were given",
                full.size(),
                theta.len()
            )));
        }
        let (statics, shared_host) = lm.parts().parts(theta)?;
        let need = chunks
            .checked_mul(len)
            .and_then(|v| v.checked_add(1))
            .ok_or_else(|| Error::invalid("episodes of that many chunks do not fit in memory"))?;
        let split_docs = docs.len();
        let docs: Vec<Vec<u32>> = docs
            .into_iter()
            .filter(|d| d.len() + 1 >= need)
            .map(|d| {
                let mut v = Vec::with_capacity(need);
                v.push(eos);
                v.extend_from_slice(&d[..need - 1]);
                v
            })
            .collect();
        if docs.is_empty() {
            return Err(Error::invalid(format!(
                "none of the {split_docs} documents of the {split_name} split has the {} tokens an \
                 episode of {chunks} chunks of {len} tokens reads",
                need - 1
            )));
        }
        let s = spec.state_len() * instances;
        let states = (0..=chunks)
            .map(|k| gpu.buffer_from(&format!("dynlm state {k}"), &vec![0.0f32; s]))
            .collect::<Result<Vec<_>>>()?;
        let words = gpu.buffer("dynlm chunks", chunks * lm.chunk_block_len())?;
        let shared = if shared_host.is_empty() {
            None
        } else {
            Some(gpu.buffer_from("dynlm shared weights", &shared_host)?)
        };
        let mut task = Self {
            spec: *spec,
            full,
            statics,
            shared_host,
            shared,
            docs,
            split_docs,
            split_name,
            chunks,
            len,
            words,
            states,
            picked: vec![0; instances],
            shard: Shard::whole(instances),
            ref_states: Default::default(),
            lm,
        };
        task.resample(gpu, rng)?;
        Ok(task)
    }

    /// Inputs, targets and document starts of chunk `k` of instance `n` (L each).
    pub fn chunk(&self, n: usize, k: usize) -> Result<(Vec<u32>, Vec<u32>, Vec<bool>)> {
        let doc = self
            .picked
            .get(n)
            .and_then(|&d| self.docs.get(d))
            .ok_or_else(|| Error::invalid(format!("dynlm: no instance {n}")))?;
        if k >= self.chunks {
            return Err(self.beyond(k));
        }
        let l = self.len;
        let ids = &doc[k * l..(k + 1) * l + 1];
        let starts = (0..l).map(|t| k == 0 && t == 0).collect();
        Ok((ids[..l].to_vec(), ids[1..].to_vec(), starts))
    }

    /// The model.
    pub fn model(&self) -> &GpuLm {
        &self.lm
    }

    /// The static weights W_s of one instance's fast block.
    pub fn static_fast(&self) -> &[f32] {
        &self.statics
    }

    /// The document of each instance in the current episode (indices among those that take
    /// part).
    pub fn picked(&self) -> &[usize] {
        &self.picked
    }

    fn beyond(&self, k: usize) -> Error {
        Error::invalid(format!(
            "dynlm: episode step {k} reads beyond the {} chunks prepared per episode; the task \
             prepares max(meta.episode or meta.unroll, eval.steps) + 1 chunks",
            self.chunks
        ))
    }

    fn step_of(&self, batch: BatchRef) -> Result<usize> {
        let k = match batch {
            BatchRef::Train(k) | BatchRef::HeldOut(k) => k as usize,
        };
        if k >= self.chunks {
            return Err(self.beyond(k));
        }
        Ok(k)
    }
}

impl Task for DynLmTask {
    fn name(&self) -> String {
        let s = &self.spec;
        format!(
            "dynlm V={} E={} H={}x{} L={} N={}",
            s.vocab,
            s.embed,
            s.hidden,
            s.layers,
            self.len,
            self.instances()
        )
    }

    fn instances(&self) -> usize {
        self.lm.instances()
    }

    fn layout(&self) -> &ParamLayout {
        self.lm.layout()
    }

    fn resample(&mut self, gpu: &Gpu, rng: &mut TaskRng) -> Result<()> {
        // Every instance of the whole set draws its document; the shard keeps its own.
        let all: Vec<usize> = (0..self.shard.total)
            .map(|_| rng.random_range(0..self.docs.len()))
            .collect();
        self.picked = self.shard.keep(&all, 1);
        if let Ok(mut r) = self.ref_states.lock() {
            r.clear();
        }
        let n = self.instances();
        let mut words = Vec::with_capacity(self.chunks * self.lm.chunk_block_len());
        for k in 0..self.chunks {
            let (mut tok, mut tgt, mut st) = (Vec::new(), Vec::new(), Vec::new());
            for i in 0..n {
                let (a, b, c) = self.chunk(i, k)?;
                tok.extend(a);
                tgt.extend(b);
                st.extend(c);
            }
            words.extend(self.lm.chunk_block(&tok, &tgt, &st)?);
        }
        gpu.write(&self.words, 0, &words)
    }

    fn set_shard(&mut self, _gpu: &Gpu, shard: Shard) -> Result<()> {
        shard.check(&self.name(), self.instances())?;
        self.shard = shard;
        Ok(())
    }

    fn init_params(&self, _rng: &mut TaskRng) -> Result<Vec<f32>> {
        // Every document starts from the static weights.
        Ok(self.statics.repeat(self.instances()))
    }

    fn carried_len(&self) -> usize {
        self.spec.state_len()
    }

    fn carried_state(&self, gpu: &Gpu, step: usize) -> Result<Vec<f32>> {
        let buf = self.states.get(step).ok_or_else(|| self.beyond(step))?;
        gpu.read(buf)
    }

    fn set_carried_state(&mut self, gpu: &Gpu, step: usize, values: &[f32]) -> Result<()> {
        let buf = self.states.get(step).ok_or_else(|| self.beyond(step))?;
        if values.len() != buf.len() {
            return Err(Error::invalid(format!(
                "dynlm: a carried state of {} values, the task needs {} (N × {}): the checkpoint \
                 belongs to another model or instance count",
                values.len(),
                buf.len(),
                self.carried_len()
            )));
        }
        gpu.write(buf, 0, values)
    }

    fn record_loss_grad(&self, rec: &mut Recorder, at: LossGrad) -> Result<()> {
        let k = self.step_of(at.batch)?;
        self.lm
            .record_chunk_from(rec, &self.words, k * self.lm.chunk_block_len())?;
        let weights = Parts {
            fast: Some(at.theta),
            shared: self.shared.as_ref().map(|buf| Batched {
                buf,
                off: 0,
                batch_stride: 0,
            }),
        };
        self.lm.record_parts(
            rec,
            weights,
            (&self.states[k], &self.states[k + 1]),
            Some(&Parts::fast(at.grad)),
            at.loss,
        )
    }

    /// The f64 reference of instance `n`'s chunk at `theta`, from the state the reference's
    /// own call for the previous step of instance `n` left (zeros before step 0): call the
    /// steps of an instance in order, as the whole-unroll reference does.
    fn reference_loss_grad(
        &self,
        n: usize,
        theta: &[f64],
        batch: BatchRef,
    ) -> Result<(f64, Vec<f64>)> {
        let k = self.step_of(batch)?;
        let mut states = self
            .ref_states
            .lock()
            .map_err(|_| Error::invalid("dynlm: the reference's states were poisoned"))?;
        let state = if k == 0 {
            vec![0.0; self.spec.state_len()]
        } else {
            states.get(&(n, k)).cloned().ok_or_else(|| {
                Error::invalid(format!(
                    "dynlm reference: step {k} of instance {n} before its step {}: call the \
                     steps of an instance in order",
                    k - 1
                ))
            })?
        };
        let out = self.reference_chunk(n, k, theta, &state)?;
        states.insert((n, k + 1), out.state);
        Ok((out.loss, out.grad))
    }

    fn export_batch(&self, batch: BatchRef) -> Result<Vec<NamedTensor>> {
        let k = self.step_of(batch)?;
        let (n, l) = (self.instances(), self.len);
        let (mut tok, mut tgt) = (Vec::new(), Vec::new());
        for i in 0..n {
            let (a, b, _) = self.chunk(i, k)?;
            tok.extend(a.iter().map(|&v| v as f32));
            tgt.extend(b.iter().map(|&v| v as f32));
        }
        Ok(vec![
            ("tokens".into(), vec![n, l], tok),
            ("targets".into(), vec![n, l], tgt),
        ])
    }

    fn describe(&self) -> Vec<(String, String)> {
        let s = &self.spec;
        vec![
            ("task".into(), "dynlm".into()),
            (
                "task.model".into(),
                format!(
                    "LSTM LM V={} E={} H={} layers={}, softmax tied to the embedding",
                    s.vocab, s.embed, s.hidden, s.layers
                ),
            ),
            ("task.chunk".into(), self.len.to_string()),
            ("task.chunks_per_episode".into(), self.chunks.to_string()),
            (
                "task.documents".into(),
                format!(
                    "{} of the {} {} documents are long enough for an episode",
                    self.docs.len(),
                    self.split_docs,
                    self.split_name
                ),
            ),
            (
                "task.loss".into(),
                "mean cross-entropy of chunk k's L tokens at theta_k, from the hidden state \
                 carried from chunk k-1"
                    .into(),
            ),
        ]
    }

    fn gpu_bytes(&self) -> u64 {
        let states: u64 = self.states.iter().map(GpuBuffer::bytes).sum();
        self.lm.bytes()
            + self.words.bytes()
            + states
            + self.shared.as_ref().map_or(0, GpuBuffer::bytes)
    }
}

impl DynLmTask {
    /// The f64 reference of chunk `k` of instance `n` at the fast weights `theta` (the shared
    /// ones fixed) from `state`: its loss, the gradient of the fast weights, its token losses
    /// and the state after it.
    pub fn reference_chunk(
        &self,
        n: usize,
        k: usize,
        theta: &[f64],
        state: &[f64],
    ) -> Result<super::reference::ChunkOut> {
        let split = self.lm.parts();
        let shared: Vec<f64> = self.shared_host.iter().map(|&v| f64::from(v)).collect();
        let full = split.join(theta, &shared)?;
        let (tokens, targets, starts) = self.chunk(n, k)?;
        let mut out = super::reference::loss_grad(
            &self.spec,
            &self.full,
            &full,
            state,
            super::reference::Chunk {
                tokens: &tokens,
                targets: &targets,
                starts: &starts,
            },
        )?;
        out.grad = split.parts(&out.grad)?.0;
        Ok(out)
    }
}
