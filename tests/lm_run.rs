//! Language-model runs (`task.kind = "lm"`) on a small generated corpus: training writes its
//! metrics and a model file that verifies and round-trips; evaluation scores every method
//! (static, state reset, each dynamic updater with its grid tuned) with their curves by position, and dynamic evaluation adapts to documents that repeat
//! themselves; bad corpora, tampered and corrupt files give errors naming the problem, and
//! nothing saved is overwritten.

mod common;

use common::expect_err;

use std::path::{Path, PathBuf};

use metalearn::config::Config;
use metalearn::data::text::{Document, Vocab, WordOptions};
use metalearn::run::lm::{
    evaluate_lm, train_lm, LmCheckpoint, LmMethod, LmModel, LM_CHECKPOINT, LM_FILE, POSITION_BIN,
};
use metalearn::run::{self, TrainOptions};
use metalearn::Error;

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("metalearn-lmrun-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A deterministic generator of letters (an LCG), so the corpus is the same on every run.
fn letters(seed: u64, n: usize) -> String {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (b'a' + ((x >> 33) % 26) as u8) as char
        })
        .collect()
}

/// 48 documents, each one random word of 7 letters repeated 24 times: a model that has not
/// seen a document cannot predict its word, and a model that adapts inside it can.
fn repeated_corpus(dir: &Path) -> PathBuf {
    let c = dir.join("corpus");
    std::fs::create_dir_all(&c).unwrap();
    for i in 0..48u64 {
        let w = letters(i, 7);
        let text = vec![w; 24].join(" ");
        std::fs::write(c.join(format!("doc{i:02}.txt")), text + "\n").unwrap();
    }
    c
}

fn tiny(corpus: &Path, out: &Path, extra: &[&str]) -> Config {
    let base =
        Config::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lm_tiny.toml"))
            .unwrap();
    let mut set: Vec<String> = vec![
        "lm.corpus=dir".into(),
        format!("lm.path=\"{}\"", corpus.display()),
        "lm.split=[0.5, 0.25, 0.25]".into(),
        "lm.streams=2".into(),
        "lm.steps=40".into(),
        "lm.eval_every=20".into(),
        "lm.eval_chunks=12".into(),
        "lm.lr=0.02".into(),
        format!("output.dir=\"{}\"", out.display()),
    ];
    set.extend(extra.iter().map(|s| s.to_string()));
    base.with_overrides(&set).unwrap()
}

fn quiet() -> TrainOptions {
    TrainOptions::default()
}

fn read_metrics(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn training_writes_metrics_and_a_model_that_verifies() {
    let gpu = common::shared_gpu();
    let d = temp_dir("train");
    let corpus = repeated_corpus(&d);
    let out = d.join("run");
    let cfg = tiny(&corpus, &out, &[]);
    let s = run::train(gpu, &cfg, &quiet()).unwrap();
    assert_eq!(s.steps, 40);
    assert_eq!(s.checkpoint.as_deref(), Some(out.join(LM_FILE).as_path()));
    let m = read_metrics(&out.join("metrics.jsonl"));
    let train: Vec<&serde_json::Value> = m.iter().filter(|v| v.get("loss").is_some()).collect();
    let valid: Vec<&serde_json::Value> = m
        .iter()
        .filter(|v| v.get("valid_perplexity").is_some())
        .collect();
    assert_eq!(train.len(), 40);
    for (k, v) in train.iter().enumerate() {
        assert_eq!(v["step"].as_u64(), Some(k as u64 + 1));
        let loss = v["loss"].as_f64().unwrap();
        let ppl = v["perplexity"].as_f64().unwrap();
        assert!((ppl - loss.exp()).abs() < 1e-9 * ppl, "{v}");
        assert!(v["tokens_per_s"].as_f64().unwrap() > 0.0, "{v}");
    }
    let steps: Vec<u64> = valid.iter().map(|v| v["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, vec![20, 40]);
    let loss = |k: usize| train[k]["loss"].as_f64().unwrap();
    let first: f64 = (0..5).map(loss).sum::<f64>() / 5.0;
    let last: f64 = (35..40).map(loss).sum::<f64>() / 5.0;
    eprintln!("training loss {first:.3} → {last:.3}");
    assert!(
        last < first - 0.5,
        "the loss did not fall: {first} → {last}"
    );
    assert!(first > 5.0, "the first losses are near ln 256: {first}");
    // The model file verifies and round-trips byte for byte.
    let bytes = std::fs::read(out.join(LM_FILE)).unwrap();
    let model = LmModel::load(&out).unwrap();
    assert_eq!(model.step, 40);
    assert_eq!(model.config, cfg);
    assert_eq!(model.vocab, Vocab::bytes());
    assert_eq!(
        model.theta.len(),
        model.spec().unwrap().layout().unwrap().size()
    );
    assert_eq!(model.to_bytes().unwrap(), bytes);
    assert!(out.join("config.toml").exists());
    // The same config trains the same model.
    let out2 = d.join("run2");
    let cfg2 = tiny(&corpus, &out2, &[]);
    train_lm(gpu, &cfg2, &quiet()).unwrap();
    assert_eq!(LmModel::load(&out2).unwrap().theta, model.theta);
}

#[test]
fn evaluation_scores_every_method_tunes_and_dynamic_adapts() {
    let gpu = common::shared_gpu();
    let d = temp_dir("eval");
    let corpus = repeated_corpus(&d);
    let out = d.join("run");
    train_lm(gpu, &tiny(&corpus, &out, &[]), &quiet()).unwrap();
    let model = LmModel::load(&out.join(LM_FILE)).unwrap();
    // A learned optimizer from a one-step meta-training run on quadratics.
    let meta = d.join("meta");
    let meta_cfg = Config::default()
        .with_overrides(&[
            "task.instances=2".into(),
            "task.dim=4".into(),
            "optimizer.kind=lstm".into(),
            "meta.unroll=3".into(),
            "meta.episode=3".into(),
            "meta.outer_steps=1".into(),
            "output.checkpoint_every=1".into(),
            format!("output.dir=\"{}\"", meta.display()),
        ])
        .unwrap();
    run::train(gpu, &meta_cfg, &quiet()).unwrap();
    let cfg = model
        .config
        .with_overrides(&[
            "lm.dynamic={sgd={lr=[0.5]},rms={lr=[0.003,0.03],decay=[0.0,0.02]},adam={lr=[0.01],decay=[0.01]},learned={}}".into(),
            format!("lm.learned=\"{}\"", meta.display()),
            "lm.tune_chunks=4".into(),
            "lm.rms_chunks=3".into(),
            // Every tensor fast: the byte embedding adapts fastest to repeated words.
            "lm.fast=[\"all\"]".into(),
        ])
        .unwrap();
    let ev = evaluate_lm(gpu, &model, &cfg).unwrap();
    let names: Vec<String> = ev.scores.iter().map(|s| s.method.name()).collect();
    assert_eq!(
        names,
        [
            "static",
            "static-reset",
            "dynamic-adam",
            "dynamic-learned",
            "dynamic-rms",
            "dynamic-sgd"
        ]
    );
    let tokens = (ev.chunks * ev.streams * ev.chunk) as u64;
    assert_eq!(ev.chunks, 12);
    for s in &ev.scores {
        assert_eq!(s.tokens, tokens, "{s:?}");
        assert!(s.loss.is_finite() && s.loss > 0.0, "{s:?}");
        assert!((s.perplexity - s.loss.exp()).abs() < 1e-9 * s.perplexity);
        assert_eq!(s.curve.iter().map(|b| b.tokens).sum::<u64>(), tokens);
        let weighted: f64 = s.curve.iter().map(|b| b.mean_loss * b.tokens as f64).sum();
        assert!((weighted / tokens as f64 - s.loss).abs() < 1e-9 * s.loss);
        assert!(s.curve.iter().all(|b| b.from % POSITION_BIN == 0));
        assert!(s.curve.windows(2).all(|w| w[0].from < w[1].from));
        // Documents are 192 bytes long: positions 0 … 192 fall in bins 0 … 6.
        assert!(s.curve.iter().all(|b| b.from <= 192), "{:?}", s.curve);
    }
    let score = |m: LmMethod| ev.scores.iter().find(|s| s.method == m).unwrap();
    let st = score(LmMethod::Static);
    let dy = score(LmMethod::Dynamic("sgd".into()));
    eprint!("{}", ev.table());
    assert!(
        dy.loss < st.loss - 0.1,
        "dynamic evaluation did not adapt to the repeated words: static {} dynamic {}",
        st.loss,
        dy.loss
    );
    // The RMS grid was tuned on validation chunks: four points, the best one used.
    let rms = score(LmMethod::Dynamic("rms".into()));
    assert_eq!(rms.tuning.len(), 4);
    let best = rms
        .tuning
        .iter()
        .min_by(|a, b| a.valid_perplexity.total_cmp(&b.valid_perplexity))
        .unwrap();
    assert_eq!(rms.chosen, Some((best.lr, best.decay)));
    assert!(dy.tuning.is_empty() && dy.chosen == Some((Some(0.5), 0.0)));
    assert_eq!(
        score(LmMethod::Dynamic("learned".into())).chosen,
        Some((None, 0.0))
    );
    // The same evaluation gives the same numbers.
    let again = evaluate_lm(gpu, &model, &cfg).unwrap();
    assert_eq!(again.scores, ev.scores);
    // Files: a CSV row per method and bin, JSON with the curves and the tuning.
    let e = d.join("eval");
    ev.write(&e).unwrap();
    let csv = std::fs::read_to_string(e.join("lm_eval.csv")).unwrap();
    assert!(csv.starts_with("method,from,to,tokens,mean_loss,perplexity\n"));
    let svg = std::fs::read_to_string(e.join("lm_eval.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("dynamic-rms"));
    for name in &names {
        assert!(
            csv.lines().any(|l| l.starts_with(&format!("{name},,,"))),
            "{csv}"
        );
        assert!(
            csv.lines().any(|l| l.starts_with(&format!("{name},0,31,"))),
            "{csv}"
        );
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(e.join("lm_eval.json")).unwrap()).unwrap();
    assert_eq!(json["methods"].as_array().unwrap().len(), 6);
    assert_eq!(json["methods"][4]["tuning"].as_array().unwrap().len(), 4);
    assert_eq!(
        json["methods"][5]["curve"].as_array().unwrap().len(),
        dy.curve.len()
    );
    assert!(ev.table().contains("static-reset") && ev.table().contains("tuned on 4"));
    // The first stream token by token: its positions count up inside a document and restart
    // at 0 at a new one; every method has a loss for each of its tokens, in the JSON too.
    assert_eq!(ev.first_stream.len(), ev.chunks * ev.chunk);
    for w in ev.first_stream.windows(2) {
        assert!(w[1].0 == w[0].0 + 1 || w[1].0 == 0, "{:?}", w);
    }
    assert!(ev.first_stream.iter().all(|t| t.1.chars().count() == 1));
    let positions: Vec<u64> = json["first_stream_positions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    assert_eq!(
        positions,
        ev.first_stream
            .iter()
            .map(|t| u64::from(t.0))
            .collect::<Vec<_>>()
    );
    for (k, sc) in ev.scores.iter().enumerate() {
        assert_eq!(sc.first_stream.len(), ev.first_stream.len());
        // Written as the shortest decimal of each f32: read back to the same f32.
        let saved: Vec<f32> = json["methods"][k]["first_stream_losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        assert_eq!(saved, sc.first_stream, "{}", sc.method.name());
    }
    // The token page: one section per dynamic method, each token classed by the sign of
    // static's loss minus the method's, a rule at every new document.
    let html = std::fs::read_to_string(e.join("lm_tokens.html")).unwrap();
    let sections: Vec<&str> = html.split("<h2>").skip(1).collect();
    let dynamic: Vec<&metalearn::run::lm::LmScore> = ev
        .scores
        .iter()
        .filter(|s| matches!(s.method, LmMethod::Dynamic(_)))
        .collect();
    assert_eq!(sections.len(), dynamic.len());
    let starts = ev.first_stream.iter().filter(|t| t.0 == 0).count();
    for (sec, sc) in sections.iter().zip(&dynamic) {
        assert!(sec.starts_with(&sc.method.name()), "{sec}");
        let count = |class: &str| sec.matches(&format!("<span class=\"{class}\"")).count();
        let signs = |keep: fn(f32, f32) -> bool| {
            st.first_stream
                .iter()
                .zip(&sc.first_stream)
                .filter(|(&a, &b)| keep(a, b))
                .count()
        };
        assert_eq!(count("c"), signs(|a, b| a > b), "{}", sc.method.name());
        assert_eq!(count("d"), signs(|a, b| a < b), "{}", sc.method.name());
        assert_eq!(count("e"), signs(|a, b| a == b), "{}", sc.method.name());
        assert_eq!(sec.matches("<hr>").count(), starts);
    }
    // The adapted SGD run finds more tokens cheaper than dearer.
    let sgd_sec = sections[dynamic.iter().position(|s| s.method == dy.method).unwrap()];
    assert!(
        sgd_sec.matches("class=\"c\"").count() > sgd_sec.matches("class=\"d\"").count(),
        "{sgd_sec}"
    );
    // Runs of several seeds compared: the same evaluation twice has no spread, and the gain of
    // a method by bin is static's loss minus its own.
    let e2 = d.join("eval2");
    again.write(&e2).unwrap();
    let seeds = metalearn::run::lm::LmSeeds::read(&[e.clone(), e2]).unwrap();
    assert_eq!(seeds.methods.len(), 6);
    let sgd = seeds
        .methods
        .iter()
        .find(|m| m.method == "dynamic-sgd")
        .unwrap();
    let gain = seeds.gain(sgd).unwrap();
    assert_eq!(gain.mean.len(), st.curve.len().min(dy.curve.len()));
    for (b, g) in gain.mean.iter().enumerate() {
        let want = st.curve[b].mean_loss - dy.curve[b].mean_loss;
        assert!(
            (g - want).abs() < 1e-12 && gain.std[b] == 0.0,
            "bin {b}: {g} vs {want}"
        );
    }
    assert!(
        seeds.table().contains("| dynamic-sgd |"),
        "{}",
        seeds.table()
    );
    let sd = d.join("seeds");
    seeds.write(&sd).unwrap();
    for f in ["lm_seeds.md", "lm_seeds.json", "lm_gain.csv", "lm_gain.svg"] {
        assert!(sd.join(f).exists(), "{f}");
    }
    expect_err(
        metalearn::run::lm::LmSeeds::read(&[e.clone(), d.join("nothing")]),
        &["lm_eval.json", "cannot be read"],
    );
    // A hand-designed run as lm.learned is refused by name.
    let hand = d.join("hand");
    let hand_cfg = meta_cfg
        .with_overrides(&[
            "optimizer.kind=adam".into(),
            "meta.learn_init=true".into(),
            format!("output.dir=\"{}\"", hand.display()),
        ])
        .unwrap();
    run::train(gpu, &hand_cfg, &quiet()).unwrap();
    let bad = cfg
        .with_overrides(&[format!("lm.learned=\"{}\"", hand.display())])
        .unwrap();
    expect_err(evaluate_lm(gpu, &model, &bad), &["hand-designed", "adam"]);
}

/// A run stopped after k steps (its checkpoint written) and resumed ends with the same model
/// and the same metrics as the uninterrupted run; resuming with another training setting, with
/// nothing left, or without a checkpoint is refused by name, and an unfinished run is not
/// started over without --resume.
#[test]
fn a_resumed_lm_run_is_bit_identical() {
    let gpu = common::shared_gpu();
    let d = temp_dir("resume");
    let corpus = repeated_corpus(&d);
    let full = d.join("full");
    train_lm(gpu, &tiny(&corpus, &full, &[]), &quiet()).unwrap();
    let out = d.join("parts");
    let cfg = tiny(&corpus, &out, &["output.checkpoint_every=10"]);
    let mut stop = quiet();
    stop.stop_after = Some(25);
    let s = train_lm(gpu, &cfg, &stop).unwrap();
    assert!(!s.finished && s.steps == 25 && s.file == out.join(LM_CHECKPOINT));
    assert!(!out.join(LM_FILE).exists());
    expect_err(train_lm(gpu, &cfg, &quiet()), &["unfinished", "--resume"]);
    let resume = TrainOptions {
        resume: true,
        ..quiet()
    };
    let other = tiny(&corpus, &out, &["lm.lr=0.03"]);
    expect_err(train_lm(gpu, &other, &resume), &["another config", "lm.lr"]);
    let short = tiny(&corpus, &out, &["lm.steps=20"]);
    expect_err(
        train_lm(gpu, &short, &resume),
        &["nothing is left", "lm.steps"],
    );
    let s = train_lm(gpu, &cfg, &resume).unwrap();
    assert!(s.finished && s.steps == 40 && s.losses.len() == 15);
    // The configs differ in output.dir and output.checkpoint_every only: the same weights.
    let (a, b) = (LmModel::load(&out).unwrap(), LmModel::load(&full).unwrap());
    assert_eq!((a.step, &a.theta), (b.step, &b.theta));
    assert!(
        !out.join(LM_CHECKPOINT).exists(),
        "the model supersedes the checkpoint"
    );
    let strip = |p: &Path| -> Vec<serde_json::Value> {
        read_metrics(p)
            .into_iter()
            .map(|mut v| {
                let o = v.as_object_mut().unwrap();
                o.remove("tokens_per_s");
                o.remove("seconds");
                v
            })
            .collect()
    };
    assert_eq!(
        strip(&out.join("metrics.jsonl")),
        strip(&full.join("metrics.jsonl"))
    );
    // A stop request (what SIGINT/SIGTERM set): the step in progress finishes, a checkpoint is
    // written, the error names --resume, and the resumed run ends with the same weights.
    let stopped = d.join("stopped");
    let cfg_s = tiny(&corpus, &stopped, &[]);
    let flag = run::StopFlag::new();
    flag.set();
    let opts = TrainOptions {
        stop: Some(flag),
        ..quiet()
    };
    match train_lm(gpu, &cfg_s, &opts) {
        Err(Error::Interrupted { step, saved, hint }) => {
            assert_eq!(step, 1);
            assert!(
                saved.contains(LM_CHECKPOINT) && hint.contains("--resume"),
                "{saved} {hint}"
            );
        }
        other => panic!("expected an interrupted run, got {other:?}"),
    }
    assert_eq!(
        LmCheckpoint::load(&stopped.join(LM_CHECKPOINT))
            .unwrap()
            .step,
        1
    );
    train_lm(gpu, &cfg_s, &resume).unwrap();
    assert_eq!(LmModel::load(&stopped).unwrap().theta, b.theta);
    // No checkpoint to resume.
    let fresh = tiny(&corpus, &d.join("fresh"), &[]);
    expect_err(train_lm(gpu, &fresh, &resume), &["no LM checkpoint"]);
    // A corrupt checkpoint is named.
    let broken = d.join("broken");
    let cfg_b = tiny(&corpus, &broken, &[]);
    let mut two = quiet();
    two.stop_after = Some(2);
    train_lm(gpu, &cfg_b, &two).unwrap();
    let ck = broken.join(LM_CHECKPOINT);
    let mut bytes = std::fs::read(&ck).unwrap();
    let n = bytes.len();
    bytes[n - 5] ^= 0x10;
    std::fs::write(&ck, &bytes).unwrap();
    expect_err(
        train_lm(gpu, &cfg_b, &resume),
        &["checksum mismatch", LM_CHECKPOINT],
    );
}

#[test]
fn bad_inputs_are_named_and_nothing_is_overwritten() {
    let gpu = common::shared_gpu();
    let d = temp_dir("bad");
    let corpus = repeated_corpus(&d);
    // A missing corpus directory and an empty one.
    let missing = d.join("no-such-dir");
    expect_err(
        train_lm(gpu, &tiny(&missing, &d.join("r1"), &[]), &quiet()),
        &["no-such-dir", "directory does not exist"],
    );
    let empty = d.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    expect_err(
        train_lm(gpu, &tiny(&empty, &d.join("r2"), &[]), &quiet()),
        &["empty", "no files found"],
    );
    assert!(!d.join("r1").join(LM_FILE).exists() && !d.join("r2").join(LM_FILE).exists());
    // A split with no document.
    expect_err(
        train_lm(
            gpu,
            &tiny(&corpus, &d.join("r3"), &["lm.split=[1.0, 0.0, 0.0]"]),
            &quiet(),
        ),
        &["valid split holds no document", "lm.split"],
    );
    // A trained run is never overwritten, and resuming is refused.
    let out = d.join("run");
    let cfg = tiny(
        &corpus,
        &out,
        &[
            "lm.tokens=words",
            "lm.vocab=10",
            "lm.steps=4",
            "lm.eval_every=0",
        ],
    );
    train_lm(gpu, &cfg, &quiet()).unwrap();
    let file = out.join(LM_FILE);
    let saved = std::fs::read(&file).unwrap();
    let metrics = std::fs::read(out.join("metrics.jsonl")).unwrap();
    expect_err(train_lm(gpu, &cfg, &quiet()), &["already holds", "--out"]);
    let resume = TrainOptions {
        resume: true,
        ..quiet()
    };
    expect_err(
        train_lm(gpu, &cfg, &resume),
        &["already holds a trained language model"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), saved);
    assert_eq!(std::fs::read(out.join("metrics.jsonl")).unwrap(), metrics);
    // A vocabulary that is not the corpus's (checksum recomputed: a well-formed file).
    let model = LmModel::load(&file).unwrap();
    assert_eq!(model.vocab.len(), 12);
    let other: Vec<Document> = (0..60)
        .map(|i| Document {
            name: format!("x{i}"),
            text: letters(1000 + i, 5),
        })
        .collect();
    let opts = WordOptions {
        size: 10,
        ..WordOptions::default()
    };
    let mut tampered = model.clone();
    tampered.vocab = Vocab::build_words(&other, &opts).unwrap();
    assert_eq!(tampered.vocab.len(), 12);
    let tdir = d.join("tampered");
    std::fs::create_dir_all(&tdir).unwrap();
    std::fs::write(tdir.join(LM_FILE), tampered.to_bytes().unwrap()).unwrap();
    let t = LmModel::load(&tdir).unwrap();
    expect_err(
        evaluate_lm(gpu, &t, &t.config),
        &["vocabulary", "different tokens"],
    );
    // A vocabulary of another tokenizer than its config says.
    let mut bytes_vocab = model.clone();
    bytes_vocab.vocab = Vocab::bytes();
    std::fs::write(tdir.join(LM_FILE), bytes_vocab.to_bytes().unwrap()).unwrap();
    expect_err(LmModel::load(&tdir), &["lm.tokens", "byte"]);
    // Corrupt, truncated and missing files.
    let mut corrupt = saved.clone();
    let n = corrupt.len();
    corrupt[n - 3] ^= 0x40;
    std::fs::write(tdir.join(LM_FILE), &corrupt).unwrap();
    expect_err(LmModel::load(&tdir), &["checksum mismatch", LM_FILE]);
    std::fs::write(tdir.join(LM_FILE), &saved[..n / 2]).unwrap();
    expect_err(LmModel::load(&tdir), &["not a readable safetensors file"]);
    std::fs::write(tdir.join(LM_FILE), b"").unwrap();
    expect_err(LmModel::load(&tdir), &["not a readable safetensors file"]);
    let s = expect_err(LmModel::load(&d.join("nothing-here")), &["cannot be read"]);
    assert!(
        matches!(
            LmModel::load(&d.join("nothing-here")),
            Err(Error::Checkpoint { .. })
        ),
        "{s}"
    );
    // A meta-training file is not a language model.
    let q = Config::default()
        .with_overrides(&[
            "task.instances=2".into(),
            "meta.outer_steps=1".into(),
            "meta.unroll=2".into(),
            "meta.episode=2".into(),
            "optimizer.kind=linear".into(),
            format!("output.dir=\"{}\"", d.join("meta").display()),
        ])
        .unwrap();
    let ck = run::train(gpu, &q, &quiet()).unwrap().checkpoint.unwrap();
    expect_err(LmModel::load(&ck), &["format"]);
    // An LM run into a meta-training run directory is refused.
    let into_meta = tiny(&corpus, &d.join("meta"), &[]);
    expect_err(
        train_lm(gpu, &into_meta, &quiet()),
        &["meta-training checkpoints"],
    );
}
