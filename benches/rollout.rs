//! Rollout and update throughput: G = 8 judgements per video on the
//! embedded tiny model.
//!
//! Compares, in one process and on the same inputs:
//! - `engine`: the rollout engine — one prefill per prompt, KV cache
//!   repeated to G rows, all rows of all prompts decoded together;
//! - `naive`: per-sample generation — each of the G samples prefills the
//!   video and prompt again and decodes alone (what a loop over
//!   `generate(prompt)` does);
//! - `transformers`: HF `model.generate` on the same model (exported in HF
//!   layout) and the same prompt ids and pixel values, `do_sample` with
//!   `num_return_sequences = G`, torch on CPU with one thread per core
//!   (`benches/hf_generate.py`). Runs when a Python with torch and
//!   transformers is found: `$VGRPO_PYTHON`, else `python3`; otherwise the
//!   row is skipped with the reason.
//!
//! All sample at T = 1 without top-k/top-p and never stop early (no stop
//! token for the engine, no `eos_token_id` for transformers), so every row
//! generates exactly `--tokens` tokens and the token counts are equal. Each
//! side is timed `--reps` times after a warm-up; the median rate is
//! reported with the range. Engine and naive runs alternate and the
//! speed-up is the median of the per-pair ratios (robust to other jobs on
//! the machine); the transformers ratio is of median rates.
//!
//! The update side (`update`) times what a GRPO step does with the
//! rollouts: teacher-forced log-probs of the P·G completions and their
//! backward pass, `grouped` (one prompt row per group, its keys/values
//! shared by the G completions, as the trainer runs whole groups) against
//! `repeated` (the prompt and video repeated on every row, as a plain
//! concatenated batch does). Alternating runs, median of per-pair ratios.
//! Then `whole` against `micro`: the same P·G rows and gradient, as one
//! pass, or as P micro-batches of one group each (`[grpo] micro_batch_size
//! = G`) whose parameter gradients are summed (`GradAccumulator`), as the
//! update runs them.
//!
//! Run: `cargo bench --bench rollout` (add `-- --prompts 4 --tokens 48
//! --reps 5`, or `--only engine|naive|hf|update` to run one side, e.g.
//! under a profiler).

#[path = "common/mod.rs"]
mod common;

use burn::optim::GradientsParams;
use std::path::Path;
use std::time::Instant;
use vgrpo::default_model::{TINY_CONFIG_JSON, tiny_model};
use vgrpo::inputs::{HostVideo, InputSpec, judge_prompt};
use vgrpo::model::QwenVl;
use vgrpo::model::logprob::{CompletionBatch, completion_logprobs};
use vgrpo::optim::{GradAccumulator, global_grad_norm};
use vgrpo::rng::Rng;
use vgrpo::rollout::{GroupPrompt, RolloutConfig, Tokens, generate, left_padded_batch};
use vgrpo::sampling::SamplingConfig;
use vgrpo::text::{AnswerOrder, Tokenizer};

fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

fn arg_usize(name: &str, default: usize) -> usize {
    arg(name).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    vgrpo::process::init();
    let prompts_n = arg_usize("--prompts", 4);
    let max_tokens = arg_usize("--tokens", 48);
    let reps = arg_usize("--reps", 3).max(1);
    let only = arg("--only");
    let runs = |side: &str| only.as_deref().is_none_or(|o| o == side);
    let group = 8;
    let device = vgrpo::device::test_device();
    let model = tiny_model(0, &device).expect("tiny model");
    let tokenizer = Tokenizer::tiny().expect("tiny tokenizer");
    let video_cfg = vgrpo::video::VideoConfig::default();
    let spec = InputSpec::new(&model.config, &video_cfg);

    let dir = std::env::temp_dir().join(format!("vgrpo-bench-rollout-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let host = common::bench_video(&dir, &video_cfg, &spec);
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
    // No stop tokens: every row decodes `max_tokens`, so all sides do the
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
    let engine_cfg = RolloutConfig {
        group_size: group,
        max_new_tokens: max_tokens,
        sampling: SamplingConfig::default(),
    };
    let single_cfg = RolloutConfig {
        group_size: 1,
        ..engine_cfg
    };
    let base = Rng::new(0);
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "tiny model, {prompts_n} prompts × G={group}, prompt {} tokens ({} visual), {max_tokens} new tokens per rollout, {reps} timed runs per side, {threads} threads",
        prompt_ids.len(),
        host.tokens()
    );

    // Warm-up (allocations, kernels).
    generate(&model, &prompts[..1], &single_cfg, &tokens, &base, &device).expect("warm-up");

    // One timed engine run: (tokens, seconds, stats).
    let engine_run = || {
        let t = Instant::now();
        let (rollouts, stats) =
            generate(&model, &prompts, &engine_cfg, &tokens, &base, &device).expect("engine");
        let s = t.elapsed().as_secs_f64();
        (
            rollouts.iter().map(|r| r.tokens.len()).sum::<usize>(),
            s,
            stats,
        )
    };
    // One timed naive run: (tokens, seconds, prefill passes).
    let naive_run = || {
        let t = Instant::now();
        let (mut n, mut prefills) = (0, 0);
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
                n += r[0].tokens.len();
                prefills += st.prefill_passes;
            }
        }
        (n, t.elapsed().as_secs_f64(), prefills)
    };

    // Engine and naive runs alternate, so a change in the machine's load
    // (other jobs) hits both sides alike; the speed-up is the median of the
    // per-pair ratios.
    let (mut engine_rates, mut naive_rates, mut pair_ratios) = (vec![], vec![], vec![]);
    let (mut engine_last, mut naive_last) = (None, None);
    for _ in 0..reps {
        let e = runs("engine").then(&engine_run);
        let n = runs("naive").then(&naive_run);
        if let Some((tok, s, stats)) = e {
            engine_rates.push(tok as f64 / s);
            engine_last = Some((tok, stats));
        }
        if let Some((tok, s, prefills)) = n {
            naive_rates.push(tok as f64 / s);
            naive_last = Some((tok, prefills));
        }
        if let (Some((et, es, _)), Some((nt, ns, _))) = (e, n) {
            pair_ratios.push((et as f64 / es) / (nt as f64 / ns));
        }
    }
    let mut engine_rate = None;
    if let Some((n, stats)) = engine_last {
        let (median, lo, hi) = common::summary(&engine_rates);
        println!(
            "engine:       {n} tokens, {median:.0} tokens/s (range {lo:.0}–{hi:.0}; {} prefill pass, {} decode passes per run)",
            stats.prefill_passes, stats.decode_passes
        );
        engine_rate = Some(median);
    }
    if let Some((n, prefills)) = naive_last {
        let (median, lo, hi) = common::summary(&naive_rates);
        println!(
            "naive:        {n} tokens, {median:.0} tokens/s (range {lo:.0}–{hi:.0}; {prefills} prefill passes per run)"
        );
    }
    if !pair_ratios.is_empty() {
        let (median, lo, hi) = common::summary(&pair_ratios);
        println!(
            "speed-up vs naive: {median:.2}× (range {lo:.2}–{hi:.2} over the run pairs; goal ≥ 3×)"
        );
    }

    if runs("hf") {
        // torch with one thread per core, as configured by default, and with
        // one thread: on a machine whose cores are busy with other work,
        // torch's OpenMP threads wait on each other and one thread can be
        // many times faster. The ratio is taken against the faster setting.
        let mut settings = vec![threads];
        if threads > 1 {
            settings.push(1);
        }
        let mut best: Option<f64> = None;
        for torch_threads in settings {
            match transformers_rate(
                &dir,
                &model,
                &prompts,
                &tokens,
                &host,
                group,
                max_tokens,
                reps,
                torch_threads,
            ) {
                Ok((n, median, lo, hi)) => {
                    println!(
                        "transformers: {n} tokens, {median:.0} tokens/s (range {lo:.0}–{hi:.0}; generate, num_return_sequences={group}, {torch_threads} torch thread{})",
                        if torch_threads == 1 { "" } else { "s" }
                    );
                    best = Some(best.map_or(median, |b: f64| b.max(median)));
                }
                Err(why) => {
                    println!("transformers: skipped ({why})");
                    break;
                }
            }
        }
        if let (Some(engine), Some(hf)) = (engine_rate, best) {
            println!(
                "engine / transformers (faster setting): {:.2}×",
                engine / hf
            );
        }
    }
    if runs("update") {
        update_speed(
            &prompt_ids,
            &host,
            &tokens,
            prompts_n,
            group,
            max_tokens,
            reps,
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Times the teacher-forced log-probs + backward of `prompts_n × group`
/// completions of `max_tokens` random tokens, grouped vs repeated prompts.
fn update_speed(
    prompt_ids: &[u32],
    host: &HostVideo,
    tokens: &Tokens,
    prompts_n: usize,
    group: usize,
    max_tokens: usize,
    reps: usize,
) {
    let device = vgrpo::device::test_device().autodiff();
    let model = tiny_model(0, &device).expect("tiny model");
    let prompts: Vec<GroupPrompt> = (0..prompts_n as u64)
        .map(|g| GroupPrompt {
            group: g,
            ids: prompt_ids.iter().map(|&i| i64::from(i)).collect(),
            video: Some(host.to_input(&device)),
        })
        .collect();
    let mut rng = Rng::new(1);
    let vocab = model.config.text.vocab_size;
    let completions: Vec<Vec<i64>> = (0..prompts_n * group)
        .map(|_| (0..max_tokens).map(|_| rng.index(vocab) as i64).collect())
        .collect();
    let pad = i64::from(tokens.pad);
    let grouped = CompletionBatch::new(
        &left_padded_batch(&prompts, tokens),
        group,
        &completions,
        pad,
    )
    .expect("grouped batch");
    let each_row = prompts.iter().flat_map(|p| std::iter::repeat_n(p, group));
    let repeated = CompletionBatch::new(&left_padded_batch(each_row, tokens), 1, &completions, pad)
        .expect("repeated batch");
    let step = |batch: &CompletionBatch| {
        let t = Instant::now();
        let logp = completion_logprobs(&model, batch, 1.0, &device).expect("log-probs");
        let _grads = logp.sum().backward();
        t.elapsed().as_secs_f64()
    };
    step(&grouped); // warm-up
    let (mut g_times, mut r_times, mut ratios) = (vec![], vec![], vec![]);
    for _ in 0..reps {
        let (g, r) = (step(&grouped), step(&repeated));
        g_times.push(g);
        r_times.push(r);
        ratios.push(r / g);
    }
    let ms = |times: &[f64]| {
        let (median, lo, hi) = common::summary(times);
        format!(
            "{:.0} ms (range {:.0}–{:.0})",
            median * 1e3,
            lo * 1e3,
            hi * 1e3
        )
    };
    println!(
        "update, {} completions × {max_tokens} tokens, log-probs + backward: grouped {}, repeated {}",
        prompts_n * group,
        ms(&g_times),
        ms(&r_times)
    );
    let (median, lo, hi) = common::summary(&ratios);
    println!("update speed-up, grouped vs repeated: {median:.2}× (range {lo:.2}–{hi:.2})");

    // Micro-batches of one group, gradients summed, against one pass.
    let micro: Vec<CompletionBatch> = prompts
        .iter()
        .zip(completions.chunks(group))
        .map(|(p, rows)| {
            let batch = left_padded_batch(std::iter::once(p), tokens);
            CompletionBatch::new(&batch, group, rows, pad).expect("micro-batch")
        })
        .collect();
    let gradients = |batches: &[CompletionBatch]| {
        let t = Instant::now();
        let mut sum = GradAccumulator::new();
        for batch in batches {
            let logp = completion_logprobs(&model, batch, 1.0, &device).expect("log-probs");
            sum.add(
                &model,
                GradientsParams::from_grads(logp.sum().backward(), &model),
            );
        }
        let _norm = global_grad_norm(&model, &sum.take()).expect("norm");
        t.elapsed().as_secs_f64()
    };
    let whole = std::slice::from_ref(&grouped);
    gradients(&micro); // warm-up
    let (mut w_times, mut m_times, mut ratios) = (vec![], vec![], vec![]);
    for _ in 0..reps {
        let (w, m) = (gradients(whole), gradients(&micro));
        w_times.push(w);
        m_times.push(m);
        ratios.push(m / w);
    }
    println!(
        "update, {} completions × {max_tokens} tokens, gradient: whole {}, {prompts_n} \
         micro-batches of {group} {}",
        prompts_n * group,
        ms(&w_times),
        ms(&m_times)
    );
    let (median, lo, hi) = common::summary(&ratios);
    println!("update time, micro-batches vs whole: {median:.2}× (range {lo:.2}–{hi:.2})");
}

/// Runs `benches/hf_generate.py` on the model exported in HF layout and the
/// prompts' tensors with `threads` torch threads; returns (tokens per run,
/// median, min, max tokens/s).
#[allow(clippy::too_many_arguments)]
fn transformers_rate(
    dir: &Path,
    model: &QwenVl,
    prompts: &[GroupPrompt],
    tokens: &Tokens,
    host: &HostVideo,
    group: usize,
    max_tokens: usize,
    reps: usize,
    threads: usize,
) -> Result<(usize, f64, f64, f64), String> {
    let model_dir = dir.join("hf-model");
    let inputs = dir.join("inputs.safetensors");
    if !inputs.exists() {
        model
            .export_hf(Some(TINY_CONFIG_JSON), &model_dir)
            .map_err(|e| format!("export: {e}"))?;
        // Every prompt of the bench shows the same clip.
        let videos = vec![host; prompts.len()];
        common::write_hf_inputs(&inputs, prompts, tokens, &videos)?;
    }

    let args: Vec<String> = vec![
        "--model".into(),
        model_dir.display().to_string(),
        "--inputs".into(),
        inputs.display().to_string(),
        "--group".into(),
        group.to_string(),
        "--max-new-tokens".into(),
        max_tokens.to_string(),
        "--reps".into(),
        reps.to_string(),
        "--threads".into(),
        threads.to_string(),
        "--pad".into(),
        tokens.pad.to_string(),
    ];
    let v = common::run_peer("hf_generate.py", &args)?;
    let n = v["tokens"].as_u64().ok_or("RESULT without tokens")? as usize;
    let rates: Vec<f64> = v["tokens_per_s"]
        .as_array()
        .ok_or("RESULT without tokens_per_s")?
        .iter()
        .filter_map(serde_json::Value::as_f64)
        .collect();
    if rates.is_empty() {
        return Err("RESULT with no timed runs".into());
    }
    let (median, lo, hi) = common::summary(&rates);
    Ok((n, median, lo, hi))
}
