//! Teacher-forced completion log-probs, the KV cache, and a forward+backward
//! pass of the tiny configurations on CPU.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Device, Tensor};
use vgrpo::model::check::{Reference, max_abs, max_abs_diff, max_or_nan};
use vgrpo::model::logprob::{CompletionBatch, completion_logprobs};
use vgrpo::model::vision::PatchMerger;
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
    let device = vgrpo::device::test_device();
    let dir = fixture(arch);
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    let k = 4;
    let (prompt, completions) = split(&reference, &device, k);
    // Row 1's completion is one token shorter: right padding must be ignored.
    let mut completions = completions;
    completions[1].pop();
    let input = CompletionBatch::new(&prompt, 1, &completions, 0).unwrap();
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
            worst = max_or_nan(worst, (ours[b * k + j] as f64 - expected).abs());
        }
        for j in completion.len()..k {
            assert_eq!(ours[b * k + j], 0.0, "padding is not scored");
        }
    }
    eprintln!("{arch}: max |Δ log p| vs transformers {worst:.3e}");
    assert!(worst.is_finite() && worst < 1e-4, "{arch}: {worst:.3e}");
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
    let device = vgrpo::device::test_device();
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
    let mut worst = 0.0f64;
    for j in 0..k {
        let tokens: Vec<i64> = completions.iter().map(|c| c[j]).collect();
        let hidden = model
            .decode_hidden(&tokens, &[true, true], &mut cache, &device)
            .unwrap();
        let ours = model.logits(hidden).try_into_vec_as::<f32>().unwrap();
        for b in 0..2 {
            let pos = l - k + j;
            let expected = &reference.logits[(b * l + pos) * v..(b * l + pos + 1) * v];
            worst = max_or_nan(worst, max_abs_diff(&ours[b * v..(b + 1) * v], expected));
        }
    }
    eprintln!("{arch}: cached decoding max |Δ logit| {worst:.3e}");
    assert!(worst.is_finite() && worst < 1e-4, "{arch}: {worst:.3e}");
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
    let device = vgrpo::device::test_device();
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
    // The rows of a group attend to one shared copy of the prompt's keys, in
    // one matmul for the group: they agree exactly with each other, and with
    // the unrepeated row up to the order of a sum (the shared and own parts
    // of `probs · V` are summed separately).
    for row in three.chunks(one.len()) {
        assert_eq!(row, &three[..one.len()]);
        let d = max_abs_diff(row, &one);
        assert!(
            d.is_finite() && d < 1e-5,
            "repeated row differs from the original by {d:.3e}"
        );
    }
    // Both caches are full now; so is a repeat of a full cache (no room of
    // its own): one more token is an error, not a panic or a slide.
    let mut full = cache.repeat_rows(2, &device);
    for (c, n) in [(&mut cache, 1), (&mut group, 3), (&mut full, 2)] {
        let err = model
            .decode_hidden(&vec![1; n], &vec![true; n], c, &device)
            .unwrap_err();
        assert!(matches!(err, ModelError::CacheOverflow { .. }), "{err}");
    }
}

#[test]
fn repeating_a_repeated_cache_equals_repeating_once() {
    // Prefill, repeat ×2, decode a different token per row, repeat ×3:
    // the 6 rows decode like a ×6 repeat fed the same tokens.
    let device = vgrpo::device::test_device();
    let dir = fixture("qwen3_vl");
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference.safetensors")).unwrap();
    let (prompt, completions) = split(&reference, &device, 3);
    let (a, b, c) = (completions[0][0], completions[0][1], completions[0][2]);
    let mut cache = model.new_cache(reference.input_ids[0].len());
    model
        .forward_hidden(&prompt, Some(&mut cache), &device)
        .unwrap();

    let mut twice = cache.repeat_rows(2, &device);
    model
        .decode_hidden(&[a, b], &[true; 2], &mut twice, &device)
        .unwrap();
    let mut twice = twice.repeat_rows(3, &device);
    let nested = model
        .decode_hidden(&[c; 6], &[true; 6], &mut twice, &device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();

    let mut once = cache.repeat_rows(6, &device);
    model
        .decode_hidden(&[a, a, a, b, b, b], &[true; 6], &mut once, &device)
        .unwrap();
    let flat = model
        .decode_hidden(&[c; 6], &[true; 6], &mut once, &device)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let d = max_abs_diff(&nested, &flat);
    assert!(
        d.is_finite() && d < 1e-5,
        "nested repeat differs by {d:.3e}"
    );
    // Rows that saw `a` differ from rows that saw `b`.
    let h = nested.len() / 6;
    assert_ne!(nested[..h], nested[3 * h..4 * h]);
}

fn grad_norm<const D: usize>(p: &Param<Tensor<D>>, grads: &burn::tensor::Gradients) -> f32 {
    let g = p.val().grad(grads).expect("parameter has a gradient");
    g.square().sum().into_scalar::<f32>().sqrt()
}

/// A GRPO-like step's autodiff path on CPU: log-probs -> loss -> backward,
/// with gradients reaching the vision tower and the decoder.
fn forward_backward(arch: &str) {
    let device = vgrpo::device::test_device().autodiff();
    let dir = fixture(arch);
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    let (prompt, completions) = split(&reference, &device, 4);
    let input = CompletionBatch::new(&prompt, 1, &completions, 0).unwrap();
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

/// A GRPO group: one prompt, several completions. Sharing the video across
/// rows (vision tower once) gives the same log-probs as repeating it.
#[test]
fn shared_group_video_equals_repeated_video() {
    let device = vgrpo::device::test_device();
    for arch in ["qwen3_vl", "qwen2_5_vl"] {
        let dir = fixture(arch);
        let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
        let reference = Reference::read(&dir.join("reference.safetensors")).unwrap();
        let (prompt, completions) = split(&reference, &device, 3);
        let group = 3;
        let mut repeated = prompt.clone();
        for field in [&mut repeated.input_ids, &mut repeated.token_types] {
            *field = vec![field[0].clone(); group];
        }
        repeated.attention_mask = vec![repeated.attention_mask[0].clone(); group];
        let mut shared = repeated.clone();
        let video = repeated.video.as_mut().unwrap();
        video.pixel_values = Tensor::cat(vec![video.pixel_values.clone(); group], 0);
        video.grids = vec![video.grids[0]; group];
        video.second_per_grid_ts =
            vec![video.second_per_grid_ts.first().copied().unwrap_or(1.0); group];
        shared.video.as_mut().unwrap().shared_across_rows = true;
        let answers = vec![
            completions[0].clone(),
            completions[0][..2].to_vec(),
            vec![completions[0][2]],
        ];
        let run = |prompts: &Batch, group: usize| {
            let input = CompletionBatch::new(prompts, group, &answers, 0).unwrap();
            completion_logprobs(&model, &input, 1.0, &device)
                .unwrap()
                .try_into_vec_as::<f32>()
                .unwrap()
        };
        // The prompt repeated per row, its video run once for all rows, and
        // one prompt row shared by the group's three completions.
        let a = run(&repeated, 1);
        for (how, b) in [
            ("shared video", run(&shared, 1)),
            ("grouped", run(&prompt, group)),
        ] {
            let worst = max_abs_diff(&a, &b);
            assert!(
                worst.is_finite() && worst < 1e-5,
                "{arch} {how}: {worst:.3e}"
            );
        }
    }
}

/// Sharing a group's prompt row is only a cheaper schedule of the same
/// computation: the gradients equal those of the prompt repeated per row,
/// in the language model and in the vision tower (which sees the video once
/// instead of three times).
#[test]
fn grouped_completions_give_the_gradients_of_repeated_prompts() {
    let device = vgrpo::device::test_device().autodiff();
    let dir = fixture("qwen3_vl");
    let model = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let reference = Reference::read(&dir.join("reference.safetensors")).unwrap();
    let (prompt, completions) = split(&reference, &device, 3);
    let group = 3;
    let mut repeated = prompt.clone();
    repeated.input_ids = vec![prompt.input_ids[0].clone(); group];
    repeated.token_types = vec![prompt.token_types[0].clone(); group];
    repeated.attention_mask = vec![prompt.attention_mask[0].clone(); group];
    let video = repeated.video.as_mut().unwrap();
    video.pixel_values = Tensor::cat(vec![video.pixel_values.clone(); group], 0);
    video.grids = vec![video.grids[0]; group];
    let answers = vec![
        completions[0].clone(),
        completions[0][..1].to_vec(),
        completions[0][1..].to_vec(),
    ];
    // A weighted sum, so each row's share of the gradient differs.
    let weights = Tensor::<2>::from_data([[1.0f32], [-0.5], [2.0]], &device);
    let grads_of = |prompts: &Batch, group: usize| {
        let input = CompletionBatch::new(prompts, group, &answers, 0).unwrap();
        let logp = completion_logprobs(&model, &input, 1.0, &device).unwrap();
        let grads = (logp * weights.clone()).sum().backward();
        let q = &model.model.language_model.layers[0].self_attn.q_proj.weight;
        let patch = &model.model.visual.patch_embed.proj.weight;
        [
            q.val()
                .grad(&grads)
                .unwrap()
                .try_into_vec_as::<f32>()
                .unwrap(),
            patch
                .val()
                .grad(&grads)
                .unwrap()
                .try_into_vec_as::<f32>()
                .unwrap(),
        ]
    };
    let (a, b) = (grads_of(&repeated, 1), grads_of(&prompt, group));
    for (name, (x, y)) in ["q_proj", "patch_embed"].iter().zip(a.iter().zip(&b)) {
        let (scale, worst) = (max_abs(x), max_abs_diff(x, y));
        assert!(
            scale.is_finite() && scale > 0.0 && worst.is_finite() && worst <= 1e-4 * scale,
            "{name}: {worst:.3e} of {scale:.3e}"
        );
    }
}

/// Mixed precision: the f32 parameters stay the trained (master) copy, the
/// forward runs on a bf16 cast of them, and the gradients reach the f32
/// parameters through the cast.
#[test]
fn bf16_compute_gives_gradients_to_f32_parameters() {
    let device = vgrpo::device::test_device().autodiff();
    let dir = fixture("qwen3_vl");
    let master = QwenVl::from_hf_dir(&dir, &device).unwrap();
    let compute = master
        .clone()
        .with_float_dtype(burn::tensor::FloatDType::BF16);
    let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    let (prompt, completions) = split(&reference, &device, 4);
    let input = CompletionBatch::new(&prompt, 1, &completions, 0).unwrap();
    let logp = completion_logprobs(&compute, &input, 1.0, &device).unwrap();
    let grads = logp.sum().neg().backward();
    let weight = &master.model.language_model.layers[0]
        .self_attn
        .q_proj
        .weight;
    let grad = weight
        .val()
        .grad(&grads)
        .expect("the f32 master weight has a gradient");
    assert_eq!(grad.dtype(), burn::tensor::DType::F32);
    let norm = grad.square().sum().into_scalar::<f32>().sqrt();
    assert!(norm.is_finite() && norm > 0.0, "{norm}");
    assert_eq!(
        weight.id,
        compute.model.language_model.layers[0]
            .self_attn
            .q_proj
            .weight
            .id
    );
}

/// Autodiff gradients equal finite differences of the loss, for parameters
/// along the whole path a judgement's signal takes: the patch projection and
/// the merger of the vision tower (so a training signal really reaches the
/// pixels' features) and a decoder projection. The check is directional:
/// along the unit gradient direction `d`, `(L(θ + εd) − L(θ − εd)) / 2ε`
/// must equal `|∇L|`.
#[test]
fn gradients_match_finite_differences() {
    type Pick = fn(&mut QwenVl) -> &mut Param<Tensor<2>>;
    let picks: [(&str, Pick); 4] = [
        ("visual.patch_embed.proj", |m| {
            &mut m.model.visual.patch_embed.proj.weight
        }),
        ("visual.merger.linear_fc1", |m| {
            match &mut m.model.visual.merger {
                PatchMerger::Qwen3(merger) => &mut merger.linear_fc1.weight,
                PatchMerger::Qwen25(_) => unreachable!("a Qwen3-VL fixture"),
            }
        }),
        ("visual.merger.linear_fc2", |m| {
            match &mut m.model.visual.merger {
                PatchMerger::Qwen3(merger) => &mut merger.linear_fc2.weight,
                PatchMerger::Qwen25(_) => unreachable!("a Qwen3-VL fixture"),
            }
        }),
        ("language_model.layers.0.self_attn.v_proj", |m| {
            &mut m.model.language_model.layers[0].self_attn.v_proj.weight
        }),
    ];
    let plain = vgrpo::device::test_device();
    let dir = fixture("qwen3_vl");
    let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    let loss_of = |model: &QwenVl, device: &Device| {
        let (prompt, completions) = split(&reference, device, 4);
        let input = CompletionBatch::new(&prompt, 1, &completions, 0).unwrap();
        completion_logprobs(model, &input, 1.0, device)
            .unwrap()
            .sum()
            .neg()
    };
    let ad = plain.clone().autodiff();
    let mut trained = QwenVl::from_hf_dir(&dir, &ad).unwrap();
    let grads = loss_of(&trained, &ad).backward();
    for (name, pick) in picks {
        let g = pick(&mut trained).val().grad(&grads).expect("gradient");
        let g = Tensor::<2>::from_data(g.into_data(), &plain);
        let norm = g.clone().square().sum().into_scalar::<f32>().sqrt();
        let eps = 1e-2f32;
        let dir_ = g.div_scalar(norm);
        let shifted = |sign: f32| {
            let mut model = QwenVl::from_hf_dir(&dir, &plain).unwrap();
            let p = pick(&mut model);
            let moved = p.val().add(dir_.clone().mul_scalar(sign * eps));
            *p = Param::from_tensor(moved);
            loss_of(&model, &plain).into_scalar::<f32>()
        };
        let numeric = (shifted(1.0) - shifted(-1.0)) / (2.0 * eps);
        let rel = (numeric - norm).abs() / norm;
        eprintln!("{name}: |grad| {norm:.4e}, finite difference {numeric:.4e}, rel {rel:.2e}");
        assert!(
            norm.is_finite() && norm > 0.0 && rel.is_finite() && rel < 0.05,
            "{name}: |grad| {norm} vs {numeric}"
        );
    }
}
