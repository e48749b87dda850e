//! The model catalog and aliases, and deployments stored before routing options existed.

use super::*;

pub(crate) async fn update_model_replaces_prices_and_keeps_identity(db: &TestDb) {
    let store = &db.store;
    let m = model("model_1", "gpt-4o");
    store.create_model(&m).await.unwrap();
    let rev = store.revision().await.unwrap();
    let mut changed = m.clone();
    changed.name = "renamed".to_owned(); // not writable through update_model
    changed.created_at = at(5);
    changed.input_per_mtok = Some(0);
    changed.cached_input_per_mtok = Some(1);
    changed.cache_write_per_mtok = None;
    changed.price_source = Some("explicit".to_owned());
    // Per-part maxima are replaced too: set, changed and cleared.
    changed.max_image_tokens = None;
    changed.max_audio_tokens = Some(4_000);
    changed.max_file_tokens = Some(1);
    changed.updated_at = at(1_800_000_000_000);
    assert_eq!(store.update_model(&changed).await.unwrap(), rev + 1);
    let want = ModelRecord { name: m.name.clone(), created_at: m.created_at, ..changed.clone() };
    assert_eq!(store.find_model("model_1").await.unwrap(), Some(want));
    let mut missing = changed.clone();
    missing.id = ModelId::new("model_9");
    assert_not_found(store.update_model(&missing).await, "model");
    assert_eq!(store.revision().await.unwrap(), rev + 1, "failed writes do not bump");
}

pub(crate) async fn aliases_never_share_a_name_with_a_model_and_always_name_one(db: &TestDb) {
    let store = &db.store;
    store.create_model(&model("model_1", "gpt-4o")).await.unwrap();
    store.create_model(&model("model_2", "claude")).await.unwrap();
    let rev = store.revision().await.unwrap();

    let taken = assert_conflict(store.create_alias(&alias("gpt-4o", "claude")).await);
    assert!(taken.contains("gpt-4o"), "{taken}");
    assert_not_found(store.create_alias(&alias("fast", "nope")).await, "model");
    store.create_alias(&alias("fast", "gpt-4o")).await.unwrap();
    let again = assert_conflict(store.create_alias(&alias("fast", "claude")).await);
    assert!(again.contains("fast"), "{again}");
    assert_not_found(store.create_alias(&alias("faster", "fast")).await, "model");
    let shadow = assert_conflict(store.create_model(&model("model_3", "fast")).await);
    assert!(shadow.contains("alias"), "{shadow}");
    assert_eq!(store.revision().await.unwrap(), rev + 1, "only the one alias was written");

    store.create_alias(&alias("best", "claude")).await.unwrap();
    let names: Vec<String> = store.list_aliases().await.unwrap().into_iter().map(|a| a.name).collect();
    assert_eq!(names, ["best", "fast"], "ordered by name");
    store.delete_alias("fast").await.unwrap();
    assert_not_found(store.delete_alias("fast").await, "alias");
    assert_eq!(store.find_alias("fast").await.unwrap(), None);
    store.create_model(&model("model_3", "fast")).await.unwrap();
}

pub(crate) async fn deployments_stored_before_routing_options_read_with_the_defaults(db: &TestDb) {
    use sea_orm::{ConnectionTrait, Database};
    let Some(url) = &db.url else {
        return; // an in-memory database does not outlive its connection
    };
    db.store.revision().await.unwrap();
    let raw = Database::connect(url.as_str()).await.unwrap();
    raw.execute_unprepared(
        "INSERT INTO models (id, name, deployments_json, created_at, updated_at) \
         VALUES ('model_old', 'old', '[{\"provider\":\"p\",\"model\":\"m\"}]', 1, 2)",
    )
    .await
    .unwrap();
    raw.close().await.unwrap();
    let old = db.store.find_model("old").await.unwrap().unwrap();
    assert_eq!(
        old.deployments,
        vec![DeploymentRecord {
            provider: "p".to_owned(),
            model: "m".to_owned(),
            priority: 0,
            weight: 1,
            pricing: None
        }]
    );
}
