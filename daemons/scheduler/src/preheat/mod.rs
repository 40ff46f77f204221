//! Preheat jobs: the Harbor-compatible `/oapi/v1/jobs` API's engine.
//!
//! A job resolves its image ([`registry`]) into blob URLs, computes each blob's task ID exactly
//! as the peers' proxies do for a pull (`TaskId::from_url`), chooses hosts by scope, and sends
//! each host a `PreheatTask` on its host stream. The host downloads the task like any client
//! (registering with whichever scheduler owns the task on the ring, so P2P still applies) and
//! reports progress back on the stream of the scheduler that sent the command; so a job taken
//! by any scheduler covers blobs whose tasks another scheduler owns (every host announces to
//! every scheduler). Within the chosen hosts, the seed that the ring over connected seeds picks
//! for a task fetches it from the origin (as a seed trigger would); the others go through P2P,
//! so the origin is read about once per blob whatever the scope.
//!
//! Jobs are kept in memory and journaled ([`store`], [`journal`]) under `jobs.state_dir`, so
//! a restarted scheduler still answers for every job it took and never reuses an ID. A job is
//! PENDING until every chosen host reported every blob, then SUCCESS, or FAILURE if any
//! failed, resolving failed, no host could be chosen, a chosen host's stream stayed down for
//! `jobs.host_grace`, or `jobs.timeout` passed. A job still PENDING when its scheduler stopped
//! is FAILURE after the restart, saying so ([`job::RESTARTED`]): its commands and reports
//! went with the old process, and resuming it would need its credentials on disk (see
//! `docs/architecture.md`). The same preheat asked again while one is PENDING returns that job.
//!
//! A running job is driven by events, not a poll: [`JobStore::report`] and a host's departure
//! wake it (`JobStore::changed`), and so do a departed host's grace and the job's deadline.

mod job;
pub mod journal;
pub mod registry;
mod store;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::task::TaskTracker;

use df_core::api;
use df_core::ids::{HostId, TaskId, TaskIdParams};
use df_core::ring::HashRing;
use df_proto::scheduler::v1 as pb;

use crate::config::JobsConfig;
use crate::metrics::Counters;
use crate::model::ConnectedHost;
use df_core::manifest_url::ManifestUrl;
use job::{JobBlob, JobState, Target, TargetState, settled};
use registry::{PlatformChoice, RegistryClient, ResolvedBlob};
use store::Created;
pub use store::JobStore;

/// Why a job request is refused (a 400 with this message).
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("type '{0}' is not supported (only 'preheat')")]
    Type(String),
    #[error("args.type '{0}' is not supported (image or file)")]
    Kind(String),
    #[error(
        "args.scope '{0}' is not one of single_seed_peer (or single_peer), all_seed_peers, all_peers"
    )]
    Scope(String),
    #[error("args.url: {0}")]
    Url(String),
    #[error("args.platform: {0}")]
    Platform(String),
    #[error("args.username and args.password go together")]
    Credentials,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    SingleSeed,
    AllSeeds,
    AllPeers,
}

impl Scope {
    fn parse(s: &str) -> Result<Self, JobError> {
        match s {
            "" | "single_seed_peer" | "single_peer" => Ok(Self::SingleSeed),
            "all_seed_peers" => Ok(Self::AllSeeds),
            "all_peers" => Ok(Self::AllPeers),
            other => Err(JobError::Scope(other.to_owned())),
        }
    }
}

#[derive(Debug, Clone)]
enum Source {
    Image {
        url: String,
        platform: PlatformChoice,
    },
    Files(Vec<String>),
}

/// A validated request.
#[derive(Debug, Clone)]
struct Plan {
    source: Source,
    scope: Scope,
    ips: Option<Vec<String>>,
    host_ids: Option<Vec<String>>,
    headers: BTreeMap<String, String>,
    credentials: Option<(String, String)>,
    tag: String,
    application: String,
    piece_length: Option<u64>,
    filtered: Option<Vec<String>>,
    timeout: Duration,
}

impl Plan {
    fn from_request(req: &api::CreateJob, default_timeout: Duration) -> Result<Self, JobError> {
        if req.job_type != "preheat" {
            return Err(JobError::Type(req.job_type.clone()));
        }
        let a = &req.args;
        let source = match a.kind.as_str() {
            "image" => {
                ManifestUrl::parse(&a.url).map_err(|e| JobError::Url(e.to_string()))?;
                let platform = PlatformChoice::parse(&a.platform)
                    .map_err(|e| JobError::Platform(e.to_string()))?;
                Source::Image {
                    url: a.url.clone(),
                    platform,
                }
            }
            "file" => {
                let mut urls: Vec<String> = a.urls.clone().unwrap_or_default();
                if !a.url.is_empty() {
                    urls.insert(0, a.url.clone());
                }
                if urls.is_empty() {
                    return Err(JobError::Url("a file preheat needs url or urls".into()));
                }
                for u in &urls {
                    df_core::ids::validate_http_url(u).map_err(|e| JobError::Url(e.to_string()))?;
                }
                urls.dedup();
                Source::Files(urls)
            }
            other => return Err(JobError::Kind(other.to_owned())),
        };
        let credentials = match (a.username.is_empty(), a.password.is_empty()) {
            (true, true) => None,
            (false, false) => Some((a.username.clone(), a.password.clone())),
            _ => return Err(JobError::Credentials),
        };
        let filtered = (!a.filtered_query_params.is_empty()).then(|| {
            a.filtered_query_params
                .split('&')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        });
        let timeout = match a.timeout {
            Some(ns) if ns > 0 => Duration::from_nanos(ns),
            _ => default_timeout,
        };
        Ok(Self {
            source,
            scope: Scope::parse(&a.scope)?,
            ips: a.ips.clone().filter(|v| !v.is_empty()),
            host_ids: a.host_ids.clone().filter(|v| !v.is_empty()),
            headers: a.headers.clone().unwrap_or_default(),
            credentials,
            tag: a.tag.clone(),
            application: a.application.clone(),
            piece_length: a.piece_length.filter(|l| *l > 0),
            filtered,
            timeout,
        })
    }

    /// Two requests with the same key preheat the same objects onto the same hosts.
    fn dedup_key(&self) -> String {
        let mut ips = self.ips.clone().unwrap_or_default();
        ips.sort();
        let mut hosts = self.host_ids.clone().unwrap_or_default();
        hosts.sort();
        let source = match &self.source {
            Source::Image { url, platform } => format!("image {url} {platform}"),
            Source::Files(urls) => format!("file {}", urls.join(" ")),
        };
        format!(
            "{source}|{:?}|{}|{}|{}|{}|{:?}|{:?}",
            self.scope,
            ips.join(","),
            hosts.join(","),
            self.tag,
            self.application,
            self.piece_length,
            self.filtered
        )
    }

    fn task_id(&self, url: &str) -> Result<TaskId, df_core::ids::IdError> {
        TaskId::from_url(
            url,
            &TaskIdParams {
                tag: &self.tag,
                application: &self.application,
                piece_length: self.piece_length,
                filtered_query_params: self.filtered.as_deref(),
            },
        )
    }
}

/// What a job needs from the scheduler's host model: the hosts it can command right now.
/// Implemented by the scheduler's `Scheduler` where `lib.rs` wires the two together,
/// so this module never sees the scheduler and the scheduler never sees jobs.
pub trait HostDirectory: Send + Sync {
    /// Hosts with a live host stream that are not switched off, sorted by host ID; each
    /// carries the sender its commands go out on.
    fn connected_hosts(&self) -> Vec<ConnectedHost>;
}

/// The narrow handle preheat jobs run on: the connected hosts, the job store (which the host
/// streams feed with reports and departures), the jobs config and the jobs metric.
#[derive(Clone)]
pub struct Preheat {
    hosts: Arc<dyn HostDirectory>,
    jobs: Arc<JobStore>,
    config: JobsConfig,
    counts: Counters,
    /// Running jobs, so shutdown waits for them (within its bound).
    tracker: TaskTracker,
}

impl Preheat {
    pub fn new(
        hosts: Arc<dyn HostDirectory>,
        jobs: Arc<JobStore>,
        config: JobsConfig,
        counts: Counters,
        tracker: TaskTracker,
    ) -> Self {
        Self {
            hosts,
            jobs,
            config,
            counts,
            tracker,
        }
    }

    /// The jobs this scheduler took.
    pub fn jobs(&self) -> &JobStore {
        &self.jobs
    }
}

/// Validates `req` and starts the job, or returns the identical job still running.
pub fn create(preheat: &Preheat, req: &api::CreateJob) -> Result<api::JobView, JobError> {
    let cfg = &preheat.config;
    let plan = Plan::from_request(req, cfg.timeout)?;
    let id = match preheat
        .jobs
        .create(&req.args, plan.dedup_key(), cfg.keep_finished)
    {
        Created::New(id) => id,
        Created::Running(view) => {
            tracing::info!(
                job_id = view.id,
                "same preheat already running; returning it"
            );
            return Ok(*view);
        }
    };
    tracing::info!(job_id = id, url = %req.args.url, scope = %req.args.scope, "preheat job created");
    let view = preheat
        .jobs
        .get(id)
        .ok_or_else(|| JobError::Url("job vanished".into()))?;
    preheat.tracker.spawn(run(preheat.clone(), id, plan));
    Ok(view)
}

/// One job from resolution to its final state; every failure ends the job with its reason.
async fn run(preheat: Preheat, id: u64, plan: Plan) {
    let deadline = tokio::time::Instant::now() + plan.timeout;
    let outcome = async {
        let (blobs, authorization) = resolve(&preheat, &plan, deadline).await?;
        let hosts = preheat.hosts.connected_hosts();
        let (job_blobs, commands) = assign(&plan, id, blobs, authorization.as_deref(), &hosts)?;
        let blob_count = job_blobs.len();
        preheat.jobs.dispatched(id, job_blobs);
        send(&preheat, id, &hosts, commands);
        tracing::info!(job_id = id, blobs = blob_count, "preheat commands sent");
        watch(&preheat, id, &plan, &hosts, deadline).await
    }
    .await;
    if let Err(error) = outcome {
        tracing::warn!(job_id = id, %error, "preheat job failed");
        preheat.jobs.finish(id, JobState::Failure, error);
        count(&preheat, JobState::Failure);
    }
}

fn count(preheat: &Preheat, state: JobState) {
    preheat
        .counts
        .get_or_create(&vec![("state", state.as_str())])
        .inc();
}

/// The blobs of the job with their task IDs, and the registry authorization to pass on.
async fn resolve(
    preheat: &Preheat,
    plan: &Plan,
    deadline: tokio::time::Instant,
) -> Result<(Vec<(ResolvedBlob, TaskId)>, Option<String>), String> {
    let (resolved, authorization) = match &plan.source {
        Source::Files(urls) => (
            urls.iter()
                .map(|u| ResolvedBlob {
                    url: u.clone(),
                    digest: String::new(),
                    size: None,
                    media_type: String::new(),
                    platform: String::new(),
                })
                .collect::<Vec<_>>(),
            None,
        ),
        Source::Image { url, platform } => {
            let cfg = &preheat.config;
            let client = RegistryClient::new(&cfg.registry_ca_pems, cfg.registry_timeout)
                .map_err(|e| e.to_string())?;
            let creds = plan
                .credentials
                .as_ref()
                .map(|(u, p)| (u.as_str(), p.as_str()));
            let resolving = client.resolve(url, &plan.headers, creds, platform);
            match tokio::time::timeout_at(deadline, resolving).await {
                Ok(Ok(r)) => (r.blobs, r.authorization),
                Ok(Err(e)) => return Err(e.to_string()),
                Err(_) => return Err("timed out resolving the image".into()),
            }
        }
    };
    let mut blobs = Vec::with_capacity(resolved.len());
    for b in resolved {
        let task_id = plan.task_id(&b.url).map_err(|e| e.to_string())?;
        blobs.push((b, task_id));
    }
    Ok((blobs, authorization))
}

/// The headers every command carries: the job's, with the registry's authorization (if the
/// scheduler got one while resolving) replacing any the job sent.
fn command_headers(plan: &Plan, authorization: Option<&str>) -> Vec<pb::Header> {
    let mut headers: Vec<pb::Header> = plan
        .headers
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("authorization"))
        .map(|(k, v)| pb::Header {
            name: k.clone(),
            value: v.clone(),
        })
        .collect();
    if let Some(auth) = authorization {
        headers.push(pb::Header {
            name: "Authorization".into(),
            value: auth.to_owned(),
        });
    }
    headers
}

/// The hosts `plan.scope` picks for one blob among the eligible ones.
fn choose<'a>(
    plan: &Plan,
    eligible: &[&'a ConnectedHost],
    task_id: &TaskId,
) -> Vec<&'a ConnectedHost> {
    match plan.scope {
        Scope::SingleSeed => {
            let eligible_seeds: Vec<&ConnectedHost> =
                eligible.iter().copied().filter(|h| h.is_seed).collect();
            let ring = HashRing::new(eligible_seeds.iter().map(|h| h.id.to_string()));
            ring.owner(task_id.as_str())
                .and_then(|o| eligible_seeds.iter().copied().find(|h| h.id.as_str() == o))
                .into_iter()
                .collect()
        }
        Scope::AllSeeds => eligible.iter().copied().filter(|h| h.is_seed).collect(),
        Scope::AllPeers => eligible.to_vec(),
    }
}

/// The one chosen host that reads the origin for a blob, and so the only one given the job's
/// credentials: the seed that owns the task if it was chosen, else the chosen host the task
/// hashes to (seeds first), so a job's repeated commands land on the same host.
fn origin_fetcher(
    chosen: &[&ConnectedHost],
    seed_owner: Option<&str>,
    task_id: &TaskId,
) -> Option<String> {
    if let Some(owner) =
        seed_owner.filter(|o| chosen.iter().any(|h| h.is_seed && h.id.as_str() == *o))
    {
        return Some(owner.to_owned());
    }
    let seeds: Vec<&&ConnectedHost> = chosen.iter().filter(|h| h.is_seed).collect();
    let pool: Vec<String> = if seeds.is_empty() {
        chosen.iter().map(|h| h.id.to_string()).collect()
    } else {
        seeds.iter().map(|h| h.id.to_string()).collect()
    };
    HashRing::new(pool)
        .owner(task_id.as_str())
        .map(str::to_owned)
}

/// Commands for hosts, in sending order.
type Commands = Vec<(HostId, pb::HostResponse)>;

/// Which hosts get which blob, and the commands to send them.
fn assign(
    plan: &Plan,
    id: u64,
    blobs: Vec<(ResolvedBlob, TaskId)>,
    authorization: Option<&str>,
    hosts: &[ConnectedHost],
) -> Result<(Vec<JobBlob>, Commands), String> {
    let seeds: Vec<&ConnectedHost> = hosts.iter().filter(|h| h.is_seed).collect();
    let seed_ring = HashRing::new(seeds.iter().map(|h| h.id.to_string()));
    let eligible: Vec<&ConnectedHost> = hosts
        .iter()
        .filter(|h| plan.ips.as_ref().is_none_or(|ips| ips.contains(&h.ip)))
        .filter(|h| {
            plan.host_ids
                .as_ref()
                .is_none_or(|ids| ids.iter().any(|i| i == h.id.as_str()))
        })
        .collect();
    let headers = command_headers(plan, authorization);
    let credentials = headers
        .iter()
        .any(|h| df_core::relayed::is_credential(&h.name));
    let mut job_blobs = Vec::with_capacity(blobs.len());
    let mut commands: Commands = Vec::new();
    for (b, task_id) in blobs {
        let seed_owner = seed_ring.owner(task_id.as_str()).map(str::to_owned);
        let chosen = choose(plan, &eligible, &task_id);
        if chosen.is_empty() {
            let what = match plan.scope {
                Scope::SingleSeed | Scope::AllSeeds => "no seed peer",
                Scope::AllPeers => "no peer",
            };
            let filtered = if plan.ips.is_some() || plan.host_ids.is_some() {
                " matching args.ips/args.host_ids"
            } else {
                ""
            };
            return Err(format!("{what}{filtered} is connected to this scheduler"));
        }
        let mut targets = Vec::with_capacity(chosen.len());
        let fetcher = origin_fetcher(&chosen, seed_owner.as_deref(), &task_id);
        for h in chosen {
            let digest = if b.digest.starts_with("sha256:") {
                b.digest.clone()
            } else {
                String::new()
            };
            let fetches_from_origin = h.is_seed && seed_owner.as_deref() == Some(h.id.as_str());
            // With credentials, one host reads the origin and the others wait for it; without,
            // any of them may be sent there, as for a client's pull.
            let reads_origin = !credentials || fetcher.as_deref() == Some(h.id.as_str());
            commands.push((
                h.id.clone(),
                pb::HostResponse {
                    response: Some(pb::host_response::Response::PreheatTask(pb::PreheatTask {
                        job_id: id,
                        task_id: task_id.to_string(),
                        url: b.url.clone(),
                        // The registry token goes only to the host that reads the origin; the
                        // others get the blob from it.
                        headers: if reads_origin {
                            headers.clone()
                        } else {
                            Vec::new()
                        },
                        piece_length: plan.piece_length.unwrap_or(0),
                        digest,
                        seed: fetches_from_origin,
                        awaits_fetcher: !reads_origin,
                    })),
                },
            ));
            targets.push(Target {
                host_id: h.id.clone(),
                hostname: h.hostname.clone(),
                ip: h.ip.clone(),
                state: TargetState::Pending,
                completed_length: 0,
                content_length: b.size.unwrap_or(0),
                source: String::new(),
                error: String::new(),
                cost_millis: 0,
            });
        }
        job_blobs.push(JobBlob {
            resolved: b,
            task_id,
            targets,
        });
    }
    // The origin fetchers first: the others then find them registered as parents.
    commands.sort_by_key(|(_, c)| {
        matches!(&c.response, Some(pb::host_response::Response::PreheatTask(t)) if t.awaits_fetcher)
    });
    Ok((job_blobs, commands))
}

/// Sends each command on its host's stream; a host whose stream closed fails its part now.
fn send(preheat: &Preheat, id: u64, hosts: &[ConnectedHost], commands: Commands) {
    let senders: HashMap<&HostId, &ConnectedHost> = hosts.iter().map(|h| (&h.id, h)).collect();
    let mut unsent: Vec<(HostId, String)> = Vec::new();
    for (host, command) in commands {
        let task = match &command.response {
            Some(pb::host_response::Response::PreheatTask(t)) => t.task_id.clone(),
            _ => String::new(),
        };
        let sent = senders.get(&host).is_some_and(|h| h.commands.send(command));
        if !sent {
            unsent.push((host, task));
        }
    }
    for (host, task) in unsent {
        preheat.jobs.report(
            &host,
            pb::PreheatReport {
                job_id: id,
                task_id: task,
                state: pb::PreheatState::Failed as i32,
                error: "the host's stream closed before the command was sent".into(),
                ..Default::default()
            },
        );
    }
}

/// Fails the part of every chosen host that has been gone for `grace`.
fn fail_departed(
    preheat: &Preheat,
    id: u64,
    hosts: &[ConnectedHost],
    gone_since: &mut HashMap<HostId, tokio::time::Instant>,
    grace: Duration,
) {
    let connected: Vec<HostId> = preheat
        .hosts
        .connected_hosts()
        .into_iter()
        .map(|h| h.id)
        .collect();
    let now = tokio::time::Instant::now();
    let mut expired: Vec<HostId> = Vec::new();
    for h in hosts.iter().map(|h| &h.id) {
        if connected.contains(h) {
            gone_since.remove(h);
        } else if now.duration_since(*gone_since.entry(h.clone()).or_insert(now)) >= grace {
            expired.push(h.clone());
        }
    }
    if expired.is_empty() {
        return;
    }
    preheat.jobs.with_job(id, |j| {
        for t in j.blobs.iter_mut().flat_map(|b| &mut b.targets) {
            if !t.state.is_final() && expired.contains(&t.host_id) {
                t.state = TargetState::Failed;
                t.error = format!(
                    "the host left this scheduler (stream down for {})",
                    humantime::format_duration(grace)
                );
            }
        }
    });
}

/// Waits for the job's reports (and its hosts' departures) until it settles or times out. It
/// wakes when a report arrives or a host disconnects ([`JobStore::changed`]), and when a
/// departed host's grace or the job's deadline runs out; nothing polls.
async fn watch(
    preheat: &Preheat,
    id: u64,
    plan: &Plan,
    hosts: &[ConnectedHost],
    deadline: tokio::time::Instant,
) -> Result<(), String> {
    let grace = preheat.config.host_grace;
    let mut gone_since: HashMap<HostId, tokio::time::Instant> = HashMap::new();
    loop {
        // Registered before looking, so a report that lands in between still wakes us.
        let changed = preheat.jobs.changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        // Hosts that left: their reports will not come; fail their part after the grace.
        fail_departed(preheat, id, hosts, &mut gone_since, grace);
        match preheat.jobs.with_job(id, |j| settled(j)) {
            None => return Ok(()), // forgotten
            Some(Some((state, error))) => {
                tracing::info!(job_id = id, state = state.as_str(), %error, "preheat job finished");
                preheat.jobs.finish(id, state, error);
                count(preheat, state);
                return Ok(());
            }
            Some(None) => {}
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            preheat.jobs.with_job(id, |j| {
                for t in j.blobs.iter_mut().flat_map(|b| &mut b.targets) {
                    if !t.state.is_final() {
                        t.state = TargetState::Failed;
                        t.error = "timed out".into();
                    }
                }
            });
            return Err(format!(
                "timed out after {}",
                humantime::format_duration(plan.timeout)
            ));
        }
        let wake = gone_since
            .values()
            .map(|since| *since + grace)
            .filter(|at| *at > now)
            .fold(deadline, std::cmp::min);
        tokio::select! {
            _ = &mut changed => {}
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use job::redacted;

    /// The body Harbor's Dragonfly provider posts (Go's encoding of its request struct: zero
    /// values included, `scheduler_cluster_ids` null, `timeout` as nanoseconds).
    pub const HARBOR_BODY: &str = r#"{"type":"preheat","args":{"type":"image","url":"https://harbor.example.com/v2/library/alpine/manifests/3.19","tag":"","filtered_query_params":"","headers":{"Authorization":"Bearer eyJhbGciOi.harbor.token"},"scope":"single_peer","concurrent_count":0,"timeout":0},"scheduler_cluster_ids":null}"#;

    #[test]
    fn harbors_request_parses_into_a_single_seed_image_plan() {
        let req: api::CreateJob = serde_json::from_str(HARBOR_BODY).expect("Harbor's body parses");
        let plan = Plan::from_request(&req, Duration::from_secs(60)).expect("valid");
        assert_eq!(plan.scope, Scope::SingleSeed);
        assert_eq!(
            plan.timeout,
            Duration::from_secs(60),
            "timeout 0 means the default"
        );
        assert!(
            matches!(&plan.source, Source::Image { platform, .. } if platform.to_string() == "linux/amd64")
        );
        assert_eq!(
            plan.headers.get("Authorization").map(String::as_str),
            Some("Bearer eyJhbGciOi.harbor.token")
        );
        let shown = redacted(&req.args);
        assert_eq!(
            shown
                .headers
                .expect("headers")
                .get("Authorization")
                .map(String::as_str),
            Some("<redacted>")
        );
    }

    #[test]
    fn bad_requests_name_the_field() {
        let mut req: api::CreateJob = serde_json::from_str(HARBOR_BODY).expect("parses");
        req.args.scope = "everyone".into();
        let err = Plan::from_request(&req, Duration::from_secs(1)).expect_err("bad scope");
        assert!(err.to_string().contains("args.scope"), "{err}");
        let mut req: api::CreateJob = serde_json::from_str(HARBOR_BODY).expect("parses");
        req.args.url = "https://h/v2/x/blobs/sha256:a".into();
        assert!(Plan::from_request(&req, Duration::from_secs(1)).is_err());
        let mut req: api::CreateJob = serde_json::from_str(HARBOR_BODY).expect("parses");
        req.job_type = "gc".into();
        assert!(matches!(
            Plan::from_request(&req, Duration::from_secs(1)),
            Err(JobError::Type(_))
        ));
        let mut req: api::CreateJob = serde_json::from_str(HARBOR_BODY).expect("parses");
        req.args.username = "u".into();
        assert!(matches!(
            Plan::from_request(&req, Duration::from_secs(1)),
            Err(JobError::Credentials)
        ));
    }

    #[test]
    fn the_dedup_key_ignores_credentials_but_not_targets() {
        let req: api::CreateJob = serde_json::from_str(HARBOR_BODY).expect("parses");
        let a = Plan::from_request(&req, Duration::from_secs(1)).expect("valid");
        let mut other = req.clone();
        other.args.headers = None;
        let b = Plan::from_request(&other, Duration::from_secs(1)).expect("valid");
        assert_eq!(a.dedup_key(), b.dedup_key());
        other.args.scope = "all_peers".into();
        let c = Plan::from_request(&other, Duration::from_secs(1)).expect("valid");
        assert_ne!(a.dedup_key(), c.dedup_key());
        other.args.platform = "linux/arm64".into();
        other.args.scope = String::new();
        let d = Plan::from_request(&other, Duration::from_secs(1)).expect("valid");
        assert_ne!(a.dedup_key(), d.dedup_key());
    }

    fn connected(name: &str, seed: bool) -> ConnectedHost {
        let (commands, _) = crate::outbox::outbox(4);
        ConnectedHost {
            id: HostId::new("10.0.0.1", name, seed),
            hostname: name.into(),
            ip: "10.0.0.1".into(),
            is_seed: seed,
            commands,
        }
    }

    /// Per command: (host, carries the token, waits for a fetcher, seed flag).
    fn assigned(scope: &str, hosts: &[ConnectedHost]) -> Vec<(String, bool, bool, bool)> {
        let mut req: api::CreateJob = serde_json::from_str(HARBOR_BODY).expect("parses");
        req.args.scope = scope.into();
        let plan = Plan::from_request(&req, Duration::from_secs(1)).expect("valid");
        let url = "https://harbor.example.com/v2/library/alpine/blobs/sha256:00";
        let blob = ResolvedBlob {
            url: url.into(),
            digest: "sha256:00".into(),
            size: Some(1),
            media_type: String::new(),
            platform: String::new(),
        };
        let task = plan.task_id(url).expect("id");
        let (_, commands) =
            assign(&plan, 1, vec![(blob, task)], Some("Bearer t"), hosts).expect("assigned");
        commands
            .into_iter()
            .map(|(host, c)| match c.response {
                Some(pb::host_response::Response::PreheatTask(t)) => (
                    host.to_string(),
                    t.headers.iter().any(|h| h.name == "Authorization"),
                    t.awaits_fetcher,
                    t.seed,
                ),
                other => panic!("not a preheat command: {other:?}"),
            })
            .collect()
    }

    #[test]
    fn the_token_goes_only_to_the_one_host_that_reads_the_origin() {
        // With a seed among the chosen: the seed that owns the task reads the origin, first.
        let hosts = [
            connected("seed", true),
            connected("a", false),
            connected("b", false),
        ];
        let got = assigned("all_peers", &hosts);
        assert_eq!(got.len(), 3);
        assert_eq!(
            got[0],
            (hosts[0].id.to_string(), true, false, true),
            "{got:?}"
        );
        assert!(got[1..].iter().all(|c| !c.1 && c.2 && !c.3), "{got:?}");
        // Without a seed: one peer gets the token and goes first, the others wait for it.
        let peers = [
            connected("a", false),
            connected("b", false),
            connected("c", false),
        ];
        let got = assigned("all_peers", &peers);
        assert_eq!(got.iter().filter(|c| c.1).count(), 1, "{got:?}");
        assert!(got[0].1 && !got[0].2, "the fetcher is sent first: {got:?}");
        assert!(got[1..].iter().all(|c| !c.1 && c.2), "{got:?}");
        // The same host every time, so a repeated job does not spread the token.
        assert_eq!(assigned("all_peers", &peers)[0].0, got[0].0);
    }

    #[test]
    fn task_ids_are_the_proxys() {
        let req: api::CreateJob = serde_json::from_str(HARBOR_BODY).expect("parses");
        let plan = Plan::from_request(&req, Duration::from_secs(1)).expect("valid");
        let url = "https://registry.test:5443/v2/e2e/img/blobs/sha256:00";
        assert_eq!(
            plan.task_id(url).expect("id"),
            TaskId::from_url(url, &TaskIdParams::default()).expect("id")
        );
    }
}
