//! `vgrpo score` and `vgrpo rollout` run as a user runs them, on the tiny
//! model and a real encoded clip: each prints parseable JSON with the
//! fields its help promises, and the same seed prints the same output.

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
