//! Admin tokens.

use super::*;

pub(crate) async fn admin_tokens_are_listed_and_revoked_once(db: &TestDb) {
    let store = &db.store;
    let (_, team, _) = tenancy(store, "tok").await;
    let mut t1 = admin_token("tok_1", "billing", "h1", &["keys:read".to_owned()], Some(&team.id), None);
    t1.expires_at = Some(at(9_000_000_000_000));
    t1.hint = "tga_AbCd…".into();
    t1.created_at = at(1_000);
    let mut t2 = admin_token("tok_2", "ops", "h2", &[], None, None);
    t2.created_at = at(2_000);
    store.create_admin_token(&t1).await.unwrap();
    store.create_admin_token(&t2).await.unwrap();
    assert_eq!(store.list_admin_tokens().await.unwrap(), vec![t1.clone(), t2.clone()]);
    assert_eq!(store.get_admin_token(&t1.id).await.unwrap(), Some(t1.clone()));
    assert!(store.get_admin_token(&TokenId::new("tok_x")).await.unwrap().is_none());

    let rev = store.revision().await.unwrap();
    let (revoked, bumped) = store.revoke_admin_token(&t1.id, at(5_000)).await.unwrap();
    assert_eq!((revoked.revoked_at, bumped), (Some(at(5_000)), Some(rev + 1)));
    let (again, bumped) = store.revoke_admin_token(&t1.id, at(6_000)).await.unwrap();
    assert_eq!((again.revoked_at, bumped), (Some(at(5_000)), None), "the first revocation stands");
    assert_not_found(store.revoke_admin_token(&TokenId::new("tok_x"), at(1)).await.map(|_| ()), "admin token");
    assert_eq!(store.find_admin_token_by_hash("h1").await.unwrap().unwrap().revoked_at, Some(at(5_000)));
}
