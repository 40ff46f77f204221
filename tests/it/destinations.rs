//! Where dfctl writes, as an operator (as root) points it: `dfctl get -O` into a regular file,
//! a symlink, `-`, a character device (one made with `mknod`, and the real `/dev/null`), a FIFO
//! and a directory; `gen-config`, `disable` and `enable` on symlinked configs inside and
//! outside `--root`; key files' modes whatever the umask. The built binary, a real peer and
//! scheduler in this process and the counting origin; every check reads the filesystem.
//!
//! Invariant: nothing dfctl does leaves a node worse than it found it: the file it was given, or
//! the link the operator made, is what changes, and a refused write changes nothing.

use std::os::unix::fs::{FileTypeExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use df_tests::origin::{OriginConfig, OriginHandle, blob_digests};

use crate::cli::bin;
use crate::cluster::{Cluster, sha256_file};

const SIZE: u64 = 1024 * 1024 + 17;

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

fn dfctl(args: &[&str]) -> Output {
    Command::new(bin("dfctl"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run dfctl")
}

fn assert_ok(args: &[&str], out: &Output) {
    assert!(
        out.status.success(),
        "dfctl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The one stderr line of a failed command.
fn one_error_line(args: &[&str], out: &Output) -> String {
    assert!(!out.status.success(), "dfctl {args:?} should fail");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    stderr
}

async fn dfctl_async(args: Vec<String>) -> Output {
    tokio::task::spawn_blocking(move || {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        dfctl(&refs)
    })
    .await
    .expect("dfctl thread")
}

fn is_char_device(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_char_device())
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("ls")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_writes_every_kind_of_destination_without_replacing_it() {
    let origin = OriginHandle::start(OriginConfig::default())
        .await
        .expect("origin");
    let cluster = Cluster::start(1, 0, 1, &|_, _| {}).await;
    let url = origin.blob_url(SIZE, 51);
    let want = tokio::task::spawn_blocking(|| blob_digests(SIZE, 51))
        .await
        .expect("digest task")
        .sha256;
    let peer = cluster.peers[0].admin.to_string();
    let get = |dest: &Path| {
        let v = ["get", &url, "--peer", &peer, "-O", s(dest)];
        v.iter().map(|a| (*a).to_owned()).collect::<Vec<String>>()
    };
    let tmp = tempfile::tempdir().expect("tempdir");

    // A regular file: replaced whole, keeping its mode.
    let file = tmp.path().join("out.bin");
    std::fs::write(&file, "old").expect("write");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = dfctl_async(get(&file)).await;
    assert_ok(&["get", "-O", s(&file)], &out);
    assert_eq!(sha256_file(&file), want);
    assert_eq!(
        std::fs::metadata(&file).expect("stat").permissions().mode() & 0o7777,
        0o640
    );

    // A symlink: the target gets the bytes, the link stays, no temp file beside either.
    let real_dir = tmp.path().join("real");
    std::fs::create_dir(&real_dir).expect("mkdir");
    std::fs::write(real_dir.join("target.bin"), "old").expect("write");
    let link = tmp.path().join("link.bin");
    std::os::unix::fs::symlink("real/target.bin", &link).expect("symlink");
    let out = dfctl_async(get(&link)).await;
    assert_ok(&["get", "-O", s(&link)], &out);
    assert!(is_symlink(&link), "the link was replaced");
    assert_eq!(sha256_file(&real_dir.join("target.bin")), want);
    assert_eq!(names_in(&real_dir), ["target.bin"]);

    // `-`: stdout carries the object.
    let out = dfctl_async(get(Path::new("-"))).await;
    assert_ok(&["get", "-O", "-"], &out);
    let stdout_sha = {
        use sha2::Digest as _;
        hex::encode(sha2::Sha256::digest(&out.stdout))
    };
    assert_eq!(stdout_sha, want);

    // A character device made with mknod (1,3, as /dev/null): written in place, still a device.
    let dev = tmp.path().join("null");
    let made = Command::new("mknod")
        .arg(&dev)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if made {
        let out = dfctl_async(get(&dev)).await;
        assert_ok(&["get", "-O", s(&dev)], &out);
        assert!(is_char_device(&dev), "the device node was replaced");
    } else {
        eprintln!("skipped the mknod device: this process may not make device nodes");
    }

    // The real /dev/null: still a character device afterwards.
    let out = dfctl_async(get(Path::new("/dev/null"))).await;
    assert_ok(&["get", "-O", "/dev/null"], &out);
    assert!(
        is_char_device(Path::new("/dev/null")),
        "/dev/null was replaced"
    );
    assert!(!Path::new("/dev/null.part").exists());

    // A FIFO: the reader on the other end gets every byte; the FIFO stays.
    let fifo = tmp.path().join("pipe");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo")
            .success()
    );
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || sha256_file(&fifo))
    };
    let out = dfctl_async(get(&fifo)).await;
    assert_ok(&["get", "-O", s(&fifo)], &out);
    assert_eq!(reader.join().expect("reader"), want);
    assert!(std::fs::symlink_metadata(&fifo).is_ok_and(|m| m.file_type().is_fifo()));

    // A directory: one line naming it, nothing written into it.
    let dir = tmp.path().join("a-dir");
    std::fs::create_dir(&dir).expect("mkdir");
    let args = get(&dir);
    let out = dfctl_async(args.clone()).await;
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let line = one_error_line(&refs, &out);
    assert!(
        line.contains(&format!("{} is a directory", dir.display())),
        "{line}"
    );
    assert!(names_in(&dir).is_empty());

    // Nothing but what was asked for is left in the scratch directory.
    assert_eq!(
        names_in(tmp.path()),
        ["a-dir", "link.bin", "null", "out.bin", "pipe", "real"]
            .into_iter()
            .filter(|n| made || *n != "null")
            .collect::<Vec<_>>()
    );
}

/// Writes `text` at `rel` under `root`, creating the directories.
fn put(root: &Path, rel: &str, text: &str) -> PathBuf {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(&path, text).expect("write");
    path
}

const OPERATOR_DAEMON_JSON: &str = "{\"log-driver\": \"journald\"}\n";

#[test]
fn a_symlinked_config_is_edited_at_its_target_and_round_trips_disable_enable() {
    let root = tempfile::tempdir().expect("tempdir");
    let r = s(root.path()).to_owned();
    // Config management keeps the real file elsewhere and links it into place.
    let target = put(root.path(), "srv/cm/daemon.json", OPERATOR_DAEMON_JSON);
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let link = root.path().join("etc/docker/daemon.json");
    std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink("../../srv/cm/daemon.json", &link).expect("symlink");

    let args = ["gen-config", "docker", "--root", &r, "--registry-mirror"];
    assert_ok(&args, &dfctl(&args));
    assert!(is_symlink(&link), "gen-config replaced the link");
    let ours = std::fs::read_to_string(&target).expect("target");
    assert!(ours.contains("registry-mirrors"), "{ours}");
    assert!(
        ours.contains("journald"),
        "the operator's settings stay: {ours}"
    );
    assert_eq!(
        std::fs::metadata(&target)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777,
        0o600,
        "the target keeps its mode"
    );
    assert_eq!(
        std::fs::read_to_string(root.path().join("etc/docker/daemon.json.dfctl-bak"))
            .expect("backup"),
        OPERATOR_DAEMON_JSON
    );
    assert_eq!(
        names_in(&root.path().join("srv/cm")),
        ["daemon.json"],
        "no temp file beside the target"
    );

    let peer = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        format!("127.0.0.1:{}", l.local_addr().expect("addr").port())
    };
    let disable = [
        "disable",
        "--root",
        &r,
        "--no-restart",
        "--peer-admin",
        &peer,
    ];
    assert_ok(&disable, &dfctl(&disable));
    assert!(is_symlink(&link), "disable replaced the link");
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        OPERATOR_DAEMON_JSON,
        "disable puts the original back at the target"
    );
    let enable = [
        "enable",
        "--root",
        &r,
        "--no-restart",
        "--peer-admin",
        &peer,
    ];
    assert_ok(&enable, &dfctl(&enable));
    assert!(is_symlink(&link), "enable replaced the link");
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        ours,
        "enable restores dfctl's bytes exactly"
    );
    assert_eq!(
        std::fs::metadata(&target)
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777,
        0o600
    );
}

#[test]
fn a_symlink_leaving_the_root_is_refused_and_nothing_is_written() {
    let root = tempfile::tempdir().expect("tempdir");
    let elsewhere = tempfile::tempdir().expect("tempdir");
    let r = s(root.path()).to_owned();
    let target = put(elsewhere.path(), "config.toml", "version = 2\n");
    let link = root.path().join("etc/containerd/config.toml");
    std::fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink(&target, &link).expect("symlink");

    let args = [
        "gen-config",
        "containerd",
        "--root",
        &r,
        "--registry",
        "docker.io",
    ];
    let line = one_error_line(&args, &dfctl(&args));
    assert!(
        line.contains(s(&link)) && line.contains(s(&target)) && line.contains("outside --root"),
        "{line}"
    );
    assert!(is_symlink(&link));
    assert_eq!(
        std::fs::read_to_string(&target).expect("target"),
        "version = 2\n"
    );
    // Nothing else was written either: no hosts.toml, no manifest, no backup.
    assert_eq!(names_in(&root.path().join("etc")), ["containerd"]);
    assert_eq!(
        names_in(&root.path().join("etc/containerd")),
        ["config.toml"]
    );
    assert_eq!(names_in(elsewhere.path()), ["config.toml"]);
}

#[test]
fn config_paths_that_are_directories_or_devices_are_refused_in_one_line() {
    let root = tempfile::tempdir().expect("tempdir");
    let r = s(root.path()).to_owned();
    let args = [
        "gen-config",
        "crio",
        "--root",
        &r,
        "--registry",
        "docker.io",
    ];
    let conf = root
        .path()
        .join("etc/containers/registries.conf.d/50-dragonfly-lite.conf");
    std::fs::create_dir_all(&conf).expect("mkdir");
    let line = one_error_line(&args, &dfctl(&args));
    assert!(line.contains(s(&conf)), "{line}");
    assert!(conf.is_dir() && names_in(&conf).is_empty());
    std::fs::remove_dir(&conf).expect("rmdir");

    let made = Command::new("mknod")
        .arg(&conf)
        .args(["c", "1", "3"])
        .status()
        .is_ok_and(|s| s.success());
    if !made {
        eprintln!("skipped the device case: this process may not make device nodes");
        return;
    }
    let line = one_error_line(&args, &dfctl(&args));
    assert!(
        line.contains(s(&conf)) && line.contains("not a regular file"),
        "{line}"
    );
    assert!(is_char_device(&conf), "the device node was replaced");
}

#[test]
fn key_files_are_private_whatever_the_umask() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = dir.path().join("pki");
    let script = format!(
        "umask 000 && {dfctl} cert ca --dir {pki} && {dfctl} cert issue --ca-dir {pki} --san registry.test",
        dfctl = bin("dfctl").display(),
        pki = pki.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |name: &str| {
        std::fs::metadata(pki.join(name))
            .expect("stat")
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("ca.key"), 0o400);
    assert_eq!(mode("registry.test.key"), 0o600);
    assert_eq!(mode("ca.crt"), 0o644);
    assert_eq!(mode("registry.test.crt"), 0o644);
}
