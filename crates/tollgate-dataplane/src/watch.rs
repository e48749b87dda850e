//! Keeps the snapshot in step with a remote control plane over gRPC `Watch`.

use crate::DataPlane;
use std::sync::Arc;
use std::time::Duration;
use tollgate_proto::v1::WatchRequest;
use tollgate_proto::v1::config_service_client::ConfigServiceClient;

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
/// applies every snapshot it sends, and reconnects with jittered exponential backoff
/// when the stream breaks. The gateway keeps serving its last snapshot meanwhile.
pub async fn watch_control_plane(dp: Arc<DataPlane>, cfg: WatchConfig) {
    let mut backoff = Duration::from_millis(100);
    loop {
        let before = dp.snapshot().revision;
        match follow(&dp, &cfg).await {
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

async fn follow(dp: &DataPlane, cfg: &WatchConfig) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
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
    let mut req = tonic::Request::new(WatchRequest { since_revision: since });
    let auth =
        format!("Bearer {}", cfg.token).parse().map_err(|_| "control-plane token is not a valid header value")?;
    req.metadata_mut().insert("authorization", auth);
    let mut stream = client.watch(req).await?.into_inner();
    tracing::info!(endpoint = %cfg.endpoint, since, "watching control plane");
    while let Some(msg) = stream.message().await? {
        if let Some(snapshot) = msg.snapshot {
            dp.apply(&snapshot);
        }
    }
    Ok(())
}
