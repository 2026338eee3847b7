//! The rollout engine on the tiny Qwen3-VL fixture (random weights, real
//! architecture, a real video input from the transformers reference file).

use burn::tensor::Device;
use std::path::{Path, PathBuf};
use vgrpo::model::check::Reference;
use vgrpo::model::{Batch, QwenVl};
use vgrpo::rng::Rng;
use vgrpo::rollout::{FinishReason, GroupPrompt, RolloutConfig, Tokens, generate};
use vgrpo::sampling::{SamplingConfig, token_logprob};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_vl_tiny")
}

struct Setup {
    model: QwenVl,
    device: Device,
    /// The fixture's video prompt (row 0 of the reference).
    video_prompt: GroupPrompt,
    tokens: Tokens,
}

fn setup() -> Setup {
    let device = vgrpo::device::test_device();
    let dir = fixture();
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference.safetensors")).unwrap();
    let batch = reference.batch(&device);
    let ids: Vec<i64> = batch.input_ids[0]
        .iter()
        .zip(&batch.attention_mask[0])
        .filter(|(_, m)| **m)
        .map(|(&id, _)| id)
        .collect();
    let video_prompt = GroupPrompt {
        group: 0,
        ids,
        video: batch.video.clone(),
    };
    let tokens = Tokens {
        // The fixture vocabulary has no chat tokens; pick ids as stops.
        stop: vec![7],
        pad: 0,
        video_pad: model.config.video_token_id,
    };
    Setup {
        model,
        device,
        video_prompt,
        tokens,
    }
}

fn text_prompt(group: u64, ids: &[i64]) -> GroupPrompt {
    GroupPrompt {
        group,
        ids: ids.to_vec(),
        video: None,
    }
}

fn cfg(group_size: usize, max_new_tokens: usize, sampling: SamplingConfig) -> RolloutConfig {
    RolloutConfig {
        group_size,
        max_new_tokens,
        sampling,
    }
}

/// Teacher-forced log-probs of `completion` after `prompt`, by a full
/// forward pass over the concatenation (no cache).
fn teacher_forced(s: &Setup, prompt: &GroupPrompt, completion: &[u32], t: f32) -> Vec<f32> {
    let mut ids = prompt.ids.clone();
    ids.extend(completion.iter().map(|&c| i64::from(c)));
    let video_pad = i64::from(s.tokens.video_pad);
    let types = ids
        .iter()
        .map(|&i| if i == video_pad { 2 } else { 0 })
        .collect();
    let batch = Batch {
        attention_mask: vec![vec![true; ids.len()]],
        token_types: vec![types],
        input_ids: vec![ids.clone()],
        video: prompt.video.clone(),
    };
    let logits = s.model.forward(&batch, &s.device).unwrap();
    let [_, l, v] = logits.dims();
    let flat: Vec<f32> = logits.try_into_vec_as::<f32>().unwrap();
    let p = prompt.ids.len();
    completion
        .iter()
        .enumerate()
        .map(|(i, &tok)| {
            let row = &flat[(p - 1 + i) * v..(p + i) * v];
            assert!(p + i <= l);
            token_logprob(row, t, tok as usize)
        })
        .collect()
}

#[test]
fn same_seed_same_rollouts_and_different_seeds_differ() {
    let s = setup();
    let c = cfg(4, 12, SamplingConfig::default());
    let prompts = [s.video_prompt.clone()];
    let run = |seed| {
        generate(
            &s.model,
            &prompts,
            &c,
            &s.tokens,
            &Rng::new(seed),
            &s.device,
        )
        .unwrap()
        .0
    };
    let a = run(1);
    assert_eq!(a, run(1));
    let b = run(2);
    assert_ne!(
        a.iter().map(|r| &r.tokens).collect::<Vec<_>>(),
        b.iter().map(|r| &r.tokens).collect::<Vec<_>>()
    );
    // The samples of one group differ from each other too.
    assert_ne!(a[0].tokens, a[1].tokens);
}

#[test]
fn rollouts_do_not_depend_on_the_thread_count() {
    // 2 prompts × G = 16: 32 rows, so the rows are sampled in parallel
    // chunks (and the backend's ops may split their work) with several
    // threads, and serially with one.
    let s = setup();
    let c = cfg(16, 10, SamplingConfig::default());
    let prompts = [
        s.video_prompt.clone(),
        GroupPrompt {
            group: 1,
            ..s.video_prompt.clone()
        },
    ];
    let run = |threads| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            generate(&s.model, &prompts, &c, &s.tokens, &Rng::new(3), &s.device)
                .unwrap()
                .0
        })
    };
    let one = run(1);
    assert_eq!(one.len(), 32);
    assert_eq!(one, run(4));
}

#[test]
fn a_group_shares_one_prefill() {
    let s = setup();
    let prompts = [
        s.video_prompt.clone(),
        GroupPrompt {
            group: 1,
            ..s.video_prompt.clone()
        },
    ];
    let (rollouts, stats) = generate(
        &s.model,
        &prompts,
        &cfg(8, 5, SamplingConfig::default()),
        &s.tokens,
        &Rng::new(0),
        &s.device,
    )
    .unwrap();
    assert_eq!(rollouts.len(), 16);
    assert_eq!(stats.prefill_passes, 1);
    assert_eq!(stats.prefill_rows, 2, "2 prompts prefilled, not 16 rows");
    assert_eq!(
        rollouts
            .iter()
            .map(|r| (r.group, r.sample))
            .collect::<Vec<_>>(),
        (0..2u64)
            .flat_map(|g| (0..8).map(move |s| (g, s)))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_stop_token_ends_its_row_while_others_continue() {
    let s = setup();
    // A broad stop set: rows stop at different steps.
    let tokens = Tokens {
        stop: (0..320).filter(|t| t % 5 == 0).collect(),
        ..s.tokens.clone()
    };
    let (rollouts, stats) = generate(
        &s.model,
        &[text_prompt(0, &[11, 12, 13, 14, 15, 16])],
        &cfg(8, 16, SamplingConfig::default()),
        &tokens,
        &Rng::new(3),
        &s.device,
    )
    .unwrap();
    let lengths: Vec<usize> = rollouts.iter().map(|r| r.tokens.len()).collect();
    assert!(
        lengths.iter().min() < lengths.iter().max(),
        "rows should end at different steps: {lengths:?}"
    );
    for r in &rollouts {
        let (last, body) = r.tokens.split_last().unwrap();
        assert!(body.iter().all(|t| !tokens.stop.contains(t)));
        match r.finish {
            FinishReason::Stop => assert!(tokens.stop.contains(last)),
            FinishReason::Length => assert_eq!(r.tokens.len(), 16),
        }
        assert_eq!(r.tokens.len(), r.logprobs.len());
    }
    assert_eq!(stats.generated_tokens, lengths.iter().sum::<usize>());
}

#[test]
fn greedy_decoding_with_the_cache_equals_full_recompute() {
    let s = setup();
    let prompt = s.video_prompt.clone();
    let steps = 10;
    let (rollouts, _) = generate(
        &s.model,
        std::slice::from_ref(&prompt),
        &cfg(2, steps, SamplingConfig::greedy()),
        &Tokens {
            stop: vec![],
            ..s.tokens.clone()
        },
        &Rng::new(0),
        &s.device,
    )
    .unwrap();
    // Reference: re-run the whole sequence for every new token, argmax.
    let mut ids = prompt.ids.clone();
    let mut expected = Vec::new();
    for _ in 0..steps {
        let batch = Batch {
            attention_mask: vec![vec![true; ids.len()]],
            token_types: vec![
                ids.iter()
                    .map(|&i| {
                        if i == i64::from(s.tokens.video_pad) {
                            2
                        } else {
                            0
                        }
                    })
                    .collect(),
            ],
            input_ids: vec![ids.clone()],
            video: prompt.video.clone(),
        };
        let logits = s.model.forward(&batch, &s.device).unwrap();
        let [_, l, v] = logits.dims();
        let last: Vec<f32> = logits
            .slice([0..1, l - 1..l, 0..v])
            .try_into_vec_as::<f32>()
            .unwrap();
        let next = last
            .iter()
            .enumerate()
            .fold(0, |b, (i, &x)| if x > last[b] { i } else { b });
        expected.push(next as u32);
        ids.push(next as i64);
    }
    assert_eq!(rollouts[0].tokens, expected);
    assert_eq!(rollouts[1].tokens, expected, "greedy rows of a group agree");
}

#[test]
fn sampled_logprobs_equal_teacher_forced_logprobs() {
    let s = setup();
    let t = 0.7;
    let sampling = SamplingConfig {
        temperature: t,
        top_k: 0,
        top_p: 0.9,
    };
    let (rollouts, _) = generate(
        &s.model,
        std::slice::from_ref(&s.video_prompt),
        &cfg(3, 12, sampling),
        &s.tokens,
        &Rng::new(5),
        &s.device,
    )
    .unwrap();
    for r in &rollouts {
        let tf = teacher_forced(&s, &s.video_prompt, &r.tokens, t);
        for (a, b) in r.logprobs.iter().zip(&tf) {
            assert!((a - b).abs() < 1e-4, "sampled {a} vs teacher-forced {b}");
        }
    }
}

#[test]
fn batching_prompts_of_different_lengths_changes_no_rollout() {
    let s = setup();
    let c = cfg(3, 10, SamplingConfig::default());
    let short = text_prompt(5, &[21, 22, 23]);
    let long = text_prompt(6, &[31, 32, 33, 34, 35, 36, 37, 38, 39]);
    let base = Rng::new(11);
    let together = generate(
        &s.model,
        &[short.clone(), long.clone()],
        &c,
        &s.tokens,
        &base,
        &s.device,
    )
    .unwrap()
    .0;
    let alone: Vec<_> = [short, long]
        .iter()
        .flat_map(|p| {
            generate(
                &s.model,
                std::slice::from_ref(p),
                &c,
                &s.tokens,
                &base,
                &s.device,
            )
            .unwrap()
            .0
        })
        .collect();
    assert_eq!(together.len(), alone.len());
    for (a, b) in together.iter().zip(&alone) {
        assert_eq!(a.tokens, b.tokens);
        for (x, y) in a.logprobs.iter().zip(&b.logprobs) {
            assert!((x - y).abs() < 1e-4, "{x} vs {y}");
        }
    }
}

#[test]
fn a_full_length_run_fits_the_cache() {
    // The cache is sized prompt + max_new_tokens: a full-length run must not
    // overflow it.
    let s = setup();
    let (rollouts, _) = generate(
        &s.model,
        &[text_prompt(0, &[1, 2, 3])],
        &cfg(2, 20, SamplingConfig::default()),
        &Tokens {
            stop: vec![],
            ..s.tokens.clone()
        },
        &Rng::new(0),
        &s.device,
    )
    .unwrap();
    assert!(rollouts.iter().all(|r| r.tokens.len() == 20));
}
