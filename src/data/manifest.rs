//! The manifest: one JSON object per line, one video and dimension per row.
//!
//! ```json
//! {"id":"v0001-visual","video":"videos/v0001.mp4","prompt":"a red ball rolls left",
//!  "dimension":"visual","mos":3.7,"generator":"gen-b","rationale":"…",
//!  "split":"train","clean_mos":3.9}
//! ```
//! `video` paths are relative to the manifest's directory unless absolute.

use super::{Dimension, MosScale};
use serde::{Deserialize, Serialize};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

/// Which part of the data set a row belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    Train,
    Test,
}

/// One judged (video, dimension) pair.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestRow {
    /// Unique row id.
    pub id: String,
    /// Path of the video file, relative to the manifest's directory.
    pub video: PathBuf,
    /// The text prompt the video was generated from.
    pub prompt: String,
    pub dimension: Dimension,
    /// Mean opinion score on the data set's MOS scale (1–5 by default).
    pub mos: f32,
    /// Which generator produced the video (for model-level metrics).
    pub generator: String,
    /// A human-style attribution of the score, used as the cold-start
    /// `<think>` text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<Split>,
    /// The noise-free score (synthetic data only): the best any evaluator
    /// could track, which gives the data set's noise ceiling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clean_mos: Option<f32>,
}

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("cannot read manifest {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A line that is not a manifest row; `field` is the row's key the
    /// error is in, when it is in one (serde's own message does not say
    /// which key held a value of the wrong type).
    #[error("{path}:{line}: invalid manifest row{}", in_field(field.as_deref()))]
    Row {
        path: PathBuf,
        line: usize,
        field: Option<String>,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: duplicate row id {id:?} (first on line {first})")]
    DuplicateId {
        path: PathBuf,
        line: usize,
        first: usize,
        id: String,
    },
    #[error("{path}:{line}: row {id:?} has MOS {mos}; a MOS must be a finite number")]
    NonFiniteMos {
        path: PathBuf,
        line: usize,
        id: String,
        mos: f32,
    },
    #[error(
        "{path}:{line}: row {id:?} has MOS {mos}, outside the data set's MOS scale \
         [{min}, {max}] (data.mos_min, data.mos_max)"
    )]
    MosOutOfScale {
        path: PathBuf,
        line: usize,
        id: String,
        mos: f32,
        min: f32,
        max: f32,
    },
    #[error("{path}: the manifest has no rows")]
    Empty { path: PathBuf },
    #[error("cannot write manifest {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// " (field `mos`)" for an error inside a row's key, nothing for one about
/// the row as a whole (its syntax, a missing or unknown key).
fn in_field(field: Option<&str>) -> String {
    field.map_or_else(String::new, |f| format!(" (field `{f}`)"))
}

/// A loaded manifest: its rows and the directory relative paths resolve in.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub rows: Vec<ManifestRow>,
}

impl Manifest {
    /// Reads and checks a JSONL manifest: every line must parse, ids must be
    /// unique, every MOS must be a finite number; blank lines are ignored.
    /// Where the data set's MOS scale is known, use
    /// [`load_in_scale`](Self::load_in_scale), which also checks the range.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        Self::read(path, None)
    }

    /// [`load`](Self::load), and every MOS must lie in `scale` (the run's
    /// `[data] mos_min`/`mos_max`): a MOS off the scale would silently clamp
    /// to an end rating and pull the score regression outside `[0, 1]`.
    pub fn load_in_scale(path: &Path, scale: MosScale) -> Result<Manifest, ManifestError> {
        Self::read(path, Some(scale))
    }

    fn read(path: &Path, scale: Option<MosScale>) -> Result<Manifest, ManifestError> {
        let io = |source| ManifestError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        let mut rows = Vec::new();
        let mut first_line = std::collections::HashMap::new();
        for (i, line) in BufReader::new(file).lines().enumerate() {
            let line = line.map_err(io)?;
            if line.trim().is_empty() {
                continue;
            }
            let row = parse_row(&line).map_err(|(field, source)| ManifestError::Row {
                path: path.to_path_buf(),
                line: i + 1,
                field,
                source,
            })?;
            check_mos(&row, scale, path, i + 1)?;
            if let Some(&first) = first_line.get(&row.id) {
                return Err(ManifestError::DuplicateId {
                    path: path.to_path_buf(),
                    line: i + 1,
                    first,
                    id: row.id,
                });
            }
            first_line.insert(row.id.clone(), i + 1);
            rows.push(row);
        }
        if rows.is_empty() {
            return Err(ManifestError::Empty {
                path: path.to_path_buf(),
            });
        }
        Ok(Manifest {
            path: path.to_path_buf(),
            rows,
        })
    }

    /// The absolute (or manifest-relative) path of a row's video.
    pub fn video_path(&self, row: &ManifestRow) -> PathBuf {
        match self.path.parent() {
            Some(dir) if row.video.is_relative() => dir.join(&row.video),
            _ => row.video.clone(),
        }
    }

    /// The rows of one split (rows without a split belong to every split).
    pub fn split(&self, split: Split) -> impl Iterator<Item = &ManifestRow> {
        self.rows
            .iter()
            .filter(move |r| r.split.is_none_or(|s| s == split))
    }

    /// Writes rows as JSONL through a temporary file and a rename, so a crash
    /// never leaves a half-written manifest.
    pub fn write(path: &Path, rows: &[ManifestRow]) -> Result<(), ManifestError> {
        let err = |source| ManifestError::Write {
            path: path.to_path_buf(),
            source,
        };
        let tmp = path.with_extension("jsonl.tmp");
        let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(err)?);
        for row in rows {
            let line = serde_json::to_string(row).map_err(|e| err(std::io::Error::other(e)))?;
            writeln!(out, "{line}").map_err(err)?;
        }
        out.into_inner()
            .map_err(|e| err(e.into_error()))?
            .sync_all()
            .map_err(err)?;
        std::fs::rename(&tmp, path).map_err(err)
    }
}

/// One line as a row. On failure, the key the error is in (through
/// `serde_path_to_error`, which tracks where the deserializer was) and
/// serde's error.
fn parse_row(line: &str) -> Result<ManifestRow, (Option<String>, serde_json::Error)> {
    let mut de = serde_json::Deserializer::from_str(line);
    let row: ManifestRow = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = e.path().to_string();
        // "." is the row itself: a syntax error, a missing or unknown key.
        let field = (field != ".").then_some(field);
        (field, e.into_inner())
    })?;
    // Trailing characters after the object, as `serde_json::from_str` refuses.
    de.end().map_err(|e| (None, e))?;
    Ok(row)
}

/// A row's MOS is a finite number, and on `scale` when it is given.
fn check_mos(
    row: &ManifestRow,
    scale: Option<MosScale>,
    path: &Path,
    line: usize,
) -> Result<(), ManifestError> {
    let mos = row.mos;
    if !mos.is_finite() {
        return Err(ManifestError::NonFiniteMos {
            path: path.to_path_buf(),
            line,
            id: row.id.clone(),
            mos,
        });
    }
    match scale {
        Some(MosScale { min, max }) if !(min..=max).contains(&mos) => {
            Err(ManifestError::MosOutOfScale {
                path: path.to_path_buf(),
                line,
                id: row.id.clone(),
                mos,
                min,
                max,
            })
        }
        _ => Ok(()),
    }
}

/// Whether two paths are equal as written or name the same existing file
/// (the file system is asked only when the texts differ).
pub fn same_file(a: &Path, b: &Path) -> bool {
    a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errors::chain;

    fn row(id: &str) -> ManifestRow {
        ManifestRow {
            id: id.into(),
            video: "videos/a.mp4".into(),
            prompt: "a red ball".into(),
            dimension: Dimension::Visual,
            mos: 3.5,
            generator: "gen-a".into(),
            rationale: None,
            split: Some(Split::Train),
            clean_mos: Some(3.6),
        }
    }

    #[test]
    fn round_trip_and_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.jsonl");
        Manifest::write(&path, &[row("a"), row("b")]).unwrap();
        let m = Manifest::load(&path).unwrap();
        assert_eq!(m.rows, vec![row("a"), row("b")]);
        assert_eq!(m.video_path(&m.rows[0]), dir.path().join("videos/a.mp4"));
    }

    #[test]
    fn errors_name_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let good = serde_json::to_string(&row("a")).unwrap();
        std::fs::write(&path, format!("{good}\n{good}\n")).unwrap();
        let e = chain(&Manifest::load(&path).unwrap_err());
        assert!(
            e.contains(":2: duplicate row id \"a\" (first on line 1)"),
            "{e}"
        );
        std::fs::write(&path, format!("{good}\n{{\"id\":\"b\",\"bogus\":1}}\n")).unwrap();
        let e = chain(&Manifest::load(&path).unwrap_err());
        assert!(e.contains("m.jsonl:2: invalid manifest row"), "{e}");
    }

    /// The manifest's second line is `row` with `edit` applied to its JSON.
    fn load_edited(
        edit: impl FnOnce(&mut serde_json::Value),
        scale: Option<MosScale>,
    ) -> Result<Manifest, ManifestError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut bad = serde_json::to_value(row("b")).unwrap();
        edit(&mut bad);
        let good = serde_json::to_string(&row("a")).unwrap();
        std::fs::write(&path, format!("{good}\n{bad}\n")).unwrap();
        match scale {
            Some(scale) => Manifest::load_in_scale(&path, scale),
            None => Manifest::load(&path),
        }
    }

    #[test]
    fn a_mos_off_the_scale_names_the_line_the_row_and_the_bounds() {
        let err = load_edited(|r| r["mos"] = 9.5.into(), Some(MosScale::default())).unwrap_err();
        assert!(
            matches!(err, ManifestError::MosOutOfScale { line: 2, .. }),
            "{err:?}"
        );
        let e = chain(&err);
        assert!(
            e.ends_with(
                "m.jsonl:2: row \"b\" has MOS 9.5, outside the data set's MOS scale [1, 5] \
                 (data.mos_min, data.mos_max)"
            ),
            "{e}"
        );
        // Below the scale too, and on another scale.
        let e =
            chain(&load_edited(|r| r["mos"] = 0.5.into(), Some(MosScale::default())).unwrap_err());
        assert!(
            e.contains("has MOS 0.5, outside the data set's MOS scale [1, 5]"),
            "{e}"
        );
        let percent = MosScale {
            min: 0.0,
            max: 100.0,
        };
        assert!(load_edited(|r| r["mos"] = 9.5.into(), Some(percent)).is_ok());
        let e = chain(&load_edited(|r| r["mos"] = 100.5.into(), Some(percent)).unwrap_err());
        assert!(
            e.contains("MOS 100.5, outside the data set's MOS scale [0, 100]"),
            "{e}"
        );
        // The ends belong to the scale; without a scale any finite MOS loads.
        assert!(load_edited(|r| r["mos"] = 5.0.into(), Some(MosScale::default())).is_ok());
        assert!(load_edited(|r| r["mos"] = 1.0.into(), Some(MosScale::default())).is_ok());
        assert!(load_edited(|r| r["mos"] = 9.5.into(), None).is_ok());
    }

    #[test]
    fn a_non_finite_mos_is_refused_with_or_without_a_scale() {
        // 1e39 is a valid JSON number but overflows f32 to infinity.
        for scale in [None, Some(MosScale::default())] {
            let err = load_edited(|r| r["mos"] = 1e39.into(), scale).unwrap_err();
            let e = chain(&err);
            assert!(
                matches!(err, ManifestError::NonFiniteMos { line: 2, .. }),
                "{e}"
            );
            assert!(
                e.ends_with("m.jsonl:2: row \"b\" has MOS inf; a MOS must be a finite number"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_value_of_the_wrong_type_names_its_field() {
        let err = load_edited(|r| r["mos"] = "4.1".into(), None).unwrap_err();
        let e = chain(&err);
        assert!(
            e.contains(
                "m.jsonl:2: invalid manifest row (field `mos`): invalid type: string \"4.1\""
            ),
            "{e}"
        );
        for (key, value) in [
            ("split", serde_json::json!("validation")),
            ("dimension", serde_json::json!(3)),
            ("clean_mos", serde_json::json!([3.5])),
            ("id", serde_json::json!(7)),
        ] {
            let e = chain(&load_edited(|r| r[key] = value, None).unwrap_err());
            assert!(
                e.contains(&format!(
                    "m.jsonl:2: invalid manifest row (field `{key}`): "
                )),
                "{e}"
            );
        }
        // An error about the row as a whole names no field; serde's own
        // message says which key is missing or unknown.
        let e = chain(
            &load_edited(
                |r| {
                    r.as_object_mut().unwrap().remove("mos");
                },
                None,
            )
            .unwrap_err(),
        );
        assert!(
            e.contains("m.jsonl:2: invalid manifest row: missing field `mos`"),
            "{e}"
        );
    }

    #[test]
    fn trailing_text_after_a_row_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let good = serde_json::to_string(&row("a")).unwrap();
        std::fs::write(&path, format!("{good} x\n")).unwrap();
        let e = chain(&Manifest::load(&path).unwrap_err());
        assert!(
            e.contains("m.jsonl:1: invalid manifest row: trailing characters"),
            "{e}"
        );
    }
}
