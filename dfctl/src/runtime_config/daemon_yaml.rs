//! `dfdaemon.yaml` and `dfscheduler.yaml` with every setting at its default, commented.
//!
//! Invariant (checked by the integration test `daemon_configs`, which may link the daemons):
//! each file loads with its daemon's own loader, `deny_unknown_fields` included, to exactly
//! the daemon's built-in defaults, and names every key the daemon knows. dfctl itself does not
//! link the daemons; the text lives in `templates/daemons/`.

use crate::write_plan::WritePlan;

pub const PEER_PATH: &str = "/etc/dragonfly/dfdaemon.yaml";
pub const SCHEDULER_PATH: &str = "/etc/dragonfly/dfscheduler.yaml";

pub const PEER_DEFAULTS: &str = include_str!("../../../templates/daemons/dfdaemon.yaml");
pub const SCHEDULER_DEFAULTS: &str = include_str!("../../../templates/daemons/dfscheduler.yaml");

#[derive(Debug, thiserror::Error)]
#[error("template line '{line}' not found in {file}: the template and dfctl disagree")]
pub struct TemplateError {
    file: &'static str,
    line: String,
}

/// `dfdaemon.yaml` with the defaults, except `seed`, `schedulers` and (when given) the proxy
/// address, for a node of a cluster.
pub fn peer_yaml(
    seed: bool,
    schedulers: &[String],
    proxy_addr: Option<&str>,
) -> Result<String, TemplateError> {
    let mut text = PEER_DEFAULTS.to_owned();
    replace_line(&mut text, "seed: false", &format!("seed: {seed}"))?;
    if let Some(addr) = proxy_addr {
        replace_line(
            &mut text,
            "  proxy_addr: 0.0.0.0:4001",
            &format!("  proxy_addr: \"{addr}\""),
        )?;
    }
    let list = if schedulers.is_empty() {
        "schedulers: []".to_owned()
    } else {
        let items: Vec<String> = schedulers
            .iter()
            .map(|s| format!("  - {}", quoted(s)))
            .collect();
        format!("schedulers:\n{}", items.join("\n"))
    };
    replace_line(&mut text, "schedulers: []", &list)?;
    Ok(text)
}

/// A YAML double-quoted string.
fn quoted(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A host the peer intercepts with a fixed certificate (`proxy.hijack.certs`).
#[derive(Debug, Clone)]
pub struct Interception {
    pub host: String,
    pub cert: String,
    pub key: String,
}

/// Sets `proxy.hijack.certs`, `proxy.connect_ports` and `origin.ca_certs` in a `dfdaemon.yaml`
/// from [`peer_yaml`].
pub fn intercept(
    text: &mut String,
    certs: &[Interception],
    connect_ports: &[u16],
    origin_ca_certs: &[String],
) -> Result<(), TemplateError> {
    if !certs.is_empty() {
        let items: Vec<String> = certs
            .iter()
            .map(|c| {
                format!(
                    "      - host: {}\n        cert: {}\n        key: {}",
                    quoted(&c.host),
                    quoted(&c.cert),
                    quoted(&c.key)
                )
            })
            .collect();
        replace_line(
            text,
            "    certs: []",
            &format!("    certs:\n{}", items.join("\n")),
        )?;
    }
    let ports: Vec<String> = connect_ports.iter().map(u16::to_string).collect();
    replace_line(
        text,
        "  connect_ports: [443]",
        &format!("  connect_ports: [{}]", ports.join(", ")),
    )?;
    if !origin_ca_certs.is_empty() {
        let cas: Vec<String> = origin_ca_certs.iter().map(|c| quoted(c)).collect();
        replace_line(
            text,
            "  ca_certs: []",
            &format!("  ca_certs: [{}]", cas.join(", ")),
        )?;
    }
    Ok(())
}

fn replace_line(text: &mut String, line: &str, with: &str) -> Result<(), TemplateError> {
    let needle = format!("\n{line}\n");
    let Some(at) = text.find(&needle) else {
        return Err(TemplateError {
            file: "templates/daemons/dfdaemon.yaml",
            line: line.to_owned(),
        });
    };
    text.replace_range(at + 1..at + 1 + line.len(), with);
    Ok(())
}

pub fn plan(root: &std::path::Path, generator: &str) -> WritePlan {
    let mut plan = WritePlan::new(root, generator);
    plan.add_whole(PEER_PATH, PEER_DEFAULTS, 0o644);
    plan.add_whole(SCHEDULER_PATH, SCHEDULER_DEFAULTS, 0o644);
    plan
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
        let value: yaml_serde::Value = yaml_serde::from_str(&text).expect("yaml");
        assert_eq!(value["seed"].as_bool(), Some(true));
        assert_eq!(value["schedulers"][1].as_str(), Some("10.0.0.2:8002"));
        let diff = similar::TextDiff::from_lines(PEER_DEFAULTS, text.as_str());
        let changed = diff
            .iter_all_changes()
            .filter(|c| c.tag() == similar::ChangeTag::Insert)
            .count();
        assert_eq!(
            value["server"]["proxy_addr"].as_str(),
            Some("127.0.0.1:65001")
        );
        assert_eq!(
            changed, 5,
            "seed, proxy_addr, schedulers header and two entries"
        );
        assert_eq!(peer_yaml(false, &[], None).expect("render"), PEER_DEFAULTS);
    }
}
