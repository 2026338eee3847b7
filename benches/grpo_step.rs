//! One GRPO step: vgrpo's trainer against the same step written the way
//! TRL's `GRPOTrainer` runs it in transformers + torch, in one sitting, on
//! the same exported model and the same prompts.
//!
//! For each model (`tiny`: the embedded default; `real`: the Qwen3-VL-2B
//! widths and vocabulary with few layers and random weights) the bench
//! - writes the model in HF layout, one real clip and a manifest of P
//!   identical rows (so every step judges the same prompts, whatever the
//!   shuffle);
//! - runs `vgrpo::grpo::trainer::train` for `--steps` + 1 steps (the first
//!   is a warm-up) and reads each step's stage times from its
//!   `metrics.jsonl` (`timing_s`);
//! - writes the step's prompt batch as HF tensors and runs
//!   `benches/trl_grpo_step.py` on it: `generate` with
//!   `num_return_sequences = G`, prompts and video repeated per row, the
//!   reference's forward, the policy's forward + backward and AdamW;
//! - prints per-phase medians, the ratio vgrpo / torch, and for the update
//!   its model FLOPs against the backend's measured f32 matmul peak.
//!
//! Both sides sample at T = 1 from the same weights and stop a row at the
//! same end tokens, so their completions have the same distribution; the
//! completion tokens each side produced are printed with the times.
//!
//! `--parity` instead runs the transformers parity fixtures on the device
//! (what `scripts/gpu-check.sh` runs first).
//!
//! ```text
//! cargo bench --bench grpo_step [-- --model tiny|real|both --steps 3 --prompts 4 --tokens 48 --only vgrpo|torch]
//! ```
//! vgrpo's device is `$VGRPO_TEST_DEVICE` (`cpu`, `tch-cpu`, `cuda:0`, …),
//! torch's `$VGRPO_TORCH_DEVICE` (default `cpu`, one thread per core). The
//! Python is `$VGRPO_PYTHON`, else `python3`, and needs torch and
//! transformers (`scripts/gpu-check.sh` runs this bench on a GPU).

#[path = "common/mod.rs"]
mod common;

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};
use vgrpo::checkpoint::Resume;
use vgrpo::default_model::{TINY_CONFIG_JSON, init_like_hf, tiny_model};
use vgrpo::inputs::{InputSpec, prepare_example};
use vgrpo::model::{QwenVl, QwenVlConfig};
use vgrpo::rollout::{GroupPrompt, Tokens};
use vgrpo::text::{AnswerOrder, Tokenizer};

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Which model a run uses and how big its step is.
struct Shape {
    name: &'static str,
    config_json: String,
    prompts: usize,
    tokens: usize,
    /// `[video] max_frames` (None: the default).
    max_frames: Option<usize>,
}

struct Settings {
    models: Vec<String>,
    steps: usize,
    prompts: Option<usize>,
    tokens: Option<usize>,
    layers: usize,
    vision_layers: usize,
    /// `vgrpo` or `torch`: run one side only (e.g. under a profiler).
    only: Option<String>,
}

impl Settings {
    fn parse(args: &[String]) -> Settings {
        let mut s = Settings {
            models: vec!["tiny".into(), "real".into()],
            steps: 3,
            prompts: None,
            tokens: None,
            layers: 2,
            vision_layers: 4,
            only: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().cloned().unwrap_or_default();
            match flag.as_str() {
                "--model" => {
                    s.models = match value().as_str() {
                        "both" => vec!["tiny".into(), "real".into()],
                        one => vec![one.to_string()],
                    }
                }
                "--steps" => s.steps = value().parse().expect("--steps N"),
                "--prompts" => s.prompts = Some(value().parse().expect("--prompts N")),
                "--tokens" => s.tokens = Some(value().parse().expect("--tokens N")),
                "--layers" => s.layers = value().parse().expect("--layers N"),
                "--vision-layers" => s.vision_layers = value().parse().expect("--vision-layers N"),
                "--only" => s.only = Some(value()),
                _ => {} // cargo bench passes `--bench`
            }
        }
        s
    }

    fn shape(&self, model: &str) -> Shape {
        match model {
            "tiny" => Shape {
                name: "tiny",
                config_json: TINY_CONFIG_JSON.to_string(),
                prompts: self.prompts.unwrap_or(4),
                tokens: self.tokens.unwrap_or(48),
                max_frames: None,
            },
            "real" => Shape {
                name: "real-width",
                config_json: common::real_width_config(self.layers, self.vision_layers, "float32"),
                prompts: self.prompts.unwrap_or(1),
                tokens: self.tokens.unwrap_or(16),
                max_frames: Some(4),
            },
            other => panic!("--model {other}: the models are tiny, real and both"),
        }
    }
}

/// Median seconds of each phase over the timed steps, and the completion
/// tokens of one step.
#[derive(Debug, Default, Clone, Copy)]
struct Phases {
    generate: f64,
    old: f64,
    reference: f64,
    update: f64,
    step: f64,
    completion_tokens: f64,
    /// The process's peak resident set, GiB (vgrpo: this process, read
    /// after its run — the models were written before it).
    peak_rss_gib: f64,
}

fn main() -> BoxResult<()> {
    vgrpo::process::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let device = vgrpo::device::test_device();
    if args.iter().any(|a| a == "--parity") {
        return parity(&device);
    }
    let settings = Settings::parse(&args);
    println!(
        "GRPO step, G = 8, vgrpo on {:?} against TRL-style transformers + torch (CPU, {} threads)",
        device,
        threads()
    );
    let peak = matmul_peak(&device);
    println!(
        "f32 matmul peak on the vgrpo backend: {:.1} GFLOP/s",
        peak / 1e9
    );
    for model in &settings.models {
        bench(&settings, &settings.shape(model), peak)?;
    }
    Ok(())
}

/// `--parity`: the committed transformers fixtures (Qwen3-VL and
/// Qwen2.5-VL, each bare and with its PEFT adapter) on the bench's device,
/// as `vgrpo check-model` runs them — so that one shipped binary does all
/// of `scripts/gpu-check.sh`. Fixtures from `$VGRPO_FIXTURES`, else this
/// crate's `tests/fixtures`.
fn parity(device: &burn::tensor::Device) -> BoxResult<()> {
    use vgrpo::model::check::{Reference, check_loaded};
    let root = std::env::var_os("VGRPO_FIXTURES").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures"),
        std::path::PathBuf::from,
    );
    let mut failed = 0;
    for arch in ["qwen3_vl_tiny", "qwen2_5_vl_tiny"] {
        let dir = root.join(arch);
        for adapter in [false, true] {
            let base = QwenVl::from_hf_dir(&dir, device)?;
            let (model, file) = match adapter {
                false => (base, "reference.safetensors"),
                true => (
                    vgrpo::model::load_adapter(&dir.join("lora_adapter"), base)?,
                    "lora_reference.safetensors",
                ),
            };
            let path = dir.join(file);
            let report = check_loaded(&model, &Reference::read(&path)?, &path, 1e-4, device)?;
            println!(
                "{arch}{}: logits rel error {:.3e} over {} positions: {}",
                if adapter { " + PEFT adapter" } else { "" },
                report.rel_error,
                report.positions,
                if report.passed() {
                    "ok"
                } else {
                    "FAILED (limit 1e-4)"
                }
            );
            failed += usize::from(!report.passed());
        }
    }
    match failed {
        0 => Ok(()),
        n => Err(format!("{n} parity check(s) failed").into()),
    }
}

fn threads() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Runs both sides on `shape` and prints their table.
fn bench(settings: &Settings, shape: &Shape, peak: f64) -> BoxResult<()> {
    let steps = settings.steps;
    let runs = |side: &str| settings.only.as_deref().is_none_or(|o| o == side);
    let work = tempfile::tempdir()?;
    let root = work.path();
    let config = QwenVlConfig::from_json(&shape.config_json)?;
    write_model(shape, &config, &root.join("model"))?;
    write_manifest(root, shape.prompts)?;
    let text = run_config(shape, root, steps + 1);
    let cfg = vgrpo::config::from_str(Path::new("grpo_step.toml"), &text, &[])?;
    let (prompt_len, patches) = write_step_inputs(&cfg, &config, root, shape.prompts)?;
    println!(
        "\n{}: {} prompt{} × G = 8, up to {} new tokens, prompt {prompt_len} tokens, \
         {patches} video patches per prompt",
        shape.name,
        shape.prompts,
        if shape.prompts == 1 { "" } else { "s" },
        shape.tokens
    );

    // torch first: its process has exited (and freed its memory) before
    // vgrpo's run starts in this one.
    let theirs = match runs("torch").then(|| torch_side(root, shape, steps)) {
        Some(Ok(p)) => Some(p),
        Some(Err(why)) => {
            println!("torch: skipped ({why})");
            None
        }
        None => None,
    };
    let ours = match runs("vgrpo") {
        true => Some(vgrpo_side(&cfg)?),
        false => None,
    };
    print_table(ours.as_ref(), theirs.as_ref());
    // The update's efficiency is vgrpo's own; with its side skipped there is
    // nothing to divide.
    let Some(ours) = ours else { return Ok(()) };
    let flops = update_flops(&config, shape.prompts, prompt_len, patches, &ours);
    println!(
        "update: {:.2} TFLOP of model work (forward + backward, prompt once per group) in \
         {:.2} s = {:.1} GFLOP/s, {:.0} % of the {:.1} GFLOP/s matmul peak",
        flops / 1e12,
        ours.update,
        flops / ours.update / 1e9,
        100.0 * flops / ours.update / peak,
        peak / 1e9
    );
    Ok(())
}

/// The model in HF layout with the tiny tokenizer: the embedded default
/// for `tiny`, random HF-style weights at real width.
fn write_model(shape: &Shape, config: &QwenVlConfig, dir: &Path) -> BoxResult<()> {
    let device = vgrpo::device::test_device();
    let model = match shape.name {
        "tiny" => tiny_model(0, &device)?,
        _ => init_like_hf(QwenVl::new(config, &device), 0),
    };
    model.export_hf(Some(&shape.config_json), dir)?;
    std::fs::write(
        dir.join("tokenizer.json"),
        vgrpo::text::tiny_tokenizer::TINY_TOKENIZER_JSON,
    )?;
    Ok(())
}

/// One clip and `prompts` identical manifest rows judging it.
fn write_manifest(root: &Path, prompts: usize) -> BoxResult<()> {
    let data = root.join("data");
    std::fs::create_dir_all(&data)?;
    common::write_bench_clip(&data.join("clip.mp4"));
    let rows: String = (0..prompts)
        .map(|i| {
            format!(
                "{{\"id\":\"r{i}\",\"video\":\"clip.mp4\",\"prompt\":\"a red square moves right\",\
                 \"dimension\":\"visual\",\"mos\":3.5,\"generator\":\"bench\",\"split\":\"train\"}}\n"
            )
        })
        .collect();
    std::fs::write(data.join("manifest.jsonl"), rows)?;
    Ok(())
}

fn run_config(shape: &Shape, root: &Path, steps: usize) -> String {
    let frames = shape
        .max_frames
        .map_or(String::new(), |n| format!("max_frames = {n}\n"));
    format!(
        "[run]\nname = \"step\"\nseed = 0\nout_dir = \"{runs}\"\n\
         [data]\nmanifest = \"{manifest}\"\n\
         [model]\npath = \"{model}\"\n\
         [video]\n{frames}workers = 1\nqueue_depth = 2\n\
         [optim]\nlr = 1e-5\n\
         [grpo]\nsteps = {steps}\nprompts_per_step = {p}\ngroup_size = 8\nmax_new_tokens = {t}\n\
         save_every = 0\nrollouts_dir = \"{rollouts}\"\n",
        runs = root.join("runs").display(),
        manifest = root.join("data/manifest.jsonl").display(),
        model = root.join("model").display(),
        p = shape.prompts,
        t = shape.tokens,
        rollouts = root.join("rollouts").display(),
    )
}

/// The step's prompt batch as HF tensors (`inputs.safetensors`), prepared
/// by the trainer's own code path; returns the prompt length and the
/// video's patch count.
fn write_step_inputs(
    cfg: &vgrpo::config::Config,
    config: &QwenVlConfig,
    root: &Path,
    prompts: usize,
) -> BoxResult<(usize, usize)> {
    let manifest = vgrpo::data::Manifest::load(&root.join("data/manifest.jsonl"))?;
    let tokenizer = Tokenizer::tiny()?;
    let spec = InputSpec::new(config, &cfg.video);
    let row = &manifest.rows[0];
    let example = prepare_example(
        0,
        row,
        &manifest.video_path(row),
        &spec,
        &tokenizer,
        AnswerOrder::ThinkFirst,
    )?;
    let device = vgrpo::device::test_device();
    let group_prompts: Vec<GroupPrompt> = (0..prompts as u64)
        .map(|group| GroupPrompt {
            group,
            ids: example.prompt_ids.iter().map(|&i| i64::from(i)).collect(),
            video: Some(example.video.to_input(&device)),
        })
        .collect();
    let videos = vec![&example.video; prompts];
    common::write_hf_inputs(
        &root.join("inputs.safetensors"),
        &group_prompts,
        &Tokens::of(&tokenizer),
        &videos,
    )?;
    let patches = example.video.pixel_values.len() / example.video.patch_dim.max(1);
    Ok((example.prompt_ids.len(), patches))
}

/// vgrpo's trainer on the config; medians of every step but the first.
fn vgrpo_side(cfg: &vgrpo::config::Config) -> BoxResult<Phases> {
    let device = vgrpo::device::test_device();
    let t = Instant::now();
    vgrpo::grpo::trainer::train(cfg, &Resume::No, &device, &AtomicBool::new(false))?;
    eprintln!("vgrpo run: {:.0} s", t.elapsed().as_secs_f64());
    let text = std::fs::read_to_string(cfg.run.dir().join("metrics.jsonl"))?;
    let rows: Vec<serde_json::Value> = text
        .lines()
        .skip(1)
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    let rows_per_step = (cfg.grpo.prompts_per_step * cfg.grpo.group_size) as f64;
    let median = |f: &dyn Fn(&serde_json::Value) -> f64| {
        let v: Vec<f64> = rows.iter().map(f).collect();
        common::summary(&v).0
    };
    let timing =
        |key: &'static str| move |r: &serde_json::Value| r["timing_s"][key].as_f64().unwrap_or(0.0);
    Ok(Phases {
        generate: median(&timing("gen")),
        old: median(&timing("old_log_prob")),
        reference: median(&timing("ref")),
        update: median(&timing("update_actor")),
        step: median(&timing("step")),
        completion_tokens: median(&|r| {
            r["response_length/mean"].as_f64().unwrap_or(f64::NAN) * rows_per_step
        }),
        peak_rss_gib: peak_rss_gib(),
    })
}

/// `benches/trl_grpo_step.py` on the same model and prompt batch.
fn torch_side(root: &Path, shape: &Shape, steps: usize) -> Result<Phases, String> {
    let tokenizer = Tokenizer::tiny().map_err(|e| e.to_string())?;
    let tokens = Tokens::of(&tokenizer);
    let eos: Vec<String> = tokens.stop.iter().map(u32::to_string).collect();
    let special = tokenizer.special();
    let placeholders = [
        special.video_pad,
        special.image_pad,
        special.vision_start,
        special.vision_end,
    ]
    .map(|id| id.to_string())
    .join(",");
    let args: Vec<String> = [
        "--model".to_string(),
        root.join("model").display().to_string(),
        "--inputs".into(),
        root.join("inputs.safetensors").display().to_string(),
        "--group".into(),
        "8".into(),
        "--max-new-tokens".into(),
        shape.tokens.to_string(),
        "--steps".into(),
        steps.to_string(),
        "--threads".into(),
        threads().to_string(),
        "--pad".into(),
        tokens.pad.to_string(),
        "--eos".into(),
        eos.join(","),
        "--suppress".into(),
        placeholders,
        "--device".into(),
        std::env::var("VGRPO_TORCH_DEVICE").unwrap_or_else(|_| "cpu".into()),
    ]
    .into();
    let result = common::run_peer("trl_grpo_step.py", &args)?;
    let steps = result["steps"].as_array().ok_or("RESULT without steps")?;
    let median = |key: &str| {
        let v: Vec<f64> = steps.iter().filter_map(|s| s[key].as_f64()).collect();
        if v.is_empty() {
            f64::NAN
        } else {
            common::summary(&v).0
        }
    };
    Ok(Phases {
        generate: median("generate"),
        old: 0.0,
        reference: median("reference"),
        update: median("update"),
        step: median("step"),
        completion_tokens: median("completion_tokens"),
        peak_rss_gib: result["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / GIB,
    })
}

/// One column per side (`skipped` for a side that did not run), the ratio
/// and the goals only where both ran.
fn print_table(ours: Option<&Phases>, theirs: Option<&Phases>) {
    println!(
        "{:<26} {:>10} {:>10} {:>12}",
        "phase (median s)", "vgrpo", "torch", "vgrpo/torch"
    );
    type Row = (&'static str, fn(&Phases) -> f64);
    let rows: [Row; 7] = [
        ("generate", |p| p.generate),
        ("old log-probs", |p| p.old),
        ("reference log-probs", |p| p.reference),
        ("update (fwd+bwd+AdamW)", |p| p.update),
        ("whole step", |p| p.step),
        ("completion tokens", |p| p.completion_tokens),
        ("peak RSS, process (GiB)", |p| p.peak_rss_gib),
    ];
    for (name, get) in rows {
        // torch has no separate old-policy pass: its zero reads "—".
        let cell = |side: Option<&Phases>, zero_is_none: bool| match side.map(get) {
            Some(v) if name == "completion tokens" => format!("{v:.0}"),
            Some(v) if zero_is_none && v == 0.0 => "—".into(),
            Some(v) => format!("{v:.2}"),
            None => "skipped".into(),
        };
        let ratio = match (ours.map(get), theirs.map(get)) {
            (Some(a), Some(b)) if name != "completion tokens" && b > 0.0 => {
                format!("{:.2}×", a / b)
            }
            _ => String::new(),
        };
        println!(
            "{name:<26} {:>10} {:>10} {ratio:>12}",
            cell(ours, false),
            cell(theirs, true)
        );
    }
    if let (Some(ours), Some(t)) = (ours, theirs) {
        println!(
            "step: vgrpo takes {:.2}× torch's time (goal ≤ 0.50×); rollouts {:.2}× as fast as \
             generate (goal ≥ 3×)",
            ours.step / t.step,
            t.generate / ours.generate
        );
    }
}

/// Model FLOPs of the update as vgrpo computes it (full fine-tuning,
/// backward = 2 × forward): every decoder projection on each group's
/// prompt once and on each completion token, attention over the causal
/// pairs, the LM head on completion tokens, and the vision tower on each
/// prompt's patches (its attention left out: a small share at these
/// sizes).
fn update_flops(
    config: &QwenVlConfig,
    prompts: usize,
    prompt_len: usize,
    patches: usize,
    ours: &Phases,
) -> f64 {
    use vgrpo::plan::params::projections;
    let t = &config.text;
    let all = projections(config);
    let sum = |prefix: &str| -> f64 {
        all.iter()
            .filter(|p| p.name.starts_with(prefix))
            .map(|p| (p.d_in * p.d_out) as f64)
            .sum()
    };
    let (text, vision) = (sum("model.language_model"), sum("model.visual"));
    let (p, lp) = (prompts as f64, prompt_len as f64);
    let completion = ours.completion_tokens; // all rows of the step
    let per_row = completion / (p * 8.0);
    let decoder_tokens = p * lp + completion;
    let head = (t.hidden_size * t.vocab_size) as f64;
    let width = (t.num_attention_heads * t.head_dim * t.num_hidden_layers) as f64;
    let pairs = p * (lp * lp / 2.0 + 8.0 * per_row * lp + 8.0 * per_row * per_row / 2.0);
    let forward = 2.0 * text * decoder_tokens
        + 2.0 * head * completion
        + 4.0 * width * pairs
        + 2.0 * vision * p * patches as f64;
    3.0 * forward
}

const GIB: f64 = (1u64 << 30) as f64;

/// `VmHWM` (this process's peak resident set) in GiB.
fn peak_rss_gib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb * 1024.0 / GIB)
}

/// The best of a few `[2048, 2048] × [2048, 6144]` f32 matmuls (the 2B
/// model's `up_proj` on 2048 rows), in FLOP/s.
fn matmul_peak(device: &burn::tensor::Device) -> f64 {
    let (m, k, n) = (2048usize, 2048usize, 6144usize);
    let a = Tensor::<2>::random([m, k], Distribution::Normal(0.0, 1.0), device);
    let b = Tensor::<2>::random([k, n], Distribution::Normal(0.0, 1.0), device);
    let mut best = f64::INFINITY;
    for _ in 0..4 {
        let t = Instant::now();
        let c = a.clone().matmul(b.clone());
        let _ = c.slice([0..1, 0..1]).into_data();
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (m * k * n) as f64 / best
}
