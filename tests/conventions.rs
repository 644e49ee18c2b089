//! The source tree's conventions, checked so they hold after the next
//! feature too (issue 19): one module layout (`name.rs` + `name/`, never
//! `mod.rs`), no `#[path]`, and units a newcomer reads in one sitting — no
//! source file over 450 lines before its tests, no function over 80 lines.
//! Pure: reads `src/`, needs no Docker.

use std::fs;
use std::path::{Path, PathBuf};

/// Longest source file, not counting its `#[cfg(test)]` part.
const MAX_FILE_LINES: usize = 450;
/// Longest function, from its `fn` line to its closing brace.
const MAX_FN_LINES: usize = 80;

/// Every `.rs` file under `src/` that is not a test file.
fn sources() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n != "tests") {
                    walk(&path, out);
                }
            } else if path.extension().is_some_and(|e| e == "rs") {
                let name = path.file_name().unwrap().to_string_lossy();
                if name != "tests.rs" && !name.ends_with("_tests.rs") {
                    out.push(path);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"), &mut out);
    out.sort();
    assert!(out.len() > 50, "src/ not found: {out:?}");
    out
}

fn shown(path: &Path) -> String {
    path.strip_prefix(env!("CARGO_MANIFEST_DIR"))
        .unwrap_or(path)
        .display()
        .to_string()
}

/// The lines before the file's first top-level `#[cfg(test)]`.
fn code_lines(text: &str) -> Vec<&str> {
    text.lines()
        .take_while(|l| !l.starts_with("#[cfg(test)]"))
        .collect()
}

/// `(name, first line, length)` of every function with a body: from its
/// `fn` line to the first line that closes a brace at the same indentation.
fn functions(lines: &[&str]) -> Vec<(String, usize, usize)> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let indent = line.len() - line.trim_start().len();
        let rest = line.trim_start();
        let rest = rest
            .strip_prefix("pub(crate) ")
            .or_else(|| rest.strip_prefix("pub(super) "))
            .or_else(|| rest.strip_prefix("pub "))
            .unwrap_or(rest);
        let rest = rest.strip_prefix("const ").unwrap_or(rest);
        let rest = rest.strip_prefix("unsafe ").unwrap_or(rest);
        let Some(sig) = rest.strip_prefix("fn ") else {
            continue;
        };
        if line.trim_end().ends_with(';') {
            continue;
        }
        let name: String = sig
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect();
        let close = format!("{}}}", " ".repeat(indent));
        let end = lines[i..]
            .iter()
            .position(|l| l.trim_end() == close)
            .map_or(lines.len(), |p| i + p);
        out.push((name, i + 1, end - i + 1));
    }
    out
}

#[test]
fn one_module_layout_and_no_path_attributes() {
    let mut wrong = Vec::new();
    for path in sources() {
        if path.file_name().is_some_and(|n| n == "mod.rs") {
            wrong.push(format!(
                "{}: a module with children is `name.rs` + `name/`",
                shown(&path)
            ));
        }
        let text = fs::read_to_string(&path).unwrap();
        if text.lines().any(|l| l.trim_start().starts_with("#[path")) {
            wrong.push(format!(
                "{}: `#[path]` hides where a module lives",
                shown(&path)
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_file_or_function_too_long_to_read_in_one_sitting() {
    let mut wrong = Vec::new();
    for path in sources() {
        let text = fs::read_to_string(&path).unwrap();
        let lines = code_lines(&text);
        if lines.len() > MAX_FILE_LINES {
            wrong.push(format!(
                "{}: {} lines before its tests (at most {MAX_FILE_LINES}): split it by concern",
                shown(&path),
                lines.len()
            ));
        }
        for (name, line, len) in functions(&lines) {
            if len > MAX_FN_LINES {
                wrong.push(format!(
                    "{}:{line}: fn {name} is {len} lines (at most {MAX_FN_LINES}): name its steps",
                    shown(&path)
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_function_scanner_measures_bodies() {
    let code = "fn a() {\n    x();\n}\n\nimpl T {\n    pub(crate) fn b(&self) -> u8 {\n        if y {\n        }\n        1\n    }\n    fn c();\n}\n";
    let lines: Vec<&str> = code.lines().collect();
    assert_eq!(
        functions(&lines),
        vec![("a".to_owned(), 1, 3), ("b".to_owned(), 6, 5)]
    );
    assert_eq!(
        code_lines("a\nb\n#[cfg(test)]\nmod tests {}\n"),
        vec!["a", "b"]
    );
}
