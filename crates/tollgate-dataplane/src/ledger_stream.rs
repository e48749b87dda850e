//! The split-mode ledger sink: a gateway hands its ledger batches to the control plane
//! over gRPC (`LedgerService.PushLedger`), behind the metering crate's `LedgerWriter`,
//! which spools them to local disk while the control plane is unreachable.
//!
//! **One client-streaming call per batch**, not one long-lived stream: a client stream
//! has a single answer, at its end, so only a call that ends can acknowledge that its
//! entries are stored — and `LedgerSink::write_batch` must not return `Ok` before that.
//! A long-lived stream would acknowledge nothing until it closed, leaving every entry
//! sent on it in doubt after a disconnect. The calls share one HTTP/2 connection
//! (tonic's `Channel`), so a batch costs one HTTP/2 stream, not a connection; the
//! writer already sends at most one batch at a time, in order.
//!
//! Failures map to the sink contract: `INVALID_ARGUMENT` (an entry the control plane can
//! never store) is `SinkError::Rejected`, so the writer isolates the bad entry into its
//! dead-letter file; anything else (unreachable, unauthenticated, storage down) is
//! `SinkError::Unavailable`, so the batch is spooled and retried. The control plane
//! stores entries idempotently by request id, so a batch re-sent after a lost answer is
//! stored once.

use std::time::Duration;
use tollgate_budgets::Amount;
use tollgate_core::{BudgetId, Money, Timestamp};
use tollgate_metering::{LedgerEntry, LedgerSink, SinkError, SinkFuture};
use tollgate_proto::convert::ledger_entry_to_wire;
use tollgate_proto::v1::ledger_service_client::LedgerServiceClient;
use tollgate_proto::v1::{GetBudgetSpendRequest, LedgerBatch};
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};

/// Entries per `LedgerBatch` message, so one message stays far below gRPC's 4 MiB
/// default even with large metadata.
const ENTRIES_PER_MESSAGE: usize = 64;

/// Why the ledger stream client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum LedgerStreamError {
    /// The endpoint is not a valid URI.
    #[error("invalid control-plane endpoint {0:?}")]
    Endpoint(String),
    /// The token cannot be sent as a header value.
    #[error("control-plane token is not a valid header value")]
    Token,
    /// A spend query failed.
    #[error("control plane answered {code:?}: {message}")]
    Call {
        /// The gRPC code.
        code: tonic::Code,
        /// Its message.
        message: String,
    },
}

impl tollgate_core::ServiceError for LedgerStreamError {
    fn code(&self) -> tollgate_core::ErrorCode {
        match self {
            LedgerStreamError::Endpoint(_) | LedgerStreamError::Token => tollgate_core::ErrorCode::Internal,
            LedgerStreamError::Call { .. } => tollgate_core::ErrorCode::Unavailable,
        }
    }
}

/// A [`LedgerSink`] that pushes batches to a remote control plane.
#[derive(Clone)]
pub struct GrpcLedgerSink {
    client: LedgerServiceClient<Channel>,
    auth: MetadataValue<Ascii>,
}

impl std::fmt::Debug for GrpcLedgerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrpcLedgerSink").field("auth", &"<redacted>").finish_non_exhaustive()
    }
}

fn status_text(s: &tonic::Status) -> String {
    // Code and message only: a Status's Display also prints metadata.
    format!("{:?}: {}", s.code(), s.message())
}

impl GrpcLedgerSink {
    /// A sink for the control plane at `endpoint` (e.g. `http://10.0.0.5:4002`),
    /// authenticated with `token`. Connects lazily: the control plane need not be up yet.
    pub fn new(endpoint: &str, token: &str) -> Result<Self, LedgerStreamError> {
        let channel = Endpoint::from_shared(endpoint.to_owned())
            .map_err(|_| LedgerStreamError::Endpoint(endpoint.chars().take(256).collect()))?
            .connect_timeout(Duration::from_secs(5))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(15))
            .keep_alive_timeout(Duration::from_secs(10))
            .connect_lazy();
        let auth = format!("Bearer {token}").parse().map_err(|_| LedgerStreamError::Token)?;
        Ok(GrpcLedgerSink { client: LedgerServiceClient::new(channel), auth })
    }

    async fn push(&self, entries: &[LedgerEntry]) -> Result<(), SinkError> {
        if entries.is_empty() {
            return Ok(());
        }
        let messages: Vec<LedgerBatch> = entries
            .chunks(ENTRIES_PER_MESSAGE)
            .map(|c| LedgerBatch { entries: c.iter().map(ledger_entry_to_wire).collect() })
            .collect();
        let mut req = tonic::Request::new(tokio_stream::iter(messages));
        req.metadata_mut().insert("authorization", self.auth.clone());
        let mut client = self.client.clone();
        match client.push_ledger(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == tonic::Code::InvalidArgument => Err(SinkError::rejected(status_text(&s))),
            Err(s) => Err(SinkError::unavailable(status_text(&s))),
        }
    }

    /// What counts against budget `budget_id` in its window at `at_ms` (unix ms; 0 for
    /// now), read by the control plane from its ledger: `(cost_nanos, tokens)`.
    pub async fn budget_spend(&self, budget_id: &str, at_ms: i64) -> Result<(i64, u64), LedgerStreamError> {
        let mut req = tonic::Request::new(GetBudgetSpendRequest { budget_id: budget_id.to_owned(), at_ms });
        req.metadata_mut().insert("authorization", self.auth.clone());
        let mut client = self.client.clone();
        let resp = client
            .get_budget_spend(req)
            .await
            .map_err(|s| LedgerStreamError::Call { code: s.code(), message: s.message().to_owned() })?
            .into_inner();
        Ok((resp.cost_nanos, resp.tokens))
    }
}

/// Split mode's [`crate::SpendSource`]: the control plane's `GetBudgetSpend`, so a
/// gateway seeds its counters from the same ledger a standalone one does.
impl crate::SpendSource for GrpcLedgerSink {
    fn budget_spend<'a>(&'a self, id: &'a BudgetId, at: Timestamp) -> crate::SpendFuture<'a> {
        Box::pin(async move {
            let (nanos, tokens) = GrpcLedgerSink::budget_spend(self, id.as_str(), at.unix_millis()).await?;
            Ok(Amount { money: Money::from_nanos(nanos), tokens })
        })
    }
}

impl LedgerSink for GrpcLedgerSink {
    fn write_batch<'a>(&'a self, entries: &'a [LedgerEntry]) -> SinkFuture<'a> {
        Box::pin(self.push(entries))
    }
}
