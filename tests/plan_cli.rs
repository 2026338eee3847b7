//! `vgrpo plan` as a user runs it: the shipped paper configs plan from the
//! config.json files in configs/models (no weights), a directory holding
//! only a config.json is enough, and a device size adds the verdict and
//! what to change.

use std::process::Command;

/// Runs `vgrpo args…` and returns its exit code, stdout and stderr.
fn vgrpo(args: &[&str]) -> (Option<i32>, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_vgrpo"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the vgrpo binary runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The value cells of the table row starting with `label`.
fn row<'a>(out: &'a str, label: &str) -> &'a str {
    out.lines()
        .find(|l| l.starts_with(label))
        .unwrap_or_else(|| panic!("no row {label:?} in:\n{out}"))
}

#[test]
fn the_paper_configs_plan_without_weights() {
    for (config, params) in [
        ("configs/plan-qwen3-vl-8b.toml", "8.77 B parameters"),
        ("configs/plan-qwen3-vl-8b-lora.toml", "8.77 B parameters"),
        ("configs/plan-qwen2.5-vl-7b.toml", "8.29 B parameters"),
        ("configs/plan-qwen2.5-vl-7b-lora.toml", "8.29 B parameters"),
    ] {
        let (code, out, err) = vgrpo(&["plan", "--config", config, "--gpu-memory", "80GiB"]);
        assert_eq!(code, Some(0), "{config}: {err}");
        assert!(out.contains(params), "{config}:\n{out}");
        assert!(out.contains("checkpoint bf16"), "{config}:\n{out}");
        assert!(row(&out, "total per device").contains("(peak:"), "{out}");
        assert!(row(&out, "fits 80.0 GiB").contains("no,"), "{out}");
        // Each column that does not fit says what to change.
        assert!(out.contains("does not fit 80.0 GiB"), "{out}");
        assert!(out.contains("grpo.mini_batch_size = "), "{out}");
        assert!(out.contains("together"), "{out}");
    }
    let (_, out, _) = vgrpo(&["plan", "--config", "configs/plan-qwen3-vl-8b-lora.toml"]);
    let columns = out
        .lines()
        .find(|l| l.contains("full fine-tuning") && l.contains("LoRA r"))
        .unwrap();
    assert!(columns.ends_with("LoRA r 64 (the run)"), "{out}");
    assert!(row(&out, "  weights").contains("bf16"), "{out}");
    assert!(!out.contains("fits"), "no device, no verdict:\n{out}");
}

#[test]
fn a_directory_with_only_config_json_is_a_model_to_plan() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("configs/models/qwen2.5-vl-7b/config.json");
    std::fs::copy(source, model.join("config.json")).unwrap();
    let set = format!("model.path={}", model.display());
    let (code, out, err) = vgrpo(&[
        "plan",
        "--config",
        "configs/grpo.toml",
        "--set",
        &set,
        "--frozen-dtype",
        "f32",
        "--video-size",
        "640x360",
        "--gpu-memory",
        "141GiB",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("Qwen2.5-VL, 8.29 B parameters"), "{out}");
    assert!(out.contains("of 640x360"), "{out}");
    // --frozen-dtype f32: the LoRA base is held in f32.
    assert!(row(&out, "  weights").ends_with("f32"), "{out}");
    assert!(row(&out, "fits 141.0 GiB").len() > 20, "{out}");
}

#[test]
fn the_tiny_model_plans_for_sft_too() {
    let (code, out, err) = vgrpo(&[
        "plan",
        "--config",
        "configs/sft.toml",
        "--stage",
        "sft",
        "--video-size",
        "96x64",
    ]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("the embedded tiny model"), "{out}");
    assert!(out.contains("SFT, vgrpo sft"), "{out}");
    assert!(!out.contains("rollout ("), "SFT has no rollouts:\n{out}");
}

#[test]
fn bad_sizes_are_refused() {
    let config = "configs/plan-qwen3-vl-8b.toml";
    let (code, _, err) = vgrpo(&["plan", "--config", config, "--gpu-memory", "80 parsecs"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("is not a memory size"), "{err}");
    let (code, _, err) = vgrpo(&["plan", "--config", config, "--video-size", "720p"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("--video-size must be WIDTHxHEIGHT"), "{err}");
    let (code, _, err) = vgrpo(&[
        "plan",
        "--config",
        config,
        "--set",
        "model.path=/nonexistent/dir",
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no config.json"), "{err}");
}
