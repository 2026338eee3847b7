//! Per-token log-probs, entropy and the softmax-expectation score against
//! numpy (`tests/golden/make_golden.py`).

use burn::tensor::{Int, Tensor, TensorData};
use serde::Deserialize;
use vgrpo::logits::{token_entropy, token_log_probs};
use vgrpo::score::{expected_score, expected_score_of};

#[derive(Deserialize)]
struct Golden {
    log_probs: Vec<LogProbCase>,
    score: ScoreCase,
}

#[derive(Deserialize)]
struct LogProbCase {
    batch: usize,
    tokens: usize,
    vocab: usize,
    temperature: f32,
    logits: Vec<f32>,
    token_ids: Vec<i64>,
    log_probs: Vec<f64>,
    entropy: Vec<f64>,
}

#[derive(Deserialize)]
struct ScoreCase {
    rating_logits: Vec<f32>,
    scores: Vec<f64>,
}

fn load() -> Golden {
    let path = format!("{}/tests/golden/logits.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// Each value within 1e-5 (relative above 1) of numpy's. A NaN or infinity
/// on either side fails on its own, not through a comparison that happens
/// to come out false.
fn assert_all_close(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            g.is_finite() && w.is_finite(),
            "{what}[{i}]: got {g}, want {w}"
        );
        assert!(
            (f64::from(*g) - w).abs() <= 1e-5 * w.abs().max(1.0),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}

#[test]
fn log_probs_and_entropy_match_numpy() {
    let golden = load();
    let device = vgrpo::device::test_device();
    for case in &golden.log_probs {
        let shape = [case.batch, case.tokens, case.vocab];
        let logits = Tensor::<3>::from_data(TensorData::new(case.logits.clone(), shape), &device);
        let ids = Tensor::<2, Int>::from_data(
            TensorData::new(case.token_ids.clone(), [case.batch, case.tokens]),
            &device,
        );
        let lp = token_log_probs(logits.clone(), ids, case.temperature)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_all_close(
            &format!("log_probs (T = {})", case.temperature),
            &lp,
            &case.log_probs,
        );
        let h = token_entropy(logits, case.temperature)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        assert_all_close(
            &format!("entropy (T = {})", case.temperature),
            &h,
            &case.entropy,
        );
    }
}

#[test]
fn expected_score_matches_numpy() {
    let golden = load().score;
    let rows = golden.scores.len();
    let device = vgrpo::device::test_device();
    let logits = Tensor::<2>::from_data(
        TensorData::new(golden.rating_logits.clone(), [rows, 5]),
        &device,
    );
    let got = expected_score(logits)
        .into_data()
        .try_into_vec_as::<f32>()
        .unwrap();
    assert_all_close("expected_score", &got, &golden.scores);
    let host: Vec<f32> = golden
        .rating_logits
        .chunks_exact(5)
        .map(|c| expected_score_of([c[0], c[1], c[2], c[3], c[4]]))
        .collect();
    assert_all_close("expected_score_of", &host, &golden.scores);
}
