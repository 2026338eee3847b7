//! `check-model`: run a model on the inputs of a transformers reference file
//! and compare the logits.
//!
//! The reference is a safetensors file holding what the HF processor and
//! model produced: `input_ids` [B,L] i64, `attention_mask` [B,L],
//! `mm_token_type_ids` [B,L], `pixel_values_videos` [N,D] f32,
//! `video_grid_thw` [n,3], optionally `second_per_grid_ts` [n] (Qwen2.5-VL),
//! and `logits` [B,L,V] f32. Only positions with `attention_mask = 1` are
//! compared (padding logits are meaningless in both implementations).

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor, TensorData};
use safetensors::{Dtype, SafeTensors};

use super::error::{ModelError, Result};
use super::position::Grid;
use super::qwen_vl::{Batch, QwenVl, VideoInput};
use super::weights::to_f32;

/// A reference file's contents, on the host.
#[derive(Debug, Clone)]
pub struct Reference {
    pub input_ids: Vec<Vec<i64>>,
    pub attention_mask: Vec<Vec<bool>>,
    pub token_types: Vec<Vec<i64>>,
    /// `[N, D]` row-major, with its shape.
    pub pixel_values: Option<(Vec<f32>, [usize; 2])>,
    pub grids: Vec<Grid>,
    pub second_per_grid_ts: Vec<f32>,
    /// `[B, L, V]` row-major.
    pub logits: Vec<f32>,
    pub vocab: usize,
}

struct File<'a> {
    path: &'a Path,
    tensors: SafeTensors<'a>,
}

impl File<'_> {
    fn err(&self, message: String) -> ModelError {
        ModelError::Reference {
            path: self.path.to_path_buf(),
            message,
        }
    }

    fn has(&self, name: &str) -> bool {
        self.tensors.names().contains(&name)
    }

    fn ints(&self, name: &str) -> Result<(Vec<i64>, Vec<usize>)> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|e| self.err(format!("{name}: {e}")))?;
        let bytes = view.data();
        let values = match view.dtype() {
            Dtype::I64 => bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
            Dtype::I32 => bytes
                .chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
            Dtype::BOOL | Dtype::U8 => bytes.iter().map(|&b| i64::from(b)).collect(),
            other => {
                return Err(self.err(format!("{name}: dtype {other:?} is not an integer type")));
            }
        };
        Ok((values, view.shape().to_vec()))
    }

    fn floats(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let view = self
            .tensors
            .tensor(name)
            .map_err(|e| self.err(format!("{name}: {e}")))?;
        let values = to_f32(view.dtype(), view.data()).ok_or_else(|| {
            self.err(format!(
                "{name}: dtype {:?} is not a float type",
                view.dtype()
            ))
        })?;
        Ok((values, view.shape().to_vec()))
    }

    /// `[B, L]` integer matrix.
    fn matrix(&self, name: &str) -> Result<Vec<Vec<i64>>> {
        let (values, shape) = self.ints(name)?;
        match shape.as_slice() {
            [_, l] if *l > 0 => Ok(values.chunks(*l).map(<[i64]>::to_vec).collect()),
            _ => Err(self.err(format!("{name}: expected [B, L], found {shape:?}"))),
        }
    }
}

impl Reference {
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| ModelError::Reference {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let file = File { path, tensors };
        let input_ids = file.matrix("input_ids")?;
        let (b, l) = (input_ids.len(), input_ids.first().map_or(0, Vec::len));
        let attention_mask = if file.has("attention_mask") {
            file.matrix("attention_mask")?
                .into_iter()
                .map(|row| row.into_iter().map(|m| m != 0).collect())
                .collect()
        } else {
            vec![vec![true; l]; b]
        };
        let token_types = file.matrix("mm_token_type_ids")?;
        let grids = if file.has("video_grid_thw") {
            let (values, shape) = file.ints("video_grid_thw")?;
            if shape.len() != 2 || shape[1] != 3 {
                return Err(file.err(format!("video_grid_thw: expected [n, 3], found {shape:?}")));
            }
            values
                .chunks(3)
                .map(|g| Grid {
                    t: g[0] as usize,
                    h: g[1] as usize,
                    w: g[2] as usize,
                })
                .collect()
        } else {
            Vec::new()
        };
        let pixel_values = if file.has("pixel_values_videos") {
            let (values, shape) = file.floats("pixel_values_videos")?;
            match shape.as_slice() {
                [n, d] => Some((values, [*n, *d])),
                _ => {
                    return Err(file.err(format!(
                        "pixel_values_videos: expected [N, D], found {shape:?}"
                    )));
                }
            }
        } else {
            None
        };
        let second_per_grid_ts = if file.has("second_per_grid_ts") {
            file.floats("second_per_grid_ts")?.0
        } else {
            Vec::new()
        };
        let (logits, shape) = file.floats("logits")?;
        let vocab = match shape.as_slice() {
            [rb, rl, v] if *rb == b && *rl == l => *v,
            _ => return Err(file.err(format!("logits: expected [{b}, {l}, V], found {shape:?}"))),
        };
        for (name, rows) in [
            ("attention_mask", attention_mask.len()),
            ("mm_token_type_ids", token_types.len()),
        ] {
            if rows != b {
                return Err(file.err(format!("{name} has {rows} rows, input_ids {b}")));
            }
        }
        Ok(Reference {
            input_ids,
            attention_mask,
            token_types,
            pixel_values,
            grids,
            second_per_grid_ts,
            logits,
            vocab,
        })
    }

    /// The model inputs, with the pixels on `device`.
    pub fn batch(&self, device: &Device) -> Batch {
        let video = self
            .pixel_values
            .as_ref()
            .map(|(values, shape)| VideoInput {
                pixel_values: Tensor::from_data(TensorData::new(values.clone(), *shape), device),
                grids: self.grids.clone(),
                second_per_grid_ts: self.second_per_grid_ts.clone(),
                shared_across_rows: false,
            });
        Batch {
            input_ids: self.input_ids.clone(),
            attention_mask: self.attention_mask.clone(),
            token_types: self.token_types.clone(),
            video,
        }
    }
}

/// The outcome of a comparison.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    /// `max |ours - reference| / max |reference|` over unpadded positions.
    pub rel_error: f64,
    pub max_abs_diff: f64,
    pub max_abs_reference: f64,
    /// Unpadded positions compared.
    pub positions: usize,
    pub vocab: usize,
    pub grids: Vec<Grid>,
    pub tolerance: f64,
}

impl CheckReport {
    /// A NaN or infinite error fails: `NaN <= tol` is already false, but an
    /// infinite reference would make `∞ / ∞` or a finite `Δ / ∞` look small.
    pub fn passed(&self) -> bool {
        self.rel_error.is_finite() && self.rel_error <= self.tolerance
    }
}

/// The larger of `a` and `b`, NaN when either is. `f64::max` returns the
/// other operand for a NaN, so a maximum over logits with a NaN in them
/// would come out finite, and a model that outputs NaN would pass.
pub fn max_or_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `max |a_i − b_i|` over two equally long slices (0 when empty): NaN when
/// a NaN is on either side or both are the same infinity, ∞ when one side
/// is infinite — never a finite number for values that are not.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "max_abs_diff of slices of unequal length");
    a.iter()
        .zip(b)
        .fold(0.0, |m, (x, y)| max_or_nan(m, f64::from((x - y).abs())))
}

/// `max |a_i|` (0 when empty), NaN when any value is NaN.
pub fn max_abs(a: &[f32]) -> f64 {
    a.iter().fold(0.0, |m, x| max_or_nan(m, f64::from(x.abs())))
}

/// Compares logits `[B, L, V]` (row-major, host) on the unpadded positions:
/// `(max |ours − reference|, max |reference|, positions)`, where a NaN or
/// infinity in either makes the difference NaN or infinite
/// ([`max_abs_diff`]).
pub fn compare_logits(
    ours: &[f32],
    reference: &[f32],
    mask: &[Vec<bool>],
    vocab: usize,
) -> (f64, f64, usize) {
    let mut max_diff = 0.0f64;
    let mut max_ref = 0.0f64;
    let mut positions = 0;
    for (p, &keep) in mask.iter().flatten().enumerate() {
        if !keep {
            continue;
        }
        positions += 1;
        let range = p * vocab..(p + 1) * vocab;
        max_diff = max_or_nan(
            max_diff,
            max_abs_diff(&ours[range.clone()], &reference[range.clone()]),
        );
        max_ref = max_or_nan(max_ref, max_abs(&reference[range]));
    }
    (max_diff, max_ref, positions)
}

/// Loads the HF model in `dir`, runs it on the reference inputs and reports
/// the relative error of the logits. Prints nothing.
pub fn check_model(
    dir: &Path,
    reference: &Path,
    tolerance: f64,
    device: &Device,
) -> Result<CheckReport> {
    let model = QwenVl::from_hf_dir(dir, device)?;
    let reference_data = Reference::read(reference)?;
    check_loaded(&model, &reference_data, reference, tolerance, device)
}

/// [`check_model`] for a model already in memory.
pub fn check_loaded(
    model: &QwenVl,
    reference: &Reference,
    reference_path: &Path,
    tolerance: f64,
    device: &Device,
) -> Result<CheckReport> {
    if reference.vocab != model.config.text.vocab_size {
        return Err(ModelError::Reference {
            path: PathBuf::from(reference_path),
            message: format!(
                "logits have {} classes, the model's vocabulary has {}",
                reference.vocab, model.config.text.vocab_size
            ),
        });
    }
    let logits = model.forward(&reference.batch(device), device)?;
    let ours = logits
        .try_into_vec_as::<f32>()
        .map_err(|e| ModelError::Readback(format!("{e:?}")))?;
    Ok(CheckReport::new(
        &ours,
        &reference.logits,
        &reference.attention_mask,
        reference.vocab,
        reference.grids.clone(),
        tolerance,
    ))
}

impl CheckReport {
    /// The report on our logits against the reference's (both `[B, L, V]`).
    fn new(
        ours: &[f32],
        reference: &[f32],
        mask: &[Vec<bool>],
        vocab: usize,
        grids: Vec<Grid>,
        tolerance: f64,
    ) -> CheckReport {
        let (max_abs_diff, max_abs_reference, positions) =
            compare_logits(ours, reference, mask, vocab);
        CheckReport {
            rel_error: relative_error(max_abs_diff, max_abs_reference),
            max_abs_diff,
            max_abs_reference,
            positions,
            vocab,
            grids,
            tolerance,
        }
    }
}

/// `Δ / max |reference|`, guarded against an all-zero reference; NaN
/// stays NaN (`f64::max` would turn a NaN reference into the guard).
fn relative_error(max_abs_diff: f64, max_abs_reference: f64) -> f64 {
    max_abs_diff / max_or_nan(max_abs_reference, f64::MIN_POSITIVE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comparison_skips_padding() {
        let mask = vec![vec![false, true]];
        let ours = [100.0, 100.0, 1.0, 2.5];
        let reference = [0.0, 0.0, 1.0, 2.0];
        let (diff, max_ref, n) = compare_logits(&ours, &reference, &mask, 2);
        assert_eq!((diff, max_ref, n), (0.5, 2.0, 1));
    }

    fn report(ours: &[f32], reference: &[f32]) -> CheckReport {
        let mask = vec![vec![true, true]];
        CheckReport::new(ours, reference, &mask, 2, Vec::new(), 1e-4)
    }

    #[test]
    fn nan_or_infinite_logits_fail_the_check() {
        let reference = [1.0, -2.0, 0.5, 3.0];
        assert!(report(&reference, &reference).passed());
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // Ours non-finite at the last logit (after finite ones, where
            // `f64::max` would have kept the earlier maximum) or the first.
            for at in [3, 0] {
                let mut ours = reference;
                ours[at] = bad;
                let r = report(&ours, &reference);
                assert!(!r.rel_error.is_finite(), "{bad} at {at}: {r:?}");
                assert!(!r.passed(), "{bad} at {at}: {r:?}");
                // Or in the reference, or in both.
                let r = report(&reference, &ours);
                assert!(!r.passed(), "reference {bad} at {at}: {r:?}");
                let r = report(&ours, &ours);
                assert!(!r.passed(), "both {bad} at {at}: {r:?}");
            }
        }
        // Every logit NaN: no finite maximum to fall back on either.
        let r = report(&[f32::NAN; 4], &reference);
        assert!(r.max_abs_diff.is_nan() && !r.passed(), "{r:?}");
    }

    #[test]
    fn maxima_keep_nan() {
        assert!(max_or_nan(1.0, f64::NAN).is_nan());
        assert!(max_or_nan(f64::NAN, 1.0).is_nan());
        assert_eq!(max_or_nan(1.0, 2.0), 2.0);
        assert!(max_abs(&[1.0, f32::NAN, 2.0]).is_nan());
        assert_eq!(max_abs(&[1.0, -3.0]), 3.0);
        assert_eq!(max_abs_diff(&[1.0, 2.0], &[1.5, 2.0]), 0.5);
        assert!(max_abs_diff(&[1.0, f32::NAN], &[1.0, 2.0]).is_nan());
        assert_eq!(max_abs_diff(&[f32::INFINITY], &[1.0]), f64::INFINITY);
        assert!(max_abs_diff(&[f32::INFINITY], &[f32::INFINITY]).is_nan());
    }
}
