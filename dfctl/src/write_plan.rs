//! Writing node configuration safely: every file a `dfctl` command generates is first put into
//! a [`WritePlan`] (node path + full new content), which can then be shown as a unified diff
//! (`--dry-run`) or applied.
//!
//! Paths in a plan are the paths *as the node sees them* (`/etc/containerd/config.toml`);
//! [`WritePlan::root`] maps them under another filesystem root (`--root /host` in an init
//! container, a temp dir in tests). Invariants of [`WritePlan::apply`]:
//! - a file whose content is already the planned content is not touched (re-running is a no-op:
//!   no write, no backup, no manifest change);
//! - every write goes through [`crate::destination`]: atomic (temp file in the target's
//!   directory, fsync, rename, fsync of the directory), so a reader never sees half a file; a
//!   path that is a symlink is written at its target and the link is kept, and a target outside
//!   the root is refused. Reads, backups, the manifest, `disable` and `enable` follow the same
//!   rule, so a linked config round-trips byte for byte. A planned path must be a regular file
//!   (or a link to one): backups and reverts need content, which a device or FIFO has not;
//! - an existing file that dfctl did not write (or that was edited by hand since) is copied to a
//!   backup next to it before it is replaced: `<file>.dfctl-bak` the first time, and
//!   `<file>.dfctl-bak.<unix seconds>` when that name is taken; a backup is never overwritten.
//!   A file that dfctl wrote and nobody changed since is replaced without a new backup, so the
//!   first backup always holds the pre-dfctl original;
//! - a replaced file keeps its permission bits and owner; a new file gets the planned mode,
//!   and a backup gets the mode of the file it copies.
//!
//! # The manifest: `<root>/etc/dragonfly-lite/gen-config.json`
//!
//! Records what dfctl wrote, so `dfctl disable` can revert exactly that and detect hand edits:
//!
//! ```json
//! {
//!   "version": 1,
//!   "files": [
//!     {
//!       "path": "/etc/containerd/config.toml",
//!       "generator": "gen-config containerd",
//!       "sha256": "<hex sha256 of the bytes dfctl last wrote>",
//!       "created": false,
//!       "backups": ["/etc/containerd/config.toml.dfctl-bak"]
//!     }
//!   ]
//! }
//! ```
//!
//! - `path`: node path (without the root); entries are sorted by path, one per file.
//! - `sha256`: of what dfctl last wrote; a file on disk with another digest was edited since.
//! - `created`: the file did not exist before dfctl first wrote it (revert = delete it).
//! - `backups`: node paths of the copies taken before each replacement, oldest first;
//!   `backups[0]` is the original to restore byte for byte (revert = restore it).
//!
//! The manifest itself is written atomically after the files; it is not part of dry-run diffs.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::destination::{self, Destination, DestinationError, Mode};

/// Node path of the manifest.
pub const MANIFEST_PATH: &str = "/etc/dragonfly-lite/gen-config.json";
/// Suffix of the first backup of a replaced file.
pub const BACKUP_SUFFIX: &str = ".dfctl-bak";

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{path}: {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error(transparent)]
    Destination(#[from] DestinationError),
    #[error("{path} is not a regular file: dfctl edits only regular files (or links to them)")]
    NotAFile { path: PathBuf },
    #[error("{path}: not an absolute node path")]
    RelativePath { path: PathBuf },
    #[error("{path}: the manifest is not valid JSON (line {line}): {message}")]
    Manifest {
        path: PathBuf,
        line: usize,
        message: String,
    },
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> WriteError {
    let path = path.to_owned();
    move |source| WriteError::Io {
        path,
        action,
        source,
    }
}

/// One file a command means to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedFile {
    /// Absolute path on the node.
    pub path: PathBuf,
    pub content: Vec<u8>,
    /// Mode of a newly created file.
    pub mode: u32,
    pub kind: FileKind,
}

/// How a planned file relates to what is on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Computed from the current file (an edit or merge that keeps the operator's settings).
    Merged,
    /// Rendered whole from the options: replacing a file dfctl did not write (or that was
    /// edited since) loses its content, so [`WritePlan::conflicts`] reports it.
    Whole,
}

/// What applying a planned file does (or did).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Create,
    Replace,
    Unchanged,
}

/// The outcome for one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileOutcome {
    /// Node path.
    pub path: PathBuf,
    pub change: Change,
    /// Node path of the backup taken now, if any.
    pub backup: Option<PathBuf>,
}

/// The files one command writes under one root.
#[derive(Debug, Clone)]
pub struct WritePlan {
    root: PathBuf,
    generator: String,
    files: Vec<PlannedFile>,
}

/// `path` (absolute, as on the node) under `root`.
pub fn under_root(root: &Path, path: &Path) -> PathBuf {
    let rel: PathBuf = path
        .components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect();
    root.join(rel)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn read_optional(path: &Path) -> Result<Option<Vec<u8>>, WriteError> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(io_err(path, "cannot read")(e)),
    }
}

impl WritePlan {
    /// An empty plan; `generator` names the command in the manifest (`gen-config docker`).
    pub fn new(root: impl Into<PathBuf>, generator: impl Into<String>) -> Self {
        Self {
            root: root.into(),
            generator: generator.into(),
            files: Vec::new(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn files(&self) -> &[PlannedFile] {
        &self.files
    }

    /// Plans `content`, computed from the current file, at node path `path` (a later plan for
    /// the same path replaces it).
    pub fn add(&mut self, path: impl Into<PathBuf>, content: impl Into<Vec<u8>>, mode: u32) {
        self.push(path.into(), content.into(), mode, FileKind::Merged);
    }

    /// Plans a file rendered whole from the options (see [`FileKind::Whole`]).
    pub fn add_whole(&mut self, path: impl Into<PathBuf>, content: impl Into<Vec<u8>>, mode: u32) {
        self.push(path.into(), content.into(), mode, FileKind::Whole);
    }

    fn push(&mut self, path: PathBuf, content: Vec<u8>, mode: u32, kind: FileKind) {
        self.files.retain(|f| f.path != path);
        self.files.push(PlannedFile {
            path,
            content,
            mode,
            kind,
        });
    }

    /// Whole files that exist with other content that dfctl did not write, or that were edited
    /// since it did: applying would replace the operator's text (a backup is kept).
    pub fn conflicts(&self) -> Result<Vec<PathBuf>, WriteError> {
        let manifest = Manifest::load(&self.host_path(Path::new(MANIFEST_PATH)))?;
        let mut out = Vec::new();
        for file in self.files.iter().filter(|f| f.kind == FileKind::Whole) {
            let Some(current) = self.current(&file.path)? else {
                continue;
            };
            let ours = manifest
                .files
                .iter()
                .any(|e| e.path == file.path && e.sha256 == sha256_hex(&current));
            if current != file.content && !ours {
                out.push(file.path.clone());
            }
        }
        Ok(out)
    }

    /// Where a node path lands under this plan's root.
    pub fn host_path(&self, path: &Path) -> PathBuf {
        under_root(&self.root, path)
    }

    /// Reads the current content of a node path under the root (`None`: no such file),
    /// through a symlink the way a write would go (refused when it leaves the root).
    pub fn current(&self, path: &Path) -> Result<Option<Vec<u8>>, WriteError> {
        let host = self.host_path(path);
        match destination::resolve(&host, Some(&self.root))? {
            Destination::File(target) => read_optional(&target),
            Destination::Stdout | Destination::Direct(_) => {
                Err(WriteError::NotAFile { path: host })
            }
        }
    }

    fn change_of(&self, file: &PlannedFile) -> Result<(Change, Option<Vec<u8>>), WriteError> {
        let current = self.current(&file.path)?;
        let change = match &current {
            None => Change::Create,
            Some(old) if *old == file.content => Change::Unchanged,
            Some(_) => Change::Replace,
        };
        Ok((change, current))
    }

    /// A unified diff of every file that would change (new files diff against /dev/null);
    /// empty when applying would change nothing.
    pub fn diff(&self) -> Result<String, WriteError> {
        let mut out = String::new();
        for file in &self.files {
            let (change, current) = self.change_of(file)?;
            if change == Change::Unchanged {
                continue;
            }
            let old = current
                .as_deref()
                .map(String::from_utf8_lossy)
                .unwrap_or_default();
            let new = String::from_utf8_lossy(&file.content);
            let shown = self.host_path(&file.path);
            let old_name = if current.is_some() {
                shown.display().to_string()
            } else {
                "/dev/null".to_owned()
            };
            let text = similar::TextDiff::from_lines(old.as_ref(), new.as_ref())
                .unified_diff()
                .context_radius(3)
                .header(&old_name, &shown.display().to_string())
                .to_string();
            out.push_str(&text);
            if !text.ends_with('\n') {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
        Ok(out)
    }

    /// Writes every changed file (backing up what it replaces) and records them in the manifest.
    pub fn apply(&self) -> Result<Vec<FileOutcome>, WriteError> {
        let manifest_path = self.host_path(Path::new(MANIFEST_PATH));
        let mut manifest = Manifest::load(&manifest_path)?;
        // Every destination is checked before the first write, so a link leaving the root or a
        // directory in the way stops the plan with nothing half-written.
        destination::resolve(&manifest_path, Some(&self.root))?;
        for file in &self.files {
            self.current(&file.path)?;
        }
        let mut outcomes = Vec::new();
        for file in &self.files {
            if !file.path.is_absolute() {
                return Err(WriteError::RelativePath {
                    path: file.path.clone(),
                });
            }
            let (change, current) = self.change_of(file)?;
            let host = self.host_path(&file.path);
            let mut backup = None;
            let entry = manifest.files.iter().position(|e| e.path == file.path);
            match (&change, &current) {
                (Change::Unchanged, _) => {}
                (Change::Create, _) => {
                    destination::write(
                        &host,
                        Some(&self.root),
                        &file.content,
                        Mode::New(file.mode),
                    )?;
                }
                (Change::Replace, Some(old)) => {
                    let ours = entry.is_some_and(|i| manifest.files[i].sha256 == sha256_hex(old));
                    let mode = fs::metadata(&host)
                        .map_err(io_err(&host, "cannot stat"))?
                        .permissions()
                        .mode()
                        & 0o7777;
                    if !ours {
                        let node_backup = free_backup_name(&self.root, &file.path);
                        let backup_host = self.host_path(&node_backup);
                        destination::write(&backup_host, Some(&self.root), old, Mode::New(mode))?;
                        backup = Some(node_backup);
                    }
                    // A replaced file keeps its own mode and owner.
                    destination::write(&host, Some(&self.root), &file.content, Mode::New(mode))?;
                }
                (Change::Replace, None) => unreachable!("a replaced file has content"),
            }
            if change != Change::Unchanged {
                let sha256 = sha256_hex(&file.content);
                match entry {
                    Some(i) => {
                        let e = &mut manifest.files[i];
                        e.sha256 = sha256;
                        e.generator.clone_from(&self.generator);
                        e.backups.extend(backup.clone());
                    }
                    None => manifest.files.push(ManifestEntry {
                        path: file.path.clone(),
                        generator: self.generator.clone(),
                        sha256,
                        created: change == Change::Create,
                        backups: backup.iter().cloned().collect(),
                    }),
                }
            }
            outcomes.push(FileOutcome {
                path: file.path.clone(),
                change,
                backup,
            });
        }
        if outcomes.iter().any(|o| o.change != Change::Unchanged) {
            manifest.files.sort_by(|a, b| a.path.cmp(&b.path));
            manifest.save(&manifest_path, &self.root)?;
        }
        Ok(outcomes)
    }
}

/// `<file>.dfctl-bak`, or `<file>.dfctl-bak.<unix seconds>[.<n>]` when taken.
pub(crate) fn free_backup_name(root: &Path, path: &Path) -> PathBuf {
    let base = format!("{}{BACKUP_SUFFIX}", path.display());
    let first = PathBuf::from(&base);
    if !under_root(root, &first).exists() {
        return first;
    }
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut candidate = PathBuf::from(format!("{base}.{secs}"));
    let mut n = 1;
    while under_root(root, &candidate).exists() {
        candidate = PathBuf::from(format!("{base}.{secs}.{n}"));
        n += 1;
    }
    candidate
}

/// The manifest file (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub version: u32,
    pub files: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    pub path: PathBuf,
    pub generator: String,
    pub sha256: String,
    pub created: bool,
    pub backups: Vec<PathBuf>,
}

impl Manifest {
    /// The manifest at `path` (host path), or an empty one when there is none.
    pub fn load(path: &Path) -> Result<Self, WriteError> {
        match read_optional(path)? {
            None => Ok(Self {
                version: 1,
                files: Vec::new(),
            }),
            Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| WriteError::Manifest {
                path: path.to_owned(),
                line: e.line(),
                message: e.to_string(),
            }),
        }
    }

    fn save(&self, path: &Path, root: &Path) -> Result<(), WriteError> {
        let mut text = serde_json::to_string_pretty(self).map_err(|e| WriteError::Manifest {
            path: path.to_owned(),
            line: 0,
            message: e.to_string(),
        })?;
        text.push('\n');
        destination::write(path, Some(root), text.as_bytes(), Mode::New(0o644))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(root: &Path, content: &str) -> WritePlan {
        let mut p = WritePlan::new(root, "test");
        p.add("/etc/x/a.conf", content, 0o644);
        p
    }

    fn manifest(root: &Path) -> Manifest {
        Manifest::load(&under_root(root, Path::new(MANIFEST_PATH))).expect("manifest")
    }

    #[test]
    fn creates_then_is_a_no_op_then_replaces_without_a_second_backup() {
        let root = tempfile::tempdir().expect("tempdir");
        let first = plan(root.path(), "one\n");
        assert!(first.diff().expect("diff").contains("+one"));
        let out = first.apply().expect("apply");
        assert_eq!(out[0].change, Change::Create);
        let m = manifest(root.path());
        assert_eq!(m.files.len(), 1);
        assert!(m.files[0].created);
        assert_eq!(m.files[0].sha256, sha256_hex(b"one\n"));

        assert_eq!(first.diff().expect("diff"), "");
        let manifest_bytes = fs::read(under_root(root.path(), Path::new(MANIFEST_PATH)));
        assert_eq!(first.apply().expect("apply")[0].change, Change::Unchanged);
        assert_eq!(
            fs::read(under_root(root.path(), Path::new(MANIFEST_PATH))).ok(),
            manifest_bytes.ok()
        );

        // dfctl's own file, unchanged since: replaced without a backup.
        let out = plan(root.path(), "two\n").apply().expect("apply");
        assert_eq!(out[0].change, Change::Replace);
        assert_eq!(out[0].backup, None);
        assert!(!root.path().join("etc/x/a.conf.dfctl-bak").exists());
        assert_eq!(
            fs::read_to_string(root.path().join("etc/x/a.conf")).expect("read"),
            "two\n"
        );
    }

    #[test]
    fn a_foreign_file_is_backed_up_once_and_keeps_its_mode() {
        let root = tempfile::tempdir().expect("tempdir");
        let host = root.path().join("etc/x/a.conf");
        fs::create_dir_all(host.parent().expect("parent")).expect("mkdir");
        fs::write(&host, "original\n").expect("write");
        fs::set_permissions(&host, fs::Permissions::from_mode(0o600)).expect("chmod");
        let out = plan(root.path(), "ours\n").apply().expect("apply");
        assert_eq!(
            out[0].backup.as_deref(),
            Some(Path::new("/etc/x/a.conf.dfctl-bak"))
        );
        assert_eq!(
            fs::read_to_string(root.path().join("etc/x/a.conf.dfctl-bak")).expect("backup"),
            "original\n"
        );
        let mode = fs::metadata(&host).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let m = manifest(root.path());
        assert!(!m.files[0].created);
        assert_eq!(
            m.files[0].backups,
            [PathBuf::from("/etc/x/a.conf.dfctl-bak")]
        );

        // Edited by hand since: the edit is kept in a second, timestamped backup and the
        // original backup is left alone.
        fs::write(&host, "hand edit\n").expect("write");
        let out = plan(root.path(), "ours\n").apply().expect("apply");
        let second = out[0].backup.clone().expect("a second backup");
        assert!(
            second
                .to_string_lossy()
                .starts_with("/etc/x/a.conf.dfctl-bak.")
        );
        assert_eq!(
            fs::read_to_string(under_root(root.path(), &second)).expect("backup"),
            "hand edit\n"
        );
        assert_eq!(
            fs::read_to_string(root.path().join("etc/x/a.conf.dfctl-bak")).expect("backup"),
            "original\n"
        );
        assert_eq!(manifest(root.path()).files[0].backups.len(), 2);
    }

    #[test]
    fn whole_files_not_written_by_dfctl_are_conflicts() {
        let root = tempfile::tempdir().expect("tempdir");
        let mut p = WritePlan::new(root.path(), "test");
        p.add_whole("/etc/x/whole.conf", "ours\n", 0o644);
        p.add("/etc/x/merged.conf", "merged\n", 0o644);
        assert!(
            p.conflicts().expect("conflicts").is_empty(),
            "nothing there yet"
        );
        let host = root.path().join("etc/x");
        fs::create_dir_all(&host).expect("mkdir");
        fs::write(host.join("whole.conf"), "theirs\n").expect("write");
        fs::write(host.join("merged.conf"), "theirs\n").expect("write");
        assert_eq!(
            p.conflicts().expect("conflicts"),
            [PathBuf::from("/etc/x/whole.conf")]
        );
        p.apply().expect("apply");
        assert!(
            p.conflicts().expect("conflicts").is_empty(),
            "dfctl's own now"
        );
        fs::write(host.join("whole.conf"), "edited\n").expect("write");
        assert_eq!(p.conflicts().expect("conflicts").len(), 1, "hand edit");
    }

    #[test]
    fn a_linked_file_is_written_at_its_target_and_a_link_out_of_the_root_stops_the_plan() {
        let root = tempfile::tempdir().expect("tempdir");
        let real = root.path().join("srv/a.conf");
        fs::create_dir_all(real.parent().expect("parent")).expect("mkdir");
        fs::write(&real, "original\n").expect("write");
        let link = root.path().join("etc/x/a.conf");
        fs::create_dir_all(link.parent().expect("parent")).expect("mkdir");
        std::os::unix::fs::symlink("../../srv/a.conf", &link).expect("symlink");
        let out = plan(root.path(), "ours\n").apply().expect("apply");
        assert_eq!(out[0].change, Change::Replace);
        assert!(fs::symlink_metadata(&link).expect("lstat").is_symlink());
        assert_eq!(fs::read_to_string(&real).expect("read"), "ours\n");
        assert_eq!(
            fs::read_to_string(root.path().join("etc/x/a.conf.dfctl-bak")).expect("backup"),
            "original\n"
        );
        assert_eq!(
            plan(root.path(), "ours\n").apply().expect("apply")[0].change,
            Change::Unchanged
        );

        // A second file planned beside a link that leaves the root: nothing is written.
        let outside = tempfile::tempdir().expect("tempdir");
        fs::write(outside.path().join("b.conf"), "theirs\n").expect("write");
        std::os::unix::fs::symlink(
            outside.path().join("b.conf"),
            root.path().join("etc/x/b.conf"),
        )
        .expect("symlink");
        let mut p = WritePlan::new(root.path(), "test");
        p.add("/etc/x/new.conf", "new\n", 0o644);
        p.add("/etc/x/b.conf", "ours\n", 0o644);
        let err = p.apply().expect_err("outside the root");
        assert!(err.to_string().contains("outside --root"), "{err}");
        assert!(
            !root.path().join("etc/x/new.conf").exists(),
            "half-written plan"
        );
        assert_eq!(
            fs::read_to_string(outside.path().join("b.conf")).expect("read"),
            "theirs\n"
        );
    }

    #[test]
    fn a_broken_manifest_stops_before_writing() {
        let root = tempfile::tempdir().expect("tempdir");
        let m = under_root(root.path(), Path::new(MANIFEST_PATH));
        fs::create_dir_all(m.parent().expect("parent")).expect("mkdir");
        fs::write(&m, "{\n  nope").expect("write");
        let err = plan(root.path(), "x\n")
            .apply()
            .expect_err("broken manifest");
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(!root.path().join("etc/x/a.conf").exists());
    }
}
