//! The tokenizer wrapper on Qwen3's real tokenizer (committed fixture, see
//! `tests/fixtures/qwen3_tokenizer/README.md`) and on the embedded tiny one.
//! Expected ids were read off the `tokenizers` Python package on the same
//! file.

use std::path::Path;
use vgrpo::data::Rating;
use vgrpo::text::{RatingSite, SpecialTokens, Tokenizer, TokenizerError};

fn qwen3() -> Tokenizer {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen3_tokenizer/tokenizer.json");
    Tokenizer::from_file(&path).unwrap()
}

#[test]
fn qwen3_special_token_ids() {
    let t = qwen3();
    assert_eq!(
        *t.special(),
        SpecialTokens {
            im_start: 151644,
            im_end: 151645,
            endoftext: 151643,
            vision_start: 151652,
            vision_end: 151653,
            video_pad: 151656,
            image_pad: 151655,
            think_open: 151667,
            think_close: 151668,
        }
    );
    assert_eq!(t.special().stop_ids(), [151645, 151643]);
    assert_eq!(t.vocab_size(), 151669);
}

#[test]
fn qwen3_encodes_a_known_string() {
    let t = qwen3();
    let ids = t.encode("Hello world! <think>x</think>Good").unwrap();
    assert_eq!(ids, [9707, 1879, 0, 220, 151667, 87, 151668, 15216]);
    assert_eq!(
        t.decode(&ids, false).unwrap(),
        "Hello world! <think>x</think>Good"
    );
    // The chat markers are special (dropped by skip_special); the think tags
    // are added but not special, so a decoded rationale keeps them.
    let chat = t
        .encode("<|im_start|>assistant\n<think>ok</think>Fair<|im_end|>")
        .unwrap();
    assert_eq!(
        t.decode(&chat, true).unwrap(),
        "assistant\n<think>ok</think>Fair"
    );
}

#[test]
fn qwen3_rating_words_tokenise_as_single_tokens() {
    let t = qwen3();
    let r = t.ratings();
    // Bad, Poor, Fair, Good, Excellent.
    let bare = [17082, 84103, 60795, 15216, 49655];
    let spaced = [11461, 44673, 14588, 7684, 36766];
    assert_eq!(r.after_think, bare);
    assert_eq!(r.answer_start, bare);
    assert_eq!(r.spaced, spaced);
    assert_eq!(r.single_token, [true; 5]);
    for rating in Rating::ALL {
        let id = r.id(rating, RatingSite::AfterThink);
        assert_eq!(t.token(id).as_deref(), Some(rating.word()));
        let spaced_token = t.token(r.id(rating, RatingSite::Spaced)).unwrap();
        assert_eq!(spaced_token, format!("Ġ{}", rating.word()));
        assert_eq!(r.rating_of(id, RatingSite::AfterThink), Some(rating));
    }
    assert_eq!(r.rating_of(9707, RatingSite::AfterThink), None);
}

#[test]
fn tiny_tokenizer_keeps_qwen_strings_and_single_token_ratings() {
    let t = Tokenizer::tiny().unwrap();
    assert_eq!(t.vocab_size(), 1050);
    let s = t.special();
    // Added tokens follow the 1024 BPE ids in Qwen's order.
    assert_eq!((s.endoftext, s.im_start, s.im_end), (1024, 1025, 1026));
    assert_eq!(
        (s.vision_start, s.vision_end, s.image_pad, s.video_pad),
        (1033, 1034, 1036, 1037)
    );
    assert_eq!((s.think_open, s.think_close), (1048, 1049));
    let r = t.ratings();
    assert_eq!(r.single_token, [true; 5]);
    assert_eq!(r.after_think, r.answer_start);
    for rating in Rating::ALL {
        assert_eq!(t.encode(rating.word()).unwrap().len(), 1, "{rating}");
        assert_eq!(
            t.encode(&format!(" {rating}")).unwrap().len(),
            1,
            "{rating}"
        );
    }
    // Any text encodes (byte-level alphabet) and decodes back.
    let text = "Zebra-like ✓ stripes at 12.5 fps";
    assert_eq!(t.decode(&t.encode(text).unwrap(), false).unwrap(), text);
}

/// A word-level tokenizer.json with the given vocabulary and added tokens;
/// its pre-tokenizer splits on whitespace and punctuation.
fn word_level(vocab: &[&str], added: &[&str]) -> String {
    let vocab_json: Vec<String> = vocab
        .iter()
        .enumerate()
        .map(|(i, w)| format!("{w:?}: {i}"))
        .collect();
    let added_json: Vec<String> = added
        .iter()
        .enumerate()
        .map(|(i, w)| {
            format!(
                r#"{{"id": {}, "content": {w:?}, "single_word": false, "lstrip": false,
                  "rstrip": false, "normalized": false, "special": true}}"#,
                vocab.len() + i
            )
        })
        .collect();
    format!(
        r#"{{"version": "1.0", "truncation": null, "padding": null,
            "added_tokens": [{}], "normalizer": null,
            "pre_tokenizer": {{"type": "BertPreTokenizer"}}, "post_processor": null, "decoder": null,
            "model": {{"type": "WordLevel", "vocab": {{{}}}, "unk_token": "[UNK]"}}}}"#,
        added_json.join(","),
        vocab_json.join(",")
    )
}

const CHAT_TOKENS: [&str; 9] = [
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|video_pad|>",
    "<|image_pad|>",
    "<think>",
    "</think>",
];

#[test]
fn a_missing_special_token_is_named() {
    let json = word_level(&["[UNK]", "assistant"], &CHAT_TOKENS[..7]);
    match Tokenizer::from_bytes(json.as_bytes(), "test") {
        Err(TokenizerError::MissingToken { token, .. }) => assert_eq!(token, "<think>"),
        other => panic!("expected MissingToken, got {other:?}"),
    }
}

#[test]
fn a_special_token_that_is_not_an_added_token_is_refused() {
    // `<think>` is in the vocabulary but not an added token, so text is
    // split at its punctuation and never produces its id.
    let added = [&CHAT_TOKENS[..7], &CHAT_TOKENS[8..]].concat();
    let json = word_level(&["[UNK]", "<think>"], &added);
    match Tokenizer::from_bytes(json.as_bytes(), "test") {
        Err(TokenizerError::NotAtomic { token, id, ids, .. }) => {
            assert_eq!((token, id, ids), ("<think>", 1, vec![0, 0, 0]));
        }
        other => panic!("expected NotAtomic, got {other:?}"),
    }
}

#[test]
fn ratings_sharing_a_first_token_are_refused() {
    // Every rating word is unknown to this vocabulary, so all five become
    // [UNK]: the softmax over "five" tokens would be over one.
    let json = word_level(&["[UNK]", "assistant"], &CHAT_TOKENS);
    match Tokenizer::from_bytes(json.as_bytes(), "test") {
        Err(TokenizerError::SharedRatingToken {
            first, second, id, ..
        }) => {
            assert_eq!((first, second, id), (Rating::Bad, Rating::Poor, 0));
        }
        other => panic!("expected SharedRatingToken, got {other:?}"),
    }
}
