//! `ConfigService.Watch` with changes: a gateway at a revision the control plane still
//! has history for receives only what changed after it; one with nothing, too far
//! behind or ahead receives the full snapshot first; then one change per revision.

use crate::budgets::tenancy;
use crate::grpc::authed;
use crate::{ADMIN, Cp};
use http::{Method, StatusCode as S};
use serde_json::json;
use std::time::Duration;
use tollgate_proto::v1;
use tollgate_proto::v1::config_service_client::ConfigServiceClient;
use tonic::Code;
use tonic::Streaming;

async fn watch(cp: &Cp, since_revision: i64) -> Streaming<v1::WatchResponse> {
    let mut client = ConfigServiceClient::connect(cp.grpc.clone()).await.unwrap();
    let req = authed(v1::WatchRequest { since_revision, accept_changes: true }, ADMIN);
    client.watch(req).await.unwrap().into_inner()
}

async fn next(stream: &mut Streaming<v1::WatchResponse>) -> v1::WatchResponse {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("a message within 10 s")
        .unwrap()
        .expect("the stream stays open")
}

/// The next message, which must be a change; its revision matches the message's.
async fn next_change(stream: &mut Streaming<v1::WatchResponse>) -> v1::ConfigChange {
    let msg = next(stream).await;
    assert!(msg.snapshot.is_none(), "a change, not a snapshot (revision {})", msg.revision);
    let change = msg.change.expect("a change");
    assert_eq!(change.revision, msg.revision);
    change
}

/// Changes until the one that reaches `revision`, in order and unbroken from `from`.
async fn changes_until(stream: &mut Streaming<v1::WatchResponse>, from: i64, revision: i64) -> Vec<v1::ConfigChange> {
    let mut at = from;
    let mut out = Vec::new();
    while at < revision {
        let c = next_change(stream).await;
        assert_eq!(c.from_revision, at, "changes arrive in order, each from the revision before");
        at = c.revision;
        out.push(c);
    }
    out
}

#[tokio::test]
async fn a_gateway_at_a_recent_revision_gets_only_the_changes_after_it() {
    let cp = Cp::start().await;
    let t = tenancy(&cp).await;
    let start = cp.revision().await;
    cp.snapshot_at(start).await;
    let mut from_start = watch(&cp, start).await;

    let minted = cp.expect(Method::POST, "/api/v1/keys", Some(json!({"project": "checkout"})), S::CREATED).await;
    let minted = minted["id"].as_str().unwrap().to_owned();
    let after_mint = cp.revision().await;
    cp.expect(Method::POST, &format!("/api/v1/keys/{minted}/revoke"), None, S::OK).await;
    let after_revoke = cp.revision().await;

    let changes = changes_until(&mut from_start, start, after_revoke).await;
    let keys: Vec<_> =
        changes.iter().flat_map(|c| &c.upsert_keys).map(|k| (k.id.as_str(), k.status.as_str())).collect();
    assert_eq!(keys.last(), Some(&(minted.as_str(), "revoked")), "the revocation arrives as a key upsert: {keys:?}");
    assert!(keys.contains(&(minted.as_str(), "active")) || changes.len() == 1, "{keys:?}");
    for c in &changes {
        assert!(c.upsert_keys.iter().all(|k| k.id != t.key), "an unchanged key is never resent");
        assert!(c.delete_keys.is_empty() && c.upsert_providers.is_empty() && c.upsert_models.is_empty());
    }

    // A gateway that already has the mint gets only the revocation.
    cp.snapshot_at(after_revoke).await;
    let mut from_mint = watch(&cp, after_mint).await;
    let c = next_change(&mut from_mint).await;
    assert_eq!((c.from_revision, c.revision), (after_mint, after_revoke));
    let keys: Vec<_> = c.upsert_keys.iter().map(|k| (k.id.as_str(), k.status.as_str())).collect();
    assert_eq!(keys, [(minted.as_str(), "revoked")]);
}

#[tokio::test]
async fn a_gateway_with_nothing_or_ahead_gets_the_snapshot_then_changes() {
    let cp = Cp::start().await;
    tenancy(&cp).await;
    let start = cp.revision().await;
    // Revision 0 is "nothing yet"; a revision past the head is what a gateway has after
    // the control plane restarted on a fresh database. (Too far behind for the history
    // is covered by the feed's unit tests, whose history bounds are small.)
    for since in [0, start + 1_000] {
        let head = cp.revision().await;
        cp.snapshot_at(head).await;
        let mut stream = watch(&cp, since).await;
        let first = next(&mut stream).await;
        let snap = first.snapshot.unwrap_or_else(|| panic!("since {since}: a full snapshot first"));
        assert!(first.change.is_none());
        assert_eq!((first.revision, snap.revision), (head, head));
        assert_eq!(snap.keys.len(), 1);

        let budget = json!({"scope": "project", "scope_id": "checkout", "limit_usd": "5", "window": "day"});
        let created = cp.expect(Method::POST, "/api/v1/budgets", Some(budget), S::CREATED).await;
        let id = created["id"].as_str().unwrap();
        let now = cp.revision().await;
        let changes = changes_until(&mut stream, head, now).await;
        let upserted: Vec<_> = changes.iter().flat_map(|c| &c.upsert_budgets).map(|b| b.id.as_str()).collect();
        assert_eq!(upserted, [id]);
        cp.expect(Method::DELETE, &format!("/api/v1/budgets/{id}"), None, S::NO_CONTENT).await;
        let deleted = changes_until(&mut stream, now, cp.revision().await).await;
        assert_eq!(deleted.iter().flat_map(|c| c.delete_budgets.iter()).collect::<Vec<_>>(), [id]);
    }
}

#[tokio::test]
async fn watch_refuses_a_negative_revision_and_callers_without_a_gateway_token() {
    let cp = Cp::start().await;
    let mut client = ConfigServiceClient::connect(cp.grpc.clone()).await.unwrap();
    let s = client
        .watch(authed(v1::WatchRequest { since_revision: -1, accept_changes: true }, ADMIN))
        .await
        .expect_err("negative revision");
    assert_eq!(s.code(), Code::InvalidArgument, "{s:?}");
    let s = client
        .watch(tonic::Request::new(v1::WatchRequest { since_revision: 0, accept_changes: true }))
        .await
        .expect_err("no token");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
    let s = client
        .watch(authed(v1::WatchRequest { since_revision: 0, accept_changes: true }, "not-a-token"))
        .await
        .expect_err("wrong token");
    assert_eq!(s.code(), Code::Unauthenticated, "{s:?}");
}
