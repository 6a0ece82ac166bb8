//! Memory measured, not estimated: this test binary counts every heap
//! allocation (`vaultstore::heap::CountingAlloc`) and checks what the index
//! really holds per saveset against its stated bound of 48 bytes. One test
//! in the binary, so no other test's allocations are counted.

use vaultstore::SavesetId;
use vaultstore::heap::{CountingAlloc, live_bytes};
use vaultstore::index::{Index, Location};

#[global_allocator]
static HEAP: CountingAlloc = CountingAlloc;

fn loc(n: u64) -> Location {
    Location {
        segment: 1 + (n / 50_000) as u32,
        offset: (n % 50_000) as u32 * 64,
    }
}

#[test]
fn the_index_holds_at_most_48_bytes_of_heap_a_saveset() {
    // The counter sees what is allocated, and what is freed.
    let base = live_bytes().expect("counting allocator installed");
    let block = vec![0u8; 1 << 20];
    let with_block = live_bytes().unwrap();
    assert!(with_block - base >= 1 << 20, "{}", with_block - base);
    drop(block);
    assert!(live_bytes().unwrap() < with_block);

    // Built at open from footers, then grown by puts (the recent map).
    let ids: Vec<SavesetId> = (0..300_000u64)
        .map(|n| SavesetId::of(&n.to_le_bytes()))
        .collect();
    let before = live_bytes().unwrap();
    let pairs: Vec<(SavesetId, Location)> = ids[..200_000]
        .iter()
        .enumerate()
        .map(|(n, id)| (*id, loc(n as u64)))
        .collect();
    // The input is counted from before it exists: the build consumes it
    // (its allocation may become the index's own), so whatever is left is
    // the index's.
    let (mut index, _) = Index::build(pairs);
    for (n, id) in ids[200_000..].iter().enumerate() {
        index.insert(*id, loc(200_000 + n as u64));
    }
    let held = live_bytes().unwrap() - before;
    let per = held as f64 / index.len() as f64;
    eprintln!(
        "index: {per:.1} bytes of heap a saveset measured ({:.1} estimated) over {} savesets",
        index.memory_bytes() as f64 / index.len() as f64,
        index.len()
    );
    assert_eq!(index.len(), 300_000);
    assert!(per <= 48.0, "{per:.1} bytes a saveset");
}
