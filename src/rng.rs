//! Deterministic random numbers for every random choice vgrpo makes.
//!
//! Every draw in the program (data shuffles, synthetic defects, rater noise,
//! rollout sampling) flows from the run's `seed` through this module, so a run
//! is reproducible bit for bit and its RNG state can be checkpointed as two
//! integers. The generator is SplitMix64 (Steele et al., 2014): tiny, fast,
//! statistically solid for simulation, and trivially serialisable. Named
//! sub-streams (`Rng::stream`) keep independent consumers from perturbing each
//! other: adding a draw to the synthetic generator must not change rollouts.

use serde::{Deserialize, Serialize};

const GOLDEN_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// A SplitMix64 generator. `Copy` on purpose: its whole state is one `u64`,
/// which is what a checkpoint stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rng {
    state: u64,
}

/// The SplitMix64 output function: a bijective avalanche of a 64-bit word.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over a label, so stream names map to fixed 64-bit keys.
fn hash_label(label: &str) -> u64 {
    label.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

impl Rng {
    /// A generator seeded from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: mix64(seed) }
    }

    /// An independent generator for the named consumer of the seed `seed`.
    /// `Rng::stream(s, "synth")` and `Rng::stream(s, "rollout")` never share
    /// draws, and neither depends on how many draws the other made.
    pub fn stream(seed: u64, label: &str) -> Self {
        Self::new(mix64(seed) ^ hash_label(label))
    }

    /// A child generator for item `index` of this generator's family (e.g. one
    /// per video), without advancing `self`.
    pub fn fork(&self, index: u64) -> Self {
        Self::new(self.state ^ mix64(index.wrapping_add(GOLDEN_GAMMA)))
    }

    /// The raw state, for checkpoints.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// Rebuild a generator from a checkpointed state.
    pub fn from_state(state: u64) -> Self {
        Self { state }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `[0, 1)` with 53 bits of precision.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, 1)` as `f32` (24 bits of precision).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next_f64()
    }

    /// Uniform integer in `0..n` without modulo bias (Lemire's method).
    ///
    /// # Panics
    /// If `n == 0`: there is nothing to choose from, which is a caller bug.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "Rng::below needs n > 0");
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform index into a slice of length `len`.
    pub fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// `true` with probability `p`.
    pub fn bernoulli(&mut self, p: f64) -> bool {
        self.next_f64() < p
    }

    /// Standard normal draw (Box–Muller; one of the pair is discarded so the
    /// state stays a single word).
    pub fn normal(&mut self) -> f64 {
        // 1 - u keeps the log argument in (0, 1].
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }

    /// In-place Fisher–Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.index(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_sequence() {
        // Reference values of SplitMix64 seeded with state 0 (Vigna's C code):
        // the first output for x = 0 is 0xE220A8397B1DCDAF.
        let mut rng = Rng::from_state(0);
        assert_eq!(rng.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(rng.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }

    #[test]
    fn same_seed_same_draws_and_streams_are_independent() {
        let a: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        let b: Vec<u64> = (0..4)
            .scan(Rng::new(7), |r, _| Some(r.next_u64()))
            .collect();
        assert_eq!(a, b);
        let mut s1 = Rng::stream(7, "synth");
        let mut s2 = Rng::stream(7, "rollout");
        assert_ne!(s1.next_u64(), s2.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut rng = Rng::new(1);
        let mut seen = [false; 5];
        for _ in 0..200 {
            let k = rng.below(5) as usize;
            seen[k] = true;
        }
        assert!(seen.iter().all(|&s| s));
    }

    #[test]
    fn normal_has_unit_moments() {
        let mut rng = Rng::new(3);
        let n = 20_000;
        let xs: Vec<f64> = (0..n).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / n as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        assert!(mean.abs() < 0.03, "mean {mean}");
        assert!((var - 1.0).abs() < 0.05, "var {var}");
    }

    #[test]
    fn shuffle_is_a_permutation_and_checkpointable() {
        let mut rng = Rng::new(11);
        let mut v: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        let saved = rng.state();
        let next = rng.next_u64();
        assert_eq!(Rng::from_state(saved).next_u64(), next);
    }
}
