//! Leads from CSV, fed in pieces as the body streams in (`text/csv` on
//! `POST /v1/campaigns/{id}/leads`). The first record is the header: one column
//! named `email` (any case), every other column a template field of that name.
//! Each later record becomes a [`NewLead`] (cells as strings, empty ones as `""`)
//! or a [`crate::lead_rows::RejectedLead`] row; rows are numbered from 0, the first after the header.
//! Blank lines are skipped. Quoting follows RFC 4180 (`csv-core`), so a quoted
//! cell may hold commas, quotes (`""`) and line breaks.
//!
//! Only what the current batch needs is held: leads wait in the parser's
//! [`LeadRows`] until the caller takes a batch of them for the database.

use std::collections::HashSet;

use csv_core::{ReadRecordResult, Reader};
use penguin_engine::domain::normalize_email;
use penguin_engine::store::leads::NewLead;
use serde_json::{Map, Value};

use crate::error::AppError;
use crate::lead_rows::LeadRows;
use crate::validate;

/// The longest record (all its cells) accepted, in bytes.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// The most columns a header may have.
pub const MAX_COLUMNS: usize = 256;

/// The header: where the address is and what the other columns are called.
#[derive(Debug)]
struct Header {
    email: usize,
    names: Vec<String>,
}

/// CSV bytes in, leads and rejections out.
pub struct CsvLeads {
    reader: Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    out_len: usize,
    ends_len: usize,
    header: Option<Header>,
    /// The data rows parsed so far.
    pub rows: LeadRows,
}

impl Default for CsvLeads {
    fn default() -> Self {
        Self::new()
    }
}

impl CsvLeads {
    pub fn new() -> Self {
        Self::with_buffer(4096)
    }

    /// Starts with an output buffer of `capacity` bytes (it grows as needed; a
    /// tiny one exercises the growth in tests).
    fn with_buffer(capacity: usize) -> Self {
        CsvLeads {
            reader: Reader::new(),
            out: vec![0; capacity.max(1)],
            ends: vec![0; 16],
            out_len: 0,
            ends_len: 0,
            header: None,
            rows: LeadRows::default(),
        }
    }

    /// Parses the next piece of the body. Fails (422) on a bad header or a record
    /// over [`MAX_RECORD_BYTES`]; a bad data row is only rejected.
    pub fn feed(&mut self, input: &[u8]) -> Result<(), AppError> {
        self.parse(input, false)
    }

    /// Ends the input (a last record without a line break counts). Fails (422)
    /// when there was no header at all.
    pub fn finish(&mut self) -> Result<(), AppError> {
        self.parse(&[], true)?;
        if self.header.is_none() {
            return Err(AppError::invalid(
                "CSV has no header row (it needs an `email` column)",
            ));
        }
        Ok(())
    }

    fn parse(&mut self, mut input: &[u8], last: bool) -> Result<(), AppError> {
        loop {
            let (result, read, written, ended) = self.reader.read_record(
                input,
                &mut self.out[self.out_len..],
                &mut self.ends[self.ends_len..],
            );
            input = &input[read..];
            self.out_len += written;
            self.ends_len += ended;
            match result {
                ReadRecordResult::InputEmpty => {
                    if !last {
                        return Ok(());
                    }
                }
                ReadRecordResult::OutputFull => {
                    if self.out.len() >= MAX_RECORD_BYTES {
                        return Err(AppError::invalid(format!(
                            "CSV row {} is longer than {MAX_RECORD_BYTES} bytes",
                            self.rows.next_row()
                        )));
                    }
                    self.out.resize(self.out.len() * 2, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    if self.ends.len() > MAX_COLUMNS {
                        return Err(AppError::invalid(format!(
                            "CSV row {} has more than {MAX_COLUMNS} columns",
                            self.rows.next_row()
                        )));
                    }
                    self.ends.resize(self.ends.len() * 2, 0);
                }
                ReadRecordResult::Record => {
                    let (out_len, ends_len) = (self.out_len, self.ends_len);
                    self.out_len = 0;
                    self.ends_len = 0;
                    let out = std::mem::take(&mut self.out);
                    let ends = std::mem::take(&mut self.ends);
                    let outcome = self.record(&out[..out_len], &ends[..ends_len]);
                    self.out = out;
                    self.ends = ends;
                    outcome?;
                }
                ReadRecordResult::End => return Ok(()),
            }
        }
    }

    /// One complete record: the header, or a data row.
    fn record(&mut self, out: &[u8], ends: &[usize]) -> Result<(), AppError> {
        let mut cells = Vec::with_capacity(ends.len());
        let mut start = 0;
        for &end in ends {
            cells.push(&out[start..end]);
            start = end;
        }
        if cells.len() <= 1 && cells.first().is_none_or(|c| c.is_empty()) {
            return Ok(()); // a blank line
        }
        let Some(header) = &self.header else {
            self.header = Some(parse_header(&cells)?);
            return Ok(());
        };
        self.rows.push(lead_of(header, &cells));
        Ok(())
    }
}

fn parse_header(cells: &[&[u8]]) -> Result<Header, AppError> {
    let mut names = Vec::with_capacity(cells.len());
    let mut seen = HashSet::new();
    let mut email = None;
    for (index, cell) in cells.iter().enumerate() {
        let cell = if index == 0 {
            cell.strip_prefix(b"\xef\xbb\xbf").unwrap_or(cell)
        } else {
            cell
        };
        let name = std::str::from_utf8(cell)
            .map_err(|_| AppError::invalid(format!("CSV header column {index} is not UTF-8")))?
            .trim()
            .to_string();
        if name.is_empty() {
            return Err(AppError::invalid(format!(
                "CSV header column {index} has no name"
            )));
        }
        if !seen.insert(name.to_lowercase()) {
            return Err(AppError::invalid(format!(
                "CSV header names column {name:?} twice"
            )));
        }
        if name.eq_ignore_ascii_case("email") {
            email = Some(index);
        }
        names.push(name);
    }
    let email = email.ok_or_else(|| AppError::invalid("CSV header has no `email` column"))?;
    // The names must make valid field names (checked once, on an empty row).
    let sample: Map<String, Value> = names
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != email)
        .map(|(_, name)| (name.clone(), Value::String(String::new())))
        .collect();
    validate::lead_fields(Some(Value::Object(sample)))
        .map_err(|reason| AppError::invalid(format!("CSV header: {reason}")))?;
    Ok(Header { email, names })
}

fn lead_of(header: &Header, cells: &[&[u8]]) -> Result<NewLead, String> {
    if cells.len() != header.names.len() {
        return Err(format!(
            "expected {} columns, found {}",
            header.names.len(),
            cells.len()
        ));
    }
    let text = |i: usize| {
        std::str::from_utf8(cells[i])
            .map_err(|_| format!("column {:?} is not UTF-8", header.names[i]))
    };
    let email = normalize_email(text(header.email)?).map_err(|e| format!("email {e}"))?;
    let mut fields = Map::new();
    for (i, name) in header.names.iter().enumerate() {
        if i != header.email {
            fields.insert(name.clone(), Value::String(text(i)?.to_string()));
        }
    }
    let fields = validate::lead_fields(Some(Value::Object(fields)))?;
    Ok(NewLead { email, fields })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::lead_rows::{DUPLICATE, RejectedLead};

    /// Feeds `text` in pieces of `piece` bytes through a tiny buffer.
    fn parse(text: &str, piece: usize) -> (Vec<(usize, NewLead)>, Vec<RejectedLead>) {
        let mut csv = CsvLeads::with_buffer(3);
        for chunk in text.as_bytes().chunks(piece) {
            csv.feed(chunk).unwrap();
        }
        csv.finish().unwrap();
        let (rows, leads) = csv.rows.take_batch();
        (
            rows.into_iter().zip(leads).collect(),
            csv.rows.take_rejected(),
        )
    }

    #[test]
    fn rows_become_leads_whatever_the_piece_size() {
        let text = "\u{feff}Email,first_name,company\r\n\
                    Ann@Example.com,Ann,\"Acme, Inc.\"\r\n\
                    \r\n\
                    bob@example.com,\"Bob \"\"B\"\"\",\"two\nlines\"\n\
                    cy@example.com,Cy,Cyco";
        for piece in [1, 2, 5, 7, 64, 4096] {
            let (leads, rejected) = parse(text, piece);
            assert!(rejected.is_empty(), "{piece}: {rejected:?}");
            let got: Vec<(usize, &str, &Value)> = leads
                .iter()
                .map(|(row, lead)| (*row, lead.email.as_str(), &lead.fields))
                .collect();
            assert_eq!(
                got,
                vec![
                    (
                        0,
                        "ann@example.com",
                        &json!({"first_name": "Ann", "company": "Acme, Inc."})
                    ),
                    (
                        1,
                        "bob@example.com",
                        &json!({"first_name": "Bob \"B\"", "company": "two\nlines"})
                    ),
                    (
                        2,
                        "cy@example.com",
                        &json!({"first_name": "Cy", "company": "Cyco"})
                    ),
                ],
                "piece size {piece}"
            );
        }
    }

    #[test]
    fn bad_rows_are_rejected_with_reasons() {
        let text = "name,email\nA,a@x.test\nB,not-an-email\nC\nD,a@X.test\nE,e@x.test,extra\n";
        let (leads, rejected) = parse(text, 3);
        assert_eq!(leads.len(), 1);
        let rows: Vec<(usize, &str)> = rejected
            .iter()
            .map(|r| (r.row, r.reason.as_str()))
            .collect();
        assert_eq!(rows[0].0, 1);
        assert!(rows[0].1.starts_with("email "), "{rows:?}");
        assert_eq!(rows[1], (2, "expected 2 columns, found 1"));
        assert_eq!(rows[2], (3, DUPLICATE));
        assert_eq!(rows[3], (4, "expected 2 columns, found 3"));
    }

    #[test]
    fn a_bad_header_refuses_the_whole_file() {
        for text in [
            "",
            "\n\n",
            "name,company\nx,y\n",
            "email,email\n",
            "email,,x\n",
            "email,Name,name\n",
        ] {
            let mut csv = CsvLeads::new();
            let outcome = csv.feed(text.as_bytes()).and_then(|()| csv.finish());
            let error = outcome.expect_err(text);
            assert_eq!(error.code, "invalid_request", "{text:?}");
        }
    }

    #[test]
    fn a_huge_record_is_refused_not_buffered_forever() {
        let mut csv = CsvLeads::new();
        csv.feed(b"email\n\"").unwrap();
        let chunk = vec![b'a'; 64 * 1024];
        let mut refused = false;
        for _ in 0..(2 * MAX_RECORD_BYTES / chunk.len()) {
            if csv.feed(&chunk).is_err() {
                refused = true;
                break;
            }
        }
        assert!(refused);
    }
}
