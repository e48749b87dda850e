//! The Gemini adapter: the model (and whether it streams) is in the URL path, the
//! credential in `x-goog-api-key`.

use crate::upstream::{base_url, not_served, path_segment, post, secret_header};
use crate::{
    BoxFuture, HttpClient, Operation, Provider, ProviderConfig, ProviderError, ProviderErrorKind, ProviderKind,
    UpstreamRequest, UpstreamResponse,
};
use http::{HeaderName, HeaderValue, Uri};
use std::sync::Arc;

/// A Google Gemini upstream.
pub(crate) struct GeminiProvider {
    base: Arc<str>,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
}

impl std::fmt::Debug for GeminiProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeminiProvider").field("base", &self.base).finish_non_exhaustive()
    }
}

impl GeminiProvider {
    /// Prepares the adapter: the credential header is built once.
    pub(crate) fn new(cfg: Arc<ProviderConfig>, client: HttpClient) -> Result<Self, ProviderError> {
        let base = base_url(&cfg)?;
        let headers = secret_header(&cfg, HeaderName::from_static("x-goog-api-key"), "")?.into_iter().collect();
        Ok(GeminiProvider { base, headers, client })
    }

    /// The URI for one request: the model and streaming are in the path.
    fn uri(&self, req: &UpstreamRequest) -> Result<Uri, ProviderError> {
        if req.operation != Operation::ChatCompletions {
            return Err(not_served());
        }
        let model = req.upstream_model.as_ref();
        // Gemini model names are often written as resource names (`models/gemini-2.5-pro`).
        let model = path_segment(model.strip_prefix("models/").unwrap_or(model))?;
        let base = &self.base;
        let text = if req.stream {
            format!("{base}/v1beta/models/{model}:streamGenerateContent?alt=sse")
        } else {
            format!("{base}/v1beta/models/{model}:generateContent")
        };
        text.parse().map_err(|_| ProviderError::new(ProviderErrorKind::Config, "could not build the upstream URL"))
    }
}

impl Provider for GeminiProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Gemini
    }

    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
        let uri = self.uri(&req);
        post(&self.client, uri, &self.headers, req)
    }
}
