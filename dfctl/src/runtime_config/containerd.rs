//! containerd: registry `config_path` in `config.toml`, and one `hosts.toml` per mirrored
//! registry under it that sends pulls to the node's dfdaemon first.
//!
//! Invariants:
//! - `config.toml` is edited with `toml_edit`, touching only the `config_path` key (or adding
//!   the registry table that holds it): comments, key order, quoting and every other setting
//!   stay byte for byte. It is left alone when `config_path` is already set; then the first
//!   `:`-separated directory of it is where the hosts files go.
//! - The plugin holding `registry.config_path` follows the config's `version`: 3 (containerd
//!   2.x) `plugins."io.containerd.cri.v1.images"`, 2 `plugins."io.containerd.grpc.v1.cri"`,
//!   1 or none (containerd's rule for a file without `version`) `plugins.cri`.
//! - Legacy CRI `registry.mirrors` entries and `registry.configs.<host>.tls` tables are
//!   refused: with `config_path` set, containerd's CRI plugin does not load at all ("`mirrors`
//!   cannot be set when `config_path` is provided", "`configs.tls` cannot be set ...", seen
//!   with containerd 1.6.20). An empty `mirrors` table (as `containerd config default` prints)
//!   and `configs.<host>.auth` are fine.
//! - A `hosts.toml` lists the dfdaemon as the first `[host]` (pull and resolve, with the
//!   `X-Dragonfly-Registry` header naming the registry), then any other mirrors it had, then
//!   the registry itself as a `[host]` (containerd 1.6 ignores a file without one) and as
//!   `server` (the fallback). An existing file's `ca`, `client` and `skip_verify` survive, and
//!   its `server` too unless `--registry` names a scheme.
//! - A file that cannot be parsed is an error naming it and the line; nothing is written.

use std::path::{Path, PathBuf};

use toml_edit::{DocumentMut, Item, Table, Value};

use super::{PeerAddr, Registry, fill, line_of};
use crate::write_plan::{WriteError, WritePlan};

pub const DEFAULT_CONFIG: &str = "/etc/containerd/config.toml";
/// Where hosts files go when `config_path` is unset (what dfctl then sets it to).
pub const DEFAULT_HOSTS_DIR: &str = "/etc/containerd/certs.d";
/// containerd's catch-all directory name.
pub const DEFAULT_NAMESPACE: &str = "_default";

const HOSTS_TEMPLATE: &str = include_str!("../../../templates/containerd/hosts.toml");
const DEFAULT_HOSTS_TEMPLATE: &str =
    include_str!("../../../templates/containerd/hosts-default.toml");

/// Keys of a registry's TLS setup that a regenerated hosts.toml keeps.
const KEPT_KEYS: [&str; 3] = ["ca", "client", "skip_verify"];

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("{file}:{line}: not valid TOML: {message}")]
    Toml {
        file: PathBuf,
        line: usize,
        message: String,
    },
    #[error("{file}: version = {version} is not a containerd config version (1, 2 or 3)")]
    Version { file: PathBuf, version: String },
    #[error("{file}: key '{key}' should be {expected}")]
    Shape {
        file: PathBuf,
        key: String,
        expected: &'static str,
    },
    #[error(
        "{file}: '{key}' has legacy {what} ({names}); containerd's CRI plugin will not load with \
         them and config_path: move them to hosts.toml files or delete them, then run again"
    )]
    LegacyRegistry {
        file: PathBuf,
        key: String,
        what: &'static str,
        names: String,
    },
    #[error(transparent)]
    Write(#[from] WriteError),
}

/// What `gen-config containerd` does.
#[derive(Debug, Clone)]
pub struct Options {
    pub peer: PeerAddr,
    pub registries: Vec<Registry>,
    /// Also write `_default/hosts.toml`, the catch-all for every other registry.
    pub default_mirror: bool,
    /// Node path of containerd's config.
    pub config: PathBuf,
}

/// The result of looking at (and maybe editing) `config.toml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEdit {
    /// The new text, when the file needs `config_path`.
    pub text: Option<String>,
    /// Node path of the hosts directory.
    pub hosts_dir: PathBuf,
    /// The dotted key of `config_path` for this config version.
    pub key: String,
}

fn toml_error(file: &Path, text: &str, e: &toml_edit::TomlError) -> ContainerdError {
    ContainerdError::Toml {
        file: file.to_owned(),
        line: e.span().map_or(1, |s| line_of(text, s.start)),
        message: e.message().trim().replace('\n', " "),
    }
}

fn parse(file: &Path, text: &str) -> Result<DocumentMut, ContainerdError> {
    text.parse::<DocumentMut>()
        .map_err(|e| toml_error(file, text, &e))
}

/// The plugin table path of the registry settings for a config `version`.
fn registry_path(file: &Path, doc: &DocumentMut) -> Result<[&'static str; 3], ContainerdError> {
    let version = match doc.get("version") {
        None => 1,
        Some(item) => match item.as_integer() {
            Some(v) => v,
            None => {
                return Err(ContainerdError::Version {
                    file: file.to_owned(),
                    version: item.to_string().trim().to_owned(),
                });
            }
        },
    };
    match version {
        1 => Ok(["plugins", "cri", "registry"]),
        2 => Ok(["plugins", "io.containerd.grpc.v1.cri", "registry"]),
        3 => Ok(["plugins", "io.containerd.cri.v1.images", "registry"]),
        v => Err(ContainerdError::Version {
            file: file.to_owned(),
            version: v.to_string(),
        }),
    }
}

fn dotted(path: &[&str]) -> String {
    path.iter()
        .map(|k| {
            if k.contains('.') {
                format!("\"{k}\"")
            } else {
                (*k).to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// Sets `config_path` in containerd's config `text` (read from `file`) when it is missing or
/// empty, changing nothing else.
pub fn edit_config(file: &Path, text: &str) -> Result<ConfigEdit, ContainerdError> {
    let mut doc = parse(file, text)?;
    let path = registry_path(file, &doc)?;
    let key = format!("{}.config_path", dotted(&path));
    let shape = |at: &[&str], expected| ContainerdError::Shape {
        file: file.to_owned(),
        key: dotted(at),
        expected,
    };

    // Walk (creating implicit tables as needed) down to the registry table.
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for (depth, name) in path.iter().enumerate() {
        if table.get(name).is_none() {
            let mut t = Table::new();
            t.set_implicit(depth + 1 < path.len());
            table.insert(name, Item::Table(t));
        }
        table = table
            .get_mut(name)
            .and_then(Item::as_table_like_mut)
            .ok_or_else(|| shape(&path[..=depth], "a table"))?;
    }

    if let Some(mirrors) = table.get("mirrors") {
        let mirrors = mirrors
            .as_table_like()
            .ok_or_else(|| shape(&[&path[..], &["mirrors"]].concat(), "a table"))?;
        if !mirrors.is_empty() {
            let names: Vec<&str> = mirrors.iter().map(|(k, _)| k).collect();
            return Err(ContainerdError::LegacyRegistry {
                file: file.to_owned(),
                key: format!("{}.mirrors", dotted(&path)),
                what: "mirrors",
                names: names.join(", "),
            });
        }
    }
    if let Some(configs) = table.get("configs").and_then(Item::as_table_like) {
        let names: Vec<&str> = configs
            .iter()
            .filter(|(_, c)| c.as_table_like().is_some_and(|c| c.contains_key("tls")))
            .map(|(k, _)| k)
            .collect();
        if !names.is_empty() {
            return Err(ContainerdError::LegacyRegistry {
                file: file.to_owned(),
                key: format!("{}.configs", dotted(&path)),
                what: "TLS settings",
                names: names.join(", "),
            });
        }
    }

    let current = match table.get("config_path") {
        None => None,
        Some(item) => Some(
            item.as_str()
                .ok_or_else(|| shape(&[&path[..], &["config_path"]].concat(), "a string"))?
                .to_owned(),
        ),
    };
    if let Some(set) = current.as_deref().filter(|s| !s.is_empty()) {
        let first = set.split(':').next().unwrap_or(set);
        let dir = PathBuf::from(first);
        if !dir.is_absolute() {
            return Err(shape(
                &[&path[..], &["config_path"]].concat(),
                "an absolute directory",
            ));
        }
        return Ok(ConfigEdit {
            text: None,
            hosts_dir: dir,
            key,
        });
    }

    let mut value = Value::from(DEFAULT_HOSTS_DIR);
    match table.get_mut("config_path").and_then(Item::as_value_mut) {
        Some(old) => {
            // Keep the spacing and any comment around the old empty value.
            *value.decor_mut() = old.decor().clone();
            *old = value;
        }
        None => {
            table.insert("config_path", Item::Value(value));
        }
    }
    Ok(ConfigEdit {
        text: Some(doc.to_string()),
        hosts_dir: PathBuf::from(DEFAULT_HOSTS_DIR),
        key,
    })
}

/// A TOML basic string.
fn quoted(s: &str) -> String {
    Value::from(s).to_string().trim().to_owned()
}

fn value_text(v: &Value) -> String {
    v.clone().decorated("", "").to_string()
}

/// `key = value` lines (indented by `indent`) for the kept TLS keys of a table.
fn kept_lines(table: Option<&dyn toml_edit::TableLike>, indent: &str) -> Vec<String> {
    let Some(table) = table else {
        return Vec::new();
    };
    KEPT_KEYS
        .iter()
        .filter_map(|k| {
            let v = table.get(k)?.as_value()?;
            Some(format!("{indent}{k} = {}", value_text(v)))
        })
        .collect()
}

/// A `[host."url"]` table of another mirror, rendered back as it was (values and subtables).
fn render_host_table(url: &str, table: &dyn toml_edit::TableLike) -> String {
    fn walk(header: &str, table: &dyn toml_edit::TableLike, depth: usize, out: &mut String) {
        let indent = "  ".repeat(depth);
        out.push_str(&format!("{indent}[{header}]\n"));
        for (k, item) in table.iter() {
            if item.as_table_like().is_none()
                && let Some(v) = item.as_value()
            {
                out.push_str(&format!(
                    "{indent}  {} = {}\n",
                    quoted_key(k),
                    value_text(v)
                ));
            }
        }
        for (k, item) in table.iter() {
            if let Some(sub) = item.as_table_like() {
                walk(&format!("{header}.{}", quoted_key(k)), sub, depth + 1, out);
            }
        }
    }
    let mut out = String::from("\n");
    walk(&format!("host.{}", quoted(url)), table, 0, &mut out);
    out
}

fn quoted_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        quoted(k)
    }
}

/// Renders `hosts.toml` for `registry` (`None`: the `_default` catch-all) through `peer`,
/// keeping what the file at `file` had (`existing`) as described in the module doc.
pub fn render_hosts(
    file: &Path,
    registry: Option<&Registry>,
    peer: &PeerAddr,
    existing: Option<&str>,
) -> Result<String, ContainerdError> {
    let doc = existing.map(|text| parse(file, text)).transpose()?;
    let peer_url = peer.url();
    let server = match (registry, &doc) {
        (Some(r), Some(doc)) if !r.has_explicit_scheme() => doc
            .get("server")
            .and_then(Item::as_str)
            .map_or_else(|| r.server_url(), str::to_owned),
        (Some(r), _) => r.server_url(),
        (None, _) => String::new(),
    };
    let hosts = doc
        .as_ref()
        .and_then(|d| d.get("host"))
        .and_then(Item::as_table_like);
    let other_hosts: String = hosts
        .map(|h| {
            h.iter()
                .filter(|(url, _)| {
                    url.trim_end_matches('/') != peer_url && url.trim_end_matches('/') != server
                })
                .filter_map(|(url, item)| Some(render_host_table(url, item.as_table_like()?)))
                .collect()
        })
        .unwrap_or_default();
    let Some(registry) = registry else {
        let out = fill(
            DEFAULT_HOSTS_TEMPLATE,
            &[
                ("peer_url", &quoted(&peer_url)),
                ("other_hosts", &other_hosts),
            ],
        );
        return Ok(format!("{}\n", out.trim_end()));
    };
    let top = doc
        .as_ref()
        .map(|d| d.as_table() as &dyn toml_edit::TableLike);
    let server_tls = kept_lines(top, "");
    let origin_table = hosts
        .and_then(|h| {
            h.iter()
                .find(|(url, _)| url.trim_end_matches('/') == server)
                .map(|(_, item)| item)
        })
        .and_then(Item::as_table_like);
    // The origin's [host] table gets its own TLS keys, else the top-level ones.
    let mut origin_tls = kept_lines(origin_table, "  ");
    if origin_tls.is_empty() {
        origin_tls = kept_lines(top, "  ");
    }
    let block = |lines: Vec<String>| {
        if lines.is_empty() {
            String::new()
        } else {
            format!("{}\n", lines.join("\n"))
        }
    };
    let out = fill(
        HOSTS_TEMPLATE,
        &[
            ("registry", registry.host()),
            ("server", &quoted(&server)),
            ("server_tls", &block(server_tls)),
            ("peer_url", &quoted(&peer_url)),
            ("other_hosts", &other_hosts),
            ("origin_tls", &block(origin_tls)),
        ],
    );
    Ok(format!("{}\n", out.trim_end()))
}

/// The full plan for `gen-config containerd` under `root`, plus notes for the operator.
pub fn plan(
    root: &Path,
    generator: &str,
    opts: &Options,
) -> Result<(WritePlan, Vec<String>), ContainerdError> {
    let mut plan = WritePlan::new(root, generator);
    let mut notes = Vec::new();
    let config = plan.current(&opts.config)?;
    let hosts_dir = match config {
        None => {
            notes.push(format!(
                "{} does not exist: wrote only hosts.toml files under {DEFAULT_HOSTS_DIR}; \
                 containerd reads them once its registry config_path names that directory",
                plan.host_path(&opts.config).display()
            ));
            PathBuf::from(DEFAULT_HOSTS_DIR)
        }
        Some(bytes) => {
            let host_file = plan.host_path(&opts.config);
            let text = String::from_utf8(bytes).map_err(|e| ContainerdError::Toml {
                file: host_file.clone(),
                line: 1,
                message: format!("not UTF-8: {e}"),
            })?;
            let edit = edit_config(&host_file, &text)?;
            if let Some(new) = edit.text {
                plan.add(&opts.config, new, 0o644);
                notes.push(format!(
                    "set {} = \"{}\": restart containerd to load it (`systemctl restart \
                     containerd`); hosts.toml files are re-read on every pull",
                    edit.key,
                    edit.hosts_dir.display()
                ));
            }
            edit.hosts_dir
        }
    };
    let targets = opts
        .registries
        .iter()
        .map(Some)
        .chain(opts.default_mirror.then_some(None));
    for registry in targets {
        let dir = registry.map_or(DEFAULT_NAMESPACE, Registry::host);
        let node_path = hosts_dir.join(dir).join("hosts.toml");
        let host_file = plan.host_path(&node_path);
        let existing = plan
            .current(&node_path)?
            .map(String::from_utf8)
            .transpose()
            .map_err(|e| ContainerdError::Toml {
                file: host_file.clone(),
                line: 1,
                message: format!("not UTF-8: {e}"),
            })?;
        let text = render_hosts(&host_file, registry, &opts.peer, existing.as_deref())?;
        plan.add(node_path, text, 0o644);
    }
    Ok((plan, notes))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &[(&str, &str)] = &[
        (
            "containerd-1.6-default",
            include_str!("../../testdata/containerd/containerd-1.6-default.toml"),
        ),
        (
            "containerd-2.0-default",
            include_str!("../../testdata/containerd/containerd-2.0-default.toml"),
        ),
        (
            "commented",
            include_str!("../../testdata/containerd/commented.toml"),
        ),
        (
            "no-version",
            include_str!("../../testdata/containerd/no-version.toml"),
        ),
    ];

    fn peer() -> PeerAddr {
        "127.0.0.1:65001".parse().expect("peer")
    }

    fn registry(s: &str) -> Registry {
        s.parse().expect("registry")
    }

    /// Only the `config_path` line (and, when there was no registry table, its header) differ.
    fn assert_only_config_path_changed(name: &str, before: &str, after: &str) {
        let diff = similar::TextDiff::from_lines(before, after);
        for change in diff.iter_all_changes() {
            let line = change.value().trim();
            match change.tag() {
                similar::ChangeTag::Equal => {}
                similar::ChangeTag::Delete => assert!(
                    line == "config_path = \"\"" || line == "config_path = ''",
                    "{name}: removed {line:?}"
                ),
                similar::ChangeTag::Insert => assert!(
                    line == "config_path = \"/etc/containerd/certs.d\""
                        || (line.starts_with("[plugins") && line.ends_with("registry]"))
                        || line.is_empty(),
                    "{name}: added {line:?}"
                ),
            }
        }
    }

    #[test]
    fn config_path_is_set_and_nothing_else_changes() {
        for (name, text) in SAMPLES {
            let edit = edit_config(Path::new(name), text).expect(name);
            let new = edit.text.expect("config_path was missing");
            assert_only_config_path_changed(name, text, &new);
            assert_eq!(edit.hosts_dir, Path::new(DEFAULT_HOSTS_DIR));
            // The result has config_path where containerd looks, so a re-run changes nothing.
            let again = edit_config(Path::new(name), &new).expect("re-parse");
            assert_eq!(again.text, None, "{name}: second run changed the file");
            assert_eq!(again.key, edit.key);
            insta::assert_snapshot!(format!("config_{name}"), new);
        }
    }

    #[test]
    fn the_plugin_key_follows_the_config_version() {
        let key = |text: &str| edit_config(Path::new("c"), text).expect("edit").key;
        assert_eq!(
            key("version = 2"),
            "plugins.\"io.containerd.grpc.v1.cri\".registry.config_path"
        );
        assert_eq!(
            key("version = 3"),
            "plugins.\"io.containerd.cri.v1.images\".registry.config_path"
        );
        assert_eq!(key(""), "plugins.cri.registry.config_path");
        let new = edit_config(Path::new("c"), "version = 3\n")
            .expect("edit")
            .text
            .expect("changed");
        assert_eq!(
            new,
            "version = 3\n\n[plugins.\"io.containerd.cri.v1.images\".registry]\nconfig_path = \"/etc/containerd/certs.d\"\n"
        );
        let err = edit_config(Path::new("c"), "version = 4").expect_err("v4");
        assert!(err.to_string().contains("version = 4"), "{err}");
    }

    #[test]
    fn an_existing_config_path_is_used_and_the_file_left_alone() {
        let text = include_str!("../../testdata/containerd/has-config-path.toml");
        let edit = edit_config(Path::new("c"), text).expect("edit");
        assert_eq!(edit.text, None);
        assert_eq!(edit.hosts_dir, Path::new("/etc/containerd/certs.d"));
        let edit = edit_config(
            Path::new("c"),
            "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\nconfig_path = \"/srv/hosts\"\n",
        )
        .expect("edit");
        assert_eq!(edit.hosts_dir, Path::new("/srv/hosts"));
    }

    #[test]
    fn legacy_mirrors_and_broken_files_are_refused_with_file_and_line() {
        let text = include_str!("../../testdata/containerd/legacy-mirrors.toml");
        let err = edit_config(Path::new("/etc/containerd/config.toml"), text).expect_err("mirrors");
        let msg = err.to_string();
        assert!(
            msg.contains("docker.io") && msg.contains("registry.mirrors"),
            "{msg}"
        );
        assert!(msg.starts_with("/etc/containerd/config.toml:"), "{msg}");

        let err = edit_config(
            Path::new("/x/config.toml"),
            "version = 2\n[grpc\naddress = 1\n",
        )
        .expect_err("broken");
        assert!(
            err.to_string()
                .starts_with("/x/config.toml:2: not valid TOML"),
            "{err}"
        );
        assert!(!err.to_string().contains('\n'));
        let err = edit_config(Path::new("c"), "version = 2\nplugins = 3\n").expect_err("shape");
        assert!(err.to_string().contains("key 'plugins'"), "{err}");
    }

    #[test]
    fn hosts_toml_for_a_registry_and_the_catch_all() {
        let f = Path::new("hosts.toml");
        let docker = render_hosts(f, Some(&registry("docker.io")), &peer(), None).expect("render");
        insta::assert_snapshot!("hosts_docker_io", docker);
        let http = render_hosts(
            f,
            Some(&registry("http://registry.test:5000")),
            &peer(),
            None,
        )
        .expect("render");
        insta::assert_snapshot!("hosts_registry_test_http", http);
        let catch_all = render_hosts(f, None, &peer(), None).expect("render");
        insta::assert_snapshot!("hosts_default", catch_all);
        for text in [&docker, &http, &catch_all] {
            let doc: DocumentMut = text.parse().expect("valid TOML");
            let peer_host = &doc["host"]["http://127.0.0.1:65001"];
            assert_eq!(
                peer_host["capabilities"].as_array().map(|a| a.len()),
                Some(2),
                "{text}"
            );
        }
        let doc: DocumentMut = docker.parse().expect("valid TOML");
        // containerd 1.6 needs a [host] table besides the peer's to keep the origin's settings.
        assert!(doc["host"]["https://registry-1.docker.io"].is_table());
        assert!(
            catch_all
                .parse::<DocumentMut>()
                .expect("toml")
                .get("server")
                .is_none()
        );
    }

    #[test]
    fn hosts_toml_keeps_tls_settings_server_and_other_mirrors() {
        let existing = r#"# hand-written
server = "https://registry.internal:5000"
ca = ["/etc/pki/internal-ca.pem"]
client = [["/etc/pki/client.crt", "/etc/pki/client.key"]]

[host."https://mirror.internal"]
  capabilities = ["pull"]
  skip_verify = true
  [host."https://mirror.internal".header]
    Authorization = "Basic abc"

[host."https://registry.internal:5000"]
  capabilities = ["pull", "resolve", "push"]
  ca = "/etc/pki/other.pem"
"#;
        let f = Path::new("hosts.toml");
        let r = registry("registry.internal:5000");
        let text = render_hosts(f, Some(&r), &peer(), Some(existing)).expect("render");
        insta::assert_snapshot!("hosts_kept", text);
        let doc: DocumentMut = text.parse().expect("valid TOML");
        assert_eq!(
            doc["server"].as_str(),
            Some("https://registry.internal:5000")
        );
        assert_eq!(
            doc["ca"]
                .as_array()
                .and_then(|a| a.get(0))
                .and_then(Value::as_str),
            Some("/etc/pki/internal-ca.pem")
        );
        assert!(doc["client"].is_array());
        let hosts: Vec<&str> = doc["host"]
            .as_table_like()
            .expect("hosts")
            .iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(
            hosts,
            [
                "http://127.0.0.1:65001",
                "https://mirror.internal",
                "https://registry.internal:5000"
            ]
        );
        assert_eq!(
            doc["host"]["https://mirror.internal"]["header"]["Authorization"].as_str(),
            Some("Basic abc")
        );
        assert_eq!(
            doc["host"]["https://registry.internal:5000"]["ca"].as_str(),
            Some("/etc/pki/other.pem")
        );
        assert_eq!(
            doc["host"]["http://127.0.0.1:65001"]["header"]["X-Dragonfly-Registry"].as_str(),
            Some("https://registry.internal:5000")
        );
        // Re-rendering our own output is a fixed point.
        let again = render_hosts(f, Some(&r), &peer(), Some(&text)).expect("render");
        assert_eq!(again, text);
        // An explicit scheme wins over the file's server.
        let r = registry("http://registry.internal:5000");
        let text = render_hosts(f, Some(&r), &peer(), Some(existing)).expect("render");
        assert!(
            text.contains("server = \"http://registry.internal:5000\""),
            "{text}"
        );

        let err = render_hosts(
            Path::new("/h/hosts.toml"),
            Some(&r),
            &peer(),
            Some("a = [\n"),
        )
        .expect_err("broken");
        assert!(err.to_string().starts_with("/h/hosts.toml:"), "{err}");
    }

    #[test]
    fn plan_without_a_config_writes_only_hosts_files_and_is_idempotent() {
        let root = tempfile::tempdir().expect("tempdir");
        let opts = Options {
            peer: peer(),
            registries: vec![registry("docker.io"), registry("ghcr.io")],
            default_mirror: true,
            config: PathBuf::from(DEFAULT_CONFIG),
        };
        let (plan, notes) = plan(root.path(), "gen-config containerd", &opts).expect("plan");
        assert!(notes[0].contains("does not exist"), "{notes:?}");
        let paths: Vec<_> = plan.files().iter().map(|f| f.path.clone()).collect();
        assert_eq!(
            paths,
            [
                PathBuf::from("/etc/containerd/certs.d/docker.io/hosts.toml"),
                PathBuf::from("/etc/containerd/certs.d/ghcr.io/hosts.toml"),
                PathBuf::from("/etc/containerd/certs.d/_default/hosts.toml"),
            ]
        );
        plan.apply().expect("apply");
        let (again, _) = super::plan(root.path(), "gen-config containerd", &opts).expect("plan");
        assert_eq!(again.diff().expect("diff"), "");
        assert!(!root.path().join("etc/containerd/config.toml").exists());
    }
}
