//! Part-level single instance on arbitrary bytes: splitting never panics,
//! and whatever it splits rebuilds to exactly the input
//! (rebuild(split(x)) == x); a recipe that decodes re-encodes the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vaultstore::format::composite::Recipe;
use vaultstore::parts::{rebuild, split};

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = Recipe::decode(data) {
        assert_eq!(r.encode(), data);
    }
    // Inputs are small; pad them past the size below which nothing is split,
    // keeping the fuzzer's bytes at the front where headers are.
    let mut msg = data.to_vec();
    if msg.len() < vaultstore::parts::MIN_MESSAGE_BYTES {
        msg.resize(vaultstore::parts::MIN_MESSAGE_BYTES, b'\n');
    }
    if let Some(s) = split(&msg) {
        let refs: Vec<&[u8]> = s.parts.iter().map(Vec::as_slice).collect();
        assert_eq!(rebuild(&s.recipe, &refs).as_deref(), Some(msg.as_slice()));
        let again = Recipe::decode(&s.recipe.encode()).unwrap();
        assert_eq!(again, s.recipe);
    }
});
