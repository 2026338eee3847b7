//! LoRA on the tiny model: a fresh adapter changes nothing, training moves
//! only the adapters, the adapters-off model is the reference, and GRPO and
//! SFT with `[lora]` run end to end (checkpointing only the adapters) and
//! resume byte-identical after a crash.

mod judge_data;

use std::path::{Path, PathBuf};
use std::process::Command;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;
use vgrpo::default_model::tiny_model;
use vgrpo::device::test_device;
use vgrpo::model::logprob::{CompletionBatch, completion_logprobs};
use vgrpo::model::{Batch, LoraConfig, QwenVl};
use vgrpo::rng::Rng;
use vgrpo::run::CRASH_ENV;
use vgrpo::train_state;
use vgrpo::trainable::{adapter_parameters, parameters, reference_of, trainable};

const BIN: &str = env!("CARGO_BIN_EXE_vgrpo");
const SEED: u64 = 5;

fn lora() -> LoraConfig {
    LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    }
}

/// Every float parameter's values, by module path order, as raw bytes.
fn parameter_bytes(model: &QwenVl) -> Vec<Vec<u8>> {
    struct Bytes(Vec<Vec<u8>>);
    impl ModuleVisitor for Bytes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.val().into_data().as_bytes().to_vec());
        }
    }
    let mut out = Bytes(Vec::new());
    model.visit(&mut out);
    out.0
}

/// Two text prompts and completions of different lengths.
fn completions() -> CompletionBatch {
    let prompts = Batch::text(vec![vec![5, 9, 11, 14], vec![7, 3, 12, 20]]);
    CompletionBatch::new(&prompts, 1, &[vec![21, 22, 23], vec![24, 25]], 0).unwrap()
}

fn logprobs(model: &QwenVl) -> Vec<f32> {
    let device = test_device();
    completion_logprobs(model, &completions(), 1.0, &device)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

fn logits(model: &QwenVl) -> Vec<f32> {
    let device = test_device();
    let batch = Batch::text(vec![vec![5, 9, 11, 14, 21, 22]]);
    model
        .forward(&batch, &device)
        .unwrap()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap()
}

#[test]
fn a_fresh_adapter_gives_the_base_logits_exactly() {
    let device = test_device();
    let base = tiny_model(SEED, &device).unwrap();
    let (adapted, names) = base.clone().with_fresh_adapters(&lora(), &mut Rng::new(1));
    // Seven projections per decoder layer, none in the vision tower.
    let layers = base.config.text.num_hidden_layers;
    assert_eq!(names.len(), 7 * layers);
    assert!(names.iter().all(|n| n.starts_with("model.language_model.")));
    assert!(adapted.has_adapters());
    assert_eq!(logits(&adapted), logits(&base));
    assert!(adapter_parameters(&adapted) * 10 < parameters(&adapted));
}

/// `--config` of a run `name` of `trainer` under `root`, with `[lora]`.
fn config(root: &Path, manifest: &Path, trainer: &str, name: &str) -> PathBuf {
    let section = match trainer {
        "train" => format!(
            "[grpo]\nsteps = 4\nprompts_per_step = 2\ngroup_size = 2\nmax_new_tokens = 6\n\
             save_every = 2\nrollouts_dir = \"{}\"\n",
            root.join("rollouts").display()
        ),
        _ => "[sft]\nmax_steps = 4\nbatch = 2\ncheckpoint_every = 2\n".to_string(),
    };
    let text = format!(
        "[run]\nname = \"{name}\"\nseed = {SEED}\nout_dir = \"{runs}\"\n\
         [data]\nmanifest = \"{manifest}\"\n\
         [video]\nfps = 8.0\nmin_frames = 2\nmax_frames = 4\ntoken_budget = 16\n\
         workers = 1\nqueue_depth = 2\n\
         [optim]\nlr = 1e-2\n\
         [lora]\nrank = 4\nalpha = 8.0\n{section}",
        runs = root.join("runs").display(),
        manifest = manifest.display(),
    );
    let path = root.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

fn run(trainer: &str, config: &Path, resume: bool, crash: Option<&str>) -> bool {
    let mut cmd = Command::new(BIN);
    cmd.arg(trainer).arg("--config").arg(config);
    if resume {
        cmd.args(["--resume", "auto"]);
    }
    cmd.env_remove(CRASH_ENV);
    if let Some(point) = crash {
        cmd.env(CRASH_ENV, point);
    }
    let out = cmd.output().unwrap();
    eprintln!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success()
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The metrics rows without wall-clock fields.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    String::from_utf8(read(&run.join("metrics.jsonl")))
        .unwrap()
        .lines()
        .map(|line| {
            let mut row: serde_json::Value = serde_json::from_str(line).unwrap();
            row.as_object_mut().unwrap().retain(|key, _| {
                !["seconds", "tokens_per_s", "timing"]
                    .iter()
                    .any(|t| key.contains(t))
            });
            row
        })
        .collect()
}

/// The trained actor of checkpoint `dir`: the run's base (the tiny model of
/// the run's seed) with the checkpoint's adapters.
fn checkpointed_actor(dir: &Path) -> QwenVl {
    let device = test_device().autodiff();
    let fresh = trainable(tiny_model(SEED, &device).unwrap(), Some(&lora()), SEED);
    train_state::load_actor(dir, fresh).unwrap().valid()
}

/// A LoRA run of `trainer`: straight, and crashed while writing its second
/// checkpoint then resumed, end byte-identical; the checkpoints hold only
/// the adapters; the trained adapters moved while the base did not, and
/// the adapters-off model is the starting model.
fn lora_run_trains_adapters_and_resumes(trainer: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let manifest = judge_data::write_dataset(&root.join("data"));
    assert!(run(
        trainer,
        &config(root, &manifest, trainer, "straight"),
        false,
        None
    ));
    let crashed = config(root, &manifest, trainer, "crashed");
    assert!(!run(trainer, &crashed, false, Some("checkpoint-4")));
    assert!(run(trainer, &crashed, true, None));

    let (a, b) = (root.join("runs/straight"), root.join("runs/crashed"));
    assert_eq!(metrics(&a), metrics(&b));
    let weights = |r: &Path| read(&r.join("final/model.safetensors"));
    assert!(weights(&a) == weights(&b), "final weights differ");
    if trainer == "train" {
        let rows = |n: &str| {
            String::from_utf8(read(&root.join(format!("rollouts/{n}/cooloff.jsonl"))))
                .unwrap()
                .replace(n, "RUN")
        };
        assert_eq!(rows("straight"), rows("crashed"));
    }

    let step = a.join("checkpoints/step_000004");
    assert!(step.join(train_state::ADAPTERS_FILE).is_file());
    assert!(!step.join(train_state::ACTOR_FILE).exists());
    let device = test_device();
    let base = tiny_model(SEED, &device).unwrap();
    let actor = checkpointed_actor(&step);
    let fresh = trainable(base.clone(), Some(&lora()), SEED);
    let (trained, start) = (parameter_bytes(&actor), parameter_bytes(&fresh));
    let base_bytes = parameter_bytes(&base);
    // Base tensors come first in each projection (weight, bias, then A, B):
    // compare the adapters-off models, which hold exactly the base tensors.
    assert_eq!(parameter_bytes(&actor.without_adapters()), base_bytes);
    assert_ne!(trained, start, "the adapters did not move");
    // The reference a LoRA run uses is the base, and the trained actor with
    // its adapters off gives its log-probs exactly.
    assert_eq!(logprobs(&actor.without_adapters()), logprobs(&base));
    assert_eq!(logprobs(&reference_of(&fresh)), logprobs(&base));
    assert_ne!(logprobs(&actor), logprobs(&base));
    // The merged export is the trained actor.
    let exported = QwenVl::from_hf_dir(&a.join("final"), &device).unwrap();
    let (x, y) = (logprobs(&exported), logprobs(&actor));
    let worst = x
        .iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "merged export differs by {worst}");
    // The adapters alone, in PEFT format, on the run's base: the same model.
    let source = vgrpo::model_source::ModelConfig {
        adapter: Some(a.join("final/adapter")),
        ..Default::default()
    };
    let peft = vgrpo::model_source::load_model(&source, SEED, &device).unwrap();
    let z = logprobs(&peft.model);
    let worst = z
        .iter()
        .zip(&y)
        .map(|(p, q)| (p - q).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-4, "base + final/adapter differs by {worst}");
}

#[test]
fn grpo_with_lora_trains_only_the_adapters_and_resumes_byte_identical() {
    lora_run_trains_adapters_and_resumes("train");
}

#[test]
fn sft_with_lora_trains_only_the_adapters_and_resumes_byte_identical() {
    lora_run_trains_adapters_and_resumes("sft");
}

/// A bf16 base stays bf16, gets no gradients, and the f32 adapters on it
/// get f32 gradients (their AdamW moments are then f32 too).
#[test]
fn a_bf16_base_trains_f32_adapters() {
    use burn::optim::GradientsParams;
    let device = test_device().autodiff();
    let base = tiny_model(SEED, &device)
        .unwrap()
        .with_float_dtype(burn::tensor::FloatDType::BF16);
    let mut model = trainable(base, Some(&lora()), SEED);
    let lp = completion_logprobs(&model, &completions(), 1.0, &device).unwrap();
    let grads = GradientsParams::from_grads(lp.sum().backward(), &model);
    let projections = model.projections_mut();
    let mut adapted = 0;
    for (name, p) in projections {
        assert_eq!(p.weight.val().dtype(), burn::tensor::DType::BF16, "{name}");
        assert!(
            grads.get::<2>(p.weight.id).is_none(),
            "{name}: base got a gradient"
        );
        if let Some(a) = &p.adapter {
            assert_eq!(a.lora_a.val().dtype(), burn::tensor::DType::F32);
            let g = grads
                .get::<2>(a.lora_b.id)
                .expect("adapter B has a gradient");
            assert_eq!(g.dtype(), burn::tensor::DType::F32, "{name}");
            adapted += 1;
        }
    }
    assert!(adapted > 0);
}

/// The tiny model as a HF directory stored in bf16, as the released Qwen
/// checkpoints are (the export writes the cast parameters as bf16 and
/// names the dtype in `config.json`).
fn bf16_model_dir(root: &Path) -> PathBuf {
    let device = test_device();
    let loaded = vgrpo::model_source::load_model(&Default::default(), SEED, &device).unwrap();
    let dir = root.join("tiny-bf16");
    let bf16 = loaded
        .model
        .with_float_dtype(burn::tensor::FloatDType::BF16);
    vgrpo::model_source::export_model(&bf16, &loaded.config_json, &loaded.tokenizer, &dir).unwrap();
    let config = std::fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(config.contains("bfloat16"), "{config}");
    dir
}

/// `model.dtype = "auto"` keeps a bf16 checkpoint bf16 for a LoRA run
/// (GRPO end to end), while full fine-tuning of it loads f32 masters and a
/// half `model.dtype` without `[lora]` is refused.
#[test]
fn grpo_with_lora_on_a_bf16_checkpoint_runs_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let manifest = judge_data::write_dataset(&root.join("data"));
    let model = bf16_model_dir(root);
    let device = test_device();
    let dtype_of = |m: &QwenVl| m.model.language_model.embed_tokens.weight.val().dtype();
    let auto = vgrpo::model_source::ModelConfig {
        path: Some(model.clone()),
        ..Default::default()
    };
    let held = vgrpo::model_source::load_model(&auto, 0, &device).unwrap();
    assert_eq!(dtype_of(&held.model), burn::tensor::DType::BF16);
    let full = auto.for_training(false).unwrap();
    let masters = vgrpo::model_source::load_model(&full, 0, &device).unwrap();
    assert_eq!(dtype_of(&masters.model), burn::tensor::DType::F32);
    let half = vgrpo::model_source::ModelConfig {
        dtype: vgrpo::model_source::WeightDtype::Bf16,
        ..auto.clone()
    };
    let refused = half.for_training(false).unwrap_err().to_string();
    assert!(refused.contains("f32 master weights"), "{refused}");

    let config = config(root, &manifest, "train", "bf16");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace(
        "[optim]",
        &format!("[model]\npath = \"{}\"\n[optim]", model.display()),
    );
    std::fs::write(&config, text).unwrap();
    assert!(run("train", &config, false, None));
    let exported = QwenVl::from_hf_dir(&root.join("runs/bf16/final"), &device).unwrap();
    let logits = logits(&exported);
    assert!(logits.iter().all(|x| x.is_finite()));
}

/// Gradient checkpointing recomputes activations in the backward pass: the
/// same run with it gives the same metrics and weights.
#[test]
fn gradient_checkpointing_changes_no_result() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let manifest = judge_data::write_dataset(&root.join("data"));
    for trainer in ["train", "sft"] {
        let plain = config(root, &manifest, trainer, &format!("{trainer}-plain"));
        let ckpt = config(root, &manifest, trainer, &format!("{trainer}-ckpt"));
        let text = std::fs::read_to_string(&ckpt).unwrap();
        std::fs::write(
            &ckpt,
            text.replace("[data]", "gradient_checkpointing = true\n[data]"),
        )
        .unwrap();
        assert!(run(trainer, &plain, false, None));
        assert!(run(trainer, &ckpt, false, None));
        let (a, b) = (
            root.join(format!("runs/{trainer}-plain")),
            root.join(format!("runs/{trainer}-ckpt")),
        );
        assert_eq!(metrics(&a), metrics(&b), "{trainer}");
        let weights = |r: &Path| read(&r.join("final/model.safetensors"));
        assert!(
            weights(&a) == weights(&b),
            "{trainer}: final weights differ"
        );
    }
}

/// `lora.dropout` drops adapter inputs in training passes only: the first
/// step's rollouts are the dropout-free run's, the trained weights are
/// not, and a crashed run resumes byte-identical (the masks come from the
/// checkpointed state).
#[test]
fn lora_dropout_trains_differently_and_resumes_byte_identical() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let manifest = judge_data::write_dataset(&root.join("data"));
    for trainer in ["train", "sft"] {
        let with_dropout = |name: &str| {
            let path = config(root, &manifest, trainer, name);
            let text = std::fs::read_to_string(&path).unwrap();
            let text = text.replace("[lora]\nrank = 4\n", "[lora]\nrank = 4\ndropout = 0.3\n");
            std::fs::write(&path, text).unwrap();
            path
        };
        let plain = config(root, &manifest, trainer, &format!("{trainer}-plain"));
        let straight = with_dropout(&format!("{trainer}-dropout"));
        let crashed = with_dropout(&format!("{trainer}-dropout-crashed"));
        assert!(run(trainer, &plain, false, None));
        assert!(run(trainer, &straight, false, None));
        assert!(!run(trainer, &crashed, false, Some("checkpoint-4")));
        assert!(run(trainer, &crashed, true, None));
        let dir = |n: &str| root.join(format!("runs/{trainer}-{n}"));
        let weights = |r: &Path| read(&r.join("final/model.safetensors"));
        assert!(
            weights(&dir("dropout")) == weights(&dir("dropout-crashed")),
            "{trainer}: resumed weights differ"
        );
        assert_eq!(metrics(&dir("dropout")), metrics(&dir("dropout-crashed")));
        assert!(
            weights(&dir("plain")) != weights(&dir("dropout")),
            "{trainer}: dropout changed nothing"
        );
        if trainer == "train" {
            let first = |r: &Path| metrics(r)[0]["reward_mean"].clone();
            assert_eq!(first(&dir("plain")), first(&dir("dropout")));
        }
    }
}

/// A pipeline with `[lora]`: every training stage trains adapters on the
/// previous stage's merged `final/` and leaves its adapters beside it.
#[test]
fn a_pipeline_with_lora_trains_adapters_in_every_stage() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let manifest = judge_data::write_dataset(&root.join("data"));
    let text = format!(
        "[run]\nname = \"lp\"\nseed = {SEED}\nout_dir = \"{runs}\"\n\
         [data]\nmanifest = \"{manifest}\"\n\
         [video]\nfps = 8.0\nmin_frames = 2\nmax_frames = 4\ntoken_budget = 16\n\
         workers = 1\nqueue_depth = 2\n\
         [lora]\nrank = 4\nalpha = 8.0\n\
         [sft]\nepochs = 1\nbatch = 2\n\
         [grpo]\nsteps = 2\nprompts_per_step = 2\ngroup_size = 2\nmax_new_tokens = 6\n\
         rollouts_dir = \"{rollouts}\"\n\
         [eval]\nmax_new_tokens = 8\nworkers = 1\n\
         [pipeline]\ncooloff_epochs = 1\n\
         [pipeline.sft_optim]\nlr = 1e-2\n\
         [pipeline.grpo_optim]\nlr = 1e-2\n",
        runs = root.join("runs").display(),
        manifest = manifest.display(),
        rollouts = root.join("rollouts").display(),
    );
    let config = root.join("lp.toml");
    std::fs::write(&config, text).unwrap();
    let out = Command::new(BIN)
        .args(["pipeline", "--config"])
        .arg(&config)
        .env_remove(CRASH_ENV)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    for stage in ["lp-cold", "lp-grpo"] {
        let dir = root.join("runs").join(stage);
        assert!(
            dir.join("final/adapter/adapter_config.json").is_file(),
            "{stage}: no adapter"
        );
        let last = dir.join("checkpoints/latest");
        let step = std::fs::read_to_string(&last).unwrap();
        let step = dir.join("checkpoints").join(step.trim());
        assert!(step.join(train_state::ADAPTERS_FILE).is_file(), "{stage}");
    }
    assert!(root.join("runs/lp/pipeline.md").is_file());
}
