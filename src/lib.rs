//! vaultstore: a storage engine for email archiving.
//!
//! Savesets (archived mail items) are content-addressed by their blake3-256
//! hash, stored once however many mailboxes hold them, zstd-compressed, and
//! appended with a crc32 to log-structured segment files that are sealed when
//! full and never written again. The bytes on disk are specified in
//! `format-spec/`.
//!
//! The module tree is the architecture, in layers; a module names only its
//! own layer or those below (`tests/layers.rs` checks it):
//!
//! ```text
//!  7  presentation   cli/ (one file per command group)   service/   present
//!  6  façade         store   (and what drives it as a user: import, bench, sizing)
//!  5  processes      compaction   backup   backup_mode   jobs (the runner and its history)
//!  4  state          engine = index + part_table + catalog/ + lifecycle + partition
//!  3  the log        log/: segments on volumes, writer, group commit, recovery
//!  2  one of each    segment   index   parts   message_cache   jobs::history   metrics
//!  1  ground         id   error   units   heap   format/ (bytes only)   io   crypto
//! ```
//!
//! * [`store`]: the library's façade; forwards to the layers below, holds no algorithm.
//! * `log` (crate-private): the segment set, each partition a `Volume`; the one writer,
//!   group commit, sealing, recovery at open.
//! * `engine` (crate-private): the state over the log, rebuilt by replay; put, get, bury.
//! * [`catalog`]: owners, items, references, trash, holds; dead savesets.
//! * [`lifecycle`]: archive bits, backup marks, pending counters, the post-processing feed.
//! * [`partition`]: the directories (volumes) segments live in; rollover by capacity.
//! * [`compaction`]: defragmentation and redistribution; crash-safe segment rewrites.
//! * [`backup`]: the built-in backup run.
//! * [`backup_mode`]: backup mode, and moving the message cache into the segments after it.
//! * [`jobs`]: background processes, their progress and persistent history.
//! * [`segment`]: one segment file's life: create, append, seal, load, scan.
//! * [`parts`]: splitting MIME messages into content-addressed parts, and rebuilding them exactly.
//! * `message_cache` (crate-private): the durable queue of writes accepted in backup mode.
//! * [`index`]: the in-memory map from saveset id to location.
//! * [`metrics`]: the store's figures over time (a sample a minute), for the page's charts.
//! * [`format`](mod@format): bytes on disk only (manifest, segment header, record, footer).
//! * [`io`]: the one narrow layer over files, where tests inject faults.
//! * [`crypto`]: encryption at rest: key slots, sealed records, keyed ids.
//! * [`heap`]: a counting allocator, so memory figures are measured.
//! * [`units`]: times, sizes and durations as people read them.
//! * [`import`]: import of Maildir, mbox and .eml exports; export back to .eml files.
//! * [`bench`](mod@bench): the end-to-end benchmark behind `vaultstore bench`.
//! * [`sizing`]: `vaultstore bench --size`: an organisation's disk, memory and cores from measured costs.
//! * [`rng`]: a deterministic generator for generated corpora and simulations (never for secrets).
//! * [`settings`]: the store's settings as an operator changes and reads them (CLI and service alike).
//! * [`service`]: the HTTP service (`vaultstore serve`) and the operator's page.
//! * [`cli`]: argument parsing and output for the `vaultstore` binary.
//! * [`present`]: what the CLI and the service both show: sizes, durations, times, process rows.
//!
//! # Durability
//! A saveset is *acknowledged* when [`Store::put`](store::Store::put) returns `Ok`. By then its
//! record has been written to the active segment and that file has been
//! fdatasync'ed (and, for a segment created by this put, the segment file and
//! its directory entry were synced before the record was written). An
//! acknowledged saveset survives a crash or power loss of the machine,
//! assuming the disk honours fsync. Concurrent puts share one fsync (group
//! commit, in the log).
//!
//! The log is durable in order: if a record is durable, every record appended
//! before it is too (a segment is fsynced before it is sealed and before the
//! next one takes records). [`Store::has`](store::Store::has) therefore answers from memory
//! without waiting: a saveset it reports may still be in flight, but any write
//! acknowledged after it returned makes that saveset durable as well. A put
//! of content that is already present waits for durability before it reports
//! a duplicate.
//!
//! In backup mode, and until what it took then is in the segments, puts and
//! archives are acknowledged once durable in the message cache instead (its
//! queue file fdatasync'ed, group commit alike), and readable from there at
//! once; "Processing message cache" moves them into the segments in order.
//!
//! ```
//! use vaultstore::{InitOptions, Store};
//! let dir = tempfile::tempdir().unwrap();
//! let store = Store::init(dir.path().join("vault"), &InitOptions::default()).unwrap();
//! let id = store.put(b"From: a@example.com\r\n\r\nhi\r\n").unwrap().id;
//! assert!(store.has(&id));
//! ```

#![deny(missing_docs)]

pub mod backup;
pub mod backup_mode;
pub mod bench;
pub mod catalog;
pub mod cli;
pub mod compaction;
pub mod crypto;
pub(crate) mod engine;
pub mod error;
pub mod format;
pub mod heap;
pub mod id;
pub mod import;
pub mod index;
pub mod io;
pub mod jobs;
pub mod lifecycle;
pub(crate) mod log;
pub(crate) mod message_cache;
pub mod metrics;
pub(crate) mod part_table;
pub mod partition;
pub mod parts;
pub mod present;
pub mod rng;
pub mod segment;
pub mod service;
pub mod settings;
pub mod sizing;
pub mod store;
pub mod units;

pub use compaction::{CompactionReport, Redistribution, RemovedSegment};
pub use error::{Error, Result};
pub use id::SavesetId;
pub use store::{
    InitOptions, OpenOptions, Problem, Put, SegmentStat, SegmentState, Stat, Store, VerifyReport,
};
