//! Phase 1, authenticate: the capped body, the one snapshot the request is served from,
//! the caller's key and the request's head. Builds the request context [`Ctx`] every
//! later phase reads.

use super::{Endpoint, Identity, Seen, read_body};
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
    pub(super) key: Arc<VirtualKey>,
    pub(super) head: RequestHead,
    /// The caller asked for a stream (embeddings never stream).
    pub(super) stream: bool,
}

/// Reads the capped body, takes the snapshot, authenticates the presented key and parses
/// the request's head: in that order, so an over-size body is 413 before anything else
/// and an unknown key is 401 before the body's JSON is judged.
pub(super) async fn authenticate<'d>(
    dp: &'d DataPlane,
    req: Request<Incoming>,
    endpoint: Endpoint,
    identity: &'d Identity<'d>,
    seen: &mut Seen,
) -> Result<Ctx<'d>, ApiError> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let body = tollgate_edge::GuardedBody::from_extensions(body, &parts.extensions);
    let body = read_body(&parts.headers, body, dp.config.max_body_bytes).await?;
    let now = Timestamp::now();
    let caller = endpoint.dialect();
    let snap = dp.snapshot_arc();
    if !snap.loaded {
        return Err(ApiError::NotReady);
    }
    let key = snap.keys.authenticate(&snap.hasher, crate::server::presented_key(&parts.headers), now)?.clone();
    seen.key = Some(key.id.clone());
    if dp.metrics.principal_labels() {
        seen.principal = key.principal.clone();
    }
    let head = RequestHead::parse(&body)?;
    let stream = head.stream && endpoint != Endpoint::Embeddings;
    Ok(Ctx { dp, identity, snap, endpoint, caller, started, now, body, key, head, stream })
}
