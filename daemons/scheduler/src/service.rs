//! The gRPC face of the scheduler: turns the two announce streams into [`Scheduler`] calls.
//!
//! Once `stopping` is cancelled, new streams are refused (`UNAVAILABLE`), so a peer told to
//! reconnect does not land on this dying process again; a stream accepted in the same instant
//! is closed again at once (see `crate::restart`).

use std::pin::Pin;
use std::sync::Arc;

use df_proto::scheduler::v1 as pb;
use futures_util::Stream;
use pb::host_request::Request as HostMsg;
use pb::peer_request::Request as PeerMsg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use crate::preheat::JobStore;
use crate::scheduling::Scheduler;

pub struct SchedulerService {
    pub scheduler: Arc<Scheduler>,
    /// Host streams carry preheat reports; a host's departure wakes the jobs waiting on it.
    pub jobs: Arc<JobStore>,
    /// The stream readers run here, so shutdown waits for them (within its bound).
    pub tracker: TaskTracker,
    /// Cancelled when the scheduler starts going away.
    pub stopping: CancellationToken,
}

fn going_away() -> Status {
    Status::unavailable("scheduler is shutting down; reconnect")
}

type ReplyStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

#[tonic::async_trait]
impl pb::scheduler_server::Scheduler for SchedulerService {
    type AnnounceHostStream = ReplyStream<pb::HostResponse>;
    type AnnouncePeerStream = ReplyStream<pb::PeerResponse>;

    async fn announce_host(
        &self,
        request: Request<Streaming<pb::HostRequest>>,
    ) -> Result<Response<Self::AnnounceHostStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("host stream closed before registering"))?;
        let Some(HostMsg::Register(info)) = first.request else {
            return Err(Status::invalid_argument(
                "the first host message must be register",
            ));
        };
        if info.host_id.is_empty() {
            return Err(Status::invalid_argument("register names no host_id"));
        }
        if self.stopping.is_cancelled() {
            return Err(going_away());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (host_id, generation) = self
            .scheduler
            .host_connected(info, tx)
            .map_err(|e| Status::resource_exhausted(e.to_string()))?;
        if self.stopping.is_cancelled() {
            self.scheduler.host_disconnected(&host_id, generation);
            return Err(going_away());
        }
        let scheduler = self.scheduler.clone();
        let jobs = self.jobs.clone();
        // Not cut at shutdown: the peer is told to reconnect first and then closes its half,
        // which ends the reader (the daemon's grace bounds the wait).
        self.tracker.spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(msg)) => match msg.request {
                        Some(HostMsg::Heartbeat(hb)) => scheduler.host_heartbeat(&host_id, hb),
                        Some(HostMsg::Held(held)) => scheduler.host_held(&host_id, held),
                        Some(HostMsg::Evicted(ev)) => scheduler.host_evicted(&host_id, ev),
                        Some(HostMsg::PreheatReport(r)) => jobs.report(&host_id, r),
                        Some(HostMsg::Register(_)) | None => {}
                    },
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(host_id = %host_id, error = %status, "host stream error");
                        break;
                    }
                }
            }
            scheduler.host_disconnected(&host_id, generation);
            jobs.host_departed();
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }

    async fn announce_peer(
        &self,
        request: Request<Streaming<pb::PeerRequest>>,
    ) -> Result<Response<Self::AnnouncePeerStream>, Status> {
        let mut inbound = request.into_inner();
        let first = inbound
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("peer stream closed before registering"))?;
        let Some(PeerMsg::Register(reg)) = first.request else {
            return Err(Status::invalid_argument(
                "the first peer message must be register",
            ));
        };
        if self.stopping.is_cancelled() {
            return Err(going_away());
        }
        let (tx, rx) = mpsc::unbounded_channel();
        let (task_id, peer_id, generation) = self.scheduler.peer_register(reg, tx)?;
        if self.stopping.is_cancelled() {
            self.scheduler
                .peer_stream_closed(&task_id, &peer_id, generation);
            return Err(going_away());
        }
        let scheduler = self.scheduler.clone();
        // Not cut at shutdown: the peer is told to reconnect first and then closes its half,
        // which ends the reader (the daemon's grace bounds the wait).
        self.tracker.spawn(async move {
            loop {
                match inbound.message().await {
                    Ok(Some(pb::PeerRequest { request: Some(msg) })) => {
                        scheduler.peer_message(&task_id, &peer_id, msg);
                    }
                    Ok(Some(_)) => {}
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(task_id = %task_id, peer_id = %peer_id, error = %status, "peer stream error");
                        break;
                    }
                }
            }
            scheduler.peer_stream_closed(&task_id, &peer_id, generation);
        });
        Ok(Response::new(Box::pin(UnboundedReceiverStream::new(rx))))
    }
}
