//! Rollout throughput: G = 8 judgements per video on the embedded tiny model.
//!
//! Compares, in one process and on the same inputs:
//! - `engine`: the rollout engine — one prefill per prompt, KV cache
//!   repeated to G rows, all rows of all prompts decoded together;
//! - `naive`: per-sample generation — each of the G samples prefills the
//!   video and prompt again and decodes alone (what a loop over
//!   `generate(prompt)` does).
//!
//! Both sample with the same settings; the ratio of generated tokens per
//! second is the speed-up of sharing the prefix and batching the decode.
//! Run: `cargo bench --bench rollout` (add `-- --prompts 4 --tokens 48`).

use burn::tensor::Device;
use std::time::Instant;
use vgrpo::default_model::tiny_model;
use vgrpo::inputs::{InputSpec, judge_prompt, prepare_video};
use vgrpo::rng::Rng;
use vgrpo::rollout::{GroupPrompt, RolloutConfig, Tokens, generate};
use vgrpo::sampling::SamplingConfig;
use vgrpo::text::{AnswerOrder, Tokenizer};
use vgrpo::video::{Container, EncodeSettings, Frame, Timing, VideoCodec, encode_video, load_clip};

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let prompts_n = arg("--prompts", 4);
    let max_tokens = arg("--tokens", 48);
    let group = 8;
    let device = Device::default();
    let model = tiny_model(0, &device).expect("tiny model");
    let tokenizer = Tokenizer::tiny().expect("tiny tokenizer");
    let video_cfg = vgrpo::video::VideoConfig::default();
    let spec = InputSpec::new(&model.config, &video_cfg);

    // A 2 s 96×64 clip with motion, encoded and decoded for real.
    let dir = std::env::temp_dir().join(format!("vgrpo-bench-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("clip.mp4");
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
    let settings = EncodeSettings {
        container: Container::Mp4,
        codec: VideoCodec::H264,
        fps: 8.0,
        timing: Timing::ConstantFps,
        quality: 18,
        faststart: false,
        live: false,
        threads: 1,
    };
    encode_video(&path, &frames, &settings).expect("encode");
    let clip = load_clip(&path, &video_cfg).expect("decode");
    let host = prepare_video(&clip, &spec).expect("prepare");
    let prompt_ids = judge_prompt(
        &tokenizer,
        &spec,
        &host,
        vgrpo::data::Dimension::Visual,
        "a red square moves right",
        AnswerOrder::ThinkFirst,
    )
    .expect("prompt");
    let special = tokenizer.special();
    // No stop tokens: every row decodes `max_tokens`, so both sides do the
    // same amount of generation.
    let tokens = Tokens {
        stop: vec![],
        pad: special.endoftext,
        video_pad: special.video_pad,
    };
    let prompts: Vec<GroupPrompt> = (0..prompts_n as u64)
        .map(|g| GroupPrompt {
            group: g,
            ids: prompt_ids.iter().map(|&i| i64::from(i)).collect(),
            video: Some(host.to_input(&device)),
        })
        .collect();
    let sampling = SamplingConfig::default();
    let engine_cfg = RolloutConfig {
        group_size: group,
        max_new_tokens: max_tokens,
        sampling,
    };
    let single_cfg = RolloutConfig {
        group_size: 1,
        ..engine_cfg
    };
    let base = Rng::new(0);
    println!(
        "tiny model, {prompts_n} prompts × G={group}, prompt {} tokens ({} visual), {max_tokens} new tokens per rollout",
        prompt_ids.len(),
        host.tokens()
    );

    // Warm-up (allocations, kernels).
    generate(&model, &prompts[..1], &single_cfg, &tokens, &base, &device).expect("warm-up");

    let t = Instant::now();
    let (rollouts, stats) =
        generate(&model, &prompts, &engine_cfg, &tokens, &base, &device).expect("engine");
    let engine_s = t.elapsed().as_secs_f64();
    let engine_tokens: usize = rollouts.iter().map(|r| r.tokens.len()).sum();

    let t = Instant::now();
    let mut naive_tokens = 0;
    let mut naive_prefills = 0;
    for prompt in &prompts {
        for s in 0..group {
            let one = GroupPrompt {
                group: prompt.group * group as u64 + s as u64,
                ..prompt.clone()
            };
            let (r, st) = generate(
                &model,
                std::slice::from_ref(&one),
                &single_cfg,
                &tokens,
                &base,
                &device,
            )
            .expect("naive");
            naive_tokens += r[0].tokens.len();
            naive_prefills += st.prefill_passes;
        }
    }
    let naive_s = t.elapsed().as_secs_f64();

    let engine_rate = engine_tokens as f64 / engine_s;
    let naive_rate = naive_tokens as f64 / naive_s;
    println!(
        "engine: {engine_tokens} tokens in {engine_s:.2} s = {engine_rate:.0} tokens/s ({} prefill pass, {} decode passes)",
        stats.prefill_passes, stats.decode_passes
    );
    println!(
        "naive:  {naive_tokens} tokens in {naive_s:.2} s = {naive_rate:.0} tokens/s ({naive_prefills} prefill passes)"
    );
    println!("speed-up: {:.2}× (goal ≥ 3×)", engine_rate / naive_rate);
    let _ = std::fs::remove_dir_all(&dir);
}
