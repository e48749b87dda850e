//! Counting tokens when the upstream reports none: a stream the caller abandoned, a
//! stream cut by the upstream, an answer without `usage`.
//!
//! OpenAI-family models are counted with their real tokenizer (tiktoken: `o200k_base`
//! for gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4 and gpt-oss; `cl100k_base` for gpt-4,
//! gpt-3.5 and the text-embedding models). Other providers' tokenizers are not public, so
//! their text is estimated at one token per 3.5 characters, rounded up — on the high side
//! of what Claude and Gemini tokenizers give for English, so an estimate does not
//! undercharge. Non-empty text is never zero tokens.

use tiktoken_rs::CoreBPE;

/// Which counter applies to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tokenizer {
    /// tiktoken `o200k_base`.
    O200k,
    /// tiktoken `cl100k_base`.
    Cl100k,
    /// ceil(characters / 3.5).
    Estimate,
}

/// The tokenizer for an upstream model name (case-insensitive, date suffixes allowed).
pub fn tokenizer_for(model: &str) -> Tokenizer {
    let m = model.to_ascii_lowercase();
    let m = m.rsplit('/').next().unwrap_or(&m);
    const O200K: &[&str] =
        &["gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "gpt-oss", "codex-"];
    const CL100K: &[&str] = &["gpt-4", "gpt-3.5", "text-embedding-3", "text-embedding-ada"];
    if O200K.iter().any(|p| m.starts_with(p)) {
        Tokenizer::O200k
    } else if CL100K.iter().any(|p| m.starts_with(p)) {
        Tokenizer::Cl100k
    } else {
        Tokenizer::Estimate
    }
}

fn bpe(t: Tokenizer) -> Option<&'static CoreBPE> {
    match t {
        Tokenizer::O200k => Some(tiktoken_rs::o200k_base_singleton()),
        Tokenizer::Cl100k => Some(tiktoken_rs::cl100k_base_singleton()),
        Tokenizer::Estimate => None,
    }
}

/// Tokens in `text` for `model`.
pub fn count_tokens(model: &str, text: &str) -> u64 {
    if text.is_empty() {
        return 0;
    }
    match bpe(tokenizer_for(model)) {
        Some(bpe) => (bpe.encode_ordinary(text).len() as u64).max(1),
        None => (text.chars().count() as u64 * 2).div_ceil(7).max(1),
    }
}

/// Loads the tokenizer tables now (they take a moment), so the first estimate on the
/// request path does not pay for it.
pub fn warm() {
    let _ = bpe(Tokenizer::O200k);
    let _ = bpe(Tokenizer::Cl100k);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_map_to_their_tokenizer() {
        for (m, t) in [
            ("gpt-4o-mini-2024-07-18", Tokenizer::O200k),
            ("GPT-5", Tokenizer::O200k),
            ("o3-mini", Tokenizer::O200k),
            ("openai/gpt-4.1", Tokenizer::O200k),
            ("gpt-4-turbo", Tokenizer::Cl100k),
            ("gpt-3.5-turbo", Tokenizer::Cl100k),
            ("text-embedding-3-small", Tokenizer::Cl100k),
            ("claude-sonnet-4-5", Tokenizer::Estimate),
            ("gemini-2.5-flash", Tokenizer::Estimate),
        ] {
            assert_eq!(tokenizer_for(m), t, "{m}");
        }
    }

    #[test]
    fn counts_are_the_real_tokenizers_and_never_zero_for_text() {
        // "hello world" is two tokens in both OpenAI encodings.
        assert_eq!(count_tokens("gpt-4o", "hello world"), 2);
        assert_eq!(count_tokens("gpt-4", "hello world"), 2);
        assert_eq!(count_tokens("gpt-4o", ""), 0);
        // 7 characters → 2 estimated tokens; 1 character → 1.
        assert_eq!(count_tokens("claude-x", "abcdefg"), 2);
        assert_eq!(count_tokens("claude-x", "a"), 1);
        assert_eq!(count_tokens("gemini-x", &"word ".repeat(700)), 1000);
    }
}
