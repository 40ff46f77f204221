//! `dfctl get URL`: downloads an object through a peer's `/api/v1/download` (so through P2P),
//! streaming it to a file or stdout, then reports where the bytes came from.
//!
//! Invariants:
//! - The object is streamed chunk by chunk; it is never held in memory whole.
//! - `-O` goes through [`crate::destination`], like curl's and wget's: `-` is stdout; a
//!   character device, FIFO or socket (`-O /dev/null`) is written in place; a directory is an
//!   error; a regular file (or a symlink's target) gets the bytes in a temp file in its own
//!   directory, renamed over it only after the whole body arrived and was synced. On any
//!   failure (peer error, short body, Ctrl-C) the temp file is removed and an existing FILE is
//!   left untouched.
//! - stdout carries only the object (or, with `-O FILE -o json`, only the JSON summary); the
//!   progress bar and the human summary go to stderr.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use df_core::api::LocalTask;
use df_core::ids::ObjectDigest;
use futures_util::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;
use tokio::io::AsyncWriteExt as _;

use crate::admin::{self, AdminClient};
use crate::cli::{ClusterDirArg, OutputArg};
use crate::cluster::{ClusterState, Role};
use crate::destination::{self, Destination, Mode, Staged};
use crate::render::{self, OutputFormat};

/// Mode of a newly created download (a replaced file keeps its own); the umask does not apply.
const DOWNLOAD_MODE: u32 = 0o644;

/// The admin address of a peer on its default port, used when no cluster file names one.
/// The local peer's admin address.
pub fn default_peer() -> String {
    df_core::ports::loopback(df_core::ports::PEER_ADMIN)
}

#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The object's URL (http or https).
    pub url: String,
    /// Write to FILE instead of stdout ('-' is stdout).
    #[arg(short = 'O', long = "output-file", value_name = "FILE")]
    pub output_file: Option<PathBuf>,
    /// Admin address of the peer to download through [default: the first peer of the local
    /// cluster, else 127.0.0.1:4002].
    #[arg(long, value_name = "ADMIN_ADDR")]
    pub peer: Option<String>,
    #[command(flatten)]
    pub dir: ClusterDirArg,
    /// Expected digest of the whole object; the peer refuses content that does not match.
    #[arg(long, value_name = "sha256:HEX")]
    pub digest: Option<String>,
    /// Header sent to the origin, e.g. 'Authorization: Bearer x'; repeatable.
    #[arg(short = 'H', long = "header", value_name = "'NAME: VALUE'")]
    pub headers: Vec<String>,
    #[command(flatten)]
    pub output: OutputArg,
}

/// What a download did, printed on stderr or, with `-o json`, as JSON on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct DownloadSummary {
    pub url: String,
    pub peer: String,
    pub task_id: Option<String>,
    /// Where the object was written; `None` for stdout.
    pub output: Option<PathBuf>,
    pub bytes: u64,
    pub elapsed_secs: f64,
    pub bytes_per_sec: f64,
    /// The peer's `X-Dragonfly-Source`: `local`, `peer`, `seed` or `origin`.
    pub source: Option<String>,
    pub bytes_from_origin: Option<u64>,
    pub bytes_from_seeds: Option<u64>,
    pub bytes_from_peers: Option<u64>,
    /// Why the byte breakdown is missing, when it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_error: Option<String>,
}

impl DownloadSummary {
    /// Two lines for people.
    pub fn human(&self) -> String {
        let elapsed = Duration::from_secs_f64(self.elapsed_secs);
        let task = self
            .task_id
            .as_deref()
            .map_or_else(|| "download".to_owned(), |id| format!("task {id}"));
        let target = self
            .output
            .as_ref()
            .map_or_else(String::new, |p| format!(" -> {}", p.display()));
        let source = self.source.as_deref().unwrap_or("unknown");
        let breakdown = match (
            self.bytes_from_origin,
            self.bytes_from_seeds,
            self.bytes_from_peers,
        ) {
            (Some(o), Some(s), Some(p)) => format!(
                "origin {}, seeds {}, peers {}",
                render::bytes(o),
                render::bytes(s),
                render::bytes(p)
            ),
            _ => format!(
                "unknown ({})",
                self.task_error.as_deref().unwrap_or("the peer did not say")
            ),
        };
        format!(
            "{task}: {} in {} ({}){target}\nbytes from: {breakdown} (source: {source})\n",
            render::bytes(self.bytes),
            render::duration(elapsed),
            render::rate(self.bytes, elapsed),
        )
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let url = df_core::ids::validate_http_url(&args.url)?;
    let digest = args
        .digest
        .as_deref()
        .map(|d| ObjectDigest::try_from(d.to_owned()))
        .transpose()?;
    // The download API's own Authorization is the admin token; the origin's goes in its header.
    let mut headers = parse_headers(&args.headers)?;
    if let Some(auth) = headers.remove(reqwest::header::AUTHORIZATION) {
        headers.insert(
            HeaderName::from_static(df_core::HEADER_ORIGIN_AUTHORIZATION),
            auth,
        );
    }
    let output = args.output_file.clone().filter(|p| p.as_os_str() != "-");
    if args.output.output == OutputFormat::Json && output.is_none() {
        anyhow::bail!("-o json needs -O FILE: without it stdout carries the object itself");
    }
    // Classified before the download starts, so a directory or a bad link costs no transfer.
    let dest = match output.clone() {
        Some(path) => tokio::task::spawn_blocking(move || destination::resolve(&path, None))
            .await
            .context("resolve task failed")??,
        None => Destination::Stdout,
    };
    let peer = choose_peer(&args).await?;

    let digest_text = digest.as_ref().map(ToString::to_string);
    let endpoint = AdminClient::download_url(&peer, url.as_str(), digest_text.as_deref())?;

    let client = AdminClient::streaming(Duration::from_secs(5), Duration::from_secs(120))?;
    let started = Instant::now();
    let resp = client
        .http()
        .get(endpoint)
        .headers(headers)
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach peer {peer}: {}", admin::describe(&e)))?;
    let status = resp.status();
    if !status.is_success() {
        let line = admin::first_body_line(resp).await;
        let detail = if line.is_empty() {
            String::new()
        } else {
            format!(": {line}")
        };
        anyhow::bail!("peer {peer} answered {status} for {url}{detail}");
    }
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let task_id = header(df_core::HEADER_TASK_ID);
    let source = header(df_core::HEADER_SOURCE);
    let expected = resp.content_length();

    let progress = progress_bar(expected);
    let shown = output.as_deref().unwrap_or(Path::new("-")).to_owned();
    let bytes = download_to(resp, dest, &shown, expected, &progress, &peer).await?;
    let elapsed = started.elapsed();

    let mut summary = DownloadSummary {
        url: url.to_string(),
        peer: peer.clone(),
        task_id: task_id.clone(),
        output: output.clone(),
        bytes,
        elapsed_secs: elapsed.as_secs_f64(),
        bytes_per_sec: if elapsed.is_zero() {
            0.0
        } else {
            bytes as f64 / elapsed.as_secs_f64()
        },
        source,
        bytes_from_origin: None,
        bytes_from_seeds: None,
        bytes_from_peers: None,
        task_error: None,
    };
    match &task_id {
        Some(id) => match fetch_task(&peer, id).await {
            Ok(task) => {
                summary.bytes_from_origin = Some(task.bytes_from_origin);
                summary.bytes_from_seeds = Some(task.bytes_from_seeds);
                summary.bytes_from_peers = Some(task.bytes_from_peers);
            }
            Err(e) => summary.task_error = Some(format!("{e:#}")),
        },
        None => {
            summary.task_error = Some(format!(
                "no {} header in the answer",
                df_core::HEADER_TASK_ID
            ));
        }
    }
    match args.output.output {
        OutputFormat::Json => render::print_json(&summary)?,
        OutputFormat::Table => eprint!("{}", summary.human()),
    }
    Ok(ExitCode::SUCCESS)
}

/// `--peer`, else the first `peer` of the cluster file, else [`DEFAULT_PEER`]. A `--dir` that
/// was named explicitly must hold a cluster.
async fn choose_peer(args: &Args) -> anyhow::Result<String> {
    if let Some(peer) = &args.peer {
        return Ok(peer.clone());
    }
    let dir = match args.dir.resolve() {
        Ok(dir) => dir,
        // No HOME and no --dir: there is no default cluster to look in, only the default peer.
        Err(_) if !args.dir.is_explicit() => return Ok(default_peer()),
        Err(e) => return Err(e),
    };
    let state = ClusterState::load(&dir).await?;
    match state {
        Some(state) => state
            .with_role(Role::Peer)
            .chain(state.with_role(Role::Seed))
            .find_map(|p| p.admin_addr)
            .map(|a| a.to_string())
            .with_context(|| format!("the cluster in {} has no peers; pass --peer", dir.display())),
        None if args.dir.is_explicit() => anyhow::bail!(
            "no local cluster in {} (start one with `dfctl up --dir {}` or pass --peer)",
            dir.display(),
            dir.display()
        ),
        None => Ok(default_peer()),
    }
}

/// Parses `-H 'Name: value'` flags.
pub fn parse_headers(raw: &[String]) -> anyhow::Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for h in raw {
        let (name, value) = h
            .split_once(':')
            .with_context(|| format!("header '{h}' is not 'Name: value'"))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .with_context(|| format!("header '{h}' has an invalid name"))?;
        let value = HeaderValue::from_str(value.trim())
            .with_context(|| format!("header '{h}' has an invalid value"))?;
        headers.append(name, value);
    }
    Ok(headers)
}

/// Streams the body into `dest` ([`Staged`]: a temp file for a regular file, committed only
/// when the whole body arrived); on failure or Ctrl-C the temp file is removed.
async fn download_to(
    resp: reqwest::Response,
    dest: Destination,
    shown: &Path,
    expected: Option<u64>,
    progress: &ProgressBar,
    peer: &str,
) -> anyhow::Result<u64> {
    // Opening a FIFO blocks until a reader comes: off the runtime.
    let mut staged =
        tokio::task::spawn_blocking(move || Staged::open(&dest, Mode::New(DOWNLOAD_MODE)))
            .await
            .context("writer thread failed")??;
    let file = staged
        .file()
        .try_clone()
        .with_context(|| format!("cannot open {}", shown.display()))?;
    let mut out = tokio::fs::File::from_std(file);
    let copied = tokio::select! {
        r = copy_body(resp, &mut out, expected, progress, peer) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    progress.finish_and_clear();
    drop(out);
    let result = match copied {
        Ok(bytes) => tokio::task::spawn_blocking(move || staged.commit())
            .await
            .context("writer thread failed")?
            .map(|()| bytes)
            .map_err(anyhow::Error::from),
        Err(e) => {
            // Dropping removes the temp file: blocking work, so off the runtime too.
            let _ = tokio::task::spawn_blocking(move || drop(staged)).await;
            Err(e)
        }
    };
    result.with_context(|| format!("writing {}", shown.display()))
}

/// Copies the body chunk by chunk and checks that exactly `expected` bytes arrived.
async fn copy_body<W: tokio::io::AsyncWrite + Unpin>(
    resp: reqwest::Response,
    out: &mut W,
    expected: Option<u64>,
    progress: &ProgressBar,
    peer: &str,
) -> anyhow::Result<u64> {
    let mut body = resp.bytes_stream();
    let mut copied: u64 = 0;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| {
            anyhow::anyhow!(
                "download through peer {peer} broke after {copied} bytes: {}",
                admin::describe(&e)
            )
        })?;
        out.write_all(&chunk).await?;
        copied += chunk.len() as u64;
        progress.set_position(copied);
    }
    out.flush().await?;
    if let Some(expected) = expected {
        anyhow::ensure!(
            copied == expected,
            "peer {peer} sent {copied} of {expected} bytes"
        );
    }
    Ok(copied)
}

/// A bar on stderr sized by Content-Length (a byte counter without one); hidden unless stderr
/// is a terminal, so logs and pipes stay clean.
fn progress_bar(len: Option<u64>) -> ProgressBar {
    use std::io::IsTerminal as _;
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let (bar, template) = match len {
        Some(len) => (
            ProgressBar::with_draw_target(Some(len), target),
            "{bytes}/{total_bytes} [{bar:30}] {binary_bytes_per_sec} eta {eta}",
        ),
        None => (
            ProgressBar::with_draw_target(None, target),
            "{spinner} {bytes} {binary_bytes_per_sec}",
        ),
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

async fn fetch_task(peer: &str, task_id: &str) -> anyhow::Result<LocalTask> {
    let client = AdminClient::with_timeout(Duration::from_secs(2))?;
    client
        .peer_task(peer, task_id)
        .await?
        .with_context(|| format!("peer {peer} does not know task {task_id}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_and_bad_ones_are_named() {
        let h = parse_headers(&["Authorization: Bearer x".into(), "X-A:1".into()]).expect("ok");
        assert_eq!(h["authorization"], "Bearer x");
        assert_eq!(h["x-a"], "1");
        let err = parse_headers(&["nocolon".into()]).expect_err("bad");
        assert!(err.to_string().contains("'nocolon'"), "{err}");
        assert!(parse_headers(&["bad name: x".into()]).is_err());
    }

    #[test]
    fn summaries_read_as_two_lines() {
        let summary = DownloadSummary {
            url: "http://o/x".into(),
            peer: default_peer(),
            task_id: Some("ab".repeat(32)),
            output: Some("/tmp/x".into()),
            bytes: 10 << 20,
            elapsed_secs: 2.0,
            bytes_per_sec: 5.0 * 1024.0 * 1024.0,
            source: Some("seed".into()),
            bytes_from_origin: Some(0),
            bytes_from_seeds: Some(10 << 20),
            bytes_from_peers: Some(0),
            task_error: None,
        };
        let text = summary.human();
        assert_eq!(
            text,
            format!(
                "task {}: 10.0 MiB in 2.0s (5.0 MiB/s) -> /tmp/x\nbytes from: origin 0 B, seeds 10.0 MiB, peers 0 B (source: seed)\n",
                "ab".repeat(32)
            )
        );
        let json = serde_json::to_value(&summary).expect("json");
        assert_eq!(json["bytes_from_seeds"], 10 << 20);
        assert!(json.get("task_error").is_none());
    }

    /// A one-shot HTTP server that answers any request with `response` (raw bytes).
    async fn serve_once(response: Vec<u8>) -> String {
        use tokio::io::AsyncReadExt as _;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = listener.accept().await {
                let mut buf = vec![0; 8192];
                let _ = sock.read(&mut buf).await;
                let _ = sock.write_all(&response).await;
                let _ = sock.shutdown().await;
            }
        });
        addr
    }

    fn args(peer: &str, out: &Path) -> Args {
        Args {
            url: "http://origin.test/x".into(),
            output_file: Some(out.to_owned()),
            peer: Some(peer.to_owned()),
            dir: ClusterDirArg::default(),
            digest: None,
            headers: vec![],
            output: OutputArg::default(),
        }
    }

    #[tokio::test]
    async fn a_complete_body_replaces_the_file() {
        let peer = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nx-dragonfly-source: origin\r\nconnection: close\r\n\r\nhello"
                .to_vec(),
        )
        .await;
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out.bin");
        tokio::fs::write(&out, "old").await.expect("write");
        run(args(&peer, &out)).await.expect("download succeeds");
        assert_eq!(tokio::fs::read(&out).await.expect("read"), b"hello");
        assert_eq!(
            std::fs::read_dir(tmp.path()).expect("ls").count(),
            1,
            "no temp file"
        );
    }

    #[tokio::test]
    async fn a_short_body_leaves_the_old_file_and_no_part() {
        let peer = serve_once(
            b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\nconnection: close\r\n\r\nonly part"
                .to_vec(),
        )
        .await;
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out.bin");
        tokio::fs::write(&out, "old").await.expect("write");
        let err = run(args(&peer, &out)).await.expect_err("short body fails");
        assert!(!format!("{err:#}").contains('\n'), "{err:#}");
        assert_eq!(tokio::fs::read(&out).await.expect("read"), b"old");
        assert_eq!(
            std::fs::read_dir(tmp.path()).expect("ls").count(),
            1,
            "no temp file"
        );
    }

    #[tokio::test]
    async fn an_error_status_quotes_the_body() {
        let peer = serve_once(
            b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 24\r\nconnection: close\r\n\r\norigin said 404\nmore...\n"
                .to_vec(),
        )
        .await;
        let tmp = tempfile::tempdir().expect("tempdir");
        let out = tmp.path().join("out.bin");
        let err = run(args(&peer, &out)).await.expect_err("502 fails");
        let text = format!("{err:#}");
        assert!(
            text.contains("502 Bad Gateway") && text.ends_with(": origin said 404"),
            "{text}"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path()).expect("ls").count(),
            0,
            "nothing written"
        );
    }

    #[tokio::test]
    async fn non_http_urls_and_json_to_stdout_are_refused_up_front() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut a = args("127.0.0.1:1", &tmp.path().join("x"));
        a.url = "ftp://h/f".into();
        let err = run(a).await.expect_err("ftp");
        assert!(err.to_string().contains("scheme 'ftp'"), "{err}");
        let mut a = args("127.0.0.1:1", &tmp.path().join("x"));
        a.output_file = None;
        a.output.output = OutputFormat::Json;
        assert!(
            run(a)
                .await
                .expect_err("json to stdout")
                .to_string()
                .contains("-o json needs -O")
        );
    }
}
