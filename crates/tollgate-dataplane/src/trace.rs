//! The request span and the OpenTelemetry attributes recorded on it.
//!
//! Every upstream-bound request runs in one `request` span (its id and endpoint are on
//! every log line of the request). When spans are exported (`Config::trace_attributes`)
//! the span also gets the GenAI semantic-convention attributes — operation, provider
//! system, requested and served model, token usage — and the HTTP status. Never a
//! secret, a prompt or a completion: only names and numbers the gateway already counts
//! on `/metrics`.

use crate::proxy::{Endpoint, Seen};
use tollgate_providers::ProviderKind;
use tracing::Span;
use tracing::field::Empty;

/// The span a request runs in. The GenAI fields are declared empty here (a span's
/// fields are fixed when it is created) and only filled when exported.
pub(crate) fn request_span(request_id: &str, endpoint: Endpoint) -> Span {
    tracing::info_span!(
        "request",
        request_id,
        endpoint = endpoint.label(),
        otel.name = Empty,
        otel.kind = Empty,
        otel.status_code = Empty,
        tollgate.request_id = Empty,
        tollgate.client_request_id = Empty,
        gen_ai.operation.name = Empty,
        gen_ai.system = Empty,
        gen_ai.request.model = Empty,
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Records what the request turned out to be, once its response head is known.
pub(crate) fn record_outcome(
    span: &Span,
    request_id: &str,
    client_request_id: Option<&str>,
    endpoint: Endpoint,
    seen: &Seen,
    status: u16,
    error: Option<&'static str>,
) {
    let op = operation_name(endpoint);
    span.record("otel.kind", "server");
    span.record("tollgate.request_id", request_id);
    if let Some(id) = client_request_id {
        span.record("tollgate.client_request_id", id);
    }
    span.record("gen_ai.operation.name", op);
    match seen.model.as_deref() {
        // The GenAI span name: "{operation} {model}".
        Some(model) => {
            span.record("otel.name", format_args!("{op} {model}"));
            span.record("gen_ai.request.model", model);
        }
        None => {
            span.record("otel.name", op);
        }
    }
    if let Some(system) = seen.system {
        span.record("gen_ai.system", system);
    }
    if let Some(served) = seen.served_model.as_deref() {
        span.record("gen_ai.response.model", served);
    }
    span.record("http.response.status_code", u64::from(status));
    if let Some(e) = error {
        span.record("error.type", e);
    }
    // Server spans: a refusal (4xx) is the caller's problem, not a failed span.
    if status >= 500 {
        span.record("otel.status_code", "error");
    }
}

/// Records the tokens a request was charged for on the current (request) span.
pub(crate) fn record_usage(input_tokens: u64, output_tokens: u64) {
    let span = Span::current();
    span.record("gen_ai.usage.input_tokens", input_tokens);
    span.record("gen_ai.usage.output_tokens", output_tokens);
}

/// `gen_ai.operation.name` of an endpoint.
fn operation_name(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Embeddings => "embeddings",
        Endpoint::Chat | Endpoint::Messages | Endpoint::Responses => "chat",
    }
}

/// `gen_ai.system` of a provider kind: the well-known values of the semantic
/// conventions where there is one, our kind's name otherwise.
pub(crate) fn gen_ai_system(kind: ProviderKind) -> &'static str {
    match kind {
        ProviderKind::OpenAi => "openai",
        ProviderKind::Anthropic => "anthropic",
        ProviderKind::Gemini => "gcp.gemini",
        ProviderKind::AzureOpenAi => "az.ai.openai",
        other => other.as_str(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing_subscriber::layer::{Context, SubscriberExt as _};

    /// A layer that keeps every field recorded on any span.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<(String, String)>>>);

    impl Visit for Recorder {
        fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
            self.0.lock().unwrap().push((field.name().to_owned(), format!("{value:?}")));
        }
        fn record_str(&mut self, field: &Field, value: &str) {
            self.0.lock().unwrap().push((field.name().to_owned(), value.to_owned()));
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Recorder {
        fn on_new_span(&self, attrs: &Attributes<'_>, _: &Id, _: Context<'_, S>) {
            attrs.record(&mut self.clone());
        }
        fn on_record(&self, _: &Id, values: &Record<'_>, _: Context<'_, S>) {
            values.record(&mut self.clone());
        }
    }

    #[test]
    fn the_request_span_carries_the_genai_attributes_and_no_key() {
        let rec = Recorder::default();
        let subscriber = tracing_subscriber::registry().with(rec.clone());
        tracing::subscriber::with_default(subscriber, || {
            let span = request_span("req_1", Endpoint::Chat);
            let seen = Seen {
                model: Some(Arc::from("gpt-4o")),
                provider: Some(Arc::from("primary")),
                key: Some(tollgate_core::KeyId::new("key_1")),
                served_model: Some(Arc::from("gpt-4o-2024-08-06")),
                system: Some(gen_ai_system(ProviderKind::OpenAi)),
                ..Seen::default()
            };
            record_outcome(&span, "req_1", Some("caller-9"), Endpoint::Chat, &seen, 200, None);
            span.in_scope(|| record_usage(12, 5));
        });
        let fields: std::collections::HashMap<String, String> = rec.0.lock().unwrap().iter().cloned().collect();
        let get = |k: &str| fields.get(k).map(String::as_str);
        assert_eq!(get("gen_ai.request.model"), Some("gpt-4o"));
        assert_eq!(get("gen_ai.response.model"), Some("gpt-4o-2024-08-06"));
        assert_eq!(get("gen_ai.system"), Some("openai"));
        assert_eq!(get("gen_ai.operation.name"), Some("chat"));
        assert_eq!(get("gen_ai.usage.input_tokens"), Some("12"));
        assert_eq!(get("gen_ai.usage.output_tokens"), Some("5"));
        assert_eq!(get("http.response.status_code"), Some("200"));
        assert_eq!(get("tollgate.request_id"), Some("req_1"));
        assert_eq!(get("tollgate.client_request_id"), Some("caller-9"));
        assert_eq!(get("otel.name"), Some("chat gpt-4o"));
        assert!(!fields.contains_key("otel.status_code"), "a 200 is not an error");
        assert!(fields.values().all(|v| !v.contains("key_1")), "the key is not a span attribute: {fields:?}");
    }
}
