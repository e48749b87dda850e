//! Master-key rotation: every credential moves to the new key in one transaction, the
//! old key is then refused at start-up by fingerprint, and a wrong "old" key changes
//! nothing. Run on a SQLite file and, when `TOLLGATE_TEST_POSTGRES_URL` is set, on
//! PostgreSQL.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use std::collections::HashSet;
use tollgate_controlplane::secrets::MasterKey;
use tollgate_controlplane::service::{Actor, CreateProvider};
use tollgate_controlplane::{Config, ControlError, ControlPlane, SecretSources, rotate_master_key};
use tollgate_store::Store;
use tollgate_testkit::process::temp_dir;

const OLD: [u8; 32] = [0x11; 32];
const NEW: [u8; 32] = [0x22; 32];
const WRONG: [u8; 32] = [0x33; 32];

/// (provider name, kind, api key) of the fixtures.
const PROVIDERS: &[(&str, &str, &str)] = &[
    ("openai", "openai", "sk-openai-0123456789"),
    ("compat", "openai-compatible", "sk-compat-abcdef"),
    ("mock", "mock", ""),
];

async fn start(url: &str, key: &[u8; 32]) -> Result<ControlPlane, ControlError> {
    let cfg = Config {
        database_url: url.to_owned(),
        data_dir: temp_dir("rotation-it"),
        secrets: SecretSources {
            master_key: Some(B64.encode(key)),
            admin_token: Some(crate::ADMIN.into()),
            ..SecretSources::default()
        },
    };
    ControlPlane::start(&cfg).await
}

async fn ciphertexts(store: &Store) -> Vec<String> {
    store.list_providers().await.unwrap().into_iter().map(|p| p.api_key_ciphertext).collect()
}

fn nonce(ciphertext: &str) -> Vec<u8> {
    B64.decode(ciphertext.strip_prefix("v1:").unwrap()).unwrap()[..12].to_vec()
}

fn mismatch(e: ControlError) -> (String, String) {
    match e {
        ControlError::MasterKeyMismatch { expected, given } => (expected, given),
        other => panic!("expected a master key mismatch, got {other}"),
    }
}

async fn rotation_moves_every_credential_to_the_new_key(url: &str) {
    let (old, new, wrong) = (MasterKey::new(&OLD), MasterKey::new(&NEW), MasterKey::new(&WRONG));
    {
        let cp = start(url, &OLD).await.unwrap();
        let actor = Actor::system("test");
        for (name, kind, key) in PROVIDERS {
            let input = CreateProvider {
                name: (*name).into(),
                kind: (*kind).into(),
                base_url: (*kind != "openai").then(|| "http://127.0.0.1:9/v1".to_owned()),
                api_key: (!key.is_empty()).then(|| (*key).to_owned()),
                rpm: None,
                tpm: None,
                priority: None,
                extra: None,
            };
            cp.service().create_provider(&actor, input).await.unwrap();
        }
    }
    let store = Store::connect(url).await.unwrap();
    let before = ciphertexts(&store).await;
    let rev = store.revision().await.unwrap();

    // A wrong "old" key is refused by fingerprint and changes nothing.
    let (expected, given) = mismatch(rotate_master_key(&store, &wrong, &new).await.unwrap_err());
    assert_eq!((expected, given), (old.fingerprint(), wrong.fingerprint()));
    // Rotating to the key in use is refused too.
    assert!(rotate_master_key(&store, &old, &old).await.is_err());
    assert_eq!(ciphertexts(&store).await, before);
    assert_eq!(store.revision().await.unwrap(), rev);

    let report = rotate_master_key(&store, &old, &new).await.unwrap();
    assert_eq!(report.reencrypted, PROVIDERS.len() as u64);
    assert_eq!(
        (report.old_fingerprint.as_str(), report.new_fingerprint.as_str()),
        (&*old.fingerprint(), &*new.fingerprint())
    );
    assert_eq!(report.revision, rev + 1);
    assert!(report.audited);
    let after = ciphertexts(&store).await;
    assert!(before.iter().zip(&after).all(|(b, a)| b != a), "every ciphertext changed");
    let nonces: HashSet<Vec<u8>> = before.iter().chain(&after).map(|c| nonce(c)).collect();
    assert_eq!(nonces.len(), before.len() + after.len(), "every record has a fresh nonce");
    for c in &after {
        assert!(old.decrypt(c).is_err());
    }

    // The audit event names the fingerprints and holds no key material.
    let events = store.list_audit(Some("secrets"), None, 10, None).await.unwrap();
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!((e.actor.as_str(), e.action.as_str()), ("master-key-rotation", "master_key.rotate"));
    assert_eq!(e.metadata["reencrypted"], PROVIDERS.len());
    assert_eq!(e.metadata["old_fingerprint"], old.fingerprint());
    assert_eq!(e.metadata["new_fingerprint"], new.fingerprint());
    let text = e.metadata.to_string();
    for key in [&OLD, &NEW] {
        assert!(!text.contains(&B64.encode(key)));
    }

    // The new key decrypts every credential; the old one is refused at start-up.
    let cp = start(url, &NEW).await.unwrap();
    let snap = cp.snapshots().borrow().clone();
    let mut clear: Vec<(String, String)> = snap.providers.iter().map(|p| (p.name.clone(), p.api_key.clone())).collect();
    clear.sort();
    let mut want: Vec<(String, String)> =
        PROVIDERS.iter().map(|(n, _, k)| ((*n).to_owned(), (*k).to_owned())).collect();
    want.sort();
    assert_eq!(clear, want);
    let err = start(url, &OLD).await.unwrap_err();
    assert!(err.to_string().contains(&new.fingerprint()), "{err}");
    assert_eq!(mismatch(err), (new.fingerprint(), old.fingerprint()));

    // Rotating again from the retired key is refused and changes nothing.
    assert!(rotate_master_key(&store, &old, &wrong).await.is_err());
    assert_eq!(ciphertexts(&store).await, after);
}

/// A database written before key ids were recorded: a wrong old key fails on the first
/// credential it cannot decrypt, and nothing is changed.
async fn legacy_database_refuses_a_wrong_old_key_and_adopts_the_right_one(url: &str) {
    drop(start(url, &OLD).await.unwrap());
    let cp = start(url, &OLD).await.unwrap();
    let input = CreateProvider {
        name: "openai".into(),
        kind: "openai".into(),
        base_url: None,
        api_key: Some("sk-legacy-0123456789".into()),
        rpm: None,
        tpm: None,
        priority: None,
        extra: None,
    };
    cp.service().create_provider(&Actor::system("test"), input).await.unwrap();
    drop(cp);
    let store = Store::connect(url).await.unwrap();
    assert_eq!(store.execute_unchecked("DELETE FROM meta WHERE name = 'master_key_id'").await.unwrap(), 1);
    let before = ciphertexts(&store).await;
    let (old, new, wrong) = (MasterKey::new(&OLD), MasterKey::new(&NEW), MasterKey::new(&WRONG));
    let err = rotate_master_key(&store, &wrong, &new).await.unwrap_err().to_string();
    assert!(err.contains("nothing was changed") && err.contains(&wrong.fingerprint()), "{err}");
    assert_eq!(ciphertexts(&store).await, before);
    assert_eq!(store.master_key_id().await.unwrap(), None);
    // Starting with a wrong key does not adopt it.
    assert!(start(url, &WRONG).await.is_err());
    assert_eq!(store.master_key_id().await.unwrap(), None);
    assert_eq!(rotate_master_key(&store, &old, &new).await.unwrap().reencrypted, 1);
    assert_eq!(store.master_key_id().await.unwrap(), Some(new.key_id()));
}

fn sqlite_url(name: &str) -> String {
    format!("sqlite://{}?mode=rwc", temp_dir("rotation-it").join(format!("{name}.db")).display())
}

#[tokio::test]
async fn rotation_moves_every_credential_to_the_new_key_on_sqlite() {
    rotation_moves_every_credential_to_the_new_key(&sqlite_url("rotate")).await;
}

#[tokio::test]
async fn legacy_database_refuses_a_wrong_old_key_on_sqlite() {
    legacy_database_refuses_a_wrong_old_key_and_adopts_the_right_one(&sqlite_url("legacy")).await;
}

#[allow(clippy::print_stdout)] // a skipped test says why, like the #[test] fns that call this
async fn on_postgres(test: impl AsyncFnOnce(&str)) {
    let Some(admin) = std::env::var("TOLLGATE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty()) else {
        println!("skipped: TOLLGATE_TEST_POSTGRES_URL not set");
        return;
    };
    let url = Store::create_postgres_database(&admin).await.unwrap();
    test(&url).await;
    Store::drop_postgres_database(&admin, &url).await.unwrap();
}

#[tokio::test]
async fn rotation_moves_every_credential_to_the_new_key_on_postgres() {
    on_postgres(rotation_moves_every_credential_to_the_new_key).await;
}

#[tokio::test]
async fn legacy_database_refuses_a_wrong_old_key_on_postgres() {
    on_postgres(legacy_database_refuses_a_wrong_old_key_and_adopts_the_right_one).await;
}
