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
        anyhow::ensure!(resp.status().is_success(), "PUT {url}: {}", resp.status());
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
