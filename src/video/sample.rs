//! Which decoded frames to keep: fixed-rate sampling with frame-count bounds.
//!
//! Pure: works on the presentation timestamps of a clip's frames (seconds,
//! ascending), so it is tested without decoding anything. Variable frame
//! rate needs nothing special: targets are times, not frame indices.
//!
//! Rule (documented here because the model's view of time depends on it):
//! 1. The clip spans `[t0, end)`, `t0` = first timestamp, `end` = when the
//!    last frame stops being shown.
//! 2. The wanted count is `n = round(span * fps)`, clamped to
//!    `[min_frames, max_frames]`, then to the number of frames that exist
//!    (a clip with fewer frames than `min_frames` keeps all of them).
//! 3. Target times are `t0 + k * span / n`, `k = 0..n` (so at exactly `fps`
//!    the targets are `t0, t0 + 1/fps, ...`; the first frame is always kept).
//! 4. Each target takes the frame whose timestamp is nearest (the earlier one
//!    on a tie, distances within 1 ns count as equal), moved forward if needed so the picks strictly increase and
//!    enough frames remain for the targets still to come. The picks are
//!    therefore `n` distinct frames in time order.

/// Sampling parameters (the `[video]` config's fps and frame bounds).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplingPlan {
    pub fps: f64,
    pub min_frames: usize,
    pub max_frames: usize,
}

/// Why a timestamp list cannot be sampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SampleError {
    #[error("the clip has no frames")]
    NoFrames,
    #[error("frame {index} has timestamp {timestamp} s, not finite")]
    NotFinite { index: usize, timestamp: f64 },
    #[error("timestamps must increase: frame {index} is at {timestamp} s after {previous} s")]
    NotIncreasing {
        index: usize,
        timestamp: f64,
        previous: f64,
    },
    #[error("clip end {end} s is before its last frame at {last} s")]
    EndBeforeLastFrame { end: f64, last: f64 },
    #[error(
        "sampling needs fps > 0 and 1 <= min_frames <= max_frames, got fps {fps}, min {min}, max {max}"
    )]
    BadPlan { fps: f64, min: usize, max: usize },
}

/// The median gap between consecutive timestamps (`None` with fewer than
/// two). The decoder uses it as the last frame's display time when the
/// container does not give one, and as the slack of its truncation check.
pub fn median_gap(timestamps: &[f64]) -> Option<f64> {
    let mut gaps: Vec<f64> = timestamps.windows(2).map(|w| w[1] - w[0]).collect();
    gaps.sort_by(f64::total_cmp);
    gaps.get(gaps.len() / 2).copied()
}

/// Indices into `timestamps` of the frames to keep, ascending (see the module
/// docs for the rule).
pub fn sample_indices(
    timestamps: &[f64],
    end: f64,
    plan: &SamplingPlan,
) -> Result<Vec<usize>, SampleError> {
    if !(plan.fps.is_finite() && plan.fps > 0.0)
        || plan.min_frames == 0
        || plan.min_frames > plan.max_frames
    {
        return Err(SampleError::BadPlan {
            fps: plan.fps,
            min: plan.min_frames,
            max: plan.max_frames,
        });
    }
    check_timestamps(timestamps)?;
    let (first, last) = match (timestamps.first(), timestamps.last()) {
        (Some(&f), Some(&l)) => (f, l),
        _ => return Err(SampleError::NoFrames),
    };
    if !end.is_finite() || end < last {
        return Err(SampleError::EndBeforeLastFrame { end, last });
    }
    let span = end - first;
    let wanted = (span * plan.fps).round().max(0.0) as usize;
    let n = wanted
        .clamp(plan.min_frames, plan.max_frames)
        .min(timestamps.len());

    let mut picks = Vec::with_capacity(n);
    let mut next_free = 0usize;
    for k in 0..n {
        let target = first + k as f64 * span / n as f64;
        let nearest = nearest_index(timestamps, target);
        // Keep picks distinct and leave one frame for each later target.
        let latest_allowed = timestamps.len() - (n - k);
        let pick = nearest.max(next_free).min(latest_allowed);
        picks.push(pick);
        next_free = pick + 1;
    }
    Ok(picks)
}

fn check_timestamps(timestamps: &[f64]) -> Result<(), SampleError> {
    for (index, &timestamp) in timestamps.iter().enumerate() {
        if !timestamp.is_finite() {
            return Err(SampleError::NotFinite { index, timestamp });
        }
        if index > 0 && timestamp <= timestamps[index - 1] {
            return Err(SampleError::NotIncreasing {
                index,
                timestamp,
                previous: timestamps[index - 1],
            });
        }
    }
    Ok(())
}

/// Distances closer than this (seconds) count as a tie, so that a target
/// exactly halfway between two frames goes to the earlier one whatever the
/// floating-point rounding of the two distances.
const TIE_TOLERANCE: f64 = 1e-9;

/// Index of the timestamp nearest `target` (the earlier one on a tie).
/// `timestamps` is non-empty and strictly increasing.
fn nearest_index(timestamps: &[f64], target: f64) -> usize {
    let after = timestamps.partition_point(|&t| t < target);
    if after == 0 {
        return 0;
    }
    if after == timestamps.len() {
        return after - 1;
    }
    if target - timestamps[after - 1] <= timestamps[after] - target + TIE_TOLERANCE {
        after - 1
    } else {
        after
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(fps: f64, min: usize, max: usize) -> SamplingPlan {
        SamplingPlan {
            fps,
            min_frames: min,
            max_frames: max,
        }
    }

    fn at_rate(n: usize, fps: f64) -> Vec<f64> {
        (0..n).map(|i| i as f64 / fps).collect()
    }

    #[test]
    fn thirty_fps_two_seconds_at_eight_fps_keeps_sixteen_evenly() {
        let ts = at_rate(60, 30.0);
        let picks = sample_indices(&ts, 2.0, &plan(8.0, 1, 100)).unwrap();
        // Targets k/8 s; nearest 30 fps frame to k*3.75 frames, ties go early.
        let want: Vec<usize> = (0..16)
            .map(|k| {
                let exact = k as f64 * 30.0 / 8.0;
                let below = exact.floor();
                if exact - below <= 0.5 {
                    below as usize
                } else {
                    below as usize + 1
                }
            })
            .collect();
        assert_eq!(picks, want);
        assert_eq!(&picks[..5], &[0, 4, 7, 11, 15]);
    }

    #[test]
    fn same_rate_keeps_every_frame() {
        let ts = at_rate(16, 8.0);
        let picks = sample_indices(&ts, 2.0, &plan(8.0, 1, 100)).unwrap();
        assert_eq!(picks, (0..16).collect::<Vec<_>>());
    }

    #[test]
    fn max_frames_spreads_picks_over_the_whole_clip() {
        let ts = at_rate(100, 10.0); // 10 s
        let picks = sample_indices(&ts, 10.0, &plan(8.0, 1, 5)).unwrap();
        // 5 targets every 2 s.
        assert_eq!(picks, vec![0, 20, 40, 60, 80]);
    }

    #[test]
    fn min_frames_samples_short_clips_more_densely() {
        let ts = at_rate(30, 30.0); // 1 s -> 8 wanted, min 12
        let picks = sample_indices(&ts, 1.0, &plan(8.0, 12, 64)).unwrap();
        assert_eq!(picks.len(), 12);
        // Targets k/12 s = 2.5k frames; ties (x.5) go to the earlier frame.
        assert_eq!(picks, vec![0, 2, 5, 7, 10, 12, 15, 17, 20, 22, 25, 27]);
    }

    #[test]
    fn fewer_frames_than_min_keeps_them_all() {
        let ts = vec![0.0, 0.5, 1.0];
        let picks = sample_indices(&ts, 1.5, &plan(8.0, 8, 64)).unwrap();
        assert_eq!(picks, vec![0, 1, 2]);
    }

    #[test]
    fn variable_frame_rate_picks_nearest_in_time_without_repeats() {
        // Dense burst then a long gap then dense again.
        let ts = vec![0.0, 0.01, 0.02, 0.03, 1.0, 1.01, 1.02];
        // span 1.03 s at 4 fps -> 4 targets: 0, 0.2575, 0.515, 0.7725.
        let picks = sample_indices(&ts, 1.03, &plan(4.0, 1, 10)).unwrap();
        // Nearest frames: 0 -> 0; 0.2575 -> 3 (0.03); 0.515 is (about) halfway
        // between 3 and 4, and 3 is taken, so 4; 0.7725 -> 4 (1.0) is taken,
        // so the next one, 5.
        assert_eq!(picks, vec![0, 3, 4, 5]);
    }

    #[test]
    fn clip_not_starting_at_zero_samples_from_its_first_frame() {
        let ts: Vec<f64> = (0..16).map(|i| 3.0 + i as f64 / 8.0).collect();
        let picks = sample_indices(&ts, 5.0, &plan(4.0, 1, 100)).unwrap();
        assert_eq!(picks, vec![0, 2, 4, 6, 8, 10, 12, 14]);
    }

    #[test]
    fn median_gap_of_uneven_timestamps() {
        // Gaps 0.1, 0.1, 0.7 (as f64 differences): the middle one.
        assert_eq!(median_gap(&[0.0, 0.1, 0.2, 0.9]), Some(0.1));
        // Gaps 0.5, 1.0: the upper of the two middles.
        assert_eq!(median_gap(&[0.0, 0.5, 1.5]), Some(1.0));
        assert_eq!(median_gap(&[2.0]), None);
        assert_eq!(median_gap(&[]), None);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let p = plan(8.0, 1, 10);
        assert_eq!(sample_indices(&[], 1.0, &p), Err(SampleError::NoFrames));
        assert!(matches!(
            sample_indices(&[0.0, 0.0], 1.0, &p),
            Err(SampleError::NotIncreasing { index: 1, .. })
        ));
        assert!(matches!(
            sample_indices(&[0.0, f64::NAN], 1.0, &p),
            Err(SampleError::NotFinite { index: 1, .. })
        ));
        assert!(matches!(
            sample_indices(&[0.0, 2.0], 1.0, &p),
            Err(SampleError::EndBeforeLastFrame { .. })
        ));
        assert!(matches!(
            sample_indices(&[0.0], 1.0, &plan(8.0, 5, 4)),
            Err(SampleError::BadPlan { .. })
        ));
        assert!(matches!(
            sample_indices(&[0.0], 1.0, &plan(0.0, 1, 4)),
            Err(SampleError::BadPlan { .. })
        ));
    }
}
