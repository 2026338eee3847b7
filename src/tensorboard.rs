//! TensorBoard event files: every run directory gets
//! `events.out.tfevents.<seconds>.vgrpo`, which `tensorboard --logdir runs`
//! reads — one scalar per `metrics.jsonl` field under the same name (verl's
//! and TRL's: `reward/mean`, `kl`, `timing_s/gen`, …) at the row's step,
//! and text summaries (a few sampled rollouts per GRPO step).
//!
//! Written by hand, not with a crate: the ones there are (`tensorboard-rs`,
//! `syntaxdot-summary`) have had no release since 2022, and the first pulls
//! in an image stack and protobuf 2 for what is three protobuf messages in
//! a TFRecord file. The format:
//!
//! ```text
//! record  = u64 length (LE) · u32 masked CRC32C(length) · data · u32 masked CRC32C(data)
//! Event   = wall_time (1: double) · step (2: int64) · file_version (3: string)
//!         | summary (5: Summary)
//! Summary = repeated value (1: Value)
//! Value   = tag (1: string) · simple_value (2: float)
//!         | tag · metadata (9: SummaryMetadata{plugin_data{plugin_name "text"}})
//!                · tensor (8: TensorProto{dtype DT_STRING, tensor_shape {}, string_val})
//! ```
//!
//! A resumed run opens a new file; TensorBoard drops the events of the old
//! one at and after the step the resume restarts from (its orphaned-data
//! purge), so the curves show each step once.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("TensorBoard event file {path}")]
pub struct EventError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// An open event file.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Creates a new event file in `dir` and writes its header event.
    pub fn create(dir: &Path) -> Result<EventWriter, EventError> {
        let seconds = wall_time();
        let path = dir.join(format!("events.out.tfevents.{}.vgrpo", seconds as u64));
        let err = |source| EventError {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let file = BufWriter::new(File::create(&path).map_err(err)?);
        let mut writer = EventWriter { path, file };
        let mut event = Vec::new();
        put_double(&mut event, 1, seconds);
        put_bytes(&mut event, 3, b"brain.Event:2");
        writer.record(&event)?;
        writer.flush()?;
        Ok(writer)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One scalar per numeric leaf of `row` (a `metrics.jsonl` row), named by
    /// its key path joined with `/`; `step` and non-numbers are left out.
    pub fn scalars(&mut self, step: u64, row: &serde_json::Value) -> Result<(), EventError> {
        let mut values = Vec::new();
        flatten("", row, &mut values);
        let mut summary = Vec::new();
        for (tag, value) in values.iter().filter(|(tag, _)| tag != "step") {
            let mut v = Vec::new();
            put_bytes(&mut v, 1, tag.as_bytes());
            put_float(&mut v, 2, *value as f32);
            put_bytes(&mut summary, 1, &v);
        }
        self.summary(step, &summary)
    }

    /// A text summary (rendered as Markdown by TensorBoard's text plugin).
    pub fn text(&mut self, step: u64, tag: &str, text: &str) -> Result<(), EventError> {
        let mut plugin = Vec::new();
        put_bytes(&mut plugin, 1, b"text");
        let mut metadata = Vec::new();
        put_bytes(&mut metadata, 1, &plugin);
        let mut tensor = Vec::new();
        put_varint_field(&mut tensor, 1, 7); // DT_STRING
        put_bytes(&mut tensor, 2, &[]); // scalar shape
        put_bytes(&mut tensor, 8, text.as_bytes());
        let mut value = Vec::new();
        put_bytes(&mut value, 1, tag.as_bytes());
        put_bytes(&mut value, 9, &metadata);
        put_bytes(&mut value, 8, &tensor);
        let mut summary = Vec::new();
        put_bytes(&mut summary, 1, &value);
        self.summary(step, &summary)
    }

    /// Pushes what was written to the file (each step ends with it, so a
    /// running TensorBoard shows the step).
    pub fn flush(&mut self) -> Result<(), EventError> {
        self.file.flush().map_err(|source| EventError {
            path: self.path.clone(),
            source,
        })
    }

    fn summary(&mut self, step: u64, summary: &[u8]) -> Result<(), EventError> {
        let mut event = Vec::new();
        put_double(&mut event, 1, wall_time());
        put_varint_field(&mut event, 2, step);
        put_bytes(&mut event, 5, summary);
        self.record(&event)
    }

    fn record(&mut self, data: &[u8]) -> Result<(), EventError> {
        let len = (data.len() as u64).to_le_bytes();
        let mut out = Vec::with_capacity(data.len() + 16);
        out.extend_from_slice(&len);
        out.extend_from_slice(&masked_crc(&len).to_le_bytes());
        out.extend_from_slice(data);
        out.extend_from_slice(&masked_crc(data).to_le_bytes());
        self.file.write_all(&out).map_err(|source| EventError {
            path: self.path.clone(),
            source,
        })
    }
}

fn wall_time() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// TFRecord's checksum: CRC32C, rotated and offset so that a CRC of data
/// holding CRCs stays well distributed.
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Numeric leaves of `value` under their `/`-joined key paths.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut Vec<(String, f64)>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = match prefix {
                    "" => k.clone(),
                    p => format!("{p}/{k}"),
                };
                flatten(&key, v, out);
            }
        }
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.push((prefix.to_string(), x));
            }
        }
        serde_json::Value::Bool(b) => out.push((prefix.to_string(), f64::from(u8::from(*b)))),
        _ => {}
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A varint field (wire type 0).
fn put_varint_field(out: &mut Vec<u8>, field: u64, v: u64) {
    put_varint(out, field << 3);
    put_varint(out, v);
}

/// A 64-bit field (wire type 1).
fn put_double(out: &mut Vec<u8>, field: u64, v: f64) {
    put_varint(out, (field << 3) | 1);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A 32-bit field (wire type 5).
fn put_float(out: &mut Vec<u8>, field: u64, v: f32) {
    put_varint(out, (field << 3) | 5);
    out.extend_from_slice(&v.to_le_bytes());
}

/// A length-delimited field (wire type 2): bytes, strings, messages.
fn put_bytes(out: &mut Vec<u8>, field: u64, bytes: &[u8]) {
    put_varint(out, (field << 3) | 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protobuf_fields_are_encoded_by_the_wire_rules() {
        let mut out = Vec::new();
        put_varint_field(&mut out, 2, 300);
        assert_eq!(out, [0x10, 0xac, 0x02]);
        let mut out = Vec::new();
        put_bytes(&mut out, 1, b"kl");
        assert_eq!(out, [0x0a, 2, b'k', b'l']);
        let mut out = Vec::new();
        put_float(&mut out, 2, 1.0);
        assert_eq!(out, [0x15, 0, 0, 0x80, 0x3f]);
    }

    #[test]
    fn the_record_checksum_is_tfrecords_masked_crc32c() {
        // CRC32C("123456789") = 0xE3069283 (the standard check value).
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        assert_eq!(
            masked_crc(b"123456789"),
            0xe306_9283u32.rotate_right(15).wrapping_add(0xa282_ead8)
        );
    }

    #[test]
    fn rows_flatten_to_slash_joined_numeric_tags() {
        let row = serde_json::json!({
            "step": 3, "kl": 0.5, "reward/acc_by_dimension": {"visual": 1.0, "dynamic": null},
            "timing_s": {"gen": 2.0}, "label": "Good", "skipped": false
        });
        let mut out = Vec::new();
        flatten("", &row, &mut out);
        out.sort_by(|a, b| a.0.cmp(&b.0));
        let tags: Vec<&str> = out.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(
            tags,
            [
                "kl",
                "reward/acc_by_dimension/visual",
                "skipped",
                "step",
                "timing_s/gen"
            ]
        );
    }
}
