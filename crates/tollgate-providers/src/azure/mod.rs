//! Azure OpenAI: OpenAI's dialect behind per-deployment URLs
//! (`{base}/openai/deployments/{deployment}/...?api-version=V`) and an `api-key` header.
//! Bodies are OpenAI's, so there is nothing to translate: only the adapter lives here.

mod adapter;

use crate::registry::Spec;
use crate::{Dialect, HttpClient, Provider, ProviderConfig, ProviderError};
use std::sync::Arc;

pub use adapter::AZURE_API_VERSION;
pub(crate) use adapter::AzureProvider;

/// Azure OpenAI deployments (the base URL is the resource's, so it must be configured).
pub(crate) const SPEC: Spec = Spec {
    chat_dialect: Dialect::OpenAiChat,
    default_base_url: None,
    responses_and_embeddings: true,
    chat_cap_field: crate::head::CapField::MaxCompletionTokens,
    build,
};

fn build(cfg: Arc<ProviderConfig>, client: &HttpClient) -> Result<Arc<dyn Provider>, ProviderError> {
    Ok(Arc::new(AzureProvider::new(cfg, client.clone())?))
}
