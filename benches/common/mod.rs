//! Pieces the benchmarks share: the bench clip, the real-width model
//! config, the prompt batch written for the Python peers, the Python
//! runner and the median summary. Each bench uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;
use vgrpo::default_model::TINY_CONFIG_JSON;
use vgrpo::inputs::{HostVideo, InputSpec, prepare_video};
use vgrpo::rollout::{GroupPrompt, Tokens, left_padded_batch};
use vgrpo::video::{Container, EncodeSettings, Frame, VideoConfig, encode_video, load_clip};

/// Median, min and max of a non-empty sample.
pub fn summary(values: &[f64]) -> (f64, f64, f64) {
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (median, v[0], v[v.len() - 1])
}

/// Writes a 2 s 96×64 clip with motion to `path` (H.264 in MP4, 8 fps,
/// encoded for real).
pub fn write_bench_clip(path: &Path) {
    let frames: Vec<Frame> = (0..16u32)
        .map(|t| Frame {
            timestamp: f64::from(t) / 8.0,
            width: 96,
            height: 64,
            rgb: (0..96 * 64)
                .flat_map(|i| {
                    let (x, y) = (i % 96, i / 96);
                    let on = (x + 3 * t) % 24 < 12 && (20..44).contains(&y);
                    if on {
                        [220, 40, 40]
                    } else {
                        [90, 90, (x + y) as u8]
                    }
                })
                .collect(),
        })
        .collect();
    let settings = EncodeSettings::new(Container::Mp4, 8.0).with_quality(18);
    encode_video(path, &frames, &settings).expect("encode");
}

/// The bench clip under `dir`, decoded for real, as the model's pixel
/// patches.
pub fn bench_video(dir: &Path, video_cfg: &VideoConfig, spec: &InputSpec) -> HostVideo {
    let path = dir.join("clip.mp4");
    write_bench_clip(&path);
    let clip = load_clip(&path, video_cfg).expect("decode");
    prepare_video(&clip, spec).expect("prepare")
}

/// The real-width `config.json` in `dtype` ("float32", "bfloat16"): the
/// tiny config's token ids, which the tiny tokenizer shares, with the
/// Qwen3-VL-2B widths and vocabulary (text hidden 2048, 16 heads / 8 KV
/// heads, head_dim 128, MLP 6144, vocabulary 151,936, tied embeddings;
/// vision 1024 wide, MLP 4096, 16 heads) and `layers` / `vision_layers`
/// layers.
pub fn real_width_config(layers: usize, vision_layers: usize, dtype: &str) -> String {
    let mut c: serde_json::Value = serde_json::from_str(TINY_CONFIG_JSON).unwrap();
    c["dtype"] = dtype.into();
    let t = &mut c["text_config"];
    t["vocab_size"] = 151_936.into();
    t["hidden_size"] = 2048.into();
    t["intermediate_size"] = 6144.into();
    t["num_hidden_layers"] = layers.into();
    t["num_attention_heads"] = 16.into();
    t["num_key_value_heads"] = 8.into();
    t["head_dim"] = 128.into();
    t["rope_parameters"]["mrope_section"] = serde_json::json!([24, 20, 20]);
    let v = &mut c["vision_config"];
    v["depth"] = vision_layers.into();
    v["hidden_size"] = 1024.into();
    v["intermediate_size"] = 4096.into();
    v["num_heads"] = 16.into();
    v["out_hidden_size"] = 2048.into();
    v["num_position_embeddings"] = 2304.into();
    serde_json::to_string_pretty(&c).unwrap()
}

/// The tensors HF takes for a prompt batch, as the engine's prefill sees
/// them: `input_ids`, `attention_mask`, `mm_token_type_ids` `[P, L]` (i64,
/// left padded), `pixel_values_videos` `[patches, patch_dim]` (f32, the
/// prompts' videos in order) and `video_grid_thw` `[videos, 3]`.
pub fn write_hf_inputs(
    path: &Path,
    prompts: &[GroupPrompt],
    tokens: &Tokens,
    videos: &[&HostVideo],
) -> Result<(), String> {
    use safetensors::tensor::{Dtype, TensorView};
    let batch = left_padded_batch(prompts, tokens);
    let (rows, len) = (batch.rows(), batch.len());
    let i64_bytes = |v: &[i64]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
    let ids = i64_bytes(&batch.input_ids.concat());
    let mask: Vec<i64> = batch
        .attention_mask
        .iter()
        .flatten()
        .map(|&m| i64::from(m))
        .collect();
    let mask = i64_bytes(&mask);
    let types = i64_bytes(&batch.token_types.concat());
    let patch_dim = videos.first().map_or(1, |v| v.patch_dim.max(1));
    let pixels: Vec<u8> = videos
        .iter()
        .flat_map(|v| v.pixel_values.iter().flat_map(|x| x.to_le_bytes()))
        .collect();
    let patches = pixels.len() / 4 / patch_dim;
    let grids: Vec<i64> = videos
        .iter()
        .flat_map(|v| v.grids.iter().flat_map(|g| [g.t, g.h, g.w]))
        .map(|x| x as i64)
        .collect();
    let n_grids = grids.len() / 3;
    let grids = i64_bytes(&grids);
    fn view(dtype: Dtype, shape: Vec<usize>, data: &[u8]) -> Result<TensorView<'_>, String> {
        TensorView::new(dtype, shape, data).map_err(|e| e.to_string())
    }
    let tensors = vec![
        ("input_ids", view(Dtype::I64, vec![rows, len], &ids)?),
        ("attention_mask", view(Dtype::I64, vec![rows, len], &mask)?),
        (
            "mm_token_type_ids",
            view(Dtype::I64, vec![rows, len], &types)?,
        ),
        (
            "pixel_values_videos",
            view(Dtype::F32, vec![patches, patch_dim], &pixels)?,
        ),
        (
            "video_grid_thw",
            view(Dtype::I64, vec![n_grids, 3], &grids)?,
        ),
    ];
    safetensors::serialize_to_file(tensors, None, path).map_err(|e| e.to_string())
}

/// The Python the peers run in (`$VGRPO_PYTHON`, else `python3`), once it
/// has shown it can `import torch, transformers`.
pub fn peer_python() -> Result<String, String> {
    let python = std::env::var("VGRPO_PYTHON").unwrap_or_else(|_| "python3".into());
    let probe = Command::new(&python)
        .args(["-c", "import torch, transformers"])
        .output()
        .map_err(|e| format!("cannot run `{python}`: {e}; set VGRPO_PYTHON"))?;
    if !probe.status.success() {
        let err = String::from_utf8_lossy(&probe.stderr);
        let last = err.lines().last().unwrap_or("").trim();
        return Err(format!(
            "`{python}` cannot `import torch, transformers`: {last}; set VGRPO_PYTHON"
        ));
    }
    Ok(python)
}

/// Runs `benches/<script>` with `args` and returns its `RESULT {json}` line.
/// The scripts are looked up in `$VGRPO_BENCH_DIR` when set (a bench binary
/// run away from its checkout), else in this crate's `benches/`.
pub fn run_peer(script: &str, args: &[String]) -> Result<serde_json::Value, String> {
    let python = peer_python()?;
    let dir = std::env::var_os("VGRPO_BENCH_DIR").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("benches"),
        std::path::PathBuf::from,
    );
    let script = dir.join(script);
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().rev().take(3).collect();
        return Err(format!(
            "{} failed: {}",
            script.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
        ));
    }
    for line in stdout.lines().filter(|l| !l.starts_with("RESULT ")) {
        println!("  {line}");
    }
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .ok_or_else(|| format!("no RESULT line in: {stdout}"))?;
    serde_json::from_str(line).map_err(|e| e.to_string())
}
