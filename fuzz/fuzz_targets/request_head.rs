//! Fuzzes the request-head parser every dialect's body goes through
//! (`openai::RequestHead::parse`) and the two byte-level edits made with its result.
//!
//! Invariants: no panic; a parsed head's `model_span` lies inside the body and holds the
//! JSON string that decodes to `model`; splicing another model name in gives a body that
//! parses to the same head with the new name; asking a stream for usage gives a body
//! that still parses and now asks for usage.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tollgate_providers::openai::{RequestHead, request_stream_usage, rewrite_model};

fuzz_target!(|data: &[u8]| {
    let Ok(head) = RequestHead::parse(data) else { return };
    let span = head.model_span.clone();
    assert!(span.start <= span.end && span.end <= data.len(), "span {span:?} outside {} bytes", data.len());
    let decoded: String = serde_json::from_slice(&data[span]).expect("model span is a JSON string");
    assert_eq!(decoded, head.model);
    assert!(!head.model.is_empty());

    let body = Bytes::copy_from_slice(data);
    let renamed = rewrite_model(&body, &head, "fuzz-model\"\\\u{1F600}");
    let again = RequestHead::parse(&renamed).expect("a renamed body still parses");
    assert_eq!(again.model, "fuzz-model\"\\\u{1F600}");
    assert_eq!((again.stream, again.max_output_tokens), (head.stream, head.max_output_tokens));
    assert_eq!((again.include_usage, again.has_stream_options), (head.include_usage, head.has_stream_options));
    assert_eq!(&renamed[..again.model_span.start], &data[..head.model_span.start], "bytes before the model moved");

    let asked = request_stream_usage(&body, &head);
    let after = RequestHead::parse(&asked).expect("a body asked for stream usage still parses");
    assert!(after.include_usage, "stream usage was asked for but the body does not ask");
    assert_eq!(after.model, head.model);
    assert_eq!((after.stream, after.max_output_tokens), (head.stream, head.max_output_tokens));
});
