//! SVG line charts of curves (plotters, with the `cli` feature), with optional bands, and the
//! spread of a curve over seeds.

use std::path::Path;

#[cfg(feature = "cli")]
use plotters::prelude::*;

use super::check_curves;
#[cfg(feature = "cli")]
use crate::meta::write_atomically;
use crate::{Error, Result};

/// Colours of successive curves (repeated past ten).
#[cfg(feature = "cli")]
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The runs of consecutive plottable points of a curve, as (step, value).
#[cfg(feature = "cli")]
fn segments(values: &[f64], log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let mut out: Vec<Vec<(f64, f64)>> = Vec::new();
    let mut cur = Vec::new();
    for (i, &v) in values.iter().enumerate() {
        if v.is_finite() && (!log_y || v > 0.0) {
            cur.push((i as f64, v));
        } else if !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// Plot curves against the step as an SVG line chart with a legend, 800 × 500.
///
/// Points that cannot be drawn are **skipped**: non-finite values always, and values ≤ 0 when
/// `log_y` is set. A curve is broken where points are skipped (one `<polyline>` per unbroken
/// run), so a diverged or zero stretch shows as a gap rather than an interpolated line. Errors
/// when no curve is given, a curve is empty, or no curve has a single plottable point.
///
/// Plotting needs the `cli` feature (on by default, it brings plotters): without it the curves
/// are checked as above and the call returns [`Error::MissingFeature`], writing nothing;
/// [`super::write_csv`] and [`super::write_json`] work either way.
pub fn plot_svg<S: AsRef<str>>(
    path: impl AsRef<Path>,
    title: &str,
    y_label: &str,
    curves: &[(S, Vec<f64>)],
    log_y: bool,
) -> Result<()> {
    plot_svg_bands(path, title, y_label, curves, &[], log_y)
}

/// [`plot_svg`] with a shaded band around curve k between `bands[k] = (lower, upper)` (e.g. the
/// smallest and largest value over seeds); curves past `bands.len()` have none. Band points
/// that cannot be drawn are skipped as curve points are; the y range covers the bands.
pub fn plot_svg_bands<S: AsRef<str>>(
    path: impl AsRef<Path>,
    title: &str,
    y_label: &str,
    curves: &[(S, Vec<f64>)],
    bands: &[(Vec<f64>, Vec<f64>)],
    log_y: bool,
) -> Result<()> {
    if bands.len() > curves.len() {
        return Err(Error::invalid(format!(
            "{} bands for {} curves: give at most one band per curve",
            bands.len(),
            curves.len()
        )));
    }
    #[cfg(feature = "cli")]
    return plot_with_plotters(path.as_ref(), (title, y_label), curves, bands, log_y);
    #[cfg(not(feature = "cli"))]
    {
        check_curves(curves)?;
        let _ = (title, y_label, bands, log_y);
        Err(Error::MissingFeature {
            what: format!("plotting {}", path.as_ref().display()),
            feature: "cli",
        })
    }
}

/// [`plot_svg`] drawn by plotters.
#[cfg(feature = "cli")]
fn plot_with_plotters<S: AsRef<str>>(
    path: &Path,
    (title, y_label): (&str, &str),
    curves: &[(S, Vec<f64>)],
    bands: &[(Vec<f64>, Vec<f64>)],
    log_y: bool,
) -> Result<()> {
    check_curves(curves)?;
    let segs: Vec<Vec<Vec<(f64, f64)>>> = curves.iter().map(|(_, v)| segments(v, log_y)).collect();
    let areas: Vec<Vec<Vec<(f64, f64)>>> = bands.iter().map(|b| band_polygons(b, log_y)).collect();
    let (lo, hi) = segs
        .iter()
        .chain(&areas)
        .flatten()
        .flatten()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &(_, y)| {
            (lo.min(y), hi.max(y))
        });
    if lo > hi {
        return Err(Error::invalid(format!(
            "nothing to plot in '{title}': every value is {}",
            if log_y {
                "non-finite or ≤ 0 (a log scale needs positive values)"
            } else {
                "non-finite"
            }
        )));
    }
    let steps = curves.iter().map(|(_, v)| v.len()).max().unwrap_or(1);
    let x_range = 0.0..((steps - 1).max(1) as f64);
    let mut svg = String::new();
    let (labels, data) = ((title, y_label), (curves, &segs[..], &areas[..]));
    let drawn = if log_y {
        let (lo, hi) = if lo == hi {
            (lo / 2.0, hi * 2.0)
        } else {
            (lo, hi)
        };
        draw(&mut svg, labels, data, x_range, (lo..hi).log_scale())
    } else {
        let pad = if hi > lo {
            0.05 * (hi - lo)
        } else {
            lo.abs().max(1.0) * 0.5
        };
        draw(&mut svg, labels, data, x_range, (lo - pad)..(hi + pad))
    };
    drawn.map_err(|message| Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(format!("plotting failed: {message}")),
    })?;
    write_atomically(path, svg.as_bytes())
}

/// A compact tick label: fixed point for moderate values, scientific otherwise.
#[cfg(feature = "cli")]
fn tick(v: f64) -> String {
    if v == 0.0 || (1e-2..1e4).contains(&v.abs()) {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        format!("{v:.0e}")
    }
}

#[cfg(feature = "cli")]
#[cfg(feature = "cli")]
type Drawn<'a, S> = (
    &'a [(S, Vec<f64>)],
    &'a [Vec<Vec<(f64, f64)>>],
    &'a [Vec<Vec<(f64, f64)>>],
);

#[cfg(feature = "cli")]
fn draw<S, Y>(
    svg: &mut String,
    (title, y_label): (&str, &str),
    (curves, segs, areas): Drawn<S>,
    x_range: std::ops::Range<f64>,
    y_range: Y,
) -> std::result::Result<(), String>
where
    S: AsRef<str>,
    Y: plotters::coord::ranged1d::AsRangedCoord<Value = f64>,
    Y::CoordDescType: plotters::coord::ranged1d::ValueFormatter<f64>,
{
    let e = |e: &dyn std::fmt::Display| e.to_string();
    let root = SVGBackend::with_string(svg, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(x_range, y_range)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("step")
        .y_desc(y_label)
        .y_label_formatter(&|v: &f64| tick(*v))
        .x_label_formatter(&|v: &f64| format!("{v}"))
        .draw()
        .map_err(|x| e(&x))?;
    for (k, polys) in areas.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        for poly in polys {
            chart
                .draw_series(std::iter::once(Polygon::new(
                    poly.clone(),
                    color.mix(0.2).filled(),
                )))
                .map_err(|x| e(&x))?;
        }
    }
    for (k, ((name, _), runs)) in curves.iter().zip(segs).enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        let mut first = true;
        for run in runs {
            let series = chart
                .draw_series(LineSeries::new(run.iter().copied(), color.stroke_width(2)))
                .map_err(|x| e(&x))?;
            if first {
                series.label(name.as_ref()).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 3), (x + 16, y + 3)], color.filled())
                });
                first = false;
            }
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

/// The closed outlines of a band `(lower, upper)`: one polygon per run of steps where both
/// bounds can be drawn (upper bound forward, lower bound back).
#[cfg(feature = "cli")]
fn band_polygons((lower, upper): &(Vec<f64>, Vec<f64>), log_y: bool) -> Vec<Vec<(f64, f64)>> {
    let ok = |v: f64| v.is_finite() && (!log_y || v > 0.0);
    let mut out = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    let n = lower.len().min(upper.len());
    for i in 0..=n {
        if i < n && ok(lower[i]) && ok(upper[i]) {
            run.push(i);
            continue;
        }
        if !run.is_empty() {
            let mut poly: Vec<(f64, f64)> = run.iter().map(|&j| (j as f64, upper[j])).collect();
            poly.extend(run.iter().rev().map(|&j| (j as f64, lower[j])));
            out.push(poly);
            run.clear();
        }
    }
    out
}

/// Mean, standard deviation (population, over the seeds given), smallest and largest value at
/// each step of several curves of one quantity (one per seed).
#[derive(Clone, Debug, PartialEq)]
pub struct Spread {
    /// Mean over the curves.
    pub mean: Vec<f64>,
    /// Standard deviation over the curves.
    pub std: Vec<f64>,
    /// Smallest value.
    pub min: Vec<f64>,
    /// Largest value.
    pub max: Vec<f64>,
}

/// The [`Spread`] of `curves` over their common length (each step over every curve; NaN where
/// a curve is not finite, so a diverged seed shows).
pub fn spread(curves: &[Vec<f64>]) -> Result<Spread> {
    let len = curves.iter().map(Vec::len).min().unwrap_or(0);
    if curves.is_empty() || len == 0 {
        return Err(Error::invalid(
            "a spread needs at least one non-empty curve",
        ));
    }
    let k = curves.len() as f64;
    let mut s = Spread {
        mean: Vec::with_capacity(len),
        std: Vec::with_capacity(len),
        min: Vec::with_capacity(len),
        max: Vec::with_capacity(len),
    };
    for t in 0..len {
        let v: Vec<f64> = curves.iter().map(|c| c[t]).collect();
        let mean = v.iter().sum::<f64>() / k;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / k;
        s.mean.push(mean);
        s.std.push(var.sqrt());
        let finite = v.iter().all(|x| x.is_finite());
        let (lo, hi) = v
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        s.min.push(if finite { lo } else { f64::NAN });
        s.max.push(if finite { hi } else { f64::NAN });
    }
    Ok(s)
}
