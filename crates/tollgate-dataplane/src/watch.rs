//! Keeps the snapshot in step with a remote control plane over gRPC `Watch` (a full
//! snapshot when the gateway is new or too far behind, then one change per revision),
//! and seeds budget counters from the ledger before a snapshot or change brings a budget
//! they have not counted yet ([`BudgetSeeder`], shared by standalone and split mode).

use crate::{DataPlane, Update};
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tollgate_budgets::Amount;
use tollgate_core::{BudgetId, Timestamp};
use tollgate_proto::v1::config_service_client::ConfigServiceClient;
use tollgate_proto::v1::{self, Snapshot as WireSnapshot, WatchRequest};

/// The answer of a [`SpendSource`]: what counts against a budget in its current window.
pub type SpendFuture<'a> =
    Pin<Box<dyn Future<Output = Result<Amount, Box<dyn std::error::Error + Send + Sync>>> + Send + 'a>>;

/// Where a budget's spend so far comes from: the ledger, read by the control plane (in
/// process for a standalone gateway, over gRPC `GetBudgetSpend` in split mode).
pub trait SpendSource: Send + Sync {
    /// What counts against budget `id` in its window containing `at` (money and tokens),
    /// from the ledger; reset-aware on the control plane's side.
    fn budget_spend<'a>(&'a self, id: &'a BudgetId, at: Timestamp) -> SpendFuture<'a>;
}

/// Longest wait for one spend answer; past it the snapshot is applied without waiting
/// for the rest, so a slow ledger never stalls configuration changes.
const SPEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Budget counters are a cache of the ledger (design §5): each budget, and each reset
/// epoch of it, is seeded with its window's spend the first time a snapshot or a change
/// brings it, before that update is applied, so no request is admitted against a counter that
/// starts from zero after a restart.
///
/// A counter that already holds spend or reservations is left alone: with counters
/// shared in Redis another gateway is already counting that window, and its counter
/// also holds spend still on its way to the ledger, so overwriting it with the ledger's
/// (smaller) figure would lose spend. Seeding sets the committed value rather than
/// adding to it, so two gateways seeding the same empty counter at once count it once.
///
/// When the spend cannot be read (control plane unreachable, timeout), the budget is
/// logged and counted from zero on this gateway rather than holding the snapshot back.
pub struct BudgetSeeder {
    source: Arc<dyn SpendSource>,
    seen: HashSet<(String, u32)>,
}

impl std::fmt::Debug for BudgetSeeder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BudgetSeeder").field("seen", &self.seen.len()).finish_non_exhaustive()
    }
}

impl BudgetSeeder {
    /// A seeder that has seen no budget yet, reading spend from `source`.
    pub fn new(source: Arc<dyn SpendSource>) -> Self {
        BudgetSeeder { source, seen: HashSet::new() }
    }

    /// Seeds the counters of every budget (id and epoch) of `snapshot` not seen before
    /// with its current window's spend. Call it before `dp.apply(snapshot)`.
    pub async fn seed_new(&mut self, dp: &DataPlane, snapshot: &WireSnapshot) {
        self.seed_budgets(dp, &snapshot.budgets).await;
    }

    /// Seeds the counters of every budget (id and epoch) `update` brings that was not
    /// seen before. Call it before `dp.apply_update(update)`.
    pub async fn seed_update(&mut self, dp: &DataPlane, update: Update<'_>) {
        match update {
            Update::Snapshot(s) => self.seed_budgets(dp, &s.budgets).await,
            Update::Change(c) => self.seed_budgets(dp, &c.upsert_budgets).await,
        }
    }

    async fn seed_budgets(&mut self, dp: &DataPlane, budgets: &[v1::Budget]) {
        let now = Timestamp::now();
        let mut unreachable = false;
        for wire in budgets {
            if !self.seen.insert((wire.id.clone(), wire.epoch)) || unreachable {
                continue;
            }
            // Not silent: the same budget is rejected, logged and counted when the update
            // is applied; there is just nothing to seed for it.
            let Ok(budget) = tollgate_proto::convert::budget(wire) else { continue };
            let spent = match tokio::time::timeout(SPEND_TIMEOUT, self.source.budget_spend(&budget.id, now)).await {
                Ok(Ok(spent)) => spent,
                Ok(Err(e)) => {
                    tracing::warn!(budget = %budget.id, error = %e, "could not read budget spend from the ledger; counting from zero");
                    continue;
                }
                Err(_) => {
                    tracing::warn!(budget = %budget.id, "budget spend query timed out; applying the snapshot without seeding the rest");
                    unreachable = true;
                    continue;
                }
            };
            if spent == Amount::ZERO {
                continue;
            }
            match dp.budgets().usage(&budget, now).await {
                Ok(u) if u.committed != Amount::ZERO || u.reserved != Amount::ZERO => continue,
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(budget = %budget.id, error = %e, "could not read budget counters; not seeding");
                    continue;
                }
            }
            if let Err(e) = dp.budgets().seed(&budget, Some(now), spent).await {
                tracing::error!(budget = %budget.id, error = %e, "could not seed budget counters from the ledger");
            }
        }
    }
}

/// Where the control plane is and how to authenticate to it.
#[derive(Clone)]
pub struct WatchConfig {
    /// gRPC endpoint, e.g. `http://127.0.0.1:4002`.
    pub endpoint: String,
    /// Admin token with the right to read configuration.
    pub token: String,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
}

impl std::fmt::Debug for WatchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchConfig").field("endpoint", &self.endpoint).field("token", &"<redacted>").finish()
    }
}

/// Follows the control plane forever: connects, resumes from the current revision,
/// applies every snapshot and change it sends (after `seeder` has seeded the budgets
/// they bring), and reconnects with jittered exponential backoff when the stream breaks
/// or a change does not start from the gateway's revision. The gateway keeps serving
/// its last snapshot meanwhile.
pub async fn watch_control_plane(dp: Arc<DataPlane>, cfg: WatchConfig, mut seeder: BudgetSeeder) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let before = dp.snapshot().revision;
        match follow(&dp, &cfg, &mut seeder).await {
            Ok(()) => tracing::warn!("control plane closed the watch stream; reconnecting"),
            Err(e) => tracing::warn!(error = %e, "control plane watch failed; retrying"),
        }
        if dp.snapshot().revision != before {
            // The stream delivered data, so the control plane was healthy: retry quickly.
            backoff = Duration::from_millis(100);
        }
        let half = u64::try_from(backoff.as_millis() / 2).unwrap_or(u64::MAX);
        let jitter = Duration::from_millis(rand::random::<u64>() % (half + 1));
        tokio::time::sleep(backoff + jitter).await;
        backoff = (backoff * 2).min(cfg.max_backoff);
    }
}

async fn follow(
    dp: &DataPlane,
    cfg: &WatchConfig,
    seeder: &mut BudgetSeeder,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let channel = tonic::transport::Endpoint::from_shared(cfg.endpoint.clone())?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect()
        .await?;
    let mut client = ConfigServiceClient::new(channel).max_decoding_message_size(1 << 30);
    let since = {
        let s = dp.snapshot();
        if s.loaded { s.revision } else { 0 }
    };
    let mut req = tonic::Request::new(WatchRequest { since_revision: since, accept_changes: true });
    let auth =
        format!("Bearer {}", cfg.token).parse().map_err(|_| "control-plane token is not a valid header value")?;
    req.metadata_mut().insert("authorization", auth);
    let mut stream = client.watch(req).await?.into_inner();
    tracing::info!(endpoint = %cfg.endpoint, since, "watching control plane");
    while let Some(msg) = stream.message().await? {
        let update = match (&msg.snapshot, &msg.change) {
            (Some(snapshot), _) => Update::Snapshot(snapshot),
            (None, Some(change)) => Update::Change(change),
            (None, None) => {
                tracing::warn!(revision = msg.revision, "watch message with neither snapshot nor change; skipped");
                continue;
            }
        };
        apply_one(dp, seeder, update).await?;
    }
    Ok(())
}

/// Seeds then applies one update. A change that does not start from the gateway's
/// revision is an error: the stream is out of step, so the caller reconnects from the
/// revision the gateway has (and the control plane sends what reaches it from there).
async fn apply_one(
    dp: &DataPlane,
    seeder: &mut BudgetSeeder,
    update: Update<'_>,
) -> Result<Vec<crate::Rejected>, crate::ChangeError> {
    seeder.seed_update(dp, update).await;
    dp.apply_update(update).inspect_err(|e| {
        tracing::warn!(error = %e, "configuration change refused; catching up from this gateway's revision");
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use tokio::sync::mpsc;
    use tollgate_core::KeyId;
    use tollgate_keys::KeyStatus;
    use tollgate_proto::v1::config_service_server::{ConfigService, ConfigServiceServer};
    use tonic::{Request, Response, Status};

    /// A control plane that answers each `Watch` call with the next scripted messages
    /// and then keeps the stream open, reporting every `since_revision` it is asked for.
    struct ScriptedControlPlane {
        asked: mpsc::UnboundedSender<(i64, bool)>,
        script: Mutex<VecDeque<Vec<v1::WatchResponse>>>,
    }

    type Stream = Pin<Box<dyn tokio_stream::Stream<Item = Result<v1::WatchResponse, Status>> + Send>>;

    #[tonic::async_trait]
    impl ConfigService for ScriptedControlPlane {
        type WatchStream = Stream;

        async fn watch(&self, req: Request<WatchRequest>) -> Result<Response<Stream>, Status> {
            let r = req.into_inner();
            let _ = self.asked.send((r.since_revision, r.accept_changes));
            let msgs = self.script.lock().unwrap().pop_front().unwrap_or_default();
            let open =
                tokio_stream::StreamExt::chain(tokio_stream::iter(msgs.into_iter().map(Ok)), tokio_stream::pending());
            Ok(Response::new(Box::pin(open)))
        }
    }

    struct NoSpend;

    impl SpendSource for NoSpend {
        fn budget_spend<'a>(&'a self, _: &'a BudgetId, _: Timestamp) -> SpendFuture<'a> {
            Box::pin(async { Ok(Amount::ZERO) })
        }
    }

    fn key(status: &str) -> v1::Key {
        v1::Key {
            id: "key_a".into(),
            org_id: "org_1".into(),
            team_id: "team_1".into(),
            project_id: "prj_1".into(),
            status: status.into(),
            key_hash: vec![1; 32],
            ..Default::default()
        }
    }

    fn change(from: i64, to: i64, status: &str) -> v1::WatchResponse {
        let c = v1::ConfigChange {
            from_revision: from,
            revision: to,
            upsert_keys: vec![key(status)],
            ..Default::default()
        };
        v1::WatchResponse { revision: to, snapshot: None, change: Some(c) }
    }

    #[tokio::test]
    async fn a_change_out_of_step_makes_the_gateway_resume_from_its_own_revision() {
        let snapshot =
            WireSnapshot { revision: 3, key_pepper: vec![2; 32], keys: vec![key("active")], ..Default::default() };
        let script = VecDeque::from([
            // Connection 1: the snapshot, then a change that skips revisions 4 to 6.
            vec![v1::WatchResponse { revision: 3, snapshot: Some(snapshot), change: None }, change(6, 7, "revoked")],
            // Connection 2: what follows revision 3.
            vec![change(3, 4, "revoked")],
        ]);
        let (asked, mut asks) = mpsc::unbounded_channel();
        let cp = ScriptedControlPlane { asked, script: Mutex::new(script) };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(ConfigServiceServer::new(cp))
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );

        let dp = DataPlane::new(Config::default()).unwrap();
        let cfg = WatchConfig { endpoint, token: "t".into(), max_backoff: Duration::from_millis(200) };
        let follower = tokio::spawn(watch_control_plane(dp.clone(), cfg, BudgetSeeder::new(Arc::new(NoSpend))));
        let wait = Duration::from_secs(10);
        assert_eq!(tokio::time::timeout(wait, asks.recv()).await.unwrap(), Some((0, true)));
        assert_eq!(
            tokio::time::timeout(wait, asks.recv()).await.unwrap(),
            Some((3, true)),
            "resumes from its revision"
        );
        let revoked = tokio::time::timeout(wait, async {
            loop {
                if dp.snapshot().revision == 4 {
                    return dp.snapshot().keys.get(&KeyId::new("key_a")).map(|k| k.status);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        assert_eq!(revoked, Some(KeyStatus::Revoked), "the change in step is applied");
        follower.abort();
    }
}
