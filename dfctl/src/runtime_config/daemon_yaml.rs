//! `dfdaemon.yaml` and `dfscheduler.yaml` for `dfctl gen-config daemons` and `dfctl init`: the
//! daemons' raw config types from `df_core::config`, serialized under their comment header.
//!
//! Invariant (checked by the integration test `daemon_configs`, which may link the daemons):
//! each file loads with its daemon's own loader, `deny_unknown_fields` included, to exactly
//! the daemon's built-in defaults (except what the caller sets, and the `tls:` paths, which
//! have no default: secure by default means a daemon without them does not start), and names
//! every key the daemon knows, because it is the serialization of the type the daemon reads.

use df_core::config::{ConfigError, peer, scheduler, tls, to_yaml};

use crate::write_plan::WritePlan;

pub const PEER_PATH: &str = peer::DEFAULT_PATH;
pub const SCHEDULER_PATH: &str = scheduler::DEFAULT_PATH;

/// The `tls:` section of a node's configs: its identity under [`tls::NODE_DIR`].
pub fn node_tls() -> tls::RawTls {
    tls::RawTls::in_dir(std::path::Path::new(tls::NODE_DIR))
}

/// The raw `dfdaemon.yaml` with the defaults, except `seed`, `schedulers`, the node's
/// identity files ([`node_tls`]) and (when given) the proxy address, for a node of a
/// cluster; callers set more keys before [`render_peer`].
pub fn peer_raw(seed: bool, schedulers: &[String], proxy_addr: Option<&str>) -> peer::RawConfig {
    let mut raw = peer::RawConfig {
        seed,
        schedulers: schedulers.to_vec(),
        tls: node_tls(),
        ..peer::RawConfig::default()
    };
    if let Some(addr) = proxy_addr {
        addr.clone_into(&mut raw.server.proxy_addr);
    }
    raw
}

/// `dfdaemon.yaml`: `raw` under the peer's comment header.
pub fn render_peer(raw: &peer::RawConfig) -> Result<String, ConfigError> {
    to_yaml(peer::HEADER, raw, "dfdaemon.yaml")
}

/// [`peer_raw`] rendered.
pub fn peer_yaml(
    seed: bool,
    schedulers: &[String],
    proxy_addr: Option<&str>,
) -> Result<String, ConfigError> {
    render_peer(&peer_raw(seed, schedulers, proxy_addr))
}

/// Intercepts `certs`' hosts with their fixed certificates (no CA key on the node), lets
/// CONNECTs reach `connect_ports`, and trusts `origin_ca_certs` for origins.
pub fn intercept(
    raw: &mut peer::RawConfig,
    certs: Vec<peer::RawHostCert>,
    connect_ports: &[u16],
    origin_ca_certs: Vec<std::path::PathBuf>,
) {
    raw.proxy.hijack.certs = certs;
    if !connect_ports.is_empty() {
        raw.proxy.connect_ports = connect_ports.to_vec();
    }
    raw.origin.ca_certs.extend(origin_ca_certs);
}

/// `dfscheduler.yaml` with every default and the node's identity files ([`node_tls`]).
pub fn scheduler_yaml() -> Result<String, ConfigError> {
    to_yaml(
        scheduler::HEADER,
        &scheduler::RawConfig {
            tls: node_tls(),
            ..scheduler::RawConfig::default()
        },
        "dfscheduler.yaml",
    )
}

pub fn plan(root: &std::path::Path, generator: &str) -> Result<WritePlan, ConfigError> {
    let mut plan = WritePlan::new(root, generator);
    plan.add_whole(PEER_PATH, peer_yaml(false, &[], None)?, 0o644);
    plan.add_whole(SCHEDULER_PATH, scheduler_yaml()?, 0o644);
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_yaml_sets_seed_and_schedulers_only() {
        let text = peer_yaml(
            true,
            &["scheduler-0.dragonfly:8002".into(), "10.0.0.2:8002".into()],
            Some("127.0.0.1:65001"),
        )
        .expect("render");
        assert!(text.starts_with(peer::HEADER));
        let value: yaml_serde::Value = yaml_serde::from_str(&text).expect("yaml");
        assert_eq!(value["seed"].as_bool(), Some(true));
        assert_eq!(value["schedulers"][1].as_str(), Some("10.0.0.2:8002"));
        assert_eq!(
            value["server"]["proxy_addr"].as_str(),
            Some("127.0.0.1:65001")
        );
        let defaults = peer_yaml(false, &[], None).expect("render");
        let diff = similar::TextDiff::from_lines(defaults.as_str(), text.as_str());
        let changed = diff
            .iter_all_changes()
            .filter(|c| c.tag() == similar::ChangeTag::Insert)
            .count();
        assert_eq!(
            changed, 5,
            "seed, proxy_addr, schedulers header and two entries"
        );
    }
}
