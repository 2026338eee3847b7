//! Exact resume at the optimizer level, on the embedded tiny model.
//!
//! A toy training loop over video prompts (random pixel patches through the
//! vision tower, then text) that has every piece of state a real run has — AdamW
//! moments, a warmup+cosine learning rate, global gradient clipping, a
//! shuffled data cursor, a "sampling" RNG and an update-order RNG that each
//! step draws from, and a metrics JSONL file — runs 2N steps straight. The
//! same loop then runs N steps, checkpoints through `CheckpointDir` +
//! `train_state`, takes one more step whose effects must be thrown away
//! (an uncommitted metrics row), and resumes from the checkpoint into a
//! freshly built model and optimizer — in this process, and in a separate
//! process (this test binary re-run on the ignored `resume_child` test,
//! with one CPU worker thread instead of one per core).
//! Final weights must be bit-identical, and so must the metrics file and the
//! run state; also with the vision tower frozen.

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use serde::Serialize;
use vgrpo::checkpoint::{CheckpointDir, Resume};
use vgrpo::data::BatchCursor;
use vgrpo::default_model::{TINY_CONFIG_JSON, tiny_model};
use vgrpo::jsonl::JsonlWriter;
use vgrpo::logits::token_log_probs;
use vgrpo::model::position::{TOKEN_TEXT, TOKEN_VIDEO};
use vgrpo::model::{Batch, Grid, QwenVl, VideoInput};
use vgrpo::optim::{OptimConfig, Optimizer, StepOutcome, freeze_vision};
use vgrpo::rng::Rng;
use vgrpo::schedule::ScheduleKind;
use vgrpo::train_state::{self, Snapshot, TrainState};

/// Steps before the checkpoint; the run is 2N steps.
const N: u64 = 3;
const SEED: u64 = 11;
const ROWS: usize = 6;
const BATCH: usize = 2;
const SEQ: usize = 12;
/// Token ids drawn from the BPE part of the tiny vocabulary.
const TEXT_VOCAB: u64 = 1024;
/// Each row starts with a video of one temporal group of 4 × 6 patches:
/// 6 video tokens after 2 × 2 merging, bracketed by vision start/end.
const GRID: Grid = Grid { t: 1, h: 4, w: 6 };
const VIDEO_TOKENS: usize = 6;
/// Prompt length: vision start, video tokens, vision end, text.
const LEN: usize = VIDEO_TOKENS + 2 + SEQ;

const CHILD_DIR_VAR: &str = "VGRPO_RESUME_CHILD_DIR";

fn optim_config() -> OptimConfig {
    OptimConfig {
        lr: 1e-3,
        weight_decay: 0.01,
        max_grad_norm: 0.5,
        schedule: ScheduleKind::WarmupCosine,
        warmup_ratio: 0.3,
        min_lr_ratio: 0.1,
        ..OptimConfig::default()
    }
}

fn device() -> Device {
    vgrpo::device::test_device().autodiff()
}

/// The toy data set: ROWS fixed token sequences.
fn corpus() -> Vec<Vec<i64>> {
    let mut rng = Rng::stream(SEED, "toy-corpus");
    (0..ROWS)
        .map(|_| (0..SEQ).map(|_| rng.below(TEXT_VOCAB) as i64).collect())
        .collect()
}

/// The pixel patches of row `row`'s video, `[GRID.patches() * patch_dim]`.
fn pixels(row: usize, patch_dim: usize) -> Vec<f32> {
    let mut rng = Rng::stream(SEED, "toy-pixels").fork(row as u64);
    (0..GRID.patches() * patch_dim)
        .map(|_| rng.normal() as f32)
        .collect()
}

#[derive(Serialize)]
struct MetricsRow {
    step: u64,
    loss: f32,
    grad_norm: f64,
    lr: f64,
    clipped: bool,
}

struct Run {
    model: QwenVl,
    optimizer: Optimizer,
    state: TrainState,
    cursor: BatchCursor,
    metrics: JsonlWriter,
    run_dir: PathBuf,
}

/// Freezing is re-applied after a resume, as on a fresh start.
fn maybe_freeze(model: QwenVl, frozen: bool) -> QwenVl {
    if frozen { freeze_vision(model) } else { model }
}

impl Run {
    fn fresh(run_dir: &Path, device: &Device, frozen: bool) -> Run {
        Run {
            model: maybe_freeze(tiny_model(SEED, device).unwrap(), frozen),
            optimizer: Optimizer::new(&optim_config()),
            state: TrainState::fresh(SEED),
            cursor: BatchCursor::new(SEED, ROWS, BATCH).unwrap(),
            metrics: JsonlWriter::create(&run_dir.join("metrics.jsonl")).unwrap(),
            run_dir: run_dir.to_path_buf(),
        }
    }

    /// Continues from `checkpoints/latest` into a model built from another
    /// seed, so nothing but the checkpoint can make it match.
    fn resume(run_dir: &Path, device: &Device, frozen: bool) -> Run {
        let ck = checkpoints(run_dir);
        let dir = ck.resolve(&Resume::Auto).unwrap().expect("a checkpoint");
        let restored = train_state::load(
            &dir,
            tiny_model(SEED + 1000, device).unwrap(),
            Optimizer::new(&optim_config()),
        )
        .unwrap();
        let state = restored.state;
        Run {
            model: maybe_freeze(restored.actor, frozen),
            optimizer: restored.optimizer,
            cursor: BatchCursor::resume(SEED, ROWS, BATCH, state.data).unwrap(),
            metrics: JsonlWriter::resume(&run_dir.join("metrics.jsonl"), state.metrics_len)
                .unwrap(),
            state,
            run_dir: run_dir.to_path_buf(),
        }
    }

    /// One update: the cursor picks the rows, the update RNG orders them,
    /// the rollout RNG corrupts one token per row (standing in for
    /// sampling), and the loss is next-token cross-entropy.
    fn step(&mut self, device: &Device) {
        let data = corpus();
        let mut rows = self.cursor.next_batch();
        self.state.rng.update.shuffle(&mut rows);
        let c = &self.model.config;
        let video = [
            vec![i64::from(c.vision_start_token_id)],
            vec![i64::from(c.video_token_id); VIDEO_TOKENS],
            vec![i64::from(c.vision_end_token_id)],
        ]
        .concat();
        let types = [
            vec![TOKEN_TEXT],
            vec![TOKEN_VIDEO; VIDEO_TOKENS],
            vec![TOKEN_TEXT; 1 + SEQ],
        ]
        .concat();
        let tokens: Vec<Vec<i64>> = rows
            .iter()
            .map(|&r| {
                let mut text = data[r].clone();
                let at = self.state.rng.rollout.index(SEQ);
                text[at] = self.state.rng.rollout.below(TEXT_VOCAB) as i64;
                [video.clone(), text].concat()
            })
            .collect();
        let patch_dim = c.vision.patch_dim();
        let pixel_values: Vec<f32> = rows.iter().flat_map(|&r| pixels(r, patch_dim)).collect();
        let flat: Vec<i64> = tokens.iter().flatten().copied().collect();
        let targets = Tensor::<2, Int>::from_data(TensorData::new(flat, [BATCH, LEN]), device)
            .slice([0..BATCH, 1..LEN]);
        let batch = Batch {
            attention_mask: vec![vec![true; LEN]; BATCH],
            token_types: vec![types; BATCH],
            input_ids: tokens,
            video: Some(VideoInput {
                pixel_values: Tensor::from_data(
                    TensorData::new(pixel_values, [BATCH * GRID.patches(), patch_dim]),
                    device,
                ),
                grids: vec![GRID; BATCH],
                second_per_grid_ts: vec![1.0; BATCH],
                shared_across_rows: false,
            }),
        };
        let logits = self.model.forward(&batch, device).unwrap();
        let logits = logits.slice([0..BATCH, 0..LEN - 1]);
        // loss = −mean log p(next token), a [1] tensor
        let loss = token_log_probs(logits, targets, 1.0).mean().neg();
        let loss_value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);

        let lr = optim_config().to_schedule().lr_at(self.state.step, 2 * N);
        let model = self.model.clone();
        let (model, outcome) = self.optimizer.step(model, grads, lr).unwrap();
        self.model = model;
        let StepOutcome::Applied(stats) = outcome else {
            panic!("step {}: {outcome:?}", self.state.step)
        };
        self.metrics
            .append(&MetricsRow {
                step: self.state.step,
                loss: loss_value,
                grad_norm: stats.grad_norm,
                lr: stats.lr,
                clipped: stats.clipped,
            })
            .unwrap();
        self.state.step += 1;
        self.state.data = self.cursor.cursor();
        self.state.metrics_len = self.metrics.len();
    }

    fn save(&self) {
        checkpoints(&self.run_dir)
            .save(self.state.step, |dir| {
                train_state::save(
                    dir,
                    &Snapshot {
                        actor: &self.model,
                        model_config_json: TINY_CONFIG_JSON,
                        optimizer: &self.optimizer,
                        state: &self.state,
                    },
                )
            })
            .unwrap();
    }

    fn metrics_text(&self) -> String {
        std::fs::read_to_string(self.run_dir.join("metrics.jsonl")).unwrap()
    }
}

fn checkpoints(run_dir: &Path) -> CheckpointDir {
    CheckpointDir::new(run_dir.join("checkpoints"), 2)
}

/// Every parameter as (path, f32 bit patterns), in module order.
fn weight_bits(model: &QwenVl) -> Vec<(String, Vec<u32>)> {
    struct Bits(Vec<(String, Vec<u32>)>, Vec<String>);
    impl ModuleVisitor for Bits {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.1.push(name.to_string());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.1.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let values = param.val().into_data().try_to_vec::<f32>().unwrap();
            self.0.push((
                self.1.join("."),
                values.iter().map(|v| v.to_bits()).collect(),
            ));
        }
    }
    let mut bits = Bits(Vec::new(), Vec::new());
    model.visit(&mut bits);
    bits.0
}

/// The vision tower's weights only.
fn vision_bits(model: &QwenVl) -> Vec<(String, Vec<u32>)> {
    weight_bits(model)
        .into_iter()
        .filter(|(name, _)| name.starts_with("model.visual."))
        .collect()
}

fn assert_same_weights(a: &QwenVl, b: &QwenVl, what: &str) {
    let (a, b) = (weight_bits(a), weight_bits(b));
    assert_eq!(a.len(), b.len());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        let differing = x.iter().zip(y).filter(|(p, q)| p != q).count();
        assert_eq!(
            differing,
            0,
            "{what}: {name} differs in {differing} of {} values",
            x.len()
        );
    }
}

fn straight_run(dir: &Path, device: &Device, frozen: bool) -> Run {
    let mut run = Run::fresh(dir, device, frozen);
    for _ in 0..2 * N {
        run.step(device);
    }
    run
}

/// N steps, a checkpoint, and one more step that the resume must discard.
fn first_half(dir: &Path, device: &Device, frozen: bool) {
    let mut run = Run::fresh(dir, device, frozen);
    for _ in 0..N {
        run.step(device);
    }
    run.save();
    run.step(device);
    assert_eq!(run.metrics_text().lines().count() as u64, N + 1);
}

fn second_half(dir: &Path, device: &Device, frozen: bool) -> Run {
    let mut run = Run::resume(dir, device, frozen);
    assert_eq!(run.state.step, N);
    while run.state.step < 2 * N {
        run.step(device);
    }
    run
}

#[test]
fn two_straight_runs_agree_bit_for_bit() {
    let device = device();
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = straight_run(d1.path(), &device, false);
    let b = straight_run(d2.path(), &device, false);
    assert_same_weights(&a.model, &b.model, "second straight run");
    assert_eq!(a.metrics_text(), b.metrics_text());
    // The run exercises what a resume must carry: clipping on some steps,
    // a changing learning rate, a falling loss.
    let rows: Vec<serde_json::Value> = a
        .metrics_text()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len() as u64, 2 * N);
    assert!(rows.iter().any(|r| r["clipped"] == true));
    let lrs: Vec<f64> = rows.iter().map(|r| r["lr"].as_f64().unwrap()).collect();
    assert!(lrs.windows(2).any(|w| w[0] != w[1]), "{lrs:?}");
    // All weights moved from their initial values, the vision tower's too.
    let initial = tiny_model(SEED, &device).unwrap();
    assert_ne!(weight_bits(&a.model), weight_bits(&initial));
    assert_ne!(
        vision_bits(&a.model),
        vision_bits(&initial),
        "the video trains the vision tower"
    );
}

#[test]
fn resume_in_process_matches_the_straight_run() {
    let device = device();
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = straight_run(straight_dir.path(), &device, false);

    let dir = tempfile::tempdir().unwrap();
    first_half(dir.path(), &device, false);
    let resumed = second_half(dir.path(), &device, false);
    assert_same_weights(&straight.model, &resumed.model, "resumed run");
    assert_eq!(straight.metrics_text(), resumed.metrics_text());
    assert_eq!(straight.state, resumed.state);

    // Control: the same resume without the AdamW state does not match, so
    // the comparison above is sensitive to what the checkpoint carries.
    let ck = checkpoints(dir.path()).latest().unwrap().unwrap();
    let actor = train_state::load_actor(&ck, tiny_model(SEED + 1000, &device).unwrap()).unwrap();
    let mut lost = Run::resume(dir.path(), &device, false);
    lost.model = actor;
    lost.optimizer = Optimizer::new(&optim_config());
    while lost.state.step < 2 * N {
        lost.step(&device);
    }
    assert_ne!(weight_bits(&straight.model), weight_bits(&lost.model));
}

#[test]
fn resume_with_a_frozen_vision_tower_matches_the_straight_run() {
    let device = device();
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = straight_run(straight_dir.path(), &device, true);
    let dir = tempfile::tempdir().unwrap();
    first_half(dir.path(), &device, true);
    let resumed = second_half(dir.path(), &device, true);
    assert_same_weights(&straight.model, &resumed.model, "resumed frozen run");
    assert_eq!(straight.metrics_text(), resumed.metrics_text());
    // The tower kept its initial weights; the rest trained.
    let initial = tiny_model(SEED, &device).unwrap();
    assert_eq!(vision_bits(&resumed.model), vision_bits(&initial));
    assert_ne!(weight_bits(&resumed.model), weight_bits(&initial));
}

#[test]
fn resume_in_another_process_matches_the_straight_run() {
    let device = device();
    let straight_dir = tempfile::tempdir().unwrap();
    let straight = straight_run(straight_dir.path(), &device, false);

    let dir = tempfile::tempdir().unwrap();
    first_half(dir.path(), &device, false);
    let exe = std::env::current_exe().unwrap();
    let output = Command::new(exe)
        .args([
            "--exact",
            "resume_child",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_VAR, dir.path())
        // One worker thread instead of one per core: the CPU backend's
        // results must not depend on how it splits the work.
        .env("RAYON_NUM_THREADS", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "child failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("1 passed"),
        "the child test did not run:\n{stdout}"
    );
    assert_ne!(
        printed(&stdout, "resume_child pid"),
        u64::from(std::process::id())
    );
    // The seeded initialisation is the same in another process.
    assert_eq!(
        printed(&stdout, "init fingerprint"),
        fingerprint(&tiny_model(SEED, &device).unwrap())
    );

    // The child checkpointed its final state; read it back here.
    let final_ck = checkpoints(dir.path()).latest().unwrap().unwrap();
    assert!(final_ck.ends_with(format!("step_{:06}", 2 * N)));
    let restored = train_state::load(
        &final_ck,
        tiny_model(SEED + 2000, &device).unwrap(),
        Optimizer::new(&optim_config()),
    )
    .unwrap();
    assert_same_weights(
        &straight.model,
        &restored.actor,
        "run resumed in a child process",
    );
    assert_eq!(straight.state, restored.state);
    assert_eq!(
        straight.metrics_text(),
        std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap()
    );
}

/// A number the child printed after `label `.
fn printed(stdout: &str, label: &str) -> u64 {
    // The harness prints "test resume_child ... " on the first such line.
    stdout
        .split_once(&format!("{label} "))
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no {label:?} in the child's output:\n{stdout}"))
}

/// FNV-1a over every weight's bits: equal iff the weights are (in practice).
fn fingerprint(model: &QwenVl) -> u64 {
    weight_bits(model)
        .iter()
        .flat_map(|(_, bits)| bits)
        .fold(0xCBF2_9CE4_8422_2325, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01B3)
        })
}

/// The resumed half, in its own process: run by
/// `resume_in_another_process_matches_the_straight_run`, which passes the
/// run directory in `VGRPO_RESUME_CHILD_DIR`.
#[test]
#[ignore = "child half of resume_in_another_process_matches_the_straight_run"]
fn resume_child() {
    let dir = PathBuf::from(
        std::env::var_os(CHILD_DIR_VAR)
            .expect("run by the parent test with VGRPO_RESUME_CHILD_DIR"),
    );
    println!("resume_child pid {}", std::process::id());
    let device = device();
    println!(
        "init fingerprint {}",
        fingerprint(&tiny_model(SEED, &device).unwrap())
    );
    let run = second_half(&dir, &device, false);
    run.save();
}
