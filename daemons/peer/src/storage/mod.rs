//! [`PieceStore`]: the peer's cache. One sparse file per task, pieces written at their offsets,
//! plus a JSON sidecar with the task's metadata, piece bitmap and piece digests.
//!
//! Layout: `<dir>/content/tasks/<first 3 chars of id>/<id>` and `<id>.meta.json` beside it.
//!
//! Why a JSON sidecar and not redb: each task's metadata is independent, small (a bitmap and 32
//! bytes per piece) and written a few times a second at most, so one file per task, replaced
//! atomically (write temp, fsync, rename), gives crash safety without a shared database that one
//! corrupt page could take down whole. It is also readable with `jq` during an incident.
//!
//! Invariants:
//! - a piece's bit is set only after its bytes were written and its digest verified (or, for
//!   origin pieces, computed); readers and the upload server serve only set bits, so a corrupt or
//!   partial piece is never served from the cache;
//! - the data file is fsynced before a sidecar that claims its pieces is renamed into place;
//! - `used` counts the full length of every task with a known layout (only our own files).

mod meta;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use df_core::api::ByteSource;
use df_core::ids::{ObjectDigest, PeerId, PieceDigest, TaskId};
use df_core::piece::{Bitmap, PieceLayout};
use tokio::sync::watch;

pub use meta::TaskMeta;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no room for task {task} ({needed} bytes): {used} of {capacity} bytes used and nothing evictable"
    )]
    NoSpace {
        task: TaskId,
        needed: u64,
        used: u64,
        capacity: u64,
    },
    #[error("task {0} has no layout yet")]
    NoLayout(TaskId),
    #[error("piece {piece} of task {task} is out of range")]
    PieceRange { task: TaskId, piece: u32 },
    #[error("storage worker failed: {0}")]
    Join(String),
    /// The runtime is shutting down and cancelled the worker: nothing failed, the daemon
    /// stops.
    #[error("the daemon is stopping")]
    Stopping,
    #[error("task {task}: {source}")]
    Layout {
        task: TaskId,
        source: df_core::piece::LayoutError,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StorageError + '_ {
    move |source| StorageError::Io {
        path: path.to_owned(),
        source,
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// Why a download of a task ended without the task being complete.
#[derive(Debug, Clone)]
pub enum TaskFailure {
    /// The origin refused before the first byte; passed through to clients as is.
    Origin {
        status: u16,
        headers: Vec<(String, String)>,
        body: Bytes,
    },
    /// The object cannot be stored here; clients are served straight from the origin.
    NoSpace(String),
    /// The origin gave no length, so the object cannot be cut into pieces; served straight.
    NoLength,
    /// The daemon is stopping: not the download's failure, and not reported as one.
    Stopping,
    Other(String),
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Origin { status, .. } => write!(f, "origin answered {status}"),
            Self::NoSpace(m) => write!(f, "no space: {m}"),
            Self::NoLength => f.write_str("origin sent no content length"),
            Self::Stopping => f.write_str("the daemon is stopping"),
            Self::Other(m) => f.write_str(m),
        }
    }
}

/// A storage worker that did not return: cancelled by the runtime's shutdown, or panicked.
fn joined(e: tokio::task::JoinError) -> StorageError {
    if e.is_cancelled() {
        StorageError::Stopping
    } else {
        StorageError::Join(e.to_string())
    }
}

/// Mutable state of one task, under [`StoredTask::state`].
#[derive(Debug)]
pub struct TaskState {
    pub url: String,
    pub peer_id: PeerId,
    pub layout: Option<PieceLayout>,
    pub bitmap: Bitmap,
    pub digests: Vec<Option<PieceDigest>>,
    pub response_headers: Vec<(String, String)>,
    pub object_digest: Option<ObjectDigest>,
    /// The origin gave the object out for a client's credentials ([`crate::access`]).
    pub private: bool,
    /// Credential prints the origin accepted for this object; not persisted.
    pub cleared: crate::access::Cleared,
    pub complete: bool,
    /// A download is running for this task right now.
    pub downloading: bool,
    pub failure: Option<TaskFailure>,
    /// Where this download is getting bytes from, for the response's source header.
    pub source: Option<ByteSource>,
    pub bytes_from_origin: u64,
    pub bytes_from_peers: u64,
    pub bytes_from_seeds: u64,
    pub uploaded_bytes: u64,
    /// Pieces sent to another peer at least once since start, counted from the admission of
    /// the request (for a seed's super-seeding, [`crate::superseed`]); not persisted. `sent`,
    /// `delivered` and `received` are as long as `bitmap`: they get their length where it
    /// does.
    pub sent: Bitmap,
    /// Pieces whose last byte went to another peer at least once since start (for a helper's
    /// read-ahead, [`crate::read_ahead`]); not persisted.
    pub delivered: Bitmap,
    /// Pieces fetched from another daemon since start (for the same two); not persisted.
    pub received: Bitmap,
    /// Uploads of this task in progress (at most `upload.slots`, `crate::admission`); not
    /// persisted.
    pub uploads: u32,
    /// Those uploads' slots and the request waiting behind each (`crate::upload`); not
    /// persisted.
    pub upload_slots: crate::upload::SlotTable,
    /// What the neighbours watched by this download hold (`crate::neighbour_views`); not
    /// persisted.
    pub views: crate::neighbour_views::Views,
    pub last_access: u64,
    pub pieces_since_save: u32,
}

impl TaskState {
    /// What super-seeding knows of this task's pieces beyond holding them.
    pub fn superseed_record(&self) -> crate::superseed::Record<'_> {
        crate::superseed::Record {
            sent: &self.sent,
            received: &self.received,
        }
    }
}

pub struct StoredTask {
    pub id: TaskId,
    pub data_path: PathBuf,
    meta_path: PathBuf,
    state: Mutex<TaskState>,
    file: Mutex<Option<Arc<std::fs::File>>>,
    /// Bumped on every change readers may wait for (a piece, the layout, completion, failure).
    changed: watch::Sender<u64>,
    /// Bumped when a piece is delivered for the first time; a helper that stopped reading its share
    /// ahead of its uplink ([`crate::read_ahead`]) waits for it. Apart from `changed` so the
    /// bitmap feeds are not woken for every piece a normal peer sends.
    sends: watch::Sender<u64>,
    /// Readers and downloads using the task; a task in use is never evicted.
    users: AtomicUsize,
    /// One write to the data file at a time. Buffered writes to one file serialise on the
    /// inode's lock in the kernel anyway; eight blocking threads queued there spin on it
    /// (measured: 16 % of a cold pull's CPU in `rwsem_spin_on_owner`) instead of sleeping.
    write_gate: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for StoredTask {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredTask").field("id", &self.id).finish()
    }
}

/// Keeps a task from eviction while held.
pub struct TaskUse(Arc<StoredTask>);

impl Drop for TaskUse {
    fn drop(&mut self) {
        self.0.users.fetch_sub(1, Ordering::AcqRel);
    }
}

impl StoredTask {
    pub fn state(&self) -> std::sync::MutexGuard<'_, TaskState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn hold(self: &Arc<Self>) -> TaskUse {
        self.users.fetch_add(1, Ordering::AcqRel);
        TaskUse(self.clone())
    }

    pub fn in_use(&self) -> bool {
        self.users.load(Ordering::Acquire) > 0
    }

    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    pub fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn subscribe_sends(&self) -> watch::Receiver<u64> {
        self.sends.subscribe()
    }

    /// A piece was delivered to another peer for the first time.
    pub fn first_delivered(&self) {
        self.sends.send_modify(|v| *v = v.wrapping_add(1));
    }

    pub fn layout(&self) -> Option<PieceLayout> {
        self.state().layout
    }

    pub fn has_piece(&self, n: u32) -> bool {
        self.state().bitmap.get(n)
    }

    pub fn is_complete(&self) -> bool {
        self.state().complete
    }

    pub fn touch(&self) {
        self.state().last_access = unix_now();
    }

    fn file(&self) -> Result<Arc<std::fs::File>, StorageError> {
        let mut slot = self.file.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = &*slot {
            return Ok(f.clone());
        }
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&self.data_path)
            .map_err(io_err(&self.data_path))?;
        let f = Arc::new(f);
        *slot = Some(f.clone());
        Ok(f)
    }

    /// Writes `chunks` back to back from `offset` of the data file with `pwritev`, off the
    /// async runtime: the received buffers go to the kernel as they are, with no staging copy.
    pub async fn write_chunks_at(
        &self,
        offset: u64,
        chunks: Vec<Bytes>,
    ) -> Result<(), StorageError> {
        /// Below the kernel's IOV_MAX (1024).
        const MAX_IOVECS: usize = 256;
        let file = self.file()?;
        let path = self.data_path.clone();
        let _gate = self.write_gate.lock().await;
        tokio::task::spawn_blocking(move || {
            let mut chunks: std::collections::VecDeque<Bytes> = chunks.into();
            let mut at = offset;
            while !chunks.is_empty() {
                let slices: Vec<std::io::IoSlice<'_>> = chunks
                    .iter()
                    .take(MAX_IOVECS)
                    .map(|b| std::io::IoSlice::new(b))
                    .collect();
                let mut done = rustix::io::pwritev(&*file, &slices, at)
                    .map_err(|e| io_err(&path)(std::io::Error::from(e)))?;
                drop(slices);
                if done == 0 {
                    return Err(io_err(&path)(std::io::ErrorKind::WriteZero.into()));
                }
                at += done as u64;
                while done > 0 {
                    let Some(front) = chunks.front_mut() else {
                        break;
                    };
                    if front.len() <= done {
                        done -= front.len();
                        chunks.pop_front();
                    } else {
                        *front = front.slice(done..);
                        done = 0;
                    }
                }
            }
            Ok(())
        })
        .await
        .map_err(joined)?
    }

    /// Reads `len` bytes at `offset` of the data file, off the async runtime, straight into a
    /// fresh buffer's spare capacity (no zero-fill first).
    pub async fn read_at(&self, offset: u64, len: usize) -> Result<Bytes, StorageError> {
        let file = self.file()?;
        let path = self.data_path.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf: Vec<u8> = Vec::with_capacity(len);
            while buf.len() < len {
                let at = offset + buf.len() as u64;
                let n = rustix::io::pread(&*file, rustix::buffer::spare_capacity(&mut buf), at)
                    .map_err(|e| io_err(&path)(std::io::Error::from(e)))?;
                if n == 0 {
                    return Err(io_err(&path)(std::io::ErrorKind::UnexpectedEof.into()));
                }
            }
            buf.truncate(len);
            Ok(Bytes::from(buf))
        })
        .await
        .map_err(joined)?
    }

    /// Marks piece `n` held with its verified digest, and counts where it came from.
    pub fn commit_piece(&self, n: u32, digest: PieceDigest, from: ByteSource, len: u64) -> bool {
        let mut st = self.state();
        if st.layout.is_none_or(|l| n >= l.piece_count()) {
            return false;
        }
        if let Some(slot) = st.digests.get_mut(n as usize) {
            *slot = Some(digest);
        }
        let newly = st.bitmap.set(n);
        if newly {
            match from {
                ByteSource::Origin => st.bytes_from_origin += len,
                ByteSource::Seed => st.bytes_from_seeds += len,
                ByteSource::Peer | ByteSource::Local => st.bytes_from_peers += len,
            }
            if matches!(from, ByteSource::Seed | ByteSource::Peer) {
                st.received.set(n);
            }
            st.pieces_since_save += 1;
        }
        drop(st);
        self.notify();
        newly
    }

    /// Forgets a piece (its bytes failed a later check).
    pub fn drop_piece(&self, n: u32) {
        let mut st = self.state();
        st.bitmap.clear(n);
        if let Some(slot) = st.digests.get_mut(n as usize) {
            *slot = None;
        }
    }

    pub fn add_uploaded(&self, bytes: u64) {
        self.state().uploaded_bytes += bytes;
    }

    /// Ends the running download: complete, or failed with a reason readers can act on.
    pub fn finish(&self, result: Result<(), TaskFailure>) {
        {
            let mut st = self.state();
            st.downloading = false;
            match result {
                Ok(()) => {
                    st.complete = true;
                    st.failure = None;
                }
                Err(f) => st.failure = Some(f),
            }
        }
        self.notify();
    }

    /// Writes the sidecar (after syncing the data file it describes), atomically.
    pub async fn save(&self) -> Result<(), StorageError> {
        let meta = {
            let mut st = self.state();
            st.pieces_since_save = 0;
            TaskMeta::from_state(&self.id, &st)
        };
        let file = self.file.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let meta_path = self.meta_path.clone();
        let data_path = self.data_path.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(f) = file {
                f.sync_data().map_err(io_err(&data_path))?;
            }
            meta.write_atomically(&meta_path)
        })
        .await
        .map_err(joined)?
    }

    /// Saves when enough pieces landed since the last save (bounds the work lost to a crash).
    pub async fn save_if_due(&self) -> Result<(), StorageError> {
        let due = self.state().pieces_since_save >= 16;
        if due { self.save().await } else { Ok(()) }
    }

    /// This node's view of the task; `ttl` is the GC's idle limit, from which the time left
    /// before collection follows.
    pub fn to_local_view(&self, ttl: Duration) -> df_core::api::LocalTask {
        let in_use = self.in_use();
        let st = self.state();
        let idle = unix_now().saturating_sub(st.last_access);
        // The GC skips tasks being downloaded or read; their clock starts when they go idle.
        let collectable = !in_use && !st.downloading;
        df_core::api::LocalTask {
            task_id: self.id.to_string(),
            url: st.url.clone(),
            content_length: st.layout.map(|l| l.content_length),
            piece_length: st.layout.map(|l| l.piece_length),
            piece_count: st.layout.map_or(0, |l| l.piece_count()),
            finished_pieces: st.bitmap.count(),
            complete: st.complete,
            content_path: self.data_path.display().to_string(),
            bytes_from_origin: st.bytes_from_origin,
            bytes_from_peers: st.bytes_from_peers,
            bytes_from_seeds: st.bytes_from_seeds,
            uploaded_bytes: st.uploaded_bytes,
            source: st.source,
            last_access_secs_ago: idle,
            expires_in_secs: collectable.then(|| ttl.as_secs().saturating_sub(idle)),
            evictable: st.complete || !st.downloading,
        }
    }
}

/// Options of a [`PieceStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    /// Bytes we may use; 0 is the filesystem's size.
    pub capacity: u64,
    pub high_watermark_percent: u8,
    pub low_watermark_percent: u8,
}

pub struct PieceStore {
    root: PathBuf,
    opts: StoreOptions,
    capacity: u64,
    tasks: Mutex<HashMap<TaskId, Arc<StoredTask>>>,
    used: AtomicU64,
}

impl std::fmt::Debug for PieceStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PieceStore")
            .field("root", &self.root)
            .finish()
    }
}

impl PieceStore {
    /// Opens (creating) the store and loads every task a previous run left, dropping any whose
    /// files disagree with their sidecar.
    pub async fn open(opts: StoreOptions) -> Result<Arc<Self>, StorageError> {
        let root = opts.dir.join("content").join("tasks");
        let (root2, dir) = (root.clone(), opts.dir.clone());
        let loaded = tokio::task::spawn_blocking(move || {
            // The cache directory is owner-only (0700), whatever mode it was created with.
            use std::os::unix::fs::PermissionsExt as _;
            meta::private_dirs(&dir).map_err(io_err(&dir))?;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(io_err(&dir))?;
            meta::load_all(&root2)
        })
        .await
        .map_err(joined)??;
        let capacity = if opts.capacity > 0 {
            opts.capacity
        } else {
            fs_size(&root).map_err(io_err(&root))?
        };
        let store = Self {
            root,
            capacity,
            opts,
            tasks: Mutex::new(HashMap::new()),
            used: AtomicU64::new(0),
        };
        {
            let mut tasks = store.lock();
            for (meta, data_path, meta_path) in loaded {
                let id = meta.task_id.clone();
                let state = meta.into_state();
                if let Some(l) = state.layout {
                    store.used.fetch_add(l.content_length, Ordering::AcqRel);
                }
                tasks.insert(id.clone(), store.new_task(id, data_path, meta_path, state));
            }
            if !tasks.is_empty() {
                tracing::info!(
                    tasks = tasks.len(),
                    used = store.used.load(Ordering::Acquire),
                    "loaded cached tasks"
                );
            }
        }
        Ok(Arc::new(store))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TaskId, Arc<StoredTask>>> {
        self.tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn new_task(
        &self,
        id: TaskId,
        data_path: PathBuf,
        meta_path: PathBuf,
        state: TaskState,
    ) -> Arc<StoredTask> {
        Arc::new(StoredTask {
            id,
            data_path,
            meta_path,
            state: Mutex::new(state),
            file: Mutex::new(None),
            changed: watch::channel(0).0,
            sends: watch::channel(0).0,
            users: AtomicUsize::new(0),
            write_gate: tokio::sync::Mutex::new(()),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.opts.dir
    }

    pub fn high_watermark_percent(&self) -> u8 {
        self.opts.high_watermark_percent
    }

    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }

    /// Usage above which new reservations and GC evict least recently used tasks.
    pub fn high_watermark(&self) -> u64 {
        self.capacity / 100 * u64::from(self.opts.high_watermark_percent)
    }

    /// Usage eviction brings the cache down to.
    pub fn low_watermark(&self) -> u64 {
        self.capacity / 100 * u64::from(self.opts.low_watermark_percent)
    }

    pub fn get(&self, id: &TaskId) -> Option<Arc<StoredTask>> {
        self.lock().get(id).cloned()
    }

    pub fn all(&self) -> Vec<Arc<StoredTask>> {
        self.lock().values().cloned().collect()
    }

    fn paths(&self, id: &TaskId) -> (PathBuf, PathBuf) {
        let dir = self.root.join(&id.as_str()[..3]);
        (dir.join(id.as_str()), dir.join(format!("{id}.meta.json")))
    }

    /// The task, created empty if unknown.
    pub fn get_or_create(&self, id: &TaskId, url: &str, peer_id: &PeerId) -> Arc<StoredTask> {
        let mut tasks = self.lock();
        if let Some(t) = tasks.get(id) {
            return t.clone();
        }
        let (data_path, meta_path) = self.paths(id);
        let state = TaskState {
            url: url.to_owned(),
            peer_id: peer_id.clone(),
            layout: None,
            bitmap: Bitmap::default(),
            digests: Vec::new(),
            response_headers: Vec::new(),
            object_digest: None,
            private: false,
            cleared: crate::access::Cleared::default(),
            complete: false,
            downloading: false,
            failure: None,
            source: None,
            bytes_from_origin: 0,
            bytes_from_peers: 0,
            bytes_from_seeds: 0,
            uploaded_bytes: 0,
            sent: Bitmap::default(),
            delivered: Bitmap::default(),
            received: Bitmap::default(),
            uploads: 0,
            upload_slots: crate::upload::SlotTable::default(),
            views: crate::neighbour_views::Views::default(),
            last_access: unix_now(),
            pieces_since_save: 0,
        };
        let task = self.new_task(id.clone(), data_path, meta_path, state);
        tasks.insert(id.clone(), task.clone());
        task
    }

    /// Fixes the task's layout, reserving its full length (evicting least-recently-used complete
    /// tasks if that crosses the high watermark) and creating its sparse data file. Returns the
    /// tasks evicted to make room. Fails with [`StorageError::NoSpace`] when it cannot fit.
    pub async fn set_layout(
        &self,
        task: &Arc<StoredTask>,
        layout: PieceLayout,
        headers: Vec<(String, String)>,
    ) -> Result<Vec<(TaskId, PeerId)>, StorageError> {
        if task.layout().is_some() {
            return Ok(Vec::new());
        }
        // Per-piece state (bitmap, digests) is allocated below: never for an unbounded count.
        layout
            .check_count()
            .map_err(|source| StorageError::Layout {
                task: task.id.clone(),
                source,
            })?;
        let evicted = self.reserve(&task.id, layout.content_length).await?;
        let data_path = task.data_path.clone();
        let len = layout.content_length;
        let created = tokio::task::spawn_blocking(move || -> Result<(), StorageError> {
            if let Some(dir) = data_path.parent() {
                meta::private_dirs(dir).map_err(io_err(dir))?;
            }
            let f = meta::private_file(&data_path).map_err(io_err(&data_path))?;
            f.set_len(len).map_err(io_err(&data_path))
        })
        .await
        .map_err(joined)?;
        if let Err(e) = created {
            self.used.fetch_sub(len, Ordering::AcqRel);
            return Err(e);
        }
        {
            let mut st = task.state();
            st.layout = Some(layout);
            st.bitmap = Bitmap::new(layout.piece_count());
            st.sent = Bitmap::new(layout.piece_count());
            st.delivered = Bitmap::new(layout.piece_count());
            st.received = Bitmap::new(layout.piece_count());
            st.digests = vec![None; layout.piece_count() as usize];
            st.response_headers = headers;
        }
        task.notify();
        task.save().await?;
        Ok(evicted)
    }

    async fn reserve(&self, id: &TaskId, len: u64) -> Result<Vec<(TaskId, PeerId)>, StorageError> {
        let (high, low) = (self.high_watermark(), self.low_watermark());
        let free_on_disk = fs_available(&self.root).unwrap_or(u64::MAX);
        let mut evicted = Vec::new();
        if self.used() + len > high || len > free_on_disk {
            let target = low.saturating_sub(len);
            evicted = self.evict_lru_until(target, Some(id)).await;
        }
        let used = self.used();
        let free_on_disk = fs_available(&self.root).unwrap_or(u64::MAX);
        if used + len > high || len > free_on_disk {
            return Err(StorageError::NoSpace {
                task: id.clone(),
                needed: len,
                used,
                capacity: self.capacity,
            });
        }
        self.used.fetch_add(len, Ordering::AcqRel);
        Ok(evicted)
    }

    /// Evicts complete, unused tasks, least recently used first, until `used <= target`.
    async fn evict_lru_until(&self, target: u64, keep: Option<&TaskId>) -> Vec<(TaskId, PeerId)> {
        let mut candidates: Vec<(u64, Arc<StoredTask>)> = self
            .all()
            .into_iter()
            .filter(|t| Some(&t.id) != keep && !t.in_use())
            .filter_map(|t| {
                let st = t.state();
                let evictable = st.complete || !st.downloading;
                let last = st.last_access;
                drop(st);
                evictable.then_some((last, t))
            })
            .collect();
        candidates.sort_by_key(|(last, _)| *last);
        let mut evicted = Vec::new();
        for (_, t) in candidates {
            if self.used() <= target {
                break;
            }
            if let Some(peer) = self.remove(&t.id).await {
                evicted.push((t.id.clone(), peer));
            }
        }
        evicted
    }

    /// Deletes a task and its files. Returns the peer id it was held under.
    pub async fn remove(&self, id: &TaskId) -> Option<PeerId> {
        let task = self.lock().remove(id)?;
        let (len, peer) = {
            let st = task.state();
            (
                st.layout.map_or(0, |l| l.content_length),
                st.peer_id.clone(),
            )
        };
        self.used.fetch_sub(len.min(self.used()), Ordering::AcqRel);
        *task.file.lock().unwrap_or_else(|e| e.into_inner()) = None;
        let (data, meta) = (task.data_path.clone(), task.meta_path.clone());
        let _ = tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_file(&meta);
            let _ = std::fs::remove_file(&data);
        })
        .await;
        {
            // Readers still holding the task learn it is gone, unless it already failed with a
            // reason they should see instead.
            let mut st = task.state();
            st.downloading = false;
            if st.failure.is_none() && !st.complete {
                st.failure = Some(TaskFailure::Other("task was removed".into()));
            }
        }
        task.notify();
        tracing::info!(task_id = %id, bytes = len, "removed task from the cache");
        Some(peer)
    }

    /// One GC pass: tasks idle past `ttl`, then LRU eviction down to the low watermark if usage
    /// is above the high one. Returns what was evicted so schedulers can be told.
    pub async fn gc(&self, ttl: Duration) -> Vec<(TaskId, PeerId)> {
        let now = unix_now();
        let expired: Vec<TaskId> = self
            .all()
            .into_iter()
            .filter(|t| !t.in_use())
            .filter(|t| {
                let st = t.state();
                !st.downloading && now.saturating_sub(st.last_access) > ttl.as_secs()
            })
            .map(|t| t.id.clone())
            .collect();
        let mut evicted = Vec::new();
        for id in expired {
            if let Some(peer) = self.remove(&id).await {
                evicted.push((id, peer));
            }
        }
        if self.used() > self.high_watermark() {
            evicted.extend(self.evict_lru_until(self.low_watermark(), None).await);
        }
        evicted
    }
}

fn fs_size(path: &Path) -> std::io::Result<u64> {
    let probe = existing_ancestor(path);
    let st = rustix::fs::statvfs(&probe).map_err(std::io::Error::from)?;
    Ok(st.f_blocks.saturating_mul(st.f_frsize))
}

fn fs_available(path: &Path) -> std::io::Result<u64> {
    let probe = existing_ancestor(path);
    let st = rustix::fs::statvfs(&probe).map_err(std::io::Error::from)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

fn existing_ancestor(path: &Path) -> PathBuf {
    let mut p = path.to_owned();
    while !p.exists() {
        if !p.pop() {
            return PathBuf::from("/");
        }
    }
    p
}

/// A store in `dir` holding one task laid out as `layout`, for tests of what reads and writes
/// a task's pieces.
#[cfg(test)]
pub(crate) async fn scratch_task(
    dir: &Path,
    layout: PieceLayout,
) -> (Arc<PieceStore>, Arc<StoredTask>) {
    let store = PieceStore::open(StoreOptions {
        dir: dir.to_owned(),
        capacity: 1 << 30,
        high_watermark_percent: 90,
        low_watermark_percent: 70,
    })
    .await
    .expect("open a store");
    let id: TaskId = "a".repeat(64).parse().expect("task id");
    let task = store.get_or_create(&id, "http://o/x", &PeerId::from("p".to_owned()));
    store
        .set_layout(&task, layout, vec![])
        .await
        .expect("layout");
    (store, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_worker_cancelled_by_shutdown_is_the_daemon_stopping_not_a_failure() {
        let cancelled = tokio::spawn(std::future::pending::<()>());
        cancelled.abort();
        let e = cancelled.await.expect_err("aborted");
        assert!(matches!(joined(e), StorageError::Stopping));
        let panicked = tokio::spawn(async { panic!("worker bug") });
        let e = panicked.await.expect_err("panicked");
        assert!(matches!(joined(e), StorageError::Join(_)));
    }

    #[tokio::test]
    async fn pieces_from_another_daemon_are_recorded_for_super_seeding() {
        let dir = tempfile::tempdir().expect("tmp");
        let (_store, t) = scratch_task(dir.path(), PieceLayout::new(12, Some(4))).await;
        t.commit_piece(0, PieceDigest::of(b"0"), ByteSource::Origin, 4);
        t.commit_piece(1, PieceDigest::of(b"1"), ByteSource::Peer, 4);
        t.commit_piece(2, PieceDigest::of(b"2"), ByteSource::Seed, 4);
        let st = t.state();
        assert_eq!(st.received.len(), 3);
        assert_eq!(st.received.ones().collect::<Vec<_>>(), vec![1, 2]);
    }

    fn opts(dir: &Path, capacity: u64) -> StoreOptions {
        StoreOptions {
            dir: dir.to_owned(),
            capacity,
            high_watermark_percent: 90,
            low_watermark_percent: 70,
        }
    }

    fn tid(c: char) -> TaskId {
        c.to_string().repeat(64).parse().expect("valid")
    }

    #[tokio::test]
    async fn pieces_survive_a_restart() {
        let dir = tempfile::tempdir().expect("tmp");
        let peer = PeerId::from("p".to_owned());
        let layout = PieceLayout::new(10, Some(4));
        {
            let store = PieceStore::open(opts(dir.path(), 1 << 20))
                .await
                .expect("open");
            let t = store.get_or_create(&tid('a'), "http://o/x", &peer);
            store.set_layout(&t, layout, vec![]).await.expect("layout");
            t.write_chunks_at(
                4,
                vec![Bytes::from_static(b"56"), Bytes::from_static(b"78")],
            )
            .await
            .expect("write");
            t.commit_piece(1, PieceDigest::of(b"5678"), ByteSource::Origin, 4);
            t.save().await.expect("save");
        }
        let store = PieceStore::open(opts(dir.path(), 1 << 20))
            .await
            .expect("reopen");
        let t = store.get(&tid('a')).expect("task reloaded");
        assert!(t.has_piece(1) && !t.has_piece(0));
        assert_eq!(
            t.read_at(4, 4).await.expect("read"),
            Bytes::from_static(b"5678")
        );
        assert_eq!(store.used(), 10);
        assert_eq!(t.state().digests[1], Some(PieceDigest::of(b"5678")));
    }

    #[tokio::test]
    async fn a_layout_of_too_many_pieces_is_refused_and_files_are_owner_only() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tmp");
        let peer = PeerId::from("p".to_owned());
        let store = PieceStore::open(opts(dir.path(), 1 << 40))
            .await
            .expect("open");
        let t = store.get_or_create(&tid('a'), "u", &peer);
        // 141 GB in 1-byte pieces: refused before a bitmap or digest list is allocated.
        let err = store
            .set_layout(&t, PieceLayout::new(141_000_000_000, Some(1)), vec![])
            .await
            .expect_err("too many pieces");
        assert!(matches!(err, StorageError::Layout { .. }), "{err}");
        assert!(t.layout().is_none());
        store
            .set_layout(&t, PieceLayout::new(10, Some(4)), vec![])
            .await
            .expect("small layout");
        let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&t.data_path), 0o600);
        assert_eq!(mode(&t.meta_path), 0o600);
        assert_eq!(mode(t.data_path.parent().expect("shard")), 0o700);
    }

    #[tokio::test]
    async fn over_the_high_watermark_lru_complete_tasks_go_first() {
        let dir = tempfile::tempdir().expect("tmp");
        let peer = PeerId::from("p".to_owned());
        let store = PieceStore::open(opts(dir.path(), 1000))
            .await
            .expect("open");
        for (c, age) in [('a', 30), ('b', 10), ('c', 20)] {
            let t = store.get_or_create(&tid(c), "u", &peer);
            store
                .set_layout(&t, PieceLayout::new(250, Some(250)), vec![])
                .await
                .expect("fits");
            t.finish(Ok(()));
            t.state().last_access = unix_now() - age;
        }
        // 750 used; 250 more crosses 900, so evict down to 700 - 250: the two oldest go.
        let t = store.get_or_create(&tid('d'), "u", &peer);
        let evicted = store
            .set_layout(&t, PieceLayout::new(250, Some(250)), vec![])
            .await
            .expect("fits after gc");
        let mut ids: Vec<_> = evicted.into_iter().map(|(id, _)| id).collect();
        ids.sort();
        assert_eq!(ids, vec![tid('a'), tid('c')]);
        assert!(store.get(&tid('b')).is_some());
        assert_eq!(store.used(), 500);
    }

    #[tokio::test]
    async fn an_object_larger_than_capacity_is_refused_and_leaves_no_file() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = PieceStore::open(opts(dir.path(), 1000))
            .await
            .expect("open");
        let t = store.get_or_create(&tid('a'), "u", &PeerId::from("p".to_owned()));
        let err = store
            .set_layout(&t, PieceLayout::new(5000, None), vec![])
            .await
            .expect_err("too big");
        assert!(matches!(err, StorageError::NoSpace { .. }), "{err}");
        assert!(!t.data_path.exists());
        assert_eq!(store.used(), 0);
    }

    #[tokio::test]
    async fn a_torn_sidecar_drops_the_task_on_load() {
        let dir = tempfile::tempdir().expect("tmp");
        let peer = PeerId::from("p".to_owned());
        let path = {
            let store = PieceStore::open(opts(dir.path(), 1 << 20))
                .await
                .expect("open");
            let t = store.get_or_create(&tid('a'), "u", &peer);
            store
                .set_layout(&t, PieceLayout::new(10, Some(4)), vec![])
                .await
                .expect("layout");
            t.meta_path.clone()
        };
        std::fs::write(&path, b"{\"task_id\": ").expect("tear");
        let store = PieceStore::open(opts(dir.path(), 1 << 20))
            .await
            .expect("reopen");
        assert!(store.get(&tid('a')).is_none());
        assert!(!path.exists());
    }
}
