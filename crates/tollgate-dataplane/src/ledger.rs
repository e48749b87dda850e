//! One ledger entry per request that reached an upstream: who (key, principal, project,
//! team, org, and the key's tags), what (requested and served model, provider), how much (usage, its
//! source, cost) and how it went (status, latency, stream). Handed to the metering
//! crate's `LedgerWriter`, which batches it off the request path and spools it while
//! the sink is down.

use std::time::Instant;
use tollgate_core::Money;
use tollgate_keys::VirtualKey;
use tollgate_metering::{Attempt, LedgerEntry, LedgerWriter, Usage, UsageSource};
use tollgate_routing::Deployment;

/// The parts of an entry known before dispatch; completed by [`Pending::finish`].
pub(crate) struct Pending {
    entry: LedgerEntry,
    started: Instant,
    writer: LedgerWriter,
}

impl Pending {
    /// Starts an entry when the data plane has a ledger; `None` (and no allocation)
    /// otherwise.
    pub(crate) fn start(
        writer: Option<&LedgerWriter>,
        request_id: &str,
        key: &VirtualKey,
        model: &str,
        deployment: &Deployment,
        stream: bool,
        started: Instant,
    ) -> Option<Pending> {
        let writer = writer?.clone();
        let mut entry = LedgerEntry::new(request_id, key.id.clone(), key.project.clone(), model)
            .with_tenancy(key.team.clone(), key.org.clone())
            .with_served_by(&*deployment.provider, &*deployment.upstream_model)
            .with_metadata(key.metadata.to_map())
            .with_stream(stream);
        entry.tags.clone_from(&key.tags);
        if let Some(name) = &key.name {
            entry = entry.with_key_name(name.as_str());
        }
        if let Some(p) = &key.principal {
            entry = entry.with_principal(&**p);
        }
        Some(Pending { entry, started, writer })
    }

    /// Records a failed attempt at a deployment before the one that served.
    pub(crate) fn attempt(&mut self, attempt: Attempt) {
        self.entry.attempts.push(attempt);
    }

    /// The deployment that actually served (after fallback).
    pub(crate) fn served_by(&mut self, d: &Deployment) {
        self.entry.provider = d.provider.to_string();
        self.entry.served_model = d.upstream_model.to_string();
    }

    /// Completes the entry with what was charged and hands it to the writer.
    pub(crate) fn finish(self, usage: &Usage, source: UsageSource, cost: Money, status: u16) {
        let latency_ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let entry = self.entry.with_usage(usage, source).with_cost(cost).with_outcome(status, latency_ms);
        let request_id = entry.request_id.clone();
        if let Err(e) = self.writer.record(entry) {
            // The writer already tried the spool; this is the one place an entry can be
            // lost, so it is loud.
            tracing::error!(request_id = %request_id, error = %e, "ledger entry could not be recorded");
        }
    }
}
