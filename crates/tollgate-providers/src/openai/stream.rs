//! The writer of OpenAI chat chunks, for streams translated from another dialect.

use crate::Usage;
use serde_json::{Value, json};
use std::sync::Arc;

/// Builds OpenAI chat chunks.
pub(crate) struct ChunkWriter {
    pub(crate) id: String,
    created: u64,
    model: Arc<str>,
}

impl ChunkWriter {
    /// A writer whose chunks show `model`, stamped with the time the stream began.
    pub(crate) fn new(model: Arc<str>) -> Self {
        ChunkWriter { id: "chatcmpl-tollgate".into(), created: crate::translate::now_secs(), model }
    }

    pub(crate) fn chunk(&self, delta: Value, finish: Option<&str>) -> Value {
        self.chunk_at(0, delta, finish)
    }

    pub(crate) fn chunk_at(&self, index: u64, delta: Value, finish: Option<&str>) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": &*self.model,
            "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
        })
    }

    pub(crate) fn usage_chunk(&self, u: &Usage) -> Value {
        json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": &*self.model,
            "choices": [],
            "usage": super::response::openai_usage_json(u),
        })
    }
}
