//! The default price catalog: list prices of current popular models and the most output
//! tokens each may generate, shipped in the repository as a versioned data file
//! (`data/prices.json`) and compiled into the binary.
//!
//! The control plane uses it when a model is created without explicit prices, and
//! records `catalog:<version>` as where the price came from; an operator overrides any
//! model through the API. Prices are decimal strings per 1M tokens, read exactly into
//! integer nano-dollars ([`Money`]); a malformed file is an error at start-up, never a
//! silent $0 price.
//!
//! Lookup is by exact name first, then by a normalized name: lowercase, without a
//! `provider/` or `models/` prefix, and without a release-date suffix (`-2024-08-06`,
//! `-20250929`, `@20250929`, `-0125`) or `-latest`. Dated releases priced differently from
//! their family (e.g. `gpt-4o-2024-05-13`) have their own entry, which the exact match
//! finds first.

use crate::pricing::Pricing;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;
use tollgate_core::{ErrorCode, Money, MoneyError, ServiceError};

/// The catalog file shipped with this build.
pub const BUILTIN_PRICES_JSON: &str = include_str!("../data/prices.json");

/// Why a catalog file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// Not JSON of the catalog's shape.
    #[error("price catalog is not valid")]
    Json(#[source] serde_json::Error),
    /// The file prices in something other than USD.
    #[error("price catalog currency is {0:?}, only USD is supported")]
    Currency(String),
    /// The version is empty.
    #[error("price catalog has no version")]
    NoVersion,
    /// A price is not a non-negative decimal amount.
    #[error("price catalog: {model}.{field} is not a price")]
    Price {
        /// The model.
        model: String,
        /// The price field (`input`, `output`, `cached_input`, `cache_write`).
        field: &'static str,
        /// The cause.
        #[source]
        source: MoneyError,
    },
    /// A `max_output` is zero.
    #[error("price catalog: {0}.max_output must be a positive number of tokens")]
    MaxOutput(String),
    /// Two models claim the same name or alias.
    #[error("price catalog: {0:?} names more than one model")]
    Duplicate(String),
}

impl ServiceError for CatalogError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Internal
    }
}

/// One model's list price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogEntry {
    /// The model's name at its provider (the catalog key).
    pub model: String,
    /// Who sells it (`openai`, `anthropic`, `google`).
    pub provider: String,
    /// Its prices.
    pub pricing: Pricing,
    /// The most output tokens (reasoning included) one request may generate, as its
    /// provider documents it; `None` when the catalog does not say (embeddings).
    pub max_output: Option<u64>,
}

/// A parsed price catalog.
#[derive(Debug, Clone)]
pub struct PriceCatalog {
    version: String,
    entries: BTreeMap<String, CatalogEntry>,
    /// Normalized names and aliases → catalog key.
    index: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    version: String,
    currency: String,
    #[serde(default)]
    #[allow(dead_code)] // documentation for readers of the file
    unit: Option<String>,
    #[serde(default)]
    #[allow(dead_code)]
    notes: Vec<String>,
    #[serde(default)]
    #[allow(dead_code)]
    sources: BTreeMap<String, String>,
    models: BTreeMap<String, RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    provider: String,
    input: String,
    output: String,
    #[serde(default)]
    cached_input: Option<String>,
    #[serde(default)]
    cache_write: Option<String>,
    #[serde(default)]
    aliases: Vec<String>,
    #[serde(default)]
    max_output: Option<u64>,
}

fn price(model: &str, field: &'static str, text: &str) -> Result<Money, CatalogError> {
    Money::parse_non_negative(text).map_err(|source| CatalogError::Price { model: model.to_owned(), field, source })
}

/// `name` lowercased, without a path prefix and without a release-date or `-latest`
/// suffix.
pub fn normalize_model_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    let mut m = lower.rsplit('/').next().unwrap_or(&lower).to_owned();
    if let Some(stem) = m.strip_suffix("-latest") {
        m = stem.to_owned();
    }
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    // `-2024-08-06`
    if m.len() > 11 {
        let (stem, tail) = m.split_at(m.len() - 11);
        let b = tail.as_bytes();
        if b[0] == b'-'
            && b[5] == b'-'
            && b[8] == b'-'
            && digits(&tail[1..5])
            && digits(&tail[6..8])
            && digits(&tail[9..])
        {
            return stem.to_owned();
        }
    }
    // `-20250929`, `@20250929`, `-0125`
    if let Some(pos) = m.rfind(['-', '@']) {
        let tail = &m[pos + 1..];
        if pos > 0 && digits(tail) && (tail.len() == 8 || (tail.len() == 4 && m.as_bytes()[pos] == b'-')) {
            return m[..pos].to_owned();
        }
    }
    m
}

impl PriceCatalog {
    /// Parses a catalog file.
    pub fn parse(text: &str) -> Result<PriceCatalog, CatalogError> {
        let raw: RawCatalog = serde_json::from_str(text).map_err(CatalogError::Json)?;
        if raw.currency != "USD" {
            return Err(CatalogError::Currency(raw.currency));
        }
        if raw.version.trim().is_empty() {
            return Err(CatalogError::NoVersion);
        }
        let mut entries = BTreeMap::new();
        let mut index = HashMap::new();
        for (model, e) in raw.models {
            let mut pricing = Pricing::new(price(&model, "input", &e.input)?, price(&model, "output", &e.output)?);
            if let Some(c) = &e.cached_input {
                pricing = pricing.with_cached_input(price(&model, "cached_input", c)?);
            }
            if let Some(w) = &e.cache_write {
                pricing = pricing.with_cache_write(price(&model, "cache_write", w)?);
            }
            for name in std::iter::once(&model).chain(&e.aliases) {
                let key = name.to_ascii_lowercase();
                if index.insert(key, model.clone()).is_some() {
                    return Err(CatalogError::Duplicate(name.clone()));
                }
            }
            if e.max_output == Some(0) {
                return Err(CatalogError::MaxOutput(model));
            }
            entries
                .insert(model.clone(), CatalogEntry { model, provider: e.provider, pricing, max_output: e.max_output });
        }
        Ok(PriceCatalog { version: raw.version, entries, index })
    }

    /// The catalog compiled into this build, parsed once.
    pub fn builtin() -> Result<&'static PriceCatalog, &'static CatalogError> {
        static BUILTIN: OnceLock<Result<PriceCatalog, CatalogError>> = OnceLock::new();
        BUILTIN.get_or_init(|| PriceCatalog::parse(BUILTIN_PRICES_JSON)).as_ref()
    }

    /// The catalog's version (the date its prices were read).
    pub fn version(&self) -> &str {
        &self.version
    }

    /// What a price taken from this catalog records as its source: `catalog:<version>`.
    pub fn source(&self) -> String {
        format!("catalog:{}", self.version)
    }

    /// The list price of `model`, by exact name, then by normalized name.
    pub fn lookup(&self, model: &str) -> Option<&CatalogEntry> {
        if let Some(e) = self.entries.get(model) {
            return Some(e);
        }
        let key = self.index.get(&model.trim().to_ascii_lowercase()).or_else(|| {
            let norm = normalize_model_name(model);
            self.index.get(&norm)
        })?;
        self.entries.get(key)
    }

    /// The most output tokens `model` may generate in one request, found as
    /// [`lookup`](Self::lookup) finds prices (exact name, then normalized); `None` for a
    /// model the catalog does not list or gives no limit for.
    pub fn max_output_tokens(&self, model: &str) -> Option<u64> {
        self.lookup(model).and_then(|e| e.max_output)
    }

    /// Every entry, by model name.
    pub fn entries(&self) -> impl Iterator<Item = &CatalogEntry> {
        self.entries.values()
    }

    /// How many models are priced.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no model is priced.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Usage;

    fn usd(s: &str) -> Money {
        Money::parse_usd(s).unwrap()
    }

    #[test]
    fn the_shipped_catalog_parses_and_prices_every_provider() {
        let c = PriceCatalog::builtin().unwrap();
        assert!(!c.version().is_empty());
        assert_eq!(c.source(), format!("catalog:{}", c.version()));
        for provider in ["openai", "anthropic", "google"] {
            assert!(c.entries().filter(|e| e.provider == provider).count() >= 5, "{provider}");
        }
        for e in c.entries() {
            let p = e.pricing;
            assert!(!p.input_per_mtok.is_negative() && !p.output_per_mtok.is_negative(), "{}", e.model);
            // A cached read is never dearer than a fresh prompt token.
            assert!(p.cached_input_per_mtok.is_none_or(|c| c <= p.input_per_mtok), "{}", e.model);
            // Only embeddings are free to generate from.
            assert!(p.output_per_mtok > Money::ZERO || e.model.starts_with("text-embedding"), "{}", e.model);
            assert!(p.input_per_mtok > Money::ZERO, "{} has a zero input price", e.model);
        }
        // Every raw price string parsed to exactly what it says.
        let raw: serde_json::Value = serde_json::from_str(BUILTIN_PRICES_JSON).unwrap();
        let models = raw["models"].as_object().unwrap();
        assert_eq!(models.len(), c.len());
        for (name, v) in models {
            let e = c.lookup(name).unwrap();
            assert_eq!(e.model, *name);
            assert_eq!(e.pricing.input_per_mtok, usd(v["input"].as_str().unwrap()), "{name}");
            assert_eq!(e.pricing.output_per_mtok, usd(v["output"].as_str().unwrap()), "{name}");
            assert_eq!(e.pricing.cached_input_per_mtok, v["cached_input"].as_str().map(usd), "{name}");
            assert_eq!(e.pricing.cache_write_per_mtok, v["cache_write"].as_str().map(usd), "{name}");
        }
    }

    #[test]
    fn output_limits_are_the_providers_published_ones_found_like_prices() {
        let c = PriceCatalog::builtin().unwrap();
        for (model, want) in [
            ("gpt-4o", Some(16384)),
            ("gpt-4o-2024-08-06", Some(16384)),
            ("gpt-4o-2024-05-13", Some(4096)),
            ("openai/gpt-4o-mini", Some(16384)),
            ("gpt-4.1", Some(32768)),
            ("o3", Some(100_000)),
            ("o4-mini-2025-04-16", Some(100_000)),
            ("claude-sonnet-4-20250514", Some(64000)),
            ("claude-opus-4", Some(32000)),
            ("claude-3-5-haiku-latest", Some(8192)),
            ("models/gemini-2.5-pro", Some(65536)),
            ("gemini-2.5-flash", Some(65536)),
            ("text-embedding-3-small", None),
            ("my-finetune", None),
        ] {
            assert_eq!(c.max_output_tokens(model), want, "{model}");
        }
        // Every chat model the catalog prices has a limit; only embeddings have none.
        for e in c.entries() {
            assert_eq!(e.max_output.is_none(), e.model.starts_with("text-embedding"), "{}", e.model);
        }
    }

    #[test]
    fn dated_and_prefixed_names_find_their_family_but_exact_entries_win() {
        let c = PriceCatalog::builtin().unwrap();
        let model = |name: &str| c.lookup(name).map(|e| e.model.as_str());
        assert_eq!(model("gpt-4o-2024-08-06"), Some("gpt-4o"));
        assert_eq!(model("gpt-4o-2024-05-13"), Some("gpt-4o-2024-05-13"));
        assert_eq!(model("gpt-4o-mini-2024-07-18"), Some("gpt-4o-mini"));
        assert_eq!(model("GPT-4o"), Some("gpt-4o"));
        assert_eq!(model("openai/gpt-4.1"), Some("gpt-4.1"));
        assert_eq!(model("gpt-3.5-turbo-0125"), Some("gpt-3.5-turbo"));
        assert_eq!(model("claude-sonnet-4-5-20250929"), Some("claude-sonnet-4-5"));
        assert_eq!(model("claude-3-5-haiku-latest"), Some("claude-3-5-haiku"));
        assert_eq!(model("claude-sonnet-4-20250514"), Some("claude-sonnet-4-0"));
        assert_eq!(model("claude-opus-4-1@20250805"), Some("claude-opus-4-1"));
        assert_eq!(model("models/gemini-2.5-flash"), Some("gemini-2.5-flash"));
        assert_eq!(model("gpt-4o-mini-tts"), None);
        assert_eq!(model("my-finetune"), None);
        assert_eq!(model(""), None);
    }

    /// One row of the cost table: model, input (incl. cached and written), cached read,
    /// cache write, output (incl. reasoning), reasoning, expected nano-dollars.
    type Row = (&'static str, u64, u64, u64, u64, u64, i64);

    #[test]
    fn cost_table_per_provider_with_cached_reasoning_and_cache_write_tokens() {
        let c = PriceCatalog::builtin().unwrap();
        let rows: &[Row] = &[
            // OpenAI gpt-4o: 2500 in, 1250 cached, 10000 out nano-dollars a token.
            ("gpt-4o", 1000, 0, 0, 500, 0, 2_500_000 + 5_000_000),
            ("gpt-4o", 1000, 600, 0, 500, 0, 400 * 2500 + 600 * 1250 + 5_000_000),
            // o3: reasoning tokens are part of the output and billed as output.
            ("o3", 2000, 1024, 0, 3000, 2500, 976 * 2000 + 1024 * 500 + 3000 * 8000),
            // gpt-5-nano: 50 in, 5 cached, 400 out; 7 prompt tokens → 350.
            ("gpt-5-nano", 7, 0, 0, 0, 0, 350),
            // o4-mini cached read is 0.275$/M = 275 nano a token.
            ("o4-mini", 1_000_000, 1_000_000, 0, 0, 0, 275_000_000),
            // An embedding: prompt only.
            ("text-embedding-3-small", 8191, 0, 0, 0, 0, 8191 * 20),
            // Anthropic Sonnet 4.5: 3000 in, 300 read, 3750 write, 15000 out.
            ("claude-sonnet-4-5", 10_000, 6000, 3000, 200, 0, 1000 * 3000 + 6000 * 300 + 3000 * 3750 + 200 * 15000),
            ("claude-sonnet-4-5-20250929", 100, 0, 100, 0, 0, 100 * 3750),
            // Opus 4.1 with extended thinking.
            ("claude-opus-4-1", 500, 0, 0, 1000, 900, 500 * 15_000 + 1000 * 75_000),
            // Haiku 3.5: 800 in, 80 read, 1000 write, 4000 out.
            ("claude-3-5-haiku", 3, 1, 1, 1, 0, 800 + 80 + 1000 + 4000),
            // Gemini 2.5 Flash: 300 in, 30 cached, 2500 out (thinking billed as output).
            ("gemini-2.5-flash", 1000, 400, 0, 2000, 1500, 600 * 300 + 400 * 30 + 2000 * 2500),
            // Gemini 2.0 Flash-Lite: 75 in, 300 out.
            ("gemini-2.0-flash-lite", 1, 0, 0, 1, 0, 75 + 300),
            // Cheapest rates: $0.01/M cached is 10 nano-dollars a token, $0.005/M is 5.
            ("gemini-2.5-flash-lite", 1, 1, 0, 0, 0, 10),
            ("gpt-5-nano", 1000, 1000, 0, 0, 0, 5000),
        ];
        for &(model, input, cached, written, output, reasoning, want) in rows {
            let usage = Usage {
                input_tokens: input,
                output_tokens: output,
                cached_input_tokens: cached,
                reasoning_tokens: reasoning,
                cache_write_tokens: written,
            };
            let pricing = c.lookup(model).unwrap_or_else(|| panic!("{model} is not in the catalog")).pricing;
            assert_eq!(pricing.cost(&usage), Money::from_nanos(want), "{model} {usage:?}");
        }
    }

    #[test]
    fn a_bad_catalog_is_refused_naming_what_is_wrong() {
        let file = |models: &str| format!(r#"{{"version": "v1", "currency": "USD", "models": {{{models}}}}}"#);
        let ok = file(r#""m": {"provider": "p", "input": "1", "output": "2"}"#);
        let c = PriceCatalog::parse(&ok).unwrap();
        assert_eq!(c.lookup("m").unwrap().pricing, Pricing::new(usd("1"), usd("2")));
        for (bad, want) in [
            (file(r#""m": {"provider": "p", "input": "-1", "output": "2"}"#), "m.input is not a price"),
            (file(r#""m": {"provider": "p", "input": "1", "output": 2.5}"#), "not valid"),
            (
                file(r#""m": {"provider": "p", "input": "1", "output": "2", "cached_input": "0.0000000001"}"#),
                "m.cached_input",
            ),
            (file(r#""m": {"provider": "p", "input": "1", "output": "x"}"#), "m.output"),
            (file(r#""m": {"provider": "p", "input": "1", "output": "2", "max_output": 0}"#), "m.max_output"),
            (file(r#""m": {"provider": "p", "input": "1", "output": "2", "max_output": -5}"#), "not valid"),
            (file(r#""m": {"provider": "p", "input": "1", "output": "2", "max_output": "8192"}"#), "not valid"),
            (file(r#""m": {"provider": "p", "input": "1", "output": "2", "max_output": 1.5}"#), "not valid"),
            (file(r#""m": {"provider": "p", "input": "1", "output": "2", "cheap": true}"#), "not valid"),
            (
                file(
                    r#""m": {"provider": "p", "input": "1", "output": "2"}, "M": {"provider": "p", "input": "1", "output": "2"}"#,
                ),
                "\"m\"",
            ),
            (r#"{"version": "v1", "currency": "EUR", "models": {}}"#.to_owned(), "EUR"),
            (r#"{"version": " ", "currency": "USD", "models": {}}"#.to_owned(), "no version"),
            ("[]".to_owned(), "not valid"),
        ] {
            let err = PriceCatalog::parse(&bad).unwrap_err().to_string();
            assert!(err.to_lowercase().contains(&want.to_lowercase()), "{bad}: {err}");
        }
    }

    #[test]
    fn names_normalize_without_eating_version_numbers() {
        for (name, want) in [
            ("gpt-4.1", "gpt-4.1"),
            ("o3", "o3"),
            ("claude-opus-4-1", "claude-opus-4-1"),
            ("claude-3-haiku-20240307", "claude-3-haiku"),
            ("gemini-2.5-pro", "gemini-2.5-pro"),
            ("GPT-4o-2024-11-20", "gpt-4o"),
            ("gpt-4-0613", "gpt-4"),
            ("a/b/gpt-5-latest", "gpt-5"),
            ("-2024", "-2024"),
        ] {
            assert_eq!(normalize_model_name(name), want, "{name}");
        }
    }
}
