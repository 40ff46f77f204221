//! Talking to the origin: the first request that learns the object's length (and usually
//! carries piece 0), and ranged GETs for single pieces.
//!
//! A task starts with `GET` + `Range: bytes=0-<piece-1>` rather than `HEAD`, so URLs signed for
//! GET work, and the answer already holds the first piece (with the automatic piece length,
//! the first [`FIRST_READ`] bytes: every whole piece in them is kept). An origin that ignores
//! ranges answers 200 with the whole body, which is then cut into pieces as it streams.

use bytes::Bytes;
use df_core::piece::{FIRST_READ, PieceLayout};
use futures_util::StreamExt as _;
use http::StatusCode;

use std::sync::Arc;

use super::piece_io::PieceError;
use crate::egress::{EgressPolicy, GuardedResolver};
use crate::storage::TaskFailure;

/// Origin error bodies kept for passing through to the client.
const ERROR_BODY_LIMIT: usize = 64 * 1024;

/// Request headers never forwarded to the origin: hop-by-hop ones, those the peer sets itself,
/// and `Accept-Encoding` (the cache must hold the identity bytes whose digests it verifies).
const NOT_FORWARDED: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "host",
    "range",
    "content-length",
    "accept-encoding",
    "x-dragonfly-registry",
    "x-dragonfly-use-p2p",
];

/// Origin response headers worth replaying to clients served from the cache.
pub const REPLAYED_HEADERS: &[&str] = &[
    "content-type",
    "etag",
    "last-modified",
    "docker-content-digest",
    "cache-control",
];

pub fn forwardable(name: &str) -> bool {
    !NOT_FORWARDED.iter().any(|h| h.eq_ignore_ascii_case(name))
}

/// HTTP clients for origins. Certificates are verified against the system store plus the
/// configured extra CAs, except for hosts configured insecure. `fetch` clients follow redirects
/// (registries send blobs to storage backends; the task ID comes from the original URL);
/// `direct` clients hand redirects to the caller, as a transparent proxy must. None of them
/// goes through a proxy (this peer may be the node's proxy) or decompresses bodies (the cache
/// holds the origin's bytes).
pub struct OriginClients {
    fetch: reqwest::Client,
    fetch_insecure: reqwest::Client,
    direct: reqwest::Client,
    direct_insecure: reqwest::Client,
    insecure_hosts: Vec<regex::Regex>,
    /// Where these clients may connect (enforced by their resolver and redirect policy).
    egress: Arc<EgressPolicy>,
}

#[derive(Debug, thiserror::Error)]
pub enum OriginClientError {
    #[error("{path}: not a PEM certificate bundle: {source}")]
    Bundle {
        path: std::path::PathBuf,
        source: reqwest::Error,
    },
    #[error("HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

impl OriginClients {
    pub fn new(
        cfg: &crate::config::OriginConfig,
        connect_timeout: std::time::Duration,
        read_timeout: std::time::Duration,
        egress: Arc<EgressPolicy>,
    ) -> Result<Self, OriginClientError> {
        let mut roots = Vec::new();
        for (path, pem) in &cfg.ca_pems {
            roots.extend(
                reqwest::Certificate::from_pem_bundle(pem).map_err(|source| {
                    OriginClientError::Bundle {
                        path: path.clone(),
                        source,
                    }
                })?,
            );
        }
        let build = |follow: bool, insecure: bool| {
            let policy = egress.clone();
            reqwest::Client::builder()
                .no_proxy()
                .connect_timeout(connect_timeout)
                .read_timeout(read_timeout)
                .tls_certs_merge(roots.clone())
                .tls_danger_accept_invalid_certs(insecure)
                .dns_resolver(GuardedResolver(egress.clone()))
                .redirect(if follow {
                    // Names in a redirect go through the resolver; literal IPs and ports are
                    // checked here.
                    reqwest::redirect::Policy::custom(move |attempt| {
                        if attempt.previous().len() >= 10 {
                            attempt.error("more than 10 redirects")
                        } else if let Err(e) = policy.check_url(attempt.url()) {
                            attempt.error(e)
                        } else {
                            attempt.follow()
                        }
                    })
                } else {
                    reqwest::redirect::Policy::none()
                })
                .build()
        };
        Ok(Self {
            fetch: build(true, false)?,
            fetch_insecure: build(true, true)?,
            direct: build(false, false)?,
            direct_insecure: build(false, true)?,
            insecure_hosts: cfg.insecure_hosts.clone(),
            egress,
        })
    }

    /// Where a client's request may go; checked before any request for it is made.
    pub fn egress(&self) -> &EgressPolicy {
        &self.egress
    }

    /// [`EgressPolicy::check_url`] for a URL string.
    pub fn check(&self, url: &str) -> Result<(), String> {
        let parsed = url::Url::parse(url).map_err(|e| format!("'{url}': {e}"))?;
        self.egress.check_url(&parsed).map_err(|e| e.to_string())
    }

    fn insecure(&self, url: &str) -> bool {
        let host = url::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_owned))
            .unwrap_or_default();
        self.insecure_hosts.iter().any(|re| re.is_match(&host))
    }

    /// For fetching objects: follows redirects.
    pub fn fetch(&self, url: &str) -> &reqwest::Client {
        if self.insecure(url) {
            &self.fetch_insecure
        } else {
            &self.fetch
        }
    }

    /// For passing requests through: redirects go back to the client.
    pub fn direct(&self, url: &str) -> &reqwest::Client {
        if self.insecure(url) {
            &self.direct_insecure
        } else {
            &self.direct
        }
    }
}

pub enum FirstResponse {
    /// 206: ranges work; `body` holds bytes `[0, first_len)`.
    Ranged {
        layout: PieceLayout,
        first_len: u64,
        headers: Vec<(String, String)>,
        body: reqwest::Response,
    },
    /// 200: the whole object in one body.
    Whole {
        layout: PieceLayout,
        headers: Vec<(String, String)>,
        body: reqwest::Response,
    },
}

pub struct Origin<'a> {
    pub client: &'a reqwest::Client,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
}

fn replayed(resp: &reqwest::Response) -> Vec<(String, String)> {
    resp.headers()
        .iter()
        .filter(|(k, _)| REPLAYED_HEADERS.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// Total length from `Content-Range: bytes a-b/total` (or `bytes */total`).
fn total_from_content_range(resp: &reqwest::Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(http::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    v.rsplit_once('/')?.1.trim().parse().ok()
}

impl Origin<'_> {
    fn request(&self, offset: u64, len: u64) -> reqwest::RequestBuilder {
        let mut rb = self.client.get(self.url);
        for (k, v) in self.headers {
            if forwardable(k) {
                rb = rb.header(k.as_str(), v.as_str());
            }
        }
        rb.header(
            http::header::RANGE,
            format!("bytes={offset}-{}", offset + len.max(1) - 1),
        )
    }

    /// Starts the task: learns the length; origin refusals come back as [`TaskFailure::Origin`].
    pub async fn first(&self, piece_length: Option<u64>) -> Result<FirstResponse, TaskFailure> {
        // Not the smallest automatic length: that cost a 256 MiB object (512 KiB pieces) its
        // first 256 KiB read twice.
        let probe = piece_length.unwrap_or(FIRST_READ);
        let resp = self.request(0, probe).send().await.map_err(|e| {
            TaskFailure::Other(format!(
                "cannot reach origin {}: {}",
                self.url,
                error_chain(&e)
            ))
        })?;
        let status = resp.status();
        match status {
            StatusCode::PARTIAL_CONTENT => {
                let total = total_from_content_range(&resp).ok_or_else(|| {
                    TaskFailure::Other(format!(
                        "origin {} sent 206 without a usable Content-Range",
                        self.url
                    ))
                })?;
                let layout = PieceLayout::new(total, piece_length);
                let first_len = resp.content_length().unwrap_or(0);
                Ok(FirstResponse::Ranged {
                    layout,
                    first_len,
                    headers: replayed(&resp),
                    body: resp,
                })
            }
            StatusCode::OK => {
                let total = resp.content_length().ok_or(TaskFailure::NoLength)?;
                Ok(FirstResponse::Whole {
                    layout: PieceLayout::new(total, piece_length),
                    headers: replayed(&resp),
                    body: resp,
                })
            }
            StatusCode::RANGE_NOT_SATISFIABLE if total_from_content_range(&resp) == Some(0) => {
                Ok(FirstResponse::Whole {
                    layout: PieceLayout::new(0, piece_length),
                    headers: replayed(&resp),
                    body: resp,
                })
            }
            _ => Err(origin_refusal(resp).await),
        }
    }

    /// One piece by a ranged GET.
    pub async fn piece(&self, offset: u64, len: u64) -> Result<reqwest::Response, PieceError> {
        let resp = self
            .request(offset, len)
            .send()
            .await
            .map_err(|e| PieceError::Unreachable(error_chain(&e)))?;
        match resp.status() {
            StatusCode::PARTIAL_CONTENT => Ok(resp),
            StatusCode::OK if offset == 0 && resp.content_length() == Some(len) => Ok(resp),
            s => Err(PieceError::Status(s.as_u16())),
        }
    }
}

/// Hop-by-hop response headers, which describe one connection and must not be relayed.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// An origin response's headers that may be relayed to a client, minus `also_skip`.
pub fn end_to_end_headers(headers: &http::HeaderMap, also_skip: &[&str]) -> Vec<(String, String)> {
    headers
        .iter()
        .filter(|(k, _)| !HOP_BY_HOP.contains(&k.as_str()) && !also_skip.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// The origin's refusal, kept whole enough to pass through.
pub async fn origin_refusal(resp: reqwest::Response) -> TaskFailure {
    let status = resp.status().as_u16();
    // The body may be cut at the limit, so its length is no longer the origin's.
    let headers = end_to_end_headers(resp.headers(), &["content-length"]);
    let mut body = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        let room = ERROR_BODY_LIMIT - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= ERROR_BODY_LIMIT {
            break;
        }
    }
    TaskFailure::Origin {
        status,
        headers,
        body: Bytes::from(body),
    }
}

/// An error with its causes, on one line ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
