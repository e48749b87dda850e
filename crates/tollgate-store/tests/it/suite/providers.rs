//! Provider credentials: re-encryption under a new master key.

use super::*;

pub(crate) async fn provider_credentials_are_reencrypted_all_or_nothing(db: &TestDb) {
    let store = &db.store;
    assert_eq!(store.master_key_id().await.unwrap(), None);
    let mut a = provider("prov_a", "a");
    a.api_key_ciphertext = "old-a".to_owned();
    let mut b = provider("prov_b", "b");
    b.api_key_ciphertext = "old-b".to_owned();
    store.create_provider(&a).await.unwrap();
    store.create_provider(&b).await.unwrap();
    let ciphertexts = || async {
        store.list_providers().await.unwrap().into_iter().map(|p| p.api_key_ciphertext).collect::<Vec<_>>()
    };

    // Adopting records the first id only.
    assert_eq!(store.adopt_master_key_id(11).await.unwrap(), 11);
    assert_eq!(store.adopt_master_key_id(12).await.unwrap(), 11);
    assert_eq!(store.master_key_id().await.unwrap(), Some(11));
    let rev = store.revision().await.unwrap();

    // A refused key id changes nothing.
    let refuse = |_: Option<i64>| Err(StoreError::Invalid { kind: "test", detail: "wrong key".into() });
    let r = store.reencrypt_provider_credentials(22, refuse, |p: &ProviderRecord| Ok(format!("new-{}", p.name))).await;
    assert!(r.is_err());
    // A failure on the second row rolls back the first.
    let fail_on_b = |p: &ProviderRecord| {
        if p.name == "b" {
            Err(StoreError::Invalid { kind: "test", detail: "cannot decrypt".into() })
        } else {
            Ok(format!("new-{}", p.name))
        }
    };
    assert!(store.reencrypt_provider_credentials(22, |_| Ok(()), fail_on_b).await.is_err());
    assert_eq!(ciphertexts().await, vec!["old-a", "old-b"]);
    assert_eq!(store.master_key_id().await.unwrap(), Some(11));
    assert_eq!(store.revision().await.unwrap(), rev);

    let mut seen = None;
    let (count, new_rev) = store
        .reencrypt_provider_credentials(
            22,
            |id| {
                seen = Some(id);
                Ok::<(), StoreError>(())
            },
            |p: &ProviderRecord| Ok(format!("new-{}", p.api_key_ciphertext)),
        )
        .await
        .unwrap();
    assert_eq!(seen, Some(Some(11)));
    assert_eq!((count, new_rev), (2, rev + 1));
    assert_eq!(ciphertexts().await, vec!["new-old-a", "new-old-b"]);
    assert_eq!(store.master_key_id().await.unwrap(), Some(22));
    assert_eq!(store.revision().await.unwrap(), rev + 1);
    let snap = store.snapshot().await.unwrap();
    assert_eq!(snap.providers[0].api_key_hint, a.api_key_hint, "only the ciphertext changes");
}
