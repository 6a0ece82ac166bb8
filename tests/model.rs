//! Model-based test: random sequences of store operations agree with a
//! plain in-memory map, across seals, rollovers and reopens.

use std::collections::HashMap;

use proptest::prelude::*;
use vaultstore::{InitOptions, SavesetId, Store};

#[derive(Debug, Clone)]
enum Op {
    Put(usize),
    PutRandom(Vec<u8>),
    Get(usize),
    Has(usize),
    Seal,
    Reopen,
}

fn pool() -> Vec<Vec<u8>> {
    (0..24u64)
        .map(|n| {
            let len = [0usize, 1, 63, 64, 500, 3000, 9000][n as usize % 7];
            let mut v = format!("Subject: {n}\r\n\r\n").into_bytes();
            while v.len() < len {
                v.extend_from_slice(format!("line {} of {n}\r\n", v.len()).as_bytes());
            }
            v.truncate(len);
            v
        })
        .collect()
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..24usize).prop_map(Op::Put),
        2 => proptest::collection::vec(any::<u8>(), 0..2000).prop_map(Op::PutRandom),
        3 => (0..24usize).prop_map(Op::Get),
        2 => (0..24usize).prop_map(Op::Has),
        1 => Just(Op::Seal),
        1 => Just(Op::Reopen),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn store_agrees_with_a_map(ops in proptest::collection::vec(op(), 1..60)) {
        let pool = pool();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let opts = InitOptions { segment_bytes: 4096, ..InitOptions::default() };
        let mut store = Store::init(&path, &opts).unwrap();
        let mut model: HashMap<SavesetId, Vec<u8>> = HashMap::new();
        for op in ops {
            match op {
                Op::Put(i) => {
                    let put = store.put(&pool[i]).unwrap();
                    prop_assert_eq!(put.new, !model.contains_key(&put.id));
                    model.insert(put.id, pool[i].clone());
                }
                Op::PutRandom(bytes) => {
                    let put = store.put(&bytes).unwrap();
                    prop_assert_eq!(put.new, !model.contains_key(&put.id));
                    model.insert(put.id, bytes);
                }
                Op::Get(i) => {
                    let id = SavesetId::of(&pool[i]);
                    match model.get(&id) {
                        Some(c) => prop_assert_eq!(&store.get(&id).unwrap(), c),
                        None => prop_assert!(store.get(&id).is_err()),
                    }
                }
                Op::Has(i) => {
                    let id = SavesetId::of(&pool[i]);
                    prop_assert_eq!(store.has(&id), model.contains_key(&id));
                }
                Op::Seal => { store.seal().unwrap(); }
                Op::Reopen => {
                    drop(store);
                    store = Store::open(&path).unwrap();
                    prop_assert!(store.recovery_report().is_empty());
                }
            }
            prop_assert_eq!(store.stat().savesets, model.len() as u64);
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        for (id, c) in &model {
            prop_assert_eq!(&store.get(id).unwrap(), c);
        }
        let report = store.verify();
        prop_assert!(report.is_clean(), "{:?}", report.problems);
        prop_assert_eq!(report.records, model.len() as u64);
    }
}
