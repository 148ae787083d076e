//! Public web search APIs that answer JSON: SearXNG (`format=json`), Bing Web Search v7 and
//! Google Programmable Search (Custom Search JSON API).

use serde::Deserialize;

use super::{encode, Call, Hit, Protocol};
use crate::config::search::Engine;
use crate::html::collapse;

/// SearXNG: `GET /search?q=...&format=json`.
pub struct Searxng;

#[derive(Deserialize)]
struct SearxAnswer {
    #[serde(default)]
    results: Vec<SearxResult>,
}

#[derive(Deserialize)]
struct SearxResult {
    #[serde(default)]
    url: String,
    #[serde(default)]
    title: String,
    #[serde(default)]
    content: String,
}

impl Protocol for Searxng {
    fn request(&self, _: &Engine, query: &str, _: usize) -> Call {
        Call::get(format!("?q={}&format=json&pageno=1", encode(query)))
    }

    fn parse(&self, body: &[u8], n: usize) -> Result<Vec<Hit>, String> {
        let a: SearxAnswer = serde_json::from_slice(body).map_err(|_| "not a SearXNG JSON answer".to_string())?;
        Ok(hits(a.results.into_iter().map(|r| (r.title, r.url, r.content)), n))
    }
}

/// Bing Web Search v7: `GET /v7.0/search?q=...&count=n`, key in `Ocp-Apim-Subscription-Key`.
pub struct Bing;

#[derive(Deserialize)]
struct BingAnswer {
    #[serde(default, rename = "webPages")]
    web_pages: Option<BingPages>,
}

#[derive(Deserialize)]
struct BingPages {
    #[serde(default)]
    value: Vec<BingPage>,
}

#[derive(Deserialize)]
struct BingPage {
    #[serde(default)]
    name: String,
    #[serde(default)]
    url: String,
    #[serde(default)]
    snippet: String,
}

impl Protocol for Bing {
    fn request(&self, engine: &Engine, query: &str, n: usize) -> Call {
        let mut call = Call::get(format!("?q={}&count={n}&textDecorations=false", encode(query)));
        if let Some(key) = &engine.key {
            call.headers.push(("ocp-apim-subscription-key", key.expose().clone()));
        }
        call
    }

    fn parse(&self, body: &[u8], n: usize) -> Result<Vec<Hit>, String> {
        let a: BingAnswer = serde_json::from_slice(body).map_err(|_| "not a Bing Web Search answer".to_string())?;
        let pages = a.web_pages.map(|p| p.value).unwrap_or_default();
        Ok(hits(pages.into_iter().map(|p| (p.name, p.url, p.snippet)), n))
    }
}

/// Google Programmable Search: `GET /customsearch/v1?key=...&cx=...&q=...&num=n` (n ≤ 10).
pub struct Google;

#[derive(Deserialize)]
struct GoogleAnswer {
    #[serde(default)]
    items: Vec<GoogleItem>,
}

#[derive(Deserialize)]
struct GoogleItem {
    #[serde(default)]
    title: String,
    #[serde(default)]
    link: String,
    #[serde(default)]
    snippet: String,
}

impl Protocol for Google {
    fn request(&self, engine: &Engine, query: &str, n: usize) -> Call {
        let key = engine.key.as_ref().map_or("", |k| k.expose().as_str());
        let cx = engine.cx.as_deref().unwrap_or_default();
        Call::get(format!(
            "?key={}&cx={}&q={}&num={}",
            encode(key),
            encode(cx),
            encode(query),
            n.clamp(1, 10)
        ))
    }

    fn parse(&self, body: &[u8], n: usize) -> Result<Vec<Hit>, String> {
        let a: GoogleAnswer = serde_json::from_slice(body).map_err(|_| "not a Custom Search answer".to_string())?;
        Ok(hits(a.items.into_iter().map(|i| (i.title, i.link, i.snippet)), n))
    }
}

/// The first `n` results that have a URL, whitespace collapsed.
fn hits(results: impl Iterator<Item = (String, String, String)>, n: usize) -> Vec<Hit> {
    results
        .filter(|(_, url, _)| !url.is_empty())
        .take(n)
        .map(|(title, url, text)| Hit {
            title: collapse(&title),
            url,
            text: collapse(&text),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_web_answer_is_read_into_hits() {
        let searx = br#"{"query":"q","results":[{"url":"https://a.example/1","title":"A  one","content":"first\nsnippet","engine":"x"},{"url":"","title":"no url"},{"url":"https://a.example/2","title":"Two"}]}"#;
        let h = Searxng.parse(searx, 5).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!((h[0].title.as_str(), h[0].text.as_str()), ("A one", "first snippet"));
        let bing = br#"{"_type":"SearchResponse","webPages":{"value":[{"name":"B","url":"https://b.example/","snippet":"bee"},{"name":"C","url":"https://c.example/","snippet":"sea"}]}}"#;
        assert_eq!(Bing.parse(bing, 1).unwrap()[0].url, "https://b.example/");
        assert!(Bing.parse(br#"{"_type":"SearchResponse"}"#, 3).unwrap().is_empty());
        let google =
            br#"{"kind":"customsearch#search","items":[{"title":"G","link":"https://g.example/x","snippet":"gee"}]}"#;
        assert_eq!(Google.parse(google, 3).unwrap()[0].text, "gee");
        assert!(Searxng.parse(b"<html>", 3).is_err());
    }
}
