//! The embedded knowledge base: a `tantivy` full-text index over a folder of Markdown, text
//! and HTML documents, searched with BM25 by the search stage like any engine, with nothing
//! external to run.
//!
//! The index lives in its own folder, one sub-folder per state of the documents: the state is
//! a digest of every file's path, size and modification time, so [`KnowledgeBase::open`] opens
//! the index of the folder as it is now, or builds it first (into a temporary folder renamed
//! into place once complete) when the documents changed. An index in use by an older config is
//! never written to; older states are removed once a new one is in place.

mod documents;
mod tokens;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED};
use tantivy::tokenizer::TextAnalyzer;
use tantivy::{doc, Index, IndexReader, ReloadPolicy, TantivyDocument, Term};

pub use documents::Document;

/// Bumped when the schema, the tokenizer or the reading of documents changes (old indexes are
/// then rebuilt).
const FORMAT: &str = "tollgate-kb-2";

/// Text kept of a document for passages (its beginning, when longer).
const MAX_TEXT: usize = 64 * 1024;

/// Terms of a query used at most.
const MAX_TERMS: usize = 64;

/// Memory the index writer may use.
const WRITER_BYTES: usize = 64 << 20;

#[derive(Debug, thiserror::Error)]
pub enum KbError {
    #[error("cannot read the documents folder {0}: {1}")]
    Documents(String, std::io::Error),
    #[error("cannot write the index folder {0}: {1}")]
    Folder(String, std::io::Error),
    #[error("index: {0}")]
    Index(#[from] tantivy::TantivyError),
}

/// One document found by a query.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub title: String,
    /// The document's path, as `<docs folder as configured>/<path in it>`.
    pub path: String,
    pub text: String,
    pub score: f32,
}

/// How an index came to be open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opened {
    /// The documents had not changed: the existing index was opened.
    Existing,
    /// Built now, in this time.
    Built(Duration),
}

/// An open knowledge base.
pub struct KnowledgeBase {
    reader: IndexReader,
    title: Field,
    body: Field,
    path: Field,
    /// Documents indexed.
    pub documents: u64,
    pub opened: Opened,
    /// The documents folder as configured (shown before each path).
    shown: String,
}

impl std::fmt::Debug for KnowledgeBase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KnowledgeBase")
            .field("documents", &self.documents)
            .field("opened", &self.opened)
            .field("shown", &self.shown)
            .finish()
    }
}

fn schema() -> (Schema, Field, Field, Field) {
    let mut b = Schema::builder();
    let indexed = TextFieldIndexing::default()
        .set_tokenizer(tokens::NAME)
        .set_index_option(IndexRecordOption::WithFreqs);
    let text = TextOptions::default().set_indexing_options(indexed).set_stored();
    let title = b.add_text_field("title", text.clone());
    let body = b.add_text_field("body", text);
    let path = b.add_text_field("path", STORED);
    (b.build(), title, body, path)
}

/// The digest of the documents' state (paths, sizes, modification times) and the format.
fn state(entries: &[documents::Entry]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(FORMAT.as_bytes());
    for e in entries {
        ctx.update(e.rel.as_bytes());
        ctx.update(&[0]);
        ctx.update(&e.size.to_le_bytes());
        ctx.update(&e.modified_ns.to_le_bytes());
    }
    ctx.finish().as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl KnowledgeBase {
    /// Open the index of `docs` as the folder is now under `index_dir`, building it first if
    /// the documents changed (or `rebuild`). `shown` is how paths are named in results.
    pub fn open(docs: &Path, index_dir: &Path, shown: &str, rebuild: bool) -> Result<KnowledgeBase, KbError> {
        let entries = documents::list(docs).map_err(|e| KbError::Documents(docs.display().to_string(), e))?;
        let current = index_dir.join(state(&entries));
        let folder_err = |e: std::io::Error| KbError::Folder(index_dir.display().to_string(), e);
        let opened = if current.join(".complete").exists() && !rebuild {
            Opened::Existing
        } else {
            let started = Instant::now();
            std::fs::create_dir_all(index_dir).map_err(folder_err)?;
            let building = index_dir.join(format!(".building-{}-{}", std::process::id(), rand::random::<u32>()));
            std::fs::create_dir_all(&building).map_err(folder_err)?;
            let built = build(docs, &entries, &building);
            if let Err(e) = built {
                let _ = std::fs::remove_dir_all(&building);
                return Err(e);
            }
            std::fs::write(building.join(".complete"), FORMAT).map_err(folder_err)?;
            if current.exists() {
                let _ = std::fs::remove_dir_all(&current);
            }
            std::fs::rename(&building, &current).map_err(folder_err)?;
            remove_others(index_dir, &current);
            Opened::Built(started.elapsed())
        };
        let mut kb = Self::load(&current, shown)?;
        kb.opened = opened;
        Ok(kb)
    }

    fn load(dir: &Path, shown: &str) -> Result<KnowledgeBase, KbError> {
        let index = Index::open_in_dir(dir)?;
        index
            .tokenizers()
            .register(tokens::NAME, TextAnalyzer::from(tokens::Words));
        let (_, title, body, path) = schema();
        let reader = index.reader_builder().reload_policy(ReloadPolicy::Manual).try_into()?;
        let documents = reader.searcher().num_docs();
        Ok(KnowledgeBase {
            reader,
            title,
            body,
            path,
            documents,
            opened: Opened::Existing,
            shown: shown.trim_end_matches('/').to_string(),
        })
    }

    /// The `n` documents that best match `query`: BM25 over titles (counted double) and
    /// texts, any term may match; the query is cut into terms as documents are (its syntax,
    /// if any, is not interpreted).
    pub fn search(&self, query: &str, n: usize) -> Result<Vec<Found>, KbError> {
        let mut terms: Vec<String> = tokens::tokens(query).into_iter().map(|t| t.text).collect();
        terms.sort();
        terms.dedup();
        terms.truncate(MAX_TERMS);
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::with_capacity(terms.len() * 2);
        for t in &terms {
            for (field, boost) in [(self.title, 2.0), (self.body, 1.0)] {
                let term = TermQuery::new(Term::from_field_text(field, t), IndexRecordOption::WithFreqs);
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(term), boost))));
            }
        }
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let top = searcher.search(
            &BooleanQuery::new(clauses),
            &TopDocs::with_limit(n.max(1)).order_by_score(),
        )?;
        let mut out = Vec::with_capacity(top.len());
        for (score, addr) in top {
            let d: TantivyDocument = searcher.doc(addr)?;
            let get = |f: Field| d.get_first(f).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let rel = get(self.path);
            out.push(Found {
                title: get(self.title),
                path: if self.shown.is_empty() {
                    rel
                } else {
                    format!("{}/{rel}", self.shown)
                },
                text: get(self.body),
                score,
            });
        }
        Ok(out)
    }
}

fn build(docs: &Path, entries: &[documents::Entry], into: &Path) -> Result<(), KbError> {
    let (schema, title, body, path) = schema();
    let index = Index::create_in_dir(into, schema)?;
    index
        .tokenizers()
        .register(tokens::NAME, TextAnalyzer::from(tokens::Words));
    let mut writer: tantivy::IndexWriter = index.writer_with_num_threads(1, WRITER_BYTES)?;
    for e in entries {
        let d = match documents::read(docs, &e.rel) {
            Ok(d) => d,
            Err(err) => {
                tracing::warn!(file = %e.rel, error = %err, "knowledge base: a document could not be read; left out");
                continue;
            }
        };
        let mut text = d.text;
        if text.len() > MAX_TEXT {
            let mut cut = MAX_TEXT;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
        }
        writer.add_document(doc!(title => d.title, body => text, path => e.rel.clone()))?;
    }
    writer.commit()?;
    writer.wait_merging_threads()?;
    Ok(())
}

/// Remove every other state's folder (and builds left over by a crash) under `index_dir`.
fn remove_others(index_dir: &Path, keep: &Path) {
    let Ok(list) = std::fs::read_dir(index_dir) else { return };
    for entry in list.flatten() {
        let p: PathBuf = entry.path();
        if p != keep && p.is_dir() {
            let _ = std::fs::remove_dir_all(&p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn folder() -> PathBuf {
        let dir = std::env::temp_dir().join(format!("tollgate-kb-{}-{}", std::process::id(), rand::random::<u64>()));
        std::fs::create_dir_all(dir.join("docs/hr")).unwrap();
        std::fs::write(
            dir.join("docs/hr/leave.md"),
            "# Leave policy\n\nStaff get 25 days of annual leave.",
        )
        .unwrap();
        std::fs::write(
            dir.join("docs/oncall.txt"),
            "The on-call rota changes every Monday at 10:00.",
        )
        .unwrap();
        std::fs::write(
            dir.join("docs/年假.html"),
            "<html><head><title>年假政策</title></head><body><nav>菜单</nav><main>员工每年有二十五天年假。</main></body></html>",
        )
        .unwrap();
        std::fs::write(dir.join("docs/.hidden.md"), "# Secret\n").unwrap();
        std::fs::write(dir.join("docs/image.png"), [0u8, 1, 2]).unwrap();
        dir
    }

    #[test]
    fn documents_are_found_by_their_words_in_any_script() {
        let dir = folder();
        let kb = KnowledgeBase::open(&dir.join("docs"), &dir.join("index"), "kb", false).unwrap();
        assert!(matches!(kb.opened, Opened::Built(_)));
        assert_eq!(
            kb.documents, 3,
            "markdown, text and html; hidden and other files left out"
        );
        let found = kb.search("How many days of annual leave do staff get?", 2).unwrap();
        assert_eq!(found[0].path, "kb/hr/leave.md");
        assert_eq!(found[0].title, "Leave policy");
        let zh = kb.search("员工有多少天年假？", 1).unwrap();
        assert_eq!(zh[0].title, "年假政策");
        assert!(!zh[0].text.contains("菜单"), "navigation is not indexed");
        assert!(
            kb.search("\"unbalanced AND ( :: title:", 3).is_ok(),
            "query syntax is not interpreted"
        );
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_index_is_rebuilt_only_when_the_documents_change() {
        let dir = folder();
        let (docs, index) = (dir.join("docs"), dir.join("index"));
        let first = KnowledgeBase::open(&docs, &index, "kb", false).unwrap();
        let again = KnowledgeBase::open(&docs, &index, "kb", false).unwrap();
        assert_eq!(again.opened, Opened::Existing);
        std::fs::write(docs.join("new.md"), "# Parking\n\nThe garage opens at 7.").unwrap();
        let changed = KnowledgeBase::open(&docs, &index, "kb", false).unwrap();
        assert!(matches!(changed.opened, Opened::Built(_)));
        assert_eq!(changed.search("garage parking", 1).unwrap()[0].path, "kb/new.md");
        // The index opened before the change still answers from its own state.
        assert_eq!(first.search("garage", 3).unwrap().len(), 0);
        assert_eq!(std::fs::read_dir(&index).unwrap().count(), 1, "older states removed");
        let _ = std::fs::remove_dir_all(dir);
    }
}
