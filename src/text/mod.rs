//! Text side of the judge: the tokenizer, the prompt template and the
//! parser of answers (defined together: what the prompt asks for is what the
//! parser accepts), and the chat template with its video placeholders.

pub mod chat;
pub mod parse;
pub mod prompt;
pub mod tiny_tokenizer;
pub mod tokenizer;

pub use chat::{ChatError, ChatTemplate, PromptTokens, SftExample, VideoGroup};
pub use parse::{Answer, FormatViolation, parse_answer};
pub use prompt::AnswerOrder;
pub use tokenizer::{RatingSite, RatingTokens, SpecialTokens, Tokenizer, TokenizerError};
