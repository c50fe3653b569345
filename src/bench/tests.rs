//! The JSON rows of `metalearn bench --json`: parsed back, with the keys the peer scripts and
//! BENCHMARKS.md read.

use super::*;

/// The keys of `row` once written and parsed back, sorted.
fn keys(row: &Row) -> Vec<String> {
    let text = serde_json::to_string(row).expect("encode");
    let v: serde_json::Value = serde_json::from_str(&text).expect("parse");
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

fn sorted(k: &[&str]) -> Vec<String> {
    let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
    k.sort();
    k
}

fn w1_row() -> W1Row {
    W1Row {
        case: "w1 lstm on 784-20-10 MLPs B=128 T=20 N=1 store-all".into(),
        implementation: "metalearn".into(),
        instances: 1,
        status: Status::Ok,
        outer_steps_per_run: 5,
        runs: 5,
        step_seconds: 1.9e-2,
        inner_steps_x_instances_per_second: 1054.7,
        flops_executed: 1.7e10,
        flops_minimal: 1.0e10,
        flops_per_second: 9.0e11,
        peak_fraction: 2.0e-2,
        floor_seconds: 2.3e-4,
        gpu_busy: Some(0.9667),
        memory_bytes: 126_118_836,
        checkpoint_bytes: 108_251_640,
        slots: 21,
        working_bytes: 15_459_436,
        task_bytes: 2_407_760,
        kernels: vec![KernelRow {
            kernel: "matmul".into(),
            dispatches: 205,
            seconds: 1.34e-2,
        }],
    }
}

#[test]
fn w1_row_parses_back_with_the_peer_schema() {
    let row = Row::W1(w1_row());
    assert_eq!(
        keys(&row),
        sorted(&[
            "case",
            "implementation",
            "instances",
            "status",
            "outer_steps_per_run",
            "runs",
            "step_seconds",
            "inner_steps_x_instances_per_second",
            "flops_executed",
            "flops_minimal",
            "flops_per_second",
            "peak_fraction",
            "floor_seconds",
            "gpu_busy",
            "memory_bytes",
            "checkpoint_bytes",
            "slots",
            "working_bytes",
            "task_bytes",
            "kernels",
        ])
    );
    let v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&row).expect("encode")).expect("parse");
    assert_eq!(v["status"], "ok");
    assert_eq!(v["instances"], 1);
    assert_eq!(v["step_seconds"].as_f64(), Some(1.9e-2));
    assert_eq!(v["gpu_busy"].as_f64(), Some(0.9667));
    assert_eq!(v["kernels"][0]["kernel"], "matmul");
    assert_eq!(v["kernels"][0]["dispatches"], 205);
    assert_eq!(v["kernels"][0]["seconds"].as_f64(), Some(1.34e-2));
    let none = Row::W1(W1Row {
        gpu_busy: None,
        ..w1_row()
    });
    let v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&none).expect("encode")).expect("parse");
    assert!(v["gpu_busy"].is_null());
}

#[test]
fn every_row_kind_keeps_its_keys() {
    let limit = Row::W1Limit(W1LimitRow {
        case: "w1 N=4096".into(),
        implementation: "metalearn".into(),
        instances: 4096,
        status: Status::Limit,
        error: "buffer \"x\" is too large\nsecond line".into(),
    });
    assert_eq!(
        keys(&limit),
        sorted(&["case", "implementation", "instances", "status", "error"])
    );
    let v: serde_json::Value =
        serde_json::from_str(&serde_json::to_string(&limit).expect("encode")).expect("parse");
    assert_eq!(v["status"], "limit");
    assert_eq!(v["error"], "buffer \"x\" is too large\nsecond line");
    let mlp = Row::Mlp(MlpRow {
        case: "784-20-10 sigmoid b=128 n=1".into(),
        steps: 20,
        step_seconds: 1e-3,
        instance_steps_per_second: 1e3,
        gflops: 10.0,
    });
    assert_eq!(
        keys(&mlp),
        sorted(&[
            "case",
            "steps",
            "step_seconds",
            "instance_steps_per_second",
            "gflops"
        ])
    );
    let meta = Row::Meta(MetaRow {
        case: "lstm quadratic".into(),
        step_seconds: 1e-2,
        inner_steps_x_instances_per_second: 2e3,
        checkpoint_bytes: 1024,
        slots: 21,
        working_bytes: 2048,
    });
    assert_eq!(
        keys(&meta),
        sorted(&[
            "case",
            "step_seconds",
            "inner_steps_x_instances_per_second",
            "checkpoint_bytes",
            "slots",
            "working_bytes"
        ])
    );
    let opt = Row::Opt(OptRow {
        case: "adam step".into(),
        step_seconds: 1e-4,
        bytes_per_step: 1 << 20,
        gb_per_second: 100.0,
        copy_gb_per_second: 200.0,
    });
    assert_eq!(
        keys(&opt),
        sorted(&[
            "case",
            "step_seconds",
            "bytes_per_step",
            "gb_per_second",
            "copy_gb_per_second"
        ])
    );
    let unroll = Row::Unroll(UnrollRow {
        case: "mlp-opt sqrt".into(),
        seconds: 1.5,
        slots: 32,
        held_bytes: 1 << 30,
    });
    assert_eq!(
        keys(&unroll),
        sorted(&["case", "seconds", "slots", "held_bytes"])
    );
    // The keys benches/peers/pytorch_lm.py writes too.
    let lm = Row::Lm(LmRow {
        case: "V=256".into(),
        parameters: 10,
        train_tokens_per_second: 1.0,
        train_gflops: 2.0,
        eval_tokens_per_second: 3.0,
        eval_gflops: 4.0,
        dynamic_tokens_per_second: 5.0,
        train_kernels: Vec::new(),
    });
    assert_eq!(
        keys(&lm),
        sorted(&[
            "case",
            "parameters",
            "train_tokens_per_second",
            "train_gflops",
            "eval_tokens_per_second",
            "eval_gflops",
            "dynamic_tokens_per_second"
        ])
    );
}

#[test]
fn the_lm_flop_model_counts_the_products() {
    // 2 layers E = H = 4, V = 10: LSTM 2·(4+4)·16 per layer, logits 2·4·10.
    let spec = crate::tasks::lm::LmSpec::new(10, 4, 4, 2).expect("spec");
    assert_eq!(lm_forward_flops(&spec), 2.0 * 256.0 + 80.0);
    // E ≠ H adds the projection 2·H·E.
    let spec = crate::tasks::lm::LmSpec::new(10, 2, 4, 1).expect("spec");
    assert_eq!(lm_forward_flops(&spec), 2.0 * 6.0 * 16.0 + 16.0 + 40.0);
}

#[test]
fn report_is_one_json_document() {
    let report = Report {
        adapter: "llvmpipe \"LLVM 19\"".into(),
        backend: "Vulkan".into(),
        workload: "metalearn bench".into(),
        results: vec![Row::W1(w1_row())],
    };
    let v: serde_json::Value =
        serde_json::from_str(&report.to_json().expect("json")).expect("parse");
    assert_eq!(v["adapter"], "llvmpipe \"LLVM 19\"");
    assert_eq!(v["backend"], "Vulkan");
    assert_eq!(v["workload"], "metalearn bench");
    assert_eq!(v["results"][0]["implementation"], "metalearn");
    let d = std::env::temp_dir().join(format!("metalearn-bench-json-{}", std::process::id()));
    std::fs::create_dir_all(&d).expect("temp dir");
    let p = d.join("bench.json");
    report.write_json(&p).expect("write");
    let back: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).expect("read")).expect("parse file");
    assert_eq!(back, v);
    std::fs::remove_dir_all(&d).expect("clean up");
}

#[test]
fn parts_parse_by_name() {
    for p in Part::ALL {
        assert_eq!(Part::parse(p.name()).expect("known"), p);
    }
    let e = Part::parse("dynlm").expect_err("unknown").to_string();
    assert!(e.contains("unknown benchmark part 'dynlm'"), "{e}");
    assert!(e.contains("mlp, meta, opt, unroll, w1, so, lm"), "{e}");
}

#[test]
fn medians_take_the_middle_value() {
    assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
    assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 3.0);
    assert_eq!(median(Vec::new()), 0.0);
}
