//! OpenAI: api.openai.com and any OpenAI-compatible base URL. Callers and these upstreams
//! speak the same dialect, so a request is only spliced (see [`crate::head`], re-exported
//! here where callers have always found it) and answers are forwarded as they come.
//!
//! OpenAI chat is also the hub the other dialects translate through, so its shapes live
//! here: usage readers and the `usage` object ([`response`](self)), and the chunk writer
//! of translated streams.

mod adapter;
pub(crate) mod response;
pub(crate) mod stream;

use crate::registry::Spec;
use crate::{Dialect, HttpClient, Provider, ProviderConfig, ProviderError};
use std::sync::Arc;

pub use crate::head::{
    CapField, CapSpan, HeadError, MAX_JSON_DEPTH, OutputCap, RequestHead, request_stream_usage, rewrite_model,
    set_output_cap, splice_request,
};
pub use adapter::OpenAiProvider;
pub use response::{extract_usage, usage_from_value};

/// api.openai.com: OpenAI chat, Responses and embeddings.
pub(crate) const OPENAI: Spec = Spec {
    chat_dialect: Dialect::OpenAiChat,
    default_base_url: Some("https://api.openai.com/v1"),
    responses_and_embeddings: true,
    chat_cap_field: CapField::MaxCompletionTokens,
    build,
};

/// A server speaking the OpenAI API at its own base URL (which must be configured).
pub(crate) const COMPATIBLE: Spec = Spec {
    chat_dialect: Dialect::OpenAiChat,
    default_base_url: None,
    responses_and_embeddings: true,
    chat_cap_field: CapField::MaxTokens,
    build,
};

fn build(cfg: Arc<ProviderConfig>, client: &HttpClient) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(OpenAiProvider::new(cfg, client.clone())?))
}
