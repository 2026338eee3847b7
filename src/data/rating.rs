//! The five-level rating scale, the three judged dimensions, and the map
//! from a mean opinion score (MOS) to a rating.
//!
//! Paper §3.4.2: with MOS range `[m, M]` (m=1, M=5 by default) the ratings
//! r1..r5 = Bad, Poor, Fair, Good, Excellent cover equal intervals:
//! `R(s) = r_i  iff  m + (i-1)(M-m)/5 < s <= m + i(M-m)/5`, and `s = m` maps
//! to Bad. So with the default scale Bad is `[1, 1.8]`, Poor `(1.8, 2.6]`,
//! Fair `(2.6, 3.4]`, Good `(3.4, 4.2]`, Excellent `(4.2, 5]`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One of the five answer levels, ordered from worst to best.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Rating {
    Bad,
    Poor,
    Fair,
    Good,
    Excellent,
}

impl Rating {
    /// All ratings, worst first (index = level - 1).
    pub const ALL: [Rating; 5] = [
        Rating::Bad,
        Rating::Poor,
        Rating::Fair,
        Rating::Good,
        Rating::Excellent,
    ];

    /// The exact word the model must write (case-sensitive).
    pub fn word(self) -> &'static str {
        match self {
            Rating::Bad => "Bad",
            Rating::Poor => "Poor",
            Rating::Fair => "Fair",
            Rating::Good => "Good",
            Rating::Excellent => "Excellent",
        }
    }

    /// Parses an exact rating word. Case and spelling must match: a judge
    /// that writes "good" or "Exellent" has not followed the format.
    pub fn from_word(word: &str) -> Option<Rating> {
        Rating::ALL.into_iter().find(|r| r.word() == word)
    }

    /// 0 for Bad … 4 for Excellent.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The weight of this rating in the softmax-expectation score (paper
    /// §4.2.2): Excellent 1, Good .75, Fair .5, Poor .25, Bad 0.
    pub fn weight(self) -> f32 {
        self.index() as f32 / 4.0
    }
}

impl fmt::Display for Rating {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// The three quality dimensions a video is judged on (paper §3.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    /// Fidelity, sharpness, artifacts, aesthetics.
    Visual,
    /// Smoothness, temporal coherence, physical plausibility.
    Dynamic,
    /// Whether the video shows what its generation prompt asks for.
    Alignment,
}

impl Dimension {
    pub const ALL: [Dimension; 3] = [Dimension::Visual, Dimension::Dynamic, Dimension::Alignment];

    /// The identifier used in manifests, configs and on the command line.
    pub fn id(self) -> &'static str {
        match self {
            Dimension::Visual => "visual",
            Dimension::Dynamic => "dynamic",
            Dimension::Alignment => "alignment",
        }
    }

    /// Parses `visual`, `dynamic` or `alignment`.
    pub fn from_id(id: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.id() == id)
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The MOS range of a data set. Paper data and the synthetic set use 1–5.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MosScale {
    pub min: f32,
    pub max: f32,
}

impl Default for MosScale {
    fn default() -> Self {
        MosScale { min: 1.0, max: 5.0 }
    }
}

impl MosScale {
    /// The rating whose interval holds `mos` (paper §3.4.2). Scores outside
    /// the range clamp to the end ratings.
    pub fn rating(&self, mos: f32) -> Rating {
        let (min, max) = (f64::from(self.min), f64::from(self.max));
        // Upper bounds are inclusive: s ∈ (lo_i, hi_i] → r_i, so count the
        // bounds strictly below s. `s == m` has none below and is Bad. Each
        // bound is computed in f64 and rounded once to f32, so a MOS written
        // as "3.4" in a manifest equals the bound 3.4 exactly (summing f32
        // steps would land one ulp off and flip boundary cases).
        let above = (1..5)
            .filter(|&i| mos > (min + f64::from(i) * (max - min) / 5.0) as f32)
            .count();
        Rating::ALL[above]
    }

    /// Maps a MOS to `[0, 1]` (the target of the SFT score regression).
    pub fn normalise(&self, mos: f32) -> f32 {
        (mos - self.min) / (self.max - self.min)
    }

    /// Maps a `[0, 1]` score back to the MOS scale, `m + s·(M − m)`.
    pub fn denormalise(&self, score: f32) -> f32 {
        self.min + score * (self.max - self.min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mos_to_rating_at_interval_boundaries() {
        let s = MosScale::default();
        assert_eq!(s.rating(1.0), Rating::Bad);
        assert_eq!(s.rating(1.8), Rating::Bad);
        assert_eq!(s.rating(1.81), Rating::Poor);
        assert_eq!(s.rating(2.6), Rating::Poor);
        assert_eq!(s.rating(2.61), Rating::Fair);
        assert_eq!(s.rating(3.4), Rating::Fair);
        assert_eq!(s.rating(3.41), Rating::Good);
        assert_eq!(s.rating(4.2), Rating::Good);
        assert_eq!(s.rating(4.21), Rating::Excellent);
        assert_eq!(s.rating(5.0), Rating::Excellent);
        assert_eq!(s.rating(0.0), Rating::Bad);
        assert_eq!(s.rating(9.0), Rating::Excellent);
    }

    #[test]
    fn other_scales_split_into_five_equal_intervals() {
        let s = MosScale {
            min: 0.0,
            max: 100.0,
        };
        assert_eq!(s.rating(20.0), Rating::Bad);
        assert_eq!(s.rating(20.5), Rating::Poor);
        assert_eq!(s.rating(80.5), Rating::Excellent);
    }

    #[test]
    fn rating_words_are_exact() {
        for r in Rating::ALL {
            assert_eq!(Rating::from_word(r.word()), Some(r));
        }
        assert_eq!(Rating::from_word("good"), None);
        assert_eq!(Rating::from_word("Exellent"), None);
        assert_eq!(Rating::from_word(" Good"), None);
    }

    #[test]
    fn weights_and_normalisation() {
        let w: Vec<f32> = Rating::ALL.iter().map(|r| r.weight()).collect();
        assert_eq!(w, vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        let s = MosScale::default();
        assert_eq!(s.normalise(3.0), 0.5);
        assert_eq!(s.denormalise(0.75), 4.0);
    }

    #[test]
    fn dimension_ids_round_trip() {
        for d in Dimension::ALL {
            assert_eq!(Dimension::from_id(d.id()), Some(d));
        }
        assert_eq!(Dimension::from_id("Visual"), None);
    }
}
