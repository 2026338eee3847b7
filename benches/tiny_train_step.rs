//! Time of one training step of the embedded tiny model on the CPU backend:
//! forward + backward on a batch of 8 rows × 200 tokens (next-token
//! cross-entropy), then the AdamW update; and, for comparison, the forward
//! pass alone without autodiff (what scoring and log-prob passes cost). Run with
//! `cargo bench --bench tiny_train_step`; prints the median of a few
//! repetitions after a warm-up.

use std::time::{Duration, Instant};

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Int, Tensor, TensorData};
use vgrpo::default_model::tiny_model;
use vgrpo::logits::token_log_probs;
use vgrpo::model::Batch;
use vgrpo::optim::{OptimConfig, Optimizer};
use vgrpo::rng::Rng;

const ROWS: usize = 8;
const LEN: usize = 200;
const REPEATS: usize = 7;

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    vgrpo::process::init();
    let device = vgrpo::device::test_device().autodiff();
    let mut model = tiny_model(0, &device)?;
    let mut optimizer = Optimizer::new(&OptimConfig {
        lr: 1e-4,
        ..OptimConfig::default()
    });
    let mut rng = Rng::new(0);
    let tokens: Vec<Vec<i64>> = (0..ROWS)
        .map(|_| (0..LEN).map(|_| rng.below(1024) as i64).collect())
        .collect();
    let flat: Vec<i64> = tokens.iter().flatten().copied().collect();
    let targets = Tensor::<2, Int>::from_data(TensorData::new(flat, [ROWS, LEN]), &device)
        .slice([0..ROWS, 1..LEN]);
    let batch = Batch::text(tokens);

    let mut fwd_bwd = Vec::new();
    let mut update = Vec::new();
    for i in 0..REPEATS + 1 {
        let start = Instant::now();
        let logits = model.forward(&batch, &device)?.slice([0..ROWS, 0..LEN - 1]);
        let loss = token_log_probs(logits, targets.clone(), 1.0).mean().neg();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        // Reading the norm inside the step forces the backward pass to finish.
        let mid = Instant::now();
        let (next, _) = optimizer.step(model, grads, 1e-4)?;
        model = next;
        let _ = model.model.language_model.norm.weight.val().into_data();
        let end = Instant::now();
        if i > 0 {
            fwd_bwd.push(mid - start);
            update.push(end - mid);
        }
    }
    let inference = vgrpo::device::test_device();
    let frozen = model.valid();
    let mut fwd = Vec::new();
    for i in 0..REPEATS + 1 {
        let start = Instant::now();
        let logits = frozen.forward(&batch, &inference)?;
        let _ = logits.slice([0..1, 0..1, 0..1]).into_data();
        if i > 0 {
            fwd.push(start.elapsed());
        }
    }
    println!(
        "tiny model, {ROWS}×{LEN} tokens: forward+backward {:.0?}, clip+AdamW update {:.0?}, \
         forward alone (no autodiff) {:.0?} (medians of {REPEATS})",
        median(fwd_bwd),
        median(update),
        median(fwd)
    );
    Ok(())
}
