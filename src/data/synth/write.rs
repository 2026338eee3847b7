//! Writing a planned set to disk: `DIR/synth.json` (what was asked for),
//! `DIR/videos/<id>.mp4` (H.264), then `DIR/manifest.jsonl` last, so a
//! manifest exists only once every video it names does.
//!
//! Every file is written under a temporary name and renamed into place, so
//! an interrupted run never leaves a truncated video under its final name.
//! Rerunning with the same config into a complete directory rewrites
//! nothing; a directory made with another config, or any other non-empty
//! directory, is refused rather than mixed into.

use super::config::{InvalidSynthConfig, SynthConfig};
use super::plan::{VideoPlan, plan_set, render_video};
use super::stats::{SynthSummary, summarise};
use crate::data::{Manifest, ManifestError, ManifestRow};
use crate::video::{Container, EncodeError, EncodeSettings, encode_video};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Bumped whenever the same config starts producing different output, so
/// an old directory is not mistaken for a current one.
pub const GENERATOR_VERSION: u32 = 1;

/// x264 CRF of the written clips. Low (near-lossless) on purpose: the
/// codec must not smooth away the noise or add blocking the labels do not
/// account for. A 16-frame 96×64 clip is a few kB even so.
const CRF: u8 = 12;

/// The file that records which config produced a directory.
const STAMP: &str = "synth.json";
const MANIFEST: &str = "manifest.jsonl";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stamp {
    generator_version: u32,
    config: SynthConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error(transparent)]
    Config(#[from] InvalidSynthConfig),
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not a synthetic data set ({STAMP} is unreadable); delete it or choose another output directory", path.display())]
    BadStamp {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error(
        "{} is not empty and holds no {STAMP}, so it is not a synthetic data set; refusing to write into it",
        path.display()
    )]
    ForeignDirectory { path: PathBuf },
    #[error(
        "{} holds a synthetic set made with a different config ({differences}); delete it or choose another output directory",
        path.display()
    )]
    DifferentConfig { path: PathBuf, differences: String },
    #[error(transparent)]
    Encode(#[from] EncodeError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SynthError {
    let path = path.to_path_buf();
    move |source| SynthError::Io {
        action,
        path,
        source,
    }
}

/// Generates the set described by `cfg` into `out_dir` and summarises it.
pub fn generate(out_dir: &Path, cfg: &SynthConfig) -> Result<SynthSummary, SynthError> {
    let plans = plan_set(cfg)?;
    let stamp = Stamp {
        generator_version: GENERATOR_VERSION,
        config: cfg.clone(),
    };
    if check_existing(out_dir, &stamp, &plans)? {
        return Ok(summarise(&plans, true));
    }
    let videos = out_dir.join("videos");
    std::fs::create_dir_all(&videos).map_err(io_error("create directory", &videos))?;
    let stamp_json = serde_json::to_string_pretty(&stamp).map_err(|e| SynthError::Io {
        action: "serialise the config for",
        path: out_dir.join(STAMP),
        source: std::io::Error::other(e),
    })?;
    write_atomically(&out_dir.join(STAMP), stamp_json.as_bytes())?;

    let settings = EncodeSettings::new(Container::Mp4, f64::from(cfg.fps)).with_quality(CRF);
    for plan in &plans {
        let path = out_dir.join(plan.video_path());
        let partial = path.with_extension("mp4.partial");
        encode_video(&partial, &render_video(plan, cfg), &settings)?;
        std::fs::rename(&partial, &path).map_err(io_error("rename into place", &partial))?;
    }
    let rows: Vec<ManifestRow> = plans.iter().flat_map(VideoPlan::rows).collect();
    Manifest::write(&out_dir.join(MANIFEST), &rows)?;
    Ok(summarise(&plans, false))
}

/// Makes `manifest` the synthetic set `cfg` describes: writes the set into
/// the manifest's directory when it is missing or incomplete, leaves a
/// complete set of the same config alone, and refuses a set made with
/// another config ([`SynthError::DifferentConfig`]) rather than letting a run
/// silently judge other data than its config says. A manifest whose
/// directory holds no `synth.json` is a user's own data set: left alone.
/// `what` names the set in the log.
pub fn ensure_synthetic_set(
    manifest: &Path,
    cfg: &SynthConfig,
    what: &str,
) -> Result<(), SynthError> {
    let dir = manifest.parent().map(Path::to_path_buf).unwrap_or_default();
    if manifest.is_file() && !dir.join(STAMP).is_file() {
        return Ok(());
    }
    let summary = generate(&dir, cfg)?;
    log::info!("{what} in {}: {summary}", dir.display());
    Ok(())
}

/// Decides what to do with an existing output directory: `Ok(true)` when it
/// already holds exactly this set, `Ok(false)` when it is missing, empty,
/// or an incomplete run of this config (generation then overwrites it).
fn check_existing(out_dir: &Path, stamp: &Stamp, plans: &[VideoPlan]) -> Result<bool, SynthError> {
    if !out_dir.exists() {
        return Ok(false);
    }
    let stamp_path = out_dir.join(STAMP);
    if !stamp_path.exists() {
        let mut entries = std::fs::read_dir(out_dir).map_err(io_error("list", out_dir))?;
        return match entries.next() {
            None => Ok(false),
            Some(_) => Err(SynthError::ForeignDirectory {
                path: out_dir.to_path_buf(),
            }),
        };
    }
    let text = std::fs::read_to_string(&stamp_path).map_err(io_error("read", &stamp_path))?;
    let existing: Stamp = serde_json::from_str(&text).map_err(|source| SynthError::BadStamp {
        path: out_dir.to_path_buf(),
        source,
    })?;
    if existing != *stamp {
        return Err(SynthError::DifferentConfig {
            path: out_dir.to_path_buf(),
            differences: differences(&existing, stamp),
        });
    }
    // Complete = the manifest is the one this config plans and every video
    // it names is there. Anything less is an interrupted run: redo it.
    let Ok(manifest) = Manifest::load(&out_dir.join(MANIFEST)) else {
        return Ok(false);
    };
    let planned: Vec<ManifestRow> = plans.iter().flat_map(VideoPlan::rows).collect();
    let videos_present = plans.iter().all(|p| {
        std::fs::metadata(out_dir.join(p.video_path())).is_ok_and(|m| m.is_file() && m.len() > 0)
    });
    Ok(manifest.rows == planned && videos_present)
}

/// "videos 60 → 120, seed 1 → 2".
fn differences(old: &Stamp, new: &Stamp) -> String {
    // Through the JSON text rather than `to_value`: `to_value` widens an f32
    // to f64 and prints `test_fraction` 0.2 as 0.20000000298023224; the text
    // holds the f32's shortest form, which reads back as the number written.
    let as_map = |s: &Stamp| match serde_json::to_string(s).and_then(|t| serde_json::from_str(&t)) {
        Ok(serde_json::Value::Object(mut m)) => {
            let config = m.remove("config");
            if let Some(serde_json::Value::Object(c)) = config {
                m.extend(c);
            }
            m
        }
        _ => serde_json::Map::new(),
    };
    let (a, b) = (as_map(old), as_map(new));
    let diffs: Vec<String> = b
        .iter()
        .filter_map(|(k, v)| {
            let was = a
                .get(k)
                .map_or_else(|| "unset".to_string(), |x| x.to_string());
            (a.get(k) != Some(v)).then(|| format!("{k} {was} → {v}"))
        })
        .collect();
    diffs.join(", ")
}

/// Writes `bytes` to `path` through a temporary sibling and a rename.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), SynthError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).map_err(io_error("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_error("rename into place", &tmp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_print_numbers_as_written() {
        let stamp = |config| Stamp {
            generator_version: GENERATOR_VERSION,
            config,
        };
        let old = stamp(SynthConfig::default());
        let new = stamp(SynthConfig {
            videos: 60,
            test_fraction: 0.3,
            rater_noise: 0.1,
            ..SynthConfig::default()
        });
        assert_eq!(
            differences(&old, &new),
            "rater_noise 0.25 → 0.1, test_fraction 0.2 → 0.3, videos 120 → 60"
        );
    }
}
