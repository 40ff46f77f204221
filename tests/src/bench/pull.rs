//! Clients of the benchmarks: downloads through a peer's download API (the herd, and one-off
//! pulls such as chaos retries) and straight from the origin (the direct baseline).
//!
//! A pull never panics and never hangs on a dead peer: an HTTP error, a refused or closed
//! connection all end it with `error` set (a SIGKILLed peer's sockets are closed by the
//! kernel). With `hash`, the SHA-256 of the bytes the client read is kept, which is the only
//! check possible for a peer that streams an object it could not cache.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use sha2::Digest as _;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::round3;
use super::swarm::BaselineResult;
use super::{get_json, reset_origin};
use crate::origin::StatsSnapshot;

/// One client's download through its peer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pull {
    pub(crate) seconds: f64,
    pub(crate) first_byte_s: f64,
    pub(crate) bytes: u64,
    pub(crate) task_id: Option<String>,
    pub(crate) source: String,
    pub(crate) error: Option<String>,
    /// SHA-256 of the body as read, when asked for.
    pub(crate) sha256: Option<String>,
}

/// Fires one download per peer admin address at the same moment and reads every body to the
/// end.
pub(crate) async fn herd(
    http: &reqwest::Client,
    admins: &[String],
    url: &str,
    piece_length: Option<u64>,
    hash: bool,
) -> Vec<Pull> {
    let start = Arc::new(tokio::sync::Barrier::new(admins.len() + 1));
    let mut set = JoinSet::new();
    for (i, admin) in admins.iter().enumerate() {
        let (http, start) = (http.clone(), start.clone());
        let (admin, url) = (admin.clone(), url.to_owned());
        set.spawn(async move {
            start.wait().await;
            (i, pull_one(&http, &admin, &url, piece_length, hash).await)
        });
    }
    start.wait().await;
    let mut pulls = vec![Pull::default(); admins.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, pull)) = joined {
            pulls[i] = pull;
        }
    }
    pulls
}

/// One download of `url` through the peer whose admin API is at `admin`.
pub(crate) async fn pull_one(
    http: &reqwest::Client,
    admin: &str,
    url: &str,
    piece_length: Option<u64>,
    hash: bool,
) -> Pull {
    let request = match piece_length {
        Some(len) => format!("http://{admin}/api/v1/download?piece_length={len}"),
        None => format!("http://{admin}/api/v1/download"),
    };
    let t0 = Instant::now();
    let mut pull = Pull::default();
    let mut hasher = hash.then(sha2::Sha256::new);
    if let Err(e) = pull_through(http, &request, url, t0, &mut pull, hasher.as_mut()).await {
        pull.error = Some(format!("{e:#}"));
    }
    pull.sha256 = hasher.map(|h| hex::encode(h.finalize()));
    pull.seconds = t0.elapsed().as_secs_f64();
    pull
}

async fn pull_through(
    http: &reqwest::Client,
    request: &str,
    url: &str,
    t0: Instant,
    pull: &mut Pull,
    mut hasher: Option<&mut sha2::Sha256>,
) -> anyhow::Result<()> {
    let mut resp = http
        .get(request)
        .query(&[("url", url)])
        .send()
        .await
        .with_context(|| format!("GET {request}"))?;
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    pull.task_id = header(df_core::HEADER_TASK_ID);
    pull.source = header(df_core::HEADER_SOURCE).unwrap_or_default();
    anyhow::ensure!(resp.status().is_success(), "HTTP {}", resp.status());
    while let Some(chunk) = resp.chunk().await.context("reading the body")? {
        if pull.bytes == 0 {
            pull.first_byte_s = t0.elapsed().as_secs_f64();
        }
        pull.bytes += chunk.len() as u64;
        if let Some(h) = hasher.as_deref_mut() {
            h.update(&chunk);
        }
    }
    Ok(())
}

/// The baseline: `n` clients pulling `size` bytes straight from the origin at the same moment.
pub(crate) async fn direct(
    http: &reqwest::Client,
    origin: &str,
    size: u64,
    blob_seed: u64,
    n: usize,
) -> anyhow::Result<BaselineResult> {
    reset_origin(http, origin).await?;
    let start = Arc::new(tokio::sync::Barrier::new(n + 1));
    let mut set = JoinSet::new();
    for i in 0..n {
        let (http, start) = (http.clone(), start.clone());
        // One object per client, as N nodes pulling one layer would each fetch it whole.
        let url = format!("{origin}/blob/{size}/{blob_seed}");
        set.spawn(async move {
            start.wait().await;
            let t0 = Instant::now();
            let mut bytes = 0u64;
            let mut resp = http
                .get(&url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .with_context(|| format!("GET {url}"))?;
            while let Some(chunk) = resp.chunk().await.context("reading the body")? {
                bytes += chunk.len() as u64;
            }
            anyhow::ensure!(bytes == size, "client {i} got {bytes} of {size} bytes");
            Ok::<_, anyhow::Error>(t0.elapsed().as_secs_f64())
        });
    }
    start.wait().await;
    let mut per_client = Vec::with_capacity(n);
    while let Some(joined) = set.join_next().await {
        per_client.push(round3(joined.context("a direct client panicked")??));
    }
    let stats: StatsSnapshot = get_json(http, &format!("{origin}/_stats")).await?;
    Ok(BaselineResult {
        makespan_s: per_client.iter().copied().fold(0.0, f64::max),
        per_client_s: per_client,
        origin_bytes: stats.bytes_served,
    })
}

pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = sha2::Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}
