//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod s3;
pub mod server;

use std::path::{Path, PathBuf};

use vaultstore::bench::read_corpus;

/// The real-mail corpus beside the repository, if present.
pub fn corpus_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus/dev");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIP: real-mail corpus not found at ../shared/corpus/dev (see README, 'Real data')"
        );
        None
    }
}

/// Every message (and attachment payload) of the real corpus.
pub fn corpus_messages() -> Option<Vec<Vec<u8>>> {
    let dir = corpus_dir()?;
    let msgs = read_corpus(&dir).expect("corpus readable");
    assert!(
        msgs.len() > 100,
        "corpus unexpectedly small: {}",
        msgs.len()
    );
    Some(msgs)
}

/// A seed for randomised tests: from VAULTSTORE_SEED or the clock, printed
/// so a failure can be replayed.
pub fn seed() -> u64 {
    let seed = std::env::var("VAULTSTORE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("seed {seed} (replay with VAULTSTORE_SEED={seed})");
    seed
}

/// Small deterministic generator for tests.
#[allow(unused_imports)]
pub use vaultstore::rng::SplitMix as Rng;

/// Mail-like content of roughly `len` bytes, distinct for each `n`.
pub fn message(n: u64, len: usize) -> Vec<u8> {
    let mut m = format!("Message-ID: <{n}@test>\r\nSubject: test {n}\r\n\r\n").into_bytes();
    let words = [
        "archive ", "mailbox ", "saveset ", "segment ", "hello ", "report ",
    ];
    let mut i = n as usize;
    while m.len() < len {
        m.extend_from_slice(words[i % words.len()].as_bytes());
        i = i.wrapping_mul(31).wrapping_add(7);
    }
    m
}

/// Copy a store directory (without its lock file), as a restore or a crash
/// image would.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else if e.file_name() != "LOCK" {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// Run a process of type `process` on `store` that works until it is asked
/// to stop (checking at a safe point every 10 ms); its outcome on join.
pub fn run_until_cancelled(
    store: std::sync::Arc<vaultstore::Store>,
    process: vaultstore::jobs::ProcessType,
) -> std::thread::JoinHandle<vaultstore::Result<()>> {
    std::thread::spawn(move || {
        store.run_process(process, |job| {
            loop {
                job.checkpoint()?;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
        })
    })
}

/// The history's newest entry ends its run as interrupted (a torn
/// Finished entry was cut at open); returns how many entries there are.
pub fn newest_run_interrupted(store: &vaultstore::Store) -> usize {
    let rows = store.history_since(0);
    let detail = rows.first().and_then(|r| r.detail.as_deref());
    assert!(detail.unwrap_or("").contains("interrupted"), "{rows:?}");
    rows.len()
}
