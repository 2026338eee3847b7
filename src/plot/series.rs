//! The pure half of `vgrpo plot`: `metrics.jsonl` read into one series per
//! numeric key, ordered for reading, each classified (varying, constant,
//! no value) and smoothed.
//!
//! The keys are whatever the trainer wrote (GRPO: `reward/mean`,
//! `reward/acc`, `kl`, `pg_loss`, `response_length/mean`, …, verl's and
//! TRL's names; SFT: `loss`, `ce`, `mse`, …), so they are read as JSON
//! objects rather than one typed row: the plotter serves every stage.
//! Nested objects are flattened with `/` (`reward/acc_by_dimension/visual`,
//! the TensorBoard tag). The headline metrics come first, in [`PREFERRED`]
//! order, then the rest alphabetically. Non-finite values and nulls are
//! gaps (NaN).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Panels drawn first, when present: what a person looks at first in a
/// GRPO run (reward, KL, entropy, response length, grad norm, clip ratios)
/// and in an SFT or pre-training run (`loss`, `ce`, `mse`, none of which a
/// GRPO row has).
pub const PREFERRED: [&str; 26] = [
    "reward/mean",
    "reward/std",
    "reward/acc",
    "reward/exact",
    "reward/fmt",
    "reward/acc_by_dimension/visual",
    "reward/acc_by_dimension/dynamic",
    "reward/acc_by_dimension/alignment",
    "reward/exact_by_dimension/visual",
    "reward/exact_by_dimension/dynamic",
    "reward/exact_by_dimension/alignment",
    "loss",
    "ce",
    "mse",
    "kl",
    "entropy",
    "response_length/mean",
    "response_length/clip_ratio",
    "grad_norm",
    "clip_ratio",
    "clip_ratio/low",
    "clip_ratio/high",
    "pg_loss",
    "frac_reward_zero_std",
    "lr",
    "tokens_per_s",
];

/// TensorBoard's default smoothing weight.
pub const DEFAULT_SMOOTHING: f64 = 0.6;

#[derive(Debug, thiserror::Error)]
pub enum ReadError {
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
}

/// One metric over the run: (step, value) points, in file order.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub key: String,
    pub points: Vec<(f64, f64)>,
}

/// Reads every numeric metric of a `metrics.jsonl`. The x value is the
/// row's `step` when it has one, else its 1-based row number.
pub fn read_series(path: &Path) -> Result<Vec<Series>, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Read {
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
            serde_json::from_str(line).map_err(|source| ReadError::Row {
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

/// What a series holds, which decides whether it gets a panel: a curve of
/// one value says nothing a line of text does not, and costs a panel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    /// At least two different finite values: drawn.
    Varying,
    /// Every finite value equal to this one: listed, not drawn.
    Constant(f64),
    /// No finite value at all (every row null or non-finite): listed.
    NoValue,
}

impl Series {
    pub fn shape(&self) -> Shape {
        let mut finite = self.points.iter().map(|p| p.1).filter(|v| v.is_finite());
        let Some(first) = finite.next() else {
            return Shape::NoValue;
        };
        if finite.all(|v| v == first) {
            Shape::Constant(first)
        } else {
            Shape::Varying
        }
    }
}

/// TensorBoard's smoothing weight `w`, `0 ≤ w < 1` (0: the raw values).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Smoothing(f64);

#[derive(Debug, thiserror::Error)]
#[error(
    "the smoothing weight must be a number w with 0 ≤ w < 1 (0: no smoothing; \
     default {DEFAULT_SMOOTHING}), got {given:?}"
)]
pub struct SmoothingError {
    pub given: String,
}

impl Smoothing {
    pub fn new(weight: f64) -> Result<Self, SmoothingError> {
        // `contains` is false for NaN too.
        if (0.0..1.0).contains(&weight) {
            Ok(Smoothing(weight))
        } else {
            Err(SmoothingError {
                given: weight.to_string(),
            })
        }
    }

    pub fn weight(self) -> f64 {
        self.0
    }

    /// TensorBoard's debiased exponential moving average of `values`, in
    /// order (the weight is per point, not per step of x):
    /// `a_n = w·a_{n−1} + (1 − w)·v_n` from `a_0 = 0`, shown as
    /// `a_n / (1 − w^n)`, where `n` counts the finite values so far. The
    /// division undoes the pull towards the zero start, so the curve starts
    /// at the first value. A non-finite value stays a gap and leaves the
    /// average as it was.
    pub fn apply(self, values: &[f64]) -> Vec<f64> {
        let w = self.0;
        let mut average = 0.0;
        let mut weight_n = 1.0; // w^n
        values
            .iter()
            .map(|&v| {
                if !v.is_finite() {
                    return f64::NAN;
                }
                average = w * average + (1.0 - w) * v;
                weight_n *= w;
                average / (1.0 - weight_n)
            })
            .collect()
    }
}

impl Default for Smoothing {
    fn default() -> Self {
        Smoothing(DEFAULT_SMOOTHING)
    }
}

/// The weight, as `--smoothing` takes it (clap shows the default with it).
impl std::fmt::Display for Smoothing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::str::FromStr for Smoothing {
    type Err = SmoothingError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let weight: f64 = s.trim().parse().map_err(|_| SmoothingError {
            given: s.to_string(),
        })?;
        Smoothing::new(weight).map_err(|_| SmoothingError {
            given: s.to_string(),
        })
    }
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
            "{\"step\":1,\"zeta\":1.0,\"loss\":2.0,\"reward\":{\"mean\":0.5},\"ok\":true,\"kl\":null,\"entropy\":3}\n\
             \n\
             {\"step\":2,\"zeta\":0.5,\"loss\":1.5,\"reward\":{\"mean\":0.75},\"ok\":false,\"kl\":0.1,\"entropy\":2}\n",
        )
        .unwrap();
        let series = read_series(&path).unwrap();
        let keys: Vec<&str> = series.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(keys, ["reward/mean", "loss", "kl", "entropy", "zeta"]);
        assert_eq!(series[0].points, [(1.0, 0.5), (2.0, 0.75)]);
        assert!(series[2].points[0].1.is_nan());
    }

    #[test]
    fn rows_without_a_step_are_numbered_and_a_bad_row_is_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"loss\":2}\n{\"loss\":1}\n").unwrap();
        let series = read_series(&path).unwrap();
        assert_eq!(series[0].points, [(1.0, 2.0), (2.0, 1.0)]);
        std::fs::write(&path, "{\"loss\":2}\n[1]\n").unwrap();
        let err = read_series(&path).unwrap_err().to_string();
        assert_eq!(err, format!("{}:2: not a JSON object", path.display()));
    }

    fn series(values: &[f64]) -> Series {
        Series {
            key: "m".into(),
            points: values
                .iter()
                .enumerate()
                .map(|(i, &v)| (i as f64 + 1.0, v))
                .collect(),
        }
    }

    #[test]
    fn a_series_is_constant_when_every_finite_value_is_equal() {
        assert_eq!(series(&[2.0, f64::NAN, 2.0]).shape(), Shape::Constant(2.0));
        assert_eq!(series(&[0.5]).shape(), Shape::Constant(0.5));
        assert_eq!(series(&[2.0, 2.5, 2.0]).shape(), Shape::Varying);
        // The change may come last, after a gap.
        assert_eq!(
            series(&[1.0, 1.0, f64::NAN, 1.0 + 1e-12]).shape(),
            Shape::Varying
        );
        assert_eq!(series(&[f64::NAN, f64::INFINITY]).shape(), Shape::NoValue);
        assert_eq!(series(&[]).shape(), Shape::NoValue);
    }

    /// w = 0.5 on (1, 2, NaN, 4), by hand:
    /// a1 = 0.5·0 + 0.5·1 = 0.5,   shown 0.5 / (1 − 0.5)   = 1
    /// a2 = 0.25 + 1 = 1.25,        shown 1.25 / (1 − 0.25) = 5/3
    /// (NaN: a gap, a stays 1.25, n stays 2)
    /// a3 = 0.625 + 2 = 2.625,      shown 2.625 / (1 − 0.125) = 3
    #[test]
    fn smoothing_is_the_debiased_ema_by_hand() {
        let got = Smoothing::new(0.5)
            .unwrap()
            .apply(&[1.0, 2.0, f64::NAN, 4.0]);
        assert!((got[0] - 1.0).abs() < 1e-12, "{got:?}");
        assert!((got[1] - 5.0 / 3.0).abs() < 1e-12, "{got:?}");
        assert!(got[2].is_nan(), "{got:?}");
        assert!((got[3] - 3.0).abs() < 1e-12, "{got:?}");
        // w = 0.6 (the default) on (10, 0): a1 = 4 → 10; a2 = 2.4 → 2.4/0.64.
        let got = Smoothing::default().apply(&[10.0, 0.0]);
        assert!((got[0] - 10.0).abs() < 1e-12 && (got[1] - 3.75).abs() < 1e-12);
        // w = 0 is the raw series.
        assert_eq!(
            Smoothing::new(0.0).unwrap().apply(&[3.0, -1.0]),
            [3.0, -1.0]
        );
    }

    #[test]
    fn the_smoothing_weight_is_checked() {
        assert_eq!("0.9".parse::<Smoothing>().unwrap().weight(), 0.9);
        assert_eq!("0".parse::<Smoothing>().unwrap().weight(), 0.0);
        for bad in ["1", "1.5", "-0.1", "NaN", "x"] {
            let err = bad.parse::<Smoothing>().unwrap_err().to_string();
            assert!(err.contains("0 ≤ w < 1") && err.contains(bad), "{err}");
        }
    }
}
