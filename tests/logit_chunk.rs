//! `[grpo] logit_chunk`: the LM head run over a few completion positions
//! at a time gives the log-probs of the whole width at once, and the
//! update's two-stage backward (`vgrpo::grpo::chunked`) the one-shot
//! gradient — on a tied and an untied head, with a video prompt, and with
//! LoRA adapters on a frozen base.

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor, TensorData};
use vgrpo::default_model::tiny_model;
use vgrpo::device::test_device;
use vgrpo::grpo::chunked::{PolicyGradients, one_shot, policy_gradients, two_stage};
use vgrpo::grpo::error::TrainError;
use vgrpo::grpo::{
    LossAggregation, PolicyLossConfig, PolicyLossInputs, PolicyLossOutput, policy_loss,
};
use vgrpo::logits::masked_mean;
use vgrpo::model::check::Reference;
use vgrpo::model::logprob::{
    CompletionBatch, chunk_spans, completion_logprobs, completion_logprobs_chunked,
};
use vgrpo::model::{Batch, LoraConfig, QwenVl};
use vgrpo::optim::global_grad_norm;
use vgrpo::trainable::trainable;

/// Completion lengths: width 7, ragged (right padding must not count).
const LENGTHS: [usize; 4] = [7, 5, 7, 2];

/// One update's inputs: the actor, its batch and the loss settings.
struct Case {
    name: &'static str,
    actor: QwenVl,
    batch: CompletionBatch,
    temperature: f64,
    loss: PolicyLossConfig,
    /// Off-policy: the old log-probs differ from the current ones.
    off_policy: bool,
}

fn fixture_prompt(arch: &str, device: &Device) -> (QwenVl, Batch) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{arch}_tiny"));
    let model = QwenVl::from_hf_dir(&dir, device).unwrap();
    let reference = Reference::read(&dir.join("reference_batch.safetensors")).unwrap();
    (model, reference.batch(device))
}

/// Two prompt rows × group 2, completions of [`LENGTHS`] with ids below
/// `vocab`.
fn completions(prompts: &Batch, vocab: usize) -> CompletionBatch {
    let rows: Vec<Vec<i64>> = LENGTHS
        .iter()
        .enumerate()
        .map(|(r, &n)| {
            (0..n)
                .map(|i| ((17 * i + 5 * r + 3) % (vocab - 10)) as i64)
                .collect()
        })
        .collect();
    CompletionBatch::new(prompts, 2, &rows, 0).unwrap()
}

fn cases(device: &Device) -> Vec<Case> {
    let (tied, video) = fixture_prompt("qwen3_vl", device);
    let (untied, video25) = fixture_prompt("qwen2_5_vl", device);
    let text = Batch::text(vec![vec![5, 9, 11, 14], vec![7, 3, 12, 20]]);
    let lora = LoraConfig {
        rank: 4,
        alpha: 8.0,
        ..LoraConfig::default()
    };
    vec![
        Case {
            name: "qwen3-vl tied head, video, off-policy, dual clip",
            batch: completions(&video, tied.config.text.vocab_size),
            actor: tied,
            temperature: 0.7,
            loss: PolicyLossConfig {
                dual_clip: Some(3.0),
                ..PolicyLossConfig::default()
            },
            off_policy: true,
        },
        Case {
            name: "qwen2.5-vl lm_head, video, on-policy, seq-mean-token-mean",
            batch: completions(&video25, untied.config.text.vocab_size),
            actor: untied,
            temperature: 1.0,
            loss: PolicyLossConfig {
                aggregation: LossAggregation::SeqMeanTokenMean,
                ..PolicyLossConfig::default()
            },
            off_policy: false,
        },
        Case {
            name: "tiny model with LoRA adapters on a frozen base",
            actor: trainable(tiny_model(3, device).unwrap(), Some(&lora), 3),
            batch: completions(&text, 1000),
            temperature: 1.0,
            loss: PolicyLossConfig::default(),
            off_policy: true,
        },
    ]
}

/// `[B, W]` values `base + scale · pattern` on `device`.
fn shifted(base: &[f32], scale: f32, shape: [usize; 2], device: &Device) -> Tensor<2> {
    let v: Vec<f32> = base
        .iter()
        .enumerate()
        .map(|(i, &x)| x + scale * (((i * 7) % 5) as f32 - 2.0))
        .collect();
    Tensor::from_data(TensorData::new(v, shape), device)
}

/// The update's gradient of `case` with `chunk` positions per chunk
/// (`None`: the one-shot path; `Some(c)` with `force`: the two-stage path
/// even when one chunk covers the width).
fn gradients(case: &Case, chunk: Option<usize>, force: bool, device: &Device) -> PolicyGradients {
    let plain = device.clone().inner();
    let b = &case.batch;
    let shape = [b.rows(), b.width()];
    let current = completion_logprobs(&case.actor.valid(), b, case.temperature, &plain)
        .unwrap()
        .try_into_vec_as::<f32>()
        .unwrap();
    let old = case
        .off_policy
        .then(|| shifted(&current, 0.15, shape, device));
    let reference = shifted(&current, -0.05, shape, device);
    let adv = [1.0f32, -0.5, 0.3, -0.8];
    let advantages = Tensor::<1>::from_data(TensorData::new(adv.to_vec(), [4]), device);
    let mask = vgrpo::grpo::forcing::bool_mask(&b.completion_mask, device);
    let loss = |log_probs: Tensor<2>| -> Result<PolicyLossOutput, TrainError> {
        let inputs = PolicyLossInputs {
            old_log_probs: old.unwrap_or_else(|| log_probs.clone().detach()),
            log_probs,
            ref_log_probs: Some(reference),
            advantages,
            response_mask: mask,
        };
        Ok(policy_loss(inputs, &case.loss)?)
    };
    let t = case.temperature;
    match (chunk, force) {
        (None, _) => one_shot(&case.actor, b, t, device, loss),
        (Some(c), true) => two_stage(&case.actor, b, t, c, device, loss),
        (Some(c), false) => policy_gradients(&case.actor, b, t, c, device, loss),
    }
    .unwrap()
}

/// Each parameter's gradient (or `None`), in module order.
fn per_parameter(model: &QwenVl, grads: &GradientsParams) -> Vec<Option<Vec<f32>>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Option<Vec<f32>>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            let g = self.0.get::<D>(p.id);
            self.1
                .push(g.map(|g| g.into_data().try_to_vec::<f32>().unwrap()));
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt()
}

/// The largest ‖g_a − g_b‖ / ‖g_a‖ over the parameters; both must have
/// gradients for the same parameters.
fn worst_relative(a: &[Option<Vec<f32>>], b: &[Option<Vec<f32>>]) -> f64 {
    assert_eq!(a.len(), b.len());
    let mut worst = 0.0f64;
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        match (x, y) {
            (None, None) => {}
            (Some(x), Some(y)) => {
                let diff: Vec<f32> = x.iter().zip(y).map(|(p, q)| p - q).collect();
                let (d, n) = (norm(&diff), norm(x));
                let rel = if n == 0.0 { d } else { d / n };
                assert!(rel.is_finite(), "parameter {i}: {d} / {n}");
                worst = worst.max(rel);
            }
            _ => panic!("parameter {i} has a gradient in one path only"),
        }
    }
    worst
}

fn entropy_mean(g: &PolicyGradients, batch: &CompletionBatch, device: &Device) -> f32 {
    let mask = vgrpo::grpo::forcing::bool_mask(&batch.completion_mask, device);
    masked_mean(g.entropy.clone(), mask).into_scalar::<f32>()
}

#[test]
fn chunk_spans_cover_the_width_in_order() {
    let spans = |w, c| chunk_spans(w, c).collect::<Vec<_>>();
    assert_eq!(spans(7, 3), vec![(0, 3), (3, 3), (6, 1)]);
    assert_eq!(spans(7, 1).len(), 7);
    assert_eq!(spans(7, 0), vec![(0, 7)]);
    assert_eq!(spans(7, 7), vec![(0, 7)]);
    assert_eq!(spans(7, 100), vec![(0, 7)]);
}

#[test]
fn chunked_log_probs_equal_the_whole_width() {
    let device = test_device();
    for case in cases(&device) {
        let model = case.actor.valid();
        let run = |chunk| {
            completion_logprobs_chunked(&model, &case.batch, case.temperature, chunk, &device)
                .unwrap()
                .try_into_vec_as::<f32>()
                .unwrap()
        };
        let whole = run(0);
        for chunk in [1, 3, 7, 100] {
            let got = run(chunk);
            let worst = whole
                .iter()
                .zip(&got)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            eprintln!("{}: chunk {chunk}: max |Δ log p| {worst:.3e}", case.name);
            assert!(worst <= 1e-6, "{}: chunk {chunk}: {worst:.3e}", case.name);
        }
    }
}

#[test]
fn the_two_stage_backward_gives_the_one_shot_gradient() {
    let device = test_device().autodiff();
    let plain = device.clone().inner();
    for case in cases(&device) {
        let reference = gradients(&case, None, false, &device);
        let want = per_parameter(&case.actor, &reference.grads);
        let norm = global_grad_norm(&case.actor, &reference.grads).unwrap();
        assert!(norm.is_finite() && norm > 0.0, "{}: {norm}", case.name);
        let entropy = entropy_mean(&reference, &case.batch, &plain);
        let width = case.batch.width();
        let runs = [(1, false), (3, false), (width, true), (width + 5, true)];
        for (chunk, force) in runs {
            let got = gradients(&case, Some(chunk), force, &device);
            let what = format!("{}, chunk {chunk}", case.name);
            assert_eq!(got.metrics, reference.metrics, "{what}: loss metrics");
            let e = entropy_mean(&got, &case.batch, &plain);
            assert!(
                (e - entropy).abs() <= 1e-6 * entropy.abs(),
                "{what}: entropy {e} vs {entropy}"
            );
            let n = global_grad_norm(&case.actor, &got.grads).unwrap();
            let rel_norm = (n - norm).abs() / norm;
            let worst = worst_relative(&want, &per_parameter(&case.actor, &got.grads));
            eprintln!("{what}: ‖g‖ {n:.6e} (Δ {rel_norm:.2e}), worst parameter Δ {worst:.2e}");
            assert!(rel_norm <= 1e-5, "{what}: ‖g‖ {n} vs {norm}");
            assert!(
                worst <= 1e-5,
                "{what}: a parameter's gradient differs by {worst:.2e}"
            );
        }
    }
}
