//! The fake OpenAI upstream of `cargo xtask bench`, run as its own process
//! (`xtask fake-upstream --port N`): fixed bytes, no JSON parsing, HTTP/1.1 keep-alive,
//! one current-thread runtime so it uses at most one core.

use anyhow::{Context, anyhow};
use bytes::Bytes;
use http::{Request, Response, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

/// A chat completion with usage (12 prompt + 5 completion tokens).
const COMPLETION: &str = r#"{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini-2024-07-18","choices":[{"index":0,"message":{"role":"assistant","content":"Hello from the bench upstream."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":5,"total_tokens":17}}"#;

/// An SSE chat stream ending with a usage-only chunk and `[DONE]`.
const STREAM: &str = "data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"Hel\"}}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"},\"finish_reason\":\"stop\"}]}\n\n\
data: {\"id\":\"c1\",\"object\":\"chat.completion.chunk\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n\
data: [DONE]\n\n";

/// Whether a request body asks for a stream (`"stream":true`, with or without a space).
pub(crate) fn wants_stream(body: &[u8]) -> bool {
    let has = |n: &[u8]| body.windows(n.len()).any(|w| w == n);
    has(b"\"stream\":true") || has(b"\"stream\": true")
}

async fn answer(req: Request<Incoming>) -> Result<Response<Full<Bytes>>, hyper::Error> {
    let body = req.into_body().collect().await?.to_bytes();
    let (ct, bytes) = if wants_stream(&body) {
        ("text/event-stream", STREAM.as_bytes())
    } else {
        ("application/json", COMPLETION.as_bytes())
    };
    let mut r = Response::new(Full::new(Bytes::from_static(bytes)));
    r.headers_mut().insert(header::CONTENT_TYPE, http::HeaderValue::from_static(ct));
    Ok(r)
}

/// `xtask fake-upstream --port N`: serves until killed.
pub(crate) fn run(args: &[String]) -> anyhow::Result<()> {
    let port: u16 = match args {
        [flag, p] if flag == "--port" => p.parse().with_context(|| format!("bad port {p:?}"))?,
        _ => return Err(anyhow!("usage: xtask fake-upstream --port N")),
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
        loop {
            let (s, _) = listener.accept().await?;
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), service_fn(answer))
                    .await;
            });
        }
    })
}

#[cfg(test)]
mod tests {
    use super::wants_stream;

    #[test]
    fn stream_flag_is_recognised_in_both_spellings_only_when_true() {
        assert!(wants_stream(br#"{"model":"m","stream":true}"#));
        assert!(wants_stream(br#"{"model":"m", "stream": true}"#));
        assert!(!wants_stream(br#"{"model":"m","stream":false}"#));
        assert!(!wants_stream(br#"{"model":"m"}"#));
    }
}
