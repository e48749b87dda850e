//! [`LedgerEntry`]: one row per request, the record platforms bill their customers from.
//!
//! The JSON form is a stable contract (the spool, the control-plane stream and exports
//! use it): snake_case field names, every field always present (`null` for an absent
//! optional), `at` as RFC 3339 in UTC with millisecond precision, and the cost as an
//! integer count of nano-dollars in `cost_nanos` — never a float. Fields added later are
//! optional or defaulted, so older spools stay readable.

use crate::pricing::Pricing;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use tollgate_core::{KeyId, Money, OrgId, ProjectId, TeamId, Timestamp};
use tollgate_providers::Usage;

/// Where an entry's token counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum UsageSource {
    /// The upstream reported usage (a `usage` object or a final usage chunk).
    Reported,
    /// Counted by the gateway because the upstream did not report it (a broken stream, a
    /// disconnected client) or reported counts outside any sane range: what was generated
    /// is still charged, never zero.
    Estimated,
    /// Settled at start-up from the gateway's ledger log: the request was dispatched but
    /// the process died before it settled. Charged what was known at dispatch (the
    /// prompt's estimate); an operator reconciles these against the provider's bill.
    Recovered,
}

impl UsageSource {
    /// The contract's name: `reported`, `estimated` or `recovered`.
    pub fn as_str(self) -> &'static str {
        match self {
            UsageSource::Reported => "reported",
            UsageSource::Estimated => "estimated",
            UsageSource::Recovered => "recovered",
        }
    }

    /// Reads a contract name back.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "reported" => Some(UsageSource::Reported),
            "estimated" => Some(UsageSource::Estimated),
            "recovered" => Some(UsageSource::Recovered),
            _ => None,
        }
    }
}

/// One try at an upstream while serving a request (fallbacks add more than one).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Attempt {
    /// The provider credential's name.
    pub provider: String,
    /// The upstream model name asked of that provider.
    pub model: String,
    /// How it ended: `ok`, `timeout`, `rate_limited`, `upstream_5xx`, ...
    pub outcome: String,
}

impl Attempt {
    /// An attempt at `model` on `provider` that ended with `outcome`.
    pub fn new(provider: impl Into<String>, model: impl Into<String>, outcome: impl Into<String>) -> Self {
        Self { provider: provider.into(), model: model.into(), outcome: outcome.into() }
    }
}

/// One request through the data plane, as billed.
///
/// Build one with [`LedgerEntry::new`] and the `with_*` methods; every field is public
/// so a sink can read it directly.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerEntry {
    /// The request id the gateway generated (unguessable, never the caller's): unique,
    /// and the idempotency key of every sink.
    pub request_id: String,
    /// The caller's own `x-request-id`, kept for correlation: echoed, stored, filterable,
    /// and never used to deduplicate anything.
    #[serde(default)]
    pub client_request_id: Option<String>,
    /// When the request was accepted (RFC 3339, UTC, milliseconds).
    pub at: Timestamp,
    /// The virtual key that made the request.
    pub key_id: KeyId,
    /// The key's human-readable name, if it has one.
    pub key_name: Option<String>,
    /// The platform's customer or user id the key belongs to, if any.
    pub principal: Option<String>,
    /// The project owning the key.
    pub project_id: ProjectId,
    /// The team owning the project (always set by the gateway).
    pub team_id: Option<TeamId>,
    /// The organization owning the team (always set by the gateway).
    pub org_id: Option<OrgId>,
    /// The model the caller asked for (a public name or an alias).
    pub requested_model: String,
    /// The upstream model that actually served the request.
    pub served_model: String,
    /// The provider credential that served it (empty when no upstream was reached).
    pub provider: String,
    /// Prompt tokens, including cached ones.
    pub input_tokens: u64,
    /// Generated tokens, including reasoning ones.
    pub output_tokens: u64,
    /// Prompt tokens read from the provider's cache (a subset of `input_tokens`).
    #[serde(default)]
    pub cached_input_tokens: u64,
    /// Reasoning tokens (a subset of `output_tokens`).
    #[serde(default)]
    pub reasoning_tokens: u64,
    /// Prompt tokens written to the provider's cache (a subset of `input_tokens`, priced
    /// at the model's cache-write rate; Anthropic's cache creation).
    #[serde(default)]
    pub cache_write_tokens: u64,
    /// What the request cost; serialized as the integer field `cost_nanos`.
    #[serde(rename = "cost_nanos", with = "nanos")]
    #[cfg_attr(feature = "openapi", schema(value_type = i64))]
    pub cost: Money,
    /// The HTTP status returned to the caller.
    pub status: u16,
    /// Time from accept to the last byte sent, in milliseconds.
    pub latency_ms: u64,
    /// Whether the token counts were reported by the upstream or estimated.
    pub usage_source: UsageSource,
    /// The key's tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// The key's metadata, chosen at key creation.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Every upstream tried, in order; the last one served the request.
    #[serde(default)]
    pub attempts: Vec<Attempt>,
    /// Whether the response was streamed.
    #[serde(default)]
    pub stream: bool,
    /// False when the served model had no price: the entry is kept (the request
    /// happened) at zero cost, and an operator prices it later.
    #[serde(default = "priced_default")]
    pub priced: bool,
}

fn priced_default() -> bool {
    true
}

impl LedgerEntry {
    /// An entry for `request_id`, made now by `key_id` in `project_id`, asking for
    /// `requested_model`.
    ///
    /// Defaults until set: served by `requested_model` on no provider, no tokens, zero
    /// cost, status 200, usage [`UsageSource::Estimated`], not streamed, no tags, metadata
    /// or attempts.
    pub fn new(
        request_id: impl Into<String>,
        key_id: KeyId,
        project_id: ProjectId,
        requested_model: impl Into<String>,
    ) -> Self {
        let requested_model = requested_model.into();
        Self {
            request_id: request_id.into(),
            client_request_id: None,
            at: Timestamp::now(),
            key_id,
            key_name: None,
            principal: None,
            project_id,
            team_id: None,
            org_id: None,
            served_model: requested_model.clone(),
            requested_model,
            provider: String::new(),
            input_tokens: 0,
            output_tokens: 0,
            cached_input_tokens: 0,
            reasoning_tokens: 0,
            cache_write_tokens: 0,
            cost: Money::ZERO,
            status: 200,
            latency_ms: 0,
            usage_source: UsageSource::Estimated,
            tags: Vec::new(),
            metadata: BTreeMap::new(),
            attempts: Vec::new(),
            stream: false,
            priced: true,
        }
    }

    /// Sets the caller's own request id.
    pub fn with_client_request_id(mut self, id: impl Into<String>) -> Self {
        self.client_request_id = Some(id.into());
        self
    }

    /// Marks the entry as served by a model without a price.
    pub fn with_priced(mut self, priced: bool) -> Self {
        self.priced = priced;
        self
    }

    /// Sets when the request was accepted.
    pub fn with_at(mut self, at: Timestamp) -> Self {
        self.at = at;
        self
    }

    /// Sets the key's name.
    pub fn with_key_name(mut self, name: impl Into<String>) -> Self {
        self.key_name = Some(name.into());
        self
    }

    /// Sets the principal.
    pub fn with_principal(mut self, principal: impl Into<String>) -> Self {
        self.principal = Some(principal.into());
        self
    }

    /// Sets the owning team and organization.
    pub fn with_tenancy(mut self, team_id: TeamId, org_id: OrgId) -> Self {
        self.team_id = Some(team_id);
        self.org_id = Some(org_id);
        self
    }

    /// Sets the provider and upstream model that served the request.
    pub fn with_served_by(mut self, provider: impl Into<String>, served_model: impl Into<String>) -> Self {
        self.provider = provider.into();
        self.served_model = served_model.into();
        self
    }

    /// Sets the token counts and where they come from.
    pub fn with_usage(mut self, usage: &Usage, source: UsageSource) -> Self {
        self.input_tokens = usage.input_tokens;
        self.output_tokens = usage.output_tokens;
        self.cached_input_tokens = usage.cached_input_tokens;
        self.reasoning_tokens = usage.reasoning_tokens;
        self.cache_write_tokens = usage.cache_write_tokens;
        self.usage_source = source;
        self
    }

    /// Sets the cost.
    pub fn with_cost(mut self, cost: Money) -> Self {
        self.cost = cost;
        self
    }

    /// Sets the cost to the exact price of the entry's current token counts.
    pub fn with_cost_from(mut self, pricing: &Pricing) -> Self {
        self.cost = pricing.cost(&self.usage());
        self
    }

    /// Sets the HTTP status and the latency.
    pub fn with_outcome(mut self, status: u16, latency_ms: u64) -> Self {
        self.status = status;
        self.latency_ms = latency_ms;
        self
    }

    /// Sets the key's tags.
    pub fn with_tags<I, S>(mut self, tags: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.tags = tags.into_iter().map(Into::into).collect();
        self
    }

    /// Sets the key's metadata.
    pub fn with_metadata(mut self, metadata: BTreeMap<String, String>) -> Self {
        self.metadata = metadata;
        self
    }

    /// Appends one upstream attempt.
    pub fn with_attempt(mut self, attempt: Attempt) -> Self {
        self.attempts.push(attempt);
        self
    }

    /// Sets whether the response was streamed.
    pub fn with_stream(mut self, stream: bool) -> Self {
        self.stream = stream;
        self
    }

    /// The entry's token counts as a [`Usage`].
    pub fn usage(&self) -> Usage {
        Usage {
            input_tokens: self.input_tokens,
            output_tokens: self.output_tokens,
            cached_input_tokens: self.cached_input_tokens,
            reasoning_tokens: self.reasoning_tokens,
            cache_write_tokens: self.cache_write_tokens,
        }
    }
}

/// [`Money`] as a bare integer of nano-dollars, so no reader can take it for a float.
mod nanos {
    use serde::{Deserialize, Deserializer, Serializer};
    use tollgate_core::Money;

    pub(super) fn serialize<S: Serializer>(money: &Money, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(money.nanos())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Money, D::Error> {
        i64::deserialize(d).map(Money::from_nanos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> LedgerEntry {
        LedgerEntry::new("req_1", KeyId::new("key_1"), ProjectId::new("proj_1"), "gpt-4o")
            .with_client_request_id("caller-7")
            .with_at(Timestamp::parse_rfc3339("2026-03-01T12:00:00.250Z").unwrap())
            .with_key_name("checkout")
            .with_principal("acme:user-42")
            .with_tenancy(TeamId::new("team_1"), OrgId::new("org_1"))
            .with_served_by("openai-main", "gpt-4o-2024-08-06")
            .with_usage(
                &Usage {
                    input_tokens: 1000,
                    output_tokens: 500,
                    cached_input_tokens: 600,
                    reasoning_tokens: 7,
                    cache_write_tokens: 50,
                },
                UsageSource::Reported,
            )
            // More than 2^53 nano-dollars: a float would round this.
            .with_cost(Money::from_nanos(9_007_199_254_740_993))
            .with_outcome(200, 1234)
            .with_tags(["prod", "eu"])
            .with_metadata(BTreeMap::from([("customer".to_owned(), "acme".to_owned())]))
            .with_attempt(Attempt::new("azure-east", "gpt-4o", "timeout"))
            .with_attempt(Attempt::new("openai-main", "gpt-4o-2024-08-06", "ok"))
            .with_stream(true)
    }

    #[test]
    fn json_form_is_the_stable_contract() {
        let json = serde_json::to_string(&sample()).unwrap();
        let want = concat!(
            r#"{"request_id":"req_1","client_request_id":"caller-7","at":"2026-03-01T12:00:00.25Z","key_id":"key_1","key_name":"checkout","#,
            r#""principal":"acme:user-42","project_id":"proj_1","team_id":"team_1","org_id":"org_1","#,
            r#""requested_model":"gpt-4o","served_model":"gpt-4o-2024-08-06","provider":"openai-main","#,
            r#""input_tokens":1000,"output_tokens":500,"cached_input_tokens":600,"reasoning_tokens":7,"#,
            r#""cache_write_tokens":50,"#,
            r#""cost_nanos":9007199254740993,"status":200,"latency_ms":1234,"usage_source":"reported","#,
            r#""tags":["prod","eu"],"metadata":{"customer":"acme"},"#,
            r#""attempts":[{"provider":"azure-east","model":"gpt-4o","outcome":"timeout"},"#,
            r#"{"provider":"openai-main","model":"gpt-4o-2024-08-06","outcome":"ok"}],"stream":true,"priced":true}"#,
        );
        assert_eq!(json, want);
    }

    #[test]
    fn json_round_trip_keeps_money_exact_to_the_nano() {
        for nanos in [0, 1, 125_000, 9_007_199_254_740_993, i64::MAX, -3] {
            let entry = sample().with_cost(Money::from_nanos(nanos));
            let back: LedgerEntry = serde_json::from_str(&serde_json::to_string(&entry).unwrap()).unwrap();
            assert_eq!(back, entry);
            assert_eq!(back.cost.nanos(), nanos);
        }
    }

    #[test]
    fn absent_and_null_optionals_read_as_defaults() {
        let json = r#"{"request_id":"r","at":"2026-03-01T12:00:00Z","key_id":"k","key_name":null,
            "project_id":"p","requested_model":"m","served_model":"m","provider":"",
            "input_tokens":1,"output_tokens":2,"cost_nanos":3,"status":502,"latency_ms":4,
            "usage_source":"estimated"}"#;
        let e: LedgerEntry = serde_json::from_str(json).unwrap();
        assert_eq!((e.key_name, e.principal, e.team_id, e.org_id), (None, None, None, None));
        assert_eq!((e.cached_input_tokens, e.reasoning_tokens, e.cache_write_tokens, e.stream), (0, 0, 0, false));
        assert_eq!((e.client_request_id, e.priced), (None, true), "older spools read as priced, no caller id");
        assert!(e.tags.is_empty() && e.metadata.is_empty() && e.attempts.is_empty());
        assert_eq!(e.usage_source, UsageSource::Estimated);
        assert_eq!(e.cost, Money::from_nanos(3));
    }

    #[test]
    fn a_float_or_decimal_string_cost_is_refused() {
        let base = serde_json::to_value(sample()).unwrap();
        for bad in [serde_json::json!(1.5), serde_json::json!("0.25")] {
            let mut v = base.clone();
            v["cost_nanos"] = bad;
            assert!(serde_json::from_value::<LedgerEntry>(v).is_err());
        }
    }

    #[test]
    fn cost_from_pricing_uses_the_entry_usage() {
        let pricing = Pricing::new(Money::parse_usd("2.50").unwrap(), Money::parse_usd("10").unwrap())
            .with_cached_input(Money::parse_usd("1.25").unwrap())
            .with_cache_write(Money::parse_usd("3").unwrap());
        let e = sample().with_cost_from(&pricing);
        // 350 fresh × 2500 + 600 cached × 1250 + 50 written × 3000 + 500 out × 10000 nano-dollars.
        assert_eq!(e.cost, Money::from_nanos(875_000 + 750_000 + 150_000 + 5_000_000));
    }
}
