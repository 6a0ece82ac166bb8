//! Property test: random archive / link / delete / restore / purge / hold /
//! reopen sequences, with checkpoints of the sync caches between them,
//! against a plain in-memory model of the catalog.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use proptest::prelude::*;
use vaultstore::{Error, InitOptions, SavesetId, Store};

const OWNERS: &[&str] = &["alice", "bob", "journal"];
const ITEMS: &[&str] = &["<1@x>", "<2@x>", "<3@x>", "<4@x>"];

fn content(n: usize) -> Vec<u8> {
    format!(
        "Subject: message {n}\r\n\r\n{}\r\n",
        "body text ".repeat(20 + n * 13)
    )
    .into_bytes()
}

#[derive(Debug, Clone)]
enum Op {
    Archive(usize, usize, usize, bool),
    Link(usize, usize, usize),
    Delete(usize, Option<usize>),
    Restore(usize, Option<usize>),
    PurgeAll,
    PurgeNone,
    PurgeScoped(usize, Option<usize>),
    Hold(usize, Option<usize>, bool),
    Reopen,
    /// A checkpoint generation of the sync caches; the next reopen starts from it.
    Checkpoint,
}

fn op() -> impl Strategy<Value = Op> {
    let o = 0..OWNERS.len();
    let i = 0..ITEMS.len();
    let c = 0..6usize;
    prop_oneof![
        8 => (o.clone(), i.clone(), c.clone(), any::<bool>()).prop_map(|(o, i, c, r)| Op::Archive(o, i, c, r)),
        3 => (o.clone(), i.clone(), c).prop_map(|(o, i, c)| Op::Link(o, i, c)),
        4 => (o.clone(), proptest::option::of(i.clone())).prop_map(|(o, i)| Op::Delete(o, i)),
        2 => (o.clone(), proptest::option::of(i.clone())).prop_map(|(o, i)| Op::Restore(o, i)),
        2 => Just(Op::PurgeAll),
        1 => Just(Op::PurgeNone),
        2 => (o.clone(), proptest::option::of(i.clone())).prop_map(|(o, i)| Op::PurgeScoped(o, i)),
        2 => (o, proptest::option::of(i), any::<bool>()).prop_map(|(o, i, on)| Op::Hold(o, i, on)),
        1 => Just(Op::Reopen),
        1 => Just(Op::Checkpoint),
    ]
}

#[derive(Debug, Clone)]
struct Ref {
    id: SavesetId,
    trashed: bool,
    hold: bool,
}

/// The model: references, owner holds, and which content is stored.
#[derive(Default)]
struct Model {
    refs: BTreeMap<(usize, usize), Ref>,
    owner_hold: BTreeSet<usize>,
    stored: BTreeSet<SavesetId>,
}

impl Model {
    fn owner_exists(&self, o: usize) -> bool {
        self.owner_hold.contains(&o) || self.refs.keys().any(|k| k.0 == o)
    }
    fn held(&self, o: usize, i: Option<usize>) -> bool {
        self.owner_hold.contains(&o)
            || i.is_some_and(|i| self.refs.get(&(o, i)).is_some_and(|r| r.hold))
    }
    fn count(&self, id: &SavesetId) -> usize {
        self.refs.values().filter(|r| r.id == *id).count()
    }
    /// Drop refs, then savesets left with none die.
    fn drop_refs(&mut self, keys: Vec<(usize, usize)>) {
        let ids: Vec<SavesetId> = keys
            .iter()
            .filter_map(|k| self.refs.remove(k))
            .map(|r| r.id)
            .collect();
        for id in ids {
            if self.count(&id) == 0 {
                self.stored.remove(&id);
            }
        }
    }
    fn purge(&mut self, scope: Option<(usize, Option<usize>)>) {
        let doomed: Vec<(usize, usize)> = self
            .refs
            .iter()
            .filter(|(k, r)| {
                r.trashed
                    && scope.is_none_or(|(o, i)| k.0 == o && i.is_none_or(|i| k.1 == i))
                    && !self.held(k.0, Some(k.1))
            })
            .map(|(k, _)| *k)
            .collect();
        self.drop_refs(doomed);
    }
}

/// What kind of result: Ok, or the error's variant name.
fn kind<T>(r: &Result<T, Error>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(Error::ItemExists { .. }) => "exists",
        Err(Error::InTrash { .. }) => "in-trash",
        Err(Error::ItemNotFound { .. }) => "item-not-found",
        Err(Error::OwnerNotFound { .. }) => "owner-not-found",
        Err(Error::HoldOnUnknownOwner { .. }) => "hold-on-unknown-owner",
        Err(Error::Held { .. }) => "held",
        Err(Error::NotStored(_)) => "not-stored",
        Err(Error::NothingToDo(_)) => "nothing",
        Err(e) => panic!("unexpected error {e}"),
    }
}

fn apply(store: &Store, m: &mut Model, op: &Op) -> (&'static str, &'static str) {
    let contents: Vec<Vec<u8>> = (0..6).map(content).collect();
    match *op {
        Op::Archive(o, i, c, replace) => {
            let id = SavesetId::of(&contents[c]);
            let expect = match m.refs.get(&(o, i)) {
                Some(r) if r.trashed => "in-trash",
                Some(r) if r.id == id => "ok",
                Some(_) if !replace => "exists",
                Some(_) if m.held(o, Some(i)) => "held",
                _ => "ok",
            };
            let got = kind(&store.archive(OWNERS[o], ITEMS[i], &contents[c], replace));
            if expect == "ok" {
                m.drop_refs(
                    vec![(o, i)]
                        .into_iter()
                        .filter(|k| m.refs.get(k).is_some_and(|r| r.id != id))
                        .collect(),
                );
                m.stored.insert(id);
                m.refs.entry((o, i)).or_insert(Ref {
                    id,
                    trashed: false,
                    hold: false,
                });
            }
            (expect, got)
        }
        Op::Link(o, i, c) => {
            let id = SavesetId::of(&contents[c]);
            let expect = match m.refs.get(&(o, i)) {
                Some(r) if r.trashed => "in-trash",
                Some(r) if r.id == id => "ok",
                Some(_) => "exists",
                None if !m.stored.contains(&id) => "not-stored",
                None => "ok",
            };
            let got = kind(&store.link(OWNERS[o], ITEMS[i], &id));
            if expect == "ok" {
                m.refs.entry((o, i)).or_insert(Ref {
                    id,
                    trashed: false,
                    hold: false,
                });
            }
            (expect, got)
        }
        Op::Delete(o, Some(i)) => {
            let expect = match m.refs.get(&(o, i)) {
                None => "item-not-found",
                Some(r) if r.trashed => "in-trash",
                Some(_) => "ok",
            };
            let got = kind(&store.delete(OWNERS[o], Some(ITEMS[i])));
            if expect == "ok" {
                m.refs.get_mut(&(o, i)).unwrap().trashed = true;
            }
            (expect, got)
        }
        Op::Delete(o, None) => {
            let live = m.refs.iter().any(|(k, r)| k.0 == o && !r.trashed);
            let expect = if !m.owner_exists(o) {
                "owner-not-found"
            } else if !live {
                "nothing"
            } else {
                "ok"
            };
            let got = kind(&store.delete(OWNERS[o], None));
            if expect == "ok" {
                m.refs
                    .iter_mut()
                    .filter(|(k, _)| k.0 == o)
                    .for_each(|(_, r)| r.trashed = true);
            }
            (expect, got)
        }
        Op::Restore(o, item) => {
            let expect = if !m.owner_exists(o) {
                "owner-not-found"
            } else {
                match item {
                    Some(i) => match m.refs.get(&(o, i)) {
                        None => "item-not-found",
                        Some(r) if !r.trashed => "nothing",
                        Some(_) => "ok",
                    },
                    None if !m.refs.iter().any(|(k, r)| k.0 == o && r.trashed) => "nothing",
                    None => "ok",
                }
            };
            let got = kind(&store.restore(OWNERS[o], item.map(|i| ITEMS[i])));
            if expect == "ok" {
                m.refs
                    .iter_mut()
                    .filter(|(k, _)| k.0 == o && item.is_none_or(|i| k.1 == i))
                    .for_each(|(_, r)| r.trashed = false);
            }
            (expect, got)
        }
        Op::PurgeAll => {
            let got = kind(&store.purge_trash(Duration::ZERO, None, None));
            m.purge(None);
            ("ok", got)
        }
        Op::PurgeNone => {
            // Nothing has been in trash for a day.
            let got = kind(&store.purge_trash(Duration::from_secs(86_400), None, None));
            ("ok", got)
        }
        Op::PurgeScoped(o, item) => {
            let expect = if !m.owner_exists(o) {
                "owner-not-found"
            } else {
                match item.map(|i| m.refs.get(&(o, i))) {
                    Some(None) => "item-not-found",
                    Some(Some(r)) if !r.trashed => "nothing",
                    _ if m.held(o, item) => "held",
                    _ => "ok",
                }
            };
            let got =
                kind(&store.purge_trash(Duration::ZERO, Some(OWNERS[o]), item.map(|i| ITEMS[i])));
            if expect == "ok" {
                m.purge(Some((o, item)));
            }
            (expect, got)
        }
        Op::Hold(o, item, on) => {
            // An owner-level hold names an owner the catalog knows (with
            // references or a hold), or it is refused.
            let known = m.refs.keys().any(|(oo, _)| *oo == o) || m.owner_hold.contains(&o);
            let expect = match item {
                Some(i) if !m.refs.contains_key(&(o, i)) => "item-not-found",
                None if !known && on => "hold-on-unknown-owner",
                None if !known => "owner-not-found",
                _ => "ok",
            };
            let got = kind(&store.hold(OWNERS[o], item.map(|i| ITEMS[i]), on));
            if expect == "ok" {
                match item {
                    Some(i) => m.refs.get_mut(&(o, i)).unwrap().hold = on,
                    None if on => {
                        m.owner_hold.insert(o);
                    }
                    None => {
                        m.owner_hold.remove(&o);
                    }
                }
            }
            (expect, got)
        }
        Op::Reopen => ("ok", "ok"),
        Op::Checkpoint => {
            let r = store.run_request(&vaultstore::jobs::schedule::ProcessRequest::Checkpoint);
            ("ok", if r.is_ok() { "ok" } else { "failed" })
        }
    }
}

fn compare(store: &Store, m: &Model) -> Result<(), TestCaseError> {
    for c in 0..6 {
        let id = SavesetId::of(&content(c));
        prop_assert_eq!(store.has(&id), m.stored.contains(&id), "has content {}", c);
        prop_assert_eq!(
            store.ref_count(&id).unwrap(),
            m.count(&id),
            "refs of content {}",
            c
        );
        if m.stored.contains(&id) {
            prop_assert_eq!(store.get(&id).unwrap(), content(c));
        }
    }
    let stat = store.stat();
    let live = m.refs.values().filter(|r| !r.trashed).count() as u64;
    prop_assert_eq!(stat.references, live);
    prop_assert_eq!(stat.trashed_references, m.refs.len() as u64 - live);
    prop_assert_eq!(
        store.trash().unwrap().len() as u64,
        m.refs.len() as u64 - live
    );
    let owners: HashMap<String, (u64, u64, bool)> = store
        .owners()
        .unwrap()
        .into_iter()
        .map(|o| (o.owner, (o.items, o.trashed, o.hold)))
        .collect();
    for (o, name) in OWNERS.iter().enumerate() {
        if m.owner_exists(o) {
            let live = m
                .refs
                .iter()
                .filter(|(k, r)| k.0 == o && !r.trashed)
                .count() as u64;
            let trashed = m.refs.iter().filter(|(k, r)| k.0 == o && r.trashed).count() as u64;
            prop_assert_eq!(
                owners.get(*name),
                Some(&(live, trashed, m.owner_hold.contains(&o)))
            );
        } else {
            prop_assert!(!owners.contains_key(*name));
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn catalog_agrees_with_a_model(ops in proptest::collection::vec(op(), 1..50)) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let opts = InitOptions { segment_bytes: 8192, ..InitOptions::default() };
        let mut store = Store::init(&path, &opts).unwrap();
        let mut model = Model::default();
        for (step, op) in ops.iter().enumerate() {
            if let Op::Reopen = op {
                drop(store);
                store = Store::open(&path).unwrap();
                prop_assert!(store.recovery_report().is_empty(), "{:?}", store.recovery_report());
            }
            let (expect, got) = apply(&store, &mut model, op);
            prop_assert_eq!(expect, got, "step {}: {:?}", step, op);
            compare(&store, &model)?;
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        compare(&store, &model)?;
        prop_assert!(store.verify().is_clean());
    }
}
