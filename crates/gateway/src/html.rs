//! The HTML of the pages the gateway serves (the OAuth pages, the fallback pages): escaping,
//! and the OAuth pages' small server-rendered templates (no scripts). Every value from a
//! request or a user is escaped.

use axum::{
    http::StatusCode,
    response::{Html, IntoResponse, Response},
};

/// HTML-escapes text for element content and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page.
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta name=\"referrer\" content=\"no-referrer\"><title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:32em;margin:2em auto;padding:0 1em}}\
         label{{display:block;margin:.6em 0}}input{{display:block;width:100%}}\
         .error{{color:#b00}}button{{margin:.3em .3em .3em 0}}</style></head>\
         <body><h1>{title}</h1>{body}</body></html>",
        title = esc(title)
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert("x-frame-options", axum::http::HeaderValue::from_static("DENY"));
    headers.insert("cache-control", axum::http::HeaderValue::from_static("no-store"));
    response
}

/// A hidden form field.
pub fn hidden(name: &str, value: &str) -> String {
    format!("<input type=\"hidden\" name=\"{}\" value=\"{}\">", esc(name), esc(value))
}

/// An error line, if any.
pub fn error_line(error: Option<&str>) -> String {
    error.map(|e| format!("<p class=\"error\">{}</p>", esc(e))).unwrap_or_default()
}

/// A page that only tells the user something went wrong.
pub fn error_page(status: StatusCode, message: &str) -> Response {
    page(status, "Something went wrong", &format!("<p class=\"error\">{}</p>", esc(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(esc("<a href=\"x\">'&'</a>"), "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;");
        assert_eq!(hidden("n", "\"><script>"), "<input type=\"hidden\" name=\"n\" value=\"&quot;&gt;&lt;script&gt;\">");
    }
}
