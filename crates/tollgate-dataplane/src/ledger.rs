//! One ledger entry per request that reached an upstream: who (key, principal, project,
//! team, org, and the key's tags), what (requested and served model, provider), how much (usage, its
//! source, cost) and how it went (status, latency, stream). Handed to the metering
//! crate's `LedgerWriter`, which batches it off the request path and spools it while
//! the sink is down.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tollgate_core::Money;
use tollgate_keys::VirtualKey;
use tollgate_metering::{Attempt, Intent, LedgerEntry, LedgerWriter, Usage, UsageSource};
use tollgate_routing::Deployment;

use crate::DataPlane;
use crate::metrics::Metrics;
use crate::proxy::Identity;

/// Whether the caller is still waiting for its answer. A request runs to completion
/// once dispatched even if its caller hangs up (the provider bills the call either way);
/// this is how its ledger entry learns to say 499.
#[derive(Debug, Clone, Default)]
pub(crate) struct CallerPresence(Arc<AtomicBool>);

impl CallerPresence {
    /// Whether the caller hung up before its answer was handed over.
    pub(crate) fn gone(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that marks the caller gone when dropped before
    /// [`PresenceWatch::handed_over`]: held by the future the caller's connection drives.
    pub(crate) fn watch(&self) -> PresenceWatch {
        PresenceWatch(Some(self.clone()))
    }
}

/// See [`CallerPresence::watch`].
pub(crate) struct PresenceWatch(Option<CallerPresence>);

impl PresenceWatch {
    /// The answer reached the connection: the caller did not leave before it.
    pub(crate) fn handed_over(mut self) {
        self.0 = None;
    }
}

impl Drop for PresenceWatch {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            p.0.store(true, Ordering::Relaxed);
        }
    }
}

/// The parts of an entry known before dispatch; completed by [`Pending::finish`].
pub(crate) struct Pending {
    entry: LedgerEntry,
    started: Instant,
    writer: LedgerWriter,
    /// The intent line in the ledger log: if the process dies before [`Pending::finish`],
    /// the next start settles it as `recovered`; dropped unfinished, it is voided.
    intent: Intent,
    presence: CallerPresence,
    metrics: Arc<Metrics>,
}

/// What is known of a request when its entry starts (after admission).
pub(crate) struct Start<'a> {
    /// The model the caller asked for.
    pub(crate) model: &'a str,
    /// The deployment tried first.
    pub(crate) deployment: &'a Deployment,
    pub(crate) stream: bool,
    /// Whether the model has a price.
    pub(crate) priced: bool,
    /// The prompt's estimated tokens and their cost: what a request cut by a crash is
    /// charged when the next start recovers it.
    pub(crate) prompt: (u64, Money),
    pub(crate) started: Instant,
}

impl Pending {
    /// Starts an entry when the data plane has a ledger; `None` (and no allocation)
    /// otherwise.
    pub(crate) fn start(dp: &DataPlane, identity: &Identity<'_>, key: &VirtualKey, at: Start<'_>) -> Option<Pending> {
        let writer = dp.ledger()?.clone();
        let mut entry = LedgerEntry::new(identity.ids.ours_str(), key.id.clone(), key.project.clone(), at.model)
            .with_tenancy(key.team.clone(), key.org.clone())
            .with_served_by(&*at.deployment.provider, &*at.deployment.upstream_model)
            .with_metadata(key.metadata.to_map())
            .with_stream(at.stream)
            .with_priced(at.priced);
        entry.client_request_id = identity.ids.client_str().map(str::to_owned);
        entry.tags.clone_from(&key.tags);
        if let Some(name) = &key.name {
            entry = entry.with_key_name(name.as_str());
        }
        if let Some(p) = &key.principal {
            entry = entry.with_principal(&**p);
        }
        // The intent carries what a recovery would charge: the prompt's estimate, as a
        // failed (502) request; `finish` overwrites all of it.
        let (input_tokens, input_cost) = at.prompt;
        entry.input_tokens = input_tokens;
        entry.cost = input_cost;
        entry.status = 502;
        let intent = writer.intent(&entry);
        Some(Pending {
            entry,
            started: at.started,
            writer,
            intent,
            presence: identity.presence.clone(),
            metrics: dp.metrics.clone(),
        })
    }

    /// Records a failed attempt at a deployment before the one that served.
    pub(crate) fn attempt(&mut self, attempt: Attempt) {
        self.entry.attempts.push(attempt);
    }

    /// The deployment that actually served (after fallback), and whether it has a price.
    pub(crate) fn served_by(&mut self, d: &Deployment, priced: bool) {
        self.entry.provider = d.provider.to_string();
        self.entry.served_model = d.upstream_model.to_string();
        self.entry.priced = priced;
    }

    /// Completes the entry with what was charged and hands it to the writer. A success
    /// the caller left before receiving is recorded as 499 (it is still charged).
    pub(crate) fn finish(self, usage: &Usage, source: UsageSource, cost: Money, status: u16) {
        let status = if (200..300).contains(&status) && self.presence.gone() { 499 } else { status };
        let latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let entry = self.entry.with_usage(usage, source).with_cost(cost).with_outcome(status, latency_ms);
        if !entry.priced {
            self.metrics.unpriced_entry();
        }
        let request_id = entry.request_id.clone();
        if let Err(e) = self.writer.settle(self.intent, entry) {
            // The writer already tried the spool; this is the one place an entry can be
            // lost, so it is loud.
            tracing::error!(request_id = %request_id, error = %e, "ledger entry could not be recorded");
        }
    }
}
