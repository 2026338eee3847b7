//! What the synthetic set looks like: size, seed, clip geometry, split and
//! rater noise. Parsed from TOML/JSON (unknown keys are errors) and checked
//! by [`SynthConfig::validate`] before anything is generated.

use crate::config::rules::Rules;
use serde::{Deserialize, Serialize};

/// Settings of one synthetic data set. Every field has a default, so an
/// empty table is a valid config (the embedded demo set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthConfig {
    /// Number of videos; each gives three manifest rows (one per dimension).
    pub videos: usize,
    /// Root seed: the same seed and config give byte-identical frames and
    /// manifest.
    pub seed: u64,
    /// Frame width in pixels (even: H.264 4:2:0 needs even sizes).
    pub width: u32,
    /// Frame height in pixels (even).
    pub height: u32,
    /// Frames per second of the written clips.
    pub fps: u32,
    /// Clip length in seconds.
    pub seconds: f32,
    /// Fraction of videos (per generator) held out as the test split.
    pub test_fraction: f32,
    /// Standard deviation of the simulated rater noise added to the
    /// noise-free score, in MOS points.
    pub rater_noise: f32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            videos: 120,
            seed: 0,
            width: 96,
            height: 64,
            fps: 8,
            seconds: 2.0,
            test_fraction: 0.2,
            rater_noise: 0.25,
        }
    }
}

/// A config value that breaks a rule; the message states the rule and the
/// offending number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("synth config: {key} {rule}, got {got}")]
pub struct InvalidSynthConfig {
    pub key: &'static str,
    pub rule: String,
    pub got: String,
}

/// Frame sizes the generator accepts (the scene layout needs room for two
/// objects; larger clips would make the CPU demo slow for no gain).
const MIN_SIDE: u32 = 32;
const MAX_SIDE: u32 = 1024;
/// Dynamic defects (stutter, freezes) need a handful of frames to exist.
const MIN_FRAMES: u32 = 6;
const MAX_FRAMES: u32 = 600;

impl SynthConfig {
    /// Number of frames per clip: `round(fps · seconds)`.
    pub fn frames(&self) -> u32 {
        (self.fps as f32 * self.seconds).round() as u32
    }

    /// [`SynthConfig::validate`] inside a config: the first broken rule is
    /// reported under `{p}.{key}` (`p` is the section, e.g. `pretrain.synth`).
    pub fn check(&self, p: &str, rules: &mut Rules) {
        if let Err(e) = self.validate() {
            rules.check(false, &format!("{p}.{}", e.key), || e.to_string());
        }
    }

    /// Checks every rule; the first broken one is returned.
    pub fn validate(&self) -> Result<(), InvalidSynthConfig> {
        let bad = |key, rule: String, got: String| Err(InvalidSynthConfig { key, rule, got });
        if self.videos == 0 {
            return bad("videos", "must be at least 1".into(), "0".into());
        }
        for (key, side) in [("width", self.width), ("height", self.height)] {
            if !(MIN_SIDE..=MAX_SIDE).contains(&side) || side % 2 != 0 {
                return bad(
                    key,
                    format!("must be even and between {MIN_SIDE} and {MAX_SIDE} pixels"),
                    side.to_string(),
                );
            }
        }
        if !(1..=60).contains(&self.fps) {
            return bad(
                "fps",
                "must be between 1 and 60".into(),
                self.fps.to_string(),
            );
        }
        if !(self.seconds.is_finite() && self.seconds > 0.0) {
            return bad(
                "seconds",
                "must be a positive number".into(),
                self.seconds.to_string(),
            );
        }
        let frames = self.frames();
        if !(MIN_FRAMES..=MAX_FRAMES).contains(&frames) {
            return bad(
                "seconds",
                format!(
                    "times fps ({}) must give between {MIN_FRAMES} and {MAX_FRAMES} frames \
                     (that is {frames} frames)",
                    self.fps
                ),
                self.seconds.to_string(),
            );
        }
        if !(0.0..1.0).contains(&self.test_fraction) {
            return bad(
                "test_fraction",
                "must be in [0, 1)".into(),
                self.test_fraction.to_string(),
            );
        }
        if !(0.0..=2.0).contains(&self.rater_noise) {
            return bad(
                "rater_noise",
                "must be between 0 and 2 MOS points".into(),
                self.rater_noise.to_string(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid_and_sixteen_frames() {
        let c = SynthConfig::default();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.frames(), 16);
    }

    #[test]
    fn errors_state_rule_and_number() {
        let c = SynthConfig {
            width: 95,
            ..SynthConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "synth config: width must be even and between 32 and 1024 pixels, got 95"
        );
        let c = SynthConfig {
            seconds: 0.5,
            ..SynthConfig::default()
        };
        assert_eq!(
            c.validate().unwrap_err().to_string(),
            "synth config: seconds times fps (8) must give between 6 and 600 frames \
             (that is 4 frames), got 0.5"
        );
        let c = SynthConfig {
            test_fraction: 1.0,
            ..SynthConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("test_fraction must be in [0, 1), got 1")
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let e = serde_json::from_str::<SynthConfig>(r#"{"videos": 3, "colour": 1}"#).unwrap_err();
        assert!(e.to_string().contains("unknown field `colour`"), "{e}");
        let c: SynthConfig = serde_json::from_str(r#"{"videos": 3}"#).unwrap();
        assert_eq!(c.videos, 3);
        assert_eq!(c.fps, 8);
    }
}
