//! Backup mode and the message cache: a backup copies the store's files
//! while 8 clients archive into it and finds them exactly as they were when
//! it began; backup mode survives a restart and ends by its maximum
//! duration; the queue's torn tail is cut off; the message cache is moved
//! into the segments in order even when its processing is killed (SIGKILL)
//! again and again, losing nothing and storing nothing twice.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use vaultstore::jobs::ProcessType;
use vaultstore::jobs::history::Status;
use vaultstore::lifecycle::StateChange;
use vaultstore::{Error, InitOptions, SavesetId, Store};

/// Files of the store that are not store data (format-spec/README.md):
/// a backup need not copy them and they may change in backup mode.
fn not_store_data(rel: &str) -> bool {
    rel == "LOCK"
        || rel == "metrics.log"
        || rel == "TOKENS"
        || rel == "service.sock"
        || rel.starts_with("jobs.")
        || rel.starts_with("message-cache/")
}

/// blake3 of each file a backup copies, by path relative to the store.
fn backup_set(store: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let rel = e
                .path()
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if e.file_type().unwrap().is_dir() {
                walk(root, &e.path(), out);
            } else if !not_store_data(&rel) {
                let bytes = std::fs::read(e.path()).unwrap();
                out.insert(rel, blake3::hash(&bytes).to_hex().to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(store, store, &mut out);
    out
}

/// Copy the backup set file by file, as backup software would.
fn copy_backup_set(store: &Path, to: &Path) {
    for rel in backup_set(store).keys() {
        let target = to.join(rel);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(store.join(rel), target).unwrap();
    }
}

fn messages() -> Vec<Vec<u8>> {
    common::corpus_messages()
        .unwrap_or_else(|| (0..400).map(|n| common::message(n, 3000)).collect())
}

/// A store with archived, sealed and backed-up history behind it.
fn archived_store(dir: &Path, msgs: &[Vec<u8>]) -> Store {
    let store = Store::init(dir, &InitOptions::default()).unwrap();
    for (n, m) in msgs.iter().take(60).enumerate() {
        store
            .archive("before", &format!("<{n}>"), m, false)
            .unwrap();
    }
    store.seal().unwrap();
    for (n, m) in msgs.iter().skip(60).take(20).enumerate() {
        store
            .archive("active", &format!("<{n}>"), m, false)
            .unwrap();
    }
    store
}

#[test]
fn a_backup_copied_in_backup_mode_is_the_store_as_it_was_while_8_clients_archive() {
    let msgs = Arc::new(messages());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = Arc::new(archived_store(&dir, &msgs));
    let on = store.backup_mode(Some(true)).unwrap();
    assert!(on.on && on.since_ms.is_some());
    let before = backup_set(&dir);
    assert!(before.keys().any(|k| k.ends_with(".sealed")));
    assert!(before.keys().any(|k| k.ends_with(".active")));

    // Eight clients archive (new mail, mail stored before, and a replace)
    // while the backup copies; each checks what it was acknowledged.
    let clients: Vec<_> = (0..8)
        .map(|c| {
            let (store, msgs) = (store.clone(), msgs.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for k in 0..40 {
                    let m = &msgs[(c * 53 + k * 7) % msgs.len()];
                    let item = format!("<{c}-{k}>");
                    let a = store
                        .archive(&format!("client{c}"), &item, m, false)
                        .unwrap();
                    assert_eq!(store.get(&a.id).unwrap(), *m, "read back at once");
                    assert!(store.has(&a.id));
                    acked.push((format!("client{c}"), item, a.id, m.clone()));
                }
                let replaced = store.archive("before", &format!("<{c}>"), &msgs[c + 100], true);
                assert!(replaced.as_ref().unwrap().new_reference || msgs[c] == msgs[c + 100]);
                acked.push((
                    "before".into(),
                    format!("<{c}>"),
                    replaced.unwrap().id,
                    msgs[c + 100].clone(),
                ));
                acked
            })
        })
        .collect();
    let copy = tmp.path().join("copy");
    copy_backup_set(&dir, &copy);
    let acked: Vec<_> = clients
        .into_iter()
        .flat_map(|c| c.join().unwrap())
        .collect();
    assert_eq!(backup_set(&copy), before, "the copy is the store as it was");
    assert_eq!(backup_set(&dir), before, "nothing a backup copies changed");

    // Writes other than archiving wait; so do processes.
    for refused in [
        store.delete("before", Some("<0>")).map(|_| ()),
        store.seal().map(|_| ()),
        store.defrag(0.0).map(|_| ()),
        store.mark_indexed(&[acked[0].2]).map(|_| ()),
    ] {
        assert!(
            matches!(refused, Err(Error::BackupMode { .. })),
            "{refused:?}"
        );
    }
    for (owner, item, id, content) in &acked {
        assert_eq!(store.get(id).unwrap(), *content);
        assert!(
            store
                .refs(id)
                .unwrap()
                .iter()
                .any(|r| &r.owner == owner && &r.item == item),
            "{owner}/{item}"
        );
    }
    let status = store.backup_mode(None).unwrap();
    assert_eq!(
        status.cached_items,
        acked.len() as u64,
        "one entry a reference"
    );

    // Off: the cache goes into the segments and the store verifies clean.
    store.backup_mode(Some(false)).unwrap();
    store
        .run_request(&vaultstore::jobs::schedule::ProcessRequest::ProcessMessageCache)
        .unwrap();
    assert_eq!(store.backup_mode(None).unwrap().cached_items, 0);
    assert!(!dir.join("message-cache/queue").exists());
    assert!(store.verify().is_clean());
    check_acked(&store, &acked);
    drop(store);
    let reopened = Store::open(&dir).unwrap();
    check_acked(&reopened, &acked);
    // The copy opens as the store before the backup.
    let restored = Store::open(&copy).unwrap();
    assert!(restored.verify().is_clean());
    assert_eq!(
        restored.refs(&acked[0].2).unwrap().len(),
        refs_before(&msgs, &acked[0].3)
    );
}

/// References to `content` the store had before backup mode began.
fn refs_before(msgs: &[Vec<u8>], content: &[u8]) -> usize {
    let before = msgs
        .iter()
        .take(60)
        .filter(|m| m.as_slice() == content)
        .count();
    let active = msgs
        .iter()
        .skip(60)
        .take(20)
        .filter(|m| m.as_slice() == content)
        .count();
    before + active
}

fn check_acked(store: &Store, acked: &[(String, String, SavesetId, Vec<u8>)]) {
    for (owner, item, id, content) in acked {
        assert_eq!(store.get(id).unwrap(), *content, "{owner}/{item}");
        let refs = store.refs(id).unwrap();
        assert!(
            refs.iter().any(|r| &r.owner == owner && &r.item == item),
            "{owner}/{item} in {refs:?}"
        );
    }
}

#[test]
fn backup_mode_survives_a_restart_and_ends_by_its_maximum_duration_with_a_history_entry() {
    let msgs = messages();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = archived_store(&dir, &msgs);
    let max = StateChange {
        backup_mode_max: Some(Duration::from_millis(1500)),
        ..StateChange::default()
    };
    store.set_state(&max).unwrap();
    let since = store.backup_mode(Some(true)).unwrap().since_ms.unwrap();
    let cached = store.archive("late", "<1>", &msgs[150], false).unwrap();
    let put = store.put(b"a put in backup mode").unwrap();
    // Settings are in the manifest, a file the backup copies: they wait.
    assert!(matches!(
        store.set_state(&max),
        Err(Error::BackupMode { .. })
    ));
    drop(store);

    let store = Store::open(&dir).unwrap();
    let status = store.backup_mode(None).unwrap();
    assert_eq!((status.on, status.since_ms), (true, Some(since)));
    assert_eq!(status.cached_items, 2);
    assert_eq!(store.get(&cached.id).unwrap(), msgs[150]);
    assert_eq!(store.get(&put.id).unwrap(), b"a put in backup mode");
    assert!(store.due_processes(0).is_empty(), "{:?}", store.schedule());
    assert!(store.schedule().iter().all(|s| {
        s.waits
            .as_deref()
            .is_some_and(|w| w.contains("backup mode"))
    }));

    std::thread::sleep(Duration::from_millis(1600));
    assert_eq!(store.due_processes(0), [ProcessType::MessageCache]);
    let ran = store.maintain();
    assert_eq!(ran[0].0, ProcessType::MessageCache);
    let outcome = ran[0].1.as_ref().unwrap();
    assert!(outcome.contains("maximum duration"), "{outcome}");
    let status = store.backup_mode(None).unwrap();
    assert!(!status.on && status.cached_items == 0);
    let entry = store
        .history_since(0)
        .into_iter()
        .find(|e| e.process == ProcessType::MessageCache.code() && e.status == Status::Finished)
        .unwrap();
    assert!(
        entry
            .detail
            .as_deref()
            .unwrap()
            .contains("ended after its maximum duration"),
        "{entry:?}"
    );
    assert_eq!(store.refs(&cached.id).unwrap()[0].owner, "late");
    assert!(store.verify().is_clean());
}

#[test]
fn a_torn_tail_of_the_queue_is_cut_off_and_kept_and_a_foreign_queue_is_refused() {
    let msgs = messages();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let store = archived_store(&dir, &msgs);
    store.backup_mode(Some(true)).unwrap();
    let ids: Vec<SavesetId> = (0..3)
        .map(|k| {
            store
                .archive("o", &format!("<{k}>"), &msgs[160 + k], false)
                .unwrap()
                .id
        })
        .collect();
    drop(store);
    let queue = dir.join("message-cache/queue");
    let good = std::fs::read(&queue).unwrap();
    // An entry that was being written when the power went.
    let mut torn = good.clone();
    torn.extend_from_slice(&good[36..36 + 30]);
    std::fs::write(&queue, &torn).unwrap();
    let store = Store::open(&dir).unwrap();
    for (k, id) in ids.iter().enumerate() {
        assert_eq!(store.get(id).unwrap(), msgs[160 + k]);
    }
    assert_eq!(std::fs::read(&queue).unwrap(), good, "the tail is cut off");
    let kept = dir.join(format!("quarantine/message-cache-at-{}.bin", good.len()));
    assert_eq!(std::fs::read(kept).unwrap(), &good[36..36 + 30]);
    drop(store);

    // The queue of another store may hold acknowledged items: refused.
    let other = tmp.path().join("other");
    Store::init(&other, &InitOptions::default()).unwrap();
    std::fs::create_dir_all(other.join("message-cache")).unwrap();
    std::fs::copy(&queue, other.join("message-cache/queue")).unwrap();
    let refused = Store::open(&other).err().unwrap();
    assert!(refused.to_string().contains("another store"), "{refused}");
    // A queue cut short while it was created holds no entry: removed.
    std::fs::write(other.join("message-cache/queue"), &good[..20]).unwrap();
    let reopened = Store::open(&other).unwrap();
    assert!(!other.join("message-cache/queue").exists());
    assert_eq!(reopened.backup_mode(None).unwrap().cached_items, 0);
}

#[test]
fn pending_explain_names_backup_mode_then_the_unprocessed_cache() {
    let msgs = messages();
    let tmp = tempfile::tempdir().unwrap();
    let store = archived_store(&tmp.path().join("s"), &msgs);
    store.backup_mode(Some(true)).unwrap();
    let ids: Vec<SavesetId> = (0..4)
        .map(|k| {
            store
                .archive("o", &format!("<{k}>"), &msgs[165 + k], false)
                .unwrap()
                .id
        })
        .collect();
    let reason = |store: &Store, name: &str| {
        store
            .pending_explained(10)
            .unwrap()
            .reasons
            .into_iter()
            .filter(|r| r.reason == name)
            .collect::<Vec<_>>()
    };
    let in_mode = reason(&store, "backup_mode");
    assert_eq!(
        in_mode.len(),
        2,
        "the cache and the active segment: {in_mode:?}"
    );
    assert_eq!(in_mode[0].savesets, 4);
    assert_eq!(
        in_mode[0].items,
        ids.iter().map(|i| i.to_string()).collect::<Vec<_>>()
    );
    assert_eq!(in_mode[1].segment, store.segments().last().map(|s| s.id));
    store.backup_mode(Some(false)).unwrap();
    let after = reason(&store, "message_cache");
    assert_eq!((after.len(), after[0].savesets), (1, 4));
    assert!(reason(&store, "backup_mode").is_empty());
    store
        .run_request(&vaultstore::jobs::schedule::ProcessRequest::ProcessMessageCache)
        .unwrap();
    assert!(reason(&store, "message_cache").is_empty());
}

fn kills() -> usize {
    std::env::var("VAULTSTORE_TORTURE_KILLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(12)
}

/// What the message cache must end up as: every reference it took, and the
/// contents it stored (each exactly once).
struct Expected {
    references: HashMap<(String, String), SavesetId>,
    contents: HashMap<SavesetId, Vec<u8>>,
    puts: Vec<SavesetId>,
}

/// A store in backup mode whose message cache holds about 25 MB: new
/// mail, mail the segments hold, puts, links and replaces.
fn cached_store(dir: &Path, rng: &mut common::Rng) -> Expected {
    let msgs = messages();
    let store = archived_store(dir, &msgs);
    let mut exp = Expected {
        references: HashMap::new(),
        contents: HashMap::new(),
        puts: Vec::new(),
    };
    for (n, m) in msgs.iter().take(60).enumerate() {
        exp.references
            .insert(("before".into(), format!("<{n}>")), SavesetId::of(m));
    }
    for (n, m) in msgs.iter().skip(60).take(20).enumerate() {
        exp.references
            .insert(("active".into(), format!("<{n}>")), SavesetId::of(m));
    }
    store.backup_mode(Some(true)).unwrap();
    for k in 0..3000u64 {
        let owner = format!("box{}", k % 37);
        let item = format!("<{k}>");
        let content = match rng.below(10) {
            0..=5 => common::message(rng.next(), 4000 + rng.below(12_000) as usize),
            6..=8 => msgs[rng.below(msgs.len() as u64) as usize].clone(),
            _ => {
                let p = common::message(rng.next(), 2000);
                exp.puts.push(store.put(&p).unwrap().id);
                exp.contents.insert(SavesetId::of(&p), p);
                continue;
            }
        };
        let a = store.archive(&owner, &item, &content, false).unwrap();
        exp.references.insert((owner.clone(), item.clone()), a.id);
        exp.contents.insert(a.id, content);
        if k % 50 == 0 {
            // The same item again with other content, replacing it.
            let other = common::message(rng.next(), 3000);
            let r = store.archive(&owner, &item, &other, true).unwrap();
            exp.references.insert((owner.clone(), item.clone()), r.id);
            exp.contents.insert(r.id, other);
        }
        if k % 7 == 0 {
            // A link the cache cannot promise (a pending replace may orphan
            // the content first) is answered as content not stored: the
            // client sends the bytes, as in the hash handshake.
            let link = match store.link("linked", &item, &a.id) {
                Err(Error::NotStored(_)) => {
                    store.archive("linked", &item, &exp.contents[&a.id], false)
                }
                other => other,
            };
            assert!(link.unwrap().new_reference);
            exp.references.insert(("linked".into(), item), a.id);
        }
    }
    for (n, m) in msgs.iter().enumerate().take(80) {
        exp.contents.insert(SavesetId::of(m), m.clone());
        let _ = n;
    }
    exp
}

/// Everything expected is there once: each reference, each content, no
/// content stored twice and no reference more or less.
fn check_expected(store: &Store, exp: &Expected, when: &str) {
    for ((owner, item), id) in &exp.references {
        assert!(
            store
                .refs(id)
                .unwrap()
                .iter()
                .any(|r| &r.owner == owner && &r.item == item),
            "{when}: {owner}/{item} lost"
        );
        assert_eq!(
            store.get(id).unwrap(),
            exp.contents[id],
            "{when}: {owner}/{item}"
        );
    }
    for id in &exp.puts {
        assert_eq!(store.get(id).unwrap(), exp.contents[id], "{when}: put {id}");
    }
    let stat = store.stat();
    let cached = store.backup_mode(None).unwrap().cached_items;
    if cached == 0 {
        assert_eq!(stat.references, exp.references.len() as u64, "{when}");
        let recorded: u64 = store.segments().iter().map(|s| s.savesets).sum();
        assert_eq!(recorded, stat.savesets, "{when}: a saveset stored twice");
    }
    assert!(store.verify().is_clean(), "{when}");
}

#[test]
fn sigkill_while_the_message_cache_is_processed_loses_nothing_and_stores_nothing_twice() {
    let mut rng = common::Rng(common::seed());
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let exp = cached_store(&dir, &mut rng);
    let start = Store::open(&dir)
        .unwrap()
        .backup_mode(None)
        .unwrap()
        .cached_items;
    let mut landed = 0;
    // Kills come later while they find nothing processed yet (the process
    // opens the store first), so that they land while it works.
    let (mut delay, mut before) = (10, start);
    for trial in 0..kills() {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
            .args(["backup", "mode", "off", "--quiet", "--store"])
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay + rng.below(20)));
        let running = child.try_wait().unwrap().is_none();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        let store = Store::open(&dir).unwrap_or_else(|e| panic!("trial {trial}: open: {e}"));
        let left = store.backup_mode(None).unwrap().cached_items;
        landed += usize::from(running && left > 0 && left < start);
        if left == before {
            delay += 10 + rng.below(30);
        }
        before = left;
        check_expected(&store, &exp, &format!("trial {trial}, {left} items left"));
        if left == 0 {
            break;
        }
    }
    // Whatever is left is processed by a run that is not killed.
    let status = Command::new(env!("CARGO_BIN_EXE_vaultstore"))
        .args(["backup", "mode", "off", "--quiet", "--store"])
        .arg(&dir)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let store = Store::open(&dir).unwrap();
    assert_eq!(store.backup_mode(None).unwrap().cached_items, 0);
    assert!(!dir.join("message-cache/queue").exists());
    check_expected(&store, &exp, "at the end");
    assert!(
        landed > 0,
        "no kill landed while the cache was being processed"
    );
    eprintln!(
        "{landed} kills landed while {start} cached items were processed: nothing lost, nothing twice"
    );
}

#[test]
fn content_a_cached_replace_orphans_is_stored_again_for_a_later_reference() {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::init(tmp.path().join("s"), &InitOptions::default()).unwrap();
    let (x, y, z) = (
        common::message(1, 5000),
        common::message(2, 5000),
        common::message(3, 5000),
    );
    let x_id = store.archive("o", "<1>", &x, false).unwrap().id;
    store.backup_mode(Some(true)).unwrap();
    // In the cache: <2> takes z, <1> is replaced away from x (its only
    // reference), then x is referenced again, and z once more.
    let z_id = store.archive("o", "<2>", &z, false).unwrap().id;
    store.archive("o", "<1>", &y, true).unwrap();
    // The segments hold x, but processing the replace may kill it first:
    // the cache cannot promise it, so the client is asked for the bytes.
    assert!(matches!(
        store.link("l", "<1>", &x_id),
        Err(Error::NotStored(id)) if id == x_id
    ));
    store.archive("l", "<1>", &x, false).unwrap();
    store.archive("o", "<3>", &z, false).unwrap();
    store.archive("o", "<2>", &x, true).unwrap();
    store.link("l", "<2>", &z_id).unwrap();
    // w comes with its reference, which is replaced away (w dies when that
    // is processed); a link accepted while the cache held w needs it later.
    let w = common::message(4, 5000);
    let w_id = store.archive("o", "<4>", &w, false).unwrap().id;
    store.archive("o", "<4>", &y, true).unwrap();
    store.link("l", "<4>", &w_id).unwrap();
    store.backup_mode(Some(false)).unwrap();
    store
        .run_request(&vaultstore::jobs::schedule::ProcessRequest::ProcessMessageCache)
        .unwrap();
    assert_eq!(store.get(&x_id).unwrap(), x);
    assert_eq!(store.get(&z_id).unwrap(), z);
    let owners = |id: &SavesetId| {
        let mut v: Vec<String> = store
            .refs(id)
            .unwrap()
            .into_iter()
            .map(|r| format!("{}/{}", r.owner, r.item))
            .collect();
        v.sort();
        v
    };
    assert_eq!(owners(&x_id), ["l/<1>", "o/<2>"]);
    assert_eq!(owners(&z_id), ["l/<2>", "o/<3>"]);
    assert_eq!(owners(&w_id), ["l/<4>"]);
    assert_eq!(store.get(&w_id).unwrap(), w);
    assert!(store.verify().is_clean());
    drop(store);
    let store = Store::open(tmp.path().join("s")).unwrap();
    assert_eq!(store.get(&x_id).unwrap(), x);
    assert_eq!(store.full_resynchronization().map(|_| ()).ok(), Some(()));
}

#[test]
fn the_service_takes_archives_in_backup_mode_refuses_other_writes_with_503_and_processes_after_off()
{
    use common::server::Server;
    use serde_json::{Value, json};
    let server = Server::start(1 << 20);
    let c = reqwest::blocking::Client::new();
    let url = |p: &str| format!("{}{p}", server.url);
    let put = |i: u64| {
        c.put(url(&format!("/owners/alice/items/{i}")))
            .bearer_auth(&server.rw)
            .body(common::message(i, 3_000))
            .send()
            .unwrap()
    };
    let mode = |on: bool, token: &str| {
        c.post(url("/backup/mode"))
            .bearer_auth(token)
            .json(&json!({ "on": on }))
            .send()
            .unwrap()
    };
    assert!(put(1).status().is_success());
    assert_eq!(mode(true, &server.ro).status(), 403, "a read-only token");
    let r = mode(true, &server.rw);
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().unwrap()["on"], true);
    let before = backup_set(server.store.dir());

    let mut ids = Vec::new();
    for i in 2..40 {
        let r = put(i);
        assert!(r.status().is_success(), "{i}: {}", r.status());
        let id = r.json::<Value>().unwrap()["id"]
            .as_str()
            .unwrap()
            .to_string();
        let got = c
            .get(url(&format!("/savesets/{id}")))
            .bearer_auth(&server.ro)
            .send()
            .unwrap();
        assert_eq!(got.bytes().unwrap().to_vec(), common::message(i, 3_000));
        ids.push(id);
    }
    let r = c
        .delete(url("/owners/alice/items/1"))
        .bearer_auth(&server.rw)
        .send()
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["retry-after"], "60");
    assert_eq!(r.json::<Value>().unwrap()["error"], "backup_mode");
    let status: Value = c
        .get(url("/backup/mode"))
        .bearer_auth(&server.ro)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["cached_items"], 38, "{status}");
    assert_eq!(backup_set(server.store.dir()), before);

    let off: Value = mode(false, &server.rw).json().unwrap();
    assert_eq!(off["on"], false);
    assert!(off["run"].as_u64().is_some(), "{off}");
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.store.backup_mode(None).unwrap().cached_items > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the cache was not processed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.store.verify().is_clean());
    for id in &ids {
        let id: SavesetId = id.parse().unwrap();
        assert_eq!(server.store.refs(&id).unwrap().len(), 1);
    }
    let r = c
        .delete(url("/owners/alice/items/1"))
        .bearer_auth(&server.rw)
        .send()
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
}
