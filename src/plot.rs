//! `vgrpo plot RUN_DIR`: every numeric column of `metrics.jsonl` drawn
//! against the step, one small panel per metric, in one PNG
//! (`RUN_DIR/metrics.png`).
//!
//! The keys are whatever the trainer wrote (GRPO: `reward/mean`,
//! `reward/acc`, `kl`, `pg_loss`, `response_length/mean`, …; SFT: `loss`,
//! `ce`, `mse`, …), so they are read as JSON objects rather than one typed
//! row: the plotter serves every stage. Nested objects are flattened with
//! `/`. The headline metrics come first, in [`PREFERRED`] order, then the
//! rest alphabetically. Non-finite values and nulls leave a gap.

use crate::raster::{Canvas, GLYPH_H, PngWriteError, text_width};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Panels drawn first, when present.
pub const PREFERRED: [&str; 14] = [
    "reward/mean",
    "reward/acc",
    "reward/exact",
    "reward/acc_by_dimension/visual",
    "reward/acc_by_dimension/dynamic",
    "reward/acc_by_dimension/alignment",
    "kl",
    "pg_loss",
    "loss",
    "ce",
    "mse",
    "response_length/mean",
    "grad_norm",
    "lr",
];

const PANEL_W: u32 = 440;
const PANEL_H: u32 = 250;
const COLUMNS: usize = 3;
const SCALE: u32 = 2;
/// Plot area inside a panel.
const LEFT: u32 = 84;
const RIGHT: u32 = 14;
const TOP: u32 = 30;
const BOTTOM: u32 = 30;
const WHITE: [u8; 3] = [255, 255, 255];
const INK: [u8; 3] = [20, 20, 20];
const GRID: [u8; 3] = [225, 225, 225];
const LINE: [u8; 3] = [31, 119, 180];
const POINT: [u8; 3] = [214, 39, 40];

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a JSON object")]
    Row {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}: no numeric metric to plot")]
    Empty { path: PathBuf },
    #[error("writing {path}")]
    Write {
        path: PathBuf,
        source: PngWriteError,
    },
}

/// One metric over the run: (step, value) points, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub key: String,
    pub points: Vec<(f64, f64)>,
}

/// Reads every numeric metric of a `metrics.jsonl`. The x value is the
/// row's `step` when it has one, else its 1-based row number.
pub fn read_series(path: &Path) -> Result<Vec<Series>, PlotError> {
    let text = std::fs::read_to_string(path).map_err(|source| PlotError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut by_key: BTreeMap<String, Vec<(f64, f64)>> = BTreeMap::new();
    let mut row_number = 0.0;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        row_number += 1.0;
        let row: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|source| PlotError::Row {
                path: path.to_path_buf(),
                line: i + 1,
                source,
            })?;
        let x = row
            .get("step")
            .and_then(serde_json::Value::as_f64)
            .unwrap_or(row_number);
        let mut flat = Vec::new();
        flatten("", &row, &mut flat);
        for (key, value) in flat {
            if key != "step" {
                by_key.entry(key).or_default().push((x, value));
            }
        }
    }
    let mut series: Vec<Series> = by_key
        .into_iter()
        .map(|(key, points)| Series { key, points })
        .collect();
    series.sort_by_key(|s| {
        (
            PREFERRED
                .iter()
                .position(|p| *p == s.key)
                .unwrap_or(PREFERRED.len()),
            s.key.clone(),
        )
    });
    Ok(series)
}

/// Numeric leaves of a JSON object, keys joined with `/` (booleans and
/// strings are not curves; nulls are gaps, recorded as NaN).
fn flatten(
    prefix: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    out: &mut Vec<(String, f64)>,
) {
    for (k, v) in map {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}/{k}")
        };
        match v {
            serde_json::Value::Number(n) => out.push((key, n.as_f64().unwrap_or(f64::NAN))),
            serde_json::Value::Null => out.push((key, f64::NAN)),
            serde_json::Value::Object(inner) => flatten(&key, inner, out),
            _ => {}
        }
    }
}

/// Draws the panels of `series` into one image.
pub fn render(series: &[Series]) -> Canvas {
    let cols = series.len().clamp(1, COLUMNS);
    let rows = series.len().div_ceil(COLUMNS).max(1);
    let mut canvas = Canvas::new(cols as u32 * PANEL_W, rows as u32 * PANEL_H, WHITE);
    for (i, s) in series.iter().enumerate() {
        let x0 = (i % COLUMNS) as u32 * PANEL_W;
        let y0 = (i / COLUMNS) as u32 * PANEL_H;
        panel(&mut canvas, s, x0, y0);
    }
    canvas
}

/// The value range drawn for `values`: padded so a flat line sits mid-panel.
fn y_range(values: impl Iterator<Item = f64>) -> Option<(f64, f64)> {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if !lo.is_finite() {
        return None;
    }
    let pad = if hi > lo {
        0.05 * (hi - lo)
    } else if lo == 0.0 {
        1.0
    } else {
        0.1 * lo.abs()
    };
    // A non-negative metric (loss, norm, rate) keeps a floor of 0 rather
    // than a negative axis label.
    let floor = if lo >= 0.0 {
        (lo - pad).max(0.0)
    } else {
        lo - pad
    };
    Some((floor, hi + pad))
}

fn panel(canvas: &mut Canvas, s: &Series, x0: u32, y0: u32) {
    let (px0, py0) = (x0 + LEFT, y0 + TOP);
    let (pw, ph) = (PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM);
    let last = s.points.iter().rev().find(|p| p.1.is_finite());
    // Capitals throughout: the font's only lower-case shape is `s`.
    let title = match last {
        Some(&(_, v)) => format!("{}  last {}", s.key, tick(v)),
        None => s.key.clone(),
    }
    .to_uppercase();
    canvas.text(&title, x0 + 8, y0 + 8, SCALE, INK);
    let Some((lo, hi)) = y_range(s.points.iter().map(|p| p.1)) else {
        canvas.text("no finite values", px0 + 8, py0 + ph / 2, SCALE, INK);
        return;
    };
    let (xlo, xhi) = s
        .points
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let xspan = if xhi > xlo { xhi - xlo } else { 1.0 };
    let to_px = |x: f64, y: f64| -> (i64, i64) {
        let fx = (x - xlo) / xspan;
        let fy = (y - lo) / (hi - lo);
        (
            px0 as i64 + (fx * f64::from(pw - 1)).round() as i64,
            (py0 + ph - 1) as i64 - (fy * f64::from(ph - 1)).round() as i64,
        )
    };
    // Horizontal grid lines with their values on the left.
    for k in 0..=4 {
        let v = lo + (hi - lo) * f64::from(k) / 4.0;
        let (_, y) = to_px(xlo, v);
        canvas.fill(px0, y as u32, pw, 1, GRID);
        let label = tick(v);
        let w = text_width(&label, SCALE);
        let ly = (y as u32).saturating_sub(GLYPH_H * SCALE / 2);
        canvas.text(&label, px0.saturating_sub(w + 6), ly, SCALE, INK);
    }
    // Axes.
    canvas.fill(px0, py0, 1, ph, INK);
    canvas.fill(px0, py0 + ph - 1, pw, 1, INK);
    // x labels: first and last step.
    let ly = py0 + ph + 6;
    canvas.text(&tick(xlo), px0, ly, SCALE, INK);
    let right = tick(xhi);
    canvas.text(
        &right,
        (px0 + pw).saturating_sub(text_width(&right, SCALE)),
        ly,
        SCALE,
        INK,
    );
    // The curve: segments between consecutive finite points; a lone point
    // (or a one-row file) is drawn as a dot.
    let mut previous: Option<(i64, i64)> = None;
    for &(x, y) in &s.points {
        if !y.is_finite() {
            previous = None;
            continue;
        }
        let p = to_px(x, y);
        match previous {
            Some(q) => canvas.line(q, p, 2, LINE),
            None => canvas.fill(p.0.max(0) as u32, p.1.max(0) as u32, 2, 2, LINE),
        }
        previous = Some(p);
    }
    if s.points.len() == 1
        && let Some(&(x, y)) = s.points.first().filter(|p| p.1.is_finite())
    {
        let (x, y) = to_px(x, y);
        canvas.fill((x - 2).max(0) as u32, (y - 2).max(0) as u32, 5, 5, POINT);
    }
}

/// A compact axis label: integers as such, otherwise 3 significant digits
/// (scientific below 1e-3 and from 1e5).
pub fn tick(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let a = v.abs();
    if !(1e-3..1e5).contains(&a) {
        return format!("{v:.2e}");
    }
    if v.fract() == 0.0 {
        return format!("{v:.0}");
    }
    let decimals = (2 - a.log10().floor() as i32).clamp(0, 5) as usize;
    format!("{v:.decimals$}")
}

/// Plots `RUN_DIR/metrics.jsonl` into `RUN_DIR/metrics.png`.
pub fn plot_run(run_dir: &Path) -> Result<PathBuf, PlotError> {
    let metrics = run_dir.join("metrics.jsonl");
    let series = read_series(&metrics)?;
    if series.is_empty() {
        return Err(PlotError::Empty { path: metrics });
    }
    let out = run_dir.join("metrics.png");
    render(&series)
        .write_png(&out)
        .map_err(|source| PlotError::Write {
            path: out.clone(),
            source,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_read_flattened_and_ordered() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        std::fs::write(
            &path,
            "{\"step\":1,\"zeta\":1.0,\"loss\":2.0,\"reward\":{\"mean\":0.5},\"ok\":true,\"kl\":null}\n\
             \n\
             {\"step\":2,\"zeta\":0.5,\"loss\":1.5,\"reward\":{\"mean\":0.75},\"ok\":false,\"kl\":0.1}\n",
        )
        .unwrap();
        let series = read_series(&path).unwrap();
        let keys: Vec<&str> = series.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["reward/mean", "kl", "loss", "zeta"]);
        assert_eq!(series[0].points, [(1.0, 0.5), (2.0, 0.75)]);
        assert!(series[1].points[0].1.is_nan());
    }

    #[test]
    fn the_curve_runs_from_the_first_to_the_last_point() {
        let s = Series {
            key: "loss".into(),
            points: vec![(1.0, 4.0), (2.0, 3.0), (3.0, 1.0)],
        };
        let canvas = render(std::slice::from_ref(&s));
        assert_eq!((canvas.width, canvas.height), (PANEL_W, PANEL_H));
        let at = |x: u32, y: u32| {
            let i = ((y * canvas.width + x) * 3) as usize;
            [canvas.rgb[i], canvas.rgb[i + 1], canvas.rgb[i + 2]]
        };
        let (lo, hi) = y_range([4.0, 3.0, 1.0].into_iter()).unwrap();
        let (pw, ph) = (PANEL_W - LEFT - RIGHT, PANEL_H - TOP - BOTTOM);
        let y_of =
            |v: f64| TOP + ph - 1 - ((v - lo) / (hi - lo) * f64::from(ph - 1)).round() as u32;
        // First point at the left edge, last at the right edge.
        assert_eq!(at(LEFT, y_of(4.0)), LINE);
        assert_eq!(at(LEFT + pw - 1, y_of(1.0)), LINE);
        // Far from the curve: background.
        assert_eq!(at(LEFT + pw - 1, y_of(4.0)), WHITE);
    }

    #[test]
    fn ticks_are_compact() {
        assert_eq!(tick(0.0), "0");
        assert_eq!(tick(12.0), "12");
        assert_eq!(tick(0.51234), "0.512");
        assert_eq!(tick(6.931), "6.93");
        assert_eq!(tick(0.0001), "1.00e-4");
        assert_eq!(tick(-2.5), "-2.50");
    }
}
