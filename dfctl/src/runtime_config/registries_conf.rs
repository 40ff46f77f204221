//! CRI-O and podman: a `registries.conf.d` drop-in with one `[[registry]]` per mirrored
//! registry whose first `[[registry.mirror]]` is the node's dfdaemon.
//!
//! Invariant: the main `/etc/containers/registries.conf` is never read or written; the
//! drop-in is ours alone (both runtimes share it), so it is rendered whole from the options.

use super::{PeerAddr, Registry, fill};
use crate::write_plan::WritePlan;

/// The drop-in both CRI-O and podman read.
pub const DROP_IN: &str = "/etc/containers/registries.conf.d/50-dragonfly-lite.conf";

const FILE_TEMPLATE: &str = include_str!("../../../templates/containers/registries.conf");
const REGISTRY_TEMPLATE: &str = include_str!("../../../templates/containers/registry.conf");

/// Which runtime the drop-in is generated for (only the notes and header differ).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    Crio,
    Podman,
}

impl Runtime {
    pub fn name(self) -> &'static str {
        match self {
            Self::Crio => "crio",
            Self::Podman => "podman",
        }
    }
}

/// The drop-in's text.
pub fn render(runtime: Runtime, peer: &PeerAddr, registries: &[Registry]) -> String {
    let blocks: String = registries
        .iter()
        .map(|r| {
            let insecure = if r.server_url().starts_with("http://") {
                "insecure = true\n"
            } else {
                ""
            };
            fill(
                REGISTRY_TEMPLATE,
                &[
                    ("registry", r.host()),
                    ("registry_insecure", insecure),
                    ("peer", &peer.to_string()),
                ],
            )
        })
        .collect();
    let out = fill(
        FILE_TEMPLATE,
        &[("runtime", runtime.name()), ("registries", &blocks)],
    );
    format!("{}\n", out.trim_end())
}

pub fn plan(
    root: &std::path::Path,
    generator: &str,
    runtime: Runtime,
    peer: &PeerAddr,
    registries: &[Registry],
) -> (WritePlan, Vec<String>) {
    let mut plan = WritePlan::new(root, generator);
    plan.add_whole(DROP_IN, render(runtime, peer, registries), 0o644);
    let mut notes = vec![
        match runtime {
            Runtime::Crio => {
                "CRI-O re-reads registries.conf on SIGHUP: run `systemctl reload crio`"
            }
            Runtime::Podman => "podman reads registries.conf on every command: nothing to restart",
        }
        .to_owned(),
    ];
    if registries.len() > 1 {
        notes.push(format!(
            "{} sends the mirror neither the registry's name nor containerd's ns=: the dfdaemon \
             serves only its proxy.registry_mirror.addr P2P; pulls from the other registries \
             fail over to the registry itself",
            runtime.name()
        ));
    }
    (plan, notes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_in_golden_and_valid_toml() {
        let peer: PeerAddr = "127.0.0.1:65001".parse().expect("peer");
        let regs: Vec<Registry> = ["docker.io", "http://registry.test:5000"]
            .iter()
            .map(|r| r.parse().expect("registry"))
            .collect();
        let text = render(Runtime::Crio, &peer, &regs);
        insta::assert_snapshot!("registries_conf_crio", text);
        let doc: toml_edit::DocumentMut = text.parse().expect("valid TOML");
        let regs = doc["registry"].as_array_of_tables().expect("[[registry]]");
        assert_eq!(regs.len(), 2);
        let second = regs.get(1).expect("second");
        assert_eq!(second["location"].as_str(), Some("registry.test:5000"));
        assert_eq!(second["insecure"].as_bool(), Some(true));
        let mirror = second["mirror"].as_array_of_tables().expect("mirror");
        assert_eq!(
            mirror.get(0).and_then(|m| m["location"].as_str()),
            Some("127.0.0.1:65001")
        );
        assert!(regs.get(0).expect("first").get("insecure").is_none());
    }
}
