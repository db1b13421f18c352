//! Open and click tracking in a message's HTML part: the open pixel and the
//! rewriting of links to signed click redirects (`/t/o/{token}`, `/t/c/{token}`,
//! tokens from [`crate::tracking`]).
//!
//! Called by [`crate::message::CampaignTemplate::render`] on the rendered HTML of
//! one job, when the delivery path asks for it (`[tracking] opens`, `clicks`).
//! Guarantees:
//! - only the `href` of `<a>` and `<area>` tags is rewritten, and only for
//!   `http`/`https` targets a click token can carry
//!   ([`crate::tracking::is_trackable_url`]); `mailto:`, `#anchors`, relative and
//!   overlong links, comments, and `<script>`/`<style>` contents stay as they were;
//! - the target signed into the token is the URL the browser would have opened:
//!   the attribute value with HTML character references decoded (the template's
//!   auto-escaping writes `&amp;` and `&#x2f;`), surrounding whitespace trimmed,
//!   spaces and non-ASCII percent-encoded;
//! - links to this engine's own `/u/` and `/t/` paths (the unsubscribe link in
//!   the body) are left alone, so unsubscribing never depends on a redirect;
//! - the pixel (`<img src="…/t/o/{token}" width="1" height="1" alt="">`) goes
//!   right before the last `</body>`, or at the end when there is none;
//! - text parts are never passed here.
//!
//! A small scanner, not an HTML parser: it understands tags, quoted and unquoted
//! attribute values, comments and raw-text elements, which is what locating
//! `href`s in email HTML needs.

use uuid::Uuid;

use crate::tracking;

/// What to add to one job's HTML.
#[derive(Debug, Clone, Copy)]
pub struct HtmlTracking<'a> {
    /// Public base URL of the API (`[tracking] base_url`).
    pub base_url: &'a str,
    /// Token secret (`[tracking] secret`).
    pub secret: &'a str,
    pub tenant: Uuid,
    pub job: Uuid,
    /// Add the open pixel.
    pub opens: bool,
    /// Rewrite links to click redirects.
    pub clicks: bool,
}

impl HtmlTracking<'_> {
    /// The HTML with its links rewritten and the pixel added, as configured.
    pub fn apply(&self, html: &str) -> String {
        let mut html = if self.clicks {
            self.rewrite_links(html)
        } else {
            html.to_owned()
        };
        if self.opens {
            let pixel = format!(
                "<img src=\"{}\" width=\"1\" height=\"1\" alt=\"\">",
                escape_attr(&tracking::open_url(
                    self.base_url,
                    self.secret,
                    self.tenant,
                    self.job
                ))
            );
            // ASCII lowercasing keeps byte offsets.
            match html.to_ascii_lowercase().rfind("</body") {
                Some(at) => html.insert_str(at, &pixel),
                None => html.push_str(&pixel),
            }
        }
        html
    }

    fn rewrite_links(&self, html: &str) -> String {
        let base = self.base_url.trim_end_matches('/');
        let own = [format!("{base}/u/"), format!("{base}/t/")];
        let mut out = String::with_capacity(html.len() + html.len() / 4);
        let mut copied = 0;
        let mut at = 0;
        while let Some(found) = html[at..].find('<') {
            let start = at + found;
            let Some(tag) = scan_tag(html, start) else {
                break; // an unterminated tag or comment: leave the rest as is
            };
            at = tag.end;
            let Some((value_start, value_end)) = tag.href else {
                continue;
            };
            let target = link_target(&html[value_start..value_end]);
            if own.iter().any(|prefix| target.starts_with(prefix.as_str())) {
                continue;
            }
            let Some(url) =
                tracking::click_url(self.base_url, self.secret, self.tenant, self.job, &target)
            else {
                continue;
            };
            out.push_str(&html[copied..value_start]);
            out.push_str(&escape_attr(&url));
            copied = value_end;
        }
        out.push_str(&html[copied..]);
        out
    }
}

/// A tag found by [`scan_tag`]: where it ends, and the byte range of the value
/// of its `href` when it is an `<a>` or `<area>` with one.
struct Tag {
    end: usize,
    href: Option<(usize, usize)>,
}

/// Scans the markup that starts with `<` at `start`. Text that only looks like a
/// tag (`a < b`, `</a>`, `<!doctype>`) is one byte long; `None` when a tag or
/// comment never ends.
fn scan_tag(html: &str, start: usize) -> Option<Tag> {
    let bytes = html.as_bytes();
    let rest = &html[start..];
    if let Some(comment) = rest.strip_prefix("<!--") {
        let end = comment.find("-->")?;
        return Some(Tag {
            end: start + 4 + end + 3,
            href: None,
        });
    }
    let name_start = start + 1;
    let mut i = name_start;
    while i < bytes.len() && bytes[i].is_ascii_alphanumeric() {
        i += 1;
    }
    if i == name_start {
        return Some(Tag {
            end: name_start,
            href: None,
        });
    }
    let name = html[name_start..i].to_ascii_lowercase();
    let wants_href = name == "a" || name == "area";
    let mut href = None;
    loop {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        match bytes.get(i) {
            None => return None,
            Some(b'>') => {
                i += 1;
                break;
            }
            Some(_) => {}
        }
        let attr_start = i;
        while i < bytes.len() && !matches!(bytes[i], b'=' | b'>' | b'/') {
            if bytes[i].is_ascii_whitespace() {
                break;
            }
            i += 1;
        }
        if i == attr_start {
            i += 1; // a stray `=`: skip it
            continue;
        }
        let attr = &html[attr_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            continue; // an attribute without a value
        }
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let (value_start, value_end) = match bytes.get(i) {
            None => return None,
            Some(&quote @ (b'"' | b'\'')) => {
                let len = html[i + 1..].find(quote as char)?;
                let range = (i + 1, i + 1 + len);
                i = range.1 + 1;
                range
            }
            Some(_) => {
                let value_start = i;
                while i < bytes.len() && !bytes[i].is_ascii_whitespace() && bytes[i] != b'>' {
                    i += 1;
                }
                (value_start, i)
            }
        };
        if wants_href && href.is_none() && attr.eq_ignore_ascii_case("href") {
            href = Some((value_start, value_end));
        }
    }
    if name == "script" || name == "style" {
        // Raw text: nothing inside is markup, up to the closing tag.
        let closing = format!("</{name}");
        i += find_ignore_ascii_case(&html[i..], &closing)?;
    }
    Some(Tag { end: i, href })
}

/// Where `needle` (lowercase ASCII, starting with `<`) first occurs in
/// `haystack`, ASCII case ignored. Looks only at the bytes before the match (and
/// `needle.len()` after each `<`), so scanning a document's raw-text elements one
/// after the other stays linear in the document; lowercasing the rest of the
/// document at every `<script>`, as this used to, was quadratic.
fn find_ignore_ascii_case(haystack: &str, needle: &str) -> Option<usize> {
    debug_assert!(needle.starts_with('<') && !needle.bytes().any(|b| b.is_ascii_uppercase()));
    let bytes = haystack.as_bytes();
    let needle = needle.as_bytes();
    haystack.match_indices('<').map(|(at, _)| at).find(|&at| {
        bytes
            .get(at..at + needle.len())
            .is_some_and(|candidate| candidate.eq_ignore_ascii_case(needle))
    })
}

/// The URL an `href` value stands for: character references decoded, outer
/// whitespace trimmed, spaces and non-ASCII percent-encoded (as browsers do).
fn link_target(value: &str) -> String {
    let decoded = decode_references(value);
    let mut out = String::with_capacity(decoded.len());
    for c in decoded
        .trim_matches(|c: char| c.is_ascii_whitespace())
        .chars()
    {
        if c == ' ' || !c.is_ascii() {
            let mut buf = [0; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Decodes `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;` and numeric references
/// (`&#47;`, `&#x2f;`); anything else stays as written.
fn decode_references(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').and_then(|semi| {
            let decoded = match &rest[1..semi] {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                name => {
                    let number = name.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            };
            decoded.map(|c| (c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
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

/// Escapes what would end or confuse a double-quoted attribute value.
fn escape_attr(value: &str) -> String {
    value.replace('&', "&amp;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef";
    const BASE: &str = "https://t.example.com";

    fn tracking(opens: bool, clicks: bool) -> HtmlTracking<'static> {
        HtmlTracking {
            base_url: BASE,
            secret: SECRET,
            tenant: Uuid::from_u128(7),
            job: Uuid::from_u128(42),
            opens,
            clicks,
        }
    }

    /// The targets of the click links in `html`, in order.
    fn click_targets(html: &str) -> Vec<String> {
        let prefix = format!("{BASE}/t/c/");
        html.match_indices(&prefix)
            .map(|(at, _)| {
                let token: String = html[at + prefix.len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect();
                let (tenant, job, url) = tracking::verify_click(SECRET, &token).unwrap();
                assert_eq!((tenant, job), (Uuid::from_u128(7), Uuid::from_u128(42)));
                url
            })
            .collect()
    }

    #[test]
    fn http_links_become_signed_redirects() {
        let html = "<p><a href=\"https://a.example/x?b=1&amp;c=2\">one</a>\
                    <A class=x HREF='http://b.example/'>two</A>\
                    <a href=https://c.example/y>three</a>\
                    <area shape=rect href=\" https://d.example/ \">\
                    <a href=\"https:&#x2f;&#x2f;e.example&#x2f;p\">four</a></p>";
        let out = tracking(false, true).apply(html);
        assert_eq!(
            click_targets(&out),
            [
                "https://a.example/x?b=1&c=2",
                "http://b.example/",
                "https://c.example/y",
                "https://d.example/",
                "https://e.example/p",
            ]
        );
        assert!(!out.contains("a.example"), "{out}");
        assert!(
            out.contains(">one</a>") && out.contains("class=x HREF='"),
            "{out}"
        );
        assert!(!out.contains("/t/o/"), "no pixel when opens are off");
    }

    #[test]
    fn other_links_and_markup_stay_as_they_were() {
        let html = "<a href=\"mailto:a@example.com\">m</a><a href=\"#top\">t</a>\
                    <a href=\"/relative\">r</a><a name=x>n</a><a data-href=\"https://x.example/\">d</a>\
                    <!-- <a href=\"https://comment.example/\"> -->\
                    <style>a[href=\"https://style.example/\"]{}</style>\
                    <a href=\"https://t.example.com/u/TOKEN\">unsubscribe</a>\
                    <img src=\"https://img.example/logo.png\"> 1 < 2 </b>";
        assert_eq!(tracking(false, true).apply(html), html);
        assert_eq!(tracking(false, false).apply(html), html);
    }

    #[test]
    fn non_ascii_and_spaces_are_percent_encoded() {
        let out = tracking(false, true).apply("<a href=\"https://x.example/caf\u{e9} bar\">x</a>");
        assert_eq!(click_targets(&out), ["https://x.example/caf%C3%A9%20bar"]);
    }

    #[test]
    fn unterminated_markup_is_left_alone() {
        for html in [
            "<a href=\"https://a.example/",
            "<!-- <a href=\"https://a.example/\">",
            "<a href",
        ] {
            assert_eq!(tracking(true, true).apply(html).find("/t/c/"), None);
        }
    }

    #[test]
    fn pixel_goes_before_the_closing_body() {
        let out = tracking(true, false).apply("<html><BODY><p>Hi</p></BODY></html>");
        let pixel_at = out.find("<img src=\"https://t.example.com/t/o/").unwrap();
        assert_eq!(&out[out.find("</BODY>").unwrap()..], "</BODY></html>");
        assert!(pixel_at < out.find("</BODY>").unwrap());
        assert!(
            out.contains("\" width=\"1\" height=\"1\" alt=\"\"></BODY>"),
            "{out}"
        );
        let token: String = out[pixel_at + 36..]
            .chars()
            .take_while(|c| *c != '"')
            .collect();
        assert_eq!(
            tracking::verify(SECRET, tracking::LinkKind::Open, &token),
            Some((Uuid::from_u128(7), Uuid::from_u128(42)))
        );

        let out = tracking(true, true).apply("<p>no body tag</p>");
        assert!(out.starts_with("<p>no body tag</p><img src=\""), "{out}");
    }

    #[test]
    fn render_tracks_the_html_part_only() {
        let template = crate::message::CampaignTemplate::compile(
            "a@sender.test",
            None,
            "Hi",
            "Text https://a.example/\n",
            Some("<body><a href=\"https://a.example/\">a</a></body>"),
        )
        .unwrap();
        let fields = serde_json::Map::new();
        let ctx = crate::message::RenderContext {
            recipient: "r@example.com",
            fields: &fields,
            message_id: "id@sender.test",
            unsubscribe_url: "https://t.example.com/u/x",
            unsubscribe_mailto: None,
            feedback_id: "c:t:penguin",
            tracking: Some(tracking(true, true)),
            thread: &[],
        };
        let message = String::from_utf8(template.render(&ctx).unwrap()).unwrap();
        let (text, html) = message.split_once("text/html").unwrap();
        assert!(text.contains("Text https://a.example/\r\n"), "{text}");
        assert!(!text.contains("/t/"), "{text}");
        // Undo the quoted-printable soft breaks and `=` escapes.
        let html = html.replace("=\r\n", "").replace("=3D", "=");
        assert_eq!(click_targets(&html), ["https://a.example/"]);
        assert!(html.contains("alt=\"\"></body>"), "{html}");
    }

    /// The scan this file did before: lowercase the rest of the document at
    /// every raw-text element.
    fn find_by_lowercasing(haystack: &str, needle: &str) -> Option<usize> {
        haystack.to_ascii_lowercase().find(needle)
    }

    #[test]
    fn closing_tag_search_matches_the_lowercasing_scan() {
        let pieces = [
            "</script>",
            "</SCRIPT>",
            "</ScRiPt",
            "</scrip",
            "<",
            "</",
            "x",
            "é",
            "</style>",
            "</STYLE",
            " ",
            "<script>",
            "</scriptx",
            "\u{0130}",
        ];
        // Every sequence of up to 4 pieces: 14^4 documents.
        let mut documents = vec![String::new()];
        for _ in 0..4 {
            let longer: Vec<String> = documents
                .iter()
                .flat_map(|d| pieces.iter().map(move |p| format!("{d}{p}")))
                .collect();
            documents.extend(longer);
        }
        for document in &documents {
            for needle in ["</script", "</style"] {
                assert_eq!(
                    find_ignore_ascii_case(document, needle),
                    find_by_lowercasing(document, needle),
                    "{document:?} {needle:?}"
                );
            }
        }
    }

    #[test]
    fn many_script_tags_are_scanned_in_one_pass() {
        // 100,000 raw-text elements in 4 MB: the lowercasing scan copied the
        // rest of the document at each of them (about 200 GB of work); this
        // one reads each byte a bounded number of times.
        let unit = "<SCRIPT>var a = 1;</Script><style>p{}</STYLE>\
                    <a href=\"https://a.example/\">a</a>";
        let html = unit.repeat(50_000);
        let out = tracking(false, true).apply(&html);
        assert_eq!(click_targets(&out).len(), 50_000);
        assert_eq!(
            out.matches("<SCRIPT>var a = 1;</Script>").count(),
            50_000,
            "script contents stay as they were"
        );
    }

    #[test]
    fn references_decode() {
        assert_eq!(
            decode_references("a&amp;b&#38;c&#x26;d&lt;&gt;"),
            "a&b&c&d<>"
        );
        assert_eq!(
            decode_references("&nbsp;&bogus &#xZZ; &"),
            "&nbsp;&bogus &#xZZ; &"
        );
    }
}
