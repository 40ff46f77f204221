//! The one HTTP client dfctl talks to the daemons with: both admin APIs and the scheduler's
//! jobs API. Paths come from `df_core::routes`, bodies are `df_core::api` types; a call that
//! a command needs is a typed method here, not a path string at the call site.
//!
//! Invariants:
//! - The client never uses a proxy from the environment: the peers may *be* the configured
//!   proxy, and admin traffic to 127.0.0.1 must not loop through them.
//! - Errors are one line naming the URL and the innermost cause (`connection refused`,
//!   `timed out`), not reqwest's nested chain.

use std::time::Duration;

use anyhow::Context as _;
use df_core::api::{
    CreateJob, HostView, JobView, LocalTask, PeerInfo, SchedulerInfo, TaskDetail, TaskSummary,
};
use df_core::routes;
use serde::de::DeserializeOwned;
use url::Url;

/// The admin token every client sends (`Authorization: Bearer`): `--token-file` when given,
/// else the one of the cluster directory in use (`DIR/admin-token`), else the node's
/// (`/etc/dragonfly/admin-token`). Process-wide, because every command builds its clients
/// after resolving which cluster it talks to.
static ADMIN_TOKEN: std::sync::Mutex<Option<(String, bool)>> = std::sync::Mutex::new(None);

/// Where a node's daemons read their admin token (`dfctl init` configs name it).
pub const NODE_TOKEN_FILE: &str = "/etc/dragonfly/pki/admin-token";

/// Uses the token in `file` for every admin call, whatever cluster directory is used.
pub fn use_token_file(file: &std::path::Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read token file {}", file.display()))?;
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "token file {} is empty", file.display());
    *ADMIN_TOKEN.lock().unwrap_or_else(|e| e.into_inner()) = Some((token.to_owned(), true));
    Ok(())
}

/// Uses `DIR/admin-token` (if readable) unless a token file was given explicitly.
pub fn discover_token(dir: &std::path::Path) {
    let mut slot = ADMIN_TOKEN.lock().unwrap_or_else(|e| e.into_inner());
    if slot.as_ref().is_some_and(|(_, explicit)| *explicit) {
        return;
    }
    let found = std::fs::read_to_string(dir.join(crate::cluster::ADMIN_TOKEN_FILE))
        .or_else(|_| std::fs::read_to_string(NODE_TOKEN_FILE))
        .ok()
        .map(|t| t.trim().to_owned())
        .filter(|t| !t.is_empty());
    if let Some(token) = found {
        *slot = Some((token, false));
    }
}

fn admin_token() -> Option<String> {
    ADMIN_TOKEN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
        .map(|(t, _)| t.clone())
}

/// A new random admin token: 32 bytes from the kernel, hex.
pub fn new_token() -> anyhow::Result<String> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .context("cannot read /dev/urandom")?;
    Ok(hex::encode(bytes))
}

/// The default headers of every admin client: the admin token, when there is one.
fn auth_headers() -> anyhow::Result<reqwest::header::HeaderMap> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = admin_token() {
        let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
            .context("the admin token is not a valid header value")?;
        value.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, value);
    }
    Ok(headers)
}

/// A reqwest client configured for admin calls.
#[derive(Debug, Clone)]
pub struct AdminClient {
    http: reqwest::Client,
    /// Bearer token for the jobs API (`jobs.token` of the scheduler).
    token: Option<String>,
}

impl AdminClient {
    /// For short calls: every request is bounded by `timeout` end to end.
    pub fn with_timeout(timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(timeout)
            .timeout(timeout)
            .default_headers(auth_headers()?)
            .user_agent(concat!("dfctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, token: None })
    }

    /// For streamed downloads: no total bound (objects can be GiBs), but a stalled connection
    /// fails after `idle` without a byte.
    pub fn streaming(connect: Duration, idle: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .connect_timeout(connect)
            .read_timeout(idle)
            .default_headers(auth_headers()?)
            .user_agent(concat!("dfctl/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Self { http, token: None })
    }

    /// The jobs API's bearer token for every later jobs call.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET http://ADDR/healthz` answers 200.
    pub async fn healthz(&self, addr: &str) -> anyhow::Result<()> {
        match self.get(addr, routes::HEALTHZ).await? {
            Some(_) => Ok(()),
            // Something answers there, but not a dragonfly-lite daemon.
            None => anyhow::bail!("GET {}: 404 Not Found", endpoint(addr, routes::HEALTHZ)?),
        }
    }

    /// A scheduler's `GET /api/v1/info`; `None` on 404.
    pub async fn scheduler_info(&self, addr: &str) -> anyhow::Result<Option<SchedulerInfo>> {
        self.get_json(addr, routes::INFO).await
    }

    /// A peer's `GET /api/v1/info`; `None` on 404.
    pub async fn peer_info(&self, addr: &str) -> anyhow::Result<Option<PeerInfo>> {
        self.get_json(addr, routes::INFO).await
    }

    /// A scheduler's hosts.
    pub async fn hosts(&self, addr: &str) -> anyhow::Result<Option<Vec<HostView>>> {
        self.get_json(addr, routes::HOSTS).await
    }

    /// A scheduler's task list.
    pub async fn tasks(&self, addr: &str) -> anyhow::Result<Option<Vec<TaskSummary>>> {
        self.get_json(addr, routes::TASKS).await
    }

    /// One task as a scheduler knows it; `None` when it does not.
    pub async fn scheduler_task(
        &self,
        addr: &str,
        task_id: &str,
    ) -> anyhow::Result<Option<TaskDetail>> {
        self.get_json(addr, &routes::task(task_id)).await
    }

    /// One task in a peer's cache; `None` when it has none.
    pub async fn peer_task(&self, addr: &str, task_id: &str) -> anyhow::Result<Option<LocalTask>> {
        self.get_json(addr, &routes::task(task_id)).await
    }

    /// A peer's download endpoint for `url` (`digest` verifies the object).
    pub fn download_url(addr: &str, url: &str, digest: Option<&str>) -> anyhow::Result<Url> {
        let mut endpoint = endpoint(addr, routes::DOWNLOAD)?;
        {
            let mut query = endpoint.query_pairs_mut();
            query.append_pair("url", url);
            if let Some(digest) = digest {
                query.append_pair("digest", digest);
            }
        }
        Ok(endpoint)
    }

    /// Turns a peer's P2P on or off (`PUT /api/v1/p2p`).
    pub async fn set_p2p(
        &self,
        addr: &str,
        enabled: bool,
        reason: Option<&str>,
    ) -> anyhow::Result<()> {
        let url = endpoint(addr, routes::P2P)?;
        let body = serde_json::json!({ "enabled": enabled, "reason": reason });
        let resp = self
            .http
            .put(url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("PUT {url}: {}", describe(&e)))?;
        if !resp.status().is_success() {
            let status = resp.status();
            let line = first_body_line(resp).await;
            anyhow::bail!("PUT {url}: {status}{}", suffix(&line));
        }
        Ok(())
    }

    /// A scheduler's preheat jobs.
    pub async fn jobs(&self, addr: &str) -> anyhow::Result<Vec<JobView>> {
        self.jobs_call(reqwest::Method::GET, addr, routes::JOBS, None)
            .await
    }

    /// One preheat job.
    pub async fn job(&self, addr: &str, id: u64) -> anyhow::Result<JobView> {
        self.jobs_call(reqwest::Method::GET, addr, &routes::job(id), None)
            .await
    }

    /// Starts a preheat job.
    pub async fn create_job(&self, addr: &str, body: &CreateJob) -> anyhow::Result<JobView> {
        self.jobs_call(reqwest::Method::POST, addr, routes::JOBS, Some(body))
            .await
    }

    /// One jobs API call: the token when there is one, and its `{"errors": ..}` answers as one
    /// line naming the method, URL and status.
    async fn jobs_call<T: DeserializeOwned>(
        &self,
        method: reqwest::Method,
        addr: &str,
        path: &str,
        body: Option<&CreateJob>,
    ) -> anyhow::Result<T> {
        let url = endpoint(addr, path)?;
        let mut rb = self.http.request(method.clone(), url.clone());
        if let Some(t) = &self.token {
            rb = rb.bearer_auth(t);
        }
        if let Some(b) = body {
            rb = rb.json(b);
        }
        let resp = rb
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("{method} {url}: {}", describe(&e)))?;
        let status = resp.status();
        if !status.is_success() {
            let text = first_body_line(resp).await;
            let message = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["errors"].as_str().map(str::to_owned))
                .unwrap_or(text);
            let hint = if status == reqwest::StatusCode::UNAUTHORIZED {
                " (pass --token or set DFCTL_TOKEN to the scheduler's jobs.token)"
            } else {
                ""
            };
            anyhow::bail!("{method} {url}: {status}: {message}{hint}");
        }
        resp.json()
            .await
            .map_err(|e| anyhow::anyhow!("{method} {url}: unexpected answer: {}", describe(&e)))
    }

    /// `GET http://ADDR{path}` as JSON; `None` on 404.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        addr: &str,
        path: &str,
    ) -> anyhow::Result<Option<T>> {
        let Some((url, resp)) = self.get(addr, path).await? else {
            return Ok(None);
        };
        let value = resp
            .json()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: unexpected answer: {}", describe(&e)))?;
        Ok(Some(value))
    }

    /// `GET http://ADDR{path}`: the response when 2xx, `None` on 404, else an error naming the
    /// URL, the status and the first line the daemon said.
    pub async fn get(
        &self,
        addr: &str,
        path: &str,
    ) -> anyhow::Result<Option<(Url, reqwest::Response)>> {
        let url = endpoint(addr, path)?;
        let resp = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("GET {url}: {}", describe(&e)))?;
        let status = resp.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let line = first_body_line(resp).await;
            anyhow::bail!("GET {url}: {status}{}", suffix(&line));
        }
        Ok(Some((url, resp)))
    }
}

/// `http://ADDR{path}` for an admin address given as `HOST:PORT` or `http://HOST:PORT`.
pub fn endpoint(addr: &str, path: &str) -> anyhow::Result<Url> {
    let base = if addr.contains("://") {
        addr.trim_end_matches('/').to_owned()
    } else {
        format!("http://{addr}")
    };
    let url = Url::parse(&format!("{base}{path}"))
        .map_err(|e| anyhow::anyhow!("'{addr}' is not an address (expected HOST:PORT): {e}"))?;
    anyhow::ensure!(
        url.scheme() == "http",
        "'{addr}' is not an admin address (expected HOST:PORT or http://HOST:PORT)"
    );
    Ok(url)
}

/// The innermost cause of a reqwest error, which is the part that says what went wrong.
pub fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_owned();
    }
    let mut inner: &dyn std::error::Error = err;
    while let Some(next) = inner.source() {
        inner = next;
    }
    let text = inner.to_string();
    if err.is_connect() && !text.to_ascii_lowercase().contains("connect") {
        format!("cannot connect: {text}")
    } else {
        text
    }
}

/// The first line of an error body (at most 200 characters), to quote in an error message.
pub async fn first_body_line(resp: reqwest::Response) -> String {
    use futures_util::StreamExt as _;
    // Error bodies can be large (an HTML page, or an object if a server errs oddly); only the
    // start is read.
    const LIMIT: usize = 4096;
    let mut stream = resp.bytes_stream();
    let mut buf = Vec::new();
    while buf.len() < LIMIT {
        match stream.next().await {
            Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&buf[..buf.len().min(LIMIT)]);
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("");
    line.chars().take(200).collect()
}

fn suffix(line: &str) -> String {
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_accept_host_port_or_http_urls() {
        let u = endpoint("127.0.0.1:4002", "/api/v1/info").expect("valid");
        assert_eq!(u.as_str(), "http://127.0.0.1:4002/api/v1/info");
        let u = endpoint("http://peer:4002/", "/healthz").expect("valid");
        assert_eq!(u.as_str(), "http://peer:4002/healthz");
        assert!(endpoint("https://peer:4002", "/healthz").is_err());
        assert!(endpoint("not an addr", "/healthz").is_err());
    }

    #[tokio::test]
    async fn a_refused_connection_is_one_line_naming_the_url() {
        // Bind then drop, so the port is very likely closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        let client = AdminClient::with_timeout(Duration::from_secs(2)).expect("client");
        let err = client
            .healthz(&format!("127.0.0.1:{port}"))
            .await
            .expect_err("closed port");
        let text = format!("{err:#}");
        assert!(
            text.starts_with(&format!("GET http://127.0.0.1:{port}/healthz: ")),
            "{text}"
        );
        assert!(!text.contains('\n'), "{text}");
    }
}
