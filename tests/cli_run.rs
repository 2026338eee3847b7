//! `vgrpo score` and `vgrpo rollout` run as a user runs them, on the tiny
//! model and a real encoded clip: each prints parseable JSON with the
//! fields its help promises, and the same seed prints the same output.
//! `vgrpo plot` prints the image's path and the constant series.

mod judge_data;

use std::path::Path;
use std::process::Command;

fn vgrpo(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_vgrpo"))
        .args(args)
        .output()
        .expect("the vgrpo binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "vgrpo {args:?}: {stderr}");
    String::from_utf8(out.stdout).unwrap()
}

fn video(dir: &Path) -> String {
    let manifest = judge_data::write_dataset(dir);
    manifest
        .parent()
        .unwrap()
        .join("videos/v0.mp4")
        .display()
        .to_string()
}

#[test]
fn plot_writes_the_png_and_prints_its_path_and_the_constants() {
    let tmp = tempfile::tempdir().unwrap();
    let rows = "{\"step\":1,\"loss\":2.5,\"lr\":0.001,\"grad_norm\":null}\n\
                {\"step\":2,\"loss\":2.0,\"lr\":0.001,\"grad_norm\":null}\n";
    std::fs::write(tmp.path().join("metrics.jsonl"), rows).unwrap();
    let out = vgrpo(&["plot", tmp.path().to_str().unwrap(), "--smoothing", "0.9"]);
    let png = tmp.path().join("metrics.png");
    assert_eq!(
        out,
        format!(
            "{}\nconstant over the run (listed, not drawn):\n  \
             grad_norm = – (no finite value)\n  lr = 0.001\n",
            png.display()
        )
    );
    let bytes = std::fs::read(&png).unwrap();
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"));
}

#[test]
fn score_prints_one_judgement_with_a_score_in_range() {
    let tmp = tempfile::tempdir().unwrap();
    let video = video(tmp.path());
    let args = [
        "score",
        video.as_str(),
        "--dimension",
        "visual",
        "--max-new-tokens",
        "8",
    ];
    let out = vgrpo(&args);
    let j: serde_json::Value = serde_json::from_str(&out).unwrap();
    let score = j["score"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&score), "{score}");
    let mos = j["mos_scale_score"].as_f64().unwrap();
    assert!((1.0..=5.0).contains(&mos), "{mos}");
    let probs: f64 = j["rating_probs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_f64().unwrap())
        .sum();
    assert!((probs - 1.0).abs() < 1e-4, "{probs}");
    assert_eq!(j["dimension"], "visual");
    assert_eq!(vgrpo(&args), out, "greedy judging repeats");
}

#[test]
fn rollout_prints_a_group_of_sampled_judgements() {
    let tmp = tempfile::tempdir().unwrap();
    let video = video(tmp.path());
    let config = tmp.path().join("r.toml");
    std::fs::write(
        &config,
        "[video]\nmax_frames = 4\ntoken_budget = 16\n[grpo]\nmax_new_tokens = 6\n",
    )
    .unwrap();
    let config = config.display().to_string();
    let args = [
        "rollout",
        "--config",
        config.as_str(),
        "--video",
        video.as_str(),
        "--dimension",
        "dynamic",
        "--group",
        "3",
        "--seed",
        "4",
    ];
    let out = vgrpo(&args);
    let rows: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    for (i, r) in rows.iter().enumerate() {
        assert_eq!(r["sample"], i);
        let tokens = r["tokens"].as_array().unwrap().len();
        assert!((1..=6).contains(&tokens), "{tokens}");
        assert_eq!(r["logprobs"].as_array().unwrap().len(), tokens);
    }
    assert_eq!(vgrpo(&args), out, "a seed repeats its group");
}

#[test]
fn a_device_whose_backend_is_not_built_in_names_the_feature() {
    let tmp = tempfile::tempdir().unwrap();
    let video = video(tmp.path());
    let out = Command::new(env!("CARGO_BIN_EXE_vgrpo"))
        .args(["score", video.as_str(), "--dimension", "visual"])
        .args(["--device", "cuda:0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("device cuda:0 needs the `cuda` backend")
            && stderr.contains("--features cuda"),
        "{stderr}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_vgrpo"))
        .args(["score", video.as_str(), "--dimension", "visual"])
        .args(["--device", "gpu"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("unknown device \"gpu\""), "{stderr}");
}
