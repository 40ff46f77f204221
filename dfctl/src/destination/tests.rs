use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, PermissionsExt as _};

use super::*;

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

/// Makes a character device with /dev/null's numbers (1,3) at `path`; false when this process
/// may not (not root), and the caller says so.
pub(crate) fn mknod_null(path: &Path) -> bool {
    let status = std::process::Command::new("mknod")
        .arg(path)
        .args(["c", "1", "3"])
        .stderr(std::process::Stdio::null())
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!("skipped: mknod needs root (CAP_MKNOD)");
        return false;
    }
    true
}

#[test]
fn a_regular_file_is_replaced_atomically_keeping_mode_and_leaving_no_temp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("a.conf");
    fs::write(&path, "old").expect("write");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).expect("chmod");
    write(&path, None, b"new", Mode::New(0o644)).expect("write");
    assert_eq!(fs::read(&path).expect("read"), b"new");
    assert_eq!(mode_of(&path), 0o640, "a replaced file keeps its mode");
    let names: Vec<_> = fs::read_dir(dir.path())
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["a.conf"]);

    let fresh = dir.path().join("sub/dir/b.conf");
    write(&fresh, None, b"b", Mode::New(0o644)).expect("write");
    assert_eq!(mode_of(&fresh), 0o644);
}

#[test]
fn exact_modes_hold_whatever_the_old_file_had() {
    let dir = tempfile::tempdir().expect("tempdir");
    let key = dir.path().join("x.key");
    fs::write(&key, "old key").expect("write");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o666)).expect("chmod");
    write(&key, None, b"KEY", Mode::Exact(0o600)).expect("write");
    assert_eq!(mode_of(&key), 0o600);
}

#[test]
fn a_replaced_file_keeps_its_owner() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("owned");
    fs::write(&path, "x").expect("write");
    // Only root may give a file away; as anyone else the owner is ours and stays ours.
    let other = if rustix::process::geteuid().is_root() {
        4242
    } else {
        rustix::process::geteuid().as_raw()
    };
    std::os::unix::fs::chown(&path, Some(other), Some(other)).expect("chown");
    write(&path, None, b"y", Mode::New(0o644)).expect("write");
    let m = fs::metadata(&path).expect("stat");
    assert_eq!((m.uid(), m.gid()), (other, other));
}

#[test]
fn a_symlink_is_written_at_its_target_and_kept() {
    let root = tempfile::tempdir().expect("tempdir");
    let real = root.path().join("cm/real.toml");
    fs::create_dir_all(real.parent().expect("parent")).expect("mkdir");
    fs::write(&real, "old").expect("write");
    fs::set_permissions(&real, fs::Permissions::from_mode(0o600)).expect("chmod");
    let link = root.path().join("etc/config.toml");
    fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
    std::os::unix::fs::symlink("../cm/real.toml", &link).expect("symlink");

    write(&link, Some(root.path()), b"new", Mode::New(0o644)).expect("write");
    assert!(
        fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
    assert_eq!(fs::read(&real).expect("read"), b"new");
    assert_eq!(mode_of(&real), 0o600);
    // No temp file beside the link or the target.
    assert_eq!(
        fs::read_dir(root.path().join("etc")).expect("ls").count(),
        1
    );
    assert_eq!(fs::read_dir(root.path().join("cm")).expect("ls").count(), 1);

    // A dangling link inside the root: its target is created.
    let dangling = root.path().join("etc/new.toml");
    std::os::unix::fs::symlink(root.path().join("cm/new.toml"), &dangling).expect("symlink");
    write(&dangling, Some(root.path()), b"n", Mode::New(0o644)).expect("write");
    assert_eq!(
        fs::read(root.path().join("cm/new.toml")).expect("read"),
        b"n"
    );
    assert!(
        fs::symlink_metadata(&dangling)
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
}

#[test]
fn a_symlink_leaving_the_root_is_refused_naming_both_paths() {
    let root = tempfile::tempdir().expect("tempdir");
    let outside = tempfile::tempdir().expect("tempdir");
    let real = outside.path().join("real.toml");
    fs::write(&real, "theirs").expect("write");
    let link = root.path().join("config.toml");
    std::os::unix::fs::symlink(&real, &link).expect("symlink");

    let err = write(&link, Some(root.path()), b"ours", Mode::New(0o644)).expect_err("refused");
    let text = err.to_string();
    assert!(
        text.contains(&link.display().to_string())
            && text.contains(&real.display().to_string())
            && !text.contains('\n'),
        "{text}"
    );
    assert_eq!(fs::read(&real).expect("read"), b"theirs");
    // A linked parent directory leaving the root counts too.
    let dir_link = root.path().join("etc");
    std::os::unix::fs::symlink(outside.path(), &dir_link).expect("symlink");
    assert!(matches!(
        write(
            &dir_link.join("x"),
            Some(root.path()),
            b"x",
            Mode::New(0o644)
        ),
        Err(DestinationError::OutsideRoot { .. })
    ));
    assert!(!outside.path().join("x").exists());
    // Without a root the link is simply followed.
    write(&link, None, b"ours", Mode::New(0o644)).expect("write");
    assert_eq!(fs::read(&real).expect("read"), b"ours");
}

#[test]
fn a_character_device_is_written_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dev = dir.path().join("null");
    if !mknod_null(&dev) {
        return;
    }
    assert!(matches!(resolve(&dev, None), Ok(Destination::Direct(_))));
    write(&dev, Some(dir.path()), b"discarded", Mode::New(0o644)).expect("write");
    let t = fs::symlink_metadata(&dev).expect("lstat").file_type();
    assert!(t.is_char_device(), "still a device: {t:?}");
    assert_eq!(
        fs::read_dir(dir.path()).expect("ls").count(),
        1,
        "no temp file"
    );
    assert!(matches!(
        remove(&dev, None),
        Err(DestinationError::NotAFile { .. })
    ));
    assert!(dev.exists());
}

#[test]
fn a_fifo_is_written_in_place() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("pipe");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).expect("read fifo"))
    };
    write(&fifo, None, b"through the pipe", Mode::New(0o644)).expect("write");
    assert_eq!(reader.join().expect("reader"), b"through the pipe");
    assert!(
        fs::symlink_metadata(&fifo)
            .expect("lstat")
            .file_type()
            .is_fifo()
    );
}

#[test]
fn dashes_directories_and_block_devices_are_classified() {
    let dir = tempfile::tempdir().expect("tempdir");
    assert_eq!(
        resolve(Path::new("-"), None).expect("stdout"),
        Destination::Stdout
    );
    let err = write(dir.path(), None, b"x", Mode::New(0o644)).expect_err("directory");
    assert_eq!(
        err.to_string(),
        format!("{} is a directory; give a file name", dir.path().display())
    );
    // A link to a directory is a directory too.
    let link = dir.path().join("to-dir");
    std::os::unix::fs::symlink(dir.path(), &link).expect("symlink");
    assert!(matches!(
        resolve(&link, None),
        Err(DestinationError::Directory { .. })
    ));
}

#[test]
fn link_loops_are_an_error_not_a_hang() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::os::unix::fs::symlink(&b, &a).expect("symlink");
    std::os::unix::fs::symlink(&a, &b).expect("symlink");
    assert!(write(&a, None, b"x", Mode::New(0o644)).is_err());
}

#[test]
fn an_uncommitted_write_leaves_the_old_file_and_no_temp() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("f");
    fs::write(&path, "old").expect("write");
    let dest = resolve(&path, None).expect("resolve");
    let mut staged = Staged::open(&dest, Mode::New(0o644)).expect("open");
    staged.file().write_all(b"half").expect("write");
    drop(staged);
    assert_eq!(fs::read(&path).expect("read"), b"old");
    assert_eq!(fs::read_dir(dir.path()).expect("ls").count(), 1);
}

#[test]
fn removing_follows_the_link_and_keeps_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let real = dir.path().join("real");
    fs::write(&real, "x").expect("write");
    let link = dir.path().join("link");
    std::os::unix::fs::symlink("real", &link).expect("symlink");
    remove(&link, Some(dir.path())).expect("remove");
    assert!(!real.exists());
    assert!(
        fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
    remove(&link, Some(dir.path())).expect("absent is fine");
}

#[test]
fn dot_dot_after_a_missing_directory_cannot_slip_out_of_the_root() {
    let root = tempfile::tempdir().expect("tempdir");
    let sneaky = root.path().join("missing/../../escaped");
    assert!(write(&sneaky, Some(root.path()), b"x", Mode::New(0o644)).is_err());
    assert!(!root.path().join("missing").exists());
    assert!(
        !root
            .path()
            .parent()
            .expect("parent")
            .join("escaped")
            .exists()
    );
}
