//! Peak memory (RSS) and time of one GRPO step (G = 8) at real width, full
//! f32 fine-tuning against LoRA on a bf16 base with gradient checkpointing,
//! plus the variants between them so each saving shows on its own.
//!
//! The model has the Qwen3-VL-2B widths and vocabulary (text hidden 2048,
//! 16 heads / 8 KV heads, head_dim 128, MLP 6144, vocabulary 151,936, tied
//! embeddings; vision 1024 wide, MLP 4096, 16 heads) with few layers, and
//! random weights: the bench writes it once as HF checkpoints (f32, and
//! bf16 as the released models are stored), then runs each variant in a
//! child process of its own — `vgrpo::grpo::train` on one step, its peak
//! RSS (`VmHWM`) read the moment the step's metrics row is written, before
//! any checkpoint or export.
//!
//! ```text
//! cargo bench --bench lora_memory [-- --layers 2 --vision-layers 2 --tokens 16 --only full-f32,lora-bf16-ckpt]
//! ```

#[path = "common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use vgrpo::checkpoint::Resume;
use vgrpo::data::synth::{SynthConfig, ensure_synthetic_set};
use vgrpo::default_model::init_like_hf;
use vgrpo::model::{QwenVl, QwenVlConfig};

/// One way of running the step.
struct Variant {
    name: &'static str,
    /// `model-f32` or `model-bf16`.
    model: &'static str,
    lora: bool,
    checkpointing: bool,
}

const VARIANTS: [Variant; 5] = [
    Variant {
        name: "full-f32",
        model: "model-f32",
        lora: false,
        checkpointing: false,
    },
    Variant {
        name: "full-f32-ckpt",
        model: "model-f32",
        lora: false,
        checkpointing: true,
    },
    Variant {
        name: "lora-f32",
        model: "model-f32",
        lora: true,
        checkpointing: false,
    },
    Variant {
        name: "lora-bf16",
        model: "model-bf16",
        lora: true,
        checkpointing: false,
    },
    Variant {
        name: "lora-bf16-ckpt",
        model: "model-bf16",
        lora: true,
        checkpointing: true,
    },
];

/// Bench settings (`--layers`, `--vision-layers`, `--tokens`, `--only`).
struct Settings {
    layers: usize,
    vision_layers: usize,
    tokens: usize,
    only: Option<Vec<String>>,
}

impl Settings {
    fn parse(args: &[String]) -> Settings {
        let mut s = Settings {
            layers: 2,
            vision_layers: 2,
            tokens: 16,
            only: None,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let mut value = || it.next().cloned().unwrap_or_default();
            match flag.as_str() {
                "--layers" => s.layers = value().parse().expect("--layers N"),
                "--vision-layers" => s.vision_layers = value().parse().expect("--vision-layers N"),
                "--tokens" => s.tokens = value().parse().expect("--tokens N"),
                "--only" => s.only = Some(value().split(',').map(String::from).collect()),
                _ => {} // cargo bench passes `--bench`
            }
        }
        s
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    vgrpo::process::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return child(&args[1], Path::new(&args[2]), args[3].parse()?);
    }
    if args.first().map(String::as_str) == Some("--layer") {
        return layer_child(&args[1]);
    }
    let settings = Settings::parse(&args);
    let work = tempfile::tempdir()?;
    let root = work.path();
    let t = Instant::now();
    write_models(root, &settings)?;
    let manifest = root.join("data/manifest.jsonl");
    let synth = SynthConfig {
        videos: 4,
        ..SynthConfig::default()
    };
    ensure_synthetic_set(&manifest, &synth, "the bench's data set")?;
    eprintln!(
        "models and data written in {:.0} s",
        t.elapsed().as_secs_f64()
    );
    println!(
        "one GRPO step, G = 8 × {} new tokens, Qwen3-VL-2B widths, {} text / {} vision layers",
        settings.tokens, settings.layers, settings.vision_layers
    );
    println!(
        "{:<16} {:>12} {:>10} {:>10} {:>10} {:>12} {:>10}",
        "variant", "peak RSS", "step s", "update s", "vs full", "vgrpo plan", "plan/RSS"
    );
    let mut full = None;
    for v in &VARIANTS {
        if let Some(only) = &settings.only
            && !only.iter().any(|o| o == v.name)
        {
            continue;
        }
        let exe = std::env::current_exe()?;
        let out = Command::new(exe)
            .args(["--child", v.name])
            .arg(root)
            .arg(settings.tokens.to_string())
            .output()?;
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return Err(format!("variant {} failed: {}", v.name, out.status).into());
        }
        // The run's export is gigabytes at this width.
        std::fs::remove_dir_all(root.join("runs").join(v.name))?;
        let report: serde_json::Value =
            serde_json::from_str(String::from_utf8(out.stdout)?.lines().last().unwrap_or(""))?;
        let peak = report["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN);
        let full_peak = *full.get_or_insert(peak);
        let planned = planned_bytes(v, root, settings.tokens)? as f64;
        let gib = f64::from(1u32 << 30);
        println!(
            "{:<16} {:>9.2} GiB {:>10.1} {:>10.1} {:>9.2}× {:>8.2} GiB {:>9.2}×",
            v.name,
            peak / gib,
            report["step_seconds"].as_f64().unwrap_or(f64::NAN),
            report["update_seconds"].as_f64().unwrap_or(f64::NAN),
            peak / full_peak,
            planned / gib,
            planned / peak
        );
    }
    layers()
}

/// One `2048 → 6144` projection (the 2B model's `up_proj`), rank 16, on
/// 2048 token rows: forward + backward to the adapters, three times, with
/// vgrpo's factored adapter and with Burn 0.22's `apply_lora` (which builds
/// `W + (α/r)·A·B` on every call and backpropagates a dense `[in, out]`
/// gradient into it), each in a child process.
fn layers() -> Result<(), Box<dyn std::error::Error>> {
    println!("\none up_proj (2048 → 6144, rank 16) on 2048 rows, f32: forward + backward ×3");
    println!("{:<16} {:>12} {:>12}", "adapter", "peak RSS", "ms / call");
    for which in ["vgrpo", "burn-apply-lora"] {
        let out = Command::new(std::env::current_exe()?)
            .args(["--layer", which])
            .output()?;
        if !out.status.success() {
            eprintln!("{}", String::from_utf8_lossy(&out.stderr));
            return Err(format!("layer {which} failed").into());
        }
        let report: serde_json::Value =
            serde_json::from_str(String::from_utf8(out.stdout)?.lines().last().unwrap_or(""))?;
        println!(
            "{:<16} {:>8.0} MiB {:>12.1}",
            which,
            report["peak_rss_bytes"].as_f64().unwrap_or(f64::NAN) / f64::from(1u32 << 20),
            report["ms_per_call"].as_f64().unwrap_or(f64::NAN)
        );
    }
    Ok(())
}

fn layer_child(which: &str) -> Result<(), Box<dyn std::error::Error>> {
    use burn::module::Module;
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, Tensor};
    use vgrpo::model::LoraLinear;
    use vgrpo::model::lora::{Adapter, LoraConfig};

    let device = vgrpo::device::test_device().autodiff();
    let (d_in, d_out, rows) = (2048, 6144, 2048);
    let base = LoraLinear::new(d_in, d_out, false, &device).no_grad();
    let lora = LoraConfig::default();
    let layer = match which {
        "vgrpo" => {
            let mut layer = base;
            let mut rng = vgrpo::rng::Rng::new(0);
            layer.adapter = Some(Adapter::fresh(d_in, d_out, &lora, &mut rng, &device));
            layer
        }
        _ => base.apply_lora(burn::module::Lora::new(lora.rank, lora.alpha)),
    };
    let x = Tensor::<2>::random([rows, d_in], Distribution::Normal(0.0, 1.0), &device);
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let y = layer.forward(x.clone());
        let grads = GradientsParams::from_grads(y.square().mean().backward(), &layer);
        assert!(!grads.is_empty(), "the adapter got no gradient");
        times.push(t.elapsed());
    }
    let ms = times.iter().map(Duration::as_secs_f64).sum::<f64>() * 1e3 / times.len() as f64;
    println!(
        "{}",
        serde_json::json!({"peak_rss_bytes": peak_rss(), "ms_per_call": ms})
    );
    Ok(())
}

/// `model-f32/` and `model-bf16/` under `root`: one random model, exported
/// in f32 and, cast, in bf16 (the export writes each tensor in its
/// parameter's dtype and says so in `config.json`).
fn write_models(root: &Path, s: &Settings) -> Result<(), Box<dyn std::error::Error>> {
    let device = vgrpo::device::test_device();
    let json = common::real_width_config(s.layers, s.vision_layers, "float32");
    let config = QwenVlConfig::from_json(&json)?;
    let model = init_like_hf(QwenVl::new(&config, &device), 0);
    let tokenizer = vgrpo::text::tiny_tokenizer::TINY_TOKENIZER_JSON;
    model.export_hf(Some(&json), &root.join("model-f32"))?;
    let bf16 = model.with_float_dtype(burn::tensor::FloatDType::BF16);
    bf16.export_hf(Some(&json), &root.join("model-bf16"))?;
    for dir in ["model-f32", "model-bf16"] {
        std::fs::write(root.join(dir).join("tokenizer.json"), tokenizer)?;
    }
    Ok(())
}

/// The run config of `variant` under `root`.
fn run_config(v: &Variant, root: &Path, tokens: usize) -> String {
    let lora = if v.lora {
        "[lora]\nrank = 16\nalpha = 32.0\n"
    } else {
        ""
    };
    format!(
        "[run]\nname = \"{name}\"\nseed = 0\nout_dir = \"{runs}\"\ngradient_checkpointing = {ckpt}\n\
         [data]\nmanifest = \"{manifest}\"\n\
         [model]\npath = \"{model}\"\n\
         [video]\nmax_frames = 4\nworkers = 1\nqueue_depth = 1\n\
         [optim]\nlr = 1e-5\n{lora}\
         [grpo]\nsteps = 1\nprompts_per_step = 1\ngroup_size = 8\nmax_new_tokens = {tokens}\n\
         save_every = 0\nrollouts_dir = \"{rollouts}\"\n",
        name = v.name,
        runs = root.join("runs").display(),
        ckpt = v.checkpointing,
        manifest = root.join("data/manifest.jsonl").display(),
        model = root.join(v.model).display(),
        rollouts = root.join("rollouts").display(),
    )
}

/// What `vgrpo plan` estimates for `variant`'s run (the same config; the
/// synthetic clips' size).
fn planned_bytes(
    v: &Variant,
    root: &Path,
    tokens: usize,
) -> Result<u64, Box<dyn std::error::Error>> {
    use vgrpo::plan::{Mode, PlanInput, PlanOptions, estimate, model_shapes};
    let cfg = vgrpo::config::from_str(Path::new("bench.toml"), &run_config(v, root, tokens), &[])?;
    let shapes = model_shapes(&cfg.model)?;
    let synth = SynthConfig::default();
    let options = PlanOptions {
        video_size: [synth.width, synth.height],
        ..PlanOptions::default()
    };
    let input = PlanInput::new(&cfg, &shapes.config, shapes.checkpoint_dtype()?, &options)?;
    let mode = if v.lora { Mode::Lora } else { Mode::Full };
    Ok(estimate(&input, mode).total)
}

/// `VmHWM` (the process's peak resident set) in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Runs one GRPO step of `name` and prints its peak RSS and times as JSON.
/// A watcher stops the run (as Ctrl-C would) once the step's metrics row
/// is written, so the peak is the step's, not a checkpoint's or export's.
fn child(name: &str, root: &Path, tokens: usize) -> Result<(), Box<dyn std::error::Error>> {
    let v = VARIANTS
        .iter()
        .find(|v| v.name == name)
        .ok_or("unknown variant")?;
    let text = run_config(v, root, tokens);
    let cfg = vgrpo::config::from_str(Path::new("bench.toml"), &text, &[])?;
    let metrics: PathBuf = cfg.run.dir().join("metrics.jsonl");
    let interrupt = Arc::new(AtomicBool::new(false));
    let peak = Arc::new(std::sync::Mutex::new(0u64));
    let watcher = {
        let (interrupt, peak) = (Arc::clone(&interrupt), Arc::clone(&peak));
        std::thread::spawn(move || {
            while !interrupt.load(Ordering::SeqCst) {
                if std::fs::metadata(&metrics).is_ok_and(|m| m.len() > 0) {
                    *peak.lock().unwrap() = peak_rss();
                    interrupt.store(true, Ordering::SeqCst);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let device = vgrpo::device::test_device();
    vgrpo::grpo::trainer::train(&cfg, &Resume::No, &device, &interrupt)?;
    interrupt.store(true, Ordering::SeqCst);
    watcher.join().ok();
    let row: serde_json::Value = serde_json::from_str(
        std::fs::read_to_string(cfg.run.dir().join("metrics.jsonl"))?
            .lines()
            .next()
            .ok_or("no metrics row")?,
    )?;
    let report = serde_json::json!({
        "variant": name,
        "peak_rss_bytes": *peak.lock().unwrap(),
        "step_seconds": row["timing_s"]["step"],
        "update_seconds": row["timing_s"]["update_actor"],
    });
    println!("{report}");
    Ok(())
}
