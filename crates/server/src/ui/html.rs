//! Hand-written HTML. Every piece of text that did not come from this file goes through
//! [`esc`] (element content and quoted attribute values alike) or [`url_q`] (query values), so
//! nothing a client or the store holds is ever markup.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Text as HTML: safe in element content and in double- or single-quoted attribute values.
pub(crate) fn esc(s: &str) -> String {
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

/// A query-string value, percent-encoded (everything but unreserved characters).
pub(crate) fn url_q(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// What the page header shows about the caller.
pub(crate) struct Chrome<'a> {
    pub(crate) user: &'a str,
    pub(crate) owner: bool,
    /// The session's CSRF token, for the logout form.
    pub(crate) csrf: &'a str,
    /// Which navigation entry is current.
    pub(crate) section: &'a str,
}

/// A whole page: `body` is HTML built with [`esc`].
pub(crate) fn page(title: &str, chrome: Option<&Chrome<'_>>, body: &str) -> String {
    let mut nav = String::new();
    let mut who = String::new();
    if let Some(c) = chrome {
        let item = |href: &str, key: &str, label: &str| {
            let cur = if c.section == key {
                " aria-current=\"page\""
            } else {
                ""
            };
            format!("<a href=\"{href}\"{cur}>{label}</a>")
        };
        nav.push_str(&item("/ui/repositories", "repositories", "Repositories"));
        if c.owner {
            nav.push_str(&item(
                "/ui/owner/content-trust",
                "content-trust",
                "Content trust",
            ));
            nav.push_str(&item("/ui/owner/policy", "policy", "Policy"));
            nav.push_str(&item("/ui/owner/access", "access", "Users &amp; tokens"));
            nav.push_str(&item("/ui/owner/audit", "audit", "Audit log"));
        }
        who = format!(
            "<div class=\"who\"><span id=\"whoami\">{}</span>\
             <form method=\"post\" action=\"/ui/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\">\
             <button type=\"submit\" id=\"logout\" class=\"link\">Log out</button></form></div>",
            esc(c.user),
            esc(c.csrf)
        );
    }
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{} · Berth</title><link rel=\"stylesheet\" href=\"/ui/style.css\"></head>\
         <body><header class=\"top\"><a class=\"brand\" href=\"/ui/repositories\">Berth</a>\
         <nav>{nav}</nav>{who}</header><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// An HTML response; UI pages are never stored by caches (they show what one caller may see).
pub(crate) fn respond(status: StatusCode, html: String) -> Response {
    let mut r = (status, html).into_response();
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// A page with one message: errors, refusals.
pub(crate) fn message(
    status: StatusCode,
    chrome: Option<&Chrome<'_>>,
    title: &str,
    text: &str,
) -> Response {
    let body = format!(
        "<h1>{}</h1><p class=\"notice {}\" id=\"message\">{}</p>\
         <p><a href=\"/ui/repositories\">Back to the repositories</a></p>",
        esc(title),
        if status.is_success() { "ok" } else { "bad" },
        esc(text)
    );
    respond(status, page(title, chrome, &body))
}

/// Unix seconds for people: `2026-12-01 10:56:19 UTC`.
pub(crate) fn when(secs: i64) -> String {
    let t = crate::routes::admin::rfc3339(secs);
    match t.strip_suffix('Z') {
        Some(base) => format!("{} UTC", base.replacen('T', " ", 1)),
        None => t,
    }
}

/// Bytes for people: `1.5 MB` (decimal units, as docker prints them).
pub(crate) fn size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    // Display only: the precision of f64 is plenty for a rounded figure.
    #[allow(clippy::cast_precision_loss)]
    let mut v = n as f64;
    let mut unit = "B";
    for u in UNITS.iter().skip(1) {
        if v < 1000.0 {
            break;
        }
        v /= 1000.0;
        unit = u;
    }
    if unit == "B" {
        format!("{n} B")
    } else {
        format!("{v:.1} {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\" title='y'>&</a>"),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;&lt;/a&gt;"
        );
        assert_eq!(url_q("a/b c&d=é"), "a%2Fb%20c%26d%3D%C3%A9");
    }

    #[test]
    fn sizes_read_well() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1500), "1.5 kB");
        assert_eq!(size(2_500_000), "2.5 MB");
    }
}
