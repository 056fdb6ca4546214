//! OpenGraph from HTML: a small, forgiving scanner for `<meta property="og:..."
//! content="...">`, `<title>` and `<meta name="description">`, which skips comments,
//! scripts and styles. It needs no well-formed document, only the tags it looks for.

use serde_json::{Map, Value};

/// Longest value kept (titles and descriptions are for a one-line preview).
const MAX_VALUE_CHARS: usize = 1000;
/// OpenGraph keys kept at most.
const MAX_KEYS: usize = 50;

/// The OpenGraph object of an HTML page: every `og:*` meta tag (the first of each), with
/// `og:title` and `og:description` falling back to `<title>` and the description meta tag.
pub(crate) fn parse(html: &str) -> Map<String, Value> {
    let mut og = Map::new();
    let mut title: Option<String> = None;
    let mut description: Option<String> = None;
    let lower = html.to_ascii_lowercase();
    let mut at = 0;
    while let Some(open) = lower[at..].find('<').map(|i| at + i) {
        let rest = &lower[open..];
        if rest.starts_with("<!--") {
            at = lower[open..].find("-->").map_or(lower.len(), |i| open + i + 3);
            continue;
        }
        let name_end =
            rest[1..].find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/').map_or(rest.len(), |i| i + 1);
        let tag = &rest[1..name_end];
        let Some(close) = tag_end(&lower, open) else { break };
        match tag {
            "script" | "style" => {
                let end_tag = format!("</{tag}");
                at = lower[close..].find(&end_tag).map_or(lower.len(), |i| close + i);
            }
            "title" if title.is_none() => {
                let end = lower[close..].find("</title").map_or(lower.len(), |i| close + i);
                title = Some(clean(&decode_entities(&html[close..end])));
                at = end;
            }
            "meta" => {
                let attrs = attributes(&html[open + 5..close - 1]);
                let get = |k: &str| attrs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
                let key = get("property").or_else(|| get("name")).unwrap_or_default();
                if let Some(content) = get("content") {
                    let key = key.to_ascii_lowercase();
                    if key.starts_with("og:") && og.len() < MAX_KEYS && !og.contains_key(&key) {
                        og.insert(key, Value::String(clean(&content)));
                    } else if key == "description" && description.is_none() {
                        description = Some(clean(&content));
                    }
                }
                at = close;
            }
            _ => at = close,
        }
    }
    if !og.contains_key("og:title")
        && let Some(t) = title.filter(|t| !t.is_empty())
    {
        og.insert("og:title".into(), Value::String(t));
    }
    if !og.contains_key("og:description")
        && let Some(d) = description.filter(|d| !d.is_empty())
    {
        og.insert("og:description".into(), Value::String(d));
    }
    og
}

/// Index just past the `>` closing the tag opened at `open`, minding quoted values.
fn tag_end(s: &str, open: usize) -> Option<usize> {
    let mut quote: Option<u8> = None;
    for (i, b) in s.bytes().enumerate().skip(open + 1) {
        match (quote, b) {
            (Some(q), b) if b == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(b),
            (None, b'>') => return Some(i + 1),
            _ => {}
        }
    }
    None
}

/// `name=value` pairs of a tag (names lowercased, values entity-decoded).
fn attributes(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        let start = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'=' && b[i] != b'/' {
            i += 1;
        }
        let name = s[start..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vstart = i + 1;
                i = vstart;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = s[vstart..i.min(b.len())].to_owned();
                i += 1;
            } else {
                let vstart = i;
                while i < b.len() && !b[i].is_ascii_whitespace() {
                    i += 1;
                }
                value = s[vstart..i].to_owned();
            }
        }
        if !name.is_empty() {
            out.push((name, decode_entities(&value)));
        }
        if start == i {
            i += 1;
        }
    }
    out
}

/// The common named entities and every numeric one.
fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..].find(';').map(|i| i + 1).filter(|&i| i <= 10);
        let decoded = end.and_then(|end| {
            let name = &rest[1..end];
            let c = match name {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                "nbsp" => Some('\u{a0}'),
                _ => name
                    .strip_prefix("#x")
                    .or_else(|| name.strip_prefix("#X"))
                    .and_then(|h| u32::from_str_radix(h, 16).ok())
                    .or_else(|| name.strip_prefix('#').and_then(|d| d.parse().ok()))
                    .and_then(char::from_u32),
            };
            c.map(|c| (c, end))
        });
        match decoded {
            Some((c, end)) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Whitespace collapsed, control characters dropped, length bounded.
fn clean(s: &str) -> String {
    let words: Vec<&str> = s.split_whitespace().collect();
    words.join(" ").chars().filter(|c| !c.is_control()).take(MAX_VALUE_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opengraph_tags() {
        let html = r#"<!doctype html><html><head>
            <title>Fallback title</title>
            <!-- <meta property="og:title" content="commented out"> -->
            <meta property="og:title" content="Matrix &amp; friends" />
            <meta content='A "quoted" description' property='og:description'>
            <meta property=og:type content=website>
            <META PROPERTY="OG:IMAGE" CONTENT="/logo.png">
            <meta property="og:title" content="second title is ignored">
            <script>var s = '<meta property="og:url" content="evil">';</script>
            <style>p > a { color: red }</style>
            <meta property="og:site_name" content="x &#x263A; &#9731; &bogus; & done">
            </head><body>hi</body></html>"#;
        let og = parse(html);
        assert_eq!(og["og:title"], "Matrix & friends");
        assert_eq!(og["og:description"], "A \"quoted\" description");
        assert_eq!(og["og:type"], "website");
        assert_eq!(og["og:image"], "/logo.png");
        assert_eq!(og["og:site_name"], "x ☺ ☃ &bogus; & done");
        assert!(!og.contains_key("og:url"), "script contents are not markup");
        assert_eq!(og.len(), 5);
    }

    #[test]
    fn fallbacks_and_garbage() {
        let og =
            parse("<html><title>\n  Just   a title </title><meta name=\"description\" content=\"About it\"></html>");
        assert_eq!(og["og:title"], "Just a title");
        assert_eq!(og["og:description"], "About it");
        assert!(parse("").is_empty());
        assert!(parse("<<<>>> <meta <title").is_empty());
        assert!(parse("<meta property=\"og:title\" content=\"unterminated").is_empty());
        let long = format!("<meta property=\"og:title\" content=\"{}\">", "x".repeat(5000));
        assert_eq!(parse(&long)["og:title"].as_str().unwrap().len(), MAX_VALUE_CHARS);
    }
}
