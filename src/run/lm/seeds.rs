//! Language-model evaluations of several seeds side by side ([`LmSeeds`]): what `metalearn eval
//! DIR --compare DIR…` prints and writes for directories holding `lm_eval.json` — each
//! method's test perplexity as mean ± standard deviation over the runs, and the per-position
//! gain of every method over static evaluation (mean loss of static minus the method's, by
//! position bin) with its spread, as CSV, JSON and an SVG plot with min–max bands.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::POSITION_BIN;
use crate::meta::write_atomically;
use crate::report::{plot_svg_bands, spread, Spread};
use crate::{Error, Result};

/// The file an LM evaluation directory holds.
pub const LM_EVAL_JSON: &str = "lm_eval.json";

/// One method over the runs.
#[derive(Clone, Debug)]
pub struct MethodSeeds {
    /// The method's name.
    pub method: String,
    /// Test perplexity of each run.
    pub perplexity: Vec<f64>,
    /// The (lr, decay) each run used (dynamic methods).
    pub chosen: Vec<(Option<f64>, Option<f64>)>,
    /// Mean loss by position bin of each run.
    pub curves: Vec<Vec<f64>>,
}

/// LM evaluations of several runs.
#[derive(Clone, Debug)]
pub struct LmSeeds {
    /// The directories read.
    pub dirs: Vec<PathBuf>,
    /// Every method present in all runs, in the first run's order.
    pub methods: Vec<MethodSeeds>,
    /// Position bins common to every run and method.
    pub bins: usize,
}

fn mean_std(v: &[f64]) -> (f64, f64) {
    let k = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / k;
    (
        m,
        (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / k).sqrt(),
    )
}

impl LmSeeds {
    /// Read `lm_eval.json` of every directory.
    pub fn read(dirs: &[PathBuf]) -> Result<Self> {
        let mut runs = Vec::new();
        for d in dirs {
            let path = d.join(LM_EVAL_JSON);
            let bad = |problem: String| Error::Data {
                path: path.clone(),
                problem,
                hint: "name directories written by metalearn eval of a language-model run".into(),
            };
            let text =
                std::fs::read_to_string(&path).map_err(|e| bad(format!("cannot be read ({e})")))?;
            let v: Value =
                serde_json::from_str(&text).map_err(|e| bad(format!("is not JSON ({e})")))?;
            if v["format"] != "metalearn-lm-eval-2" {
                return Err(bad(format!(
                    "format {}, expected metalearn-lm-eval-2",
                    v["format"]
                )));
            }
            let methods = v["methods"]
                .as_array()
                .cloned()
                .ok_or_else(|| bad("no methods".into()))?;
            runs.push(methods);
        }
        let first = runs
            .first()
            .ok_or_else(|| Error::invalid("no evaluation directory given"))?;
        let mut methods = Vec::new();
        for m in first {
            let name = m["method"].as_str().unwrap_or_default().to_string();
            let mut ms = MethodSeeds {
                method: name.clone(),
                perplexity: Vec::new(),
                chosen: Vec::new(),
                curves: Vec::new(),
            };
            for run in &runs {
                let Some(r) = run.iter().find(|x| x["method"] == name.as_str()) else {
                    break;
                };
                ms.perplexity
                    .push(r["perplexity"].as_f64().unwrap_or(f64::NAN));
                ms.chosen.push((r["lr"].as_f64(), r["decay"].as_f64()));
                let curve = r["curve"]
                    .as_array()
                    .map(|c| {
                        c.iter()
                            .map(|b| b["mean_loss"].as_f64().unwrap_or(f64::NAN))
                            .collect()
                    })
                    .unwrap_or_default();
                ms.curves.push(curve);
            }
            if ms.perplexity.len() == runs.len() {
                methods.push(ms);
            }
        }
        let bins = methods
            .iter()
            .flat_map(|m| m.curves.iter().map(Vec::len))
            .min()
            .unwrap_or(0);
        if methods.iter().all(|m| m.method != "static") {
            return Err(Error::invalid(
                "the evaluations hold no 'static' method to compare with",
            ));
        }
        Ok(Self {
            dirs: dirs.to_vec(),
            methods,
            bins,
        })
    }

    fn static_curves(&self) -> &[Vec<f64>] {
        self.methods
            .iter()
            .find(|m| m.method == "static")
            .map_or(&[], |m| &m.curves[..])
    }

    /// The gain over static evaluation by bin of method `m`, its spread over the runs.
    pub fn gain(&self, m: &MethodSeeds) -> Result<Spread> {
        let st = self.static_curves();
        let diffs: Vec<Vec<f64>> = st
            .iter()
            .zip(&m.curves)
            .map(|(s, c)| (0..self.bins).map(|b| s[b] - c[b]).collect())
            .collect();
        spread(&diffs)
    }

    /// A Markdown table: method, test perplexity mean ± std, min–max, the (lr, decay) of each run.
    pub fn table(&self) -> String {
        let mut s = format!(
            "{} runs\n\n| method | test perplexity (mean ± std) | min – max | lr / decay per run |\n|---|---:|---:|---|\n",
            self.dirs.len()
        );
        for m in &self.methods {
            let (mean, std) = mean_std(&m.perplexity);
            let lo = m.perplexity.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = m
                .perplexity
                .iter()
                .cloned()
                .fold(f64::NEG_INFINITY, f64::max);
            let chosen: Vec<String> = m
                .chosen
                .iter()
                .filter_map(|c| match c {
                    (lr, Some(d)) => Some(format!(
                        "{} / {d}",
                        lr.map_or("-".into(), |v| format!("{v:.0e}"))
                    )),
                    _ => None,
                })
                .collect();
            s.push_str(&format!(
                "| {} | {mean:.2} ± {std:.2} | {lo:.2} – {hi:.2} | {} |\n",
                m.method,
                chosen.join(", ")
            ));
        }
        s
    }

    /// Write `lm_seeds.md` (the table), `lm_seeds.json`, `lm_gain.csv` (method, bin from, to,
    /// mean, std, min, max of the gain) and `lm_gain.svg` into `dir`.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write_atomically(&dir.join("lm_seeds.md"), self.table().as_bytes())?;
        let mut csv = String::from("method,from,to,mean,std,min,max\n");
        let mut curves = Vec::new();
        let mut bands = Vec::new();
        let mut js = Vec::new();
        for m in self.methods.iter().filter(|m| m.method != "static") {
            let g = self.gain(m)?;
            for b in 0..self.bins {
                let from = b as u32 * POSITION_BIN;
                csv.push_str(&format!(
                    "{},{from},{},{},{},{},{}\n",
                    m.method,
                    from + POSITION_BIN - 1,
                    g.mean[b],
                    g.std[b],
                    g.min[b],
                    g.max[b]
                ));
            }
            let (mean, std) = mean_std(&m.perplexity);
            js.push(json!({
                "method": m.method,
                "perplexity": m.perplexity,
                "perplexity_mean": mean,
                "perplexity_std": std,
                "gain_mean": g.mean,
                "gain_std": g.std,
            }));
            curves.push((m.method.clone(), g.mean.clone()));
            bands.push((g.min.clone(), g.max.clone()));
        }
        write_atomically(&dir.join("lm_gain.csv"), csv.as_bytes())?;
        let st = self.methods.iter().find(|m| m.method == "static");
        let json = json!({
            "format": "metalearn-lm-seeds-1",
            "runs": self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>(),
            "position_bin": POSITION_BIN,
            "bins": self.bins,
            "static_perplexity": st.map(|m| m.perplexity.clone()),
            "methods": js,
        });
        let text = serde_json::to_string_pretty(&json)
            .map_err(|e| Error::invalid(format!("lm_seeds.json cannot be written: {e}")))?;
        write_atomically(&dir.join("lm_seeds.json"), text.as_bytes())?;
        if !curves.is_empty() && self.bins > 0 {
            let plotted = plot_svg_bands(
                dir.join("lm_gain.svg"),
                &format!(
                    "loss of static minus method by position (bins of {POSITION_BIN} tokens), mean and min–max over {} runs",
                    self.dirs.len()
                ),
                "nats per token",
                &curves,
                &bands,
                false,
            );
            match plotted {
                Err(Error::MissingFeature { .. }) | Ok(()) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
