//! The direction of dependencies, checked: every module of `src/` has a
//! layer (issue 16's seven, bottom to top), and a module may name only
//! modules of its own layer or below; the CLI and the service do not name
//! each other. And the sizes that keep the tree readable: no file in `src/`
//! over 1,000 lines, the façade under 600, each CLI command group under 500.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Layer of each module, bottom (1) to top (7).
const LAYERS: &[(&str, u8)] = &[
    // 1: ids, errors, units, bytes on disk, the file seam.
    ("id", 1),
    ("error", 1),
    ("units", 1),
    ("rng", 1),
    ("heap", 1),
    ("format", 1),
    ("io", 1),
    ("crypto", 1),
    // 2: one segment file, the index, the MIME split, the logs of information.
    ("segment", 2),
    ("index", 2),
    ("parts", 2),
    ("jobs::history", 2),
    ("metrics", 2),
    ("message_cache", 2),
    // 3: the log: the segment set, its volumes, the writer, recovery.
    ("log", 3),
    // 4: state kept over the log, and the engine composing it.
    ("catalog", 4),
    ("part_table", 4),
    ("lifecycle", 4),
    ("partition", 4),
    ("engine", 4),
    // 5: processes over the engine, and the runner that records them.
    ("compaction", 5),
    ("backup", 5),
    ("backup_mode", 5),
    ("jobs", 5),
    // 6: the facade, and the tools that drive it as a library user does.
    ("store", 6),
    ("import", 6),
    ("bench", 6),
    ("sizing", 6),
    ("settings", 6),
    // 7: presentation.
    ("present", 7),
    ("cli", 7),
    ("service", 7),
];

/// Modules of one layer that must not name each other either: the CLI and
/// the service share what both show through `present`.
const APART: &[(&str, &str)] = &[("cli", "service"), ("service", "cli")];

/// The one file allowed across APART: the CLI's command group that starts
/// the service (`serve`, `token`).
const LAUNCHER: &str = "cli/service.rs";

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
                && (to_layer > from_layer || (APART.contains(&(from, to)) && rel != LAUNCHER))
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
            out.insert(rel, std::fs::read_to_string(&path).unwrap());
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_src(&root, &root, &mut files);
    // The crate root and the binary's entry compose; they are not layers.
    for rel in files.keys().filter(|r| *r != "lib.rs" && *r != "main.rs") {
        let module = module_of(rel);
        assert!(
            layer_of(&module).is_some(),
            "src/{rel} ({module}) has no layer: give it one in LAYERS"
        );
    }
    let found = upward(&files);
    assert!(
        found.is_empty(),
        "imports from a layer above (the module may not name these; pass what it needs down instead): {found:?}"
    );
}

/// Files over their size limit: (file, lines, limit).
fn oversized(files: &BTreeMap<String, String>) -> Vec<(String, usize, usize)> {
    files
        .iter()
        .filter_map(|(rel, text)| {
            let limit = if rel == "store.rs" {
                600
            } else if rel.starts_with("cli/") {
                500
            } else {
                1000
            };
            let lines = text.lines().count();
            (lines > limit).then(|| (rel.clone(), lines, limit))
        })
        .collect()
}

#[test]
fn no_file_outgrows_its_limit() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = BTreeMap::new();
    read_src(&root, &root, &mut files);
    let over = oversized(&files);
    assert!(
        over.is_empty(),
        "split these (file, lines, limit): {over:?}"
    );
    // The limits bite: a façade of 601 lines is caught.
    let mut big = BTreeMap::new();
    big.insert("store.rs".to_string(), "x\n".repeat(601));
    big.insert("cli/store.rs".to_string(), "x\n".repeat(500));
    assert_eq!(oversized(&big), [("store.rs".to_string(), 601, 600)]);
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
        "service/page.rs".to_string(),
        "use crate::cli::format_rows;\nuse crate::present::history_rows;\n".to_string(),
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
            ("service", "cli"),
        ]
    );
}
