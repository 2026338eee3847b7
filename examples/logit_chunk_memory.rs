//! Peak memory and time of the GRPO log-prob passes with and without
//! `[grpo] logit_chunk`, on the tiny model and on the tiny model with a
//! real Qwen vocabulary (151,936 words): 8 rollouts of one text prompt.
//!
//! `cargo run --release --example logit_chunk_memory [TOKENS]` runs every
//! variant in a child process of its own (so each reports its own peak,
//! `VmHWM` from `/proc/self/status`) and prints a Markdown table;
//! `… -- TOKENS VOCAB CHUNK PHASE` is one child, PHASE `update` (one
//! update: forward, gradient, AdamW step) or `forcing` (the no-grad old
//! and reference passes).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, bail};
use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData};
use vgrpo::default_model::{init_like_hf, tiny_config};
use vgrpo::device::test_device;
use vgrpo::grpo::chunked::policy_gradients;
use vgrpo::grpo::forcing::bool_mask;
use vgrpo::grpo::{PolicyLossConfig, PolicyLossInputs, policy_loss};
use vgrpo::model::logprob::{CompletionBatch, completion_logprobs_chunked};
use vgrpo::model::{Batch, QwenVl};
use vgrpo::optim::{OptimConfig, Optimizer};

const ROWS: usize = 8;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => parent(256),
        [tokens] => parent(tokens.parse()?),
        [tokens, vocab, chunk, phase] => {
            child(tokens.parse()?, vocab.parse()?, chunk.parse()?, phase)
        }
        _ => bail!("usage: logit_chunk_memory [TOKENS [VOCAB CHUNK update|forcing]]"),
    }
}

/// Every variant in a child process; one table row each.
fn parent(tokens: usize) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    println!("{ROWS} rows × {tokens} completion tokens, one prompt of 32 tokens (group {ROWS})\n");
    println!("| vocabulary | phase | logit_chunk | peak RSS (VmHWM) | RSS before | time |");
    println!("|---|---|---|---|---|---|");
    for vocab in [1050, 151_936] {
        for phase in ["forcing", "update"] {
            for chunk in [0, 64] {
                let out = Command::new(&exe)
                    .args([tokens, vocab, chunk].map(|v| v.to_string()))
                    .arg(phase)
                    .output()?;
                if !out.status.success() {
                    bail!(
                        "{vocab} {phase} {chunk}: {}",
                        String::from_utf8_lossy(&out.stderr)
                    );
                }
                print!("{}", String::from_utf8(out.stdout)?);
            }
        }
    }
    Ok(())
}

/// `VmHWM` and `VmRSS` in MiB.
fn memory() -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = |key: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(key))
            .context(key.to_string())?;
        let n: f64 = line
            .split_whitespace()
            .nth(1)
            .context("no value")?
            .parse()?;
        Ok(n / 1024.0)
    };
    Ok((kib("VmHWM:")?, kib("VmRSS:")?))
}

fn child(tokens: usize, vocab: usize, chunk: usize, phase: &str) -> anyhow::Result<()> {
    let plain = test_device();
    let device = plain.clone().autodiff();
    let mut config = tiny_config()?;
    config.text.vocab_size = vocab;
    let actor = init_like_hf(QwenVl::new(&config, &device), 7);
    let prompt: Vec<i64> = (0..32).map(|i| 20 + i).collect();
    let completions: Vec<Vec<i64>> = (0..ROWS)
        .map(|r| {
            (0..tokens)
                .map(|i| ((31 * i + 7 * r) % 1000) as i64)
                .collect()
        })
        .collect();
    let batch = CompletionBatch::new(&Batch::text(vec![prompt]), ROWS, &completions, 0)?;
    let (_, before) = memory()?;
    let t = Instant::now();
    match phase {
        "forcing" => {
            // The old policy's and the reference's passes (the same weights).
            let policy = actor.valid();
            for _ in 0..2 {
                completion_logprobs_chunked(&policy, &batch, 1.0, chunk, &plain)?.into_data();
            }
        }
        "update" => update(actor, &batch, chunk, &device)?,
        _ => bail!("phase {phase}: update or forcing"),
    }
    let seconds = t.elapsed().as_secs_f64();
    let (peak, _) = memory()?;
    println!("| {vocab} | {phase} | {chunk} | {peak:.0} MiB | {before:.0} MiB | {seconds:.2} s |");
    Ok(())
}

/// One on-policy update with the KL term against a uniform reference.
fn update(
    actor: QwenVl,
    batch: &CompletionBatch,
    chunk: usize,
    device: &Device,
) -> anyhow::Result<()> {
    let shape = [batch.rows(), batch.width()];
    let uniform = -(actor.config.text.vocab_size as f32).ln();
    let reference = Tensor::<2>::full(shape, uniform, device);
    let adv: Vec<f32> = (0..ROWS).map(|r| r as f32 / 4.0 - 0.9).collect();
    let advantages = Tensor::<1>::from_data(TensorData::new(adv, [ROWS]), device);
    let mask = bool_mask(&batch.completion_mask, device);
    let loss = |log_probs: Tensor<2>| {
        let inputs = PolicyLossInputs {
            old_log_probs: log_probs.clone().detach(),
            log_probs,
            ref_log_probs: Some(reference),
            advantages,
            response_mask: mask,
        };
        Ok(policy_loss(inputs, &PolicyLossConfig::default())?)
    };
    let grads = policy_gradients(&actor, batch, 1.0, chunk, device, loss)?;
    let mut optimizer = Optimizer::new(&OptimConfig::default());
    let (actor, _) = optimizer.step(actor, grads.grads, 1e-6)?;
    // Wait for the step (a lazy backend would otherwise stop the clock early).
    actor.model.language_model.norm.weight.val().into_data();
    Ok(())
}
