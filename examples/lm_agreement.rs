//! The LSTM language model's static and dynamic (SGD) evaluation written out for a peer to
//! reproduce: random initial weights (seed 7) and random tokens (one document per stream,
//! starting at the first token), the per-stream loss of every chunk with the state carried, for
//! static evaluation and for dynamic evaluation with SGD on the LSTM layers (the default fast
//! weights). `benches/peers/pytorch_lm.py --check DIR` recomputes both with PyTorch.
//!
//! `cargo run --release --example lm_agreement -- DIR [V E H LAYERS N L CHUNKS LR]`
//! (default 16384 512 512 2 8 64 6 0.5). Writes DIR/theta.f32 (the weights of
//! `LmSpec::layout`, little-endian f32) and DIR/lm_agreement.json.

use std::path::PathBuf;
use std::sync::Arc;

use metalearn::gpu::{Gpu, GpuOptions};
use metalearn::tasks::lm::{DynamicEval, LmSpec, TokenChunk, Update};
use metalearn::{Error, Result};
use rand::{Rng, SeedableRng};
use serde_json::json;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir =
        PathBuf::from(args.first().ok_or_else(|| {
            Error::invalid("usage: lm_agreement DIR [V E H LAYERS N L CHUNKS LR]")
        })?);
    let num = |i: usize, d: f64| -> Result<f64> {
        args.get(i).map_or(Ok(d), |s| {
            s.parse()
                .map_err(|_| Error::invalid(format!("argument {i} = '{s}' is not a number")))
        })
    };
    let (v, e, h, layers) = (
        num(1, 16384.0)?,
        num(2, 512.0)?,
        num(3, 512.0)?,
        num(4, 2.0)?,
    );
    let (n, l, chunks, lr) = (num(5, 8.0)?, num(6, 64.0)?, num(7, 6.0)?, num(8, 0.5)?);
    let (v, e, h, layers) = (v as usize, e as usize, h as usize, layers as usize);
    let (n, l, chunks, lr) = (n as usize, l as usize, chunks as usize, lr as f32);
    let spec = LmSpec::new(v, e, h, layers)?;
    let mut rng = rand_chacha::ChaCha12Rng::seed_from_u64(7);
    let theta = spec.init(&mut rng, 1)?;
    let data: Vec<(Vec<u32>, Vec<u32>, Vec<bool>)> = (0..chunks)
        .map(|c| {
            let t: Vec<u32> = (0..n * l).map(|_| rng.random_range(0..v as u32)).collect();
            let y: Vec<u32> = (0..n * l).map(|_| rng.random_range(0..v as u32)).collect();
            let s: Vec<bool> = (0..n * l).map(|i| c == 0 && i % l == 0).collect();
            (t, y, s)
        })
        .collect();
    let gpu = Arc::new(Gpu::new(&GpuOptions::default())?);
    let fast = ["lstm".to_string()];
    let run = |update: Option<Update>| -> Result<Vec<Vec<f32>>> {
        let mut ev = DynamicEval::new(gpu.clone(), (&spec, &theta), (n, l), &fast, update)?;
        data.iter()
            .map(|(t, y, s)| {
                ev.chunk(TokenChunk {
                    tokens: t,
                    targets: y,
                    starts: s,
                })
            })
            .collect()
    };
    let stat = run(None)?;
    let dynamic = run(Some(Update::Sgd { lr, decay: 0.0 }))?;
    let ppl = |ls: &[Vec<f32>]| {
        let all: Vec<f64> = ls.iter().flatten().map(|&x| f64::from(x)).collect();
        (all.iter().sum::<f64>() / all.len() as f64).exp()
    };
    let layout = spec.layout()?;
    let entries: Vec<serde_json::Value> = layout
        .entries()
        .iter()
        .filter(|e| e.owns_storage())
        .map(|e| json!({"name": e.name, "offset": e.offset, "shape": e.shape}))
        .collect();
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let bytes: Vec<u8> = theta.iter().flat_map(|x| x.to_le_bytes()).collect();
    std::fs::write(dir.join("theta.f32"), bytes).map_err(|e| Error::io(&dir, e))?;
    let out = json!({
        "adapter": gpu.props().info.name,
        "vocab": v, "embed": e, "hidden": h, "layers": layers,
        "streams": n, "len": l, "chunks": chunks, "lr": lr,
        "fast": fast,
        "layout": entries,
        "tokens": data.iter().map(|d| d.0.clone()).collect::<Vec<_>>(),
        "targets": data.iter().map(|d| d.1.clone()).collect::<Vec<_>>(),
        "static_losses": stat,
        "dynamic_losses": dynamic,
        "static_perplexity": ppl(&stat),
        "dynamic_perplexity": ppl(&dynamic),
    });
    let text = serde_json::to_string(&out)
        .map_err(|e| Error::invalid(format!("lm_agreement.json: {e}")))?;
    let path = dir.join("lm_agreement.json");
    std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
    println!(
        "static perplexity {:.6}, dynamic (SGD lr {lr}) {:.6}; written to {}",
        ppl(&stat),
        ppl(&dynamic),
        dir.display()
    );
    Ok(())
}
