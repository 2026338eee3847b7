//! `vgrpo frames VIDEO [--sheet out.png]` as a user runs it.

mod video_common;

use std::process::Command;

use vgrpo::video::Container;
use video_common::*;

fn vgrpo() -> Command {
    Command::new(env!("CARGO_BIN_EXE_vgrpo"))
}

#[test]
fn frames_prints_the_table_and_writes_the_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_clip(
        dir.path(),
        "clip",
        Container::Webm,
        &test_clip(16, 64, 48, 8.0),
    );
    let sheet = dir.path().join("sheet.png");
    let out = vgrpo()
        .args([
            "frames",
            path.to_str().unwrap(),
            "--sheet",
            sheet.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("vp9"), "{stdout}");
    // Header, 16 frame rows, totals.
    let rows = stdout
        .lines()
        .filter(|l| l.contains(" slow ") || l.contains(" fast "))
        .count();
    assert_eq!(rows, 16, "{stdout}");
    assert!(
        stdout.contains("visual tokens of a budget of 2048"),
        "{stdout}"
    );
    assert!(std::fs::metadata(&sheet).unwrap().len() > 0);
    // FFmpeg's own logging stays silent.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn frames_json_is_machine_readable() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_clip(
        dir.path(),
        "clip",
        Container::Mp4,
        &test_clip(16, 64, 48, 8.0),
    );
    let out = vgrpo()
        .args(["frames", path.to_str().unwrap(), "--json"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["frames"].as_array().unwrap().len(), 16);
    assert_eq!(report["frames"][0]["kind"], "slow");
    assert_eq!(report["source"]["codec"], "h264");
}

#[test]
fn a_bad_video_prints_one_error_chain_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "plain text\n".repeat(100)).unwrap();
    let out = vgrpo()
        .args(["frames", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: cannot read video ") && stderr.contains("text, not a video"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
}
