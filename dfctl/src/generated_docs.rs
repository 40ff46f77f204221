//! Shell completions (bash, zsh, fish) and man pages, generated from the clap tree in
//! [`crate::cli`] and committed under `completions/` and `man/` at the repository root.
//!
//! Invariant: the committed files equal what [`render_all`] produces; the unit test
//! `committed_docs_are_fresh` fails when they are stale, and rewrites them when run with
//! `DFCTL_BLESS=1` (`DFCTL_BLESS=1 cargo test -p dfctl committed_docs`).

use clap::CommandFactory as _;
use clap_complete::Shell;

use crate::cli::Cli;

/// One generated file: its path relative to the repository root, and its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: String,
    pub content: Vec<u8>,
}

/// Every completion script and man page.
pub fn render_all() -> Result<Vec<GeneratedFile>, std::io::Error> {
    let mut out = Vec::new();
    for (shell, name) in [
        (Shell::Bash, "dfctl.bash"),
        (Shell::Zsh, "_dfctl"),
        (Shell::Fish, "dfctl.fish"),
    ] {
        let mut cmd = Cli::command();
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "dfctl", &mut buf);
        out.push(GeneratedFile {
            path: format!("completions/{name}"),
            content: buf,
        });
    }
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    man_pages(cmd, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// A page for `cmd` and each visible subcommand (`dfctl-cert-issue.1`), as clap_mangen's
/// `generate_to` names them, but in memory.
fn man_pages(cmd: clap::Command, out: &mut Vec<GeneratedFile>) -> Result<(), std::io::Error> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
        man_pages(sub, out)?;
    }
    let man = clap_mangen::Man::new(cmd);
    let mut buf = Vec::new();
    man.render(&mut buf)?;
    out.push(GeneratedFile {
        path: format!("man/{}", man.get_filename()),
        content: buf,
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn committed_docs_are_fresh() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let files = render_all().expect("render");
        assert!(
            files
                .iter()
                .any(|f| f.path == "man/dfctl-gen-config-containerd.1")
        );
        let bless = std::env::var_os("DFCTL_BLESS").is_some_and(|v| v == "1");
        let mut stale = Vec::new();
        for f in &files {
            let path = repo.join(&f.path);
            if std::fs::read(&path).ok().as_deref() != Some(f.content.as_slice()) {
                if bless {
                    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                    std::fs::write(&path, &f.content).expect("write");
                }
                stale.push(f.path.clone());
            }
        }
        // Pages of removed subcommands must go too.
        for dir in ["completions", "man"] {
            let Ok(entries) = std::fs::read_dir(repo.join(dir)) else {
                continue;
            };
            for e in entries.flatten() {
                let rel = format!("{dir}/{}", e.file_name().to_string_lossy());
                if !files.iter().any(|f| f.path == rel) {
                    if bless {
                        std::fs::remove_file(e.path()).expect("remove");
                    }
                    stale.push(rel);
                }
            }
        }
        assert!(
            bless || stale.is_empty(),
            "stale generated docs {stale:?}: regenerate with `DFCTL_BLESS=1 cargo test -p dfctl committed_docs`"
        );
    }
}
