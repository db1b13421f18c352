//! Pure helpers for what [`super::SmtpConnection`] puts on the wire: DATA
//! transparency (dot-stuffing) and the checks that keep envelope addresses and
//! the HELO name from injecting SMTP commands. No I/O; unit-tested here.

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
