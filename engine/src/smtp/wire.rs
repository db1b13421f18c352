//! Helpers for what [`super::SmtpConnection`] puts on and reads from the wire:
//! DATA transparency (dot-stuffing), the checks that keep envelope addresses and
//! the HELO name from injecting SMTP commands (pure), and `ReplyReader`, a
//! buffered reply reader that keeps bytes past the end of one reply for the next
//! (so pipelined replies that arrive in one read are never lost; mail-send's
//! `read`/`read_many` drop them). Unit-tested here.

use std::io;

use smtp_proto::Response;
use smtp_proto::response::parser::ResponseReceiver;
use tokio::io::{AsyncRead, AsyncReadExt};

/// Longest reply (all lines) we buffer before calling it unparseable.
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Why a reply could not be read.
#[derive(Debug)]
pub(crate) enum ReadError {
    Io(io::Error),
    /// EOF before a complete reply.
    Closed,
    /// Not SMTP, or longer than [`MAX_REPLY_BYTES`].
    Unparseable,
}

/// Reads SMTP replies from a stream, one at a time, keeping any bytes that
/// follow a reply (the next pipelined reply) for the next call.
#[derive(Debug, Default)]
pub(crate) struct ReplyReader {
    buf: Vec<u8>,
}

impl ReplyReader {
    /// No bytes are buffered beyond the replies read so far. Must hold before
    /// STARTTLS: anything buffered then was injected in plain text.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads the next complete reply (not cancel-safe only in that a cancelled
    /// call leaves partial bytes buffered; callers drop the session then).
    pub async fn read<R: AsyncRead + Unpin>(
        &mut self,
        stream: &mut R,
    ) -> Result<Response<String>, ReadError> {
        loop {
            if let Some(reply) = self.take_buffered()? {
                return Ok(reply);
            }
            if self.buf.len() >= MAX_REPLY_BYTES {
                return Err(ReadError::Unparseable);
            }
            let mut chunk = [0u8; 4096];
            let read = stream.read(&mut chunk).await.map_err(ReadError::Io)?;
            if read == 0 {
                return Err(ReadError::Closed);
            }
            self.buf.extend_from_slice(&chunk[..read]);
        }
    }

    /// One complete reply from the buffer, if there is one. Parses from the
    /// start each time: replies are small.
    fn take_buffered(&mut self) -> Result<Option<Response<String>>, ReadError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let mut iter = self.buf.iter();
        match ResponseReceiver::default().parse(&mut iter) {
            Ok(reply) => {
                let consumed = self.buf.len() - iter.as_slice().len();
                self.buf.drain(..consumed);
                Ok(Some(reply))
            }
            Err(smtp_proto::Error::NeedsMoreData { .. }) => Ok(None),
            Err(_) => Err(ReadError::Unparseable),
        }
    }
}

/// The EHLO keywords we act on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Capabilities {
    pub pipelining: bool,
    pub starttls: bool,
    /// RFC 6531: UTF-8 addresses and headers may be sent (with `SMTPUTF8`).
    pub smtputf8: bool,
    /// RFC 6152: 8-bit data may be sent (with `BODY=8BITMIME`).
    pub eight_bit_mime: bool,
}

impl Capabilities {
    /// From an EHLO reply's text (lines joined by LF, the first is the greeting).
    pub fn from_ehlo(message: &str) -> Self {
        let mut caps = Capabilities::default();
        for line in message.lines().skip(1) {
            let keyword = line.split_whitespace().next().unwrap_or("");
            if keyword.eq_ignore_ascii_case("PIPELINING") {
                caps.pipelining = true;
            } else if keyword.eq_ignore_ascii_case("STARTTLS") {
                caps.starttls = true;
            } else if keyword.eq_ignore_ascii_case("SMTPUTF8") {
                caps.smtputf8 = true;
            } else if keyword.eq_ignore_ascii_case("8BITMIME") {
                caps.eight_bit_mime = true;
            }
        }
        caps
    }
}

/// The body as it goes on the wire after DATA: a `.` that starts a line is
/// doubled (RFC 5321 §4.5.2, treating a bare CR or LF as a line end too, so no
/// smuggled `\n.\r\n` can end the data early), then `.` CRLF, preceded by CRLF
/// unless the body already ends with one.
pub fn dot_stuff(body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + body.len() / 64 + 5);
    let mut line_start = true;
    for &byte in body {
        if byte == b'.' && line_start {
            out.push(b'.');
        }
        out.push(byte);
        line_start = byte == b'\n' || byte == b'\r';
    }
    if !(body.is_empty() || body.ends_with(b"\r\n")) {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// An envelope address we are willing to put between `<` and `>`.
pub(crate) fn is_safe_address(address: &str) -> bool {
    address
        .chars()
        .all(|c| !(c.is_control() || c.is_whitespace() || c == '<' || c == '>'))
}

/// A HELO name: non-empty, no spaces or control characters.
pub(crate) fn is_safe_word(word: &str) -> bool {
    !word.is_empty() && word.chars().all(|c| !(c.is_control() || c.is_whitespace()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b""), b".\r\n");
        assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b".a\r\n.\r\nb"), b"..a\r\n..\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b"x\n.\r\nMAIL"), b"x\n..\r\nMAIL\r\n.\r\n");
        assert_eq!(dot_stuff(b"a.b"), b"a.b\r\n.\r\n");
    }

    async fn read_all(chunks: Vec<&'static [u8]>) -> Vec<Result<(u16, String), String>> {
        let (mut client, mut server) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            for chunk in chunks {
                server.write_all(chunk).await.unwrap();
                tokio::task::yield_now().await;
            }
        });
        let mut reader = ReplyReader::default();
        let mut out = Vec::new();
        loop {
            match reader.read(&mut client).await {
                Ok(reply) => out.push(Ok((reply.code, reply.message))),
                Err(err) => {
                    out.push(Err(format!("{err:?}")));
                    break;
                }
            }
        }
        writer.await.unwrap();
        out
    }

    #[tokio::test]
    async fn pipelined_replies_in_one_read_are_all_kept() {
        let replies = read_all(vec![
            b"250 2.1.0 ok\r\n550 5.1.1 no such user\r\n354 go",
            b" ahead\r\n250-a\r\n250 b\r\n",
        ])
        .await;
        assert_eq!(replies.len(), 5, "{replies:?}");
        assert_eq!(replies[0], Ok((250, "ok".into())));
        assert_eq!(replies[1], Ok((550, "no such user".into())));
        assert_eq!(replies[2], Ok((354, "go ahead".into())));
        assert_eq!(replies[3].as_ref().unwrap().0, 250);
        assert_eq!(replies[4], Err("Closed".into()));
    }

    #[tokio::test]
    async fn garbage_is_unparseable() {
        let replies = read_all(vec![b"hello there\r\n"]).await;
        assert_eq!(replies, vec![Err("Unparseable".into())]);
    }

    #[test]
    fn ehlo_capabilities() {
        let caps = Capabilities::from_ehlo("mx hello\nPIPELINING\nsize 100\nstarttls");
        assert_eq!(
            caps,
            Capabilities {
                pipelining: true,
                starttls: true,
                smtputf8: false,
                eight_bit_mime: false,
            }
        );
        let caps = Capabilities::from_ehlo("mx hello\n8BITMIME\nsmtputf8");
        assert!(caps.smtputf8 && caps.eight_bit_mime && !caps.pipelining);
        assert_eq!(
            Capabilities::from_ehlo("PIPELINING"),
            Capabilities::default()
        );
    }

    #[test]
    fn address_safety() {
        assert!(is_safe_address("a.b+c@example.com"));
        assert!(is_safe_address(""));
        for bad in ["a@b\r\nRCPT TO:<x@y>", "a b@c", "a>@b", "<a@b", "a\0@b"] {
            assert!(!is_safe_address(bad), "{bad:?}");
        }
        assert!(!is_safe_word(""));
        assert!(!is_safe_word("a b"));
    }
}
