//! [`SchedulerClient`]: this peer's links to the schedulers.
//!
//! One host stream per scheduler, kept up with reconnects: it registers the host, sends
//! heartbeats, re-announces the complete tasks that scheduler owns (so a restarted scheduler
//! learns them again), reports evictions and preheat progress, and receives the scheduler's
//! commands (seed a task, preheat a task), each tagged with the scheduler it came from so the
//! answer goes back on the same stream. Per download, a peer
//! stream to the scheduler that owns the task on the consistent-hash ring, failing over to the
//! next one; schedulers whose host stream is down are tried last.
//!
//! A scheduler that is going away says so (`Reconnect`) before it ends the stream; the link
//! then reconnects at once, with the short jittered backoff of [`crate::reconnect`], and counts
//! the reconnect for the admin API. Such a restart is logged at info level, once each way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use df_core::ids::{PeerId, TaskId};
use df_core::ring::HashRing;
use df_proto::scheduler::v1 as pb;
use df_proto::scheduler::v1::scheduler_client::SchedulerClient as GrpcClient;
use pb::host_request::Request as HostMsg;
use pb::peer_request::Request as PeerMsg;
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tonic::transport::{Channel, Endpoint};

use crate::reconnect::{Reconnects, jittered};
use crate::storage::PieceStore;

const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A download whose scheduler went away tries that same address this many times (about a
/// second: a restarted scheduler is back by then) before it takes the ring's next one too.
const SAME_ADDR_TRIES: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum AnnouncerError {
    #[error("scheduler address '{addr}': {reason}")]
    Address { addr: String, reason: String },
}

struct Link {
    channel: Channel,
    connected: AtomicBool,
    outbound: Mutex<Option<mpsc::UnboundedSender<pb::HostRequest>>>,
    reconnects: Reconnects,
}

/// How a connected host stream ended.
enum StreamEnd {
    Shutdown,
    /// The scheduler said it is going away.
    Directed(String),
    Lost,
}

/// One scheduler link as the admin API shows it.
#[derive(Debug, Clone)]
pub struct LinkStatus {
    pub addr: String,
    pub connected: bool,
    pub reconnects: u64,
    /// Unix seconds of the last reconnect.
    pub last_reconnect: Option<u64>,
}

/// A command a scheduler pushed on its host stream.
#[derive(Debug)]
pub struct HostCommand {
    /// The scheduler that sent it (its address as configured).
    pub scheduler: String,
    pub command: pb::host_response::Response,
}

pub struct SchedulerClient {
    ring: HashRing,
    links: HashMap<String, Link>,
    host: pb::HostInfo,
    connect_timeout: Duration,
}

/// A download's stream to its scheduler.
///
/// Dropping it closes gracefully in the background: our half is closed and the scheduler's
/// half drained until it ends. Dropping the response stream outright would cancel the RPC and
/// lose the last reports (the scheduler would see a peer that left instead of one that finished).
pub struct PeerStream {
    pub scheduler: String,
    tx: Option<mpsc::UnboundedSender<pb::PeerRequest>>,
    inbound: Option<tonic::Streaming<pb::PeerResponse>>,
}

/// How long a closing stream waits for the scheduler to acknowledge.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

impl Drop for PeerStream {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(mut inbound) = self.inbound.take()
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            rt.spawn(async move {
                let drain = async { while let Ok(Some(_)) = inbound.message().await {} };
                let _ = tokio::time::timeout(CLOSE_GRACE, drain).await;
            });
        }
    }
}

impl PeerStream {
    /// Sends a report; false when the stream is gone.
    pub fn send(&self, msg: PeerMsg) -> bool {
        self.tx
            .as_ref()
            .is_some_and(|tx| tx.send(pb::PeerRequest { request: Some(msg) }).is_ok())
    }

    /// The next instruction; `None` when the scheduler closed the stream or failed.
    pub async fn next(&mut self) -> Option<pb::peer_response::Response> {
        let inbound = self.inbound.as_mut()?;
        loop {
            match inbound.message().await {
                Ok(Some(pb::PeerResponse { response: Some(r) })) => return Some(r),
                Ok(Some(_)) => continue,
                Ok(None) => return None,
                Err(status) => {
                    tracing::warn!(scheduler = %self.scheduler, error = %status.message(), "scheduler stream failed");
                    return None;
                }
            }
        }
    }
}

impl SchedulerClient {
    pub fn new(
        addrs: &[String],
        host: pb::HostInfo,
        connect_timeout: Duration,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Result<Self, AnnouncerError> {
        let mut links = HashMap::new();
        for addr in addrs {
            let endpoint = Endpoint::from_shared(format!("http://{addr}")).map_err(|e| {
                AnnouncerError::Address {
                    addr: addr.clone(),
                    reason: e.to_string(),
                }
            })?;
            let endpoint = endpoint
                .connect_timeout(connect_timeout)
                .tcp_nodelay(true)
                .http2_keep_alive_interval(Duration::from_secs(10))
                .keep_alive_timeout(Duration::from_secs(5));
            // With TLS the URL stays http:// so tonic adds no TLS of its own: the connector
            // runs the cluster identity's handshake and checks the scheduler's role.
            let channel = match &tls {
                Some(config) => endpoint.connect_with_connector_lazy(crate::links::TlsConnector {
                    config: config.clone(),
                }),
                None => endpoint.connect_lazy(),
            };
            links.insert(
                addr.clone(),
                Link {
                    channel,
                    connected: AtomicBool::new(false),
                    outbound: Mutex::new(None),
                    reconnects: Reconnects::default(),
                },
            );
        }
        Ok(Self {
            ring: HashRing::new(addrs.iter().cloned()),
            links,
            host,
            connect_timeout,
        })
    }

    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Each scheduler: whether its host stream is up, and its reconnects.
    pub fn connections(&self) -> Vec<LinkStatus> {
        let mut out: Vec<LinkStatus> = self
            .links
            .iter()
            .map(|(a, l)| {
                let (reconnects, last_reconnect) = l.reconnects.get();
                LinkStatus {
                    addr: a.clone(),
                    connected: l.connected.load(Ordering::Acquire),
                    reconnects,
                    last_reconnect,
                }
            })
            .collect();
        out.sort_by(|a, b| a.addr.cmp(&b.addr));
        out
    }

    pub fn owner(&self, task: &TaskId) -> Option<&str> {
        self.ring.owner(task.as_str())
    }

    /// Opens a download stream for `task` and registers on it. `None` when no scheduler
    /// answers; the caller then goes to the origin itself.
    pub async fn open_peer_stream(
        &self,
        task: &TaskId,
        register: pb::RegisterPeer,
    ) -> Option<PeerStream> {
        let order = self.ring.order(task.as_str());
        let is_up = |a: &&str| {
            self.links
                .get(*a)
                .is_some_and(|l| l.connected.load(Ordering::Acquire))
        };
        let (up, down): (Vec<&str>, Vec<&str>) = order.into_iter().partition(is_up);
        for addr in up.into_iter().chain(down) {
            if let Some(stream) = self.try_peer_stream(addr, task, &register).await {
                return Some(stream);
            }
        }
        None
    }

    /// Registers a download again after its scheduler (`lost`) went away; try `attempt`
    /// counts from 0. The first tries go to `lost` only (a restarting scheduler is back on
    /// its address within about a second), later ones along the ring as for a new download.
    pub async fn reopen_peer_stream(
        &self,
        task: &TaskId,
        register: pb::RegisterPeer,
        lost: &str,
        attempt: u32,
    ) -> Option<PeerStream> {
        if attempt < SAME_ADDR_TRIES {
            return self.try_peer_stream(lost, task, &register).await;
        }
        self.open_peer_stream(task, register).await
    }

    async fn try_peer_stream(
        &self,
        addr: &str,
        task: &TaskId,
        register: &pb::RegisterPeer,
    ) -> Option<PeerStream> {
        let link = self.links.get(addr)?;
        let (tx, rx) = mpsc::unbounded_channel();
        let _ = tx.send(pb::PeerRequest {
            request: Some(PeerMsg::Register(register.clone())),
        });
        let mut client = GrpcClient::new(link.channel.clone());
        let call = client.announce_peer(UnboundedReceiverStream::new(rx));
        match tokio::time::timeout(self.connect_timeout * 2, call).await {
            Ok(Ok(resp)) => Some(PeerStream {
                scheduler: addr.to_owned(),
                tx: Some(tx),
                inbound: Some(resp.into_inner()),
            }),
            Ok(Err(status)) => {
                tracing::debug!(task_id = %task, scheduler = addr, error = %status.message(), "scheduler refused the download stream");
                None
            }
            Err(_) => {
                tracing::debug!(task_id = %task, scheduler = addr, "scheduler did not answer in time");
                None
            }
        }
    }

    /// Tells the owning scheduler that this peer no longer holds `task`.
    pub fn report_evicted(&self, task: &TaskId, peer: &PeerId) {
        let Some(link) = self.owner(task).and_then(|a| self.links.get(a)) else {
            return;
        };
        if let Some(tx) = &*link.outbound.lock().unwrap_or_else(|e| e.into_inner()) {
            let _ = tx.send(pb::HostRequest {
                request: Some(HostMsg::Evicted(pb::TaskEvicted {
                    task_id: task.to_string(),
                    peer_id: peer.to_string(),
                })),
            });
        }
    }

    /// Sends `msg` on the host stream to `scheduler`; false when that stream is down.
    pub fn send_host(&self, scheduler: &str, msg: HostMsg) -> bool {
        let Some(link) = self.links.get(scheduler) else {
            return false;
        };
        let guard = link.outbound.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .as_ref()
            .is_some_and(|tx| tx.send(pb::HostRequest { request: Some(msg) }).is_ok())
    }

    /// Runs every host stream until `shutdown`. Schedulers' commands go to `commands`.
    pub fn spawn_links(
        self: &Arc<Self>,
        tracker: &TaskTracker,
        store: Arc<PieceStore>,
        heartbeat: Arc<dyn Fn() -> pb::HostHeartbeat + Send + Sync>,
        commands: mpsc::UnboundedSender<HostCommand>,
        shutdown: CancellationToken,
    ) {
        for addr in self.links.keys() {
            let this = self.clone();
            let addr = addr.clone();
            let store = store.clone();
            let heartbeat = heartbeat.clone();
            let commands = commands.clone();
            let shutdown = shutdown.clone();
            tracker.spawn(async move {
                this.run_link(&addr, store, heartbeat, commands, shutdown)
                    .await;
            });
        }
    }

    fn held_tasks(&self, addr: &str, store: &PieceStore) -> pb::HeldTasks {
        let tasks = store
            .all()
            .into_iter()
            .filter(|t| self.owner(&t.id) == Some(addr))
            .filter_map(|t| {
                let st = t.state();
                let layout = st.layout?;
                st.complete.then(|| pb::HeldTask {
                    task_id: t.id.to_string(),
                    peer_id: st.peer_id.to_string(),
                    url: st.url.clone(),
                    content_length: layout.content_length,
                    piece_length: layout.piece_length,
                    pieces: st
                        .digests
                        .iter()
                        .enumerate()
                        .filter_map(|(n, d)| {
                            d.map(|d| pb::PieceDigest {
                                number: u32::try_from(n).unwrap_or(u32::MAX),
                                digest: d.as_bytes().to_vec(),
                            })
                        })
                        .collect(),
                    content_path: t.data_path.display().to_string(),
                    complete: true,
                })
            })
            .collect();
        pb::HeldTasks { tasks }
    }

    async fn run_link(
        &self,
        addr: &str,
        store: Arc<PieceStore>,
        heartbeat: Arc<dyn Fn() -> pb::HostHeartbeat + Send + Sync>,
        commands: mpsc::UnboundedSender<HostCommand>,
        shutdown: CancellationToken,
    ) {
        let Some(link) = self.links.get(addr) else {
            return;
        };
        let mut attempt: u32 = 0;
        // When the stream went down, and whether the scheduler said it would (then the failed
        // tries while it restarts are expected and not worth a warning).
        let mut lost_at: Option<tokio::time::Instant> = None;
        let mut directed = false;
        loop {
            let (tx, rx) = mpsc::unbounded_channel();
            let _ = tx.send(pb::HostRequest {
                request: Some(HostMsg::Register(self.host.clone())),
            });
            let _ = tx.send(pb::HostRequest {
                request: Some(HostMsg::Heartbeat(heartbeat())),
            });
            let _ = tx.send(pb::HostRequest {
                request: Some(HostMsg::Held(self.held_tasks(addr, &store))),
            });
            let mut client = GrpcClient::new(link.channel.clone());
            let call = tokio::select! {
                _ = shutdown.cancelled() => return,
                r = client.announce_host(UnboundedReceiverStream::new(rx)) => r,
            };
            match call {
                Ok(resp) => {
                    link.connected.store(true, Ordering::Release);
                    *link.outbound.lock().unwrap_or_else(|e| e.into_inner()) = Some(tx.clone());
                    attempt = 0;
                    match lost_at.take() {
                        Some(at) => {
                            link.reconnects.record();
                            let after_ms =
                                u64::try_from(at.elapsed().as_millis()).unwrap_or(u64::MAX);
                            tracing::info!(scheduler = addr, after_ms, "reconnected to scheduler");
                        }
                        None => tracing::info!(scheduler = addr, "connected to scheduler"),
                    }
                    let end = follow(
                        addr,
                        resp.into_inner(),
                        &tx,
                        &heartbeat,
                        &commands,
                        &shutdown,
                    )
                    .await;
                    link.connected.store(false, Ordering::Release);
                    *link.outbound.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    lost_at = Some(tokio::time::Instant::now());
                    match end {
                        StreamEnd::Shutdown => return,
                        StreamEnd::Directed(reason) => {
                            tracing::info!(scheduler = addr, %reason, "scheduler is going away; reconnecting");
                            directed = true;
                        }
                        StreamEnd::Lost => {
                            tracing::warn!(scheduler = addr, "lost the scheduler; reconnecting");
                            directed = false;
                        }
                    }
                }
                Err(status) => {
                    if attempt == 0 && !directed {
                        tracing::warn!(scheduler = addr, error = %status.message(), "cannot reach scheduler");
                    } else {
                        tracing::debug!(scheduler = addr, attempt, error = %status.message(), "cannot reach scheduler yet");
                    }
                    attempt = attempt.saturating_add(1);
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(jittered(attempt)) => {}
            }
        }
    }
}

/// Relays a connected host stream until it ends: heartbeats out, commands in.
async fn follow(
    addr: &str,
    mut inbound: tonic::Streaming<pb::HostResponse>,
    tx: &mpsc::UnboundedSender<pb::HostRequest>,
    heartbeat: &Arc<dyn Fn() -> pb::HostHeartbeat + Send + Sync>,
    commands: &mpsc::UnboundedSender<HostCommand>,
    shutdown: &CancellationToken,
) -> StreamEnd {
    let mut beat = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return StreamEnd::Shutdown,
            _ = beat.tick() => {
                let _ = tx.send(pb::HostRequest { request: Some(HostMsg::Heartbeat(heartbeat())) });
            }
            msg = inbound.message() => match msg {
                Ok(Some(pb::HostResponse { response: Some(pb::host_response::Response::Reconnect(r)) })) => {
                    return StreamEnd::Directed(r.reason);
                }
                Ok(Some(pb::HostResponse { response: Some(command) })) => {
                    let _ = commands.send(HostCommand { scheduler: addr.to_owned(), command });
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => return StreamEnd::Lost,
            }
        }
    }
}
