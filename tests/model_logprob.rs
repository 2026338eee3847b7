//! Teacher-forced completion log-probs, the KV cache, and a forward+backward
//! pass of the tiny configurations on CPU.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use vgrpo::model::check::Reference;
use vgrpo::model::logprob::{CompletionBatch, completion_logprobs};
use vgrpo::model::{Batch, ModelError, QwenVl};

fn fixture(arch: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{arch}_tiny"))
}

/// Splits a reference batch into prompt (all but the last `k` columns) and
/// completions (the last `k` tokens of each row; they are text in the fixtures).
fn split(reference: &Reference, device: &Device, k: usize) -> (Batch, Vec<Vec<i64>>) {
    let mut prompt = reference.batch(device);
    let mut completions = Vec::new();
    for b in 0..prompt.rows() {
        let l = prompt.input_ids[b].len();
        completions.push(prompt.input_ids[b].split_off(l - k));
        prompt.attention_mask[b].truncate(l - k);
        prompt.token_types[b].truncate(l - k);
    }
    (prompt, completions)
}

fn log_softmax_row(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f32::MIN, |m, &v| m.max(v)) as f64;
    let sum: f64 = logits.iter().map(|&v| (v as f64 - max).exp()).sum();
    logits.iter().map(|&v| v as f64 - max - sum.ln()).collect()
}

/// Our completion log-probs equal log_softmax of transformers' logits.
fn logprobs_match_transformers(arch: &str) {
    let device = Device::default();
    let dir = fixture(arch);
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    let k = 4;
    let (prompt, completions) = split(&reference, &device, k);
    // Row 1's completion is one token shorter: right padding must be ignored.
    let mut completions = completions;
    completions[1].pop();
    let input = CompletionBatch::new(&prompt, &completions, 0).unwrap();
    let ours = completion_logprobs(&model, &input, 1.0, &device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let (l, v) = (reference.input_ids[0].len(), reference.vocab);
    let mut worst = 0.0f64;
    for (b, completion) in completions.iter().enumerate() {
        for (j, &token) in completion.iter().enumerate() {
            let pos = l - k + j - 1; // position predicting the token
            let row = &reference.logits[(b * l + pos) * v..(b * l + pos + 1) * v];
            let expected = log_softmax_row(row)[token as usize];
            worst = worst.max((ours[b * k + j] as f64 - expected).abs());
        }
        for j in completion.len()..k {
            assert_eq!(ours[b * k + j], 0.0, "padding is not scored");
        }
    }
    eprintln!("{arch}: max |Δ log p| vs transformers {worst:.3e}");
    assert!(worst < 1e-4, "{arch}: {worst:.3e}");
}

#[test]
fn qwen3_vl_logprobs_match_transformers() {
    logprobs_match_transformers("qwen3_vl");
}

#[test]
fn qwen2_5_vl_logprobs_match_transformers() {
    logprobs_match_transformers("qwen2_5_vl");
}

/// Prefill once, decode token by token: the logits equal a full forward.
fn cache_decoding_matches_full_forward(arch: &str) {
    let device = Device::default();
    let dir = fixture(arch);
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    let k = 3;
    let (prompt, completions) = split(&reference, &device, k);
    let (l, v) = (reference.input_ids[0].len(), reference.vocab);
    let mut cache = model.new_cache(l);
    model
        .forward_hidden(&prompt, Some(&mut cache), &device)
        .unwrap();
    let mut worst = 0.0f32;
    for j in 0..k {
        let tokens: Vec<i64> = completions.iter().map(|c| c[j]).collect();
        let hidden = model
            .decode_hidden(&tokens, &[true, true], &mut cache, &device)
            .unwrap();
        let ours = model.logits(hidden).try_into_vec_as::<f32>().unwrap();
        for b in 0..2 {
            let pos = l - k + j;
            let expected = &reference.logits[(b * l + pos) * v..(b * l + pos + 1) * v];
            for (a, e) in ours[b * v..(b + 1) * v].iter().zip(expected) {
                worst = worst.max((a - e).abs());
            }
        }
    }
    eprintln!("{arch}: cached decoding max |Δ logit| {worst:.3e}");
    assert!(worst < 1e-4, "{arch}: {worst:.3e}");
    // The cache is full now: one more token is an error, not a slide.
    let err = model
        .decode_hidden(&[1, 1], &[true, true], &mut cache, &device)
        .unwrap_err();
    assert!(matches!(err, ModelError::CacheOverflow { .. }), "{err}");
}

#[test]
fn qwen3_vl_cache_decoding_matches_full_forward() {
    cache_decoding_matches_full_forward("qwen3_vl");
}

#[test]
fn qwen2_5_vl_cache_decoding_matches_full_forward() {
    cache_decoding_matches_full_forward("qwen2_5_vl");
}

#[test]
fn repeated_cache_rows_decode_like_the_original() {
    let device = Device::default();
    let dir = fixture("qwen3_vl");
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference.safetensors")).unwrap();
    let (prompt, completions) = split(&reference, &device, 1);
    let mut cache = model.new_cache(reference.input_ids[0].len());
    model
        .forward_hidden(&prompt, Some(&mut cache), &device)
        .unwrap();
    let mut group = cache.repeat_rows(3, &device);
    let one = model
        .decode_hidden(&completions[0], &[true], &mut cache, &device)
        .unwrap();
    let three = model
        .decode_hidden(&[completions[0][0]; 3], &[true; 3], &mut group, &device)
        .unwrap();
    let one = one.try_into_vec_as::<f32>().unwrap();
    let three = three.try_into_vec_as::<f32>().unwrap();
    for row in three.chunks(one.len()) {
        assert_eq!(row, one.as_slice());
    }
}

fn grad_norm<const D: usize>(p: &Param<Tensor<D>>, grads: &burn::tensor::Gradients) -> f32 {
    let g = p.val().grad(grads).expect("parameter has a gradient");
    g.square().sum().into_scalar::<f32>().sqrt()
}

/// A GRPO-like step's autodiff path on CPU: log-probs -> loss -> backward,
/// with gradients reaching the vision tower and the decoder.
fn forward_backward(arch: &str) {
    let device = Device::default().autodiff();
    let dir = fixture(arch);
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    let (prompt, completions) = split(&reference, &device, 4);
    let input = CompletionBatch::new(&prompt, &completions, 0).unwrap();
    let logp = completion_logprobs(&model, &input, 0.7, &device).unwrap();
    let loss = logp.sum().neg();
    let grads = loss.backward();
    let vision = grad_norm(&model.model.visual.patch_embed.proj.weight, &grads);
    let layer = &model.model.language_model.layers[0];
    let attn = grad_norm(&layer.self_attn.q_proj.weight, &grads);
    let embed = grad_norm(&model.model.language_model.embed_tokens.weight, &grads);
    eprintln!("{arch}: grad norms vision {vision:.3e} q_proj {attn:.3e} embed {embed:.3e}");
    for g in [vision, attn, embed] {
        assert!(g.is_finite() && g > 0.0, "{arch}: gradient {g}");
    }
}

#[test]
fn qwen3_vl_forward_backward_on_cpu() {
    forward_backward("qwen3_vl");
}

#[test]
fn qwen2_5_vl_forward_backward_on_cpu() {
    forward_backward("qwen2_5_vl");
}
