//! The direction of dependencies, checked: every module of `src/` has a
//! layer (issue 16's seven, bottom to top), and a module may name only
//! modules of its own layer or below. The knot the engine grew into is not
//! untied yet, so today's upward imports are listed below as debt: a new
//! upward import fails this test, and so does a listed one that is gone
//! (the list only shrinks).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of each module, bottom (1) to top (7).
const LAYERS: &[(&str, u8)] = &[
    // 1: ids, errors, units, bytes on disk, the file seam.
    ("id", 1),
    ("error", 1),
    ("units", 1),
    ("heap", 1),
    ("format", 1),
    ("io", 1),
    // 2: one segment file, the index, the MIME split, the logs of information.
    ("segment", 2),
    ("index", 2),
    ("parts", 2),
    ("jobs::history", 2),
    ("metrics", 2),
    // 3: the log (the segment set, the writer, recovery): still inside store.rs.
    ("log", 3),
    // 4: state kept over the log.
    ("catalog", 4),
    ("part_table", 4),
    ("backup", 4),
    ("partition", 4),
    // 5: processes over the layers below.
    ("compaction", 5),
    ("jobs", 5),
    ("import", 5),
    ("bench", 5),
    ("sizing", 5),
    // 6: the facade.
    ("store", 6),
    // 7: presentation.
    ("present", 7),
    ("cli", 7),
    ("service", 7),
];

/// Upward imports that exist today (module, what it names): the debt the
/// layers refactor pays off. Only ever remove lines.
const DEBT: &[(&str, &str)] = &[
    ("backup", "jobs"),
    ("backup", "store"),
    ("bench", "store"),
    ("catalog", "store"),
    ("compaction", "store"),
    ("import", "store"),
    ("jobs", "store"),
    ("part_table", "store"),
    ("partition", "store"),
    ("sizing", "store"),
];

/// The module a file under `src/` defines: `catalog`, `jobs::history`, ...
fn module_of(rel: &str) -> String {
    let rel = rel.trim_end_matches(".rs");
    let rel = rel.trim_end_matches("/mod");
    rel.replace('/', "::")
}

/// The layer of a module path (its longest listed prefix).
fn layer_of(module: &str) -> Option<(&'static str, u8)> {
    LAYERS
        .iter()
        .filter(|(name, _)| module == *name || module.starts_with(&format!("{name}::")))
        .max_by_key(|(name, _)| name.len())
        .copied()
}

/// The modules a source text names through `crate::` paths.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        // `$crate::` in a macro names this crate too.
        let rest = &text[i + "crate::".len()..];
        let path: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect();
        let mut parts = path.split("::").filter(|p| !p.is_empty());
        if let Some(first) = parts.next() {
            // Two levels, so `jobs::history` is told from `jobs`.
            match parts.next() {
                Some(second) if second.chars().all(|c| c.is_ascii_lowercase() || c == '_') => {
                    out.insert(format!("{first}::{second}"));
                }
                _ => {
                    out.insert(first.to_string());
                }
            }
        }
    }
    out
}

/// Every (module, named module's layer owner) that points upward.
fn upward(files: &BTreeMap<String, String>) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (rel, text) in files {
        let module = module_of(rel);
        let Some((from, from_layer)) = layer_of(&module) else {
            continue;
        };
        // Code under #[cfg(test)] may reach anywhere: tests are not layers.
        let code = text.split("#[cfg(test)]").next().unwrap_or(text);
        for named in named_modules(code) {
            if let Some((to, to_layer)) = layer_of(&named)
                && to_layer > from_layer
            {
                out.insert((from.to_string(), to.to_string()));
            }
        }
    }
    out
}

fn read_src(dir: &Path, root: &Path, out: &mut BTreeMap<String, String>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            read_src(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel != "lib.rs" && rel != "main.rs" {
                out.insert(rel, std::fs::read_to_string(&path).unwrap());
            }
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above_its_own_beyond_the_listed_debt() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_src(&root, &root, &mut files);
    for rel in files.keys() {
        let module = module_of(rel);
        assert!(
            layer_of(&module).is_some(),
            "src/{rel} ({module}) has no layer: give it one in LAYERS"
        );
    }
    let found = upward(&files);
    let debt: BTreeSet<(String, String)> = DEBT
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let new: Vec<_> = found.difference(&debt).collect();
    assert!(
        new.is_empty(),
        "imports from a layer above (the module may not name these; pass what it needs down instead): {new:?}"
    );
    let paid: Vec<_> = debt.difference(&found).collect();
    assert!(
        paid.is_empty(),
        "debt paid off: remove these from DEBT so they cannot come back: {paid:?}"
    );
}

#[test]
fn the_check_catches_a_forbidden_use() {
    let mut files = BTreeMap::new();
    files.insert(
        "index.rs".to_string(),
        "use crate::id::SavesetId;\nuse crate::catalog::Catalog;\n".to_string(),
    );
    files.insert(
        "format/segment.rs".to_string(),
        "fn f() { crate::service::view::escape(\"x\"); }\n#[cfg(test)]\nmod t { use crate::store::Store; }\n".to_string(),
    );
    files.insert(
        "jobs/history.rs".to_string(),
        "use crate::jobs::ProcessType;\nuse crate::io::Vfs;\n".to_string(),
    );
    let found = upward(&files);
    let pairs: Vec<(&str, &str)> = found
        .iter()
        .map(|(a, b)| (a.as_str(), b.as_str()))
        .collect();
    assert_eq!(
        pairs,
        [
            ("format", "service"),
            ("index", "catalog"),
            ("jobs::history", "jobs"),
        ]
    );
}
