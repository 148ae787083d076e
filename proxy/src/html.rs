//! The readable text of an HTML page, for passages: the main content (`<main>` or `<article>`
//! when the page has one) without scripts, styles, navigation, headers, footers, asides and
//! forms; block elements become line breaks, entities are decoded, whitespace collapsed.
//! A scanner over the bytes, not a DOM: malformed pages give what can be read, never a panic.

/// Elements whose whole content is dropped.
const SKIPPED: &[&str] = &[
    "script", "style", "noscript", "template", "svg", "nav", "header", "footer", "aside", "form", "iframe", "button",
    "select", "head",
];

/// Elements that end a line of text.
const BLOCKS: &[&str] = &[
    "p",
    "div",
    "br",
    "li",
    "ul",
    "ol",
    "tr",
    "td",
    "th",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "section",
    "article",
    "main",
    "blockquote",
    "pre",
    "table",
    "dd",
    "dt",
    "hr",
    "title",
];

/// The page's text; its `<title>` separately.
pub fn text(html: &str) -> (String, String) {
    let title = inner_of(html, "title")
        .map(|t| collapse(&decode(&strip_tags(t))))
        .unwrap_or_default();
    let body = inner_of(html, "main")
        .or_else(|| inner_of(html, "article"))
        .or_else(|| inner_of(html, "body"))
        .unwrap_or(html);
    (readable(body), title)
}

/// The text of `html` with skipped elements removed and blocks as lines.
fn readable(html: &str) -> String {
    let mut out = String::with_capacity(html.len() / 2);
    let mut rest = html;
    let mut skipping: Option<String> = None;
    while let Some(lt) = rest.find('<') {
        if skipping.is_none() {
            out.push_str(&decode(&rest[..lt]));
        }
        let after = &rest[lt + 1..];
        if let Some(comment) = after.strip_prefix("!--") {
            rest = comment.find("-->").map_or("", |end| &comment[end + 3..]);
            continue;
        }
        let Some(gt) = after.find('>') else {
            rest = "";
            break;
        };
        let tag = &after[..gt];
        rest = &after[gt + 1..];
        let closing = tag.starts_with('/');
        let name: String = tag
            .trim_start_matches('/')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        match &skipping {
            Some(open) if closing && *open == name => skipping = None,
            Some(_) => {}
            None if !closing && SKIPPED.contains(&name.as_str()) && !tag.ends_with('/') => skipping = Some(name),
            None if BLOCKS.contains(&name.as_str()) => out.push('\n'),
            None => out.push(' '),
        }
    }
    if skipping.is_none() {
        out.push_str(&decode(rest));
    }
    out.lines()
        .map(collapse)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The contents of the first `<name ...>...</name>` (case-insensitive), if both tags are there.
fn inner_of<'a>(html: &'a str, name: &str) -> Option<&'a str> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{name}");
    let mut from = 0;
    let start = loop {
        let at = from + lower[from..].find(&open)?;
        let next = lower.as_bytes().get(at + open.len()).copied();
        if matches!(next, Some(b'>' | b' ' | b'\t' | b'\n' | b'\r')) {
            break at + lower[at..].find('>')? + 1;
        }
        from = at + open.len();
    };
    let end = start + lower[start..].find(&format!("</{name}"))?;
    html.get(start..end)
}

fn strip_tags(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut inside = false;
    for c in s.chars() {
        match c {
            '<' => inside = true,
            '>' => inside = false,
            c if !inside => out.push(c),
            _ => {}
        }
    }
    out
}

/// Runs of whitespace as one space, trimmed.
pub fn collapse(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Character references and the common named entities decoded; others kept as written.
pub fn decode(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        let tail = &rest[at..];
        let end = tail.char_indices().take(12).find(|(_, c)| *c == ';').map(|(i, _)| i);
        let decoded = end.and_then(|end| {
            let entity = &tail[1..end];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" | "#39" => Some('\''),
                "nbsp" => Some(' '),
                "mdash" => Some('\u{2014}'),
                "ndash" => Some('\u{2013}'),
                "hellip" => Some('\u{2026}'),
                "copy" => Some('\u{a9}'),
                _ => entity
                    .strip_prefix("#x")
                    .or_else(|| entity.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| entity.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &tail[end + 1..];
            }
            None => {
                out.push('&');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: &str = r#"<!DOCTYPE html><html><head><title>Zephyrine 4.2 &amp; you</title>
<style>body { color: red }</style><script>var secret = "do not read";</script></head>
<body><nav><a href="/">Home</a> | <a href="/news">News</a></nav>
<header>Site header</header>
<main><h1>Zephyrine 4.2</h1><p>Released on 3&nbsp;November&nbsp;2026.</p>
<!-- a comment <p>hidden</p> -->
<p>The new <b>garbage collector</b> is concurrent &mdash; pauses are gone.</p>
<script>alert(1)</script><ul><li>Faster startup</li><li>Smaller binaries</li></ul></main>
<aside>Related: lentils</aside><footer>&copy; 2026 Example</footer></body></html>"#;

    #[test]
    fn the_main_text_is_kept_and_the_boilerplate_dropped() {
        let (text, title) = text(PAGE);
        assert_eq!(title, "Zephyrine 4.2 & you");
        assert_eq!(
            text,
            "Zephyrine 4.2\nReleased on 3 November 2026.\nThe new garbage collector is concurrent \u{2014} pauses are gone.\nFaster startup\nSmaller binaries"
        );
        let (no_main, _) = self::text("<body><div>One</div><footer>x</footer><div>Two &#x41;&#66;</div></body>");
        assert_eq!(no_main, "One\nTwo AB");
    }

    #[test]
    fn broken_pages_never_panic() {
        for cut in 0..PAGE.len() {
            if PAGE.is_char_boundary(cut) {
                let _ = text(&PAGE[..cut]);
            }
        }
        for odd in [
            "<",
            "<<>>",
            "<script>",
            "&",
            "&#xFFFFFFFF;",
            "<main>é</main",
            "<!--",
            "<p",
            "é<ş>ü&amp",
        ] {
            let _ = text(odd);
        }
        assert_eq!(decode("a &bogus; &#0; &"), "a &bogus; \u{0} &");
    }
}
