//! `ConfigService.Watch`: a gateway's feed of configuration, as changes after its
//! revision when the shared history holds them, else a full snapshot first.

use super::gateway;
use crate::changes::Feed;
use crate::service::Service;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tollgate_proto::v1;
use tonic::{Request, Response, Status};

/// `ConfigService`: streams the configuration to gateways.
pub(crate) struct ConfigApi {
    svc: Arc<Service>,
    feed: Arc<Feed>,
}

impl ConfigApi {
    /// Serves what is published on `feed`.
    pub(crate) fn new(svc: Arc<Service>, feed: Arc<Feed>) -> Self {
        ConfigApi { svc, feed }
    }
}

type WatchStream = Pin<Box<dyn Stream<Item = Result<v1::WatchResponse, Status>> + Send>>;

/// Messages buffered per watcher: a slow gateway holds back only its own stream.
const BUFFER: usize = 4;

#[tonic::async_trait]
impl v1::config_service_server::ConfigService for ConfigApi {
    type WatchStream = WatchStream;

    async fn watch(&self, req: Request<v1::WatchRequest>) -> Result<Response<WatchStream>, Status> {
        gateway(&self.svc, &req).await?;
        let r = req.get_ref();
        if r.since_revision < 0 {
            return Err(Status::invalid_argument("since_revision must not be negative"));
        }
        let mut sub = self.feed.subscribe(r.since_revision, r.accept_changes);
        let (tx, rx) = tokio::sync::mpsc::channel(BUFFER);
        tokio::spawn(async move {
            // `None`: the control plane is shutting down.
            while let Some(items) = sub.next().await {
                for item in &items {
                    if tx.send(Ok(item.to_response())).await.is_err() {
                        return; // the gateway went away
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))))
    }
}
