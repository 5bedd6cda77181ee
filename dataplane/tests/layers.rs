//! The dataplane's module rules, checked on its source (issue 22):
//!
//! - **Imports only go down.** Every top-level module has a layer in
//!   [`LAYERS`]; code may import only modules of a lower layer (and its own
//!   module). The packet types and memory are at the bottom, the pipeline
//!   that composes the stages near the top.
//! - **No import cycles between sibling modules** (`services/index.rs` and
//!   `services/table.rs` may not import each other both ways). A parent and
//!   its children may use each other: that is how Rust modules share items.
//! - **No file over 800 lines**, and no function over 60 lines on the hot
//!   path (the modules in [`HOT_PATH`]).
//! - **Headers are read through `wire/` views** in the stages and tables
//!   ([`WIRE_VIEWS_ONLY`]): no big-endian field is read from bytes by hand
//!   there (`from_be_bytes`). The formats that are not packet headers —
//!   vnet headers, netlink, BPF, pcap files, the state file — are read in
//!   `io/`, `mirror/` and `mem/`.
//!
//! The control plane's modules are checked for cycles the same way
//! ([`control_has_no_import_cycles`]).
//!
//! Tests are exempt from the import rules (test files and `#[cfg(test)]`
//! modules build whole pipelines to test a stage), not from the line limit.
//! Run with `--nocapture` to see the import graph:
//!
//! ```sh
//! cargo test -p podswitch-dataplane --test layers -- --nocapture
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level modules, bottom layer first. A module may import only modules
/// of an earlier row; modules of one row do not import each other.
const LAYERS: &[&[&str]] = &[
    // Formats, packet buffers and verdicts, memory.
    &["wire", "mem"],
    &["packet"],
    // Where frames enter and leave.
    &["io"],
    // Tables and codecs the stages read: connection tracking, services,
    // routes, the VXLAN codec and tunnel table, mirror sessions.
    &["conntrack", "services", "routes", "mirror"],
    &["overlay"],
    // The node's configuration and the immutable snapshot built from it.
    &["config"],
    // Stages that read the snapshot.
    &["nat"],
    // The pipeline: the L2/L3 stages and the order of all of them.
    &["pipeline"],
    // What runs pipelines: worker threads, offline replay.
    &["worker", "replay"],
];

/// Longest file allowed, in lines.
const MAX_FILE_LINES: usize = 800;

/// Modules whose code runs per packet (a prefix of the file's path under
/// `src/`): their functions stay short enough to read at a glance.
const HOT_PATH: &[&str] = &[
    "packet/",
    "pipeline/",
    "nat/",
    "overlay/",
    "conntrack/",
    "services/",
    "mirror/",
    "worker.rs",
    "io/afpacket",
    "io/tap",
    "io/gso",
    "io/vnet.rs",
    "io/fragment",
    "io/egress_mtu",
    "io/poll.rs",
    "io/port.rs",
];

/// Modules that read packet headers only through `wire/` views.
const WIRE_VIEWS_ONLY: &[&str] = &[
    "pipeline/",
    "nat/",
    "overlay/",
    "conntrack/",
    "services/",
    "routes.rs",
    "worker",
    "config/",
];

/// Longest function allowed on the hot path, in lines.
const MAX_HOT_FUNCTION_LINES: usize = 60;

#[test]
fn module_rules_hold() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let files = source_files(&root);
    let layer_of = |top: &str| LAYERS.iter().position(|row| row.contains(&top));

    let mut failures = Vec::new();
    let mut top_edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        if file.lines > MAX_FILE_LINES {
            failures.push(format!(
                "{}: {} lines (limit {MAX_FILE_LINES})",
                file.rel, file.lines
            ));
        }
        if file.module.is_empty() || file.is_test {
            continue;
        }
        if WIRE_VIEWS_ONLY.iter().any(|p| file.rel.starts_with(p))
            && file.code.contains("from_be_bytes")
        {
            failures.push(format!(
                "{}: reads a header field by hand (from_be_bytes): use a wire/ view",
                file.rel
            ));
        }
        if HOT_PATH.iter().any(|p| file.rel.starts_with(p)) {
            for (name, lines) in long_functions(&file.code, MAX_HOT_FUNCTION_LINES) {
                failures.push(format!(
                    "{}: fn {name} has {lines} lines (hot path limit {MAX_HOT_FUNCTION_LINES})",
                    file.rel
                ));
            }
        }
    }
    let edges = import_edges(&files);
    for ((from, to), users) in &edges {
        if from[0] != to[0] {
            top_edges
                .entry((from[0].clone(), to[0].clone()))
                .or_default()
                .extend(users.iter().cloned());
        }
    }

    // Layers.
    for file in &files {
        if !file.module.is_empty() && layer_of(&file.module[0]).is_none() {
            failures.push(format!(
                "{}: module `{}` has no layer in LAYERS",
                file.rel, file.module[0]
            ));
        }
    }
    println!("imports between top-level modules (layer: module -> module [files]):");
    for ((from, to), users) in &top_edges {
        let (lf, lt) = (layer_of(from), layer_of(to));
        let ok = matches!((lf, lt), (Some(a), Some(b)) if a > b);
        println!(
            "  {}{}: {from} -> {to} ({}) [{}]",
            if ok { "" } else { "UPWARD " },
            lf.map_or("?".into(), |l| l.to_string()),
            lt.map_or("?".into(), |l| l.to_string()),
            users.iter().cloned().collect::<Vec<_>>().join(", ")
        );
        if !ok {
            failures.push(format!(
                "{from} (layer {lf:?}) imports {to} (layer {lt:?}) in {}",
                users.iter().cloned().collect::<Vec<_>>().join(", ")
            ));
        }
    }

    failures.extend(import_cycles(edges.keys()));

    println!(
        "{} source files, {} module rules broken",
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "module rules broken:\n  {}",
        failures.join("\n  ")
    );
}

/// Every import between modules of `files` (module → the module it names),
/// with the files that make it; tests and the crate root left out.
fn import_edges(files: &[SourceFile]) -> BTreeMap<(Vec<String>, Vec<String>), BTreeSet<String>> {
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| f.module.clone()).collect();
    let mut edges: BTreeMap<_, BTreeSet<String>> = BTreeMap::new();
    for file in files.iter().filter(|f| !f.module.is_empty() && !f.is_test) {
        for path in referenced_paths(&file.code) {
            if let Some(target) = resolve(&file.module, &path, &modules) {
                edges
                    .entry((file.module.clone(), target))
                    .or_default()
                    .insert(file.rel.clone());
            }
        }
    }
    edges
}

/// The import cycles among `edges` (module → module it imports), found
/// between siblings: every edge is projected onto the children of the
/// deepest module that contains both ends.
fn import_cycles<'a>(edges: impl Iterator<Item = &'a (Vec<String>, Vec<String>)>) -> Vec<String> {
    let mut failures = Vec::new();
    let mut sibling_edges: BTreeMap<Vec<String>, BTreeSet<(String, String)>> = BTreeMap::new();
    for (from, to) in edges {
        let common = from.iter().zip(to).take_while(|(a, b)| a == b).count();
        if common == from.len() || common == to.len() {
            continue; // a module and its ancestor or descendant
        }
        sibling_edges
            .entry(from[..common].to_vec())
            .or_default()
            .insert((from[common].clone(), to[common].clone()));
    }
    for (parent, pairs) in &sibling_edges {
        for cycle in cycles(pairs) {
            let at = if parent.is_empty() {
                "crate".to_string()
            } else {
                parent.join("::")
            };
            failures.push(format!("import cycle in `{at}`: {}", cycle.join(" -> ")));
        }
    }

    failures
}

/// The control plane (`control/src`) has no import cycle either: its
/// layers (HTTP at the edge, the changes, the state and its checks, the
/// store) are not numbered here, but no two modules import each other.
#[test]
fn control_has_no_import_cycles() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../control/src");
    let files = source_files(&root);
    let failures = import_cycles(import_edges(&files).keys());
    println!(
        "control: {} source files, {} import cycles",
        files.len(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "import cycles in control:\n  {}",
        failures.join("\n  ")
    );
}

/// One source file.
struct SourceFile {
    /// Path relative to `src/`.
    rel: String,
    /// Module path (`nat/stage.rs` → `["nat", "stage"]`, `lib.rs` → `[]`).
    module: Vec<String>,
    /// Test code: a file of a `tests` module or a `testdata` / `fuzz` helper.
    is_test: bool,
    /// Code with comments, string literals and `#[cfg(test)]` items removed.
    code: String,
    lines: usize,
}

fn source_files(root: &Path) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    collect(root, &mut paths);
    paths.sort();
    paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable source file");
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            let mut module: Vec<String> = rel
                .trim_end_matches(".rs")
                .split('/')
                .map(str::to_string)
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let is_test = module
                .iter()
                .any(|m| m == "tests" || m == "testdata" || m == "fuzz");
            SourceFile {
                lines: text.lines().count(),
                code: without_test_items(&strip_comments_and_strings(&text)),
                rel,
                module,
                is_test,
            }
        })
        .collect()
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("readable source directory") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Blanks comments, string and char literals (keeping line structure), so
/// that paths in doc comments and messages are not taken for imports.
fn strip_comments_and_strings(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        if b[i..].starts_with(b"//") {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
        } else if b[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < b.len() {
                if b[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if b[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if b[i] == b'r' && (b[i + 1..].starts_with(b"\"") || b[i + 1..].starts_with(b"#")) {
            // Raw string r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while j < b.len() && b[j] == b'#' {
                hashes += 1;
                j += 1;
            }
            if j < b.len() && b[j] == b'"' {
                let close: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                j += 1;
                while j < b.len() && !b[j..].starts_with(&close) {
                    j += 1;
                }
                i = j + close.len();
                out.push_str("\"\"");
            } else {
                out.push('r');
                i += 1;
            }
        } else if b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if b[i] == b'\'' && i + 2 < b.len() && (b[i + 2] == b'\'' || b[i + 1] == b'\\') {
            // A char literal ('x', '\n', '\u{..}'), not a lifetime.
            i += 1;
            while i < b.len() && b[i] != b'\'' {
                i += if b[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("' '");
        } else {
            let ch = text[i..].chars().next().unwrap();
            out.push(ch);
            i += ch.len_utf8();
        }
    }
    out
}

/// Removes every item marked `#[cfg(test)]` (a test module or helper).
fn without_test_items(code: &str) -> String {
    let mut out = code.to_string();
    while let Some(at) = out.find("#[cfg(test)]") {
        let after = at + "#[cfg(test)]".len();
        let rest = &out[after..];
        // The item ends at its `;` (e.g. `mod tests;`) or its closing brace.
        let end = match (rest.find(';'), rest.find('{')) {
            (Some(semi), Some(brace)) if semi < brace => after + semi + 1,
            (_, Some(brace)) => {
                let mut depth = 0;
                let mut end = out.len();
                for (k, ch) in out[after + brace..].char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' => {
                            depth -= 1;
                            if depth == 0 {
                                end = after + brace + k + 1;
                                break;
                            }
                        }
                        _ => {}
                    }
                }
                end
            }
            (Some(semi), None) => after + semi + 1,
            (None, None) => out.len(),
        };
        out.replace_range(at..end, "");
    }
    out
}

/// Every path that starts with `crate::` or `super::`, with `use` groups
/// (`crate::{a::b, c::{d, e}}`) expanded into one path each.
fn referenced_paths(code: &str) -> Vec<Vec<String>> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let starts_word =
            i == 0 || !(b[i - 1].is_ascii_alphanumeric() || b[i - 1] == b'_' || b[i - 1] == b':');
        if starts_word && (code[i..].starts_with("crate::") || code[i..].starts_with("super::")) {
            let (paths, end) = parse_tree(code, i);
            out.extend(paths);
            i = end;
        } else {
            i += 1;
        }
    }
    out
}

/// Parses a path tree at `at`; returns its expanded paths and where it ends.
fn parse_tree(code: &str, at: usize) -> (Vec<Vec<String>>, usize) {
    let b = code.as_bytes();
    let mut prefix = Vec::new();
    let mut i = at;
    loop {
        let start = i;
        while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_') {
            i += 1;
        }
        if i > start {
            prefix.push(code[start..i].to_string());
        }
        if code[i..].starts_with("::") {
            i += 2;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && b[i] == b'{' {
                i += 1;
                let mut all = Vec::new();
                loop {
                    while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b',') {
                        i += 1;
                    }
                    if i >= b.len() || b[i] == b'}' {
                        i += 1;
                        break;
                    }
                    let (subs, end) = parse_tree(code, i);
                    for sub in subs {
                        let mut p = prefix.clone();
                        p.extend(sub);
                        all.push(p);
                    }
                    i = end.max(i + 1);
                    // Skip `as name` and anything else up to the next item.
                    while i < b.len() && b[i] != b',' && b[i] != b'}' {
                        i += 1;
                    }
                }
                return (all, i);
            }
            continue;
        }
        return (vec![prefix], i);
    }
}

/// The module a path names (its longest prefix that is a module), from
/// the module `from`; `None` for paths that leave the crate.
fn resolve(
    from: &[String],
    path: &[String],
    modules: &BTreeSet<Vec<String>>,
) -> Option<Vec<String>> {
    let mut absolute: Vec<String> = Vec::new();
    let mut rest = path;
    match path.first().map(String::as_str) {
        Some("crate") => rest = &path[1..],
        Some("super") => {
            absolute = from.to_vec();
            while rest.first().map(String::as_str) == Some("super") {
                absolute.pop()?;
                rest = &rest[1..];
            }
        }
        _ => return None,
    }
    absolute.extend(rest.iter().cloned());
    (1..=absolute.len())
        .rev()
        .map(|n| absolute[..n].to_vec())
        .find(|m| modules.contains(m))
}

/// Functions of `code` longer than `limit` lines, with their lengths: from
/// the line of `fn` to the closing brace at the same indentation.
fn long_functions(code: &str, limit: usize) -> Vec<(String, usize)> {
    let lines: Vec<&str> = code.lines().collect();
    let mut out = Vec::new();
    for (start, line) in lines.iter().enumerate() {
        let trimmed = line.trim_start();
        let indent = &line[..line.len() - trimmed.len()];
        let after_qualifiers = [
            "pub(crate) ",
            "pub(super) ",
            "pub ",
            "const ",
            "unsafe ",
            "async ",
        ]
        .iter()
        .fold(trimmed, |rest, q| rest.strip_prefix(q).unwrap_or(rest));
        let Some(rest) = after_qualifiers.strip_prefix("fn ") else {
            continue;
        };
        let name: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{indent}}}");
        let Some(len) = lines[start..].iter().position(|l| l.trim_end() == close) else {
            continue;
        };
        if lines[start..start + len]
            .iter()
            .any(|l| l.trim_end().ends_with(';') && !l.contains('{'))
            && len == 0
        {
            continue;
        }
        if len + 1 > limit {
            out.push((name, len + 1));
        }
    }
    out
}

/// The cycles of a small directed graph, each as the list of its nodes
/// (one per strongly connected component of more than one node).
fn cycles(edges: &BTreeSet<(String, String)>) -> Vec<Vec<String>> {
    let nodes: BTreeSet<&String> = edges.iter().flat_map(|(a, b)| [a, b]).collect();
    let reaches = |from: &String, to: &String| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![from];
        while let Some(n) = stack.pop() {
            if n == to {
                return true;
            }
            if seen.insert(n) {
                stack.extend(edges.iter().filter(|(a, _)| a == n).map(|(_, b)| b));
            }
        }
        false
    };
    let mut done = BTreeSet::new();
    let mut out = Vec::new();
    for n in &nodes {
        if done.contains(*n) {
            continue;
        }
        let component: Vec<String> = nodes
            .iter()
            .filter(|m| *m != n && reaches(n, m) && reaches(m, n))
            .map(|m| (*m).clone())
            .collect();
        if !component.is_empty() {
            let mut cycle = vec![(*n).clone()];
            cycle.extend(component);
            done.extend(cycle.iter().cloned());
            out.push(cycle);
        }
    }
    out
}

#[test]
fn the_checker_sees_imports_and_cycles() {
    let code = strip_comments_and_strings(
        "use crate::{wire::{ipv4, MacAddr}, packet::Frame};\n\
         // crate::pipeline in a comment\n\
         let s = \"crate::nat in a string\";\n\
         fn f() { super::table::lookup(); }\n\
         #[cfg(test)]\nmod tests { use crate::pipeline::Pipeline; }\n",
    );
    let paths = referenced_paths(&without_test_items(&code));
    let names: Vec<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        names,
        [
            "crate::wire::ipv4",
            "crate::wire::MacAddr",
            "crate::packet::Frame",
            "super::table::lookup"
        ]
    );
    let modules: BTreeSet<Vec<String>> =
        [vec!["services"], vec!["services", "table"], vec!["wire"]]
            .into_iter()
            .map(|m| m.into_iter().map(String::from).collect())
            .collect();
    let from = ["services".to_string(), "index".to_string()];
    let table = resolve(&from, &paths[3], &modules).unwrap();
    assert_eq!(table, ["services", "table"]);
    let pairs: BTreeSet<(String, String)> =
        [("index", "table"), ("table", "index"), ("table", "maglev")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
    assert_eq!(
        cycles(&pairs),
        vec![vec!["index".to_string(), "table".to_string()]]
    );
}
