//! The softmax-expectation score (paper §4.2.2, the Q-Align recipe): at the
//! position where the rating word is generated, take the logits of the five
//! rating tokens, softmax over just those five, and average the rating
//! weights under that distribution:
//!
//! ```text
//! p = softmax(z_Bad, z_Poor, z_Fair, z_Good, z_Excellent)
//! score = Σ_j p_j · w_j,   w = (0, .25, .5, .75, 1)   (Bad … Excellent)
//! ```
//!
//! The score lies in [0, 1]; `MosScale::denormalise` maps it to the MOS
//! scale (m + score·(M − m)). Every rating vector in this module is ordered
//! like [`Rating::ALL`], worst first.

use crate::data::Rating;
use burn::tensor::activation::softmax;
use burn::tensor::{Int, Tensor, TensorData};

/// The rating weights w_j, Bad … Excellent.
pub fn rating_weights() -> [f32; 5] {
    Rating::ALL.map(Rating::weight)
}

/// Picks the logits of the five rating tokens at one position per sequence.
///
/// `logits` `[B, T, V]`, `positions` `[B]` (the index t whose distribution
/// predicts the rating token), `rating_token_ids` the vocabulary ids of
/// Bad … Excellent. Returns `[B, 5]`, keeping gradients.
pub fn gather_rating_logits(
    logits: Tensor<3>,
    positions: Tensor<1, Int>,
    rating_token_ids: [u32; 5],
) -> Tensor<2> {
    let [batch, _, vocab] = logits.dims();
    let device = logits.device();
    // [B] -> [B, 1, 1] -> [B, 1, V]: the same position index for every vocab entry.
    let index = positions.reshape([batch, 1, 1]).expand([batch, 1, vocab]);
    let at_position = logits.gather(1, index).reshape([batch, vocab]);
    let ids: Vec<i64> = rating_token_ids.iter().map(|&id| i64::from(id)).collect();
    let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [5]), &device);
    at_position.select(1, ids)
}

/// The expected score per sequence, `[B, 5]` rating logits → `[B]` in [0, 1].
/// Differentiable (the SFT MSE term trains through it).
pub fn expected_score(rating_logits: Tensor<2>) -> Tensor<1> {
    let [batch, _] = rating_logits.dims();
    let device = rating_logits.device();
    // [5] -> [1, 5] -> [B, 5]
    let weights = Tensor::<1>::from_floats(rating_weights(), &device)
        .reshape([1, 5])
        .expand([batch, 5]);
    softmax(rating_logits, 1)
        .mul(weights)
        .sum_dim(1)
        .reshape([batch])
}

/// Probabilities of the five ratings from their logits, on the host.
pub fn rating_probabilities(rating_logits: [f32; 5]) -> [f32; 5] {
    // Subtract the max before exp for stability; work in f64.
    let max = rating_logits
        .iter()
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let exps = rating_logits.map(|z| (f64::from(z) - f64::from(max)).exp());
    let total: f64 = exps.iter().sum();
    exps.map(|e| (e / total) as f32)
}

/// The expected score from five rating logits, on the host.
pub fn expected_score_of(rating_logits: [f32; 5]) -> f32 {
    rating_probabilities(rating_logits)
        .iter()
        .zip(rating_weights())
        .map(|(p, w)| p * w)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_by_hand() {
        // Equal logits: p = 1/5 each, score = (0 + .25 + .5 + .75 + 1)/5 = 0.5.
        assert!((expected_score_of([3.0; 5]) - 0.5).abs() < 1e-7);
        // Logits (0, 0, 0, ln 2, ln 3): p = (1, 1, 1, 2, 3)/8,
        // score = (0 + .25 + .5 + 1.5 + 3)/8 = 5.25/8.
        let z = [0.0, 0.0, 0.0, 2f32.ln(), 3f32.ln()];
        assert!((expected_score_of(z) - 5.25 / 8.0).abs() < 1e-6);
        // A confident Excellent scores ~1, a confident Bad ~0.
        assert!(expected_score_of([0.0, 0.0, 0.0, 0.0, 40.0]) > 0.999_999);
        assert!(expected_score_of([40.0, 0.0, 0.0, 0.0, 0.0]) < 1e-6);
    }

    #[test]
    fn tensor_score_matches_host_score() {
        let d = crate::device::test_device();
        let rows = [
            [0.0f32, 0.0, 0.0, 2f32.ln(), 3f32.ln()],
            [1.0, -2.0, 0.5, 3.0, 0.0],
        ];
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let logits = Tensor::<2>::from_data(TensorData::new(flat, [2, 5]), &d);
        let got = expected_score(logits)
            .into_data()
            .try_into_vec_as::<f32>()
            .unwrap();
        for (g, row) in got.iter().zip(rows) {
            assert!((g - expected_score_of(row)).abs() < 1e-6);
        }
    }

    #[test]
    fn gathers_the_rating_logits_at_each_rows_position() {
        let d = crate::device::test_device();
        // B = 2, T = 2, V = 7; logit value = 100·b + 10·t + v.
        let flat: Vec<f32> = (0..2)
            .flat_map(|b| {
                (0..2).flat_map(move |t| (0..7).map(move |v| (100 * b + 10 * t + v) as f32))
            })
            .collect();
        let logits = Tensor::<3>::from_data(TensorData::new(flat, [2, 2, 7]), &d);
        let positions = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &d);
        let got = gather_rating_logits(logits, positions, [6, 5, 4, 3, 2]);
        let got = got.into_data().try_into_vec_as::<f32>().unwrap();
        assert_eq!(
            got,
            vec![
                16.0, 15.0, 14.0, 13.0, 12.0, 106.0, 105.0, 104.0, 103.0, 102.0
            ]
        );
    }
}
