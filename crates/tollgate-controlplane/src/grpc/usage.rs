//! Spend over gRPC: `AdminService.GetUsage` (the JSON report of `/api/v1/usage`) and
//! `LedgerService`, through which split-mode gateways push their ledger entries and
//! read a budget's spend to seed counters they do not share.

use super::{actor, gateway};
use crate::ControlError;
use crate::service::{Service, UsageFormat, UsageQuery};
use std::sync::Arc;
use tollgate_core::Timestamp;
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

pub(super) async fn get_usage(
    svc: &Service,
    req: Request<v1::GetUsageRequest>,
) -> Result<Response<v1::GetUsageResponse>, Status> {
    let actor = actor(svc, &req).await?;
    let mut params = req.into_inner().params;
    if params.get("format").is_some_and(|f| f != "json") {
        return Err(ControlError::invalid("format", "GetUsage answers JSON; use REST for CSV").grpc());
    }
    params.remove("format");
    let q = UsageQuery::parse(params.into_iter().collect(), Timestamp::now()).map_err(|e| e.grpc())?;
    debug_assert_eq!(q.format, UsageFormat::Json);
    let report = svc.usage(&actor, &q).await.map_err(|e| e.grpc())?;
    Ok(Response::new(v1::GetUsageResponse { report_json: report.to_json().to_string() }))
}

/// The most ledger entries one `PushLedger` call may carry; a gateway's batches are far
/// smaller (256 by default).
const MAX_PUSH_ENTRIES: usize = 10_000;

/// `LedgerService`: gateways of split mode push their ledger entries, and read a
/// budget's spend to seed counters they do not share.
pub(crate) struct LedgerApi {
    svc: Arc<Service>,
    metrics: Arc<crate::metrics::Metrics>,
}

impl LedgerApi {
    /// Stores pushed entries through `svc`'s store, counting them in `metrics`.
    pub(crate) fn new(svc: Arc<Service>, metrics: Arc<crate::metrics::Metrics>) -> Self {
        LedgerApi { svc, metrics }
    }
}

#[tonic::async_trait]
impl v1::ledger_service_server::LedgerService for LedgerApi {
    async fn push_ledger(
        &self,
        req: Request<tonic::Streaming<v1::LedgerBatch>>,
    ) -> Result<Response<v1::PushLedgerAck>, Status> {
        gateway(&self.svc, &req).await?;
        let mut stream = req.into_inner();
        let mut entries = Vec::new();
        while let Some(batch) = stream.message().await? {
            if entries.len() + batch.entries.len() > MAX_PUSH_ENTRIES {
                return Err(Status::invalid_argument(format!(
                    "at most {MAX_PUSH_ENTRIES} ledger entries per PushLedger call"
                )));
            }
            for w in &batch.entries {
                entries.push(
                    tollgate_proto::convert::ledger_entry(w).map_err(|e| Status::invalid_argument(e.to_string()))?,
                );
            }
        }
        let received = entries.len() as u64;
        // Idempotent by request id: a batch re-sent after a lost answer stores nothing new.
        tollgate_metering::LedgerSink::write_batch(self.svc.store(), &entries).await.map_err(|e| {
            let detail = std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default();
            if e.is_retryable() {
                tracing::warn!(error = %e, %detail, "could not store pushed ledger entries; the gateway keeps them");
                Status::unavailable("ledger store unavailable")
            } else {
                Status::invalid_argument(format!("{e}: {detail}"))
            }
        })?;
        self.metrics.ledger_received(received);
        Ok(Response::new(v1::PushLedgerAck { received }))
    }

    async fn get_budget_spend(
        &self,
        req: Request<v1::GetBudgetSpendRequest>,
    ) -> Result<Response<v1::GetBudgetSpendResponse>, Status> {
        gateway(&self.svc, &req).await?;
        let r = req.into_inner();
        let at = if r.at_ms == 0 { Timestamp::now() } else { Timestamp::from_unix_millis(r.at_ms) };
        let (money, tokens) =
            self.svc.budget_spend(&tollgate_core::BudgetId::new(r.budget_id), at).await.map_err(|e| e.grpc())?;
        Ok(Response::new(v1::GetBudgetSpendResponse { cost_nanos: money.nanos(), tokens }))
    }
}
