//! The adapters for upstreams whose URLs or credential headers differ from OpenAI's:
//! Anthropic (`POST {base}/v1/messages`, `x-api-key`, `anthropic-version`), Google
//! Gemini (`POST {base}/v1beta/models/{model}:generateContent`, or
//! `:streamGenerateContent?alt=sse`, `x-goog-api-key`) and Azure OpenAI
//! (`{base}/openai/deployments/{deployment}/...?api-version=V`, `api-key`).
//!
//! Each builds its fixed URIs and credential headers once; credentials travel only in
//! headers marked sensitive, never in a URL or an error message.

use crate::{
    BoxFuture, HttpClient, Operation, Provider, ProviderConfig, ProviderError, ProviderErrorKind, ProviderKind,
    UpstreamRequest, UpstreamResponse,
};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Uri};
use http_body_util::Full;
use std::sync::Arc;

/// The Anthropic Messages API version sent with every request.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";

/// The Azure OpenAI API version used when the provider's `extra.api_version` is unset.
pub const AZURE_API_VERSION: &str = "2024-10-21";

/// How a native adapter finds its URL for a request.
enum Route {
    /// One fixed URI for chat.
    Fixed(Uri),
    /// Gemini: the model (and streaming) are in the path.
    Gemini { base: Arc<str> },
    /// Azure: the deployment is in the path, the API version in the query.
    Azure { base: Arc<str>, version: Arc<str> },
}

/// An Anthropic, Gemini or Azure OpenAI upstream.
pub struct NativeProvider {
    kind: ProviderKind,
    route: Route,
    headers: Vec<(HeaderName, HeaderValue)>,
    client: HttpClient,
}

impl std::fmt::Debug for NativeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeProvider").field("kind", &self.kind).finish_non_exhaustive()
    }
}

fn config_error(cfg: &ProviderConfig, what: &str) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Config, format!("provider {}: {what}", cfg.name))
}

fn secret_header(cfg: &ProviderConfig, name: &'static str) -> Result<Option<(HeaderName, HeaderValue)>, ProviderError> {
    if cfg.api_key.is_empty() {
        return Ok(None);
    }
    let mut v = HeaderValue::from_str(cfg.api_key.expose())
        .map_err(|_| config_error(cfg, "api_key is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(Some((HeaderName::from_static(name), v)))
}

impl NativeProvider {
    /// Prepares the adapter for an Anthropic, Gemini or Azure OpenAI configuration.
    pub fn new(cfg: Arc<ProviderConfig>, client: HttpClient) -> Result<Self, ProviderError> {
        let base: Arc<str> = Arc::from(cfg.base_url.trim_end_matches('/'));
        if base.parse::<Uri>().is_err() {
            return Err(config_error(&cfg, "invalid base_url"));
        }
        let mut headers = Vec::new();
        let route = match cfg.kind {
            ProviderKind::Anthropic => {
                headers.extend(secret_header(&cfg, "x-api-key")?);
                headers
                    .push((HeaderName::from_static("anthropic-version"), HeaderValue::from_static(ANTHROPIC_VERSION)));
                let uri = format!("{base}/v1/messages").parse().map_err(|_| config_error(&cfg, "invalid base_url"))?;
                Route::Fixed(uri)
            }
            ProviderKind::Gemini => {
                headers.extend(secret_header(&cfg, "x-goog-api-key")?);
                Route::Gemini { base }
            }
            ProviderKind::AzureOpenAi => {
                headers.extend(secret_header(&cfg, "api-key")?);
                let version = cfg.extra.get("api_version").and_then(|v| v.as_str()).unwrap_or(AZURE_API_VERSION);
                if !version.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') {
                    return Err(config_error(&cfg, "extra.api_version must be like 2024-10-21"));
                }
                Route::Azure { base, version: Arc::from(version) }
            }
            other => return Err(ProviderError::unsupported(other)),
        };
        Ok(NativeProvider { kind: cfg.kind, route, headers, client })
    }

    /// The URI for one request.
    fn uri(&self, req: &UpstreamRequest) -> Result<Uri, ProviderError> {
        let model = req.upstream_model.as_ref();
        // Gemini model names are often written as resource names (`models/gemini-2.5-pro`).
        let model = match self.route {
            Route::Gemini { .. } => model.strip_prefix("models/").unwrap_or(model),
            _ => model,
        };
        // The model lands in a path segment: refuse anything that could change the path.
        let safe_model = || {
            if model.is_empty()
                || model.bytes().all(|b| b == b'.')
                || !model.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:@".contains(&b))
            {
                Err(ProviderError::new(ProviderErrorKind::Config, "upstream model name is not a valid path segment"))
            } else {
                Ok(model)
            }
        };
        let text = match (&self.route, req.operation) {
            (Route::Fixed(uri), Operation::ChatCompletions) => return Ok(uri.clone()),
            (Route::Gemini { base }, Operation::ChatCompletions) => {
                let model = safe_model()?;
                if req.stream {
                    format!("{base}/v1beta/models/{model}:streamGenerateContent?alt=sse")
                } else {
                    format!("{base}/v1beta/models/{model}:generateContent")
                }
            }
            (Route::Azure { base, version }, op) => {
                let deployment = safe_model()?;
                match op {
                    Operation::ChatCompletions => {
                        format!("{base}/openai/deployments/{deployment}/chat/completions?api-version={version}")
                    }
                    Operation::Embeddings => {
                        format!("{base}/openai/deployments/{deployment}/embeddings?api-version={version}")
                    }
                    Operation::Responses => format!("{base}/openai/v1/responses"),
                }
            }
            _ => return Err(ProviderError::new(ProviderErrorKind::Config, "operation not served by this provider")),
        };
        text.parse().map_err(|_| ProviderError::new(ProviderErrorKind::Config, "could not build the upstream URL"))
    }
}

impl Provider for NativeProvider {
    fn kind(&self) -> ProviderKind {
        self.kind
    }

    fn send(&self, req: UpstreamRequest) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
        let uri = self.uri(&req);
        let mut builder = http::Request::builder()
            .method(Method::POST)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                ACCEPT,
                HeaderValue::from_static(if req.stream { "text/event-stream" } else { "application/json" }),
            );
        for (k, v) in &self.headers {
            builder = builder.header(k.clone(), v.clone());
        }
        let client = self.client.clone();
        Box::pin(async move {
            let request = builder
                .uri(uri?)
                .body(Full::new(req.body))
                .map_err(|e| ProviderError::new(ProviderErrorKind::Config, format!("could not build request: {e}")))?;
            let resp = client.send(request).await?;
            let (parts, body) = resp.into_parts();
            Ok(UpstreamResponse::from_parts(&parts, body))
        })
    }
}
