//! SFT training data: which answers are trained, and how a batch of them
//! becomes model inputs, targets and rating positions.
//!
//! - Cold start: the manifest's train rows that carry a rationale, as
//!   `<think>{rationale}</think>{Rating}` with Rating = `MosScale::rating(mos)`.
//!   Rows without a rationale are skipped and counted.
//! - Cool-off: the rows of `rollouts/<run>/cooloff.jsonl` (already
//!   `{Rating}<think>…</think>`), joined to the manifest GRPO drew them
//!   from (`sft.manifest`) by [`crate::cooloff::join`], for the video, the
//!   generation prompt and the MOS the score regresses to.
//!
//! Either way the prompt asks for the layout the answer uses (see
//! `text::prompt`), and the MSE target is the normalised MOS.

use crate::cooloff::CoolOffRow;
use crate::data::{Manifest, MosScale, Rating, Split};
use crate::inputs::{HostVideo, InputError, InputSpec, prepare_example};
use crate::model::position::{TOKEN_TEXT, TOKEN_VIDEO};
use crate::model::{Batch, VideoInput};
use crate::text::chat::{PromptTokens, encode_sft};
use crate::text::{Answer, AnswerOrder, ChatError, Tokenizer};
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

/// One trained answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SftItem {
    /// Manifest row (video, generation prompt, dimension).
    pub row: usize,
    /// The answer text in the item's layout.
    pub answer: String,
    pub rating: Rating,
    /// Normalised MOS in [0, 1]: the target of the score regression.
    pub target: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum SftDataError {
    #[error(transparent)]
    Join(#[from] crate::cooloff::JoinError),
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("tokenising the answer of {id}")]
    Encode { id: String, source: ChatError },
}

/// Cold-start items from the train split, and how many train rows had no
/// rationale.
pub fn cold_start_items(manifest: &Manifest, scale: MosScale) -> (Vec<SftItem>, usize) {
    let mut skipped = 0;
    let mut items = Vec::new();
    for (i, row) in manifest.rows.iter().enumerate() {
        if row.split.is_some_and(|s| s != Split::Train) {
            continue;
        }
        let Some(rationale) = row.rationale.as_ref().filter(|r| !r.trim().is_empty()) else {
            skipped += 1;
            continue;
        };
        let rating = scale.rating(row.mos);
        let answer = Answer {
            rationale: rationale.clone(),
            rating,
        };
        items.push(SftItem {
            row: i,
            answer: answer.render(AnswerOrder::ThinkFirst),
            rating,
            target: scale.normalise(row.mos).clamp(0.0, 1.0),
        });
    }
    (items, skipped)
}

/// Cool-off items: every cool-off row joined to its manifest row
/// ([`crate::cooloff::join`]).
pub fn cooloff_items(
    manifest: &Manifest,
    rows: &[CoolOffRow],
    scale: MosScale,
) -> Result<Vec<SftItem>, SftDataError> {
    Ok(crate::cooloff::join(manifest, rows)?
        .into_iter()
        .map(|j| SftItem {
            row: j.row,
            answer: j.answer,
            rating: j.label,
            target: scale.normalise(j.mos).clamp(0.0, 1.0),
        })
        .collect())
}

/// One tokenised example with its video, on the host.
#[derive(Debug, Clone)]
pub struct SftSample {
    pub video: HostVideo,
    /// Prompt, answer and `<|im_end|>`.
    pub ids: Vec<u32>,
    /// True on the trained tokens (answer and `<|im_end|>`).
    pub target_mask: Vec<bool>,
    /// Index in `ids` of the rating token.
    pub rating_index: usize,
    pub target: f32,
}

/// Decodes the item's video and tokenises prompt + answer.
pub fn prepare_sample(
    manifest: &Manifest,
    item: &SftItem,
    spec: &InputSpec,
    tokenizer: &Tokenizer,
    order: AnswerOrder,
) -> Result<SftSample, SftDataError> {
    let row = &manifest.rows[item.row];
    let example = prepare_example(
        item.row,
        row,
        &manifest.video_path(row),
        spec,
        tokenizer,
        order,
    )?;
    let prompt = PromptTokens {
        video_pad_count: example.video.tokens(),
        ids: example.prompt_ids,
    };
    let encoded =
        encode_sft(tokenizer, &prompt, &item.answer, item.rating, order).map_err(|source| {
            SftDataError::Encode {
                id: row.id.clone(),
                source,
            }
        })?;
    Ok(SftSample {
        video: example.video,
        ids: encoded.ids,
        target_mask: encoded.target_mask,
        rating_index: encoded.rating_index,
        target: item.target,
    })
}

/// A micro-batch as tensors.
///
/// Sequences are left-padded to a common length L, so every answer ends at
/// column L − 1 and the positions that predict answer tokens form one
/// window `[start, L − 1)` of width W: position t predicts token t + 1.
pub struct SftTensors {
    pub batch: Batch,
    /// First predicting position.
    pub start: usize,
    /// `[B, W]` target ids.
    pub targets: Tensor<2, Int>,
    /// `[B, W]` true where the target is trained.
    pub mask: Tensor<2, Bool>,
    /// `[B]` window index of the position that predicts the rating token.
    pub rating_positions: Tensor<1, Int>,
    /// `[B]` normalised MOS.
    pub target_score: Tensor<1>,
    /// Trained tokens in the batch.
    pub answer_tokens: usize,
    /// All tokens in the batch (throughput).
    pub tokens: usize,
}

/// Builds the padded batch of `samples` (at least one).
pub fn sft_tensors(
    samples: &[SftSample],
    pad_id: u32,
    video_pad: u32,
    device: &Device,
) -> SftTensors {
    let len = samples.iter().map(|s| s.ids.len()).max().unwrap_or(0);
    let b = samples.len();
    let mut batch = Batch {
        input_ids: Vec::with_capacity(b),
        attention_mask: Vec::with_capacity(b),
        token_types: Vec::with_capacity(b),
        video: None,
    };
    let mut masks: Vec<Vec<bool>> = Vec::with_capacity(b);
    let mut rating_columns = Vec::with_capacity(b);
    // The first target column of each row, to size the window.
    let mut first_target = len;
    for s in samples {
        let pad = len - s.ids.len();
        let mut ids = vec![i64::from(pad_id); pad];
        ids.extend(s.ids.iter().map(|&id| i64::from(id)));
        let mut attention = vec![false; pad];
        attention.extend(std::iter::repeat_n(true, s.ids.len()));
        let types = ids
            .iter()
            .zip(&attention)
            .map(|(&id, &m)| {
                if m && id == i64::from(video_pad) {
                    TOKEN_VIDEO
                } else {
                    TOKEN_TEXT
                }
            })
            .collect();
        let mut mask = vec![false; pad];
        mask.extend_from_slice(&s.target_mask);
        if let Some(first) = mask.iter().position(|&m| m) {
            first_target = first_target.min(first);
        }
        rating_columns.push(pad + s.rating_index);
        batch.input_ids.push(ids);
        batch.attention_mask.push(attention);
        batch.token_types.push(types);
        masks.push(mask);
    }
    // Position t predicts column t + 1; the earliest target column is
    // predicted from `first_target − 1` (≥ 0: every prompt is non-empty).
    let start = first_target.saturating_sub(1);
    let width = len - 1 - start;
    let mut targets = Vec::with_capacity(b * width);
    let mut target_mask = Vec::with_capacity(b * width);
    for (ids, mask) in batch.input_ids.iter().zip(&masks) {
        targets.extend_from_slice(&ids[start + 1..]);
        target_mask.extend_from_slice(&mask[start + 1..]);
    }
    let answer_tokens = target_mask.iter().filter(|&&m| m).count();
    let positions: Vec<i64> = rating_columns
        .iter()
        .map(|&c| (c - 1 - start) as i64)
        .collect();
    let videos: Vec<VideoInput> = samples.iter().map(|s| s.video.to_input(device)).collect();
    batch.video = VideoInput::concat(&videos);
    let tokens = samples.iter().map(|s| s.ids.len()).sum();
    SftTensors {
        batch,
        start,
        targets: Tensor::from_data(TensorData::new(targets, [b, width]), device),
        mask: Tensor::from_data(TensorData::new(target_mask, [b, width]), device),
        rating_positions: Tensor::from_data(TensorData::new(positions, [b]), device),
        target_score: Tensor::from_data(
            TensorData::new(samples.iter().map(|s| s.target).collect::<Vec<f32>>(), [b]),
            device,
        ),
        answer_tokens,
        tokens,
    }
}
