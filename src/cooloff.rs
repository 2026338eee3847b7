//! Cool-off SFT data: the GRPO rollouts that were right, in a shape any SFT
//! tool reads.
//!
//! Every rollout whose answer was well formed (`R_fmt = 1`) and rated the
//! label exactly (under the default `exact` accuracy reward: `R_acc = 1`)
//! becomes one line of
//! `rollouts/<run>/cooloff.jsonl`, reformatted rating-first
//! (`Good<think>…</think>`) so the cool-off stage can read the softmax score
//! at the first answer token (paper §4.2.3). The line uses the
//! LLaMA-Factory / ShareGPT multimodal layout — `messages` with `role` and
//! `content`, a `<video>` placeholder in the user turn, and `videos` — which
//! TRL and LLaMA-Factory load as is, plus provenance for the user and the
//! row's MOS, so an SFT tool can train the score regression (CE + MSE)
//! from this file alone:
//!
//! ```json
//! {"messages":[{"role":"user","content":"<video>Judge its visual quality …"},
//!              {"role":"assistant","content":"Good<think>Sharp frames …</think>"}],
//!  "videos":["data/synth/videos/v0007.mp4"],
//!  "id":"v0007-visual","video":"data/synth/videos/v0007.mp4","dimension":"visual",
//!  "label":"Good","mos":4.11,"reward":1.5,"step":3,"group":12,"sample":5}
//! ```
//!
//! Rows are appended through [`crate::jsonl::JsonlWriter`], whose committed
//! length is checkpointed: a resumed run truncates back to it, so a kill
//! never leaves duplicated or lost rows.
//!
//! This module is the contract between GRPO and the cool-off stage: where
//! the file is ([`path`]), which rollouts qualify ([`qualifies`]), the row
//! format ([`CoolOffRow::of_rollout`]), and how a row joins back to the
//! manifest it was drawn from ([`join`]).

use crate::data::{Dimension, Manifest, ManifestRow, Rating, same_file};
use crate::text::prompt::user_prompt;
use crate::text::{Answer, AnswerOrder};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The cool-off data of GRPO run `run`: `<rollouts_dir>/<run>/cooloff.jsonl`.
pub fn path(rollouts_dir: &Path, run: &str) -> PathBuf {
    rollouts_dir.join(run).join("cooloff.jsonl")
}

/// Whether the cool-off file at `path` holds at least one row.
pub fn has_rows(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// The selection rule: a rollout is cool-off data when its rating was
/// right (`exact`: it equals the label) and its answer well formed
/// (`R_fmt = 1`). It reads the exact-match fact, not R_acc, so the rule is
/// the same whatever `grpo.accuracy_reward` is: a graded R_acc is 1 only
/// for an exact match under `distance` and almost never under `gaussian`
/// (under `exact`, `exact` is `R_acc = 1`).
pub fn qualifies(exact: bool, fmt: f32) -> bool {
    exact && fmt == 1.0
}

/// The manifest row a rollout judged, where its video is, and when.
#[derive(Debug, Clone)]
pub struct Source<'a> {
    pub row: &'a ManifestRow,
    /// The video's path as the manifest resolves it.
    pub video: PathBuf,
    /// GRPO step (1-based).
    pub step: u64,
}

/// How a rollout was judged.
#[derive(Debug, Clone, Copy)]
pub struct Judged<'a> {
    /// The parsed answer (absent when the completion did not parse).
    pub answer: Option<&'a Answer>,
    pub label: Rating,
    /// The rating equals `label` ([`crate::reward::RewardBreakdown::exact`]).
    pub exact: bool,
    pub fmt: f32,
    pub reward: f32,
    pub group: u64,
    pub sample: usize,
}

/// The placeholder the user turn carries where the video goes.
pub const VIDEO_PLACEHOLDER: &str = "<video>";

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    /// `user` or `assistant`.
    pub role: String,
    pub content: String,
}

/// One line of `cooloff.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoolOffRow {
    /// `[user, assistant]`: the judging prompt and the rating-first answer.
    pub messages: Vec<Message>,
    /// The video of the `<video>` placeholder (LLaMA-Factory's key).
    pub videos: Vec<PathBuf>,
    /// Manifest row id.
    pub id: String,
    pub video: PathBuf,
    pub dimension: Dimension,
    /// The MOS-derived rating the rollout matched.
    pub label: Rating,
    /// The manifest row's MOS: the target of the cool-off's score
    /// regression. Absent in files written before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mos: Option<f32>,
    /// The rollout's total reward `R_acc + λ·R_fmt` (1.5 under the default
    /// `exact` form and λ = 0.5; less under a graded form).
    pub reward: f32,
    /// GRPO step that produced it (1-based).
    pub step: u64,
    /// Group index within the run (one group = one video × dimension).
    pub group: u64,
    /// Index of the rollout within its group (0..G).
    pub sample: usize,
}

/// Where a kept rollout came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    pub id: String,
    pub video: PathBuf,
    pub dimension: Dimension,
    pub label: Rating,
    pub mos: f32,
    pub reward: f32,
    pub step: u64,
    pub group: u64,
    pub sample: usize,
}

impl CoolOffRow {
    /// Builds a row from the judging prompt text (without the video
    /// placeholder), the rating-first answer text, and its provenance.
    pub fn new(prompt: &str, answer: String, p: Provenance) -> CoolOffRow {
        CoolOffRow {
            messages: vec![
                Message {
                    role: "user".into(),
                    content: format!("{VIDEO_PLACEHOLDER}{prompt}"),
                },
                Message {
                    role: "assistant".into(),
                    content: answer,
                },
            ],
            videos: vec![p.video.clone()],
            id: p.id,
            video: p.video,
            dimension: p.dimension,
            label: p.label,
            mos: Some(p.mos),
            reward: p.reward,
            step: p.step,
            group: p.group,
            sample: p.sample,
        }
    }

    /// The cool-off row of one judged rollout, rating-first, or `None`
    /// when it does not [`qualifies`].
    pub fn of_rollout(source: Source<'_>, judged: Judged<'_>) -> Option<CoolOffRow> {
        let answer = judged
            .answer
            .filter(|_| qualifies(judged.exact, judged.fmt))?;
        let row = source.row;
        Some(CoolOffRow::new(
            &user_prompt(row.dimension, &row.prompt, AnswerOrder::RatingFirst),
            answer.render(AnswerOrder::RatingFirst),
            Provenance {
                id: row.id.clone(),
                video: source.video,
                dimension: row.dimension,
                label: judged.label,
                mos: row.mos,
                reward: judged.reward,
                step: source.step,
                group: judged.group,
                sample: judged.sample,
            },
        ))
    }

    /// The assistant's answer text.
    pub fn answer(&self) -> Option<&str> {
        self.messages
            .iter()
            .rev()
            .find(|m| m.role == "assistant")
            .map(|m| m.content.as_str())
    }
}

/// A cool-off row joined to its manifest row.
#[derive(Debug, Clone, PartialEq)]
pub struct Joined {
    /// Index of the manifest row (video, generation prompt, dimension).
    pub row: usize,
    /// The rating-first answer.
    pub answer: String,
    pub label: Rating,
    /// The manifest row's MOS.
    pub mos: f32,
}

/// Why a cool-off row does not join its manifest.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error(
        "cool-off row {line} ({id:?}) names no manifest row; was the manifest changed since \
         the GRPO run?"
    )]
    UnknownId { line: usize, id: String },
    #[error(
        "cool-off row {line} ({id:?}) is a rollout of {}, but {id:?} in {} is {}: the cool-off \
         must read the manifest the GRPO run drew from (its grpo.manifest, else data.manifest; \
         set sft.manifest to it)",
        rollout.display(), manifest.display(), row.display()
    )]
    OtherVideo {
        line: usize,
        id: String,
        rollout: PathBuf,
        manifest: PathBuf,
        row: PathBuf,
    },
    #[error(
        "cool-off row {line} ({id:?}) was harvested at MOS {rollout}, but {id:?} in {} has MOS \
         {manifest_mos}: the manifest changed since the GRPO run; rerun GRPO on this manifest",
        manifest.display()
    )]
    OtherMos {
        line: usize,
        id: String,
        rollout: f32,
        manifest: PathBuf,
        manifest_mos: f32,
    },
    #[error("cool-off row {line} ({id:?}) has no assistant message")]
    NoAnswer { line: usize, id: String },
}

/// Joins every cool-off row to the manifest row it judged: by id, checked
/// by video (ids repeat across synthetic sets, which all number from
/// v0000) and by MOS (a row harvested at another MOS means the manifest
/// was edited since; files written before rows recorded their MOS join by
/// id and video alone).
pub fn join(manifest: &Manifest, rows: &[CoolOffRow]) -> Result<Vec<Joined>, JoinError> {
    let by_id: HashMap<&str, usize> = manifest
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| (r.id.as_str(), i))
        .collect();
    rows.iter()
        .enumerate()
        .map(|(i, c)| {
            let (line, id) = (i + 1, c.id.clone());
            let row = *by_id
                .get(c.id.as_str())
                .ok_or_else(|| JoinError::UnknownId {
                    line,
                    id: id.clone(),
                })?;
            let video = manifest.video_path(&manifest.rows[row]);
            if !same_file(&video, &c.video) {
                return Err(JoinError::OtherVideo {
                    line,
                    id,
                    rollout: c.video.clone(),
                    manifest: manifest.path.clone(),
                    row: video,
                });
            }
            let mos = manifest.rows[row].mos;
            // A MOS stored with two decimals survives the f32 round trip
            // through JSON well within this.
            if let Some(harvested) = c.mos.filter(|m| (m - mos).abs() > 1e-4) {
                return Err(JoinError::OtherMos {
                    line,
                    id,
                    rollout: harvested,
                    manifest: manifest.path.clone(),
                    manifest_mos: mos,
                });
            }
            let answer = c.answer().ok_or(JoinError::NoAnswer { line, id })?;
            Ok(Joined {
                row,
                answer: answer.to_string(),
                label: c.label,
                mos,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_has_the_chat_shape_and_provenance() {
        let row = CoolOffRow::new(
            "Judge its visual quality.",
            "Good<think>Sharp.</think>".into(),
            Provenance {
                id: "v1-visual".into(),
                video: "videos/v1.mp4".into(),
                dimension: Dimension::Visual,
                label: Rating::Good,
                mos: 4.11,
                reward: 1.5,
                step: 3,
                group: 12,
                sample: 5,
            },
        );
        let json: serde_json::Value = serde_json::to_value(&row).unwrap();
        assert_eq!(json["messages"][0]["role"], "user");
        assert_eq!(
            json["messages"][0]["content"],
            "<video>Judge its visual quality."
        );
        assert_eq!(json["messages"][1]["content"], "Good<think>Sharp.</think>");
        assert_eq!(json["videos"][0], "videos/v1.mp4");
        assert_eq!(json["dimension"], "visual");
        assert_eq!(json["label"], "Good");
        assert_eq!(json["step"], 3);
        assert_eq!(json["mos"].as_f64().map(|m| m as f32), Some(4.11));
        let back: CoolOffRow = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back.answer(), Some("Good<think>Sharp.</think>"));
        assert_eq!(back, row);
        // Files written before the MOS was recorded still load.
        let mut old = json;
        old.as_object_mut().unwrap().remove("mos");
        let back: CoolOffRow = serde_json::from_value(old).unwrap();
        assert_eq!(back.mos, None);
    }

    #[test]
    fn graded_rewards_select_on_the_exact_match_not_on_r_acc() {
        use crate::reward::{AccuracyReward, RewardConfig, Target, judge_completion};
        let row = ManifestRow {
            id: "v1-visual".into(),
            video: "videos/v1.mp4".into(),
            prompt: "a cat".into(),
            dimension: Dimension::Visual,
            mos: 4.0,
            generator: "g".into(),
            rationale: None,
            split: None,
            clean_mos: None,
        };
        let target = Target::new(row.mos, &Default::default());
        assert_eq!(target.label, Rating::Good);
        let kept = |text: &str, accuracy| {
            let config = RewardConfig {
                accuracy,
                ..RewardConfig::default()
            };
            let judged = judge_completion(text, AnswerOrder::ThinkFirst, &target, &config);
            let source = Source {
                row: &row,
                video: "videos/v1.mp4".into(),
                step: 1,
            };
            let answer = judged.answer.as_ref().ok();
            let row = CoolOffRow::of_rollout(
                source,
                Judged {
                    answer,
                    label: target.label,
                    exact: judged.reward.exact,
                    fmt: judged.reward.fmt,
                    reward: judged.reward.total,
                    group: 0,
                    sample: 0,
                },
            );
            (judged.reward.acc, row.map(|r| r.reward))
        };
        // Under `gaussian` the right rating earns R_acc < 1 off its
        // interval's centre (MOS 4.0, μ = 0.75, Good's centre 0.7:
        // e^−0.125 ≈ 0.88), and is kept all the same.
        let (acc, row) = kept("<think>x</think>Good", AccuracyReward::Gaussian);
        assert!(acc < 1.0, "{acc}");
        assert_eq!(row, Some(acc + 0.5));
        // A near miss earns a share of R_acc and is not kept.
        let (acc, row) = kept("<think>x</think>Excellent", AccuracyReward::Distance);
        assert_eq!((acc, row), (0.75, None));
        let (acc, row) = kept("<think>x</think>Excellent", AccuracyReward::Gaussian);
        assert!(acc > 0.0 && row.is_none(), "{acc}");
        // `exact`: kept iff R_acc = 1, as before.
        assert_eq!(
            kept("<think>x</think>Good", AccuracyReward::Exact),
            (1.0, Some(1.5))
        );
        assert_eq!(
            kept("<think>x</think>Fair", AccuracyReward::Exact),
            (0.0, None)
        );
        // A malformed answer is never kept.
        assert_eq!(kept("Good", AccuracyReward::Distance), (0.0, None));
        assert!(qualifies(true, 1.0));
        assert!(!qualifies(false, 1.0) && !qualifies(true, 0.0));
    }
}
