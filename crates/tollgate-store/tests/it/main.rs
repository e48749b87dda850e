//! Integration tests of tollgate-store: one conformance suite (`suite`) run against every
//! backend (`backends`): a SQLite file, an in-memory SQLite database, and PostgreSQL when
//! `TOLLGATE_TEST_POSTGRES_URL` is set.

// .clippy.toml allows these inside `#[test]` functions only; the suite and fixtures are
// plain async fns called from the tests, where a panic is equally a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends;
mod suite;

/// Instantiates every suite test once per backend module.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite_file {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = crate::backends::sqlite_file().await;
                    crate::suite::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }

        mod sqlite_memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let db = crate::backends::sqlite_memory().await;
                    crate::suite::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    let Some(db) = crate::backends::postgres().await else {
                        println!("skipped: TOLLGATE_TEST_POSTGRES_URL not set");
                        return;
                    };
                    crate::suite::$name(&db).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    fresh_database_is_empty_at_revision_zero,
    every_record_round_trips_field_for_field,
    each_config_write_bumps_revision_by_exactly_one,
    snapshot_revision_matches_its_rows_under_concurrent_writes,
    concurrent_writers_get_distinct_consecutive_revisions,
    ensure_org_is_idempotent_even_when_racing,
    unique_violations_are_conflicts,
    missing_parents_are_not_found,
    find_accepts_id_or_name_and_refuses_ambiguous_names,
    names_are_unique_per_parent_and_resolve_inside_one_team,
    list_keys_filters_by_project_principal_status_and_metadata,
    list_keys_paginates_by_id_with_and_without_metadata_filter,
    list_keys_orders_ids_bytewise,
    update_key_replaces_mutable_columns_only,
    keys_written_before_the_grace_list_keep_their_previous_secret,
    update_key_of_missing_key_is_not_found_and_changes_nothing,
    create_key_with_budget_is_atomic,
    audit_is_listed_newest_first_with_filters_and_pages,
    audit_is_filtered_by_actor_and_until_and_walked_oldest_first,
    a_transaction_commits_its_writes_and_audit_event_together_or_not_at_all,
    chained_appends_follow_the_newest_event_even_when_racing,
    admin_tokens_are_listed_and_revoked_once,
    list_keys_filters_by_team,
    reconnecting_keeps_data_and_reruns_no_migration,
    list_budgets_filters_by_scope_and_paginates_by_id,
    update_budget_replaces_mutable_columns_only,
    reset_budget_bumps_the_epoch_every_time_even_when_racing,
    delete_budget_removes_it_once,
    budgets_written_before_the_upgrade_read_as_money_budgets_at_epoch_zero,
    update_model_replaces_prices_and_keeps_identity,
    ledger_batch_round_trips_field_for_field_without_bumping_the_revision,
    ledger_stores_each_request_id_once,
    ledger_rejects_unstorable_entries_and_stores_nothing_of_their_batch,
    ledger_spend_sums_one_scope_over_a_half_open_range,
    usage_groups_sum_exactly_across_day_and_hour_boundaries,
    usage_by_tag_counts_each_entry_once_per_tag_and_replays_once,
    aliases_never_share_a_name_with_a_model_and_always_name_one,
    routing_policies_are_one_per_scope_and_update_only_the_policy,
    deployments_stored_before_routing_options_read_with_the_defaults,
    provider_credentials_are_reencrypted_all_or_nothing,
    a_principals_keys_are_revoked_together_across_update_batches,
);

/// A SQLite database is private to its owner: created 0600 (its `-wal` and `-shm` follow),
/// and one left readable by others by an older version is tightened at the next connect.
#[cfg(unix)]
#[tokio::test]
async fn a_sqlite_database_and_its_wal_are_private_even_when_created_before() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tollgate_testkit::process::temp_dir("store-modes");
    let db = dir.join("tollgate.db");
    let url = format!("sqlite://{}", db.display());
    let names = ["tollgate.db", "tollgate.db-wal", "tollgate.db-shm"];
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    let store = tollgate_store::Store::connect(&url).await.unwrap();
    for f in names {
        assert_eq!(mode(f), 0o600, "{f} when created");
    }
    drop(store);
    for f in names {
        if dir.join(f).exists() {
            std::fs::set_permissions(dir.join(f), std::fs::Permissions::from_mode(0o644)).unwrap();
        }
    }
    let _store = tollgate_store::Store::connect(&url).await.unwrap();
    for f in names {
        assert_eq!(mode(f), 0o600, "{f} after reconnecting");
    }
}
