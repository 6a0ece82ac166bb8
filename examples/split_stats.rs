//! How much of a mail corpus part-level single instance takes apart:
//! `cargo run --release --example split_stats -- PATH` (a Maildir, mbox or
//! .eml tree, or a workload from ../shared/corpus/mkworkload).

use std::collections::HashMap;

fn main() {
    let path = std::env::args().nth(1).expect("PATH");
    let messages = vaultstore::bench::read_corpus(std::path::Path::new(&path)).unwrap();
    let mut distinct: HashMap<[u8; 32], usize> = HashMap::new();
    for (i, m) in messages.iter().enumerate() {
        distinct.entry(*blake3::hash(m).as_bytes()).or_insert(i);
    }
    let t = std::time::Instant::now();
    let (mut split, mut whole_bytes, mut literal_bytes) = (0, 0u64, 0u64);
    let mut parts: HashMap<[u8; 32], u64> = HashMap::new();
    let mut part_refs = 0u64;
    for &i in distinct.values() {
        let m = &messages[i];
        whole_bytes += m.len() as u64;
        match vaultstore::parts::split(m) {
            Some(s) => {
                split += 1;
                for piece in &s.recipe.pieces {
                    if let vaultstore::format::composite::Piece::Literal(b) = piece {
                        literal_bytes += b.len() as u64;
                    }
                }
                for p in &s.recipe.parts {
                    parts.insert(p.id, p.len);
                    part_refs += p.len;
                }
            }
            None => literal_bytes += m.len() as u64,
        }
    }
    let secs = t.elapsed().as_secs_f64();
    let part_bytes: u64 = parts.values().sum();
    println!(
        "{} messages, {} distinct ({:.1} MB); split {split}; literal {:.1} MB; parts {} distinct of {:.1} MB decoded ({:.1} MB referenced); split time {secs:.2} s ({:.0} MB/s)",
        messages.len(),
        distinct.len(),
        whole_bytes as f64 / 1e6,
        literal_bytes as f64 / 1e6,
        parts.len(),
        part_bytes as f64 / 1e6,
        part_refs as f64 / 1e6,
        whole_bytes as f64 / 1e6 / secs
    );
}
