//! The command line on bad input: each case exits with status 1 and one `error:` line that names
//! the problem and the fix; nothing panics and nothing saved is touched.

use std::path::PathBuf;
use std::process::Command;

fn metalearn(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_metalearn"))
        .args(args)
        .env("XDG_RUNTIME_DIR", std::env::temp_dir())
        .output()
        .expect("the metalearn binary runs");
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

#[test]
fn a_given_data_directory_without_a_dataset_is_an_error() {
    expect_error(
        &["sgd", "--data-dir", "/nonexistent/metalearn-cli"],
        &["/nonexistent/metalearn-cli", "does not exist"],
    );
}
