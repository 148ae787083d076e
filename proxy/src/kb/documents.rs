//! The documents of a knowledge base folder: Markdown, text and HTML files, found recursively
//! (hidden files and folders skipped), each read into a title and plain text.

use std::path::{Path, PathBuf};

/// Largest file read (bigger files are indexed from their first this many bytes).
pub const MAX_FILE: u64 = 4 << 20;

/// Extensions indexed, lowercase.
const EXTENSIONS: &[&str] = &["md", "markdown", "txt", "text", "html", "htm"];

/// One file found: its path relative to the folder, size and modification time (ns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub rel: String,
    pub size: u64,
    pub modified_ns: u128,
}

/// Every document file under `root`, sorted by path.
pub fn list(root: &Path) -> std::io::Result<Vec<Entry>> {
    let mut out = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            let name = entry.file_name();
            if name.to_string_lossy().starts_with('.') {
                continue;
            }
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                pending.push(path);
            } else if kind.is_file() && indexed(&path) {
                let meta = entry.metadata()?;
                let modified_ns = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok())
                    .map_or(0, |d| d.as_nanos());
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push(Entry {
                    rel,
                    size: meta.len(),
                    modified_ns,
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

fn indexed(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// A document read: title and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Document {
    pub title: String,
    pub text: String,
}

/// Read the file at `root/rel` into a document.
pub fn read(root: &Path, rel: &str) -> std::io::Result<Document> {
    use std::io::Read;
    let path: PathBuf = root.join(rel);
    let mut bytes = Vec::new();
    std::fs::File::open(&path)?.take(MAX_FILE).read_to_end(&mut bytes)?;
    let raw = String::from_utf8_lossy(&bytes);
    let stem = Path::new(rel)
        .file_stem()
        .map(|s| s.to_string_lossy().replace(['-', '_'], " "))
        .unwrap_or_default();
    let ext = Path::new(rel)
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase();
    Ok(match ext.as_str() {
        "html" | "htm" => {
            let (text, title) = crate::html::text(&raw);
            Document {
                title: if title.is_empty() { stem } else { title },
                text,
            }
        }
        "md" | "markdown" => markdown(&raw, stem),
        _ => {
            // A text file's first line names it when it is short enough to be a title.
            let first = raw.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or_default();
            Document {
                title: if !first.is_empty() && first.chars().count() <= 100 {
                    first.to_string()
                } else {
                    stem
                },
                text: raw.into_owned(),
            }
        }
    })
}

/// A Markdown file: its first heading is the title (else the file name); the text keeps its
/// words, without heading marks, emphasis, link targets and front matter.
fn markdown(raw: &str, stem: String) -> Document {
    let body = match raw.strip_prefix("---\n") {
        Some(rest) => rest.split_once("\n---").map_or(raw, |(_, after)| after),
        None => raw,
    };
    let mut title = None;
    let mut lines = Vec::new();
    for line in body.lines() {
        let t = line.trim_start();
        if let Some(h) = t.strip_prefix('#') {
            let h = h.trim_start_matches('#').trim();
            if title.is_none() && !h.is_empty() {
                title = Some(h.to_string());
            }
            lines.push(h.to_string());
        } else if !t.starts_with("```") {
            lines.push(strip_inline(t));
        }
    }
    Document {
        title: title.unwrap_or(stem),
        text: lines.join("\n"),
    }
}

/// `[text](target)` as `text`, emphasis marks and backticks dropped.
fn strip_inline(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut rest = line;
    while let Some(open) = rest.find("](") {
        let Some(close) = rest[open..].find(')') else { break };
        out.push_str(&rest[..open]);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out.replace(['*', '`', '['], "").replace("__", "")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_titles_and_text_are_read() {
        let d = markdown(
            "---\ntags: [hr]\n---\n# Leave policy\n\nStaff get **25 days**; see [the form](https://x/form).\n```\ncode\n```",
            "leave".into(),
        );
        assert_eq!(d.title, "Leave policy");
        assert!(d.text.contains("Staff get 25 days; see the form."), "{}", d.text);
        assert!(!d.text.contains("tags"));
        assert_eq!(markdown("no heading", "file name".into()).title, "file name");
    }
}
