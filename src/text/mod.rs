//! Text side of the judge: parsing completions (and, on other branches,
//! tokenizer, prompt and chat templates).

pub mod parse;
