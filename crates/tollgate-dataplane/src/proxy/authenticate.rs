//! Phase 1, authenticate: the one snapshot the request is served from, the caller's key
//! (from the headers alone), then the capped body within the bodies' memory budget and
//! the request's head. Builds the request context [`Ctx`] every later phase reads.
//!
//! Nobody is read before they are authenticated: an unknown, revoked or expired key is
//! answered without a byte of the body read, so an unauthenticated flood of large
//! bodies costs no memory.

use super::{Endpoint, Identity, Seen, declared_length, read_body};
use crate::offload::{BodyLease, LARGE_BODY};
use crate::snapshot::Snapshot;
use crate::{ApiError, DataPlane};
use bytes::Bytes;
use http::Request;
use hyper::body::Incoming;
use std::sync::Arc;
use std::time::Instant;
use tollgate_core::Timestamp;
use tollgate_keys::VirtualKey;
use tollgate_providers::Dialect;
use tollgate_providers::openai::RequestHead;

/// One request as the phases see it: who asked, for what, from which snapshot. Built by
/// [`authenticate`], read (never changed) by every phase after it.
pub(super) struct Ctx<'d> {
    pub(super) dp: &'d DataPlane,
    /// Our id (the ledger's key) and the caller's, and whether the caller is still there.
    pub(super) identity: &'d Identity<'d>,
    /// Everything the request needs comes from this one snapshot, held (a reference
    /// count) until dispatch ends: the routing plan borrows its breakers and policy.
    pub(super) snap: Arc<Snapshot>,
    pub(super) endpoint: Endpoint,
    /// The dialect the caller speaks.
    pub(super) caller: Dialect,
    pub(super) started: Instant,
    pub(super) now: Timestamp,
    /// The caller's request body, as read.
    pub(super) body: Bytes,
    /// The body's share of the bodies' memory budget: a stream that keeps the body (for
    /// a tokenizer count) keeps a clone, so the share is given back when the request ends.
    pub(super) body_lease: BodyLease,
    pub(super) key: Arc<VirtualKey>,
    pub(super) head: RequestHead,
    /// The caller asked for a stream (embeddings never stream).
    pub(super) stream: bool,
}

/// Takes the snapshot, authenticates the presented key, reads the capped body and
/// parses the request's head: in that order, so a declared over-size body is 413 before
/// anything else, an unknown key is 401 before a byte of the body is read, and a body
/// over the memory budget is 503 `overloaded` before it is buffered.
pub(super) async fn authenticate<'d>(
    dp: &'d DataPlane,
    req: Request<Incoming>,
    endpoint: Endpoint,
    identity: &'d Identity<'d>,
    seen: &mut Seen,
) -> Result<Ctx<'d>, ApiError> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let limit = dp.config.max_body_bytes;
    if declared_length(&parts.headers).is_some_and(|n| n > limit as u64) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    // The listener's body deadline and minimum rate apply to whatever is read below.
    let body = tollgate_edge::GuardedBody::from_extensions(body, &parts.extensions);
    let caller = endpoint.dialect();
    let snap = dp.snapshot_arc();
    if !snap.loaded {
        return Err(ApiError::NotReady);
    }
    let key =
        snap.keys.authenticate(&snap.hasher, crate::server::presented_key(&parts.headers), Timestamp::now())?.clone();
    seen.key = Some(key.id.clone());
    if dp.metrics.principal_labels() {
        seen.principal = key.principal.clone();
    }
    let (body, body_lease) = read_body(&parts.headers, body, limit, &dp.bodies).await?;
    // The body may have taken a while to arrive: the request's time starts now.
    let now = Timestamp::now();
    let head = parse_head(dp, &body).await?;
    let stream = head.stream && endpoint != Endpoint::Embeddings;
    Ok(Ctx { dp, identity, snap, endpoint, caller, started, now, body, body_lease, key, head, stream })
}

/// The request's head; a large body is parsed on the blocking pool, off the runtime.
async fn parse_head(dp: &DataPlane, body: &Bytes) -> Result<RequestHead, ApiError> {
    if body.len() < LARGE_BODY {
        return Ok(RequestHead::parse(body)?);
    }
    let owned = body.clone();
    match dp.offload.run(move || RequestHead::parse(&owned)).await {
        Ok(head) => Ok(head?),
        Err(e) => {
            tracing::error!(error = %e, "parsing a request head failed");
            Err(ApiError::Internal)
        }
    }
}
