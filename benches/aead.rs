//! The AEAD choice (format-spec/encryption.md, "Algorithms, and why"):
//! AES-256-GCM (RustCrypto's and ring's) beside XChaCha20-Poly1305 on
//! mail-sized and segment-sized messages, and the store's own record
//! sealing (nonce draw, key per record and id included). `cargo bench --bench aead`.

use aes_gcm::Aes256Gcm;
use chacha20poly1305::XChaCha20Poly1305;
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use vaultstore::crypto::{MasterKey, StoreKeys};

fn aead(c: &mut Criterion) {
    let key = [7u8; 32];
    let gcm = Aes256Gcm::new(&key.into());
    let xchacha = XChaCha20Poly1305::new(&key.into());
    let keys = StoreKeys::derive(&MasterKey::from_bytes(key), [1; 16]);
    let ring_gcm = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key).unwrap(),
    );
    for size in [4 << 10, 32 << 10, 64 << 10, 1 << 20] {
        let mut g = c.benchmark_group(format!("aead {} KiB", size >> 10));
        g.throughput(Throughput::Bytes(size as u64));
        let mut buf = vec![0x5au8; size];
        let mut n = 0u64;
        g.bench_function("aes-256-gcm ring", |b| {
            b.iter(|| {
                n += 1;
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&n.to_le_bytes());
                ring_gcm
                    .seal_in_place_separate_tag(
                        ring::aead::Nonce::assume_unique_for_key(nonce),
                        ring::aead::Aad::from(b"header"),
                        &mut buf,
                    )
                    .unwrap()
            })
        });
        g.bench_function("aes-256-gcm rustcrypto", |b| {
            b.iter(|| {
                n += 1;
                let mut nonce = [0u8; 12];
                nonce[..8].copy_from_slice(&n.to_le_bytes());
                gcm.encrypt_in_place_detached(&nonce.into(), b"header", &mut buf)
                    .unwrap()
            })
        });
        g.bench_function("xchacha20-poly1305", |b| {
            b.iter(|| {
                n += 1;
                let mut nonce = [0u8; 24];
                nonce[..8].copy_from_slice(&n.to_le_bytes());
                xchacha
                    .encrypt_in_place_detached(&nonce.into(), b"header", &mut buf)
                    .unwrap()
            })
        });
        g.bench_function("seal a record", |b| {
            b.iter(|| keys.seal(None, &[0; 60], &[1; 32], &buf).unwrap())
        });
        g.finish();
    }
}

criterion_group!(benches, aead);
criterion_main!(benches);
