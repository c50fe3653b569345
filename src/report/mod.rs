//! Loss curves and metrics on disk: CSV, JSON, SVG plots and a JSON-lines metrics log.
//!
//! A *curve* is a name and one value per step: `(name, values)`, value `i` at step `i`. Curves
//! of one call may have different lengths; shorter ones end early.
//!
//! Whole-file writers ([`write_csv`], [`write_json`], [`plot_svg`]) write to `path.tmp…` in the
//! same directory and rename it over `path`, so a crash never leaves a half-written file under
//! the final name. [`MetricsWriter`] appends one JSON object per line, each line in one write.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::meta::write_atomically;
use crate::{Error, Result};

mod plot;
pub use plot::{plot_svg, plot_svg_bands, spread, Spread};

/// One curve of a JSON file written by [`write_json`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonCurve {
    /// Name.
    pub name: String,
    /// Value at each step; non-finite values are written as `null` and read back as `None`.
    pub values: Vec<Option<f64>>,
}

/// The document written by [`write_json`]: `{"curves": [{"name": …, "values": […]}, …]}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JsonCurves {
    /// The curves, in the order given.
    pub curves: Vec<JsonCurve>,
}

pub(crate) fn check_curves<S: AsRef<str>>(curves: &[(S, Vec<f64>)]) -> Result<()> {
    if curves.is_empty() {
        return Err(Error::invalid(
            "no curves given: pass at least one (name, values)",
        ));
    }
    if let Some((name, _)) = curves.iter().find(|(_, v)| v.is_empty()) {
        return Err(Error::invalid(format!(
            "curve '{}' has no values",
            name.as_ref()
        )));
    }
    Ok(())
}

/// Quote a CSV field when it holds a comma, a quote or a line break (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Write curves as CSV: a header `step,<name>,…`, then one row per step with each curve's value
/// (shortest representation that reads back to the same `f64`; `NaN`, `inf` and `-inf` for
/// non-finite values; an empty cell past a curve's end). Errors when no curve is given or a
/// curve is empty.
pub fn write_csv<S: AsRef<str>>(path: impl AsRef<Path>, curves: &[(S, Vec<f64>)]) -> Result<()> {
    check_curves(curves)?;
    let rows = curves.iter().map(|(_, v)| v.len()).max().unwrap_or(0);
    let mut out = String::from("step");
    for (name, _) in curves {
        out.push(',');
        out.push_str(&csv_field(name.as_ref()));
    }
    out.push('\n');
    for i in 0..rows {
        out.push_str(&i.to_string());
        for (_, v) in curves {
            out.push(',');
            if let Some(x) = v.get(i) {
                out.push_str(&x.to_string());
            }
        }
        out.push('\n');
    }
    write_atomically(path.as_ref(), out.as_bytes())
}

/// Write curves as JSON ([`JsonCurves`]; non-finite values become `null`). Errors when no curve
/// is given or a curve is empty.
pub fn write_json<S: AsRef<str>>(path: impl AsRef<Path>, curves: &[(S, Vec<f64>)]) -> Result<()> {
    check_curves(curves)?;
    let doc = JsonCurves {
        curves: curves
            .iter()
            .map(|(n, v)| JsonCurve {
                name: n.as_ref().to_string(),
                values: v.iter().map(|x| x.is_finite().then_some(*x)).collect(),
            })
            .collect(),
    };
    let text = serde_json::to_string_pretty(&doc)
        .map_err(|e| Error::invalid(format!("cannot encode curves as JSON: {e}")))?;
    write_atomically(path.as_ref(), text.as_bytes())
}

/// Read a file written by [`write_json`].
pub fn read_json(path: impl AsRef<Path>) -> Result<JsonCurves> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|e| Error::Data {
        path: path.to_path_buf(),
        problem: format!("not a curves JSON file: {e}"),
        hint: "write it with metalearn::report::write_json".into(),
    })
}

/// Appends metrics as JSON lines: one JSON object per line, each line written with a single
/// write and flushed, in append mode, so a crash loses at most the line being written and other
/// processes may read the file while it grows.
#[derive(Debug)]
pub struct MetricsWriter {
    file: File,
    path: PathBuf,
}

impl MetricsWriter {
    /// Open `path` for appending (created if absent). If the file ends with an incomplete line
    /// (a crash mid-write), a line break is added first so the next record starts its own line.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let io = |source| Error::Io {
            path: path.clone(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            file.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            file.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                file.write_all(b"\n").map_err(io)?;
                file.flush().map_err(io)?;
            }
        }
        Ok(Self { file, path })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Append `record` as one line. It must serialise to a JSON object (a struct or a map, e.g.
    /// `serde_json::json!({"step": 3, "loss": 0.5})`); non-finite floats are written as `null`.
    pub fn write<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<()> {
        let value = serde_json::to_value(record)
            .map_err(|e| Error::invalid(format!("cannot encode metrics record: {e}")))?;
        if !value.is_object() {
            return Err(Error::invalid(format!(
                "a metrics record must be a JSON object, got {value}"
            )));
        }
        let mut line = value.to_string();
        line.push('\n');
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        self.file.write_all(line.as_bytes()).map_err(io)?;
        self.file.flush().map_err(io)
    }
}

/// `n` bytes in KiB, MiB or GiB.
pub fn bytes_text(n: u64) -> String {
    let f = n as f64;
    if f >= (1u64 << 30) as f64 {
        format!("{:.2} GiB", f / (1u64 << 30) as f64)
    } else if f >= (1u64 << 20) as f64 {
        format!("{:.2} MiB", f / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", f / 1024.0)
    }
}

/// What `metalearn train --dry-run` prints for the adapter `adapter`.
pub fn dry_run_text(d: &crate::run::DryRun, adapter: &str) -> String {
    let m = &d.memory;
    let available = match d.available {
        Some(a) => format!(
            "{} available (host memory of the software adapter)",
            bytes_text(a)
        ),
        None => "not reported by this adapter; every buffer is within its limits".into(),
    };
    format!(
        "dry run on {adapter}: the run fits; nothing was written\n\
         \x20 checkpoints  {:>12}  ({} slots of {}{})\n\
         \x20 working      {:>12}  (gradients, adjoints, losses, initialisations, optimizer workspace)\n\
         \x20 task         {:>12}  (data, batches, activations)\n\
         \x20 total        {:>12}\n\
         \x20 adapter      {available}\n",
        bytes_text(m.checkpoints),
        m.slots,
        bytes_text(m.slot_bytes),
        if m.chunks > 1 {
            format!(" in each of {} chunks of the instances", m.chunks)
        } else {
            String::new()
        },
        bytes_text(m.working),
        bytes_text(m.task),
        bytes_text(m.total()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(test: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("metalearn-report-{test}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    fn sample() -> Vec<(String, Vec<f64>)> {
        vec![
            ("sgd".to_string(), vec![1.0, 0.5, 0.25, 0.125]),
            ("lstm, learned".to_string(), vec![1.0, 0.1 + 0.2, 1e-7]),
        ]
    }

    /// Curve lines (width 2; axes and ticks are width-1 polylines).
    #[cfg(feature = "cli")]
    fn data_lines(svg: &str) -> usize {
        svg.lines()
            .filter(|l| l.contains("<polyline") && l.contains("stroke-width=\"2\""))
            .count()
    }

    fn no_tmp_left(d: &Path) {
        for e in std::fs::read_dir(d).expect("read dir").flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            assert!(!name.contains(".tmp"), "temporary file {name} left behind");
        }
    }

    #[test]
    fn csv_round_trips_every_value() {
        let d = dir("csv");
        let p = d.join("curves.csv");
        let curves = sample();
        write_csv(&p, &curves).expect("write");
        let text = std::fs::read_to_string(&p).expect("read");
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("step,sgd,\"lstm, learned\""));
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 4);
        for (i, r) in rows.iter().enumerate() {
            assert_eq!(r.len(), 3);
            assert_eq!(r[0], i.to_string());
            for (k, (_, v)) in curves.iter().enumerate() {
                match v.get(i) {
                    Some(x) => assert_eq!(r[k + 1].parse::<f64>().ok(), Some(*x)),
                    None => assert_eq!(r[k + 1], ""),
                }
            }
        }
        no_tmp_left(&d);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn json_round_trips_with_null_for_non_finite() {
        let d = dir("json");
        let p = d.join("curves.json");
        let mut curves = sample();
        curves[0].1[2] = f64::NAN;
        write_json(&p, &curves).expect("write");
        let back = read_json(&p).expect("read");
        assert_eq!(back.curves.len(), 2);
        for (c, (name, v)) in back.curves.iter().zip(&curves) {
            assert_eq!(&c.name, name);
            let want: Vec<Option<f64>> = v.iter().map(|x| x.is_finite().then_some(*x)).collect();
            assert_eq!(c.values, want);
        }
        no_tmp_left(&d);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn empty_input_is_an_error_and_writes_nothing() {
        let d = dir("empty");
        let cases: [Vec<(String, Vec<f64>)>; 2] = [
            Vec::new(),
            vec![("a".into(), vec![1.0]), ("b".into(), Vec::new())],
        ];
        for (i, c) in cases.iter().enumerate() {
            let p = d.join(format!("x{i}"));
            assert!(write_csv(&p, c).is_err());
            assert!(write_json(&p, c).is_err());
            assert!(plot_svg(&p, "t", "loss", c, false).is_err());
            assert!(!p.exists());
        }
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn spread_is_the_mean_deviation_and_range_over_curves() {
        let s = spread(&[vec![1.0, 2.0, 5.0], vec![3.0, 6.0]]).expect("spread");
        assert_eq!(s.mean, vec![2.0, 4.0]);
        assert_eq!(s.std, vec![1.0, 2.0]);
        assert_eq!(
            (s.min.clone(), s.max.clone()),
            (vec![1.0, 2.0], vec![3.0, 6.0])
        );
        let d = spread(&[vec![1.0], vec![f64::NAN]]).expect("spread");
        assert!(d.mean[0].is_nan() && d.min[0].is_nan() && d.max[0].is_nan());
        assert!(spread(&[]).is_err() && spread(&[vec![]]).is_err());
    }

    #[cfg(feature = "cli")]
    #[test]
    fn bands_are_one_polygon_per_drawable_run() {
        let d = dir("bands");
        let p = d.join("bands.svg");
        let curves = vec![("a".to_string(), vec![1.0, 2.0, 3.0, 4.0])];
        let polygons = |svg: &str| svg.matches("<polygon").count();
        let whole = (vec![0.5, 1.5, 2.5, 3.5], vec![1.5, 2.5, 3.5, 4.5]);
        plot_svg_bands(&p, "t", "loss", &curves, &[whole], false).expect("plot");
        assert_eq!(polygons(&std::fs::read_to_string(&p).expect("read")), 1);
        let broken = (vec![0.5, f64::NAN, 2.5, 3.5], vec![1.5, 2.5, 3.5, 4.5]);
        plot_svg_bands(
            &p,
            "t",
            "loss",
            &curves,
            std::slice::from_ref(&broken),
            false,
        )
        .expect("plot");
        assert_eq!(polygons(&std::fs::read_to_string(&p).expect("read")), 2);
        let two = [broken.clone(), broken];
        assert!(plot_svg_bands(&p, "t", "loss", &curves, &two, false).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(feature = "cli")]
    #[test]
    fn svg_has_the_title_and_one_line_per_curve() {
        let d = dir("svg");
        let p = d.join("plot.svg");
        let curves = sample();
        plot_svg(&p, "Loss of the learned optimizer", "loss", &curves, false).expect("plot");
        let svg = std::fs::read_to_string(&p).expect("read");
        assert!(svg.starts_with("<svg") || svg.contains("<svg"));
        assert!(svg.contains("Loss of the learned optimizer"));
        assert!(svg.contains("lstm, learned"));
        assert_eq!(data_lines(&svg), curves.len());
        assert!(svg.contains("#1F77B4") && svg.contains("#FF7F0E"));
        // Log scale: the same curves, one line each.
        plot_svg(&p, "log", "loss", &curves, true).expect("plot log");
        let svg = std::fs::read_to_string(&p).expect("read");
        assert_eq!(data_lines(&svg), curves.len());
        no_tmp_left(&d);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(feature = "cli")]
    #[test]
    fn log_scale_skips_non_positive_points_and_refuses_all_of_them() {
        let d = dir("log");
        let p = d.join("plot.svg");
        // The zero splits the first curve in two runs; the negative value ends the second.
        let curves = vec![
            ("a", vec![1.0, 0.5, 0.0, 0.2, 0.1]),
            ("b", vec![2.0, 1.0, -1.0]),
        ];
        plot_svg(&p, "gaps", "loss", &curves, true).expect("plot");
        let svg = std::fs::read_to_string(&p).expect("read");
        assert_eq!(data_lines(&svg), 3);
        // Linear scale draws them unbroken.
        plot_svg(&p, "gaps", "loss", &curves, false).expect("plot");
        let svg = std::fs::read_to_string(&p).expect("read");
        assert_eq!(data_lines(&svg), 2);
        // Nothing positive: an error naming the cause, and the old file is untouched.
        let bad = vec![("a", vec![0.0, -1.0]), ("b", vec![f64::NAN])];
        let e = plot_svg(&p, "bad", "loss", &bad, true)
            .err()
            .map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("log scale needs positive values")));
        assert!(std::fs::read_to_string(&p).is_ok_and(|s| s.contains("gaps")));
        let _ = std::fs::remove_dir_all(&d);
    }

    #[cfg(not(feature = "cli"))]
    #[test]
    fn plots_need_the_cli_feature_and_write_nothing() {
        let d = dir("no-cli");
        let p = d.join("plot.svg");
        let e = plot_svg(&p, "t", "loss", &sample(), false)
            .expect_err("no plotting without cli")
            .to_string();
        assert!(e.contains("`cli` feature"), "{e}");
        assert!(!p.exists());
        std::fs::remove_dir_all(&d).expect("clean up");
    }

    #[test]
    fn metrics_lines_append_and_survive_a_torn_line() {
        let d = dir("metrics");
        let p = d.join("metrics.jsonl");
        {
            let mut w = MetricsWriter::open(&p).expect("open");
            w.write(&serde_json::json!({"step": 1, "loss": 0.5}))
                .expect("write");
            w.write(&serde_json::json!({"step": 2, "loss": f64::NAN}))
                .expect("write");
            assert!(w.write(&3.0).is_err());
        }
        // A torn last line, as a crash mid-write would leave.
        std::fs::OpenOptions::new()
            .append(true)
            .open(&p)
            .and_then(|mut f| f.write_all(b"{\"step\": 3, \"lo"))
            .expect("tear");
        {
            let mut w = MetricsWriter::open(&p).expect("reopen");
            w.write(&serde_json::json!({"step": 4})).expect("write");
        }
        let text = std::fs::read_to_string(&p).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        let parsed: Vec<Option<serde_json::Value>> =
            lines.iter().map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(parsed[0], Some(serde_json::json!({"step": 1, "loss": 0.5})));
        assert_eq!(
            parsed[1],
            Some(serde_json::json!({"step": 2, "loss": null}))
        );
        assert!(parsed[2].is_none());
        assert_eq!(parsed[3], Some(serde_json::json!({"step": 4})));
        assert!(text.ends_with('\n'));
        let _ = std::fs::remove_dir_all(&d);
    }
}
