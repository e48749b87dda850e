//! Integration tests of tollgate-budgets: one conformance suite (`budgets`, `rates`) run
//! against every backend (`backends`): the memory store, and Redis when
//! `TOLLGATE_TEST_REDIS_URL` is set (each test under its own random key prefix). `model`
//! checks the engine against a reference model over random interleavings (proptest).

// .clippy.toml allows these inside `#[test]` functions only; the suite and fixtures are
// plain async fns called from the tests, where a panic is equally a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backends;
mod budgets;
mod clamp;
mod model;
mod rates;

/// Instantiates every suite test once per backend module.
macro_rules! conformance {
    ($suite:ident in $module:ident: $($name:ident),* $(,)?) => {
        mod $module {
            mod memory {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let backend = crate::backends::Backend::memory();
                        crate::$suite::$name(&backend).await;
                    }
                )*
            }

            mod redis {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let Some(backend) = crate::backends::Backend::redis() else {
                            eprintln!("skipped: TOLLGATE_TEST_REDIS_URL not set");
                            return;
                        };
                        crate::$suite::$name(&backend).await;
                    }
                )*
            }
        }
    };
}

conformance!(budgets in budget_conformance:
    reserve_then_commit_charges_the_actual_amount,
    block_budget_admits_up_to_its_limit_and_refuses_one_nano_more,
    token_limits_count_tokens_and_ignore_money,
    a_refusal_on_one_budget_leaves_no_trace_on_the_others,
    warn_budgets_never_refuse_and_name_themselves_in_warnings,
    release_and_drop_give_the_reservation_back,
    an_abandoned_reservation_stops_counting_after_the_ttl,
    a_late_commit_after_expiry_is_still_charged,
    commit_and_release_are_idempotent_in_the_store,
    a_dropped_commit_future_still_charges,
    the_next_window_starts_empty_and_a_late_commit_lands_in_its_own_window,
    a_commit_above_its_reservation_is_charged_in_full_and_blocks_further_reservations,
    alerts_fire_once_per_window_and_threshold_across_engines,
    concurrent_reservations_admit_exactly_what_the_budget_affords,
    concurrent_multi_scope_reservations_stay_exact_on_every_scope,
    seed_sets_committed_spend_and_reset_empties_the_window,
    tightest_remaining_is_the_smallest_money_headroom,
    a_budget_listed_twice_is_charged_once,
    lifetime_budgets_never_reset,
    money_stays_exact_beyond_double_precision,
    a_new_epoch_starts_empty_and_the_old_one_is_untouched,
    a_temporary_increase_counts_until_it_lapses,
);

conformance!(clamp in clamp_conformance:
    a_money_clamp_lowers_the_cap_to_exactly_what_the_budget_affords,
    a_token_clamp_counts_tokens_and_ignores_money,
    the_tightest_of_two_clamp_budgets_sets_the_cap,
    below_the_floor_a_clamp_budget_refuses_like_block,
    a_block_budget_refusal_is_final_beside_a_clamp_budget,
    concurrent_clamped_requests_fill_the_budget_and_never_pass_it,
);

conformance!(rates in rate_conformance:
    rpm_allows_no_double_burst_across_a_minute_boundary,
    retry_after_is_exact,
    tpm_is_charged_by_estimate_and_corrected_by_settle,
    an_oversized_request_is_admitted_only_into_an_empty_bucket,
    a_refusal_on_one_dimension_counts_nothing,
    concurrency_slots_free_on_drop_and_expire_after_the_ttl,
    keys_are_independent_and_unlimited_is_free,
);
