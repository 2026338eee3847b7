//! What a generated set looks like: rating histograms, the noise ceiling
//! and per-generator means, per dimension.
//!
//! The Spearman correlation here is a small private helper for the noise
//! ceiling; the evaluation code has its own metrics module.

use super::plan::VideoPlan;
use super::quality::SCALE;
use crate::data::{Dimension, Rating, Split};
use std::fmt;

/// Summary of one dimension of a set.
#[derive(Debug, Clone, PartialEq)]
pub struct DimensionSummary {
    pub dimension: Dimension,
    /// Count of rated MOS per rating, Bad … Excellent.
    pub ratings: [usize; 5],
    /// Spearman correlation between rated and noise-free MOS over all rows:
    /// the best SRCC any evaluator can expect on this set.
    pub noise_ceiling_srcc: f64,
    /// The same on the test split only (NaN if it has fewer than two rows).
    pub test_noise_ceiling_srcc: f64,
    /// Mean rated MOS per generator, in generator order.
    pub generator_mean_mos: Vec<(String, f64)>,
}

/// What [`generate`](super::generate) produced.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSummary {
    pub videos: usize,
    pub rows: usize,
    pub train_videos: usize,
    pub test_videos: usize,
    /// True when the directory already held this exact set and nothing was
    /// rewritten.
    pub reused: bool,
    pub dimensions: Vec<DimensionSummary>,
}

/// Ranks with ties sharing their average rank (1-based).
fn average_ranks(xs: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..xs.len()).collect();
    order.sort_by(|&a, &b| xs[a].total_cmp(&xs[b]));
    let mut ranks = vec![0.0; xs.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && xs[order[j + 1]] == xs[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &k in &order[i..=j] {
            ranks[k] = rank;
        }
        i = j + 1;
    }
    ranks
}

fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len() as f64;
    let (mx, my) = (x.iter().sum::<f64>() / n, y.iter().sum::<f64>() / n);
    let cov: f64 = x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum();
    let vx: f64 = x.iter().map(|a| (a - mx).powi(2)).sum();
    let vy: f64 = y.iter().map(|b| (b - my).powi(2)).sum();
    cov / (vx * vy).sqrt()
}

/// Spearman's rank correlation (Pearson on average ranks); NaN when fewer
/// than two points or a constant input.
fn spearman(x: &[f64], y: &[f64]) -> f64 {
    if x.len() < 2 {
        return f64::NAN;
    }
    pearson(&average_ranks(x), &average_ranks(y))
}

/// Summarises planned videos.
pub fn summarise(plans: &[VideoPlan], reused: bool) -> SynthSummary {
    let dimensions = Dimension::ALL
        .iter()
        .enumerate()
        .map(|(d, &dimension)| {
            let mut ratings = [0usize; 5];
            for p in plans {
                ratings[SCALE.rating(p.scores[d].mos).index()] += 1;
            }
            let ceiling = |filter: &dyn Fn(&VideoPlan) -> bool| {
                let (mos, clean): (Vec<f64>, Vec<f64>) = plans
                    .iter()
                    .filter(|p| filter(p))
                    .map(|p| (f64::from(p.scores[d].mos), f64::from(p.scores[d].clean_mos)))
                    .unzip();
                spearman(&mos, &clean)
            };
            let mut generator_mean_mos: Vec<(String, f64)> = Vec::new();
            for p in plans {
                if !generator_mean_mos
                    .iter()
                    .any(|(g, _)| g == p.generator.name)
                {
                    let of: Vec<f64> = plans
                        .iter()
                        .filter(|q| q.generator.name == p.generator.name)
                        .map(|q| f64::from(q.scores[d].mos))
                        .collect();
                    let mean = of.iter().sum::<f64>() / of.len() as f64;
                    generator_mean_mos.push((p.generator.name.to_string(), mean));
                }
            }
            DimensionSummary {
                dimension,
                ratings,
                noise_ceiling_srcc: ceiling(&|_| true),
                test_noise_ceiling_srcc: ceiling(&|p| p.split == Split::Test),
                generator_mean_mos,
            }
        })
        .collect();
    let test_videos = plans.iter().filter(|p| p.split == Split::Test).count();
    SynthSummary {
        videos: plans.len(),
        rows: plans.len() * Dimension::ALL.len(),
        train_videos: plans.len() - test_videos,
        test_videos,
        reused,
        dimensions,
    }
}

impl fmt::Display for SynthSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} videos ({} train, {} test), {} manifest rows{}",
            self.videos,
            self.train_videos,
            self.test_videos,
            self.rows,
            if self.reused {
                " (already present, reused)"
            } else {
                ""
            }
        )?;
        write!(f, "{:<10}", "dimension")?;
        for r in Rating::ALL {
            write!(f, " {:>9}", r.word())?;
        }
        writeln!(f, "  ceiling(all/test)  mean MOS per generator")?;
        for d in &self.dimensions {
            write!(f, "{:<10}", d.dimension.id())?;
            for n in d.ratings {
                write!(f, " {n:>9}")?;
            }
            write!(
                f,
                "  {:>7.3}/{:<7.3}   ",
                d.noise_ceiling_srcc, d.test_noise_ceiling_srcc
            )?;
            let means: Vec<String> = d
                .generator_mean_mos
                .iter()
                .map(|(g, m)| format!("{g} {m:.2}"))
                .collect();
            writeln!(f, " {}", means.join(", "))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 20.0, 5.0]),
            vec![2.0, 3.5, 3.5, 1.0]
        );
    }

    #[test]
    fn spearman_hand_values() {
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[10.0, 20.0, 30.0, 40.0]) - 1.0).abs() < 1e-12);
        assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // x ranks 1,2,3,4; y = [1,3,2,4] ranks 1,3,2,4: d² = 0+1+1+0 = 2,
        // ρ = 1 − 6·2/(4·15) = 0.8.
        assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]) - 0.8).abs() < 1e-12);
        // With ties: x = [1,2,2,3] → ranks 1, 2.5, 2.5, 4; y ranks 1,2,3,4.
        // Pearson of ranks: mean 2.5; dx = -1.5,0,0,1.5; dy = -1.5,-.5,.5,1.5
        // cov = 4.5, vx = 4.5, vy = 5 → 4.5/sqrt(22.5) = 0.948683.
        let r = spearman(&[1.0, 2.0, 2.0, 3.0], &[1.0, 2.0, 3.0, 4.0]);
        assert!((r - 4.5 / 22.5f64.sqrt()).abs() < 1e-12, "{r}");
        assert!(spearman(&[1.0], &[1.0]).is_nan());
    }
}
