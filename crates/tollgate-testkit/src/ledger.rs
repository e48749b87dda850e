//! Ledger-entry fixtures, kept here once instead of in every crate's tests: the "full"
//! entry (every field set) that the store, the wire conversion and the reports round-trip,
//! and the spend-only entry that usage, budget and ledger-writer tests are built from.

use std::collections::BTreeMap;
use tollgate_core::{KeyId, Money, OrgId, ProjectId, TeamId, Timestamp};
use tollgate_metering::{Attempt, LedgerEntry, Usage, UsageSource};

/// An entry for `request_id` accepted at `at` with every optional field set, a cost no
/// float could hold, and text that is not ASCII.
///
/// Key `key_1` (named `checkout ✨`, principal `acme:user-42`) in project `proj_1` of
/// team `team_1` and organization `org_1` asked for `gpt-4o`; `azure-east` timed out and
/// `openai-main` served `gpt-4o-2024-08-06`, streamed. Reported usage: 1000 input tokens
/// (600 cached, 250 written to the cache) and 500 output (7 reasoning); cost 2^53 + 1
/// nano-dollars; status 201 after 1234 ms; tags `prod`, `eu`; metadata
/// `customer = acme "ü"`.
pub fn full_entry(request_id: &str, at: Timestamp) -> LedgerEntry {
    LedgerEntry::new(request_id, KeyId::new("key_1"), ProjectId::new("proj_1"), "gpt-4o")
        .with_at(at)
        .with_key_name("checkout ✨")
        .with_principal("acme:user-42")
        .with_tenancy(TeamId::new("team_1"), OrgId::new("org_1"))
        .with_served_by("openai-main", "gpt-4o-2024-08-06")
        .with_usage(
            &Usage {
                input_tokens: 1000,
                output_tokens: 500,
                cached_input_tokens: 600,
                reasoning_tokens: 7,
                cache_write_tokens: 250,
            },
            UsageSource::Reported,
        )
        .with_cost(Money::from_nanos(9_007_199_254_740_993))
        .with_outcome(201, 1234)
        .with_tags(["prod", "eu"])
        .with_metadata(BTreeMap::from([("customer".to_owned(), "acme \"ü\"".to_owned())]))
        .with_attempt(Attempt::new("azure-east", "gpt-4o", "timeout"))
        .with_attempt(Attempt::new("openai-main", "gpt-4o-2024-08-06", "ok"))
        .with_stream(true)
}

/// An entry for `request_id` by `key` in `project` asking for `model`, accepted at `at`,
/// of `tokens` = (input, output) reported tokens (none cached, reasoning or written to the
/// cache) costing `nanos`; everything else as [`LedgerEntry::new`] leaves it. Chain the
/// entry's `with_*` methods for the rest (principal, tenancy, tags).
pub fn spend_entry(
    request_id: &str,
    key: &str,
    project: &str,
    model: &str,
    at: Timestamp,
    (input, output): (u64, u64),
    nanos: i64,
) -> LedgerEntry {
    LedgerEntry::new(request_id, KeyId::new(key), ProjectId::new(project), model)
        .with_at(at)
        .with_usage(&Usage { input_tokens: input, output_tokens: output, ..Usage::default() }, UsageSource::Reported)
        .with_cost(Money::from_nanos(nanos))
}
