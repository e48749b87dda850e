//! What every HTTP adapter shares to call its upstream: the credential header (built
//! once, marked sensitive, never echoed), the check that a model name is a safe URL path
//! segment, and the one way a request is sent.

use crate::{
    BoxFuture, HttpClient, ProviderConfig, ProviderError, ProviderErrorKind, UpstreamRequest, UpstreamResponse,
};
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Uri};
use http_body_util::Full;

/// A configuration the adapter cannot serve, naming the provider but never its secret.
pub(crate) fn config_error(cfg: &ProviderConfig, what: &str) -> ProviderError {
    ProviderError::new(ProviderErrorKind::Config, format!("provider {}: {what}", cfg.name))
}

/// The credential header `name: {prefix}{api_key}`, or none when no key is configured.
pub(crate) fn secret_header(
    cfg: &ProviderConfig,
    name: HeaderName,
    prefix: &str,
) -> Result<Option<(HeaderName, HeaderValue)>, ProviderError> {
    if cfg.api_key.is_empty() {
        return Ok(None);
    }
    let mut v = HeaderValue::from_str(&format!("{prefix}{}", cfg.api_key.expose()))
        .map_err(|_| config_error(cfg, "api_key is not a valid header value"))?;
    v.set_sensitive(true);
    Ok(Some((name, v)))
}

/// The base URL without its trailing slashes, refused unless it parses as a URI.
pub(crate) fn base_url(cfg: &ProviderConfig) -> Result<std::sync::Arc<str>, ProviderError> {
    let base: std::sync::Arc<str> = std::sync::Arc::from(cfg.base_url.trim_end_matches('/'));
    if base.parse::<Uri>().is_err() {
        return Err(config_error(cfg, "invalid base_url"));
    }
    Ok(base)
}

/// `{base}/{path}` as a URI.
pub(crate) fn uri(cfg: &ProviderConfig, base: &str, path: &str) -> Result<Uri, ProviderError> {
    format!("{base}/{path}").parse().map_err(|_| config_error(cfg, "invalid base_url"))
}

/// The model name, when it can go in a URL path segment as it is: anything that could
/// change the path (`/`, `?`, `%`, `.` or `..`) is refused before anything is sent.
pub(crate) fn path_segment(model: &str) -> Result<&str, ProviderError> {
    if model.is_empty()
        || model.bytes().all(|b| b == b'.')
        || !model.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:@".contains(&b))
    {
        Err(ProviderError::new(ProviderErrorKind::Config, "upstream model name is not a valid path segment"))
    } else {
        Ok(model)
    }
}

/// The error for an operation the upstream kind does not serve.
pub(crate) fn not_served() -> ProviderError {
    ProviderError::new(ProviderErrorKind::Config, "operation not served by this provider")
}

/// POSTs the request's JSON body to `uri` with the adapter's fixed headers; resolves
/// when the response head arrives. A `uri` error is returned from the future, so every
/// failure reaches the caller the same way.
pub(crate) fn post(
    client: &HttpClient,
    uri: Result<Uri, ProviderError>,
    headers: &[(HeaderName, HeaderValue)],
    req: UpstreamRequest,
) -> BoxFuture<'static, Result<UpstreamResponse, ProviderError>> {
    let mut builder = http::Request::builder()
        .method(Method::POST)
        .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
        .header(ACCEPT, HeaderValue::from_static(if req.stream { "text/event-stream" } else { "application/json" }));
    for (k, v) in headers {
        builder = builder.header(k.clone(), v.clone());
    }
    let client = client.clone();
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
