//! Where dfctl's output bytes land, and the one way every dfctl command writes a file
//! (`get -O`, `cert`, `gen-config`, `init`, `deploy`, `disable`, `enable`, `up`).
//!
//! A destination is classified the way curl and wget treat `-o`/`-O`:
//! - `-` is stdout;
//! - a character device, FIFO or socket (`/dev/null`, a pipe) is opened and written in place:
//!   there is nothing atomic to do, and replacing the node would break every other user of it;
//! - a regular file (or a name that does not exist yet) is written atomically: a temp file in
//!   the *target's* directory (created 0600, so key bytes are never readable by others), fsync,
//!   rename over the target, fsync of the directory. A reader sees the old or the new file,
//!   never half of one, and a failure leaves the old file and no temp file;
//! - a directory is refused with a one-line error naming it.
//!
//! Symlinks are followed deliberately, the way the kernel follows them for this process: a link
//! (or a linked parent directory) is written at its resolved target and the link itself is kept.
//! With a `root` (`--root`), a target that resolves outside it is refused with one line naming
//! the link and the target: under `--root /host` an absolute link names a file in the
//! container, not on the node, and dfctl does not guess which one was meant.
//!
//! Permissions reflect content: [`Mode::Exact`] (private keys) is applied whatever the umask and
//! whatever the old file had; with [`Mode::New`] a replaced file keeps its permission bits and
//! its owner, and a new one gets the given bits.

use std::fs;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

/// Symlink hops followed before giving up (Linux's own limit).
const MAX_LINK_HOPS: usize = 40;

#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{path} is a directory; give a file name")]
    Directory { path: PathBuf },
    #[error("{path} is a {kind}; dfctl writes regular files, character devices, FIFOs and sockets")]
    Unsupported { path: PathBuf, kind: &'static str },
    #[error(
        "{path} resolves to {target}, outside --root {root}: refusing to write through the link"
    )]
    OutsideRoot {
        path: PathBuf,
        target: PathBuf,
        root: PathBuf,
    },
    #[error("{path} is not a regular file; dfctl removes only regular files")]
    NotAFile { path: PathBuf },
    #[error("{path}: more than {MAX_LINK_HOPS} symbolic links")]
    LinkLoop { path: PathBuf },
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> DestinationError {
    let path = path.to_owned();
    move |source| DestinationError::Io {
        path,
        action,
        source,
    }
}

/// What a path names once links are followed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// `-`.
    Stdout,
    /// A character device, FIFO or socket at this (resolved) path: written in place.
    Direct(PathBuf),
    /// A regular file at this (resolved) path, or none yet: written atomically.
    File(PathBuf),
}

/// Permission bits of what is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// For a new file; a replaced file keeps its own bits and owner.
    New(u32),
    /// Always these bits, whatever the umask or the old file (private keys).
    Exact(u32),
}

/// Classifies `path`, following symlinks; with `root`, a target outside it is refused.
pub fn resolve(path: &Path, root: Option<&Path>) -> Result<Destination, DestinationError> {
    if path == Path::new("-") {
        return Ok(Destination::Stdout);
    }
    let target = resolve_links(path)?;
    if let Some(root) = root {
        let root_canon = canonical_prefix(root)?;
        if !target.starts_with(&root_canon) {
            return Err(DestinationError::OutsideRoot {
                path: path.to_owned(),
                target,
                root: root.to_owned(),
            });
        }
    }
    match fs::metadata(&target) {
        Ok(m) if m.is_dir() => Err(DestinationError::Directory {
            path: path.to_owned(),
        }),
        Ok(m) if m.is_file() => Ok(Destination::File(target)),
        Ok(m) => {
            let t = m.file_type();
            if t.is_char_device() || t.is_fifo() || t.is_socket() {
                Ok(Destination::Direct(target))
            } else {
                Err(DestinationError::Unsupported {
                    path: path.to_owned(),
                    kind: if t.is_block_device() {
                        "block device"
                    } else {
                        "special file"
                    },
                })
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Destination::File(target)),
        Err(e) => Err(io_err(&target, "cannot stat")(e)),
    }
}

/// Follows the links of `path` (its own and its parents'), also when the final target does not
/// exist yet; returns an absolute path without links in its existing part.
fn resolve_links(path: &Path) -> Result<PathBuf, DestinationError> {
    let mut p = std::path::absolute(path).map_err(io_err(path, "cannot make absolute"))?;
    for _ in 0..MAX_LINK_HOPS {
        // The parents first, so a relative link target is read from where the link really is.
        p = canonical_prefix(&p)?;
        match fs::symlink_metadata(&p) {
            Ok(m) if m.file_type().is_symlink() => {
                let to = fs::read_link(&p).map_err(io_err(&p, "cannot read link"))?;
                p = match p.parent() {
                    Some(dir) => dir.join(to),
                    None => to,
                };
            }
            Ok(_) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(p),
            Err(e) => return Err(io_err(&p, "cannot stat")(e)),
        }
    }
    Err(DestinationError::LinkLoop {
        path: path.to_owned(),
    })
}

/// `path` with its parent directories canonicalized (links followed, `..` applied) as far as
/// they exist; the last component is kept as it is (it may be a link the caller follows).
fn canonical_prefix(path: &Path) -> Result<PathBuf, DestinationError> {
    let abs = std::path::absolute(path).map_err(io_err(path, "cannot make absolute"))?;
    let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
        return Ok(abs);
    };
    let mut existing = parent.to_path_buf();
    let mut rest = Vec::new();
    let base = loop {
        match fs::canonicalize(&existing) {
            Ok(c) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // `missing/..` cannot be resolved without guessing; refuse rather than let the
                // name slip past the root check.
                let Some(n) = existing.file_name() else {
                    return Err(io_err(path, "cannot resolve")(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        "'..' after a directory that does not exist",
                    )));
                };
                rest.push(n.to_owned());
                existing.pop();
            }
            Err(e) => return Err(io_err(&existing, "cannot resolve")(e)),
        }
    };
    let mut out = base;
    for c in rest.iter().rev() {
        out.push(c);
    }
    out.push(name);
    Ok(out)
}

/// An open destination: bytes go to [`Staged::file`]; [`Staged::commit`] makes them the
/// destination's content. Dropped uncommitted, a temp file is removed and the target untouched.
#[derive(Debug)]
pub struct Staged {
    file: fs::File,
    rename: Option<Rename>,
}

#[derive(Debug)]
struct Rename {
    tmp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl Staged {
    /// Opens `dest` for writing. A FIFO blocks here until a reader opens it (as with curl), so
    /// async callers open on a blocking thread.
    pub fn open(dest: &Destination, mode: Mode) -> Result<Self, DestinationError> {
        match dest {
            Destination::Stdout => {
                let fd = std::io::stdout()
                    .as_fd()
                    .try_clone_to_owned()
                    .map_err(io_err(Path::new("-"), "cannot open stdout"))?;
                Ok(Self {
                    file: fs::File::from(fd),
                    rename: None,
                })
            }
            Destination::Direct(path) => {
                let file = fs::OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(io_err(path, "cannot open"))?;
                Ok(Self { file, rename: None })
            }
            Destination::File(target) => Self::open_temp(target, mode),
        }
    }

    fn open_temp(target: &Path, mode: Mode) -> Result<Self, DestinationError> {
        let dir = target.parent().unwrap_or(Path::new("/"));
        fs::create_dir_all(dir).map_err(io_err(dir, "cannot create directory"))?;
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.dfctl-tmp-{}", std::process::id()));
        // A temp file left by a crashed run of this pid is ours to replace.
        let _ = fs::remove_file(&tmp);
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io_err(&tmp, "cannot create"))?;
        let staged = Self {
            file,
            rename: Some(Rename {
                tmp: tmp.clone(),
                target: target.to_owned(),
                committed: false,
            }),
        };
        let existing = match fs::metadata(target) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(target, "cannot stat")(e)),
        };
        let bits = match (mode, &existing) {
            (Mode::Exact(bits), _) | (Mode::New(bits), None) => bits,
            (Mode::New(_), Some(m)) => m.permissions().mode() & 0o7777,
        };
        if let Some(m) = &existing {
            let ours = staged
                .file
                .metadata()
                .map_err(io_err(&tmp, "cannot stat"))?;
            if (m.uid(), m.gid()) != (ours.uid(), ours.gid()) {
                std::os::unix::fs::fchown(&staged.file, Some(m.uid()), Some(m.gid()))
                    .map_err(io_err(&tmp, "cannot keep the replaced file's owner"))?;
            }
        }
        // After chown, which may clear set-id bits.
        staged
            .file
            .set_permissions(fs::Permissions::from_mode(bits))
            .map_err(io_err(&tmp, "cannot set permissions"))?;
        Ok(staged)
    }

    pub fn file(&mut self) -> &mut fs::File {
        &mut self.file
    }

    /// Makes what was written the destination's content (sync + rename for a regular file).
    pub fn commit(mut self) -> Result<(), DestinationError> {
        let Some(r) = self.rename.as_mut() else {
            return self
                .file
                .flush()
                .map_err(io_err(Path::new("-"), "cannot flush"));
        };
        self.file
            .sync_all()
            .map_err(io_err(&r.tmp, "cannot sync"))?;
        fs::rename(&r.tmp, &r.target).map_err(io_err(&r.target, "cannot replace"))?;
        r.committed = true;
        // The rename is durable only once the directory entry is.
        if let Some(dir) = r.target.parent()
            && let Ok(d) = fs::File::open(dir)
        {
            let _ = d.sync_all();
        }
        Ok(())
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(r) = &self.rename
            && !r.committed
        {
            // Best effort: the error that stopped the write matters more.
            let _ = fs::remove_file(&r.tmp);
        }
    }
}

/// Writes `bytes` to `path` as described in the module doc.
pub fn write(
    path: &Path,
    root: Option<&Path>,
    bytes: &[u8],
    mode: Mode,
) -> Result<(), DestinationError> {
    let dest = resolve(path, root)?;
    let mut staged = Staged::open(&dest, mode)?;
    staged
        .file()
        .write_all(bytes)
        .map_err(io_err(path, "cannot write"))?;
    staged.commit()
}

/// Removes the regular file `path` names (a link's target; the link is kept, as a write through
/// it would keep it). Absent is fine; anything but a regular file is refused.
pub fn remove(path: &Path, root: Option<&Path>) -> Result<(), DestinationError> {
    match resolve(path, root)? {
        Destination::File(target) => match fs::remove_file(&target) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err(&target, "cannot remove")(e)),
        },
        Destination::Stdout | Destination::Direct(_) => Err(DestinationError::NotAFile {
            path: path.to_owned(),
        }),
    }
}

#[cfg(test)]
mod tests;
