//! vgrpo's chat encoder against the official Qwen chat templates, rendered
//! by Jinja and expanded as transformers' processors do
//! (`tests/fixtures/chat/cases.json`, written by
//! `tests/fixtures/chat/render_chat_fixtures.py`).

use serde::Deserialize;
use std::path::Path;
use vgrpo::data::{Dimension, Rating};
use vgrpo::text::chat::{encode_judge_prompt, encode_prompt, encode_sft, render_prompt_text};
use vgrpo::text::prompt::user_prompt;
use vgrpo::text::{AnswerOrder, ChatError, ChatTemplate, RatingSite, Tokenizer, VideoGroup};

#[derive(Deserialize)]
struct Case {
    name: String,
    template: String,
    dimension: Dimension,
    generation_prompt: String,
    order: AnswerOrder,
    user_text: String,
    groups: Vec<VideoGroup>,
    answer: String,
    rating: String,
    prompt_text: String,
    prompt_ids_qwen3: Vec<u32>,
    full_ids_qwen3: Vec<u32>,
    prompt_ids_tiny: Vec<u32>,
    full_ids_tiny: Vec<u32>,
}

fn fixture_path(rel: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn cases() -> Vec<Case> {
    let text = std::fs::read_to_string(fixture_path("tests/fixtures/chat/cases.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn template(case: &Case) -> ChatTemplate {
    ChatTemplate::from_model_type(&case.template).unwrap()
}

fn tokenizers() -> [(&'static str, Tokenizer); 2] {
    let qwen3 = Tokenizer::from_file(&fixture_path(
        "tests/fixtures/qwen3_tokenizer/tokenizer.json",
    ))
    .unwrap();
    [("qwen3", qwen3), ("tiny", Tokenizer::tiny().unwrap())]
}

#[test]
fn fixture_user_texts_are_the_current_prompts() {
    for case in cases() {
        let text = user_prompt(case.dimension, &case.generation_prompt, case.order);
        assert_eq!(
            text, case.user_text,
            "{}: the prompt changed; update render_chat_fixtures.py and regenerate cases.json",
            case.name
        );
    }
}

#[test]
fn prompt_text_matches_the_official_template() {
    for case in cases() {
        let text = render_prompt_text(template(&case), &case.groups, &case.user_text).unwrap();
        assert_eq!(text, case.prompt_text, "{}", case.name);
    }
}

#[test]
fn prompt_ids_match_the_official_template() {
    for (name, tokenizer) in tokenizers() {
        for case in cases() {
            let prompt = encode_judge_prompt(
                &tokenizer,
                template(&case),
                &case.groups,
                case.dimension,
                &case.generation_prompt,
                case.order,
            )
            .unwrap();
            let want = if name == "qwen3" {
                &case.prompt_ids_qwen3
            } else {
                &case.prompt_ids_tiny
            };
            assert_eq!(&prompt.ids, want, "{name} {}", case.name);
            let pads = case.groups.iter().map(|g| g.tokens).sum::<usize>();
            assert_eq!(prompt.video_pad_count, pads);
            let video_pad = tokenizer.special().video_pad;
            assert_eq!(
                prompt.ids.iter().filter(|&&id| id == video_pad).count(),
                pads
            );
            // Piecewise encoding equals encoding the whole rendered text.
            assert_eq!(tokenizer.encode(&case.prompt_text).unwrap(), prompt.ids);
        }
    }
}

#[test]
fn sft_ids_match_the_official_template_up_to_the_final_newline() {
    for (name, tokenizer) in tokenizers() {
        let newline = tokenizer.encode("\n").unwrap();
        for case in cases() {
            let rating = Rating::from_word(&case.rating).unwrap();
            let prompt =
                encode_prompt(&tokenizer, template(&case), &case.groups, &case.user_text).unwrap();
            let sft = encode_sft(&tokenizer, &prompt, &case.answer, rating, case.order).unwrap();
            let full = if name == "qwen3" {
                &case.full_ids_qwen3
            } else {
                &case.full_ids_tiny
            };
            // The template closes the turn with "<|im_end|>\n"; the target
            // stops at <|im_end|>.
            assert_eq!(
                &full[full.len() - 1..],
                &newline[..],
                "{name} {}",
                case.name
            );
            assert_eq!(sft.ids, full[..full.len() - 1], "{name} {}", case.name);

            assert_eq!(sft.prompt_len, prompt.ids.len());
            assert_eq!(sft.target_mask.len(), sft.ids.len());
            assert!(sft.target_mask[..sft.prompt_len].iter().all(|&m| !m));
            assert!(sft.target_mask[sft.prompt_len..].iter().all(|&m| m));
            assert_eq!(sft.ids.last(), Some(&tokenizer.special().im_end));

            let site = RatingSite::for_order(case.order);
            assert_eq!(
                sft.ids[sft.rating_index],
                tokenizer.ratings().id(rating, site),
                "{name} {}",
                case.name
            );
            match case.order {
                AnswerOrder::RatingFirst => assert_eq!(sft.rating_index, sft.prompt_len),
                AnswerOrder::ThinkFirst => {
                    assert_eq!(
                        sft.ids[sft.rating_index - 1],
                        tokenizer.special().think_close
                    )
                }
            }
        }
    }
}

#[test]
fn an_answer_without_its_rating_where_the_order_puts_it_is_refused() {
    let tokenizer = Tokenizer::tiny().unwrap();
    let groups = [VideoGroup {
        timestamp_s: 0.5,
        tokens: 2,
    }];
    let prompt = encode_prompt(&tokenizer, ChatTemplate::Qwen3Vl, &groups, "Rate it.").unwrap();
    let bad = [
        // Think-first text under the rating-first order.
        (
            "<think>fine</think>Good",
            Rating::Good,
            AnswerOrder::RatingFirst,
        ),
        // The wrong rating.
        (
            "<think>fine</think>Good",
            Rating::Fair,
            AnswerOrder::ThinkFirst,
        ),
        // A space before the rating: a different token.
        (
            "<think>fine</think> Good",
            Rating::Good,
            AnswerOrder::ThinkFirst,
        ),
        // No think block, nothing after it.
        ("Good", Rating::Good, AnswerOrder::ThinkFirst),
    ];
    for (answer, rating, order) in bad {
        let err = encode_sft(&tokenizer, &prompt, answer, rating, order).unwrap_err();
        assert!(
            matches!(err, ChatError::RatingTokenNotFound { .. }),
            "{answer}: {err:?}"
        );
    }
}

#[test]
fn qwen25_prompt_has_one_vision_block_and_qwen3_one_per_group() {
    let tokenizer = Tokenizer::tiny().unwrap();
    let groups: Vec<VideoGroup> = (0..4)
        .map(|i| VideoGroup {
            timestamp_s: 0.5 + i as f64,
            tokens: 3,
        })
        .collect();
    let start = tokenizer.special().vision_start;
    for (template, blocks) in [(ChatTemplate::Qwen25Vl, 1), (ChatTemplate::Qwen3Vl, 4)] {
        let p = encode_judge_prompt(
            &tokenizer,
            template,
            &groups,
            Dimension::Dynamic,
            "a ball",
            AnswerOrder::ThinkFirst,
        )
        .unwrap();
        assert_eq!(
            p.ids.iter().filter(|&&id| id == start).count(),
            blocks,
            "{template:?}"
        );
        assert_eq!(p.video_pad_count, 12);
    }
}
