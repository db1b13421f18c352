//! One SMTP server session of the loopback sink: a small line protocol over a
//! buffered reader.
//!
//! Spawned by the sink's accept loop, one task per connection. Speaks 220, EHLO
//! (PIPELINING, 8BITMIME, SIZE, ENHANCEDSTATUSCODES, and STARTTLS when the sink
//! has a TLS configuration and the session is still plain) / HELO, MAIL, RCPT,
//! DATA, RSET, NOOP, VRFY, STARTTLS, QUIT. After STARTTLS the session starts over
//! (not greeted, no transaction) on the TLS stream; plain-text bytes pipelined
//! after STARTTLS close the connection (RFC 3207 §4.2). Guarantees: replies go out in command order and are
//! flushed whenever no further pipelined input is buffered; DATA is
//! dot-unstuffed and ends only at CRLF `.` CRLF (a lone LF `.` LF too, leniently);
//! a message is recorded before its 2xx reply; scripted rules run at RCPT and
//! end of data; command lines are bounded (no unbounded buffering).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, BufWriter,
};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use super::rules::{Response, RuleStage};
use super::state::{Accepted, SinkState};

/// Largest message we accept (advertised as SIZE).
pub(crate) const MAX_MESSAGE_SIZE: usize = 50 * 1024 * 1024;
/// Longest command line (RFC 5321 says 512; extensions make it longer).
const MAX_COMMAND_LINE: u64 = 4096;
/// Longest chunk read at once inside DATA; longer lines are read in pieces.
const MAX_DATA_CHUNK: u64 = 64 * 1024;
const HOSTNAME: &str = "penguin-sink";
/// Longest TLS handshake the sink waits for.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves one connection until QUIT, EOF, an I/O error or a drop rule.
/// `tls`: offer STARTTLS with this acceptor.
pub(crate) async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    state: Arc<SinkState>,
    tls: Option<TlsAcceptor>,
) {
    let source_ip = peer.ip();
    let connection_id = state.connection_opened(source_ip);
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let mut session = Session::new(read, write, Arc::clone(&state), connection_id, peer);
    session.starttls = tls.is_some();
    let end = session.run(true).await;
    let mut closed_counted = session.closed_counted;
    if let (Ok(Next::StartTls), Some(acceptor)) = (&end, tls) {
        // Nothing may follow STARTTLS in plain text (checked in `run`).
        let Session { reader, writer, .. } = session;
        match reader.into_inner().reunite(writer.into_inner()) {
            Ok(stream) => {
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => {
                        let (read, write) = tokio::io::split(stream);
                        let mut session =
                            Session::new(read, write, Arc::clone(&state), connection_id, peer);
                        session.tls = true;
                        if let Err(err) = session.run(false).await {
                            tracing::debug!(%peer, connection_id, error = %err, "sink TLS session ended with an error");
                        }
                        closed_counted = session.closed_counted;
                    }
                    Ok(Err(err)) => {
                        tracing::debug!(%peer, connection_id, error = %err, "sink TLS handshake failed");
                    }
                    Err(_) => tracing::debug!(%peer, connection_id, "sink TLS handshake timed out"),
                }
            }
            Err(err) => tracing::warn!(error = %err, "sink could not reunite a TCP stream"),
        }
    } else if let Err(err) = end {
        tracing::debug!(%peer, connection_id, error = %err, "sink session ended with an error");
    }
    if !closed_counted {
        state.connection_closed(source_ip);
    }
}

/// How a command handler wants the session to continue.
enum Next {
    Continue,
    Close,
    /// 220 to STARTTLS was sent and flushed: hand the stream to TLS.
    StartTls,
}

struct Session<R, W> {
    reader: BufReader<R>,
    writer: BufWriter<W>,
    state: Arc<SinkState>,
    connection_id: u64,
    peer: SocketAddr,
    /// Offer STARTTLS (a TLS configuration exists and this session is plain).
    starttls: bool,
    /// This session runs over TLS: its messages are recorded as such.
    tls: bool,
    /// The connection was already counted closed (at QUIT).
    closed_counted: bool,
    greeted: bool,
    mail_from: Option<String>,
    /// The number of the transaction `mail_from` began, and when (unix ms).
    transaction: (u64, i64),
    rcpt_to: Vec<String>,
    /// Reused line buffer.
    line: Vec<u8>,
}

impl<R: AsyncRead + Unpin, W: AsyncWrite + Unpin> Session<R, W> {
    fn new(read: R, write: W, state: Arc<SinkState>, connection_id: u64, peer: SocketAddr) -> Self {
        Session {
            reader: BufReader::with_capacity(64 * 1024, read),
            writer: BufWriter::with_capacity(16 * 1024, write),
            state,
            connection_id,
            peer,
            starttls: false,
            tls: false,
            closed_counted: false,
            greeted: false,
            mail_from: None,
            transaction: (0, 0),
            rcpt_to: Vec::new(),
            line: Vec::with_capacity(1024),
        }
    }

    /// Serves commands (after a 220 greeting when `greet`) until the session
    /// ends: `Next::Close`, or `Next::StartTls` with nothing buffered after it.
    async fn run(&mut self, greet: bool) -> io::Result<Next> {
        if greet {
            self.reply(&format!("220 {HOSTNAME} ESMTP ready")).await?;
        }
        loop {
            // Pipelining: answer everything already buffered, then flush once.
            if self.reader.buffer().is_empty() {
                self.writer.flush().await?;
            }
            self.line.clear();
            let read = (&mut self.reader)
                .take(MAX_COMMAND_LINE)
                .read_until(b'\n', &mut self.line)
                .await?;
            if read == 0 {
                return Ok(Next::Close);
            }
            if !self.line.ends_with(b"\n") {
                if read as u64 >= MAX_COMMAND_LINE {
                    self.reply("500 5.5.6 line too long").await?;
                    self.writer.flush().await?;
                }
                return Ok(Next::Close); // EOF in the middle of a line, or too long.
            }
            let line = String::from_utf8_lossy(&self.line).trim_end().to_owned();
            match self.command(&line).await? {
                Next::Continue => {}
                Next::Close => {
                    self.writer.flush().await?;
                    return Ok(Next::Close);
                }
                Next::StartTls => {
                    self.writer.flush().await?;
                    if !self.reader.buffer().is_empty() {
                        // Plain text pipelined after STARTTLS: possible injection.
                        return Ok(Next::Close);
                    }
                    return Ok(Next::StartTls);
                }
            }
        }
    }

    async fn command(&mut self, line: &str) -> io::Result<Next> {
        let (verb, arg) = match line.split_once(' ') {
            Some((verb, arg)) => (verb, arg.trim()),
            None => (line, ""),
        };
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => {
                self.greeted = true;
                self.reset_transaction();
                let starttls = if self.starttls {
                    "250-STARTTLS\r\n"
                } else {
                    ""
                };
                let ehlo = format!(
                    "250-{HOSTNAME} hello\r\n250-PIPELINING\r\n250-8BITMIME\r\n{starttls}\
                     250-ENHANCEDSTATUSCODES\r\n250 SIZE {MAX_MESSAGE_SIZE}"
                );
                self.reply(&ehlo).await?;
            }
            "HELO" => {
                self.greeted = true;
                self.reset_transaction();
                self.reply(&format!("250 {HOSTNAME}")).await?;
            }
            "MAIL" => self.mail(arg).await?,
            "RCPT" => return self.rcpt(arg).await,
            "DATA" => return self.data().await,
            "RSET" => {
                self.reset_transaction();
                self.reply("250 2.0.0 OK").await?;
            }
            "STARTTLS" if self.starttls => {
                if !self.greeted {
                    self.reply("503 5.5.1 EHLO first").await?;
                } else {
                    self.reply("220 2.0.0 ready to start TLS").await?;
                    return Ok(Next::StartTls);
                }
            }
            "NOOP" => self.reply("250 2.0.0 OK").await?,
            "VRFY" => self.reply("252 2.5.0 cannot verify").await?,
            "QUIT" => {
                // Counted closed before the 221: a client that opens its next
                // connection right after the reply never looks like one too many.
                self.state.connection_closed(self.peer.ip());
                self.closed_counted = true;
                self.reply("221 2.0.0 bye").await?;
                return Ok(Next::Close);
            }
            _ => self.reply("500 5.5.2 command not recognized").await?,
        }
        Ok(Next::Continue)
    }

    async fn mail(&mut self, arg: &str) -> io::Result<()> {
        if !self.greeted {
            return self.reply("503 5.5.1 EHLO or HELO first").await;
        }
        if self.mail_from.is_some() {
            return self.reply("503 5.5.1 nested MAIL command").await;
        }
        match path_after(arg, "FROM:") {
            Some(path) => {
                self.mail_from = Some(path);
                self.transaction = (self.state.begin_transaction(), crate::clock::unix_ms());
                self.reply("250 2.1.0 OK").await
            }
            None => self.reply("501 5.5.4 syntax: MAIL FROM:<address>").await,
        }
    }

    async fn rcpt(&mut self, arg: &str) -> io::Result<Next> {
        if self.mail_from.is_none() {
            self.reply("503 5.5.1 MAIL first").await?;
            return Ok(Next::Continue);
        }
        let Some(rcpt) = path_after(arg, "TO:").filter(|path| !path.is_empty()) else {
            self.reply("501 5.5.4 syntax: RCPT TO:<address>").await?;
            return Ok(Next::Continue);
        };
        let action = self.state.apply_rules(RuleStage::Rcpt, [rcpt.as_str()]);
        let response = match action {
            Some(action) => {
                if let Some(delay) = action.delay {
                    self.writer.flush().await?;
                    tokio::time::sleep(delay).await;
                }
                action.response
            }
            None => Response::Default,
        };
        match response {
            Response::Drop => return self.drop_connection().await,
            Response::Reply(reply) if !reply.starts_with('2') => {
                self.state.count_rejection(&reply);
                self.reply(&reply).await?;
            }
            Response::Reply(reply) => {
                self.rcpt_to.push(rcpt);
                self.reply(&reply).await?;
            }
            Response::Default => {
                self.rcpt_to.push(rcpt);
                self.reply("250 2.1.5 OK").await?;
            }
        }
        Ok(Next::Continue)
    }

    async fn data(&mut self) -> io::Result<Next> {
        if self.mail_from.is_none() || self.rcpt_to.is_empty() {
            self.reply("503 5.5.1 no valid recipients").await?;
            return Ok(Next::Continue);
        }
        self.reply("354 end data with <CR><LF>.<CR><LF>").await?;
        self.writer.flush().await?;
        let Some(summary) = self.read_data().await? else {
            return Ok(Next::Close); // EOF inside DATA: nothing is recorded.
        };
        let mail_from = self.mail_from.take().unwrap_or_default();
        let rcpt_to = std::mem::take(&mut self.rcpt_to);
        if summary.size > MAX_MESSAGE_SIZE {
            self.reply("552 5.3.4 message too big").await?;
            return Ok(Next::Continue);
        }

        let action = self
            .state
            .apply_rules(RuleStage::DataEnd, rcpt_to.iter().map(String::as_str));
        let response = match action {
            Some(action) => {
                if let Some(delay) = action.delay {
                    self.writer.flush().await?;
                    tokio::time::sleep(delay).await;
                }
                action.response
            }
            None => Response::Default,
        };
        let accepted = Accepted {
            connection_id: self.connection_id,
            source_ip: self.peer.ip(),
            message_id: summary.message_id,
            mail_from,
            rcpt_to,
            size: summary.size,
            tls: self.tls,
            transaction: self.transaction.0,
            begun_at_ms: self.transaction.1,
            body: summary.body,
        };
        match response {
            Response::Drop => return self.drop_connection().await,
            Response::Reply(reply) if !reply.starts_with('2') => {
                self.state.count_rejection(&reply);
                self.reply(&reply).await?;
            }
            Response::Reply(reply) => {
                self.state.record(accepted);
                self.reply(&reply).await?;
            }
            Response::Default => {
                let seq = self.state.record(accepted);
                self.reply(&format!("250 2.0.0 OK queued as {seq}")).await?;
            }
        }
        Ok(Next::Continue)
    }

    /// Reads the message up to the terminating dot; `None` on EOF first.
    async fn read_data(&mut self) -> io::Result<Option<DataSummary>> {
        let mut summary = DataSummary {
            body: self.state.keeps_bodies().then(Vec::new),
            ..DataSummary::default()
        };
        let mut headers = HeaderScan::default();
        let mut line_start = true;
        loop {
            self.line.clear();
            let read = (&mut self.reader)
                .take(MAX_DATA_CHUNK)
                .read_until(b'\n', &mut self.line)
                .await?;
            if read == 0 {
                return Ok(None);
            }
            let chunk = self.line.as_slice();
            let complete = chunk.ends_with(b"\n");
            if line_start {
                if chunk == b".\r\n" || chunk == b".\n" {
                    summary.message_id = headers.message_id;
                    return Ok(Some(summary));
                }
                let content = chunk.strip_prefix(b".").unwrap_or(chunk);
                summary.size += content.len();
                if let Some(body) = &mut summary.body {
                    body.extend_from_slice(content);
                }
                if complete {
                    headers.line(content);
                }
            } else {
                summary.size += chunk.len();
                if let Some(body) = &mut summary.body {
                    body.extend_from_slice(chunk);
                }
            }
            line_start = complete;
        }
    }

    async fn drop_connection(&mut self) -> io::Result<Next> {
        self.state.count_drop();
        // Replies owed to earlier pipelined commands still go out; then silence.
        self.writer.flush().await?;
        let _ = self.writer.get_mut().shutdown().await;
        Ok(Next::Close)
    }

    fn reset_transaction(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    /// Queues one reply (one or more lines, without the final CRLF).
    async fn reply(&mut self, reply: &str) -> io::Result<()> {
        self.writer.write_all(reply.as_bytes()).await?;
        self.writer.write_all(b"\r\n").await
    }
}

#[derive(Debug, Default)]
struct DataSummary {
    size: usize,
    message_id: Option<String>,
    /// The dot-unstuffed message, when the sink keeps bodies.
    body: Option<Vec<u8>>,
}

/// Finds the Message-ID among the header lines (folding allowed).
#[derive(Debug, Default)]
struct HeaderScan {
    done: bool,
    /// The Message-ID header was seen with an empty value: it is folded.
    awaiting_fold: bool,
    message_id: Option<String>,
}

impl HeaderScan {
    fn line(&mut self, line: &[u8]) {
        if self.done {
            return;
        }
        if line == b"\r\n" || line == b"\n" {
            self.done = true;
            return;
        }
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if self.awaiting_fold {
                self.take_value(line);
            }
            return;
        }
        self.awaiting_fold = false;
        const NAME: &[u8] = b"message-id:";
        if self.message_id.is_none()
            && line.len() >= NAME.len()
            && line[..NAME.len()].eq_ignore_ascii_case(NAME)
        {
            self.take_value(&line[NAME.len()..]);
            self.awaiting_fold = self.message_id.is_none();
        }
    }

    fn take_value(&mut self, value: &[u8]) {
        let value = String::from_utf8_lossy(value);
        let value = value.trim();
        let value = value.strip_prefix('<').unwrap_or(value);
        let value = value.strip_suffix('>').unwrap_or(value).trim();
        if !value.is_empty() {
            self.message_id = Some(value.to_owned());
            self.awaiting_fold = false;
        }
    }
}

/// `FROM:<a@b> SIZE=10` → `a@b` (with `prefix` = `FROM:`); `<>` → empty.
fn path_after(arg: &str, prefix: &str) -> Option<String> {
    let head = arg.get(..prefix.len())?;
    if !head.eq_ignore_ascii_case(prefix) {
        return None;
    }
    let rest = arg[prefix.len()..].trim_start();
    if let Some(inner) = rest.strip_prefix('<') {
        let end = inner.find('>')?;
        return Some(inner[..end].to_owned());
    }
    let path = rest.split_whitespace().next()?;
    Some(path.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(
            path_after("FROM:<a@b> SIZE=10", "FROM:").as_deref(),
            Some("a@b")
        );
        assert_eq!(path_after("from: <>", "FROM:").as_deref(), Some(""));
        assert_eq!(path_after("TO:c@d", "TO:").as_deref(), Some("c@d"));
        assert_eq!(path_after("TO:<c@d", "TO:"), None);
        assert_eq!(path_after("X", "FROM:"), None);
    }

    #[test]
    fn message_id_scan() {
        let mut scan = HeaderScan::default();
        for line in [
            &b"Subject: hi\r\n"[..],
            b"Message-ID:\r\n",
            b"\t<abc@x.test>\r\n",
            b"\r\n",
            b"Message-ID: <other@x>\r\n",
        ] {
            scan.line(line);
        }
        assert_eq!(scan.message_id.as_deref(), Some("abc@x.test"));
        let mut scan = HeaderScan::default();
        scan.line(b"message-id: <m@x>\r\n");
        assert_eq!(scan.message_id.as_deref(), Some("m@x"));
        let mut scan = HeaderScan::default();
        scan.line(b"\r\n");
        scan.line(b"Message-ID: <body@x>\r\n");
        assert_eq!(scan.message_id, None);
    }
}
