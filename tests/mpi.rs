//! Meta-training over two MPI ranks (`mpirun -np 2`, the `mpi` feature) against one process
//! with two devices: the same metrics and checkpoints bit for bit, a resume mid-episode, and a
//! rank that hangs ending the job with an error while the last checkpoint stays valid.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use metalearn::config::Config;
use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::meta::save;
use metalearn::run::{train, TrainOptions};
use metalearn::Result;

const SETTINGS: [&str; 5] = [
    "task.instances=5",
    "meta.unroll=5",
    "meta.episode=10",
    "eval.every=0",
    "output.checkpoint_every=1",
];

fn temp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("metalearn-mpi-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn mpirun(ranks: usize, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args([
        "--allow-run-as-root",
        "--oversubscribe",
        "-np",
        &ranks.to_string(),
    ]);
    for k in ["XDG_RUNTIME_DIR", "WGPU_BACKEND"] {
        if std::env::var(k).is_ok() {
            c.args(["-x", k]);
        }
    }
    c.arg(env!("CARGO_BIN_EXE_metalearn"))
        .args(["train", "--quiet", "--out"])
        .arg(out)
        .args(["--set", "dist.backend=\"mpi\""]);
    for s in SETTINGS.iter().chain(extra) {
        c.args(["--set", s]);
    }
    c
}

fn run_ok(mut c: Command) -> Output {
    let out = c.output().unwrap_or_else(|e| panic!("mpirun: {e}"));
    assert!(
        out.status.success(),
        "mpirun failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn config(out: &Path, extra: &[&str]) -> Result<Config> {
    let mut set: Vec<String> = SETTINGS
        .iter()
        .chain(extra)
        .map(|s| s.to_string())
        .collect();
    set.push(format!("output.dir=\"{}\"", out.display()));
    Config::embedded_default()?.with_overrides(&set)
}

fn losses(dir: &Path) -> Vec<f64> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v.get("meta_loss").and_then(serde_json::Value::as_f64))
        .collect()
}

/// The trained state of the checkpoint at `step`: meta-parameters, moments, carry, shards.
fn trained(dir: &Path, step: usize) -> Result<metalearn::meta::TrainerState> {
    Ok(save::load(&dir.join(format!("ckpt-{step:09}.safetensors")))?.state)
}

#[test]
fn two_ranks_meta_train_as_two_devices_of_one_process() -> Result<()> {
    let gpus: Vec<std::sync::Arc<Gpu>> = (0..2)
        .map(|_| Gpu::new(&GpuOptions::default()).map(std::sync::Arc::new))
        .collect::<Result<_>>()?;
    let opts = TrainOptions {
        devices: vec![gpus[1].clone()],
        ..TrainOptions::default()
    };
    // Three outer steps: the third ends in the middle of an episode.
    let (ranks, local) = (temp("ranks"), temp("local"));
    run_ok(mpirun(2, &ranks, &["meta.outer_steps=3"]));
    train(&gpus[0], &config(&local, &["meta.outer_steps=3"])?, &opts)?;
    assert_eq!(losses(&ranks), losses(&local));
    assert_eq!(losses(&ranks).len(), 3);
    let st = trained(&ranks, 3)?;
    assert_eq!(st.offset, 5);
    assert_eq!(st.shards, [3, 2]);
    assert_eq!(
        st,
        trained(&local, 3)?,
        "the ranks' checkpoint differs from one process's"
    );
    // Resumed to five steps under mpirun and in one process: still the same.
    let mut c = mpirun(2, &ranks, &["meta.outer_steps=5"]);
    c.arg("--resume");
    run_ok(c);
    let resume = TrainOptions {
        resume: true,
        ..opts.clone()
    };
    train(&gpus[0], &config(&local, &["meta.outer_steps=5"])?, &resume)?;
    assert_eq!(losses(&ranks), losses(&local));
    assert_eq!(losses(&ranks).len(), 5);
    assert_eq!(trained(&ranks, 5)?, trained(&local, 5)?);
    let _ = std::fs::remove_dir_all(&ranks);
    let _ = std::fs::remove_dir_all(&local);
    Ok(())
}

/// The processes of the job writing to `dir` whose environment says they are MPI rank `rank`.
fn rank_pids(dir: &Path, rank: usize) -> Vec<i32> {
    let dir = dir.display().to_string();
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let me = std::process::id() as i32;
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
                .filter(|&pid| pid != me)
                .filter(|pid| {
                    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
                    let cmd = String::from_utf8_lossy(&cmd);
                    cmd.contains("metalearn")
                        && cmd.contains(&dir)
                        && env.split(|&b| b == 0).any(|kv| kv == want.as_bytes())
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Rank 1 stops answering (SIGSTOP) after the first checkpoints: rank 0 waits out
/// `dist.timeout_s`, names the problem and ends the job with a failure; the checkpoints written
/// before stay readable and the run resumes from them.
#[test]
fn a_rank_that_hangs_ends_the_job_with_an_error() -> Result<()> {
    let dir = temp("hang");
    let child = mpirun(2, &dir, &["meta.outer_steps=100000", "dist.timeout_s=5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("mpirun: {e}"));
    let t0 = Instant::now();
    while losses(&dir).len() < 2 {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the job never got going"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pids = rank_pids(&dir, 1);
    assert_eq!(pids.len(), 1, "rank 1's process: {pids:?}");
    // SAFETY: kill(2) on a process of this test's own job.
    unsafe {
        libc::kill(pids[0], libc::SIGSTOP);
    }
    let stopped = Instant::now();
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("mpirun: {e}"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the job ended well after a rank hung"
    );
    assert!(
        stopped.elapsed() < Duration::from_secs(60),
        "the job took {:?} to end",
        stopped.elapsed()
    );
    assert!(
        err.contains("rank 0 of 2 waited 5 s") && err.contains("a rank died or hangs"),
        "{err}"
    );
    // Every checkpoint left is whole, and the run resumes from the newest.
    let ck = save::RunDir::create(&dir, 3)?;
    let saved = ck.checkpoints()?;
    assert!(!saved.is_empty());
    for (_, p) in &saved {
        save::load(p)?;
    }
    let step = saved.last().map_or(0, |s| s.0);
    let more = format!("meta.outer_steps={}", step + 2);
    let mut c = mpirun(2, &dir, &[&more]);
    c.arg("--resume");
    run_ok(c);
    assert_eq!(losses(&dir).len(), step + 2);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
