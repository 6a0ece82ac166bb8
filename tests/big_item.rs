//! An item of 2 GiB goes in and comes back, within a bounded multiple of
//! its size in memory. Opt-in (VAULTSTORE_BIG_TESTS=1): it writes 2 GiB.

use vaultstore::{InitOptions, SavesetId, Store};

fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[test]
fn a_two_gib_item_round_trips_in_bounded_memory() {
    if std::env::var("VAULTSTORE_BIG_TESTS").as_deref() != Ok("1") {
        eprintln!("SKIP: set VAULTSTORE_BIG_TESTS=1 to store and read a 2 GiB item");
        return;
    }
    let size: usize = 2 << 30;
    // Mail-like text with a counter so it is not trivially compressible.
    let mut content = Vec::with_capacity(size);
    let mut n = 0u64;
    while content.len() < size {
        content.extend_from_slice(
            format!(
                "line {n:012} of a very large attachment, base64-ish AbCdEf{}\r\n",
                n % 97
            )
            .as_bytes(),
        );
        n += 1;
    }
    content.truncate(size);
    let id = SavesetId::of(&content);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::init(dir.path().join("s"), &InitOptions::default()).unwrap();
    let before = peak_rss_bytes().unwrap_or(0);
    let put = store.put(&content).unwrap();
    assert_eq!(put.id, id);
    drop(content);
    let got = store.get(&id).unwrap();
    assert_eq!(got.len(), size);
    assert_eq!(SavesetId::of(&got), id);
    drop(got);
    let after = peak_rss_bytes().unwrap_or(0);
    // Content (2 GiB) was resident before; put and get each hold at most
    // the content plus one encoded copy.
    let growth = after.saturating_sub(before);
    eprintln!(
        "peak memory growth {} MiB for a {} MiB item",
        growth >> 20,
        size >> 20
    );
    assert!(growth <= 2 * size as u64, "peak grew by {growth} bytes");
    assert!(store.verify().is_clean());
}
