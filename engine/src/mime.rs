//! The few MIME rules the report parsers need (ARF complaints in
//! `crate::arf`, delivery status notifications in `crate::dsn`): a
//! `Content-Type` with its parameters, header blocks (unfolded), multipart
//! bodies and the `base64` / `quoted-printable` transfer encodings. Text only:
//! callers turn CRLF into LF first. Reports are headers, not content, so no
//! charset or attachment handling; the full parser of the mail-parser family
//! needs a newer compiler than ours (see CRATES.md).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// A transfer encoding that is unknown or does not decode (its name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadEncoding(pub String);

/// A parsed `Content-Type`: lower-cased `type/subtype` and its parameters
/// (names lower-cased, values unquoted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentType {
    pub mime: String,
    pub params: Vec<(String, String)>,
}

impl ContentType {
    pub fn parse(value: &str) -> ContentType {
        let mut pieces = split_params(value).into_iter();
        let mime = pieces
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase();
        let params = pieces
            .filter_map(|piece| {
                let (name, value) = piece.split_once('=')?;
                let value = value.trim();
                let value = value
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .map(|v| v.replace("\\\"", "\"").replace("\\\\", "\\"))
                    .unwrap_or_else(|| value.to_string());
                Some((name.trim().to_ascii_lowercase(), value))
            })
            .collect();
        ContentType { mime, params }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Splits at `;` outside double quotes.
fn split_params(value: &str) -> Vec<String> {
    let mut pieces = vec![String::new()];
    let mut quoted = false;
    let mut escaped = false;
    for c in value.chars() {
        let current = pieces.last_mut().expect("never empty");
        match c {
            _ if escaped => {
                escaped = false;
                current.push(c);
            }
            '\\' if quoted => {
                escaped = true;
                current.push(c);
            }
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ';' if !quoted => pieces.push(String::new()),
            _ => current.push(c),
        }
    }
    pieces
}

/// Splits an entity (LF line endings) into its unfolded header fields and the
/// rest after the blank line. A line that is neither a field nor a continuation
/// ends the header block (it belongs to the body).
pub fn split_headers(text: &str) -> (Vec<(String, String)>, &str) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut offset = 0;
    while offset < text.len() {
        let end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
        let line = &text[offset..end];
        let next = (end + 1).min(text.len());
        if line.is_empty() {
            return (headers, &text[next..]);
        }
        if line.starts_with([' ', '\t']) {
            match headers.last_mut() {
                Some((_, value)) => value.push_str(line),
                None => return (headers, &text[offset..]),
            }
        } else {
            match line.split_once(':') {
                Some((name, value)) if is_field_name(name) => {
                    headers.push((name.to_ascii_lowercase(), value.trim().to_string()));
                }
                _ => return (headers, &text[offset..]),
            }
        }
        offset = next;
    }
    (headers, "")
}

fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_graphic() && c != ':')
}

/// The first field called `name` (lower case), trimmed.
pub fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.trim())
}

/// The body parts of a multipart body (LF line endings): what lies between the
/// `--boundary` lines, up to `--boundary--`. The line break before a delimiter
/// belongs to the delimiter; preamble and epilogue are dropped.
pub fn split_multipart<'a>(body: &'a str, boundary: &str) -> Vec<&'a str> {
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut start: Option<usize> = None;
    let mut offset = 0;
    while offset < body.len() {
        let end = body[offset..].find('\n').map_or(body.len(), |i| offset + i);
        let line = body[offset..end].trim_end();
        if let Some(after) = line.strip_prefix(delimiter.as_str())
            && (after.is_empty() || after == "--")
        {
            if let Some(s) = start {
                parts.push(&body[s..offset.saturating_sub(1).max(s)]);
            }
            if after == "--" {
                return parts;
            }
            start = Some((end + 1).min(body.len()));
        }
        offset = end + 1;
    }
    // No closing delimiter: keep the last part as it is.
    if let Some(s) = start {
        parts.push(&body[s..]);
    }
    parts
}

/// Undoes a part's `Content-Transfer-Encoding`.
pub fn decode(encoding: Option<&str>, content: &str) -> Result<String, BadEncoding> {
    let encoding = encoding.unwrap_or("7bit").trim().to_ascii_lowercase();
    match encoding.as_str() {
        "7bit" | "8bit" | "binary" => Ok(content.to_string()),
        "base64" => {
            let compact: String = content.chars().filter(|c| !c.is_whitespace()).collect();
            let bytes = STANDARD
                .decode(compact)
                .map_err(|_| BadEncoding(encoding.clone()))?;
            Ok(String::from_utf8_lossy(&bytes).replace("\r\n", "\n"))
        }
        "quoted-printable" => quoted_printable(content).ok_or(BadEncoding(encoding)),
        _ => Err(BadEncoding(encoding)),
    }
}

fn quoted_printable(content: &str) -> Option<String> {
    let mut out = Vec::with_capacity(content.len());
    for line in content.split('\n') {
        let line = line.trim_end_matches([' ', '\t']);
        let (line, soft) = match line.strip_suffix('=') {
            Some(rest) => (rest, true),
            None => (line, false),
        };
        let bytes = line.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            if bytes[i] == b'=' {
                let hex = line.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            } else {
                out.push(bytes[i]);
                i += 1;
            }
        }
        if !soft {
            out.push(b'\n');
        }
    }
    Some(String::from_utf8_lossy(&out).into_owned())
}
