//! Text side of the judge: the tokenizer, the prompt template, the chat
//! template with its video placeholders (and, on the `algo` branch, the
//! parser of completions).

pub mod chat;
pub mod prompt;
pub mod tiny_tokenizer;
pub mod tokenizer;

pub use chat::{ChatError, ChatTemplate, PromptTokens, SftExample, VideoGroup};
pub use prompt::AnswerOrder;
pub use tokenizer::{RatingSite, RatingTokens, SpecialTokens, Tokenizer, TokenizerError};
