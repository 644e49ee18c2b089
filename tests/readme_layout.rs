//! README's "Repository layout" table matches the tree: every file and
//! folder directly under `src/` has a row, and every path the table names
//! exists. A newcomer reads the table first; a module missing from it, or a
//! row for one that moved, sends them the wrong way.
//!
//! The table's first column holds paths in backticks, from the repository
//! root (`src/task.rs`, `src/config/`, a trailing `/` for a folder); a path
//! after `(+` is a companion beside the one before it (`src/wire.rs`
//! (+`wire/`) names `src/wire/`). Pure: reads files, needs no Docker.

use std::fs;
use std::path::Path;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn every_top_level_entry_of_src_has_a_row() {
    let listed = listed_paths();
    let mut missing = Vec::new();
    for entry in fs::read_dir(Path::new(ROOT).join("src")).expect("src/") {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let wanted = if path.is_dir() {
            format!("src/{name}/")
        } else {
            format!("src/{name}")
        };
        if !listed.contains(&wanted) {
            missing.push(wanted);
        }
    }
    missing.sort();
    assert!(
        missing.is_empty(),
        "README.md's layout table has no row for: {}",
        missing.join(", ")
    );
}

#[test]
fn every_path_in_the_table_exists() {
    let gone: Vec<String> = listed_paths()
        .into_iter()
        .filter(|p| {
            let on_disk = Path::new(ROOT).join(p);
            if p.ends_with('/') {
                !on_disk.is_dir()
            } else {
                !on_disk.is_file()
            }
        })
        .collect();
    assert!(
        gone.is_empty(),
        "README.md's layout table names paths that do not exist: {}",
        gone.join(", ")
    );
}

#[test]
fn companions_resolve_beside_the_path_before_them() {
    assert_eq!(
        paths_of_cell("`src/wire.rs` (+`wire/`), `build.rs`"),
        ["src/wire.rs", "src/wire/", "build.rs"]
    );
}

/// Every path in the first column of the layout table.
fn listed_paths() -> Vec<String> {
    let readme = fs::read_to_string(Path::new(ROOT).join("README.md")).expect("README.md");
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Repository layout"))
        .expect("README.md has a \"## Repository layout\" section");
    let paths: Vec<String> = section
        .lines()
        .filter(|l| l.starts_with('|') && !l.starts_with("| ---"))
        .skip(1) // the header
        .filter_map(|row| row.split(" | ").next())
        .flat_map(|cell| paths_of_cell(cell.trim_start_matches('|')))
        .collect();
    assert!(paths.len() > 20, "only {} paths in the table", paths.len());
    paths
}

/// The backticked paths of one cell, companions resolved.
fn paths_of_cell(cell: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = cell;
    while let Some(open) = rest.find('`') {
        let before = &rest[..open];
        let after = &rest[open + 1..];
        let Some(close) = after.find('`') else { break };
        let path = &after[..close];
        let companion = before.trim_end().ends_with("(+");
        match out.last() {
            Some(previous) if companion => {
                let dir = match previous.trim_end_matches('/').rsplit_once('/') {
                    Some((dir, _)) => format!("{dir}/"),
                    None => String::new(),
                };
                out.push(format!("{dir}{path}"));
            }
            _ => out.push(path.to_owned()),
        }
        rest = &after[close + 1..];
    }
    out
}
