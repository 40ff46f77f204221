//! Docker: a systemd drop-in that points dockerd's `HTTP_PROXY`/`HTTPS_PROXY` at the node's
//! dfdaemon (the one route that covers every registry: `registry-mirrors` only ever applies
//! to Docker Hub), and optionally the dfdaemon as a Docker Hub `registry-mirrors` entry in
//! `daemon.json`.
//!
//! Invariants: `daemon.json` is merged, never replaced: every other key keeps its value and
//! its place (serde_json with `preserve_order`), existing mirrors stay (ours is appended), and
//! a file that already lists our mirror is not rewritten at all, whatever its formatting.
//! Invalid JSON is an error naming the file, line and column; nothing is written.

use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{PeerAddr, fill};
use crate::write_plan::{WriteError, WritePlan};

pub const DROP_IN: &str = "/etc/systemd/system/docker.service.d/http-proxy.conf";
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";
/// Hosts dockerd always reaches directly.
pub const DEFAULT_NO_PROXY: &str = "localhost,127.0.0.0/8,::1";

const DROP_IN_TEMPLATE: &str = include_str!("../../../templates/docker/http-proxy.conf");

#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("{file}:{line}:{column}: not valid JSON: {message}")]
    Json {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{file}: {message}")]
    Shape { file: PathBuf, message: String },
    #[error("--no-proxy entry '{entry}' may not contain spaces, quotes or backslashes")]
    NoProxy { entry: String },
    #[error(transparent)]
    Write(#[from] WriteError),
}

#[derive(Debug, Clone)]
pub struct Options {
    pub peer: PeerAddr,
    /// Extra NO_PROXY entries (cluster CIDRs, internal domains), after the loopback defaults.
    pub no_proxy: Vec<String>,
    /// Also add the dfdaemon to `registry-mirrors` in daemon.json.
    pub registry_mirror: bool,
}

/// systemd unit-file value escaping: `%` starts a specifier.
fn systemd_escape(s: &str) -> String {
    s.replace('%', "%%")
}

/// The drop-in's text.
pub fn render_drop_in(opts: &Options) -> Result<String, DockerError> {
    let mut entries: Vec<String> = DEFAULT_NO_PROXY.split(',').map(str::to_owned).collect();
    for entry in opts.no_proxy.iter().flat_map(|l| l.split(',')) {
        let entry = entry.trim();
        if entry.is_empty() {
            continue;
        }
        if entry.contains(|c: char| c.is_whitespace() || c == '"' || c == '\\') {
            return Err(DockerError::NoProxy {
                entry: entry.to_owned(),
            });
        }
        if !entries.iter().any(|e| e == entry) {
            entries.push(entry.to_owned());
        }
    }
    Ok(fill(
        DROP_IN_TEMPLATE,
        &[
            ("proxy", &systemd_escape(&opts.peer.url())),
            ("no_proxy", &systemd_escape(&entries.join(","))),
        ],
    ))
}

/// `daemon.json` with `mirror` in `registry-mirrors`; `None` when it is already there.
pub fn merge_daemon_json(
    file: &Path,
    existing: Option<&str>,
    mirror: &str,
) -> Result<Option<String>, DockerError> {
    let mut doc = match existing {
        Some(text) if !text.trim().is_empty() => {
            serde_json::from_str::<Value>(text).map_err(|e| DockerError::Json {
                file: file.to_owned(),
                line: e.line(),
                column: e.column(),
                message: e
                    .to_string()
                    .split(" at line ")
                    .next()
                    .unwrap_or("")
                    .to_owned(),
            })?
        }
        _ => Value::Object(serde_json::Map::new()),
    };
    let shape = |message: &str| DockerError::Shape {
        file: file.to_owned(),
        message: message.to_owned(),
    };
    let object = doc
        .as_object_mut()
        .ok_or_else(|| shape("the top level is not a JSON object"))?;
    let mirrors = object
        .entry("registry-mirrors")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or_else(|| shape("\"registry-mirrors\" is not an array"))?;
    let same = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.trim_end_matches('/') == mirror.trim_end_matches('/'))
    };
    if mirrors.iter().any(same) {
        return Ok(None);
    }
    mirrors.push(Value::String(mirror.to_owned()));
    let mut text = serde_json::to_string_pretty(&doc).map_err(|e| shape(&e.to_string()))?;
    text.push('\n');
    Ok(Some(text))
}

/// The plan for `gen-config docker` and the steps to print.
pub fn plan(
    root: &Path,
    generator: &str,
    opts: &Options,
) -> Result<(WritePlan, Vec<String>), DockerError> {
    let mut plan = WritePlan::new(root, generator);
    plan.add_whole(DROP_IN, render_drop_in(opts)?, 0o644);
    if opts.registry_mirror {
        let node = Path::new(DAEMON_JSON);
        let file = plan.host_path(node);
        let existing = plan
            .current(node)?
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        if let Some(text) = merge_daemon_json(&file, existing.as_deref(), &opts.peer.url())? {
            plan.add(node, text, 0o644);
        }
    }
    let notes = vec![
        "dockerd reads proxy settings only at start: run `systemctl daemon-reload && \
         systemctl restart docker` (or pass --restart)"
            .to_owned(),
    ];
    Ok((plan, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> Options {
        Options {
            peer: "127.0.0.1:65001".parse().expect("peer"),
            no_proxy: vec!["10.0.0.0/8,.cluster.local".into(), "100%.example".into()],
            registry_mirror: true,
        }
    }

    #[test]
    fn drop_in_golden() {
        let text = render_drop_in(&opts()).expect("render");
        insta::assert_snapshot!("docker_drop_in", text);
        assert!(text.contains(
            "NO_PROXY=localhost,127.0.0.0/8,::1,10.0.0.0/8,.cluster.local,100%%.example"
        ));
        let mut bad = opts();
        bad.no_proxy = vec!["a b".into()];
        assert!(render_drop_in(&bad).is_err());
    }

    #[test]
    fn daemon_json_is_merged_keeping_keys_and_order() {
        let f = Path::new("/etc/docker/daemon.json");
        let existing = "{\n  \"log-driver\": \"journald\",\n  \"registry-mirrors\": [\"https://mirror.gcr.io\"],\n  \"data-root\": \"/srv/docker\",\n  \"live-restore\": true\n}\n";
        let merged = merge_daemon_json(f, Some(existing), "http://127.0.0.1:65001")
            .expect("merge")
            .expect("changed");
        insta::assert_snapshot!("daemon_json_merged", merged);
        let keys: Vec<String> = serde_json::from_str::<serde_json::Map<String, Value>>(&merged)
            .expect("json")
            .keys()
            .cloned()
            .collect();
        assert_eq!(
            keys,
            [
                "log-driver",
                "registry-mirrors",
                "data-root",
                "live-restore"
            ]
        );
        assert_eq!(
            merge_daemon_json(f, Some(&merged), "http://127.0.0.1:65001/").expect("merge"),
            None
        );
        // A compact file that already has the mirror is not reformatted.
        assert_eq!(
            merge_daemon_json(
                f,
                Some("{\"registry-mirrors\":[\"http://127.0.0.1:65001\"]}"),
                "http://127.0.0.1:65001"
            )
            .expect("merge"),
            None
        );
        let fresh = merge_daemon_json(f, None, "http://127.0.0.1:65001").expect("merge");
        assert_eq!(
            fresh.as_deref(),
            Some("{\n  \"registry-mirrors\": [\n    \"http://127.0.0.1:65001\"\n  ]\n}\n")
        );
    }

    #[test]
    fn broken_daemon_json_names_file_and_line() {
        let f = Path::new("/etc/docker/daemon.json");
        let err = merge_daemon_json(f, Some("{\n  \"a\": 1,\n  \"b\": \n}\n"), "http://p:1")
            .expect_err("broken");
        let msg = err.to_string();
        assert!(msg.starts_with("/etc/docker/daemon.json:4:"), "{msg}");
        assert!(!msg.contains('\n'), "{msg}");
        let err = merge_daemon_json(f, Some("[1]"), "http://p:1").expect_err("not an object");
        assert!(err.to_string().contains("not a JSON object"), "{err}");
        let err = merge_daemon_json(f, Some("{\"registry-mirrors\": \"x\"}"), "http://p:1")
            .expect_err("not an array");
        assert!(err.to_string().contains("registry-mirrors"), "{err}");
    }
}
