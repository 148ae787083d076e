//! Elasticsearch and OpenSearch as a private knowledge base: `POST /{index}/_search` with a
//! `multi_match` query over the configured fields; each hit's `_source` gives `title`,
//! `content` (or `text`, `body`) and `url` (or `path`, else the document id).

use bytes::Bytes;
use serde::Deserialize;

use super::{encode, Call, Hit, Protocol};
use crate::config::search::Engine;
use crate::html::collapse;

pub struct Elastic;

#[derive(Deserialize)]
struct Answer {
    hits: Hits,
}

#[derive(Deserialize)]
struct Hits {
    #[serde(default)]
    hits: Vec<Doc>,
}

#[derive(Deserialize)]
struct Doc {
    #[serde(default, rename = "_id")]
    id: String,
    #[serde(default, rename = "_source")]
    source: Source,
}

#[derive(Deserialize, Default)]
struct Source {
    #[serde(default)]
    title: Option<String>,
    #[serde(default, alias = "text", alias = "body")]
    content: Option<String>,
    #[serde(default, alias = "path")]
    url: Option<String>,
}

impl Protocol for Elastic {
    fn request(&self, engine: &Engine, query: &str, n: usize) -> Call {
        let index = engine.index.as_deref().unwrap_or_default();
        let body = serde_json::json!({
            "size": n,
            "query": { "multi_match": { "query": query, "fields": engine.fields } },
        });
        let mut headers = Vec::new();
        if let Some(key) = &engine.key {
            headers.push(("authorization", format!("ApiKey {}", key.expose())));
        }
        Call {
            method: "POST",
            target: format!("/{}/_search", encode(index)),
            headers,
            body: Bytes::from(body.to_string()),
        }
    }

    fn parse(&self, body: &[u8], n: usize) -> Result<Vec<Hit>, String> {
        let a: Answer = serde_json::from_slice(body).map_err(|_| "not an Elasticsearch search answer".to_string())?;
        Ok(a.hits
            .hits
            .into_iter()
            .take(n)
            .map(|d| Hit {
                title: collapse(d.source.title.as_deref().unwrap_or(&d.id)),
                url: d.source.url.unwrap_or(d.id),
                text: collapse(d.source.content.as_deref().unwrap_or_default()),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hits_are_read_from_their_source() {
        let body = br#"{"took":1,"hits":{"total":{"value":2},"hits":[{"_id":"d1","_score":2.0,"_source":{"title":"Leave policy","content":"Staff get 25 days.","url":"kb://hr/leave"}},{"_id":"d2","_source":{"body":"No title here","path":"/docs/x.md"}}]}}"#;
        let h = Elastic.parse(body, 10).unwrap();
        assert_eq!(h[0].url, "kb://hr/leave");
        assert_eq!(
            (h[1].title.as_str(), h[1].url.as_str(), h[1].text.as_str()),
            ("d2", "/docs/x.md", "No title here")
        );
        assert!(Elastic.parse(br#"{"error":"x"}"#, 3).is_err());
    }
}
