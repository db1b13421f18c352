//! Leads from a JSON body `{"leads": [{"email", "fields"}, …]}`, fed in pieces
//! as the body streams in (`POST /v1/campaigns/{id}/leads`), so an import of a
//! million leads never sits in memory whole. The outer object and array are
//! scanned here byte by byte; each element is cut out whole (at most
//! [`MAX_ELEMENT_BYTES`]) and parsed by serde, so an element means exactly what
//! it would in a body parsed at once.
//!
//! Errors match [`crate::extract::JsonBody`]: broken JSON is 400
//! `malformed_json`; JSON of the wrong shape (another top-level field, no
//! `leads`, an element with an unknown field or of the wrong type) is 422
//! `invalid_request`. A valid element with a bad email or bad fields is only a
//! rejected row; rows are numbered from 0 in array order.

use penguin_engine::domain::normalize_email;
use penguin_engine::store::leads::NewLead;
use serde::Deserialize;
use serde_json::Value;

use crate::error::AppError;
use crate::extract::parse_json;
use crate::lead_rows::LeadRows;
use crate::validate;

/// The largest array element (one lead) accepted, in bytes.
pub const MAX_ELEMENT_BYTES: usize = 1 << 20;
/// The longest top-level key accepted, in bytes.
const MAX_KEY_BYTES: usize = 1024;

/// One element of `leads`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeadIn {
    #[schema(example = "ann@example.com")]
    pub email: String,
    /// An object of scalars (strings, numbers, booleans, null) for the
    /// templates' `{{field}}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>, example = json!({"first_name": "Ann"}))]
    pub fields: Option<Value>,
}

/// Where the scanner is in `{"leads": [ … ]}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum At {
    /// Before the opening `{`.
    Start,
    /// After `{` or a value's `,`: a key (or `}` right after `{`).
    KeyStart { first: bool },
    /// Inside a key's string.
    Key,
    /// After a key: `:`.
    Colon,
    /// After `"leads":`: `[`.
    ArrayOpen,
    /// After `[` or an element's `,`: an element (or `]` right after `[`).
    ElementStart { first: bool },
    /// Inside an element.
    Element,
    /// After an element: `,` or `]`.
    ElementEnd,
    /// After the array: `,` (another key) or `}`.
    ValueEnd,
    /// After the closing `}`: only whitespace.
    Done,
}

/// JSON bytes in, leads and rejections out.
pub struct JsonLeads {
    at: At,
    /// Bytes of the key or element being read.
    buf: Vec<u8>,
    /// Nesting inside the element (objects and arrays).
    depth: usize,
    in_string: bool,
    escaped: bool,
    /// Bytes consumed so far (for error positions).
    offset: usize,
    saw_leads: bool,
    /// The elements parsed so far.
    pub rows: LeadRows,
}

impl Default for JsonLeads {
    fn default() -> Self {
        Self::new()
    }
}

impl JsonLeads {
    pub fn new() -> Self {
        JsonLeads {
            at: At::Start,
            buf: Vec::new(),
            depth: 0,
            in_string: false,
            escaped: false,
            offset: 0,
            saw_leads: false,
            rows: LeadRows::default(),
        }
    }

    /// Parses the next piece of the body.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), AppError> {
        for &byte in input {
            self.byte(byte)?;
            self.offset += 1;
        }
        Ok(())
    }

    /// Ends the input: the document must be complete.
    pub fn finish(&mut self) -> Result<(), AppError> {
        if self.at != At::Done {
            return Err(AppError::malformed_json(format!(
                "EOF while parsing the body at byte {}",
                self.offset
            )));
        }
        if !self.saw_leads {
            return Err(AppError::invalid("missing field `leads`"));
        }
        Ok(())
    }

    fn unexpected(&self, byte: u8, wanted: &str) -> AppError {
        AppError::malformed_json(format!(
            "expected {wanted} at byte {}, found {:?}",
            self.offset,
            char::from(byte)
        ))
    }

    fn byte(&mut self, byte: u8) -> Result<(), AppError> {
        let space = matches!(byte, b' ' | b'\t' | b'\n' | b'\r');
        match self.at {
            At::Start if space => {}
            At::Start if byte == b'{' => self.at = At::KeyStart { first: true },
            // Another JSON value is the wrong shape (422, as serde would say);
            // anything else is not JSON (400).
            At::Start if matches!(byte, b'[' | b'"' | b'-' | b'0'..=b'9' | b't' | b'f' | b'n') => {
                return Err(AppError::invalid(
                    "invalid type: expected an object `{\"leads\": [...]}`",
                ));
            }
            At::Start => return Err(self.unexpected(byte, "`{`")),
            At::KeyStart { .. } if space => {}
            At::KeyStart { first: true } if byte == b'}' => self.at = At::Done,
            At::KeyStart { .. } if byte == b'"' => {
                self.buf.clear();
                self.buf.push(byte);
                self.at = At::Key;
            }
            At::KeyStart { .. } => return Err(self.unexpected(byte, "a key")),
            At::Key => {
                if self.buf.len() >= MAX_KEY_BYTES {
                    return Err(AppError::invalid("a top-level key is too long"));
                }
                self.buf.push(byte);
                if self.string_ends(byte) {
                    let key: String = parse_json(&self.buf)?;
                    if key != "leads" {
                        return Err(AppError::invalid(format!(
                            "unknown field `{}`, expected `leads`",
                            key.escape_debug()
                        )));
                    }
                    if self.saw_leads {
                        return Err(AppError::invalid("duplicate field `leads`"));
                    }
                    self.saw_leads = true;
                    self.at = At::Colon;
                }
            }
            At::Colon if space => {}
            At::Colon if byte == b':' => self.at = At::ArrayOpen,
            At::Colon => return Err(self.unexpected(byte, "`:`")),
            At::ArrayOpen if space => {}
            At::ArrayOpen if byte == b'[' => self.at = At::ElementStart { first: true },
            At::ArrayOpen => {
                return Err(AppError::invalid("invalid type: `leads` must be an array"));
            }
            At::ElementStart { .. } if space => {}
            At::ElementStart { first: true } if byte == b']' => self.at = At::ValueEnd,
            At::ElementStart { .. } => {
                self.buf.clear();
                self.depth = 0;
                self.in_string = false;
                self.escaped = false;
                self.at = At::Element;
                self.element_byte(byte)?;
            }
            At::Element => self.element_byte(byte)?,
            At::ElementEnd if space => {}
            At::ElementEnd if byte == b',' => self.at = At::ElementStart { first: false },
            At::ElementEnd if byte == b']' => self.at = At::ValueEnd,
            At::ElementEnd => return Err(self.unexpected(byte, "`,` or `]`")),
            At::ValueEnd if space => {}
            At::ValueEnd if byte == b',' => self.at = At::KeyStart { first: false },
            At::ValueEnd if byte == b'}' => self.at = At::Done,
            At::ValueEnd => return Err(self.unexpected(byte, "`,` or `}`")),
            At::Done if space => {}
            At::Done => return Err(self.unexpected(byte, "the end of the body")),
        }
        Ok(())
    }

    /// Whether `byte` (already in `buf`) closes the string `buf` holds.
    fn string_ends(&mut self, byte: u8) -> bool {
        if self.buf.len() == 1 {
            self.escaped = false;
            return false;
        }
        if self.escaped {
            self.escaped = false;
            return false;
        }
        match byte {
            b'\\' => {
                self.escaped = true;
                false
            }
            b'"' => true,
            _ => false,
        }
    }

    /// One byte of an element. A scalar element ends at a `,` or `]` outside
    /// any string; a nested one when its brackets close.
    fn element_byte(&mut self, byte: u8) -> Result<(), AppError> {
        if self.in_string {
            self.buf.push(byte);
            if self.escaped {
                self.escaped = false;
            } else if byte == b'\\' {
                self.escaped = true;
            } else if byte == b'"' {
                self.in_string = false;
            }
        } else {
            match byte {
                b',' | b']' if self.depth == 0 => {
                    self.element_done()?;
                    self.at = At::ElementEnd;
                    return self.byte(byte);
                }
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self
                        .depth
                        .checked_sub(1)
                        .ok_or_else(|| self.unexpected(byte, "a value"))?;
                }
                _ => {}
            }
            self.buf.push(byte);
            if self.depth == 0 && matches!(byte, b'}' | b']') {
                self.element_done()?;
                self.at = At::ElementEnd;
            }
        }
        if self.buf.len() > MAX_ELEMENT_BYTES {
            return Err(AppError::invalid(format!(
                "lead {} is longer than {MAX_ELEMENT_BYTES} bytes",
                self.rows.next_row()
            )));
        }
        Ok(())
    }

    /// A complete element: parsed by serde, then checked like a CSV row.
    fn element_done(&mut self) -> Result<(), AppError> {
        let row = self.rows.next_row();
        let lead: LeadIn = parse_json(&self.buf).map_err(|mut e| {
            e.message = format!("leads[{row}]: {}", e.message);
            e
        })?;
        self.rows.push(check(lead));
        Ok(())
    }
}

/// A parsed element as a lead, or why it is refused.
pub fn check(lead: LeadIn) -> Result<NewLead, String> {
    let email = normalize_email(&lead.email).map_err(|e| format!("email {e}"))?;
    let fields = validate::lead_fields(lead.fields)?;
    Ok(NewLead { email, fields })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lead_rows::DUPLICATE;

    /// `(row, email)` accepted and `(row, reason)` rejected.
    type Rows = (Vec<(usize, String)>, Vec<(usize, String)>);

    /// Feeds `body` in pieces of `piece` bytes; returns the accepted emails with
    /// their rows, and the rejected rows. (One batch: across batches the
    /// database finds the duplicates.)
    fn run(body: &str, piece: usize) -> Result<Rows, AppError> {
        let mut leads = JsonLeads::new();
        let mut accepted = Vec::new();
        for chunk in body.as_bytes().chunks(piece.max(1)) {
            leads.feed(chunk)?;
        }
        leads.finish()?;
        let (rows, batch) = leads.rows.take_batch();
        accepted.extend(rows.into_iter().zip(batch.into_iter().map(|l| l.email)));
        let rejected = leads
            .rows
            .take_rejected()
            .into_iter()
            .map(|r| (r.row, r.reason))
            .collect();
        Ok((accepted, rejected))
    }

    const BODY: &str = r#" { "leads" : [
        {"email": "Ann@Example.com", "fields": {"first_name": "Ann", "note": "a \"quoted\" ] } , text"}},
        {"fields": {"n": [1]}, "email": "bob@example.com"},
        {"email": "not an email"},
        {"email": "ann@example.com"}
    ] } "#;

    #[test]
    fn elements_parse_the_same_in_any_pieces() {
        let whole = run(BODY, BODY.len()).expect("parses");
        for piece in [1, 2, 3, 7, 64] {
            assert_eq!(
                run(BODY, piece).expect("parses"),
                whole,
                "pieces of {piece}"
            );
        }
        let (accepted, rejected) = whole;
        assert_eq!(accepted, [(0, "ann@example.com".to_string())]);
        let rows: Vec<usize> = rejected.iter().map(|(row, _)| *row).collect();
        assert_eq!(rows, [1, 2, 3], "{rejected:?}");
        assert_eq!(rejected[2].1, DUPLICATE);
    }

    #[test]
    fn empty_and_minimal_documents() {
        assert_eq!(run(r#"{"leads":[]}"#, 1).unwrap(), (vec![], vec![]));
        let missing = run("{}", 1).unwrap_err();
        assert_eq!(
            (missing.status.as_u16(), missing.code),
            (422, "invalid_request")
        );
    }

    #[test]
    fn shape_errors_are_422_and_syntax_errors_400() {
        for body in [
            "[]",
            r#""leads""#,
            r#"{"leads": [], "extra": 1}"#,
            r#"{"other": []}"#,
            r#"{"leads": {}}"#,
            r#"{"leads": [1]}"#,
            r#"{"leads": ["a@b.c"]}"#,
            r#"{"leads": [{"email": "a@b.c", "x": 1}]}"#,
            r#"{"leads": [], "leads": []}"#,
        ] {
            let error = run(body, 3).unwrap_err();
            assert_eq!(
                (error.status.as_u16(), error.code),
                (422, "invalid_request"),
                "{body}"
            );
        }
        for body in [
            "",
            "x",
            r#"{"leads": [{"email": "a@b.c"}"#,
            r#"{"leads": [{"email": "a@b.c"},]}"#,
            r#"{"leads": [{"email": "a@b.c"}]} x"#,
            r#"{"leads" []}"#,
            r#"{"leads": [}]}"#,
            "{\"leads\": [{\"email\": \"a\u{0}@b.c\"}]}",
        ] {
            let error = run(body, 2).unwrap_err();
            assert_eq!(
                (error.status.as_u16(), error.code),
                (400, "malformed_json"),
                "{body:?}"
            );
        }
    }

    #[test]
    fn an_oversized_element_is_refused() {
        let big = "x".repeat(MAX_ELEMENT_BYTES);
        let body = format!(r#"{{"leads": [{{"email": "a@b.c", "fields": {{"f": "{big}"}}}}]}}"#);
        let error = run(&body, 65_536).unwrap_err();
        assert_eq!(error.status.as_u16(), 422);
    }
}
