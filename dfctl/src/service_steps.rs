//! The service-manager steps dfctl either runs or prints (`systemctl daemon-reload`, `restart
//! docker`, ...): run only on a live systemd root (the node itself, `--root /`, with systemd
//! as init), printed everywhere else (`--root DIR`, containers without systemd, `--no-restart`),
//! so an operator always sees the exact step.

use std::path::Path;

use anyhow::Context as _;

/// True when steps may run: the root is `/` and systemd is the running init.
pub fn live(root: &Path) -> bool {
    root == Path::new("/") && Path::new("/run/systemd/system").is_dir()
}

/// Runs each step (a command line without shell syntax) in order; the first failure stops.
pub async fn run(steps: &[&str]) -> anyhow::Result<()> {
    for step in steps {
        let mut words = step.split_whitespace();
        let Some(program) = words.next() else {
            continue;
        };
        let status = tokio::process::Command::new(program)
            .args(words)
            .status()
            .await
            .with_context(|| format!("cannot run `{step}`"))?;
        anyhow::ensure!(status.success(), "`{step}` failed ({status})");
        println!("ran: {step}");
    }
    Ok(())
}
