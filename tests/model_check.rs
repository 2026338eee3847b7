//! The Burn Qwen-VL models against transformers 5.23 on the tiny fixtures
//! (`tests/fixtures/make_qwen_fixtures.py`), through the `check-model` code.

use std::path::{Path, PathBuf};

use vgrpo::model::check::{Reference, check_loaded, compare_logits};
use vgrpo::model::{Grid, QwenVl, check_model};

const TOLERANCE: f64 = 1e-4;

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{arch}_tiny"))
}

fn check(arch: &str, reference: &str, grids: &[Grid]) {
    let dir = fixture(arch);
    let device = vgrpo::device::test_device();
    let report = check_model(&dir, &dir.join(reference), TOLERANCE, &device).unwrap();
    eprintln!(
        "{arch}/{reference}: rel error {:.3e} over {} positions",
        report.rel_error, report.positions
    );
    assert_eq!(report.grids, grids);
    assert!(
        report.passed(),
        "{arch}/{reference}: rel error {:.3e}",
        report.rel_error
    );
}

#[test]
fn qwen3_vl_matches_transformers() {
    check(
        "qwen3_vl",
        "reference.safetensors",
        &[Grid { t: 3, h: 4, w: 6 }],
    );
}

#[test]
fn qwen2_5_vl_matches_transformers() {
    check(
        "qwen2_5_vl",
        "reference.safetensors",
        &[Grid { t: 3, h: 6, w: 8 }],
    );
}

#[test]
fn qwen3_vl_padded_batch_matches_transformers() {
    let g = Grid { t: 3, h: 4, w: 6 };
    check("qwen3_vl", "reference_batch.safetensors", &[g, g]);
}

#[test]
fn qwen2_5_vl_padded_batch_matches_transformers() {
    let g = Grid { t: 3, h: 6, w: 8 };
    check("qwen2_5_vl", "reference_batch.safetensors", &[g, g]);
}

/// Padding must not change a row: the short, left-padded second row of the
/// batch gives the same logits as that row run alone.
fn padding_leaves_rows_unchanged(arch: &str) {
    let dir = fixture(arch);
    let device = vgrpo::device::test_device();
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let batch_ref = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    let batch_logits = model
        .forward(&batch_ref.batch(&device), &device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let (l, v) = (batch_ref.input_ids[0].len(), batch_ref.vocab);
    let kept: Vec<usize> = (0..l).filter(|&i| batch_ref.attention_mask[1][i]).collect();
    assert!(kept.len() < l, "row 1 should be padded");

    // Row 1 alone, without padding, with only its own video.
    let mut alone = batch_ref.clone();
    alone.input_ids = vec![kept.iter().map(|&i| batch_ref.input_ids[1][i]).collect()];
    alone.token_types = vec![kept.iter().map(|&i| batch_ref.token_types[1][i]).collect()];
    alone.attention_mask = vec![vec![true; kept.len()]];
    let (pixels, [n, d]) = batch_ref.pixel_values.clone().unwrap();
    alone.pixel_values = Some((pixels[n / 2 * d..].to_vec(), [n / 2, d]));
    alone.grids.truncate(1);
    alone.second_per_grid_ts.truncate(1);
    let alone_logits = model
        .forward(&alone.batch(&device), &device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();

    let row1: Vec<f32> = kept
        .iter()
        .flat_map(|&i| batch_logits[(l + i) * v..(l + i + 1) * v].to_vec())
        .collect();
    // NaN-propagating maxima: a NaN logit on either side makes `rel` NaN.
    let (diff, max_ref, _) = compare_logits(&row1, &alone_logits, &alone.attention_mask, v);
    let rel = diff / max_ref;
    eprintln!("{arch}: padded row vs alone rel error {rel:.3e}");
    assert!(rel.is_finite() && rel <= 1e-5, "{arch}: {rel:.3e}");

    // And the report through the library path agrees with the file.
    let report = check_loaded(&model, &batch_ref, &dir, TOLERANCE, &device).unwrap();
    assert!(report.passed());
}

#[test]
fn qwen3_vl_padding_leaves_rows_unchanged() {
    padding_leaves_rows_unchanged("qwen3_vl");
}

#[test]
fn qwen2_5_vl_padding_leaves_rows_unchanged() {
    padding_leaves_rows_unchanged("qwen2_5_vl");
}

#[test]
fn vision_token_count_matches_the_prompt() {
    for (arch, grid) in [
        ("qwen3_vl", Grid { t: 3, h: 4, w: 6 }),
        ("qwen2_5_vl", Grid { t: 3, h: 6, w: 8 }),
    ] {
        let dir = fixture(arch);
        let reference = Reference::read(&dir.join("reference.safetensors")).unwrap();
        let video_tokens = reference.token_types[0].iter().filter(|&&t| t == 2).count();
        assert_eq!(reference.grids, vec![grid]);
        assert_eq!(grid.tokens(2), video_tokens, "{arch}");
        let model = QwenVl::from_hf_dir(&dir, &vgrpo::device::test_device()).unwrap();
        let (pixels, shape) = reference.pixel_values.clone().unwrap();
        let video = burn::tensor::Tensor::from_data(
            burn::tensor::TensorData::new(pixels, shape),
            &vgrpo::device::test_device(),
        );
        let out = model.model.visual.forward(video, &reference.grids);
        assert_eq!(
            out.embeds.dims(),
            [video_tokens, model.config.text.hidden_size]
        );
    }
}

/// bf16 weights and activations (f32 softmax and norms): close to the f32
/// reference, finite on the padded batch.
#[test]
fn bf16_forward_stays_close_to_transformers() {
    let device = vgrpo::device::test_device();
    for arch in ["qwen3_vl", "qwen2_5_vl"] {
        let dir = fixture(arch);
        let model = QwenVl::from_hf_dir(&dir, &device)
            .unwrap()
            .with_float_dtype(burn::tensor::FloatDType::BF16);
        let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
        let report = check_loaded(&model, &reference, &dir, 5e-2, &device).unwrap();
        eprintln!("{arch}: bf16 rel error {:.3e}", report.rel_error);
        assert!(
            report.rel_error.is_finite() && report.passed(),
            "{arch}: {:.3e}",
            report.rel_error
        );
    }
}

/// `Batch::left_padded` rebuilds the fixture's padded batch from its rows.
#[test]
fn left_padding_builds_the_hf_batch() {
    let device = vgrpo::device::test_device();
    for arch in ["qwen3_vl", "qwen2_5_vl"] {
        let dir = fixture(arch);
        let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
        let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
        let rows: Vec<Vec<i64>> = reference
            .input_ids
            .iter()
            .zip(&reference.attention_mask)
            .map(|(ids, mask)| {
                ids.iter()
                    .zip(mask)
                    .filter(|(_, m)| **m)
                    .map(|(id, _)| *id)
                    .collect()
            })
            .collect();
        let expected = reference.batch(&device);
        let built = vgrpo::model::Batch::left_padded(
            &rows,
            0,
            model.config.video_token_id,
            expected.video.clone(),
        );
        assert_eq!(built.input_ids, expected.input_ids, "{arch}");
        assert_eq!(built.attention_mask, expected.attention_mask, "{arch}");
        assert_eq!(built.token_types, expected.token_types, "{arch}");
    }
}
