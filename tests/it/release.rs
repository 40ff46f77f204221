//! The release artifacts, built by the project's scripts from the binaries beside this test
//! (`cargo build --bins`; the scripts do not care which profile):
//! - `scripts/image`: two builds give the same digest; the image holds the three binaries and
//!   what they link, runs as a non-root user, carries the OCI labels, and its `dfdaemon
//!   --version` runs from the image's own files (its dynamic loader and libraries);
//! - `scripts/deb`: `lintian` has nothing to say beyond the justified overrides; install,
//!   upgrade (edited config and cache kept) and purge with the real `dpkg`, into a scratch
//!   root (`--root` with chrootless maintainer scripts), so the machine is untouched.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_owned()
}

fn bin_dir() -> PathBuf {
    crate::cli::bin("dfctl")
        .parent()
        .expect("bin dir")
        .to_owned()
}

/// Runs `cmd`, panicking with its output unless it succeeds; returns stdout.
fn ok(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn build_image(out: &Path) -> Value {
    let text = ok(Command::new(repo().join("scripts/image"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000"));
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("scripts/image printed {text}: {e}"))
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

#[test]
fn the_image_is_reproducible_non_root_labelled_and_runs_its_own_binaries() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let first = build_image(&a);
    let second = build_image(&b);
    eprintln!("[release] image: {first}");
    assert_eq!(
        first["manifest_digest"], second["manifest_digest"],
        "two builds differ"
    );
    let config: Value = serde_json::from_slice(
        &std::fs::read(blob(&a, first["config_digest"].as_str().expect("digest"))).expect("config"),
    )
    .expect("config json");
    let labels = &config["config"]["Labels"];
    assert_eq!(
        labels["org.opencontainers.image.version"],
        env!("CARGO_PKG_VERSION")
    );
    assert!(
        labels["org.opencontainers.image.source"]
            .as_str()
            .is_some_and(|s| s.starts_with("https://")),
        "{labels}"
    );
    assert_eq!(config["config"]["User"], "65532:65532");

    let rootfs = tmp.path().join("rootfs");
    std::fs::create_dir_all(&rootfs).expect("rootfs");
    let layer = blob(&a, first["layer_digest"].as_str().expect("digest"));
    ok(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&rootfs));
    for b in ["dfscheduler", "dfdaemon", "dfctl"] {
        // The image's own loader and libraries, not the host's: what a container would run.
        let loader = rootfs.join("lib64/ld-linux-x86-64.so.2");
        let version = ok(Command::new(&loader)
            .arg("--library-path")
            .arg(rootfs.join("lib/x86_64-linux-gnu"))
            .arg(rootfs.join("usr/bin").join(b))
            .arg("--version"));
        assert!(
            version.contains(env!("CARGO_PKG_VERSION")),
            "{b} --version: {version}"
        );
    }
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file());
    assert!(rootfs.join("etc/dragonfly/dfdaemon.yaml").is_file());
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).expect("passwd");
    assert!(passwd.contains("dragonfly:x:65532:65532:"), "{passwd}");
}

fn build_deb(out: &Path, version: &str) -> PathBuf {
    let path = ok(Command::new(repo().join("scripts/deb"))
        .arg("--bin-dir")
        .arg(bin_dir())
        .arg("--version")
        .arg(version)
        .arg("--out")
        .arg(out)
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .env("DEB_COMPRESSION", "gzip"));
    PathBuf::from(path.trim())
}

/// `dpkg` acting on `root` only: its own database, maintainer scripts run outside a chroot
/// with `DPKG_ROOT` set, no dependency check against the scratch root's empty database.
fn dpkg(root: &Path) -> Command {
    let mut c = Command::new("dpkg");
    c.arg(format!("--root={}", root.display()))
        .arg("--force-script-chrootless")
        .arg("--force-depends")
        .arg("--log=/dev/null");
    c
}

#[test]
fn the_debian_package_is_lintian_clean_and_installs_upgrades_and_purges() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let v1 = build_deb(&tmp.path().join("v1"), "0.1.0");
    let v2 = build_deb(&tmp.path().join("v2"), "0.1.1");
    let again = build_deb(&tmp.path().join("again"), "0.1.0");
    assert_eq!(
        std::fs::read(&v1).expect("deb"),
        std::fs::read(&again).expect("deb"),
        "two builds of the package differ"
    );
    let lintian = Command::new("lintian")
        .args(["--fail-on", "error,warning,info", "--no-tag-display-limit"])
        .arg(&v1)
        .output()
        .expect("lintian (tests/e2e/install.sh installs it)");
    eprintln!(
        "[release] lintian {}: {}{}",
        v1.display(),
        String::from_utf8_lossy(&lintian.stdout),
        String::from_utf8_lossy(&lintian.stderr)
    );
    assert!(lintian.status.success(), "lintian complained");

    let root = tmp.path().join("root");
    for d in ["var/lib/dpkg/info", "var/lib/dpkg/updates"] {
        std::fs::create_dir_all(root.join(d)).expect("dpkg dirs");
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").expect("status");
    ok(dpkg(&root).arg("--install").arg(&v1));
    for f in [
        "usr/bin/dfdaemon",
        "usr/bin/dfscheduler",
        "usr/bin/dfctl",
        "lib/systemd/system/dfdaemon.service",
        "lib/systemd/system/dfscheduler.service",
    ] {
        assert!(root.join(f).is_file(), "{f} not installed");
    }
    // The units are the ones `dfctl deploy systemd` writes for the packaged paths.
    let deployed = tmp.path().join("deployed");
    ok(Command::new(crate::cli::bin("dfctl"))
        .args([
            "deploy",
            "systemd",
            "--role",
            "peer",
            "--bin-dir",
            "/usr/bin",
        ])
        .arg("--root")
        .arg(&deployed)
        .arg("--config")
        .arg(root.join("etc/dragonfly/dfdaemon.yaml")));
    assert_eq!(
        std::fs::read(root.join("lib/systemd/system/dfdaemon.service")).expect("unit"),
        std::fs::read(deployed.join("etc/systemd/system/dfdaemon.service")).expect("unit")
    );
    let conffiles = ok(dpkg(&root).args(["--status", "dragonfly-lite"]));
    assert!(
        conffiles.contains(" /etc/dragonfly/dfdaemon.yaml "),
        "{conffiles}"
    );

    // The operator edits the config; the peer has cached something.
    let config = root.join("etc/dragonfly/dfdaemon.yaml");
    let edited = format!(
        "{}\n# edited by the operator\n",
        std::fs::read_to_string(&config).expect("config")
    );
    std::fs::write(&config, &edited).expect("edit");
    let cached = root.join("var/lib/dragonfly/content/tasks/abc/task");
    std::fs::create_dir_all(cached.parent().expect("parent")).expect("cache dir");
    std::fs::write(&cached, b"piece bytes").expect("cache");

    ok(dpkg(&root).arg("--install").arg(&v2));
    let status = ok(dpkg(&root).args(["--status", "dragonfly-lite"]));
    assert!(status.contains("Version: 0.1.1"), "{status}");
    assert_eq!(
        std::fs::read_to_string(&config).expect("config"),
        edited,
        "upgrade kept the edit"
    );
    assert_eq!(
        std::fs::read(&cached).expect("cache"),
        b"piece bytes",
        "upgrade kept the cache"
    );

    ok(dpkg(&root).args(["--purge", "dragonfly-lite"]));
    for gone in [
        "usr/bin/dfdaemon",
        "etc/dragonfly",
        "var/lib/dragonfly",
        "lib/systemd/system/dfdaemon.service",
    ] {
        assert!(!root.join(gone).exists(), "{gone} left after purge");
    }
}
