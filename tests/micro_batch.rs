//! `[grpo] micro_batch_size` in the no-grad passes: the old policy's and
//! the reference's log-probs of a step computed a few whole groups at a
//! time (each micro-batch left-padded to its own longest prompt and
//! right-padded to its own longest completion) equal those of the whole
//! step at once — on both architectures, with video and text prompts of
//! different lengths, ragged completions, and the LM head in chunks.

use std::path::Path;

use burn::tensor::Device;
use vgrpo::grpo::forcing::{LogProbPasses, TeacherForcing, step_logprobs};
use vgrpo::model::QwenVl;
use vgrpo::model::check::Reference;
use vgrpo::rollout::{GroupPrompt, Tokens};

/// G rollouts per prompt.
const G: usize = 2;

/// The fixture model and four prompts of different lengths: its video
/// prompt, a short text prompt, the video prompt after three more text
/// tokens, a long text prompt.
fn setup(arch: &str, device: &Device) -> (QwenVl, Vec<GroupPrompt>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/fixtures/{arch}_tiny"));
    let model = QwenVl::from_hf_dir(&dir, device).unwrap();
    let batch = Reference::read(&dir.join("reference.safetensors"))
        .unwrap()
        .batch(device);
    let ids: Vec<i64> = batch.input_ids[0]
        .iter()
        .zip(&batch.attention_mask[0])
        .filter(|(_, m)| **m)
        .map(|(&id, _)| id)
        .collect();
    let prompt = |group, ids: Vec<i64>, video| GroupPrompt { group, ids, video };
    let prompts = vec![
        prompt(0, ids.clone(), batch.video.clone()),
        prompt(1, vec![21, 22, 23], None),
        prompt(2, [vec![31, 32, 33], ids].concat(), batch.video.clone()),
        prompt(3, (40..52).collect(), None),
    ];
    (model, prompts)
}

/// Ragged completions: the step's width is 9, micro-batches' narrower.
fn completions(vocab: usize) -> Vec<Vec<i64>> {
    [3, 1, 9, 4, 2, 2, 6, 5]
        .iter()
        .enumerate()
        .map(|(r, &n)| {
            (0..n)
                .map(|i| ((13 * i + 7 * r + 5) % (vocab - 10)) as i64)
                .collect()
        })
        .collect()
}

#[test]
fn micro_batched_log_probs_equal_the_whole_step() {
    let device = vgrpo::device::test_device();
    for arch in ["qwen3_vl", "qwen2_5_vl"] {
        let (model, prompts) = setup(arch, &device);
        let tokens = Tokens {
            stop: vec![7],
            pad: 0,
            video_pad: model.config.video_token_id,
        };
        let rows: Vec<&GroupPrompt> = prompts
            .iter()
            .flat_map(|p| std::iter::repeat_n(p, G))
            .collect();
        let forcing =
            TeacherForcing::from_rows(rows, completions(model.config.text.vocab_size), G, &tokens);
        assert_eq!(forcing.width(), 9);
        for logit_chunk in [0, 4] {
            let passes = |micro_batch_size| LogProbPasses {
                need_old: true,
                temperature: 0.8,
                logit_chunk,
                micro_batch_size,
            };
            let run = |micro| {
                let lp = step_logprobs(&forcing, &model, &passes(micro), &device).unwrap();
                assert_eq!(lp.dims(), [8, 9]);
                lp.try_into_vec_as::<f32>().unwrap()
            };
            let whole = run(0);
            let mask = forcing
                .mask(&device)
                .into_data()
                .try_to_vec::<bool>()
                .unwrap();
            for micro in [G, 2 * G, 3 * G, 4 * G] {
                let got = run(micro);
                let worst = whole
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                eprintln!(
                    "{arch}, logit_chunk {logit_chunk}, micro-batches of {micro}: \
                     max |Δ log p| {worst:.3e}"
                );
                // Padding is 0 in both (a −0 from the mask or a +0 pad).
                for ((a, b), &m) in whole.iter().zip(&got).zip(&mask) {
                    assert!(m || (*a == 0.0 && *b == 0.0), "padding {a} / {b}");
                }
                // Not always bit for bit: a micro-batch is left-padded to
                // its own longest prompt and has other shapes (one prompt
                // row takes other kernel paths), so a few values may round
                // differently. On the CPU backend: micro-batches of one
                // group differ by ≤ 9.5e-7 (an ulp at |log p| ≈ 8), the
                // others are bit-identical.
                assert!(
                    worst <= 1e-5,
                    "{arch}, chunk {logit_chunk}, micro {micro}: {worst:.3e}"
                );
            }
        }
    }
}
