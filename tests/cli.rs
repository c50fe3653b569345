//! The command line on bad input: each case exits with status 1 and one `error:` line that names
//! the problem and the fix; nothing panics and nothing saved is touched.

use std::path::{Path, PathBuf};
use std::process::Command;

fn metalearn(args: &[&str]) -> (i32, String, String) {
    metalearn_capped(None, args)
}

/// [`metalearn`] with `METALEARN_MAX_BUFFER_MIB` set to `cap` (unset with `None`).
fn metalearn_capped(cap: Option<&str>, args: &[&str]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_metalearn"));
    c.args(args).env("XDG_RUNTIME_DIR", std::env::temp_dir());
    match cap {
        Some(v) => c.env("METALEARN_MAX_BUFFER_MIB", v),
        None => c.env_remove("METALEARN_MAX_BUFFER_MIB"),
    };
    let out = c.output().expect("the metalearn binary runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("metalearn-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn expect_error(args: &[&str], needles: &[&str]) {
    let (code, _, err) = metalearn(args);
    assert_eq!(code, 1, "{args:?}: exit code {code}, stderr {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: '{n}' not in {err}");
    }
}

#[test]
fn bad_configs_and_overrides_are_named() {
    let d = temp("config");
    let cfg = d.join("bad.toml");
    let f = cfg.to_str().unwrap();
    std::fs::write(&cfg, "[meta]\nunrol = 3\n").unwrap();
    expect_error(
        &["train", "--config", f],
        &["bad.toml", "unrol", "docs/config.md"],
    );
    std::fs::write(&cfg, "[meta]\nunroll = \"twenty\"\n").unwrap();
    expect_error(&["train", "--config", f], &["unroll"]);
    std::fs::write(&cfg, "[task]\ninstances = 0\n").unwrap();
    expect_error(&["train", "--config", f], &["task.instances = 0", "from 1"]);
    std::fs::write(&cfg, "[task\n").unwrap();
    expect_error(&["train", "--config", f], &["not valid TOML", "line 1"]);
    std::fs::write(&cfg, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    expect_error(&["train", "--config", f], &["bad.toml"]);
    expect_error(
        &[
            "train",
            "--config",
            d.join("missing.toml").to_str().unwrap(),
        ],
        &["missing.toml", "cannot be read"],
    );
    expect_error(&["train", "--set", "meta.unroll=-3"], &["unroll"]);
    expect_error(
        &["train", "--set", "meta.episode=30"],
        &["multiple of meta.unroll"],
    );
    expect_error(&["train", "--set", "optimizer.kind=lbfgs"], &["lbfgs"]);
    expect_error(&["train", "--set", "nonsense"], &["section.key=value"]);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn bad_checkpoints_are_named_and_left_alone() {
    let d = temp("ckpt");
    let ck = d.join("ckpt-000000010.safetensors");
    std::fs::write(&ck, b"not a checkpoint at all").unwrap();
    expect_error(
        &["eval", ck.to_str().unwrap()],
        &["ckpt-000000010", "corrupt"],
    );
    assert_eq!(std::fs::read(&ck).unwrap(), b"not a checkpoint at all");
    expect_error(
        &["eval", d.join("nope.safetensors").to_str().unwrap()],
        &["nope.safetensors", "cannot be read"],
    );
    let empty = temp("empty");
    expect_error(&["eval", empty.to_str().unwrap()], &["no checkpoint"]);
    std::fs::remove_dir_all(&d).unwrap();
    std::fs::remove_dir_all(&empty).unwrap();
}

#[test]
fn every_command_documents_its_options() {
    for cmd in ["train", "eval", "bench", "export", "info", "l2l", "sgd"] {
        let (code, out, err) = metalearn(&[cmd, "--help"]);
        assert_eq!(code, 0, "{cmd} --help: {err}");
        assert!(out.contains("Usage: metalearn"), "{cmd}: {out}");
        assert!(
            out.contains("--backend"),
            "{cmd}: global options missing: {out}"
        );
    }
    let (_, out, _) = metalearn(&["train", "--help"]);
    for opt in ["--config", "--set", "--resume", "--out", "--outer-steps"] {
        assert!(out.contains(opt), "train --help lacks {opt}");
    }
}

/// Every numeric flag of every subcommand, driven with zero, negative, NaN, infinite and
/// huge values where the flag cannot take them: each case exits with status 1 and exactly one
/// `error:` line, before any work (nothing is written), and nothing panics.
#[test]
fn every_numeric_flag_refuses_zero_negative_nan_and_huge_values() {
    let d = temp("flags");
    let out = d.join("x.safetensors");
    let out = out.to_str().unwrap();
    let ck = d.join("missing.safetensors");
    let ck = ck.to_str().unwrap();
    let counts = ["0", "-1", "nan", "1e30", "99999999999999999999999"];
    let seeds = ["-1", "nan", "1e30", "99999999999999999999999"];
    let rates = ["0", "-1", "nan", "inf", "-inf", "1e40"];
    let mut cases: Vec<Vec<String>> = Vec::new();
    let mut add = |base: &[&str], flag: &str, values: &[&str]| {
        for v in values {
            let mut a: Vec<String> = base.iter().map(|s| s.to_string()).collect();
            a.push(format!("--{flag}={v}"));
            cases.push(a);
        }
    };
    let l2l = [
        "l2l",
        "--outer-steps=1",
        "--instances=2",
        "--eval-instances=2",
    ];
    for flag in ["outer-steps", "instances", "eval-instances"] {
        add(&l2l, flag, &counts);
    }
    add(&l2l, "meta-lr", &rates);
    add(&l2l, "seed", &seeds);
    let sgd = ["sgd", "--mlp-instances=1", "--mlp-steps=1"];
    for flag in ["mlp-instances", "mlp-steps"] {
        add(&sgd, flag, &counts);
    }
    add(&sgd, "seed", &seeds);
    let export = ["export", "--out", out];
    for flag in ["instances", "unroll"] {
        add(&export, flag, &counts);
    }
    add(&export, "seed", &seeds);
    add(
        &["export", "--out", out, "--unroll=100000"],
        "instances",
        &["100000"],
    );
    let bench = ["bench", "--quick"];
    for flag in ["steps", "repeats"] {
        add(&bench, flag, &counts);
    }
    add(&bench, "instances", &["0", "1,0", "-1", "nan", "1e30", ""]);
    for flag in ["steps", "instances"] {
        add(&["eval", ck], flag, &counts);
    }
    let train = ["train", "--out", d.to_str().unwrap()];
    for kv in [
        "meta.lr=nan",
        "meta.lr=inf",
        "meta.clip=-1",
        "task.instances=-1",
        "task.instances=0",
        "meta.unroll=0",
        "meta.chunks=-1",
        "meta.chunks=100000",
        "meta.outer_steps=-5",
        "task.dim=0",
        "task.dim=99999999999999999999999",
        "eval.instances=0",
        "eval.steps=nan",
        "seed=-1",
    ] {
        add(&train, "set", &[kv]);
    }
    assert!(cases.len() >= 90, "{} cases", cases.len());
    for a in &cases {
        let args: Vec<&str> = a.iter().map(String::as_str).collect();
        let (code, _, err) = metalearn(&args);
        assert_eq!(code, 1, "{args:?}: exit code {code}, stderr {err}");
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        let errors = err.lines().filter(|l| l.starts_with("error:")).count();
        assert_eq!(errors, 1, "{args:?}: {errors} error lines in {err}");
    }
    assert!(!Path::new(out).exists(), "a refused export wrote {out}");
    let left: Vec<_> = std::fs::read_dir(&d).unwrap().collect();
    assert!(
        left.is_empty(),
        "refused runs left {left:?} in {}",
        d.display()
    );
    eprintln!("{} bad flag values refused", cases.len());
}

#[test]
fn language_model_runs_name_bad_corpora_and_models() {
    let d = temp("lm");
    let tiny = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/lm_tiny.toml");
    let tiny = tiny.to_str().unwrap();
    let missing = d.join("no-corpus");
    expect_error(
        &[
            "train",
            "--config",
            tiny,
            "--set",
            "lm.corpus=dir",
            "--set",
            &format!("lm.path=\"{}\"", missing.display()),
            "--out",
            d.join("run").to_str().unwrap(),
        ],
        &["no-corpus", "directory does not exist"],
    );
    expect_error(
        &["train", "--config", tiny, "--set", "lm.corpus=dir"],
        &["lm.corpus = 'dir' needs lm.path"],
    );
    let run = d.join("bad-run");
    std::fs::create_dir_all(&run).unwrap();
    let file = run.join("lm.safetensors");
    std::fs::write(&file, b"not a model").unwrap();
    expect_error(
        &["eval", run.to_str().unwrap()],
        &["lm.safetensors", "not a readable safetensors file"],
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"not a model");
    assert!(
        !run.join("eval").exists(),
        "nothing written for a bad model"
    );
    expect_error(
        &["eval", d.join("none/lm.safetensors").to_str().unwrap()],
        &["cannot be read"],
    );
}

#[test]
fn a_given_data_directory_without_a_dataset_is_an_error() {
    expect_error(
        &["sgd", "--data-dir", "/nonexistent/metalearn-cli"],
        &["/nonexistent/metalearn-cli", "does not exist"],
    );
}

/// Settings that are refused once the task is known (a quadratic beyond the kernel's largest
/// dimension, a checkpoint schedule that cannot reverse the unroll, a memory budget below three
/// slots) fail with one error line and leave no run directory behind.
#[test]
fn refused_runs_leave_no_run_directory() {
    let d = temp("refused");
    for (i, (kv, needle)) in [
        ("task.dim=4096", "task.dim = 4096"),
        ("meta.schedule=revolve-2", "revolve-3 or more"),
        ("meta.memory_budget_mib=0.01", "raise the budget"),
    ]
    .into_iter()
    .enumerate()
    {
        let out = d.join(format!("run{i}"));
        let out = out.to_str().unwrap();
        expect_error(&["train", "--set", kv, "--out", out], &[needle]);
        assert!(!Path::new(out).exists(), "{kv}: {out} was left behind");
    }
}

#[test]
fn dry_run_prints_the_memory_and_writes_nothing() {
    let d = temp("dry");
    let out = d.join("run");
    let out_s = out.to_str().unwrap();
    let (code, stdout, err) = metalearn(&["train", "--dry-run", "--out", out_s]);
    assert_eq!(code, 0, "{err}");
    for needle in ["the run fits", "checkpoints", "21 slots", "total"] {
        assert!(stdout.contains(needle), "'{needle}' not in {stdout}");
    }
    assert!(!out.exists(), "a dry run wrote {out_s}");
    // 100 000 steps of 300 instances, every step stored: ~97 GB of checkpoint slots, each
    // slot within the buffer limits. Refused up front, by the dry run and by the run itself.
    let big = [
        "--instances",
        "300",
        "--set",
        "meta.unroll=100000",
        "--set",
        "meta.episode=0",
        "--out",
        out_s,
    ];
    for dry in [true, false] {
        let mut args = vec!["train"];
        if dry {
            args.push("--dry-run");
        }
        args.extend(big);
        expect_error(
            &args,
            &["memory the run's GPU buffers need", "meta.schedule"],
        );
        assert!(!out.exists(), "a refused run left {out_s}");
    }
    // One buffer beyond the adapter's limits is named where the instances are held in one
    // chunk; by default they are split until every buffer fits, and then the memory is named.
    let long = ["train", "--dry-run", "--set", "meta.unroll=1048576"];
    let long = [&long[..], &["--set", "meta.episode=0"]].concat();
    expect_error(
        &[&long[..], &["--set", "meta.chunks=1"]].concat(),
        &["buffer 'losses'", "shorter unroll"],
    );
    expect_error(&long, &["memory the run's GPU buffers need"]);
}

/// Wording and artefacts: `--compare A B`, a resume that changes `meta.outer_steps` says so, a
/// resume of another setting names the key, a run with no step left says so, leftovers of an
/// interrupted write are removed, and no EGL complaint about XDG_RUNTIME_DIR on a headless box.
#[test]
fn runs_say_what_they_did() {
    let d = temp("wording");
    let (a, b) = (d.join("a"), d.join("b"));
    let (a_s, b_s) = (a.to_str().unwrap(), b.to_str().unwrap());
    let small = ["--outer-steps", "1", "--instances", "2", "--quiet"];
    for dir in [a_s, b_s] {
        let mut args = vec!["train", "--out", dir];
        args.extend(small);
        let (code, _, err) = metalearn(&args);
        assert_eq!(code, 0, "{err}");
    }
    let (code, out, err) = metalearn(&[
        "eval",
        a_s,
        "--compare",
        b_s,
        a_s,
        "--steps",
        "3",
        "--instances",
        "2",
        "--out",
        d.join("ev").to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.matches("lstm (").count(), 3, "{out}");
    // A leftover temporary file goes; a longer run says what changed.
    let leftover = a.join("ckpt-000000009.safetensors.tmp4242");
    std::fs::write(&leftover, b"partial").unwrap();
    let resume = [
        "train",
        "--out",
        a_s,
        "--resume",
        "--outer-steps",
        "2",
        "--instances",
        "2",
        "--quiet",
    ];
    let (code, _, err) = metalearn(&resume);
    assert_eq!(code, 0, "{err}");
    assert!(!leftover.exists(), "{err}");
    assert!(err.contains("removed") && err.contains("tmp4242"), "{err}");
    assert!(
        err.contains("meta.outer_steps = 1 in the run, 2 now"),
        "{err}"
    );
    let cfg = std::fs::read_to_string(a.join("config.toml")).unwrap();
    assert!(cfg.contains("outer_steps = 2"), "{cfg}");
    let (code, out, err) = metalearn(&resume);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("no step ran") && !out.contains("NaN"), "{out}");
    expect_error(
        &[
            "train",
            "--out",
            a_s,
            "--resume",
            "--outer-steps",
            "3",
            "--instances",
            "2",
            "--set",
            "task.dim=5",
        ],
        &["task.dim = 10 in the run, 5 now"],
    );
    let out = Command::new(env!("CARGO_BIN_EXE_metalearn"))
        .arg("info")
        .env_remove("XDG_RUNTIME_DIR")
        .output()
        .expect("the metalearn binary runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("XDG_RUNTIME_DIR"), "{err}");
}

#[test]
fn eval_over_seeds_reports_mean_and_spread() {
    let d = temp("seeds");
    let mut dirs = Vec::new();
    for s in ["0", "1"] {
        let dir = d.join(format!("q_s{s}"));
        let dir_s = dir.to_str().unwrap().to_string();
        let args = [
            "train",
            "--out",
            &dir_s,
            "--seed",
            s,
            "--outer-steps",
            "1",
            "--instances",
            "2",
            "--quiet",
        ];
        let (code, _, err) = metalearn(&args);
        assert_eq!(code, 0, "{err}");
        dirs.push(dir_s);
    }
    let out = d.join("ev");
    let (code, stdout, err) = metalearn(&[
        "eval",
        &dirs[0],
        "--compare",
        &dirs[1],
        "--steps",
        "4",
        "--instances",
        "2",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    for needle in ["over seeds 0, 1", "lstm (q) [2 seeds]", " ± ", "sgd (lr "] {
        assert!(stdout.contains(needle), "'{needle}' not in {stdout}");
    }
    let csv = std::fs::read_to_string(out.join("curves.csv")).unwrap();
    for col in [
        "lstm (q) mean",
        "lstm (q) std",
        "lstm (q) min",
        "lstm (q) max",
        "lstm (q) seed=1",
    ] {
        assert!(csv.lines().next().unwrap().contains(col), "{col}");
    }
    let seeds = std::fs::read_to_string(out.join("seeds.json")).unwrap();
    assert!(seeds.contains("learning_rates"), "{seeds}");
    assert!(std::fs::read_to_string(out.join("curves.svg"))
        .unwrap()
        .contains("<polygon"));
}

/// On a device whose buffers are capped (METALEARN_MAX_BUFFER_MIB) below one checkpoint slot of
/// every instance, the dry run and the run split the instances into chunks and say so; one
/// chunk forced names the buffer and the limit; a bad cap is named.
#[test]
fn instances_beyond_the_buffer_limit_run_in_chunks() {
    let d = temp("chunks");
    let run = |cap: &str, args: &[&str]| metalearn_capped(Some(cap), args);
    let cfg = [
        "--config",
        "configs/l2l_quadratic.toml",
        "--instances",
        "256",
    ];
    let mut dry = vec!["train", "--dry-run"];
    dry.extend(cfg);
    let (code, stdout, err) = run("1", &dry);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("4 chunks of the instances"), "{stdout}");
    let out = d.join("run");
    let mut train = vec!["train", "--out", out.to_str().unwrap()];
    train.extend(cfg);
    train.extend(["--set", "meta.outer_steps=2"]);
    let (code, stdout, err) = run("1", &train);
    assert_eq!(code, 0, "{stdout}{err}");
    assert!(err.contains("in 4 chunks per device"), "{err}");
    let forced_dir = d.join("forced");
    let mut forced = vec!["train", "--out", forced_dir.to_str().unwrap()];
    forced.extend(cfg);
    forced.extend(["--set", "meta.chunks=1"]);
    let (code, _, err) = run("1", &forced);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("buffer '") && err.contains("max_buffer_size"),
        "{err}"
    );
    assert!(!forced_dir.exists(), "a refused run left its directory");
    let (code, _, err) = run("lots", &dry);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("METALEARN_MAX_BUFFER_MIB"), "{err}");
}

/// The dynamical LM beyond the buffer limits (METALEARN_MAX_BUFFER_MIB=1): 64 documents
/// meta-train in chunks (the corpus read once), and `metalearn eval` of 64 documents, in
/// shards, writes the curves of an uncapped device bit for bit.
#[test]
fn dynamical_lm_beyond_the_buffer_limit_trains_in_chunks_and_evaluates_in_shards() {
    let d = temp("dynlm-chunks");
    let run = |cap: Option<&str>, args: &[&str]| {
        let (code, _, err) = metalearn_capped(cap, args);
        assert_eq!(code, 0, "{args:?}: {err}");
        err
    };
    let out = d.join("run");
    let out_s = out.to_str().unwrap();
    let err = run(
        Some("1"),
        &[
            "train",
            "--config",
            "configs/dynlm_tiny.toml",
            "--instances",
            "64",
            "--set",
            "meta.outer_steps=2",
            "--out",
            out_s,
        ],
    );
    assert!(err.contains("in 2 chunks per device"), "{err}");
    assert_eq!(
        err.matches("documents, ").count(),
        1,
        "the corpus read once: {err}"
    );
    let curves: Vec<String> = [Some("1"), None]
        .iter()
        .enumerate()
        .map(|(i, cap)| {
            let eval = d.join(format!("eval{i}"));
            let args = ["eval", out_s, "--instances", "64", "--steps", "3", "--out"];
            run(*cap, &[&args[..], &[eval.to_str().unwrap()]].concat());
            std::fs::read_to_string(eval.join("curves.csv")).unwrap()
        })
        .collect();
    assert!(curves[0].lines().count() > 3, "{}", curves[0]);
    assert_eq!(
        curves[0], curves[1],
        "capped and uncapped evaluations differ"
    );
}
