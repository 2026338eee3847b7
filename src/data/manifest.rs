//! The manifest: one JSON object per line, one video and dimension per row.
//!
//! ```json
//! {"id":"v0001-visual","video":"videos/v0001.mp4","prompt":"a red ball rolls left",
//!  "dimension":"visual","mos":3.7,"generator":"gen-b","rationale":"…",
//!  "split":"train","clean_mos":3.9}
//! ```
//! `video` paths are relative to the manifest's directory unless absolute.

use super::Dimension;
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
    #[error("{path}:{line}: invalid manifest row: {source}")]
    Row {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: duplicate row id {id:?} (first on line {first})")]
    DuplicateId {
        path: PathBuf,
        line: usize,
        first: usize,
        id: String,
    },
    #[error("{path}: the manifest has no rows")]
    Empty { path: PathBuf },
    #[error("cannot write manifest {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A loaded manifest: its rows and the directory relative paths resolve in.
#[derive(Debug, Clone)]
pub struct Manifest {
    pub path: PathBuf,
    pub rows: Vec<ManifestRow>,
}

impl Manifest {
    /// Reads and checks a JSONL manifest: every line must parse, ids must be
    /// unique, blank lines are ignored.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
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
            let row: ManifestRow =
                serde_json::from_str(&line).map_err(|source| ManifestError::Row {
                    path: path.to_path_buf(),
                    line: i + 1,
                    source,
                })?;
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
}
