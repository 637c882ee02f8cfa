//! Tidy checks over the source tree: every Rust file opens with a `//!` header that says
//! what it is for, and no test is switched off with an ignore attribute.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            if path.file_name().is_some_and(|n| n == "target") {
                continue;
            }
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<PathBuf> {
    let mut files = Vec::new();
    for dir in ["proto", "actors", "daemon", "integration", "benches"] {
        rust_files(&crate::support::root().join(dir), &mut files);
    }
    assert!(files.len() > 20, "tidy found only {} files", files.len());
    files
}

#[test]
fn every_rust_file_has_a_module_header() {
    let missing: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap_or_default();
            !text
                .lines()
                .find(|l| !l.trim().is_empty())
                .is_some_and(|l| l.starts_with("//!"))
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "files without a //! header: {missing:#?}"
    );
}

#[test]
fn no_test_is_ignored() {
    let marker = concat!("#[", "ignore");
    let ignored: Vec<String> = sources()
        .into_iter()
        .filter(|p| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .contains(marker)
        })
        .map(|p| p.display().to_string())
        .collect();
    assert!(ignored.is_empty(), "ignored tests: {ignored:#?}");
}
