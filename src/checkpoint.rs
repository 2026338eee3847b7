//! Checkpoint directories: atomic writes, a `latest` pointer written last,
//! keep-last-N, and `--resume auto|PATH` resolution.
//!
//! Layout under `runs/<name>/checkpoints/`:
//! ```text
//! step_000010/      one complete checkpoint (whatever the trainer wrote)
//! step_000020/
//! latest            text file holding "step_000020"
//! ```
//! A checkpoint is written into `.tmp-step_XXXXXX/`, synced, and renamed into
//! place; only then is `latest` replaced (again through a temporary file and a
//! rename). A crash at any moment therefore leaves either the previous
//! complete state or the new one — never a half-written checkpoint that
//! `--resume auto` could pick. Leftover `.tmp-*` directories from a crash are
//! removed by the next save. What goes *inside* a checkpoint (weights,
//! optimizer, RNG and data cursor) is the trainer's business: it passes a
//! closure that fills the directory.
//!
//! The directory swap itself, [`replace_dir`], is shared with every other
//! directory that must never be seen half-written (a stage's `final/`
//! model export).

use std::path::{Path, PathBuf};

const LATEST: &str = "latest";
const TMP_PREFIX: &str = ".tmp-";

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint I/O on {path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: `latest` names {name:?}, which is not a complete checkpoint directory")]
    DanglingLatest { path: PathBuf, name: String },
    #[error("--resume {path}: not a checkpoint directory (expected a step_XXXXXX directory)")]
    NotACheckpoint { path: PathBuf },
    #[error("writing checkpoint {path}")]
    Write {
        path: PathBuf,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<DirIoError> for CheckpointError {
    fn from(e: DirIoError) -> Self {
        CheckpointError::Io {
            path: e.path,
            source: e.source,
        }
    }
}

/// An I/O failure while writing or swapping a directory in [`replace_dir`].
#[derive(Debug, thiserror::Error)]
#[error("{path}")]
pub struct DirIoError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

fn dir_io(path: &Path) -> impl Fn(std::io::Error) -> DirIoError + '_ {
    move |source| DirIoError {
        path: path.to_path_buf(),
        source,
    }
}

/// Replaces the directory `dest` (absent or not) with one that `fill`
/// writes: `fill` writes into the temporary sibling `.tmp-<name>` (a leftover
/// one from a crash is removed first), its files are synced, then it is
/// renamed to `dest`. A crash at any moment leaves `dest` as it was, absent,
/// or complete — never partly written. A failing `fill` leaves `dest`
/// untouched and its temporary directory behind (removed by the next call).
pub fn replace_dir<E: From<DirIoError>>(
    dest: &Path,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), E> {
    let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
    let tmp = dest.with_file_name(format!("{TMP_PREFIX}{}", name.unwrap_or_default()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(dir_io(&tmp))?;
    }
    std::fs::create_dir_all(&tmp).map_err(dir_io(&tmp))?;
    fill(&tmp)?;
    sync_dir_files(&tmp)?;
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(dir_io(dest))?;
    }
    std::fs::rename(&tmp, dest).map_err(dir_io(dest))?;
    Ok(())
}

/// How a run should start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resume {
    /// Start fresh (refusing to overwrite an existing run's checkpoints).
    No,
    /// Continue from `checkpoints/latest` if there is one, else start fresh.
    Auto,
    /// Continue from this checkpoint directory.
    Path(PathBuf),
}

impl std::str::FromStr for Resume {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Resume::Auto,
            "no" | "none" => Resume::No,
            path => Resume::Path(PathBuf::from(path)),
        })
    }
}

/// The `checkpoints/` directory of one run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    root: PathBuf,
    keep_last: usize,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// `step_000042`.
pub fn step_name(step: u64) -> String {
    format!("step_{step:06}")
}

fn parse_step(name: &str) -> Option<u64> {
    name.strip_prefix("step_")?.parse().ok()
}

impl CheckpointDir {
    /// `keep_last` complete checkpoints are kept (at least 1).
    pub fn new(root: impl Into<PathBuf>, keep_last: usize) -> Self {
        CheckpointDir {
            root: root.into(),
            keep_last: keep_last.max(1),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Writes checkpoint `step` atomically: `fill` writes files into a
    /// temporary directory, which is then synced and renamed into place;
    /// `latest` is updated last; old checkpoints beyond `keep_last` go.
    pub fn save<E: std::error::Error + Send + Sync + 'static>(
        &self,
        step: u64,
        fill: impl FnOnce(&Path) -> Result<(), E>,
    ) -> Result<PathBuf, CheckpointError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        self.remove_temporaries()?;
        let name = step_name(step);
        // An existing `dest` is a step saved again (e.g. Ctrl-C right after
        // a periodic save).
        let dest = self.root.join(&name);
        replace_dir(&dest, |tmp| {
            fill(tmp).map_err(|e| CheckpointError::Write {
                path: tmp.to_path_buf(),
                source: Box::new(e),
            })
        })?;
        self.write_latest(&name)?;
        self.prune()?;
        Ok(dest)
    }

    /// The checkpoint `latest` points at, if any.
    pub fn latest(&self) -> Result<Option<PathBuf>, CheckpointError> {
        let path = self.root.join(LATEST);
        let name = match std::fs::read_to_string(&path) {
            Ok(s) => s.trim().to_string(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        let dir = self.root.join(&name);
        if parse_step(&name).is_none() || !dir.is_dir() {
            return Err(CheckpointError::DanglingLatest { path, name });
        }
        Ok(Some(dir))
    }

    /// The checkpoint to resume from, or `None` for a fresh start.
    pub fn resolve(&self, resume: &Resume) -> Result<Option<PathBuf>, CheckpointError> {
        match resume {
            Resume::No => Ok(None),
            Resume::Auto => self.latest(),
            Resume::Path(p) => {
                let named = p
                    .file_name()
                    .and_then(|n| n.to_str())
                    .and_then(parse_step)
                    .is_some();
                if named && p.is_dir() {
                    Ok(Some(p.clone()))
                } else {
                    Err(CheckpointError::NotACheckpoint { path: p.clone() })
                }
            }
        }
    }

    /// Complete checkpoints, oldest first.
    pub fn list(&self) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(&self.root) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io(&self.root)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&self.root))?;
            if let Some(step) = entry.file_name().to_str().and_then(parse_step) {
                out.push((step, entry.path()));
            }
        }
        out.sort();
        Ok(out)
    }

    fn write_latest(&self, name: &str) -> Result<(), CheckpointError> {
        let tmp = self.root.join(format!("{TMP_PREFIX}{LATEST}"));
        let path = self.root.join(LATEST);
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(io(&tmp))?;
            writeln!(f, "{name}").map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        sync_dir(&self.root)?;
        Ok(())
    }

    fn prune(&self) -> Result<(), CheckpointError> {
        let all = self.list()?;
        let excess = all.len().saturating_sub(self.keep_last);
        for (_, path) in &all[..excess] {
            std::fs::remove_dir_all(path).map_err(io(path))?;
        }
        Ok(())
    }

    fn remove_temporaries(&self) -> Result<(), CheckpointError> {
        for entry in std::fs::read_dir(&self.root).map_err(io(&self.root))? {
            let entry = entry.map_err(io(&self.root))?;
            let is_tmp = entry
                .file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(TMP_PREFIX));
            if is_tmp {
                let p = entry.path();
                if p.is_dir() {
                    std::fs::remove_dir_all(&p).map_err(io(&p))?;
                } else {
                    std::fs::remove_file(&p).map_err(io(&p))?;
                }
            }
        }
        Ok(())
    }
}

/// fsyncs every file in `dir` and the directory itself.
fn sync_dir_files(dir: &Path) -> Result<(), DirIoError> {
    for entry in std::fs::read_dir(dir).map_err(dir_io(dir))? {
        let path = entry.map_err(dir_io(dir))?.path();
        if path.is_file() {
            std::fs::File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(dir_io(&path))?;
        } else if path.is_dir() {
            sync_dir_files(&path)?;
        }
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), DirIoError> {
    std::fs::File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(dir_io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_marker(dir: &Path, text: &str) -> Result<(), std::io::Error> {
        std::fs::write(dir.join("state.txt"), text)
    }

    #[test]
    fn save_points_latest_and_keeps_last_n() {
        let tmp = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::new(tmp.path().join("checkpoints"), 2);
        assert_eq!(ck.latest().unwrap(), None);
        for step in [10, 20, 30] {
            ck.save(step, |d| write_marker(d, &step.to_string()))
                .unwrap();
        }
        let latest = ck.latest().unwrap().unwrap();
        assert!(latest.ends_with("step_000030"));
        let steps: Vec<u64> = ck.list().unwrap().into_iter().map(|(s, _)| s).collect();
        assert_eq!(steps, vec![20, 30]);
        assert_eq!(ck.resolve(&Resume::Auto).unwrap(), Some(latest));
        assert_eq!(ck.resolve(&Resume::No).unwrap(), None);
    }

    #[test]
    fn a_failed_fill_leaves_the_previous_checkpoint_in_charge() {
        let tmp = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::new(tmp.path(), 3);
        ck.save(1, |d| write_marker(d, "one")).unwrap();
        let err = ck
            .save(2, |d| {
                write_marker(d, "half")?;
                Err(std::io::Error::other("disk full"))
            })
            .unwrap_err();
        let err = crate::errors::chain(&err);
        assert!(err.contains("disk full"), "{err}");
        assert!(ck.latest().unwrap().unwrap().ends_with("step_000001"));
        assert_eq!(ck.list().unwrap().len(), 1);
        // The next save cleans the leftover temporary directory.
        ck.save(3, |d| write_marker(d, "three")).unwrap();
        let leftovers = std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with(TMP_PREFIX)
            })
            .count();
        assert_eq!(leftovers, 0);
    }

    #[test]
    fn replace_dir_swaps_the_whole_directory_or_nothing() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("final");
        replace_dir(&dest, |d| write_marker(d, "one").map_err(|e| dir_io(d)(e))).unwrap();
        std::fs::write(dest.join("stale.txt"), "old").unwrap();
        // A failing fill leaves the previous directory as it was.
        let err = replace_dir(&dest, |d| {
            write_marker(d, "half").map_err(|e| dir_io(d)(e))?;
            Err(dir_io(d)(std::io::Error::other("disk full")))
        })
        .unwrap_err();
        let err = crate::errors::chain(&err);
        assert!(err.contains("disk full"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dest.join("state.txt")).unwrap(),
            "one"
        );
        // A successful one replaces it whole (no file of the old one stays)
        // and clears the failed attempt's temporary directory.
        replace_dir(&dest, |d| write_marker(d, "two").map_err(|e| dir_io(d)(e))).unwrap();
        assert_eq!(
            std::fs::read_to_string(dest.join("state.txt")).unwrap(),
            "two"
        );
        assert!(!dest.join("stale.txt").exists());
        let names: Vec<String> = std::fs::read_dir(root.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec!["final".to_string()]);
    }

    #[test]
    fn resume_paths_are_checked() {
        let tmp = tempfile::tempdir().unwrap();
        let ck = CheckpointDir::new(tmp.path(), 1);
        let bad = Resume::Path(tmp.path().join("nope"));
        assert!(matches!(
            ck.resolve(&bad),
            Err(CheckpointError::NotACheckpoint { .. })
        ));
        std::fs::write(tmp.path().join(LATEST), "step_000009\n").unwrap();
        assert!(matches!(
            ck.latest(),
            Err(CheckpointError::DanglingLatest { .. })
        ));
        assert_eq!("auto".parse::<Resume>().unwrap(), Resume::Auto);
    }
}
