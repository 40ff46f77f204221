//! The on-disk sidecar of a task (`<id>.meta.json`) and loading all of them at start-up.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use df_core::ids::{ObjectDigest, PeerId, PieceDigest, TaskId};
use df_core::piece::{Bitmap, PieceLayout};
use serde::{Deserialize, Serialize};

use super::{StorageError, TaskState, io_err};

const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TaskMeta {
    pub version: u32,
    pub task_id: TaskId,
    pub peer_id: PeerId,
    pub url: String,
    pub content_length: Option<u64>,
    pub piece_length: Option<u64>,
    /// Hex of the packed piece bitmap.
    pub bitmap: String,
    /// Per piece: the verified BLAKE3 digest, or null when the piece is not held.
    pub digests: Vec<Option<PieceDigest>>,
    pub response_headers: Vec<(String, String)>,
    pub object_digest: Option<ObjectDigest>,
    /// Absent in sidecars written before the flag existed: unknown counts as private.
    #[serde(default = "unknown_is_private")]
    pub private: bool,
    pub complete: bool,
    pub last_access: u64,
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
    pub bytes_from_seeds: u64,
    pub uploaded_bytes: u64,
}

fn unknown_is_private() -> bool {
    true
}

impl TaskMeta {
    pub fn from_state(id: &TaskId, st: &TaskState) -> Self {
        Self {
            version: FORMAT_VERSION,
            task_id: id.clone(),
            peer_id: st.peer_id.clone(),
            url: st.url.clone(),
            content_length: st.layout.map(|l| l.content_length),
            piece_length: st.layout.map(|l| l.piece_length),
            bitmap: st.bitmap.to_hex(),
            digests: st.digests.clone(),
            response_headers: st.response_headers.clone(),
            object_digest: st.object_digest.clone(),
            private: st.private,
            complete: st.complete,
            last_access: st.last_access,
            bytes_from_origin: st.bytes_from_origin,
            bytes_from_peers: st.bytes_from_peers,
            bytes_from_seeds: st.bytes_from_seeds,
            uploaded_bytes: st.uploaded_bytes,
        }
    }

    /// The in-memory state this sidecar describes, or `None` when it contradicts itself.
    fn validated_state(&self) -> Option<TaskState> {
        let layout = match (self.content_length, self.piece_length) {
            (Some(c), Some(p)) if p > 0 => {
                let layout = PieceLayout::new(c, Some(p));
                layout.check_count().ok()?;
                Some(layout)
            }
            (None, None) => None,
            _ => return None,
        };
        let count = layout.map_or(0, |l| l.piece_count());
        let bitmap = if layout.is_some() {
            Bitmap::from_hex(count, &self.bitmap)?
        } else {
            Bitmap::default()
        };
        if layout.is_some() && self.digests.len() != count as usize {
            return None;
        }
        // A held piece without a digest cannot be proven to anyone; treat it as missing.
        let mut bitmap = bitmap;
        for n in 0..count {
            if bitmap.get(n) && self.digests.get(n as usize).copied().flatten().is_none() {
                bitmap.clear(n);
            }
        }
        let complete = self.complete && layout.is_some() && bitmap.is_full();
        Some(TaskState {
            url: self.url.clone(),
            peer_id: self.peer_id.clone(),
            layout,
            bitmap,
            digests: self.digests.clone(),
            response_headers: self.response_headers.clone(),
            object_digest: self.object_digest.clone(),
            private: self.private,
            cleared: crate::access::Cleared::default(),
            complete,
            downloading: false,
            failure: None,
            source: None,
            bytes_from_origin: self.bytes_from_origin,
            bytes_from_peers: self.bytes_from_peers,
            bytes_from_seeds: self.bytes_from_seeds,
            uploaded_bytes: self.uploaded_bytes,
            sent: Bitmap::new(count),
            delivered: Bitmap::new(count),
            received: Bitmap::new(count),
            uploads: 0,
            upload_slots: crate::upload::SlotTable::default(),
            views: crate::neighbour_views::Views::default(),
            last_access: self.last_access,
            pieces_since_save: 0,
        })
    }

    pub fn into_state(self) -> TaskState {
        // load_all only returns sidecars that validated.
        self.validated_state()
            .unwrap_or_else(|| unreachable!("load_all returns validated sidecars only"))
    }

    /// Write to a temp file, fsync, rename over the old sidecar: a crash leaves the old or the
    /// new sidecar, never half of one.
    pub fn write_atomically(&self, path: &Path) -> Result<(), StorageError> {
        let tmp = path.with_extension("json.tmp");
        let body = serde_json::to_vec(self).map_err(|e| StorageError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(e),
        })?;
        if let Some(dir) = path.parent() {
            private_dirs(dir).map_err(io_err(dir))?;
        }
        let mut f = private_file(&tmp).map_err(io_err(&tmp))?;
        f.write_all(&body).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(io_err(path))
    }
}

/// Every task a previous run left under `root`, as (sidecar, data path, sidecar path). Sidecars
/// that do not parse, contradict themselves, or whose data file is missing or of the wrong
/// size are deleted with their data; leftover temp files are deleted.
pub fn load_all(root: &Path) -> Result<Vec<(TaskMeta, PathBuf, PathBuf)>, StorageError> {
    private_dirs(root).map_err(io_err(root))?;
    let mut out = Vec::new();
    for shard in std::fs::read_dir(root).map_err(io_err(root))? {
        let shard = shard.map_err(io_err(root))?.path();
        if !shard.is_dir() {
            continue;
        }
        for entry in std::fs::read_dir(&shard).map_err(io_err(&shard))? {
            let path = entry.map_err(io_err(&shard))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned();
            if name.ends_with(".json.tmp") {
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let Some(id) = name.strip_suffix(".meta.json") else {
                continue;
            };
            let data_path = shard.join(id);
            let meta = std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<TaskMeta>(&b).ok())
                .filter(|m| m.version == FORMAT_VERSION && m.task_id.as_str() == id)
                .filter(|m| m.validated_state().is_some());
            let data_ok = |m: &TaskMeta| match m.content_length {
                Some(len) => std::fs::metadata(&data_path).is_ok_and(|md| md.len() == len),
                None => true,
            };
            match meta {
                Some(m) if data_ok(&m) => out.push((m, data_path, path)),
                _ => {
                    tracing::warn!(path = %path.display(), "dropping a cached task whose metadata or data is damaged");
                    let _ = std::fs::remove_file(&path);
                    let _ = std::fs::remove_file(&data_path);
                }
            }
        }
    }
    Ok(out)
}

/// Creates `dir` and its missing parents owner-only (0700): cached objects may be private blobs.
pub(crate) fn private_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt as _;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Creates (or truncates) `path` as an owner-only (0600) file, for reading and writing.
pub(crate) fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path)
}
