//! Rebuilds `assets/tiny/tokenizer.json` from its recipe
//! (`vgrpo::text::tiny_tokenizer::build_tiny_tokenizer`) and prints how the
//! judge prompt tokenises with it.
//!
//! `cargo run --release --example build_tiny_tokenizer [OUT]`

use anyhow::Context;
use vgrpo::data::Dimension;
use vgrpo::text::Tokenizer;
use vgrpo::text::prompt::{AnswerOrder, user_prompt};
use vgrpo::text::tiny_tokenizer::build_tiny_tokenizer;

fn main() -> anyhow::Result<()> {
    let out = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "assets/tiny/tokenizer.json".to_string());
    let json = build_tiny_tokenizer()?;
    std::fs::write(&out, &json).with_context(|| format!("writing {out}"))?;
    let tokenizer = Tokenizer::from_bytes(json.as_bytes(), &out)?;
    println!(
        "wrote {out}: {} ids ({} bytes)",
        tokenizer.vocab_size(),
        json.len()
    );
    for dimension in Dimension::ALL {
        let text = user_prompt(
            dimension,
            "a red ball moves left over a grey floor",
            AnswerOrder::ThinkFirst,
        );
        let ids = tokenizer.encode(&text)?;
        println!(
            "{dimension} prompt: {} chars, {} tokens",
            text.len(),
            ids.len()
        );
    }
    let sample = "The motion stutters (strong): frames repeat in runs of about 3, so the red ball moves in jerks.";
    let ids = tokenizer.encode(sample)?;
    let pieces: Vec<String> = ids.iter().filter_map(|&id| tokenizer.token(id)).collect();
    println!("{sample:?} -> {} tokens {pieces:?}", ids.len());
    Ok(())
}
