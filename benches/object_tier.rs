//! The object tier beside a plain `object_store` client on the same S3
//! server, in one run (issue 21's targets):
//! - upload of sealed segments (with the read-back check) against plain
//!   multipart uploads of as many bytes;
//! - `get` from a remote segment with an empty cache against one ranged GET
//!   of the saveset's size at the same place;
//! - `get` from the range cache against `get` from a local store.
//!
//! `cargo bench --bench object_tier` starts s3s-fs on loopback (moto's server
//! with `VAULTSTORE_S3=moto`); `VAULTSTORE_MB` (default 256) sets the bytes
//! stored, `VAULTSTORE_ITEM_KB` (default 50) the saveset size. The last line
//! is one JSON object.

#[path = "../tests/common/s3.rs"]
#[allow(dead_code)]
mod s3;

use std::path::Path;
use std::time::Instant;

use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use s3::noise;
use vaultstore::{InitOptions, OpenOptions, SavesetId, Store};

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[((v.len() - 1) as f64 * p).round() as usize]
}

/// Plain multipart uploads of `sizes` bytes each (8 MiB parts, 4 in
/// flight, as the store uploads): seconds.
fn plain_uploads(
    rt: &tokio::runtime::Runtime,
    store: &dyn ObjectStore,
    sizes: &[usize],
    round: u32,
) -> f64 {
    let bodies: Vec<Vec<u8>> = sizes
        .iter()
        .enumerate()
        .map(|(i, &n)| noise(1000 + i as u64, n))
        .collect();
    let t = Instant::now();
    rt.block_on(async {
        for (i, body) in bodies.iter().enumerate() {
            let path = ObjectPath::from(format!("plain/{round}/{i}"));
            let upload = store.put_multipart(&path).await.unwrap();
            let mut w = WriteMultipart::new_with_chunk_size(upload, 8 << 20);
            for chunk in body.chunks(8 << 20) {
                w.wait_for_capacity(4).await.unwrap();
                w.write(chunk);
            }
            w.finish().await.unwrap();
        }
    });
    t.elapsed().as_secs_f64()
}

fn main() {
    let server = match std::env::var("VAULTSTORE_S3").as_deref() {
        Ok("moto") => s3::S3Server::moto(),
        _ => s3::S3Server::s3s_fs(),
    };
    let Some(server) = server else {
        eprintln!("object_tier: no S3 server installed; nothing measured");
        return;
    };
    server.create_bucket("bench");
    for (k, v) in server.env() {
        // SAFETY: set before any other thread of this process starts.
        unsafe { std::env::set_var(k, v) };
    }
    let mb = env_number("VAULTSTORE_MB", 256);
    let item = env_number("VAULTSTORE_ITEM_KB", 50) << 10;
    let items = (mb << 20) / item;
    let tmp = tempfile::tempdir().unwrap();
    let opts = || OpenOptions {
        background_uploads: false,
        ..OpenOptions::default()
    };
    let init = InitOptions {
        segment_bytes: 64 << 20,
        ..InitOptions::default()
    };
    let remote_dir = tmp.path().join("remote");
    let store = Store::init_with(&remote_dir, &init, opts()).unwrap();
    store
        .partition_add(Path::new("s3://bench/tier"), None)
        .unwrap();
    store.partition_close(0).unwrap();
    let local = Store::init(tmp.path().join("local"), &init).unwrap();
    let mut ids = Vec::with_capacity(items);
    for chunk in (0..items as u64).collect::<Vec<_>>().chunks(64) {
        let contents: Vec<Vec<u8>> = chunk.iter().map(|&n| noise(n, item)).collect();
        let refs: Vec<&[u8]> = contents.iter().map(Vec::as_slice).collect();
        ids.extend(store.put_many(&refs).unwrap().into_iter().map(|p| p.id));
        local.put_many(&refs).unwrap();
    }
    store.seal().unwrap();
    let sizes: Vec<usize> = store
        .segments()
        .iter()
        .filter(|s| s.partition == 1)
        .map(|s| s.bytes as usize)
        .collect();
    let total: usize = sizes.iter().sum();

    let rt = tokio::runtime::Runtime::new().unwrap();
    let plain: std::sync::Arc<dyn ObjectStore> = std::sync::Arc::new(
        AmazonS3Builder::from_env()
            .with_bucket_name("bench")
            .build()
            .unwrap(),
    );
    let plain_a = plain_uploads(&rt, &*plain, &sizes, 1);
    let t = Instant::now();
    let report = store.upload_staged().unwrap();
    let ours = t.elapsed().as_secs_f64();
    assert_eq!(report.bytes as usize, total);
    let plain_b = plain_uploads(&rt, &*plain, &sizes, 2);
    let plain_best = plain_a.min(plain_b);
    let mbps = |s: f64| total as f64 / s / 1e6;
    println!(
        "object tier on {} ({} MB in {} segments, {} KiB savesets)",
        server.kind,
        total >> 20,
        sizes.len(),
        item >> 10
    );
    println!(
        "  upload (with read-back check) {:.0} MB/s; plain multipart {:.0} and {:.0} MB/s; ratio to the faster {:.2}",
        mbps(ours),
        mbps(plain_a),
        mbps(plain_b),
        plain_best / ours
    );

    // Cold gets: a new open, nothing in the range cache.
    drop(store);
    let store = Store::open_with(&remote_dir, opts()).unwrap();
    let sample: Vec<SavesetId> = (0..200).map(|i| ids[(i * 7919) % ids.len()]).collect();
    // The plain GET reads as many bytes at a place of a segment object.
    let segments = store.segments();
    let seg = segments
        .iter()
        .find(|s| s.partition == 1 && s.state == vaultstore::SegmentState::Sealed)
        .unwrap();
    let key = seg
        .location
        .strip_prefix("s3://bench/")
        .unwrap()
        .to_string();
    let locations: Vec<(String, u64)> = sample
        .iter()
        .map(|id| {
            (
                key.clone(),
                (id.0[0] as u64 * 65_537) % (seg.bytes - item as u64),
            )
        })
        .collect();
    let mut cold = Vec::new();
    let mut plain_get = Vec::new();
    for (id, (key, offset)) in sample.iter().zip(&locations) {
        let t = Instant::now();
        let got = store.get(id).unwrap();
        cold.push(t.elapsed().as_secs_f64());
        assert_eq!(got.len(), item);
        let path = ObjectPath::from(key.as_str());
        let t = Instant::now();
        let bytes = rt
            .block_on(plain.get_range(&path, *offset..*offset + item as u64))
            .unwrap();
        plain_get.push(t.elapsed().as_secs_f64());
        assert_eq!(bytes.len(), item);
    }
    let mut cached = Vec::new();
    let mut local_get = Vec::new();
    for id in &sample {
        let t = Instant::now();
        store.get(id).unwrap();
        cached.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        local.get(id).unwrap();
        local_get.push(t.elapsed().as_secs_f64());
    }
    let ms = |v: f64| v * 1e3;
    let (c50, c99) = (percentile(&mut cold, 0.5), percentile(&mut cold, 0.99));
    let (p50, p99) = (
        percentile(&mut plain_get, 0.5),
        percentile(&mut plain_get, 0.99),
    );
    let (h50, h99) = (percentile(&mut cached, 0.5), percentile(&mut cached, 0.99));
    let (l50, l99) = (
        percentile(&mut local_get, 0.5),
        percentile(&mut local_get, 0.99),
    );
    println!(
        "  get, cold cache    p50 {:.2} ms p99 {:.2} ms; one ranged GET p50 {:.2} ms p99 {:.2} ms; ratio at p50 {:.2}",
        ms(c50),
        ms(c99),
        ms(p50),
        ms(p99),
        c50 / p50
    );
    println!(
        "  get, from cache    p50 {:.3} ms p99 {:.3} ms; local get p50 {:.3} ms p99 {:.3} ms; ratio at p50 {:.2}",
        ms(h50),
        ms(h99),
        ms(l50),
        ms(l99),
        h50 / l50
    );
    println!(
        "{}",
        serde_json::json!({
            "server": server.kind, "bytes": total, "segments": sizes.len(), "item_bytes": item,
            "upload_seconds": ours, "plain_upload_seconds": [plain_a, plain_b],
            "upload_ratio": plain_best / ours,
            "cold_get_p50_seconds": c50, "cold_get_p99_seconds": c99,
            "ranged_get_p50_seconds": p50, "ranged_get_p99_seconds": p99,
            "cold_get_ratio_p50": c50 / p50,
            "cached_get_p50_seconds": h50, "local_get_p50_seconds": l50,
            "cached_get_ratio_p50": h50 / l50,
        })
    );
}
