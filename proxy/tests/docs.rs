//! The documentation holds together: every link in README.md and docs/ resolves to a file (and a
//! heading) inside the repository, every page of docs/ is reachable from the README, and every
//! command-line flag is in docs/flags.md.

#![allow(clippy::unwrap_used, reason = "tests fail loudly on setup errors")]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

fn pages() -> Vec<PathBuf> {
    let mut pages = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            pages.push(path);
        }
    }
    pages.sort();
    pages
}

/// The text outside fenced code blocks and inline code spans.
fn prose(markdown: &str) -> String {
    let mut out = String::new();
    let mut fenced = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        for (i, part) in line.split('`').enumerate() {
            if i % 2 == 0 {
                out.push_str(part);
            }
        }
        out.push('\n');
    }
    out
}

/// Targets of `[text](target)` links.
fn links(markdown: &str) -> Vec<String> {
    let text = prose(markdown);
    let mut found = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            found.push(rest[..end].trim().to_string());
        }
    }
    found
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

fn anchors(markdown: &str) -> Vec<String> {
    let mut fenced = false;
    let mut found = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            found.push(slug(line.trim_start_matches('#')));
        }
    }
    found
}

#[test]
fn slugs_follow_github() {
    assert_eq!(
        slug(" Checking a file: `tollgate check`"),
        "checking-a-file-tollgate-check"
    );
    assert_eq!(
        slug("Rate limits across nodes (over-admission)"),
        "rate-limits-across-nodes-over-admission"
    );
    assert_eq!(
        links("see [a](b.md#c) and `[x](y)`\n```\n[p](q)\n```\n"),
        vec!["b.md#c"]
    );
}

#[test]
fn every_link_resolves_inside_the_repository() {
    let root = root();
    let mut problems = Vec::new();
    let mut checked = 0;
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        let shown = page.strip_prefix(&root).unwrap().display().to_string();
        for link in links(&text) {
            checked += 1;
            if link.contains("://") || link.starts_with("mailto:") {
                problems.push(format!("{shown}: `{link}` leaves the repository"));
                continue;
            }
            let (path, anchor) = match link.split_once('#') {
                Some((p, a)) => (p, Some(a)),
                None => (link.as_str(), None),
            };
            let target = if path.is_empty() {
                page.clone()
            } else {
                match page.parent().unwrap().join(path).canonicalize() {
                    Ok(t) if t.starts_with(&root) => t,
                    Ok(_) => {
                        problems.push(format!("{shown}: `{link}` leaves the repository"));
                        continue;
                    }
                    Err(_) => {
                        problems.push(format!("{shown}: `{link}` names no file"));
                        continue;
                    }
                }
            };
            if let Some(anchor) = anchor {
                let body = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&body).iter().any(|a| a == anchor) {
                    problems.push(format!("{shown}: `{link}` names no heading"));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked >= 10, "only {checked} links found");
}

#[test]
fn every_docs_page_is_linked_from_the_readme() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let linked = links(&readme);
    for page in pages().iter().skip(1) {
        let name = format!("docs/{}", page.file_name().unwrap().to_string_lossy());
        assert!(linked.iter().any(|l| l == &name), "README.md does not link {name}");
    }
}

#[test]
fn every_flag_is_documented() {
    let flags = std::fs::read_to_string(root().join("docs/flags.md")).unwrap();
    let help = Command::new(env!("CARGO_BIN_EXE_tollgate"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let mut seen = 0;
    for word in help.split(|c: char| c.is_whitespace() || c == ',') {
        let Some(name) = word.strip_prefix("--") else { continue };
        let name = name.split(['=', '<', '[']).next().unwrap();
        if name.is_empty() || name == "help" || name == "version" {
            continue;
        }
        seen += 1;
        assert!(
            flags.contains(&format!("`--{name}`")),
            "docs/flags.md does not document --{name}"
        );
    }
    assert!(seen >= 30, "only {seen} flags in --help");
}
