//! Append-only JSONL files whose committed length is part of a checkpoint.
//!
//! `metrics.jsonl` and `cooloff.jsonl` grow by one line per event. A
//! checkpoint records each file's byte length at that moment; resuming
//! truncates the file back to it, because every line written after the
//! checkpoint will be written again by the resumed run. That is what makes
//! "kill, resume" produce exactly the rows of an uninterrupted run: nothing
//! duplicated, nothing lost. Lines are flushed as they are written, so a
//! reader (`tail -f`, a plotting script) sees them at once.

use serde::Serialize;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum JsonlError {
    #[error("{path}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is {actual} bytes, shorter than the {committed} bytes the checkpoint committed: \
         the file was edited or replaced since, so resuming would lose rows"
    )]
    Shorter {
        path: PathBuf,
        actual: u64,
        committed: u64,
    },
    #[error("{path}: the committed length {committed} does not end a line")]
    NotLineEnd { path: PathBuf, committed: u64 },
    #[error("cannot serialize a row for {path}")]
    Serialize {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// An open append-only JSONL file.
#[derive(Debug)]
pub struct JsonlWriter {
    path: PathBuf,
    file: File,
    len: u64,
}

impl JsonlWriter {
    /// Starts the file empty (a fresh run).
    pub fn create(path: &Path) -> Result<Self, JsonlError> {
        let io = io_err(path);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(&io)?;
        }
        let file = File::create(path).map_err(&io)?;
        Ok(JsonlWriter {
            path: path.to_path_buf(),
            file,
            len: 0,
        })
    }

    /// Reopens the file of a resumed run and cuts it to `committed` bytes.
    pub fn resume(path: &Path, committed: u64) -> Result<Self, JsonlError> {
        let io = io_err(path);
        if committed == 0 && !path.exists() {
            return Self::create(path);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(&io)?;
        let actual = file.metadata().map_err(&io)?.len();
        if actual < committed {
            return Err(JsonlError::Shorter {
                path: path.to_path_buf(),
                actual,
                committed,
            });
        }
        if committed > 0 {
            use std::io::{Read, Seek, SeekFrom};
            let mut last = [0u8; 1];
            let mut f = &file;
            f.seek(SeekFrom::Start(committed - 1)).map_err(&io)?;
            f.read_exact(&mut last).map_err(&io)?;
            if last[0] != b'\n' {
                return Err(JsonlError::NotLineEnd {
                    path: path.to_path_buf(),
                    committed,
                });
            }
        }
        file.set_len(committed).map_err(&io)?;
        let mut w = JsonlWriter {
            path: path.to_path_buf(),
            file,
            len: committed,
        };
        use std::io::Seek;
        w.file
            .seek(std::io::SeekFrom::Start(committed))
            .map_err(&io)?;
        Ok(w)
    }

    /// Appends one row as a line and flushes it.
    pub fn append<T: Serialize>(&mut self, row: &T) -> Result<(), JsonlError> {
        let mut line = serde_json::to_vec(row).map_err(|source| JsonlError::Serialize {
            path: self.path.clone(),
            source,
        })?;
        line.push(b'\n');
        self.file.write_all(&line).map_err(io_err(&self.path))?;
        self.len += line.len() as u64;
        Ok(())
    }

    /// Forces written rows to disk (called before a checkpoint commits the
    /// length, so the committed bytes exist after a power loss too).
    pub fn sync(&mut self) -> Result<(), JsonlError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// Bytes written so far: what a checkpoint commits.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Reads every row of a JSONL file (blank lines skipped).
pub fn read_rows<T: serde::de::DeserializeOwned>(path: &Path) -> Result<Vec<T>, JsonlError> {
    let io = io_err(path);
    let file = File::open(path).map_err(&io)?;
    let mut rows = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(&io)?;
        if line.trim().is_empty() {
            continue;
        }
        let row = serde_json::from_str(&line).map_err(|e| JsonlError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("line {}: {e}", i + 1),
            ),
        })?;
        rows.push(row);
    }
    Ok(rows)
}

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> JsonlError + '_ {
    move |source| JsonlError::Io {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_truncates_to_the_committed_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut w = JsonlWriter::create(&path).unwrap();
        w.append(&serde_json::json!({"step": 1})).unwrap();
        let committed = w.len();
        w.append(&serde_json::json!({"step": 2})).unwrap();
        drop(w);
        let mut w = JsonlWriter::resume(&path, committed).unwrap();
        w.append(&serde_json::json!({"step": 2, "again": true}))
            .unwrap();
        let rows: Vec<serde_json::Value> = read_rows(&path).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["again"], true);
    }

    #[test]
    fn resume_refuses_a_file_shorter_than_committed_or_mid_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        std::fs::write(&path, "{\"a\":1}\n").unwrap();
        assert!(matches!(
            JsonlWriter::resume(&path, 100),
            Err(JsonlError::Shorter { .. })
        ));
        assert!(matches!(
            JsonlWriter::resume(&path, 3),
            Err(JsonlError::NotLineEnd { .. })
        ));
        assert!(JsonlWriter::resume(&path, 8).is_ok());
    }
}
