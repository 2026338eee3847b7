//! GRPO end to end on the embedded tiny model and a handful of real encoded
//! videos: the run's files, resume exactness in-process and across a real
//! process kill.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};
use vgrpo::checkpoint::Resume;
use vgrpo::config::{self, Config};
use vgrpo::cooloff::CoolOffRow;
use vgrpo::data::{Dimension, Manifest, ManifestRow, Split};
use vgrpo::grpo::metrics::{RolloutRow, StepMetrics};
use vgrpo::grpo::trainer::train;
use vgrpo::jsonl::read_rows;
use vgrpo::video::{Container, EncodeSettings, Frame, encode_video};

/// Six 1-second 32×32 clips with different colours and motion, and a
/// manifest with one row per (clip, dimension).
fn dataset(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir.join("videos")).unwrap();
    let mut rows = Vec::new();
    for v in 0..6u32 {
        let frames: Vec<Frame> = (0..8u32)
            .map(|t| Frame {
                timestamp: f64::from(t) / 8.0,
                width: 32,
                height: 32,
                rgb: (0..32 * 32)
                    .flat_map(|i| {
                        let (x, y) = (i % 32, i / 32);
                        let on = (x + t * (v + 1)) % 16 < 8;
                        if on {
                            [(40 * v) as u8, 200, (255 - 30 * v) as u8]
                        } else {
                            [20, (y * 8) as u8, 30]
                        }
                    })
                    .collect(),
            })
            .collect();
        let name = format!("videos/v{v}.mp4");
        // H.264 in MP4 (the container's default codec), constant frame rate.
        let settings = EncodeSettings::new(Container::Mp4, 8.0);
        encode_video(&dir.join(&name), &frames, &settings).unwrap();
        for (d, dim) in Dimension::ALL.into_iter().enumerate() {
            rows.push(ManifestRow {
                id: format!("v{v}-{dim}"),
                video: name.clone().into(),
                prompt: "a blue square moves left".into(),
                dimension: dim,
                mos: 1.0 + ((v as usize + d) % 5) as f32,
                generator: format!("gen-{}", v % 2),
                rationale: None,
                split: Some(Split::Train),
                clean_mos: None,
            });
        }
    }
    let manifest = dir.join("manifest.jsonl");
    Manifest::write(&manifest, &rows).unwrap();
    manifest
}

fn config_text(root: &Path, manifest: &Path, name: &str, steps: u64) -> String {
    format!(
        r#"
[run]
name = "{name}"
seed = 7
out_dir = "{runs}"

[data]
manifest = "{manifest}"

[video]
fps = 8.0
min_frames = 2
max_frames = 8
token_budget = 16
workers = 1
queue_depth = 2

[optim]
lr = 1e-3

[grpo]
steps = {steps}
prompts_per_step = 2
group_size = 4
max_new_tokens = 8
save_every = 2
keep_last = 3
rollouts_dir = "{rollouts}"
"#,
        runs = root.join("runs").display(),
        manifest = manifest.display(),
        rollouts = root.join("rollouts").display(),
    )
}

fn config(root: &Path, manifest: &Path, name: &str, steps: u64) -> Config {
    config::from_str(
        Path::new("test.toml"),
        &config_text(root, manifest, name, steps),
        &[],
    )
    .unwrap()
}

/// Runs GRPO from scratch on a config text with `--set` overrides.
fn train_from(text: &str, sets: &[String]) {
    let cfg = config::from_str(Path::new("test.toml"), text, sets).unwrap();
    train(
        &cfg,
        &Resume::No,
        &vgrpo::device::test_device(),
        &AtomicBool::new(false),
    )
    .unwrap();
}

fn metrics(run: &Path) -> Vec<StepMetrics> {
    read_rows::<StepMetrics>(&run.join("metrics.jsonl"))
        .unwrap()
        .iter()
        .map(StepMetrics::without_timing)
        .collect()
}

fn weights(run: &Path) -> Vec<u8> {
    std::fs::read(run.join("final/model.safetensors")).unwrap()
}

#[test]
fn a_run_writes_metrics_checkpoints_cooloff_and_a_final_model() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    let cfg = config(tmp.path(), &manifest, "basic", 2);
    let summary = train(
        &cfg,
        &Resume::No,
        &vgrpo::device::test_device(),
        &AtomicBool::new(false),
    )
    .unwrap();
    let run = tmp.path().join("runs/basic");
    assert_eq!(summary.steps, 2);
    let rows = metrics(&run);
    assert_eq!(rows.iter().map(|r| r.step).collect::<Vec<_>>(), vec![1, 2]);
    for r in &rows {
        assert_eq!(r.prompts, 2);
        assert!(r.updates == 1 && r.skipped_updates == 0);
        assert!(r.grad_norm.is_finite() && r.grad_norm > 0.0);
        assert!((0.0..=1.5).contains(&r.reward_mean));
        assert!(r.kl >= 0.0 && r.entropy > 0.0);
    }
    // Step 1 starts from the reference: KL exactly 0 (actor = reference).
    assert_eq!(rows[0].kl, 0.0);
    assert!(run.join("checkpoints/latest").is_file());
    assert!(run.join("config.toml").is_file());
    assert!(run.join("final/config.json").is_file());
    assert!(run.join("final/tokenizer.json").is_file());
    // Cool-off rows (if any rollout was right) parse back.
    let cooloff: Vec<CoolOffRow> = read_rows(&summary.cooloff).unwrap();
    let kept: usize = rows.iter().map(|r| r.cooloff_rows).sum();
    assert_eq!(cooloff.len(), kept);
    // Each carries its row's MOS, the cool-off's regression target.
    let rows_by_id = Manifest::load(&manifest).unwrap().rows;
    for c in &cooloff {
        let row = rows_by_id.iter().find(|r| r.id == c.id).unwrap();
        assert_eq!(c.mos, Some(row.mos), "{}", c.id);
    }
    plot_covers_every_metric(&run);
    // Starting again without --resume refuses to overwrite.
    let again = train(
        &cfg,
        &Resume::No,
        &vgrpo::device::test_device(),
        &AtomicBool::new(false),
    );
    assert!(again.unwrap_err().to_string().contains("--resume auto"));
}

/// `vgrpo plot` on a real GRPO run: every numeric field of a row is drawn
/// or listed, once; the panels follow the headline order (KL varies from
/// its 0 at step 1, the prompt count does not).
fn plot_covers_every_metric(run: &Path) {
    fn leaves(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, v) in map {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}/{k}")
                    };
                    leaves(&key, v, out);
                }
            }
            serde_json::Value::Number(_) | serde_json::Value::Null => out.push(prefix.to_string()),
            _ => {}
        }
    }
    let raw: Vec<serde_json::Value> = read_rows(&run.join("metrics.jsonl")).unwrap();
    let mut fields = Vec::new();
    leaves("", &raw[0], &mut fields);
    fields.retain(|k| k != "step");
    let plot = vgrpo::plot::plot_run(run, vgrpo::plot::Smoothing::default()).unwrap();
    assert!(plot.path.is_file());
    let listed = plot
        .constant
        .iter()
        .map(|l| l.split(" = ").next().unwrap().to_string());
    let mut shown: Vec<String> = plot.drawn.iter().cloned().chain(listed).collect();
    shown.sort();
    fields.sort();
    assert_eq!(shown, fields);
    assert!(plot.drawn.contains(&"kl".to_string()), "{:?}", plot.drawn);
    assert!(
        plot.constant.contains(&"prompts = 2".to_string()),
        "{:?}",
        plot.constant
    );
    let rank = |k: &String| {
        vgrpo::plot::PREFERRED
            .iter()
            .position(|p| p == k)
            .unwrap_or(usize::MAX)
    };
    assert!(
        plot.drawn.windows(2).all(|w| rank(&w[0]) <= rank(&w[1])),
        "{:?}",
        plot.drawn
    );
}

#[test]
fn resuming_in_process_reproduces_the_straight_run() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    let device = vgrpo::device::test_device();
    let stop = AtomicBool::new(false);
    // Every rollout is logged too, so its log is checked across the resume.
    let logged = |name: &str, steps: u64| {
        let text = config_text(tmp.path(), &manifest, name, steps) + "log_rollouts = true\n";
        config::from_str(Path::new("logged.toml"), &text, &[]).unwrap()
    };
    train(&logged("straight", 4), &Resume::No, &device, &stop).unwrap();
    // Two steps, then a resume that continues to four.
    train(&logged("split", 2), &Resume::No, &device, &stop).unwrap();
    train(&logged("split", 4), &Resume::Auto, &device, &stop).unwrap();
    let (a, b) = (
        tmp.path().join("runs/straight"),
        tmp.path().join("runs/split"),
    );
    assert_eq!(metrics(&a), metrics(&b));
    let rollouts = |run: &Path| std::fs::read_to_string(run.join("rollouts.jsonl")).unwrap();
    assert_eq!(rollouts(&a), rollouts(&b), "rollout logs differ");
    assert_eq!(
        rollouts(&a).lines().count(),
        4 * 2 * 4,
        "steps × prompts × G rows"
    );
    assert_eq!(weights(&a), weights(&b), "final weights differ");
    let ca = std::fs::read(tmp.path().join("rollouts/straight/cooloff.jsonl")).unwrap();
    let cb = std::fs::read(tmp.path().join("rollouts/split/cooloff.jsonl")).unwrap();
    let strip = |bytes: &[u8]| {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .replace("straight", "RUN")
            .replace("split", "RUN")
    };
    assert_eq!(strip(&ca), strip(&cb), "cool-off rows differ");
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    let bin = env!("CARGO_BIN_EXE_vgrpo");
    let write_config = |name: &str| {
        let path = tmp.path().join(format!("{name}.toml"));
        std::fs::write(&path, config_text(tmp.path(), &manifest, name, 6)).unwrap();
        path
    };
    let run = |cfg: &Path, resume: bool| {
        let mut cmd = Command::new(bin);
        cmd.arg("train").arg("--config").arg(cfg);
        if resume {
            cmd.args(["--resume", "auto"]);
        }
        cmd
    };
    let straight = write_config("straight");
    assert!(run(&straight, false).status().unwrap().success());

    // Kill -9 the second run once its step-2 checkpoint exists and it is
    // working on later steps.
    let killed = write_config("killed");
    let mut child = run(&killed, false).spawn().unwrap();
    let latest = tmp.path().join("runs/killed/checkpoints/latest");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !(latest.is_file()
        && std::fs::read_to_string(&latest)
            .unwrap()
            .contains("step_000002"))
    {
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it was killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(run(&killed, true).status().unwrap().success());

    let (a, b) = (
        tmp.path().join("runs/straight"),
        tmp.path().join("runs/killed"),
    );
    assert_eq!(metrics(&a), metrics(&b));
    assert_eq!(weights(&a), weights(&b), "final weights differ");
    let rows = |name: &str| -> Vec<(u64, u64, usize)> {
        read_rows::<CoolOffRow>(&tmp.path().join(format!("rollouts/{name}/cooloff.jsonl")))
            .unwrap()
            .iter()
            .map(|r| (r.step, r.group, r.sample))
            .collect()
    };
    assert_eq!(
        rows("straight"),
        rows("killed"),
        "cool-off rows duplicated or lost"
    );
}

#[test]
fn refill_draws_more_batches_when_groups_have_equal_rewards() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    let text = config_text(tmp.path(), &manifest, "refill", 2)
        + "zero_std = \"refill\"\nrefill_batches = 2\n";
    train_from(&text, &[]);
    let run = tmp.path().join("runs/refill");
    let rows = metrics(&run);
    // The untrained tiny model never writes a well-formed answer, so every
    // group's rewards are equal: each step draws all 1 + 2 batches, then
    // trains on its first batch (logged), and reports what it drew.
    for r in &rows {
        assert_eq!(r.prompts, 2);
        assert_eq!(r.frac_reward_zero_std, 1.0);
    }
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(run.join("checkpoints/step_000002/train_state.json")).unwrap(),
    )
    .unwrap();
    // 2 steps × 3 batches × 2 prompts = 12 of the 18 training rows.
    assert_eq!(state["data"]["position"], 12);
    assert_eq!(state["data"]["epoch"], 0);
}

#[test]
fn mini_batches_and_several_epochs_update_per_chunk() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    // 2 prompts × G = 4 = 8 rollouts per step, shuffled into mini-batches
    // of 2 (each padded only to its own longest completion), μ = 2 passes.
    let text =
        config_text(tmp.path(), &manifest, "mini", 2) + "mini_batch_size = 2\nppo_epochs = 2\n";
    // Long enough completions that some rows stop early and the
    // mini-batches differ in width.
    let sets = ["grpo.max_new_tokens=96".to_string()];
    train_from(&text, &sets);
    let rows = metrics(&tmp.path().join("runs/mini"));
    assert_eq!(rows.len(), 2);
    for r in &rows {
        // 8 rollouts / 2 per mini-batch × 2 passes.
        assert_eq!((r.updates, r.skipped_updates), (8, 0));
        assert!(r.grad_norm.is_finite());
    }
    assert!(
        rows.iter().any(|r| r.response_length_clip_ratio < 1.0),
        "no rollout stopped early: the test would not exercise ragged mini-batches"
    );
}

#[test]
fn grpo_trains_on_its_own_data_set_when_one_is_given() {
    let tmp = tempfile::tempdir().unwrap();
    let judged = dataset(&tmp.path().join("data"));
    let own = tmp.path().join("rl/manifest.jsonl");
    // The paper's RL warm-up runs on a separate, smaller set: here a
    // synthetic one the run writes itself, every video in the train split.
    let text = config_text(tmp.path(), &judged, "own", 1)
        + &format!(
            "log_rollouts = true\nmanifest = \"{}\"\n\n[grpo.synth]\nvideos = 4\nseed = 3\n\
             test_fraction = 0.0\n",
            own.display()
        );
    train_from(&text, &[]);
    let written = Manifest::load(&own).unwrap();
    assert_eq!(written.rows.len(), 12, "4 synthetic videos × 3 dimensions");
    let rollouts: Vec<RolloutRow> = read_rows(&tmp.path().join("runs/own/rollouts.jsonl")).unwrap();
    assert_eq!(rollouts.len(), 2 * 4, "2 prompts × G = 4");
    for r in &rollouts {
        assert!(
            written.rows.iter().any(|w| w.id == r.id),
            "rollout of row {} is not from the GRPO set",
            r.id
        );
    }
}

#[test]
fn a_grpo_synth_section_without_a_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let text =
        config_text(tmp.path(), Path::new("m.jsonl"), "x", 1) + "\n[grpo.synth]\nvideos = 4\n";
    let err = config::from_str(Path::new("x.toml"), &text, &[])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`grpo.synth`") && err.contains("grpo.manifest"),
        "{err}"
    );
}

#[test]
fn zero_std_filter_leaves_constant_groups_out_of_the_update() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    let text = config_text(tmp.path(), &manifest, "filter", 2) + "zero_std = \"filter\"\n";
    train_from(&text, &[]);
    let run = tmp.path().join("runs/filter");
    // The untrained tiny model never scores, so every group is constant:
    // `filter` trains on none of them, and the weights stay the start's.
    for r in &metrics(&run) {
        assert_eq!(r.frac_reward_zero_std, 1.0);
        assert_eq!((r.updates, r.skipped_updates), (0, 0), "step {}", r.step);
    }
    let keep = config_text(tmp.path(), &manifest, "keep", 2);
    train_from(&keep, &[]);
    let keep_rows = metrics(&tmp.path().join("runs/keep"));
    assert!(
        keep_rows.iter().all(|r| r.updates == 1),
        "keep updates on them"
    );
    // The run's starting model (the tiny model of run.seed 7), exported
    // the way the run exports its final one.
    let start = tmp.path().join("start");
    vgrpo::model_source::export_model(
        &vgrpo::default_model::tiny_model(7, &vgrpo::device::test_device()).unwrap(),
        vgrpo::default_model::TINY_CONFIG_JSON,
        &vgrpo::text::Tokenizer::tiny().unwrap(),
        &start,
    )
    .unwrap();
    let start = std::fs::read(start.join("model.safetensors")).unwrap();
    assert!(weights(&run) == start, "filter moved the weights");
    assert!(
        weights(&tmp.path().join("runs/keep")) != start,
        "keep's KL term did not move them either: the comparison says nothing"
    );
}

#[test]
fn kl_in_the_reward_penalises_every_reward_by_its_rollouts_kl() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    // A reference other than the starting actor (the tiny model of another
    // seed), so the KL is > 0 from the first step.
    let reference = tmp.path().join("reference");
    let other = vgrpo::default_model::tiny_model(8, &vgrpo::device::test_device()).unwrap();
    vgrpo::model_source::export_model(
        &other,
        vgrpo::default_model::TINY_CONFIG_JSON,
        &vgrpo::text::Tokenizer::tiny().unwrap(),
        &reference,
    )
    .unwrap();
    let with = |name: &str, extra: &str| {
        config_text(tmp.path(), &manifest, name, 2)
            + &format!(
                "kl_coef = 0.5\nreference = \"{}\"\n{extra}",
                reference.display()
            )
    };
    train_from(&with("klr", "kl_placement = \"reward\"\n"), &[]);
    train_from(&with("kll", ""), &[]);
    let (reward, loss) = (
        metrics(&tmp.path().join("runs/klr")),
        metrics(&tmp.path().join("runs/kll")),
    );
    // The untrained model's raw rewards are all 0. In the reward, the
    // sequence KL to the reference is subtracted from each, so they fall
    // below 0 and differ within groups (advantages the raw rewards never
    // gave) and the loss has no KL term; in the loss, the rewards stay 0
    // and the KL is measured there.
    for (r, l) in reward.iter().zip(&loss) {
        assert!(r.reward_mean < 0.0, "step {}: {}", r.step, r.reward_mean);
        assert!(r.reward_std > 0.0, "step {}", r.step);
        assert_eq!((l.reward_mean, l.reward_std), (0.0, 0.0));
        assert!(l.kl > 0.0, "step {}: {}", l.step, l.kl);
    }
}

#[test]
fn a_corrupt_video_met_mid_run_is_skipped_counted_and_named() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    // One of the six clips becomes garbage after the manifest is written.
    let broken = tmp.path().join("data/videos/v3.mp4");
    std::fs::write(&broken, b"not a video at all").unwrap();
    let config = tmp.path().join("corrupt.toml");
    // 9 steps × 2 prompts: every one of the 18 training rows, v3's three
    // among them, once.
    std::fs::write(&config, config_text(tmp.path(), &manifest, "corrupt", 9)).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_vgrpo"))
        .args(["train", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("skipping a video") && stderr.contains(&broken.display().to_string()),
        "{stderr}"
    );
    let rows = metrics(&tmp.path().join("runs/corrupt"));
    let skipped: usize = rows.iter().map(|r| r.skipped_videos).sum();
    assert_eq!(skipped, 3, "v3's three rows, each counted once");
    for r in &rows {
        assert_eq!(r.prompts + r.skipped_videos, 2, "step {}", r.step);
    }
    assert_eq!(stderr.matches("skipping a video").count(), 3, "{stderr}");
}

#[test]
fn a_run_with_the_distance_reward_logs_the_exact_match_rate() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = dataset(&tmp.path().join("data"));
    let text = config_text(tmp.path(), &manifest, "distance", 2)
        + "log_rollouts = true\naccuracy_reward = \"distance\"\n";
    train_from(&text, &[]);
    let run = tmp.path().join("runs/distance");
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        resolved.contains("accuracy_reward = \"distance\""),
        "{resolved}"
    );
    // Every row carries `reward/exact` (and per dimension) next to the
    // graded `reward/acc`; they need not be equal, only rates in [0, 1].
    let raw: Vec<serde_json::Value> = read_rows(&run.join("metrics.jsonl")).unwrap();
    let rows = metrics(&run);
    assert_eq!(rows.len(), 2);
    let unit = |x: f32| x.is_finite() && (0.0..=1.0).contains(&x);
    for (r, json) in rows.iter().zip(&raw) {
        assert!(
            json.get("reward/exact").is_some_and(|v| v.is_number()),
            "{json}"
        );
        assert!(json.get("reward/exact_by_dimension").is_some(), "{json}");
        let exact = r.reward_exact.expect("reward/exact");
        assert!(unit(exact), "step {}: reward/exact {exact}", r.step);
        assert!(
            unit(r.reward_acc),
            "step {}: reward/acc {}",
            r.step,
            r.reward_acc
        );
        let by = r.reward_exact_by_dimension;
        for x in [by.visual, by.dynamic, by.alignment].into_iter().flatten() {
            assert!(unit(x), "step {}: {by:?}", r.step);
        }
    }
    // Each logged rollout's terms agree with the distance form, and the
    // metrics are their means. (The untrained tiny model writes no
    // well-formed answer, so here every R_acc and `exact` is 0; the graded
    // values themselves are unit-tested in `reward.rs`, and the checks below
    // hold for a model that does answer.)
    let rollouts: Vec<RolloutRow> = read_rows(&run.join("rollouts.jsonl")).unwrap();
    assert_eq!(rollouts.len(), 2 * 2 * 4, "2 steps × 2 prompts × G = 4");
    for r in &rollouts {
        match vgrpo::text::parse_answer(&r.text, vgrpo::text::AnswerOrder::ThinkFirst) {
            Ok(answer) => {
                let off = answer.rating.index().abs_diff(r.label.index()) as f32;
                assert_eq!((r.fmt, r.acc), (1.0, 1.0 - off / 4.0), "{r:?}");
                assert_eq!(r.exact, answer.rating == r.label, "{r:?}");
            }
            Err(_) => assert_eq!((r.fmt, r.acc, r.exact), (0.0, 0.0, false), "{r:?}"),
        }
        assert_eq!(r.reward, r.acc + 0.5 * r.fmt, "{r:?}");
    }
    for m in &rows {
        let step: Vec<&RolloutRow> = rollouts.iter().filter(|r| r.step == m.step).collect();
        let n = step.len() as f32;
        let exact = step.iter().filter(|r| r.exact).count() as f32 / n;
        let acc = step.iter().map(|r| r.acc).sum::<f32>() / n;
        assert!(
            (m.reward_exact.unwrap() - exact).abs() < 1e-6,
            "step {}",
            m.step
        );
        assert!((m.reward_acc - acc).abs() < 1e-6, "step {}", m.step);
        // The cool-off keeps exactly the exact matches.
        let kept = step.iter().filter(|r| r.exact).count();
        assert_eq!(m.cooloff_rows, kept, "step {}", m.step);
    }
}

/// Every tensor of a safetensors file as f32 values, by name.
fn tensors(path: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| {
            assert_eq!(view.dtype(), safetensors::Dtype::F32, "{name}");
            let values = view
                .data()
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            (name, values)
        })
        .collect()
}

/// The tiny model of `run.seed` 7 (the runs' start), exported under `dir`.
fn start_weights(dir: &Path) -> std::collections::BTreeMap<String, Vec<f32>> {
    let device = vgrpo::device::test_device();
    vgrpo::model_source::export_model(
        &vgrpo::default_model::tiny_model(7, &device).unwrap(),
        vgrpo::default_model::TINY_CONFIG_JSON,
        &vgrpo::text::Tokenizer::tiny().unwrap(),
        dir,
    )
    .unwrap();
    tensors(&dir.join("model.safetensors"))
}

/// `|a − b| ≤ rel · max(|a|, |b|)`, or both below `floor` (a metric that
/// is 0 up to rounding).
fn close(a: f64, b: f64, rel: f64, floor: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) || a.abs().max(b.abs()) <= floor
}

/// One step of `extra` (TOML lines after `[grpo]`'s) with micro-batches of
/// `micro` rollouts against the same step without (the whole mini-batch at
/// once): the same loss metrics, gradient norm and updated weights (and,
/// with the KL in the reward, the same reward mean and spread) up to float
/// rounding (observed on the CPU backend: loss metrics and gradient
/// norm within 1.1e-7 relative, each tensor's update w − w₀ within 5.3e-5
/// relative, the whole update within 1.7e-5). Prints both runs' stage
/// timings; returns the micro-batched run's metrics.
fn micro_batches_match_the_whole(
    root: &Path,
    name: &str,
    extra: &str,
    sets: &[String],
    micro: usize,
) -> StepMetrics {
    let manifest = root.join("data/manifest.jsonl");
    if !manifest.exists() {
        dataset(&root.join("data"));
    }
    let text = |name: &str, micro: usize| {
        config_text(root, &manifest, name, 1) + extra + &format!("micro_batch_size = {micro}\n")
    };
    let (whole, parts) = (format!("{name}-whole"), format!("{name}-micro"));
    train_from(&text(&whole, 0), sets);
    train_from(&text(&parts, micro), sets);
    let (a, b) = (
        root.join("runs").join(&whole),
        root.join("runs").join(&parts),
    );
    let raw = |run: &Path| read_rows::<StepMetrics>(&run.join("metrics.jsonl")).unwrap();
    let (ra, rb) = (raw(&a), raw(&b));
    let (ma, mb) = (&ra[0], &rb[0]);
    eprintln!(
        "{name}: timing_s update_actor {:.3} whole vs {:.3} in micro-batches of {micro}; \
         old_log_prob {:.3} vs {:.3}; ref {:.3} vs {:.3}",
        ma.timing.update_actor,
        mb.timing.update_actor,
        ma.timing.old_log_prob,
        mb.timing.old_log_prob,
        ma.timing.reference,
        mb.timing.reference,
    );
    // The rollouts are the same (sampled before any update): everything
    // but the float metrics of the log-prob passes matches exactly. Those
    // are the loss metrics and, with `kl_placement = "reward"`, the reward's
    // mean and spread, which then hold −β·KL of the old and reference
    // passes: a backend whose kernels depend on the batch's shape rounds
    // them differently in micro-batches (libtorch's CPU kernels on an AVX2
    // CPU: 2e-7 relative).
    let float_metrics = |m: &StepMetrics| {
        [
            ("reward/mean", f64::from(m.reward_mean)),
            ("reward/std", f64::from(m.reward_std)),
            ("pg_loss", f64::from(m.pg_loss)),
            ("kl", f64::from(m.kl)),
            ("entropy", f64::from(m.entropy)),
            ("clip_ratio/low", f64::from(m.clip_ratio_low)),
            ("clip_ratio/high", f64::from(m.clip_ratio_high)),
            ("clip_ratio", f64::from(m.clip_ratio)),
            ("grad_norm", m.grad_norm),
        ]
    };
    let mut worst_metric = 0.0f64;
    for ((key, x), (_, y)) in float_metrics(ma).into_iter().zip(float_metrics(mb)) {
        let rel = (x - y).abs() / x.abs().max(y.abs()).max(f64::MIN_POSITIVE);
        eprintln!("{name}: {key} {x:.8e} whole vs {y:.8e} micro (rel {rel:.2e})");
        if x != y {
            worst_metric = worst_metric.max(rel);
        }
        assert!(close(x, y, 1e-5, 1e-7), "{name}: {key} {x} vs {y}");
    }
    let strip = |m: &StepMetrics| StepMetrics {
        reward_mean: 0.0,
        reward_std: 0.0,
        pg_loss: 0.0,
        kl: 0.0,
        entropy: 0.0,
        clip_ratio_low: 0.0,
        clip_ratio_high: 0.0,
        clip_ratio: 0.0,
        grad_norm: 0.0,
        ..m.without_timing()
    };
    assert_eq!(
        strip(ma),
        strip(mb),
        "{name}: the steps differ beyond the loss"
    );
    assert!(ma.updates >= 1 && ma.skipped_updates == 0, "{name}: {ma:?}");
    // The weights: each tensor's update w − w₀ (what the step changed) is
    // the same up to rounding; the relative difference of the whole update
    // and of each tensor large enough to matter.
    let start = start_weights(&root.join(format!("start-{name}")));
    let (wa, wb) = (
        tensors(&a.join("final/model.safetensors")),
        tensors(&b.join("final/model.safetensors")),
    );
    let (mut diff2, mut norm2, mut worst) = (0.0f64, 0.0f64, 0.0f64);
    for (key, w0) in &start {
        let (x, y) = (&wa[key], &wb[key]);
        let (mut d2, mut n2) = (0.0f64, 0.0f64);
        for ((&p, &q), &o) in x.iter().zip(y).zip(w0) {
            let (dp, dq) = (f64::from(p) - f64::from(o), f64::from(q) - f64::from(o));
            d2 += (dp - dq).powi(2);
            n2 += dp.powi(2);
        }
        if n2 > 0.0 {
            worst = worst.max((d2 / n2).sqrt());
        } else {
            assert_eq!(d2, 0.0, "{name}: {key} moved only with micro-batches");
        }
        diff2 += d2;
        norm2 += n2;
    }
    assert!(norm2 > 0.0, "{name}: the step moved no weight");
    let overall = (diff2 / norm2).sqrt();
    eprintln!(
        "{name}: weight updates differ by {overall:.2e} overall, {worst:.2e} in the worst \
         tensor; loss metrics by ≤ {worst_metric:.2e}"
    );
    assert!(
        overall <= 2e-4,
        "{name}: weight updates differ by {overall:.2e}"
    );
    assert!(
        worst <= 1e-3,
        "{name}: a tensor's update differs by {worst:.2e}"
    );
    mb.clone()
}

/// Completions long enough that some rows stop early: ragged lengths, so
/// the aggregation modes weigh tokens differently and micro-batches differ
/// in width and token count.
fn ragged() -> Vec<String> {
    vec!["grpo.max_new_tokens=96".to_string()]
}

/// The other tiny model (seed 8) as a HF directory, for a reference that
/// is not the starting actor: KL > 0 from the first step.
fn other_reference(root: &Path) -> PathBuf {
    let dir = root.join("reference");
    if !dir.exists() {
        let other = vgrpo::default_model::tiny_model(8, &vgrpo::device::test_device()).unwrap();
        vgrpo::model_source::export_model(
            &other,
            vgrpo::default_model::TINY_CONFIG_JSON,
            &vgrpo::text::Tokenizer::tiny().unwrap(),
            &dir,
        )
        .unwrap();
    }
    dir
}

#[test]
fn micro_batches_of_one_group_give_the_whole_mini_batch_update_in_every_aggregation_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = other_reference(tmp.path());
    // The KL to another model goes into the reward: the untrained model's
    // raw rewards are all 0, so this is what gives the rollouts of a group
    // different advantages (and the clipped surrogate a gradient).
    for mode in [
        "token-mean",
        "seq-mean-token-mean",
        "seq-mean-token-sum-norm",
    ] {
        let extra = format!(
            "loss_aggregation = \"{mode}\"\nkl_coef = 0.5\nkl_placement = \"reward\"\n\
             reference = \"{}\"\n",
            reference.display()
        );
        micro_batches_match_the_whole(tmp.path(), mode, &extra, &ragged(), 4);
    }
}

#[test]
fn micro_batches_in_several_epochs_of_mini_batches_and_with_the_head_in_chunks() {
    let tmp = tempfile::tempdir().unwrap();
    let reference = other_reference(tmp.path());
    // 4 prompts × G = 4 = 16 rollouts: mini-batches of 8 (two groups,
    // shuffled as units), μ = 2 passes, 4 optimizer steps per step, each
    // of 2 micro-batches of one group. Off-policy, so the old log-probs
    // come from the micro-batched no-grad pass; the LM head runs 3
    // positions at a time (the two-stage backward inside each micro-batch).
    let common = format!(
        "mini_batch_size = 8\nppo_epochs = 2\nlogit_chunk = 3\nkl_coef = 0.5\n\
         reference = \"{}\"\n",
        reference.display()
    );
    let sets = [ragged(), vec!["grpo.prompts_per_step=4".to_string()]].concat();
    // KL in the reward (advantages ≠ 0, clipping in the second pass), and
    // in the loss (its gradient through the scaled loss).
    let reward = common.clone() + "kl_placement = \"reward\"\n";
    let m = micro_batches_match_the_whole(tmp.path(), "epochs-kl-reward", &reward, &sets, 4);
    assert_eq!(m.updates, 4, "2 mini-batches × 2 passes");
    assert!(m.clip_ratio > 0.0, "the second pass clips: {m:?}");
    let loss = common + "loss_aggregation = \"seq-mean-token-mean\"\n";
    let m = micro_batches_match_the_whole(tmp.path(), "epochs-kl-loss", &loss, &sets, 4);
    assert_eq!(m.updates, 4);
}
