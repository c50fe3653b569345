//! Meta-training the dynamical language model end to end (`task.kind = "dynlm"`) on a small
//! generated corpus in which every document repeats one word: a static LM is trained first
//! (`task.kind = "lm"`), then the gated meta-learner and the initial fast weights are
//! meta-trained on top of it, and the meta-loss falls; `metalearn eval` compares the learned
//! updater with tuned dynamic evaluation on held-out documents. Bad settings are named before
//! anything is written.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::{expect_err, shared_gpu};
use metalearn::config::Config;
use metalearn::run::{self, TrainOptions};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("metalearn-dynlm-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// 40 documents, each one word of 7 letters (from an LCG) repeated 24 times (192 bytes).
fn repeated_corpus(dir: &Path) -> PathBuf {
    let c = dir.join("corpus");
    std::fs::create_dir_all(&c).unwrap();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for i in 0..40 {
        let w: String = (0..7)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (b'a' + ((x >> 33) % 26) as u8) as char
            })
            .collect();
        std::fs::write(c.join(format!("doc{i:02}.txt")), vec![w; 24].join(" ")).unwrap();
    }
    c
}

fn config(file: &str, corpus: &Path, out: &Path, extra: &[String]) -> Config {
    let base = Config::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join(file)).unwrap();
    let mut set: Vec<String> = vec![
        "lm.corpus=dir".into(),
        format!("lm.path=\"{}\"", corpus.display()),
        "lm.split=[0.5, 0.25, 0.25]".into(),
        format!("output.dir=\"{}\"", out.display()),
    ];
    set.extend(extra.iter().cloned());
    base.with_overrides(&set).unwrap()
}

/// The static LM of `configs/lm_tiny.toml`, briefly trained on `corpus` into `dir/static`.
fn static_model(dir: &Path, corpus: &Path) -> PathBuf {
    let out = dir.join("static");
    let extra = [
        "lm.streams=2".into(),
        "lm.steps=20".into(),
        "lm.lr=0.02".into(),
    ];
    let cfg = config("configs/lm_tiny.toml", corpus, &out, &extra);
    run::lm::train_lm(shared_gpu(), &cfg, &TrainOptions::default()).unwrap();
    out
}

/// `configs/dynlm_tiny.toml` on `corpus` from the static model `model`: episodes of 10
/// chunks, 2 unrolls each.
fn dynlm(corpus: &Path, out: &Path, model: &Path, extra: &[&str]) -> Config {
    let mut set: Vec<String> = vec![
        format!("lm.static_model=\"{}\"", model.display()),
        "meta.episode=10".into(),
        "meta.outer_steps=40".into(),
        "meta.lr=0.03".into(),
        "eval.steps=10".into(),
        "eval.instances=4".into(),
        "eval.grid_points=3".into(),
    ];
    set.extend(extra.iter().map(|s| s.to_string()));
    config("configs/dynlm_tiny.toml", corpus, out, &set)
}

#[test]
fn meta_training_lowers_the_meta_loss_and_eval_compares_with_dynamic_evaluation() {
    let dir = temp_dir("run");
    let corpus = repeated_corpus(&dir);
    let model = static_model(&dir, &corpus);
    let out = dir.join("meta");
    let cfg = dynlm(&corpus, &out, &model, &[]);
    let s = run::train(shared_gpu(), &cfg, &TrainOptions::default()).unwrap();
    assert_eq!((s.steps, s.skipped), (40, 0));
    // Unrolls alternate between the first and the second half of an episode; compare like
    // with like: the first halves of the first and the last 5 episodes.
    let first: Vec<f32> = s.meta_losses.iter().step_by(2).copied().collect();
    let mean = |v: &[f32]| v.iter().map(|&x| f64::from(x)).sum::<f64>() / v.len() as f64;
    let (early, late) = (mean(&first[..5]), mean(&first[first.len() - 5..]));
    eprintln!("meta-loss of the first unrolls: {early:.4} -> {late:.4}");
    assert!(
        late < early - 0.05,
        "meta-loss of the first unrolls {early:.4} -> {late:.4}: {:?}",
        s.meta_losses
    );
    let ev = Command::new(env!("CARGO_BIN_EXE_metalearn"))
        .args(["eval", out.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&ev.stdout).to_string();
    assert!(
        ev.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ev.stderr)
    );
    for name in ["gated", "sgd", "adam", "\"dynlm\" task"] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_settings_are_named_before_anything_is_written() {
    let dir = temp_dir("bad");
    let corpus = repeated_corpus(&dir);
    let model = static_model(&dir, &corpus);
    let out = dir.join("meta");
    // The static model's sizes differ from [lm]'s.
    let cfg = dynlm(&corpus, &out, &model, &["lm.hidden=8"]);
    expect_err(
        run::train(shared_gpu(), &cfg, &TrainOptions::default()),
        &[
            "lm.hidden gives 8 where the model has 16",
            "unset lm.static_model",
        ],
    );
    assert!(!out.exists());
    // Episodes longer than any document.
    let cfg = dynlm(&corpus, &out, &model, &["meta.episode=20"]);
    expect_err(
        run::train(shared_gpu(), &cfg, &TrainOptions::default()),
        &["has the 336 tokens", "meta.episode"],
    );
    assert!(!out.exists());
    // A static model that is not there.
    let cfg = dynlm(&corpus, &out, &dir.join("nothing"), &[]);
    expect_err(
        run::train(shared_gpu(), &cfg, &TrainOptions::default()),
        &["cannot be read", "lm.safetensors"],
    );
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&dir);
}
