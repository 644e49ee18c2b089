//! No import circles in `src/`: neither between its top-level modules nor
//! between its files. A circle means no order to read the code in, and no
//! way to change one side without the other; this test names the first one
//! a change brings in.
//!
//! What counts as a reference: a `crate::…` path (also each path of a
//! `use crate::{a, b::c}` group) and a `super::…` path, in code that is not
//! test-only. Comments, doc comments and string literals do not count (an
//! intra-doc link is not a dependency); neither do test files (`tests.rs`,
//! `*_tests.rs`, anything under a `tests/` folder) nor the item after a
//! `#[cfg(test)]`. A path goes to the deepest file it names (`crate::a::b::C`
//! → `a/b.rs` when it exists, else `a.rs` or `a/mod.rs`).
//!
//! Two graphs are checked:
//! - between top-level modules (`dispatch`, `metrics`, …), every reference;
//! - between files, every reference except those between a module's file and
//!   its own children's files: a module root declares what its children share
//!   and calls what they do, both ways by design. Siblings, cousins and files
//!   of other modules may not loop.
//!
//! Pure: reads `src/`, needs no Docker.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::path::Path;

/// One source file of the library.
struct Source {
    /// Path under `src/`, e.g. `docker/error.rs`.
    rel: String,
    /// Its module path, e.g. `["docker", "error"]` (`lib.rs` is `[]`).
    module: Vec<String>,
    /// Its code: comments, literals and test-only items blanked out.
    code: String,
}

/// A reference that makes an edge, kept to name it in a failure.
#[derive(Clone)]
struct Why {
    file: String,
    path: String,
}

type Graph = BTreeMap<String, BTreeMap<String, Why>>;

#[test]
fn no_circles_between_top_level_modules() {
    let (modules, _) = graphs();
    let cycles = cycles(&modules);
    assert!(
        cycles.is_empty(),
        "circles between top-level modules of src/:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn no_circles_between_files() {
    let (_, files) = graphs();
    let cycles = cycles(&files);
    assert!(
        cycles.is_empty(),
        "circles between files of src/:\n{}",
        cycles.join("\n")
    );
}

#[test]
fn the_parser_sees_groups_supers_and_skips_tests_and_comments() {
    let code = clean(
        r#"
        use crate::{a, b::{c, d::E}, f::{self, G as H}};
        use super::super::sib::X; // crate::not_this
        /// [`crate::nor_this`]
        const S: &str = "crate::nor_this_either";
        fn f<'a>(x: &'a str) -> char { let _ = crate::g::h(x); 'c' }
        #[cfg(test)]
        mod tests { use crate::test_only; }
        "#,
    );
    let found: Vec<String> = references(&code)
        .into_iter()
        .map(|(supers, path)| format!("{supers:?}:{}", path.join("::")))
        .collect();
    assert_eq!(
        found,
        [
            "None:a",
            "None:b::c",
            "None:b::d::E",
            "None:f",
            "None:f::G",
            "Some(2):sib::X",
            "None:g::h"
        ]
    );
}

/// The module graph and the file graph of `src/`.
fn graphs() -> (Graph, Graph) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = Vec::new();
    collect(&root, &root, &mut sources);
    assert!(sources.len() > 50, "found only {} files", sources.len());
    let files: BTreeMap<Vec<String>, String> = sources
        .iter()
        .map(|s| (s.module.clone(), s.rel.clone()))
        .collect();
    let mut module_graph = Graph::new();
    let mut file_graph = Graph::new();
    for source in &sources {
        for (supers, path) in references(&source.code) {
            let keep = match supers {
                None => 0,
                Some(n) => (source.module.len().checked_sub(n))
                    .unwrap_or_else(|| panic!("{}: super:: above the crate root", source.rel)),
            };
            let mut absolute = source.module[..keep].to_vec();
            absolute.extend(path.iter().cloned());
            let Some(target) = (1..=absolute.len())
                .rev()
                .map(|n| &absolute[..n])
                .find(|prefix| files.contains_key(*prefix))
            else {
                continue; // an item of the crate root, or a macro's path
            };
            let why = Why {
                file: source.rel.clone(),
                path: match supers {
                    None => format!("crate::{}", path.join("::")),
                    Some(n) => format!("{}{}", "super::".repeat(n), path.join("::")),
                },
            };
            let (from, to) = (&source.module, target);
            if let (Some(a), Some(b)) = (from.first(), to.first())
                && a != b
            {
                module_graph
                    .entry(a.clone())
                    .or_default()
                    .entry(b.clone())
                    .or_insert_with(|| why.clone());
            }
            if !from.starts_with(to) && !to.starts_with(from) {
                file_graph
                    .entry(source.rel.clone())
                    .or_default()
                    .entry(files[to].clone())
                    .or_insert(why);
            }
        }
    }
    (module_graph, file_graph)
}

/// Every library `.rs` file under `dir` that is not test-only.
fn collect(root: &Path, dir: &Path, out: &mut Vec<Source>) {
    let mut entries: Vec<_> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "tests" {
                collect(root, &path, out);
            }
            continue;
        }
        let Some(stem) = name.strip_suffix(".rs") else {
            continue;
        };
        // main.rs is the binary: it reaches the library by its crate name.
        let top = dir == root;
        if stem == "tests" || stem.ends_with("_tests") || (top && stem == "main") {
            continue;
        }
        let rel = path
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mut module: Vec<String> = rel
            .trim_end_matches(".rs")
            .split('/')
            .map(str::to_owned)
            .collect();
        if module.last().is_some_and(|m| m == "mod") || (top && stem == "lib") {
            module.pop();
        }
        let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{rel}: {e}"));
        out.push(Source {
            rel,
            module,
            code: clean(&text),
        });
    }
}

/// `text` with comments and string and char literals blanked, then every
/// item after a `#[cfg(test)]` blanked too.
fn clean(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let ident = |ch: char| ch.is_alphanumeric() || ch == '_';
    while i < c.len() {
        let at = |k: usize| c.get(i + k).copied().unwrap_or('\0');
        if at(0) == '/' && at(1) == '/' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if at(0) == '/' && at(1) == '*' {
            let mut depth = 0;
            loop {
                if i >= c.len() {
                    break;
                } else if c[i] == '/' && c.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if at(0) == 'r' && (at(1) == '"' || at(1) == '#') && (i == 0 || !ident(c[i - 1])) {
            // A raw string: r"…", r#"…"#, …
            let hashes = c[i + 1..].iter().take_while(|&&h| h == '#').count();
            if c.get(i + 1 + hashes) != Some(&'"') {
                out.push(c[i]);
                i += 1;
                continue;
            }
            i += 2 + hashes;
            while i < c.len() && !(c[i] == '"' && c[i + 1..].iter().take(hashes).all(|&h| h == '#'))
            {
                i += 1;
            }
            i += 1 + hashes;
            out.push_str("\"\"");
        } else if at(0) == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if at(0) == '\'' && (at(1) == '\\' || at(2) == '\'') {
            // A char literal ('x', '\n', '\'', '\u{1F600}'); a lifetime stays.
            i += if at(1) == '\\' { 3 } else { 2 };
            while i < c.len() && c[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    without_test_items(&out)
}

/// `code` with each item following a `#[cfg(test)]` blanked: up to its `;`
/// or through its braces.
fn without_test_items(code: &str) -> String {
    const MARK: &str = "#[cfg(test)]";
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(found) = code[from..].find(MARK) {
        let start = from + found;
        let b = code.as_bytes();
        let mut i = start + MARK.len();
        let mut depth = 0i32; // () and [] outside the item's body
        while i < b.len() {
            match b[i] {
                b'(' | b'[' => depth += 1,
                b')' | b']' => depth -= 1,
                b';' if depth == 0 => break,
                b'{' if depth == 0 => {
                    let mut braces = 0;
                    while i < b.len() {
                        match b[i] {
                            b'{' => braces += 1,
                            b'}' => braces -= 1,
                            _ => {}
                        }
                        if braces == 0 {
                            break;
                        }
                        i += 1;
                    }
                    break;
                }
                _ => {}
            }
            i += 1;
        }
        let end = (i + 1).min(b.len());
        for byte in &mut out[start..end] {
            if *byte != b'\n' {
                *byte = b' ';
            }
        }
        from = end;
    }
    // Only ASCII bytes were replaced, by ASCII spaces.
    String::from_utf8(out).expect("still UTF-8")
}

/// Every `crate::…` and `super::…` path in `code`, as (`None` for `crate`,
/// else how many `super`s; the path after them); a use group gives one path
/// per leaf.
fn references(code: &str) -> Vec<(Option<usize>, Vec<String>)> {
    let b = code.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let before = if i == 0 { b' ' } else { b[i - 1] };
        let boundary = !(before.is_ascii_alphanumeric() || matches!(before, b'_' | b'$' | b':'));
        let (supers, len) = if !boundary {
            (None, 1)
        } else if code[i..].starts_with("crate::") {
            (Some(None), "crate::".len())
        } else if code[i..].starts_with("super::") {
            let mut n = 0;
            let mut len = 0;
            while code[i + len..].starts_with("super::") {
                n += 1;
                len += "super::".len();
            }
            (Some(Some(n)), len)
        } else {
            (None, 1)
        };
        i += len;
        if let Some(supers) = supers {
            let mut paths = Vec::new();
            tree(b, &mut i, Vec::new(), &mut paths);
            out.extend(paths.into_iter().map(|p| (supers, p)));
        }
    }
    out
}

/// Parses the rest of a path or use tree at `b[*i]` below `prefix`.
fn tree(b: &[u8], i: &mut usize, prefix: Vec<String>, out: &mut Vec<Vec<String>>) {
    skip_space(b, i);
    if b.get(*i) == Some(&b'{') {
        *i += 1;
        loop {
            skip_space(b, i);
            match b.get(*i) {
                None => return,
                Some(b'}') => {
                    *i += 1;
                    return;
                }
                Some(b',') => *i += 1,
                Some(_) => {
                    let at = *i;
                    tree(b, i, prefix.clone(), out);
                    // Past an `as name` to the next `,` or `}`.
                    while *i < b.len() && !matches!(b[*i], b',' | b'}' | b'{') {
                        *i += 1;
                    }
                    if *i == at {
                        *i += 1;
                    }
                }
            }
        }
    }
    let start = *i;
    while *i < b.len() && (b[*i].is_ascii_alphanumeric() || b[*i] == b'_') {
        *i += 1;
    }
    let segment = String::from_utf8_lossy(&b[start..*i]).into_owned();
    let mut path = prefix;
    if !segment.is_empty() && segment != "self" {
        path.push(segment.clone());
    }
    if segment.is_empty() || !b[*i..].starts_with(b"::") {
        if !path.is_empty() {
            out.push(path);
        }
        return;
    }
    *i += 2;
    match b.get(*i) {
        Some(c) if c.is_ascii_alphabetic() || *c == b'_' || *c == b'{' => tree(b, i, path, out),
        _ => out.push(path), // `::*`, `::<T>`
    }
}

fn skip_space(b: &[u8], i: &mut usize) {
    while *i < b.len() && b[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

/// Each circle of `graph`, as `a -> b -> a` with the reference behind each
/// step: one per strongly connected part, the shortest through its first node.
fn cycles(graph: &Graph) -> Vec<String> {
    let mut reported = Vec::new();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    for start in graph.keys() {
        if seen.contains(start) {
            continue;
        }
        let Some(path) = shortest_cycle(graph, start) else {
            continue;
        };
        seen.extend(path.iter().cloned());
        let steps: Vec<String> = path
            .windows(2)
            .map(|w| {
                let why = &graph[&w[0]][&w[1]];
                format!("  {} -> {}   ({}: {})", w[0], w[1], why.file, why.path)
            })
            .collect();
        reported.push(format!("{}\n{}", path.join(" -> "), steps.join("\n")));
    }
    reported
}

/// The shortest path from `start` back to itself, if any (breadth first).
fn shortest_cycle(graph: &Graph, start: &str) -> Option<Vec<String>> {
    let mut came_from: BTreeMap<&str, &str> = BTreeMap::new();
    let mut queue = VecDeque::from([start]);
    while let Some(node) = queue.pop_front() {
        for next in graph.get(node).into_iter().flat_map(|n| n.keys()) {
            if next == start {
                // Walk back from `node` to `start`, then close the circle.
                let mut path = vec![node.to_owned()];
                let mut at = node;
                while at != start {
                    at = came_from[at];
                    path.push(at.to_owned());
                }
                path.reverse();
                path.push(start.to_owned());
                return Some(path);
            }
            if !came_from.contains_key(next.as_str()) && next != start {
                came_from.insert(next, node);
                queue.push_back(next);
            }
        }
    }
    None
}
