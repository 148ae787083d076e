//! arXiv's API: `GET /api/query?search_query=all:...&max_results=n`, answered with an Atom feed
//! whose entries carry the paper's title, abstract (`summary`) and abstract page (`id`).
//! The feed is read by a small scanner of the few elements needed (no XML tree).

use super::{encode, Call, Hit, Protocol};
use crate::config::search::Engine;
use crate::html::collapse;
use crate::html::decode as unescape;

pub struct Arxiv;

impl Protocol for Arxiv {
    fn request(&self, _: &Engine, query: &str, n: usize) -> Call {
        Call::get(format!("?search_query=all:{}&start=0&max_results={n}", encode(query)))
    }

    fn parse(&self, body: &[u8], n: usize) -> Result<Vec<Hit>, String> {
        let text = std::str::from_utf8(body).map_err(|_| "the arXiv answer is not UTF-8".to_string())?;
        if !text.contains("<feed") {
            return Err("not an Atom feed".into());
        }
        let mut out = Vec::new();
        let mut rest = text;
        while let Some((entry, after)) = element(rest, "entry") {
            rest = after;
            let url = element(entry, "id")
                .map(|(v, _)| unescape(v.trim()))
                .unwrap_or_default();
            if url.is_empty() {
                continue;
            }
            out.push(Hit {
                title: element(entry, "title")
                    .map(|(v, _)| collapse(&unescape(v)))
                    .unwrap_or_default(),
                url,
                text: element(entry, "summary")
                    .map(|(v, _)| collapse(&unescape(v)))
                    .unwrap_or_default(),
            });
            if out.len() == n {
                break;
            }
        }
        Ok(out)
    }
}

/// The contents of the first `<name ...>...</name>` in `xml`, and what follows it.
fn element<'a>(xml: &'a str, name: &str) -> Option<(&'a str, &'a str)> {
    let mut from = 0;
    loop {
        let at = from + xml[from..].find('<')?;
        let rest = &xml[at + 1..];
        let after_name = rest.strip_prefix(name);
        match after_name.and_then(|r| r.chars().next()) {
            Some(c) if c == '>' || c.is_whitespace() || c == '/' => {
                let tag_end = at + 1 + rest.find('>')?;
                if xml[..tag_end].ends_with('/') {
                    // `<name/>`: empty.
                    return Some(("", &xml[tag_end + 1..]));
                }
                let body = &xml[tag_end + 1..];
                let close = format!("</{name}>");
                let end = body.find(&close)?;
                return Some((&body[..end], &body[end + close.len()..]));
            }
            _ => from = at + 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FEED: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="html">ArXiv Query: search_query=all:attention</title>
  <entry>
    <id>http://arxiv.org/abs/1706.03762v7</id>
    <title>Attention Is All
      You Need</title>
    <summary>  The dominant sequence transduction models &amp; more &#8212; &lt;b&gt;.</summary>
    <link href="http://arxiv.org/abs/1706.03762v7" rel="alternate" type="text/html"/>
  </entry>
  <entry>
    <id>http://arxiv.org/abs/1810.04805v2</id>
    <title>BERT</title>
    <summary/>
  </entry>
</feed>"#;

    #[test]
    fn entries_are_read_with_entities_decoded() {
        let h = Arxiv.parse(FEED.as_bytes(), 10).unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(h[0].title, "Attention Is All You Need");
        assert_eq!(h[0].url, "http://arxiv.org/abs/1706.03762v7");
        assert_eq!(
            h[0].text,
            "The dominant sequence transduction models & more \u{2014} <b>."
        );
        assert_eq!((h[1].title.as_str(), h[1].text.as_str()), ("BERT", ""));
        assert_eq!(Arxiv.parse(FEED.as_bytes(), 1).unwrap().len(), 1);
        assert!(Arxiv.parse(b"{}", 1).is_err());
    }

    #[test]
    fn broken_feeds_never_panic() {
        for cut in 0..FEED.len() {
            let _ = Arxiv.parse(&FEED.as_bytes()[..cut], 10);
        }
        assert_eq!(
            unescape("a &bogus; &#xZZ; &#1114112; &"),
            "a &bogus; &#xZZ; &#1114112; &"
        );
    }
}
