//! Counting tokens when the upstream reports none: a stream the caller abandoned, a
//! stream cut by the upstream, an answer without `usage`.
//!
//! OpenAI-family models are counted with their real tokenizer (tiktoken: `o200k_base`
//! for gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1/o3/o4 and gpt-oss; `cl100k_base` for gpt-4,
//! gpt-3.5 and the text-embedding models). Other providers' tokenizers are not public, so
//! their text is estimated at one token per 3.5 characters, rounded up — on the high side
//! of what Claude and Gemini tokenizers give for English, so an estimate does not
//! undercharge. Non-empty text is never zero tokens.
//!
//! [`estimate_prompt_tokens`] estimates a whole request body's prompt: the text of its
//! messages (OpenAI chat, Anthropic messages, OpenAI responses, embeddings input, Gemini
//! contents), tool definitions and tool-call arguments, plus OpenAI's documented framing
//! overhead of 3 tokens per message and 3 to prime the reply. Each image counts 85 tokens
//! (OpenAI's low-detail base; a high-detail image costs more, which only the upstream
//! can know). A body that is not JSON, or has none of these fields, is counted whole.
//! The tables are built once, lazily ([`warm`] builds them at start-up).

use serde_json::{Map, Value};
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

/// OpenAI's per-message framing (`<|start|>role ... <|end|>`).
const TOKENS_PER_MESSAGE: u64 = 3;
/// OpenAI's priming of the assistant reply.
const TOKENS_REPLY_PRIMING: u64 = 3;
/// One image, at the lowest rate any provider bills for it.
const TOKENS_PER_IMAGE: u64 = 85;

/// Fields holding the prompt, in every dialect the gateway meets.
const PROMPT_FIELDS: &[&str] =
    &["messages", "system", "input", "prompt", "instructions", "contents", "systemInstruction", "system_instruction"];
/// Fields whose whole JSON the upstream bills as prompt text.
const SCHEMA_FIELDS: &[&str] = &["tools", "functions", "response_format", "tool_choice"];
/// Keys inside a prompt that are structure or binary payloads, not text.
const SKIP_KEYS: &[&str] = &[
    "type",
    "role",
    "id",
    "cache_control",
    "tool_call_id",
    "tool_use_id",
    "detail",
    "media_type",
    "mime_type",
    "mimeType",
    "source",
    "url",
    "data",
    "file_id",
];

fn is_image(o: &Map<String, Value>) -> bool {
    matches!(o.get("type").and_then(Value::as_str), Some("image" | "image_url" | "input_image"))
        || ["image_url", "inline_data", "inlineData", "file_data", "fileData"].iter().any(|k| o.contains_key(*k))
}

/// Appends the text leaves of `v` to `text`; counts images in `images`.
fn collect(v: &Value, text: &mut String, images: &mut u64) {
    match v {
        Value::String(s) => {
            text.push_str(s);
            text.push('\n');
        }
        Value::Array(items) => items.iter().for_each(|x| collect(x, text, images)),
        Value::Object(o) if is_image(o) => *images += 1,
        Value::Object(o) => {
            for (k, x) in o {
                if !SKIP_KEYS.contains(&k.as_str()) {
                    collect(x, text, images);
                }
            }
        }
        Value::Null | Value::Bool(_) | Value::Number(_) => {}
    }
}

/// Prompt tokens of a request `body` for `model`, estimated when the upstream reports
/// no usage; see the module docs. Never zero for a non-empty body.
pub fn estimate_prompt_tokens(model: &str, body: &[u8]) -> u64 {
    if body.is_empty() {
        return 0;
    }
    let whole = || count_tokens(model, &String::from_utf8_lossy(body)).max(1);
    let Ok(Value::Object(req)) = serde_json::from_slice::<Value>(body) else {
        return whole();
    };
    let mut text = String::new();
    let mut images = 0;
    let mut framing = 0;
    let mut found = false;
    for field in PROMPT_FIELDS {
        if let Some(v) = req.get(*field) {
            found = true;
            collect(v, &mut text, &mut images);
            if *field == "messages"
                && let Value::Array(messages) = v
            {
                framing += TOKENS_PER_MESSAGE * messages.len() as u64 + TOKENS_REPLY_PRIMING;
            }
        }
    }
    if !found {
        return whole();
    }
    for field in SCHEMA_FIELDS {
        if let Some(v) = req.get(*field).filter(|v| !v.is_null()) {
            text.push_str(&v.to_string());
            text.push('\n');
        }
    }
    (count_tokens(model, &text) + framing + images * TOKENS_PER_IMAGE).max(1)
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

    #[test]
    fn a_chat_prompt_counts_its_text_framing_and_tools_not_its_json() {
        let body = br#"{"model":"gpt-4o","max_tokens":50,"stream":true,
            "messages":[{"role":"system","content":"hello world"},
                        {"role":"user","content":[{"type":"text","text":"hello world"},
                          {"type":"image_url","image_url":{"url":"data:image/png;base64,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}]}]}"#;
        // "hello world\n" is 3 tokens in o200k; two of them, 2 messages × 3 + 3, one image.
        let text = count_tokens("gpt-4o", "hello world\nhello world\n");
        assert_eq!(estimate_prompt_tokens("gpt-4o", body), text + 9 + 85);
        // Tools are billed as prompt: adding one adds tokens.
        let with_tools = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],
            "tools":[{"type":"function","function":{"name":"get_weather","description":"Weather in a city"}}]}"#;
        let without = br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#;
        assert!(estimate_prompt_tokens("gpt-4o", with_tools) > estimate_prompt_tokens("gpt-4o", without) + 5);
    }

    #[test]
    fn anthropic_responses_and_embedding_bodies_are_read_too() {
        let anthropic = br#"{"model":"claude-sonnet-4-5","max_tokens":10,
            "system":[{"type":"text","text":"abcdefg","cache_control":{"type":"ephemeral"}}],
            "messages":[{"role":"user","content":[{"type":"text","text":"abcdefg"},
              {"type":"image","source":{"type":"base64","media_type":"image/png","data":"QUFBQUFBQUFBQUFBQUFB"}}]}]}"#;
        // 2 × "abcdefg\n" = 16 chars → 5 estimated tokens; 1 message framing; 1 image.
        assert_eq!(estimate_prompt_tokens("claude-sonnet-4-5", anthropic), 5 + 6 + 85);
        let responses = br#"{"model":"gpt-4o","instructions":"hello world","input":"hello world"}"#;
        assert_eq!(estimate_prompt_tokens("gpt-4o", responses), count_tokens("gpt-4o", "hello world\nhello world\n"));
        let embeddings = br#"{"model":"text-embedding-3-small","input":["hello world","hello world"]}"#;
        assert_eq!(
            estimate_prompt_tokens("text-embedding-3-small", embeddings),
            count_tokens("text-embedding-3-small", "hello world\nhello world\n")
        );
    }

    #[test]
    fn hostile_or_unknown_bodies_fall_back_to_counting_everything() {
        assert_eq!(estimate_prompt_tokens("gpt-4o", b""), 0);
        for body in [&b"not json at all"[..], b"[1,2,3]", b"{\"model\":\"x\"}", b"\xff\xfe{", b"{}"] {
            let want = count_tokens("gpt-4o", &String::from_utf8_lossy(body)).max(1);
            assert_eq!(estimate_prompt_tokens("gpt-4o", body), want, "{:?}", String::from_utf8_lossy(body));
            assert!(estimate_prompt_tokens("gpt-4o", body) >= 1);
        }
        // Deep nesting is refused by the JSON reader (recursion limit), not a stack overflow.
        let deep = format!("{{\"messages\":{}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        assert!(estimate_prompt_tokens("gpt-4o", deep.as_bytes()) > 0);
        // Empty messages still cost the reply priming.
        assert_eq!(estimate_prompt_tokens("gpt-4o", br#"{"messages":[]}"#), 3);
    }
}
