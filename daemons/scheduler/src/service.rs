//! The gRPC face of the scheduler: turns the two announce streams into [`Scheduler`] calls.
//!
//! Once `stopping` is cancelled, new streams are refused (`UNAVAILABLE`), so a peer told to
//! reconnect does not land on this dying process again; a stream accepted in the same instant
//! is closed again at once (see `crate::restart`).
//!
//! With TLS on, a stream is served only when what it announces belongs to the certificate it
//! came with ([`df_core::identity`]): its host ID, hostname and host type on a host stream,
//! its host and peer IDs on a download stream. Anything else is `PermissionDenied` with the
//! reason, before the scheduler's state is touched. The tasks a bound host re-announces as
//! held keep only its own peer IDs.

use std::pin::Pin;
use std::sync::Arc;

use crate::outbox::{DOWNLOAD_BOUND, HOST_BOUND, outbox};
use df_proto::scheduler::v1 as pb;
use futures_util::Stream;
use pb::host_request::Request as HostMsg;
use pb::peer_request::Request as PeerMsg;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::{Request, Response, Status, Streaming};

use df_core::identity::{Denied, HostClaim, Identity, check_host, check_peer};

use crate::link::LinkInfo;
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
    /// TLS is on: every stream must come with a verified identity.
    pub identity_required: bool,
}

fn going_away() -> Status {
    Status::unavailable("scheduler is shutting down; reconnect")
}

/// The connection `request` came on (its address and verified identity).
fn link_of<T>(request: &Request<T>) -> Option<LinkInfo> {
    request.extensions().get::<LinkInfo>().cloned()
}

/// Logs a refused stream with where it came from.
fn refused(link: Option<&LinkInfo>, status: &Status) {
    tracing::warn!(remote = ?link.map(|l| l.remote), error = %status.message(), "refused an announcement");
}

fn host_claim(info: &pb::HostInfo) -> HostClaim<'_> {
    HostClaim {
        host_id: &info.host_id,
        hostname: &info.hostname,
        ip: &info.ip,
        seed: info.host_type == pb::HostType::Seed as i32,
    }
}

impl SchedulerService {
    /// Whether `id` may announce host `info` (anything goes under the plaintext opt-out).
    fn authorize_host(&self, id: Option<&Identity>, info: &pb::HostInfo) -> Result<(), Status> {
        match id {
            Some(id) => check_host(id, &host_claim(info)).map_err(denied),
            None if self.identity_required => Err(Status::unauthenticated(
                "no client certificate on this connection",
            )),
            None => Ok(()),
        }
    }

    /// Whether `id` may open the download stream `reg`.
    fn authorize_peer(&self, id: Option<&Identity>, reg: &pb::RegisterPeer) -> Result<(), Status> {
        if let Some(host) = &reg.host {
            self.authorize_host(id, host)?;
            if host.host_id != reg.host_id {
                return Err(Status::permission_denied(format!(
                    "register names host_id '{}' but its host is '{}'",
                    reg.host_id, host.host_id
                )));
            }
        }
        match id {
            Some(id) => check_peer(id, &reg.host_id, &reg.peer_id, reg.seed).map_err(denied),
            None if self.identity_required => Err(Status::unauthenticated(
                "no client certificate on this connection",
            )),
            None => Ok(()),
        }
    }
}

/// The held tasks whose peer IDs belong to `host_id` (`<host id>-<uuid>`); a certificate
/// bound host cannot plant copies under another host's peers.
fn own_tasks(host_id: &str, mut held: pb::HeldTasks) -> pb::HeldTasks {
    held.tasks.retain(|t| {
        let own = t
            .peer_id
            .strip_prefix(host_id)
            // `<ip>-<name>-seed-<uuid>` is the seed host of the same name, not this one.
            .is_some_and(|rest| rest.len() > 1 && rest.starts_with('-') && !rest.starts_with("-seed-"));
        if !own {
            tracing::warn!(host_id, peer_id = %t.peer_id, "ignoring a held task under another host's peer ID");
        }
        own
    });
    held
}

fn denied(e: Denied) -> Status {
    Status::permission_denied(e.to_string())
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
        let link = link_of(&request);
        let identity = link.as_ref().and_then(|l| l.identity.clone());
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
        self.authorize_host(identity.as_deref(), &info)
            .inspect_err(|s| refused(link.as_ref(), s))?;
        let bound = identity.is_some();
        let (tx, rx) = outbox(HOST_BOUND);
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
                        Some(HostMsg::Held(held)) => {
                            let held = if bound {
                                own_tasks(host_id.as_str(), held)
                            } else {
                                held
                            };
                            scheduler.host_held(&host_id, held);
                        }
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
        Ok(Response::new(Box::pin(rx.into_stream())))
    }

    async fn announce_peer(
        &self,
        request: Request<Streaming<pb::PeerRequest>>,
    ) -> Result<Response<Self::AnnouncePeerStream>, Status> {
        let link = link_of(&request);
        let identity = link.as_ref().and_then(|l| l.identity.clone());
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
        self.authorize_peer(identity.as_deref(), &reg)
            .inspect_err(|s| refused(link.as_ref(), s))?;
        let (tx, rx) = outbox(DOWNLOAD_BOUND);
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
        Ok(Response::new(Box::pin(rx.into_stream())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn held_tasks_under_other_hosts_peer_ids_are_dropped() {
        let task = |peer_id: &str| pb::HeldTask {
            peer_id: peer_id.into(),
            ..Default::default()
        };
        let held = pb::HeldTasks {
            tasks: vec![
                task("10.0.0.1-a-1234"),
                task("10.0.0.1-b-1234"),
                task("10.0.0.1-a"),
                task("10.0.0.1-ab-1"),
                task("10.0.0.1-a-seed-1234"),
            ],
        };
        let kept: Vec<String> = own_tasks("10.0.0.1-a", held)
            .tasks
            .into_iter()
            .map(|t| t.peer_id)
            .collect();
        assert_eq!(kept, ["10.0.0.1-a-1234"]);
    }
}
