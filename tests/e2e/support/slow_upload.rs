//! A hand-driven HTTP/1.1 upload over raw TCP, for the hostile scenarios: the
//! test decides when each byte of the body leaves (a trickle, or a body that
//! never ends), and reads the answer whenever the server sends it — before the
//! body is complete included, which ordinary clients do not surface.

use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An open request whose body is still being sent.
pub struct SlowUpload {
    stream: TcpStream,
}

/// An answer read off the wire.
#[derive(Debug)]
pub struct RawAnswer {
    pub status: u16,
    pub body: Value,
}

impl RawAnswer {
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl SlowUpload {
    /// Sends the head of `POST path` to the API at `base` (`http://host:port`)
    /// declaring a body of `declared_len` bytes, then `first` of it.
    pub async fn open(
        base: &str,
        path: &str,
        token: &str,
        content_type: &str,
        declared_len: usize,
        first: &[u8],
    ) -> SlowUpload {
        let address = base.strip_prefix("http://").expect("an http:// base URL");
        let mut stream = TcpStream::connect(address)
            .await
            .expect("connect to the API");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
             Content-Type: {content_type}\r\nContent-Length: {declared_len}\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("send head");
        stream.write_all(first).await.expect("send the first bytes");
        SlowUpload { stream }
    }

    /// Sends more of the body; `false` once the server has closed its side.
    pub async fn send(&mut self, bytes: &[u8]) -> bool {
        self.stream.write_all(bytes).await.is_ok()
    }

    /// Trickles `byte` every `every` until the server answers (or `limit`
    /// passes: then it panics); returns the answer and how many bytes the
    /// trickle sent.
    pub async fn trickle_until_answered(
        &mut self,
        byte: u8,
        every: Duration,
        limit: Duration,
    ) -> (RawAnswer, usize) {
        let (mut reader, mut writer) = self.stream.split();
        let mut sent = 0;
        let trickle = async {
            // The attack's pace: one byte each `every`, the first after one.
            let mut pace = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                pace.tick().await;
                if writer.write_all(&[byte]).await.is_err() {
                    // The server closed the connection: wait for the answer.
                    std::future::pending::<()>().await;
                }
                sent += 1;
            }
        };
        let answer = tokio::time::timeout(limit, async {
            tokio::select! {
                answer = read_answer(&mut reader) => answer,
                () = trickle => unreachable!("the trickle never ends by itself"),
            }
        })
        .await
        .unwrap_or_else(|_| panic!("no answer within {limit:?} while trickling"));
        (answer, sent)
    }

    /// Reads the answer (the server may send it before the body is complete).
    pub async fn answer(&mut self, limit: Duration) -> RawAnswer {
        tokio::time::timeout(limit, read_answer(&mut self.stream))
            .await
            .unwrap_or_else(|_| panic!("no answer within {limit:?}"))
    }
}

/// Reads one HTTP/1.1 answer with a `Content-Length` body.
async fn read_answer(reader: &mut (impl AsyncReadExt + Unpin)) -> RawAnswer {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buffer, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buffer[..end]).to_string();
            let status: u16 = head
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("a status line: {head:?}"));
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .unwrap_or(0);
            while buffer.len() < end + 4 + length {
                let n = reader.read(&mut chunk).await.expect("read the answer");
                assert!(n > 0, "the connection closed mid-answer");
                buffer.extend_from_slice(&chunk[..n]);
            }
            let text = String::from_utf8_lossy(&buffer[end + 4..end + 4 + length]).to_string();
            let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
            return RawAnswer { status, body };
        }
        let n = reader.read(&mut chunk).await.expect("read the answer");
        assert!(n > 0, "the connection closed before an answer");
        buffer.extend_from_slice(&chunk[..n]);
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
