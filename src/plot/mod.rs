//! `vgrpo plot RUN_DIR [--smoothing W]`: the numeric columns of
//! `metrics.jsonl` as one PNG, `RUN_DIR/metrics.png`.
//!
//! Every series that varies gets a panel (x = step, y = the metric): its
//! raw points faint, TensorBoard's debiased exponential moving average
//! drawn over them ([`Smoothing`]). A series whose finite values are all
//! equal (a fixed learning rate, a counter that stayed 0) gets no panel: it
//! is listed as `name = value` in a block under the panels, and the CLI
//! prints the same list. `series` is the pure part (reading, ordering,
//! classifying, smoothing), `draw` the image.

pub mod draw;
pub mod series;

pub use series::{
    DEFAULT_SMOOTHING, PREFERRED, ReadError, Series, Shape, Smoothing, SmoothingError, read_series,
};

use crate::chart::ChartError;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: no numeric metric to plot")]
    Empty { path: PathBuf },
    #[error(transparent)]
    Chart(#[from] ChartError),
}

/// What [`plot_run`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotSummary {
    pub path: PathBuf,
    /// The panels, in order.
    pub drawn: Vec<String>,
    /// The series listed instead of drawn: `name = value` lines, in order.
    pub constant: Vec<String>,
}

/// The series split into those drawn and the `name = value` lines of the
/// rest, each in reading order.
pub fn classify(series: Vec<Series>) -> (Vec<Series>, Vec<String>) {
    let mut varying = Vec::new();
    let mut constant = Vec::new();
    for s in series {
        match s.shape() {
            Shape::Varying => varying.push(s),
            Shape::Constant(v) => constant.push(format!("{} = {}", s.key, exact(v))),
            Shape::NoValue => constant.push(format!("{} = – (no finite value)", s.key)),
        }
    }
    (varying, constant)
}

/// A listed value as the file wrote it: the shortest text that reads back
/// as the same number (serde_json writes an f32 field by its own shortest
/// text, which reads back as that f64), in exponent form when tiny or huge.
fn exact(v: f64) -> String {
    if v != 0.0 && !(1e-4..1e6).contains(&v.abs()) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

/// Plots `RUN_DIR/metrics.jsonl` into `RUN_DIR/metrics.png`.
pub fn plot_run(run_dir: &Path, smoothing: Smoothing) -> Result<PlotSummary, PlotError> {
    let metrics = run_dir.join("metrics.jsonl");
    let series = read_series(&metrics)?;
    if series.is_empty() {
        return Err(PlotError::Empty { path: metrics });
    }
    let rows = series.iter().map(|s| s.points.len()).max().unwrap_or(0);
    let (varying, constant) = classify(series);
    let title = format!("{} · {rows} rows", metrics.display());
    let figure = draw::Figure {
        title: &title,
        varying: &varying,
        constant: &constant,
        smoothing,
    };
    let out = run_dir.join("metrics.png");
    draw::render(&figure)?.write_png(&out)?;
    Ok(PlotSummary {
        path: out,
        drawn: varying.into_iter().map(|s| s.key).collect(),
        constant,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run's file end to end: the varying keys become panels in reading
    /// order, the constant and empty ones lines, and the PNG has the size
    /// the layout gives.
    #[test]
    fn a_run_is_drawn_and_its_constants_listed() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(
            tmp.path().join("metrics.jsonl"),
            "{\"step\":1,\"lr\":0.0001,\"eps\":1e-8,\"kl\":0.0,\"reward\":{\"mean\":0.5},\"x\":null,\"n\":3}\n\
             {\"step\":2,\"lr\":0.0001,\"kl\":0.25,\"reward\":{\"mean\":0.25},\"x\":null,\"n\":3}\n",
        )
        .unwrap();
        let summary = plot_run(tmp.path(), Smoothing::default()).unwrap();
        assert_eq!(summary.path, tmp.path().join("metrics.png"));
        assert_eq!(summary.drawn, ["reward/mean", "kl"]);
        assert_eq!(
            summary.constant,
            [
                "lr = 0.0001",
                "eps = 1e-8",
                "n = 3",
                "x = – (no finite value)"
            ]
        );
        let decoder = png::Decoder::new(std::io::BufReader::new(
            std::fs::File::open(&summary.path).unwrap(),
        ));
        let info = decoder.read_info().unwrap().info().clone();
        assert_eq!((info.width, info.height), draw::size(2, 4));
    }

    #[test]
    fn a_file_without_numbers_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("metrics.jsonl"), "{\"note\":\"x\"}\n").unwrap();
        let err = plot_run(tmp.path(), Smoothing::default()).unwrap_err();
        assert!(matches!(err, PlotError::Empty { .. }), "{err}");
    }
}
