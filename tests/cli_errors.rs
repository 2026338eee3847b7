//! The command line prints an error's chain with each cause once: a
//! message states its own context and leaves its source to the chain, so
//! the OS's reason for a failed read or write appears exactly once.

use std::path::Path;
use std::process::Command;

/// Runs `vgrpo args…` and returns its exit code and stderr.
fn vgrpo(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vgrpo"))
        .args(args)
        .output()
        .expect("the vgrpo binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The OS's own text for what opening `path` meets ("No such file or
/// directory (os error 2)" on Linux), so the test does not hard-code it.
fn os_reason(path: &Path) -> String {
    std::fs::File::open(path).unwrap_err().to_string()
}

/// `stderr` is one `error:` line holding `context: reason` with the reason
/// once.
fn assert_once(stderr: &str, context: &str, reason: &str) {
    assert!(
        stderr.contains(&format!("{context}: {reason}")),
        "expected `{context}: {reason}` in:\n{stderr}"
    );
    assert_eq!(
        stderr.matches(reason).count(),
        1,
        "the cause is printed more than once:\n{stderr}"
    );
}

#[test]
fn eval_on_a_missing_manifest_names_the_os_reason_once() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("missing.jsonl");
    let config = tmp.path().join("eval.toml");
    std::fs::write(
        &config,
        format!(
            "[run]\nout_dir = {:?}\n[data]\nmanifest = {:?}\n",
            tmp.path().join("runs").display().to_string(),
            manifest.display().to_string()
        ),
    )
    .unwrap();
    let (code, stderr) = vgrpo(&["eval", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_once(
        &stderr,
        &format!("cannot read manifest {}", manifest.display()),
        &os_reason(&manifest),
    );
}

#[test]
fn synth_under_a_regular_file_names_the_os_reason_once() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "not a directory").unwrap();
    let out = file.join("set");
    let (code, stderr) = vgrpo(&["synth", "--out", out.to_str().unwrap(), "--videos", "1"]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_once(
        &stderr,
        &format!("cannot create directory {}", out.join("videos").display()),
        &os_reason(&out.join("videos")),
    );
}

#[test]
fn synth_into_a_set_it_cannot_reuse_says_so_once() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set");
    let out_arg = out.to_str().unwrap();
    let small = ["--videos", "1", "--width", "32", "--height", "32"];
    let (code, stderr) = vgrpo(&[&["synth", "--out", out_arg][..], &small].concat());
    assert_eq!(code, Some(0), "{stderr}");
    let advice = "delete it or choose another output directory";
    // Another config: the differences, then the advice, once.
    let (code, stderr) = vgrpo(&[&["synth", "--out", out_arg, "--seed", "4"][..], &small].concat());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("seed 0 → 4"), "{stderr}");
    assert_eq!(stderr.matches(advice).count(), 1, "{stderr}");
    // An unreadable stamp: the advice, then serde's reason, each once.
    std::fs::write(out.join("synth.json"), "not json").unwrap();
    let (code, stderr) = vgrpo(&[&["synth", "--out", out_arg][..], &small].concat());
    assert_eq!(code, Some(1), "{stderr}");
    let reason = serde_json::from_str::<serde_json::Value>("not json")
        .unwrap_err()
        .to_string();
    assert_once(&stderr, advice, &reason);
    assert_eq!(stderr.matches(advice).count(), 1, "{stderr}");
}

#[test]
fn score_with_a_checkpoint_missing_its_config_names_the_os_reason_once() {
    let tmp = tempfile::tempdir().unwrap();
    // A checkpoint directory (it holds actor.bpk) without model_config.json.
    let dir = tmp.path().join("step_000001");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("actor.bpk"), "").unwrap();
    let config = dir.join("model_config.json");
    let (code, stderr) = vgrpo(&[
        "score",
        "--model",
        dir.to_str().unwrap(),
        "video.mp4",
        "--dimension",
        "visual",
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_once(
        &stderr,
        &format!("cannot read {}", config.display()),
        &os_reason(&config),
    );
}

#[test]
fn plot_of_a_missing_run_names_the_os_reason_once() {
    let tmp = tempfile::tempdir().unwrap();
    let metrics = tmp.path().join("no-run/metrics.jsonl");
    let run_dir = tmp.path().join("no-run");
    let (code, stderr) = vgrpo(&["plot", run_dir.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{stderr}");
    assert_once(
        &stderr,
        &format!("cannot read {}", metrics.display()),
        &os_reason(&metrics),
    );
}

/// A smoothing weight outside [0, 1) is a wrong command line (exit 2),
/// refused with the rule before the run directory is read.
#[test]
fn plot_refuses_a_smoothing_weight_outside_0_to_1() {
    let tmp = tempfile::tempdir().unwrap();
    let run_dir = tmp.path().join("no-run");
    for bad in ["1", "-0.5", "abc"] {
        let (code, stderr) = vgrpo(&["plot", run_dir.to_str().unwrap(), "--smoothing", bad]);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("the smoothing weight must be a number w with 0 ≤ w < 1"),
            "{stderr}"
        );
        assert!(!stderr.contains("metrics.jsonl"), "{stderr}");
    }
}

/// A missing config file: the OS reason once, exit 2.
#[test]
fn a_missing_config_names_the_os_reason_once() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("missing.toml");
    let (code, stderr) = vgrpo(&["eval", "--config", config.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{stderr}");
    assert_once(
        &stderr,
        &format!("cannot read config {}", config.display()),
        &os_reason(&config),
    );
}
