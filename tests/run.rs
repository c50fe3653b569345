//! Config-driven runs: resuming is bit-identical to an uninterrupted run; run directories are
//! never overwritten; bad configs and checkpoints give clear errors, never panics.

mod common;

use std::path::{Path, PathBuf};

use metalearn::config::Config;
use metalearn::meta::save;
use metalearn::run::{self, TrainOptions};
use metalearn::Error;
use rand::{Rng, SeedableRng};

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("metalearn-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

/// A small quadratic run: 4 instances, unrolls of 5 in episodes of 15 (so a stop after 4
/// outer steps lands in the middle of an episode, with state carried), linear optimizer.
fn small(dir: &Path, outer: usize, extra: &[&str]) -> Config {
    let mut set: Vec<String> = [
        "task.kind=quadratic",
        "task.instances=4",
        "task.dim=6",
        "optimizer.kind=linear",
        "meta.unroll=5",
        "meta.episode=15",
        "meta.lr=0.05",
        "output.checkpoint_every=3",
        "output.keep=2",
        "eval.instances=4",
        "eval.steps=10",
        "eval.grid_points=3",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    set.push(format!("meta.outer_steps={outer}"));
    set.push(format!("output.dir=\"{}\"", dir.display()));
    set.extend(extra.iter().map(|s| s.to_string()));
    Config::default().with_overrides(&set).unwrap()
}

fn quiet() -> TrainOptions {
    TrainOptions::default()
}

#[test]
fn resume_after_a_stop_is_bit_identical() {
    let gpu = common::shared_gpu();
    for (k, extra) in [(4usize, vec![]), (3, vec!["meta.learn_init=true"])] {
        let a = temp_dir(&format!("resume-a-{k}"));
        let b = temp_dir(&format!("resume-b-{k}"));
        let full = run::train(gpu, &small(&a, 2 * k, &extra), &quiet()).unwrap();
        // Stop after k outer steps, as a kill after the k-th checkpoint would.
        let cfg_b = small(&b, 2 * k, &extra);
        let mut opts = quiet();
        opts.stop_after = Some(k);
        let first = run::train(gpu, &cfg_b, &opts).unwrap();
        assert_eq!(first.steps, k);
        // Without --resume the directory is refused, and nothing in it changes.
        let before: Vec<_> = std::fs::read_dir(&b)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let e = run::train(gpu, &cfg_b, &quiet()).unwrap_err();
        assert!(e.to_string().contains("--resume"), "{e}");
        let after: Vec<_> = std::fs::read_dir(&b)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert_eq!(before, after);
        // A killed run leaves metrics of steps after its last checkpoint: they are dropped.
        let m = b.join("metrics.jsonl");
        let mut text = std::fs::read_to_string(&m).unwrap();
        text.push_str(&format!("{{\"step\": {}, \"meta_loss\": 123.0}}\n", k + 1));
        std::fs::write(&m, text).unwrap();
        let mut opts = quiet();
        opts.resume = true;
        let second = run::train(gpu, &cfg_b, &opts).unwrap();
        let losses = |d: &Path| -> Vec<(u64, String)> {
            std::fs::read_to_string(d.join("metrics.jsonl"))
                .unwrap()
                .lines()
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    (v["step"].as_u64().unwrap(), v["meta_loss"].to_string())
                })
                .collect()
        };
        assert_eq!(losses(&a), losses(&b), "metrics.jsonl differs");
        assert_eq!(second.steps, 2 * k);
        let mut joined = first.meta_losses.clone();
        joined.extend(&second.meta_losses);
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&joined), bits(&full.meta_losses), "meta-losses differ");
        let ca = save::load(full.checkpoint.as_ref().unwrap()).unwrap();
        let cb = save::load(second.checkpoint.as_ref().unwrap()).unwrap();
        assert_eq!(bits(&ca.state.meta_params), bits(&cb.state.meta_params));
        assert_eq!(bits(&ca.state.moments), bits(&cb.state.moments));
        assert_eq!(ca.state.step, 2 * k);
        assert_eq!(
            (ca.state.offset, ca.state.episodes),
            (cb.state.offset, cb.state.episodes)
        );
        std::fs::remove_dir_all(&a).unwrap();
        std::fs::remove_dir_all(&b).unwrap();
    }
}

#[test]
fn resume_refuses_another_setting_and_skips_a_corrupt_newest_checkpoint() {
    let gpu = common::shared_gpu();
    let d = temp_dir("mismatch");
    let cfg = small(&d, 6, &[]);
    run::train(gpu, &cfg, &quiet()).unwrap();
    let mut opts = quiet();
    opts.resume = true;
    // Another optimizer: refused before anything is written.
    let other = cfg.with_overrides(&["optimizer.kind=mlp".into()]).unwrap();
    let e = run::train(gpu, &other, &opts).unwrap_err();
    assert!(e.to_string().contains("same config"), "{e}");
    // A truncated newest checkpoint: resumption falls back to the one before it.
    let cks = metalearn::meta::RunDir::create(&d, 2)
        .unwrap()
        .checkpoints()
        .unwrap();
    let newest = &cks.last().unwrap().1;
    let bytes = std::fs::read(newest).unwrap();
    std::fs::write(newest, &bytes[..bytes.len() / 2]).unwrap();
    let longer = cfg.with_overrides(&["meta.outer_steps=8".into()]).unwrap();
    let s = run::train(gpu, &longer, &opts).unwrap();
    assert_eq!(s.steps, 8);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn evaluation_of_a_checkpoint_against_tuned_baselines() {
    let gpu = common::shared_gpu();
    let d = temp_dir("eval");
    let cfg = small(&d, 3, &["eval.baselines=[\"sgd\", \"adam\"]"]);
    let s = run::train(gpu, &cfg, &quiet()).unwrap();
    let ck = run::load_checkpoint(&d).unwrap();
    assert_eq!(ck.state.step, s.steps);
    let curves = run::evaluate_checkpoints(
        gpu,
        &cfg,
        &[run::Candidate {
            name: "linear".into(),
            checkpoint: ck,
        }],
        false,
    )
    .unwrap();
    assert_eq!(curves.len(), 3);
    for c in &curves {
        assert_eq!(c.train.len(), cfg.eval.steps + 1, "{}", c.name);
        assert!(c.train.iter().all(|v| v.is_finite()), "{}", c.name);
    }
    // Tuned baselines make progress on quadratics.
    for c in &curves[1..] {
        assert!(c.train[10] < c.train[0], "{}: {:?}", c.name, c.train);
    }
    std::fs::remove_dir_all(&d).unwrap();
}

/// Runs that differ only in their seed form one group: each seed's run is evaluated on that
/// seed's instances, exactly as a single evaluation with that seed would, and the baselines are
/// evaluated on every seed.
#[test]
fn evaluation_over_seeds_is_the_evaluation_of_each_seed() {
    let gpu = common::shared_gpu();
    let d = temp_dir("seeds");
    let base = ["eval.baselines=[\"sgd\"]"];
    let mut runs = Vec::new();
    for s in [3u64, 5] {
        let dir = d.join(format!("run_s{s}"));
        let seed = format!("seed={s}");
        let cfg = small(&dir, 2, &[base[0], seed.as_str()]);
        run::train(gpu, &cfg, &quiet()).unwrap();
        runs.push((s, cfg, run::load_checkpoint(&dir).unwrap()));
    }
    let a = &runs[0].1;
    assert!(run::same_but_seed(a, &runs[1].1));
    assert!(!run::same_but_seed(
        a,
        &a.with_overrides(&["optimizer.kind=lstm".into()]).unwrap()
    ));
    let group = run::SeedGroup {
        name: "linear".into(),
        runs: runs.iter().map(|(_, _, ck)| ck.clone()).collect(),
    };
    let curves = run::evaluate_seeds(gpu, a, std::slice::from_ref(&group), false).unwrap();
    assert_eq!(curves.len(), 2);
    assert_eq!(curves[0].seeds, vec![3, 5]);
    assert_eq!(curves[1].seeds, vec![3, 5]);
    assert_eq!(curves[1].learning_rates.len(), 2);
    for (k, (s, cfg, ck)) in runs.iter().enumerate() {
        let single = run::evaluate_checkpoints(
            gpu,
            cfg,
            &[run::Candidate {
                name: "linear".into(),
                checkpoint: ck.clone(),
            }],
            false,
        )
        .unwrap();
        assert_eq!(curves[0].train[k], single[0].train, "seed {s}");
        assert_eq!(curves[1].train[k], single[1].train, "sgd, seed {s}");
    }
    assert_ne!(
        curves[0].train[0], curves[0].train[1],
        "the seeds' instances differ"
    );
    let sp = curves[0].train_spread().unwrap();
    let t = 4;
    let (x, y) = (curves[0].train[0][t], curves[0].train[1][t]);
    assert!((sp.mean[t] - (x + y) / 2.0).abs() < 1e-12);
    assert_eq!(sp.min[t], x.min(y));
    // One seed twice in a group is refused.
    let twice = run::SeedGroup {
        name: "twice".into(),
        runs: vec![runs[0].2.clone(), runs[0].2.clone()],
    };
    let e = run::evaluate_seeds(gpu, a, &[twice], false).unwrap_err();
    assert!(e.to_string().contains("seed 3"), "{e}");
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn fuzzed_configs_and_checkpoints_never_panic() {
    let mut rng = common::rng("fuzz");
    let good = metalearn::config::DEFAULT_CONFIG.as_bytes().to_vec();
    let mut accepted = 0;
    for i in 0..400 {
        let mut b = good.clone();
        match i % 4 {
            0 => {
                let n = rng.random_range(0..b.len());
                b.truncate(n)
            }
            1 => {
                for _ in 0..rng.random_range(1..8) {
                    let j = rng.random_range(0..b.len());
                    b[j] = rng.random();
                }
            }
            2 => {
                let j = rng.random_range(0..b.len());
                let junk: Vec<u8> = (0..rng.random_range(1..20))
                    .map(|_| rng.random_range(32..127))
                    .collect();
                b.splice(j..j, junk);
            }
            _ => {
                b = (0..rng.random_range(0..300))
                    .map(|_| rng.random())
                    .collect()
            }
        }
        let text = String::from_utf8_lossy(&b);
        match Config::from_toml(&text, "fuzz") {
            Ok(c) => {
                // Whatever parses must also validate as written and round-trip.
                accepted += 1;
                let back = Config::from_toml(&c.to_toml().unwrap(), "round trip").unwrap();
                assert_eq!(back, c);
            }
            Err(Error::Config { problem, hint, .. }) => {
                assert!(!problem.is_empty() && !hint.is_empty())
            }
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
    assert!(accepted < 400);
    // Checkpoint bytes: random files and mutations of a real one.
    let ck = save::Checkpoint {
        state: metalearn::meta::TrainerState {
            step: 3,
            episodes: 1,
            rng_pos: 77,
            episode_rng_pos: 40,
            offset: 5,
            meta_params: common::uniform(&mut rng, 40, -1.0, 1.0),
            moments: common::uniform(&mut rng, 80, 0.0, 1.0),
            carry: Some(common::uniform(&mut rng, 30, -1.0, 1.0)),
            noise: None,
            task_state: None,
            shards: Vec::new(),
        },
        phi_len: 30,
        optimizer: "linear".into(),
        config: metalearn::config::DEFAULT_CONFIG.into(),
        format: save::FORMAT_VERSION,
    };
    let real = save::to_bytes(&ck).unwrap();
    let mut r2 = rand::rngs::StdRng::seed_from_u64(rng.random());
    for i in 0..600 {
        let b: Vec<u8> = if i % 3 == 0 {
            (0..r2.random_range(0..200)).map(|_| r2.random()).collect()
        } else {
            let mut b = real.clone();
            for _ in 0..r2.random_range(1..4) {
                let j = r2.random_range(0..b.len());
                b[j] = r2.random();
            }
            b
        };
        match save::from_bytes(&b, Path::new("fuzz.safetensors")) {
            Ok(got) => {
                assert_eq!(got.state.meta_params, ck.state.meta_params);
                assert_eq!(got.state.moments, ck.state.moments);
            }
            Err(Error::Checkpoint { .. }) => {}
            Err(e) => panic!("unexpected error kind: {e}"),
        }
    }
}

#[test]
fn sizes_beyond_the_adapter_and_missing_data_are_clear_errors() {
    let gpu = common::shared_gpu();
    let d = temp_dir("limits");
    let big = small(
        &d,
        2,
        &[
            "task.kind=mlp",
            "task.data=synthetic",
            "task.instances=100000",
            "optimizer.kind=lstm",
        ],
    );
    let e = run::train(gpu, &big, &quiet()).unwrap_err();
    assert!(
        matches!(e, Error::LimitExceeded { .. }),
        "expected a limit error, got {e}"
    );
    let missing = small(
        &d,
        2,
        &[
            "task.kind=mlp",
            "task.data=fashion-mnist",
            "task.data_dir=\"/nonexistent/fashion\"",
        ],
    );
    let e = run::train(gpu, &missing, &quiet()).unwrap_err();
    assert!(
        matches!(e, Error::Data { .. }) && e.to_string().contains("/nonexistent/fashion"),
        "expected a data error naming the directory, got {e}"
    );
    let mnist = small(&d, 2, &["task.kind=mlp", "task.data=mnist"]);
    let e = run::train(gpu, &mnist, &quiet()).unwrap_err();
    assert!(e.to_string().contains("task.data_dir"), "{e}");
    // The runs created the directory and saved nothing: it is gone again.
    assert!(
        !d.exists(),
        "{} was left behind by failed runs",
        d.display()
    );
}

#[test]
fn a_state_of_another_optimizer_or_shape_is_refused() {
    use metalearn::meta::{MetaConfig, MetaTrainer};
    use metalearn::optim::Optimizer;
    use metalearn::tasks::{QuadraticTask, TaskRng};
    let gpu = common::shared_gpu();
    let make = |opt: &str, dim: usize| {
        let task = QuadraticTask::new(gpu, dim, 2, &mut TaskRng::seed_from_u64(0)).unwrap();
        let cfg = MetaConfig {
            unroll: 3,
            episode: 6,
            ..Default::default()
        };
        MetaTrainer::new(
            gpu.clone(),
            Box::new(task),
            Optimizer::parse(opt).unwrap(),
            cfg,
        )
        .unwrap()
    };
    let mut linear = make("linear", 4);
    linear.step().unwrap();
    let state = linear.state().unwrap();
    assert!(state.carry.is_some(), "the state should be mid-episode");
    for (opt, dim) in [("lstm", 4), ("linear", 5)] {
        let mut other = make(opt, dim);
        let e = other.restore(&state).unwrap_err();
        assert!(
            e.to_string().contains("another optimizer or model shape"),
            "{opt} d={dim}: {e}"
        );
    }
    // The same setting accepts it.
    let mut same = make("linear", 4);
    same.restore(&state).unwrap();
    assert_eq!(same.state().unwrap(), state);
}

fn metrics_of(d: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(d.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn checkpoint_steps(d: &Path) -> Vec<usize> {
    metalearn::meta::RunDir::create(d, 1)
        .unwrap()
        .checkpoints()
        .unwrap()
        .iter()
        .map(|c| c.0)
        .collect()
}

#[test]
fn a_diverging_run_stops_and_keeps_the_last_good_checkpoint() {
    let gpu = common::shared_gpu();
    let d = temp_dir("diverge");
    let wild = [
        "meta.lr=1e30",
        "meta.clip=0",
        "meta.max_skipped=3",
        "output.checkpoint_every=1",
        "output.keep=10",
    ];
    let cfg = small(&d, 12, &wild);
    let e = run::train(gpu, &cfg, &quiet()).unwrap_err();
    let Error::Diverged {
        skipped,
        first,
        last,
        ..
    } = e
    else {
        panic!("expected a divergence error, got {e}");
    };
    let msg = e.to_string();
    assert!(
        msg.contains("meta.lr = ")
            && msg.contains("is large")
            && msg.contains("meta.clip = 0 disables clipping")
            && msg.contains("meta.max_skipped"),
        "{msg}"
    );
    assert_eq!((skipped, last + 1 - first), (3, 3), "{msg}");
    // Every skipped step is in the metrics with its cause; no checkpoint follows a skip.
    let m = metrics_of(&d);
    assert_eq!(m.len(), last);
    for v in &m[first - 1..] {
        assert!(
            v["skip_cause"]
                .as_str()
                .is_some_and(|c| c.contains("not finite")),
            "{v}"
        );
    }
    let steps = checkpoint_steps(&d);
    assert!(
        !steps.is_empty() && steps.iter().all(|&s| s < first),
        "checkpoints {steps:?}, skips from {first}"
    );
    let newest = run::load_checkpoint(&d).unwrap();
    assert!(newest.state.meta_params.iter().all(|v| v.is_finite()));
    std::fs::remove_dir_all(&d).unwrap();
    // meta.max_skipped = 0: the run goes on to the end.
    let mut never = wild.to_vec();
    never[2] = "meta.max_skipped=0";
    let s = run::train(gpu, &small(&d, 6, &never), &quiet()).unwrap();
    assert_eq!(s.steps, 6);
    assert!(s.skipped > 0);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_stop_request_checkpoints_after_the_step_and_resumes_bit_identically() {
    let gpu = common::shared_gpu();
    let a = temp_dir("stop-a");
    let b = temp_dir("stop-b");
    let full = run::train(gpu, &small(&a, 6, &[]), &quiet()).unwrap();
    // The flag (as SIGINT or SIGTERM set it) is up from the start: the first outer step is
    // finished, checkpointed in the middle of its episode, and the run says how to resume.
    let stop = run::StopFlag::new();
    stop.set();
    let mut opts = quiet();
    opts.stop = Some(stop);
    let cfg = small(&b, 6, &[]);
    let e = run::train(gpu, &cfg, &opts).unwrap_err();
    assert!(matches!(e, Error::Interrupted { step: 1, .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("--resume") && msg.contains(&b.display().to_string()),
        "{msg}"
    );
    assert_eq!(checkpoint_steps(&b), vec![1]);
    assert!(run::load_checkpoint(&b).unwrap().state.carry.is_some());
    let mut opts = quiet();
    opts.resume = true;
    let rest = run::train(gpu, &cfg, &opts).unwrap();
    assert_eq!(rest.steps, 6);
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&rest.meta_losses), bits(&full.meta_losses[1..]));
    let ca = save::load(full.checkpoint.as_ref().unwrap()).unwrap();
    let cb = save::load(rest.checkpoint.as_ref().unwrap()).unwrap();
    assert_eq!(bits(&ca.state.meta_params), bits(&cb.state.meta_params));
    let steps: Vec<u64> = metrics_of(&b)
        .iter()
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(steps, (1..=6).collect::<Vec<u64>>());
    std::fs::remove_dir_all(&a).unwrap();
    std::fs::remove_dir_all(&b).unwrap();
}

#[test]
fn time_based_checkpoints_are_written() {
    let gpu = common::shared_gpu();
    let d = temp_dir("minutes");
    // Every step takes longer than 1e-6 minutes: a checkpoint after each one.
    let cfg = small(
        &d,
        4,
        &[
            "output.checkpoint_every=0",
            "output.checkpoint_minutes=1e-6",
            "output.keep=10",
        ],
    );
    run::train(gpu, &cfg, &quiet()).unwrap();
    assert_eq!(checkpoint_steps(&d), vec![1, 2, 3, 4]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn a_run_directory_without_a_usable_checkpoint_or_in_use_is_refused() {
    let gpu = common::shared_gpu();
    let d = temp_dir("orphan");
    std::fs::create_dir_all(&d).unwrap();
    let metrics = "{\"step\": 1, \"meta_loss\": 2.0}\n{\"step\": 2, \"meta_loss\": 1.5}\n";
    std::fs::write(d.join("metrics.jsonl"), metrics).unwrap();
    let cfg = small(&d, 4, &[]);
    let mut resume = quiet();
    resume.resume = true;
    for opts in [&resume, &quiet()] {
        let e = run::train(gpu, &cfg, opts).unwrap_err().to_string();
        assert!(
            e.contains("metrics.jsonl") && e.contains("2 lines") && e.contains("no checkpoint"),
            "{e}"
        );
        assert!(e.contains("to start over, remove"), "{e}");
    }
    // Only a corrupt checkpoint: the same refusal, saying why it is unusable.
    let rd = metalearn::meta::RunDir::create(&d, 2).unwrap();
    std::fs::write(rd.checkpoint_path(2), b"truncated").unwrap();
    let e = run::train(gpu, &cfg, &resume).unwrap_err().to_string();
    assert!(
        e.contains("no readable checkpoint") && e.contains("ckpt-000000002"),
        "{e}"
    );
    assert_eq!(
        std::fs::read_to_string(d.join("metrics.jsonl")).unwrap(),
        metrics
    );
    // A checkpoint of format 2 (random streams of an earlier version) is not resumed.
    let ck = save::Checkpoint {
        state: metalearn::meta::TrainerState {
            step: 2,
            episodes: 1,
            rng_pos: 0,
            episode_rng_pos: 0,
            offset: 0,
            meta_params: vec![0.0; 3 + 6],
            moments: vec![0.0; 18],
            carry: None,
            noise: None,
            task_state: None,
            shards: Vec::new(),
        },
        phi_len: 3,
        optimizer: "linear".into(),
        config: cfg.to_toml().unwrap(),
        format: 2,
    };
    rd.save(&ck).unwrap();
    let e = run::train(gpu, &cfg, &resume).unwrap_err().to_string();
    assert!(
        e.contains("format 2") && e.contains("metalearn eval"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).unwrap();
    // A directory another run holds is refused, naming the holder.
    let held = temp_dir("held");
    let lock = metalearn::meta::RunDir::create(&held, 1)
        .unwrap()
        .lock()
        .unwrap();
    let e = run::train(gpu, &small(&held, 2, &[]), &quiet()).unwrap_err();
    assert!(
        matches!(e, Error::Locked { .. })
            && e.to_string()
                .contains(&format!("PID {}", std::process::id())),
        "{e}"
    );
    drop(lock);
    std::fs::remove_dir_all(&held).unwrap();
}

#[test]
fn eval_of_a_run_directory_skips_a_corrupt_newest_checkpoint() {
    let gpu = common::shared_gpu();
    let d = temp_dir("eval-corrupt");
    run::train(gpu, &small(&d, 6, &[]), &quiet()).unwrap();
    assert_eq!(checkpoint_steps(&d), vec![3, 6]);
    let rd = metalearn::meta::RunDir::create(&d, 2).unwrap();
    let bytes = std::fs::read(rd.checkpoint_path(6)).unwrap();
    std::fs::write(rd.checkpoint_path(6), &bytes[..bytes.len() - 9]).unwrap();
    assert_eq!(run::load_checkpoint(&d).unwrap().state.step, 3);
    std::fs::remove_dir_all(&d).unwrap();
}
