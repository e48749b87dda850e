//! Helpers shared by the fuzz targets: how the first input bytes choose a dialect, how
//! the rest is cut into network reads, and the checks several targets make.
//!
//! Inputs of the multi-dialect targets are `[selector bytes] ++ body`, so one corpus
//! covers every dialect pair and the seeds say which pair they exercise.

use tollgate_providers::Dialect;

/// Every wire dialect, indexed by a selector byte (modulo the length).
pub const DIALECTS: [Dialect; 5] = [
    Dialect::OpenAiChat,
    Dialect::AnthropicMessages,
    Dialect::Gemini,
    Dialect::OpenAiResponses,
    Dialect::OpenAiEmbeddings,
];

/// The dialect a selector byte names.
pub fn dialect(b: u8) -> Dialect {
    DIALECTS[usize::from(b) % DIALECTS.len()]
}

/// Splits off the first byte (the selector) of `data`; `None` when empty.
pub fn split_selector(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(s, rest)| (*s, rest))
}

/// Cuts `body` into reads of the sizes `seed` names (1 to 64 bytes each, cycling), so a
/// framer meets every boundary: inside a field name, between `\r` and `\n`, inside a
/// UTF-8 sequence.
pub fn chunks(body: &[u8], seed: u8) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut state = u32::from(seed) | 1;
    while !rest.is_empty() {
        // xorshift: cheap, deterministic, varied sizes.
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        let n = (state % 64) as usize + 1;
        let (head, tail) = rest.split_at(n.min(rest.len()));
        out.push(head);
        rest = tail;
    }
    out
}

/// Panics unless `bytes` is one JSON value (what every translation must emit).
pub fn assert_json(what: &str, bytes: &[u8]) {
    if let Err(e) = serde_json::from_slice::<serde_json::Value>(bytes) {
        panic!("{what} emitted invalid JSON ({e}): {:?}", String::from_utf8_lossy(bytes));
    }
}
