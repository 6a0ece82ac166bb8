//! The one error type of the library.
//!
//! Every variant carries what an operator needs to act on it: the path, the
//! segment and offset, the OS error. Nothing here decides policy; callers
//! (the store, the CLI) choose what to do with an error.

use std::path::PathBuf;

use crate::id::SavesetId;

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in vaultstore.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An operating-system call on a file failed.
    #[error("{path}: {op}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// What was attempted ("write", "fsync", "rename", ...).
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// The directory has no manifest.
    #[error(
        "{path} is not a vaultstore store (no MANIFEST found); `vaultstore init --store {path}` makes one in an empty directory"
    )]
    NotAStore {
        /// The directory that was opened.
        path: PathBuf,
    },

    /// The store path does not exist.
    #[error(
        "store {path} does not exist: create it with `vaultstore init --store {path}`, or name an existing store with --store or VAULTSTORE_STORE"
    )]
    StoreMissing {
        /// The path given.
        path: PathBuf,
    },

    /// The store path is a file.
    #[error(
        "{path} is a file, not a store: --store (or VAULTSTORE_STORE) names the store's directory"
    )]
    StoreIsAFile {
        /// The path given.
        path: PathBuf,
    },

    /// The store's files cannot be written (a read-only mount, no permission).
    #[error(
        "store {path} cannot be written ({source}): only read commands work (get, has, stat, segments, verify, refs, items, owners, export)"
    )]
    NotWritable {
        /// The store directory.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },

    /// `init` found an existing store (or a non-empty directory).
    #[error("{path} already exists and is not empty; refusing to overwrite it")]
    AlreadyExists {
        /// The directory `init` was asked to create.
        path: PathBuf,
    },

    /// A file was written by a format version this build cannot read.
    #[error(
        "{path}: format version {found} is not supported (this build reads version {supported})"
    )]
    UnsupportedVersion {
        /// The file carrying the version.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },

    /// Another process holds the store's write lock.
    #[error("store {path} is locked by pid {pid}")]
    Locked {
        /// The store directory.
        path: PathBuf,
        /// The pid written in the lock file by the holder ("unknown" if unreadable).
        pid: String,
    },

    /// The manifest exists but cannot be decoded.
    #[error("{path}: manifest is corrupt: {detail}")]
    ManifestCorrupt {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },

    /// A record or structure inside a segment is damaged.
    #[error("segment {segment} offset {offset}: {detail}")]
    Corrupt {
        /// The segment id.
        segment: u32,
        /// Byte offset of the damaged record or structure inside the segment file.
        offset: u64,
        /// What is wrong ("crc mismatch", "hash mismatch", ...).
        detail: String,
    },

    /// No saveset with this id is stored.
    #[error("saveset {0} not found")]
    NotFound(SavesetId),

    /// Text that should be a saveset id is not 64 hexadecimal digits.
    #[error("invalid saveset id {text:?}: expected 64 hexadecimal digits")]
    InvalidId {
        /// The text as given.
        text: String,
    },

    /// A block of a mapped sync cache file failed its check after open. The
    /// segments are the truth: the generation is removed and the next open
    /// rebuilds the state from them.
    #[error("sync cache {file}: {detail}; the next open rebuilds it from the segments")]
    CacheDamaged {
        /// The checkpoint file.
        file: String,
        /// Which table and block.
        detail: String,
    },

    /// A setting or argument is out of its allowed range.
    #[error("invalid setting: {0}")]
    InvalidSetting(String),

    /// Content is larger than a saveset may be.
    #[error("content of {size} bytes exceeds the saveset limit of {limit} bytes")]
    TooLarge {
        /// Size of the content offered.
        size: u64,
        /// The limit.
        limit: u64,
    },

    /// A write was attempted on a store opened read-only.
    #[error("store {path} is open read-only: only read commands work")]
    ReadOnly {
        /// The store directory.
        path: PathBuf,
    },

    /// A write was attempted while the operator keeps the store read-only.
    #[error(
        "store {path} is in the read-only state: writes are refused until `vaultstore settings --read-only off`"
    )]
    ReadOnlyState {
        /// The store directory.
        path: PathBuf,
    },

    /// A write that would change a segment file, while backup mode keeps
    /// the store's files as the backup found them.
    #[error(
        "store {path} is in backup mode since {}: files do not change until `vaultstore backup mode off` (puts and archives go to the message cache)",
        crate::units::format_time(*since_ms)
    )]
    BackupMode {
        /// The store directory.
        path: PathBuf,
        /// When backup mode began, Unix ms.
        since_ms: u64,
    },

    /// A write that must wait for the message cache to be moved into the
    /// segments (it would otherwise overtake items accepted before it).
    #[error(
        "store {path} is processing its message cache ({pending} items left): retry once it is empty"
    )]
    MessageCacheProcessing {
        /// The store directory.
        path: PathBuf,
        /// Entries still pending.
        pending: u64,
    },

    /// The message cache's queue file does not check.
    #[error("message cache {path}: {detail}")]
    MessageCache {
        /// The queue file.
        path: PathBuf,
        /// What is wrong, and where.
        detail: String,
    },

    /// An owner or item name is empty, too long or has control characters.
    #[error("invalid {what} name: {detail}")]
    InvalidName {
        /// "owner" or "item".
        what: &'static str,
        /// What is wrong with it.
        detail: String,
    },

    /// The owner is not in the catalog.
    #[error("owner {owner:?} not found")]
    OwnerNotFound {
        /// The owner asked for.
        owner: String,
    },

    /// A legal hold names an owner the catalog does not know (a typo must
    /// not look like a hold placed).
    #[error(
        "owner {owner:?} not found: no hold placed (to hold a custodian whose mail is not archived yet, ask for a custodian hold: `hold set --custodian`)"
    )]
    HoldOnUnknownOwner {
        /// The owner asked for.
        owner: String,
    },

    /// The owner has no such item.
    #[error("item {item:?} of owner {owner:?} not found")]
    ItemNotFound {
        /// Owner.
        owner: String,
        /// Item.
        item: String,
    },

    /// The item already references a saveset (archive without replacement).
    #[error(
        "item {item:?} of owner {owner:?} already references saveset {id}; ask for replacement to change it"
    )]
    ItemExists {
        /// Owner.
        owner: String,
        /// Item.
        item: String,
        /// The saveset it references now.
        id: SavesetId,
    },

    /// The item is in trash; restore or purge it first.
    #[error("item {item:?} of owner {owner:?} is in trash; restore or purge it first")]
    InTrash {
        /// Owner.
        owner: String,
        /// Item.
        item: String,
    },

    /// A legal hold forbids the change.
    #[error("{}", match item { Some(i) => format!("item {i:?} of owner {owner:?} is on legal hold"), None => format!("owner {owner:?} is on legal hold") })]
    Held {
        /// The owner.
        owner: String,
        /// The item, when the hold is on the item itself.
        item: Option<String>,
    },

    /// `link` to content the store does not have: the client must send it.
    #[error("saveset {0} is not stored; send its content")]
    NotStored(SavesetId),

    /// A backup tool's checksum does not match the segment: it is not marked.
    #[error(
        "segment {segment}: checksum mismatch: the segment's blake3 is {expected}, got {given}; not marked as backed up"
    )]
    ChecksumMismatch {
        /// Segment id.
        segment: u32,
        /// The segment's checksum.
        expected: String,
        /// What was given.
        given: String,
    },

    /// A background process of this type is running already.
    #[error("{process} is already running (started {})", crate::units::format_time(*started_ms))]
    AlreadyRunning {
        /// The process type's name.
        process: String,
        /// When the running one started, Unix ms.
        started_ms: u64,
    },

    /// The service that holds the store refused or failed a command; its words.
    #[error("{message}")]
    Service {
        /// What the service said.
        message: String,
    },

    /// The service runs as many background processes as it may.
    #[error(
        "{running} background processes are running, the most the store allows ({max}); try again when one ends, or raise it with `settings --max-processes`"
    )]
    TooManyProcesses {
        /// Processes running or starting.
        running: usize,
        /// The store's limit.
        max: usize,
    },

    /// The operator cancelled the process; it stopped at a safe point.
    #[error("{process} was cancelled")]
    Cancelled {
        /// The process type's name.
        process: String,
    },

    /// The live state disagrees with what the segments say.
    #[error("store {path}: {detail}")]
    Inconsistent {
        /// The store directory.
        path: PathBuf,
        /// What differs.
        detail: String,
    },

    /// A key, a passphrase or the key file could not be used (encryption at
    /// rest, format-spec/encryption.md).
    #[error("encryption: {0}")]
    Crypto(String),

    /// No key slot of the store opens with the passphrase given. Nothing was changed.
    #[error("wrong passphrase: it opens none of the store's key slots")]
    WrongPassphrase,

    /// A request about key slots that cannot be done as asked.
    #[error("{0}")]
    Keys(String),

    /// The request changes nothing (restore with nothing in trash, say).
    #[error("{0}")]
    NothingToDo(String),

    /// An earlier write or fsync failed in a way that leaves the on-disk state
    /// unknown; the store refuses writes until it is reopened (and recovered).
    #[error(
        "store {path} refuses writes after an earlier failure ({detail}); reopen it to recover"
    )]
    WriterFailed {
        /// The store directory.
        path: PathBuf,
        /// The failure that stopped the writer.
        detail: String,
    },

    /// An object store answered with an error, or with bytes that do not
    /// check, after its retries. Never carries credentials.
    #[error("{url}: {op}: {detail}")]
    ObjectStore {
        /// The object (or the partition's prefix) the request was about.
        url: String,
        /// What was attempted ("upload", "ranged read", "list", ...).
        op: &'static str,
        /// What went wrong.
        detail: String,
    },
}

impl Error {
    /// Build an [`Error::Io`] from an OS error.
    pub fn io(path: impl Into<PathBuf>, op: &'static str, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            op,
            source,
        }
    }

    /// Build an [`Error::Corrupt`].
    pub fn corrupt(segment: u32, offset: u64, detail: impl Into<String>) -> Self {
        Error::Corrupt {
            segment,
            offset,
            detail: detail.into(),
        }
    }

    /// True when the error reports damaged data (as opposed to an I/O failure
    /// or a usage error).
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corrupt { .. } | Error::ManifestCorrupt { .. })
    }

    /// The OS error kind, when this is an I/O error.
    pub fn io_kind(&self) -> Option<std::io::ErrorKind> {
        match self {
            Error::Io { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}
