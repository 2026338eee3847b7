//! Correlations against scipy.stats (spearmanr, pearsonr, kendalltau τ-b) and
//! pairwise accuracy against an independent Python implementation, on
//! seeded data with many ties (`tests/golden/make_golden.py`).

use serde::Deserialize;
use vgrpo::eval::{PairwiseConfig, correlations, pairwise_accuracy};

#[derive(Deserialize)]
struct Golden {
    correlations: Vec<CorrelationCase>,
    pairwise: Vec<PairwiseCase>,
}

#[derive(Deserialize)]
struct CorrelationCase {
    pred: Vec<f64>,
    truth: Vec<f64>,
    srcc: f64,
    plcc: f64,
    krcc: f64,
}

#[derive(Deserialize)]
struct PairwiseCase {
    pred: Vec<f64>,
    truth: Vec<f64>,
    pred_tie_threshold: f64,
    truth_tie_threshold: f64,
    with_ties: f64,
    without_ties: Option<f64>,
}

fn load() -> Golden {
    let path = format!("{}/tests/golden/metrics.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {path}: {e}"))
}

/// Within 1e-10; a NaN or infinity on either side fails.
fn assert_close(what: &str, got: f64, want: f64) {
    assert!(
        got.is_finite() && want.is_finite(),
        "{what}: got {got}, want {want}"
    );
    assert!(
        (got - want).abs() <= 1e-10,
        "{what}: got {got}, want {want}"
    );
}

#[test]
fn correlations_match_scipy() {
    let golden = load();
    assert_eq!(golden.correlations.len(), 4);
    for (i, case) in golden.correlations.iter().enumerate() {
        let c = correlations(&case.pred, &case.truth).unwrap();
        assert_close(&format!("case {i} srcc"), c.srcc, case.srcc);
        assert_close(&format!("case {i} plcc"), c.plcc, case.plcc);
        assert_close(&format!("case {i} krcc"), c.krcc, case.krcc);
    }
}

#[test]
fn pairwise_accuracy_matches_reference() {
    let golden = load();
    assert_eq!(golden.pairwise.len(), 3);
    for (i, case) in golden.pairwise.iter().enumerate() {
        let config = PairwiseConfig {
            pred_tie_threshold: case.pred_tie_threshold,
            truth_tie_threshold: case.truth_tie_threshold,
        };
        let acc = pairwise_accuracy(&case.pred, &case.truth, &config).unwrap();
        assert_close(
            &format!("case {i} with ties"),
            acc.with_ties,
            case.with_ties,
        );
        match (acc.without_ties, case.without_ties) {
            (Some(got), Some(want)) => assert_close(&format!("case {i} without ties"), got, want),
            (got, want) => panic!("case {i} without ties: got {got:?}, want {want:?}"),
        }
    }
}
